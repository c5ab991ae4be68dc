#![doc = include_str!("../README.md")]

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
pub use error::{Backpressure, ProtocolError, SendRefused, UsageError};
pub use message::{EncodedMessage, Fragment, Message, Utf8Bytes};
pub use role::Role;
