//! A route's endpoint: its handler factory and admission rules.

use super::*;

/// An authentication hook: sees the request (headers such as
/// `Authorization`), may add typed values to its extensions for handlers to
/// read, and accepts or rejects (401/403).
pub type Authenticate = Arc<
    dyn Fn(http::request::Parts) -> BoxFuture<Result<http::request::Parts, Rejection>>
        + Send
        + Sync,
>;

/// One path of a server: how to make a handler per connection, and who may
/// connect.
pub struct Endpoint {
    pub(super) make: Make,
    pub(super) subprotocols: Vec<String>,
    pub(super) require_subprotocol: bool,
    pub(super) origin: OriginPolicy,
    pub(super) authenticate: Option<Authenticate>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_user: Option<usize>,
    pub(super) policies: Option<Arc<dyn Fn() -> PolicySet + Send + Sync>>,
    /// `None`: as [`ServerConfig::deflate`] says.
    pub(super) deflate: Option<Option<DeflateConfig>>,
    pub(super) active: Arc<AtomicUsize>,
    /// Connections per authenticated user.
    pub(super) users: KeyedCounts<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("subprotocols", &self.subprotocols)
            .field("require_subprotocol", &self.require_subprotocol)
            .field("origin", &self.origin)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_user", &self.max_connections_per_user)
            .field("deflate", &self.deflate)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// An endpoint whose connections each get a handler from `factory`,
    /// called once the handshake is admitted and before the 101 is sent: a
    /// factory that panics gets the client a 500, and the server goes on.
    ///
    /// Defaults: no subprotocol, same-origin check ([`OriginPolicy`]), no
    /// authentication, no per-endpoint connection limit.
    pub fn new<H, F>(factory: F) -> Self
    where
        H: Handler,
        F: Fn(&ConnectionInfo) -> H + Send + Sync + 'static,
    {
        Self::try_new(move |info| Ok(factory(info)))
    }

    /// An endpoint whose factory may refuse a connection: it sees what
    /// [`new`](Self::new)'s does, after authentication and before the 101,
    /// and its [`Rejection`] is the client's answer (for example a 403 for
    /// a room the user may not enter, or a 404 for one that does not
    /// exist).
    pub fn try_new<H, F>(factory: F) -> Self
    where
        H: Handler,
        F: Fn(&ConnectionInfo) -> Result<H, Rejection> + Send + Sync + 'static,
    {
        let make: Make = Arc::new(move |info| {
            let handler = factory(info)?;
            Ok(Box::new(move |link, ctx, shutdown| {
                // Boxed as it is: wrapping it in an async block would keep
                // the moved arguments and the future side by side in every
                // idle connection's memory.
                Box::pin(drive(link, handler, ctx, Some(shutdown))) as BoxFuture<Closed>
            }) as Run)
        });
        Self {
            make,
            subprotocols: Vec::new(),
            require_subprotocol: false,
            origin: OriginPolicy::default(),
            authenticate: None,
            max_connections: None,
            max_connections_per_user: None,
            policies: None,
            deflate: None,
            active: Arc::new(AtomicUsize::new(0)),
            users: KeyedCounts::default(),
        }
    }

    /// Subprotocols this endpoint speaks, in order of preference; the first
    /// one the client also offers is chosen.
    pub fn subprotocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.subprotocols = names.into_iter().map(Into::into).collect();
        self
    }

    /// Refuse (400) clients that offer none of [`subprotocols`](Self::subprotocols).
    pub fn require_subprotocol(mut self) -> Self {
        self.require_subprotocol = true;
        self
    }

    /// Which browser origins may connect.
    pub fn origin(mut self, policy: OriginPolicy) -> Self {
        self.origin = policy;
        self
    }

    /// Authenticates each handshake (see [`Authenticate`]).
    pub fn authenticate<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(http::request::Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<http::request::Parts, Rejection>> + Send + 'static,
    {
        self.authenticate = Some(Arc::new(move |parts| Box::pin(hook(parts))));
        self
    }

    /// Authenticates each handshake with `authenticator` (see
    /// [`crate::auth`]): its [`Identity`](crate::auth::Identity) reaches
    /// handlers through [`Ctx::identity`](crate::Ctx::identity), its
    /// refusals (401/403) go to the client. Replaces
    /// [`authenticate`](Self::authenticate).
    pub fn authenticator(mut self, authenticator: impl crate::auth::Authenticator) -> Self {
        self.authenticate = Some(Arc::new(crate::auth::hook(authenticator)));
        self
    }

    /// Most connections on this endpoint at once; more get the server's
    /// overload status (503).
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Most connections of one user (the subject of the
    /// [`Identity`](crate::auth::Identity) its authenticator gave) on this
    /// endpoint at once; more get 429. Connections without an identity
    /// are not counted. Default: no limit.
    pub fn max_connections_per_user(mut self, max: usize) -> Self {
        self.max_connections_per_user = Some(max);
        self
    }

    /// permessage-deflate on this endpoint under `config` (`Some`) or off
    /// (`None`), whatever [`ServerConfig::deflate`] says. Default: as the
    /// server's setting.
    pub fn deflate(mut self, config: Option<DeflateConfig>) -> Self {
        self.deflate = Some(config);
        self
    }

    /// Policies every incoming message must pass (rate limits, payload
    /// size; see [`ws_core::policy`]). `factory` makes each connection its
    /// own set, so budgets are per connection. Default: none.
    ///
    /// A message that breaks a policy is dropped and reported to
    /// [`Handler::on_policy_violation`], or closes the connection with 1008,
    /// as that policy's [`OnViolation`](ws_core::policy::OnViolation) says.
    pub fn policies<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> PolicySet + Send + Sync + 'static,
    {
        self.policies = Some(Arc::new(factory));
        self
    }
}
