// The runtime under test, for a test root under `<crate>/tests/` that
// `include!`s this file: `mod rt` (how tokio spawns, sleeps, times out and
// opens raw sockets, and `rt::ws`, the adapter crate) and the
// `adapter_tests!` macro that runs each test on a current-thread runtime.

/// What the suite needs from the runtime under test.
// Not every suite uses every piece.
#[allow(dead_code, unused_imports)]
mod rt {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    pub use tokio::net::{TcpListener, TcpStream};
    pub use ws_tokio as ws;

    pub mod io {
        pub use tokio::io::{AsyncReadExt, AsyncWriteExt};
    }

    /// A spawned task; dropping it lets it run on.
    pub struct Task<T>(tokio::task::JoinHandle<T>);

    impl<T> Task<T> {
        pub fn abort(&self) {
            self.0.abort();
        }
    }

    impl<T> Future for Task<T> {
        type Output = Result<T, tokio::task::JoinError>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            Pin::new(&mut self.0).poll(cx)
        }
    }

    pub fn spawn<F>(future: F) -> Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Task(tokio::spawn(future))
    }

    pub async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    pub async fn timeout<F: Future>(
        duration: Duration,
        future: F,
    ) -> Result<F::Output, tokio::time::error::Elapsed> {
        tokio::time::timeout(duration, future).await
    }

    /// Ends the write side (a TCP FIN).
    pub async fn shutdown_write(stream: &mut TcpStream) {
        tokio::io::AsyncWriteExt::shutdown(stream).await.unwrap();
    }

    pub fn split(
        stream: TcpStream,
    ) -> (
        tokio::net::tcp::OwnedReadHalf,
        tokio::net::tcp::OwnedWriteHalf,
    ) {
        stream.into_split()
    }
}

/// Each suite test, on a current-thread runtime like `#[tokio::test]`.
macro_rules! adapter_tests {
    ($($name:ident),* $(,)?) => {
        mod on_tokio {
            $(
                #[test]
                fn $name() {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a tokio runtime")
                        .block_on(super::$name());
                }
            )*
        }
    };
}
