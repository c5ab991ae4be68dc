//! ws-crypto's encrypted sessions and end-to-end encrypted (MLS) channels over
//! real connections, on the runtime its test root includes
//! (`ws-crypto/tests/on_*.rs`).

#[path = "common.rs"]
pub(crate) mod common;

#[path = "mls_channels.rs"]
mod mls_channels;
#[path = "sealed.rs"]
mod sealed;
