//! The client half of the opening handshake (RFC 6455 §4.1).

use std::time::Instant;

use bytes::Bytes;
use http::header::{
    CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, Version};

use super::head::{HeadError, HeadReader};
use super::headers::{has_token, is_sensitive, is_token, mark_sensitive, single, token_list};
use super::key::{accept_key, client_key};
use super::{encode_head, parse_headers};
use crate::config::HandshakeLimits;
use crate::deflate::{DeflateConfig, DeflateParams, NegotiationError, client_accept, client_offer};
use crate::error::UsageError;

/// What to connect to and what to offer.
///
/// Its `Debug` output leaves out credentials: header values such as
/// `Authorization` and `Cookie` show as `Sensitive`, subprotocols (which
/// may carry tokens) only by number.
#[derive(Clone)]
pub struct ClientRequest {
    uri: Uri,
    tls: bool,
    subprotocols: Vec<String>,
    deflate: Option<DeflateConfig>,
    headers: HeaderMap,
}

impl std::fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRequest")
            .field("uri", &self.uri)
            .field("subprotocols", &self.subprotocols.len())
            .field("deflate", &self.deflate)
            .field("headers", &self.headers)
            .finish()
    }
}

impl ClientRequest {
    /// A request for a `ws://` or `wss://` URI with a host and no
    /// `user:password@` part (credentials go in a header).
    pub fn new(uri: &str) -> Result<Self, UsageError> {
        let uri: Uri = uri
            .parse()
            .map_err(|e: http::uri::InvalidUri| UsageError::InvalidUri(e.to_string()))?;
        Self::from_uri(uri)
    }

    /// A request for a parsed URI.
    pub fn from_uri(uri: Uri) -> Result<Self, UsageError> {
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("ws") => false,
            Some(s) if s.eq_ignore_ascii_case("wss") => true,
            other => {
                return Err(UsageError::InvalidUri(match other {
                    Some(scheme) => format!("the scheme must be ws or wss, not {scheme}"),
                    None => "the URI has no scheme (ws:// or wss://)".into(),
                }));
            }
        };
        if uri.host().is_none_or(str::is_empty) {
            return Err(UsageError::InvalidUri("no host".into()));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            // It would not be sent, and a URI is often logged.
            return Err(UsageError::InvalidUri(
                "credentials in the URI (user:password@) are not sent; \
                 use an Authorization header"
                    .into(),
            ));
        }
        Ok(Self {
            uri,
            tls,
            subprotocols: Vec::new(),
            deflate: None,
            headers: HeaderMap::new(),
        })
    }

    /// Offers a subprotocol (in order of preference).
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocols.push(name.into());
        self
    }

    /// Offers permessage-deflate under `config` (not offered by default).
    /// The server's answer is checked against it and arrives in
    /// [`ServerResponse::deflate`].
    pub fn deflate(mut self, config: DeflateConfig) -> Self {
        self.deflate = Some(config);
        self
    }

    /// The permessage-deflate offer, if one is made.
    pub fn deflate_config(&self) -> Option<&DeflateConfig> {
        self.deflate.as_ref()
    }

    /// Adds a request header (for example `Authorization` or `Origin`). A
    /// `Host` header replaces the one derived from the URI. Credentials
    /// (`Authorization`, `Proxy-Authorization`, `Cookie`) are marked
    /// sensitive.
    pub fn header(mut self, name: HeaderName, mut value: HeaderValue) -> Self {
        if is_sensitive(&name) {
            value.set_sensitive(true);
        }
        self.headers.append(name, value);
        self
    }

    /// The URI.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Whether the URI is `wss://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host to connect to, without IPv6 brackets.
    pub fn host(&self) -> &str {
        let host = self.uri.host().unwrap_or_default();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port to connect to: explicit, or 80 for `ws`, 443 for `wss`.
    pub fn port(&self) -> u16 {
        self.uri
            .port_u16()
            .unwrap_or(if self.tls { 443 } else { 80 })
    }

    /// The subprotocols offered.
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }
}

impl TryFrom<Request<()>> for ClientRequest {
    type Error = UsageError;

    /// Takes the URI and headers of `request`; subprotocols listed in its
    /// `Sec-WebSocket-Protocol` header are offered.
    fn try_from(request: Request<()>) -> Result<Self, UsageError> {
        let (parts, ()) = request.into_parts();
        let mut client = Self::from_uri(parts.uri)?;
        let mut headers = parts.headers;
        client.subprotocols = token_list(&headers, &SEC_WEBSOCKET_PROTOCOL)
            .map_err(|()| UsageError::InvalidHeader("Sec-WebSocket-Protocol".into()))?;
        headers.remove(SEC_WEBSOCKET_PROTOCOL);
        mark_sensitive(&mut headers);
        client.headers = headers;
        Ok(client)
    }
}

/// Why the server's response was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The response head broke a size limit, or was not HTTP.
    #[error("unusable response head")]
    Head(#[from] HeadError),
    /// Not parseable as an HTTP/1.1 response.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The server answered with something other than 101.
    #[error("server answered {status} instead of 101 Switching Protocols")]
    Status {
        /// The status.
        status: StatusCode,
        /// The response headers (for example `Location` or
        /// `WWW-Authenticate`), boxed to keep the error small.
        headers: Box<HeaderMap>,
        /// The start of the response body, the server's explanation (at
        /// most [`MAX_REFUSAL_BODY`] bytes): what arrived with the head
        /// here; the async clients read on to its `Content-Length`.
        body: Bytes,
    },
    /// `Upgrade: websocket` missing.
    #[error("response lacks Upgrade: websocket")]
    Upgrade,
    /// `Connection: upgrade` missing.
    #[error("response lacks Connection: upgrade")]
    Connection,
    /// `Sec-WebSocket-Accept` missing, repeated or wrong.
    #[error("wrong Sec-WebSocket-Accept")]
    Accept,
    /// The server chose a subprotocol that was not offered.
    #[error("server chose subprotocol {0:?}, which was not offered")]
    Subprotocol(String),
    /// The server enabled an extension that was not offered.
    #[error("server enabled extension {0:?}, which was not offered")]
    Extension(String),
    /// The server's permessage-deflate answer does not fit the offer
    /// (unoffered, repeated, out-of-range or unknown parameters).
    #[error(transparent)]
    Deflate(#[from] NegotiationError),
    /// The response did not arrive within the handshake deadline.
    #[error("no response within the handshake deadline")]
    Timeout,
}

/// The server's accepted response.
#[derive(Debug)]
pub struct ServerResponse {
    /// The 101 response.
    pub response: Response<()>,
    /// The subprotocol the server chose.
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters the server accepted, for
    /// [`Connection::with_deflate`](crate::Connection::with_deflate).
    pub deflate: Option<DeflateParams>,
    /// Bytes that followed the response: the start of the frame stream.
    /// Feed them to the [`Connection`](crate::Connection) first.
    pub rest: Bytes,
}

/// The most of a refusal's body kept in [`ResponseError::Status`].
pub const MAX_REFUSAL_BODY: usize = 4096;

/// Sends a handshake request and checks the server's response.
///
/// [`new`](Self::new) returns the request bytes to write; feed the
/// response to [`handle_input`](Self::handle_input) until it yields a
/// [`ServerResponse`] or an error. Nothing else may be sent before that.
#[derive(Debug)]
pub struct ClientHandshake {
    reader: HeadReader,
    accept: String,
    subprotocols: Vec<String>,
    deflate: Option<DeflateConfig>,
    deadline: Instant,
    done: bool,
}

impl ClientHandshake {
    /// Builds the request for `request`; `nonce` must be 16 fresh random
    /// bytes (it becomes `Sec-WebSocket-Key`).
    pub fn new(
        request: &ClientRequest,
        nonce: [u8; 16],
        limits: HandshakeLimits,
        now: Instant,
    ) -> Result<(Self, Bytes), UsageError> {
        let owned = [
            &UPGRADE,
            &CONNECTION,
            &SEC_WEBSOCKET_KEY,
            &SEC_WEBSOCKET_VERSION,
            &SEC_WEBSOCKET_PROTOCOL,
            &SEC_WEBSOCKET_EXTENSIONS,
        ];
        if let Some(name) = owned
            .iter()
            .find(|name| request.headers.contains_key(**name))
        {
            return Err(UsageError::InvalidHeader(format!(
                "{name} is set by the handshake"
            )));
        }
        if let Some(bad) = request.subprotocols.iter().find(|p| !is_token(p)) {
            return Err(UsageError::InvalidHeader(format!(
                "subprotocol {bad:?} is not a token"
            )));
        }
        let key = client_key(nonce);
        let mut headers = HeaderMap::with_capacity(6 + request.headers.len());
        if !request.headers.contains_key(HOST) {
            let authority = request.uri.authority().map_or("", |a| a.as_str());
            // Userinfo never goes into Host.
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let value =
                HeaderValue::from_str(host).map_err(|e| UsageError::InvalidUri(e.to_string()))?;
            headers.insert(HOST, value);
        }
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_str(&key).expect("base64"),
        );
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if !request.subprotocols.is_empty() {
            let list = request.subprotocols.join(", ");
            headers.insert(
                SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(&list).expect("tokens"),
            );
        }
        if let Some(config) = &request.deflate {
            let offer = HeaderValue::from_str(&client_offer(config)).expect("tokens");
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, offer);
        }
        for (name, value) in &request.headers {
            headers.append(name, value.clone());
        }
        let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
        let target = if target.is_empty() { "/" } else { target };
        let wire = encode_head(&format!("GET {target} HTTP/1.1"), &headers).freeze();
        let deadline = crate::config::deadline_after(now, limits.timeout);
        Ok((
            Self {
                reader: HeadReader::new(limits),
                accept: accept_key(key.as_bytes()),
                subprotocols: request.subprotocols.clone(),
                deflate: request.deflate.clone(),
                deadline,
                done: false,
            },
            wire,
        ))
    }

    /// Feeds received bytes. `Ok(None)`: more are needed. Input after a
    /// result was returned is ignored.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<Option<ServerResponse>, ResponseError> {
        if self.done {
            return Ok(None);
        }
        let result = self.read(data);
        self.done = !matches!(result, Ok(None));
        result
    }

    fn read(&mut self, data: &[u8]) -> Result<Option<ServerResponse>, ResponseError> {
        let Some(head) = self.reader.push(data)? else {
            return Ok(None);
        };
        let response = parse_response(&head.head, head.lines)?;
        let (subprotocol, deflate) = self.validate(&response).map_err(|error| match error {
            ResponseError::Status {
                status, headers, ..
            } => {
                let kept = head.rest.len().min(MAX_REFUSAL_BODY);
                ResponseError::Status {
                    status,
                    headers,
                    body: head.rest.slice(..kept),
                }
            }
            other => other,
        })?;
        Ok(Some(ServerResponse {
            response,
            subprotocol,
            deflate,
            rest: head.rest,
        }))
    }

    fn validate(
        &self,
        response: &Response<()>,
    ) -> Result<(Option<String>, Option<DeflateParams>), ResponseError> {
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ResponseError::Status {
                status: response.status(),
                headers: Box::new(response.headers().clone()),
                body: Bytes::new(),
            });
        }
        let headers = response.headers();
        if !has_token(headers, &UPGRADE, "websocket") {
            return Err(ResponseError::Upgrade);
        }
        if !has_token(headers, &CONNECTION, "upgrade") {
            return Err(ResponseError::Connection);
        }
        if single(headers, &SEC_WEBSOCKET_ACCEPT)
            .is_none_or(|v| v.as_bytes() != self.accept.as_bytes())
        {
            return Err(ResponseError::Accept);
        }
        let deflate = self.check_extensions(headers)?;
        let subprotocol = self.check_subprotocol(headers)?;
        Ok((subprotocol, deflate))
    }

    /// Any extension the server enabled must be permessage-deflate as
    /// offered.
    fn check_extensions(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<DeflateParams>, ResponseError> {
        let values = headers.get_all(SEC_WEBSOCKET_EXTENSIONS);
        let Some(config) = &self.deflate else {
            return match values.iter().find(|v| !v.is_empty()) {
                Some(extension) => Err(ResponseError::Extension(
                    String::from_utf8_lossy(extension.as_bytes()).into_owned(),
                )),
                None => Ok(None),
            };
        };
        let mut text = Vec::new();
        for value in values {
            text.push(value.to_str().map_err(|_| NegotiationError::Malformed)?);
        }
        Ok(client_accept(text, config)?)
    }

    fn check_subprotocol(&self, headers: &HeaderMap) -> Result<Option<String>, ResponseError> {
        let chosen = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .collect::<Vec<_>>();
        match chosen.as_slice() {
            [] => Ok(None),
            [one] => {
                let name = String::from_utf8_lossy(one.as_bytes()).into_owned();
                if self.subprotocols.contains(&name) {
                    Ok(Some(name))
                } else {
                    Err(ResponseError::Subprotocol(name))
                }
            }
            many => Err(ResponseError::Subprotocol(
                many.iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
        }
    }

    /// When the response must have arrived, or `None` once a result was
    /// returned.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.done).then_some(self.deadline)
    }

    /// [`ResponseError::Timeout`] if the deadline passed first.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ResponseError> {
        if self.done || now < self.deadline {
            return None;
        }
        self.done = true;
        Some(ResponseError::Timeout)
    }
}

fn parse_response(head: &[u8], lines: usize) -> Result<Response<()>, ResponseError> {
    let mut slots = vec![httparse::EMPTY_HEADER; lines];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ResponseError::Malformed("incomplete head".into()));
        }
        Err(error) => return Err(ResponseError::Malformed(error.to_string())),
    }
    if parsed.version != Some(1) {
        return Err(ResponseError::Malformed("not HTTP/1.1".into()));
    }
    let status = StatusCode::from_u16(parsed.code.unwrap_or_default())
        .map_err(|e| ResponseError::Malformed(e.to_string()))?;
    let headers = parse_headers(parsed.headers).map_err(ResponseError::Malformed)?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = Version::HTTP_11;
    *response.headers_mut() = headers;
    Ok(response)
}
