//! Encrypted sessions, sans-IO: the key agreement that opens one and the
//! record layer that seals and opens every message after it.
//!
//! The client sends a *hello* (its ephemeral X25519 key and the AEADs it
//! accepts); the server answers with an *accept* (its ephemeral key, the
//! AEAD it chose, its long-term key if it has one, and a confirmation
//! value). Both derive, with HKDF-SHA256 over the transcript, one key per
//! direction. When the server has a long-term key it is mixed in, so only
//! its holder can compute the confirmation: a client that pinned that key
//! detects a man-in-the-middle at the handshake, before any message.
//!
//! Every message then goes as one binary WebSocket message: a kind byte
//! (text or binary), a 64-bit counter, the ciphertext and the tag. The
//! counter is the nonce and is authenticated, and each side accepts only
//! the next one, so a replayed, reordered, dropped or altered message is
//! refused with an [`OpenError`] saying which. A refused message leaves the
//! [`Opener`] as it was: the next genuine message still opens.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::{Cipher, KeyPair, PublicKey, Suite, TAG_LEN, derive, sha256};

/// The WebSocket subprotocol that announces an encrypted session. A client
/// offers it; a server that requires encryption lists it and requires it,
/// so a client that does not speak it is refused in the HTTP handshake.
pub const SUBPROTOCOL: &str = "ws-crypto.session.v1";

const VERSION: u8 = 1;
const HELLO: u8 = 1;
const ACCEPT: u8 = 2;
const TEXT: u8 = 3;
const BINARY: u8 = 4;
const LABEL: &[u8] = b"ws-crypto session v1";
const ACCEPT_LEN: usize = 2 + 32 + 1 + 1 + 32 + 32;
/// A record's kind byte and counter.
pub const RECORD_HEADER_LEN: usize = 9;
/// What sealing adds to each message: the header and the tag.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_LEN + TAG_LEN;

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The hello or accept is not one: wrong length or type byte.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The peer speaks another version of the handshake.
    #[error("unsupported handshake version {0}")]
    Version(u8),
    /// The client offered no AEAD the server accepts (or the server chose
    /// one the client did not offer).
    #[error("no AEAD both sides accept")]
    NoCommonSuite,
    /// A key was a low-order point, which would make the shared secret
    /// predictable.
    #[error("the peer's key is a low-order point")]
    WeakKey,
    /// The client pinned a server key but the server proved none.
    #[error("the server has no long-term key, but one is pinned")]
    ServerNotAuthenticated,
    /// The server's long-term key is not the pinned one.
    #[error("the server's key {got} is not the pinned key {pinned}")]
    ServerKeyMismatch {
        /// Fingerprint of the pinned key.
        pinned: String,
        /// Fingerprint of the key the server presented.
        got: String,
    },
    /// The server's confirmation does not match the keys the client
    /// derived: someone between the two changed the handshake.
    #[error("the server's key confirmation does not match: the handshake was altered")]
    ConfirmationFailed,
}

/// Why a sealed message was refused. The [`Opener`] is unchanged by a
/// refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not a sealed record: too short, or an unknown kind byte.
    #[error("not a sealed message")]
    Malformed,
    /// A counter already used: a replay, or an earlier message arriving
    /// late.
    #[error("message {counter} replayed or late (expected {expected})")]
    Replayed {
        /// The message's counter.
        counter: u64,
        /// The counter the opener waits for.
        expected: u64,
    },
    /// A counter past the next one: messages were dropped or reordered.
    #[error("message {counter} arrived before {expected}: messages were dropped or reordered")]
    Skipped {
        /// The message's counter.
        counter: u64,
        /// The counter the opener waits for.
        expected: u64,
    },
    /// The tag does not match: the message was altered or sealed under
    /// another key.
    #[error("message {counter} failed authentication: altered, or sealed with another key")]
    Tampered {
        /// The message's counter.
        counter: u64,
    },
    /// A text message whose plaintext is not UTF-8.
    #[error("text message {counter} is not UTF-8")]
    NotUtf8 {
        /// The message's counter.
        counter: u64,
    },
}

/// Sealing stopped: 2^64 - 1 messages went one way, and a counter may
/// never repeat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this direction of the session has used all its counters; open a new session")]
pub struct Exhausted;

/// What a sealed message carries besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A text message (its plaintext is checked to be UTF-8 when opened).
    Text,
    /// A binary message.
    Binary,
}

/// The client's side of the key agreement.
pub struct ClientHandshake {
    ephemeral: KeyPair,
    hello: Vec<u8>,
    pin: Option<PublicKey>,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// A handshake offering both AEADs (AES-256-GCM first). With `pin`, the
    /// server must prove it holds that long-term key.
    pub fn new(pin: Option<PublicKey>) -> Self {
        Self::with_suites(pin, &[Suite::Aes256Gcm, Suite::ChaCha20Poly1305])
    }

    /// A handshake offering `suites`, in order of preference.
    pub fn with_suites(pin: Option<PublicKey>, suites: &[Suite]) -> Self {
        Self::with_ephemeral(KeyPair::generate(), pin, suites)
    }

    pub(crate) fn with_ephemeral(
        ephemeral: KeyPair,
        pin: Option<PublicKey>,
        suites: &[Suite],
    ) -> Self {
        let mut hello = vec![HELLO, VERSION];
        hello.extend_from_slice(ephemeral.public().as_bytes());
        hello.push(u8::try_from(suites.len()).expect("at most two suites"));
        hello.extend(suites.iter().map(|suite| suite.id()));
        Self {
            ephemeral,
            hello,
            pin,
        }
    }

    /// The hello to send, as one binary message.
    pub fn hello(&self) -> &[u8] {
        &self.hello
    }

    /// Reads the server's accept and opens the session.
    pub fn finish(self, accept: &[u8]) -> Result<Session, HandshakeError> {
        if accept.len() != ACCEPT_LEN || accept[0] != ACCEPT {
            return Err(HandshakeError::Malformed("accept"));
        }
        if accept[1] != VERSION {
            return Err(HandshakeError::Version(accept[1]));
        }
        let server_ephemeral = PublicKey::from_bytes(accept[2..34].try_into().expect("32 bytes"));
        let suite = Suite::from_id(accept[34])
            .filter(|suite| self.hello[35..].contains(&suite.id()))
            .ok_or(HandshakeError::NoCommonSuite)?;
        let server_key = match accept[35] {
            0 => None,
            1 => Some(PublicKey::from_bytes(
                accept[36..68].try_into().expect("32 bytes"),
            )),
            _ => return Err(HandshakeError::Malformed("accept")),
        };
        match (self.pin, server_key) {
            (Some(_), None) => return Err(HandshakeError::ServerNotAuthenticated),
            (Some(pinned), Some(got)) if pinned != got => {
                return Err(HandshakeError::ServerKeyMismatch {
                    pinned: pinned.fingerprint(),
                    got: got.fingerprint(),
                });
            }
            _ => {}
        }
        let mut ikm = Zeroizing::new(Vec::with_capacity(64));
        ikm.extend_from_slice(
            &self
                .ephemeral
                .agree(&server_ephemeral)
                .ok_or(HandshakeError::WeakKey)?[..],
        );
        if let Some(key) = &server_key {
            ikm.extend_from_slice(&self.ephemeral.agree(key).ok_or(HandshakeError::WeakKey)?[..]);
        }
        let schedule = Schedule::new(&self.hello, &accept[..ACCEPT_LEN - 32], &ikm);
        if !bool::from(schedule.confirm[..].ct_eq(&accept[ACCEPT_LEN - 32..])) {
            return Err(HandshakeError::ConfirmationFailed);
        }
        Ok(Session {
            sealer: Sealer::new(suite, &schedule.client_to_server),
            opener: Opener::new(suite, &schedule.server_to_client),
            suite,
            server_key,
        })
    }
}

/// The server's side of the key agreement: its long-term key, if it has
/// one, and the AEADs it accepts. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandshake {
    key: Option<Arc<KeyPair>>,
    suites: Vec<Suite>,
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("key", &self.key.as_ref().map(|key| key.public()))
            .field("suites", &self.suites)
            .finish()
    }
}

impl ServerHandshake {
    /// A server with long-term key `key` (clients may pin its public half),
    /// or none (sessions are then encrypted but the server is not
    /// authenticated by this layer: use `wss://` or pin). Accepts both
    /// AEADs, choosing the client's first.
    pub fn new(key: Option<KeyPair>) -> Self {
        Self {
            key: key.map(Arc::new),
            suites: vec![Suite::Aes256Gcm, Suite::ChaCha20Poly1305],
        }
    }

    /// Accept only `suites`.
    pub fn suites(mut self, suites: &[Suite]) -> Self {
        self.suites = suites.to_vec();
        self
    }

    /// The public half of the long-term key, for clients to pin.
    pub fn public_key(&self) -> Option<PublicKey> {
        self.key.as_ref().map(|key| key.public())
    }

    /// Reads a client's hello; returns the session and the accept to send
    /// back as one binary message.
    pub fn accept(&self, hello: &[u8]) -> Result<(Session, Vec<u8>), HandshakeError> {
        self.accept_with(KeyPair::generate(), hello)
    }

    pub(crate) fn accept_with(
        &self,
        ephemeral: KeyPair,
        hello: &[u8],
    ) -> Result<(Session, Vec<u8>), HandshakeError> {
        if hello.len() < 35 || hello[0] != HELLO {
            return Err(HandshakeError::Malformed("hello"));
        }
        if hello[1] != VERSION {
            return Err(HandshakeError::Version(hello[1]));
        }
        let offered = &hello[35..];
        if offered.is_empty() || hello[34] as usize != offered.len() || offered.len() > 8 {
            return Err(HandshakeError::Malformed("hello"));
        }
        let suite = offered
            .iter()
            .filter_map(|&id| Suite::from_id(id))
            .find(|suite| self.suites.contains(suite))
            .ok_or(HandshakeError::NoCommonSuite)?;
        let client = PublicKey::from_bytes(hello[2..34].try_into().expect("32 bytes"));
        let mut ikm = Zeroizing::new(Vec::with_capacity(64));
        ikm.extend_from_slice(&ephemeral.agree(&client).ok_or(HandshakeError::WeakKey)?[..]);
        let mut accept = Vec::with_capacity(ACCEPT_LEN);
        accept.extend_from_slice(&[ACCEPT, VERSION]);
        accept.extend_from_slice(ephemeral.public().as_bytes());
        accept.push(suite.id());
        match &self.key {
            Some(key) => {
                ikm.extend_from_slice(&key.agree(&client).ok_or(HandshakeError::WeakKey)?[..]);
                accept.push(1);
                accept.extend_from_slice(key.public().as_bytes());
            }
            None => {
                accept.push(0);
                accept.extend_from_slice(&[0; 32]);
            }
        }
        let schedule = Schedule::new(hello, &accept, &ikm);
        accept.extend_from_slice(&schedule.confirm[..]);
        let session = Session {
            sealer: Sealer::new(suite, &schedule.server_to_client),
            opener: Opener::new(suite, &schedule.client_to_server),
            suite,
            server_key: self.public_key(),
        };
        Ok((session, accept))
    }
}

/// The key schedule: HKDF-SHA256 with the transcript's hash as salt.
struct Schedule {
    client_to_server: Zeroizing<[u8; 32]>,
    server_to_client: Zeroizing<[u8; 32]>,
    confirm: Zeroizing<[u8; 32]>,
}

impl Schedule {
    fn new(hello: &[u8], accept_head: &[u8], ikm: &[u8]) -> Self {
        let transcript = sha256(&[LABEL, hello, accept_head]);
        Self {
            client_to_server: derive(&transcript, ikm, b"client to server"),
            server_to_client: derive(&transcript, ikm, b"server to client"),
            confirm: derive(&transcript, ikm, b"server confirmation"),
        }
    }
}

/// An open session: a [`Sealer`] for what this side sends and an
/// [`Opener`] for what it receives.
pub struct Session {
    /// Seals what this side sends.
    pub sealer: Sealer,
    /// Opens what this side receives.
    pub opener: Opener,
    suite: Suite,
    server_key: Option<PublicKey>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("suite", &self.suite)
            .field("server_key", &self.server_key)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The AEAD the two sides agreed on.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The server's long-term key, if it proved one (on the client: pin it
    /// next time to detect a change).
    pub fn server_key(&self) -> Option<PublicKey> {
        self.server_key
    }
}

fn nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

/// Seals one direction's messages, numbering them from 0.
pub struct Sealer {
    cipher: Cipher,
    next: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    fn new(suite: Suite, key: &[u8; 32]) -> Self {
        Self {
            cipher: Cipher::new(suite, key),
            next: 0,
        }
    }

    /// The next message as a sealed record (to send as one binary
    /// message): `plaintext.len() +` [`RECORD_OVERHEAD`] bytes.
    pub fn seal(&mut self, kind: Kind, plaintext: &[u8]) -> Result<Vec<u8>, Exhausted> {
        let counter = self.next;
        self.next = counter.checked_add(1).ok_or(Exhausted)?;
        let mut record = Vec::with_capacity(plaintext.len() + RECORD_OVERHEAD);
        record.push(match kind {
            Kind::Text => TEXT,
            Kind::Binary => BINARY,
        });
        record.extend_from_slice(&counter.to_be_bytes());
        record.extend_from_slice(plaintext);
        let mut body = record.split_off(RECORD_HEADER_LEN);
        self.cipher.seal(&nonce(counter), &record, &mut body);
        record.extend_from_slice(&body);
        Ok(record)
    }

    /// Takes back the counter of the last sealed record, which was never
    /// sent (the connection's queue refused it).
    pub(crate) fn rewind(&mut self) {
        self.next -= 1;
    }
}

/// Opens one direction's messages, accepting only the next counter.
pub struct Opener {
    cipher: Cipher,
    expected: u64,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Opener {
    fn new(suite: Suite, key: &[u8; 32]) -> Self {
        Self {
            cipher: Cipher::new(suite, key),
            expected: 0,
        }
    }

    /// Opens `record`: its kind and plaintext, or why it was refused (the
    /// opener then still waits for the same counter).
    pub fn open(&mut self, record: &[u8]) -> Result<(Kind, Vec<u8>), OpenError> {
        if record.len() < RECORD_OVERHEAD {
            return Err(OpenError::Malformed);
        }
        let kind = match record[0] {
            TEXT => Kind::Text,
            BINARY => Kind::Binary,
            _ => return Err(OpenError::Malformed),
        };
        let counter = u64::from_be_bytes(record[1..9].try_into().expect("8 bytes"));
        let expected = self.expected;
        if counter < expected {
            return Err(OpenError::Replayed { counter, expected });
        }
        if counter > expected {
            return Err(OpenError::Skipped { counter, expected });
        }
        let mut body = record[RECORD_HEADER_LEN..].to_vec();
        self.cipher
            .open(&nonce(counter), &record[..RECORD_HEADER_LEN], &mut body)
            .map_err(|_| OpenError::Tampered { counter })?;
        if kind == Kind::Text && std::str::from_utf8(&body).is_err() {
            return Err(OpenError::NotUtf8 { counter });
        }
        // Past u64::MAX the sealer stops first, so this cannot wrap.
        self.expected = counter.saturating_add(1);
        Ok((kind, body))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn pair(pin: bool, suites: &[Suite]) -> (Session, Session) {
        let server = ServerHandshake::new(Some(KeyPair::from_secret_bytes([3; 32])));
        let pin = pin.then(|| server.public_key().unwrap());
        let client = ClientHandshake::with_suites(pin, suites);
        let (server_session, accept) = server.accept(client.hello()).unwrap();
        (client.finish(&accept).unwrap(), server_session)
    }

    // Secret keys: client ephemeral 32 bytes of 1, server ephemeral of 2,
    // server long-term of 3. Client sends text "hello", server binary 00 01.
    const KNOWN_HELLO: &str =
        "0101a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a2090101";
    const KNOWN_ACCEPT: &str = "0201ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d5901015dfedd3b6bd47f6fa28ee15d969d5bb0ea53774d488bdaf9df1c6e0124b3ef22d704e47aa06b7f551ddaa0f6c4b831eda628efb211a8bf4c75b688fe2b52d14b";
    const KNOWN_RECORD: &str = "030000000000000000fce349e9389e3998bf64ffca1fa0b8fc6e5880f7a8";
    const KNOWN_REPLY: &str = "0400000000000000005a8b5b7c3b4e53b8b5d3ca929fb715988075";

    /// Fixed ephemeral keys make the whole exchange a known answer; the
    /// JavaScript client checks the same vector.
    #[test]
    fn key_schedule_known_answer() {
        let server = ServerHandshake::new(Some(KeyPair::from_secret_bytes([3; 32])));
        let client = ClientHandshake::with_ephemeral(
            KeyPair::from_secret_bytes([1; 32]),
            server.public_key(),
            &[Suite::Aes256Gcm],
        );
        let client_hello = &client.hello().to_vec();
        let (mut at_server, accept) = server
            .accept_with(KeyPair::from_secret_bytes([2; 32]), client_hello)
            .unwrap();
        let mut at_client = client.finish(&accept).unwrap();
        let record = at_client.sealer.seal(Kind::Text, b"hello").unwrap();
        let reply = at_server.sealer.seal(Kind::Binary, b"\x00\x01").unwrap();
        assert_eq!(hex(client_hello), KNOWN_HELLO);
        assert_eq!(hex(&accept), KNOWN_ACCEPT);
        assert_eq!(hex(&record), KNOWN_RECORD);
        assert_eq!(hex(&reply), KNOWN_REPLY);
        assert_eq!(
            at_server.opener.open(&record).unwrap(),
            (Kind::Text, b"hello".to_vec())
        );
        assert_eq!(
            at_client.opener.open(&reply).unwrap(),
            (Kind::Binary, vec![0, 1])
        );
    }

    #[test]
    fn both_suites_agree() {
        for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            let (mut client, mut server) = pair(true, &[suite]);
            assert_eq!(client.suite(), suite);
            let record = client.sealer.seal(Kind::Binary, b"x").unwrap();
            assert_eq!(server.opener.open(&record).unwrap().1, b"x");
        }
    }

    #[test]
    fn a_pinned_key_detects_another_server() {
        let real = ServerHandshake::new(Some(KeyPair::generate()));
        let impostor = ServerHandshake::new(Some(KeyPair::generate()));
        let unkeyed = ServerHandshake::new(None);
        let client = ClientHandshake::new(real.public_key());
        let (_, accept) = impostor.accept(client.hello()).unwrap();
        assert!(matches!(
            client.finish(&accept),
            Err(HandshakeError::ServerKeyMismatch { .. })
        ));
        let client = ClientHandshake::new(real.public_key());
        let (_, accept) = unkeyed.accept(client.hello()).unwrap();
        assert_eq!(
            client.finish(&accept).unwrap_err(),
            HandshakeError::ServerNotAuthenticated
        );
    }

    /// A man-in-the-middle who swaps in the real server's public key but
    /// not its secret cannot produce the confirmation.
    #[test]
    fn a_forged_accept_fails_confirmation() {
        let real = ServerHandshake::new(Some(KeyPair::generate()));
        let client = ClientHandshake::new(real.public_key());
        let (_, mut accept) = ServerHandshake::new(Some(KeyPair::generate()))
            .accept(client.hello())
            .unwrap();
        accept[36..68].copy_from_slice(real.public_key().unwrap().as_bytes());
        assert_eq!(
            client.finish(&accept).unwrap_err(),
            HandshakeError::ConfirmationFailed
        );
        // An altered suite or ephemeral key fails the same way.
        let client = ClientHandshake::new(None);
        let (_, mut accept) = real.accept(client.hello()).unwrap();
        accept[5] ^= 1;
        assert_eq!(
            client.finish(&accept).unwrap_err(),
            HandshakeError::ConfirmationFailed
        );
    }

    #[test]
    fn malformed_handshakes_are_refused() {
        let server = ServerHandshake::new(None).suites(&[Suite::Aes256Gcm]);
        assert_eq!(
            server.accept(b"").unwrap_err(),
            HandshakeError::Malformed("hello")
        );
        let chacha_only = ClientHandshake::with_suites(None, &[Suite::ChaCha20Poly1305]);
        assert_eq!(
            server.accept(chacha_only.hello()).unwrap_err(),
            HandshakeError::NoCommonSuite
        );
        let mut hello = ClientHandshake::new(None).hello().to_vec();
        hello[1] = 9;
        assert_eq!(
            server.accept(&hello).unwrap_err(),
            HandshakeError::Version(9)
        );
        let mut low_order = ClientHandshake::new(None).hello().to_vec();
        low_order[2..34].fill(0);
        assert_eq!(
            server.accept(&low_order).unwrap_err(),
            HandshakeError::WeakKey
        );
        assert_eq!(
            ClientHandshake::new(None).finish(&[2; 10]).unwrap_err(),
            HandshakeError::Malformed("accept")
        );
    }

    #[test]
    fn replayed_reordered_and_dropped_messages_are_refused_and_the_session_goes_on() {
        let (mut client, mut server) = pair(false, &[Suite::Aes256Gcm]);
        let first = client.sealer.seal(Kind::Text, b"one").unwrap();
        let second = client.sealer.seal(Kind::Text, b"two").unwrap();
        let third = client.sealer.seal(Kind::Text, b"three").unwrap();
        // Reordered: the second arrives first.
        assert_eq!(
            server.opener.open(&second).unwrap_err(),
            OpenError::Skipped {
                counter: 1,
                expected: 0
            }
        );
        assert_eq!(server.opener.open(&first).unwrap().1, b"one");
        // Replayed.
        assert_eq!(
            server.opener.open(&first).unwrap_err(),
            OpenError::Replayed {
                counter: 0,
                expected: 1
            }
        );
        // Altered counter: authenticated, so it cannot be "fixed" by the attacker.
        let mut moved = third.clone();
        moved[8] = 1;
        assert_eq!(
            server.opener.open(&moved).unwrap_err(),
            OpenError::Tampered { counter: 1 }
        );
        assert_eq!(server.opener.open(&second).unwrap().1, b"two");
        assert_eq!(server.opener.open(&third).unwrap().1, b"three");
        // A record from the other direction (other key) is refused.
        let back = server.sealer.seal(Kind::Text, b"back").unwrap();
        let mut client_again = client.opener;
        let forged = {
            let mut r = back.clone();
            r[0] = BINARY;
            r
        };
        assert_eq!(
            client_again.open(&forged).unwrap_err(),
            OpenError::Tampered { counter: 0 }
        );
        assert_eq!(client_again.open(&back).unwrap().1, b"back");
        assert_eq!(
            client_again.open(b"short").unwrap_err(),
            OpenError::Malformed
        );
    }

    #[test]
    fn text_must_be_utf8() {
        let (mut client, mut server) = pair(false, &[Suite::Aes256Gcm]);
        let record = client.sealer.seal(Kind::Text, &[0xff, 0xfe]).unwrap();
        assert_eq!(
            server.opener.open(&record).unwrap_err(),
            OpenError::NotUtf8 { counter: 0 }
        );
    }

    #[test]
    fn the_last_counter_is_never_reused() {
        let (mut client, _) = pair(false, &[Suite::Aes256Gcm]);
        client.sealer.next = u64::MAX;
        assert_eq!(
            client.sealer.seal(Kind::Binary, b"").unwrap_err(),
            Exhausted
        );
        assert_eq!(
            client.sealer.seal(Kind::Binary, b"").unwrap_err(),
            Exhausted
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let (client, _) = pair(true, &[Suite::Aes256Gcm]);
        let shown = format!(
            "{client:?} {:?}",
            ServerHandshake::new(Some(KeyPair::from_secret_bytes([3; 32])))
        );
        assert!(!shown.contains("[3, 3"), "{shown}");
        assert!(shown.contains("Aes256Gcm"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn seal_then_open_round_trips(
            messages in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..300)), 1..8),
            chacha in any::<bool>(),
        ) {
            let suite = if chacha { Suite::ChaCha20Poly1305 } else { Suite::Aes256Gcm };
            let (mut client, mut server) = pair(false, &[suite]);
            for (binary, bytes) in messages {
                let (kind, bytes) = if binary {
                    (Kind::Binary, bytes)
                } else {
                    (Kind::Text, String::from_utf8_lossy(&bytes).into_owned().into_bytes())
                };
                let record = client.sealer.seal(kind, &bytes).unwrap();
                prop_assert_eq!(record.len(), bytes.len() + RECORD_OVERHEAD);
                prop_assert_eq!(server.opener.open(&record).unwrap(), (kind, bytes));
            }
        }

        #[test]
        fn any_flipped_bit_is_refused(len in 0usize..64, bit in any::<prop::sample::Index>()) {
            let (mut client, mut server) = pair(false, &[Suite::Aes256Gcm]);
            let record = client.sealer.seal(Kind::Binary, &vec![7; len]).unwrap();
            let mut flipped = record.clone();
            let bit = bit.index(record.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(server.opener.open(&flipped).is_err());
            prop_assert_eq!(server.opener.open(&record).unwrap().1, vec![7; len]);
        }
    }
}
