//! `Sec-WebSocket-Key` and `Sec-WebSocket-Accept` (RFC 6455 §4.2.2).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `Sec-WebSocket-Key` for a 16-byte nonce.
pub(crate) fn client_key(nonce: [u8; 16]) -> String {
    STANDARD.encode(nonce)
}

/// Whether `key` is the base64 encoding of exactly 16 bytes.
pub(crate) fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes encode to 24 characters ending in "==".
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|raw| raw.len() == 16)
}

/// The `Sec-WebSocket-Accept` value answering `key`.
pub(crate) fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
    }

    #[test]
    fn key_validation() {
        assert!(!is_valid_key(b""));
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZQ")); // unpadded
        assert!(!is_valid_key(b"dGhlIHNhbXBsZSBub25jZXg=")); // 17 bytes
        assert!(!is_valid_key(b"!!!!!!!!!!!!!!!!!!!!!!==")); // not base64
        assert_eq!(client_key([0; 16]), "AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(is_valid_key(client_key([7; 16]).as_bytes()));
    }
}
