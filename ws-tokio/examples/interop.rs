//! The interop testee on tokio (see `interop/` and `.ci/interop.sh`); the
//! program itself is `adapter-tests/testees/interop.rs`, shared by every
//! adapter.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example interop -- server 127.0.0.1:0
//! cargo run --release -p ws-tokio --example interop -- client ws://127.0.0.1:PORT
//! ```

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

#[path = "../../adapter-tests/testees/interop.rs"]
mod testee;

#[tokio::main]
async fn main() {
    testee::main().await;
}
