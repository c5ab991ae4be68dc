//! The glue between a [`ChannelManager`] and a `ws-async` server: the
//! endpoint sessions connect to, the handle for code outside connections,
//! and the execution of the manager's actions against the backends.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use ws_async::auth::{Authenticator, Identity};
use ws_async::envelope::{EnvelopeHandler, Envelopes};
use ws_async::{ConnectionHandle, Ctx, Endpoint, SendError, ServerHandle};
use ws_core::Closed;
use ws_core::close::{MAX_CLOSE_REASON, truncate_reason};
use ws_core::envelope::{Envelope, EnvelopeError};
use ws_core::handshake::Rejection;

use crate::backend::{BoxFuture, MemoryBackend, Sink};
use crate::backends::Backends;
use crate::config::{ChannelsConfig, close_codes};
use crate::manager::{Action, ChannelManager, CustomCommand, NodeStats, OpId};
use crate::meters;
use crate::operation::{Authenticated, OpResult, Operation};
use crate::protocol::Token;
use crate::types::{
    ChannelError, ChannelSummary, ControlMessage, ErrorCode, NodeId, Payload, Position,
    Publication, Removal, Roster, SessionId, TOPIC_PREFIX, Target,
};

type CustomHandler = Arc<
    dyn Fn(CustomCommand, ChannelsHandle) -> BoxFuture<'static, Result<Value, ChannelError>>
        + Send
        + Sync,
>;

/// Checks a `refresh` command's token (see [`ChannelsBuilder::refresh_tokens`]).
type TokenCheck = Arc<
    dyn Fn(http::request::Parts) -> BoxFuture<'static, Result<Identity, Rejection>> + Send + Sync,
>;

/// Channels on one node: mount [`endpoint`](Self::endpoint) on a route of
/// any `ws-async` server (ws-tokio, ws-smol) and use
/// [`handle`](Self::handle) from anywhere else. Cheap to clone.
///
/// ```
/// use ws_channels::{Channels, ChannelsConfig};
///
/// let channels = Channels::new(ChannelsConfig::default());
/// let endpoint = channels.endpoint();
/// // ws_tokio::server().route("/channels", endpoint).build()
/// # let _ = endpoint;
/// ```
#[derive(Clone)]
pub struct Channels {
    node: Arc<Node>,
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channels")
            .field("node", &self.node.id)
            .finish_non_exhaustive()
    }
}

/// Builds [`Channels`] with a backend and custom commands.
pub struct ChannelsBuilder {
    config: ChannelsConfig,
    backend: Option<Backends>,
    node: Option<NodeId>,
    handlers: HashMap<String, CustomHandler>,
    token_check: Option<TokenCheck>,
}

impl fmt::Debug for ChannelsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelsBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ChannelsBuilder {
    /// The backends; default: a fresh [`MemoryBackend`] (one node).
    pub fn backend(mut self, backend: Backends) -> Self {
        self.backend = Some(backend);
        self
    }

    /// This node's id; default: random.
    pub fn node_id(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    /// A custom command `name` that owners and `roles` may use in a
    /// channel; `handler` answers it, and its `Ok` value is the reply's
    /// `result`. It runs in the sending session's task: the session's next
    /// command waits for it.
    pub fn command<I, S, F, Fut>(mut self, name: &str, roles: I, handler: F) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
        F: Fn(CustomCommand, ChannelsHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ChannelError>> + Send + 'static,
    {
        self.config = self.config.command(name, roles);
        let handler: CustomHandler =
            Arc::new(move |command, handle| Box::pin(handler(command, handle)));
        self.handlers.insert(name.to_owned(), handler);
        self
    }

    /// Takes `refresh` commands: each token is checked by
    /// `authenticator`, presented as the handshake's
    /// `Authorization: Bearer <token>` (give the endpoint's own, a
    /// `BearerJwt`). A token must name the session's user; the session
    /// then lasts until its `exp` (`ChannelsConfig::expire_sessions`).
    /// Default: none; `refresh` is refused with `forbidden`, and a session
    /// whose token ends is closed with
    /// [`TOKEN_EXPIRED`](crate::close_codes::TOKEN_EXPIRED) to reconnect
    /// with a new one.
    pub fn refresh_tokens(mut self, authenticator: impl Authenticator) -> Self {
        let authenticator = Arc::new(authenticator);
        self.token_check = Some(Arc::new(move |request| {
            let authenticator = authenticator.clone();
            Box::pin(async move { authenticator.authenticate(&request).await })
        }));
        self
    }

    /// The channels.
    pub fn build(self) -> Channels {
        let config = Arc::new(self.config);
        let id = self.node.unwrap_or_else(NodeId::random);
        let mut backend = self
            .backend
            .unwrap_or_else(|| Backends::memory(MemoryBackend::new()));
        if let Some(reader) = &config.group_reader {
            backend = backend.with_group_reader(reader.clone());
        }
        let node = Arc::new(Node {
            id,
            backend: backend.clone(),
            handlers: self.handlers,
            token_check: self.token_check,
            server: OnceLock::new(),
            state: Mutex::new(NodeState {
                manager: ChannelManager::new(id, config),
                handles: HashMap::new(),
                fanout: HashMap::new(),
                tick: None,
                ticks: 0,
            }),
        });
        backend.attach(
            id,
            Arc::new(NodeSink {
                node: Arc::downgrade(&node),
            }),
        );
        Channels { node }
    }
}

impl Channels {
    /// Channels with `config` on an in-process backend.
    pub fn new(config: ChannelsConfig) -> Self {
        Self::builder(config).build()
    }

    /// A builder, for another backend or custom commands.
    pub fn builder(config: ChannelsConfig) -> ChannelsBuilder {
        ChannelsBuilder {
            config,
            backend: None,
            node: None,
            handlers: HashMap::new(),
            token_check: None,
        }
    }

    /// An endpoint whose connections speak the channels protocol (see
    /// `PROTOCOL.md`). Add authentication to it as to any endpoint
    /// (`.authenticator(..)`): the identity's subject is the user in
    /// channels. Its other settings are the endpoint defaults.
    pub fn endpoint(&self) -> Endpoint {
        let node = self.node.clone();
        Endpoint::new(move |_| Envelopes(Session::new(node.clone())))
    }

    /// The handler of one session, to wrap in layers or serve on an
    /// endpoint of your own: `Envelopes(channels.session())`.
    pub fn session(&self) -> Session {
        Session::new(self.node.clone())
    }

    /// A handle for code outside connections.
    pub fn handle(&self) -> ChannelsHandle {
        ChannelsHandle {
            node: self.node.clone(),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node.id
    }
}

struct Node {
    id: NodeId,
    backend: Backends,
    handlers: HashMap<String, CustomHandler>,
    token_check: Option<TokenCheck>,
    server: OnceLock<ServerHandle>,
    state: Mutex<NodeState>,
}

struct NodeState {
    manager: ChannelManager,
    handles: HashMap<SessionId, ConnectionHandle>,
    /// Per channel, the connections of its last delivery list, reused
    /// while the manager hands out the same list. Emptied when a session
    /// closes, so it never keeps a closed connection's queue alive.
    fanout: HashMap<String, Fanout>,
    /// The timer task that runs (its number) and when it wakes next: the
    /// manager's next timeout (presence refreshes, removals of absent
    /// users from groups). A timeout earlier than that starts a task of a
    /// later number, and the earlier task ends.
    tick: Option<(u64, Instant)>,
    /// Timer tasks started.
    ticks: u64,
}

/// A delivery list, and its sessions' connections with their sessions in
/// the same order.
struct Fanout {
    list: Arc<[SessionId]>,
    sessions: Vec<SessionId>,
    handles: Vec<ConnectionHandle>,
}

/// At most this many channels' connection lists are kept.
const MAX_FANOUT_LISTS: usize = 4096;

/// Backend work the manager asked for, to run outside the lock.
enum Work {
    Backend(OpId, Operation),
    Custom(OpId, CustomCommand),
    Authenticate(OpId, Token),
    /// The manager's next timeout is earlier than the timer task's.
    Tick,
}

impl Node {
    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // The manager is changed in whole steps; a panic in a send leaves
        // it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Instant {
        self.server
            .get()
            .map_or_else(Instant::now, ServerHandle::now)
    }

    /// Carries out the manager's queued actions: sends now, under the
    /// lock (they never wait, and doing them here keeps each channel's
    /// order); backend work is returned to run after the lock is let go.
    fn drain(state: &mut NodeState, now: Instant) -> Vec<Work> {
        let mut work = Vec::new();
        while let Some(action) = state.manager.poll_action() {
            match action {
                Action::Send { session, envelope } => {
                    let Some(handle) = state.handles.get(&session) else {
                        continue;
                    };
                    if let Err(SendError::Full { .. }) = handle.try_send(envelope.to_message()) {
                        state.manager.handle_undelivered(session, None, now);
                    }
                }
                Action::Deliver {
                    channel,
                    sessions,
                    except,
                    message,
                } => {
                    let cached = state
                        .fanout
                        .get(&channel)
                        .is_some_and(|f| Arc::ptr_eq(&f.list, &sessions));
                    if !cached {
                        if state.fanout.len() >= MAX_FANOUT_LISTS {
                            state.fanout.clear();
                        }
                        let (open, handles) = sessions
                            .iter()
                            .filter_map(|s| Some((*s, state.handles.get(s)?.clone())))
                            .unzip();
                        state.fanout.insert(
                            channel.clone(),
                            Fanout {
                                list: sessions,
                                sessions: open,
                                handles,
                            },
                        );
                    }
                    let fanout = &state.fanout[&channel];
                    let except = except.and_then(|e| fanout.sessions.iter().position(|s| *s == e));
                    let refused: Vec<SessionId> =
                        ConnectionHandle::try_send_encoded_each(&fanout.handles, &message, except)
                            .into_iter()
                            .map(|at| fanout.sessions[at])
                            .collect();
                    meters::delivered(
                        fanout
                            .handles
                            .len()
                            .saturating_sub(usize::from(except.is_some()) + refused.len()),
                    );
                    for session in refused {
                        state
                            .manager
                            .handle_undelivered(session, Some(&channel), now);
                    }
                }
                Action::Disconnect {
                    session,
                    code,
                    reason,
                } => {
                    if let Some(handle) = state.handles.get(&session) {
                        meters::disconnected(code);
                        let _ = handle.try_close(code, &reason);
                    }
                }
                Action::Backend { op, operation } => work.push(Work::Backend(op, operation)),
                Action::Custom { op, command } => work.push(Work::Custom(op, command)),
                Action::Authenticate { op, token, .. } => {
                    work.push(Work::Authenticate(op, token));
                }
            }
        }
        if let Some(due) = state.manager.poll_timeout()
            && state.tick.is_none_or(|(_, wakes)| due < wakes)
        {
            work.push(Work::Tick);
        }
        work
    }

    /// Runs `work` and everything it leads to, in this task.
    async fn run(self: &Arc<Self>, mut work: Vec<Work>) {
        while !work.is_empty() {
            let mut next = Vec::new();
            for item in work {
                let (op, result) = match item {
                    Work::Backend(op, operation) => {
                        (op, self.backend.execute(self.id, operation).await)
                    }
                    Work::Custom(op, command) => (op, OpResult::Custom(self.custom(command).await)),
                    Work::Authenticate(op, token) => {
                        (op, OpResult::Authenticated(self.authenticate(token).await))
                    }
                    Work::Tick => {
                        self.start_tick();
                        continue;
                    }
                };
                let now = self.now();
                let mut state = self.lock();
                state.manager.handle_result(op, result, now);
                next.extend(Self::drain(&mut state, now));
            }
            work = next;
        }
    }

    async fn custom(self: &Arc<Self>, command: CustomCommand) -> Result<Value, ChannelError> {
        let Some(handler) = self.handlers.get(&command.name) else {
            return Err(ChannelError::new(
                ErrorCode::Internal,
                format!("no handler for {:?}", command.name),
            ));
        };
        let handle = ChannelsHandle { node: self.clone() };
        handler(command, handle).await
    }

    /// Checks a `refresh` token with the builder's authenticator.
    async fn authenticate(&self, token: Token) -> Result<Authenticated, ChannelError> {
        let refused = || ChannelError::new(ErrorCode::Forbidden, "invalid or expired token");
        let Some(check) = &self.token_check else {
            return Err(ChannelError::new(
                ErrorCode::Forbidden,
                "this server takes no refresh: reconnect with a new token",
            ));
        };
        let request = http::Request::builder()
            .uri("/")
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.as_str()),
            )
            .body(())
            .map_err(|_| refused())?;
        let identity = check(request.into_parts().0).await.map_err(|_| refused())?;
        let expires = token_expiry(&identity.claims, self.now());
        Ok(Authenticated {
            user: identity.subject,
            claims: identity.claims,
            expires,
        })
    }

    /// Runs `work` in the background: for work that arises outside any
    /// session's task (deliveries, control messages, ticks).
    fn spawn(self: &Arc<Self>, work: Vec<Work>) {
        if work.is_empty() {
            return;
        }
        match self.server.get() {
            Some(server) => {
                let node = self.clone();
                server.spawn(async move { node.run(work).await });
            }
            None => tracing::error!("channels work arose before any session opened; dropped"),
        }
    }

    /// Hands a control message to the manager and carries out what
    /// follows; how many sessions it removed or closed.
    fn apply_control(self: &Arc<Self>, message: &ControlMessage) -> usize {
        let now = self.now();
        let (removed, work) = {
            let mut state = self.lock();
            let removed = state.manager.handle_control(message, now);
            (removed, Self::drain(&mut state, now))
        };
        self.spawn(work);
        removed
    }

    /// Starts a timer task for the manager's next timeout, unless one
    /// wakes by then.
    fn start_tick(self: &Arc<Self>) {
        let Some(server) = self.server.get() else {
            return;
        };
        let mut state = self.lock();
        let Some(due) = state.manager.poll_timeout() else {
            return;
        };
        if state.tick.is_some_and(|(_, wakes)| wakes <= due) {
            return;
        }
        state.ticks += 1;
        let number = state.ticks;
        state.tick = Some((number, due));
        server.spawn(self.clone().tick(number, server.clone()));
    }

    /// Hands the manager its timeouts (presence refreshes, removals of
    /// absent users from groups) while it has any, until a task of a
    /// later number takes over.
    async fn tick(self: Arc<Self>, number: u64, server: ServerHandle) {
        loop {
            let due = match self.lock().tick {
                Some((current, due)) if current == number => due,
                _ => return,
            };
            server.sleep_until(due).await;
            let work = {
                let now = server.now();
                let mut state = self.lock();
                if state.tick.is_none_or(|(current, _)| current != number) {
                    return;
                }
                state.manager.handle_timeout(now);
                state.tick = state.manager.poll_timeout().map(|due| (number, due));
                Self::drain(&mut state, now)
            };
            self.run(work).await;
        }
    }
}

/// Where the backends deliver to this node. Holds the node weakly: the
/// backend may outlive it.
struct NodeSink {
    node: std::sync::Weak<Node>,
}

impl Sink for NodeSink {
    fn publication(&self, channel: &str, publication: &Publication) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        let now = node.now();
        let work = {
            let mut state = node.lock();
            state.manager.handle_publication(channel, publication, now);
            Node::drain(&mut state, now)
        };
        node.spawn(work);
    }

    fn control(&self, message: &ControlMessage) -> usize {
        let Some(node) = self.node.upgrade() else {
            return 0;
        };
        // A role or a ban is acted on only when the presence store agrees:
        // a control message alone (from a node whose key leaked, say)
        // makes nobody owner and removes nobody for a ban that is not
        // there. Kicks, closes and disconnects need no record to hold.
        let claim = match message {
            ControlMessage::RoleChanged {
                channel,
                user,
                role,
            } => Some((channel.clone(), user.clone(), Some(role.clone()))),
            ControlMessage::Remove {
                channel,
                target: Target::User(user),
                reason: Removal::Banned,
            } => Some((channel.clone(), user.clone(), None)),
            _ => None,
        };
        let Some((channel, user, role)) = claim else {
            return node.apply_control(message);
        };
        let Some(server) = node.server.get() else {
            // No session has opened here: nobody to act on.
            return 0;
        };
        let message = message.clone();
        let checking = node.clone();
        server.spawn(async move {
            let node = checking;
            let standing = node.backend.store.standing(&channel, &user).await;
            let agrees = standing.as_ref().is_ok_and(|standing| match &role {
                Some(role) => standing.role == *role,
                None => standing.banned,
            });
            if agrees {
                node.apply_control(&message);
            } else {
                tracing::warn!(
                    channel,
                    user,
                    ?standing,
                    "a role change or ban the presence store does not hold was ignored"
                );
            }
        });
        0
    }

    fn interrupted(&self) {
        let Some(node) = self.node.upgrade() else {
            return;
        };
        meters::interrupted();
        let now = node.now();
        let work = {
            let mut state = node.lock();
            state.manager.handle_interrupted(now);
            Node::drain(&mut state, now)
        };
        node.spawn(work);
    }
}

/// The handler of one channels session; [`Channels::endpoint`] serves it.
pub struct Session {
    node: Arc<Node>,
    id: Option<SessionId>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish()
    }
}

impl Session {
    fn new(node: Arc<Node>) -> Self {
        Self { node, id: None }
    }

    /// Waits until the session's command rate lets its next command in.
    /// Meanwhile this connection reads nothing more, so a client sending
    /// faster is slowed by TCP rather than refused; deliveries to it, pings
    /// and closes go on.
    async fn pace(&self, ctx: &mut Ctx, session: SessionId) {
        let ready_at = self
            .node
            .lock()
            .manager
            .command_ready_at(session, ctx.now());
        if let Some(at) = ready_at {
            ctx.server().sleep_until(at).await;
        }
    }
}

impl EnvelopeHandler for Session {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        let server = ctx.server().clone();
        let _ = self.node.server.set(server.clone());
        let session = SessionId(ctx.id().as_u64());
        self.id = Some(session);
        let now = ctx.now();
        let work = {
            let mut state = self.node.lock();
            state.handles.insert(session, ctx.handle());
            let identity = ctx.identity();
            state.manager.handle_open(
                session,
                identity.map(|identity| identity.subject.as_str()),
                identity.map_or(&Value::Null, |identity| &identity.claims),
                now,
            );
            if let Some(at) = identity.and_then(|identity| token_expiry(&identity.claims, now)) {
                state.manager.handle_expiry(session, at, now);
            }
            Node::drain(&mut state, now)
        };
        self.node.run(work).await;
    }

    async fn on_envelope(&mut self, ctx: &mut Ctx, envelope: Envelope) {
        let Some(session) = self.id else { return };
        self.pace(ctx, session).await;
        let now = ctx.now();
        let work = {
            let mut state = self.node.lock();
            state.manager.handle_command(session, envelope, now);
            Node::drain(&mut state, now)
        };
        self.node.run(work).await;
    }

    async fn on_malformed(&mut self, ctx: &mut Ctx, error: EnvelopeError) {
        let Some(session) = self.id else { return };
        self.pace(ctx, session).await;
        let now = ctx.now();
        let work = {
            let mut state = self.node.lock();
            state.manager.handle_malformed(session, &error, now);
            Node::drain(&mut state, now)
        };
        self.node.run(work).await;
    }

    async fn on_close(&mut self, ctx: &mut Ctx, _closed: &Closed) {
        let Some(session) = self.id.take() else {
            return;
        };
        let now = ctx.now();
        let work = {
            let mut state = self.node.lock();
            state.handles.remove(&session);
            state.fanout.clear();
            state.manager.handle_closed(session, now);
            Node::drain(&mut state, now)
        };
        self.node.run(work).await;
    }
}

/// When a token with these claims ends, on the monotonic clock whose
/// present is `now`: its `exp` (seconds since the Unix epoch), if any.
fn token_expiry(claims: &Value, now: Instant) -> Option<Instant> {
    let exp = claims.get("exp")?.as_f64().filter(|exp| exp.is_finite())?;
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    // Ten years at most: an absurd `exp` must not overflow the clock.
    let left = (exp - since_epoch).clamp(0.0, 10.0 * 365.0 * 86_400.0);
    Some(now + Duration::from_secs_f64(left))
}

/// The outcome of an operation that returns no value.
fn done(result: OpResult) -> Result<(), ChannelError> {
    match result {
        OpResult::Done(result) => result,
        other => Err(ChannelError::new(
            ErrorCode::Internal,
            format!("the backend answered wrongly: {other:?}"),
        )),
    }
}

/// Channels from code outside connections: publish, emit topic events,
/// kick, ban, disconnect, list channels and presence. Every call goes to
/// the backends, so on a cluster it acts on every node. Cheap to clone.
#[derive(Clone)]
pub struct ChannelsHandle {
    node: Arc<Node>,
}

impl fmt::Debug for ChannelsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelsHandle")
            .field("node", &self.node.id)
            .finish()
    }
}

impl ChannelsHandle {
    fn backend(&self) -> &Backends {
        &self.node.backend
    }

    async fn existing(&self, channel: &str) -> Result<ChannelSummary, ChannelError> {
        self.backend().store.channel(channel).await?.ok_or_else(|| {
            ChannelError::new(ErrorCode::NotFound, format!("no channel named {channel:?}"))
        })
    }

    /// Publishes `data` to `channel` from the server; its position when
    /// the channel keeps history.
    pub async fn publish(
        &self,
        channel: &str,
        data: &Value,
    ) -> Result<Option<Position>, ChannelError> {
        let summary = self.existing(channel).await?;
        let publication = Publication::message(None, Payload::new(data));
        self.backend()
            .broker
            .publish(channel, publication, summary.options.history())
            .await
    }

    /// Sends `data` to every session subscribed to `topic` whose filter
    /// matches it.
    pub async fn emit(&self, topic: &str, data: &Value) -> Result<(), ChannelError> {
        let publication = Publication::message(None, Payload::new(data));
        self.backend()
            .broker
            .publish(&format!("{TOPIC_PREFIX}{topic}"), publication, None)
            .await
            .map(drop)
    }

    /// Removes `target`'s sessions from `channel` (each gets a `kicked`
    /// event); `not_found` when it has none there.
    pub async fn kick(&self, channel: &str, target: Target) -> Result<(), ChannelError> {
        done(
            self.backend()
                .execute(
                    self.node.id,
                    Operation::Kick {
                        channel: channel.to_owned(),
                        target,
                    },
                )
                .await,
        )
    }

    /// Bans `user` from `channel` (for `duration`, or until unbanned),
    /// removing its sessions.
    pub async fn ban(
        &self,
        channel: &str,
        user: &str,
        duration: Option<Duration>,
    ) -> Result<(), ChannelError> {
        done(
            self.backend()
                .execute(
                    self.node.id,
                    Operation::Ban {
                        channel: channel.to_owned(),
                        user: user.to_owned(),
                        duration,
                    },
                )
                .await,
        )
    }

    /// Lifts a ban.
    pub async fn unban(&self, channel: &str, user: &str) -> Result<(), ChannelError> {
        self.backend().store.unban(channel, user).await
    }

    /// Closes every connection of `target` on every node with
    /// [`close_codes::DISCONNECTED`] and `reason` (at most 123 bytes; longer
    /// is cut on a character boundary); `not_found` when no node had one.
    pub async fn disconnect(&self, target: Target, reason: &str) -> Result<(), ChannelError> {
        let what = match &target {
            Target::User(user) => format!("user {user:?}"),
            Target::Session(session) => format!("session {session}"),
        };
        let reach = self
            .backend()
            .controller
            .request(
                ControlMessage::Disconnect {
                    target,
                    code: close_codes::DISCONNECTED.as_u16(),
                    reason: truncate_reason(reason, MAX_CLOSE_REASON).to_owned(),
                },
                crate::backend::REQUEST_WAIT,
            )
            .await?;
        reach.found(&what).map(drop)
    }

    /// Closes `channel`: every participant gets a `closed` event.
    pub async fn close(&self, channel: &str) -> Result<(), ChannelError> {
        done(
            self.backend()
                .execute(
                    self.node.id,
                    Operation::Close {
                        channel: channel.to_owned(),
                    },
                )
                .await,
        )
    }

    /// Up to `limit` channels, by name.
    pub async fn channels(&self, limit: usize) -> Result<Vec<ChannelSummary>, ChannelError> {
        self.backend().store.channels(limit).await
    }

    /// Up to `limit` members of `channel`, oldest first, and the total.
    pub async fn presence(&self, channel: &str, limit: usize) -> Result<Roster, ChannelError> {
        self.backend().store.members(channel, limit).await
    }

    /// Sessions open on this node.
    pub fn local_sessions(&self) -> usize {
        self.node.lock().manager.session_count()
    }

    /// This node's sessions, channels and subscriptions now.
    pub fn stats(&self) -> NodeStats {
        self.node.lock().manager.stats()
    }
}
