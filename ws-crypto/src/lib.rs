//! Encryption above TLS for WebSocket connections and channels.
//!
//! - [`session`]: an encrypted session between a client and a server,
//!   negotiated as the WebSocket subprotocol [`session::SUBPROTOCOL`]: an
//!   X25519 key agreement (optionally proving a long-term server key the
//!   client pins), HKDF-SHA256 for one key per direction, and an AEAD
//!   (AES-256-GCM by default, ChaCha20-Poly1305 as an option) over every
//!   message with its counter as nonce, so replayed, reordered, dropped or
//!   altered messages are refused.
//! - [`channel`]: end-to-end encrypted `ws-channels` channels: the owner's
//!   client makes each epoch's channel key and wraps it to every member's
//!   X25519 key; the server relays and stores only wrapped keys and
//!   ciphertext.
//!
//! Both are sans-IO. Every primitive comes from the RustCrypto crates
//! (`x25519-dalek`, `hkdf`, `sha2`, `aes-gcm`, `chacha20poly1305`); secret
//! keys are zeroized when dropped and never appear in `Debug` output or
//! errors.

pub mod channel;
pub mod client;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod keys;
pub mod sealed;
pub mod session;

pub use keys::{InvalidPublicKey, KeyPair, PublicKey, Suite};
