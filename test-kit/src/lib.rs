//! What the tests of `ws-channels` backends and clusters share, in one
//! place a backend written outside this repository can use too (not
//! published; a path or git dependency):
//!
//! - [`conformance`]: the backend conformance suite, every check through
//!   the backend traits alone, and [`backend_conformance!`] to run it as
//!   one test per check;
//! - [`brokers`]: the shared Redis and NATS the tests are pointed at, and
//!   brokers of a test's own (`redis-server`, `nats-server -js`) to stop,
//!   pause or restart by PID;
//! - the `channels_node` program (`src/bin`), one node of a test cluster;
//! - [`ChannelsClient`], the channels client every test speaks through
//!   (from `ws-channels`).
//!
//! The tests of the kit itself run the suite on the in-process, Redis and
//! NATS backends (`tests/backends.rs`) and drive clusters of
//! `channels_node` processes through broker faults (`tests/cluster.rs`);
//! `tests/catches.rs` shows the suite failing a backend that breaks the
//! contract (a broker that forgets idempotency keys).
//! The multi-node simulator stays inside `ws-channels` (`sim`, under its
//! `fuzzing` feature): the manager's own tests read its private state.

pub mod brokers;
pub mod conformance;

pub use ws_channels::ChannelsClient;

/// The repository's README, so that its Rust snippets are compiled and
/// run with the tests like every crate's own.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct RepositoryReadme;
