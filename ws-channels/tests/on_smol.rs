//! Channels over real connections (`adapter-tests/channels.rs`), served by
//! ws-channels on smol: every adapter runs the same channels suite.

#![allow(unreachable_pub)]

include!("../../adapter-tests/runtimes/smol.rs");

#[path = "../../adapter-tests/channels_suite.rs"]
mod suite;
