//! WebSocket client and server on tokio.
//!
//! The protocol lives in [`ws_core`]; connection driving, handlers,
//! routing, the registry and shutdown live in [`ws_async`]. This crate binds
//! them to tokio: its runtime and timers, TCP, and TLS through
//! `tokio-rustls`.
//!
//! # A server
//!
//! ```no_run
//! use ws_tokio::{Ctx, Endpoint, Handler, Message};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
//!         let _ = ctx.send(message).await; // waits for room in the send queue
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = ws_tokio::server().route("/echo", Endpoint::new(|_| Echo)).build();
//! let listener = ws_tokio::bind("127.0.0.1:9001").await?;
//! server.serve(listener).await
//! # }
//! ```
//!
//! # A client
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut socket, _response) = ws_tokio::connect("ws://127.0.0.1:9001/echo").await?;
//! socket.send("hello").await?;
//! while let Some(message) = socket.recv().await {
//!     println!("{:?}", message?);
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod io;
mod listener;
mod runtime;
#[cfg(feature = "hyper")]
mod upgrade;

pub use client::{client, connect};
pub use io::TokioIo;
#[cfg(feature = "tls")]
pub use listener::bind_tls;
pub use listener::{ServerStream, TokioListener, bind};
pub use runtime::TokioRuntime;
#[cfg(feature = "hyper")]
pub use upgrade::{UpgradeBody, upgrade};

#[doc(inline)]
pub use ws_async::adapter::*;

/// A server builder on the current tokio runtime.
pub fn server() -> ServerBuilder {
    ServerBuilder::new(TokioRuntime)
}
