//! MLS groups as channels use them, tried as the ones who would break
//! them: a server that wants to read or add, a member who was removed, a
//! user who uploads a key package in another's name, two members who
//! commit at once.
#![cfg(feature = "mls")]

use ws_crypto::mls::{Commit, DeliveryService, Device, Group, GroupRole, Kind, MlsError, Received};

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

/// Channel "room" with ann (its owner) and bob, who joined from ann's
/// Welcome: the channel and their groups.
fn ann_and_bob() -> (Channel, Group, Group) {
    let (ann, bob) = (Device::new("ann").unwrap(), Device::new("bob").unwrap());
    let (mut channel, mut ann_group) = Channel::create(&ann);
    let add = ann_group.add(&[bob.key_package().unwrap()]).unwrap();
    channel.commit(&mut ann_group, &add, &mut []);
    let bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();
    (channel, ann_group, bob_group)
}

/// Channel "room" with ann (its owner), bob and cy, both added by one
/// commit of ann's: the channel and their groups.
fn ann_bob_and_cy() -> (Channel, Group, Group, Group) {
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
    let (bob_group, cy_group) = (bob.join(welcome).unwrap(), cy.join(welcome).unwrap());
    (channel, ann_group, bob_group, cy_group)
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
    let (mut channel, mut ann_group, mut bob_group) = ann_and_bob();
    let cy = Device::new("cy").unwrap();
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
    let (mut channel, mut ann_group, mut bob_group, mut cy_group) = ann_bob_and_cy();
    let promote = ann_group
        .set_role("cy", Some(GroupRole::Committer))
        .unwrap();
    channel.commit(
        &mut ann_group,
        &promote,
        &mut [&mut bob_group, &mut cy_group],
    );

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
    // Bob may commit too (the owner made him a committer).
    let promote = ann_group
        .set_role("bob", Some(GroupRole::Committer))
        .unwrap();
    ann_group.confirm().unwrap();
    bob_group.receive(&promote.commit).unwrap();
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
        let (_, expired) = rule_breaker("bob", std::time::Duration::ZERO);
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
    let promote = ann_group
        .set_role("bob", Some(GroupRole::Committer))
        .unwrap();
    channel.commit(&mut ann_group, &promote, &mut [&mut bob_group]);
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
    let ann = Device::new("ann").unwrap();
    let (secret, identity) = MaliciousServer::identity();
    let mut ann_group = ann
        .create_group("room", &identity.mls_encode_to_vec().unwrap())
        .unwrap();
    // A member colluding with the server, on mls-rs' default rules, which
    // commit whatever an external sender proposed.
    let (rogue, rogue_package) = rule_breaker("rogue", LIFETIME);
    let add = ann_group.add(&[rogue_package]).unwrap();
    ann_group.confirm().unwrap();
    let welcome = mls_rs::MlsMessage::from_bytes(add.welcome.as_ref().unwrap()).unwrap();
    let (mut rogue_group, _) = rogue.join_group(None, &welcome, None).unwrap();
    // The owner let it commit: what is refused below is the server's Add.
    let promote = ann_group
        .set_role("rogue", Some(GroupRole::Committer))
        .unwrap();
    ann_group.confirm().unwrap();
    rogue_group
        .process_incoming_message(mls_rs::MlsMessage::from_bytes(&promote.commit).unwrap())
        .unwrap();
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

// Every node of a cluster, and the same node after a restart, signs as the
// one external sender the groups name: its key comes from the cluster's
// secret. A Delivery Service from another secret is not that sender and
// cannot propose.
#[test]
fn nodes_sharing_a_secret_are_one_external_sender() {
    const SECRET: &[u8] = b"the cluster key of one deployment, 32+ bytes";
    let first = DeliveryService::from_secret("ws serve", SECRET).unwrap();
    let ann = Device::new("ann").unwrap();
    let bob = Device::new("bob").unwrap();
    let mut ann_group = ann
        .create_group("room", &first.external_sender().unwrap())
        .unwrap();
    let add = ann_group.add(&[bob.key_package().unwrap()]).unwrap();
    ann_group.confirm().unwrap();
    let mut bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();

    let mut other_node = DeliveryService::from_secret("ws serve", SECRET).unwrap();
    assert_eq!(
        other_node.external_sender().unwrap(),
        first.external_sender().unwrap()
    );
    other_node.follow(&ann_group.group_info().unwrap()).unwrap();
    let proposals = other_node.propose_remove(b"room", "bob").unwrap();
    assert_eq!(
        ann_group.receive(&proposals[0]).unwrap(),
        Received::Proposal
    );

    let mut stranger = DeliveryService::from_secret("ws serve", &[7; 32]).unwrap();
    assert_ne!(
        stranger.external_sender().unwrap(),
        first.external_sender().unwrap()
    );
    stranger.follow(&ann_group.group_info().unwrap()).unwrap();
    assert!(
        stranger.propose_remove(b"room", "ann").is_err(),
        "not the group's sender: mls-rs will not even sign one"
    );
    assert_eq!(
        bob_group.receive(&proposals[0]).unwrap(),
        Received::Proposal
    );

    assert!(DeliveryService::from_secret("ws serve", b"short").is_err());
}

// A commit carries the GroupInfo the server proposes removals from, made
// for external commits; whoever gets hold of it (the server, anyone who
// reads the broker) may try to join with an external commit of its own.
// Members refuse it (it comes from outside the group and is not a Remove),
// so do the channels nodes (not a member's commit), and nothing moves.
#[test]
fn an_outsider_with_a_group_info_cannot_join_by_external_commit() {
    use mls_rs::identity::SigningIdentity;
    use mls_rs::identity::basic::{BasicCredential, BasicIdentityProvider};
    use mls_rs::{CipherSuiteProvider, CryptoProvider, MlsMessage};
    use mls_rs_crypto_rustcrypto::RustCryptoProvider;
    use ws_channels::e2e::GroupReader;

    let (ann, bob) = (Device::new("ann").unwrap(), Device::new("bob").unwrap());
    let server = DeliveryService::new("ws serve").unwrap();
    let mut ann_group = ann
        .create_group("room", &server.external_sender().unwrap())
        .unwrap();
    let add = ann_group.add(&[bob.key_package().unwrap()]).unwrap();
    ann_group.confirm().unwrap();
    let mut bob_group = bob.join(add.welcome.as_ref().unwrap()).unwrap();
    let group_info = add.group_info.expect("commits carry a GroupInfo");

    let suite = RustCryptoProvider::default()
        .cipher_suite_provider(ws_crypto::mls::CIPHERSUITE)
        .unwrap();
    let (secret, public) = suite.signature_key_generate().unwrap();
    let identity = SigningIdentity::new(
        BasicCredential::new(b"mallory".to_vec()).into_credential(),
        public,
    );
    let mallory = mls_rs::Client::builder()
        .crypto_provider(RustCryptoProvider::default())
        .identity_provider(BasicIdentityProvider)
        .signing_identity(identity, secret, ws_crypto::mls::CIPHERSUITE)
        .build();
    let (_, external_commit) = mallory
        .external_commit_builder()
        .unwrap()
        .build(MlsMessage::from_bytes(&group_info).unwrap())
        .expect("the GroupInfo allows trying");
    let external_commit = external_commit.to_bytes().unwrap();

    for member in [&mut ann_group, &mut bob_group] {
        assert!(
            member.receive(&external_commit).is_err(),
            "an outsider joined"
        );
        assert_eq!(member.epoch(), 1);
        assert_eq!(member.members().len(), 2);
    }
    let read = ws_crypto::mls::MlsReader::new().read_commit(&external_commit);
    assert!(read.is_err(), "a node would order it: {read:?}");
}

/// Found by the `mls` fuzz target. A Delivery Service verifies a commit's
/// signature but cannot verify its membership tag, which is keyed by a
/// secret only members hold (RFC 9420 §6.2). A commit whose tag was
/// changed therefore passes the service, and every member must refuse it
/// and stay where it was.
#[test]
fn a_commit_with_a_changed_membership_tag_passes_the_service_but_no_member() {
    let (channel, mut ann_group, mut bob_group) = ann_and_bob();
    let cy = Device::new("cy").unwrap();
    let epoch = bob_group.epoch();

    let mut forged = ann_group.add(&[cy.key_package().unwrap()]).unwrap().commit;
    // A member's public message ends with its 32-byte membership tag.
    *forged.last_mut().unwrap() ^= 1;
    let mut service = channel.ds.clone();
    service.accept(&forged).unwrap().expect("a commit");
    assert!(
        bob_group.receive(&forged).is_err(),
        "bob applied a forged commit"
    );
    assert_eq!(bob_group.epoch(), epoch);
    // The copy moved on; the original is where it was.
    assert_eq!(channel.ds.epoch(&channel.name), Some(epoch));
    assert_eq!(service.epoch(&channel.name), Some(epoch + 1));
}

/// Roles live in the group: a member without one cannot commit (whatever
/// role the server gives its session), a committer cannot change roles,
/// and only the owner's commit promotes.
#[test]
fn only_members_the_group_lets_commit_can_commit() {
    let (mut channel, mut ann_group, mut bob_group, mut cy_group) = ann_bob_and_cy();
    // The creator is the group's one owner; bob and cy have no role.
    assert_eq!(
        ann_group.roles().into_iter().collect::<Vec<_>>(),
        [("ann".to_owned(), GroupRole::Owner)]
    );

    // Bob, a plain member, cannot commit: his own rules stop him.
    assert!(
        bob_group.remove("cy").is_err(),
        "bob's own rules let him commit"
    );
    bob_group.discard();
    // A member whose client ignores the rules (mls-rs' defaults) commits
    // anyway; the server would order it, the others refuse it.
    let (rogue, rogue_package) = rule_breaker("rogue", LIFETIME);
    let add = ann_group.add(&[rogue_package]).unwrap();
    channel.commit(&mut ann_group, &add, &mut [&mut bob_group, &mut cy_group]);
    let welcome = mls_rs::MlsMessage::from_bytes(add.welcome.as_ref().unwrap()).unwrap();
    let (mut rogue_group, _) = rogue.join_group(None, &welcome, None).unwrap();
    let cy_leaf = ann_group
        .members()
        .iter()
        .find(|m| m.user == "cy")
        .unwrap()
        .index;
    let forged = rogue_group
        .commit_builder()
        .remove_member(cy_leaf)
        .unwrap()
        .build()
        .unwrap()
        .commit_message
        .to_bytes()
        .unwrap();
    assert!(
        ann_group.receive(&forged).is_err(),
        "ann applied the rogue's commit"
    );
    assert!(
        cy_group.receive(&forged).is_err(),
        "cy applied the rogue's commit"
    );

    // Bob cannot promote himself; the owner can promote him.
    assert!(bob_group.set_role("bob", Some(GroupRole::Owner)).is_err());
    let promote = ann_group
        .set_role("bob", Some(GroupRole::Committer))
        .unwrap();
    channel.commit(
        &mut ann_group,
        &promote,
        &mut [&mut bob_group, &mut cy_group],
    );
    assert_eq!(bob_group.roles().get("bob"), Some(&GroupRole::Committer));
    // Now his removal of cy stands for all; but a committer still cannot
    // change roles.
    assert!(bob_group.set_role("cy", Some(GroupRole::Owner)).is_err());
    let removal = bob_group.remove("cy").unwrap();
    channel.commit(&mut bob_group, &removal, &mut [&mut ann_group]);
    assert!(ann_group.members().iter().all(|m| m.user != "cy"));
}

/// Key packages' lifetime by default in mls-rs: a year.
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// A member on mls-rs' default rules (which let anyone commit anything),
/// able to join groups with roles: its client and a key package valid for
/// `lifetime`.
fn rule_breaker(
    name: &str,
    lifetime: std::time::Duration,
) -> (
    mls_rs::Client<impl mls_rs::client_builder::MlsConfig>,
    Vec<u8>,
) {
    use mls_rs::{CipherSuiteProvider, CryptoProvider};
    let suite = mls_rs_crypto_rustcrypto::RustCryptoProvider::default()
        .cipher_suite_provider(ws_crypto::mls::CIPHERSUITE)
        .unwrap();
    let (secret, public) = suite.signature_key_generate().unwrap();
    let client = mls_rs::Client::builder()
        .extension_type(mls_rs::extension::ExtensionType::new(
            ws_crypto::mls::ROLES_EXTENSION,
        ))
        .identity_provider(mls_rs::identity::basic::BasicIdentityProvider)
        .crypto_provider(mls_rs_crypto_rustcrypto::RustCryptoProvider::default())
        .key_package_lifetime(lifetime)
        .signing_identity(
            mls_rs::identity::SigningIdentity::new(
                mls_rs::identity::basic::BasicCredential::new(name.as_bytes().to_vec())
                    .into_credential(),
                public,
            ),
            secret,
            ws_crypto::mls::CIPHERSUITE,
        )
        .build();
    let package = client
        .generate_key_package_message(Default::default(), Default::default(), None)
        .unwrap()
        .to_bytes()
        .unwrap();
    (client, package)
}
