//! futures-io byte streams as a [`ws_async::Transport`].

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use ws_async::Transport;

/// Wraps any futures-io stream (async-net or async-std TCP, TLS, Unix
/// sockets, in-memory pipes) so a connection can run over it.
#[derive(Debug)]
pub struct FuturesIo<T>(pub T);

/// Bytes made available to one read when the buffer has no spare room.
const MIN_READ: usize = 4096;

impl<T> Transport for FuturesIo<T>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        // futures-io reads into initialised memory, so the spare capacity is
        // zeroed first; the driver sizes that capacity to what it expects.
        let filled = buf.len();
        if buf.capacity() == filled {
            buf.reserve(MIN_READ);
        }
        buf.resize(buf.capacity(), 0);
        let result = Pin::new(&mut self.0).poll_read(cx, &mut buf[filled..]);
        let read = match &result {
            Poll::Ready(Ok(n)) => *n,
            _ => 0,
        };
        buf.truncate(filled + read);
        result
    }

    fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
