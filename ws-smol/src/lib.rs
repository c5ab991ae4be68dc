#![doc = include_str!("../README.md")]

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
