//! Close status codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use crate::error::{ProtocolError, UsageError};

/// The longest close reason that fits a control frame: 125 bytes minus the
/// two-byte status code.
pub const MAX_CLOSE_REASON: usize = 123;

/// A WebSocket close status code.
///
/// A newtype rather than an enum so that every `u16` round-trips, including
/// application codes (3000-4999) and codes registered after this crate was
/// written; [`CloseCode::is_sendable`] tells whether one may go on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: no status code was present. Reported locally, never sent.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: the connection closed without a close frame. Reported locally,
    /// never sent.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message's payload was inconsistent with its type (bad UTF-8).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the endpoint hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway received an invalid response upstream.
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: the TLS handshake failed. Reported locally, never sent.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Wraps a raw status code without checking it.
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// The raw status code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// Allowed: 1000-1003, 1007-1014 (the codes registered with IANA that are
    /// not reserved for local reporting) and 3000-4999 (libraries and
    /// applications). Everything else, including 1005, 1006 and 1015, is a
    /// protocol error when received and refused when sent.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        Self(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The status code and reason carried by a close frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// Human-readable reason, at most [`MAX_CLOSE_REASON`] bytes of UTF-8.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame to send, checked for a sendable code and a reason that
    /// fits [`MAX_CLOSE_REASON`].
    pub fn new(code: CloseCode, reason: &str) -> Result<Self, UsageError> {
        if !code.is_sendable() {
            return Err(UsageError::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(UsageError::CloseReasonTooLong(reason.len()));
        }
        Ok(Self {
            code,
            reason: reason.to_owned(),
        })
    }

    /// Parses a received close payload. `Ok(None)` for an empty payload (no
    /// status code); errors for a one-byte payload, a code that may not be
    /// sent, or a reason that is not UTF-8.
    pub fn parse(payload: &[u8]) -> Result<Option<Self>, ProtocolError> {
        match payload {
            [] => Ok(None),
            [_] => Err(ProtocolError::InvalidClosePayload),
            [hi, lo, reason @ ..] => {
                let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
                if !code.is_sendable() {
                    return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
                }
                let reason = simdutf8::basic::from_utf8(reason)
                    .map_err(|_| ProtocolError::InvalidCloseReason)?;
                Ok(Some(Self {
                    code,
                    reason: reason.to_owned(),
                }))
            }
        }
    }

    /// Writes the close payload (code then reason) to `dst`.
    pub(crate) fn write_payload(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.code.as_u16().to_be_bytes());
        dst.extend_from_slice(self.reason.as_bytes());
    }
}

/// Truncates `text` to at most `max` bytes on a character boundary, so a
/// reason built from an error message always fits a close frame (pass
/// [`MAX_CLOSE_REASON`]).
pub fn truncate_reason(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sendable_codes_match_autobahn_7_7_and_7_9() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(CloseCode::new(code).is_sendable(), "{code} must be valid");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(
                !CloseCode::new(code).is_sendable(),
                "{code} must be invalid"
            );
        }
    }

    #[test]
    fn parse_rejects_one_byte_payload() {
        assert_eq!(
            CloseFrame::parse(&[3]),
            Err(ProtocolError::InvalidClosePayload)
        );
    }

    #[test]
    fn parse_rejects_reserved_codes_and_bad_reason() {
        for code in [999u16, 1005, 1006, 1015, 1016, 2999, 5000] {
            let payload = code.to_be_bytes();
            assert_eq!(
                CloseFrame::parse(&payload),
                Err(ProtocolError::InvalidCloseCode(code))
            );
        }
        assert_eq!(
            CloseFrame::parse(&[0x03, 0xe8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xff]),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn parse_accepts_empty_and_valid() {
        assert_eq!(CloseFrame::parse(&[]), Ok(None));
        let frame = CloseFrame::parse(&[0x0f, 0xa0, b'h', b'i'])
            .unwrap()
            .unwrap();
        assert_eq!(frame.code, CloseCode::new(4000));
        assert_eq!(frame.reason, "hi");
    }

    #[test]
    fn new_refuses_unsendable_code_and_long_reason() {
        assert_eq!(
            CloseFrame::new(CloseCode::ABNORMAL, ""),
            Err(UsageError::InvalidCloseCode(1006))
        );
        let long = "x".repeat(MAX_CLOSE_REASON + 1);
        assert_eq!(
            CloseFrame::new(CloseCode::NORMAL, &long),
            Err(UsageError::CloseReasonTooLong(124))
        );
        assert!(CloseFrame::new(CloseCode::NORMAL, &long[..MAX_CLOSE_REASON]).is_ok());
    }

    #[test]
    fn truncate_reason_respects_char_boundaries() {
        let text = "ééé"; // 2 bytes each
        assert_eq!(truncate_reason(text, 3), "é");
        assert_eq!(truncate_reason(text, 6), "ééé");
        assert_eq!(truncate_reason("abc", 0), "");
    }
}
