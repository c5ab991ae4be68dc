//! ws-crypto's encrypted sessions over real connections: an echo with a
//! pinned server key, timers and shutdown reaching the sealed handler, an
//! impostor detected at the handshake, clients that do not encrypt
//! refused, and a replayed or altered message closing the session with
//! 1008 and the reason, with nothing after it reaching the handler.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ws_crypto::KeyPair;
use ws_crypto::sealed::{
    SUBPROTOCOL, Sealed, SealedCtx, SealedHandler, SealedSendError, SealedSocket, SessionError,
};
use ws_crypto::session::{ClientHandshake, HandshakeError, Kind, OpenError, ServerHandshake};

use super::common::{TestServer, eventually, serve};
use crate::rt::{self, ws};
use ws::ws_core::handshake::ResponseError;
use ws::{Endpoint, Message, WebSocket};

/// What the sealed handler saw: the text of every message opened, then
/// `closed`.
type Seen = Arc<Mutex<Vec<String>>>;

/// Echoes; "tick" sets the timer, which answers "tock"; a shutdown says
/// "goodbye".
struct SealedEcho {
    seen: Seen,
}

impl SealedHandler for SealedEcho {
    async fn on_open(&mut self, ctx: &mut SealedCtx<'_>) {
        let _ = ctx.send("welcome").await;
    }

    async fn on_message(&mut self, ctx: &mut SealedCtx<'_>, message: Message) {
        if let Some(text) = message.as_text() {
            self.seen.lock().unwrap().push(text.to_owned());
        }
        if message.as_text() == Some("tick") {
            let at = ctx.ctx.now() + Duration::from_millis(20);
            ctx.ctx.set_timer(at);
            return;
        }
        if message.as_text() == Some("flood") {
            // Until the send queue is full; the refused record's counter
            // must be taken back, or the next message would leave a gap.
            let mut sent = 0u32;
            loop {
                match ctx.try_send(Message::binary(vec![1u8; 4 * 1024])) {
                    Ok(()) => sent += 1,
                    Err(SealedSendError::Send(ws::SendError::Full { .. })) => break,
                    Err(other) => panic!("{other}"),
                }
            }
            let _ = ctx.send(sent.to_string()).await;
            return;
        }
        let _ = ctx.send(message).await;
    }

    async fn on_timer(&mut self, ctx: &mut SealedCtx<'_>) {
        let _ = ctx.send("tock").await;
    }

    async fn on_shutdown(&mut self, ctx: &mut SealedCtx<'_>) {
        let _ = ctx.send("goodbye").await;
    }

    async fn on_close(&mut self, _: &mut ws::Ctx, _: &ws::Closed) {
        self.seen.lock().unwrap().push("closed".into());
    }
}

async fn sealed_server(handshake: ServerHandshake) -> TestServer {
    sealed_server_seeing(handshake).await.0
}

async fn sealed_server_seeing(handshake: ServerHandshake) -> (TestServer, Seen) {
    let seen = Seen::default();
    let shared = seen.clone();
    // A small send queue, so the flood test fills it with little work: the
    // suite's timing tests share the executor.
    let mut config = ws::ServerConfig::default();
    config.send_queue = 64 * 1024;
    let server = serve(
        ws::server()
            .config(config)
            .route(
                "/sealed",
                Endpoint::new(move |_| {
                    let seen = shared.clone();
                    Sealed::new(handshake.clone(), SealedEcho { seen })
                })
                .subprotocols([SUBPROTOCOL])
                .require_subprotocol(),
            )
            .build(),
    )
    .await;
    (server, seen)
}

async fn connect(server: &TestServer) -> WebSocket {
    let (socket, _) = ws::client(server.url("/sealed"))
        .unwrap()
        .subprotocol(SUBPROTOCOL)
        .connect()
        .await
        .unwrap();
    socket
}

async fn next(session: &mut SealedSocket) -> Message {
    rt::timeout(Duration::from_secs(10), session.recv())
        .await
        .expect("a message within 10 s")
        .expect("the session is open")
        .expect("the message opens")
}

async fn sealed_session_echoes_with_a_pinned_key() {
    let handshake = ServerHandshake::new(Some(KeyPair::generate()));
    let pin = handshake.public_key();
    let server = sealed_server(handshake).await;
    let mut session = SealedSocket::open(connect(&server).await, pin)
        .await
        .unwrap();
    assert_eq!(session.server_key(), pin);
    assert_eq!(next(&mut session).await, Message::text("welcome"));
    for message in [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text(""),
        Message::binary(vec![7u8; 100_000]),
    ] {
        session.send(message.clone()).await.unwrap();
        assert_eq!(next(&mut session).await, message);
    }
    // From another task, through a sender.
    let sender = session.sender();
    let task = rt::spawn(async move { sender.send("from a task").await.is_ok() });
    assert_eq!(next(&mut session).await, Message::text("from a task"));
    drop(task);
    session.close(ws::CloseCode::NORMAL, "").await.unwrap();
    assert!(
        rt::timeout(Duration::from_secs(10), session.recv())
            .await
            .unwrap()
            .is_none()
    );
}

async fn timers_and_shutdown_reach_the_sealed_handler() {
    let server = sealed_server(ServerHandshake::new(None)).await;
    let mut session = SealedSocket::open(connect(&server).await, None)
        .await
        .unwrap();
    assert_eq!(next(&mut session).await, Message::text("welcome"));
    session.send("tick").await.unwrap();
    assert_eq!(next(&mut session).await, Message::text("tock"));
    let handle = server.handle.clone();
    let shutdown = rt::spawn(async move { handle.shutdown(Duration::from_secs(5)).await });
    assert_eq!(next(&mut session).await, Message::text("goodbye"));
    assert!(
        rt::timeout(Duration::from_secs(10), session.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(session.closed().unwrap().code, ws::CloseCode::GOING_AWAY);
    drop(shutdown);
}

async fn a_full_send_queue_leaves_no_gap_in_the_counters() {
    let server = sealed_server(ServerHandshake::new(None)).await;
    let mut session = SealedSocket::open(connect(&server).await, None)
        .await
        .unwrap();
    assert_eq!(next(&mut session).await, Message::text("welcome"));
    session.send("flood").await.unwrap();
    // Not reading yet lets the server's queue fill.
    rt::sleep(Duration::from_millis(200)).await;
    let mut floods = 0u32;
    loop {
        match next(&mut session).await {
            Message::Binary(bytes) => {
                assert_eq!(bytes.len(), 4 * 1024);
                floods += 1;
            }
            Message::Text(count) => {
                assert_eq!(count.as_str(), floods.to_string());
                break;
            }
        }
    }
    assert!(floods > 0);
    session.send("still in step").await.unwrap();
    assert_eq!(next(&mut session).await, Message::text("still in step"));
}

/// A server that answers the handshake, then sends `after` unsealed.
struct Forger {
    handshake: ServerHandshake,
    after: Message,
}

impl ws::Handler for Forger {
    async fn on_message(&mut self, ctx: &mut ws::Ctx, message: Message) {
        let (_, accept) = self.handshake.accept(message.as_bytes()).unwrap();
        let _ = ctx.send(Message::binary(accept)).await;
        let _ = ctx.send(self.after.clone()).await;
    }
}

async fn the_client_refuses_what_the_server_did_not_seal() {
    for (after, expected) in [
        (Message::binary(vec![3u8; 40]), "Open(Skipped"),
        (Message::binary(vec![3u8; 10]), "Open(Malformed"),
        (Message::text("plain"), "Plaintext"),
    ] {
        let server = serve(
            ws::server()
                .route(
                    "/sealed",
                    Endpoint::new(move |_| Forger {
                        handshake: ServerHandshake::new(None),
                        after: after.clone(),
                    })
                    .subprotocols([SUBPROTOCOL]),
                )
                .build(),
        )
        .await;
        let mut session = SealedSocket::open(connect(&server).await, None)
            .await
            .unwrap();
        let refused = rt::timeout(Duration::from_secs(10), session.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(format!("{refused:?}").starts_with(expected), "{refused:?}");
        assert!(session.recv().await.is_none(), "one error, then the end");
        eventually(|| session.closed().is_some(), "the close").await;
        assert_eq!(
            session.closed().unwrap().code,
            ws::CloseCode::POLICY_VIOLATION
        );
    }
    // A server that echoes the hello instead of accepting it.
    let echo = serve(
        ws::server()
            .route(
                "/sealed",
                Endpoint::new(|_| super::common::Echo).subprotocols([SUBPROTOCOL]),
            )
            .build(),
    )
    .await;
    let error = SealedSocket::open(connect(&echo).await, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SessionError::Handshake(HandshakeError::Malformed("accept"))
        ),
        "{error}"
    );
}

async fn a_pinned_key_detects_an_impostor() {
    let server = sealed_server(ServerHandshake::new(Some(KeyPair::generate()))).await;
    let expected = KeyPair::generate().public();
    let error = SealedSocket::open(connect(&server).await, Some(expected))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SessionError::Handshake(HandshakeError::ServerKeyMismatch { .. })
        ),
        "{error}"
    );
    // A server with no long-term key cannot satisfy a pin either.
    let unkeyed = sealed_server(ServerHandshake::new(None)).await;
    let error = SealedSocket::open(connect(&unkeyed).await, Some(expected))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SessionError::Handshake(HandshakeError::ServerNotAuthenticated)
        ),
        "{error}"
    );
    // Without a pin the session is encrypted and says which key it saw.
    let mut session = SealedSocket::open(connect(&unkeyed).await, None)
        .await
        .unwrap();
    assert_eq!(session.server_key(), None);
    assert_eq!(next(&mut session).await, Message::text("welcome"));
}

async fn clients_that_do_not_encrypt_are_refused() {
    let server = sealed_server(ServerHandshake::new(None)).await;
    // No subprotocol: refused in the HTTP handshake.
    let refused = ws::connect(server.url("/sealed")).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            ws::ConnectError::Handshake(ResponseError::Status { status, .. })
                if status.as_u16() == 400
        ),
        "{refused:?}"
    );
    // The subprotocol, then plaintext instead of a hello: closed with 1008.
    let mut socket = connect(&server).await;
    socket.send("hello?").await.unwrap();
    let ended = rt::timeout(Duration::from_secs(10), async {
        while socket.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok());
    let closed = socket.closed().expect("closed");
    assert_eq!(closed.code, ws::CloseCode::POLICY_VIOLATION, "{closed:?}");
    assert!(closed.reason.contains("malformed hello"), "{closed:?}");
    // A client asking for the subprotocol of a server that does not serve it.
    let plain = super::common::echo_server(ws::ServerConfig::default()).await;
    let (socket, _) = ws::client(plain.url("/echo"))
        .unwrap()
        .subprotocol(SUBPROTOCOL)
        .connect()
        .await
        .unwrap();
    let error = SealedSocket::open(socket, None).await.unwrap_err();
    assert!(matches!(error, SessionError::NotNegotiated), "{error}");
}

/// Drives the handshake by hand so the test holds the sealed records.
async fn replayed_and_altered_messages_close_the_session() {
    for attack in ["replay", "flip", "skip"] {
        let (server, seen) = sealed_server_seeing(ServerHandshake::new(None)).await;
        let mut socket = connect(&server).await;
        let handshake = ClientHandshake::new(None);
        socket
            .send(Message::binary(handshake.hello().to_vec()))
            .await
            .unwrap();
        let Some(Ok(Message::Binary(accept))) = socket.recv().await else {
            panic!("no accept")
        };
        let mut session = handshake.finish(&accept).unwrap();
        let Some(Ok(Message::Binary(welcome))) = socket.recv().await else {
            panic!("no welcome")
        };
        assert_eq!(
            session.opener.open(&welcome).unwrap(),
            (Kind::Text, b"welcome".to_vec())
        );
        let first = session.sealer.seal(Kind::Text, b"one").unwrap();
        let second = session.sealer.seal(Kind::Text, b"two").unwrap();
        socket.send(Message::binary(first.clone())).await.unwrap();
        let Some(Ok(Message::Binary(echo))) = socket.recv().await else {
            panic!("no echo")
        };
        assert_eq!(session.opener.open(&echo).unwrap().1, b"one");
        let (bad, expected) = match attack {
            "replay" => (
                first,
                OpenError::Replayed {
                    counter: 0,
                    expected: 1,
                },
            ),
            "flip" => {
                let mut flipped = second.clone();
                *flipped.last_mut().unwrap() ^= 1;
                (flipped, OpenError::Tampered { counter: 1 })
            }
            _ => (
                session.sealer.seal(Kind::Text, b"three").unwrap(),
                OpenError::Skipped {
                    counter: 2,
                    expected: 1,
                },
            ),
        };
        socket.send(Message::binary(bad)).await.unwrap();
        // The genuine next record, right behind: the session is over, so it
        // must not reach the handler.
        socket.send(Message::binary(second)).await.unwrap();
        rt::timeout(Duration::from_secs(10), async {
            while socket.recv().await.is_some() {}
        })
        .await
        .unwrap();
        let closed = socket.closed().expect("closed");
        assert_eq!(closed.code, ws::CloseCode::POLICY_VIOLATION, "{attack}");
        assert_eq!(
            closed.reason,
            format!("encrypted session: {expected}"),
            "{attack}"
        );
        eventually(
            || seen.lock().unwrap().last().map(String::as_str) == Some("closed"),
            "on_close",
        )
        .await;
        assert_eq!(*seen.lock().unwrap(), ["one", "closed"], "{attack}");
    }
}

/// Says who the session is: "hello, <user>" on open, "<user>: <text>"
/// for every message; records what it saw.
struct Whoami {
    seen: Seen,
}

impl SealedHandler for Whoami {
    async fn on_open(&mut self, ctx: &mut SealedCtx<'_>) {
        let user = ctx
            .identity()
            .map(|i| i.subject.clone())
            .unwrap_or_default();
        self.seen.lock().unwrap().push(format!("open {user}"));
        let _ = ctx.send(format!("hello, {user}")).await;
    }

    async fn on_message(&mut self, ctx: &mut SealedCtx<'_>, message: Message) {
        let user = ctx
            .identity()
            .map(|i| i.subject.clone())
            .unwrap_or_default();
        let text = message.as_text().unwrap_or_default().to_owned();
        self.seen.lock().unwrap().push(format!("{user}: {text}"));
        let _ = ctx.send(format!("{user}: {text}")).await;
    }
}

/// Routes whose sessions prove their own identity inside: `/inside` (the
/// upgrade names nobody) and `/both` (the upgrade names someone too, who
/// must be the same).
async fn identity_server(handshake: ServerHandshake) -> (TestServer, Seen) {
    let seen = Seen::default();
    let keys = || {
        ws::auth::KeyAuth::new()
            .key("key-ann", "ann")
            .key("key-bob", "bob")
    };
    let inside = Arc::new(keys());
    let route = |seen: Seen, handshake: ServerHandshake, keys: Arc<ws::auth::KeyAuth>| {
        Endpoint::new(move |_| {
            Sealed::new(handshake.clone(), Whoami { seen: seen.clone() })
                .credential_inside(keys.clone())
        })
        .subprotocols([SUBPROTOCOL])
        .require_subprotocol()
    };
    let server = serve(
        ws::server()
            .route(
                "/inside",
                route(seen.clone(), handshake.clone(), inside.clone()),
            )
            .route(
                "/both",
                route(seen.clone(), handshake, inside).authenticator(keys()),
            )
            .build(),
    )
    .await;
    (server, seen)
}

/// A connection to `path`, with `upgrade_key` in the upgrade request.
async fn connect_to(server: &TestServer, path: &str, upgrade_key: Option<&str>) -> WebSocket {
    let mut client = ws::client(server.url(path))
        .unwrap()
        .subprotocol(SUBPROTOCOL);
    if let Some(key) = upgrade_key {
        client = client.header(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Key {key}")).unwrap(),
        );
    }
    client.connect().await.unwrap().0
}

/// The close code once `socket` is closed.
async fn close_code(mut session: SealedSocket) -> u16 {
    let ended = rt::timeout(Duration::from_secs(10), async {
        while session.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "closed in time");
    session.closed().expect("closed").code.as_u16()
}

// An attacker on a path that reads upgrade requests forwards ann's upgrade
// (her key in its header) and splices in a hello of its own: on a route
// that takes the credential inside the session, that upgrade proves
// nothing; the session sends no credential it holds (ann's never travels in
// the clear), so it is closed with 4001 and the handler never opens. Ann,
// with her credential inside, is ann; a wrong credential, or one that names
// another user than the upgrade does, is closed with 4001.
async fn a_session_is_whoever_its_own_credential_proves() {
    let key = KeyPair::generate();
    let pin = Some(key.public());
    let (server, seen) = identity_server(ServerHandshake::new(Some(key))).await;

    let socket = connect_to(&server, "/inside", None).await;
    let mut ann = SealedSocket::open_with_credential(socket, pin, "Key key-ann")
        .await
        .unwrap();
    assert_eq!(next(&mut ann).await, Message::text("hello, ann"));
    ann.send("hi").await.unwrap();
    assert_eq!(next(&mut ann).await, Message::text("ann: hi"));

    let spliced = connect_to(&server, "/inside", Some("key-ann")).await;
    let attacker = SealedSocket::open(spliced, pin).await.unwrap();
    attacker.send("i am ann").await.unwrap();
    assert_eq!(close_code(attacker).await, 4001);

    let socket = connect_to(&server, "/inside", None).await;
    let wrong = SealedSocket::open_with_credential(socket, pin, "Key key-mallory")
        .await
        .unwrap();
    assert_eq!(close_code(wrong).await, 4001);

    // bob upgrades as bob and presents ann's credential inside.
    let socket = connect_to(&server, "/both", Some("key-bob")).await;
    let crossed = SealedSocket::open_with_credential(socket, pin, "Key key-ann")
        .await
        .unwrap();
    assert_eq!(close_code(crossed).await, 4001);
    let socket = connect_to(&server, "/both", Some("key-bob")).await;
    let mut bob = SealedSocket::open_with_credential(socket, pin, "Key key-bob")
        .await
        .unwrap();
    assert_eq!(next(&mut bob).await, Message::text("hello, bob"));

    // Only ann's and bob's sessions ever opened.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, ["open ann", "ann: hi", "open bob"], "{seen:?}");
}

adapter_tests!(
    a_session_is_whoever_its_own_credential_proves,
    sealed_session_echoes_with_a_pinned_key,
    a_full_send_queue_leaves_no_gap_in_the_counters,
    timers_and_shutdown_reach_the_sealed_handler,
    the_client_refuses_what_the_server_did_not_seal,
    a_pinned_key_detects_an_impostor,
    clients_that_do_not_encrypt_are_refused,
    replayed_and_altered_messages_close_the_session,
);
