//! The server half of the opening handshake (RFC 6455 §4.2).

use std::fmt;
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    ALLOW, CONNECTION, CONTENT_LENGTH, HOST, ORIGIN, SEC_WEBSOCKET_ACCEPT,
    SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};

use super::head::{HeadError, HeadReader};
use super::headers::{has_token, mark_sensitive, single, token_list};
use super::key::{accept_key, is_valid_key};
use super::{encode_head, parse_headers};
use crate::config::HandshakeLimits;
use crate::deflate::{DeflateConfig, DeflateParams, server_negotiate};
use crate::error::UsageError;

/// Why a handshake request was refused. Each cause has its HTTP status
/// ([`RequestError::status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The request line exceeded `max_line_size`: 414.
    #[error("request line too long")]
    UriTooLong,
    /// A header line exceeded `max_line_size`: 431.
    #[error("header line too long")]
    HeaderLineTooLong,
    /// More than `max_headers` headers: 431.
    #[error("too many headers")]
    TooManyHeaders,
    /// The head exceeded `max_head_size`: 431.
    #[error("request head too large")]
    HeadTooLarge,
    /// Not parseable as an HTTP/1.1 request: 400.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The method was not GET: 405 with `Allow: GET`.
    #[error("method {0} not allowed")]
    MethodNotAllowed(String),
    /// The request was not HTTP/1.1: 505.
    #[error("HTTP version not supported")]
    HttpVersion,
    /// `Host` missing or repeated: 400.
    #[error("missing or duplicate Host header")]
    Host,
    /// `Content-Length` above zero or any `Transfer-Encoding`: 400.
    #[error("upgrade request with a body")]
    Body,
    /// Bytes arrived after the head, before the response: 400.
    #[error("data sent before the handshake completed")]
    Pipelined,
    /// `Upgrade` does not list `websocket`: 426 with `Upgrade: websocket`.
    #[error("missing Upgrade: websocket")]
    Upgrade,
    /// `Connection` does not list `upgrade`: 400.
    #[error("Connection header does not list upgrade")]
    Connection,
    /// `Sec-WebSocket-Version` absent, repeated or not 13: 426 with
    /// `Sec-WebSocket-Version: 13`.
    #[error("unsupported Sec-WebSocket-Version")]
    Version,
    /// `Sec-WebSocket-Key` absent, repeated or not 16 base64-encoded bytes:
    /// 400.
    #[error("missing, duplicate or malformed Sec-WebSocket-Key")]
    Key,
    /// `Sec-WebSocket-Protocol` has an element that is not a token: 400.
    #[error("malformed Sec-WebSocket-Protocol")]
    Subprotocol,
    /// The head did not arrive within the handshake deadline: 408.
    #[error("handshake timed out")]
    Timeout,
}

impl RequestError {
    /// The HTTP status answering this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeaderLineTooLong | Self::TooManyHeaders | Self::HeadTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::HttpVersion => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            Self::Upgrade | Self::Version => StatusCode::UPGRADE_REQUIRED,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Malformed(_)
            | Self::Host
            | Self::Body
            | Self::Pipelined
            | Self::Connection
            | Self::Key
            | Self::Subprotocol => StatusCode::BAD_REQUEST,
        }
    }

    fn response_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        match self {
            Self::MethodNotAllowed(_) => {
                headers.insert(ALLOW, HeaderValue::from_static("GET"));
            }
            Self::Upgrade => {
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            }
            Self::Version => {
                headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            _ => {}
        }
        headers
    }
}

impl From<HeadError> for RequestError {
    fn from(error: HeadError) -> Self {
        match error {
            HeadError::StartLineTooLong(_) => Self::UriTooLong,
            HeadError::HeaderLineTooLong(_) => Self::HeaderLineTooLong,
            HeadError::TooManyHeaders(_) => Self::TooManyHeaders,
            HeadError::TooLarge(_) => Self::HeadTooLarge,
            HeadError::NotHttp(_) => Self::Malformed(error.to_string()),
        }
    }
}

/// A refusal to upgrade: an HTTP response to write before closing the
/// transport.
#[derive(Clone)]
pub struct Rejection {
    error: Option<RequestError>,
    // Boxed: a rejection travels in `Result::Err`, which should stay small.
    response: Box<Response<Bytes>>,
}

impl Rejection {
    /// A refusal chosen by the application (401, 403, 429, 503, ...). The
    /// response gets `Connection: close` and a `Content-Length`.
    pub fn new(status: StatusCode, headers: HeaderMap, body: impl Into<Bytes>) -> Self {
        let mut response = Response::new(body.into());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Self {
            error: None,
            response: Box::new(response),
        }
    }

    /// A refusal with `status` and `message` as a one-line text body, for
    /// example `Rejection::plain(StatusCode::FORBIDDEN, "not a member")`.
    pub fn plain(status: StatusCode, message: &str) -> Self {
        Self::new(status, HeaderMap::new(), format!("{message}\n"))
    }

    fn from_error(error: RequestError) -> Self {
        let body = Bytes::from(format!("{error}\n"));
        let mut rejection = Self::new(error.status(), error.response_headers(), body);
        rejection.error = Some(error);
        rejection
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// What was wrong with the request, when the refusal was not the
    /// application's choice.
    pub fn error(&self) -> Option<&RequestError> {
        self.error.as_ref()
    }

    /// The response, for handing to an HTTP server library.
    pub fn response(&self) -> &Response<Bytes> {
        &self.response
    }

    /// The response in HTTP/1.1 wire form.
    pub fn to_bytes(&self) -> Bytes {
        let mut headers = self.response.headers().clone();
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        headers.insert(
            CONTENT_LENGTH,
            HeaderValue::from(self.response.body().len()),
        );
        let mut wire = encode_head(&status_line(self.status()), &headers);
        wire.extend_from_slice(self.response.body());
        wire.freeze()
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("status", &self.status())
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Some(error) => write!(f, "{} ({error})", self.status()),
            None => write!(f, "{}", self.status()),
        }
    }
}

impl std::error::Error for Rejection {}

fn status_line(status: StatusCode) -> String {
    format!(
        "HTTP/1.1 {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Unknown")
    )
}

/// Reads a handshake request from a new connection.
///
/// Feed it bytes until it yields an [`UpgradeRequest`] (accept or reject
/// it) or a [`Rejection`] (write it and close). Arm a timer for
/// [`poll_timeout`](Self::poll_timeout); on expiry
/// [`handle_timeout`](Self::handle_timeout) yields a 408.
#[derive(Debug)]
pub struct ServerHandshake {
    reader: HeadReader,
    deadline: Instant,
    done: bool,
}

impl ServerHandshake {
    /// Starts reading a request at `now` under `limits`.
    pub fn new(limits: HandshakeLimits, now: Instant) -> Self {
        let deadline = crate::config::deadline_after(now, limits.timeout);
        Self {
            reader: HeadReader::new(limits),
            deadline,
            done: false,
        }
    }

    /// Feeds received bytes. `Ok(None)`: more are needed. Input after a
    /// result was returned is ignored.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Option<UpgradeRequest>, Rejection> {
        if self.done {
            return Ok(None);
        }
        let result = self.read(data);
        self.done = !matches!(result, Ok(None));
        result.map_err(Rejection::from_error)
    }

    fn read(&mut self, data: &[u8]) -> Result<Option<UpgradeRequest>, RequestError> {
        let Some(head) = self.reader.push(data)? else {
            return Ok(None);
        };
        // The request's own faults come first: whether pipelined bytes share
        // a read with the head is a matter of timing.
        let mut upgrade = validate(parse_request(&head.head, head.lines)?)?;
        if !head.rest.is_empty() && !self.reader.limits().accept_early_data {
            return Err(RequestError::Pipelined);
        }
        upgrade.rest = head.rest;
        Ok(Some(upgrade))
    }

    /// When the head must have arrived, or `None` once a result was returned.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done).then_some(self.deadline)
    }

    /// A 408 rejection if the deadline passed before the head was complete.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Rejection> {
        if self.done || now < self.deadline {
            return None;
        }
        self.done = true;
        Some(Rejection::from_error(RequestError::Timeout))
    }

    /// The limits in force.
    pub fn limits(&self) -> &HandshakeLimits {
        self.reader.limits()
    }
}

fn parse_request(head: &[u8], lines: usize) -> Result<Request<()>, RequestError> {
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(RequestError::Malformed("incomplete head".into()));
        }
        Err(httparse::Error::Version) => return Err(RequestError::HttpVersion),
        Err(error) => return Err(RequestError::Malformed(error.to_string())),
    }
    if parsed.version != Some(1) {
        return Err(RequestError::HttpVersion);
    }
    let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
        .map_err(|e| RequestError::Malformed(e.to_string()))?;
    let uri: http::Uri = parsed
        .path
        .unwrap_or_default()
        .parse()
        .map_err(|e: http::uri::InvalidUri| RequestError::Malformed(e.to_string()))?;
    let mut headers = parse_headers(parsed.headers).map_err(RequestError::Malformed)?;
    mark_sensitive(&mut headers);
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(request)
}

fn validate(request: Request<()>) -> Result<UpgradeRequest, RequestError> {
    if request.method() != Method::GET {
        return Err(RequestError::MethodNotAllowed(request.method().to_string()));
    }
    if request.version() != Version::HTTP_11 {
        return Err(RequestError::HttpVersion);
    }
    let headers = request.headers();
    if single(headers, &HOST).is_none() {
        return Err(RequestError::Host);
    }
    let has_body = headers.contains_key(TRANSFER_ENCODING)
        || headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .any(|v| v.as_bytes() != b"0");
    if has_body {
        return Err(RequestError::Body);
    }
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(RequestError::Upgrade);
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(RequestError::Connection);
    }
    if single(headers, &SEC_WEBSOCKET_VERSION).is_none_or(|v| v.as_bytes() != b"13") {
        return Err(RequestError::Version);
    }
    let key = single(headers, &SEC_WEBSOCKET_KEY)
        .filter(|key| is_valid_key(key.as_bytes()))
        .ok_or(RequestError::Key)?;
    let accept = accept_key(key.as_bytes());
    let subprotocols =
        token_list(headers, &SEC_WEBSOCKET_PROTOCOL).map_err(|()| RequestError::Subprotocol)?;
    Ok(UpgradeRequest {
        request,
        accept,
        subprotocols,
        rest: Bytes::new(),
    })
}

/// A valid WebSocket upgrade request, waiting for the application's answer.
///
/// Inspect the path, headers (`Origin`, `Authorization`, ...) and offered
/// subprotocols, then [`accept`](Self::accept) or [`reject`](Self::reject).
///
/// Its `Debug` output shows credentials (`Authorization`, `Cookie`,
/// `Sec-WebSocket-Protocol`, which browsers use to carry tokens) as
/// `Sensitive`, and the offered subprotocols only by number.
#[must_use = "an upgrade request must be accepted or rejected"]
pub struct UpgradeRequest {
    request: Request<()>,
    accept: String,
    subprotocols: Vec<String>,
    rest: Bytes,
}

impl fmt::Debug for UpgradeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeRequest")
            .field("request", &self.request)
            .field("subprotocols", &self.subprotocols.len())
            .finish_non_exhaustive()
    }
}

impl UpgradeRequest {
    /// Validates a request parsed elsewhere (for example by hyper) as a
    /// WebSocket upgrade.
    pub fn from_request(mut request: Request<()>) -> Result<Self, Rejection> {
        mark_sensitive(request.headers_mut());
        validate(request).map_err(Rejection::from_error)
    }

    /// The request.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// Bytes that arrived behind the request head, in the same input:
    /// always empty unless
    /// [`HandshakeLimits::accept_early_data`](crate::HandshakeLimits::accept_early_data)
    /// lets them in. Once accepted, the connection reads them first
    /// ([`Connection::handle_read`](crate::Connection::handle_read)), as
    /// a client does with [`ServerResponse::rest`](crate::handshake::ServerResponse::rest).
    pub fn rest(&self) -> &Bytes {
        &self.rest
    }

    /// The request path (without the query).
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        self.request.headers()
    }

    /// The `Origin` header, if present and visible ASCII.
    pub fn origin(&self) -> Option<&str> {
        self.headers().get(ORIGIN).and_then(|v| v.to_str().ok())
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    /// The permessage-deflate parameters to answer with under `config`:
    /// the first of the client's offers (in order, across
    /// `Sec-WebSocket-Extensions` lines) that `config` can accept. `None`
    /// when there is none, or the header is malformed or hostile: the
    /// connection then proceeds uncompressed (ROBUSTNESS 7, 29). Pass the
    /// result to [`Accept::deflate`].
    pub fn negotiate_deflate(&self, config: &DeflateConfig) -> Option<DeflateParams> {
        let values = self.headers().get_all(SEC_WEBSOCKET_EXTENSIONS);
        let mut text = Vec::new();
        for value in values {
            text.push(value.to_str().ok()?);
        }
        server_negotiate(text, config)
    }

    /// Accepts the upgrade. Fails if `accept` names a subprotocol the client
    /// did not offer or sets a header the handshake owns.
    pub fn accept(self, accept: Accept) -> Result<Accepted, UsageError> {
        let reserved = [
            &UPGRADE,
            &CONNECTION,
            &SEC_WEBSOCKET_ACCEPT,
            &SEC_WEBSOCKET_PROTOCOL,
            &SEC_WEBSOCKET_EXTENSIONS,
        ];
        if let Some(name) = reserved
            .iter()
            .find(|name| accept.headers.contains_key(**name))
        {
            return Err(UsageError::InvalidHeader(format!(
                "{name} is set by the handshake"
            )));
        }
        let mut headers = HeaderMap::with_capacity(4 + accept.headers.len());
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&self.accept).expect("base64 is a valid header value"),
        );
        if let Some(chosen) = &accept.subprotocol {
            if !self.subprotocols.contains(chosen) {
                return Err(UsageError::SubprotocolNotOffered(chosen.clone()));
            }
            let value = HeaderValue::from_str(chosen).expect("offered subprotocols are tokens");
            headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
        if let Some(agreed) = &accept.deflate {
            let value = HeaderValue::from_str(&agreed.to_header()).expect("parameters are tokens");
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
        }
        headers.extend(accept.headers);
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *response.headers_mut() = headers;
        Ok(Accepted {
            request: self.request,
            response,
            subprotocol: accept.subprotocol,
            deflate: accept.deflate,
            rest: self.rest,
        })
    }

    /// Refuses the upgrade with `status`, extra headers and a body.
    pub fn reject(
        self,
        status: StatusCode,
        headers: HeaderMap,
        body: impl Into<Bytes>,
    ) -> Rejection {
        Rejection::new(status, headers, body)
    }
}

/// How to accept an upgrade: a subprotocol, permessage-deflate, and extra
/// response headers.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
    headers: HeaderMap,
}

impl Accept {
    /// No subprotocol, no extra headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects one of the offered subprotocols.
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocol = Some(name.into());
        self
    }

    /// Turns on permessage-deflate with the parameters
    /// [`UpgradeRequest::negotiate_deflate`] chose; the response says so in
    /// `Sec-WebSocket-Extensions`.
    pub fn deflate(mut self, agreed: DeflateParams) -> Self {
        self.deflate = Some(agreed);
        self
    }

    /// Adds a response header (for example `Set-Cookie`).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// An accepted upgrade: write [`to_bytes`](Self::to_bytes), then run a
/// [`Connection`](crate::Connection) in the server role.
#[derive(Debug)]
pub struct Accepted {
    request: Request<()>,
    response: Response<()>,
    subprotocol: Option<String>,
    deflate: Option<DeflateParams>,
    rest: Bytes,
}

impl Accepted {
    /// Bytes that arrived behind the request (see
    /// [`UpgradeRequest::rest`]): feed them to the connection before
    /// anything read later.
    pub fn rest(&self) -> &Bytes {
        &self.rest
    }

    /// The request that was accepted.
    pub fn request(&self) -> &Request<()> {
        &self.request
    }

    /// The 101 response, for handing to an HTTP server library.
    pub fn response(&self) -> &Response<()> {
        &self.response
    }

    /// The chosen subprotocol.
    pub fn subprotocol(&self) -> Option<&str> {
        self.subprotocol.as_deref()
    }

    /// The permessage-deflate parameters agreed, for
    /// [`Connection::with_deflate`](crate::Connection::with_deflate).
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.deflate
    }

    /// The request that was accepted, by value.
    pub fn into_request(self) -> Request<()> {
        self.request
    }

    /// The 101 response in HTTP/1.1 wire form.
    pub fn to_bytes(&self) -> Bytes {
        encode_head(
            &status_line(self.response.status()),
            self.response.headers(),
        )
        .freeze()
    }
}
