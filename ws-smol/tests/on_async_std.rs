//! The adapter test suite (`adapter-tests/`, shared with ws-tokio), run on
//! async-std's executor: servers and clients spawn their connection tasks
//! with `async_std::task::spawn`.

#![allow(unreachable_pub)]

include!("../../adapter-tests/runtimes/async_std.rs");

#[path = "../../adapter-tests/mod.rs"]
mod suite;
