//! permessage-deflate (RFC 7692): negotiation, the message codec, and its
//! use inside a [`Connection`](crate::Connection).
//!
//! Off unless asked for. A server negotiates with
//! [`UpgradeRequest::negotiate_deflate`](crate::handshake::UpgradeRequest::negotiate_deflate)
//! and answers with [`Accept::deflate`](crate::handshake::Accept::deflate);
//! a client offers with
//! [`ClientRequest::deflate`](crate::handshake::ClientRequest::deflate)
//! and finds the agreement in
//! [`ServerResponse::deflate`](crate::handshake::ServerResponse::deflate).
//! Either side then turns it on with
//! [`Connection::with_deflate`](crate::Connection::with_deflate).
//!
//! Compressed messages are inflated in bounded steps into the message
//! limit: a message that inflates past `max_message_size` closes the
//! connection with 1009 (across fragments too), a corrupt stream with 1007.
//! [`DeflateConfig`] states the memory each setting costs.

pub mod codec;
pub mod negotiation;
pub(crate) mod state;

pub use codec::{Deflater, InflateError, Inflater};
pub use flate2::Compression;
pub use negotiation::{
    DeflateConfig, DeflateParams, NegotiationError, client_accept, client_offer, server_negotiate,
};
