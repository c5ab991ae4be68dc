//! Connection lifecycle over real sockets: ROBUSTNESS 5.5 items 31-39.

use crate::rt::{self, ws};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::common::{Echo, Raw, echo_server, eventually, quick_config, serve};
use ws::{CloseCode, Closed, Ctx, Endpoint, Handler, Message, SendError, ServerConfig, ws_core};

/// Reports how each connection closed.
struct Report {
    closed: async_channel::Sender<Closed>,
}

impl Handler for Report {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.try_send(message);
    }
    async fn on_close(&mut self, _ctx: &mut Ctx, closed: &Closed) {
        let _ = self.closed.try_send(closed.clone());
    }
}

fn reporting(config: ServerConfig) -> (ws::Server, async_channel::Receiver<Closed>) {
    let (tx, rx) = async_channel::unbounded();
    let server = ws::server()
        .config(config)
        .route("/", Endpoint::new(move |_| Report { closed: tx.clone() }))
        .build();
    (server, rx)
}

// ROBUSTNESS 31: a peer that stops reading fills bounded buffers, then sends
// are refused; the connection itself stays up.
async fn peer_that_stops_reading_meets_backpressure() {
    struct Flood(async_channel::Sender<(usize, SendError)>);
    impl Handler for Flood {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            let handle = ctx.handle();
            let report = self.0.clone();
            rt::spawn(async move {
                let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
                for sent in 0..100_000 {
                    if let Err(error) = handle.try_send(Message::Binary(chunk.clone())) {
                        let _ = report.try_send((sent, error));
                        return;
                    }
                    rt::sleep(Duration::from_micros(200)).await;
                }
            });
        }
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
    }
    let (tx, rx) = async_channel::unbounded();
    let server = serve(
        ws::server()
            .route("/", Endpoint::new(move |_| Flood(tx.clone())))
            .build(),
    )
    .await;
    let _raw = Raw::upgrade(server.addr, "/").await;
    let (sent, error) = rt::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a refusal")
        .unwrap();
    assert!(matches!(error, SendError::Full { .. }), "{error:?}");
    // Send queue (1 MiB) + engine buffer (1 MiB) + kernel socket buffers.
    let queued = sent * 64 * 1024;
    assert!(
        queued < 48 << 20,
        "{queued} bytes accepted for a peer that reads nothing"
    );
    assert_eq!(
        server.handle.count(),
        1,
        "the connection stays open under the Reject policy"
    );
}

// ROBUSTNESS 32: a ping flood from a peer that does not read leaves the
// server serving; an optional rate limit closes with 1008.
async fn ping_flood() {
    let server = echo_server(ServerConfig::default()).await;
    let mut raw = Raw::upgrade(server.addr, "/echo").await;
    let ping = super::common::masked_frame(9, true, b"x");
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 100_000)
        .collect();
    raw.send(&flood).await;
    raw.frame(1, true, b"still here").await;
    let mut pongs = 0;
    loop {
        let (opcode, _, payload) = rt::timeout(Duration::from_secs(10), raw.read_frame())
            .await
            .unwrap()
            .unwrap();
        match opcode {
            10 => pongs += 1,
            1 => {
                assert_eq!(payload, b"still here");
                break;
            }
            other => panic!("unexpected opcode {other}"),
        }
    }
    assert!((1..=100_000).contains(&pongs));

    let mut config = ServerConfig::default();
    config.connection.ping_rate_limit = Some(50);
    let server = echo_server(config).await;
    let mut raw = Raw::upgrade(server.addr, "/echo").await;
    raw.send(&flood[..ping.len() * 1000]).await;
    assert_eq!(raw.read_close_code().await, Some(1008));
}

// ROBUSTNESS 33: a peer that vanishes (answers nothing) is dropped after the
// keepalive ping's deadline, and its resources freed.
async fn half_open_peer_is_dropped() {
    let mut config = quick_config();
    config.connection.ping_interval = Some(Duration::from_millis(200));
    config.connection.pong_timeout = Duration::from_millis(200);
    let (server, closed) = reporting(config);
    let server = serve(server).await;
    let started = Instant::now();
    let mut raw = Raw::upgrade(server.addr, "/").await;
    let closed = rt::timeout(Duration::from_secs(5), closed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        closed.cause,
        ws_core::CloseCause::Timeout(ws_core::Timeout::KeepAlive)
    );
    assert_eq!(closed.code, CloseCode::ABNORMAL);
    assert!(started.elapsed() >= Duration::from_millis(400));
    let (bytes, eof) = raw.read_until_eof(Duration::from_secs(5)).await;
    assert!(eof, "the server closed the socket");
    assert_eq!(bytes[0] & 0x0F, 9, "a keepalive ping came first");
    eventually(|| server.handle.count() == 0, "the registry to empty").await;
}

// ROBUSTNESS 34: a bad close code gets 1002 and the socket closed; a close
// the peer never answers ends at the close deadline.
async fn close_edge_cases() {
    let server = echo_server(quick_config()).await;
    let mut raw = Raw::upgrade(server.addr, "/echo").await;
    raw.frame(8, true, &999u16.to_be_bytes()).await;
    assert_eq!(raw.read_close_code().await, Some(1002));
    assert!(raw.read_until_eof(Duration::from_secs(3)).await.1);

    struct CloseAtOnce;
    impl Handler for CloseAtOnce {
        async fn on_message(&mut self, ctx: &mut Ctx, _: Message) {
            let _ = ctx.try_close(CloseCode::new(4000), "done");
        }
    }
    let server = serve(
        ws::server()
            .config(quick_config())
            .route("/", Endpoint::new(|_| CloseAtOnce))
            .build(),
    )
    .await;
    let mut raw = Raw::upgrade(server.addr, "/").await;
    raw.frame(1, true, b"hi").await;
    assert_eq!(raw.read_close_code().await, Some(4000));
    // We never answer; the server gives up after its 500 ms close timeout.
    let started = Instant::now();
    assert!(raw.read_until_eof(Duration::from_secs(5)).await.1);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

// ROBUSTNESS 35: dropping `recv` futures at every poll point loses nothing.
async fn recv_is_cancel_safe() {
    struct Count;
    impl Handler for Count {
        async fn on_message(&mut self, ctx: &mut Ctx, _: Message) {
            for i in 0..2000u32 {
                let _ = ctx.send(i.to_string()).await;
            }
        }
    }
    let server = serve(ws::server().route("/", Endpoint::new(|_| Count)).build()).await;
    let (mut socket, _) = ws::connect(&server.url("/")).await.unwrap();
    socket.send("go").await.unwrap();
    let mut next = 0u32;
    let mut cancelled = 0;
    while next < 2000 {
        // Poll once and drop, or wait a little and drop: each is a cancel.
        let polled = futures_util::FutureExt::now_or_never(socket.recv());
        let item = match polled {
            Some(item) => item,
            None => {
                cancelled += 1;
                match rt::timeout(Duration::from_micros(50), socket.recv()).await {
                    Ok(item) => item,
                    Err(_) => {
                        cancelled += 1;
                        continue;
                    }
                }
            }
        };
        let message = item.expect("stream ended early").unwrap();
        assert_eq!(message, Message::text(next.to_string()));
        next += 1;
    }
    assert!(cancelled > 0, "the test never cancelled a receive");
}

// ROBUSTNESS 36: an application that only sends still answers pings (its
// task reads), and one that dropped its receiver keeps running.
async fn sending_only_keeps_the_connection_alive() {
    struct Chatty;
    impl Handler for Chatty {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            let handle = ctx.handle();
            rt::spawn(async move {
                for i in 0..40 {
                    if handle.try_send(format!("server {i}")).is_err() {
                        return;
                    }
                    rt::sleep(Duration::from_millis(25)).await;
                }
            });
        }
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
    }
    let mut config = quick_config();
    config.connection.ping_interval = Some(Duration::from_millis(100));
    config.connection.pong_timeout = Duration::from_millis(100);
    config.connection.idle_timeout = Some(Duration::from_millis(300));
    let server = serve(
        ws::server()
            .config(config.clone())
            .route("/quiet", Endpoint::new(|_| Echo))
            .route("/chatty", Endpoint::new(|_| Chatty))
            .build(),
    )
    .await;
    // Only pings come from the server; the application never receives.
    let (socket, _) = ws::connect(&server.url("/quiet")).await.unwrap();
    let (sender, _receiver) = socket.split();
    // The server sends data and pings; the application dropped its receiver.
    let (chatty, _) = ws::connect(&server.url("/chatty")).await.unwrap();
    let (chatty_sender, chatty_receiver) = chatty.split();
    drop(chatty_receiver);
    for _ in 0..10 {
        sender.send("ping me").await.unwrap();
        chatty_sender.send("hello").await.unwrap();
        rt::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.handle.count(),
        2,
        "both connections survived 1 s of 100 ms keepalive"
    );
}

// ROBUSTNESS 37: shutdown calls on_shutdown, closes every client with 1001,
// answers new handshakes with 503 while draining, drops stragglers at the
// grace deadline and stops the accept loop.
async fn graceful_shutdown() {
    struct Polite(Arc<AtomicUsize>);
    impl Handler for Polite {
        async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
            let _ = ctx.try_send(message);
        }
        async fn on_shutdown(&mut self, ctx: &mut Ctx) {
            self.0.fetch_add(1, Ordering::SeqCst);
            let _ = ctx.try_send("bye");
        }
    }
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let mut config = quick_config();
    config.connection.close_timeout = Duration::from_secs(5);
    let counter = shutdowns.clone();
    let server = serve(
        ws::server()
            .config(config)
            .route("/", Endpoint::new(move |_| Polite(counter.clone())))
            .build(),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(ws::connect(&server.url("/")).await.unwrap().0);
    }
    // A raw client that never answers the close: it holds the drain open.
    let mut straggler = Raw::upgrade(server.addr, "/").await;
    eventually(|| server.handle.count() == 4, "four connections").await;
    let handle = server.handle.clone();
    let shutdown = rt::spawn(async move { handle.shutdown(Duration::from_millis(800)).await });
    for client in &mut clients {
        assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("bye"));
        assert!(client.recv().await.is_none(), "clean close ends the stream");
        assert_eq!(client.closed().unwrap().code, CloseCode::GOING_AWAY);
    }
    // Draining: new handshakes are refused.
    let mut late = Raw::connect(server.addr).await;
    late.send(super::common::request("/", &[]).as_bytes()).await;
    assert_eq!(late.read_head().await.0, 503);
    assert_eq!(straggler.read_close_code().await, Some(1001));
    rt::timeout(Duration::from_secs(3), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(
        straggler.read_until_eof(Duration::from_secs(3)).await.1,
        "the straggler was dropped"
    );
    assert_eq!(shutdowns.load(Ordering::SeqCst), 4);
    rt::timeout(Duration::from_secs(3), server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

// ROBUSTNESS 39: a panicking handler closes its own connection with 1011;
// other connections carry on. A slow handler delays only its connection.
async fn panics_and_slow_handlers_stay_contained() {
    struct Fragile;
    impl Handler for Fragile {
        async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
            match message.as_bytes() {
                b"boom" => panic!("handler bug"),
                b"slow" => rt::sleep(Duration::from_millis(1500)).await,
                _ => {}
            }
            let _ = ctx.try_send(message);
        }
    }
    let server = serve(ws::server().route("/", Endpoint::new(|_| Fragile)).build()).await;
    let (mut victim, _) = ws::connect(&server.url("/")).await.unwrap();
    let (mut slow, _) = ws::connect(&server.url("/")).await.unwrap();
    let (mut bystander, _) = ws::connect(&server.url("/")).await.unwrap();
    victim.send("boom").await.unwrap();
    assert!(victim.recv().await.is_none());
    assert_eq!(victim.closed().unwrap().code, CloseCode::INTERNAL_ERROR);
    slow.send("slow").await.unwrap();
    let started = Instant::now();
    bystander.send("hello").await.unwrap();
    assert_eq!(
        bystander.recv().await.unwrap().unwrap(),
        Message::text("hello")
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the bystander waited {:?}",
        started.elapsed()
    );
    assert_eq!(slow.recv().await.unwrap().unwrap(), Message::text("slow"));
}

async fn dropping_the_socket_closes_normally() {
    let (server, closed) = reporting(ServerConfig::default());
    let server = serve(server).await;
    let (socket, _) = ws::connect(&server.url("/")).await.unwrap();
    drop(socket);
    let closed = rt::timeout(Duration::from_secs(5), closed.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.code, CloseCode::NORMAL);
    assert_eq!(
        closed.cause,
        ws_core::CloseCause::Handshake {
            initiated_by: ws_core::Side::Remote
        }
    );
}

adapter_tests!(
    peer_that_stops_reading_meets_backpressure,
    ping_flood,
    half_open_peer_is_dropped,
    close_edge_cases,
    recv_is_cancel_safe,
    sending_only_keeps_the_connection_alive,
    graceful_shutdown,
    panics_and_slow_handlers_stay_contained,
    dropping_the_socket_closes_normally,
);
