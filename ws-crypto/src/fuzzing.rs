//! The body of the `crypto` cargo-fuzz target, kept in the library so it
//! compiles (and is linted) with the crate. Enabled by the `fuzzing`
//! feature; not part of the public API.
//!
//! Beyond "no panic", it checks what an attacker who controls every byte
//! must not achieve: no record, envelope or wrapped key made by the fuzzer
//! opens (that would be a forgery), a refusal leaves the state able to
//! open the next genuine message, and sealing round-trips any plaintext.

use crate::channel::{E2eData, E2eError, Keyring};
use crate::keys::{KeyPair, Suite};
use crate::session::{ClientHandshake, Kind, ServerHandshake, Session};

fn sessions(suite: Suite) -> (Session, Session) {
    let server = ServerHandshake::new(Some(KeyPair::from_secret_bytes([3; 32])));
    let client = ClientHandshake::with_ephemeral(
        KeyPair::from_secret_bytes([1; 32]),
        server.public_key(),
        &[suite],
    );
    let (at_server, accept) = server
        .accept_with(KeyPair::from_secret_bytes([2; 32]), client.hello())
        .expect("a fixed handshake");
    (
        client.finish(&accept).expect("a fixed handshake"),
        at_server,
    )
}

/// Owner, member and their keyrings, sharing epoch 1 of `room`.
fn channel() -> (KeyPair, KeyPair, Keyring, Keyring) {
    let owner = KeyPair::from_secret_bytes([4; 32]);
    let member = KeyPair::from_secret_bytes([5; 32]);
    let mut at_owner = Keyring::new("room");
    at_owner.rotate();
    let keys = at_owner
        .wrap_current(&owner, [("b", &member.public())])
        .expect("a fixed key");
    let mut at_member = Keyring::new("room");
    at_member
        .accept_keys(&member, &owner.public(), "b", &keys)
        .expect("a fixed key");
    (owner, member, at_owner, at_member)
}

/// `data[0]` picks what the rest feeds: a hello, an accept, a record, or an
/// end-to-end envelope (JSON).
pub fn crypto(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let server = ServerHandshake::new(Some(KeyPair::from_secret_bytes([3; 32])));
            if let Ok((_, accept)) = server.accept(rest) {
                assert_eq!(accept.len(), 100);
            }
        }
        1 => {
            let client = ClientHandshake::new(None);
            // The fuzzer cannot know the client's fresh ephemeral key, so no
            // accept of its making may be confirmed.
            assert!(
                client.finish(rest).is_err(),
                "a forged accept was confirmed"
            );
        }
        2 => {
            let suite = if mode & 4 == 0 {
                Suite::Aes256Gcm
            } else {
                Suite::ChaCha20Poly1305
            };
            let (mut client, mut server) = sessions(suite);
            assert!(server.opener.open(rest).is_err(), "a forged record opened");
            let kind = if std::str::from_utf8(rest).is_ok() {
                Kind::Text
            } else {
                Kind::Binary
            };
            let record = client.sealer.seal(kind, rest).expect("a fresh sealer");
            let mut flipped = record.clone();
            let at = usize::from(mode) % flipped.len();
            flipped[at] ^= 1 | (mode & 0x80);
            assert!(
                server.opener.open(&flipped).is_err(),
                "an altered record opened"
            );
            assert_eq!(
                server.opener.open(&record).expect("the genuine record"),
                (kind, rest.to_vec())
            );
        }
        _ => {
            let (owner, member, mut at_owner, mut at_member) = channel();
            if let Ok(data) = serde_json::from_slice::<E2eData>(rest) {
                match &data {
                    E2eData::Msg { .. } => {
                        for sender in ["a", "b"] {
                            assert!(
                                at_member.open(sender, &data).is_err(),
                                "a forged message opened"
                            );
                        }
                    }
                    E2eData::Keys { .. } => {
                        match at_member.accept_keys(&member, &owner.public(), "b", &data) {
                            Ok(None) | Err(_) => {}
                            Ok(Some(epoch)) => {
                                panic!("a forged key for epoch {epoch} was accepted")
                            }
                        }
                    }
                }
            }
            let sealed = at_owner.seal("a", rest).expect("a key");
            assert_eq!(
                at_member.open("a", &sealed).expect("the genuine message"),
                rest
            );
            assert!(matches!(
                at_member.open("a", &sealed),
                Err(E2eError::Replayed { .. })
            ));
        }
    }
}
