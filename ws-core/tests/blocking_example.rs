//! The `blocking_echo` example's connection loop, run over real sockets
//! against a client `Connection` driven the same way: send then close
//! gets every echo and the close reply, and a client that sends and hangs
//! up has every message delivered.

#[allow(dead_code)]
#[path = "../examples/blocking_echo.rs"]
mod example;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::{CloseCause, CloseCode, Config, Connection, Event, HandshakeLimits, Message, Side};

fn server() -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        example::serve(stream).unwrap();
    });
    (addr, thread)
}

/// A client connection after its handshake (constant nonce and seed: a
/// test; real callers draw them from a CSPRNG).
fn client(addr: std::net::SocketAddr) -> (TcpStream, Connection) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = ClientRequest::new(&format!("ws://{addr}/")).unwrap();
    let (mut handshake, wire) = ClientHandshake::new(
        &request,
        [7; 16],
        HandshakeLimits::default(),
        Instant::now(),
    )
    .unwrap();
    stream.write_all(&wire).unwrap();
    let mut buf = [0u8; 4096];
    let response = loop {
        let n = stream.read(&mut buf).unwrap();
        if let Some(response) = handshake.handle_input(&buf[..n]).unwrap() {
            break response;
        }
    };
    let mut conn = Connection::client(Config::client(), Instant::now(), [42; 32]);
    conn.handle_read(&response.rest, Instant::now());
    (stream, conn)
}

fn flush(stream: &mut TcpStream, conn: &mut Connection) {
    while let Some(chunk) = conn.poll_transmit() {
        stream.write_all(&chunk).unwrap();
    }
}

#[test]
fn send_then_close_gets_every_echo_and_the_close_reply() {
    let (addr, server) = server();
    let (mut stream, mut conn) = client(addr);
    for text in ["one", "two", "three"] {
        conn.send_text(text).unwrap();
    }
    conn.close(CloseCode::NORMAL, "bye", Instant::now())
        .unwrap();
    flush(&mut stream, &mut conn);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = 'read: loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            conn.handle_transport_closed(Instant::now());
        } else {
            conn.handle_read(&buf[..n], Instant::now());
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(message) => got.push(message),
                Event::Closed(closed) => break 'read closed,
                _ => {}
            }
        }
    };
    assert_eq!(
        got,
        [
            Message::text("one"),
            Message::text("two"),
            Message::text("three")
        ]
    );
    assert_eq!(
        closed.cause,
        CloseCause::Handshake {
            initiated_by: Side::Local
        }
    );
    server.join().unwrap();
}

#[test]
fn a_client_that_hangs_up_has_every_message_delivered() {
    let (addr, server) = server();
    let (mut stream, mut conn) = client(addr);
    for text in ["a", "b", "c"] {
        conn.send_text(text).unwrap();
    }
    flush(&mut stream, &mut conn);
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    conn.handle_read(&echoed, Instant::now());
    conn.handle_transport_closed(Instant::now());
    let got: Vec<Event> = std::iter::from_fn(|| conn.poll_event()).collect();
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[2], Event::Message(Message::text("c")));
    server.join().unwrap();
}
