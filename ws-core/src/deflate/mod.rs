//! permessage-deflate (RFC 7692): negotiation and the message codec.
//!
//! These are the building blocks; a [`Connection`](crate::Connection) does
//! not use them yet, so frames with RSV1 are still refused (1002) and the
//! handshakes never offer or accept the extension.

pub mod codec;
pub mod negotiation;

pub use codec::{Deflater, InflateError, Inflater};
pub use flate2::Compression;
pub use negotiation::{
    DeflateConfig, DeflateParams, NegotiationError, client_accept, client_offer, server_negotiate,
};
