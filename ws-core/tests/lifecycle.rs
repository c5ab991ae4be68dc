//! Close, keepalive and timeout behaviour of a client-server pair on a
//! virtual clock, for both roles.

mod common;

use std::time::Duration;

use common::{Direction, Pair};
use ws_core::{
    CloseCause, CloseCode, Closed, Config, Event, Message, ProtocolError, Side, Timeout,
};

fn closed(events: &[Event]) -> Option<&Closed> {
    events.iter().find_map(|e| match e {
        Event::Closed(c) => Some(c),
        _ => None,
    })
}

#[test]
fn close_handshake_started_by_either_side() {
    for client_starts in [true, false] {
        let mut pair = Pair::with_defaults();
        pair.chunks = vec![1, 2, 3];
        let now = pair.now;
        if client_starts {
            pair.client.close(CloseCode::NORMAL, "done", now).unwrap();
        } else {
            pair.server
                .close(CloseCode::GOING_AWAY, "restart", now)
                .unwrap();
        }
        pair.drive();
        let (starter, answerer) = if client_starts {
            (&pair.client_events, &pair.server_events)
        } else {
            (&pair.server_events, &pair.client_events)
        };
        let expected_code = if client_starts {
            CloseCode::NORMAL
        } else {
            CloseCode::GOING_AWAY
        };
        let starter = closed(starter).expect("starter closed");
        let answerer = closed(answerer).expect("answerer closed");
        assert_eq!(
            starter.cause,
            CloseCause::Handshake {
                initiated_by: Side::Local
            }
        );
        assert_eq!(
            answerer.cause,
            CloseCause::Handshake {
                initiated_by: Side::Remote
            }
        );
        assert_eq!(
            (starter.code, answerer.code),
            (expected_code, expected_code)
        );
        assert_eq!(
            answerer.reason,
            if client_starts { "done" } else { "restart" }
        );
        assert!(pair.client.is_closed() && pair.server.is_closed());
        assert_eq!(pair.client.poll_timeout(), None);
        assert_eq!(pair.server.poll_timeout(), None);
    }
}

#[test]
fn simultaneous_close_completes_on_both_sides() {
    let mut pair = Pair::with_defaults();
    let now = pair.now;
    pair.client.close(CloseCode::NORMAL, "", now).unwrap();
    pair.server.close(CloseCode::GOING_AWAY, "", now).unwrap();
    pair.drive();
    let c = closed(&pair.client_events).unwrap();
    let s = closed(&pair.server_events).unwrap();
    assert_eq!(
        c.cause,
        CloseCause::Handshake {
            initiated_by: Side::Local
        }
    );
    assert_eq!(
        s.cause,
        CloseCause::Handshake {
            initiated_by: Side::Local
        }
    );
    assert_eq!((c.code, s.code), (CloseCode::GOING_AWAY, CloseCode::NORMAL));
}

#[test]
fn messages_in_flight_during_close_are_delivered() {
    let mut pair = Pair::with_defaults();
    let now = pair.now;
    pair.server.send_text("last words").unwrap();
    pair.client.close(CloseCode::NORMAL, "", now).unwrap();
    pair.drive();
    assert_eq!(
        pair.client_events[0],
        Event::Message(Message::text("last words"))
    );
    assert!(closed(&pair.client_events).is_some());
}

#[test]
fn healthy_idle_connection_stays_up_through_keepalive() {
    let mut pair = Pair::with_defaults();
    pair.advance(Duration::from_secs(600));
    assert!(pair.client.is_open() && pair.server.is_open());
    let pings = |events: &[Event]| {
        events
            .iter()
            .filter(|e| matches!(e, Event::Ping(_)))
            .count()
    };
    // Each side pings after 20 s without a frame; the other's pong resets
    // it, so pings alternate and neither side idles out.
    assert!(pings(&pair.server_events) + pings(&pair.client_events) >= 15);
}

#[test]
fn half_open_link_is_detected_by_each_role() {
    for (cut_to_server, who) in [(true, "server"), (false, "client")] {
        let mut pair = Pair::with_defaults();
        if cut_to_server {
            pair.link_to_server = false;
        } else {
            pair.link_to_client = false;
        }
        pair.advance(Duration::from_secs(41));
        let events = if cut_to_server {
            &pair.server_events
        } else {
            &pair.client_events
        };
        let c = closed(events).unwrap_or_else(|| panic!("{who} did not notice"));
        assert_eq!(c.code, CloseCode::ABNORMAL);
        assert_eq!(c.cause, CloseCause::Timeout(Timeout::KeepAlive));
    }
}

#[test]
fn idle_timeout_without_keepalive() {
    let mut config = Config::server();
    config.ping_interval = None;
    let mut client_config = Config::client();
    client_config.ping_interval = None;
    client_config.idle_timeout = None;
    let mut pair = Pair::new(client_config, config);
    pair.advance(Duration::from_secs(59));
    assert!(pair.server.is_open());
    pair.advance(Duration::from_secs(1));
    let s = closed(&pair.server_events).expect("server idled out");
    assert_eq!(s.cause, CloseCause::Timeout(Timeout::Idle));
    // The client receives the server's best-effort close frame.
    let c = closed(&pair.client_events).expect("client saw the close");
    assert_eq!(c.code, CloseCode::GOING_AWAY);
}

#[test]
fn close_deadline_when_the_peer_never_answers() {
    for client_starts in [true, false] {
        let mut pair = Pair::with_defaults();
        let now = pair.now;
        pair.link_to_server = false;
        pair.link_to_client = false;
        let (conn, events_of_starter): (_, fn(&Pair) -> &Vec<Event>) = if client_starts {
            (&mut pair.client, |p| &p.client_events)
        } else {
            (&mut pair.server, |p| &p.server_events)
        };
        conn.close(CloseCode::NORMAL, "", now).unwrap();
        pair.advance(Duration::from_millis(9_999));
        assert!(closed(events_of_starter(&pair)).is_none());
        pair.advance(Duration::from_millis(1));
        let c = closed(events_of_starter(&pair)).expect("closed by deadline");
        assert_eq!(c.cause, CloseCause::Timeout(Timeout::CloseHandshake));
        assert_eq!(c.code, CloseCode::ABNORMAL);
    }
}

#[test]
fn corrupted_frames_in_flight_fail_the_receiver() {
    let mut pair = Pair::with_defaults();
    // Set a reserved bit on the first byte of the server's next frame.
    pair.tamper = Some(Box::new(|direction, bytes| {
        if direction == Direction::ToClient {
            bytes[0] |= 0x40;
        }
    }));
    pair.server.send_text("hi").unwrap();
    pair.drive();
    let c = closed(&pair.client_events).expect("client failed");
    assert_eq!(
        c.cause,
        CloseCause::ProtocolViolation(ProtocolError::ReservedBits(0b100))
    );
    // The client's 1002 reaches the server (the tamper only flips RSV on the
    // way to the client), which answers the handshake.
    let s = closed(&pair.server_events).expect("server closed");
    assert_eq!(s.code, CloseCode::PROTOCOL_ERROR);
}
