//! Our side of the interop tests on tokio (`interop/`, `.ci/interop.sh`):
//! `interop server 127.0.0.1:0` or `interop client ws://127.0.0.1:PORT`.

mod rt {
    use std::future::Future;
    use std::time::Duration;

    pub(crate) use ws_tokio as ws;

    pub(crate) async fn timeout<F: Future>(
        duration: Duration,
        future: F,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        tokio::time::timeout(duration, future).await
    }
}

#[path = "../interop.rs"]
mod testee;

#[tokio::main]
async fn main() {
    testee::main().await;
}
