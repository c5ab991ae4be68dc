//! Connecting to `ws://` and `wss://` servers: tokio's TCP and
//! `tokio-rustls` as a [`ws_async::Network`].

use std::io;
use std::net::SocketAddr;
#[cfg(feature = "tls")]
use std::sync::Arc;

#[cfg(feature = "tls")]
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
#[cfg(feature = "tls")]
use tokio_rustls::TlsConnector;
#[cfg(feature = "tls")]
use tokio_rustls::client::TlsStream;
use ws_async::{BoxFuture, Client, ConnectError, IntoClientRequest, Network, WebSocket};

use crate::io::TokioIo;
use crate::runtime::TokioRuntime;

/// A client for `request` (a `ws://` or `wss://` URI as `&str`, `String`
/// or `Uri`, or an `http::Request` with headers) on tokio, to configure
/// before [`Client::connect`].
pub fn client(request: impl IntoClientRequest) -> Result<Client, ConnectError> {
    Client::new(TokioRuntime, request)
}

/// Connects to `request` (see [`client`]) with default settings. Returns
/// the connection and the server's 101 response.
pub async fn connect(
    request: impl IntoClientRequest,
) -> Result<(WebSocket, http::Response<()>), ConnectError> {
    client(request)?.connect().await
}

impl Network for TokioRuntime {
    type Tcp = TokioIo<TcpStream>;
    #[cfg(feature = "tls")]
    type Tls = TokioIo<TlsStream<TcpStream>>;

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        let host = host.to_owned();
        Box::pin(async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo(tcp))
        })
    }

    fn peer_addr(tcp: &Self::Tcp) -> Option<SocketAddr> {
        tcp.0.peer_addr().ok()
    }

    #[cfg(feature = "tls")]
    fn connect_tls(
        &self,
        tcp: Self::Tcp,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    ) -> BoxFuture<io::Result<Self::Tls>> {
        let connect = TlsConnector::from(config).connect(name, tcp.0);
        Box::pin(async move { Ok(TokioIo(connect.await?)) })
    }
}
