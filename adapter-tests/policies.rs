//! Endpoint policies over real sockets: a violated policy closes with 1008
//! or drops the message and tells the handler.

use crate::common::serve;
use crate::rt::ws;
use ws::ws_core::policy::{
    MaxMessagesPerSecond, MaxPayloadBytes, OnViolation, PolicySet, Violation,
};
use ws::{CloseCode, Ctx, Endpoint, Handler, Message};

/// Echoes messages and reports dropped ones to the client.
struct Reporting;

impl Handler for Reporting {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send_wait(message).await;
    }

    async fn on_policy_violation(&mut self, ctx: &mut Ctx, violation: &Violation) {
        let _ = ctx.send_wait(format!("dropped: {violation}")).await;
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

adapter_tests!(
    rate_limit_closes_with_1008,
    oversized_messages_are_dropped_and_reported,
);
