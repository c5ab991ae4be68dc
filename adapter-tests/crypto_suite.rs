//! ws-crypto's encrypted sessions and end-to-end encrypted channels over
//! real connections, on the runtime its test root includes
//! (`ws-crypto/tests/on_*.rs`).

#[path = "common.rs"]
pub(crate) mod common;

#[path = "e2e_channels.rs"]
mod e2e_channels;
#[path = "sealed.rs"]
mod sealed;
