//! The client and server API: round trips, split halves, registry and
//! broadcast, TLS, IPv6, backpressure reaching the sender.

use crate::rt::{self, ws};
use std::sync::Arc;
use std::time::Duration;

use super::common::{Echo, echo_server, eventually, serve};
use futures_util::{SinkExt, StreamExt};
use ws::ws_core::handshake::{ResponseError, ServerHandshake};
use ws::{
    ClientConfig, ConnectError, Ctx, Endpoint, Handler, Message, SendError, ServerConfig,
    ServerHandle,
};

fn big_config() -> (ServerConfig, ClientConfig) {
    let mut server = ServerConfig::default();
    server.connection = server.connection.with_max_message_size(16 << 20);
    server.send_queue = 16 << 20;
    let mut client = ClientConfig::default();
    client.connection = client.connection.with_max_message_size(16 << 20);
    client.send_queue = 16 << 20;
    (server, client)
}

async fn echo_round_trips_including_16_mib() {
    let (server_config, client_config) = big_config();
    let server = echo_server(server_config).await;
    let (mut socket, response) = ws::client(server.url("/echo"))
        .unwrap()
        .config(client_config)
        .connect()
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
    let messages = vec![
        Message::text("héllo"),
        Message::binary(vec![0, 1, 2, 255]),
        Message::text(""),
        Message::binary(big),
        Message::text("x".repeat(100_000)),
    ];
    for message in &messages {
        socket.send(message.clone()).await.unwrap();
    }
    for message in messages {
        assert_eq!(socket.recv().await.unwrap().unwrap(), message);
    }
    socket.try_close(ws::CloseCode::NORMAL, "done").unwrap();
    assert!(socket.recv().await.is_none());
    assert_eq!(socket.closed().unwrap().code, ws::CloseCode::NORMAL);
}

async fn fragmented_sends_arrive_whole_and_whole_messages_wait_their_turn() {
    let server = echo_server(ServerConfig::default()).await;
    let (mut socket, _) = ws::connect(&server.url("/echo")).await.unwrap();
    socket.send_fragment("hel", false).await.unwrap();
    // Queued while the fragmented message is open: goes out after it.
    socket.try_send("second").unwrap();
    socket.send_fragment("lo", true).await.unwrap();
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("hello")
    );
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("second")
    );
}

async fn too_big_for_the_server_closes_with_1009() {
    let server = echo_server(ServerConfig::default()).await;
    let (mut client_config, _) = (ClientConfig::default(), ());
    client_config.send_queue = 4 << 20;
    let (mut socket, _) = ws::client(server.url("/echo"))
        .unwrap()
        .config(client_config)
        .connect()
        .await
        .unwrap();
    socket
        .send(Message::binary(vec![0; (1 << 20) + 1]))
        .await
        .unwrap();
    let got = socket.recv().await;
    assert!(got.is_none(), "{got:?} {:?}", socket.closed());
    assert_eq!(
        socket.closed().unwrap().code,
        ws::CloseCode::MESSAGE_TOO_BIG
    );
}

async fn split_halves_work_concurrently_as_stream_and_sink() {
    let server = echo_server(ServerConfig::default()).await;
    let (socket, _) = ws::connect(&server.url("/echo")).await.unwrap();
    let (mut sender, mut receiver) = socket.split();
    let writer = rt::spawn(async move {
        for i in 0..500 {
            sender.feed(Message::text(i.to_string())).await.unwrap();
        }
        sender.flush().await.unwrap();
        sender
    });
    for i in 0..500 {
        assert_eq!(
            receiver.next().await.unwrap().unwrap(),
            Message::text(i.to_string())
        );
    }
    let mut sender = writer.await.unwrap();
    SinkExt::close(&mut sender).await.unwrap();
    assert!(receiver.next().await.is_none());
}

/// Registers itself under the first message's text, and relays
/// "to:NAME:TEXT" and "all:TEXT" commands.
struct Chat;

impl Handler for Chat {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let Message::Text(text) = message else { return };
        let server: &ServerHandle = ctx.server();
        if let Some(name) = text.strip_prefix("name:") {
            server.set_name(ctx.id(), name).unwrap();
            let _ = ctx.try_send("ok");
        } else if let Some(rest) = text.strip_prefix("to:") {
            let (name, body) = rest.split_once(':').unwrap();
            server.by_name(name).unwrap().try_send(body).unwrap();
        } else if let Some(body) = text.strip_prefix("all:") {
            server.broadcast(body, Some(ctx.id()));
        }
    }
}

async fn registry_names_and_broadcast() {
    let server = serve(ws::server().route("/chat", Endpoint::new(|_| Chat)).build()).await;
    let mut sockets = Vec::new();
    for name in ["ann", "bob", "cy"] {
        let (mut socket, _) = ws::connect(&server.url("/chat")).await.unwrap();
        socket.send(format!("name:{name}")).await.unwrap();
        assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("ok"));
        sockets.push(socket);
    }
    assert_eq!(server.handle.count(), 3);
    assert_eq!(server.handle.count_on("/chat"), 3);

    sockets[0].send("to:cy:psst").await.unwrap();
    assert_eq!(
        sockets[2].recv().await.unwrap().unwrap(),
        Message::text("psst")
    );

    sockets[1].send("all:hi all").await.unwrap();
    assert_eq!(
        sockets[0].recv().await.unwrap().unwrap(),
        Message::text("hi all")
    );
    assert_eq!(
        sockets[2].recv().await.unwrap().unwrap(),
        Message::text("hi all")
    );

    // The originator got nothing from its broadcast. Names are unique.
    let ann = server.handle.by_name("ann").unwrap().id();
    let bob = server.handle.by_name("bob").unwrap().id();
    assert!(
        matches!(server.handle.set_name(bob, "ann"), Err(ws::NameError::Taken(id)) if id == ann)
    );
    // Leaving frees the name.
    drop(sockets.remove(0));
    eventually(|| server.handle.by_name("ann").is_none(), "ann to leave").await;
    server.handle.try_send_to(bob, "direct").unwrap();
    assert_eq!(
        sockets[0].recv().await.unwrap().unwrap(),
        Message::text("direct")
    );
    assert!(matches!(
        server.handle.try_send_to(ann, "gone"),
        Err(SendError::Closed)
    ));
    sockets[1].send("all:still here").await.unwrap();
    assert_eq!(
        sockets[0].recv().await.unwrap().unwrap(),
        Message::text("still here")
    );
}

async fn backpressure_reaches_the_sender() {
    // A server that never reads its socket: the client's queue fills and
    // `send` waits; `try_send` reports it.
    let listener = rt::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stall = rt::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        use crate::rt::io::{AsyncReadExt, AsyncWriteExt};
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let text = String::from_utf8(head).unwrap();
        let key = text
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-key: "))
            .unwrap()
            .trim()
            .to_owned();
        let accept = {
            // Borrow ws-core's handshake to compute the accept value.
            let request = format!(
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            let mut hs = ServerHandshake::new(Default::default(), std::time::Instant::now());
            let upgrade = hs.handle_input(request.as_bytes()).unwrap().unwrap();
            upgrade.accept(Default::default()).unwrap().to_bytes()
        };
        stream.write_all(&accept).await.unwrap();
        // Never read again.
        rt::sleep(Duration::from_secs(30)).await;
        drop(stream);
    });
    let mut config = ClientConfig::default();
    config.send_queue = 256 * 1024;
    let (socket, _) = ws::client(format!("ws://{addr}/"))
        .unwrap()
        .config(config)
        .connect()
        .await
        .unwrap();
    let chunk = Message::binary(vec![1u8; 64 * 1024]);
    let mut sent = 0;
    let blocked = loop {
        match rt::timeout(Duration::from_millis(500), socket.send(chunk.clone())).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(error)) => panic!("{error}"),
            Err(_) => break true,
        }
        assert!(sent < 2000, "sending never blocked");
    };
    assert!(blocked);
    let (sender, _receiver) = socket.split();
    assert!(matches!(
        sender.try_send(chunk),
        Err(SendError::Full { .. })
    ));
    stall.abort();
}

fn self_signed() -> (Arc<rustls::ServerConfig>, rustls::RootCertStore) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let server = ws::tls::server_config(vec![cert.clone()], key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    (server, roots)
}

async fn tls_round_trip_and_hostname_verification() {
    let (server_tls, roots) = self_signed();
    let server = ws::server().route("/echo", Endpoint::new(|_| Echo)).build();
    let listener = ws::bind_tls("127.0.0.1:0", server_tls).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    rt::spawn(async move { server.serve(listener).await });
    let client_tls = ws::tls::client_config(roots);

    let (mut socket, _) = ws::client(format!("wss://localhost:{port}/echo"))
        .unwrap()
        .tls_config(client_tls.clone())
        .connect()
        .await
        .unwrap();
    socket.send("over tls").await.unwrap();
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("over tls")
    );

    // ROBUSTNESS 10: the certificate is for "localhost"; another name fails.
    let wrong = ws::client(format!("wss://127.0.0.1:{port}/echo"))
        .unwrap()
        .tls_config(client_tls)
        .connect()
        .await;
    assert!(matches!(wrong, Err(ConnectError::Tls { .. })), "{wrong:?}");
    // And a client without the root does not trust it.
    let untrusted = ws::client(format!("wss://localhost:{port}/echo"))
        .unwrap()
        .connect()
        .await;
    assert!(
        matches!(untrusted, Err(ConnectError::Tls { .. })),
        "{untrusted:?}"
    );
}

async fn ipv6_loopback() {
    let Ok(listener) = ws::bind("[::1]:0").await else {
        // No IPv6 on this host: nothing to test.
        eprintln!("skipping: IPv6 loopback unavailable");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let server = ws::server().route("/echo", Endpoint::new(|_| Echo)).build();
    rt::spawn(async move { server.serve(listener).await });
    let (mut socket, _) = ws::connect(&format!("ws://[::1]:{port}/echo"))
        .await
        .unwrap();
    socket.send("v6").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("v6"));
    assert!(socket.info().request.uri.to_string().contains("[::1]"));
}

async fn redirects_are_not_followed() {
    let listener = rt::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    rt::spawn(async move {
        use crate::rt::io::{AsyncReadExt, AsyncWriteExt};
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = stream
            .write_all(
                b"HTTP/1.1 302 Found\r\nLocation: ws://evil.example/\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
    });
    match ws::connect(&format!("ws://{addr}/")).await {
        Err(ConnectError::Handshake(ResponseError::Status {
            status, headers, ..
        })) => {
            assert_eq!(status, 302);
            assert_eq!(headers["location"], "ws://evil.example/");
        }
        other => panic!("{other:?}"),
    }
}

// Credentials never reach `Debug` output: not the server's view of the
// connection (which handlers and logs print), not the client builder.
async fn credentials_never_reach_debug_output() {
    use http::header::{AUTHORIZATION, COOKIE};
    struct Describe;
    impl Handler for Describe {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            let _ = ctx.try_send(format!("{:?}", ctx.info()));
        }
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
    }
    let server = serve(
        ws::server()
            .route("/", Endpoint::new(|_| Describe).subprotocols(["chat"]))
            .build(),
    )
    .await;
    let client = ws::client(server.url("/"))
        .unwrap()
        .subprotocol("secret-protocol-token")
        .subprotocol("chat")
        .header(
            AUTHORIZATION,
            http::HeaderValue::from_static("Bearer secret-token"),
        )
        .header(COOKIE, http::HeaderValue::from_static("id=secret-cookie"));
    let described = format!("{client:?}");
    let (mut socket, _) = client.connect().await.unwrap();
    let Message::Text(info) = socket.recv().await.unwrap().unwrap() else {
        panic!("a text message");
    };
    for text in [described.as_str(), info.as_str()] {
        for secret in ["secret-token", "secret-cookie", "secret-protocol-token"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    assert!(info.contains("Sensitive"), "{info}");
    assert_eq!(socket.info().subprotocol.as_deref(), Some("chat"));
}

// A factory that refuses: its answer goes to the client instead of a 101.
async fn factories_can_refuse_connections() {
    use ws::Rejection;
    use ws::http::StatusCode;
    let server = serve(
        ws::server()
            .route(
                "/",
                Endpoint::try_new(|info| match info.query_param("room").as_deref() {
                    Some("secret") => Err(Rejection::plain(StatusCode::FORBIDDEN, "members only")),
                    _ => Ok(Echo),
                }),
            )
            .build(),
    )
    .await;
    let mut raw = super::common::Raw::connect(server.addr).await;
    raw.send(super::common::request("/?room=secret", &[]).as_bytes())
        .await;
    let (status, head) = raw.read_head().await;
    assert_eq!(status, 403, "{head}");
    let body = raw.read_to_close(Duration::from_secs(5)).await;
    assert_eq!(body, b"members only\n");
    let (mut socket, _) = ws::connect(&server.url("/?room=open")).await.unwrap();
    socket.send("in").await.unwrap();
    assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("in"));
}

// `serve_with_shutdown` serves until its signal, then drains and returns.
async fn serve_with_shutdown_ends_on_its_signal() {
    let server = ws::server().route("/", Endpoint::new(|_| Echo)).build();
    let listener = ws::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, signal) = async_channel::bounded::<()>(1);
    let serving = rt::spawn(async move {
        let signal = async move {
            let _ = signal.recv().await;
        };
        server
            .serve_with_shutdown(listener, signal, Duration::from_secs(30))
            .await
    });
    let (mut socket, _) = ws::connect(&format!("ws://{addr}/")).await.unwrap();
    socket.send("before").await.unwrap();
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("before")
    );
    stop.send(()).await.unwrap();
    assert!(socket.recv().await.is_none());
    assert_eq!(socket.closed().unwrap().code, ws::CloseCode::GOING_AWAY);
    rt::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serving ends once drained")
        .unwrap()
        .unwrap();
}

// Errors say what failed and where, never repeat their cause (which is
// their `source()`), and never show `Debug` text. `wss://` to a plain
// server fails at once, saying so, instead of at the handshake deadline.
async fn connect_errors_say_what_and_where() {
    use std::error::Error as _;
    let closed = {
        let listener = rt::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let error = ws::connect(&format!("ws://{closed}/")).await.unwrap_err();
    let text = error.to_string();
    assert_eq!(text, format!("could not connect to {closed}"));
    let source = error
        .source()
        .expect("the IO error is the source")
        .to_string();
    assert!(!text.contains(&source), "{text} repeats {source}");

    let error = ws::connect("http://example.com/").await.unwrap_err();
    let chain = format!("{error}: {}", error.source().unwrap());
    assert!(!chain.contains("Some("), "{chain}");
    assert!(chain.contains("not http"), "{chain}");

    let server = echo_server(ServerConfig::default()).await;
    let started = std::time::Instant::now();
    let error = rt::timeout(
        Duration::from_secs(5),
        ws::connect(&format!("wss://{}/echo", server.addr)),
    )
    .await
    .expect("fails fast")
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(error, ConnectError::Tls { .. }), "{error:?}");
    assert!(error.to_string().contains("try ws://"), "{error}");
}

// `connect` takes a `&str`, a `String`, a `Uri` or an `http::Request`
// (custom headers without a builder), and the client knows its peer.
async fn connect_takes_uris_and_requests() {
    struct Header;
    impl Handler for Header {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            let value = ctx
                .info()
                .request
                .headers
                .get("x-tenant")
                .map(|v| v.to_str().unwrap().to_owned());
            let _ = ctx.try_send(value.unwrap_or_default());
        }
        async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
    }
    let server = serve(ws::server().route("/", Endpoint::new(|_| Header)).build()).await;
    let url = server.url("/");
    let uri: http::Uri = url.parse().unwrap();
    let request = http::Request::builder()
        .uri(&url)
        .header("x-tenant", "acme")
        .body(())
        .unwrap();
    let (mut a, _) = ws::connect(url.as_str()).await.unwrap();
    let (mut b, _) = ws::connect(url.clone()).await.unwrap();
    let (mut c, _) = ws::connect(uri).await.unwrap();
    let (mut d, _) = ws::connect(request).await.unwrap();
    for socket in [&mut a, &mut b, &mut c] {
        assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text(""));
    }
    assert_eq!(d.recv().await.unwrap().unwrap(), Message::text("acme"));
    assert_eq!(d.info().peer_addr, Some(server.addr));
}

adapter_tests!(
    connect_takes_uris_and_requests,
    connect_errors_say_what_and_where,
    factories_can_refuse_connections,
    serve_with_shutdown_ends_on_its_signal,
    credentials_never_reach_debug_output,
    echo_round_trips_including_16_mib,
    fragmented_sends_arrive_whole_and_whole_messages_wait_their_turn,
    too_big_for_the_server_closes_with_1009,
    split_halves_work_concurrently_as_stream_and_sink,
    registry_names_and_broadcast,
    backpressure_reaches_the_sender,
    tls_round_trip_and_hostname_verification,
    ipv6_loopback,
    redirects_are_not_followed,
);
