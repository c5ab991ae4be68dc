//! What every request handler of `ws serve` shares: the application state,
//! how clients authenticate, and the shape of an error answer.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use ws_async::auth::{Authenticator, BearerJwt, HeaderOrQuery, Identity, KeyAuth};
use ws_channels::{ChannelsHandle, MemoryBackend};
use ws_core::handshake::Rejection;
use ws_tokio::{HostPolicy, Server};

use crate::settings::Auth;

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) ws: Server,
    pub(crate) channels: ChannelsHandle,
    pub(crate) prometheus: PrometheusHandle,
    /// The admin token, as a key kept by digest; `None`: the API is off.
    pub(crate) admin: Option<KeyAuth>,
    /// How clients authenticate, for `/whoami`.
    pub(crate) auth: ClientAuth,
    /// Which `Host` headers every route answers.
    pub(crate) hosts: HostPolicy,
    /// The in-process backend, when channels are kept here.
    pub(crate) memory: Option<Arc<MemoryBackend>>,
}

/// How `/channels` authenticates, as configured.
#[derive(Clone)]
pub(crate) enum ClientAuth {
    Names(NamesFromQuery),
    Jwt(HeaderOrQuery<BearerJwt>),
    Keys(HeaderOrQuery<KeyAuth>),
}

impl ClientAuth {
    pub(crate) fn new(auth: &Auth) -> Self {
        match auth {
            Auth::Open => Self::Names(NamesFromQuery),
            Auth::Jwt { verifier, .. } => {
                Self::Jwt(HeaderOrQuery::new(verifier.clone(), "Bearer", "token"))
            }
            Auth::Keys(keys) => Self::Keys(HeaderOrQuery::new(keys.clone(), "Key", "token")),
        }
    }

    pub(crate) fn mode(&self) -> &'static str {
        match self {
            Self::Names(_) => "names",
            Self::Jwt(_) => "jwt",
            Self::Keys(_) => "keys",
        }
    }
}

impl Authenticator for ClientAuth {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        match self {
            Self::Names(names) => names.authenticate(request).await,
            Self::Jwt(jwt) => jwt.authenticate(request).await,
            Self::Keys(keys) => keys.authenticate(request).await,
        }
    }
}

/// Takes the user from `?user=`: the default when no authentication is
/// configured, so the page works out of the box. Anyone can claim any
/// name: it is refused on other addresses than loopback unless
/// `--insecure-names` is given, and the log and the page say so.
#[derive(Clone)]
pub(crate) struct NamesFromQuery;

impl Authenticator for NamesFromQuery {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let user = ws_async::auth::query_param(request, "user").filter(|name| is_user_name(name));
        match user {
            Some(user) => Ok(Identity::new(user)),
            None => Err(Rejection::plain(
                http::StatusCode::UNAUTHORIZED,
                "connect with ?user=NAME (1 to 32 letters, digits, _ or -)",
            )),
        }
    }
}

/// A user name the page and `?user=` accept.
pub(crate) fn is_user_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The JSON body of an error answer.
pub(crate) fn error_body(code: &str, message: impl Into<String>) -> serde_json::Value {
    serde_json::json!({ "error": code, "message": message.into() })
}
