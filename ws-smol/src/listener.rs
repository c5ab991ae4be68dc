//! A TCP listener, optionally with TLS, as a [`ws_async::Listener`].

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use async_io::Async;
use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use ws_async::{BoxFuture, Listener, MaybeTls};

use crate::io::FuturesIo;
use crate::tcp::TcpTransport;

/// Accepts TCP connections (IPv4 or IPv6, as bound), with TLS when built by
/// [`bind_tls`].
pub struct SmolListener {
    tcp: Async<TcpListener>,
    tls: Option<TlsAcceptor>,
    /// The last accept found the queue empty: wait for readiness before
    /// trying again. A server run as the future of `Executor::run` is
    /// polled on every wake-up of the executor, and each needless
    /// `accept(2)` would also re-arm async-io's one-shot registration.
    drained: bool,
}

impl std::fmt::Debug for SmolListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmolListener")
            .field("tcp", self.tcp.get_ref())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Binds a plain (`ws://`) listener, for example on `"127.0.0.1:9001"` or
/// `"[::]:9001"`. The name is resolved on the calling thread.
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<SmolListener> {
    Ok(SmolListener {
        tcp: Async::<TcpListener>::bind(resolve(addr)?)?,
        tls: None,
        drained: false,
    })
}

/// Binds a TLS (`wss://`) listener with a rustls server configuration (see
/// [`crate::tls`]).
pub async fn bind_tls(
    addr: impl ToSocketAddrs,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<SmolListener> {
    let mut listener = bind(addr).await?;
    listener.tls = Some(TlsAcceptor::from(config));
    Ok(listener)
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

    /// Wraps a listener bound elsewhere.
    pub fn from_tcp(tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> io::Result<Self> {
        Ok(Self {
            tcp: Async::new(tcp)?,
            tls: tls.map(TlsAcceptor::from),
            drained: false,
        })
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
        match &self.tls {
            None => Box::pin(async move { Ok(MaybeTls::Plain(TcpTransport::new(stream))) }),
            Some(acceptor) => {
                let accept = acceptor.accept(stream);
                Box::pin(async move { Ok(MaybeTls::Tls(Box::new(FuturesIo(accept.await?)))) })
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.get_ref().local_addr()
    }
}

/// An accepted connection: plain TCP or TLS over TCP.
pub type ServerStream = MaybeTls<TcpTransport, FuturesIo<TlsStream<Async<TcpStream>>>>;
