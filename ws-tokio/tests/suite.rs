//! The adapter test suite (`adapter-tests/`, shared with ws-smol), run on
//! tokio (`adapter-tests/runtimes/tokio.rs` says how tokio spawns, sleeps
//! and opens raw sockets).

#![allow(unreachable_pub)]

include!("../../adapter-tests/runtimes/tokio.rs");

#[path = "../../adapter-tests/mod.rs"]
mod suite;
