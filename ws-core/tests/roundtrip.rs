//! Property tests: whatever one role sends arrives unchanged at the other,
//! under any chunking of the bytes; the same for handshakes.

mod common;

use std::time::Instant;

use bytes::BytesMut;
use common::Pair;
use proptest::prelude::*;
use ws_core::deflate::{Compression, DeflateConfig};
use ws_core::handshake::{Accept, ClientHandshake, ClientRequest, ServerHandshake};
use ws_core::{Config, Event, Fragment, HandshakeLimits, Message, ReceiveMode};

#[derive(Debug, Clone)]
enum Item {
    Whole(Message),
    /// A whole message sent with `send_uncompressed`.
    Plain(Message),
    /// A message sent in pieces (at least one).
    Pieces(Vec<Message>),
    Ping(Vec<u8>),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", "[a-z😀κόσμε]{0,200}", Just(String::new())]
}

fn binary() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 100..3000),
        (126usize..70_000).prop_map(|n| vec![0xAB; n]),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        binary().prop_map(|b| Item::Plain(Message::binary(b))),
        text().prop_map(|t| Item::Whole(Message::text(t))),
        binary().prop_map(|b| Item::Whole(Message::binary(b))),
        prop::collection::vec(text(), 1..5)
            .prop_map(|parts| Item::Pieces(parts.into_iter().map(Message::text).collect())),
        prop::collection::vec(binary(), 1..5)
            .prop_map(|parts| Item::Pieces(parts.into_iter().map(Message::binary).collect())),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(Item::Ping),
    ]
}

fn joined(parts: &[Message]) -> Message {
    let bytes: Vec<u8> = parts.iter().flat_map(|p| p.as_bytes().to_vec()).collect();
    if parts[0].is_text() {
        Message::text(String::from_utf8(bytes).unwrap())
    } else {
        Message::binary(bytes)
    }
}

fn send(conn: &mut ws_core::Connection, items: &[Item]) {
    for item in items {
        match item {
            Item::Whole(message) => conn.send(message.clone()).unwrap(),
            Item::Plain(message) => conn.send_uncompressed(message.clone()).unwrap(),
            Item::Pieces(parts) => {
                for (i, part) in parts.iter().enumerate() {
                    conn.send_fragment(part.clone(), i + 1 == parts.len())
                        .unwrap();
                }
            }
            Item::Ping(payload) => conn.ping(payload).unwrap(),
        }
    }
}

/// What the receiver should report, in order.
fn expected(items: &[Item]) -> Vec<Event> {
    items
        .iter()
        .map(|item| match item {
            Item::Whole(message) | Item::Plain(message) => Event::Message(message.clone()),
            Item::Pieces(parts) => Event::Message(joined(parts)),
            Item::Ping(payload) => Event::Ping(payload.clone().into()),
        })
        .collect()
}

/// Rebuilds whole messages from streamed fragments.
fn reassemble(events: Vec<Event>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut open: Option<Vec<Message>> = None;
    for event in events {
        match event {
            Event::Fragment(Fragment {
                data,
                is_first,
                is_last,
            }) => {
                assert_eq!(is_first, open.is_none());
                let parts = open.get_or_insert_with(Vec::new);
                parts.push(data);
                if is_last {
                    out.push(Event::Message(joined(&open.take().unwrap())));
                }
            }
            other => out.push(other),
        }
    }
    assert!(open.is_none());
    out
}

/// Sends `items` from one side, drives the pair, and returns what the
/// other side received (fragments reassembled) and the sender's events.
fn exchange(pair: &mut Pair, items: &[Item], client_sends: bool) -> (Vec<Event>, Vec<Event>) {
    if client_sends {
        send(&mut pair.client, items);
    } else {
        send(&mut pair.server, items);
    }
    pair.drive();
    let (received, sender) = if client_sends {
        (&mut pair.server_events, &mut pair.client_events)
    } else {
        (&mut pair.client_events, &mut pair.server_events)
    };
    (reassemble(std::mem::take(received)), std::mem::take(sender))
}

fn config(mut base: Config, streaming: bool) -> Config {
    if streaming {
        base.receive_mode = ReceiveMode::Streaming;
    }
    base.max_outgoing_buffer = usize::MAX;
    base
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn messages_arrive_unchanged_under_any_chunking(
        items in prop::collection::vec(item(), 1..12),
        chunks in prop::collection::vec(1usize..5000, 1..8),
        client_sends in any::<bool>(),
        streaming in any::<bool>(),
    ) {
        let mut pair = Pair::new(config(Config::client(), streaming), config(Config::server(), streaming));
        pair.chunks = chunks;
        let (received, sender_events) = exchange(&mut pair, &items, client_sends);
        prop_assert_eq!(received, expected(&items));
        // Every ping was answered with a pong (the latest of each batch at
        // least; a batch of pings coalesces).
        let pings = items.iter().filter(|i| matches!(i, Item::Ping(_))).count();
        let pongs = sender_events.iter().filter(|e| matches!(e, Event::Pong(_))).count();
        prop_assert!(pongs <= pings && (pings == 0) == (pongs == 0));
        prop_assert!(pair.client.is_open() && pair.server.is_open());
    }

    #[test]
    fn compressed_messages_arrive_unchanged_under_any_chunking(
        items in prop::collection::vec(item(), 1..12),
        chunks in prop::collection::vec(1usize..5000, 1..8),
        client_sends in any::<bool>(),
        streaming in any::<bool>(),
        (server_bits, client_bits) in (9u8..=15, 9u8..=15),
        (server_reset, client_reset) in (any::<bool>(), any::<bool>()),
        threshold in 0usize..200,
        level in 0u32..=9,
    ) {
        let mut deflate = DeflateConfig::default();
        deflate.server_no_context_takeover = server_reset;
        deflate.client_no_context_takeover = client_reset;
        deflate.server_max_window_bits = server_bits;
        deflate.client_max_window_bits = client_bits;
        deflate.threshold = threshold;
        deflate.level = Compression::new(level);
        let mut pair = Pair::negotiated(
            config(Config::client(), streaming),
            config(Config::server(), streaming),
            Some(deflate.clone()),
            Some(deflate),
        );
        let agreed = *pair.server.deflate().expect("negotiated");
        prop_assert_eq!(pair.client.deflate(), Some(&agreed));
        prop_assert_eq!(
            (agreed.server_max_window_bits, agreed.client_max_window_bits),
            (server_bits, client_bits)
        );
        pair.chunks = chunks;
        let (received, _) = exchange(&mut pair, &items, client_sends);
        prop_assert_eq!(received, expected(&items));
        prop_assert!(pair.client.is_open() && pair.server.is_open());
    }

    #[test]
    fn handshakes_complete_under_any_chunking(
        offered in prop::collection::vec("[a-z][a-z0-9.-]{0,10}", 0..5),
        pick in any::<prop::sample::Index>(),
        path in "/[a-zA-Z0-9/_-]{0,30}",
        query in proptest::option::of("[a-z]=[0-9]{1,5}"),
        trailing in prop::collection::vec(any::<u8>(), 0..20),
        chunk in 1usize..64,
        nonce in any::<[u8; 16]>(),
    ) {
        let now = Instant::now();
        let uri = match &query {
            Some(q) => format!("ws://example.com:8080{path}?{q}"),
            None => format!("ws://example.com:8080{path}"),
        };
        let mut request = ClientRequest::new(&uri).unwrap();
        for p in &offered {
            request = request.subprotocol(p.clone());
        }
        let (mut client, request_bytes) =
            ClientHandshake::new(&request, nonce, HandshakeLimits::default(), now).unwrap();
        let mut server = ServerHandshake::new(HandshakeLimits::default(), now);
        let mut upgrade = None;
        for piece in request_bytes.chunks(chunk) {
            prop_assert!(upgrade.is_none());
            upgrade = server.handle_input(piece).unwrap();
        }
        let upgrade = upgrade.expect("complete request");
        prop_assert_eq!(upgrade.path(), if path.is_empty() { "/" } else { path.as_str() });
        prop_assert_eq!(upgrade.request().uri().query(), query.as_deref());
        prop_assert_eq!(upgrade.subprotocols(), &offered[..]);
        let chosen = (!offered.is_empty()).then(|| offered[pick.index(offered.len())].clone());
        let accept = match &chosen {
            Some(p) => Accept::new().subprotocol(p.clone()),
            None => Accept::new(),
        };
        let mut response = BytesMut::from(&upgrade.accept(accept).unwrap().to_bytes()[..]);
        response.extend_from_slice(&trailing);
        let mut result = None;
        for piece in response.chunks(chunk) {
            if result.is_none() {
                result = client.handle_input(piece).unwrap().map(|r| (r, Vec::new()));
            } else if let Some((_, after)) = &mut result {
                after.extend_from_slice(piece);
            }
        }
        let (response, after) = result.expect("complete response");
        prop_assert_eq!(response.subprotocol, chosen);
        let mut rest = response.rest.to_vec();
        rest.extend(after);
        prop_assert_eq!(rest, trailing);
    }
}
