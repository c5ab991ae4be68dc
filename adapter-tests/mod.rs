//! The adapter test suite, written once and run by every adapter: each
//! adapter's test root includes its runtime (`runtimes/*.rs`: `rt`, with
//! spawn, sleep, timeout, raw sockets and `rt::ws`, the adapter crate, and
//! the `adapter_tests!` macro that runs each test on its executor), then
//! this module. The layers above the adapters run their own suites the
//! same way, from their own crates (`channels_suite.rs`,
//! `crypto_suite.rs`), so no adapter depends on them.

pub(crate) mod common;

mod api;
mod closing;
mod deflate;
mod envelopes;
mod handlers;
mod handshake;
mod lifecycle;
mod policies;
