//! MLS groups as channels use them, tried as the ones who would break
//! them: a server that wants to read or add, a member who was removed, a
//! user who uploads a key package in another's name, two members who
//! commit at once.
#![cfg(feature = "mls")]

use ws_crypto::mls::{Commit, DeliveryService, Device, Group, Kind, MlsError, Received};

/// A channel's group as the server relays it: every handshake message
/// goes through the Delivery Service in order, then to every member.
struct Channel {
    ds: DeliveryService,
    name: Vec<u8>,
}

impl Channel {
    /// `owner` creates the group of channel "room" and the server follows
    /// it.
    fn create(owner: &Device) -> (Self, Group) {
        let mut ds = DeliveryService::new("ws serve").unwrap();
        let group = owner
            .create_group("room", &ds.external_sender().unwrap())
            .unwrap();
        ds.follow(&group.group_info().unwrap()).unwrap();
        (
            Self {
                ds,
                name: b"room".to_vec(),
            },
            group,
        )
    }

    /// The Delivery Service takes `commit` (its author confirms), and the
    /// other members process it.
    fn commit(&mut self, author: &mut Group, commit: &Commit, others: &mut [&mut Group]) {
        self.ds.accept(&commit.commit).unwrap().expect("a commit");
        author.confirm().unwrap();
        for member in others {
            let received = member.receive(&commit.commit).unwrap();
            assert!(matches!(received, Received::Commit { .. }), "{received:?}");
        }
    }
}

fn message(group: &mut Group, bytes: &[u8]) -> (Vec<u8>, String) {
    match group.receive(bytes).unwrap() {
        Received::Message { from, data } => (data, from.user),
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn members_talk_and_the_server_sees_only_framing() {
    let (ann, bob) = (Device::new("ann").unwrap(), Device::new("bob").unwrap());
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let key_package = bob.key_package().unwrap();
    channel.ds.check_key_package(&key_package, "bob").unwrap();
    let add = ann_group.add(&[key_package]).unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let mut bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();
    assert_eq!(bob_group.epoch(), ann_group.epoch());

    let sealed = ann_group.encrypt(b"hello bob").unwrap();
    let framing = DeliveryService::framing(&sealed).unwrap();
    assert_eq!(framing.group, channel.name);
    assert_eq!(framing.epoch, ann_group.epoch());
    assert_eq!(framing.kind, Kind::Encrypted);
    assert!(
        !sealed.windows(9).any(|w| w == b"hello bob"),
        "the plaintext is not on the wire"
    );
    assert_eq!(
        message(&mut bob_group, &sealed),
        (b"hello bob".to_vec(), "ann".into())
    );
    let reply = bob_group.encrypt(b"hi ann").unwrap();
    assert_eq!(
        message(&mut ann_group, &reply),
        (b"hi ann".to_vec(), "bob".into())
    );

    // Both see the same roster, with each other's fingerprints.
    let roster = |g: &Group| {
        let mut r: Vec<(String, String)> = g
            .members()
            .into_iter()
            .map(|m| (m.user, m.fingerprint))
            .collect();
        r.sort();
        r
    };
    assert_eq!(roster(&ann_group), roster(&bob_group));
    assert!(roster(&ann_group).contains(&("bob".into(), bob.fingerprint().into())));
}

#[test]
fn a_late_joiner_reads_nothing_sent_before_it_was_added() {
    let (ann, bob, cy) = (
        Device::new("ann").unwrap(),
        Device::new("bob").unwrap(),
        Device::new("cy").unwrap(),
    );
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let add = ann_group.add(&[bob.key_package().unwrap()]).unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let mut bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();
    let before = ann_group.encrypt(b"before cy").unwrap();
    assert_eq!(message(&mut bob_group, &before).0, b"before cy");

    let add = ann_group.add(&[cy.key_package().unwrap()]).unwrap();
    channel.commit(&mut ann_group, &add, &mut [&mut bob_group]);
    let mut cy_group = cy.join(add.welcome.as_ref().unwrap()).unwrap();
    // What history kept from before cy's epoch does not open for cy.
    assert!(cy_group.receive(&before).is_err());
    let after = ann_group.encrypt(b"after cy").unwrap();
    assert_eq!(message(&mut cy_group, &after).0, b"after cy");
}

#[test]
fn a_member_the_server_asks_to_remove_reads_nothing_after_the_commit() {
    let (ann, bob, cy) = (
        Device::new("ann").unwrap(),
        Device::new("bob").unwrap(),
        Device::new("cy").unwrap(),
    );
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let add = ann_group
        .add(&[bob.key_package().unwrap(), cy.key_package().unwrap()])
        .unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let welcome = add.welcome.as_ref().unwrap();
    let (mut bob_group, mut cy_group) = (bob.join(welcome).unwrap(), cy.join(welcome).unwrap());

    // Bob was banned: the server proposes his removal as the external
    // sender, every member takes the proposal, and the next committer
    // (cy here, not the owner) commits it.
    let proposals = channel.ds.propose_remove(&channel.name, "bob").unwrap();
    for proposal in &proposals {
        assert_eq!(channel.ds.accept(proposal).unwrap(), None);
        for group in [&mut ann_group, &mut bob_group, &mut cy_group] {
            assert_eq!(group.receive(proposal).unwrap(), Received::Proposal);
        }
    }
    let commit = cy_group.commit_proposals().unwrap();
    let accepted = channel.ds.accept(&commit.commit).unwrap().unwrap();
    assert_eq!(accepted.removed, ["bob"]);
    cy_group.confirm().unwrap();
    match ann_group.receive(&commit.commit).unwrap() {
        Received::Commit {
            removed,
            removed_me,
            ..
        } => {
            assert_eq!(removed, ["bob"]);
            assert!(!removed_me);
        }
        other => panic!("{other:?}"),
    }
    match bob_group.receive(&commit.commit).unwrap() {
        Received::Commit { removed_me, .. } => assert!(removed_me, "bob is told"),
        other => panic!("{other:?}"),
    }
    let secret = ann_group.encrypt(b"bob is gone").unwrap();
    assert!(bob_group.receive(&secret).is_err(), "bob cannot open it");
    assert_eq!(message(&mut cy_group, &secret).0, b"bob is gone");
    assert!(ann_group.members().iter().all(|m| m.user != "bob"));
}

/// A server that wants to read: it holds the external sender's key, so
/// it signs an Add proposal of a device of its own, with mls-rs directly.
struct MaliciousServer {
    group: mls_rs::external_client::ExternalGroup<
        mls_rs::external_client::builder::IntoConfigOutput<
            mls_rs::external_client::builder::WithCryptoProvider<
                mls_rs_crypto_rustcrypto::RustCryptoProvider,
                mls_rs::external_client::builder::WithIdentityProvider<
                    mls_rs::identity::basic::BasicIdentityProvider,
                    mls_rs::external_client::builder::ExternalBaseConfig,
                >,
            >,
        >,
    >,
}

impl MaliciousServer {
    /// The server's identity for the group's external senders, and the
    /// server following the group once it exists.
    fn identity() -> (
        mls_rs::crypto::SignatureSecretKey,
        mls_rs::identity::SigningIdentity,
    ) {
        use mls_rs::{CipherSuiteProvider, CryptoProvider};
        let suite = mls_rs_crypto_rustcrypto::RustCryptoProvider::default()
            .cipher_suite_provider(ws_crypto::mls::CIPHERSUITE)
            .unwrap();
        let (secret, public) = suite.signature_key_generate().unwrap();
        let credential =
            mls_rs::identity::basic::BasicCredential::new(b"ws serve".to_vec()).into_credential();
        (
            secret,
            mls_rs::identity::SigningIdentity::new(credential, public),
        )
    }

    fn follow(
        secret: mls_rs::crypto::SignatureSecretKey,
        identity: mls_rs::identity::SigningIdentity,
        group_info: &[u8],
    ) -> Self {
        let client = mls_rs::external_client::ExternalClient::builder()
            .identity_provider(mls_rs::identity::basic::BasicIdentityProvider)
            .crypto_provider(mls_rs_crypto_rustcrypto::RustCryptoProvider::default())
            .signer(secret, identity)
            .build();
        let group = client
            .observe_group(
                mls_rs::MlsMessage::from_bytes(group_info).unwrap(),
                None,
                None,
            )
            .unwrap();
        Self { group }
    }

    fn propose_add(&mut self, key_package: &[u8]) -> Vec<u8> {
        self.group
            .propose_add(
                mls_rs::MlsMessage::from_bytes(key_package).unwrap(),
                Vec::new(),
            )
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    fn process(&mut self, message: &[u8]) {
        self.group
            .process_incoming_message(mls_rs::MlsMessage::from_bytes(message).unwrap())
            .unwrap();
    }
}

#[test]
fn a_server_cannot_add_a_member_of_its_own() {
    use mls_rs::mls_rs_codec::MlsEncode;
    let (ann, bob) = (Device::new("ann").unwrap(), Device::new("bob").unwrap());
    let (secret, identity) = MaliciousServer::identity();
    let mut ann_group = ann
        .create_group("room", &identity.mls_encode_to_vec().unwrap())
        .unwrap();
    let add = ann_group.add(&[bob.key_package().unwrap()]).unwrap();
    ann_group.confirm().unwrap();
    let mut bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();
    let mut server = MaliciousServer::follow(secret, identity, &ann_group.group_info().unwrap());

    // The server proposes a device of its own, signed with the external
    // sender's key the group trusts for removals.
    let spy = Device::new("mallory").unwrap();
    let injected = server.propose_add(&spy.key_package().unwrap());
    for group in [&mut ann_group, &mut bob_group] {
        let _ = group.receive(&injected);
    }
    // The next committer leaves it out: no Welcome, no epoch secret.
    let commit = bob_group.commit_proposals().unwrap();
    assert!(
        commit.welcome.is_none(),
        "no Welcome for the server's device"
    );
    bob_group.confirm().unwrap();
    ann_group.receive(&commit.commit).unwrap();
    server.process(&commit.commit);
    assert!(ann_group.members().iter().all(|m| m.user != "mallory"));
    let secret = ann_group.encrypt(b"for members only").unwrap();
    assert_eq!(message(&mut bob_group, &secret).0, b"for members only");
    assert!(spy.join(&secret).is_err());
}

#[test]
fn a_key_package_in_another_users_name_is_refused() {
    let ds = DeliveryService::new("ws serve").unwrap();
    let mallory_as_bob = Device::new("bob").unwrap();
    let refused = ds
        .check_key_package(&mallory_as_bob.key_package().unwrap(), "mallory")
        .unwrap_err();
    assert!(
        matches!(&refused, MlsError::WrongIdentity { named, user } if named == "bob" && user == "mallory"),
        "{refused:?}"
    );
    // A key package past its lifetime, made with mls-rs directly.
    {
        use mls_rs::{CipherSuiteProvider, CryptoProvider};
        let suite = mls_rs_crypto_rustcrypto::RustCryptoProvider::default()
            .cipher_suite_provider(ws_crypto::mls::CIPHERSUITE)
            .unwrap();
        let (secret, public) = suite.signature_key_generate().unwrap();
        let credential =
            mls_rs::identity::basic::BasicCredential::new(b"bob".to_vec()).into_credential();
        let short_lived = mls_rs::Client::builder()
            .identity_provider(mls_rs::identity::basic::BasicIdentityProvider)
            .crypto_provider(mls_rs_crypto_rustcrypto::RustCryptoProvider::default())
            .key_package_lifetime(std::time::Duration::ZERO)
            .signing_identity(
                mls_rs::identity::SigningIdentity::new(credential, public),
                secret,
                ws_crypto::mls::CIPHERSUITE,
            )
            .build();
        let expired = short_lived
            .generate_key_package_message(Default::default(), Default::default(), None)
            .unwrap()
            .to_bytes()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(
            matches!(
                ds.check_key_package(&expired, "bob"),
                Err(MlsError::Invalid(_))
            ),
            "an expired key package is refused"
        );
    }
    // Not a key package at all.
    assert!(matches!(
        ds.check_key_package(b"\x00\x01garbage", "bob"),
        Err(MlsError::Invalid(_))
    ));
}

#[test]
fn of_two_commits_for_one_epoch_the_first_wins_and_the_second_is_made_again() {
    let (ann, bob, cy, dee) = (
        Device::new("ann").unwrap(),
        Device::new("bob").unwrap(),
        Device::new("cy").unwrap(),
        Device::new("dee").unwrap(),
    );
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let add = ann_group.add(&[bob.key_package().unwrap()]).unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let mut bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();
    let epoch = ann_group.epoch();

    // Both add someone at the same epoch.
    let first = ann_group.add(&[cy.key_package().unwrap()]).unwrap();
    let second = bob_group.add(&[dee.key_package().unwrap()]).unwrap();
    channel.ds.accept(&first.commit).unwrap().unwrap();
    let conflict = channel.ds.accept(&second.commit).unwrap_err();
    assert!(
        matches!(conflict, MlsError::Conflict { current, got } if current == epoch + 1 && got == epoch),
        "{conflict:?}"
    );
    ann_group.confirm().unwrap();
    // Bob drops his commit, takes ann's, and commits again on top.
    bob_group.discard();
    bob_group.receive(&first.commit).unwrap();
    let again = bob_group.add(&[dee.key_package().unwrap()]).unwrap();
    channel.commit(&mut bob_group, &again, &mut [&mut ann_group]);
    let mut users: Vec<String> = ann_group.members().into_iter().map(|m| m.user).collect();
    users.sort();
    assert_eq!(users, ["ann", "bob", "cy", "dee"]);
    assert_eq!(channel.ds.epoch(&channel.name), Some(epoch + 2));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let mut ds = DeliveryService::new("ws serve").unwrap();
    for bytes in [
        &b""[..],
        b"\x00",
        b"\x00\x01\x00\x01",
        b"\x00\x01\x00\x02\xff\xff\xff\xff",
        &[0xffu8; 64],
    ] {
        assert!(DeliveryService::framing(bytes).is_err());
        assert!(ds.accept(bytes).is_err());
        assert!(ds.follow(bytes).is_err());
    }
    let device = Device::new("ann").unwrap();
    assert!(device.join(b"\x00\x01").is_err());
    assert!(Device::new("").is_err());
    assert!(Device::new(&"x".repeat(300)).is_err());
}

#[test]
fn a_commit_that_carries_the_servers_add_is_refused_by_the_members() {
    use mls_rs::mls_rs_codec::MlsEncode;
    use mls_rs::{CipherSuiteProvider, CryptoProvider};
    let ann = Device::new("ann").unwrap();
    let (secret, identity) = MaliciousServer::identity();
    let mut ann_group = ann
        .create_group("room", &identity.mls_encode_to_vec().unwrap())
        .unwrap();
    // A member colluding with the server, on mls-rs' default rules, which
    // commit whatever an external sender proposed.
    let suite = mls_rs_crypto_rustcrypto::RustCryptoProvider::default()
        .cipher_suite_provider(ws_crypto::mls::CIPHERSUITE)
        .unwrap();
    let (rogue_secret, rogue_public) = suite.signature_key_generate().unwrap();
    let rogue = mls_rs::Client::builder()
        .identity_provider(mls_rs::identity::basic::BasicIdentityProvider)
        .crypto_provider(mls_rs_crypto_rustcrypto::RustCryptoProvider::default())
        .signing_identity(
            mls_rs::identity::SigningIdentity::new(
                mls_rs::identity::basic::BasicCredential::new(b"rogue".to_vec()).into_credential(),
                rogue_public,
            ),
            rogue_secret,
            ws_crypto::mls::CIPHERSUITE,
        )
        .build();
    let rogue_package = rogue
        .generate_key_package_message(Default::default(), Default::default(), None)
        .unwrap()
        .to_bytes()
        .unwrap();
    let add = ann_group.add(&[rogue_package]).unwrap();
    ann_group.confirm().unwrap();
    let welcome = mls_rs::MlsMessage::from_bytes(add.welcome.as_ref().unwrap()).unwrap();
    let (mut rogue_group, _) = rogue.join_group(None, &welcome, None).unwrap();
    let mut server = MaliciousServer::follow(secret, identity, &ann_group.group_info().unwrap());

    let spy = Device::new("mallory").unwrap();
    let injected = server.propose_add(&spy.key_package().unwrap());
    let _ = ann_group.receive(&injected);
    rogue_group
        .process_incoming_message(mls_rs::MlsMessage::from_bytes(&injected).unwrap())
        .unwrap();
    let output = rogue_group.commit(Vec::new()).unwrap();
    assert!(
        !output.welcome_messages.is_empty(),
        "the rogue commit adds the spy"
    );
    let refused = ann_group.receive(&output.commit_message.to_bytes().unwrap());
    assert!(refused.is_err(), "ann refuses it: {refused:?}");
    assert!(ann_group.members().iter().all(|m| m.user != "mallory"));
}

#[test]
fn removal_works_in_a_group_of_a_thousand() {
    let ann = Device::new("ann").unwrap();
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let devices: Vec<Device> = (1..1000)
        .map(|n| Device::new(&format!("m{n}")).unwrap())
        .collect();
    let packages: Vec<Vec<u8>> = devices.iter().map(|d| d.key_package().unwrap()).collect();
    // One commit adds everyone: one new epoch, one Welcome.
    let add = ann_group.add(&packages).unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let welcome = add.welcome.as_ref().unwrap();
    let (mut stays, mut goes) = (
        devices[0].join(welcome).unwrap(),
        devices[499].join(welcome).unwrap(),
    );
    assert_eq!(stays.members().len(), 1000);

    let remove = ann_group.remove("m500").unwrap();
    eprintln!(
        "1,000 members: the add commit is {} bytes with a {}-byte Welcome; a removal commit is {} bytes",
        add.commit.len(),
        welcome.len(),
        remove.commit.len()
    );
    channel.commit(&mut ann_group, &remove, &mut [&mut stays, &mut goes]);
    let secret = ann_group.encrypt(b"m500 is gone").unwrap();
    assert!(goes.receive(&secret).is_err());
    assert_eq!(message(&mut stays, &secret).0, b"m500 is gone");
    assert_eq!(stays.members().len(), 999);
}

#[test]
fn a_device_restarted_from_its_export_keeps_its_key_and_its_groups() {
    let (ann, bob) = (Device::new("ann").unwrap(), Device::new("bob").unwrap());
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let add = ann_group.add(&[bob.key_package().unwrap()]).unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let mut bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();
    let first = ann_group.encrypt(b"before the restart").unwrap();
    assert_eq!(message(&mut bob_group, &first).0, b"before the restart");
    // A key package made before the restart still works after it.
    let spare = bob.key_package().unwrap();
    bob_group.save().unwrap();
    let saved = bob.export().unwrap();
    let fingerprint = bob.fingerprint().to_owned();
    drop((bob_group, bob));

    let bob = Device::import(&saved).unwrap();
    assert_eq!(
        (bob.user(), bob.fingerprint()),
        ("bob", fingerprint.as_str())
    );
    let mut bob_group = bob.load_group("room").unwrap();
    assert_eq!(bob_group.epoch(), ann_group.epoch());
    let after = ann_group.encrypt(b"after the restart").unwrap();
    assert_eq!(message(&mut bob_group, &after).0, b"after the restart");
    let reply = bob_group.encrypt(b"back").unwrap();
    assert_eq!(
        message(&mut ann_group, &reply),
        (b"back".to_vec(), "bob".into())
    );
    // What was read before the restart is not read again (its key is gone).
    assert!(bob_group.receive(&first).is_err());

    // The spare key package lets a second group add the restarted device.
    let cy = Device::new("cy").unwrap();
    let server = DeliveryService::new("ws serve").unwrap();
    let mut other = cy
        .create_group("other", &server.external_sender().unwrap())
        .unwrap();
    let add = other.add(&[spare]).unwrap();
    other.confirm().unwrap();
    bob.join(add.welcome.as_ref().unwrap()).unwrap();

    assert!(Device::import(b"not a saved device").is_err());
    assert!(bob.load_group("nowhere").is_err());
}

#[test]
fn the_delivery_service_keeps_a_bounded_number_of_proposals_per_epoch() {
    let ann = Device::new("ann").unwrap();
    let mut ds = DeliveryService::new("ws serve")
        .unwrap()
        .with_max_proposals(2);
    let mut ann_group = ann
        .create_group("room", &ds.external_sender().unwrap())
        .unwrap();
    ds.follow(&ann_group.group_info().unwrap()).unwrap();
    let others: Vec<Device> = ["m1", "m2", "m3"]
        .iter()
        .map(|u| Device::new(u).unwrap())
        .collect();
    let packages: Vec<Vec<u8>> = others.iter().map(|d| d.key_package().unwrap()).collect();
    let add = ann_group.add(&packages).unwrap();
    ds.accept(&add.commit).unwrap().unwrap();
    ann_group.confirm().unwrap();
    let epoch = ann_group.epoch();

    let mut proposals: Vec<Vec<u8>> = ["m1", "m2", "m3"]
        .iter()
        .flat_map(|u| ds.propose_remove(b"room", u).unwrap())
        .collect();
    for proposal in &proposals[..2] {
        assert_eq!(ds.accept(proposal).unwrap(), None);
        ann_group.receive(proposal).unwrap();
    }
    let refused = ds.accept(&proposals[2]).unwrap_err();
    assert!(
        matches!(refused, MlsError::TooManyProposals { max: 2 }),
        "{refused:?}"
    );
    assert_eq!(ds.epoch(b"room"), Some(epoch), "a refusal changes nothing");

    // A commit takes the two in and makes room.
    let commit = ann_group.commit_proposals().unwrap();
    let accepted = ds.accept(&commit.commit).unwrap().unwrap();
    assert_eq!(accepted.removed, ["m1", "m2"]);
    ann_group.confirm().unwrap();
    proposals = ds.propose_remove(b"room", "m3").unwrap();
    assert_eq!(ds.accept(&proposals[0]).unwrap(), None);
}

/// Documents a limit, not a guarantee: a member can add a device it made
/// under someone else's name, and everyone sees it under that device's
/// own fingerprint, not the real user's.
#[test]
fn a_member_can_name_a_device_anything_but_not_give_it_another_fingerprint() {
    let (ann, bob) = (Device::new("ann").unwrap(), Device::new("bob").unwrap());
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let fake_bob = Device::new("bob").unwrap();
    let add = ann_group.add(&[fake_bob.key_package().unwrap()]).unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let listed: Vec<_> = ann_group
        .members()
        .into_iter()
        .filter(|m| m.user == "bob")
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, fake_bob.fingerprint());
    assert_ne!(listed[0].fingerprint, bob.fingerprint());
}
