//! ws-channels over real connections, on the runtime its test root
//! includes (`ws-channels/tests/on_*.rs`).

#[path = "common.rs"]
pub(crate) mod common;

#[path = "channels.rs"]
mod channels;
