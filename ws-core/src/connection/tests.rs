use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::*;
use crate::frame::encode_frame;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a client sends it (masked).
fn masked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode_frame(&mut dst, opcode, fin, 0, payload, Some(KEY));
    dst.to_vec()
}

/// A frame as a server sends it (unmasked).
fn unmasked(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    encode_frame(&mut dst, opcode, fin, 0, payload, None);
    dst.to_vec()
}

fn server() -> Connection {
    Connection::server(Config::server(), Instant::now())
}

fn server_with(config: Config) -> Connection {
    Connection::server(config, Instant::now())
}

fn events(conn: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn feed(conn: &mut Connection, bytes: &[u8]) -> Vec<Event> {
    let now = conn.now;
    conn.handle_read(bytes, now);
    events(conn)
}

fn closed_by(events: &[Event]) -> &Closed {
    match events.last() {
        Some(Event::Closed(closed)) => closed,
        other => panic!("expected Closed last, got {other:?}"),
    }
}

fn violation(events: &[Event]) -> ProtocolError {
    match &closed_by(events).cause {
        CloseCause::ProtocolViolation(error) => error.clone(),
        other => panic!("expected a protocol violation, got {other:?}"),
    }
}

/// Decodes everything a connection wants to send.
fn sent(conn: &mut Connection) -> Vec<(OpCode, bool, Bytes)> {
    let masked_output = conn.role == Role::Client;
    let mut wire = BytesMut::new();
    while let Some(chunk) = conn.poll_transmit() {
        wire.extend_from_slice(&chunk);
    }
    let mut decoder = FrameDecoder::new(HeaderRules {
        expect_masked: masked_output,
        expect_unmasked: !masked_output,
        max_payload: usize::MAX,
        allowed_rsv: 0,
        reject_non_minimal: true,
    });
    let mut frames = Vec::new();
    while let Some(frame) = decoder.decode(&mut wire).unwrap() {
        frames.push((
            frame.header.opcode,
            frame.header.fin,
            frame.payload.freeze(),
        ));
    }
    assert!(wire.is_empty(), "partial frame left in output");
    frames
}

fn close_code_sent(conn: &mut Connection) -> Option<u16> {
    sent(conn)
        .into_iter()
        .find(|(op, _, _)| *op == OpCode::Close)
        .map(|(_, _, payload)| u16::from_be_bytes([payload[0], payload[1]]))
}

// ---- messages -----------------------------------------------------------

#[test]
fn whole_and_fragmented_messages_with_interleaved_control_frames() {
    let mut conn = server();
    let mut wire = masked(OpCode::Text, true, "héllo".as_bytes());
    wire.extend(masked(OpCode::Binary, false, &[1, 2]));
    wire.extend(masked(OpCode::Ping, true, b"p"));
    wire.extend(masked(OpCode::Continuation, false, &[]));
    wire.extend(masked(OpCode::Pong, true, b"unsolicited"));
    wire.extend(masked(OpCode::Continuation, true, &[3]));
    let got = feed(&mut conn, &wire);
    assert_eq!(
        got,
        vec![
            Event::Message(Message::text("héllo")),
            Event::Ping(Bytes::from_static(b"p")),
            Event::Pong(Bytes::from_static(b"unsolicited")),
            Event::Message(Message::binary(vec![1, 2, 3])),
        ]
    );
    assert_eq!(
        sent(&mut conn),
        vec![(OpCode::Pong, true, Bytes::from_static(b"p"))]
    );
}

#[test]
fn batch_of_frames_in_one_read_yields_all_and_replies_leave_in_one_write() {
    let mut conn = server();
    let mut wire = Vec::new();
    for i in 0..100u8 {
        wire.extend(masked(OpCode::Binary, true, &[i; 10]));
    }
    conn.handle_read(&wire, Instant::now());
    let mut count = 0;
    while let Some(event) = conn.poll_event() {
        let Event::Message(message) = event else {
            panic!()
        };
        conn.send(message).unwrap();
        count += 1;
    }
    assert_eq!(count, 100);
    let mut slots = [IoSlice::new(&[]); 8];
    let n = conn.transmit_slices(&mut slots);
    assert_eq!(n, 1, "small replies are coalesced into one buffer");
    assert_eq!(slots[0].len(), 100 * 12);
}

#[test]
fn pong_goes_out_before_data_queued_after_the_ping() {
    // Autobahn 5.6: ping between fragments; the pong must precede the echo.
    let mut conn = server();
    let mut wire = masked(OpCode::Text, false, b"frag1");
    wire.extend(masked(OpCode::Ping, true, b"ping"));
    wire.extend(masked(OpCode::Continuation, true, b"frag2"));
    conn.handle_read(&wire, Instant::now());
    while let Some(event) = conn.poll_event() {
        if let Event::Message(message) = event {
            conn.send(message).unwrap();
        }
    }
    let frames = sent(&mut conn);
    assert_eq!(frames[0].0, OpCode::Pong);
    assert_eq!(
        frames[1],
        (OpCode::Text, true, Bytes::from_static(b"frag1frag2"))
    );
}

#[test]
fn client_decodes_unmasked_and_sends_masked() {
    let mut conn = Connection::client(Config::client(), Instant::now(), [1; 32]);
    let got = feed(&mut conn, &unmasked(OpCode::Text, true, b"hi"));
    assert_eq!(got, vec![Event::Message(Message::text("hi"))]);
    conn.send_text("yo").unwrap();
    let wire = conn.poll_transmit().unwrap();
    assert_eq!(wire[1] & 0x80, 0x80, "mask bit set");
    let mut server = server();
    assert_eq!(
        feed(&mut server, &wire),
        vec![Event::Message(Message::text("yo"))]
    );
}

#[test]
fn streaming_mode_hands_out_fragments_with_whole_code_points() {
    let mut config = Config::server();
    config.receive_mode = ReceiveMode::Streaming;
    let mut conn = server_with(config);
    // "a😀b" with the emoji split 1 | 2 | 1 across frames.
    let text = "a😀b".as_bytes();
    let mut wire = masked(OpCode::Text, false, &text[..2]);
    wire.extend(masked(OpCode::Continuation, false, &text[2..4]));
    wire.extend(masked(OpCode::Continuation, false, &text[4..5]));
    wire.extend(masked(OpCode::Continuation, true, &text[5..]));
    let got = feed(&mut conn, &wire);
    let pieces: Vec<(String, bool, bool)> = got
        .iter()
        .map(|e| match e {
            Event::Fragment(Fragment {
                data: Message::Text(t),
                is_first,
                is_last,
            }) => (t.to_string(), *is_first, *is_last),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        pieces,
        vec![
            ("a".into(), true, false),
            ("".into(), false, false),
            ("😀".into(), false, false),
            ("b".into(), false, true),
        ]
    );
    let got = feed(&mut conn, &masked(OpCode::Binary, true, &[9]));
    assert_eq!(
        got,
        vec![Event::Fragment(Fragment {
            data: Message::binary(vec![9]),
            is_first: true,
            is_last: true
        })]
    );
}

// ROBUSTNESS 24: streaming does not lift the message limit.
#[test]
fn streaming_mode_still_bounds_the_message() {
    let mut config = Config::server().with_max_message_size(100);
    config.receive_mode = ReceiveMode::Streaming;
    let mut conn = server_with(config);
    let mut wire = masked(OpCode::Binary, false, &[0; 60]);
    wire.extend(masked(OpCode::Continuation, false, &[0; 60]));
    let got = feed(&mut conn, &wire);
    assert!(matches!(got[0], Event::Fragment(_)));
    assert_eq!(violation(&got), ProtocolError::MessageTooLarge { max: 100 });
    assert_eq!(close_code_sent(&mut conn), Some(1009));
}

// ROBUSTNESS 25: a small message is copied out so it does not pin the read
// buffer; a large one is handed out without a copy.
#[test]
fn small_messages_do_not_pin_the_read_buffer() {
    let mut conn = server();
    let buf = conn.recv_buf();
    let base = buf.as_ptr() as usize;
    let capacity = buf.capacity();
    buf.extend_from_slice(&masked(OpCode::Binary, true, &[1; 10]));
    buf.extend_from_slice(&masked(OpCode::Binary, true, &[2; 8000]));
    conn.handle_received(Instant::now());
    let got = events(&mut conn);
    let inside = |m: &Event| match m {
        Event::Message(Message::Binary(b)) => {
            let p = b.as_ptr() as usize;
            p >= base && p < base + capacity
        }
        _ => panic!(),
    };
    assert!(!inside(&got[0]), "10-byte message must be copied");
    assert!(inside(&got[1]), "8000-byte message must be zero-copy");
}

// The last bytes of a large frame are read into the room left after it,
// not after moving what arrived of it to the front of the allocation (ws-smol
// did that for most 64 KiB messages: a 65 KB copy each).
#[test]
fn the_rest_of_a_frame_that_fits_is_read_in_place() {
    let base = Config::server().read_buffer_size;
    let mut conn = server();
    // Something read and consumed first, so the frame does not start at
    // the front of the allocation and moving it would be possible.
    let small = masked(OpCode::Binary, true, &[1; 100]);
    conn.recv_buf().extend_from_slice(&small);
    conn.handle_received(Instant::now());
    assert_eq!(events(&mut conn).len(), 1);

    let frame = masked(OpCode::Binary, true, &vec![7; 3 * base]);
    let mut at = 0;
    let mut starts = Vec::new();
    while at < frame.len() {
        let buf = conn.recv_buf();
        let room = buf.capacity() - buf.len();
        let n = room.min(frame.len() - at).min(base + 1000);
        buf.extend_from_slice(&frame[at..at + n]);
        starts.push(buf.as_ptr() as usize);
        at += n;
        conn.handle_received(Instant::now());
        if at < frame.len() {
            assert!(conn.poll_event().is_none());
        }
    }
    assert!(matches!(conn.poll_event(), Some(Event::Message(m)) if m.len() == 3 * base));
    // Once the buffer has grown to hold the frame, its start stays put.
    let last = *starts.last().unwrap();
    let settled = starts.iter().position(|&s| s == last).unwrap();
    assert!(
        starts[settled..].iter().all(|&s| s == last),
        "the frame moved after the buffer had room for it: {starts:x?}"
    );
    assert!(starts.len() - settled >= 2, "the last reads went in place");
}

// A large frame in progress gets room for its rest, so it arrives in a few
// reads; a declared length alone never reserves more than the read-ahead
// bound (ROBUSTNESS 13).
#[test]
fn read_buffer_reserves_for_the_frame_in_progress_within_a_bound() {
    let base = Config::server().read_buffer_size;
    let spare = |conn: &mut Connection| {
        let buf = conn.recv_buf();
        buf.capacity() - buf.len()
    };

    let mut conn = server();
    assert_eq!(spare(&mut conn), base, "no frame in progress");
    let frame = masked(OpCode::Binary, true, &vec![7; 2 * base]);
    conn.handle_read(&frame[..base], Instant::now());
    assert!(conn.poll_event().is_none());
    assert!(
        spare(&mut conn) >= frame.len() - base,
        "room for the rest of the frame"
    );
    conn.handle_read(&frame[base..], Instant::now());
    assert!(matches!(conn.poll_event(), Some(Event::Message(_))));

    let mut config = Config::server();
    config.max_message_size = 1 << 30;
    config.max_frame_size = 1 << 30;
    let mut conn = server_with(config);
    let mut header = [0; MAX_HEADER_LEN];
    let header_len = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: OpCode::Binary,
        mask: Some(KEY),
        payload_len: 1 << 29,
    }
    .encode(&mut header);
    conn.handle_read(&header[..header_len], Instant::now());
    assert!(conn.poll_event().is_none());
    let reserved = spare(&mut conn);
    assert!(
        reserved <= READ_AHEAD_FACTOR * base + base,
        "a declared 512 MiB frame reserved {reserved} bytes"
    );
}

// ---- framing (ROBUSTNESS 5.2) ---------------------------------------------

// ROBUSTNESS 11.
#[test]
fn msb_length_closes_with_1002_before_payload() {
    let mut conn = server();
    let got = feed(&mut conn, &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(violation(&got), ProtocolError::InvalidPayloadLength);
    assert_eq!(close_code_sent(&mut conn), Some(1002));
}

// ROBUSTNESS 12: accumulated lengths use checked arithmetic.
#[test]
fn message_length_arithmetic_is_checked() {
    let conn = server_with(Config::server().with_max_message_size(usize::MAX));
    assert!(conn.check_message_len(usize::MAX - 1, 5).is_err());
    assert!(conn.check_message_len(usize::MAX - 5, 5).is_ok());
    let mut conn = server();
    let got = feed(
        &mut conn,
        &[0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    );
    assert_eq!(close_code_sent(&mut conn), Some(1009));
    assert!(matches!(
        violation(&got),
        ProtocolError::FrameTooLarge { .. }
    ));
}

// ROBUSTNESS 13: declared length above the limit: 1009 from the header, with
// the read buffer no larger than what arrived.
#[test]
fn oversized_declared_length_closes_from_header() {
    let mut conn = server_with(Config::server().with_max_message_size(1000));
    let got = feed(&mut conn, &[0x82, 0xFE, 0x03, 0xE9]);
    assert_eq!(
        violation(&got),
        ProtocolError::FrameTooLarge {
            len: 1001,
            max: 1000
        }
    );
    assert_eq!(close_code_sent(&mut conn), Some(1009));

    // Continuation frames are checked against the message total from their
    // header, too.
    let mut conn = server_with(Config::server().with_max_message_size(1000));
    let mut wire = masked(OpCode::Binary, false, &[0; 600]);
    wire.extend(&[0x80, 0xFE, 0x01, 0x91, 1, 2, 3, 4]); // continuation header declaring 401
    let got = feed(&mut conn, &wire);
    assert_eq!(
        violation(&got),
        ProtocolError::MessageTooLarge { max: 1000 }
    );
}

// ROBUSTNESS 14.
#[test]
fn reserved_opcode_closes_from_first_byte() {
    let mut conn = server();
    let got = feed(&mut conn, &[0x83]);
    assert_eq!(violation(&got), ProtocolError::ReservedOpcode(3));
    assert_eq!(close_code_sent(&mut conn), Some(1002));
}

// ROBUSTNESS 15.
#[test]
fn reserved_bits_close_with_1002() {
    let mut conn = server();
    let got = feed(&mut conn, &[0x91]);
    assert_eq!(violation(&got), ProtocolError::ReservedBits(1));
    assert_eq!(close_code_sent(&mut conn), Some(1002));
}

// ROBUSTNESS 16: oversized or fragmented control frames are refused and not
// answered.
#[test]
fn bad_control_frames_are_not_echoed() {
    let mut conn = server();
    let got = feed(&mut conn, &masked(OpCode::Ping, true, &[0; 126]));
    assert_eq!(violation(&got), ProtocolError::ControlFrameTooLarge(126));
    let frames = sent(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, OpCode::Close);

    let mut conn = server();
    let got = feed(&mut conn, &masked(OpCode::Ping, false, b"x"));
    assert_eq!(violation(&got), ProtocolError::FragmentedControlFrame);
    assert!(sent(&mut conn).iter().all(|f| f.0 != OpCode::Pong));
}

// ROBUSTNESS 17.
#[test]
fn masking_rules_by_role_and_opt_in_escape_hatch() {
    let mut conn = server();
    let got = feed(&mut conn, &unmasked(OpCode::Text, true, b"x"));
    assert_eq!(violation(&got), ProtocolError::UnmaskedFrame);

    let mut client = Connection::client(Config::client(), Instant::now(), [0; 32]);
    let got = feed(&mut client, &masked(OpCode::Text, true, b"x"));
    assert_eq!(violation(&got), ProtocolError::MaskedFrame);

    let mut config = Config::server();
    config.accept_unmasked_frames = true;
    let mut conn = server_with(config);
    assert_eq!(
        feed(&mut conn, &unmasked(OpCode::Text, true, b"x")),
        vec![Event::Message(Message::text("x"))]
    );
}

// ROBUSTNESS 18: a fresh key per client frame from a CSPRNG.
#[test]
fn client_mask_keys_are_fresh_and_uniform() {
    const FRAMES: usize = 1_000_000;
    let mut conn = Connection::client(Config::client(), Instant::now(), [0x5a; 32]);
    let mut keys = Vec::with_capacity(FRAMES);
    let mut wire = Vec::new();
    for _ in 0..FRAMES {
        conn.send_binary(&[]).unwrap();
        wire.clear();
        while let Some(chunk) = conn.poll_transmit() {
            wire.extend_from_slice(&chunk);
        }
        keys.push(u32::from_be_bytes([wire[2], wire[3], wire[4], wire[5]]));
    }
    assert!(
        keys.windows(2).all(|w| w[0] != w[1]),
        "consecutive frames reused a key"
    );
    // 10^6 draws from 2^32 values: ~116 collisions expected by the birthday
    // bound; a fixed or low-entropy source would collide massively.
    let distinct = keys.iter().collect::<HashSet<_>>().len();
    assert!(distinct > FRAMES - 400, "only {distinct} distinct keys");
    // Every bit set about half the time (binomial sd = 500).
    for bit in 0..32 {
        let ones = keys.iter().filter(|k| *k >> bit & 1 == 1).count();
        assert!(
            ones.abs_diff(FRAMES / 2) < 5_000,
            "bit {bit} set {ones} times"
        );
    }
    // Every byte value about equally often in the low byte (chi-square, 255
    // degrees of freedom; 400 is far past the 99.99th percentile).
    let mut counts = [0f64; 256];
    for key in &keys {
        counts[(*key & 0xFF) as usize] += 1.0;
    }
    let expected = FRAMES as f64 / 256.0;
    let chi2: f64 = counts
        .iter()
        .map(|c| (c - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 400.0, "chi-square {chi2}");
    // Different seeds give different streams.
    let mut other = Connection::client(Config::client(), Instant::now(), [0x5b; 32]);
    other.send_binary(&[]).unwrap();
    let first = other.poll_transmit().unwrap();
    assert_ne!(
        u32::from_be_bytes([first[2], first[3], first[4], first[5]]),
        keys[0]
    );
}

// ROBUSTNESS 19: non-minimal lengths, both settings.
#[test]
fn non_minimal_lengths_both_settings() {
    let mut frame = vec![0x82, 0xFE, 0x00, 0x03];
    frame.extend_from_slice(&KEY);
    frame.extend([1 ^ KEY[0], 2 ^ KEY[1], 3 ^ KEY[2]]);
    let mut conn = server();
    assert_eq!(
        feed(&mut conn, &frame),
        vec![Event::Message(Message::binary(vec![1, 2, 3]))]
    );
    let mut config = Config::server();
    config.reject_non_minimal_lengths = true;
    let mut conn = server_with(config);
    assert_eq!(
        violation(&feed(&mut conn, &frame)),
        ProtocolError::NonMinimalLength
    );
    assert_eq!(close_code_sent(&mut conn), Some(1002));
}

// ---- messages (ROBUSTNESS 5.3) -------------------------------------------

// ROBUSTNESS 20.
#[test]
fn continuation_rules() {
    let mut conn = server();
    let got = feed(&mut conn, &masked(OpCode::Continuation, true, b"x"));
    assert_eq!(violation(&got), ProtocolError::UnexpectedContinuation);

    let mut conn = server();
    let mut wire = masked(OpCode::Text, false, b"a");
    wire.extend(masked(OpCode::Text, true, b"b"));
    let got = feed(&mut conn, &wire);
    assert_eq!(violation(&got), ProtocolError::ExpectedContinuation);
    assert_eq!(close_code_sent(&mut conn), Some(1002));
}

// ROBUSTNESS 21: endless fragments trip the size limit; an optional assembly
// deadline closes with 1008.
#[test]
fn endless_fragments_hit_the_size_limit_and_deadline() {
    let mut config = Config::server().with_max_message_size(10_000);
    config.max_fragments = usize::MAX;
    let mut conn = server_with(config);
    let mut got = feed(&mut conn, &masked(OpCode::Binary, false, &[0; 100]));
    for _ in 0..200 {
        got = feed(&mut conn, &masked(OpCode::Continuation, false, &[0; 100]));
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(
        violation(&got),
        ProtocolError::MessageTooLarge { max: 10_000 }
    );

    let start = Instant::now();
    let mut config = Config::server();
    config.fragment_timeout = Some(Duration::from_secs(30));
    let mut conn = Connection::server(config, start);
    conn.handle_read(&masked(OpCode::Binary, false, &[1]), start);
    assert!(events(&mut conn).is_empty());
    assert_eq!(
        conn.poll_timeout(),
        Some(start + Duration::from_secs(20)),
        "keepalive first"
    );
    conn.handle_read(
        &masked(OpCode::Continuation, false, &[1]),
        start + Duration::from_secs(19),
    );
    assert!(events(&mut conn).is_empty());
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(30)));
    conn.handle_timeout(start + Duration::from_secs(30));
    assert_eq!(
        violation(&events(&mut conn)),
        ProtocolError::FragmentTimeout
    );
    assert_eq!(close_code_sent(&mut conn), Some(1008));
}

// ROBUSTNESS 22: floods of 0- and 1-byte fragments hit the count cap with
// memory that stays small.
#[test]
fn tiny_fragment_floods_are_capped() {
    for size in [0usize, 1] {
        let mut conn = server();
        let mut wire = masked(OpCode::Binary, false, &vec![0; size]);
        for _ in 0..100_000 {
            wire.extend(masked(OpCode::Continuation, false, &vec![0; size]));
        }
        conn.handle_read(&wire, Instant::now());
        let got = events(&mut conn);
        assert_eq!(
            violation(&got),
            ProtocolError::TooManyFragments { max: 1024 }
        );
        assert_eq!(close_code_sent(&mut conn), Some(1008));
        assert!(conn.incoming.is_none(), "reassembly state released");
        assert!(conn.read_buf.is_empty(), "unread input discarded");
    }
    // With the count cap lifted, 10^5 one-byte fragments pin no more than
    // their payload: reassembly copies into one contiguous buffer, so a
    // fragment carries no per-fragment overhead.
    let mut config = Config::server();
    config.max_fragments = usize::MAX;
    let mut conn = server_with(config);
    let mut wire = masked(OpCode::Binary, false, &[1]);
    for _ in 0..100_000 {
        wire.extend(masked(OpCode::Continuation, false, &[1]));
    }
    assert!(feed(&mut conn, &wire).is_empty());
    let incoming = conn.incoming.as_ref().expect("message open");
    assert_eq!((incoming.len, incoming.fragments), (100_001, 100_001));
    assert!(
        incoming.buffer.capacity() <= 2 * 100_001 + 64,
        "{}",
        incoming.buffer.capacity()
    );
    assert!(
        conn.read_buf.is_empty(),
        "every complete frame was consumed"
    );

    // Within the cap, a message of many tiny fragments reassembles into one
    // buffer no larger than its payload needs.
    let mut conn = server();
    let mut wire = masked(OpCode::Binary, false, &[7]);
    for _ in 0..1022 {
        wire.extend(masked(OpCode::Continuation, false, &[7]));
    }
    wire.extend(masked(OpCode::Continuation, true, &[7]));
    let got = feed(&mut conn, &wire);
    assert_eq!(got, vec![Event::Message(Message::binary(vec![7; 1024]))]);
}

// ROBUSTNESS 23: invalid UTF-8 closes with 1007, failing on the first bad
// fragment, even before that frame is complete; split code points pass.
#[test]
fn invalid_utf8_fails_fast() {
    for bad in [
        &[0xc0, 0xaf][..],         // overlong
        &[0xed, 0xa0, 0x80],       // surrogate
        &[0xf4, 0x90, 0x80, 0x80], // > U+10FFFF
        &[0xce, 0xba, 0xe1],       // truncated at FIN
    ] {
        let mut conn = server();
        let got = feed(&mut conn, &masked(OpCode::Text, true, bad));
        assert_eq!(violation(&got), ProtocolError::InvalidUtf8, "{bad:x?}");
        assert_eq!(close_code_sent(&mut conn), Some(1007));
    }

    // Autobahn 6.4.1: the second fragment is bad; the third never matters.
    let mut conn = server();
    let good = [
        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5,
    ];
    assert!(feed(&mut conn, &masked(OpCode::Text, false, &good)).is_empty());
    let got = feed(
        &mut conn,
        &masked(OpCode::Continuation, false, &[0xf4, 0x90, 0x80, 0x80]),
    );
    assert_eq!(violation(&got), ProtocolError::InvalidUtf8);

    // Autobahn 6.4.3: one frame arriving in pieces fails on the piece with
    // the bad bytes, before the frame is complete.
    let mut payload = good.to_vec();
    payload.extend([0xf4, 0x90, 0x80, 0x80]);
    payload.extend(b"edited");
    let wire = masked(OpCode::Text, true, &payload);
    let header = 6;
    let mut conn = server();
    assert!(feed(&mut conn, &wire[..header + good.len()]).is_empty());
    let got = feed(
        &mut conn,
        &wire[header + good.len()..header + good.len() + 2],
    );
    assert_eq!(violation(&got), ProtocolError::InvalidUtf8);

    // Code points split across fragments are fine (Autobahn 6.2).
    let text = "κόσμε😀".as_bytes();
    let mut conn = server();
    let mut wire = Vec::new();
    for (i, byte) in text.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        wire.extend(masked(opcode, i + 1 == text.len(), &[*byte]));
    }
    assert_eq!(
        feed(&mut conn, &wire),
        vec![Event::Message(Message::text("κόσμε😀"))]
    );
}

// ---- lifecycle (ROBUSTNESS 5.5) -------------------------------------------

// ROBUSTNESS 31: a peer that stops reading fills the buffer to its cap, then
// sends are refused (or the connection is closed, per policy).
#[test]
fn peer_that_stops_reading_gets_backpressure() {
    let mut config = Config::server();
    config.max_outgoing_buffer = 10_000;
    let mut conn = server_with(config.clone());
    let results: Vec<_> = (0..20).map(|_| conn.send_binary(&[0; 1000])).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 9);
    assert!(matches!(results[9], Err(SendRefused::Backpressure(b)) if b.limit == 10_000));
    assert!(conn.transmit_len() <= 10_000);
    assert!(conn.is_open(), "Reject keeps the connection");
    // Draining makes room again.
    let n = conn.transmit_len();
    conn.advance_transmit(n);
    conn.send_binary(&[0; 1000]).unwrap();

    // One message larger than the cap goes out when nothing is queued.
    let mut conn = server_with(config.clone());
    conn.send_binary(&[0; 50_000]).unwrap();

    config.backpressure = BackpressurePolicy::Close {
        code: CloseCode::TRY_AGAIN_LATER,
    };
    let mut conn = server_with(config);
    for _ in 0..20 {
        let _ = conn.send_binary(&[0; 1000]);
    }
    let got = events(&mut conn);
    let closed = closed_by(&got);
    assert_eq!(
        (closed.code, &closed.cause),
        (CloseCode::TRY_AGAIN_LATER, &CloseCause::Backpressure)
    );
    assert_eq!(close_code_sent(&mut conn), Some(1013));
    assert_eq!(
        conn.send_text("x"),
        Err(SendRefused::Usage(UsageError::Closed))
    );
}

// ROBUSTNESS 32: every ping is answered while the peer reads (Autobahn
// 2.10); a flood from a peer that does not read gets at most PONG_BUDGET of
// pongs plus one for the latest ping. Pongs are never an error; an optional
// rate limit closes with 1008.
#[test]
fn pings_are_answered_and_floods_are_bounded() {
    let mut conn = server();
    let mut wire = Vec::new();
    for i in 0..10u32 {
        wire.extend(masked(
            OpCode::Ping,
            true,
            format!("payload-{i}").as_bytes(),
        ));
    }
    assert_eq!(feed(&mut conn, &wire).len(), 10);
    let pongs: Vec<_> = sent(&mut conn)
        .into_iter()
        .map(|(op, _, p)| (op, p))
        .collect();
    let expected: Vec<_> = (0..10)
        .map(|i| (OpCode::Pong, Bytes::from(format!("payload-{i}"))))
        .collect();
    assert_eq!(pongs, expected);

    let mut conn = server();
    let mut wire = Vec::new();
    for i in 0..10_000u32 {
        wire.extend(masked(OpCode::Ping, true, &i.to_be_bytes()));
    }
    assert_eq!(feed(&mut conn, &wire).len(), 10_000);
    // Nothing was written meanwhile (the peer does not read).
    let queued = conn.out.len();
    assert!(queued <= PONG_BUDGET, "{queued} bytes of pongs queued");
    let frames = sent(&mut conn);
    assert_eq!(frames.len(), PONG_BUDGET / 6 + 1);
    assert_eq!(
        frames.last().unwrap().2,
        Bytes::copy_from_slice(&9_999u32.to_be_bytes()),
        "the latest ping is answered"
    );

    // Pings while the send buffer is full wait, bounded, for room.
    let mut config = Config::server();
    config.max_outgoing_buffer = 100;
    let mut conn = server_with(config);
    conn.send_binary(&[0; 200]).unwrap();
    conn.pong_bytes = PONG_BUDGET;
    feed(&mut conn, &wire);
    assert_eq!(
        conn.transmit_len(),
        204,
        "no pong while the buffer is over its cap"
    );
    let n = conn.transmit_len();
    conn.advance_transmit(n);
    assert_eq!(conn.transmit_len(), 6, "the latest pong once there is room");

    let mut config = Config::server();
    config.ping_rate_limit = Some(100);
    let mut conn = server_with(config);
    let got = feed(&mut conn, &wire);
    assert_eq!(violation(&got), ProtocolError::PingFlood);
    assert_eq!(got.len(), 101);
    assert_eq!(close_code_sent(&mut conn), Some(1008));
}

#[test]
fn control_events_decode_ahead_and_keep_messages_in_order() {
    let mut conn = server();
    let mut wire = masked(OpCode::Ping, true, b"1");
    wire.extend(masked(OpCode::Text, true, b"msg"));
    wire.extend(masked(OpCode::Ping, true, b"2"));
    wire.extend(masked(OpCode::Binary, false, &[1]));
    wire.extend(masked(OpCode::Pong, true, b"3"));
    wire.extend(masked(OpCode::Continuation, true, &[2]));
    conn.handle_read(&wire, Instant::now());
    assert_eq!(
        conn.poll_control_event(),
        Some(Event::Ping(Bytes::from_static(b"1")))
    );
    assert_eq!(
        conn.poll_control_event(),
        Some(Event::Ping(Bytes::from_static(b"2"))),
        "a ping behind a message is answered while the application is busy"
    );
    assert_eq!(
        conn.poll_control_event(),
        Some(Event::Pong(Bytes::from_static(b"3")))
    );
    assert_eq!(conn.poll_control_event(), None);
    assert_eq!(conn.buffered_input(), 5, "held messages count as buffered");
    assert_eq!(
        sent(&mut conn),
        vec![
            (OpCode::Pong, true, Bytes::from_static(b"1")),
            (OpCode::Pong, true, Bytes::from_static(b"2")),
        ]
    );
    assert_eq!(
        events(&mut conn),
        vec![
            Event::Message(Message::text("msg")),
            Event::Message(Message::binary(vec![1, 2])),
        ]
    );
    assert_eq!(conn.buffered_input(), 0);
    // A reserved opcode found ahead closes once the application gets to it.
    conn.handle_read(&[0x83, 0x80], Instant::now());
    assert_eq!(conn.poll_control_event(), None);
    assert!(conn.is_open());
    assert!(matches!(conn.poll_event(), Some(Event::Closed(_))));
}

// Issue: frames that arrived are delivered and a close that arrived counts,
// whatever order end of stream and decoding happen in.
#[test]
fn end_of_stream_before_decoding_loses_nothing() {
    let now = Instant::now();
    let mut close = vec![0x03, 0xE8];
    close.extend_from_slice(b"bye");
    let mut wire = unmasked(OpCode::Text, true, b"one");
    wire.extend(unmasked(OpCode::Text, true, b"two"));
    wire.extend(unmasked(OpCode::Close, true, &close));

    // The peer's close behind two messages, then end of stream.
    let mut conn = Connection::client(Config::client(), now, [1; 32]);
    conn.handle_read(&wire, now);
    conn.handle_transport_closed(now);
    let got = events(&mut conn);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], Event::Message(Message::text("one")));
    assert_eq!(got[1], Event::Message(Message::text("two")));
    assert_eq!(
        closed_by(&got),
        &Closed {
            code: CloseCode::NORMAL,
            reason: "bye".into(),
            cause: CloseCause::Handshake {
                initiated_by: Side::Remote
            },
        }
    );

    // Our close answered behind the peer's last messages: a completed
    // handshake, not 1006.
    let mut conn = Connection::client(Config::client(), now, [1; 32]);
    conn.close(CloseCode::NORMAL, "bye", now).unwrap();
    conn.handle_read(&wire, now);
    conn.handle_transport_closed(now);
    assert_eq!(conn.poll_timeout(), None, "no timer after end of stream");
    let got = events(&mut conn);
    assert_eq!(got.len(), 3);
    assert_eq!(
        closed_by(&got).cause,
        CloseCause::Handshake {
            initiated_by: Side::Local
        }
    );

    // No close at all, and half a frame at the end: the whole messages,
    // then 1006.
    let mut conn = server();
    let mut wire = masked(OpCode::Text, true, b"a");
    wire.extend(masked(OpCode::Text, true, b"b"));
    wire.extend(&masked(OpCode::Text, true, b"cut short")[..5]);
    conn.handle_read(&wire, now);
    conn.handle_transport_closed(now);
    let got = events(&mut conn);
    assert_eq!(
        got[..2],
        [
            Event::Message(Message::text("a")),
            Event::Message(Message::text("b"))
        ]
    );
    assert_eq!(closed_by(&got).cause, CloseCause::TransportClosed);
    assert_eq!(closed_by(&got).code, CloseCode::ABNORMAL);

    // The same when the end comes while the application is busy and the
    // messages were decoded ahead.
    let mut conn = server();
    conn.handle_read(&wire, now);
    assert_eq!(conn.poll_control_event(), None);
    conn.handle_transport_closed(now);
    assert_eq!(conn.poll_control_event(), None);
    let got = events(&mut conn);
    assert_eq!(got.len(), 3);
    assert_eq!(closed_by(&got).cause, CloseCause::TransportClosed);
}

// A close behind messages the application has not taken yet is seen while
// it is busy, but answered only after its replies to those messages.
#[test]
fn a_close_found_ahead_follows_the_replies_to_the_messages_before_it() {
    let start = Instant::now();
    let mut conn = Connection::server(Config::server(), start);
    let mut wire = masked(OpCode::Text, true, b"m1");
    wire.extend(masked(OpCode::Text, true, b"m2"));
    wire.extend(masked(OpCode::Close, true, &[0x03, 0xE8]));
    conn.handle_read(&wire[..8], start);
    assert_eq!(conn.poll_event(), Some(Event::Message(Message::text("m1"))));
    // The application is busy with m1; the rest arrives.
    conn.handle_read(&wire[8..], start);
    assert_eq!(conn.poll_control_event(), None);
    assert!(conn.is_open(), "our close must not overtake the replies");
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(10)));
    conn.send_text("reply to m1").unwrap();
    assert_eq!(conn.poll_event(), Some(Event::Message(Message::text("m2"))));
    conn.send_text("reply to m2").unwrap();
    let got = events(&mut conn);
    assert_eq!(closed_by(&got).code, CloseCode::NORMAL);
    let frames = sent(&mut conn);
    let opcodes: Vec<_> = frames.iter().map(|f| f.0).collect();
    assert_eq!(opcodes, [OpCode::Text, OpCode::Text, OpCode::Close]);
    assert_eq!(frames[1].2, Bytes::from_static(b"reply to m2"));

    // An application that never gets to it: the close is answered at the
    // close deadline, and the message before it is still delivered.
    let mut conn = Connection::server(Config::server(), start);
    conn.handle_read(&wire[..8], start);
    let _ = conn.poll_event();
    conn.handle_read(&wire[8..], start);
    assert_eq!(conn.poll_control_event(), None);
    conn.handle_timeout(start + Duration::from_secs(9));
    assert!(conn.is_open());
    conn.handle_timeout(start + Duration::from_secs(10));
    assert!(!conn.is_open());
    assert_eq!(close_code_sent(&mut conn), Some(1000));
    assert_eq!(
        conn.send_text("late"),
        Err(SendRefused::Usage(UsageError::Closed))
    );
    let got = events(&mut conn);
    assert_eq!(got[0], Event::Message(Message::text("m2")));
    assert_eq!(
        closed_by(&got).cause,
        CloseCause::Handshake {
            initiated_by: Side::Remote
        }
    );

    // A violation found ahead waits the same way, and nothing after it is
    // kept.
    let mut conn = Connection::server(Config::server(), start);
    conn.handle_read(&wire[..8], start);
    let _ = conn.poll_event();
    let mut bad = masked(OpCode::Text, true, b"m2");
    bad.extend([0x83, 0x80]);
    conn.handle_read(&bad, start);
    assert_eq!(conn.poll_control_event(), None);
    conn.handle_read(&masked(OpCode::Text, true, b"after"), start);
    assert_eq!(conn.buffered_input(), 2, "only m2 is kept");
    conn.send_text("reply to m1").unwrap();
    let got = events(&mut conn);
    assert_eq!(got[0], Event::Message(Message::text("m2")));
    assert_eq!(violation(&got), ProtocolError::ReservedOpcode(3));
    let opcodes: Vec<_> = sent(&mut conn).iter().map(|f| f.0).collect();
    assert_eq!(opcodes, [OpCode::Text, OpCode::Close]);
}

// Issue: a slow reader with short keepalive timers is not taken for dead
// while the peer keeps talking.
#[test]
fn received_bytes_keep_a_busy_connection_alive() {
    let start = Instant::now();
    let ms = Duration::from_millis;
    let mut config = Config::client();
    config.ping_interval = Some(ms(100));
    config.pong_timeout = ms(100);
    let mut conn = Connection::client(config, start, [2; 32]);
    conn.handle_read(&unmasked(OpCode::Text, true, b"first"), start);
    let _ = conn.poll_event();
    // The application waits 1 s before asking for more. The peer sends a
    // message, then answers our ping behind it.
    for step in 1..=10 {
        let at = start + ms(100 * step);
        conn.handle_timeout(at);
        let pings: Vec<_> = sent(&mut conn)
            .into_iter()
            .filter(|f| f.0 == OpCode::Ping)
            .collect();
        let mut wire = unmasked(OpCode::Text, true, b"more");
        for (_, _, payload) in pings {
            wire.extend(unmasked(OpCode::Pong, true, &payload));
        }
        conn.handle_read(&wire, at + ms(10));
        while let Some(event) = conn.poll_control_event() {
            assert!(matches!(event, Event::Pong(_)), "{event:?}");
        }
        assert!(conn.is_open(), "closed at step {step}");
    }
    let got = events(&mut conn);
    assert_eq!(got.len(), 10);
    assert!(
        got.iter()
            .all(|e| *e == Event::Message(Message::text("more")))
    );

    // Bytes alone (part of a large frame, no pong yet) count as life.
    let mut config = Config::server();
    config.ping_interval = Some(ms(100));
    config.pong_timeout = ms(100);
    let mut conn = Connection::server(config, start);
    conn.handle_timeout(start + ms(100));
    assert_eq!(sent(&mut conn)[0].0, OpCode::Ping);
    let big = masked(OpCode::Binary, true, &[0; 1000]);
    conn.handle_read(&big[..500], start + ms(150));
    conn.handle_timeout(start + ms(200));
    assert!(conn.is_open(), "bytes after the ping prove the peer alive");
    conn.handle_timeout(start + ms(250));
    assert_eq!(sent(&mut conn)[0].0, OpCode::Ping, "the next ping");
    conn.handle_timeout(start + ms(350));
    assert!(!conn.is_open(), "and silence after it does not");
}

// Durations too large to add to an `Instant` mean "never", not a panic.
#[test]
fn huge_durations_mean_never() {
    let start = Instant::now();
    let mut config = Config::server();
    config.ping_interval = Some(Duration::MAX);
    config.pong_timeout = Duration::MAX;
    config.idle_timeout = Some(Duration::MAX);
    config.fragment_timeout = Some(Duration::MAX);
    config.close_timeout = Duration::MAX;
    let mut conn = Connection::server(config, start);
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_read(&masked(OpCode::Text, false, b"part"), start);
    let _ = events(&mut conn);
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(start + Duration::from_secs(1 << 40));
    assert!(conn.is_open());
    let mut wire = masked(OpCode::Continuation, true, b"");
    wire.extend(masked(OpCode::Close, true, &[0x03, 0xE8]));
    conn.handle_read(&wire, start);
    assert_eq!(conn.poll_control_event(), None);
    assert_eq!(conn.poll_timeout(), None);
    let _ = events(&mut conn);
    let mut conn = Connection::server(conn.config().clone(), start);
    conn.close(CloseCode::NORMAL, "", start).unwrap();
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(start + Duration::from_secs(1 << 40));
    assert!(!conn.is_closed());
}

// ROBUSTNESS 33: a peer that goes silent is detected by the keepalive ping's
// deadline, or by the idle timeout when pings are off.
#[test]
fn silent_peer_is_detected() {
    let start = Instant::now();
    let mut conn = Connection::server(Config::server(), start);
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(20)));
    conn.handle_timeout(start + Duration::from_secs(20));
    let frames = sent(&mut conn);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].0, OpCode::Ping);
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(40)));
    conn.handle_timeout(start + Duration::from_secs(39));
    assert!(events(&mut conn).is_empty());
    conn.handle_timeout(start + Duration::from_secs(40));
    let got = events(&mut conn);
    let closed = closed_by(&got);
    assert_eq!(closed.code, CloseCode::ABNORMAL);
    assert_eq!(closed.cause, CloseCause::Timeout(Timeout::KeepAlive));
    assert_eq!(conn.poll_timeout(), None);

    let mut config = Config::server();
    config.ping_interval = None;
    let mut conn = Connection::server(config, start);
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(60)));
    conn.handle_read(
        &masked(OpCode::Text, true, b"x"),
        start + Duration::from_secs(50),
    );
    let _ = events(&mut conn);
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(110)));
    conn.handle_timeout(start + Duration::from_secs(110));
    let got = events(&mut conn);
    assert_eq!(closed_by(&got).cause, CloseCause::Timeout(Timeout::Idle));
    assert_eq!(close_code_sent(&mut conn), Some(1001));
}

#[test]
fn any_frame_answers_the_keepalive_ping() {
    let start = Instant::now();
    let mut conn = Connection::server(Config::server(), start);
    conn.handle_timeout(start + Duration::from_secs(20));
    let _ = sent(&mut conn);
    conn.handle_read(
        &masked(OpCode::Pong, true, &1u64.to_be_bytes()),
        start + Duration::from_secs(25),
    );
    let _ = events(&mut conn);
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(45)));
    conn.handle_timeout(start + Duration::from_secs(40));
    assert!(conn.is_open());
}

// ROBUSTNESS 34: close frame edge cases.
#[test]
fn close_frame_edge_cases() {
    let cases: &[(&[u8], ProtocolError, u16)] = &[
        (&[0x03], ProtocolError::InvalidClosePayload, 1002),
        (&[0x03, 0xE7], ProtocolError::InvalidCloseCode(999), 1002),
        (&[0x03, 0xED], ProtocolError::InvalidCloseCode(1005), 1002),
        (&[0x03, 0xEE], ProtocolError::InvalidCloseCode(1006), 1002),
        (&[0x03, 0xF7], ProtocolError::InvalidCloseCode(1015), 1002),
        (&[0x03, 0xF8], ProtocolError::InvalidCloseCode(1016), 1002),
        (&[0x0B, 0xB7], ProtocolError::InvalidCloseCode(2999), 1002),
        (&[0x13, 0x88], ProtocolError::InvalidCloseCode(5000), 1002),
        (&[0x03, 0xE8, 0xff], ProtocolError::InvalidCloseReason, 1007),
    ];
    for (payload, error, code) in cases {
        let mut conn = server();
        let got = feed(&mut conn, &masked(OpCode::Close, true, payload));
        assert_eq!(&violation(&got), error);
        assert_eq!(close_code_sent(&mut conn), Some(*code));
    }
}

#[test]
fn peer_close_is_echoed_and_later_data_ignored() {
    let mut conn = server();
    let mut wire = masked(OpCode::Close, true, &[0x0F, 0xA0, b'b', b'y', b'e']);
    wire.extend(masked(OpCode::Text, true, b"after close"));
    let got = feed(&mut conn, &wire);
    assert_eq!(
        got,
        vec![Event::Closed(Closed {
            code: CloseCode::new(4000),
            reason: "bye".into(),
            cause: CloseCause::Handshake {
                initiated_by: Side::Remote
            },
        })]
    );
    assert_eq!(
        sent(&mut conn),
        vec![(OpCode::Close, true, Bytes::from_static(&[0x0F, 0xA0]))]
    );
    assert!(feed(&mut conn, &masked(OpCode::Text, true, b"more")).is_empty());
    assert_eq!(
        conn.send_text("x"),
        Err(SendRefused::Usage(UsageError::Closed))
    );

    // An empty close is answered with an empty close and reported as 1005.
    let mut conn = server();
    let got = feed(&mut conn, &masked(OpCode::Close, true, &[]));
    assert_eq!(closed_by(&got).code, CloseCode::NO_STATUS);
    assert_eq!(sent(&mut conn), vec![(OpCode::Close, true, Bytes::new())]);
}

#[test]
fn no_input_is_pending_after_the_connection_closes() {
    let mut conn = server();
    conn.handle_read(&masked(OpCode::Close, true, &[0x03, 0xE8]), Instant::now());
    assert!(matches!(conn.poll_event(), Some(Event::Closed(_))));
    assert_eq!(conn.buffered_input(), 0);
    assert_eq!(conn.poll_control_event(), None);
    conn.handle_read(&masked(OpCode::Text, true, b"late"), Instant::now());
    assert_eq!(conn.buffered_input(), 0, "input after the close is dropped");
}

#[test]
fn local_close_waits_for_the_peer_then_times_out() {
    let start = Instant::now();
    let mut conn = Connection::server(Config::server(), start);
    assert_eq!(
        conn.close(CloseCode::ABNORMAL, "", start),
        Err(SendRefused::Usage(UsageError::InvalidCloseCode(1006)))
    );
    conn.close(CloseCode::GOING_AWAY, "shutdown", start)
        .unwrap();
    assert_eq!(close_code_sent(&mut conn), Some(1001));
    assert_eq!(
        conn.send_text("x"),
        Err(SendRefused::Usage(UsageError::Closed))
    );
    // Data the peer sent before seeing our close is still delivered.
    let got = feed(&mut conn, &masked(OpCode::Text, true, b"late"));
    assert_eq!(got, vec![Event::Message(Message::text("late"))]);
    assert_eq!(conn.poll_timeout(), Some(start + Duration::from_secs(10)));
    conn.handle_timeout(start + Duration::from_secs(10));
    let got = events(&mut conn);
    assert_eq!(
        closed_by(&got).cause,
        CloseCause::Timeout(Timeout::CloseHandshake)
    );

    let mut conn = Connection::server(Config::server(), start);
    conn.close(CloseCode::NORMAL, "", start).unwrap();
    let got = feed(&mut conn, &masked(OpCode::Close, true, &[0x03, 0xE8]));
    assert_eq!(
        closed_by(&got).cause,
        CloseCause::Handshake {
            initiated_by: Side::Local
        }
    );
    let frames = sent(&mut conn);
    assert_eq!(frames.len(), 1, "exactly one close frame sent");
}

#[test]
fn transport_loss_is_reported_once() {
    let mut conn = server();
    conn.handle_transport_closed(Instant::now());
    let got = events(&mut conn);
    assert_eq!(closed_by(&got).cause, CloseCause::TransportClosed);
    conn.handle_transport_closed(Instant::now());
    assert!(events(&mut conn).is_empty());
}

#[test]
fn sending_in_fragments() {
    let mut conn = server();
    conn.send_fragment(Message::text("he"), false).unwrap();
    assert_eq!(
        conn.send_text("x"),
        Err(SendRefused::Usage(UsageError::MessageInProgress))
    );
    assert_eq!(
        conn.send_fragment(Message::binary(vec![1]), false),
        Err(SendRefused::Usage(UsageError::FragmentKindMismatch))
    );
    conn.ping(b"mid").unwrap();
    conn.send_fragment(Message::text("llo"), true).unwrap();
    conn.send_text("next").unwrap();
    let frames = sent(&mut conn);
    let ops: Vec<_> = frames.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(
        ops,
        vec![
            (OpCode::Text, false),
            (OpCode::Ping, true),
            (OpCode::Continuation, true),
            (OpCode::Text, true)
        ]
    );
    assert_eq!(
        conn.ping(&[0; 126]),
        Err(SendRefused::Usage(UsageError::ControlPayloadTooLarge(126)))
    );
}

#[test]
fn shrink_buffers_releases_idle_memory() {
    let mut conn = server();
    let _ = feed(&mut conn, &masked(OpCode::Text, true, b"x"));
    conn.send_text("y").unwrap();
    let n = conn.transmit_len();
    conn.advance_transmit(n);
    assert!(conn.read_buf.capacity() > 0);
    conn.shrink_buffers();
    assert_eq!(conn.read_buf.capacity(), 0);
    assert_eq!(
        feed(&mut conn, &masked(OpCode::Text, true, b"z")),
        vec![Event::Message(Message::text("z"))]
    );
}

#[test]
fn idle_connections_release_compression_state_that_resets_per_message() {
    use crate::deflate::{DeflateConfig, DeflateParams};
    let now = Instant::now();
    let agreed = |reset| DeflateParams {
        server_no_context_takeover: reset,
        client_no_context_takeover: reset,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    };
    let config = DeflateConfig {
        threshold: 0,
        ..DeflateConfig::default()
    };
    for reset in [true, false] {
        let mut client =
            Connection::client(Config::client(), now, [1; 32]).with_deflate(agreed(reset), &config);
        let mut server = server().with_deflate(agreed(reset), &config);
        let state = |conn: &Connection| conn.deflate.as_ref().unwrap().allocated();
        assert_eq!(state(&server), (false, false), "nothing before first use");
        client.send_text(&"hello ".repeat(100)).unwrap();
        while let Some(bytes) = client.poll_transmit() {
            server.handle_read(&bytes, now);
        }
        assert!(matches!(events(&mut server)[..], [Event::Message(_)]));
        server.send_text(&"world ".repeat(100)).unwrap();
        while server.poll_transmit().is_some() {}
        assert_eq!(state(&server), (true, true));
        server.shrink_buffers();
        // State that is reset after every message anyway goes; a context
        // that carries over must stay.
        assert_eq!(state(&server), (!reset, !reset), "reset {reset}");
        // A half-sent compressed message keeps its compressor.
        server
            .send_fragment(Message::text("part one ".repeat(50)), false)
            .unwrap();
        server.shrink_buffers();
        assert!(state(&server).0);
    }
}

// A message encoded once goes to many connections as the same bytes, and
// reads back as the message; clients may not send one.
#[test]
fn encoded_messages_fan_out_as_the_same_bytes() {
    for size in [5, 300, 70_000] {
        let message = Message::text("x".repeat(size));
        let encoded = EncodedMessage::new(&message);
        let mut servers: Vec<Connection> = (0..3).map(|_| server()).collect();
        let mut wires = Vec::new();
        for conn in &mut servers {
            conn.send_text("before").unwrap();
            conn.send_encoded(&encoded).unwrap();
            let mut wire = Vec::new();
            while let Some(chunk) = conn.poll_transmit() {
                wire.extend_from_slice(&chunk);
            }
            wires.push(wire);
        }
        assert!(wires.windows(2).all(|w| w[0] == w[1]));
        let mut client = Connection::client(Config::client(), Instant::now(), [3; 32]);
        client.handle_read(&wires[0], Instant::now());
        assert_eq!(
            client.poll_event(),
            Some(Event::Message(Message::text("before")))
        );
        assert_eq!(client.poll_event(), Some(Event::Message(message)));
    }
    let encoded = EncodedMessage::new(&Message::text("x"));
    let mut client = Connection::client(Config::client(), Instant::now(), [3; 32]);
    assert_eq!(
        client.send_encoded(&encoded),
        Err(SendRefused::Usage(UsageError::EncodedFromClient))
    );
    // The buffer limit holds for encoded messages too.
    let mut config = Config::server();
    config.max_outgoing_buffer = 100;
    let mut conn = server_with(config);
    let big = EncodedMessage::new(&Message::binary(vec![0; 80]));
    conn.send_encoded(&big).unwrap();
    assert!(matches!(
        conn.send_encoded(&big),
        Err(SendRefused::Backpressure(_))
    ));
}

#[test]
fn sending_by_reference_matches_sending_by_value_and_keeps_the_message() {
    let small = Message::text("small");
    let large = Message::binary(vec![7u8; 10_000]);
    for role in [Role::Server, Role::Client] {
        let make = || match role {
            Role::Server => server(),
            Role::Client => Connection::client(Config::client(), Instant::now(), [9; 32]),
        };
        let (mut by_value, mut by_ref) = (make(), make());
        for message in [&small, &large] {
            by_value.send(message.clone()).unwrap();
            by_ref.send_ref(message).unwrap();
            by_value.send_uncompressed(message.clone()).unwrap();
            by_ref.send_uncompressed_ref(message).unwrap();
        }
        assert_eq!(sent(&mut by_value), sent(&mut by_ref), "{role:?}");
    }
    assert_eq!(
        small.as_text(),
        Some("small"),
        "the caller keeps its message"
    );
    assert_eq!(large.len(), 10_000);

    // Refused the same way: backpressure, and a fragmented message open.
    let mut config = Config::server();
    config.max_outgoing_buffer = 100;
    let mut conn = server_with(config);
    conn.send_ref(&Message::binary(vec![0u8; 90])).unwrap();
    assert!(matches!(
        conn.send_ref(&Message::binary(vec![0u8; 90])),
        Err(SendRefused::Backpressure(_))
    ));
    let mut conn = server();
    conn.send_fragment(Message::text("a"), false).unwrap();
    assert!(matches!(
        conn.send_ref(&small),
        Err(SendRefused::Usage(UsageError::MessageInProgress))
    ));
}
