//! The opening handshake over real sockets: ROBUSTNESS 5.1 items 1-6 and
//! 8, routing, subprotocols, connection limits.

use crate::rt::{self, ws};
use std::time::{Duration, Instant};

use super::common::{Echo, Raw, TestServer, echo_server, quick_config, request, serve};
use http::header::{AUTHORIZATION, ORIGIN};
use http::{HeaderMap, HeaderValue, StatusCode};
use ws::ws_core::handshake::{Rejection, ResponseError};
use ws::{ConnectError, Endpoint, HostPolicy, OriginPolicy, ServerConfig};

/// Sends `text`, returns the status and whether the server then closed.
async fn answer(server: &TestServer, text: &[u8]) -> (u16, String, bool) {
    let mut raw = Raw::connect(server.addr).await;
    raw.send(text).await;
    let (status, head) = raw.read_head().await;
    let (rest, eof) = raw.read_until_eof(Duration::from_secs(3)).await;
    let body_len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    // The body, then end of stream: the server closed after its answer.
    (status, head, eof && rest.len() == body_len)
}

// ROBUSTNESS 1: one byte per 100 ms never completes within the deadline:
// 408 and close; an oversized head dribbled in gets 431 as soon as it
// passes the limit.
async fn slowloris_gets_408_and_oversized_heads_431() {
    let mut config = quick_config();
    config.handshake.timeout = Duration::from_millis(400);
    let server = echo_server(config).await;
    let mut raw = Raw::connect(server.addr).await;
    let started = Instant::now();
    for byte in request("/echo", &[]).bytes().take(5) {
        raw.send(&[byte]).await;
        rt::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = raw.read_head().await;
    assert_eq!(status, 408);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(raw.read_to_close(Duration::from_secs(3)).await.len() < 100);

    let server = echo_server(ServerConfig::default()).await;
    let raw = Raw::connect(server.addr).await;
    let (mut reader, mut writer) = rt::split(raw.stream);
    // Dribble 1 KiB header lines; the server answers once 16 KiB is passed.
    let writer = rt::spawn(async move {
        use crate::rt::io::AsyncWriteExt;
        let _ = writer.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").await;
        let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
        let mut sent = 0;
        for _ in 0..1000 {
            if writer.write_all(filler.as_bytes()).await.is_err() {
                break;
            }
            sent += filler.len();
            rt::sleep(Duration::from_millis(2)).await;
        }
        sent
    });
    let mut head = vec![0u8; 12];
    use crate::rt::io::AsyncReadExt;
    reader.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[9..12], b"431");
    let sent = writer.await.unwrap();
    // The head limit, then a bounded drain after the answer (so closing
    // does not reset the connection under the client's feet), then the
    // kernel's buffers.
    assert!(
        sent < (16 + 256 + 64) * 1024,
        "the server kept reading {sent} bytes"
    );
}

// A request much larger than the head limit, written in one go: after its
// answer the server goes on reading (and discarding) for a moment instead
// of closing with unread bytes, which would reset the connection; a reset
// can destroy an answer still on its way. The client keeps sending after
// the answer and is not reset, then closes cleanly.
async fn refusal_reaches_a_client_still_sending() {
    let server = echo_server(ServerConfig::default()).await;
    let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
    let mut big = String::from("GET /echo HTTP/1.1\r\nHost: x\r\n");
    for _ in 0..40 {
        big.push_str(&filler);
    }
    let mut raw = Raw::connect(server.addr).await;
    use crate::rt::io::{AsyncReadExt, AsyncWriteExt};
    raw.send(big.as_bytes()).await;
    let (status, _) = raw.read_head().await;
    assert_eq!(status, 431);
    for _ in 0..3 {
        rt::sleep(Duration::from_millis(50)).await;
        let written = raw.stream.write_all(filler.as_bytes()).await;
        assert!(written.is_ok(), "reset after the answer: {written:?}");
    }
    rt::shutdown_write(&mut raw.stream).await;
    let mut rest = Vec::new();
    let read = rt::timeout(Duration::from_secs(5), raw.stream.read_to_end(&mut rest))
        .await
        .expect("the server closes once the client has");
    assert!(read.is_ok(), "{read:?}");
}

// ROBUSTNESS 2.
async fn too_many_headers_get_431() {
    let server = echo_server(ServerConfig::default()).await;
    let junk: Vec<String> = (0..2000).map(|i| format!("X-{i}: y")).collect();
    let junk: Vec<&str> = junk.iter().map(String::as_str).collect();
    let (status, _, closed) = answer(&server, request("/echo", &junk).as_bytes()).await;
    assert_eq!(status, 431);
    assert!(closed);
}

// ROBUSTNESS 3.
async fn long_uri_gets_414() {
    let server = echo_server(ServerConfig::default()).await;
    let path = format!("/echo?{}", "q".repeat(10_000));
    let (status, _, _) = answer(&server, request(&path, &[]).as_bytes()).await;
    assert_eq!(status, 414);
}

// ROBUSTNESS 4: each wrong field gets its status and the connection is
// closed after the answer, never upgraded.
async fn wrong_fields_get_their_status_and_close() {
    let server = echo_server(ServerConfig::default()).await;
    let good = request("/echo", &[]);
    let cases: Vec<(String, u16, Option<&str>)> = vec![
        (good.replacen("GET", "POST", 1), 405, Some("allow: GET")),
        (good.replacen("HTTP/1.1", "HTTP/1.0", 1), 505, None),
        (
            good.replace("Upgrade: websocket\r\n", ""),
            426,
            Some("upgrade: websocket"),
        ),
        (
            good.replace("Connection: Upgrade\r\n", "Connection: keep-alive\r\n"),
            400,
            None,
        ),
        (
            good.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            426,
            Some("sec-websocket-version: 13"),
        ),
        (good.replace(super::common::KEY, "c2hvcnQ="), 400, None),
        (good.replace("Host: 127.0.0.1\r\n", ""), 400, None),
    ];
    for (text, expected, header) in cases {
        let (status, head, closed) = answer(&server, text.as_bytes()).await;
        assert_eq!(status, expected, "{text}");
        if let Some(header) = header {
            assert!(
                head.to_ascii_lowercase()
                    .contains(&header.to_ascii_lowercase()),
                "{head}"
            );
        }
        assert!(closed, "connection must close after {expected}");
    }
}

// ROBUSTNESS 5: a body or pipelined bytes are refused; the extra bytes are
// never read as a second request.
async fn bodies_and_pipelining_get_400() {
    let server = echo_server(ServerConfig::default()).await;
    let with_body = request("/echo", &["Content-Length: 5"]) + "hello";
    let (status, _, closed) = answer(&server, with_body.as_bytes()).await;
    assert_eq!((status, closed), (400, true));
    let pipelined = request("/echo", &[]) + &request("/echo", &[]);
    let mut raw = Raw::connect(server.addr).await;
    raw.send(pipelined.as_bytes()).await;
    let (status, _) = raw.read_head().await;
    assert_eq!(status, 400);
    let rest =
        String::from_utf8_lossy(&raw.read_to_close(Duration::from_secs(3)).await).to_string();
    assert!(!rest.contains("HTTP/1.1"), "a second response: {rest}");
}

// ROBUSTNESS 6: cross-site requests are refused unless allowed; requests
// without Origin pass.
async fn origin_policies() {
    let server = serve(
        ws::server()
            .route("/same", Endpoint::new(|_| Echo))
            .route(
                "/list",
                Endpoint::new(|_| Echo).origin(OriginPolicy::allow(["https://app.example"])),
            )
            .build(),
    )
    .await;
    let status = |path: &'static str, origin: Option<&'static str>| {
        let addr = server.addr;
        async move {
            let extra: Vec<String> = origin.map(|o| format!("Origin: {o}")).into_iter().collect();
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let mut raw = Raw::connect(addr).await;
            raw.send(request(path, &extra).as_bytes()).await;
            raw.read_head().await.0
        }
    };
    assert_eq!(status("/same", None).await, 101);
    assert_eq!(status("/same", Some("http://127.0.0.1")).await, 101);
    assert_eq!(status("/same", Some("http://evil.example")).await, 403);
    assert_eq!(status("/list", Some("https://app.example")).await, 101);
    assert_eq!(status("/list", Some("https://app.example.evil")).await, 403);
    assert_eq!(status("/list", Some("null")).await, 403);
}

// ROBUSTNESS 100: a DNS-rebinding page (an attacker's name pointed at
// this server) sends a matching Origin and Host of its own; with
// `HostPolicy::local`, only addresses, localhost and the names given are
// answered: 421 otherwise.
async fn dns_rebinding_hosts_get_421() {
    let mut config = ServerConfig::default();
    config.hosts = HostPolicy::local(["chat.example"]);
    let server = serve(
        ws::server()
            .config(config)
            .route("/echo", Endpoint::new(|_| Echo))
            .build(),
    )
    .await;
    let status = |host: &'static str| {
        let addr = server.addr;
        async move {
            let text = request("/echo", &[&format!("Origin: http://{host}")]).replacen(
                "Host: 127.0.0.1",
                &format!("Host: {host}"),
                1,
            );
            let mut raw = Raw::connect(addr).await;
            raw.send(text.as_bytes()).await;
            raw.read_head().await.0
        }
    };
    assert_eq!(status("rebind.attacker.example:8080").await, 421);
    assert_eq!(status("chat.example.attacker.example").await, 421);
    assert_eq!(status("127.0.0.1:8080").await, 101);
    assert_eq!(status("localhost:8080").await, 101);
    assert_eq!(status("chat.example").await, 101);
    // The library's default answers any host.
    let open = echo_server(ServerConfig::default()).await;
    let text = request("/echo", &["Origin: http://rebind.attacker.example"]).replacen(
        "Host: 127.0.0.1",
        "Host: rebind.attacker.example",
        1,
    );
    let mut raw = Raw::connect(open.addr).await;
    raw.send(text.as_bytes()).await;
    assert_eq!(raw.read_head().await.0, 101);
}

// ROBUSTNESS 8: the authenticate hook sees the headers and rejects with
// 401/403; an accepted identity reaches the handler.
async fn authentication_hook() {
    #[derive(Clone)]
    struct User(String);
    struct Whoami;
    impl ws::Handler for Whoami {
        async fn on_message(&mut self, ctx: &mut ws::Ctx, _: ws::Message) {
            let user = ctx
                .info()
                .request
                .extensions
                .get::<User>()
                .map(|u| u.0.clone())
                .unwrap_or_default();
            let _ = ctx.try_send(user);
        }
    }
    let endpoint =
        Endpoint::new(|_| Whoami).authenticate(|mut parts: http::request::Parts| async move {
            let token = parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match token.as_deref() {
                None => Err(Rejection::new(
                    StatusCode::UNAUTHORIZED,
                    HeaderMap::new(),
                    "",
                )),
                Some("Bearer alice") => {
                    parts.extensions.insert(User("alice".into()));
                    Ok(parts)
                }
                Some(_) => Err(Rejection::plain(
                    StatusCode::FORBIDDEN,
                    "mallory may not use this",
                )),
            }
        });
    let server = serve(ws::server().route("/me", endpoint).build()).await;
    for (token, expected, explained) in [
        (None, 401u16, ""),
        (Some("Bearer mallory"), 403, "mallory may not use this\n"),
    ] {
        let mut client = ws::client(server.url("/me")).unwrap();
        if let Some(token) = token {
            client = client.header(AUTHORIZATION, HeaderValue::from_static(token));
        }
        match client.connect().await {
            // The client gets the server's explanation with the status.
            Err(ConnectError::Handshake(ResponseError::Status { status, body, .. })) => {
                assert_eq!(status.as_u16(), expected);
                assert_eq!(body, explained.as_bytes());
            }
            other => panic!("expected {expected}, got {other:?}"),
        }
    }
    let (mut socket, _) = ws::client(server.url("/me"))
        .unwrap()
        .header(AUTHORIZATION, HeaderValue::from_static("Bearer alice"))
        .connect()
        .await
        .unwrap();
    socket.send("who?").await.unwrap();
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        ws::Message::text("alice")
    );
    let _ = ORIGIN;
}

async fn unknown_path_gets_404() {
    let server = echo_server(ServerConfig::default()).await;
    let (status, _, closed) = answer(&server, request("/nope", &[]).as_bytes()).await;
    assert_eq!((status, closed), (404, true));
}

async fn subprotocol_selection_and_requirement() {
    let server = serve(
        ws::server()
            .route(
                "/chat",
                Endpoint::new(|_| Echo).subprotocols(["v2.chat", "v1.chat"]),
            )
            .route(
                "/strict",
                Endpoint::new(|_| Echo)
                    .subprotocols(["hydrogen-protocol"])
                    .require_subprotocol(),
            )
            .build(),
    )
    .await;
    let (socket, _) = ws::client(server.url("/chat"))
        .unwrap()
        .subprotocol("v1.chat")
        .subprotocol("v2.chat")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        socket.info().subprotocol.as_deref(),
        Some("v2.chat"),
        "the server's preference wins"
    );
    let (socket, _) = ws::client(server.url("/chat"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(socket.info().subprotocol, None);
    match ws::client(server.url("/strict")).unwrap().connect().await {
        Err(ConnectError::Handshake(ResponseError::Status { status, .. })) => {
            assert_eq!(status, 400)
        }
        other => panic!("{other:?}"),
    }
    let (socket, _) = ws::client(server.url("/strict"))
        .unwrap()
        .subprotocol("hydrogen-protocol")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        socket.info().subprotocol.as_deref(),
        Some("hydrogen-protocol")
    );
}

// ROBUSTNESS 38 / limits: past the server or endpoint limit, handshakes get
// 503 with Retry-After before any WebSocket state exists; slots free up when
// connections end.
async fn connection_limits_answer_503() {
    let mut config = ServerConfig::default();
    config.max_connections = Some(3);
    let server = serve(
        ws::server()
            .config(config)
            .route("/a", Endpoint::new(|_| Echo).max_connections(1))
            .route("/b", Endpoint::new(|_| Echo))
            .build(),
    )
    .await;
    let first = ws::client(server.url("/a"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (status, head, _) = answer(&server, request("/a", &[]).as_bytes()).await;
    assert_eq!(status, 503);
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );
    let b1 = ws::client(server.url("/b"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let b2 = ws::client(server.url("/b"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (status, _, _) = answer(&server, request("/b", &[]).as_bytes()).await;
    assert_eq!(status, 503, "server-wide limit");
    // The registry lists a connection a moment after its slot is taken.
    super::common::eventually(|| server.handle.count() == 3, "three connections listed").await;
    drop((first, b1, b2));
    super::common::eventually(|| server.handle.count() == 0, "connections to end").await;
    // Slots are back.
    ws::client(server.url("/a"))
        .unwrap()
        .connect()
        .await
        .unwrap();
}

// ROBUSTNESS 104: one client address, or one user, cannot take every
// connection: past their own limits they get 429 with the reason, and their
// slots come back when their connections end.
async fn connection_limits_per_client_and_per_user_answer_429() {
    let mut config = ServerConfig::default();
    config.max_connections_per_client = Some(2);
    let server = serve(
        ws::server()
            .config(config)
            .route("/echo", Endpoint::new(|_| Echo))
            .build(),
    )
    .await;
    let first = ws::client(server.url("/echo"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let second = ws::client(server.url("/echo"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    match ws::client(server.url("/echo")).unwrap().connect().await {
        Err(ConnectError::Handshake(ResponseError::Status { status, body, .. })) => {
            assert_eq!(status, 429);
            assert!(
                String::from_utf8_lossy(&body).contains("from this address"),
                "{body:?}"
            );
        }
        other => panic!("expected 429, got {other:?}"),
    }
    drop(first);
    super::common::eventually(|| server.handle.count() == 1, "a connection to end").await;
    let third = ws::client(server.url("/echo"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    drop((second, third));

    let keys = ws::auth::KeyAuth::new()
        .key("k-ann", "ann")
        .key("k-bob", "bob");
    let server = serve(
        ws::server()
            .route(
                "/me",
                Endpoint::new(|_| Echo)
                    .authenticator(keys)
                    .max_connections_per_user(1),
            )
            .build(),
    )
    .await;
    let as_user = |key: &'static str| {
        ws::client(server.url("/me"))
            .unwrap()
            .header(AUTHORIZATION, HeaderValue::from_static(key))
    };
    let ann = as_user("Key k-ann").connect().await.unwrap();
    match as_user("Key k-ann").connect().await {
        Err(ConnectError::Handshake(ResponseError::Status { status, body, .. })) => {
            assert_eq!(status, 429);
            assert!(
                String::from_utf8_lossy(&body).contains("for this user"),
                "{body:?}"
            );
        }
        other => panic!("expected 429, got {other:?}"),
    }
    let _bob = as_user("Key k-bob").connect().await.unwrap();
    // The server registers a connection just after its 101 goes out.
    super::common::eventually(|| server.handle.count() == 2, "bob's connection").await;
    drop(ann);
    super::common::eventually(|| server.handle.count() == 1, "ann's connection to end").await;
    let _ann = as_user("Key k-ann").connect().await.unwrap();
}

adapter_tests!(
    connection_limits_per_client_and_per_user_answer_429,
    slowloris_gets_408_and_oversized_heads_431,
    refusal_reaches_a_client_still_sending,
    too_many_headers_get_431,
    long_uri_gets_414,
    wrong_fields_get_their_status_and_close,
    bodies_and_pipelining_get_400,
    origin_policies,
    dns_rebinding_hosts_get_421,
    authentication_hook,
    unknown_path_gets_404,
    subprotocol_selection_and_requirement,
    connection_limits_answer_503,
);
