//! Our side of the interop tests on smol (`interop/`, `.ci/interop.sh`):
//! `interop_smol server 127.0.0.1:0` or `interop_smol client ws://127.0.0.1:PORT`.

mod rt {
    use std::future::Future;
    use std::time::Duration;

    pub(crate) use ws_smol as ws;

    pub(crate) async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, ()> {
        futures_lite::future::or(async { Ok(future.await) }, async {
            async_io::Timer::after(duration).await;
            Err(())
        })
        .await
    }
}

#[path = "../interop.rs"]
mod testee;

fn main() {
    smol::block_on(testee::main());
}
