//! The adapter test suite (`adapter-tests/`, shared with ws-tokio), run on
//! smol's executor.

#![allow(unreachable_pub)]

include!("../../adapter-tests/runtimes/smol.rs");

#[path = "../../adapter-tests/mod.rs"]
mod suite;
