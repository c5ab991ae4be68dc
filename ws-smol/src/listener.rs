//! A TCP listener, optionally with TLS, as a [`ws_async::Listener`].

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_io::Async;
#[cfg(feature = "tls")]
use futures_rustls::TlsAcceptor;
#[cfg(feature = "tls")]
use futures_rustls::server::TlsStream;
#[cfg(feature = "tls")]
use ws_async::MaybeTls;
use ws_async::{BoxFuture, Listener};

#[cfg(feature = "tls")]
use crate::io::FuturesIo;
use crate::tcp::TcpTransport;

/// Accepts TCP connections (IPv4 or IPv6, as bound), with TLS when built by
/// [`bind_tls`].
pub struct SmolListener {
    tcp: Async<TcpListener>,
    #[cfg(feature = "tls")]
    tls: Option<TlsAcceptor>,
    /// The last accept found the queue empty: wait for readiness before
    /// trying again. A server run as the future of `Executor::run` is
    /// polled on every wake-up of the executor, and each needless
    /// `accept(2)` would also re-arm async-io's one-shot registration.
    drained: bool,
}

impl std::fmt::Debug for SmolListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("SmolListener");
        debug.field("tcp", self.tcp.get_ref());
        #[cfg(feature = "tls")]
        debug.field("tls", &self.tls.is_some());
        debug.finish()
    }
}

/// Binds a plain (`ws://`) listener, for example on `"127.0.0.1:9001"` or
/// `"[::]:9001"`. The name is resolved on the calling thread.
/// An IPv6 address listens on IPv6 only, so `"0.0.0.0:9001"` can listen
/// beside it (see [`ws_async::net::bind_tcp`]).
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<SmolListener> {
    SmolListener::from_tcp(ws_async::net::bind_tcp(resolve(addr)?)?)
}

/// Binds a TLS (`wss://`) listener with a rustls server configuration (see
/// [`crate::tls`]).
#[cfg(feature = "tls")]
pub async fn bind_tls(
    addr: impl ToSocketAddrs,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<SmolListener> {
    Ok(bind(addr).await?.with_tls(config))
}

fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))
}

impl SmolListener {
    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.get_ref().local_addr()
    }

    /// Wraps a listener bound elsewhere (plain `ws://`).
    pub fn from_tcp(tcp: TcpListener) -> io::Result<Self> {
        Ok(Self {
            tcp: Async::new(tcp)?,
            #[cfg(feature = "tls")]
            tls: None,
            drained: false,
        })
    }

    /// Serves TLS (`wss://`) with a rustls server configuration.
    #[cfg(feature = "tls")]
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::from(config));
        self
    }
}

impl Listener for SmolListener {
    type Stream = Async<TcpStream>;
    type Io = ServerStream;

    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Async<TcpStream>, SocketAddr)>> {
        loop {
            if self.drained {
                // Without a new readiness event this registers nothing and
                // makes no system call.
                ready!(self.tcp.poll_readable(cx))?;
                self.drained = false;
            }
            match self.tcp.get_ref().accept() {
                Ok((stream, peer)) => return Poll::Ready(Async::new(stream).map(|s| (s, peer))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.drained = true,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn secure(&self, stream: Async<TcpStream>) -> BoxFuture<io::Result<Self::Io>> {
        // Small messages should leave at once, not wait for Nagle.
        let _ = stream.get_ref().set_nodelay(true);
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.tls {
            let accept = acceptor.accept(stream);
            return Box::pin(async move { Ok(MaybeTls::Tls(Box::new(FuturesIo(accept.await?)))) });
        }
        #[cfg(feature = "tls")]
        return Box::pin(async move { Ok(MaybeTls::Plain(TcpTransport::new(stream))) });
        #[cfg(not(feature = "tls"))]
        Box::pin(async move { Ok(TcpTransport::new(stream)) })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.get_ref().local_addr()
    }
}

/// An accepted connection: plain TCP or TLS over TCP.
#[cfg(feature = "tls")]
pub type ServerStream = MaybeTls<TcpTransport, FuturesIo<TlsStream<Async<TcpStream>>>>;
/// An accepted connection: plain TCP (TLS needs the `tls` feature).
#[cfg(not(feature = "tls"))]
pub type ServerStream = TcpTransport;
