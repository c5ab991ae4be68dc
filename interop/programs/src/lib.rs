//! The programs CI runs against real peers, written once and built for
//! every adapter (`src/bin/*`): the Autobahn TestSuite's echo server and
//! client (its "testees"), and our side of the interop tests with Python
//! `websockets`, Node `ws` and Chromium (`interop/node`, `interop/python`,
//! `.ci/interop.sh`). Not published; the adapters' examples are the
//! programs meant for users.
//!
//! Shared here: the echo server's command line, and the JSON-like test
//! data the interop scripts and the echo benchmark both send.

pub mod echo_args;
pub mod events;
