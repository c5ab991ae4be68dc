//! Encrypted sessions and end-to-end encrypted channels over real
//! connections (`adapter-tests/sealed.rs`, `adapter-tests/mls_channels.rs`),
//! on async-std.

#![allow(unreachable_pub)]

include!("../../adapter-tests/runtimes/async_std.rs");

#[path = "../../adapter-tests/crypto_suite.rs"]
mod suite;
