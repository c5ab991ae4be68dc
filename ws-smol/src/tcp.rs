//! Plain TCP as a [`ws_async::Transport`], straight on async-io's reactor.
//!
//! The generic [`FuturesIo`](crate::FuturesIo) has to zero a buffer before
//! every read and learns that the socket is drained only from a read that
//! fails with `WouldBlock`. On TCP both are avoidable: `recv(2)` writes into
//! uninitialised memory, and a read that returns less than it was offered
//! has emptied the receive queue, so the next read first waits for
//! readiness. That saves a system call per batch of messages.

use std::io::{self, IoSlice, Write};
use std::net::{SocketAddr, TcpStream};
use std::task::{Context, Poll, ready};

use async_io::Async;
use bytes::BytesMut;
use ws_async::Transport;

/// Bytes offered to a read when the buffer has no spare room.
const MIN_READ: usize = 4096;

/// A TCP connection on async-io.
#[derive(Debug)]
pub struct TcpTransport {
    stream: Async<TcpStream>,
    /// The last read returned less than offered: wait for readiness first.
    drained: bool,
}

impl TcpTransport {
    /// Wraps a registered stream.
    pub fn new(stream: Async<TcpStream>) -> Self {
        Self {
            stream,
            drained: false,
        }
    }

    /// Connects to `addr`, with `TCP_NODELAY` set.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = Async::<TcpStream>::connect(addr).await?;
        stream.get_ref().set_nodelay(true)?;
        Ok(Self::new(stream))
    }

    /// The address the stream is connected to.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.stream.get_ref().peer_addr().ok()
    }

    /// The registered stream, for layering TLS on it.
    pub fn into_inner(self) -> Async<TcpStream> {
        self.stream
    }
}

impl Transport for TcpTransport {
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        if self.drained {
            ready!(self.stream.poll_readable(cx))?;
            self.drained = false;
        }
        if buf.capacity() == buf.len() {
            buf.reserve(MIN_READ);
        }
        loop {
            let spare = buf.spare_capacity_mut();
            let offered = spare.len();
            match socket2::SockRef::from(self.stream.get_ref()).recv(spare) {
                Ok(n) => {
                    // SAFETY: recv(2) initialised the first `n` bytes of the
                    // spare capacity, and `n <= offered`.
                    unsafe { buf.set_len(buf.len() + n) };
                    self.drained = n < offered;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_readable(cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.stream.get_ref().write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.stream.poll_writable(cx))?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.stream.get_ref().shutdown(std::net::Shutdown::Write))
    }
}
