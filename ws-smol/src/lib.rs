//! WebSocket client and server over `futures-io`: smol, async-std and
//! anything else on async-io.
//!
//! The protocol lives in [`ws_core`]; connection driving, handlers,
//! routing, the registry and shutdown live in [`ws_async`], shared with
//! `ws-tokio`. This crate binds them to async-io's sockets and timers, an
//! executor of your choice ([`SmolRuntime`]), and TLS through
//! `futures-rustls`.
//!
//! # A server
//!
//! ```no_run
//! use ws_smol::{Ctx, Endpoint, Handler, Message};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
//!         let _ = ctx.send(message).await; // waits for room in the send queue
//!     }
//! }
//!
//! smol::block_on(async {
//!     let server = ws_smol::server().route("/echo", Endpoint::new(|_| Echo)).build();
//!     let listener = ws_smol::bind("127.0.0.1:9001").await?;
//!     server.serve(listener).await
//! })
//! # ; Ok::<(), std::io::Error>(())
//! ```
//!
//! On async-std, give the server async-std's spawner:
//!
//! ```no_run
//! # use ws_smol::{Ctx, Endpoint, Message, SmolRuntime};
//! # struct Echo;
//! # impl ws_smol::Handler for Echo {
//! #     async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
//! #         let _ = ctx.send(message).await;
//! #     }
//! # }
//! let runtime = SmolRuntime::with_spawner(|task| {
//!     async_std::task::spawn(task);
//! });
//! let server = ws_smol::ServerBuilder::new(runtime)
//!     .route("/echo", Endpoint::new(|_| Echo))
//!     .build();
//! ```
//!
//! # A client
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut socket, _response) = ws_smol::connect("ws://127.0.0.1:9001/echo").await?;
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
mod tcp;

pub use client::{client, connect};
pub use io::FuturesIo;
#[cfg(feature = "tls")]
pub use listener::bind_tls;
pub use listener::{ServerStream, SmolListener, bind};
pub use runtime::SmolRuntime;
pub use tcp::TcpTransport;

#[doc(inline)]
pub use ws_async::adapter::*;

/// A server builder whose connection tasks run on smol's global executor.
pub fn server() -> ServerBuilder {
    ServerBuilder::new(SmolRuntime::new())
}
