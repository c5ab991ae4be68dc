//! Connecting to `ws://` and `wss://` servers.

use std::io;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use ws_async::{ClientConfig, ConnectError, WebSocket};
use ws_core::handshake::{ClientRequest, ResponseError};

use crate::io::TokioIo;
use crate::runtime::TokioRuntime;

/// Connects to `uri` with default settings. Returns the connection and the
/// server's 101 response.
pub async fn connect(uri: &str) -> Result<(WebSocket, http::Response<()>), ConnectError> {
    Client::new(uri)?.connect().await
}

/// A client connection to make: URI, headers, subprotocols, limits, TLS.
///
/// Redirects are not followed (a 3xx fails with its `Location` in
/// [`ResponseError::Status`]), so credentials never travel to another
/// origin. TLS always verifies the server's name.
#[derive(Debug, Clone)]
pub struct Client {
    request: ClientRequest,
    config: ClientConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client for `uri` (`ws://` or `wss://`).
    pub fn new(uri: &str) -> Result<Self, ConnectError> {
        Ok(Self::from_request(ClientRequest::new(uri)?))
    }

    /// A client for a prepared request.
    pub fn from_request(request: ClientRequest) -> Self {
        Self {
            request,
            config: ClientConfig::default(),
            tls: None,
        }
    }

    /// Offers a subprotocol.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.request = self.request.subprotocol(name);
        self
    }

    /// Adds a request header (`Authorization`, `Origin`, cookies...).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    /// Replaces the limits and timers.
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses this rustls configuration for `wss://` (default: the Mozilla
    /// roots from webpki-roots).
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects, secures, and runs the handshake, all within the handshake
    /// deadline.
    pub async fn connect(self) -> Result<(WebSocket, http::Response<()>), ConnectError> {
        let deadline = tokio::time::Instant::now() + self.config.handshake.timeout;
        let host = self.request.host().to_owned();
        let port = self.request.port();
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| ConnectError::Handshake(ResponseError::Timeout))??;
        let _ = tcp.set_nodelay(true);
        if !self.request.is_tls() {
            return ws_async::connect_with(TokioRuntime, TokioIo(tcp), &self.request, &self.config)
                .await;
        }
        let tls = self
            .tls
            .clone()
            .unwrap_or_else(crate::tls::default_client_config);
        let name = ServerName::try_from(host)
            .map_err(|e| ConnectError::Tls(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
        let stream = tokio::time::timeout_at(deadline, TlsConnector::from(tls).connect(name, tcp))
            .await
            .map_err(|_| ConnectError::Handshake(ResponseError::Timeout))?
            .map_err(ConnectError::Tls)?;
        ws_async::connect_with(TokioRuntime, TokioIo(stream), &self.request, &self.config).await
    }
}
