//! End-to-end encrypted channels over real connections: three members
//! talk, the owner kicks one, the kicked member joins again and receives
//! the next messages but cannot open them, and everything the server
//! relayed and stored (events, history, presence) holds no plaintext.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use ws_channels::protocol::command_envelope;
use ws_channels::{Channels, ChannelsClient, ChannelsConfig};
use ws_crypto::KeyPair;
use ws_crypto::channel::E2eError;
use ws_crypto::client::{ClientError, E2eClient, E2eEvent};

use super::common::{TestServer, channels_socket, serve};
use crate::rt::{self, ws};
use ws::auth::KeyAuth;

const SECRETS: [&str; 3] = ["the plan is at dawn", "bring the maps", "after the kick"];

async fn channels_server() -> TestServer {
    let channels = Channels::new(ChannelsConfig::default());
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

async fn member(server: &TestServer, user: &str) -> E2eClient {
    E2eClient::new(channels_socket(server, user).await, KeyPair::generate())
}

async fn next(client: &mut E2eClient) -> E2eEvent {
    rt::timeout(Duration::from_secs(10), client.next_event())
        .await
        .expect("an event within 10 s")
        .expect("the connection is open")
        .expect("no error")
}

/// Events until `pick` takes one, skipping the rest.
async fn until<T>(client: &mut E2eClient, mut pick: impl FnMut(E2eEvent) -> Option<T>) -> T {
    loop {
        if let Some(found) = pick(next(client).await) {
            return found;
        }
    }
}

async fn message_from(client: &mut E2eClient) -> Result<Vec<u8>, E2eError> {
    until(client, |event| match event {
        E2eEvent::Message { plaintext, .. } => Some(Ok(plaintext)),
        E2eEvent::Refused { error, .. } => Some(Err(error)),
        _ => None,
    })
    .await
}

async fn keys(client: &mut E2eClient, epoch: u64) {
    until(client, |event| match event {
        E2eEvent::Keys { epoch: got, .. } if got >= epoch => Some(()),
        _ => None,
    })
    .await
}

async fn joined(owner: &mut E2eClient) -> bool {
    until(owner, |event| match event {
        E2eEvent::Joined { granted, .. } => Some(granted),
        _ => None,
    })
    .await
}

/// Reads everything that reaches a plain channels session, as text.
struct Observer {
    client: ChannelsClient,
    seen: String,
}

impl Observer {
    async fn command(&mut self, action: &str, data: Value) -> Value {
        let command = command_envelope("room", action, data);
        let reply = rt::timeout(Duration::from_secs(10), self.client.send_envelope(command))
            .await
            .unwrap()
            .unwrap();
        for envelope in self.client.take_buffered_events().iter().chain([&reply]) {
            self.seen
                .push_str(&serde_json::to_string(envelope).unwrap());
        }
        reply.data.unwrap()
    }
}

async fn three_members_talk_and_a_kicked_one_cannot_read_on() {
    let server = channels_server().await;
    let mut ann = member(&server, "ann").await;
    ann.create("room", 100).await.unwrap();
    assert_eq!(ann.epoch("room"), Some(1));

    let mut bob = member(&server, "bob").await;
    let mut cy = member(&server, "cy").await;
    bob.join("room").await.unwrap();
    assert!(joined(&mut ann).await);
    cy.join("room").await.unwrap();
    assert!(joined(&mut ann).await);
    keys(&mut bob, 1).await;
    keys(&mut cy, 1).await;

    // Sealing before any key arrives is refused, not sent in clear.
    let mut dee = member(&server, "dee").await;
    dee.join("room").await.unwrap();
    assert!(matches!(
        dee.publish("room", b"too early").await,
        Err(ClientError::E2e(E2eError::NoKey))
    ));
    assert!(joined(&mut ann).await);
    keys(&mut dee, 1).await;

    bob.publish("room", SECRETS[0].as_bytes()).await.unwrap();
    for reader in [&mut ann, &mut cy, &mut dee, &mut bob] {
        assert_eq!(message_from(reader).await.unwrap(), SECRETS[0].as_bytes());
    }
    ann.publish("room", SECRETS[1].as_bytes()).await.unwrap();
    for reader in [&mut bob, &mut cy, &mut dee] {
        assert_eq!(message_from(reader).await.unwrap(), SECRETS[1].as_bytes());
    }

    // The owner kicks cy: a new epoch for the others.
    assert_eq!(ann.kick("room", "cy").await.unwrap(), 2);
    let removed = until(&mut cy, |event| match event {
        E2eEvent::Removed { reason, .. } => Some(reason),
        _ => None,
    })
    .await;
    assert_eq!(removed, "kicked");
    keys(&mut bob, 2).await;
    keys(&mut dee, 2).await;
    // cy joins again (a kick allows it) and receives what follows, but the
    // owner's client withholds the key.
    cy.join("room").await.unwrap();
    assert!(!joined(&mut ann).await);
    bob.publish("room", SECRETS[2].as_bytes()).await.unwrap();
    assert_eq!(message_from(&mut dee).await.unwrap(), SECRETS[2].as_bytes());
    assert_eq!(message_from(&mut ann).await.unwrap(), SECRETS[2].as_bytes());
    assert_eq!(
        message_from(&mut cy).await.unwrap_err(),
        E2eError::UnknownEpoch { epoch: 2 }
    );
    assert_eq!(cy.epoch("room"), Some(1));
    // A member holding the key leaves: another epoch.
    dee.leave("room").await.unwrap();
    let left = until(&mut ann, |event| match event {
        E2eEvent::Left { epoch, .. } => Some(epoch),
        _ => None,
    })
    .await;
    assert_eq!(left, 3);
    keys(&mut bob, 3).await;

    // What the server relayed and stored: a plain session that joins,
    // reads the presence list and recovers the whole history.
    let mut observer = Observer {
        client: ChannelsClient::new(channels_socket(&server, "dee").await),
        seen: String::new(),
    };
    let first = observer.command("join", json!({})).await;
    let epoch = first["epoch"].clone();
    let presence = observer.command("presence", json!({})).await;
    assert_eq!(presence["total"], 4, "{presence}");
    let mut observer2 = Observer {
        client: ChannelsClient::new(channels_socket(&server, "dee").await),
        seen: String::new(),
    };
    let history = observer2
        .command("join", json!({"since": {"offset": 0, "epoch": epoch}}))
        .await;
    let publications = history["publications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(publications.len() >= 6, "{history}");
    assert!(publications.iter().all(|p| p["data"]["e2e"].is_string()));
    // Not merely encoded: the ciphertexts, decoded, are not the plaintexts.
    for publication in &publications {
        let Some(ct) = publication["data"]["ct"].as_str() else {
            continue;
        };
        let bytes = URL_SAFE_NO_PAD.decode(ct).unwrap();
        for secret in SECRETS {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }
    // A key hand-over from a member who is not the owner is refused.
    let forged =
        json!({"e2e": "keys", "epoch": 9, "keys": {bob.session("room").unwrap(): "A".repeat(107)}});
    assert_eq!(observer2.command("publish", forged).await["ok"], true);
    let refused = until(&mut bob, |event| match event {
        E2eEvent::Refused { error, .. } => Some(error),
        _ => None,
    })
    .await;
    assert_eq!(
        refused,
        E2eError::Malformed("keys from a session that is not the owner")
    );
    assert_eq!(bob.epoch("room"), Some(3));
    // A plaintext publication is refused by the encrypted channel.
    let refused = observer2.command("publish", json!({"text": "plain"})).await;
    assert_eq!(refused["code"], "bad_request");
    let everything = format!("{}{}", observer.seen, observer2.seen);
    for secret in SECRETS {
        assert!(
            !everything.contains(secret),
            "{secret:?} in what the server sent"
        );
    }
    assert!(everything.contains("\"e2e\":\"msg\""));
}

adapter_tests!(three_members_talk_and_a_kicked_one_cannot_read_on);
