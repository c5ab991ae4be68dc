//! The runtime pieces the adapter suite needs that smol and async-std
//! share: async-io timers and async-net sockets. Each test root adds how
//! it spawns.

#![allow(dead_code, unused_imports, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub use async_net::{TcpListener, TcpStream};
use futures_util::future::{AbortHandle, abortable};

pub mod io {
    pub use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
}

/// Ends the write side (a TCP FIN).
pub async fn shutdown_write(stream: &mut TcpStream) {
    stream.shutdown(std::net::Shutdown::Write).unwrap();
}

/// A spawned task's result; dropping it lets the task run on.
pub struct Task<T> {
    output: Pin<Box<dyn Future<Output = Result<T, Lost>> + Send>>,
    abort: AbortHandle,
}

/// The task was aborted or panicked.
#[derive(Debug)]
pub struct Lost;

impl<T> Task<T> {
    pub fn abort(self) {
        self.abort.abort();
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T, Lost>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.output.as_mut().poll(cx)
    }
}

/// Runs `future` on an executor through `spawn`.
pub fn spawn_with<F>(
    spawn: impl FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>),
    future: F,
) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (future, abort) = abortable(future);
    let (tx, rx) = async_channel::bounded(1);
    spawn(Box::pin(async move {
        if let Ok(value) = future.await {
            let _ = tx.try_send(value);
        }
    }));
    let output = Box::pin(async move { rx.recv().await.map_err(|_| Lost) });
    Task { output, abort }
}

pub async fn sleep(duration: Duration) {
    async_io::Timer::after(duration).await;
}

/// The deadline passed first.
#[derive(Debug)]
pub struct Elapsed;

pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    futures_lite::future::or(async { Ok(future.await) }, async {
        sleep(duration).await;
        Err(Elapsed)
    })
    .await
}

/// Read and write halves of one socket.
pub fn split(stream: TcpStream) -> (TcpStream, TcpStream) {
    (stream.clone(), stream)
}
