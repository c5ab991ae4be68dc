//! A sans-IO WebSocket protocol engine (RFC 6455).
//!
//! `ws-core` decides everything about a WebSocket connection that can be
//! decided without a socket: the opening handshake, frames, fragmented
//! messages, UTF-8, the close handshake, ping/pong, keepalive and idle
//! timers, limits and backpressure, and permessage-deflate ([`deflate`]). It performs no IO, spawns nothing, reads
//! no clock and draws no randomness of its own: bytes, the current time and
//! random seeds come in as arguments; events, bytes to write and the next
//! deadline come out. Runtime adapters (tokio, smol) move the bytes.
//!
//! Every state machine has the same shape:
//!
//! ```text
//! handle_*(input, now)             bytes received, a timer fired, the app sends or closes
//! poll_event()    -> Option<Event> drain until None
//! poll_transmit() / transmit_slices()  bytes to write
//! poll_timeout()  -> Option<Instant>   the next deadline; handle_timeout(now) when it passes
//! ```
//!
//! # Example: a client and a server, wired by hand
//!
//! ```
//! use std::time::Instant;
//! use ws_core::handshake::{Accept, ClientHandshake, ClientRequest, ServerHandshake};
//! use ws_core::{CloseCode, Config, Connection, Event, HandshakeLimits, Message};
//!
//! let now = Instant::now();
//!
//! // Opening handshake. The constant nonce here and seed below keep the
//! // example short: real callers draw both from a CSPRNG (the OS's, for
//! // example through the `getrandom` crate), since ws-core draws none.
//! let request = ClientRequest::new("ws://example.com/chat")?.subprotocol("chat");
//! let (mut client_hs, request_bytes) =
//!     ClientHandshake::new(&request, [7; 16], HandshakeLimits::default(), now)?;
//! let mut server_hs = ServerHandshake::new(HandshakeLimits::default(), now);
//! let upgrade = server_hs.handle_input(&request_bytes)?.expect("whole request");
//! assert_eq!(upgrade.path(), "/chat");
//! let accepted = upgrade.accept(Accept::new().subprotocol("chat"))?;
//! let response = client_hs.handle_input(&accepted.to_bytes())?.expect("whole response");
//! assert_eq!(response.subprotocol.as_deref(), Some("chat"));
//!
//! let mut client = Connection::client(Config::client(), now, [42; 32]);
//! let mut server = Connection::server(Config::server(), now);
//! client.handle_read(&response.rest, now);
//!
//! // The client sends; its bytes are the server's input.
//! client.send_text("hello")?;
//! while let Some(bytes) = client.poll_transmit() {
//!     server.handle_read(&bytes, now);
//! }
//! // The server echoes every message of the batch, then writes once.
//! while let Some(event) = server.poll_event() {
//!     if let Event::Message(message) = event {
//!         server.send(message)?;
//!     }
//! }
//! while let Some(bytes) = server.poll_transmit() {
//!     client.handle_read(&bytes, now);
//! }
//! assert_eq!(client.poll_event(), Some(Event::Message(Message::text("hello"))));
//!
//! // Close handshake: the server echoes the client's close frame.
//! client.close(CloseCode::NORMAL, "bye", now)?;
//! while let Some(bytes) = client.poll_transmit() {
//!     server.handle_read(&bytes, now);
//! }
//! assert!(matches!(server.poll_event(), Some(Event::Closed(c)) if c.code == CloseCode::NORMAL));
//! while let Some(bytes) = server.poll_transmit() {
//!     client.handle_read(&bytes, now);
//! }
//! assert!(matches!(client.poll_event(), Some(Event::Closed(_))));
//! assert!(client.is_closed() && server.is_closed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Limits
//!
//! Every limit is on by default; [`Config`] and [`HandshakeLimits`] state
//! each default. Violations close the connection with the matching code
//! (1002 protocol error, 1007 bad UTF-8, 1008 policy, 1009 too big) and are
//! reported as [`Event::Closed`] with a typed [`ProtocolError`].

pub mod ack;
pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
#[cfg(feature = "envelope")]
pub mod envelope;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod message;
pub mod policy;
pub mod role;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use close::{CloseCode, CloseFrame};
pub use config::{BackpressurePolicy, Config, HandshakeLimits, ReceiveMode};
pub use connection::{CloseCause, Closed, Connection, Event, PONG_BUDGET, Side, Timeout};
pub use error::{Backpressure, ProtocolError, SendError, UsageError};
pub use message::{EncodedMessage, Fragment, Message, Utf8Bytes};
pub use role::Role;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
