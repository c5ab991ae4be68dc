//! An echo server on `std::net`, one thread per connection: ws-core's run
//! loop end to end with nothing but the standard library around it. No
//! async runtime, no clock or randomness inside ws-core: this program reads
//! the clock and the socket and hands both to the state machines.
//!
//! ```sh
//! cargo run -p ws-core --example blocking_echo            # ws://127.0.0.1:9005/
//! cargo run -p ws-core --example blocking_echo -- 0.0.0.0:8080
//! ```
//!
//! A server never masks, so it needs no random source. A client would:
//! `Connection::client` takes a 32-byte seed and `ClientHandshake::new` a
//! 16-byte nonce, which real callers draw from the operating system's
//! CSPRNG (for example the `getrandom` crate), never constants.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ws_core::handshake::{Accept, ServerHandshake};
use ws_core::{Config, Connection, Event, HandshakeLimits};

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9005".into());
    let listener = TcpListener::bind(&addr)?;
    println!("blocking echo server on ws://{}/", listener.local_addr()?);
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            if let Err(error) = serve(stream) {
                eprintln!("connection failed: {error}");
            }
        });
    }
    Ok(())
}

/// Runs one connection: handshake, then echo until it closes.
pub(crate) fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // A peer that stops reading cannot block this thread for good.
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = vec![0u8; 16 * 1024];

    // The opening handshake: feed bytes until the head is complete, within
    // the handshake deadline.
    let mut handshake = ServerHandshake::new(HandshakeLimits::default(), Instant::now());
    let accepted = loop {
        let wait = handshake
            .poll_timeout()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        stream.set_read_timeout(Some(wait.unwrap_or_default().max(Duration::from_millis(1))))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if timed_out(&e) => {
                if let Some(rejection) = handshake.handle_timeout(Instant::now()) {
                    stream.write_all(&rejection.to_bytes())?;
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        match handshake.handle_input(&buf[..n]) {
            Ok(None) => {}
            Ok(Some(upgrade)) => break upgrade.accept(Accept::new()).map_err(io::Error::other)?,
            Err(rejection) => {
                stream.write_all(&rejection.to_bytes())?;
                return Ok(());
            }
        }
    };
    stream.write_all(&accepted.to_bytes())?;

    // The connection. Bytes that came with the head (only with early data
    // allowed) are its first input.
    let mut conn = Connection::server(Config::server(), Instant::now());
    conn.handle_read(accepted.rest(), Instant::now());
    loop {
        // 1. Every event the input so far makes. End of stream, when it has
        //    been reported, comes out last: frames that arrived before it are
        //    delivered first, whatever order reading and decoding happened
        //    in, and a close frame among them completes the close handshake.
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(message) => {
                    // A refused send means the peer is not reading: this
                    // simple server drops the echo (the limit bounds memory).
                    let _ = conn.send(message);
                }
                Event::Closed(closed) => {
                    // Write what is left (our close frame) and let go.
                    while let Some(chunk) = conn.poll_transmit() {
                        let _ = stream.write_all(&chunk);
                    }
                    println!("closed: {} ({})", closed.code, closed.cause);
                    return Ok(());
                }
                Event::Ping(_) | Event::Pong(_) | Event::Fragment(_) => {}
            }
        }
        // 2. Everything to send: echoes, pongs, keepalive pings, a close.
        while let Some(chunk) = conn.poll_transmit() {
            if let Err(error) = stream.write_all(&chunk) {
                conn.handle_transport_closed(Instant::now());
                eprintln!("write failed: {error}");
                break;
            }
        }
        // 3. Wait for input, but no later than the next timer.
        let wait = conn
            .poll_timeout()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        stream.set_read_timeout(wait.map(|w| w.max(Duration::from_millis(1))))?;
        match stream.read(&mut buf) {
            // End of stream: reported after what is buffered (see 1).
            Ok(0) => conn.handle_transport_closed(Instant::now()),
            Ok(n) => conn.handle_read(&buf[..n], Instant::now()),
            // 4. A timer is due: keepalive ping, pong or idle deadline,
            //    close deadline. Calling it early is harmless.
            Err(e) if timed_out(&e) => conn.handle_timeout(Instant::now()),
            Err(_) => conn.handle_transport_closed(Instant::now()),
        }
    }
}

fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
