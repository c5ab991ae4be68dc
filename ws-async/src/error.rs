//! Errors of the async layer, one type per operation, variants by cause.
//! `Display` says what failed and where; the cause behind it is the
//! error's `source()`, never repeated in its text (so error chains printed
//! by `anyhow` or `eyre` show each step once).

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
    #[error("invalid WebSocket request")]
    Request(#[from] UsageError),
    /// Resolving the host or opening the TCP connection failed.
    #[error("could not connect to {target}")]
    Connect {
        /// `host:port`.
        target: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed (certificate, hostname, protocol).
    #[error("TLS handshake with {target} failed{}", tls_hint(source))]
    Tls {
        /// `host:port`.
        target: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The connection failed during the WebSocket handshake.
    #[error("the connection failed during the WebSocket handshake")]
    Io(#[from] io::Error),
    /// The server's answer was not a valid WebSocket upgrade (or did not
    /// come in time).
    #[error("the WebSocket handshake failed")]
    Handshake(#[from] ResponseError),
}

/// A hint for the commonest TLS mistake: `wss://` to a server that speaks
/// plain HTTP answers with bytes that are not a TLS record.
fn tls_hint(error: &io::Error) -> &'static str {
    #[cfg(not(feature = "tls"))]
    let not_tls = {
        let _ = error;
        false
    };
    #[cfg(feature = "tls")]
    let not_tls = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|inner| {
            matches!(
                inner,
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            )
        });
    if not_tls {
        " (the server does not speak TLS here: try ws://)"
    } else {
        ""
    }
}

/// A connection ended abnormally: the last item of a message stream before
/// it ends. A completed close handshake ends the stream without one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("connection closed ({}): {}", closed.code, closed.cause)]
pub struct ConnectionError {
    /// How it closed, as the protocol engine reported it.
    pub closed: Closed,
    /// The transport error behind a [`CloseCause::TransportClosed`], if any.
    #[source]
    pub io: Option<Arc<io::Error>>,
}

impl ConnectionError {
    /// Whether `closed` ended the connection abnormally (anything but a
    /// completed close handshake).
    pub(crate) fn is_abnormal(closed: &Closed) -> bool {
        !matches!(closed.cause, CloseCause::Handshake { .. })
    }
}
