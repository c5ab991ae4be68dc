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
    type Tls: Transport;

    /// Resolves `host` and connects to it, with `TCP_NODELAY` set.
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>>;

    /// The address `tcp` is connected to.
    fn peer_addr(tcp: &Self::Tcp) -> Option<SocketAddr>;

    /// Runs a TLS client handshake over `tcp`, verifying the server's
    /// certificate for `name`.
    fn connect_tls(
        &self,
        tcp: Self::Tcp,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    ) -> BoxFuture<io::Result<Self::Tls>>;
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
