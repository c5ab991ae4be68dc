#![doc = include_str!("../README.md")]

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
