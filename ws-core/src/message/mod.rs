//! Messages as the application sees them.

mod utf8;

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

pub use utf8::{InvalidUtf8, Utf8Validator};

/// Bytes that are known to be valid UTF-8: a cheaply clonable string.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Self(Bytes::new())
    }

    /// Wraps a static string without copying.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// Validates `bytes` as UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        match simdutf8::basic::from_utf8(&bytes) {
            Ok(_) => Ok(Self(bytes)),
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// Wraps bytes the caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates the bytes as UTF-8 or takes
        // them from a `str`, and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        Self::try_from_bytes(bytes)
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// A data message, or a piece of one.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(Utf8Bytes),
    /// Arbitrary bytes.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Self::Binary(data.into())
    }

    /// The payload's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(data) => data,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this is text.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// The text of a text message; `None` for binary.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Binary(_) => None,
        }
    }

    /// The text of a text message, without copying; `None` for binary.
    pub fn into_text(self) -> Option<Utf8Bytes> {
        match self {
            Self::Text(text) => Some(text),
            Self::Binary(_) => None,
        }
    }

    /// The payload, text or binary, without copying.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::Text(text) => text.into_bytes(),
            Self::Binary(data) => data,
        }
    }
}

/// Text as it is; binary as lowercase hex.
impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Binary(data) => data.iter().try_for_each(|byte| write!(f, "{byte:02x}")),
        }
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Self::Text(text.into())
    }
}

impl From<Utf8Bytes> for Message {
    fn from(text: Utf8Bytes) -> Self {
        Self::Text(text)
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Self::Binary(data)
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Self::Binary(data.into())
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Self::Binary(Bytes::copy_from_slice(data))
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        match self {
            Self::Text(text) if text.len() <= SHOWN => write!(f, "Text({text:?})"),
            Self::Text(text) => write!(f, "Text({} bytes)", text.len()),
            Self::Binary(data) if data.len() <= SHOWN => write!(f, "Binary({data:?})"),
            Self::Binary(data) => write!(f, "Binary({} bytes)", data.len()),
        }
    }
}

/// A message encoded once as a whole, unmasked frame, for a server to send
/// the same bytes to many connections (a channel's fan-out) without
/// encoding it again for each: see
/// [`Connection::send_encoded`](crate::Connection::send_encoded). Cheap to
/// clone (the bytes are shared).
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    frame: Bytes,
    payload_len: usize,
}

impl EncodedMessage {
    /// Encodes `message` as one frame (FIN set, no compression, no mask).
    pub fn new(message: &Message) -> Self {
        let (opcode, payload) = match message {
            Message::Text(text) => (crate::frame::OpCode::Text, text.as_bytes().as_ref()),
            Message::Binary(data) => (crate::frame::OpCode::Binary, data.as_ref()),
        };
        let mut frame = bytes::BytesMut::new();
        crate::frame::encode_frame(&mut frame, opcode, true, 0, payload, None);
        Self {
            frame: frame.freeze(),
            payload_len: payload.len(),
        }
    }

    /// The frame's bytes, header included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.frame
    }

    /// The payload's length in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }
}

impl fmt::Debug for EncodedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedMessage({} bytes)", self.frame.len())
    }
}

/// One data frame of a message, handed out in
/// [`ReceiveMode::Streaming`](crate::ReceiveMode::Streaming).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// The frame's data. For text, each fragment holds whole code points: a
    /// code point split across frames is delivered with the fragment that
    /// completes it, so every fragment is a valid `str`.
    pub data: Message,
    /// First fragment of its message.
    pub is_first: bool,
    /// Last fragment of its message.
    pub is_last: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bytes_validates() {
        assert!(Utf8Bytes::try_from(Bytes::from_static(&[0xff])).is_err());
        let text = Utf8Bytes::try_from(Bytes::from_static("héllo".as_bytes())).unwrap();
        assert_eq!(text, "héllo");
        assert_eq!(text.len(), 6);
    }

    #[test]
    fn text_accessors_and_display() {
        let text = Message::text("héllo");
        assert_eq!(text.as_text(), Some("héllo"));
        assert_eq!(text.to_string(), "héllo");
        let binary = Message::binary(vec![0, 0xab, 0xff]);
        assert_eq!(binary.as_text(), None);
        assert_eq!(binary.to_string(), "00abff");
        assert_eq!(text.clone().into_text().unwrap(), "héllo");
        assert_eq!(&binary.into_bytes()[..], &[0, 0xab, 0xff]);
    }

    #[test]
    fn debug_truncates_large_payloads() {
        let big = Message::binary(vec![0u8; 1000]);
        assert_eq!(format!("{big:?}"), "Binary(1000 bytes)");
        assert_eq!(format!("{:?}", Message::text("hi")), "Text(\"hi\")");
    }
}
