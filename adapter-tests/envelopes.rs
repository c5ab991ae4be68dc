//! Envelope handlers and handshake authentication end to end: Hydrogen's
//! `Authorization: Key` with a required `hydrogen-protocol`, bearer JWTs,
//! identities reaching handlers, error envelopes for malformed input.

use http::HeaderValue;
use http::header::AUTHORIZATION;
use serde_json::json;

use super::common::serve;
use crate::rt::ws;
use ws::auth::{BearerJwt, KeyAuth};
use ws::envelope::{EnvelopeHandler, Envelopes};
use ws::ws_core::ack::DuplicateFilter;
use ws::ws_core::envelope::{Envelope, Kind};
use ws::ws_core::handshake::ResponseError;
use ws::{ConnectError, Ctx, Endpoint, Message, WebSocket};

/// Answers every command with who asked and what.
struct Commands;

impl EnvelopeHandler for Commands {
    async fn on_envelope(&mut self, ctx: &mut Ctx, envelope: Envelope) {
        let who = ctx
            .identity()
            .map(|i| i.subject.clone())
            .unwrap_or_default();
        let reply = envelope.response(json!({ "who": who, "action": envelope.action }));
        let _ = ctx.send_envelope(&reply).await;
    }

    fn reply_to_malformed(&self) -> bool {
        true
    }
}

async fn connect(
    url: &str,
    authorization: Option<String>,
    subprotocol: bool,
) -> Result<WebSocket, ConnectError> {
    let mut client = ws::client(url)?;
    if let Some(value) = authorization {
        client = client.header(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
    }
    if subprotocol {
        client = client.subprotocol("hydrogen-protocol");
    }
    client.connect().await.map(|(socket, _)| socket)
}

fn refused_with(result: Result<WebSocket, ConnectError>) -> u16 {
    match result {
        Err(ConnectError::Handshake(ResponseError::Status { status, .. })) => status.as_u16(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("connected"),
    }
}

async fn recv_envelope(socket: &mut WebSocket) -> Envelope {
    Envelope::from_message(&socket.recv().await.unwrap().unwrap()).unwrap()
}

async fn hydrogen_key_auth_subprotocol_and_envelopes() {
    let server = serve(
        ws::server()
            .route(
                "/hydrogen",
                Endpoint::new(|_| Envelopes(Commands))
                    .subprotocols(["hydrogen-protocol"])
                    .require_subprotocol()
                    .authenticator(KeyAuth::new().key("k-123", "printer-7")),
            )
            .build(),
    )
    .await;
    let url = server.url("/hydrogen");
    assert_eq!(refused_with(connect(&url, None, true).await), 401);
    assert_eq!(
        refused_with(connect(&url, Some("Key wrong".into()), true).await),
        401
    );
    assert_eq!(
        refused_with(connect(&url, Some("Key k-123".into()), false).await),
        400
    );
    let mut socket = connect(&url, Some("Key k-123".into()), true).await.unwrap();

    let command = Envelope::command("status")
        .with_id("c-1")
        .with_channel("system");
    socket.send(command.to_message()).await.unwrap();
    let reply = recv_envelope(&mut socket).await;
    assert_eq!(reply.kind, Some(Kind::Response));
    assert_eq!(reply.id.as_deref(), Some("c-1"));
    assert_eq!(
        reply.data,
        Some(json!({"who": "printer-7", "action": "status"}))
    );

    // Malformed input gets an error envelope, and the connection lives on.
    socket.send("{not json").await.unwrap();
    let error = recv_envelope(&mut socket).await;
    assert_eq!(error.action.as_deref(), Some("error"));
    assert!(
        error.data.unwrap()["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed envelope")
    );
    socket.send(Message::binary(vec![1, 2])).await.unwrap();
    let error = recv_envelope(&mut socket).await;
    assert_eq!(
        error.data.unwrap()["error"],
        "envelopes are JSON text, not binary"
    );
    socket.send(command.to_message()).await.unwrap();
    assert_eq!(recv_envelope(&mut socket).await.id.as_deref(), Some("c-1"));
}

async fn bearer_jwt_identities_and_refusals() {
    use jsonwebtoken::{EncodingKey, Header};
    let secret = b"test secret";
    let token = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(|_| Envelopes(Commands)).authenticator(
                    BearerJwt::hs256(secret).authorize(|claims| claims["admin"] == true),
                ),
            )
            .build(),
    )
    .await;
    let url = server.url("/");
    let admin = token(json!({"sub": "ada", "admin": true, "exp": exp}));
    let viewer = token(json!({"sub": "bob", "admin": false, "exp": exp}));
    let expired = token(json!({"sub": "ada", "admin": true, "exp": 1}));
    assert_eq!(refused_with(connect(&url, None, false).await), 401);
    assert_eq!(
        refused_with(connect(&url, Some(format!("Bearer {expired}")), false).await),
        401
    );
    assert_eq!(
        refused_with(connect(&url, Some(format!("Bearer {viewer}")), false).await),
        403
    );
    let mut socket = connect(&url, Some(format!("Bearer {admin}")), false)
        .await
        .unwrap();
    socket
        .send(Envelope::command("whoami").with_id("1").to_message())
        .await
        .unwrap();
    assert_eq!(
        recv_envelope(&mut socket).await.data,
        Some(json!({"who": "ada", "action": "whoami"}))
    );
}

/// Acknowledges every event; handles each id once.
struct AckingReceiver {
    seen: DuplicateFilter,
    handled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl EnvelopeHandler for AckingReceiver {
    async fn on_envelope(&mut self, ctx: &mut Ctx, envelope: Envelope) {
        let Some(id) = envelope.id.as_deref() else {
            return;
        };
        if self.seen.first_time(id, std::time::Instant::now()) {
            self.handled
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let _ = ctx.send_envelope(&envelope.ack()).await;
    }
}

async fn acknowledged_delivery_resends_and_deduplicates() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    use ws::ws_core::ack::{AckConfig, AckSender};

    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(move |_| {
                    Envelopes(AckingReceiver {
                        seen: DuplicateFilter::new(100, Duration::from_secs(60)),
                        handled: counter.clone(),
                    })
                }),
            )
            .build(),
    )
    .await;
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    // The sender's clock is virtual: resends happen when the test says.
    let t0 = Instant::now();
    let mut sender = AckSender::new(AckConfig::default());
    for id in ["e-1", "e-2"] {
        let event = Envelope::event("tick", json!({})).with_id(id).to_message();
        sender.track(id, event.clone(), t0).unwrap();
        socket.send(event).await.unwrap();
    }
    // Pretend the acks were lost: the resend interval passes first.
    sender.handle_timeout(t0 + Duration::from_secs(5));
    let mut resent = 0;
    while let Some(message) = sender.poll_resend() {
        socket.send(message).await.unwrap();
        resent += 1;
    }
    assert_eq!(resent, 2);
    // Four acks come back (two per event); the sender takes the first of
    // each and shrugs off the second.
    let mut acknowledged = 0;
    for _ in 0..4 {
        let ack = recv_envelope(&mut socket).await;
        assert_eq!(ack.kind, Some(Kind::Ack));
        if sender.acknowledge(ack.id.as_deref().unwrap()) {
            acknowledged += 1;
        }
    }
    assert_eq!(acknowledged, 2);
    assert_eq!(sender.in_flight(), 0);
    assert_eq!(
        handled.load(Ordering::SeqCst),
        2,
        "duplicates were handled once"
    );
    sender.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(sender.poll_expired(), None);
}

adapter_tests!(
    hydrogen_key_auth_subprotocol_and_envelopes,
    bearer_jwt_identities_and_refusals,
    acknowledged_delivery_resends_and_deduplicates,
);
