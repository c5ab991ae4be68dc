//! Keys and the primitives under both modes: X25519 key pairs, HKDF-SHA256
//! and the AEADs. Every primitive is RustCrypto's; this module only names
//! them and keeps secrets out of `Debug`.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// An X25519 public key: 32 bytes, written as unpadded base64url (43
/// characters) by `Display` and read back by `FromStr`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form to compare out of band (read aloud, shown beside a
    /// name): the first 16 bytes of the key's SHA-256 as hex in groups of 4.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        digest[..16]
            .chunks(2)
            .map(|pair| format!("{:02x}{:02x}", pair[0], pair[1]))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn dalek(&self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A string that is not 32 bytes of unpadded base64url.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an X25519 public key: expected 43 characters of unpadded base64url (32 bytes)")]
pub struct InvalidPublicKey;

impl FromStr for PublicKey {
    type Err = InvalidPublicKey;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| InvalidPublicKey)?;
        bytes.try_into().map(Self).map_err(|_| InvalidPublicKey)
    }
}

/// An X25519 key pair. The secret half is zeroized when the key is dropped
/// and never shown: `Debug` prints the public half only.
pub struct KeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl KeyPair {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        fill_random(bytes.as_mut());
        Self::from_secret_bytes(*bytes)
    }

    /// The key pair whose secret half is `secret` (as kept by
    /// [`secret_bytes`](Self::secret_bytes)).
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The secret half, to store (it is zeroized when the returned value is
    /// dropped).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// X25519 with `theirs`, or `None` when `theirs` is a low-order point
    /// that would make the result predictable.
    pub(crate) fn agree(&self, theirs: &PublicKey) -> Option<Zeroizing<[u8; 32]>> {
        let shared = self.secret.diffie_hellman(&theirs.dalek());
        shared
            .was_contributory()
            .then(|| Zeroizing::new(shared.to_bytes()))
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The AEAD a session's messages are sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-256-GCM: the default, and the one browsers have in WebCrypto.
    Aes256Gcm,
    /// ChaCha20-Poly1305: faster where AES has no hardware support.
    ChaCha20Poly1305,
}

impl Suite {
    pub(crate) fn id(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
            Self::ChaCha20Poly1305 => 2,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::Aes256Gcm),
            2 => Some(Self::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// The bytes an AEAD adds to each message (its tag).
pub(crate) const TAG_LEN: usize = 16;

/// An AEAD keyed for one direction or one channel epoch. The ciphers
/// zeroize their keys when dropped.
pub(crate) enum Cipher {
    Aes(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

/// The AEAD refused the message: it was altered, or sealed under another
/// key, nonce or associated data.
#[derive(Debug)]
pub(crate) struct Inauthentic;

impl Cipher {
    pub(crate) fn new(suite: Suite, key: &[u8; 32]) -> Self {
        match suite {
            Suite::Aes256Gcm => Self::Aes(Box::new(
                Aes256Gcm::new_from_slice(key).expect("a 32-byte key"),
            )),
            Suite::ChaCha20Poly1305 => Self::ChaCha(Box::new(
                ChaCha20Poly1305::new_from_slice(key).expect("a 32-byte key"),
            )),
        }
    }

    /// Encrypts `buffer` in place and appends the tag.
    pub(crate) fn seal(&self, nonce: &[u8; 12], aad: &[u8], buffer: &mut Vec<u8>) {
        let nonce = Nonce::from(*nonce);
        let result = match self {
            Self::Aes(cipher) => cipher.encrypt_in_place(&nonce, aad, buffer),
            Self::ChaCha(cipher) => cipher.encrypt_in_place(&nonce, aad, buffer),
        };
        // Only lengths past 2^36 bytes fail, far beyond any message limit.
        result.expect("the message fits the AEAD's length limit");
    }

    /// Checks the tag at the end of `buffer` and decrypts in place.
    pub(crate) fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buffer: &mut Vec<u8>,
    ) -> Result<(), Inauthentic> {
        let nonce = Nonce::from(*nonce);
        match self {
            Self::Aes(cipher) => cipher.decrypt_in_place(&nonce, aad, buffer),
            Self::ChaCha(cipher) => cipher.decrypt_in_place(&nonce, aad, buffer),
        }
        .map_err(|_| Inauthentic)
    }
}

/// HKDF-SHA256: extract with `salt` from `ikm`, expand `info` into a
/// 32-byte key.
pub(crate) fn derive(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    okm
}

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

pub(crate) fn fill_random(bytes: &mut [u8]) {
    getrandom::fill(bytes).expect("the OS random source is available");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base64_encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn public_keys_read_back_what_they_print() {
        let key = KeyPair::generate().public();
        assert_eq!(key.to_string().len(), 43);
        assert_eq!(key.to_string().parse::<PublicKey>(), Ok(key));
        assert_eq!("short".parse::<PublicKey>(), Err(InvalidPublicKey));
        assert_eq!("a".repeat(44).parse::<PublicKey>(), Err(InvalidPublicKey));
    }

    /// The same groups the browser module's `fingerprint` shows.
    #[test]
    fn fingerprints_match_the_browser_module() {
        let key = KeyPair::from_secret_bytes([4; 32]).public();
        assert_eq!(key.fingerprint(), "9942 8f8b 20c2 5e95 0740 451d f43b 4ace");
    }

    #[test]
    fn debug_shows_no_secret() {
        let pair = KeyPair::from_secret_bytes([7; 32]);
        let shown = format!("{pair:?}");
        assert!(shown.contains(&pair.public().to_string()));
        assert!(!shown.contains(&base64_encode(&[7; 32])));
        assert!(!shown.contains("[7, 7"));
    }

    #[test]
    fn x25519_matches_rfc_7748() {
        // RFC 7748 section 6.1: Alice's and Bob's keys and their shared secret.
        let hex = |s: &str| -> [u8; 32] {
            let bytes: Vec<u8> = (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect();
            bytes.try_into().unwrap()
        };
        let alice = KeyPair::from_secret_bytes(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = KeyPair::from_secret_bytes(hex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            alice.public().as_bytes(),
            &hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(*alice.agree(&bob.public()).unwrap(), shared);
        assert_eq!(*bob.agree(&alice.public()).unwrap(), shared);
        // A low-order point gives no secret.
        assert!(alice.agree(&PublicKey::from_bytes([0; 32])).is_none());
    }

    #[test]
    fn hkdf_matches_rfc_5869() {
        // RFC 5869 A.1, first 32 bytes of the 42-byte OKM.
        let okm = derive(
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            &[0x0b; 22],
            &[0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9],
        );
        assert_eq!(
            base64_encode(&okm[..]),
            base64_encode(&[
                0x3c, 0xb2, 0x5f, 0x25, 0xfa, 0xac, 0xd5, 0x7a, 0x90, 0x43, 0x4f, 0x64, 0xd0, 0x36,
                0x2f, 0x2a, 0x2d, 0x2d, 0x0a, 0x90, 0xcf, 0x1a, 0x5a, 0x4c, 0x5d, 0xb0, 0x2d, 0x56,
                0xec, 0xc4, 0xc5, 0xbf,
            ])
        );
    }
}
