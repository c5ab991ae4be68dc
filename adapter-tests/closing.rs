//! The end of a connection loses nothing: messages that arrived are
//! delivered and a close that arrived counts, whatever order end of
//! stream, decoding and the application's pace come in; closes the
//! application or the server asks for are checked and go out in bounded
//! time; shutdown and authentication cannot be held up by a callback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::rt::{self, ws};

use super::common::{
    Echo, Raw, connect_with, echo_server, eventually, quick_config, request, serve,
};
use ws::{
    ClientConfig, CloseCode, Closed, Ctx, Endpoint, Handler, Message, SendError, ServerConfig,
    ws_core,
};
use ws_core::{CloseCause, Side};

/// Handles each message slowly (`delay`), reporting it, echoing it, and
/// reporting how the connection closed.
struct Slow {
    delay: Duration,
    seen: async_channel::Sender<Message>,
    closed: async_channel::Sender<Closed>,
}

impl Handler for Slow {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        rt::sleep(self.delay).await;
        let _ = self.seen.try_send(message.clone());
        let _ = ctx.send(message).await;
    }
    async fn on_close(&mut self, _: &mut Ctx, closed: &Closed) {
        let _ = self.closed.try_send(closed.clone());
    }
}

struct SlowServer {
    server: super::common::TestServer,
    seen: async_channel::Receiver<Message>,
    closed: async_channel::Receiver<Closed>,
}

async fn slow_server(delay: Duration) -> SlowServer {
    let (seen_tx, seen) = async_channel::unbounded();
    let (closed_tx, closed) = async_channel::unbounded();
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(move |_| Slow {
                    delay,
                    seen: seen_tx.clone(),
                    closed: closed_tx.clone(),
                }),
            )
            .build(),
    )
    .await;
    SlowServer {
        server,
        seen,
        closed,
    }
}

async fn next<T>(rx: &async_channel::Receiver<T>) -> T {
    rt::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("in time")
        .expect("an item")
}

// Send, close, then read: every echo and the close reply arrive, and the
// stream ends cleanly (as with tokio-tungstenite against the same server).
async fn send_then_close_gets_every_echo_and_the_close_reply() {
    let echo = echo_server(ServerConfig::default()).await;
    let slow = slow_server(Duration::from_millis(50)).await;
    for url in [echo.url("/echo"), slow.server.url("/")] {
        let (mut socket, _) = ws::connect(&url).await.unwrap();
        for text in ["one", "two", "three"] {
            socket.send(text).await.unwrap();
        }
        socket.close(CloseCode::NORMAL, "bye").await.unwrap();
        rt::sleep(Duration::from_millis(300)).await;
        let mut got = Vec::new();
        while let Some(item) = rt::timeout(Duration::from_secs(5), socket.recv())
            .await
            .expect("the stream ends")
        {
            got.push(item.expect("no error: the close handshake completed"));
        }
        assert_eq!(
            got,
            [
                Message::text("one"),
                Message::text("two"),
                Message::text("three")
            ],
            "{url}"
        );
        let closed = socket.closed().unwrap();
        assert_eq!(closed.code, CloseCode::NORMAL);
        assert_eq!(
            closed.cause,
            CloseCause::Handshake {
                initiated_by: Side::Local
            }
        );
    }
}

// A server whose handler takes 100 ms gets every message of a client that
// sent three and then hung up; with a close frame after them, the client
// gets every echo before the close reply.
async fn slow_handler_gets_everything_a_departed_peer_sent() {
    let slow = slow_server(Duration::from_millis(100)).await;
    let mut raw = Raw::upgrade(slow.server.addr, "/").await;
    for text in [&b"a"[..], b"b", b"c"] {
        raw.frame(1, true, text).await;
    }
    rt::shutdown_write(&mut raw.stream).await;
    drop(raw);
    for text in ["a", "b", "c"] {
        assert_eq!(next(&slow.seen).await, Message::text(text));
    }
    let closed = next(&slow.closed).await;
    assert_eq!(closed.cause, CloseCause::TransportClosed);

    let mut raw = Raw::upgrade(slow.server.addr, "/").await;
    for text in [&b"a"[..], b"b", b"c"] {
        raw.frame(1, true, text).await;
    }
    raw.frame(8, true, &1000u16.to_be_bytes()).await;
    for text in [&b"a"[..], b"b", b"c"] {
        let (opcode, _, payload) = rt::timeout(Duration::from_secs(5), raw.read_frame())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((opcode, &payload[..]), (1, text), "echoes before the close");
    }
    assert_eq!(raw.read_close_code().await, Some(1000));
    let closed = next(&slow.closed).await;
    assert_eq!(
        closed.cause,
        CloseCause::Handshake {
            initiated_by: Side::Remote
        }
    );
}

// A client that waits 1 s before reading, with 100 ms keepalive timers,
// gets its messages: bytes from the server count as life, and its pongs
// are read behind the messages waiting for the application.
async fn slow_reader_with_short_keepalive_is_not_timed_out() {
    let server = echo_server(ServerConfig::default()).await;
    let mut config = ClientConfig::default();
    config.connection.ping_interval = Some(Duration::from_millis(100));
    config.connection.pong_timeout = Duration::from_millis(100);
    let mut socket = connect_with(server.url("/echo"), config).await;
    socket.send("first").await.unwrap();
    socket.send("second").await.unwrap();
    rt::sleep(Duration::from_secs(1)).await;
    for text in ["first", "second"] {
        let message = rt::timeout(Duration::from_secs(5), socket.recv())
            .await
            .unwrap()
            .expect("a message")
            .expect("not a keepalive timeout");
        assert_eq!(message, Message::text(text));
    }
    assert!(socket.closed().is_none());
}

// A close behind a message the application has not read is answered within
// the close deadline: the server sees a completed close handshake, and the
// client still gets the message in front of it.
async fn close_behind_an_unread_message_is_answered() {
    // Echoes, and closes after its second echo: the client gets a data
    // frame, another, and the close behind it.
    struct EchoThenClose(usize);
    impl Handler for EchoThenClose {
        async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
            let _ = ctx.try_send(message);
            self.0 += 1;
            if self.0 == 2 {
                let _ = ctx.try_close(CloseCode::new(4000), "done");
            }
        }
    }
    let (closed_tx, closed_rx) = async_channel::unbounded();
    struct Report<H>(H, async_channel::Sender<Closed>);
    impl<H: Handler> Handler for Report<H> {
        async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
            self.0.on_message(ctx, message).await;
        }
        async fn on_close(&mut self, _: &mut Ctx, closed: &Closed) {
            let _ = self.1.try_send(closed.clone());
        }
    }
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(move |_| Report(EchoThenClose(0), closed_tx.clone())),
            )
            .build(),
    )
    .await;
    let mut config = ClientConfig::default();
    config.connection.close_timeout = Duration::from_millis(300);
    let mut socket = connect_with(server.url("/"), config).await;
    socket.send("first").await.unwrap();
    socket.send("second").await.unwrap();
    // The client does not read for a while; the server's close must not
    // wait for it (the server's own close timeout is 10 s).
    let started = Instant::now();
    let closed = next(&closed_rx).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        closed.cause,
        CloseCause::Handshake {
            initiated_by: Side::Local
        },
        "the client answered the close"
    );
    for text in ["first", "second"] {
        assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text(text));
    }
    assert!(socket.recv().await.is_none());
    assert_eq!(socket.closed().unwrap().code, CloseCode::new(4000));
}

// Shutdown's grace period holds inside callbacks: a handler asleep in
// `on_message` loses its socket and slot when the grace period ends.
async fn shutdown_grace_ends_callbacks_that_run_on() {
    struct Sleepy(Arc<AtomicUsize>);
    impl Handler for Sleepy {
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {
            self.0.fetch_add(1, Ordering::SeqCst);
            rt::sleep(Duration::from_secs(60)).await;
        }
    }
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let mut config = quick_config();
    config.max_connections = Some(1);
    let server = serve(
        ws::server()
            .config(config)
            .route("/", Endpoint::new(move |_| Sleepy(counter.clone())))
            .build(),
    )
    .await;
    let mut raw = Raw::upgrade(server.addr, "/").await;
    raw.frame(1, true, b"sleep").await;
    eventually(|| started.load(Ordering::SeqCst) == 1, "the callback").await;
    let begun = Instant::now();
    rt::timeout(
        Duration::from_secs(5),
        server.handle.shutdown(Duration::from_secs(1)),
    )
    .await
    .expect("shutdown ends after its grace period");
    assert!(begun.elapsed() < Duration::from_secs(3));
    eventually(|| server.handle.count() == 0, "the connection to go").await;
    assert!(
        raw.read_until_eof(Duration::from_secs(2)).await.1,
        "the socket was closed"
    );
}

// An authenticate hook that never answers runs inside the handshake
// deadline (408) and holds no connection slot meanwhile.
async fn stalled_authentication_holds_no_slot() {
    let mut config = quick_config();
    config.max_connections = Some(1);
    let server = serve(
        ws::server()
            .config(config)
            .route(
                "/",
                Endpoint::new(|_| Echo).authenticate(|parts: http::request::Parts| async move {
                    if parts.headers.contains_key("x-stall") {
                        std::future::pending::<()>().await;
                    }
                    Ok(parts)
                }),
            )
            .build(),
    )
    .await;
    let mut stalled = Raw::connect(server.addr).await;
    stalled
        .send(request("/", &["X-Stall: yes"]).as_bytes())
        .await;
    rt::sleep(Duration::from_millis(100)).await;
    let (mut socket, _) = ws::connect(&server.url("/"))
        .await
        .expect("a slot is free while the other handshake stalls");
    let (status, _) = stalled.read_head().await;
    assert_eq!(status, 408, "the hook is bounded by the handshake deadline");
    socket.send("hi").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("hi"));
}

// Closes are checked where they are asked for: a code that may not be sent
// or an over-long reason is an error, and nothing is sent.
async fn invalid_closes_are_refused() {
    let server = echo_server(ServerConfig::default()).await;
    let (mut socket, _) = ws::connect(&server.url("/echo")).await.unwrap();
    for (code, reason) in [
        (CloseCode::new(1005), ""),
        (CloseCode::new(1006), ""),
        (CloseCode::new(999), ""),
        (CloseCode::NORMAL, &"x".repeat(124)[..]),
    ] {
        assert!(
            matches!(socket.try_close(code, reason), Err(SendError::Invalid(_))),
            "{code} {}",
            reason.len()
        );
    }
    assert!(matches!(
        socket.try_ping(vec![0u8; 126]),
        Err(SendError::Invalid(_))
    ));
    socket.send("still open").await.unwrap();
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("still open")
    );
    socket.try_close(CloseCode::NORMAL, "").unwrap();
    assert!(matches!(socket.send("late").await, Err(SendError::Closed)));
    assert!(socket.recv().await.is_none());
}

// A close the server decides on (here a policy's 1008) reaches the wire in
// bounded time even when the peer reads nothing and the send queue is
// full; then the connection is dropped.
async fn server_closes_do_not_wait_for_a_peer_that_reads_nothing() {
    use ws_core::policy::{MaxMessagesPerSecond, OnViolation, PolicySet};
    // Sends until the connection closes, waiting for room: the send queue,
    // the engine's buffer and the kernel's stay full.
    struct Flood;
    impl Handler for Flood {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            let handle = ctx.handle();
            rt::spawn(async move {
                let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
                while handle.send(Message::Binary(chunk.clone())).await.is_ok() {}
            });
        }
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
    }
    let mut config = quick_config();
    config.connection.close_timeout = Duration::from_secs(2);
    let server = serve(
        ws::server()
            .config(config)
            .route(
                "/",
                Endpoint::new(|_| Flood).policies(|| {
                    PolicySet::new().with(MaxMessagesPerSecond::new(1), OnViolation::Close)
                }),
            )
            .build(),
    )
    .await;
    let mut raw = Raw::upgrade(server.addr, "/").await;
    eventually(|| server.handle.count() == 1, "the connection").await;
    rt::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        raw.frame(1, true, b"too fast").await;
    }
    let started = Instant::now();
    eventually(
        || server.handle.count() == 0,
        "the connection to be dropped",
    )
    .await;
    // One close timeout in all (half for the queued data, half for the
    // close), not one for each stage: it was three.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{took:?}");
}

// Cancelling a fragmented send midway does not wedge the connection:
// closing abandons the half-sent message, the close goes out, and later
// sends fail instead of hanging.
async fn an_abandoned_fragmented_send_is_ended_by_closing() {
    let (closed_tx, closed_rx) = async_channel::unbounded();
    struct Watch(async_channel::Sender<Closed>);
    impl Handler for Watch {
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
        async fn on_close(&mut self, _: &mut Ctx, closed: &Closed) {
            let _ = self.0.try_send(closed.clone());
        }
    }
    let server = serve(
        ws::server()
            .route("/", Endpoint::new(move |_| Watch(closed_tx.clone())))
            .build(),
    )
    .await;
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    socket.send_fragment("part one", false).await.unwrap();
    // The next piece's send is cancelled before it was queued.
    drop(socket.send_fragment("part two", false));
    // A whole message queued meanwhile waits for the fragmented one.
    socket.send("whole").await.unwrap();
    socket.try_close(CloseCode::new(4001), "gave up").unwrap();
    let closed = next(&closed_rx).await;
    assert_eq!(closed.code, CloseCode::new(4001));
    assert!(matches!(socket.send("late").await, Err(SendError::Closed)));
    assert!(
        rt::timeout(Duration::from_secs(5), socket.recv())
            .await
            .unwrap()
            .is_none()
    );
}

// A handler factory that panics costs the client a 500, not the server.
async fn panicking_handler_factory_gets_500() {
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::new(|info| {
                    if info.request.uri.query() == Some("boom") {
                        panic!("factory bug");
                    }
                    Echo
                }),
            )
            .build(),
    )
    .await;
    let mut raw = Raw::connect(server.addr).await;
    raw.send(request("/?boom", &[]).as_bytes()).await;
    assert_eq!(raw.read_head().await.0, 500);
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    socket.send("fine").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("fine"));
}

// Durations too large for `Instant` mean "never", on both sides.
async fn huge_durations_mean_never() {
    let mut config = ServerConfig::default();
    config.handshake.timeout = Duration::MAX;
    config.connection.close_timeout = Duration::MAX;
    config.connection.ping_interval = Some(Duration::MAX);
    config.connection.idle_timeout = Some(Duration::MAX);
    config.connection.fragment_timeout = Some(Duration::MAX);
    let server = echo_server(config).await;
    let mut client = ClientConfig::default();
    client.handshake.timeout = Duration::MAX;
    client.connection.close_timeout = Duration::MAX;
    client.connection.ping_interval = Some(Duration::MAX);
    client.read_ahead = usize::MAX;
    let mut socket = connect_with(server.url("/echo"), client).await;
    socket.send("x").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("x"));
    socket.try_close(CloseCode::NORMAL, "").unwrap();
    assert!(socket.recv().await.is_none());
    rt::timeout(
        Duration::from_secs(5),
        server.handle.shutdown(Duration::MAX),
    )
    .await
    .unwrap();
}

adapter_tests!(
    send_then_close_gets_every_echo_and_the_close_reply,
    slow_handler_gets_everything_a_departed_peer_sent,
    slow_reader_with_short_keepalive_is_not_timed_out,
    close_behind_an_unread_message_is_answered,
    shutdown_grace_ends_callbacks_that_run_on,
    stalled_authentication_holds_no_slot,
    invalid_closes_are_refused,
    server_closes_do_not_wait_for_a_peer_that_reads_nothing,
    an_abandoned_fragmented_send_is_ended_by_closing,
    panicking_handler_factory_gets_500,
    huge_durations_mean_never,
);
