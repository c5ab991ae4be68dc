//! The interop testee on smol (see `interop/` and `.ci/interop.sh`); the
//! program itself is `adapter-tests/testees/interop.rs`, shared by every
//! adapter.
//!
//! ```sh
//! cargo run --release -p ws-smol --example interop_smol -- server 127.0.0.1:0
//! ```

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

#[path = "../../adapter-tests/testees/interop.rs"]
mod testee;

fn main() {
    smol::block_on(testee::main());
}
