//! A TCP listener, optionally with TLS, as a [`ws_async::Listener`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use ws_async::{BoxFuture, Listener, MaybeTls};

use crate::io::TokioIo;

/// Accepts TCP connections (IPv4 or IPv6, as bound), with TLS when built by
/// [`bind_tls`].
pub struct TokioListener {
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for TokioListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioListener")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Binds a plain (`ws://`) listener, for example on `"127.0.0.1:9001"` or
/// `"[::]:9001"`.
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TokioListener> {
    Ok(TokioListener {
        tcp: TcpListener::bind(addr).await?,
        tls: None,
    })
}

/// Binds a TLS (`wss://`) listener with a rustls server configuration (see
/// [`crate::tls`]).
pub async fn bind_tls(
    addr: impl ToSocketAddrs,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<TokioListener> {
    Ok(TokioListener {
        tcp: TcpListener::bind(addr).await?,
        tls: Some(TlsAcceptor::from(config)),
    })
}

impl TokioListener {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Wraps a listener bound elsewhere.
    pub fn from_tcp(tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self {
            tcp,
            tls: tls.map(TlsAcceptor::from),
        }
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
        match &self.tls {
            None => Box::pin(async move { Ok(MaybeTls::Plain(TokioIo(stream))) }),
            Some(acceptor) => {
                let accept = acceptor.accept(stream);
                Box::pin(async move { Ok(MaybeTls::Tls(Box::new(TokioIo(accept.await?)))) })
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// An accepted connection: plain TCP or TLS over TCP.
pub type ServerStream = MaybeTls<TokioIo<TcpStream>, TokioIo<TlsStream<TcpStream>>>;
