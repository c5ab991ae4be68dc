//! Runtime-agnostic async WebSocket client and server over `ws-core`.
//!
//! This crate holds everything the runtime adapters share, written once
//! against three small traits ([`Runtime`], [`Transport`], [`Listener`]):
//! the connection driver (one task per connection running IO, timers and
//! handler callbacks), handlers and their context, the `Stream`/`Sink`
//! [`WebSocket`] handle, routing, admission (origin, limits, subprotocol,
//! authentication), the registry of connections with broadcast, and
//! graceful shutdown. `ws-tokio` and `ws-smol` implement the traits and
//! re-export what users need; use one of those.

pub mod auth;
mod client;
mod driver;
pub mod envelope;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handle;
mod outbox;
mod runtime;
mod server;
pub mod tls;

pub use client::{Client, ClientConfig, connect_with, handshake, start};
pub use driver::{ConnectionHandle, ConnectionId, ConnectionInfo, Ctx, Handler};
pub use error::{ConnectError, ConnectionError, SendError};
pub use handle::{WebSocket, WsReceiver, WsSender};
pub use runtime::{BoxFuture, Listener, MaybeTls, Network, Runtime, Timer, Transport};
pub use server::{
    Authenticate, Delivery, Endpoint, NameError, OriginPolicy, Server, ServerBuilder, ServerConfig,
    ServerHandle,
};
pub use ws_core;
