//! The programs CI runs against real peers, written once and built for
//! every adapter (`src/bin/*`): the Autobahn TestSuite's echo server and
//! client, and our side of the interop tests with Python `websockets`,
//! Node `ws` and Chromium (`interop/`, `.ci/interop.sh`). Not published;
//! the adapters' examples are the programs meant for users.
//!
//! Shared here: the echo testee's command line, the JSON-like test data
//! the interop scripts and the echo benchmark both send, and the brokers
//! the cluster tests start (`brokers`).

pub mod brokers;
pub mod echo_args;
pub mod events;

/// The repository's README, so that its Rust snippets are compiled and
/// run with the tests like every crate's own.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct RepositoryReadme;
