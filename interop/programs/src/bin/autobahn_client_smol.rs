//! The Autobahn TestSuite client testee on smol (`.ci/autobahn.sh`):
//! `autobahn_client_smol ws://127.0.0.1:9001 ws-smol`.

mod rt {
    pub(crate) use ws_smol as ws;
}

#[path = "../autobahn_client.rs"]
mod testee;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(testee::main())
}
