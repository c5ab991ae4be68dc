//! The Autobahn TestSuite client testee on tokio (`.ci/autobahn.sh`):
//! `autobahn_client ws://127.0.0.1:9001 ws-tokio`.

mod rt {
    pub(crate) use ws_tokio as ws;
}

#[path = "../autobahn_client.rs"]
mod testee;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    testee::main().await
}
