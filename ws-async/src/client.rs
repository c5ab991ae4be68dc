//! The client side: handshake over a connected transport, then a running
//! connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
#[cfg(feature = "tls")]
use rustls_pki_types::ServerName;
use ws_core::config::deadline_after;
use ws_core::deflate::DeflateConfig;
use ws_core::handshake::{
    ClientHandshake, ClientRequest, MAX_REFUSAL_BODY, ResponseError, ServerResponse,
};
use ws_core::{Config, Connection, HandshakeLimits, Role};

use crate::connection::{ConnectionHandle, ConnectionId, ConnectionInfo, random_seed};
use crate::engine::{DriverLimits, Link, drive};
use crate::error::ConnectError;
use crate::handler::Ctx;
use crate::outbox::Outbox;
use crate::registry::ServerHandle;
use crate::runtime::{
    AnyNetwork, AnyRuntime, Network, OpenError, Runtime, TlsTarget, Transport, read_some,
    with_deadline, write_all,
};
use crate::socket::WebSocket;

/// Settings of a client connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Protocol limits and timers. Default: [`Config::client`].
    pub connection: Config,
    /// Limits on the server's response head and its deadline. Default:
    /// [`HandshakeLimits::default`] (16 KiB, 10 s).
    pub handshake: HandshakeLimits,
    /// Bytes that may wait to be sent before senders wait or get
    /// [`SendError::Full`](crate::SendError::Full). Default: 1 MiB.
    pub send_queue: usize,
    /// Messages the connection's task may decode before the application
    /// asks for them. Default: 0, so replies to a message always go out
    /// before the connection reacts to what followed it; raise it for
    /// throughput when that ordering does not matter.
    pub read_ahead: usize,
    /// Offer permessage-deflate (RFC 7692) under these settings; the
    /// server decides. Default: `None`, not offered (see
    /// [`DeflateConfig`] for the memory each setting costs).
    pub deflate: Option<DeflateConfig>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connection: Config::client(),
            handshake: HandshakeLimits::default(),
            send_queue: 1 << 20,
            read_ahead: 0,
            deflate: None,
        }
    }
}

/// Runs the opening handshake over `io`, which is connected (and secured)
/// already. Nothing but the request is written before the response is
/// validated.
pub async fn handshake<R: Runtime, T: Transport>(
    runtime: &R,
    io: &mut T,
    request: &ClientRequest,
    limits: &HandshakeLimits,
) -> Result<ServerResponse, ConnectError> {
    let now = runtime.now();
    let mut nonce = [0; 16];
    nonce.copy_from_slice(&random_seed()[..16]);
    let (mut hs, wire) = ClientHandshake::new(request, nonce, limits.clone(), now)?;
    let deadline = deadline_after(now, limits.timeout);
    let exchange = async {
        write_all(io, &wire).await?;
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            buf.clear();
            if read_some(io, &mut buf).await? == 0 {
                return Err(ConnectError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            match hs.handle_input(&buf) {
                Ok(Some(response)) => return Ok(response),
                Ok(None) => {}
                Err(ResponseError::Status {
                    status,
                    headers,
                    body,
                }) => {
                    let body = refusal_body(io, &headers, body).await;
                    return Err(ResponseError::Status {
                        status,
                        headers,
                        body,
                    }
                    .into());
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    with_deadline(runtime, deadline, exchange)
        .await
        .unwrap_or(Err(ConnectError::Handshake(ResponseError::Timeout)))
}

/// The body of a refusal up to its `Content-Length` (at most
/// [`MAX_REFUSAL_BODY`]), from what came with the head and what follows:
/// the server's explanation of a 401 or 403. Read within the handshake's
/// deadline; a read that fails ends it.
async fn refusal_body<T: Transport>(io: &mut T, headers: &http::HeaderMap, first: Bytes) -> Bytes {
    let wanted = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_REFUSAL_BODY);
    let mut body = BytesMut::from(&first[..]);
    let mut buf = BytesMut::with_capacity(1024);
    while body.len() < wanted {
        buf.clear();
        match read_some(io, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let room = wanted - body.len();
                body.extend_from_slice(&buf[..buf.len().min(room)]);
            }
        }
    }
    body.freeze()
}

/// Starts the connection's task after a successful handshake and returns
/// the application's handle. permessage-deflate is turned on when the
/// server accepted it (`response.deflate`), under `config.deflate`'s
/// threshold and level (the defaults if it is `None`).
pub fn start<R: Runtime, T: Transport>(
    runtime: R,
    io: T,
    request: http::request::Parts,
    response: ServerResponse,
    config: &ClientConfig,
) -> WebSocket {
    start_with_peer(runtime, io, request, response, config, None)
}

fn start_with_peer<R: Runtime, T: Transport>(
    runtime: R,
    io: T,
    request: http::request::Parts,
    response: ServerResponse,
    config: &ClientConfig,
    peer_addr: Option<SocketAddr>,
) -> WebSocket {
    let mut connection = config.connection.clone();
    connection.receive_mode = ws_core::ReceiveMode::Buffered;
    let limits = DriverLimits {
        inbound_bytes: connection
            .max_message_size
            .saturating_add(connection.read_buffer_size),
        linger: connection.close_timeout,
        shrink_when_idle: true,
    };
    let mut conn = Connection::client(connection, runtime.now(), random_seed());
    if let Some(agreed) = response.deflate {
        let deflate = config.deflate.clone().unwrap_or_default();
        conn = conn.with_deflate(agreed, &deflate);
    }
    conn.handle_read(&response.rest, runtime.now());
    let info = Arc::new(ConnectionInfo {
        id: ConnectionId::random(),
        peer_addr,
        request,
        subprotocol: response.subprotocol,
        deflate: response.deflate,
        role: Role::Client,
    });
    let outbox = Arc::new(Outbox::new(config.send_queue, Role::Client));
    let handle = ConnectionHandle::new(info.id, outbox.clone());
    let (socket, forward) = WebSocket::new(handle.clone(), info.clone(), config.read_ahead);
    let link = Link::new(runtime.clone(), io, conn, outbox, limits);
    // The handler behind a client is internal; it never looks at a server.
    let detached = ServerHandle::new(AnyRuntime::new(runtime.clone()));
    let ctx = Ctx::new(handle, info, detached);
    runtime.spawn(Box::pin(async move {
        drive(link, forward, ctx, None).await;
    }));
    socket
}

/// The request as `http` parts, for [`ConnectionInfo::request`].
pub(crate) fn request_parts(request: &ClientRequest) -> http::request::Parts {
    let mut parts = http::Request::new(()).into_parts().0;
    parts.uri = request.uri().clone();
    parts
}

/// Connects over an already-connected transport: handshake, then start.
/// The connection's [`ConnectionInfo::peer_addr`] is `None`: the transport
/// is the caller's.
pub async fn connect_with<R: Runtime, T: Transport>(
    runtime: R,
    io: T,
    request: &ClientRequest,
    config: &ClientConfig,
) -> Result<(WebSocket, http::Response<()>), ConnectError> {
    connect_over(runtime, io, request, config, None).await
}

async fn connect_over<R: Runtime, T: Transport>(
    runtime: R,
    mut io: T,
    request: &ClientRequest,
    config: &ClientConfig,
    peer: Option<SocketAddr>,
) -> Result<(WebSocket, http::Response<()>), ConnectError> {
    // One offer decides what is sent and how we compress: the request's
    // own, else the config's.
    let mut config = config.clone();
    config.deflate = request.deflate_config().cloned().or(config.deflate);
    let offered;
    let request = match (&config.deflate, request.deflate_config()) {
        (Some(deflate), None) => {
            offered = request.clone().deflate(deflate.clone());
            &offered
        }
        _ => request,
    };
    let mut response = handshake(&runtime, &mut io, request, &config.handshake).await?;
    let head = std::mem::replace(&mut response.response, http::Response::new(()));
    let socket = start_with_peer(runtime, io, request_parts(request), response, &config, peer);
    Ok((socket, head))
}

/// What a client can connect to: a `ws://` or `wss://` URI as `&str`,
/// `String` or [`http::Uri`], an [`http::Request`] (its URI and headers;
/// subprotocols from its `Sec-WebSocket-Protocol`), or a prepared
/// [`ClientRequest`].
pub trait IntoClientRequest {
    /// The request, or why it is not a valid WebSocket request.
    fn into_client_request(self) -> Result<ClientRequest, ConnectError>;
}

impl IntoClientRequest for &str {
    fn into_client_request(self) -> Result<ClientRequest, ConnectError> {
        Ok(ClientRequest::new(self)?)
    }
}

impl IntoClientRequest for &String {
    fn into_client_request(self) -> Result<ClientRequest, ConnectError> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for String {
    fn into_client_request(self) -> Result<ClientRequest, ConnectError> {
        self.as_str().into_client_request()
    }
}

impl IntoClientRequest for http::Uri {
    fn into_client_request(self) -> Result<ClientRequest, ConnectError> {
        Ok(ClientRequest::from_uri(self)?)
    }
}

impl IntoClientRequest for http::Request<()> {
    fn into_client_request(self) -> Result<ClientRequest, ConnectError> {
        Ok(ClientRequest::try_from(self)?)
    }
}

impl IntoClientRequest for ClientRequest {
    fn into_client_request(self) -> Result<ClientRequest, ConnectError> {
        Ok(self)
    }
}

/// A client connection to make: URI, headers, subprotocols, limits, TLS,
/// and the runtime its connection runs on (the adapters' `client()` and
/// `connect()` pick theirs).
///
/// Redirects are not followed (a 3xx fails with its `Location` in
/// [`ResponseError::Status`]), so credentials never travel to another
/// origin. TLS always verifies the server's name.
#[derive(Debug, Clone)]
pub struct Client {
    network: AnyNetwork,
    request: ClientRequest,
    config: ClientConfig,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client for `request` (a `ws://` or `wss://` URI, or a request
    /// with headers; see [`IntoClientRequest`]) on `network`.
    pub fn new(
        network: impl Network,
        request: impl IntoClientRequest,
    ) -> Result<Self, ConnectError> {
        Ok(Self::from_request(network, request.into_client_request()?))
    }

    /// A client for a prepared request on `network`.
    pub fn from_request(network: impl Network, request: ClientRequest) -> Self {
        Self {
            network: AnyNetwork::new(network),
            request,
            config: ClientConfig::default(),
            #[cfg(feature = "tls")]
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

    /// Replaces the limits and timers (default: [`ClientConfig::default`]).
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses this rustls configuration for `wss://` (default: the Mozilla
    /// roots from webpki-roots, see [`crate::tls::default_client_config`]).
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Connects, secures, and runs the handshake, all within the handshake
    /// deadline (10 s by default). Returns the connection and the server's
    /// 101 response.
    pub async fn connect(self) -> Result<(WebSocket, http::Response<()>), ConnectError> {
        let runtime = self.network.runtime();
        let deadline = deadline_after(runtime.now(), self.config.handshake.timeout);
        let host = self.request.host().to_owned();
        let port = self.request.port();
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tls = if self.request.is_tls() {
            Some(self.tls_target(&host, &target)?)
        } else {
            None
        };
        let opened = with_deadline(&runtime, deadline, self.network.open(host, port, tls))
            .await
            .ok_or(ConnectError::Handshake(ResponseError::Timeout))?;
        let (io, peer) = opened.map_err(|error| match error {
            OpenError::Tcp(source) => ConnectError::Connect { target, source },
            #[cfg(feature = "tls")]
            OpenError::Tls(source) => ConnectError::Tls { target, source },
        })?;
        connect_over(runtime, io, &self.request, &self.config, peer).await
    }

    #[cfg(feature = "tls")]
    fn tls_target(&self, host: &str, target: &str) -> Result<TlsTarget, ConnectError> {
        let config = self
            .tls
            .clone()
            .unwrap_or_else(crate::tls::default_client_config);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| ConnectError::Tls {
            target: target.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        Ok((name, config))
    }

    #[cfg(not(feature = "tls"))]
    fn tls_target(&self, _host: &str, target: &str) -> Result<TlsTarget, ConnectError> {
        Err(ConnectError::Tls {
            target: target.to_owned(),
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "wss:// needs the `tls` feature, which this build leaves out",
            ),
        })
    }
}
