//! ws-channels end to end: every command and error code over real
//! connections, a ban surviving a reconnect, recovery with and without a
//! gap, a slow subscriber disconnected while the others keep receiving,
//! and the handle used from outside connections.

use std::time::Duration;

use serde_json::{Value, json};
use ws_channels::protocol::{Command, Event, Request, command_envelope};
use ws_channels::{
    Channels, ChannelsClient, ChannelsConfig, ChannelsHandle, Payload, Target, TopicAccess,
    close_codes,
};

use super::common::{Raw, TestServer, channels_socket, masked_frame, serve};
use crate::rt::{self, ws};
use ws::ServerConfig;
use ws::auth::KeyAuth;
use ws::ws_core::envelope::Kind;

const USERS: [&str; 4] = ["ann", "bob", "cy", "dee"];

async fn channels_server(
    config: ChannelsConfig,
    server: ServerConfig,
) -> (TestServer, ChannelsHandle) {
    let channels = Channels::builder(config)
        .command("roll", ["participant"], |command, _| async move {
            match command.data["sides"].as_u64() {
                Some(sides) if sides > 0 => Ok(json!({ "sides": sides, "by": command.user })),
                _ => Err(ws_channels::ChannelError::new(
                    ws_channels::ErrorCode::BadRequest,
                    "roll needs a positive `sides`",
                )),
            }
        })
        .build();
    let mut keys = KeyAuth::new();
    for user in USERS {
        keys = keys.key(format!("key-{user}"), user);
    }
    let endpoint = channels.endpoint().authenticator(keys);
    let handle = channels.handle();
    let server = serve(
        ws::server()
            .config(server)
            .route("/channels", endpoint)
            .build(),
    )
    .await;
    (server, handle)
}

/// A channels client: commands with ids, replies matched to them, events
/// kept in order for whoever asks.
/// A session over ws-channels' own client, kept at the wire's level:
/// replies and events as the JSON the server wrote.
struct Client {
    inner: ChannelsClient,
}

impl Client {
    async fn connect(server: &TestServer, user: &str) -> Self {
        Self {
            inner: ChannelsClient::new(channels_socket(server, user).await),
        }
    }

    /// Sends a command and returns its reply's `data`.
    async fn cmd(&mut self, channel: &str, action: &str, data: Value) -> Value {
        let command = command_envelope(channel, action, data);
        let reply = rt::timeout(Duration::from_secs(10), self.inner.send_envelope(command))
            .await
            .expect("a reply in time")
            .expect("a reply");
        assert_eq!(reply.action.as_deref(), Some(action));
        reply.data.expect("replies carry data")
    }

    /// The reply's error code, checked to be an error.
    async fn refused(&mut self, channel: &str, action: &str, data: Value) -> String {
        let reply = self.cmd(channel, action, data).await;
        assert_eq!(reply["ok"], false, "{action}: {reply}");
        assert!(reply["message"].is_string(), "{reply}");
        reply["code"].as_str().unwrap().to_owned()
    }

    async fn ok(&mut self, channel: &str, action: &str, data: Value) -> Value {
        let reply = self.cmd(channel, action, data).await;
        assert_eq!(reply["ok"], true, "{action}: {reply}");
        reply
    }

    /// The next event named `action` (others before it are skipped), whole.
    async fn event(&mut self, action: &str) -> Value {
        loop {
            let envelope = rt::timeout(Duration::from_secs(10), self.inner.next_event_envelope())
                .await
                .expect("an event in time")
                .expect("the connection is open")
                .expect("an event");
            if envelope.kind == Some(Kind::Event) && envelope.action.as_deref() == Some(action) {
                return serde_json::to_value(&envelope).unwrap();
            }
        }
    }

    /// The events that came while replies were awaited, unread, whole
    /// (taken: the next `event` waits for new ones).
    fn buffered(&mut self) -> Vec<Value> {
        self.inner
            .take_buffered_events()
            .iter()
            .map(|envelope| serde_json::to_value(envelope).unwrap())
            .collect()
    }
}

async fn every_command_and_error_code() {
    let config = ChannelsConfig {
        max_channels_per_session: 3,
        ..ChannelsConfig::default()
    }
    .role("moderator", ["kick", "publish", "leave", "presence"])
    .topic("alerts", TopicAccess::Everyone);
    let (server, handle) = channels_server(config, ServerConfig::default()).await;
    let mut ann = Client::connect(&server, "ann").await;
    let mut bob = Client::connect(&server, "bob").await;
    let mut cy = Client::connect(&server, "cy").await;

    let created = ann
        .ok(
            "room",
            "create",
            json!({"max_participants": 3, "presence_events": true}),
        )
        .await;
    assert_eq!(created["role"], "owner");
    assert_eq!(
        ann.refused("room", "create", json!({})).await,
        "already_exists"
    );
    assert_eq!(bob.refused("nowhere", "join", json!({})).await, "not_found");
    assert_eq!(
        bob.refused("no room", "join", json!({})).await,
        "bad_request"
    );
    assert_eq!(
        bob.refused("room", "dance", json!({})).await,
        "unknown_command"
    );
    assert_eq!(bob.refused("room", "publish", json!(1)).await, "not_member");

    let joined = bob
        .ok("room", "join", json!({"info": {"name": "Bob"}}))
        .await;
    assert_eq!(joined["role"], "participant");
    let announced = ann.event("join").await;
    assert_eq!(announced["data"]["from"]["user"], "bob");
    assert_eq!(announced["data"]["from"]["info"]["name"], "Bob");
    cy.ok("room", "join", json!({})).await;
    let mut dee = Client::connect(&server, "dee").await;
    assert_eq!(dee.refused("room", "join", json!({})).await, "full");

    // Publish: every member once, the publisher included.
    let published = bob.ok("room", "publish", json!({"text": "hello"})).await;
    assert!(published.get("offset").is_none(), "no history: no offset");
    for client in [&mut ann, &mut bob, &mut cy] {
        let message = client.event("message").await;
        assert_eq!(message["channel"], "room");
        assert_eq!(message["data"]["data"]["text"], "hello");
        assert_eq!(message["data"]["from"]["user"], "bob");
    }

    // Presence.
    let roster = cy.ok("room", "presence", json!({})).await;
    assert_eq!(roster["total"], 3);
    let users: Vec<&str> = roster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["ann", "bob", "cy"]);

    // Roles: participants may not moderate; the owner makes bob one.
    assert_eq!(
        bob.refused("room", "kick", json!({"user": "cy"})).await,
        "forbidden"
    );
    assert_eq!(
        ann.refused("room", "role", json!({"user": "bob", "role": "king"}))
            .await,
        "bad_request"
    );
    ann.ok("room", "role", json!({"user": "bob", "role": "moderator"}))
        .await;
    assert_eq!(bob.event("role").await["data"]["role"], "moderator");
    bob.ok("room", "kick", json!({"user": "cy"})).await;
    assert_eq!(cy.event("kicked").await["channel"], "room");
    assert_eq!(cy.refused("room", "publish", json!(1)).await, "not_member");
    assert_eq!(
        bob.refused("room", "ban", json!({"user": "cy"})).await,
        "forbidden"
    );

    // Custom commands, for the roles given.
    cy.ok("room", "join", json!({})).await;
    let rolled = cy.ok("room", "roll", json!({"sides": 6})).await;
    assert_eq!(rolled["result"], json!({"sides": 6, "by": "cy"}));
    assert_eq!(cy.refused("room", "roll", json!({})).await, "bad_request");

    // Limits: channels per session, payload size.
    ann.ok("two", "create", json!({})).await;
    ann.ok("three", "create", json!({})).await;
    assert_eq!(ann.refused("four", "create", json!({})).await, "limit");
    let big = "x".repeat(70 * 1024);
    assert_eq!(ann.refused("room", "publish", json!(big)).await, "limit");

    // Topics with filters, fed by the handle.
    bob.ok("alerts", "subscribe", json!({"filter": {"level": "error"}}))
        .await;
    cy.ok("alerts", "subscribe", json!({})).await;
    assert_eq!(
        cy.refused("weather", "subscribe", json!({})).await,
        "not_found"
    );
    handle
        .emit("alerts", &json!({"level": "info", "n": 1}))
        .await
        .unwrap();
    handle
        .emit("alerts", &json!({"level": "error", "n": 2}))
        .await
        .unwrap();
    assert_eq!(cy.event("event").await["data"]["n"], 1);
    assert_eq!(cy.event("event").await["data"]["n"], 2);
    let alert = bob.event("event").await;
    assert_eq!(alert["channel"], "alerts");
    assert_eq!(alert["data"]["n"], 2, "the info alert was filtered out");
    cy.ok("alerts", "unsubscribe", json!({})).await;
    assert_eq!(
        cy.refused("alerts", "unsubscribe", json!({})).await,
        "not_found"
    );

    // The handle publishes as the server and lists channels and presence.
    handle
        .publish("room", &json!("from the server"))
        .await
        .unwrap();
    let message = cy.event("message").await;
    assert_eq!(message["data"]["data"], "from the server");
    assert!(message["data"].get("from").is_none());
    let names: Vec<String> = handle
        .channels(10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["room", "three", "two"]);
    assert_eq!(handle.presence("room", 10).await.unwrap().total, 3);
    assert_eq!(
        handle.publish("nowhere", &json!(1)).await.unwrap_err().code,
        ws_channels::ErrorCode::NotFound
    );

    // Leave, then close the channel: everyone is told.
    cy.ok("room", "leave", json!({})).await;
    assert_eq!(ann.event("leave").await["data"]["from"]["user"], "cy");
    ann.ok("room", "close", json!({})).await;
    assert_eq!(bob.event("closed").await["channel"], "room");
    assert_eq!(bob.refused("room", "join", json!({})).await, "not_found");

    // The handle disconnects a user with a do-not-reconnect code.
    handle
        .disconnect(Target::User("dee".into()), "bye")
        .await
        .unwrap();
    let closed = rt::timeout(Duration::from_secs(5), async {
        loop {
            match dee.inner.socket_mut().recv().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("{e}"),
                None => return dee.inner.socket().closed().cloned(),
            }
        }
    })
    .await
    .unwrap();
    let closed = closed.expect("a close frame");
    assert_eq!(closed.code, close_codes::DISCONNECTED);
    assert_eq!(closed.reason, "bye");
}

async fn a_ban_survives_reconnecting() {
    let (server, handle) =
        channels_server(ChannelsConfig::default(), ServerConfig::default()).await;
    let mut ann = Client::connect(&server, "ann").await;
    ann.ok("room", "create", json!({})).await;
    let mut bob = Client::connect(&server, "bob").await;
    bob.ok("room", "join", json!({})).await;
    ann.ok("room", "ban", json!({"user": "bob"})).await;
    assert_eq!(bob.event("banned").await["channel"], "room");
    drop(bob);
    let mut bob = Client::connect(&server, "bob").await;
    assert_eq!(bob.refused("room", "join", json!({})).await, "banned");
    ann.ok("room", "unban", json!({"user": "bob"})).await;
    bob.ok("room", "join", json!({})).await;
    // Bans from the handle work the same way, with a duration.
    handle
        .ban("room", "bob", Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    bob.event("banned").await;
    let mut bob = Client::connect(&server, "bob").await;
    assert_eq!(bob.refused("room", "join", json!({})).await, "banned");
}

async fn recovery_with_and_without_a_gap() {
    let (server, _handle) =
        channels_server(ChannelsConfig::default(), ServerConfig::default()).await;
    let mut ann = Client::connect(&server, "ann").await;
    ann.ok(
        "news",
        "create",
        json!({"history_size": 2, "history_ttl": 60}),
    )
    .await;
    let mut bob = Client::connect(&server, "bob").await;
    let joined = bob.ok("news", "join", json!({})).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    assert_eq!(joined["offset"], 0);
    assert_eq!(ann.ok("news", "publish", json!("one")).await["offset"], 1);
    assert_eq!(bob.event("message").await["data"]["offset"], 1);
    drop(bob);
    ann.ok("news", "publish", json!("two")).await;
    let mut bob = Client::connect(&server, "bob").await;
    let back = bob
        .ok(
            "news",
            "join",
            json!({"since": {"offset": 1, "epoch": epoch}}),
        )
        .await;
    assert_eq!(back["recovered"], true);
    assert_eq!(
        back["publications"],
        json!([{"offset": 2, "epoch": epoch, "data": "two", "from": back["publications"][0]["from"]}])
    );
    drop(bob);
    for text in ["three", "four", "five"] {
        ann.ok("news", "publish", json!(text)).await;
    }
    let mut bob = Client::connect(&server, "bob").await;
    let gap = bob
        .ok(
            "news",
            "join",
            json!({"since": {"offset": 2, "epoch": epoch}}),
        )
        .await;
    assert_eq!(gap["recovered"], false, "two kept, three missed: {gap}");
    assert_eq!(gap["publications"], json!([]));
    assert_eq!(gap["offset"], 5);
    // Live delivery goes on after the reply.
    ann.ok("news", "publish", json!("six")).await;
    assert_eq!(bob.event("message").await["data"]["offset"], 6);
}

async fn a_slow_subscriber_is_disconnected_and_others_keep_receiving() {
    let mut config = ServerConfig::default();
    config.send_queue = 64 * 1024;
    let channels = ChannelsConfig {
        command_rate: 10_000,
        command_burst: 10_000,
        ..ChannelsConfig::default()
    };
    let (server, _handle) = channels_server(channels, config).await;
    let mut ann = Client::connect(&server, "ann").await;
    ann.ok("feed", "create", json!({})).await;
    let mut bob = Client::connect(&server, "bob").await;
    bob.ok("feed", "join", json!({})).await;
    // Cy joins over a raw socket and then stops reading.
    let mut cy = Raw::connect(server.addr).await;
    cy.send(super::common::request("/channels", &["Authorization: Key key-cy"]).as_bytes())
        .await;
    assert_eq!(cy.read_head().await.0, 101);
    let join = Command::Join {
        since: None,
        info: None,
    };
    let join = Request::new("feed", join).to_envelope("1").to_message();
    cy.send(&masked_frame(1, true, join.as_text().unwrap().as_bytes()))
        .await;
    let (_, reply) = cy.read_frame().await.map(|(o, _, p)| (o, p)).unwrap();
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(reply["data"]["ok"], true, "{reply}");

    // Enough to fill the kernel's buffers and the 64 KiB queue. Bob reads
    // each publication before the next is sent, so he keeps up however
    // busy the machine is (his queue holds only two of them), while Cy
    // reads nothing.
    const COUNT: usize = 400;
    let chunk = "x".repeat(32 * 1024);
    rt::timeout(Duration::from_secs(60), async {
        for n in 0..COUNT {
            ann.ok("feed", "publish", json!({"n": n, "pad": chunk}))
                .await;
            let message = bob.event("message").await;
            assert_eq!(message["data"]["data"]["n"], n, "in order, none missing");
        }
    })
    .await
    .expect("the fast subscriber kept up");
    // Cy gets what fitted, then the close that says why.
    assert_eq!(cy.read_close_code().await, Some(close_codes::SLOW.as_u16()));
}

/// The service's fan-out: without echo the publisher is passed over, and
/// the connections a publication goes to follow members joining and
/// leaving between publications.
async fn fan_out_follows_members_and_spares_the_publisher_without_echo() {
    let config = ChannelsConfig {
        echo: false,
        ..ChannelsConfig::default()
    };
    let (server, _handle) = channels_server(config, ServerConfig::default()).await;
    let mut ann = Client::connect(&server, "ann").await;
    ann.ok("hall", "create", json!({})).await;
    let mut bob = Client::connect(&server, "bob").await;
    bob.ok("hall", "join", json!({})).await;
    let mut cy = Client::connect(&server, "cy").await;
    cy.ok("hall", "join", json!({})).await;
    for n in 1..=2 {
        ann.ok("hall", "publish", json!({ "n": n })).await;
    }
    for client in [&mut bob, &mut cy] {
        for n in 1..=2 {
            assert_eq!(client.event("message").await["data"]["data"]["n"], n);
        }
    }
    cy.ok("hall", "leave", json!({})).await;
    let mut dee = Client::connect(&server, "dee").await;
    dee.ok("hall", "join", json!({})).await;
    ann.ok("hall", "publish", json!({"n": 3})).await;
    assert_eq!(bob.event("message").await["data"]["data"]["n"], 3);
    assert_eq!(dee.event("message").await["data"]["data"]["n"], 3);
    // Bob publishes: Ann gets it, Bob does not.
    bob.ok("hall", "publish", json!({"n": 4})).await;
    assert_eq!(ann.event("message").await["data"]["data"]["n"], 4);
    assert_eq!(dee.event("message").await["data"]["data"]["n"], 4);
    // A round trip after the last publication: anything still coming to
    // Cy, Ann or Bob would have arrived before its reply.
    for client in [&mut ann, &mut bob, &mut cy] {
        client.cmd("hall", "presence", json!({})).await;
    }
    let own = |client: &mut Client| {
        client
            .buffered()
            .into_iter()
            .filter(|m| m["action"] == "message")
            .map(|m| m["data"]["data"]["n"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(own(&mut ann), Vec::<Value>::new(), "Ann's own publications");
    assert_eq!(own(&mut bob), Vec::<Value>::new(), "Bob's own publication");
    assert_eq!(own(&mut cy), Vec::<Value>::new(), "after Cy left");
}

// ROBUSTNESS 103: a client sending commands faster than its rate is
// paced, never refused: every command gets its reply, in order, and the
// session stays open (commands over the rate used to be refused and count
// towards the 1008 close, leaving the rest without replies).
async fn commands_past_the_rate_are_paced_not_refused() {
    let config = ChannelsConfig {
        command_rate: 200,
        command_burst: 20,
        ..ChannelsConfig::default()
    };
    let (server, _) = channels_server(config, ServerConfig::default()).await;
    let mut ann = Client::connect(&server, "ann").await;
    ann.ok("room", "create", json!({})).await;
    // All at once, without waiting for replies: around the client, which
    // waits for each.
    const SENT: usize = 150;
    let socket = ann.inner.socket_mut();
    for n in 0..SENT {
        let publish = Command::Publish {
            data: Payload::new(&json!(n)),
            idempotency_key: None,
        };
        let command = Request::new("room", publish).to_envelope(format!("p{n}"));
        socket.send(command.to_message()).await.unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < SENT {
        let message = rt::timeout(Duration::from_secs(10), socket.recv())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .expect("a message");
        let message: Value = serde_json::from_str(message.as_text().expect("text")).unwrap();
        if message["type"] == "response" {
            assert_eq!(message["data"]["ok"], true, "{message}");
            replies.push(message["id"].as_str().unwrap().to_owned());
        }
    }
    let expected: Vec<String> = (0..SENT).map(|n| format!("p{n}")).collect();
    assert_eq!(replies, expected);
    ann.ok("room", "leave", json!({})).await;
}

// ROBUSTNESS 108, over real connections with signed tokens: a session
// whose JWT claims no role the topic names is refused (`forbidden`) and
// gets none of its events; one that claims it subscribes.
async fn restricted_topics_refuse_sessions_without_the_role() {
    use jsonwebtoken::{EncodingKey, Header};
    const SECRET: &[u8] = b"a secret of thirty-two bytes or more!!";
    let config = ChannelsConfig::default().topic("ops", TopicAccess::roles(["oncall"]));
    let channels = Channels::builder(config).build();
    let endpoint = channels
        .endpoint()
        .authenticator(ws::auth::BearerJwt::hs256(SECRET));
    let handle = channels.handle();
    let server = serve(ws::server().route("/channels", endpoint).build()).await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let connect = |claims: Value| {
        let token = jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let request = http::Request::get(server.url("/channels"))
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        async move {
            let (socket, _) = ws::connect(request).await.unwrap();
            Client {
                inner: ChannelsClient::new(socket),
            }
        }
    };
    let mut oncall = connect(json!({"sub": "ann", "exp": exp, "roles": ["oncall"]})).await;
    let mut mallory = connect(json!({"sub": "mallory", "exp": exp, "roles": ["guest"]})).await;
    oncall.ok("ops", "subscribe", json!({})).await;
    assert_eq!(
        mallory.refused("ops", "subscribe", json!({})).await,
        "forbidden"
    );
    handle.emit("ops", &json!({"page": 1})).await.unwrap();
    assert_eq!(oncall.event("event").await["data"]["page"], 1);
    // Mallory's next reply comes with nothing of "ops" before it.
    mallory.ok("x", "create", json!({})).await;
    let buffered = mallory.buffered();
    assert!(
        buffered.iter().all(|e| e["channel"] != "ops"),
        "{buffered:?}"
    );
}

/// The next event `client` reads, which must be a publication.
async fn next_publication(client: &mut ChannelsClient) -> ws_channels::protocol::PublicationEvent {
    let event = rt::timeout(Duration::from_secs(10), client.next_event())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Event::Publication { publication, .. } = event else {
        panic!("not a publication: {event:?}");
    };
    publication
}

// ChannelsClient's own guarantees, over a real connection: a reply is
// matched to its request by id (a reply to a request the client did not
// make, or gave up on, is skipped), the events that arrive meanwhile come
// out of `next_event` in order, typed, and a refusal is a typed error.
async fn the_client_matches_replies_and_keeps_events_in_order() {
    let (server, _) = channels_server(ChannelsConfig::default(), ServerConfig::default()).await;
    let mut ann = ChannelsClient::new(channels_socket(&server, "ann").await);
    let mut bob = ChannelsClient::new(channels_socket(&server, "bob").await);
    let history = Command::Create {
        max_participants: None,
        history_size: Some(10),
        history_ttl: None,
        presence_events: false,
        encrypted: false,
        info: None,
    };
    let created = ann.create("room", Some(history)).await.unwrap();
    assert_eq!(created.role, ws_channels::ChannelRole::OWNER);
    bob.join("room", None).await.unwrap();
    // A reply Ann's client never asked for, ahead of its own.
    let stray = Request::new("room", Command::History { limit: Some(1) }).to_envelope("c99");
    ann.socket_mut().send(stray.to_message()).await.unwrap();
    for n in 1..=3 {
        let published = bob.publish("room", &json!({ "n": n })).await.unwrap();
        assert_eq!(published.offset, Some(n));
    }
    // The reply Ann gets is to her own request, not the stray one.
    let presence = ann.presence("room").await.unwrap();
    assert_eq!(presence.total, 2);
    // The three publications arrived while she waited: in order, typed.
    for n in 1..=3 {
        let publication = next_publication(&mut ann).await;
        assert_eq!(publication.offset, Some(n));
        assert_eq!(publication.data.unwrap().to_value(), json!({ "n": n }));
    }
    // A flood while a reply is awaited fails the request, past the
    // client's limit, and loses none of it.
    let mut cy =
        ChannelsClient::new(channels_socket(&server, "cy").await).with_max_buffered_events(2);
    cy.join("room", None).await.unwrap();
    for n in 4..=6 {
        bob.publish("room", &json!({ "n": n })).await.unwrap();
    }
    let flooded = cy.presence("room").await.unwrap_err();
    assert!(
        matches!(
            flooded,
            ws_channels::ClientError::TooManyEvents { limit: 2 }
        ),
        "{flooded}"
    );
    for n in 4..=6 {
        assert_eq!(next_publication(&mut cy).await.offset, Some(n));
    }
    // A refusal is the server's typed error.
    let refused = bob.kick("room", "ann").await.unwrap_err();
    assert_eq!(
        refused.refusal().map(|r| r.code),
        Some(ws_channels::ErrorCode::Forbidden)
    );
}

adapter_tests!(
    the_client_matches_replies_and_keeps_events_in_order,
    restricted_topics_refuse_sessions_without_the_role,
    commands_past_the_rate_are_paced_not_refused,
    fan_out_follows_members_and_spares_the_publisher_without_echo,
    every_command_and_error_code,
    a_ban_survives_reconnecting,
    recovery_with_and_without_a_gap,
    a_slow_subscriber_is_disconnected_and_others_keep_receiving,
);
