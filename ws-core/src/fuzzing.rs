//! Bodies of the cargo-fuzz targets, kept in the library so the targets are
//! one line each and the bodies compile (and are linted) with the crate.
//! Enabled by the `fuzzing` feature; not part of the public API.
//!
//! Each body checks invariants as well as "no panic": chunking never changes
//! the result, a connection reports nothing after `Closed`, the send buffer
//! stays within its limit, rejections carry error statuses.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::config::{Config, HandshakeLimits, ReceiveMode};
use crate::connection::{Connection, Event};
use crate::deflate::{DeflateConfig, DeflateParams};
use crate::frame::{FrameDecoder, HeaderRules, encode_frame};
use crate::handshake::{Accept, ClientHandshake, ClientRequest, RequestError, ServerHandshake};
use crate::message::Message;
use crate::role::Role;
use crate::{CloseCode, Fragment};

/// Splits `data` into chunks whose sizes come from `sizes` (cycled).
fn chunked<'a>(data: &'a [u8], sizes: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut i = 0;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = sizes
            .get(i % sizes.len().max(1))
            .map_or(rest.len(), |&s| usize::from(s).max(1));
        i += 1;
        let (head, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        Some(head)
    })
}

fn small_limits() -> HandshakeLimits {
    HandshakeLimits {
        max_head_size: 4096,
        max_line_size: 1024,
        max_headers: 32,
        ..HandshakeLimits::default()
    }
}

/// The server's request parser and validator: arbitrary bytes, chunked
/// arbitrarily, must give the same answer as when fed whole.
pub fn server_handshake(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let sizes = [split.max(1), split.rotate_left(3).max(1)];
    let now = Instant::now();
    let whole = ServerHandshake::new(small_limits(), now).handle_input(rest);
    let mut hs = ServerHandshake::new(small_limits(), now);
    let mut chunked_result = Ok(None);
    for piece in chunked(rest, &sizes) {
        chunked_result = hs.handle_input(piece);
        if !matches!(chunked_result, Ok(None)) {
            break;
        }
    }
    match (whole, chunked_result) {
        (Ok(Some(a)), Ok(Some(b))) => {
            assert_eq!(a.request().uri(), b.request().uri());
            assert_eq!(a.subprotocols(), b.subprotocols());
            let chosen = a.subprotocols().first().cloned();
            let accept = chosen.map_or_else(Accept::new, |p| Accept::new().subprotocol(p));
            let wire = a.accept(accept).expect("an offered subprotocol").to_bytes();
            assert!(wire.starts_with(b"HTTP/1.1 101 "));
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.status(), b.status());
            assert!(a.status().is_client_error() || a.status().is_server_error());
            let _ = a.to_bytes();
        }
        (Ok(None), Ok(None)) => {}
        // Bytes after the head are only seen if they share its read.
        (Err(a), _) if a.error() == Some(&RequestError::Pipelined) => {}
        (a, b) => panic!("chunking changed the result: {a:?} vs {b:?}"),
    }
}

/// The client's response parser and validator.
pub fn client_response(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let request = ClientRequest::new("ws://fuzz.example/")
        .expect("valid URI")
        .subprotocol("chat");
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let (mut hs, _) =
            ClientHandshake::new(&request, [1; 16], small_limits(), now).expect("valid request");
        for piece in pieces {
            match hs.handle_input(piece) {
                Ok(None) => {}
                other => return other.map(|r| r.map(|r| (r.subprotocol, r.rest.len()))),
            }
        }
        Ok(None)
    };
    let whole = run(&mut std::iter::once(rest));
    let sizes = [split.max(1)];
    let pieces = run(&mut chunked(rest, &sizes));
    match (&whole, &pieces) {
        (Ok(Some((a, _))), Ok(Some((b, _)))) => assert_eq!(a, b),
        (Err(_), Err(_)) | (Ok(None), Ok(None)) => {}
        _ => panic!("chunking changed the result: {whole:?} vs {pieces:?}"),
    }
}

/// The frame decoder under rules picked from the first byte: decoding whole
/// and decoding in chunks give the same frames, and frames that were
/// minimally encoded re-encode to the same bytes.
pub fn frame_decoder(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&split, input)) = rest.split_first() else {
        return;
    };
    let rules = HeaderRules {
        expect_masked: flags & 1 != 0,
        expect_unmasked: flags & 2 != 0 && flags & 1 == 0,
        max_payload: if flags & 4 != 0 { 1 << 16 } else { 125 },
        allowed_rsv: (flags >> 3) & 0b111,
        reject_non_minimal: true,
    };
    // `fused` appends through `FrameDecoder::append`, which unmasks large
    // payloads while copying; it must decode exactly as plain appends do.
    let decode_all = |pieces: &mut dyn Iterator<Item = &[u8]>, fused: bool| {
        let mut decoder = FrameDecoder::new(rules);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for piece in pieces {
            if fused {
                decoder.append(&mut buf, piece);
            } else {
                buf.extend_from_slice(piece);
            }
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => return (frames, Some(error)),
                }
            }
        }
        (frames, None)
    };
    let whole = decode_all(&mut std::iter::once(input), false);
    let sizes = [split.max(1)];
    let pieces = decode_all(&mut chunked(input, &sizes), false);
    assert_eq!(whole, pieces, "chunking changed the decoded frames");
    let fused = decode_all(&mut chunked(input, &sizes), true);
    assert_eq!(whole, fused, "fused unmasking changed the decoded frames");

    let mut reencoded = BytesMut::new();
    for frame in &whole.0 {
        let h = frame.header;
        encode_frame(
            &mut reencoded,
            h.opcode,
            h.fin,
            h.rsv,
            &frame.payload,
            h.mask,
        );
    }
    assert_eq!(
        &reencoded[..],
        &input[..reencoded.len()],
        "frames re-encode to their input"
    );
}

/// What a connection wrote, read back as its peer would: every byte must
/// form valid frames (masked as the role requires, control frames short
/// and whole, close payloads valid), with nothing after the close frame.
struct WireCheck {
    decoder: FrameDecoder,
    buf: BytesMut,
    close_seen: bool,
}

impl WireCheck {
    fn new(role: Role, deflate: bool) -> Self {
        Self {
            decoder: FrameDecoder::new(HeaderRules {
                expect_masked: role == Role::Client,
                expect_unmasked: role == Role::Server,
                max_payload: usize::MAX,
                allowed_rsv: if deflate { crate::frame::RSV1 } else { 0 },
                reject_non_minimal: true,
            }),
            buf: BytesMut::new(),
            close_seen: false,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        while let Some(frame) = self
            .decoder
            .decode(&mut self.buf)
            .expect("the connection wrote an invalid frame")
        {
            assert!(!self.close_seen, "a frame after the close frame");
            if frame.header.opcode.is_control() {
                assert!(frame.header.fin && frame.payload.len() <= 125);
            }
            if frame.header.opcode == crate::frame::OpCode::Close {
                self.close_seen = true;
                crate::close::CloseFrame::parse(&frame.payload)
                    .expect("the close frame we wrote parses");
            }
        }
    }
}

/// A whole connection in the given role, driven by a script of input
/// chunks (through `handle_read`, or `recv_buf` and `handle_received` as
/// the async driver reads), timer jumps, sends, partial vectored writes,
/// busy stretches (decoding ahead with `poll_control_event`), buffer
/// shrinking and transport loss. Everything it writes is checked as valid
/// frames.
pub fn connection(data: &[u8], role: Role) {
    let start = Instant::now();
    let mut config = match role {
        Role::Server => Config::server(),
        Role::Client => Config::client(),
    }
    .with_max_message_size(64 * 1024);
    config.max_fragments = 64;
    config.max_outgoing_buffer = 16 * 1024;
    config.fragment_timeout = Some(Duration::from_secs(30));
    config.ping_rate_limit = data.first().is_some_and(|b| b & 1 == 1).then_some(8);
    if data.first().is_some_and(|b| b & 2 == 2) {
        config.receive_mode = ReceiveMode::Streaming;
    }
    let limit = config.max_outgoing_buffer;
    let mut conn = match role {
        Role::Server => Connection::server(config, start),
        Role::Client => Connection::client(config, start, [7; 32]),
    };
    // permessage-deflate on, with windows and resets from the first byte.
    let deflate_on = data.first().is_some_and(|b| *b & 4 == 4);
    if let Some(&flags) = data.first().filter(|_| deflate_on) {
        let agreed = DeflateParams {
            server_no_context_takeover: flags & 8 != 0,
            client_no_context_takeover: flags & 16 != 0,
            server_max_window_bits: 9 + (flags >> 5) % 7,
            client_max_window_bits: 15 - (flags >> 5) % 7,
        };
        let deflate = DeflateConfig {
            threshold: usize::from(flags >> 4),
            ..DeflateConfig::default()
        };
        conn = conn.with_deflate(agreed, &deflate);
    }
    let mut wire = WireCheck::new(role, deflate_on);
    let mut now = start;
    let mut closed = false;
    let mut busy = false;
    let mut input = data.get(1..).unwrap_or_default();
    while let Some((&op, rest)) = input.split_first() {
        input = rest;
        let arg = input.first().copied().unwrap_or(0);
        match op % 12 {
            0 | 1 => {
                let take = (usize::from(arg) + 1).min(input.len());
                let (chunk, rest) = input.split_at(take);
                conn.handle_read(chunk, now);
                input = rest;
            }
            2 | 3 => {
                // As the driver reads: into spare capacity, at most all of it.
                let buf = conn.recv_buf();
                let spare = buf.capacity() - buf.len();
                let take = (usize::from(arg) + 1).min(input.len()).min(spare);
                let (chunk, rest) = input.split_at(take);
                buf.extend_from_slice(chunk);
                conn.handle_received(now);
                input = rest;
            }
            4 => {
                now += Duration::from_millis(u64::from(arg) * 250);
                conn.handle_timeout(now);
                input = input.get(1..).unwrap_or_default();
            }
            5 => {
                let payload = vec![arg; usize::from(arg) * 8];
                let _ = match arg % 7 {
                    0 => conn.send_text("fuzz"),
                    6 => conn.send_uncompressed(Message::binary(payload)),
                    1 => conn.send_binary(&payload),
                    2 => conn.ping(&payload[..payload.len().min(125)]),
                    3 => conn.send_fragment(Message::binary(payload), arg & 0x80 != 0),
                    4 => conn.close(CloseCode::new(u16::from(arg) * 20), "bye", now),
                    _ => conn.send(Message::binary(payload)),
                };
                input = input.get(1..).unwrap_or_default();
            }
            6 => {
                // A short vectored write, as a socket may take.
                let mut slices = [std::io::IoSlice::new(&[]); 4];
                let n = conn.transmit_slices(&mut slices);
                let mut budget = usize::from(arg) * 64;
                let mut written = Vec::new();
                for slice in &slices[..n] {
                    let take = slice.len().min(budget);
                    written.extend_from_slice(&slice[..take]);
                    budget -= take;
                }
                wire.feed(&written);
                conn.advance_transmit(written.len());
                input = input.get(1..).unwrap_or_default();
            }
            7 => conn.handle_transport_closed(now),
            8 => busy = !busy,
            9 => conn.shrink_buffers(),
            _ => {
                while let Some(chunk) = conn.poll_transmit() {
                    wire.feed(&chunk);
                }
            }
        }
        if busy {
            // The application is busy: only pings and pongs come out; the
            // rest waits, in order, for `poll_event`.
            while let Some(event) = conn.poll_control_event() {
                assert!(
                    matches!(event, Event::Ping(_) | Event::Pong(_)),
                    "{event:?} while busy"
                );
            }
            continue;
        }
        while let Some(event) = conn.poll_event() {
            assert!(!closed, "event after Closed: {event:?}");
            match event {
                Event::Closed(_) => closed = true,
                Event::Fragment(Fragment { data, .. }) | Event::Message(data) => {
                    assert!(data.len() <= 64 * 1024);
                }
                Event::Ping(payload) | Event::Pong(payload) => assert!(payload.len() <= 125),
            }
        }
        assert_eq!(closed, conn.is_closed(), "Closed event and state disagree");
        if let Some(deadline) = conn.poll_timeout() {
            assert!(!closed, "timer armed after close");
            assert!(deadline >= start);
        }
        // Data is refused past the limit; the slack covers one refused-free
        // send into an empty buffer plus one pong, ping and close frame.
        assert!(conn.transmit_len() <= limit + 2048 * 8 + 3 * 140);
    }
    while let Some(chunk) = conn.poll_transmit() {
        wire.feed(&chunk);
    }
}

/// Envelope parsing: never panics; whatever parses survives a round trip
/// through its own JSON, and its error reply parses back.
pub fn envelope(data: &[u8]) {
    use crate::envelope::Envelope;
    match Envelope::from_slice(data) {
        Ok(envelope) => {
            let again = Envelope::from_slice(envelope.to_json().as_bytes())
                .expect("an envelope's own JSON parses");
            assert_eq!(again, envelope, "round trip changed the envelope");
            let reply = envelope.response(serde_json::Value::Null);
            let _ = Envelope::from_slice(reply.to_json().as_bytes());
        }
        Err(error) => {
            let reply = Envelope::error_reply(None, &error);
            Envelope::from_slice(reply.to_json().as_bytes()).expect("error replies parse");
        }
    }
}

/// permessage-deflate: negotiation of arbitrary headers in both roles, and
/// inflating arbitrary bytes in arbitrary pieces under a limit. Never
/// panics; what the server agrees to, the client accepts; output stays
/// within the limit plus one byte.
pub fn deflate(data: &[u8]) {
    use crate::deflate::{DeflateConfig, Inflater, client_accept, server_negotiate};
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        let Ok(header) = std::str::from_utf8(rest) else {
            return;
        };
        let config = DeflateConfig::default();
        if let Some(agreed) = server_negotiate(header.split('\n'), &config) {
            // Any answer of ours is acceptable to our own client, for an
            // offer it could have made: it never offers a window under 9
            // bits. (A client that offers `client_max_window_bits=8` may
            // be held to 8, as RFC 7692 allows; we inflate any window.)
            if agreed.client_max_window_bits >= crate::deflate::negotiation::MIN_WINDOW_BITS {
                assert!(client_accept([agreed.to_header().as_str()], &config).is_ok());
            }
            assert!(
                agreed.server_max_window_bits >= crate::deflate::negotiation::MIN_WINDOW_BITS,
                "we never compress with a window under 9 bits"
            );
        }
        let _ = client_accept(header.split('\n'), &config);
        return;
    }
    let limit = usize::from(selector >> 1) * 1024;
    let mut inflater = Inflater::new(9 + (selector >> 5) % 7, selector & 2 != 0);
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = rest.chunks(usize::from(selector % 13) + 1).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let fin = i + 1 == pieces.len();
        let result = inflater.inflate(piece, fin, limit, &mut out);
        assert!(out.len() <= limit + 1, "inflated past the limit");
        if result.is_err() {
            break;
        }
        if fin {
            out.clear();
        }
    }
}
