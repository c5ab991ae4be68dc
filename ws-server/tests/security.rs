//! The attacks on `ws serve` that SECURITY.md names, run as the attacker
//! would run them against the real program (a child process): one test per
//! claim, each failing on a server without the defence it checks.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use ws_channels::Payload;
use ws_channels::protocol::{Command, Request};

/// A key or key set of the JWT tests (`ws-async/testdata`).
fn testdata(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ws-async/testdata")
        .join(name)
}

fn in_ten_minutes() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

/// The status line of a WebSocket upgrade to `/channels` (with `query`)
/// that names `host` in `Host` and `origin` in `Origin`.
async fn upgrade_status(
    addr: std::net::SocketAddr,
    query: &str,
    host: &str,
    origin: Option<&str>,
) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let response = raw_head(
        addr,
        format!(
            "GET /channels?{query} HTTP/1.1\r\nHost: {host}\r\n{origin}Upgrade: websocket\r\n\
             Connection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        ),
    )
    .await;
    response.lines().next().unwrap_or_default().to_owned()
}

/// A plain GET naming `host`: the status line and the body.
async fn get(addr: std::net::SocketAddr, path: &str, host: &str) -> (String, String) {
    let response = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

// SECURITY 1: without JWTs or keys anyone can be anyone, so that mode is
// refused on an address other than loopback unless `--insecure-names`
// says the operator knows; `/whoami` tells the page to warn.
#[tokio::test]
async fn open_names_are_refused_on_a_public_address() {
    let stderr = refused_settings(&["--listen", "0.0.0.0:0"]).await;
    assert!(
        stderr.contains("insecure_names") && stderr.contains("--insecure-names"),
        "{stderr}"
    );
    let stderr = refused_settings(&["--listen", "127.0.0.1:0,[::]:0"]).await;
    assert!(stderr.contains("--insecure-names"), "{stderr}");

    let insecure = Serve::start(&["--listen", "0.0.0.0:0", "--insecure-names"], &[]).await;
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], insecure.addr.port()));
    let (status, body) = get(local, "/whoami?user=ann", &local.to_string()).await;
    assert!(status.contains("200"), "{status}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body, json!({ "user": "ann", "auth": "names" }));

    let secret = "a-secret-of-at-least-thirty-two-bytes!!";
    let jwt = Serve::start(&["--listen", "0.0.0.0:0", "--jwt-secret", secret], &[]).await;
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], jwt.addr.port()));
    let (status, body) = get(local, "/whoami?user=ann", &local.to_string()).await;
    assert!(status.contains("200"), "no credential, nobody: {status}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({ "user": null, "auth": "jwt" })
    );
    let (status, body) = get(local, "/whoami?token=forged", &local.to_string()).await;
    assert!(status.contains("401"), "{status}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["auth"], "jwt");
}

// SECURITY 2: a page on an attacker's name that resolves to this server
// (DNS rebinding) sends its own name in Host and a matching Origin; every
// route refuses it with 421, the WebSocket upgrade included.
#[tokio::test]
async fn a_dns_rebinding_page_is_refused_on_every_route() {
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            "--public-host",
            "chat.example",
        ],
        &[],
    )
    .await;
    let port = serve.addr.port();
    let evil = format!("rebind.attacker.example:{port}");
    let evil_origin = format!("http://{evil}");
    let status = upgrade_status(serve.addr, "user=ann", &evil, Some(&evil_origin)).await;
    assert!(status.contains("421"), "{status}");
    for path in [
        "/",
        "/app.js",
        "/mls.js",
        "/vendor/ts-mls.js",
        "/metrics",
        "/whoami?user=ann",
        "/admin/stats",
    ] {
        let (status, _) = get(serve.addr, path, &evil).await;
        assert!(status.contains("421"), "{path}: {status}");
    }
    // The names it is reached by: its address, localhost, the public host.
    for host in [
        serve.addr.to_string(),
        format!("localhost:{port}"),
        "chat.example".to_owned(),
    ] {
        let origin = format!("http://{host}");
        let status = upgrade_status(serve.addr, "user=ann", &host, Some(&origin)).await;
        assert!(status.contains("101"), "{host}: {status}");
        let (status, _) = get(serve.addr, "/", &host).await;
        assert!(status.contains("200"), "{host}: {status}");
    }
}

/// `ws serve` with JWTs checked by `args`, and a way to try a token: the
/// status of `/whoami` with it, and the user it names.
async fn jwt_server(args: &[&str]) -> Serve {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    Serve::start(&all, &[]).await
}

async fn try_token(serve: &Serve, token: &str) -> (u16, Value) {
    let (status, body) = get(
        serve.addr,
        &format!("/whoami?token={token}"),
        &serve.addr.to_string(),
    )
    .await;
    let code = status.split(' ').nth(1).unwrap().parse().unwrap();
    // The WebSocket agrees with /whoami.
    let upgrade = upgrade_status(
        serve.addr,
        &format!("token={token}"),
        &serve.addr.to_string(),
        None,
    )
    .await;
    assert_eq!(
        upgrade.contains("101"),
        code == 200,
        "{upgrade} vs {status}"
    );
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

// SECURITY 3: tokens without a usable subject would all name the user ""
// (who then owns every channel such a token created); tokens not yet
// valid, or meant for another audience or issuer, are refused.
#[tokio::test]
async fn jwts_need_a_subject_and_are_checked_for_time_audience_and_issuer() {
    let secret = "a-secret-of-at-least-thirty-two-bytes!!";
    let serve = jwt_server(&[
        "--jwt-secret",
        secret,
        "--jwt-audience",
        "chat",
        "--jwt-issuer",
        "https://id.example",
    ])
    .await;
    let key = EncodingKey::from_secret(secret.as_bytes());
    let sign = |claims: Value| jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap();
    let exp = in_ten_minutes();
    let good = json!({"sub": "ann", "exp": exp, "aud": "chat", "iss": "https://id.example"});
    let (status, body) = try_token(&serve, &sign(good.clone())).await;
    assert_eq!((status, body["user"].as_str()), (200, Some("ann")));
    let with = |change: Value| {
        let mut claims = good.clone();
        for (name, value) in change.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        sign(claims)
    };
    for change in [
        json!({"sub": null}),
        json!({"sub": 42}),
        json!({"sub": ""}),
        json!({"nbf": exp}),
        json!({"aud": "billing"}),
        json!({"aud": null}),
        json!({"iss": "https://evil.example"}),
        json!({"exp": null}),
        json!({"exp": 1000}),
    ] {
        let (status, _) = try_token(&serve, &with(change.clone())).await;
        assert_eq!(status, 401, "{change}");
    }
}

// SECURITY 3: identity providers' keys. A token signed by the provider is
// taken; one signed with HMAC under the public key's text (algorithm
// confusion), with `alg: none`, or by another key is refused.
#[tokio::test]
async fn jwts_from_an_identity_providers_public_key_or_key_set() {
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(testdata("jwt-rsa-private.pem")).unwrap())
        .unwrap();
    let ed = EncodingKey::from_ed_pem(&std::fs::read(testdata("jwt-ed25519-private.pem")).unwrap())
        .unwrap();
    let claims = json!({"sub": "ann", "exp": in_ten_minutes()});
    let sign = |algorithm, kid: Option<&str>, key: &EncodingKey| {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    };
    let public_pem = std::fs::read(testdata("jwt-rsa-public.pem")).unwrap();
    let confused = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &EncodingKey::from_secret(&public_pem),
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(claims.to_string())
    );

    let key_file = testdata("jwt-rsa-public.pem");
    let by_key = jwt_server(&["--jwt-public-key", key_file.to_str().unwrap()]).await;
    assert_eq!(
        try_token(&by_key, &sign(Algorithm::RS256, None, &rsa))
            .await
            .0,
        200
    );
    for refused in [&confused, &none, &sign(Algorithm::EdDSA, None, &ed)] {
        assert_eq!(try_token(&by_key, refused).await.0, 401);
    }

    let set = testdata("jwks.json");
    let by_set = jwt_server(&["--jwt-jwks", set.to_str().unwrap()]).await;
    assert_eq!(
        try_token(&by_set, &sign(Algorithm::RS256, Some("rsa-1"), &rsa))
            .await
            .0,
        200
    );
    assert_eq!(
        try_token(&by_set, &sign(Algorithm::EdDSA, Some("ed-1"), &ed))
            .await
            .0,
        200
    );
    for refused in [
        &confused,
        &none,
        &sign(Algorithm::EdDSA, Some("rsa-1"), &ed),
        &sign(Algorithm::RS256, None, &rsa),
    ] {
        assert_eq!(try_token(&by_set, refused).await.0, 401);
    }

    let stderr = refused_settings(&[
        "--jwt-public-key",
        testdata("jwt-rsa-private.pem").to_str().unwrap(),
    ])
    .await;
    assert!(
        stderr.contains("jwt_public_key") && stderr.contains("private key"),
        "{stderr}"
    );
    let stderr = refused_settings(&["--jwt-audience", "chat"]).await;
    assert!(stderr.contains("jwt_audience"), "{stderr}");
    let stderr = refused_settings(&[
        "--jwt-jwks",
        set.to_str().unwrap(),
        "--jwt-secret",
        "a-secret-of-at-least-thirty-two-bytes!!",
    ])
    .await;
    assert!(stderr.contains("choose one"), "{stderr}");
}

/// An address of this machine other than loopback, if it has one.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A session of `ws serve` with the JWT `token`.
async fn token_peer(serve: &Serve, token: &str) -> Peer {
    let (ws, _) = ws_tokio::connect(format!("ws://{}/channels?token={token}", serve.addr))
        .await
        .expect("connects");
    Peer {
        client: ws_channels::ChannelsClient::new(ws),
        events: Default::default(),
    }
}

// A session lasts no longer than its token: a user whose access was withdrawn (its identity provider
// issues it no more tokens) keeps no session past its token's `exp`; a
// valid token of another user, or one signed with another key, does not
// keep a session open or change whose it is.
#[tokio::test]
async fn a_session_ends_with_its_token_unless_its_own_user_refreshes_it() {
    let secret = "a-secret-of-at-least-thirty-two-bytes!!";
    let serve = jwt_server(&["--jwt-secret", secret]).await;
    let key = EncodingKey::from_secret(secret.as_bytes());
    let sign = |claims: Value| jsonwebtoken::encode(&Header::default(), &claims, &key).unwrap();
    let other_key = EncodingKey::from_secret(b"another-secret-of-thirty-two-bytes-or-more");
    let forged = jsonwebtoken::encode(
        &Header::default(),
        &json!({"sub": "ann", "exp": in_ten_minutes()}),
        &other_key,
    )
    .unwrap();

    let mut ann = token_peer(&serve, &sign(json!({"sub": "ann", "exp": unix_now() + 3}))).await;
    assert_eq!(ann.command("t", "create", json!({})).await["ok"], true);
    let told = ann.event("expiring").await;
    assert!(told.get("channel").is_none(), "{told}");
    assert!(told["data"]["expires_in"].as_u64().unwrap() <= 3, "{told}");
    for token in [
        sign(json!({"sub": "bob", "exp": in_ten_minutes()})),
        forged,
        "not-a-jwt".to_owned(),
    ] {
        let refused = ann
            .command("$session", "refresh", json!({ "token": token }))
            .await;
        assert_eq!(refused["code"], "forbidden", "{refused}");
    }
    assert_eq!(ann.closed().await, 4011, "closed when its own token ended");

    // With a new token of its own, the session outlives the first one.
    let mut ann = token_peer(&serve, &sign(json!({"sub": "ann", "exp": unix_now() + 3}))).await;
    let new = sign(json!({"sub": "ann", "exp": in_ten_minutes()}));
    let refreshed = ann
        .command("$session", "refresh", json!({ "token": new }))
        .await;
    assert_eq!(refreshed["ok"], true, "{refreshed}");
    assert!(
        refreshed["expires_in"].as_u64().unwrap() > 500,
        "{refreshed}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let joined = ann.command("t", "join", json!({})).await;
    assert_eq!(
        joined["ok"], true,
        "still open past the first token: {joined}"
    );
    let presence = ann.command("t", "presence", json!({})).await;
    assert_eq!(presence["members"][0]["user"], "ann", "{presence}");
}

fn outside_address() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it picks the route's source.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A GET of `path` with the admin token.
async fn admin_get(addr: std::net::SocketAddr, path: &str, token: &str) -> String {
    let response = raw(
        addr,
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n",
            addr.ip()
        ),
    )
    .await;
    response.lines().next().unwrap_or_default().to_owned()
}

// SECURITY 5: without TLS the admin token would cross the network in plain
// text, so the admin API on a public address answers only requests that
// came over loopback; `--admin-listen` moves it (and, with `--metrics
// admin`, the metrics) to addresses of its own.
#[tokio::test]
async fn the_admin_api_is_not_served_in_plain_text_off_loopback() {
    let serve = Serve::start(
        &[
            "--listen",
            "0.0.0.0:0",
            "--insecure-names",
            "--admin-token",
            TOKEN,
        ],
        &[],
    )
    .await;
    let port = serve.addr.port();
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        admin_get(local, "/admin/stats", TOKEN)
            .await
            .contains("200")
    );
    let Some(outside) = outside_address() else {
        panic!("this machine has no address but loopback to try the admin API from");
    };
    let remote = std::net::SocketAddr::new(outside, port);
    let status = admin_get(remote, "/admin/stats", TOKEN).await;
    assert!(status.contains("403"), "{status}");
    assert!(admin_get(remote, "/healthz", TOKEN).await.contains("200"));

    let split = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-token",
            TOKEN,
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics",
            "admin",
        ],
        &[],
    )
    .await;
    let admin = split.admin_addrs[0];
    assert!(
        admin_get(admin, "/admin/stats", TOKEN)
            .await
            .contains("200")
    );
    assert!(admin_get(admin, "/metrics", TOKEN).await.contains("200"));
    assert!(
        admin_get(split.addr, "/admin/stats", TOKEN)
            .await
            .contains("404")
    );
    assert!(
        admin_get(split.addr, "/metrics", TOKEN)
            .await
            .contains("404")
    );
    assert!(admin_get(admin, "/", TOKEN).await.contains("404"));

    let stderr = refused_settings(&["--admin-listen", "0.0.0.0:0", "--admin-token", TOKEN]).await;
    assert!(
        stderr.contains("admin_listen") && stderr.contains("plain text"),
        "{stderr}"
    );
}

// SECURITY 5: tokens that are wrong by a byte, a prefix, longer or empty
// are refused; the comparison is of SHA-256 digests in constant time
// (`ws-async`'s `KeyAuth`), so a refusal's timing says nothing of the
// token's length or bytes.
#[tokio::test]
async fn wrong_admin_tokens_are_refused() {
    let serve = Serve::start(&["--listen", "127.0.0.1:0", "--admin-token", TOKEN], &[]).await;
    let mut off_by_one = TOKEN.to_owned();
    off_by_one.pop();
    off_by_one.push('x');
    for wrong in [
        off_by_one.as_str(),
        &TOKEN[..TOKEN.len() - 1],
        &format!("{TOKEN}0"),
        "",
        &TOKEN.to_uppercase(),
    ] {
        let status = admin_get(serve.addr, "/admin/stats", wrong).await;
        assert!(status.contains("401"), "{wrong:?}: {status}");
    }
    assert!(
        admin_get(serve.addr, "/admin/stats", TOKEN)
            .await
            .contains("200")
    );
}

/// A publish of the number `n`.
fn publish(n: usize) -> Command {
    Command::Publish {
        data: Payload::new(&json!(n)),
        idempotency_key: None,
    }
}

/// Sends `count` publishes to `channel` at once, then reads until each has
/// its reply: the replies' `data` in order, and the close code if the
/// connection closed first.
async fn publish_burst(peer: &mut Peer, channel: &str, count: usize) -> (Vec<Value>, Option<u16>) {
    for n in 0..count {
        // Around the client, which waits for each reply.
        let command = Request::new(channel, publish(n));
        peer.ws()
            .send(command.to_envelope(format!("b{n}")).to_message())
            .await
            .unwrap();
    }
    let mut replies = Vec::new();
    while replies.len() < count {
        match peer.recv().await {
            Some(message) if message["type"] == "response" => replies.push(message["data"].clone()),
            Some(_) => {}
            None => return (replies, peer.ws().closed().map(|c| c.code.as_u16())),
        }
    }
    (replies, None)
}

// SECURITY 9: a client that sends faster than its command rate is slowed
// down, never refused or closed: each of 1,000 publishes sent at once gets
// its reply (before, 99 got `ok`, 21 `limit`, then a 1008 close left 880
// without any).
#[tokio::test]
async fn a_fast_client_is_paced_and_every_command_answered() {
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--command-rate",
            "1000",
            "--command-burst",
            "20",
        ],
        &[],
    )
    .await;
    let mut ann = Peer::connect(serve.addr, "ann").await;
    assert_eq!(ann.command("fast", "create", json!({})).await["ok"], true);
    let (replies, closed) = publish_burst(&mut ann, "fast", 1000).await;
    assert_eq!(closed, None, "closed after {} replies", replies.len());
    assert!(replies.iter().all(|r| r["ok"] == true), "{replies:?}");
    let stderr = refused_settings(&["--command-burst", "0"]).await;
    assert!(stderr.contains("command_burst"), "{stderr}");
}

// SECURITY 9: commands held back by our own outage (the broker hung for
// seven seconds while the client sent 20 a second) are answered when it
// returns, paced, and the client is not closed for the burst it did not
// send (it was closed with 1008 for "too many refused commands").
#[tokio::test]
async fn a_backlog_from_our_own_outage_is_not_held_against_the_client() {
    use ws_test_kit::brokers::{Kind, OwnBroker};
    let redis = OwnBroker::start(Kind::Redis);
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--backend",
            &redis.url(),
            "--cluster-key",
            CLUSTER_KEY,
        ],
        &[],
    )
    .await;
    let mut ann = Peer::connect(serve.addr, "ann").await;
    assert_eq!(ann.command("steady", "create", json!({})).await["ok"], true);
    let sending = async {
        for n in 0..220 {
            if n == 40 {
                redis.pause();
            }
            if n == 180 {
                redis.resume();
            }
            let command = Request::new("steady", publish(n));
            ann.ws()
                .send(command.to_envelope(format!("s{n}")).to_message())
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    sending.await;
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    let mut answered = 0;
    while answered < 220 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(60), ann.ws().recv())
            .await
            .expect("every command answered in time");
        let Some(Ok(ws_tokio::Message::Text(text))) = message else {
            panic!(
                "closed after {answered} replies: {:?} ({codes:?})",
                ann.ws().closed()
            );
        };
        let message: Value = serde_json::from_str(text.as_str()).unwrap();
        if message["type"] == "response" {
            answered += 1;
            let code = match message["data"]["ok"].as_bool() {
                Some(true) => "ok".to_owned(),
                _ => message["data"]["code"].as_str().unwrap_or("?").to_owned(),
            };
            *codes.entry(code).or_default() += 1;
        }
    }
    assert!(!codes.contains_key("limit"), "{codes:?}");
    assert!(codes["ok"] >= 100, "{codes:?}");
    assert_eq!(
        ann.command("steady", "publish", json!("after")).await["ok"],
        true
    );
}

/// The status of a WebSocket handshake to `/channels?user=...` and its
/// body, or 101 and the open socket.
async fn connect_as(
    addr: std::net::SocketAddr,
    user: &str,
) -> Result<ws_tokio::WebSocket, (u16, String)> {
    match ws_tokio::connect(format!("ws://{addr}/channels?user={user}")).await {
        Ok((socket, _)) => Ok(socket),
        Err(ws_tokio::ConnectError::Handshake(ws_core::handshake::ResponseError::Status {
            status,
            body,
            ..
        })) => Err((status.as_u16(), String::from_utf8_lossy(&body).into_owned())),
        Err(other) => panic!("{other}"),
    }
}

// SECURITY 8: no one user or address takes every connection, and no user
// every channel: by default 32 connections per user, 256 per address and
// 10,000 in all; 1,000 channels created per user.
#[tokio::test]
async fn one_user_or_address_cannot_take_the_node() {
    let serve = Serve::start(&["--listen", "127.0.0.1:0"], &[]).await;
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(connect_as(serve.addr, "mallory").await.unwrap());
    }
    let (status, body) = connect_as(serve.addr, "mallory").await.unwrap_err();
    assert_eq!(status, 429);
    assert!(body.contains("for this user"), "{body}");
    held.push(
        connect_as(serve.addr, "ann")
            .await
            .expect("others still get in"),
    );
    drop(held);

    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--max-connections-per-address",
            "3",
            "--max-channels-per-user",
            "3",
        ],
        &[],
    )
    .await;
    let mut held = Vec::new();
    for user in ["a", "b", "c"] {
        held.push(connect_as(serve.addr, user).await.unwrap());
    }
    let (status, body) = connect_as(serve.addr, "d").await.unwrap_err();
    assert_eq!(status, 429);
    assert!(body.contains("from this address"), "{body}");
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let mut mallory = Peer::connect(serve.addr, "mallory").await;
    for n in 0..3 {
        let created = mallory.command(&format!("m{n}"), "create", json!({})).await;
        assert_eq!(created["ok"], true, "{created}");
    }
    let refused = mallory.command("m3", "create", json!({})).await;
    assert_eq!(refused["code"], "limit", "{refused}");
    // Leaving does not give the channels back: they linger for reconnects.
    for n in 0..3 {
        mallory.command(&format!("m{n}"), "leave", json!({})).await;
    }
    let refused = mallory.command("m4", "create", json!({})).await;
    assert_eq!(refused["code"], "limit", "{refused}");
    let mut ann = Peer::connect(serve.addr, "ann").await;
    assert_eq!(ann.command("a0", "create", json!({})).await["ok"], true);
}

/// A cluster of two `ws serve` nodes on a broker of the test's own.
struct Cluster {
    broker: ws_test_kit::brokers::OwnBroker,
    nodes: [Serve; 2],
}

impl Cluster {
    async fn start(kind: ws_test_kit::brokers::Kind) -> Self {
        let broker = ws_test_kit::brokers::OwnBroker::start(kind);
        let url = broker.url();
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--backend",
            &url,
            "--cluster-key",
            CLUSTER_KEY,
        ];
        let nodes = [
            Serve::start(&args, &[]).await,
            Serve::start(&args, &[]).await,
        ];
        Self { broker, nodes }
    }

    /// Publishes `payload` on the control channel as anyone who can publish
    /// on the broker does: `redis-cli PUBLISH`, or a NATS client.
    async fn publish_control(&self, payload: &str) {
        match self.broker.url().split("://").next() {
            Some("redis") => {
                let status = tokio::process::Command::new("redis-cli")
                    .args([
                        "-p",
                        &self.broker.port().to_string(),
                        "PUBLISH",
                        "ws:control",
                        payload,
                    ])
                    .output()
                    .await
                    .expect("redis-cli runs");
                assert!(status.status.success(), "{status:?}");
            }
            _ => {
                let client = async_nats::connect(self.broker.url()).await.unwrap();
                client
                    .publish("ws.control", payload.to_owned().into())
                    .await
                    .unwrap();
                client.flush().await.unwrap();
            }
        }
    }
}

/// A control message signed with `key` as a node signs it: the body's
/// JSON and its HMAC-SHA256.
fn signed_control(key: &str, message: Value) -> String {
    use hmac::{KeyInit, Mac};
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    // A nonce of its own for every message: two signed in the same
    // millisecond must not look like a replay of each other.
    static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = now * 1_000 + SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = json!({ "node": "00000000000000aa", "at": now, "nonce": nonce, "msg": message })
        .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let tag: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    json!({ "b": body, "m": tag }).to_string()
}

// SECURITY 4: anyone who can publish on the broker could make themselves
// owner on every node with one unsigned control message (`redis-cli
// PUBLISH ws:control '{"node":1,"msg":{"type":"role_changed",...}}'`).
// Control messages are now signed with the cluster key: forged ones (no
// signature, another key) change nothing, and even a correctly signed role
// change or ban (a leaked key, a compromised node) is acted on only if
// the presence store holds it.
async fn forged_control_messages_change_nothing(kind: ws_test_kit::brokers::Kind) {
    let cluster = Cluster::start(kind).await;
    let [a, b] = &cluster.nodes;
    let mut ann = Peer::connect(a.addr, "ann").await;
    assert_eq!(
        ann.command("room", "create", json!({"presence_events": true}))
            .await["ok"],
        true
    );
    let mut mallory = Peer::connect(b.addr, "mallory").await;
    assert_eq!(
        mallory.command("room", "join", json!({})).await["role"],
        "participant"
    );

    let make_owner =
        json!({"type": "role_changed", "channel": "room", "user": "mallory", "role": "owner"});
    let remove_ann =
        json!({"type": "remove", "channel": "room", "target": {"user": "ann"}, "reason": "banned"});
    let drop_ann =
        json!({"type": "disconnect", "target": {"user": "ann"}, "code": 4009, "reason": "forged"});
    for message in [&make_owner, &remove_ann, &drop_ann] {
        // As before the key: unsigned.
        cluster
            .publish_control(&json!({ "node": 1, "msg": message }).to_string())
            .await;
        // Signed with a key of the attacker's own.
        cluster
            .publish_control(&signed_control(
                "the attacker's own key of 32 bytes!!",
                message.clone(),
            ))
            .await;
    }
    // An insider with the cluster key: its role change and ban are not in
    // the store, so no node acts on them.
    cluster
        .publish_control(&signed_control(CLUSTER_KEY, make_owner))
        .await;
    cluster
        .publish_control(&signed_control(CLUSTER_KEY, remove_ann))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Each node received the six forged messages and refused them.
    for node in [a, b] {
        let metrics = node.metrics().await;
        assert_eq!(
            metric(&metrics, "ws_channels_control_refused_total"),
            6.0,
            "{metrics}"
        );
    }

    let kick = mallory
        .command("room", "kick", json!({"user": "ann"}))
        .await;
    assert_eq!(
        kick["code"], "forbidden",
        "mallory is still a participant: {kick}"
    );
    let presence = ann.command("room", "presence", json!({})).await;
    assert_eq!(presence["total"], 2, "ann is still in: {presence}");
    assert!(
        !mallory.events.iter().any(|e| e["action"] == "role"),
        "{:?}",
        mallory.events
    );
    // And the real thing still works: a role the owner gives.
    assert_eq!(
        ann.command("room", "role", json!({"user": "mallory", "role": "owner"}))
            .await["ok"],
        true
    );
    mallory.event("role").await;
    let kick = mallory
        .command("room", "kick", json!({"user": "ann"}))
        .await;
    assert_eq!(kick["ok"], true, "{kick}");
}

#[tokio::test]
async fn forged_control_messages_on_redis_change_nothing() {
    forged_control_messages_change_nothing(ws_test_kit::brokers::Kind::Redis).await;
}

#[tokio::test]
async fn forged_control_messages_on_nats_change_nothing() {
    forged_control_messages_change_nothing(ws_test_kit::brokers::Kind::Nats).await;
}

// SECURITY 4: a cluster backend without the key is refused before anything
// starts; with one under 32 bytes too.
#[tokio::test]
async fn a_cluster_needs_its_key() {
    let stderr = refused_settings(&["--backend", "redis://127.0.0.1:1"]).await;
    assert!(stderr.contains("cluster_key"), "{stderr}");
    let stderr =
        refused_settings(&["--backend", "nats://127.0.0.1:1", "--cluster-key", "short"]).await;
    assert!(stderr.contains("32 bytes"), "{stderr}");
    let stderr = refused_settings(&["--cluster-key", CLUSTER_KEY]).await;
    assert!(
        stderr.contains("cluster_key"),
        "a key without a cluster: {stderr}"
    );
}

/// `ws serve` on `backend` (with `extra` settings) creates and publishes
/// in a channel: it reached its broker.
async fn serves_through(backend: &str, extra: &[&str]) {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--backend",
        backend,
        "--cluster-key",
        CLUSTER_KEY,
    ];
    args.extend_from_slice(extra);
    let serve = Serve::start(&args, &[]).await;
    let mut ann = Peer::connect(serve.addr, "ann").await;
    let created = ann
        .command("through", "create", json!({"history_size": 10}))
        .await;
    assert_eq!(created["ok"], true, "{backend}: {created}");
    let published = ann.command("through", "publish", json!("hi")).await;
    assert_eq!(published["offset"], 1, "{backend}: {published}");
}

/// `ws serve` on `backend` gives up at once (exit 1) with `says`, without
/// retrying for 30 s: wrong credentials do not get better.
async fn refused_by_broker(backend: &str, says: &str) {
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(ws_binary())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--backend",
                backend,
                "--cluster-key",
                CLUSTER_KEY,
            ])
            .env("WS_LOG", "error")
            .stdin(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("ws serve gives up at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(says), "{stderr}");
    assert!(
        !stderr.contains("s3cret") && !stderr.contains("wrong-pass"),
        "no password in {stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// A certificate for 127.0.0.1 and its key, in files: (cert, key). The
/// certificate is its own CA.
fn broker_certificate() -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    (
        temp_file("broker-cert.pem", key.cert.pem().as_bytes()),
        temp_file("broker-key.pem", key.signing_key.serialize_pem().as_bytes()),
    )
}

// SECURITY 4: brokers that ask for credentials and TLS, as a production
// broker does: a Redis ACL user (the default user off), a password, TLS
// with a private CA; refused credentials end `ws serve` at once, their
// password never printed.
#[tokio::test]
async fn redis_with_an_acl_user_a_password_and_tls() {
    use ws_test_kit::brokers::{Kind, OwnBroker};
    let acl = OwnBroker::start_with(
        Kind::Redis,
        &[
            "--user", "default", "off", "--user", "ws", "on", ">s3cret", "~*", "&*", "+@all",
        ],
    );
    let port = acl.port();
    serves_through(&format!("redis://ws:s3cret@127.0.0.1:{port}"), &[]).await;
    refused_by_broker(
        &format!("redis://ws:wrong-pass@127.0.0.1:{port}"),
        "refused the credentials",
    )
    .await;
    refused_by_broker(
        &format!("redis://127.0.0.1:{port}"),
        "refused the credentials",
    )
    .await;

    let password = OwnBroker::start_with(Kind::Redis, &["--requirepass", "s3cret"]);
    serves_through(
        &format!("redis://:s3cret@127.0.0.1:{}", password.port()),
        &[],
    )
    .await;

    let (cert, key) = broker_certificate();
    let tls = OwnBroker::start_tls(Kind::Redis, &cert, &key);
    let ca = cert.to_str().unwrap();
    serves_through(
        &format!("rediss://127.0.0.1:{}", tls.port()),
        &["--backend-ca", ca],
    )
    .await;
}

// SECURITY 4: NATS with a user and password, with a token, and with TLS.
#[tokio::test]
async fn nats_with_a_user_a_token_and_tls() {
    use ws_test_kit::brokers::{Kind, OwnBroker};
    let users = OwnBroker::start_with(Kind::Nats, &["--user", "ws", "--pass", "s3cret"]);
    let port = users.port();
    serves_through(&format!("nats://ws:s3cret@127.0.0.1:{port}"), &[]).await;
    refused_by_broker(
        &format!("nats://ws:wrong-pass@127.0.0.1:{port}"),
        "refused the credentials",
    )
    .await;

    let token = OwnBroker::start_with(Kind::Nats, &["--auth", "s3cret-token"]);
    serves_through(
        &format!("nats://s3cret-token@127.0.0.1:{}", token.port()),
        &[],
    )
    .await;

    let (cert, key) = broker_certificate();
    let tls = OwnBroker::start_tls(Kind::Nats, &cert, &key);
    let ca = cert.to_str().unwrap();
    serves_through(
        &format!("tls://127.0.0.1:{}", tls.port()),
        &["--backend-ca", ca],
    )
    .await;
}

// ROBUSTNESS 118: JetStream reserves the history stream's byte budget when
// the stream is made; a budget larger than the server's JetStream storage
// ends `ws serve` at once with what to change, not a bare "error 10047".
#[tokio::test]
async fn a_history_budget_jetstream_cannot_reserve_is_a_clear_error() {
    use ws_test_kit::brokers::{Kind, OwnBroker};
    let config = std::env::temp_dir().join(format!("ws-small-js-{}.conf", std::process::id()));
    std::fs::write(&config, "jetstream { max_file_store: 67108864 }\n").unwrap();
    let small = OwnBroker::start_with(Kind::Nats, &["-c", config.to_str().unwrap()]);
    let url = small.url();
    // The default budget, 1 GiB, is more than the 64 MiB it has.
    refused_by_broker(&url, "cannot reserve the history stream's budget").await;
    serves_through(&url, &["--history-bytes", "16777216"]).await;
    let _ = std::fs::remove_file(config);
}

// SECURITY 7: history had budgets by count only: four sessions publishing
// 1,000 messages of 63 KB raised the server's memory by 250 MB, and by 8
// GiB in theory. History is now bounded by bytes, per channel and for the
// whole node, the oldest going first; a join from further back is told
// `recovered: false`.
#[tokio::test]
async fn history_is_bounded_by_bytes() {
    let serve = Serve::start(
        &[
            "--listen",
            "127.0.0.1:0",
            "--history-bytes",
            "3000000",
            "--history-bytes-per-channel",
            "1000000",
            "--command-rate",
            "0",
            "--max-message-size",
            "200000",
        ],
        &[],
    )
    .await;
    let big = "x".repeat(63_000);
    let mut epoch = Value::Null;
    for channel in ["h1", "h2", "h3", "h4"] {
        let mut peer = Peer::connect(serve.addr, &format!("writer-{channel}")).await;
        let created = peer
            .command(
                channel,
                "create",
                json!({"history_size": 1000, "history_ttl": 3600}),
            )
            .await;
        epoch = created["epoch"].clone();
        for n in 0..40 {
            let published = peer
                .command(channel, "publish", json!({ "n": n, "pad": big }))
                .await;
            assert_eq!(published["ok"], true, "{published}");
        }
    }
    let held = metric(&serve.metrics().await, "ws_channels_history_bytes");
    assert!(
        held > 2_000_000.0 && held <= 3_000_000.0,
        "held {held} bytes of 4 x 40 x 63 KB"
    );
    // h4's first publications went for its own budget, and h1's for the
    // node's: a recovery from the start is refused, never partial.
    let mut reader = Peer::connect(serve.addr, "reader").await;
    let joined = reader
        .command(
            "h4",
            "join",
            json!({"since": {"offset": 0, "epoch": epoch}}),
        )
        .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    let recent = reader
        .command("h4", "history", json!({"limit": 1000}))
        .await;
    let kept = recent["publications"].as_array().unwrap().len();
    assert!((10..=16).contains(&kept), "{kept} of 40 fit in 1 MB");
}
