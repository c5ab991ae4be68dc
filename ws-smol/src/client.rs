//! Connecting to `ws://` and `wss://` servers: async-net's TCP and
//! `futures-rustls` as a [`ws_async::Network`].

use std::io;
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use std::net::TcpStream;

#[cfg(feature = "tls")]
use async_io::Async;
#[cfg(feature = "tls")]
use futures_rustls::TlsConnector;
#[cfg(feature = "tls")]
use futures_rustls::client::TlsStream;
#[cfg(feature = "tls")]
use rustls_pki_types::ServerName;
use ws_async::{BoxFuture, Client, ConnectError, IntoClientRequest, Network, WebSocket};

#[cfg(feature = "tls")]
use crate::io::FuturesIo;
use crate::runtime::SmolRuntime;
use crate::tcp::TcpTransport;

/// A client for `request` (a `ws://` or `wss://` URI as `&str`, `String`
/// or `Uri`, or an `http::Request` with headers) whose connection task runs
/// on smol's global executor, to configure before [`Client::connect`]. For
/// another executor, use `Client::new(SmolRuntime::with_spawner(..), request)`.
pub fn client(request: impl IntoClientRequest) -> Result<Client, ConnectError> {
    Client::new(SmolRuntime::new(), request)
}

/// Connects to `request` (see [`client`]) with default settings. Returns
/// the connection and the server's 101 response.
pub async fn connect(
    request: impl IntoClientRequest,
) -> Result<(WebSocket, http::Response<()>), ConnectError> {
    client(request)?.connect().await
}

impl Network for SmolRuntime {
    type Tcp = TcpTransport;
    #[cfg(feature = "tls")]
    type Tls = FuturesIo<TlsStream<Async<TcpStream>>>;

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        let host = host.to_owned();
        Box::pin(async move {
            // Every resolved address in turn, as `TcpStream::connect` does.
            let mut last_error = None;
            for addr in async_net::resolve((host.as_str(), port)).await? {
                match TcpTransport::connect(addr).await {
                    Ok(tcp) => return Ok(tcp),
                    Err(error) => last_error = Some(error),
                }
            }
            Err(last_error.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the host resolved to no address")
            }))
        })
    }

    fn peer_addr(tcp: &Self::Tcp) -> Option<std::net::SocketAddr> {
        tcp.peer_addr()
    }

    #[cfg(feature = "tls")]
    fn connect_tls(
        &self,
        tcp: Self::Tcp,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    ) -> BoxFuture<io::Result<Self::Tls>> {
        let connect = TlsConnector::from(config).connect(name, tcp.into_inner());
        Box::pin(async move { Ok(FuturesIo(connect.await?)) })
    }
}
