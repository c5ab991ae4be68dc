//! The adapter test suite, written once and run by every adapter: each
//! adapter's test root defines `rt` (its runtime: spawn, sleep, timeout,
//! raw sockets, and `rt::ws`, the adapter crate) and the `adapter_tests!`
//! macro that runs each test on its executor, then includes this module.

pub(crate) mod common;

mod api;
mod channels;
mod closing;
mod deflate;
mod e2e_channels;
mod envelopes;
mod handlers;
mod handshake;
mod lifecycle;
mod policies;
mod sealed;
