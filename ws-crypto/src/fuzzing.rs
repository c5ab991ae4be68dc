//! The bodies of the `crypto` and `mls` cargo-fuzz targets, kept in the
//! library so they compile (and are linted) with the crate. Enabled by the
//! `fuzzing` feature; not part of the public API.
//!
//! Beyond "no panic", it checks what an attacker who controls every byte
//! must not achieve: no record, key package, commit or MLS message made by
//! the fuzzer opens or is applied (that would be a forgery), a refusal
//! leaves the state able to open the next genuine message, and sealing
//! round-trips any plaintext.

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

/// `data[0]` picks what the rest feeds: a hello, an accept or a record.
pub fn crypto(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
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
        _ => {
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
    }
}

/// A group of `room` with ann and bob, the Delivery Service following it,
/// and genuine messages of each kind to mutate: a key package, a commit
/// (ann adding cy, never sent) and an application message of ann's.
#[cfg(feature = "mls")]
struct MlsFixture {
    service: crate::mls::DeliveryService,
    reader: crate::mls::MlsReader,
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
            reader: crate::mls::MlsReader::new(),
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
    use ws_channels::e2e::GroupReader as _;
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
        0 => {
            assert!(
                fixture.service.check_key_package(&bytes, "cy").is_err(),
                "a forged key package passed"
            );
            assert!(
                fixture.reader.read_key_package(&bytes).is_err(),
                "a channels node took a forged key package"
            );
        }
        1 => {
            let framing = DeliveryService::framing(&bytes);
            // A node orders by what it reads: the framing's group and epoch.
            if let Ok(frame) = fixture.reader.read_commit(&bytes) {
                let framing = framing.expect("a commit the node reads has framing");
                assert_eq!((frame.group, frame.epoch), (framing.group, framing.epoch));
            }
            // A Delivery Service checks signatures but cannot check a
            // membership tag (RFC 9420 §6.2: its key is the members'), so a
            // commit changed only there may pass it; the members must then
            // refuse it. It is tried on a copy so the fixture stays put.
            let mut service = fixture.service.clone();
            if service.accept(&bytes).is_ok() {
                let before = fixture.bob.epoch();
                assert!(
                    fixture.bob.receive(&bytes).is_err(),
                    "a forged commit passed the Delivery Service and a member applied it"
                );
                assert_eq!(fixture.bob.epoch(), before, "a refusal moved the group");
            } else {
                assert_eq!(service.epoch(b"room"), epoch, "a refusal moved the group");
            }
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
