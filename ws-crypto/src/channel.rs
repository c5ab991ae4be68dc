//! End-to-end encrypted channels, sans-IO: channel keys per epoch, wrapped
//! to each member's X25519 key, and messages sealed under them.
//!
//! A channel key is 32 random bytes made by the owner's client. It reaches
//! a member *wrapped*: sealed with AES-256-GCM under a key derived
//! (HKDF-SHA256) from X25519 between a fresh ephemeral key and the member's
//! public key, bound to the channel, the epoch and the member's session. The
//! server relays and stores wrapped keys and ciphertext only.
//!
//! Each message is sealed under the current epoch's key with a random
//! 96-bit nonce; its associated data binds the channel, the epoch, the
//! sender's session and the sender's sequence number, so a ciphertext moved
//! to another channel, epoch or sender, or altered, fails to open, and a
//! sequence number at or below the last one seen from that sender in that
//! epoch is refused as a replay. Every refusal is an [`E2eError`] and
//! leaves the [`Keyring`] usable.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::keys::{
    Cipher, KeyPair, PublicKey, Suite, TAG_LEN, base64_decode, base64_encode, derive, fill_random,
};

const WRAP_LABEL: &[u8] = b"ws-crypto e2e wrap v1";
const MESSAGE_LABEL: &[u8] = b"ws-crypto e2e message v1";
/// Epochs whose keys a keyring keeps, so messages sealed just before a
/// rotation still open.
pub const KEPT_EPOCHS: usize = 4;
/// Senders whose sequence numbers a keyring tracks per epoch; past it,
/// messages from new senders are refused rather than replay protection
/// dropped.
pub const MAX_SENDERS_PER_EPOCH: usize = 100_000;
const WRAPPED_LEN: usize = 32 + 32 + TAG_LEN;

/// What an end-to-end encrypted channel carries as the `data` of a
/// publication: `{"e2e": "keys", ...}` or `{"e2e": "msg", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "e2e", rename_all = "snake_case", deny_unknown_fields)]
pub enum E2eData {
    /// A new epoch's key (or the current one, for a member who joined),
    /// wrapped for each listed session.
    Keys {
        /// The epoch the key is for.
        epoch: u64,
        /// Session id to wrapped key (unpadded base64url).
        keys: BTreeMap<String, String>,
    },
    /// A sealed message.
    Msg {
        /// The epoch whose key sealed it.
        epoch: u64,
        /// The sender's sequence number in that epoch, from 1.
        seq: u64,
        /// The AEAD nonce (unpadded base64url, 12 bytes).
        nonce: String,
        /// Ciphertext and tag (unpadded base64url).
        ct: String,
    },
}

/// Why an end-to-end operation failed. A refused message changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eError {
    /// The keyring has no key to seal with yet: the owner has not handed
    /// this member one.
    #[error("no channel key yet: waiting for the owner to hand one over")]
    NoKey,
    /// The message is sealed under an epoch whose key this member does not
    /// have: it joined later, or was removed before that epoch began.
    #[error("no key for epoch {epoch}")]
    UnknownEpoch {
        /// The message's epoch.
        epoch: u64,
    },
    /// A sequence number at or below the last one seen from that sender in
    /// that epoch: a replay, or a reordered message.
    #[error("message {seq} from {sender} replayed or reordered (last seen {last})")]
    Replayed {
        /// The sender's session.
        sender: String,
        /// The message's sequence number.
        seq: u64,
        /// The last sequence number opened from that sender in that epoch.
        last: u64,
    },
    /// The tag does not match: the ciphertext was altered, sealed with
    /// another key, or moved to another channel, epoch or sender.
    #[error(
        "message failed authentication: altered, or moved from another channel, epoch or sender"
    )]
    Tampered,
    /// A wrapped key that does not open with this member's key.
    #[error("the wrapped key for epoch {epoch} does not open with this member's key")]
    BadWrappedKey {
        /// The epoch of the key.
        epoch: u64,
    },
    /// A second, different key for an epoch this keyring already has.
    #[error("a second, different key for epoch {epoch}")]
    KeyConflict {
        /// The epoch.
        epoch: u64,
    },
    /// A public key that is a low-order point.
    #[error("the member's public key is a low-order point")]
    WeakKey,
    /// The keyring tracks [`MAX_SENDERS_PER_EPOCH`] senders in this epoch.
    #[error("too many senders in epoch {epoch}")]
    TooManySenders {
        /// The epoch.
        epoch: u64,
    },
    /// Not an end-to-end message: bad base64, wrong lengths, no `e2e` tag.
    #[error("malformed end-to-end data: {0}")]
    Malformed(&'static str),
}

/// Length-prefixed concatenation, so no two different field lists make the
/// same bytes.
fn bind(label: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out = label.to_vec();
    for field in fields {
        out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Wraps `key` from `owner` for the member whose session is `session` and
/// public key is `to`: 80 bytes (ephemeral public key, sealed key, tag) as
/// base64url. Both an ephemeral key and the owner's key are agreed with the
/// member's, so only the owner can make a wrapped key its members accept.
fn wrap(
    owner: &KeyPair,
    key: &[u8; 32],
    channel: &str,
    epoch: u64,
    session: &str,
    to: &PublicKey,
) -> Result<String, E2eError> {
    wrap_with(
        owner,
        &KeyPair::generate(),
        key,
        channel,
        epoch,
        session,
        to,
    )
}

fn wrap_with(
    owner: &KeyPair,
    ephemeral: &KeyPair,
    key: &[u8; 32],
    channel: &str,
    epoch: u64,
    session: &str,
    to: &PublicKey,
) -> Result<String, E2eError> {
    let mut shared = Zeroizing::new(ephemeral.agree(to).ok_or(E2eError::WeakKey)?.to_vec());
    shared.extend_from_slice(&owner.agree(to).ok_or(E2eError::WeakKey)?[..]);
    let keys = [ephemeral.public(), owner.public(), *to];
    let wrapping = wrapping_key(&shared, &keys, channel, epoch, session);
    let mut sealed = key.to_vec();
    Cipher::new(Suite::Aes256Gcm, &wrapping).seal(&[0; 12], &[], &mut sealed);
    let mut out = ephemeral.public().as_bytes().to_vec();
    out.extend_from_slice(&sealed);
    Ok(base64_encode(&out))
}

/// `public_keys`: the ephemeral, the owner's and the member's.
fn wrapping_key(
    shared: &[u8],
    public_keys: &[PublicKey; 3],
    channel: &str,
    epoch: u64,
    session: &str,
) -> Zeroizing<[u8; 32]> {
    let salt: Vec<u8> = public_keys.iter().flat_map(|key| *key.as_bytes()).collect();
    let info = bind(
        WRAP_LABEL,
        &[channel.as_bytes(), &epoch.to_be_bytes(), session.as_bytes()],
    );
    derive(&salt, shared, &info)
}

fn unwrap(
    member: &KeyPair,
    owner: &PublicKey,
    wrapped: &str,
    channel: &str,
    epoch: u64,
    session: &str,
) -> Result<Zeroizing<[u8; 32]>, E2eError> {
    let bytes = base64_decode(wrapped)
        .filter(|bytes| bytes.len() == WRAPPED_LEN)
        .ok_or(E2eError::Malformed("wrapped key"))?;
    let ephemeral = PublicKey::from_bytes(bytes[..32].try_into().expect("32 bytes"));
    let mut shared = Zeroizing::new(member.agree(&ephemeral).ok_or(E2eError::WeakKey)?.to_vec());
    shared.extend_from_slice(&member.agree(owner).ok_or(E2eError::WeakKey)?[..]);
    let keys = [ephemeral, *owner, member.public()];
    let wrapping = wrapping_key(&shared, &keys, channel, epoch, session);
    let mut key = Zeroizing::new(bytes[32..].to_vec());
    Cipher::new(Suite::Aes256Gcm, &wrapping)
        .open(&[0; 12], &[], &mut key)
        .map_err(|_| E2eError::BadWrappedKey { epoch })?;
    Ok(Zeroizing::new(key[..].try_into().expect("32 bytes")))
}

fn message_aad(channel: &str, epoch: u64, sender: &str, seq: u64) -> Vec<u8> {
    bind(
        MESSAGE_LABEL,
        &[
            channel.as_bytes(),
            &epoch.to_be_bytes(),
            sender.as_bytes(),
            &seq.to_be_bytes(),
        ],
    )
}

struct EpochKey {
    key: Zeroizing<[u8; 32]>,
    cipher: Cipher,
    /// Last sequence number opened per sender.
    last_seen: HashMap<String, u64>,
}

impl EpochKey {
    fn new(key: Zeroizing<[u8; 32]>) -> Self {
        Self {
            cipher: Cipher::new(Suite::Aes256Gcm, &key),
            key,
            last_seen: HashMap::new(),
        }
    }
}

/// One member's keys for one channel: the epochs' keys it was handed (the
/// last [`KEPT_EPOCHS`]), its own sequence numbers, and the last sequence
/// number seen from every sender.
pub struct Keyring {
    channel: String,
    epochs: BTreeMap<u64, EpochKey>,
    /// [`MAX_SENDERS_PER_EPOCH`]; lower in tests.
    max_senders: usize,
    next_seq: u64,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("channel", &self.channel)
            .field("epochs", &self.epochs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// An empty keyring for `channel`.
    pub fn new(channel: impl Into<String>) -> Self {
        Self {
            channel: channel.into(),
            epochs: BTreeMap::new(),
            next_seq: 1,
            max_senders: MAX_SENDERS_PER_EPOCH,
        }
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The newest epoch this keyring has a key for.
    pub fn current_epoch(&self) -> Option<u64> {
        self.epochs.keys().next_back().copied()
    }

    fn install(&mut self, epoch: u64, key: Zeroizing<[u8; 32]>) {
        let newest = self.current_epoch();
        self.epochs.insert(epoch, EpochKey::new(key));
        if newest.is_none_or(|newest| epoch > newest) {
            self.next_seq = 1;
        }
        while self.epochs.len() > KEPT_EPOCHS {
            self.epochs.pop_first();
        }
    }

    /// (Owner) Starts the next epoch with a fresh key and returns its
    /// number; hand it out with [`wrap_current`](Self::wrap_current).
    pub fn rotate(&mut self) -> u64 {
        let epoch = self.current_epoch().map_or(1, |epoch| epoch + 1);
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(key.as_mut());
        self.install(epoch, key);
        epoch
    }

    /// (Owner) The current epoch's key wrapped for each `(session, public
    /// key)`, as the data to publish.
    pub fn wrap_current<'a>(
        &self,
        owner: &KeyPair,
        members: impl IntoIterator<Item = (&'a str, &'a PublicKey)>,
    ) -> Result<E2eData, E2eError> {
        let (&epoch, current) = self.epochs.last_key_value().ok_or(E2eError::NoKey)?;
        let keys = members
            .into_iter()
            .map(|(session, public)| {
                Ok((
                    session.to_owned(),
                    wrap(owner, &current.key, &self.channel, epoch, session, public)?,
                ))
            })
            .collect::<Result<_, E2eError>>()?;
        Ok(E2eData::Keys { epoch, keys })
    }

    /// (Member) Takes this member's key out of a [`E2eData::Keys`] wrapped
    /// by the owner whose public key is `owner`. Returns the epoch, or
    /// `None` when nothing in it is for `session` (or the epoch is older
    /// than every kept one).
    pub fn accept_keys(
        &mut self,
        member: &KeyPair,
        owner: &PublicKey,
        session: &str,
        data: &E2eData,
    ) -> Result<Option<u64>, E2eError> {
        let E2eData::Keys { epoch, keys } = data else {
            return Err(E2eError::Malformed("not a key hand-over"));
        };
        let Some(wrapped) = keys.get(session) else {
            return Ok(None);
        };
        if self.epochs.len() == KEPT_EPOCHS
            && self
                .epochs
                .first_key_value()
                .is_some_and(|(&oldest, _)| *epoch < oldest)
        {
            return Ok(None);
        }
        let key = unwrap(member, owner, wrapped, &self.channel, *epoch, session)?;
        match self.epochs.get(epoch) {
            Some(existing) if existing.key[..] == key[..] => {}
            Some(_) => return Err(E2eError::KeyConflict { epoch: *epoch }),
            None => self.install(*epoch, key),
        }
        Ok(Some(*epoch))
    }

    /// Seals `plaintext` from `sender` (this member's session) under the
    /// current epoch.
    pub fn seal(&mut self, sender: &str, plaintext: &[u8]) -> Result<E2eData, E2eError> {
        let (&epoch, current) = self.epochs.last_key_value().ok_or(E2eError::NoKey)?;
        let seq = self.next_seq;
        let mut nonce = [0u8; 12];
        fill_random(&mut nonce);
        let mut ct = plaintext.to_vec();
        current.cipher.seal(
            &nonce,
            &message_aad(&self.channel, epoch, sender, seq),
            &mut ct,
        );
        self.next_seq += 1;
        Ok(E2eData::Msg {
            epoch,
            seq,
            nonce: base64_encode(&nonce),
            ct: base64_encode(&ct),
        })
    }

    /// Opens a message that `sender` (the session the server says sent it)
    /// published.
    pub fn open(&mut self, sender: &str, data: &E2eData) -> Result<Vec<u8>, E2eError> {
        let E2eData::Msg {
            epoch,
            seq,
            nonce,
            ct,
        } = data
        else {
            return Err(E2eError::Malformed("not a sealed message"));
        };
        let nonce: [u8; 12] = base64_decode(nonce)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(E2eError::Malformed("nonce"))?;
        let mut body = base64_decode(ct)
            .filter(|bytes| bytes.len() >= TAG_LEN)
            .ok_or(E2eError::Malformed("ciphertext"))?;
        let channel = &self.channel;
        let key = self
            .epochs
            .get_mut(epoch)
            .ok_or(E2eError::UnknownEpoch { epoch: *epoch })?;
        let last = key.last_seen.get(sender).copied().unwrap_or(0);
        if *seq <= last {
            return Err(E2eError::Replayed {
                sender: sender.to_owned(),
                seq: *seq,
                last,
            });
        }
        if last == 0 && key.last_seen.len() >= self.max_senders {
            return Err(E2eError::TooManySenders { epoch: *epoch });
        }
        key.cipher
            .open(
                &nonce,
                &message_aad(channel, *epoch, sender, *seq),
                &mut body,
            )
            .map_err(|_| E2eError::Tampered)?;
        key.last_seen.insert(sender.to_owned(), *seq);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    struct Member {
        key: KeyPair,
        session: &'static str,
        ring: Keyring,
    }

    fn member(channel: &str, session: &'static str) -> Member {
        Member {
            key: KeyPair::generate(),
            session,
            ring: Keyring::new(channel),
        }
    }

    /// An owner and two members sharing epoch 1 of `room`.
    fn room() -> (Member, Member, Member) {
        let mut owner = member("room", "000000000000000a");
        let mut bob = member("room", "000000000000000b");
        let mut cy = member("room", "000000000000000c");
        assert_eq!(owner.ring.rotate(), 1);
        let keys = owner
            .ring
            .wrap_current(
                &owner.key,
                [
                    (bob.session, &bob.key.public()),
                    (cy.session, &cy.key.public()),
                ],
            )
            .unwrap();
        for m in [&mut bob, &mut cy] {
            assert_eq!(
                m.ring
                    .accept_keys(&m.key, &owner.key.public(), m.session, &keys),
                Ok(Some(1))
            );
        }
        (owner, bob, cy)
    }

    fn with_msg(
        data: &E2eData,
        change: impl FnOnce(&mut u64, &mut u64, &mut String, &mut String),
    ) -> E2eData {
        let mut data = data.clone();
        if let E2eData::Msg {
            epoch,
            seq,
            nonce,
            ct,
        } = &mut data
        {
            change(epoch, seq, nonce, ct);
        }
        data
    }

    #[test]
    fn wrapping_known_answer() {
        let member = KeyPair::from_secret_bytes([5; 32]);
        let owner = KeyPair::from_secret_bytes([4; 32]);
        let wrapped = wrap_with(
            &owner,
            &KeyPair::from_secret_bytes([6; 32]),
            &[9; 32],
            "room",
            3,
            "000000000000000b",
            &member.public(),
        )
        .unwrap();
        assert_eq!(wrapped, KNOWN_WRAPPED);
        assert_eq!(
            *unwrap(
                &member,
                &owner.public(),
                &wrapped,
                "room",
                3,
                "000000000000000b"
            )
            .unwrap(),
            [9; 32]
        );
        // Bound to the channel, the epoch and the session.
        for (channel, epoch, session) in [
            ("hall", 3, "000000000000000b"),
            ("room", 4, "000000000000000b"),
            ("room", 3, "000000000000000c"),
        ] {
            assert_eq!(
                unwrap(&member, &owner.public(), &wrapped, channel, epoch, session).unwrap_err(),
                E2eError::BadWrappedKey { epoch }
            );
        }
        assert_eq!(
            unwrap(
                &KeyPair::generate(),
                &owner.public(),
                &wrapped,
                "room",
                3,
                "000000000000000b"
            )
            .unwrap_err(),
            E2eError::BadWrappedKey { epoch: 3 }
        );
        // Wrapped by anyone but the owner: refused.
        let forged = wrap(
            &KeyPair::generate(),
            &[9; 32],
            "room",
            3,
            "000000000000000b",
            &member.public(),
        )
        .unwrap();
        assert_eq!(
            unwrap(
                &member,
                &owner.public(),
                &forged,
                "room",
                3,
                "000000000000000b"
            )
            .unwrap_err(),
            E2eError::BadWrappedKey { epoch: 3 }
        );
        assert_eq!(
            unwrap(
                &member,
                &owner.public(),
                "AAAA",
                "room",
                3,
                "000000000000000b"
            )
            .unwrap_err(),
            E2eError::Malformed("wrapped key")
        );
    }

    // Owner secret 32 bytes of 4, member of 5, ephemeral of 6, channel key of 9,
    // channel "room", epoch 3, session "000000000000000b".
    const KNOWN_WRAPPED: &str = "9bLW5g-Ud-MQwpgtqqbJE2wQihd3xZR-RI-jfWgXRVeZpmebw8haZKdG2NNgvR5x1NAQ9nuwRjKxpfOwZo1JsY63XbB41MTK_RSwsI48srU";

    #[test]
    fn members_read_each_other_and_the_owner() {
        let (mut owner, mut bob, mut cy) = room();
        let sealed = bob.ring.seal(bob.session, b"hi all").unwrap();
        assert_eq!(owner.ring.open(bob.session, &sealed).unwrap(), b"hi all");
        assert_eq!(cy.ring.open(bob.session, &sealed).unwrap(), b"hi all");
        let sealed = owner.ring.seal(owner.session, b"welcome").unwrap();
        assert_eq!(bob.ring.open(owner.session, &sealed).unwrap(), b"welcome");
    }

    #[test]
    fn replayed_and_reordered_messages_are_refused() {
        let (_owner, mut bob, mut cy) = room();
        let first = bob.ring.seal(bob.session, b"1").unwrap();
        let second = bob.ring.seal(bob.session, b"2").unwrap();
        assert_eq!(cy.ring.open(bob.session, &second).unwrap(), b"2");
        let late = cy.ring.open(bob.session, &first).unwrap_err();
        assert_eq!(
            late,
            E2eError::Replayed {
                sender: bob.session.into(),
                seq: 1,
                last: 2
            }
        );
        assert!(matches!(
            cy.ring.open(bob.session, &second),
            Err(E2eError::Replayed { .. })
        ));
        let third = bob.ring.seal(bob.session, b"3").unwrap();
        assert_eq!(cy.ring.open(bob.session, &third).unwrap(), b"3");
    }

    #[test]
    fn moved_or_altered_ciphertext_is_refused() {
        let (mut owner, mut bob, mut cy) = room();
        let sealed = bob.ring.seal(bob.session, b"secret").unwrap();
        // Claimed by another sender.
        assert_eq!(
            cy.ring.open(owner.session, &sealed).unwrap_err(),
            E2eError::Tampered
        );
        // Another sequence number.
        let renumbered = with_msg(&sealed, |_, seq, _, _| *seq += 5);
        assert_eq!(
            cy.ring.open(bob.session, &renumbered).unwrap_err(),
            E2eError::Tampered
        );
        // Another channel whose members have the same key bytes: still refused.
        let mut hall = Keyring::new("hall");
        hall.install(1, Zeroizing::new(*cy.ring.epochs[&1].key));
        assert_eq!(
            hall.open(bob.session, &sealed).unwrap_err(),
            E2eError::Tampered
        );
        // Another epoch with the same key bytes.
        cy.ring.install(2, Zeroizing::new(*cy.ring.epochs[&1].key));
        let moved = with_msg(&sealed, |epoch, _, _, _| *epoch = 2);
        assert_eq!(
            cy.ring.open(bob.session, &moved).unwrap_err(),
            E2eError::Tampered
        );
        // A flipped bit of ciphertext, and a wrong key.
        let flipped = with_msg(&sealed, |_, _, _, ct| {
            let mut bytes = base64_decode(ct).unwrap();
            bytes[0] ^= 0x80;
            *ct = base64_encode(&bytes);
        });
        assert_eq!(
            owner.ring.open(bob.session, &flipped).unwrap_err(),
            E2eError::Tampered
        );
        let mut stranger = Keyring::new("room");
        stranger.rotate();
        assert_eq!(
            stranger.open(bob.session, &sealed).unwrap_err(),
            E2eError::Tampered
        );
        // None of the refusals used up the message.
        assert_eq!(owner.ring.open(bob.session, &sealed).unwrap(), b"secret");
        let garbage = with_msg(&sealed, |_, _, nonce, _| *nonce = "!".into());
        assert_eq!(
            bob.ring.open(bob.session, &garbage).unwrap_err(),
            E2eError::Malformed("nonce")
        );
    }

    #[test]
    fn a_removed_member_cannot_read_the_next_epoch() {
        let (mut owner, mut bob, mut cy) = room();
        // Cy is kicked: the owner rotates and wraps for Bob only.
        assert_eq!(owner.ring.rotate(), 2);
        let keys = owner
            .ring
            .wrap_current(&owner.key, [(bob.session, &bob.key.public())])
            .unwrap();
        assert_eq!(
            bob.ring
                .accept_keys(&bob.key, &owner.key.public(), bob.session, &keys),
            Ok(Some(2))
        );
        assert_eq!(
            cy.ring
                .accept_keys(&cy.key, &owner.key.public(), cy.session, &keys),
            Ok(None)
        );
        // Cy's own key under Bob's entry does not open it either.
        let E2eData::Keys { keys: wrapped, .. } = &keys else {
            unreachable!()
        };
        let stolen = E2eData::Keys {
            epoch: 2,
            keys: [(cy.session.to_owned(), wrapped[bob.session].clone())].into(),
        };
        assert_eq!(
            cy.ring
                .accept_keys(&cy.key, &owner.key.public(), cy.session, &stolen),
            Err(E2eError::BadWrappedKey { epoch: 2 })
        );
        let sealed = bob.ring.seal(bob.session, b"after the kick").unwrap();
        assert_eq!(
            owner.ring.open(bob.session, &sealed).unwrap(),
            b"after the kick"
        );
        assert_eq!(
            cy.ring.open(bob.session, &sealed).unwrap_err(),
            E2eError::UnknownEpoch { epoch: 2 }
        );
        // Cy cannot seal into epoch 2 either: its messages stay in epoch 1,
        // which the others still open (sent before the rotation reached them).
        let from_cy = cy.ring.seal(cy.session, b"late").unwrap();
        assert_eq!(bob.ring.open(cy.session, &from_cy).unwrap(), b"late");
    }

    #[test]
    fn a_second_key_for_an_epoch_is_refused() {
        let (owner, mut bob, _) = room();
        let mut other = Keyring::new("room");
        other.rotate();
        let again = other
            .wrap_current(&owner.key, [(bob.session, &bob.key.public())])
            .unwrap();
        assert_eq!(
            bob.ring
                .accept_keys(&bob.key, &owner.key.public(), bob.session, &again),
            Err(E2eError::KeyConflict { epoch: 1 })
        );
        // The same key again is harmless.
        let same = owner
            .ring
            .wrap_current(&owner.key, [(bob.session, &bob.key.public())])
            .unwrap();
        assert_eq!(
            bob.ring
                .accept_keys(&bob.key, &owner.key.public(), bob.session, &same),
            Ok(Some(1))
        );
    }

    #[test]
    fn senders_past_the_bound_are_refused_and_known_ones_still_open() {
        let (mut owner, mut bob, mut cy) = room();
        cy.ring.max_senders = 2;
        let from_owner = owner.ring.seal(owner.session, b"1").unwrap();
        let from_bob = bob.ring.seal(bob.session, b"2").unwrap();
        let mut third = member("room", "000000000000000d");
        third
            .ring
            .install(1, Zeroizing::new(*owner.ring.epochs[&1].key));
        let from_third = third.ring.seal(third.session, b"3").unwrap();
        assert_eq!(cy.ring.open(owner.session, &from_owner).unwrap(), b"1");
        assert_eq!(cy.ring.open(bob.session, &from_bob).unwrap(), b"2");
        assert_eq!(
            cy.ring.open(third.session, &from_third).unwrap_err(),
            E2eError::TooManySenders { epoch: 1 }
        );
        let again = bob.ring.seal(bob.session, b"4").unwrap();
        assert_eq!(cy.ring.open(bob.session, &again).unwrap(), b"4");
    }

    #[test]
    fn only_the_last_epochs_are_kept() {
        let (mut owner, ..) = room();
        for _ in 0..10 {
            owner.ring.rotate();
        }
        assert_eq!(owner.ring.epochs.len(), KEPT_EPOCHS);
        assert_eq!(owner.ring.current_epoch(), Some(11));
        assert_eq!(
            Keyring::new("x").seal("s", b"").unwrap_err(),
            E2eError::NoKey
        );
    }

    #[test]
    fn the_wire_form_is_tagged_json() {
        let data: E2eData = serde_json::from_str(
            r#"{"e2e": "msg", "epoch": 1, "seq": 2, "nonce": "AAAAAAAAAAAAAAAA", "ct": "AAAAAAAAAAAAAAAAAAAAAA"}"#,
        )
        .unwrap();
        assert!(matches!(
            data,
            E2eData::Msg {
                epoch: 1,
                seq: 2,
                ..
            }
        ));
        assert!(serde_json::from_str::<E2eData>(r#"{"text": "plain"}"#).is_err());
        assert!(
            serde_json::from_str::<E2eData>(r#"{"e2e": "keys", "epoch": 1, "keys": {}, "x": 1}"#)
                .is_err()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn seal_then_open_round_trips(messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6)) {
            let (_owner, mut bob, mut cy) = room();
            for bytes in messages {
                let sealed = bob.ring.seal(bob.session, &bytes).unwrap();
                prop_assert_eq!(cy.ring.open(bob.session, &sealed).unwrap(), bytes);
            }
        }

        #[test]
        fn any_flipped_bit_is_refused(len in 0usize..48, bit in any::<prop::sample::Index>()) {
            let (_owner, mut bob, mut cy) = room();
            let sealed = bob.ring.seal(bob.session, &vec![1; len]).unwrap();
            let E2eData::Msg { ct, nonce, .. } = &sealed else { unreachable!() };
            let mut bytes = [base64_decode(nonce).unwrap(), base64_decode(ct).unwrap()].concat();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            let flipped = with_msg(&sealed, |_, _, nonce, ct| {
                *nonce = base64_encode(&bytes[..12]);
                *ct = base64_encode(&bytes[12..]);
            });
            prop_assert_eq!(cy.ring.open(bob.session, &flipped).unwrap_err(), E2eError::Tampered);
            prop_assert_eq!(cy.ring.open(bob.session, &sealed).unwrap(), vec![1; len]);
        }
    }
}
