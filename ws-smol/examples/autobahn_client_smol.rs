//! The Autobahn TestSuite client testee on smol (see `.ci/autobahn.sh`);
//! the program itself is `adapter-tests/testees/autobahn_client.rs`, shared
//! by every adapter.
//!
//! ```sh
//! cargo run --release -p ws-smol --example autobahn_client_smol -- ws://127.0.0.1:9001 ws-smol
//! ```

mod rt {
    pub(crate) use ws_smol as ws;
}

#[path = "../../adapter-tests/testees/autobahn_client.rs"]
mod testee;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    smol::block_on(testee::main())
}
