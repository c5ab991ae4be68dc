#![doc = include_str!("../README.md")]

pub mod auth;
mod client;
mod connection;
mod engine;
#[cfg(feature = "envelope")]
pub mod envelope;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod meters;
pub mod net;
mod outbox;
mod registry;
mod runtime;
mod server;
mod socket;
#[cfg(feature = "tls")]
pub mod tls;

pub use client::{Client, ClientConfig, IntoClientRequest, connect_with, handshake, start};
pub use connection::{ConnectionHandle, ConnectionId, ConnectionInfo, InvalidConnectionId};
pub use error::{ConnectError, ConnectionError, SendError};
pub use handler::{Ctx, Handler, Layer, Layered};
pub use registry::{Delivery, NameError, OpenConnection, ServerHandle};
pub use runtime::{BoxFuture, Listener, MaybeTls, Network, Runtime, Timer, Transport};
pub use server::{
    Authenticate, Endpoint, HostPolicy, OriginPolicy, Server, ServerBuilder, ServerConfig, Upgrade,
    is_host_name,
};
pub use socket::{WebSocket, WsReceiver, WsSender};
pub use ws_core;

/// What every runtime adapter re-exports, listed once: `ws-tokio` and
/// `ws-smol` each say `pub use ws_async::adapter::*` and add their runtime's
/// own items.
#[doc(hidden)]
pub mod adapter {
    #[cfg(feature = "envelope")]
    pub use crate::envelope;
    #[cfg(feature = "tls")]
    pub use crate::tls;
    pub use crate::{
        Authenticate, Client, ClientConfig, ConnectError, ConnectionError, ConnectionHandle,
        ConnectionId, ConnectionInfo, Ctx, Delivery, Endpoint, Handler, HostPolicy,
        IntoClientRequest, InvalidConnectionId, Layer, Layered, NameError, OpenConnection,
        OriginPolicy, SendError, Server, ServerBuilder, ServerConfig, ServerHandle, Upgrade,
        WebSocket, WsReceiver, WsSender, auth,
    };
    pub use http;
    pub use ws_core::handshake::Rejection;
    pub use ws_core::{self, CloseCode, Closed, Config, Message, Utf8Bytes};
}
