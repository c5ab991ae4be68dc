//! The bodies of the `crypto` and `mls` cargo-fuzz targets, kept in the
//! library so they compile (and are linted) with the crate. Enabled by the
//! `fuzzing` feature; not part of the public API.
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

/// A group of `room` with ann and bob, the Delivery Service following it,
/// and genuine messages of each kind to mutate: a key package, a commit
/// (ann adding cy, never sent) and an application message of ann's.
#[cfg(feature = "mls")]
struct MlsFixture {
    service: crate::mls::DeliveryService,
    bob: crate::mls::Group,
    key_package: Vec<u8>,
    commit: Vec<u8>,
    message: Vec<u8>,
}

#[cfg(feature = "mls")]
fn mls_fixture() -> &'static std::sync::Mutex<MlsFixture> {
    use crate::mls::{DeliveryService, Device};
    static FIXTURE: std::sync::OnceLock<std::sync::Mutex<MlsFixture>> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut service = DeliveryService::new("ws serve").expect("a service");
        let (ann, bob, cy) = (
            Device::new("ann").expect("a device"),
            Device::new("bob").expect("a device"),
            Device::new("cy").expect("a device"),
        );
        let mut room = ann
            .create_group("room", &service.external_sender().expect("an identity"))
            .expect("a group");
        service
            .follow(&room.group_info().expect("a group info"))
            .expect("followed");
        let add = room
            .add(&[bob.key_package().expect("a key package")])
            .expect("a commit");
        service.accept(&add.commit).expect("accepted");
        room.confirm().expect("confirmed");
        let bob_room = bob
            .join(add.welcome.as_deref().expect("a welcome"))
            .expect("joined");
        let key_package = cy.key_package().expect("a key package");
        let commit = room
            .add(std::slice::from_ref(&key_package))
            .expect("a commit")
            .commit;
        room.discard();
        let message = room.encrypt(b"genuine").expect("a message");
        std::sync::Mutex::new(MlsFixture {
            service,
            bob: bob_room,
            key_package,
            commit,
            message,
        })
    })
}

/// The Delivery Service and a member against bytes the fuzzer made.
/// `data[0]` picks what the rest is: a handshake message for the service,
/// a key package, a message for a member, or changes (XOR) to a genuine
/// key package, commit or application message. The fuzzer cannot sign or
/// encrypt, so nothing it makes may be accepted or opened, and a refusal
/// changes nothing.
#[cfg(feature = "mls")]
pub fn mls(data: &[u8]) {
    use crate::mls::DeliveryService;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut fixture = mls_fixture()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let fixture = &mut *fixture;
    let epoch = fixture.service.epoch(b"room");
    let (target, bytes) = match mode % 4 {
        3 => {
            let Some((&which, changes)) = rest.split_first() else {
                return;
            };
            let genuine = match which % 3 {
                0 => &fixture.key_package,
                1 => &fixture.commit,
                _ => &fixture.message,
            };
            let mut changed = genuine.clone();
            for (at, change) in changes.iter().enumerate() {
                let at = at % changed.len();
                changed[at] ^= change;
            }
            if changed == *genuine {
                return;
            }
            (which % 3, changed)
        }
        0 => (1, rest.to_vec()),
        1 => (0, rest.to_vec()),
        _ => (2, rest.to_vec()),
    };
    match target {
        0 => assert!(
            fixture.service.check_key_package(&bytes, "cy").is_err(),
            "a forged key package passed"
        ),
        1 => {
            let _ = DeliveryService::framing(&bytes);
            assert!(
                fixture.service.accept(&bytes).is_err(),
                "a forged handshake message was accepted"
            );
            assert_eq!(
                fixture.service.epoch(b"room"),
                epoch,
                "a refusal moved the group"
            );
        }
        _ => {
            let before = fixture.bob.epoch();
            assert!(
                fixture.bob.receive(&bytes).is_err(),
                "a forged message opened or applied"
            );
            assert_eq!(fixture.bob.epoch(), before, "a refusal moved the group");
        }
    }
}
