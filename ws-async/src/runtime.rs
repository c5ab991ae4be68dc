//! What an async runtime must provide: spawning, timers, byte streams,
//! outgoing connections and a listener. `ws-tokio` and `ws-smol` implement
//! these; everything else in this crate is written once against them.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::BytesMut;
#[cfg(feature = "tls")]
use rustls_pki_types::ServerName;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Spawning and timers of an async runtime.
pub trait Runtime: Clone + Send + Sync + fmt::Debug + 'static {
    /// Runs `future` to completion in the background.
    fn spawn(&self, future: BoxFuture<()>);

    /// A timer that fires at `deadline`.
    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>>;

    /// The current time. Runtimes with a controllable clock (tokio's paused
    /// time in tests) return theirs.
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A resettable one-shot timer.
pub trait Timer: Send + Sync {
    /// Moves the deadline; a fired timer fires again at the new deadline.
    fn reset(self: Pin<&mut Self>, deadline: Instant);

    /// Ready once the deadline has passed.
    fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// A byte stream: TCP, TLS over TCP, an in-memory pipe.
pub trait Transport: Send + Unpin + 'static {
    /// Reads into the spare capacity of `buf` (appending), returning how
    /// many bytes arrived; 0 means end of stream.
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>>;

    /// Writes some of `bufs`, in order, returning how many bytes were taken.
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;

    /// Flushes buffered writes (TLS records).
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Flushes and shuts down the write side.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// Outgoing connections of a runtime, for clients.
pub trait Network: Runtime {
    /// A connected TCP stream.
    type Tcp: Transport;
    /// TLS over [`Network::Tcp`].
    #[cfg(feature = "tls")]
    type Tls: Transport;

    /// Resolves `host` and connects to it, with `TCP_NODELAY` set.
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>>;

    /// The address `tcp` is connected to.
    fn peer_addr(tcp: &Self::Tcp) -> Option<SocketAddr>;

    /// Runs a TLS client handshake over `tcp`, verifying the server's
    /// certificate for `name`.
    #[cfg(feature = "tls")]
    fn connect_tls(
        &self,
        tcp: Self::Tcp,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    ) -> BoxFuture<io::Result<Self::Tls>>;
}

/// Any runtime behind one pointer: what servers, clients and their
/// handles hold, so that their types do not depend on the runtime (and the
/// adapters' documentation shows them whole).
#[derive(Clone)]
pub(crate) struct AnyRuntime(Arc<dyn ErasedRuntime>);

/// The object-safe part of [`Runtime`].
trait ErasedRuntime: Send + Sync + fmt::Debug {
    fn spawn(&self, future: BoxFuture<()>);
    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>>;
    fn now(&self) -> Instant;
}

impl<R: Runtime> ErasedRuntime for R {
    fn spawn(&self, future: BoxFuture<()>) {
        Runtime::spawn(self, future);
    }

    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        Runtime::timer(self, deadline)
    }

    fn now(&self) -> Instant {
        Runtime::now(self)
    }
}

impl AnyRuntime {
    pub(crate) fn new(runtime: impl Runtime) -> Self {
        Self(Arc::new(runtime))
    }
}

impl fmt::Debug for AnyRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Runtime for AnyRuntime {
    fn spawn(&self, future: BoxFuture<()>) {
        self.0.spawn(future);
    }

    fn timer(&self, deadline: Instant) -> Pin<Box<dyn Timer>> {
        self.0.timer(deadline)
    }

    fn now(&self) -> Instant {
        self.0.now()
    }
}

/// What a TLS client handshake needs: the server's name and the rustls
/// configuration. Without the `tls` feature there is nothing to ask for.
#[cfg(feature = "tls")]
pub(crate) type TlsTarget = (ServerName<'static>, Arc<rustls::ClientConfig>);
/// What a TLS client handshake needs; never, without the `tls` feature.
#[cfg(not(feature = "tls"))]
pub(crate) type TlsTarget = std::convert::Infallible;

/// A client's connection, opened: the transport and its peer's address.
pub(crate) type Opened = (Box<dyn Transport>, Option<SocketAddr>);

/// Which step of opening a client connection failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Resolving or TCP.
    Tcp(io::Error),
    /// The TLS handshake.
    #[cfg(feature = "tls")]
    Tls(io::Error),
}

/// Any [`Network`], behind one pointer, for [`Client`](crate::Client).
#[derive(Clone)]
pub(crate) struct AnyNetwork(Arc<dyn ErasedNetwork>);

/// The object-safe part of [`Network`]: TCP, then TLS if asked, boxed.
trait ErasedNetwork: ErasedRuntime {
    fn open(
        &self,
        host: String,
        port: u16,
        tls: Option<TlsTarget>,
    ) -> BoxFuture<Result<Opened, OpenError>>;

    fn runtime(&self) -> AnyRuntime;
}

impl<N: Network> ErasedNetwork for N {
    fn open(
        &self,
        host: String,
        port: u16,
        tls: Option<TlsTarget>,
    ) -> BoxFuture<Result<Opened, OpenError>> {
        let network = self.clone();
        Box::pin(async move {
            let tcp = network
                .connect_tcp(&host, port)
                .await
                .map_err(OpenError::Tcp)?;
            let peer = N::peer_addr(&tcp);
            let io: Box<dyn Transport> = match tls {
                None => Box::new(tcp),
                #[cfg(feature = "tls")]
                Some((name, config)) => Box::new(
                    network
                        .connect_tls(tcp, name, config)
                        .await
                        .map_err(OpenError::Tls)?,
                ),
                #[cfg(not(feature = "tls"))]
                Some(never) => match never {},
            };
            Ok((io, peer))
        })
    }

    fn runtime(&self) -> AnyRuntime {
        AnyRuntime::new(self.clone())
    }
}

impl AnyNetwork {
    pub(crate) fn new(network: impl Network) -> Self {
        Self(Arc::new(network))
    }

    /// Connects to `host:port`, with TLS when `tls` names the server.
    pub(crate) fn open(
        &self,
        host: String,
        port: u16,
        tls: Option<TlsTarget>,
    ) -> BoxFuture<Result<Opened, OpenError>> {
        self.0.open(host, port, tls)
    }

    /// The network's runtime, for the connection's task.
    pub(crate) fn runtime(&self) -> AnyRuntime {
        self.0.runtime()
    }
}

impl fmt::Debug for AnyNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stream that is plain or TLS, decided at run time (a listener with or
/// without TLS, a `ws://` or `wss://` client). The TLS state is boxed so
/// plain connections stay small.
#[derive(Debug)]
pub enum MaybeTls<P, S> {
    /// `ws://`
    Plain(P),
    /// `wss://`
    Tls(Box<S>),
}

impl<P: Transport, S: Transport> Transport for MaybeTls<P, S> {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(io) => io.poll_read_buf(cx, buf),
            Self::Tls(io) => io.poll_read_buf(cx, buf),
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Plain(io) => io.poll_write_vectored(cx, bufs),
            Self::Tls(io) => io.poll_write_vectored(cx, bufs),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(io) => io.poll_flush(cx),
            Self::Tls(io) => io.poll_flush(cx),
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Plain(io) => io.poll_shutdown(cx),
            Self::Tls(io) => io.poll_shutdown(cx),
        }
    }
}

/// A boxed transport is a transport: servers run every connection over
/// one, whatever the listener's type.
impl Transport for Box<dyn Transport> {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        (**self).poll_read_buf(cx, buf)
    }
    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        (**self).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_flush(cx)
    }
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_shutdown(cx)
    }
}

/// Accepts connections for a server.
pub trait Listener: Send + 'static {
    /// A freshly accepted stream, before any TLS handshake.
    type Stream: Send + 'static;
    /// What connections run over once secured.
    type Io: Transport;

    /// The next accepted stream and its peer address.
    fn poll_accept(&mut self, cx: &mut Context<'_>)
    -> Poll<io::Result<(Self::Stream, SocketAddr)>>;

    /// Turns an accepted stream into a transport: runs the TLS handshake when
    /// the listener has TLS, or passes the stream through.
    fn secure(&self, stream: Self::Stream) -> BoxFuture<io::Result<Self::Io>>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// Reads from a transport into `buf` until the call would block.
pub(crate) async fn read_some<T: Transport>(io: &mut T, buf: &mut BytesMut) -> io::Result<usize> {
    std::future::poll_fn(|cx| io.poll_read_buf(cx, buf)).await
}

/// Writes all of `bytes`.
pub(crate) async fn write_all<T: Transport>(io: &mut T, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n =
            std::future::poll_fn(|cx| io.poll_write_vectored(cx, &[IoSlice::new(bytes)])).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    std::future::poll_fn(|cx| io.poll_flush(cx)).await
}

/// Waits until `deadline` on `runtime`'s clock.
pub(crate) async fn sleep_until<R: Runtime>(runtime: &R, deadline: Instant) {
    let mut timer = runtime.timer(deadline);
    std::future::poll_fn(|cx| timer.as_mut().poll_fired(cx)).await;
}

/// Runs `future`, giving up at `deadline`.
pub(crate) async fn with_deadline<R: Runtime, F: Future>(
    runtime: &R,
    deadline: Instant,
    future: F,
) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut timer = runtime.timer(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        timer.as_mut().poll_fired(cx).map(|()| None)
    })
    .await
}
