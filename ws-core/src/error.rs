//! Errors, typed by cause.
//!
//! - [`ProtocolError`]: the peer broke RFC 6455 or one of our limits. Carries
//!   the close code we send ([`ProtocolError::close_code`]); reported through
//!   [`Event::Closed`](crate::Event::Closed), never returned from a call.
//! - [`UsageError`]: the local caller asked for something the protocol or the
//!   connection's state forbids.
//! - [`Backpressure`]: the operation would overflow the bounded send buffer.
//! - [`SendRefused`]: what a send can fail with, one of the two above.
//!
//! `ws-core` performs no IO, so none of these hold an `io::Error`.

use crate::close::CloseCode;

/// The peer violated the protocol or exceeded a configured limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An RSV bit was set that no negotiated extension defines, or RSV1 was
    /// set on a control or continuation frame.
    #[error("reserved bits {0:#05b} set without a negotiated extension")]
    ReservedBits(u8),
    /// Opcodes 3-7 and 11-15 are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame declared more than 125 bytes of payload.
    #[error("control frame with {0} bytes of payload (limit 125)")]
    ControlFrameTooLarge(u64),
    /// A control frame had FIN clear.
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A client sent a frame without a mask.
    #[error("unmasked frame from a client")]
    UnmaskedFrame,
    /// A server sent a masked frame.
    #[error("masked frame from a server")]
    MaskedFrame,
    /// A 64-bit payload length had its most significant bit set.
    #[error("64-bit payload length with the most significant bit set")]
    InvalidPayloadLength,
    /// A length used more bytes than needed and the connection is configured
    /// to reject that ([`Config::reject_non_minimal_lengths`](crate::Config)).
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
    /// A frame declared more payload than `max_frame_size`.
    #[error("frame of {len} bytes exceeds the frame limit of {max} bytes")]
    FrameTooLarge {
        /// Declared payload length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message grew past `max_message_size`.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// A fragmented message used more than `max_fragments` frames.
    #[error("message split into more than {max} fragments")]
    TooManyFragments {
        /// The configured limit.
        max: usize,
    },
    /// A fragmented message was not finished within `fragment_timeout`.
    #[error("fragmented message not completed in time")]
    FragmentTimeout,
    /// A continuation frame arrived with no fragmented message open.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was open.
    #[error("new data frame while a fragmented message is open")]
    ExpectedContinuation,
    /// A text message (or a close reason) was not valid UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A close frame carried exactly one byte of payload.
    #[error("close frame with a one-byte payload")]
    InvalidClosePayload,
    /// A close frame carried a code that may not be sent.
    #[error("close frame with invalid code {0}")]
    InvalidCloseCode(u16),
    /// A close frame's reason was not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// The peer sent pings faster than `ping_rate_limit` allows.
    #[error("ping rate limit exceeded")]
    PingFlood,
    /// A compressed message (permessage-deflate) was not a valid DEFLATE
    /// stream.
    #[error("invalid compressed data")]
    CorruptCompressedData,
}

impl ProtocolError {
    /// The close code sent to the peer for this violation.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::CorruptCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::TooManyFragments { .. } | Self::FragmentTimeout | Self::PingFlood => {
                CloseCode::POLICY_VIOLATION
            }
            Self::ReservedBits(_)
            | Self::ReservedOpcode(_)
            | Self::ControlFrameTooLarge(_)
            | Self::FragmentedControlFrame
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::InvalidPayloadLength
            | Self::NonMinimalLength
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::InvalidClosePayload
            | Self::InvalidCloseCode(_) => CloseCode::PROTOCOL_ERROR,
        }
    }
}

/// The caller asked for something the protocol or the connection's state
/// forbids. Nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The connection is closing or closed; nothing more can be sent.
    #[error("the connection is closing or closed")]
    Closed,
    /// The close code may not be sent (see [`CloseCode::is_sendable`]).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// Close reasons are limited to 123 bytes.
    #[error("close reason of {0} bytes exceeds 123")]
    CloseReasonTooLong(usize),
    /// Ping and pong payloads are limited to 125 bytes.
    #[error("control payload of {0} bytes exceeds 125")]
    ControlPayloadTooLarge(usize),
    /// A streamed message is open; finish it with a last fragment first.
    #[error("a fragmented message is being sent; finish it first")]
    MessageInProgress,
    /// A later fragment's kind (text or binary) differs from the first one's.
    #[error("fragment kind differs from the message being sent")]
    FragmentKindMismatch,
    /// The URI is not a `ws://` or `wss://` URI with a host.
    #[error("invalid WebSocket URI: {0}")]
    InvalidUri(String),
    /// A subprotocol or header value is not valid on the wire.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// The server chose a subprotocol the client did not offer.
    #[error("subprotocol {0:?} was not offered by the client")]
    SubprotocolNotOffered(String),
    /// Pre-encoded messages are unmasked: only a server may send them.
    #[error("only a server sends pre-encoded messages (a client masks every frame)")]
    EncodedFromClient,
}

/// Sending would grow the outgoing buffer past `max_outgoing_buffer`.
///
/// The peer is not reading fast enough. Nothing was queued: drain the
/// transmit side (write to the socket) and retry, or drop the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("send buffer full: {buffered} bytes queued, {needed} more would exceed {limit}")]
pub struct Backpressure {
    /// Bytes already queued for transmission.
    pub buffered: usize,
    /// Bytes the refused frame needed.
    pub needed: usize,
    /// The configured limit.
    pub limit: usize,
}

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendRefused {
    /// The call was not valid in the connection's state.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The outgoing buffer is full.
    #[error(transparent)]
    Backpressure(#[from] Backpressure),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_by_cause() {
        assert_eq!(
            ProtocolError::MessageTooLarge { max: 1 }.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
        assert_eq!(
            ProtocolError::FrameTooLarge { len: 2, max: 1 }.close_code(),
            CloseCode::MESSAGE_TOO_BIG
        );
        assert_eq!(
            ProtocolError::InvalidUtf8.close_code(),
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            ProtocolError::TooManyFragments { max: 1 }.close_code(),
            CloseCode::POLICY_VIOLATION
        );
        assert_eq!(
            ProtocolError::ReservedOpcode(3).close_code(),
            CloseCode::PROTOCOL_ERROR
        );
    }
}
