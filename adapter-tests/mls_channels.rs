//! End-to-end encrypted channels on MLS through `ws_crypto::mls::MlsClient`
//! over real connections to a channels server that orders the groups'
//! commits: members add each other from the key package directory, talk,
//! a banned member is removed by the server's proposal and the next
//! commit, a commit beaten by another is made again, and a device takes up
//! its group again after a restart.

use std::time::Duration;

use ws_channels::{Channels, ChannelsClient, ChannelsConfig};
use ws_crypto::mls::{DeliveryService, Device, MlsClient, MlsEvent, MlsReader};

use super::common::{TestServer, channels_socket, serve};
use crate::rt::{self, ws};
use ws::auth::KeyAuth;

async fn mls_server() -> TestServer {
    let mut config = ChannelsConfig::default();
    let reader = MlsReader::new()
        .with_service(DeliveryService::new("test server").unwrap())
        .unwrap();
    config.group_reader = Some(std::sync::Arc::new(reader));
    let channels = Channels::new(config);
    let mut keys = KeyAuth::new();
    for user in ["ann", "bob", "cy", "dee"] {
        keys = keys.key(format!("key-{user}"), user);
    }
    serve(
        ws::server()
            .route("/channels", channels.endpoint().authenticator(keys))
            .build(),
    )
    .await
}

async fn member(server: &TestServer, device: Device) -> MlsClient {
    let user = device.user().to_owned();
    MlsClient::new(
        ChannelsClient::new(channels_socket(server, &user).await),
        device,
    )
}

/// A member whose device left key packages and who joined `room`.
async fn joiner(server: &TestServer, user: &str) -> MlsClient {
    let mut client = member(server, Device::new(user).unwrap()).await;
    client.publish_key_packages(3).await.unwrap();
    client.join("room").await.unwrap();
    client
}

/// Events until `pick` takes one, skipping the rest.
async fn until<T>(client: &mut MlsClient, mut pick: impl FnMut(MlsEvent) -> Option<T>) -> T {
    loop {
        let event = rt::timeout(Duration::from_secs(10), client.next_event())
            .await
            .expect("an event within 10 s")
            .expect("the connection is open")
            .expect("no error");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn joined(client: &mut MlsClient) -> u64 {
    until(client, |event| match event {
        MlsEvent::Joined { epoch, .. } => Some(epoch),
        _ => None,
    })
    .await
}

async fn message(client: &mut MlsClient) -> (String, String, Vec<u8>) {
    until(client, |event| match event {
        MlsEvent::Message { from, data, .. } => Some((from.user, from.fingerprint, data)),
        MlsEvent::Unreadable { error, .. } => panic!("unreadable: {error}"),
        _ => None,
    })
    .await
}

async fn epoch(client: &mut MlsClient) -> (u64, Vec<String>, Vec<String>) {
    until(client, |event| match event {
        MlsEvent::Epoch {
            epoch,
            added,
            removed,
            ..
        } => Some((epoch, added, removed)),
        _ => None,
    })
    .await
}

async fn members_add_talk_and_a_banned_one_is_removed() {
    let server = mls_server().await;
    let mut ann = member(&server, Device::new("ann").unwrap()).await;
    ann.create("room", 100).await.unwrap();
    let mut bob = joiner(&server, "bob").await;
    let mut cy = joiner(&server, "cy").await;
    // Both in one commit: one new epoch.
    assert_eq!(ann.add("room", &["bob", "cy"]).await.unwrap(), 1);
    assert_eq!(joined(&mut bob).await, 1);
    assert_eq!(joined(&mut cy).await, 1);
    assert_eq!(ann.roster("room").len(), 3);

    ann.send("room", b"hello both").await.unwrap();
    assert_eq!(message(&mut bob).await.2, b"hello both");
    assert_eq!(message(&mut cy).await.2, b"hello both");
    bob.send("room", b"hi ann").await.unwrap();
    let (from, fingerprint, data) = message(&mut ann).await;
    assert_eq!((from.as_str(), &data[..]), ("bob", &b"hi ann"[..]));
    assert_eq!(
        fingerprint,
        bob.device().fingerprint(),
        "the sender's device"
    );

    // The owner bans cy: the server proposes the removal, the owner's next
    // commit takes it in, and cy's device is out of the group.
    ann.channels().ban("room", "cy", None).await.unwrap();
    let proposed = until(&mut ann, |event| match event {
        MlsEvent::RemovalProposed { user, .. } => Some(user),
        _ => None,
    })
    .await;
    assert_eq!(proposed, "cy");
    assert_eq!(ann.commit_pending("room").await.unwrap(), 2);
    let (at, _, removed) = epoch(&mut bob).await;
    assert_eq!((at, removed), (2, vec!["cy".to_owned()]));
    assert_eq!(
        cy.epoch("room"),
        Some(1),
        "cy applied nothing after its ban"
    );
    ann.send("room", b"cy is gone").await.unwrap();
    assert_eq!(message(&mut bob).await.2, b"cy is gone");
    assert!(ann.roster("room").iter().all(|m| m.user != "cy"));
}

// A commit that another member's commit beat is made again on top of it.
async fn a_commit_beaten_by_another_is_made_again() {
    let server = mls_server().await;
    let mut ann = member(&server, Device::new("ann").unwrap()).await;
    ann.create("room", 100).await.unwrap();
    let mut bob = joiner(&server, "bob").await;
    ann.add("room", &["bob"]).await.unwrap();
    joined(&mut bob).await;
    ann.channels()
        .set_role("room", "bob", ws_channels::ChannelRole::OWNER)
        .await
        .unwrap();
    // The group lets bob commit too (epoch 2).
    let committer = Some(ws_crypto::mls::GroupRole::Committer);
    assert_eq!(ann.set_role("room", "bob", committer).await.unwrap(), 2);
    assert_eq!(epoch(&mut bob).await.0, 2);
    let mut dee = joiner(&server, "dee").await;
    // bob commits first; ann, who has not read it, adds dee at the old
    // epoch, is told `conflict`, takes in bob's commit and adds again.
    assert_eq!(bob.commit_pending("room").await.unwrap(), 3);
    assert_eq!(ann.add("room", &["dee"]).await.unwrap(), 4);
    assert_eq!(joined(&mut dee).await, 4);
    let (at, added, _) = epoch(&mut bob).await;
    assert_eq!((at, added), (4, vec!["dee".to_owned()]));
    ann.send("room", b"all three").await.unwrap();
    assert_eq!(message(&mut bob).await.2, b"all three");
    assert_eq!(message(&mut dee).await.2, b"all three");
}

// A device that exported its state takes up its group on a new connection
// (a restart) and reads what is sent after, under the same fingerprint.
async fn a_device_takes_up_its_group_after_a_restart() {
    let server = mls_server().await;
    let mut ann = member(&server, Device::new("ann").unwrap()).await;
    ann.create("room", 100).await.unwrap();
    let mut bob = joiner(&server, "bob").await;
    ann.add("room", &["bob"]).await.unwrap();
    joined(&mut bob).await;
    let fingerprint = bob.device().fingerprint().to_owned();
    let saved = bob.export().unwrap();
    drop(bob);

    let mut bob = member(&server, Device::import(&saved).unwrap()).await;
    assert_eq!(bob.device().fingerprint(), fingerprint);
    bob.load("room").unwrap();
    bob.join("room").await.unwrap();
    ann.send("room", b"welcome back").await.unwrap();
    assert_eq!(message(&mut bob).await.2, b"welcome back");
    bob.send("room", b"thanks").await.unwrap();
    let (from, seen, data) = message(&mut ann).await;
    assert_eq!(
        (from.as_str(), seen, data),
        ("bob", fingerprint, b"thanks".to_vec())
    );
}

// Membership follows the channel: the owner's client, adding on its own,
// adds every user the server admits (those who arrive together in one
// commit), and nobody twice; a user without key packages is reported, not
// added.
async fn membership_follows_the_channel() {
    let server = mls_server().await;
    let ann = member(&server, Device::new("ann").unwrap()).await;
    let mut ann = ann.with_auto_add(true);
    ann.create("room", 100).await.unwrap();
    let mut bob = joiner(&server, "bob").await;
    let mut cy = joiner(&server, "cy").await;
    let mut added = Vec::new();
    while added.len() < 2 {
        match rt::timeout(Duration::from_secs(10), ann.next_event())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap()
        {
            MlsEvent::Epoch { added: users, .. } => added.extend(users),
            MlsEvent::AddFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    added.sort();
    assert_eq!(added, ["bob", "cy"]);
    joined(&mut bob).await;
    joined(&mut cy).await;
    ann.send("room", b"welcome both").await.unwrap();
    assert_eq!(message(&mut bob).await.2, b"welcome both");
    assert_eq!(message(&mut cy).await.2, b"welcome both");

    // dee joins without key packages: reported, not added.
    let mut dee = member(&server, Device::new("dee").unwrap()).await;
    dee.join("room").await.unwrap();
    let failed = until(&mut ann, |event| match event {
        MlsEvent::AddFailed { users, .. } => Some(users),
        _ => None,
    })
    .await;
    assert_eq!(failed, ["dee"]);
    assert_eq!(ann.roster("room").len(), 3);
}

// A member that only sends while others talk is told to read its events
// (nothing sent) once more than its limit wait, and sends again after.
async fn events_waiting_unread_are_bounded() {
    let server = mls_server().await;
    let ann = member(&server, Device::new("ann").unwrap()).await;
    let mut ann = ann.with_max_events(2);
    ann.create("room", 100).await.unwrap();
    let mut bob = joiner(&server, "bob").await;
    ann.add("room", &["bob"]).await.unwrap();
    joined(&mut bob).await;
    for n in 0..3 {
        bob.send("room", format!("{n}").as_bytes()).await.unwrap();
    }
    // The channel's events (bob's three, and more) come in with this reply.
    ann.send("room", b"first").await.unwrap();
    let refused = ann.send("room", b"second").await.unwrap_err();
    assert!(
        matches!(
            refused,
            ws_crypto::mls::MlsClientError::Channels(ws_channels::ClientError::TooManyEvents {
                limit: 2
            })
        ),
        "{refused}"
    );
    for n in 0..3 {
        assert_eq!(message(&mut ann).await.2, format!("{n}").as_bytes());
    }
    ann.send("room", b"second").await.unwrap();
    assert_eq!(message(&mut bob).await.2, b"first");
    assert_eq!(message(&mut bob).await.2, b"second");
}

// A member's commit whose Welcome does not open (a broken or malicious
// committer) is reported to the device waiting to be added, not passed
// over in silence; a Welcome for other devices is passed over.
async fn a_welcome_that_does_not_open_is_reported() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use ws_channels::protocol::Command;

    let server = mls_server().await;
    let mut ann = ChannelsClient::new(channels_socket(&server, "ann").await);
    let create = Command::create_encrypted(10);
    let created = ann.create("room", Some(create)).await.unwrap();
    let sender = BASE64.decode(created.external_sender.unwrap()).unwrap();
    let mut group = Device::new("ann")
        .unwrap()
        .create_group("room", &sender)
        .unwrap();
    let mut bob = joiner(&server, "bob").await;
    let cy = Device::new("cy").unwrap();
    let for_cy = group.add(&[cy.key_package().unwrap()]).unwrap();
    group.confirm().unwrap();
    let broken = group.commit_proposals().unwrap();
    for (commit, welcome) in [
        (&for_cy.commit, for_cy.welcome.clone().unwrap()),
        (&broken.commit, b"not a welcome".to_vec()),
    ] {
        let command = Command::Commit {
            commit: BASE64.encode(commit),
            welcome: Some(BASE64.encode(welcome)),
            welcome_to: None,
            group_info: None,
        };
        ann.command("room", command).await.unwrap();
    }
    let error = until(&mut bob, |event| match event {
        MlsEvent::Unreadable { error, .. } => Some(error),
        MlsEvent::Joined { .. } => panic!("joined from another's Welcome"),
        _ => None,
    })
    .await;
    // The broken one (it does not parse), not cy's, passed over.
    assert!(error.starts_with("invalid MLS input"), "{error}");
    assert_eq!(bob.epoch("room"), None);
}

adapter_tests!(
    a_welcome_that_does_not_open_is_reported,
    events_waiting_unread_are_bounded,
    membership_follows_the_channel,
    members_add_talk_and_a_banned_one_is_removed,
    a_commit_beaten_by_another_is_made_again,
    a_device_takes_up_its_group_after_a_restart,
);
