//! Policies over real sockets: a violated message policy closes with 1008
//! or drops the message and tells the handler; handshakes past the
//! connection rate get 429.

use std::time::Duration;

use super::common::{Raw, echo_server, request, serve};
use crate::rt::ws;
use ws::ws_core::policy::{
    ConnectionRate, MaxMessagesPerSecond, MaxPayloadBytes, OnViolation, PolicySet, Violation,
};
use ws::{CloseCode, Ctx, Endpoint, Handler, Message, ServerConfig};

/// Echoes messages and reports dropped ones to the client.
struct Reporting;

impl Handler for Reporting {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }

    async fn on_policy_violation(&mut self, ctx: &mut Ctx, violation: &Violation) {
        let _ = ctx.send(format!("dropped: {violation}")).await;
    }
}

async fn rate_limit_closes_with_1008() {
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(|_| Reporting).policies(|| {
                    PolicySet::new().with(MaxMessagesPerSecond::new(3), OnViolation::Close)
                }),
            )
            .build(),
    )
    .await;
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    for i in 0..10 {
        // The server may close before the last sends are queued.
        let _ = socket.send(format!("m{i}")).await;
    }
    let mut echoed = Vec::new();
    while let Some(Ok(message)) = socket.recv().await {
        echoed.push(message);
    }
    assert_eq!(
        echoed,
        [
            Message::text("m0"),
            Message::text("m1"),
            Message::text("m2")
        ],
        "only the burst is delivered"
    );
    let closed = socket.closed().expect("closed");
    assert_eq!(closed.code, CloseCode::POLICY_VIOLATION);
    assert_eq!(
        closed.reason,
        "max-messages-per-second: more than 3 messages per second"
    );
}

async fn oversized_messages_are_dropped_and_reported() {
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(|_| Reporting).policies(|| {
                    PolicySet::new().with(MaxPayloadBytes::new(10), OnViolation::Drop)
                }),
            )
            .build(),
    )
    .await;
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    socket.send("small").await.unwrap();
    socket.send(Message::binary(vec![7; 20])).await.unwrap();
    socket.send("small again").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(socket.recv().await.unwrap().unwrap());
    }
    assert_eq!(
        seen,
        [
            Message::text("small"),
            Message::text("dropped: max-payload-bytes: 20 bytes, more than 10"),
            Message::text("dropped: max-payload-bytes: 11 bytes, more than 10"),
        ]
    );
    // The connection stays open.
    socket.send("ok").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("ok"));
}

async fn handshakes_past_the_connection_rate_get_429_then_a_block() {
    let mut config = ServerConfig::default();
    let mut rate = ConnectionRate::default();
    rate.per_second = 1;
    rate.burst = 2;
    rate.block_after = 2;
    rate.block_for = Duration::from_secs(30);
    config.connection_rate = Some(rate);
    let server = echo_server(config).await;
    let _first = Raw::upgrade(server.addr, "/echo").await;
    let _second = Raw::upgrade(server.addr, "/echo").await;
    let mut third = Raw::connect(server.addr).await;
    third.send(request("/echo", &[]).as_bytes()).await;
    let (status, head) = third.read_head().await;
    assert_eq!(status, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{head}"
    );
    let mut fourth = Raw::connect(server.addr).await;
    fourth.send(request("/echo", &[]).as_bytes()).await;
    let (status, head) = fourth.read_head().await;
    assert_eq!(status, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 30\r\n"),
        "{head}"
    );
}

adapter_tests!(
    handshakes_past_the_connection_rate_get_429_then_a_block,
    rate_limit_closes_with_1008,
    oversized_messages_are_dropped_and_reported,
);
