//! Channels over real connections (`adapter-tests/channels.rs`), served by
//! ws-channels on async-std: every adapter runs the same channels suite.

#![allow(unreachable_pub)]

include!("../../adapter-tests/runtimes/async_std.rs");

#[path = "../../adapter-tests/channels_suite.rs"]
mod suite;
