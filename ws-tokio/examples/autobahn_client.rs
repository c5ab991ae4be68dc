//! The Autobahn TestSuite client testee on tokio (see `.ci/autobahn.sh`);
//! the program itself is `adapter-tests/testees/autobahn_client.rs`, shared
//! by every adapter.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example autobahn_client -- ws://127.0.0.1:9001 ws-tokio
//! ```

mod rt {
    pub(crate) use ws_tokio as ws;
}

#[path = "../../adapter-tests/testees/autobahn_client.rs"]
mod testee;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    testee::main().await
}
