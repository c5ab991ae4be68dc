//! Errors of the async layer, one type per operation, variants by cause.

use std::io;
use std::sync::Arc;

use ws_core::handshake::ResponseError;
use ws_core::{CloseCause, Closed, UsageError};

/// Why a message could not be queued on a connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closed or closing.
    #[error("the connection is closed")]
    Closed,
    /// The connection's send queue is full: the peer is not reading fast
    /// enough. Nothing was queued.
    #[error("send queue full: {queued} bytes queued, limit {limit}")]
    Full {
        /// Bytes already waiting.
        queued: usize,
        /// The queue's limit in bytes.
        limit: usize,
    },
    /// What was to be sent is not valid: a close code that may not be sent,
    /// a close reason over 123 bytes, a ping over 125 bytes, a fragment of
    /// another kind than the message it continues. Nothing was queued.
    #[error("not sent: {0}")]
    Invalid(UsageError),
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URI or request is invalid.
    #[error("invalid request: {0}")]
    Request(#[from] UsageError),
    /// Resolving, connecting or the handshake's IO failed.
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    /// The TLS handshake failed (certificate, hostname, protocol).
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    /// The server's answer was not a valid WebSocket upgrade.
    #[error("handshake refused: {0}")]
    Handshake(#[from] ResponseError),
}

/// A connection ended abnormally: the last item of a message stream before
/// it ends. A completed close handshake ends the stream without one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("connection closed: {} ({:?}){}", closed.code, closed.cause, io.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct ConnectionError {
    /// How it closed, as the protocol engine reported it.
    pub closed: Closed,
    /// The transport error behind a [`CloseCause::TransportClosed`], if any.
    pub io: Option<Arc<io::Error>>,
}

impl ConnectionError {
    /// Whether `closed` ended the connection abnormally (anything but a
    /// completed close handshake).
    pub(crate) fn is_abnormal(closed: &Closed) -> bool {
        !matches!(closed.cause, CloseCause::Handshake { .. })
    }
}
