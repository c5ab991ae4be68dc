use std::time::{Duration, Instant};

use http::header::{AUTHORIZATION, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;
use crate::config::HandshakeLimits;
use crate::error::UsageError;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request_with(lines: &[&str]) -> String {
    let mut text = String::from("GET /chat HTTP/1.1\r\n");
    for line in lines {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

fn good_lines() -> Vec<&'static str> {
    vec![
        "Host: server.example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
}

fn without(name: &str) -> Vec<&'static str> {
    good_lines()
        .into_iter()
        .filter(|l| {
            !l.to_ascii_lowercase()
                .starts_with(&name.to_ascii_lowercase())
        })
        .collect()
}

fn serve(text: &str) -> Result<Option<UpgradeRequest>, Rejection> {
    ServerHandshake::new(HandshakeLimits::default(), Instant::now()).handle_input(text.as_bytes())
}

fn rejected(text: &str) -> Rejection {
    serve(text).expect_err("request must be rejected")
}

#[test]
fn valid_request_accepted_under_every_chunking() {
    let text = request_with(&good_lines());
    for size in 1..=text.len() {
        let mut hs = ServerHandshake::new(HandshakeLimits::default(), Instant::now());
        let mut result = None;
        for chunk in text.as_bytes().chunks(size) {
            assert!(result.is_none());
            result = hs.handle_input(chunk).unwrap();
        }
        let upgrade = result.expect("complete");
        assert_eq!(upgrade.path(), "/chat");
        let accepted = upgrade.accept(Accept::new()).unwrap();
        let wire = String::from_utf8(accepted.to_bytes().to_vec()).unwrap();
        assert!(wire.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(wire.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(wire.ends_with("\r\n\r\n"));
    }
}

// ROBUSTNESS 4: each missing or wrong field gets its status, never 101.
#[test]
fn wrong_fields_get_their_status() {
    let post = request_with(&good_lines()).replacen("GET", "POST", 1);
    let r = rejected(&post);
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.response().headers()["allow"], "GET");

    let http10 = request_with(&good_lines()).replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(
        rejected(&http10).status(),
        StatusCode::HTTP_VERSION_NOT_SUPPORTED
    );
    let http2 = request_with(&good_lines()).replacen("HTTP/1.1", "HTTP/2.0", 1);
    assert_eq!(
        rejected(&http2).status(),
        StatusCode::HTTP_VERSION_NOT_SUPPORTED
    );

    let r = rejected(&request_with(&without("Upgrade")));
    assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
    assert_eq!(r.response().headers()["upgrade"], "websocket");
    let mut lines = without("Upgrade");
    lines.push("Upgrade: h2c");
    assert_eq!(
        rejected(&request_with(&lines)).status(),
        StatusCode::UPGRADE_REQUIRED
    );

    let mut lines = without("Connection");
    lines.push("Connection: keep-alive");
    assert_eq!(
        rejected(&request_with(&lines)).error(),
        Some(&RequestError::Connection)
    );
    assert_eq!(
        rejected(&request_with(&lines)).status(),
        StatusCode::BAD_REQUEST
    );

    for version in ["Sec-WebSocket-Version: 8", "Sec-WebSocket-Version: 13, 8"] {
        let mut lines = without("Sec-WebSocket-Version");
        lines.push(version);
        let r = rejected(&request_with(&lines));
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED, "{version}");
        assert_eq!(r.response().headers()["sec-websocket-version"], "13");
    }
    let r = rejected(&request_with(&without("Sec-WebSocket-Version")));
    assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);

    assert_eq!(
        rejected(&request_with(&without("Sec-WebSocket-Key"))).error(),
        Some(&RequestError::Key)
    );
    let mut dup = good_lines();
    dup.push("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(
        rejected(&request_with(&dup)).error(),
        Some(&RequestError::Key)
    );
    for bad in [
        "Sec-WebSocket-Key: c2hvcnQ=",
        "Sec-WebSocket-Key: not base64 at all!!!!!!",
    ] {
        let mut lines = without("Sec-WebSocket-Key");
        lines.push(bad);
        assert_eq!(
            rejected(&request_with(&lines)).status(),
            StatusCode::BAD_REQUEST
        );
    }

    assert_eq!(
        rejected(&request_with(&without("Host"))).error(),
        Some(&RequestError::Host)
    );
    let mut two_hosts = good_lines();
    two_hosts.push("Host: evil.example");
    assert_eq!(
        rejected(&request_with(&two_hosts)).error(),
        Some(&RequestError::Host)
    );
}

#[test]
fn token_lists_and_case_are_accepted() {
    let lines = vec![
        "host: a",
        "upgrade: WebSocket",
        "connection: keep-alive, UPGRADE",
        "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version: 13",
    ];
    assert!(serve(&request_with(&lines)).unwrap().is_some());
}

// ROBUSTNESS 5: a body or pipelined bytes is refused, and those bytes are
// never parsed as HTTP.
#[test]
fn body_and_pipelined_bytes_are_refused() {
    let mut lines = good_lines();
    lines.push("Content-Length: 5");
    assert_eq!(
        rejected(&request_with(&lines)).error(),
        Some(&RequestError::Body)
    );
    let mut lines = good_lines();
    lines.push("Transfer-Encoding: chunked");
    assert_eq!(
        rejected(&request_with(&lines)).error(),
        Some(&RequestError::Body)
    );
    let mut lines = good_lines();
    lines.push("Content-Length: 0");
    assert!(serve(&request_with(&lines)).unwrap().is_some());

    let pipelined = format!(
        "{}GET /second HTTP/1.1\r\n\r\n",
        request_with(&good_lines())
    );
    let r = rejected(&pipelined);
    assert_eq!(r.error(), Some(&RequestError::Pipelined));
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

// With early data allowed, bytes behind the head are kept for the
// connection (never parsed as HTTP) and survive the accept.
#[test]
fn early_data_is_kept_when_allowed() {
    let frame = [0x81u8, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    let mut wire = request_with(&good_lines()).into_bytes();
    wire.extend_from_slice(&frame);
    let limits = HandshakeLimits {
        accept_early_data: true,
        ..HandshakeLimits::default()
    };
    let upgrade = ServerHandshake::new(limits, Instant::now())
        .handle_input(&wire)
        .unwrap()
        .unwrap();
    assert_eq!(&upgrade.rest()[..], &frame);
    let accepted = upgrade.accept(Accept::new()).unwrap();
    assert_eq!(&accepted.rest()[..], &frame);
    let mut conn = crate::Connection::server(crate::Config::server(), Instant::now());
    conn.handle_read(accepted.rest(), Instant::now());
    assert_eq!(
        conn.poll_event(),
        Some(crate::Event::Message(crate::Message::text("hi")))
    );
}

// ROBUSTNESS 1: a head dribbled byte by byte past the limit is refused once
// the limit is crossed (431, or 414 for the request line), with bounded
// memory; the deadline answers 408.
#[test]
fn dribbled_oversized_head_and_deadline() {
    let limits = HandshakeLimits::default();
    let mut hs = ServerHandshake::new(limits.clone(), Instant::now());
    let mut prefix = request_with(&good_lines());
    prefix.truncate(prefix.len() - 2);
    for byte in prefix.bytes() {
        assert!(hs.handle_input(&[byte]).unwrap().is_none());
    }
    let mut rejection = None;
    let mut fed = 0;
    let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    'feed: for _ in 0..100_000 {
        for &byte in line {
            fed += 1;
            if let Err(r) = hs.handle_input(&[byte]) {
                rejection = Some(r);
                break 'feed;
            }
        }
    }
    let r = rejection.expect("refused");
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(fed <= limits.max_head_size, "refused after {fed} bytes");

    let start = Instant::now();
    let mut hs = ServerHandshake::new(limits.clone(), start);
    assert!(hs.handle_input(b"GET / HT").unwrap().is_none());
    assert_eq!(hs.poll_timeout(), Some(start + limits.timeout));
    assert!(
        hs.handle_timeout(start + limits.timeout - Duration::from_millis(1))
            .is_none()
    );
    let r = hs
        .handle_timeout(start + limits.timeout)
        .expect("timed out");
    assert_eq!(r.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(
        hs.handle_timeout(start + limits.timeout * 2).is_none(),
        "fires once"
    );
    assert_eq!(hs.poll_timeout(), None);
}

// ROBUSTNESS 2: junk headers beyond the count cap get 431 before the real
// ones are seen; nothing is silently dropped.
#[test]
fn too_many_headers() {
    let mut lines: Vec<String> = (0..2000).map(|i| format!("X-Junk-{i}: x")).collect();
    lines.extend(good_lines().into_iter().map(String::from));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let limits = HandshakeLimits {
        max_head_size: 1 << 20,
        ..HandshakeLimits::default()
    };
    let r = ServerHandshake::new(limits, Instant::now())
        .handle_input(request_with(&refs).as_bytes())
        .unwrap_err();
    assert_eq!(r.error(), Some(&RequestError::TooManyHeaders));
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // Exactly at the cap is fine.
    let mut lines: Vec<String> = (0..95).map(|i| format!("X-Junk-{i}: x")).collect();
    lines.extend(good_lines().into_iter().map(String::from));
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    assert!(serve(&request_with(&refs)).unwrap().is_some());
}

// ROBUSTNESS 3: over-long request line.
#[test]
fn long_request_line() {
    let text = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
    let r = rejected(&text);
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
}

// ROBUSTNESS 7: hostile subprotocol headers are parsed linearly and refused
// cleanly; extension offers are declined (no extension is supported yet).
#[test]
fn hostile_protocol_and_extension_headers() {
    let mut lines = good_lines();
    lines.push("Sec-WebSocket-Protocol: \"unclosed\\\\\\\\\\\\");
    assert_eq!(
        rejected(&request_with(&lines)).error(),
        Some(&RequestError::Subprotocol)
    );

    let offers = (0..1500)
        .map(|i| format!("p{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let line = format!("Sec-WebSocket-Protocol: {offers}");
    let mut lines: Vec<&str> = good_lines();
    lines.push(&line);
    let upgrade = serve(&request_with(&lines)).unwrap().unwrap();
    assert_eq!(upgrade.subprotocols().len(), 1500);

    let mut lines = good_lines();
    lines
        .push("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99; __proto__");
    lines.push("Sec-WebSocket-Extensions: x-unknown; a=\"\\\\\\\"");
    let upgrade = serve(&request_with(&lines)).unwrap().unwrap();
    let accepted = upgrade.accept(Accept::new()).unwrap();
    assert!(
        !accepted
            .response()
            .headers()
            .contains_key(SEC_WEBSOCKET_EXTENSIONS)
    );
}

#[test]
fn accept_checks_subprotocol_and_reserved_headers() {
    let mut lines = good_lines();
    lines.push("Sec-WebSocket-Protocol: chat, superchat");
    let text = request_with(&lines);
    let upgrade = serve(&text).unwrap().unwrap();
    assert_eq!(upgrade.subprotocols(), ["chat", "superchat"]);
    assert_eq!(
        upgrade
            .accept(Accept::new().subprotocol("other"))
            .unwrap_err(),
        UsageError::SubprotocolNotOffered("other".into())
    );
    let upgrade = serve(&text).unwrap().unwrap();
    let accept = Accept::new().header(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat"));
    assert!(matches!(
        upgrade.accept(accept),
        Err(UsageError::InvalidHeader(_))
    ));
    let upgrade = serve(&text).unwrap().unwrap();
    let accepted = upgrade
        .accept(Accept::new().subprotocol("superchat"))
        .unwrap();
    assert_eq!(
        accepted.response().headers()["sec-websocket-protocol"],
        "superchat"
    );
}

#[test]
fn application_rejection_has_length_and_close() {
    let upgrade = serve(&request_with(&good_lines())).unwrap().unwrap();
    let r = upgrade.reject(StatusCode::UNAUTHORIZED, HeaderMap::new(), "no");
    let wire = String::from_utf8(r.to_bytes().to_vec()).unwrap();
    assert!(wire.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
    assert!(wire.contains("connection: close\r\n"));
    assert!(wire.contains("content-length: 2\r\n"));
    assert!(wire.ends_with("\r\n\r\nno"));
    assert_eq!(r.error(), None);
}

// ---- client side ------------------------------------------------------

fn client(request: &ClientRequest) -> (ClientHandshake, String) {
    let (hs, wire) = ClientHandshake::new(
        request,
        [0x11; 16],
        HandshakeLimits::default(),
        Instant::now(),
    )
    .unwrap();
    (hs, String::from_utf8(wire.to_vec()).unwrap())
}

fn response_for(request_wire: &str, extra: &[&str]) -> String {
    let upgrade = serve(request_wire).unwrap().unwrap();
    let accepted = upgrade.accept(Accept::new()).unwrap();
    let mut text = String::from_utf8(accepted.to_bytes().to_vec()).unwrap();
    text.truncate(text.len() - 2);
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

#[test]
fn client_request_is_well_formed() {
    let request = ClientRequest::new("ws://[::1]:9001/path?q=1")
        .unwrap()
        .subprotocol("a")
        .subprotocol("b")
        .header(AUTHORIZATION, HeaderValue::from_static("Bearer t"));
    assert_eq!(
        (request.host(), request.port(), request.is_tls()),
        ("::1", 9001, false)
    );
    let (_, wire) = client(&request);
    assert!(wire.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{wire}");
    assert!(wire.contains("host: [::1]:9001\r\n"));
    assert!(wire.contains("sec-websocket-protocol: a, b\r\n"));
    assert!(wire.contains("authorization: Bearer t\r\n"));
    let upgrade = serve(&wire).unwrap().unwrap();
    assert_eq!(upgrade.subprotocols(), ["a", "b"]);

    assert_eq!(ClientRequest::new("wss://h").unwrap().port(), 443);
    assert!(matches!(
        ClientRequest::new("http://h/"),
        Err(UsageError::InvalidUri(_))
    ));
    assert!(matches!(
        ClientRequest::new("ws:///nohost"),
        Err(UsageError::InvalidUri(_))
    ));
    let bad = ClientRequest::new("ws://h/")
        .unwrap()
        .subprotocol("has space");
    assert!(matches!(
        ClientHandshake::new(&bad, [0; 16], HandshakeLimits::default(), Instant::now()),
        Err(UsageError::InvalidHeader(_))
    ));
}

#[test]
fn client_accepts_valid_response_and_keeps_trailing_frames() {
    let request = ClientRequest::new("ws://example.com/")
        .unwrap()
        .subprotocol("chat");
    let (mut hs, wire) = client(&request);
    let upgrade = serve(&wire).unwrap().unwrap();
    let accepted = upgrade.accept(Accept::new().subprotocol("chat")).unwrap();
    let mut bytes = accepted.to_bytes().to_vec();
    bytes.extend_from_slice(&[0x81, 0x02, b'h', b'i']);
    let response = hs.handle_input(&bytes).unwrap().unwrap();
    assert_eq!(response.subprotocol.as_deref(), Some("chat"));
    assert_eq!(&response.rest[..], &[0x81, 0x02, b'h', b'i']);
}

// ROBUSTNESS 9: bad server responses fail before any frame is sent.
#[test]
fn client_rejects_bad_responses() {
    let request = ClientRequest::new("ws://example.com/")
        .unwrap()
        .subprotocol("chat");
    let check = |text: &str| {
        let (mut hs, _) = client(&request);
        hs.handle_input(text.as_bytes()).unwrap_err()
    };
    let (_, wire) = client(&request);
    let good = response_for(&wire, &[]);

    let ok = good.replacen("101 Switching Protocols", "200 OK", 1);
    assert!(matches!(check(&ok), ResponseError::Status { status, .. } if status == StatusCode::OK));
    let wrong_accept = good.replace("sec-websocket-accept: ", "sec-websocket-accept: x");
    assert_eq!(check(&wrong_accept), ResponseError::Accept);
    let no_upgrade = good.replace("upgrade: websocket\r\n", "");
    assert_eq!(check(&no_upgrade), ResponseError::Upgrade);
    let no_connection = good.replace("connection: Upgrade\r\n", "");
    assert_eq!(check(&no_connection), ResponseError::Connection);
    let other_protocol = response_for(&wire, &["Sec-WebSocket-Protocol: other"]);
    assert_eq!(
        check(&other_protocol),
        ResponseError::Subprotocol("other".into())
    );
    let extension = response_for(&wire, &["Sec-WebSocket-Extensions: permessage-deflate"]);
    assert!(matches!(check(&extension), ResponseError::Extension(_)));

    // A never-ending head trips the size limit, not memory.
    let (mut hs, _) = client(&request);
    assert!(
        hs.handle_input(b"HTTP/1.1 101 Switching Protocols\r\n")
            .unwrap()
            .is_none()
    );
    let filler = "X: y\r\n".repeat(10_000);
    assert!(matches!(
        hs.handle_input(filler.as_bytes()),
        Err(ResponseError::Head(_))
    ));

    let start = Instant::now();
    let (mut hs, _) =
        ClientHandshake::new(&request, [0; 16], HandshakeLimits::default(), start).unwrap();
    let deadline = hs.poll_timeout().unwrap();
    assert!(
        hs.handle_timeout(deadline - Duration::from_millis(1))
            .is_none()
    );
    assert_eq!(hs.handle_timeout(deadline), Some(ResponseError::Timeout));
}

#[test]
fn unoffered_subprotocol_is_refused_when_none_offered() {
    let request = ClientRequest::new("ws://example.com/").unwrap();
    let (mut hs, wire) = client(&request);
    let text = response_for(&wire, &["Sec-WebSocket-Protocol: chat"]);
    assert_eq!(
        hs.handle_input(text.as_bytes()).unwrap_err(),
        ResponseError::Subprotocol("chat".into())
    );
}

#[test]
fn client_request_from_http_request() {
    let request = http::Request::builder()
        .uri("wss://example.com:8443/x")
        .header(SEC_WEBSOCKET_PROTOCOL, "one, two")
        .header("x-custom", "1")
        .body(())
        .unwrap();
    let request = ClientRequest::try_from(request).unwrap();
    assert_eq!(request.subprotocols(), ["one", "two"]);
    let (_, wire) = client(&request);
    assert!(wire.contains("host: example.com:8443\r\n"));
    assert!(wire.contains("x-custom: 1\r\n"));
    assert_eq!(KEY.len(), 24);
}

// ---- permessage-deflate -----------------------------------------------

#[test]
fn server_negotiates_deflate_and_answers_in_the_response() {
    use crate::deflate::DeflateConfig;
    let config = DeflateConfig::default();
    let mut lines = good_lines();
    // Browsers and most clients send exactly this.
    lines.push("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits");
    let upgrade = serve(&request_with(&lines)).unwrap().unwrap();
    let agreed = upgrade.negotiate_deflate(&config).expect("accepted");
    let accepted = upgrade.accept(Accept::new().deflate(agreed)).unwrap();
    assert_eq!(accepted.deflate(), Some(agreed));
    assert_eq!(
        accepted.response().headers()[SEC_WEBSOCKET_EXTENSIONS],
        "permessage-deflate"
    );
    // Hostile or unsupported offers: declined, the connection goes on.
    for hostile in [
        "permessage-deflate; server_max_window_bits=99; __proto__",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; client_max_window_bits; client_max_window_bits",
        "permessage-deflate; a=\"\\\\\\\\\\\\",
        "x-webkit-deflate-frame",
    ] {
        let mut lines = good_lines();
        let line = format!("Sec-WebSocket-Extensions: {hostile}");
        lines.push(&line);
        let upgrade = serve(&request_with(&lines)).unwrap().unwrap();
        assert_eq!(upgrade.negotiate_deflate(&config), None, "{hostile}");
    }
    // A line that is not visible ASCII makes the whole header malformed:
    // declined, even with a good offer on another line.
    let mut lines = good_lines();
    lines.push("Sec-WebSocket-Extensions: permessage-deflate; x=\"é\"");
    lines.push("Sec-WebSocket-Extensions: permessage-deflate");
    let upgrade = serve(&request_with(&lines)).unwrap().unwrap();
    assert_eq!(upgrade.negotiate_deflate(&config), None);
    // Thousands of offers in one header: linear, and the first good one wins.
    let offers = (0..2000)
        .map(|i| format!("permessage-deflate; x{i}"))
        .chain(["permessage-deflate; server_max_window_bits=10".to_owned()])
        .collect::<Vec<_>>()
        .join(", ");
    let line = format!("Sec-WebSocket-Extensions: {offers}");
    let mut lines = good_lines();
    lines.push(&line);
    let text = request_with(&lines);
    let limits = HandshakeLimits {
        max_head_size: 64 * 1024,
        max_line_size: 64 * 1024,
        ..HandshakeLimits::default()
    };
    let upgrade = ServerHandshake::new(limits, Instant::now())
        .handle_input(text.as_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(
        upgrade
            .negotiate_deflate(&config)
            .map(|a| a.server_max_window_bits),
        Some(10)
    );
    // The application cannot set the header behind the handshake's back.
    let upgrade = serve(&request_with(&good_lines())).unwrap().unwrap();
    let sneaky = Accept::new().header(
        SEC_WEBSOCKET_EXTENSIONS,
        HeaderValue::from_static("permessage-deflate"),
    );
    assert!(matches!(
        upgrade.accept(sneaky),
        Err(UsageError::InvalidHeader(_))
    ));
}

#[test]
fn client_offers_deflate_and_checks_the_answer() {
    use crate::deflate::DeflateConfig;
    let request = ClientRequest::new("ws://server.example.com/chat")
        .unwrap()
        .deflate(DeflateConfig::default());
    let (_, wire) = client(&request);
    assert!(
        wire.contains("sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n")
    );
    let answer = |extra: &[&str]| {
        let (mut hs, wire) = client(&request);
        hs.handle_input(response_for(&wire, extra).as_bytes())
    };
    let accepted =
        answer(&["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10"])
            .unwrap()
            .unwrap();
    let agreed = accepted.deflate.unwrap();
    assert_eq!(agreed.client_max_window_bits, 10);
    assert_eq!(answer(&[]).unwrap().unwrap().deflate, None);
    for bad in [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; mystery",
        "permessage-deflate, permessage-deflate",
        "x-other",
    ] {
        let line = format!("Sec-WebSocket-Extensions: {bad}");
        assert!(
            matches!(answer(&[&line]), Err(ResponseError::Deflate(_))),
            "{bad}"
        );
    }
    // Without an offer, any extension in the answer fails.
    let plain = ClientRequest::new("ws://server.example.com/chat").unwrap();
    let (mut hs, wire) = client(&plain);
    assert!(!wire.to_ascii_lowercase().contains("extensions"));
    let text = response_for(&wire, &["Sec-WebSocket-Extensions: permessage-deflate"]);
    assert_eq!(
        hs.handle_input(text.as_bytes()).unwrap_err(),
        ResponseError::Extension("permessage-deflate".into())
    );
}

// Credentials never show in `Debug` output, on either side.
#[test]
fn credentials_are_redacted_in_debug_output() {
    let mut lines = good_lines();
    lines.extend([
        "Authorization: Bearer secret-token",
        "Cookie: session=secret-cookie",
        "Sec-WebSocket-Protocol: chat, secret-protocol-token",
    ]);
    let upgrade = serve(&request_with(&lines)).unwrap().unwrap();
    let debug = format!("{upgrade:?}");
    for secret in ["secret-token", "secret-cookie", "secret-protocol-token"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("Sensitive"), "{debug}");
    // The values are intact for whoever reads them on purpose.
    assert_eq!(
        upgrade.headers()[AUTHORIZATION].to_str().unwrap(),
        "Bearer secret-token"
    );
    let (parts, ()) = upgrade
        .accept(Accept::new().subprotocol("chat"))
        .unwrap()
        .into_request()
        .into_parts();
    assert!(!format!("{parts:?}").contains("secret"));

    assert!(matches!(
        ClientRequest::new("ws://user:secret-password@example.com/"),
        Err(UsageError::InvalidUri(_))
    ));
    let request = ClientRequest::new("ws://example.com/")
        .unwrap()
        .subprotocol("secret-protocol-token")
        .header(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer secret-token"),
        )
        .header(
            http::header::COOKIE,
            HeaderValue::from_static("session=secret-cookie"),
        );
    let debug = format!("{request:?}");
    for secret in ["secret-token", "secret-cookie", "secret-protocol-token"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("example.com"), "{debug}");
    let (_, wire) = client(&request);
    assert!(wire.contains("authorization: Bearer secret-token\r\n"));
}
