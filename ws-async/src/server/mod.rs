//! The server: routing by path to endpoints, admission (origin, limits,
//! subprotocol, authentication), the accept loop and per-connection tasks.

mod endpoint;
mod handshakes;
mod host;
mod origin;
mod slots;

use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, StatusCode};
use ws_core::config::deadline_after;
use ws_core::deflate::{DeflateConfig, DeflateParams};
use ws_core::handshake::{Accept, Rejection, ServerHandshake, UpgradeRequest};
use ws_core::policy::{Admission, ConnectionRate, ConnectionRateLimiter, PolicySet};
use ws_core::{Closed, Config, Connection, HandshakeLimits, Role};

pub use endpoint::{Authenticate, Endpoint};
pub use host::{HostPolicy, is_host_name};
pub use origin::OriginPolicy;
use slots::{KeyedCounts, Slot, Slots, too_many};

use crate::registry::{ServerHandle, Shutdown};

use crate::connection::{ConnectionHandle, ConnectionId, ConnectionInfo};
use crate::engine::{DriverLimits, Link, drive};
use crate::handler::{Ctx, Handler};
use crate::meters::{self, ConnectionMeters};
use crate::outbox::Outbox;
use crate::runtime::{
    AnyRuntime, BoxFuture, Listener, Runtime, Transport, read_some, sleep_until, with_deadline,
    write_all,
};
use handshakes::{Handshakes, Ticket, client_key};

/// Server-wide settings, each with its default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Protocol limits and timers of each connection. Default:
    /// [`Config::server`] (1 MiB messages, 20 s keepalive, 60 s idle).
    pub connection: Config,
    /// Handshake head limits; `timeout` is the deadline for TLS and the
    /// HTTP head together (a slow client gets 408). Default: 16 KiB, 10 s.
    pub handshake: HandshakeLimits,
    /// Most connections at once; further handshakes get
    /// `overload_status`. Counted from a handshake's admission (after
    /// authentication) to the connection's end. Default: `None` (bounded
    /// by file descriptors).
    pub max_connections: Option<usize>,
    /// Most connections from one client address (IPv6: one /64) at once,
    /// counted like `max_connections`; further handshakes from it get 429.
    /// Default: `None`. Behind a proxy or load balancer every client has
    /// its address: leave it off there.
    pub max_connections_per_client: Option<usize>,
    /// Most handshakes in progress at once, counted from the accepted
    /// socket (before TLS) until it is upgraded or refused. Past it the
    /// oldest handshake that has stalled (waited for its client for 250 ms
    /// or more) is dropped to make room, so silent or slow sockets cannot
    /// hold file descriptors and tasks that real clients need; younger
    /// ones are never dropped for the cap (a burst of real clients gets in
    /// above it). Default: 1024.
    pub max_handshakes: usize,
    /// Most handshakes in progress from one client address (IPv6: one
    /// /64), with the same rule. Default: 256. Behind a proxy or load
    /// balancer every client has its address: set it to `max_handshakes`
    /// there.
    pub max_handshakes_per_client: usize,
    /// Status for handshakes refused by a connection limit or during
    /// shutdown. Default: 503.
    pub overload_status: StatusCode,
    /// `Retry-After` sent with `overload_status`. Default: 5 s.
    pub overload_retry_after: Option<Duration>,
    /// Bytes that may wait to be sent to one connection before sends fail
    /// with [`SendError::Full`](crate::SendError::Full) (broadcasts skip
    /// that connection). Default: 1 MiB.
    pub send_queue: usize,
    /// Release a connection's buffers when it goes idle (once nothing has
    /// arrived for 250 ms, so a steady exchange keeps its buffers), so idle
    /// connections cost little memory. Default: `true`.
    pub shrink_idle_buffers: bool,
    /// Connection-rate limiting per client IP address: handshakes past the
    /// rate get 429 with `Retry-After`, and clients that keep coming are
    /// blocked for a while (see [`ConnectionRate`] for its defaults).
    /// Default: `None`, off, since clients behind one proxy or NAT share
    /// an address; turn it on where addresses are the clients'.
    pub connection_rate: Option<ConnectionRate>,
    /// permessage-deflate (RFC 7692) for clients that offer it, under
    /// these settings; [`Endpoint::deflate`] overrides it per path.
    /// Default: `None`, off: compression costs memory per connection (see
    /// [`DeflateConfig`] for how much each setting takes) and CPU per
    /// message, and mixing secrets with attacker-chosen data in one
    /// compression context leaks them (CRIME, BREACH).
    pub deflate: Option<DeflateConfig>,
    /// Which `Host` headers the server answers; others get 421 Misdirected
    /// Request before anything else is looked at. A browser page whose
    /// name an attacker points at this server (DNS rebinding) sends its own
    /// name there. Default: [`HostPolicy::Any`]; servers on loopback or a
    /// private network should set [`HostPolicy::local`] with the names
    /// clients use.
    pub hosts: HostPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            connection: Config::server(),
            handshake: HandshakeLimits::default(),
            max_connections: None,
            max_connections_per_client: None,
            max_handshakes: 1024,
            max_handshakes_per_client: 256,
            overload_status: StatusCode::SERVICE_UNAVAILABLE,
            overload_retry_after: Some(Duration::from_secs(5)),
            send_queue: 1 << 20,
            shrink_idle_buffers: true,
            connection_rate: None,
            deflate: None,
            hosts: HostPolicy::Any,
        }
    }
}

/// Runs an admitted connection with the handler made for it.
type Run = Box<
    dyn FnOnce(Link<AnyRuntime, Box<dyn Transport>>, Ctx, Arc<Shutdown>) -> BoxFuture<Closed>
        + Send,
>;

/// Makes a connection's handler (or refuses it), before the 101 is sent.
type Make = Arc<dyn Fn(&ConnectionInfo) -> Result<Run, Rejection> + Send + Sync>;

/// Builds a [`Server`].
#[derive(Debug)]
pub struct ServerBuilder {
    runtime: AnyRuntime,
    config: ServerConfig,
    routes: BTreeMap<String, Endpoint>,
}

impl ServerBuilder {
    /// A server on `runtime` with default settings and no routes.
    pub fn new(runtime: impl Runtime) -> Self {
        Self {
            runtime: AnyRuntime::new(runtime),
            config: ServerConfig::default(),
            routes: BTreeMap::new(),
        }
    }

    /// Replaces the settings.
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Routes requests for exactly `path` (the query is ignored) to
    /// `endpoint`. Other paths get 404.
    pub fn route(mut self, path: &str, endpoint: Endpoint) -> Self {
        self.routes.insert(path.to_owned(), endpoint);
        self
    }

    /// The server, ready to [`serve`](Server::serve) a listener.
    pub fn build(self) -> Server {
        let handle = ServerHandle::new(self.runtime.clone());
        let routes = self
            .routes
            .into_iter()
            .map(|(path, endpoint)| (path.clone(), (Arc::<str>::from(path), endpoint)))
            .collect();
        Server {
            inner: Arc::new(Inner {
                runtime: self.runtime,
                rate_limiter: self
                    .config
                    .connection_rate
                    .clone()
                    .map(|rate| Mutex::new(ConnectionRateLimiter::new(rate))),
                handshakes: Arc::new(Handshakes::new(
                    self.config.max_handshakes,
                    self.config.max_handshakes_per_client,
                )),
                clients: KeyedCounts::default(),
                config: self.config,
                routes,
                handle,
            }),
        }
    }
}

#[derive(Debug)]
struct Inner {
    runtime: AnyRuntime,
    /// Keyed by [`client_key`]: IPv6 clients by /64.
    rate_limiter: Option<Mutex<ConnectionRateLimiter<IpAddr>>>,
    handshakes: Arc<Handshakes>,
    /// Connections per client address, keyed by [`client_key`].
    clients: KeyedCounts<IpAddr>,
    config: ServerConfig,
    routes: BTreeMap<String, (Arc<str>, Endpoint)>,
    handle: ServerHandle,
}

/// A WebSocket server: routes, limits, registry and shutdown, on any
/// runtime.
#[derive(Debug, Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl Server {
    /// A handle for the registry, sending and shutdown.
    pub fn handle(&self) -> ServerHandle {
        self.inner.handle.clone()
    }

    /// Accepts connections from `listener` until [`ServerHandle::shutdown`]
    /// completes. Each connection runs in its own task.
    ///
    /// Accept errors never end the loop. Those of one connection (reset
    /// or aborted before it was accepted) are skipped. Running out of file
    /// descriptors or memory is logged once per episode; the oldest
    /// handshake waiting for its client is dropped to give its descriptor
    /// back, or, when there is none, accepting is retried with a back-off
    /// of up to a second (the sockets waiting meanwhile stay in the
    /// kernel's backlog). The recovery is logged when accepting works
    /// again.
    pub async fn serve<L: Listener>(&self, mut listener: L) -> io::Result<()> {
        let shared = self.inner.handle.shared().clone();
        let mut stop = None;
        let mut backoff = crate::net::AcceptBackoff::default();
        loop {
            let accepted = poll_fn(|cx| {
                if shared.stopped.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                let listener_stop = stop.get_or_insert_with(|| shared.stop.listen());
                if Pin::new(listener_stop).poll(cx).is_ready() {
                    stop = None;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                listener.poll_accept(cx).map(Some)
            })
            .await;
            let (stream, peer) = match accepted {
                None => return Ok(()),
                Some(Ok(accepted)) => {
                    backoff.succeeded();
                    accepted
                }
                Some(Err(error)) => {
                    if let Some(pause) = backoff.failed(&error) {
                        if self.inner.handshakes.shed() {
                            // A stalled handshake gives its descriptor back
                            // once its task runs: let it, then try again.
                            yield_now().await;
                        } else {
                            let deadline = deadline_after(self.inner.runtime.now(), pause);
                            sleep_until(&self.inner.runtime, deadline).await;
                        }
                    }
                    continue;
                }
            };
            // Counted before TLS: a socket that never speaks holds a place,
            // and past the caps the oldest such place is taken back.
            let ticket = self
                .inner
                .handshakes
                .enter(Some(peer.ip()), self.inner.runtime.now());
            // Boxed: a captured future would stay in the connection's task
            // for its whole life, long after the TLS handshake.
            let secure = Box::pin(listener.secure(stream));
            let inner = self.inner.clone();
            self.inner.runtime.spawn(Box::pin(async move {
                let deadline = deadline_after(inner.runtime.now(), inner.config.handshake.timeout);
                let secured = ticket
                    .run(with_deadline(&inner.runtime, deadline, secure))
                    .await;
                let Some(Some(Ok(io))) = secured else {
                    return;
                };
                serve_connection(inner, Box::new(io), Some(peer), deadline, ticket).await;
            }));
        }
    }

    /// Accepts connections from `listener` until `signal` resolves (a
    /// Ctrl-C, say), then shuts down gracefully with `grace` (see
    /// [`ServerHandle::shutdown`]) and returns once that is done.
    pub async fn serve_with_shutdown<L: Listener>(
        &self,
        listener: L,
        signal: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> io::Result<()> {
        let handle = self.handle();
        let stop = async move {
            signal.await;
            handle.shutdown(grace).await;
        };
        let mut stop = std::pin::pin!(stop);
        let mut serve = std::pin::pin!(self.serve(listener));
        let mut stopped = false;
        poll_fn(|cx| {
            // Serving goes on while the shutdown drains, and ends with it.
            if !stopped && stop.as_mut().poll(cx).is_ready() {
                stopped = true;
            }
            serve.as_mut().poll(cx)
        })
        .await
    }

    /// Runs the handshake and then the connection over `io`, a transport
    /// the caller accepted (and secured) itself. Returns when the
    /// connection ends. The handshake counts against
    /// [`ServerConfig::max_handshakes`] like an accepted one.
    pub async fn accept<T: Transport>(&self, io: T, peer: Option<SocketAddr>) {
        let ticket = self
            .inner
            .handshakes
            .enter(peer.map(|p| p.ip()), self.inner.runtime.now());
        let deadline = deadline_after(
            self.inner.runtime.now(),
            self.inner.config.handshake.timeout,
        );
        serve_connection(self.inner.clone(), Box::new(io), peer, deadline, ticket).await;
    }
}

/// A WebSocket upgrade that passed admission on a request an HTTP library
/// parsed ([`Server::upgrade`]): answer with [`response`](Self::response),
/// then [`run`](Self::run) the connection on the upgraded transport.
///
/// Dropping it instead gives back the connection slot it holds.
#[must_use = "an admitted upgrade holds a connection slot until it runs or is dropped"]
pub struct Upgrade {
    inner: Arc<Inner>,
    admitted: Admitted,
    response: http::Response<()>,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("id", &self.admitted.info.id)
            .field("path", &self.admitted.path)
            .finish_non_exhaustive()
    }
}

impl Upgrade {
    /// The `101 Switching Protocols` response to send (accept key,
    /// subprotocol, extensions).
    pub fn response(&self) -> &http::Response<()> {
        &self.response
    }

    /// What is known about the connection about to open.
    pub fn info(&self) -> &Arc<ConnectionInfo> {
        &self.admitted.info
    }

    /// Runs the connection over `io`, the transport after the 101 was
    /// sent; returns when it ends.
    pub async fn run<T: Transport>(self, io: T) {
        let run = start_connection(&self.inner, Box::new(io), self.admitted);
        drop(self.inner);
        run.await;
    }
}

impl Server {
    /// Admits a WebSocket upgrade request that an HTTP library (hyper,
    /// axum) read, by the same rules as [`serve`](Self::serve): route by
    /// path, limits, origin, subprotocol, authentication, shutdown. The
    /// refusal to send when it does not pass (its status and body are the
    /// ones a served connection would get).
    ///
    /// `peer` is the client's address, for the connection's
    /// [`ConnectionInfo`] and per-client rate limits. The
    /// authenticator must answer within the handshake timeout
    /// ([`HandshakeLimits::timeout`], 10 s by default), as in `serve`.
    pub async fn upgrade(
        &self,
        request: http::Request<()>,
        peer: Option<SocketAddr>,
    ) -> Result<Upgrade, Rejection> {
        let result = async {
            let upgrade = UpgradeRequest::from_request(request)?;
            let deadline = deadline_after(
                self.inner.runtime.now(),
                self.inner.config.handshake.timeout,
            );
            admit(&self.inner, upgrade, peer, deadline, true).await
        }
        .await;
        match result {
            Ok(mut admitted) => {
                let response = admitted.head.take().expect("admitted with its head");
                Ok(Upgrade {
                    inner: self.inner.clone(),
                    admitted,
                    response,
                })
            }
            Err(rejection) => {
                tracing::debug!(status = %rejection.status(), "handshake refused");
                meters::handshake_refused(rejection.status());
                Err(rejection)
            }
        }
    }
}

/// Lets every other ready task run once before going on.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// How long a refused client gets to read its HTTP error response.
const REJECTION_LINGER: Duration = Duration::from_secs(2);

async fn serve_connection(
    inner: Arc<Inner>,
    io: Box<dyn Transport>,
    peer: Option<SocketAddr>,
    deadline: Instant,
    ticket: Ticket,
) {
    // The handshake's futures are boxed so that their memory is released
    // when it ends instead of staying in every open connection's task.
    let opened = ticket
        .run(Box::pin(open_connection(&inner, io, peer, deadline)))
        .await;
    drop(ticket);
    if let Some(Some((io, admitted))) = opened {
        let run = start_connection(&inner, io, admitted);
        drop(inner);
        run.await;
    }
}

/// Reads and answers the upgrade request: the transport and what was
/// admitted, or `None` once a refusal was sent or the client left.
async fn open_connection(
    inner: &Inner,
    mut io: Box<dyn Transport>,
    peer: Option<SocketAddr>,
    deadline: Instant,
) -> Option<(Box<dyn Transport>, Admitted)> {
    let runtime = inner.runtime.clone();
    let mut handshake = ServerHandshake::new(inner.config.handshake.clone(), runtime.now());
    let read = async {
        let mut buf = BytesMut::with_capacity(2048);
        loop {
            buf.clear();
            match read_some(&mut io, &mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            match handshake.handle_input(&buf) {
                Ok(None) => {}
                Ok(Some(upgrade)) => return Some(Ok(upgrade)),
                Err(rejection) => return Some(Err(rejection)),
            }
        }
    };
    let timed_out = |handshake: &mut ServerHandshake| {
        handshake
            .handle_timeout(deadline)
            .unwrap_or_else(|| overload(StatusCode::REQUEST_TIMEOUT, None))
    };
    let upgrade = match with_deadline(&runtime, deadline, read).await {
        Some(Some(Ok(upgrade))) => upgrade,
        Some(Some(Err(rejection))) => {
            reject(&runtime, io, rejection).await;
            return None;
        }
        // The client went away mid-handshake.
        Some(None) => return None,
        None => {
            reject(&runtime, io, timed_out(&mut handshake)).await;
            return None;
        }
    };
    let admitted = match admit(inner, upgrade, peer, deadline, false).await {
        Ok(admitted) => admitted,
        Err(rejection) => {
            reject(&runtime, io, rejection).await;
            return None;
        }
    };
    let linger = deadline_after(runtime.now(), inner.config.connection.close_timeout);
    let written = with_deadline(&runtime, linger, write_all(&mut io, &admitted.response)).await;
    matches!(written, Some(Ok(()))).then_some((io, admitted))
}

/// A handshake that passed admission, with the handler made for it.
struct Admitted {
    info: Arc<ConnectionInfo>,
    /// Bytes the client sent behind its request, when allowed.
    early_data: Bytes,
    deflate: Option<(DeflateParams, DeflateConfig)>,
    response: Bytes,
    /// The 101 as a value, for an HTTP library that writes it.
    head: Option<http::Response<()>>,
    path: Arc<str>,
    slots: Slots,
    run: Run,
}

fn overload(status: StatusCode, retry_after: Option<Duration>) -> Rejection {
    let mut headers = HeaderMap::new();
    if let Some(after) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(after.as_secs()));
    }
    let body = format!("{}\n", status.canonical_reason().unwrap_or("refused"));
    Rejection::new(status, headers, body)
}

/// Everything between a valid upgrade request and the 101: shutdown,
/// route, limits, origin, subprotocol, authentication (within the
/// handshake `deadline`), connection slots and the handler.
async fn admit(
    inner: &Inner,
    upgrade: UpgradeRequest,
    peer: Option<SocketAddr>,
    deadline: Instant,
    keep_head: bool,
) -> Result<Admitted, Rejection> {
    let config = &inner.config;
    if let (Some(limiter), Some(peer)) = (&inner.rate_limiter, peer) {
        let admission = limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .check(&client_key(peer.ip()), inner.runtime.now());
        match admission {
            Admission::Allow => {}
            Admission::Limited { retry_after } | Admission::Blocked { retry_after } => {
                // Whole seconds, rounded up: a client retrying at once
                // would only be refused again.
                let secs = retry_after
                    .as_secs()
                    .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
                return Err(overload(
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(Duration::from_secs(secs)),
                ));
            }
        }
    }
    let host = upgrade
        .headers()
        .get(http::header::HOST)
        .map(|host| host.to_str().unwrap_or_default());
    if !config.hosts.allows(host) {
        return Err(Rejection::plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this server does not answer for the host named in Host",
        ));
    }
    let overloaded = || overload(config.overload_status, config.overload_retry_after);
    if inner.handle.is_shutting_down() {
        return Err(overloaded());
    }
    let Some((path, endpoint)) = inner.routes.get(upgrade.path()) else {
        return Err(Rejection::plain(
            StatusCode::NOT_FOUND,
            "no WebSocket endpoint at this path",
        ));
    };
    let server_active = &inner.handle.shared().admitted;
    // A first look, so a full server does not authenticate in vain; the
    // slots themselves are taken only once the handshake is admitted.
    if Slot::full(server_active, config.max_connections)
        || Slot::full(&endpoint.active, endpoint.max_connections)
    {
        return Err(overloaded());
    }
    let client = peer.map(|peer| client_key(peer.ip()));
    if let Some(client) = &client
        && inner
            .clients
            .full(client, config.max_connections_per_client)
    {
        return Err(too_many(
            "from this address",
            config.max_connections_per_client,
        ));
    }
    if !endpoint.origin.allows(upgrade.origin(), upgrade.headers()) {
        return Err(Rejection::plain(
            StatusCode::FORBIDDEN,
            "origin not allowed",
        ));
    }
    let subprotocol = endpoint
        .subprotocols
        .iter()
        .find(|ours| upgrade.subprotocols().contains(ours))
        .cloned();
    if subprotocol.is_none() && endpoint.require_subprotocol {
        let wanted = endpoint.subprotocols.join(", ");
        return Err(Rejection::plain(
            StatusCode::BAD_REQUEST,
            &format!("a subprotocol is required: {wanted}"),
        ));
    }
    let mut accept = match &subprotocol {
        Some(name) => Accept::new().subprotocol(name.clone()),
        None => Accept::new(),
    };
    let deflate_config = endpoint.deflate.as_ref().unwrap_or(&config.deflate);
    let deflate = deflate_config.as_ref().and_then(|deflate_config| {
        let agreed = upgrade.negotiate_deflate(deflate_config)?;
        Some((agreed, deflate_config.clone()))
    });
    if let Some((agreed, _)) = &deflate {
        accept = accept.deflate(*agreed);
    }
    let accepted = upgrade.accept(accept).expect("the subprotocol was offered");
    let (response, head) = if keep_head {
        (Bytes::new(), Some(accepted.response().clone()))
    } else {
        (accepted.to_bytes(), None)
    };
    let early_data = accepted.rest().clone();
    let (mut request, ()) = accepted.into_request().into_parts();
    if let Some(hook) = &endpoint.authenticate {
        // Inside the handshake deadline: a hook that never answers must not
        // hold the connection (it holds no slot meanwhile).
        request = with_deadline(&inner.runtime, deadline, hook(request))
            .await
            .ok_or_else(|| overload(StatusCode::REQUEST_TIMEOUT, None))??;
        if inner.handle.is_shutting_down() {
            return Err(overloaded());
        }
    }
    let server_slot = Slot::take(server_active, config.max_connections).ok_or_else(overloaded)?;
    let endpoint_slot =
        Slot::take(&endpoint.active, endpoint.max_connections).ok_or_else(overloaded)?;
    let client_slot = match client {
        Some(client) => inner
            .clients
            .take(client, config.max_connections_per_client)
            .map_err(|()| too_many("from this address", config.max_connections_per_client))?,
        None => None,
    };
    let user = request
        .extensions
        .get::<crate::auth::Identity>()
        .map(|identity| identity.subject.clone());
    let user_slot = match user {
        Some(user) => endpoint
            .users
            .take(user, endpoint.max_connections_per_user)
            .map_err(|()| too_many("for this user", endpoint.max_connections_per_user))?,
        None => None,
    };
    let info = Arc::new(ConnectionInfo {
        id: ConnectionId::random(),
        peer_addr: peer,
        request,
        subprotocol,
        deflate: deflate.as_ref().map(|(agreed, _)| *agreed),
        role: Role::Server,
    });
    let make = AssertUnwindSafe(|| (endpoint.make)(&info));
    let run = std::panic::catch_unwind(make).map_err(|_| {
        tracing::warn!("a handler factory panicked; answering 500");
        Rejection::plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })??;
    Ok(Admitted {
        info,
        early_data,
        deflate,
        response,
        head,
        path: path.clone(),
        slots: Slots {
            _server: server_slot,
            _endpoint: endpoint_slot,
            _client: client_slot,
            _user: user_slot,
        },
        run,
    })
}

/// Sends a refusal, then reads and discards what the client still sends
/// for a moment before closing: closing with unread bytes would reset the
/// connection, and a reset can destroy the response before the client
/// reads it.
async fn reject(runtime: &AnyRuntime, mut io: Box<dyn Transport>, rejection: Rejection) {
    tracing::debug!(status = %rejection.status(), "handshake refused");
    meters::handshake_refused(rejection.status());
    let deadline = deadline_after(runtime.now(), REJECTION_LINGER);
    let wire = rejection.to_bytes();
    let _ = with_deadline(runtime, deadline, async {
        if write_all(&mut io, &wire).await.is_err() {
            return;
        }
        let _ = poll_fn(|cx| io.poll_shutdown(cx)).await;
        let mut sink = BytesMut::with_capacity(4096);
        // Until the client closes its side, within the deadline and a
        // bound on what is read.
        let mut budget = REJECTION_DRAIN;
        while budget > 0 {
            sink.clear();
            match read_some(&mut io, &mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Bytes read and discarded after a refusal, at most: enough for the rest
/// of an oversized request head, little enough that a client that never
/// stops sending costs a bounded amount of work.
pub(crate) const REJECTION_DRAIN: usize = 256 * 1024;

/// Sets up the open connection and returns the future that runs it.
///
/// Not an `async fn`: its arguments would stay in the connection's task
/// for its whole life; the future returned holds only what must live that
/// long.
fn start_connection(
    inner: &Inner,
    io: Box<dyn Transport>,
    admitted: Admitted,
) -> impl Future<Output = ()> + Send + 'static {
    let Admitted {
        info,
        early_data,
        deflate,
        path,
        slots,
        run,
        ..
    } = admitted;
    let endpoint = inner.routes.get(&*path).map(|(_, endpoint)| endpoint);
    let mut config = inner.config.connection.clone();
    config.receive_mode = ws_core::ReceiveMode::Buffered;
    let limits = DriverLimits {
        inbound_bytes: config
            .max_message_size
            .saturating_add(config.read_buffer_size),
        linger: config.close_timeout,
        shrink_when_idle: inner.config.shrink_idle_buffers,
    };
    let outbox = Arc::new(Outbox::new(inner.config.send_queue, Role::Server));
    let registration = inner.handle.register(
        ConnectionHandle::new(info.id, outbox.clone()),
        info.clone(),
        path.clone(),
    );
    let runtime = inner.runtime.clone();
    let mut conn = Connection::server(config, runtime.now());
    if let Some((agreed, deflate_config)) = &deflate {
        conn = conn.with_deflate(*agreed, deflate_config);
    }
    if !early_data.is_empty() {
        conn.handle_read(&early_data, runtime.now());
    }
    let mut link = Link::new(runtime, io, conn, outbox.clone(), limits);
    link.meters = ConnectionMeters::opened();
    if let Some(policies) = endpoint.and_then(|e| e.policies.as_ref()) {
        link.policies = policies();
    }
    let ctx = Ctx::new(
        ConnectionHandle::new(info.id, outbox),
        info.clone(),
        inner.handle.clone(),
    );
    let shutdown = inner.handle.shared().shutdown.clone();
    let id = info.id;
    tracing::debug!(
        target: "ws_async::connections",
        id = %id,
        peer = ?info.peer_addr,
        route = %path,
        user = info.request.extensions.get::<crate::auth::Identity>().map(|i| i.subject.as_str()),
        "connection opened"
    );
    let run = run(link, ctx, shutdown);
    async move {
        let closed = run.await;
        tracing::debug!(
            target: "ws_async::connections",
            id = %id,
            code = closed.code.as_u16(),
            reason = %closed.reason,
            "connection closed"
        );
        // The slots first: once the registry no longer lists the
        // connection, its client and user may connect again.
        drop(slots);
        drop(registration);
    }
}
