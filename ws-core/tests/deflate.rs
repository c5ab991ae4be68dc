//! permessage-deflate inside a connection pair: what goes on the wire, the
//! limits on what comes in (ROBUSTNESS 5.4), and the send-side options.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::{Direction, Pair};
use ws_core::deflate::{Compression, DeflateConfig, Deflater};
use ws_core::frame::{FrameHeader, HeaderRules, OpCode, RSV1, encode_frame};
use ws_core::{CloseCode, Config, Connection, Event, Message, ProtocolError, ReceiveMode};

fn deflate() -> DeflateConfig {
    let mut config = DeflateConfig::default();
    config.threshold = 0;
    config
}

fn pair(client: DeflateConfig, server: DeflateConfig) -> Pair {
    Pair::negotiated(
        Config::client(),
        Config::server(),
        Some(client),
        Some(server),
    )
}

/// The (opcode, fin, rsv, payload length) of every frame that crosses the
/// link, per direction.
type Wire = Rc<RefCell<Vec<(Direction, OpCode, bool, u8, u64)>>>;

fn record_frames(pair: &mut Pair) -> Wire {
    let wire: Wire = Rc::default();
    let log = wire.clone();
    let rules = HeaderRules {
        expect_masked: false,
        expect_unmasked: false,
        max_payload: usize::MAX,
        allowed_rsv: 0b111,
        reject_non_minimal: false,
    };
    pair.tamper = Some(Box::new(move |direction, bytes| {
        let mut at = 0;
        while let Ok(Some((header, len))) = FrameHeader::parse(&bytes[at..], &rules) {
            log.borrow_mut().push((
                direction,
                header.opcode,
                header.fin,
                header.rsv,
                header.payload_len,
            ));
            at += len + usize::try_from(header.payload_len).unwrap();
        }
    }));
    wire
}

fn json_like(n: usize) -> String {
    let mut out = String::with_capacity(n + 64);
    let mut i = 0u32;
    while out.len() < n {
        out.push_str(&format!(
            r#"{{"id":{i},"name":"sensor-{}","ok":true}},"#,
            i % 7
        ));
        i += 1;
    }
    out.truncate(n);
    out
}

fn closed(events: &[Event]) -> Option<&ws_core::Closed> {
    events.iter().find_map(|e| match e {
        Event::Closed(c) => Some(c),
        _ => None,
    })
}

#[test]
fn compressed_messages_cross_both_ways_with_rsv1_on_the_wire() {
    let mut pair = pair(deflate(), deflate());
    let wire = record_frames(&mut pair);
    let text = json_like(10_000);
    pair.client.send_text(&text).unwrap();
    pair.server
        .send(Message::binary(text.clone().into_bytes()))
        .unwrap();
    pair.drive();
    assert_eq!(pair.server_events, [Event::Message(Message::text(&*text))]);
    assert_eq!(
        pair.client_events,
        [Event::Message(Message::binary(text.clone().into_bytes()))]
    );
    let frames = wire.borrow();
    for direction in [Direction::ToServer, Direction::ToClient] {
        let (_, _, fin, rsv, len) = frames
            .iter()
            .find(|f| f.0 == direction)
            .copied()
            .expect("a frame each way");
        assert!(fin);
        assert_eq!(rsv, RSV1, "{direction:?}");
        assert!(len < 2_000, "{direction:?}: {len} bytes for 10,000");
    }
}

#[test]
fn messages_below_the_threshold_and_opted_out_ones_go_uncompressed() {
    let mut config = DeflateConfig::default();
    config.threshold = 100;
    let mut pair = pair(config.clone(), config);
    let wire = record_frames(&mut pair);
    pair.server.send_text(&"x".repeat(99)).unwrap();
    pair.server.send_text(&"y".repeat(100)).unwrap();
    pair.server
        .send_uncompressed(Message::text("z".repeat(1000)))
        .unwrap();
    pair.server
        .send_fragment_uncompressed(Message::text("a".repeat(500)), false)
        .unwrap();
    pair.server
        .send_fragment(Message::text("b".repeat(500)), true)
        .unwrap();
    // Context takeover still works after the uncompressed ones.
    pair.server.send_text(&"y".repeat(100)).unwrap();
    pair.drive();
    let rsv: Vec<(u8, u64)> = wire
        .borrow()
        .iter()
        .filter(|f| f.0 == Direction::ToClient)
        .map(|f| (f.3, f.4))
        .collect();
    assert_eq!(rsv[0], (0, 99));
    assert_eq!(rsv[1].0, RSV1);
    assert_eq!(rsv[2], (0, 1000));
    assert_eq!(rsv[3], (0, 500));
    assert_eq!(rsv[4], (0, 500));
    assert_eq!(rsv[5].0, RSV1);
    assert!(rsv[5].1 < rsv[1].1, "the repeat compresses better: {rsv:?}");
    let texts: Vec<String> = pair
        .client_events
        .iter()
        .map(|e| match e {
            Event::Message(Message::Text(t)) => t.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        texts,
        [
            "x".repeat(99),
            "y".repeat(100),
            "z".repeat(1000),
            "a".repeat(500) + &"b".repeat(500),
            "y".repeat(100)
        ]
    );
}

#[test]
fn fragmented_sends_are_compressed_with_rsv1_on_the_first_frame_only() {
    let mut pair = pair(deflate(), deflate());
    let wire = record_frames(&mut pair);
    let parts = [json_like(3000), String::new(), json_like(5000)];
    for (i, part) in parts.iter().enumerate() {
        pair.client
            .send_fragment(Message::text(part.as_str()), i == 2)
            .unwrap();
    }
    pair.drive();
    assert_eq!(
        pair.server_events,
        [Event::Message(Message::text(parts.concat()))]
    );
    let frames: Vec<_> = wire
        .borrow()
        .iter()
        .map(|f| (f.1, f.2, f.3))
        .collect::<Vec<_>>();
    assert_eq!(
        frames,
        [
            (OpCode::Text, false, RSV1),
            (OpCode::Continuation, false, 0),
            (OpCode::Continuation, true, 0),
        ]
    );
}

#[test]
fn streamed_receive_inflates_each_fragment_and_keeps_code_points_whole() {
    let mut server_config = Config::server();
    server_config.receive_mode = ReceiveMode::Streaming;
    let mut pair = Pair::negotiated(
        Config::client(),
        server_config,
        Some(deflate()),
        Some(deflate()),
    );
    // The first frame inflates to text that ends inside a two-byte code
    // point, which must wait for the second frame.
    let text = "κόσμε ".repeat(2000);
    let bytes = text.as_bytes();
    let cut = 4000;
    assert!(!text.is_char_boundary(cut));
    let mut deflater_wire = Vec::new();
    let mut deflater = Deflater::new(15, false, Compression::fast());
    deflater.compress(&bytes[..cut], false, &mut deflater_wire);
    let first = std::mem::take(&mut deflater_wire);
    deflater.compress(&bytes[cut..], true, &mut deflater_wire);
    let mut frames = bytes::BytesMut::new();
    encode_frame(
        &mut frames,
        OpCode::Text,
        false,
        RSV1,
        &first,
        Some([1, 2, 3, 4]),
    );
    encode_frame(
        &mut frames,
        OpCode::Continuation,
        true,
        0,
        &deflater_wire,
        Some([5, 6, 7, 8]),
    );
    pair.server.handle_read(&frames, pair.now);
    let events: Vec<_> = std::iter::from_fn(|| pair.server.poll_event()).collect();
    let pieces: Vec<(String, bool, bool)> = events
        .into_iter()
        .map(|e| match e {
            Event::Fragment(f) => match f.data {
                Message::Text(t) => (t.to_string(), f.is_first, f.is_last),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(pieces.len(), 2);
    assert!(pieces[0].1 && !pieces[0].2 && !pieces[1].1 && pieces[1].2);
    assert_eq!(pieces[0].0.len(), cut - 1, "the split code point waits");
    assert_eq!(format!("{}{}", pieces[0].0, pieces[1].0), text);
}

/// Frames a client would send: `wire`, a compressed message, split into
/// frames of `piece` bytes.
fn compressed_frames(wire: &[u8], piece: usize) -> bytes::BytesMut {
    let mut frames = bytes::BytesMut::new();
    let chunks: Vec<&[u8]> = wire.chunks(piece.max(1)).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let (opcode, rsv) = if i == 0 {
            (OpCode::Binary, RSV1)
        } else {
            (OpCode::Continuation, 0)
        };
        encode_frame(
            &mut frames,
            opcode,
            i + 1 == chunks.len(),
            rsv,
            chunk,
            Some([9, 8, 7, 6]),
        );
    }
    frames
}

fn deflate_server(config: Config) -> Connection {
    let pair = Pair::negotiated(Config::client(), config, Some(deflate()), Some(deflate()));
    pair.server
}

fn drain(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

#[test]
fn a_decompression_bomb_closes_with_1009_whole_or_in_fragments() {
    // 16 MiB of zeros is about 16 KiB compressed; the limit is 1 MiB.
    let mut wire = Vec::new();
    Deflater::new(15, false, Compression::best()).compress(&vec![0u8; 16 << 20], true, &mut wire);
    assert!(wire.len() < 50_000);
    for piece in [usize::MAX, 64, 4096] {
        let mut server = deflate_server(Config::server());
        let frames = compressed_frames(&wire, piece);
        server.handle_read(&frames, std::time::Instant::now());
        let events = drain(&mut server);
        let closed = closed(&events).expect("closed");
        assert_eq!(closed.code, CloseCode::MESSAGE_TOO_BIG, "pieces of {piece}");
        assert!(matches!(
            closed.cause,
            ws_core::CloseCause::ProtocolViolation(ProtocolError::MessageTooLarge {
                max: 1_048_576
            })
        ));
        assert!(!events.iter().any(|e| matches!(e, Event::Message(_))));
        // The close frame went out with 1009.
        let out = std::iter::from_fn(|| server.poll_transmit()).fold(Vec::new(), |mut v, b| {
            v.extend_from_slice(&b);
            v
        });
        assert_eq!(out[0], 0x88);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1009);
    }
}

#[test]
fn the_limit_counts_inflated_bytes_per_message_and_resets_between_messages() {
    let mut config = Config::server();
    config.max_message_size = 100_000;
    config.max_frame_size = 100_000;
    let mut server = deflate_server(config);
    // Each message is just under the limit inflated; with context takeover
    // the later ones are a few bytes on the wire.
    let message = vec![b'a'; 99_999];
    let mut deflater = Deflater::new(15, false, Compression::fast());
    let now = std::time::Instant::now();
    for _ in 0..5 {
        let mut wire = Vec::new();
        deflater.compress(&message, true, &mut wire);
        let mut frame = bytes::BytesMut::new();
        encode_frame(&mut frame, OpCode::Binary, true, RSV1, &wire, Some([1; 4]));
        server.handle_read(&frame, now);
        assert_eq!(
            drain(&mut server),
            [Event::Message(Message::binary(message.clone()))]
        );
    }
    // One byte more is one byte too many.
    let mut wire = Vec::new();
    deflater.compress(&[b'a'; 100_001], true, &mut wire);
    let mut frame = bytes::BytesMut::new();
    encode_frame(&mut frame, OpCode::Binary, true, RSV1, &wire, Some([1; 4]));
    server.handle_read(&frame, now);
    let events = drain(&mut server);
    assert_eq!(closed(&events).unwrap().code, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn the_client_side_limit_holds_too() {
    let mut client_config = Config::client();
    client_config.max_message_size = 1 << 20;
    let mut pair = Pair::negotiated(
        client_config,
        Config::server(),
        Some(deflate()),
        Some(deflate()),
    );
    pair.server
        .send(Message::binary(vec![0u8; 8 << 20]))
        .unwrap();
    pair.drive();
    let at_client = closed(&pair.client_events).expect("the client closed");
    assert_eq!(at_client.code, CloseCode::MESSAGE_TOO_BIG);
    // The server heard 1009 in the close handshake.
    assert_eq!(
        closed(&pair.server_events).expect("closed").code,
        CloseCode::MESSAGE_TOO_BIG
    );
}

#[test]
fn corrupt_compressed_data_closes_with_1007_and_nothing_else() {
    let now = std::time::Instant::now();
    // Block type 3 is reserved; a stored block whose length check fails.
    // Then a valid message that must not arrive.
    for corrupt in [
        &[0xffu8, 0xff, 0xff][..],
        &[0x00, 0x05, 0x00, 0x00, 0x00][..],
    ] {
        let mut server = deflate_server(Config::server());
        let mut frames = bytes::BytesMut::new();
        encode_frame(&mut frames, OpCode::Text, true, RSV1, corrupt, Some([3; 4]));
        encode_frame(&mut frames, OpCode::Text, true, 0, b"after", Some([3; 4]));
        server.handle_read(&frames, now);
        let events = drain(&mut server);
        assert_eq!(events.len(), 1, "{events:?}");
        let closed = closed(&events).unwrap();
        assert_eq!(closed.code, CloseCode::INVALID_PAYLOAD, "{corrupt:?}");
        assert!(matches!(
            closed.cause,
            ws_core::CloseCause::ProtocolViolation(ProtocolError::CorruptCompressedData)
        ));
    }
}

#[test]
fn invalid_utf8_inside_compressed_text_closes_with_1007() {
    let now = std::time::Instant::now();
    let mut server = deflate_server(Config::server());
    let mut wire = Vec::new();
    Deflater::new(15, false, Compression::fast()).compress(b"ok \xff\xfe", true, &mut wire);
    let mut frames = bytes::BytesMut::new();
    encode_frame(&mut frames, OpCode::Text, true, RSV1, &wire, Some([3; 4]));
    server.handle_read(&frames, now);
    let events = drain(&mut server);
    assert_eq!(closed(&events).unwrap().code, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn rsv1_where_it_does_not_belong_closes_with_1002() {
    let now = std::time::Instant::now();
    let mut wire = Vec::new();
    Deflater::new(15, false, Compression::fast()).compress(b"hello", true, &mut wire);
    // Without deflate negotiated; on a continuation frame; on a ping.
    let mut plain = Connection::server(Config::server(), now);
    let mut frames = bytes::BytesMut::new();
    encode_frame(&mut frames, OpCode::Text, true, RSV1, &wire, Some([3; 4]));
    plain.handle_read(&frames, now);
    assert_eq!(
        closed(&drain(&mut plain)).unwrap().cause,
        ws_core::CloseCause::ProtocolViolation(ProtocolError::ReservedBits(RSV1))
    );
    let mut on = deflate_server(Config::server());
    let mut frames = bytes::BytesMut::new();
    encode_frame(&mut frames, OpCode::Text, false, RSV1, &wire, Some([3; 4]));
    encode_frame(
        &mut frames,
        OpCode::Continuation,
        true,
        RSV1,
        b"",
        Some([3; 4]),
    );
    on.handle_read(&frames, now);
    assert_eq!(
        closed(&drain(&mut on)).unwrap().code,
        CloseCode::PROTOCOL_ERROR
    );
    let mut on = deflate_server(Config::server());
    let mut frames = bytes::BytesMut::new();
    encode_frame(&mut frames, OpCode::Ping, true, RSV1, b"", Some([3; 4]));
    on.handle_read(&frames, now);
    assert_eq!(
        closed(&drain(&mut on)).unwrap().code,
        CloseCode::PROTOCOL_ERROR
    );
}

#[test]
fn a_refused_send_leaves_the_compression_context_in_step() {
    let mut client_config = Config::client();
    client_config.max_outgoing_buffer = 4096;
    let mut pair = Pair::negotiated(
        client_config,
        Config::server(),
        Some(deflate()),
        Some(deflate()),
    );
    let first = json_like(3000);
    pair.client.send_text(&first).unwrap();
    // Still queued (not drained), and refused before compression.
    let refused = json_like(8000);
    assert!(pair.client.send_text(&refused).is_err());
    pair.drive();
    let after = json_like(2500);
    pair.client.send_text(&after).unwrap();
    pair.drive();
    assert_eq!(
        pair.server_events,
        [
            Event::Message(Message::text(&*first)),
            Event::Message(Message::text(&*after))
        ]
    );
}

#[test]
fn incompressible_messages_go_uncompressed_when_the_context_resets() {
    let mut noise = Vec::with_capacity(5000);
    let mut x = 0x1234_5678u32;
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x.to_le_bytes()[0]);
    }
    for reset in [true, false] {
        let mut server_side = deflate();
        server_side.server_no_context_takeover = reset;
        let mut pair = pair(deflate(), server_side);
        let wire = record_frames(&mut pair);
        pair.server.send(Message::binary(noise.clone())).unwrap();
        pair.drive();
        assert_eq!(
            pair.client_events,
            [Event::Message(Message::binary(noise.clone()))]
        );
        let (_, _, _, rsv, len) = wire.borrow()[0];
        if reset {
            assert_eq!((rsv, len), (0, 5000));
        } else {
            // Without a reset the context must see every message.
            assert_eq!(rsv, RSV1);
        }
    }
}
