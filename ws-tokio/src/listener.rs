//! A TCP listener, optionally with TLS, as a [`ws_async::Listener`].

use std::io;
use std::net::SocketAddr;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
#[cfg(feature = "tls")]
use tokio_rustls::TlsAcceptor;
#[cfg(feature = "tls")]
use tokio_rustls::server::TlsStream;
#[cfg(feature = "tls")]
use ws_async::MaybeTls;
use ws_async::{BoxFuture, Listener};

use crate::io::TokioIo;

/// Accepts TCP connections (IPv4 or IPv6, as bound), with TLS when built by
/// [`bind_tls`].
pub struct TokioListener {
    tcp: TcpListener,
    #[cfg(feature = "tls")]
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for TokioListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("TokioListener");
        debug.field("tcp", &self.tcp);
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls.is_some());
        debug.finish()
    }
}

/// Binds a plain (`ws://`) listener, for example on `"127.0.0.1:9001"` or
/// `"[::]:9001"` (IPv6 only, so `"0.0.0.0:9001"` can listen beside it; see
/// [`ws_async::net::bind_tcp`]). A name that resolves to several addresses
/// binds the first that works.
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TokioListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        match ws_async::net::bind_tcp(addr).and_then(TcpListener::from_std) {
            Ok(tcp) => return Ok(TokioListener::from_tcp(tcp)),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind")))
}

/// Binds a TLS (`wss://`) listener with a rustls server configuration (see
/// [`crate::tls`]).
#[cfg(feature = "tls")]
pub async fn bind_tls(
    addr: impl ToSocketAddrs,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<TokioListener> {
    Ok(bind(addr).await?.with_tls(config))
}

impl TokioListener {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Wraps a listener bound elsewhere (plain `ws://`).
    pub fn from_tcp(tcp: TcpListener) -> Self {
        Self {
            tcp,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Serves TLS (`wss://`) with a rustls server configuration.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::from(config));
        self
    }
}

impl Listener for TokioListener {
    type Stream = TcpStream;
    type Io = ServerStream;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        self.tcp.poll_accept(cx)
    }

    fn secure(&self, stream: TcpStream) -> BoxFuture<io::Result<Self::Io>> {
        // Small messages should leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.tls {
            let accept = acceptor.accept(stream);
            return Box::pin(async move { Ok(MaybeTls::Tls(Box::new(TokioIo(accept.await?)))) });
        }
        #[cfg(feature = "tls")]
        return Box::pin(async move { Ok(MaybeTls::Plain(TokioIo(stream))) });
        #[cfg(not(feature = "tls"))]
        Box::pin(async move { Ok(TokioIo(stream)) })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// An accepted connection: plain TCP or TLS over TCP.
#[cfg(feature = "tls")]
pub type ServerStream = MaybeTls<TokioIo<TcpStream>, TokioIo<TlsStream<TcpStream>>>;
/// An accepted connection: plain TCP (TLS needs the `tls` feature).
#[cfg(not(feature = "tls"))]
pub type ServerStream = TokioIo<TcpStream>;
