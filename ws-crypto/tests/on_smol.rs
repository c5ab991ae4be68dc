//! Encrypted sessions and end-to-end encrypted channels over real
//! connections (`adapter-tests/sealed.rs`, `adapter-tests/mls_channels.rs`),
//! on smol.

#![allow(unreachable_pub)]

include!("../../adapter-tests/runtimes/smol.rs");

#[path = "../../adapter-tests/crypto_suite.rs"]
mod suite;
