//! End-to-end encrypted channels on MLS through a real `ws serve`: the
//! server orders each group's commits by the channel's group epoch and
//! relays what it cannot read. Written as the ones who would break it: a
//! member racing another's commit, replaying an old one, a participant
//! committing without the role, a member slipping a commit past the order
//! as a plain publish, a commit for another group.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use serde_json::{Value, json};
use ws_crypto::mls::{Commit, DeliveryService, Device, Group, GroupRole, Received};

/// The owner's and a member's devices in one group on channel `room`,
/// made through the server; both peers joined.
struct Room {
    serve: Serve,
    al: Peer,
    bo: Peer,
    al_group: Group,
    bo_group: Group,
}

fn commit_data(commit: &Commit) -> Value {
    let mut data = json!({ "commit": BASE64.encode(&commit.commit) });
    if let Some(welcome) = &commit.welcome {
        data["welcome"] = Value::from(BASE64.encode(welcome));
    }
    if let Some(group_info) = &commit.group_info {
        data["group_info"] = Value::from(BASE64.encode(group_info));
    }
    data
}

/// al makes bo a committer in the group, by a commit the server orders
/// and bo applies: the group's roles, not the server's, say whose commits
/// members apply (the server's `commit` right says whose it orders).
async fn let_bo_commit(room: &mut Room) {
    let promote = room
        .al_group
        .set_role("bo", Some(GroupRole::Committer))
        .unwrap();
    let reply = room
        .al
        .command("room", "commit", commit_data(&promote))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    room.al_group.confirm().unwrap();
    let carried = next_commit(&mut room.bo, "al").await;
    room.bo_group.receive(&bytes(&carried, "commit")).unwrap();
}

/// The next commit by `author` that `peer` receives: its `data`.
async fn next_commit(peer: &mut Peer, author: &str) -> Value {
    loop {
        let event = peer.event("message").await;
        let data = &event["data"]["data"];
        if data["e2e"] == "commit" && event["data"]["from"]["user"] == author {
            return data.clone();
        }
    }
}

/// Stops the server after closing the peers' connections (so it does not
/// wait out its grace period for them).
async fn stop(serve: Serve, peers: Vec<Peer>) {
    drop(peers);
    serve.stop().await;
}

/// `peer` creates the encrypted channel `room`, keeping `history`
/// publications: the reply.
async fn create_room(peer: &mut Peer, history: u64) -> Value {
    let data = json!({"encrypted": true, "history_size": history});
    let created = peer.command("room", "create", data).await;
    assert_eq!(created["ok"], true, "{created}");
    created
}

/// An MLS member of the channels of the `ws serve` at `addr`, as `user`
/// (on `?user=`), with a new device.
async fn mls_member(addr: std::net::SocketAddr, user: &str) -> ws_crypto::mls::MlsClient {
    let (ws, _) = ws_tokio::connect(format!("ws://{addr}/channels?user={user}"))
        .await
        .expect("connects");
    ws_crypto::mls::MlsClient::new(
        ws_channels::ChannelsClient::new(ws),
        Device::new(user).unwrap(),
    )
}

/// A `ws serve` node on the Redis at `redis`, with the cluster key `key`
/// and the key prefix `prefix`.
async fn redis_node(redis: &str, key: &str, prefix: &str) -> Serve {
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--backend",
        redis,
        "--cluster-key",
        key,
        "--backend-prefix",
        prefix,
    ];
    Serve::start(&args, &[]).await
}

fn bytes(data: &Value, field: &str) -> Vec<u8> {
    BASE64.decode(data[field].as_str().unwrap()).unwrap()
}

async fn room() -> Room {
    let serve = Serve::start(&["--listen", "127.0.0.1:0", "--admin-token", TOKEN], &[]).await;
    let mut al = Peer::connect(serve.addr, "al").await;
    let mut bo = Peer::connect(serve.addr, "bo").await;
    let created = create_room(&mut al, 100).await;
    let joined = bo.command("room", "join", json!({})).await;
    assert_eq!(joined["ok"], true, "{joined}");
    // The group names the server as its external sender, as the server
    // says it in every join of an encrypted channel.
    let server = bytes(&created, "external_sender");
    assert_eq!(joined["external_sender"], created["external_sender"]);
    let al_device = Device::new("al").unwrap();
    let bo_device = Device::new("bo").unwrap();
    // bo's device leaves key packages in the directory; al claims one.
    let upload = json!({
        "key_packages": [BASE64.encode(bo_device.key_package().unwrap())],
        "last_resort": BASE64.encode(bo_device.key_package().unwrap()),
    });
    let uploaded = bo.command("$keys", "key_packages", upload).await;
    assert_eq!(uploaded["ok"], true, "{uploaded}");
    let claimed = al.command("room", "claim", json!({"user": "bo"})).await;
    let packages = claimed["key_packages"].as_array().unwrap();
    assert_eq!(packages.len(), 1, "{claimed}");
    assert_eq!(packages[0]["device"], bo_device.fingerprint());
    let mut al_group = al_device.create_group("room", &server).unwrap();
    let add = al_group.add(&[bytes(&packages[0], "key_package")]).unwrap();
    let reply = al.command("room", "commit", commit_data(&add)).await;
    assert_eq!(reply["ok"], true, "{reply}");
    al_group.confirm().unwrap();
    // bo reads its Welcome from the commit the channel carried.
    let carried = next_commit(&mut bo, "al").await;
    assert_eq!(carried["epoch"], 0);
    let bo_group = bo_device.join(&bytes(&carried, "welcome")).unwrap();
    assert_eq!(bo_group.epoch(), 1);
    Room {
        serve,
        al,
        bo,
        al_group,
        bo_group,
    }
}

// Members talk through the server, which stores and relays ciphertext.
#[tokio::test]
async fn members_add_and_talk_through_the_server() {
    let mut room = room().await;
    let sealed = room.al_group.encrypt(b"hello bo").unwrap();
    let message = json!({"e2e": "mls", "message": BASE64.encode(&sealed)});
    let sent = room.al.command("room", "publish", message).await;
    assert_eq!(sent["ok"], true, "{sent}");
    let event = loop {
        let event = room.bo.event("message").await;
        if event["data"]["data"]["e2e"] == "mls" {
            break event;
        }
    };
    assert_eq!(event["data"]["from"]["user"], "al");
    match room
        .bo_group
        .receive(&bytes(&event["data"]["data"], "message"))
        .unwrap()
    {
        Received::Message { from, data } => {
            assert_eq!((from.user.as_str(), &data[..]), ("al", &b"hello bo"[..]));
        }
        other => panic!("{other:?}"),
    }
    stop(room.serve, vec![room.al, room.bo]).await;
}

// ROBUSTNESS 131: two members commit for one epoch at once: the server
// publishes the first and answers the second `conflict`; its author takes
// in the winner and commits again on top, and both end in one group.
// A replay of an old commit gets `conflict` too.
#[tokio::test]
async fn of_two_commits_for_one_epoch_the_server_publishes_the_first() {
    let mut room = room().await;
    let first_commit = next_commit(&mut room.al, "al").await;
    let_bo_commit(&mut room).await;
    next_commit(&mut room.al, "al").await;
    assert_eq!(
        room.al
            .command("room", "role", json!({"user": "bo", "role": "owner"}))
            .await["ok"],
        true
    );
    // bo's session takes the role once its node has checked it with the
    // presence store: after al's reply, when bo is told.
    assert_eq!(room.bo.event("role").await["data"]["role"], "owner");
    let al_commit = room.al_group.commit_proposals().unwrap();
    let bo_commit = room.bo_group.commit_proposals().unwrap();
    let won = room
        .al
        .command("room", "commit", commit_data(&al_commit))
        .await;
    assert_eq!(won["ok"], true, "{won}");
    room.al_group.confirm().unwrap();
    let lost = room
        .bo
        .command("room", "commit", commit_data(&bo_commit))
        .await;
    assert_eq!(
        (lost["ok"].clone(), lost["code"].clone()),
        (json!(false), json!("conflict")),
        "{lost}"
    );
    assert!(
        lost["message"].as_str().unwrap().contains("at epoch 3"),
        "{lost}"
    );
    // bo re-bases: drops its commit, applies al's, commits again.
    room.bo_group.discard();
    let carried = next_commit(&mut room.bo, "al").await;
    assert_eq!(carried["epoch"], 2);
    assert!(matches!(
        room.bo_group.receive(&bytes(&carried, "commit")).unwrap(),
        Received::Commit { epoch: 3, .. }
    ));
    let again = room.bo_group.commit_proposals().unwrap();
    let reply = room.bo.command("room", "commit", commit_data(&again)).await;
    assert_eq!(reply["ok"], true, "{reply}");
    room.bo_group.confirm().unwrap();
    let carried = next_commit(&mut room.al, "bo").await;
    assert_eq!(carried["epoch"], 3);
    room.al_group.receive(&bytes(&carried, "commit")).unwrap();
    assert_eq!((room.al_group.epoch(), room.bo_group.epoch()), (4, 4));

    // The first commit, replayed, is for an epoch long gone.
    let replay = json!({"commit": first_commit["commit"], "welcome": first_commit["welcome"]});
    let replayed = room.al.command("room", "commit", replay).await;
    assert_eq!(replayed["code"], "conflict", "{replayed}");
    stop(room.serve, vec![room.al, room.bo]).await;
}

// ROBUSTNESS 132: what the order does not take: a participant without the
// `commit` right, a commit slipped in as a plain publish, a commit for
// another group, bytes that are no commit, a commit on a plaintext channel.
#[tokio::test]
async fn commits_outside_the_order_are_refused() {
    let mut room = room().await;
    // The group would take bo's commits; the server's order would not.
    let_bo_commit(&mut room).await;
    let bo_commit = room.bo_group.commit_proposals().unwrap();
    let refused = room
        .bo
        .command("room", "commit", commit_data(&bo_commit))
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    let raw = json!({"e2e": "commit", "epoch": 1, "commit": BASE64.encode(&bo_commit.commit)});
    let refused = room.bo.command("room", "publish", raw).await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("`commit`"),
        "{refused}"
    );

    let server = DeliveryService::new("ws serve").unwrap();
    let mut elsewhere = Device::new("al")
        .unwrap()
        .create_group("lobby", &server.external_sender().unwrap())
        .unwrap();
    let other_group = elsewhere.commit_proposals().unwrap();
    let refused = room
        .al
        .command("room", "commit", commit_data(&other_group))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("another group"),
        "{refused}"
    );

    let sealed = room.al_group.encrypt(b"not a commit").unwrap();
    for (data, says) in [
        (
            json!({"commit": BASE64.encode(&sealed)}),
            "not an MLS commit",
        ),
        (json!({"commit": BASE64.encode(b"garbage")}), "not a commit"),
        (json!({"commit": "%%%"}), "not base64"),
        (json!({"commit": "AAAA", "extra": 1}), "unknown field"),
    ] {
        let refused = room.al.command("room", "commit", data).await;
        assert_eq!(refused["code"], "bad_request", "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains(says),
            "{refused}"
        );
    }

    let plain = room
        .al
        .command("plain", "create", json!({"history_size": 10}))
        .await;
    assert_eq!(plain["ok"], true);
    let own = room.al_group.commit_proposals().unwrap();
    let refused = room.al.command("plain", "commit", commit_data(&own)).await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not an encrypted channel"),
        "{refused}"
    );
    // An encrypted channel without history has nowhere to order commits.
    let bare = room
        .al
        .command("bare", "create", json!({"encrypted": true}))
        .await;
    assert_eq!(bare["ok"], true, "{bare}");
    let refused = room.al.command("bare", "commit", commit_data(&own)).await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("history"),
        "{refused}"
    );
    room.al_group.discard();

    // Nothing refused reached the group: al's next commit is for epoch 2.
    let next = room.al_group.commit_proposals().unwrap();
    let reply = room.al.command("room", "commit", commit_data(&next)).await;
    assert_eq!(reply["ok"], true, "{reply}");
    stop(room.serve, vec![room.al, room.bo]).await;
}

// ROBUSTNESS 133: handshakes have their own budget, above the payload
// limit and bounded: a commit past `max_handshake` is refused before it is
// read.
#[tokio::test]
async fn a_commit_past_the_handshake_budget_is_refused() {
    let config = settings_file("max_message_size = 300000\n[channels]\nmax_handshake = 200000\n");
    let serve = Serve::start(&["--config", config.to_str().unwrap()], &[]).await;
    let mut al = Peer::connect(serve.addr, "al").await;
    create_room(&mut al, 10).await;
    let big = json!({"commit": BASE64.encode(vec![0u8; 160_000])});
    let refused = al.command("room", "commit", big).await;
    assert_eq!(refused["code"], "limit", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("200000"),
        "{refused}"
    );
    // Above max_payload (64 KiB) but within the budget: read, and refused
    // only because it is no commit.
    let within = json!({"commit": BASE64.encode(vec![0u8; 100_000])});
    let refused = al.command("room", "commit", within).await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    stop(serve, vec![al]).await;
}

// ROBUSTNESS 135: the key package directory keeps packages in their
// makers' names: a user cannot upload another's (nor garbage, nor two
// devices' in one upload, nor anywhere but `$keys`); only a member who may
// commit in an encrypted channel claims, one package per device, each
// one-time package once, then the last-resort one.
#[tokio::test]
async fn key_packages_are_kept_in_their_makers_names_and_handed_out_once() {
    let serve = Serve::start(&["--listen", "127.0.0.1:0"], &[]).await;
    let mut al = Peer::connect(serve.addr, "al").await;
    let mut bo = Peer::connect(serve.addr, "bo").await;
    let mut cy = Peer::connect(serve.addr, "cy").await;
    let bo_phone = Device::new("bo").unwrap();
    let bo_laptop = Device::new("bo").unwrap();
    let package = |device: &Device| Value::from(BASE64.encode(device.key_package().unwrap()));

    // cy uploads in bo's name: refused, nothing kept.
    let forged = json!({"key_packages": [package(&bo_phone)]});
    let refused = cy.command("$keys", "key_packages", forged).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    for (channel, data, says) in [
        (
            "$keys",
            json!({"key_packages": [BASE64.encode(b"junk")]}),
            "a bad key package",
        ),
        (
            "$keys",
            json!({"key_packages": [package(&bo_phone), package(&bo_laptop)]}),
            "one device",
        ),
        (
            "room",
            json!({"key_packages": [package(&bo_phone)]}),
            "$keys",
        ),
        ("$keys", json!({"key_packages": ["%%"]}), "not base64"),
    ] {
        let refused = bo.command(channel, "key_packages", data).await;
        assert_eq!(refused["code"], "bad_request", "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains(says),
            "{refused}"
        );
    }

    // A package past the size bound is refused before it is read.
    let huge = json!({"key_packages": [BASE64.encode(vec![0u8; 4000])]});
    let refused = bo.command("$keys", "key_packages", huge).await;
    assert_eq!(refused["code"], "limit", "{refused}");

    let phone = json!({
        "key_packages": [package(&bo_phone), package(&bo_phone)],
        "last_resort": package(&bo_phone),
    });
    let uploaded = bo.command("$keys", "key_packages", phone).await;
    assert_eq!(uploaded["ok"], true, "{uploaded}");
    let laptop = json!({"key_packages": [package(&bo_laptop)]});
    let uploaded = bo.command("$keys", "key_packages", laptop).await;
    let devices = uploaded["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{uploaded}");
    let counts = bo.command("$keys", "key_packages", json!({})).await;
    assert_eq!(
        counts["devices"], uploaded["devices"],
        "a question changes nothing"
    );

    // Claims: only a member of an encrypted channel who may commit.
    create_room(&mut al, 10).await;
    assert_eq!(cy.command("room", "join", json!({})).await["ok"], true);
    let refused = cy.command("room", "claim", json!({"user": "bo"})).await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(al.command("plain", "create", json!({})).await["ok"], true);
    let refused = al.command("plain", "claim", json!({"user": "bo"})).await;
    assert_eq!(refused["code"], "bad_request", "{refused}");

    let mut handed = Vec::new();
    for _ in 0..4 {
        let claimed = al.command("room", "claim", json!({"user": "bo"})).await;
        assert_eq!(claimed["ok"], true, "{claimed}");
        handed.extend(claimed["key_packages"].as_array().unwrap().clone());
    }
    let by = |device: &Device, last_resort: bool| {
        handed
            .iter()
            .filter(|p| p["device"] == device.fingerprint() && p["last_resort"] == last_resort)
            .map(|p| p["key_package"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let phone_once = by(&bo_phone, false);
    assert_eq!(phone_once.len(), 2, "{handed:?}");
    assert_ne!(phone_once[0], phone_once[1]);
    assert_eq!(by(&bo_laptop, false).len(), 1, "{handed:?}");
    assert_eq!(
        by(&bo_phone, true).len(),
        2,
        "the last resort, again: {handed:?}"
    );
    assert!(by(&bo_laptop, true).is_empty(), "{handed:?}");
    let none = al.command("room", "claim", json!({"user": "nobody"})).await;
    assert_eq!(none["key_packages"], json!([]), "{none}");
    // Devices already in the group are left out: the phone's last resort
    // is not handed out again for it, the laptop has nothing left.
    let except = json!({"user": "bo", "except": [bo_phone.fingerprint()]});
    let none = al.command("room", "claim", except).await;
    assert_eq!(none["key_packages"], json!([]), "{none}");
    let except = json!({"user": "bo", "except": [bo_laptop.fingerprint()]});
    let phone = al.command("room", "claim", except).await;
    assert_eq!(
        phone["key_packages"][0]["device"],
        bo_phone.fingerprint(),
        "{phone}"
    );
    let too_many: Vec<String> = (0..11).map(|i| format!("{i:064x}")).collect();
    let refused = al
        .command("room", "claim", json!({"user": "bo", "except": too_many}))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    stop(serve, vec![al, bo, cy]).await;
}

// Every node of a cluster names one external sender, before and after a
// restart (its key comes from the cluster's key); a plaintext channel
// names none, and a deployment with another key names another.
#[tokio::test]
async fn every_node_of_a_cluster_names_one_external_sender() {
    let Some(redis) = ws_test_kit::brokers::service(ws_test_kit::brokers::Kind::Redis) else {
        return;
    };
    let (prefix, elsewhere) = (
        ws_test_kit::brokers::unique_prefix("mls"),
        ws_test_kit::brokers::unique_prefix("mls-other"),
    );
    let sender = |serve: &Serve, user: &'static str, action: &'static str| {
        let addr = serve.addr;
        async move {
            let mut peer = Peer::connect(addr, user).await;
            let reply = if action == "create" {
                create_room(&mut peer, 10).await
            } else {
                peer.command("room", action, json!({})).await
            };
            assert_eq!(reply["ok"], true, "{reply}");
            let plain = peer
                .command(&format!("plain-{user}"), "create", json!({}))
                .await;
            assert!(plain.get("external_sender").is_none(), "{plain}");
            reply["external_sender"].as_str().unwrap().to_owned()
        }
    };
    let (one, two) = (
        redis_node(&redis, CLUSTER_KEY, &prefix).await,
        redis_node(&redis, CLUSTER_KEY, &prefix).await,
    );
    let first = sender(&one, "al", "create").await;
    assert_eq!(sender(&two, "bo", "join").await, first);
    two.stop().await;
    let again = redis_node(&redis, CLUSTER_KEY, &prefix).await;
    assert_eq!(sender(&again, "cy", "join").await, first, "after a restart");
    let other = redis_node(
        &redis,
        "another deployment's cluster key, 32 bytes",
        &elsewhere,
    )
    .await;
    assert_ne!(sender(&other, "di", "create").await, first);
    for serve in [one, again, other] {
        serve.stop().await;
    }
}

/// The next publication of the server's removal proposals `peer` receives.
async fn next_proposals(peer: &mut Peer) -> Value {
    loop {
        let event = peer.event("message").await;
        let data = &event["data"]["data"];
        if data["e2e"] == "proposal" {
            assert!(event["data"].get("from").is_none(), "the server's: {event}");
            return data.clone();
        }
    }
}

/// Every member (as each receives the channel's publications) takes the
/// server's proposals; `member` commits them, and the commit is published.
async fn commit_removal(
    peer: &mut Peer,
    member: &mut Group,
    others: &mut [&mut Group],
    proposed: &Value,
) -> Commit {
    assert_eq!(
        proposed["epoch"].as_u64(),
        Some(member.epoch()),
        "{proposed}"
    );
    for proposal in proposed["proposals"].as_array().unwrap() {
        let proposal = BASE64.decode(proposal.as_str().unwrap()).unwrap();
        assert_eq!(member.receive(&proposal).unwrap(), Received::Proposal);
        for other in others.iter_mut() {
            assert_eq!(other.receive(&proposal).unwrap(), Received::Proposal);
        }
    }
    let commit = member.commit_proposals().unwrap();
    let reply = peer.command("room", "commit", commit_data(&commit)).await;
    assert_eq!(reply["ok"], true, "{reply}");
    member.confirm().unwrap();
    commit
}

// ROBUSTNESS 137: a ban by a channel's owner and one through `ws ctl` (the
// admin API) each make the server propose, as the group's external sender,
// the removal of the user's devices; the owner's next commit takes it in,
// and the banned member cannot open anything sent after it, while the
// others can. A member cannot publish proposals in the server's name.
#[tokio::test]
async fn a_banned_member_reads_nothing_after_the_next_commit() {
    let Room {
        serve,
        mut al,
        mut bo,
        mut al_group,
        mut bo_group,
    } = room().await;
    // cy joins too, through the directory.
    let mut cy = Peer::connect(serve.addr, "cy").await;
    let cy_device = Device::new("cy").unwrap();
    assert_eq!(cy.command("room", "join", json!({})).await["ok"], true);
    let upload = json!({"key_packages": [BASE64.encode(cy_device.key_package().unwrap())]});
    assert_eq!(
        cy.command("$keys", "key_packages", upload).await["ok"],
        true
    );
    let claimed = al.command("room", "claim", json!({"user": "cy"})).await;
    let package = bytes(&claimed["key_packages"][0], "key_package");
    let add = al_group.add(&[package]).unwrap();
    assert_eq!(
        al.command("room", "commit", commit_data(&add)).await["ok"],
        true
    );
    al_group.confirm().unwrap();
    bo_group.receive(&add.commit).unwrap();
    let mut cy_group = cy_device.join(add.welcome.as_ref().unwrap()).unwrap();

    // A member forging the server's proposal is refused.
    let forged = json!({"e2e": "proposal", "epoch": 2, "user": "cy", "proposals": []});
    let refused = bo.command("room", "publish", forged).await;
    assert_eq!(refused["code"], "bad_request", "{refused}");

    // The owner bans bo.
    let banned = al.command("room", "ban", json!({"user": "bo"})).await;
    assert_eq!(banned["ok"], true, "{banned}");
    let proposed = next_proposals(&mut al).await;
    assert_eq!(proposed["user"], "bo");
    let others = &mut [&mut bo_group, &mut cy_group];
    let removal = commit_removal(&mut al, &mut al_group, others, &proposed).await;
    match cy_group.receive(&removal.commit).unwrap() {
        Received::Commit { removed, .. } => assert_eq!(removed, ["bo"]),
        other => panic!("{other:?}"),
    }
    match bo_group.receive(&removal.commit).unwrap() {
        Received::Commit { removed_me, .. } => assert!(removed_me),
        other => panic!("{other:?}"),
    }
    let after = al_group.encrypt(b"bo is gone").unwrap();
    assert!(
        bo_group.receive(&after).is_err(),
        "bo opens nothing after the commit"
    );
    assert!(matches!(
        cy_group.receive(&after).unwrap(),
        Received::Message { .. }
    ));

    // An operator bans cy with ws ctl.
    let (code, out, err) = serve.ctl(TOKEN, &["ban", "room", "cy"]).await;
    assert_eq!(code, 0, "{out}{err}");
    let proposed = next_proposals(&mut al).await;
    assert_eq!(proposed["user"], "cy");
    let removal = commit_removal(&mut al, &mut al_group, &mut [&mut cy_group], &proposed).await;
    match cy_group.receive(&removal.commit).unwrap() {
        Received::Commit { removed_me, .. } => assert!(removed_me),
        other => panic!("{other:?}"),
    }
    let after = al_group.encrypt(b"cy is gone").unwrap();
    assert!(
        cy_group.receive(&after).is_err(),
        "cy opens nothing after the commit"
    );
    assert_eq!(al_group.members().len(), 1);
    stop(serve, vec![al, bo, cy]).await;
}

/// A `ws serve` with `settings` (a settings file's lines) where al's client
/// creates "room" and adds bo and cy as they join: the server and the
/// three clients.
async fn al_bo_and_cy(
    settings: &str,
) -> (
    Serve,
    ws_crypto::mls::MlsClient,
    ws_crypto::mls::MlsClient,
    ws_crypto::mls::MlsClient,
) {
    use ws_crypto::mls::MlsEvent;
    let config = settings_file(settings);
    let serve = Serve::start(&["--config", config.to_str().unwrap()], &[]).await;
    let mut al = mls_member(serve.addr, "al").await.with_auto_add(true);
    al.create("room", 100).await.unwrap();
    let mut members = Vec::new();
    for user in ["bo", "cy"] {
        let mut member = mls_member(serve.addr, user).await;
        member.publish_key_packages(1).await.unwrap();
        member.join("room").await.unwrap();
        loop {
            if let MlsEvent::Epoch { added, .. } = next(&mut al).await
                && added == [user]
            {
                break;
            }
        }
        members.push(member);
    }
    let cy = members.pop().unwrap();
    let bo = members.pop().unwrap();
    (serve, al, bo, cy)
}

// ROBUSTNESS 163: the owner's client addresses an add's Welcome to the
// newcomer: a member who watches the channel (here a plain session of
// another user) receives the commit without it, the newcomer with it.
#[tokio::test]
async fn an_adds_welcome_reaches_the_newcomer_and_not_the_others() {
    use ws_crypto::mls::MlsEvent;
    let serve = Serve::start(&[], &[]).await;
    let mut al = mls_member(serve.addr, "al").await.with_auto_add(true);
    al.create("room", 100).await.unwrap();
    let mut wes = Peer::connect(serve.addr, "wes").await;
    assert_eq!(wes.command("room", "join", json!({})).await["ok"], true);
    let mut bo = mls_member(serve.addr, "bo").await;
    bo.publish_key_packages(1).await.unwrap();
    bo.join("room").await.unwrap();
    loop {
        if let MlsEvent::Epoch { added, .. } = next(&mut al).await
            && added == ["bo"]
        {
            break;
        }
    }
    while !matches!(next(&mut bo).await, MlsEvent::Joined { .. }) {}
    let seen = next_commit(&mut wes, "al").await;
    assert!(seen.get("commit").is_some(), "{seen}");
    assert!(
        seen.get("welcome").is_none(),
        "another user's session got the Welcome: {seen}"
    );
    drop((al, bo));
    stop(serve, vec![wes]).await;
}

// ROBUSTNESS 137: a ban by a moderator (a channel role given `ban`, not the
// group's owner) also makes the server propose the removal, which the
// group's owner commits: the moderator needs no role in the group.
#[tokio::test]
async fn a_moderators_ban_is_committed_by_the_groups_owner() {
    use ws_crypto::mls::MlsEvent;
    let (serve, mut al, mut bo, cy) =
        al_bo_and_cy("[channels.roles]\nmoderator = [\"ban\", \"kick\", \"publish\"]\n").await;
    let moderator = ws_channels::ChannelRole::new("moderator");
    al.channels()
        .set_role("room", "bo", moderator)
        .await
        .unwrap();
    // The role reaches bo's session once its node has checked it with the
    // presence store, a moment after al's reply: until then bo is refused
    // (seen in CI: "the role participant may not ban").
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match bo.channels().ban("room", "cy", None).await {
            Ok(()) => break,
            Err(ws_channels::ClientError::Refused(refusal))
                if refusal.code == ws_channels::ErrorCode::Forbidden
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(error) => panic!("bo's ban: {error:?}"),
        }
    }
    let proposed = loop {
        if let MlsEvent::RemovalProposed { user, .. } = next(&mut al).await {
            break user;
        }
    };
    assert_eq!(proposed, "cy");
    al.commit_pending("room").await.unwrap();
    let mut users: Vec<String> = al.roster("room").into_iter().map(|m| m.user).collect();
    users.sort();
    assert_eq!(users, ["al", "bo"]);
    // bo applies the owner's commit; what al sends next, cy cannot open
    // (it is out of the channel and of the group).
    loop {
        if let MlsEvent::Epoch { removed, .. } = next(&mut bo).await
            && removed == ["cy"]
        {
            break;
        }
    }
    al.send("room", b"cy is out").await.unwrap();
    loop {
        if let MlsEvent::Message { data, .. } = next(&mut bo).await {
            assert_eq!(data, b"cy is out");
            break;
        }
    }
    assert!(
        cy.epoch("room")
            .is_none_or(|epoch| epoch < al.epoch("room").unwrap())
    );
    drop((al, bo, cy));
    stop(serve, vec![]).await;
}

// ROBUSTNESS 138: 200 users join an encrypted channel at once on a server
// with the default settings: the owner's client adds them all (in one
// commit, which fits the default message size of 1 MiB) and is never
// closed (1009 or 1008); every joiner enters the group and reads what the
// owner sends next. On a server that takes smaller messages the client
// splits the adds into commits that fit.
#[tokio::test]
async fn a_burst_of_200_joins_never_closes_the_committer() {
    assert_eq!(burst(200, None).await, 1, "one commit for the burst");
}

#[tokio::test]
async fn adds_too_large_for_one_message_are_split_into_commits_that_fit() {
    let epochs = burst(30, Some(24 * 1024)).await;
    assert!(epochs > 1, "split: {epochs} commits");
}

/// `joiners` users join at once; the owner adds them all. The commits it
/// took.
async fn burst(joiners: usize, max_message: Option<usize>) -> u64 {
    use ws_crypto::mls::MlsEvent;
    let config = settings_file(
        &max_message.map_or_else(String::new, |max| format!("max_message_size = {max}\n")),
    );
    let serve = Serve::start(&["--config", config.to_str().unwrap()], &[]).await;
    let addr = serve.addr;
    let connect = |user: String| async move {
        let client = mls_member(addr, &user).await;
        match max_message {
            Some(max) => client.with_max_message(max),
            None => client,
        }
    };
    let mut owner = connect("owner".into()).await;
    owner.create("room", 1000).await.unwrap();
    let (ready, mut all_ready) = tokio::sync::mpsc::channel(joiners);
    let mut tasks = Vec::new();
    for n in 0..joiners {
        let mut joiner = connect(format!("u{n}")).await;
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            joiner.publish_key_packages(1).await.unwrap();
            joiner.join("room").await.unwrap();
            ready.send(()).await.unwrap();
            let mut joined = false;
            loop {
                let event = tokio::time::timeout(WAIT * 4, joiner.next_event())
                    .await
                    .expect("events in time")
                    .expect("open")
                    .expect("no error");
                match event {
                    MlsEvent::Joined { .. } => joined = true,
                    MlsEvent::Message { data, .. } => {
                        assert!(joined);
                        return data;
                    }
                    MlsEvent::Unreadable { error, .. } => panic!("unreadable: {error}"),
                    _ => {}
                }
            }
        }));
    }
    for _ in 0..joiners {
        all_ready.recv().await.unwrap();
    }
    let users: Vec<String> = (0..joiners).map(|n| format!("u{n}")).collect();
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let epoch = owner
        .add("room", &users)
        .await
        .expect("the committer stays");
    assert_eq!(owner.roster("room").len(), joiners + 1);
    owner.send("room", b"hello all").await.unwrap();
    for task in tasks {
        assert_eq!(task.await.unwrap(), b"hello all");
    }
    drop(owner);
    stop(serve, vec![]).await;
    epoch
}

// ROBUSTNESS 156: a member opens the channel on a second device (another
// browser, a new phone). The owner's client adds that device, claiming
// with the devices already in the group left out; a join of a device
// already in (a reconnect) uses up none of the user's key packages.
#[tokio::test]
async fn a_members_second_device_is_added_and_a_reconnect_costs_no_key_package() {
    use ws_crypto::mls::MlsEvent;
    let serve = Serve::start(&[], &[]).await;
    let mut al = mls_member(serve.addr, "al").await.with_auto_add(true);
    al.create("room", 100).await.unwrap();
    let added = async |al: &mut ws_crypto::mls::MlsClient| loop {
        match next(al).await {
            MlsEvent::Epoch { added, .. } => return added,
            MlsEvent::AddFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    };
    let mut laptop = mls_member(serve.addr, "bo").await;
    laptop.publish_key_packages(1).await.unwrap();
    laptop.join("room").await.unwrap();
    assert_eq!(added(&mut al).await, ["bo"]);
    let mut phone = mls_member(serve.addr, "bo").await;
    phone.publish_key_packages(1).await.unwrap();
    phone.join("room").await.unwrap();
    assert_eq!(added(&mut al).await, ["bo"], "the phone, as bo");
    let roster = al.roster("room");
    assert_eq!(roster.len(), 3, "{roster:?}");
    al.send("room", b"to both").await.unwrap();
    for device in [&mut laptop, &mut phone] {
        loop {
            if let MlsEvent::Message { data, .. } = next(device).await {
                assert_eq!(data, b"to both");
                break;
            }
        }
    }

    // The laptop stocks up, then a session of bo's joins again, as a
    // reconnect does: al claims, finds no device outside the group and
    // adds nothing; the laptop's packages are all still there.
    let stocked = laptop.publish_key_packages(3).await.unwrap();
    let mut again = Peer::connect(serve.addr, "bo").await;
    assert_eq!(again.command("room", "join", json!({})).await["ok"], true);
    loop {
        if let MlsEvent::Other(ws_channels::protocol::Event::Publication { kind, .. }) =
            next(&mut al).await
            && kind == ws_channels::PublicationKind::Join
        {
            break;
        }
    }
    al.send("room", b"after").await.unwrap();
    loop {
        match next(&mut al).await {
            MlsEvent::Sent { .. } => break,
            other => assert!(
                !matches!(other, MlsEvent::Epoch { .. } | MlsEvent::AddFailed { .. }),
                "{other:?}"
            ),
        }
    }
    assert_eq!(al.roster("room").len(), 3);
    let counts = again.command("$keys", "key_packages", json!({})).await;
    assert_eq!(
        counts["devices"], stocked["devices"],
        "a reconnect used up nothing: {counts}"
    );
    drop((al, laptop, phone));
    stop(serve, vec![again]).await;
}

// ROBUSTNESS 157: two devices of the owner's (two tabs) add the same
// newcomer at once. The second's commit loses the race; on top of the
// winner it finds the device in and commits nothing, rather than failing
// on an add of a device already there.
#[tokio::test]
async fn two_owner_devices_adding_one_newcomer_end_in_one_add() {
    use ws_crypto::mls::MlsEvent;
    let serve = Serve::start(&[], &[]).await;
    let mut first = mls_member(serve.addr, "al").await;
    first.create("room", 100).await.unwrap();
    let mut second = mls_member(serve.addr, "al").await;
    second.publish_key_packages(1).await.unwrap();
    second.join("room").await.unwrap();
    first.add("room", &["al"]).await.unwrap();
    while !matches!(next(&mut second).await, MlsEvent::Joined { .. }) {}

    let mut bo = mls_member(serve.addr, "bo").await;
    bo.publish_key_packages(2).await.unwrap();
    bo.join("room").await.unwrap();
    let by_first = first.claim("room", &["bo"]).await.unwrap();
    let by_second = second.claim("room", &["bo"]).await.unwrap();
    assert_eq!((by_first.len(), by_second.len()), (1, 1));
    let won = first.add_claimed("room", by_first).await.unwrap();
    let rebased = second.add_claimed("room", by_second).await;
    assert_eq!(
        rebased.unwrap(),
        won,
        "nothing left to add on top of the winner"
    );
    for device in [&first, &second] {
        let roster = device.roster("room");
        assert_eq!(
            roster.iter().filter(|m| m.user == "bo").count(),
            1,
            "{roster:?}"
        );
        assert_eq!(roster.len(), 3, "{roster:?}");
    }
    while !matches!(next(&mut bo).await, MlsEvent::Joined { .. }) {}
    drop((first, second, bo));
    stop(serve, vec![]).await;
}

// ROBUSTNESS 159: a member's device is away while the group moves on (an
// add it never sees: the channel keeps nothing of it for this device,
// which comes back without `since`). It cannot read the group's next
// message, says so once and asks to be added again; the owner's client
// removes its old leaf and adds it from a fresh package of its own in one
// commit, whose Welcome brings it back, and it reads on.
#[tokio::test]
async fn a_device_that_missed_commits_is_added_again_and_reads_on() {
    use ws_crypto::mls::{MlsClient, MlsEvent};
    let serve = Serve::start(&[], &[]).await;
    let mut al = mls_member(serve.addr, "al").await.with_auto_add(true);
    al.create("room", 100).await.unwrap();
    let mut bo = mls_member(serve.addr, "bo").await;
    bo.publish_key_packages(1).await.unwrap();
    bo.join("room").await.unwrap();
    while !matches!(next(&mut al).await, MlsEvent::Epoch { .. }) {}
    while !matches!(next(&mut bo).await, MlsEvent::Joined { .. }) {}
    let saved = bo.export().unwrap();
    drop(bo);

    let mut cy = mls_member(serve.addr, "cy").await;
    cy.publish_key_packages(1).await.unwrap();
    cy.join("room").await.unwrap();
    loop {
        if let MlsEvent::Epoch { added, .. } = next(&mut al).await
            && added == ["cy"]
        {
            break;
        }
    }
    let (ws, _) = ws_tokio::connect(format!("ws://{}/channels?user=bo", serve.addr))
        .await
        .unwrap();
    let mut bo = MlsClient::new(
        ws_channels::ChannelsClient::new(ws),
        Device::import(&saved).unwrap(),
    );
    bo.load("room").unwrap();
    let away_at = bo.epoch("room").unwrap();
    bo.join("room").await.unwrap();
    // The join reply says where the group is: bo knows at once, before
    // anything is sent in the group (ROBUSTNESS 162).
    assert!(
        matches!(next(&mut bo).await, MlsEvent::Behind { epoch, .. } if epoch == away_at),
        "the first thing bo hears is that it is behind"
    );
    al.send("room", b"while you were away").await.unwrap();
    // bo reads on its own, as an application does, until it is back.
    let back = tokio::spawn(async move {
        loop {
            match next(&mut bo).await {
                MlsEvent::Behind { .. } => panic!("said to be behind twice"),
                MlsEvent::Message { .. } => panic!("read a message of an epoch it does not have"),
                MlsEvent::Joined { epoch, .. } => return (bo, epoch),
                _ => {}
            }
        }
    });
    loop {
        match next(&mut al).await {
            MlsEvent::Epoch { added, removed, .. } if added == ["bo"] => {
                assert_eq!(removed, ["bo"], "its old leaf went in the same commit");
                break;
            }
            MlsEvent::AddFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let (mut bo, joined) = back.await.unwrap();
    assert_eq!(Some(joined), al.epoch("room"));
    let roster = al.roster("room");
    assert_eq!(roster.len(), 3, "one leaf for bo's device: {roster:?}");
    al.send("room", b"welcome back").await.unwrap();
    for device in [&mut bo, &mut cy] {
        loop {
            if let MlsEvent::Message { data, .. } = next(device).await
                && data == b"welcome back"
            {
                break;
            }
        }
    }

    // Another user asks for bo's device: the owner's client takes requests
    // only for the sender's own devices, and commits nothing.
    let mut mallory = Peer::connect(serve.addr, "mallory").await;
    assert_eq!(mallory.command("room", "join", json!({})).await["ok"], true);
    let forged = json!({"e2e": "resync", "device": bo.device().fingerprint(), "epoch": 0});
    assert_eq!(mallory.command("room", "publish", forged).await["ok"], true);
    let epoch = al.epoch("room");
    al.send("room", b"after the forged request").await.unwrap();
    loop {
        match next(&mut al).await {
            MlsEvent::Sent { .. } => break,
            MlsEvent::Epoch { .. } => panic!("a commit for another user's request"),
            _ => {}
        }
    }
    assert_eq!(al.epoch("room"), epoch);
    drop((al, bo, cy));
    stop(serve, vec![mallory]).await;
}

// ROBUSTNESS 149: a member whose sessions are all gone from an encrypted
// channel (a closed tab, a lost connection) for longer than
// `group_member_linger` is proposed for removal by the server, and the
// next commit takes it in: membership follows the channel. One who comes
// back in time is not.
#[tokio::test]
async fn a_member_away_past_the_linger_is_removed_from_the_group() {
    use ws_crypto::mls::MlsEvent;
    let (serve, mut al, bo, cy) = al_bo_and_cy("[channels]\ngroup_member_linger = 1\n").await;
    // bo closes; cy's connection goes and cy is back within the second.
    drop(bo);
    drop(cy);
    let mut cy = mls_member(serve.addr, "cy").await;
    cy.join("room").await.unwrap();
    let proposed = loop {
        match next(&mut al).await {
            MlsEvent::RemovalProposed { user, .. } => break user,
            MlsEvent::Unreadable { error, .. } => panic!("{error}"),
            _ => {}
        }
    };
    assert_eq!(proposed, "bo");
    al.commit_pending("room").await.unwrap();
    let mut users: Vec<String> = al.roster("room").into_iter().map(|m| m.user).collect();
    users.sort();
    assert_eq!(users, ["al", "cy"]);
    // No proposal for cy, who came back, follows.
    let quiet = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        loop {
            if let MlsEvent::RemovalProposed { user, .. } = next(&mut al).await {
                return user;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "proposed: {quiet:?}");
    drop((al, cy));
    stop(serve, vec![]).await;
}

// ROBUSTNESS 139: anyone who can publish on the broker injects into an
// encrypted channel's live publications a commit it signed (adding a
// device of its own), removal proposals signed by a Delivery Service of its
// own, a replay of a genuine old commit and a forged message. Members
// apply and open none of them: their group stays as it was, and the
// next genuine message opens as before.
#[tokio::test]
async fn what_a_broker_client_injects_changes_no_group() {
    use ws_crypto::mls::MlsEvent;
    let Some(redis) = ws_test_kit::brokers::service(ws_test_kit::brokers::Kind::Redis) else {
        return;
    };
    let prefix = ws_test_kit::brokers::unique_prefix("mls-inject");
    let (one, two) = (
        redis_node(&redis, CLUSTER_KEY, &prefix).await,
        redis_node(&redis, CLUSTER_KEY, &prefix).await,
    );
    let client = mls_member;
    let mut ann = client(one.addr, "ann").await;
    ann.create("room", 100).await.unwrap();
    let mut bob = client(two.addr, "bob").await;
    bob.publish_key_packages(1).await.unwrap();
    bob.join("room").await.unwrap();
    ann.add("room", &["bob"]).await.unwrap();
    loop {
        if matches!(next(&mut bob).await, MlsEvent::Joined { .. }) {
            break;
        }
    }

    // The attacker's own group named "room", with a device of its own
    // named bob, and a Delivery Service of its own as external sender.
    let fake_service = DeliveryService::new("ws serve").unwrap();
    let mallory = Device::new("ann").unwrap();
    let mut fake = mallory
        .create_group("room", &fake_service.external_sender().unwrap())
        .unwrap();
    let add = fake
        .add(&[Device::new("bob").unwrap().key_package().unwrap()])
        .unwrap();
    fake.confirm().unwrap();
    let forged_commit = fake.commit_proposals().unwrap();
    let (_, forged_proposals) = fake_service
        .propose_remove_from(add.group_info.as_ref().unwrap(), "bob")
        .unwrap();
    // The genuine first commit, as history keeps it.
    let history = ann.channels().history("room", None).await.unwrap();
    let genuine_first = history
        .publications
        .iter()
        .filter_map(|p| p.data.as_ref().map(ws_channels::Payload::to_value))
        .find(|data| data["e2e"] == "commit")
        .expect("the first commit in history");
    let genuine_first = bytes(&genuine_first, "commit");
    let injected = [
        json!({"e2e": "commit", "epoch": 1, "commit": BASE64.encode(&forged_commit.commit)}),
        json!({"e2e": "proposal", "epoch": 1, "user": "bob",
               "proposals": [BASE64.encode(&forged_proposals[0])]}),
        json!({"e2e": "commit", "epoch": 0, "commit": BASE64.encode(&genuine_first)}),
        json!({"e2e": "mls", "message": BASE64.encode(b"not a message")}),
    ];
    for data in &injected {
        let publication = ws_channels::Publication::message(None, ws_channels::Payload::new(data));
        let wire = json!({ "p": publication }).to_string();
        let out = tokio::process::Command::new("redis-cli")
            .args([
                "-u",
                &redis,
                "PUBLISH",
                &format!("{prefix}:pub:room"),
                &wire,
            ])
            .output()
            .await
            .expect("redis-cli runs");
        assert!(out.status.success(), "{out:?}");
        assert_ne!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "a node listens"
        );
    }
    ann.send("room", b"still private").await.unwrap();
    let mut unreadable = 0;
    let data = loop {
        match next(&mut bob).await {
            MlsEvent::Unreadable { .. } => unreadable += 1,
            MlsEvent::Message { from, data, .. } => {
                assert_eq!(from.user, "ann");
                break data;
            }
            MlsEvent::Epoch { .. }
            | MlsEvent::RemovalProposed { .. }
            | MlsEvent::Removed { .. } => {
                panic!("an injected handshake was applied")
            }
            _ => {}
        }
    };
    assert_eq!(data, b"still private");
    assert_eq!(unreadable, 3, "the forged commit, proposals and message");
    assert_eq!((bob.epoch("room"), bob.roster("room").len()), (Some(1), 2));
    assert_eq!(ann.epoch("room"), Some(1));
    drop((ann, bob));
    one.stop().await;
    two.stop().await;
}

async fn next(client: &mut ws_crypto::mls::MlsClient) -> ws_crypto::mls::MlsEvent {
    tokio::time::timeout(WAIT, client.next_event())
        .await
        .expect("an event in time")
        .expect("open")
        .expect("no error")
}

// ROBUSTNESS 150: a malicious server answers a claim for bo with a key
// package of a device it made under another name. The member's client
// checks each claimed package and refuses to add it; what a server could
// do instead, a device of its own named "bo", shows in the claim with a
// fingerprint that is not bo's (the page's owner checks it, `claim`).
#[tokio::test]
async fn a_server_that_hands_out_a_key_package_in_another_name_is_caught() {
    use ws_crypto::mls::{MlsClient, MlsClientError};
    use ws_tokio::envelope::{EnvelopeHandler, Envelopes};
    use ws_tokio::ws_core::envelope::Envelope;
    use ws_tokio::{Ctx, Endpoint};

    /// Speaks just enough of the channels protocol to create a channel
    /// and answer claims, with the key packages it chose.
    struct Forging {
        external_sender: String,
        handed_out: String,
    }
    impl EnvelopeHandler for Forging {
        async fn on_envelope(&mut self, ctx: &mut Ctx, envelope: Envelope) {
            let data = match envelope.action.as_deref() {
                Some("create") => json!({
                    "ok": true, "role": "owner", "encrypted": true,
                    "external_sender": self.external_sender,
                }),
                Some("claim") => json!({"ok": true, "key_packages": [
                    {"device": "0000 0000", "key_package": self.handed_out, "last_resort": false},
                ]}),
                _ => json!({"ok": false, "code": "bad_request", "message": "not here"}),
            };
            let _ = ctx.send_envelope(&envelope.response(data)).await;
        }
    }

    let bo = Device::new("bo").unwrap();
    let impostor = Device::new("bo").unwrap();
    let mallory = Device::new("mallory").unwrap();
    for (handed_out, caught) in [(&mallory, true), (&impostor, false)] {
        let external_sender = BASE64.encode(
            DeliveryService::new("evil")
                .unwrap()
                .external_sender()
                .unwrap(),
        );
        let handed_out = BASE64.encode(handed_out.key_package().unwrap());
        let endpoint = Endpoint::new(move |_| {
            Envelopes(Forging {
                external_sender: external_sender.clone(),
                handed_out: handed_out.clone(),
            })
        });
        let server = ws_tokio::server().route("/channels", endpoint).build();
        let listener = ws_tokio::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(async move { server.serve(listener).await });
        let (socket, _) = ws_tokio::connect(format!("ws://{addr}/channels"))
            .await
            .unwrap();
        let mut ann = MlsClient::new(
            ws_channels::ChannelsClient::new(socket),
            Device::new("ann").unwrap(),
        );
        ann.create("room", 10).await.unwrap();
        if caught {
            let refused = ann.claim("room", &["bo"]).await.unwrap_err();
            assert!(
                matches!(&refused, MlsClientError::Forged { asked, .. } if asked == "bo"),
                "{refused:?}"
            );
            let refused = ann.add("room", &["bo"]).await.unwrap_err();
            assert!(
                matches!(refused, MlsClientError::Forged { .. }),
                "{refused:?}"
            );
            assert_eq!(ann.roster("room").len(), 1, "nobody was added");
        } else {
            let claimed = ann.claim("room", &["bo"]).await.unwrap();
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].user, "bo");
            assert_ne!(claimed[0].fingerprint, bo.fingerprint(), "not bo's device");
            assert_eq!(claimed[0].fingerprint, impostor.fingerprint());
        }
        serving.abort();
    }
}
