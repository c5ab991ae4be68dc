//! The sans-IO channels state machine of one node.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ws_core::EncodedMessage;
use ws_core::envelope::{Envelope, EnvelopeError};
use ws_core::policy::TokenBucket;

use crate::config::{ChannelsConfig, TopicAccess, TopicRequest, close_codes};
use crate::operation::{OpResult, Operation};
use crate::protocol::{self, Command, Filter, PublicationOut, ReplyTo, Request};
use crate::types::{
    ChannelError, ChannelOptions, ClientInfo, ControlMessage, ErrorCode, HistoryPage, LeaveReason,
    Member, NodeId, Payload, Position, Publication, PublicationKind, Removal, Role, SessionId,
    TOPIC_PREFIX,
};

/// A change of membership that channels with `presence_events` announce.
#[derive(Debug, Clone, Copy)]
enum Presence {
    Joined,
    Left(LeaveReason),
}

/// Names an [`Operation`] or custom command in flight, so its result can
/// be handed back with [`ChannelManager::handle_result`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// A node's counts at one moment ([`ChannelManager::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NodeStats {
    /// Sessions open on this node.
    pub sessions: usize,
    /// Channels with at least one member on this node.
    pub channels: usize,
    /// Channel memberships and topic subscriptions of this node's sessions.
    pub subscriptions: usize,
}

/// A custom command for the application to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomCommand {
    /// The session that sent it.
    pub session: SessionId,
    /// Its user.
    pub user: Option<String>,
    /// The channel.
    pub channel: String,
    /// The command's name.
    pub name: String,
    /// The command's data (`null` when absent).
    pub data: Value,
    /// The session's role in the channel.
    pub role: Role,
}

/// What the manager asks its driver to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a reply or an event to one session. If it cannot be queued,
    /// report it with [`ChannelManager::handle_undelivered`] (`channel`
    /// `None`).
    Send {
        /// To whom.
        session: SessionId,
        /// What.
        envelope: Envelope,
    },
    /// Send the same encoded frame to each session but `except`. Report
    /// each session whose queue refused it with
    /// [`ChannelManager::handle_undelivered`].
    Deliver {
        /// The channel (or `$topic:` topic) it belongs to.
        channel: String,
        /// To whom, each once. The list is shared between publications
        /// while the channel's members do not change, so a driver may key
        /// a cache of its own (the sessions' connections) on it with
        /// [`Arc::ptr_eq`].
        sessions: Arc<[SessionId]>,
        /// A session in `sessions` that does not get it: the publisher,
        /// when the configuration does not echo.
        except: Option<SessionId>,
        /// The frame.
        message: EncodedMessage,
    },
    /// Carry out a backend operation, then hand its result to
    /// [`ChannelManager::handle_result`].
    Backend {
        /// Its id.
        op: OpId,
        /// What to do.
        operation: Operation,
    },
    /// Run an application's custom command, then hand its result
    /// ([`OpResult::Custom`]) to [`ChannelManager::handle_result`].
    Custom {
        /// Its id.
        op: OpId,
        /// What to run.
        command: CustomCommand,
    },
    /// Close a session's connection.
    Disconnect {
        /// Whom.
        session: SessionId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

#[derive(Debug)]
enum Stage {
    /// Joined in presence; waiting for the broker subscription and the
    /// history read. Deliveries are buffered.
    Recovering {
        buffer: Vec<Publication>,
        overflowed: bool,
    },
    Active,
}

#[derive(Debug)]
struct Membership {
    role: Role,
    info: Option<Payload>,
    stage: Stage,
    /// Deliveries were refused (slow session): a `lost` event goes first
    /// with the next delivery.
    lost: bool,
    /// The offset its join's history reached (the replay's last, or where
    /// its stream starts): publications up to it are not delivered to it
    /// again when their live copies arrive after the join.
    floor: Option<u64>,
}

#[derive(Debug)]
struct Joining {
    op: OpId,
    /// Removed (kicked, banned, the channel closed) while the join was in
    /// flight: the grant, when it comes, is undone.
    cancelled: Option<ChannelError>,
}

#[derive(Debug)]
struct Session {
    user: Option<String>,
    /// The identity's claims, when a topic's access needs them.
    claims: Option<Arc<Value>>,
    channels: BTreeMap<String, Membership>,
    joining: BTreeMap<String, Joining>,
    topics: BTreeMap<String, Filter>,
    commands: TokenBucket,
    violations: TokenBucket,
    closing: bool,
}

#[derive(Debug)]
struct LocalChannel {
    options: ChannelOptions,
    members: BTreeSet<SessionId>,
    /// The members sorted for delivery, computed at the first publication
    /// after a change and dropped (set to `None`) by every change to a
    /// member's membership: so a publication to a steady channel costs no
    /// lookup per member. [`ChannelManager::check_invariants`] checks it
    /// against a fresh computation.
    ready: Option<Ready>,
    /// The order of its publications (channels with history): what was
    /// handed to members, and what came ahead of a gap.
    order: Option<Order>,
}

/// Where a channel's stream of publications is on this node: offsets
/// reach members once and in order, whatever the broker does (a
/// publication dropped on the way, two swapped, one delivered twice).
#[derive(Debug)]
struct Order {
    epoch: String,
    /// The offset of the last publication handed to members.
    delivered: u64,
    /// Publications that arrived ahead of a gap, by offset, at most
    /// `max_recovery_buffer` of them and [`MAX_AHEAD_BYTES`]: what does
    /// not fit is read from history with the gap.
    ahead: BTreeMap<u64, Publication>,
    /// The weights of `ahead`.
    ahead_bytes: usize,
    /// A history read for the gap is in flight.
    filling: bool,
}

/// Bytes of publications a channel keeps waiting behind a gap on one
/// node; past it they are dropped and read from history with the gap (or
/// found by the next position check).
const MAX_AHEAD_BYTES: usize = 4 << 20;

impl Order {
    /// An order whose next publication is `position`.
    fn before(position: &Position) -> Self {
        Self::after(&Position {
            offset: position.offset.saturating_sub(1),
            epoch: position.epoch.clone(),
        })
    }

    /// An order that handed out everything up to `position`.
    fn after(position: &Position) -> Self {
        Self {
            epoch: position.epoch.clone(),
            delivered: position.offset,
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            filling: false,
        }
    }

    /// Keeps `publication` until the gap before it is filled, if there
    /// is room.
    fn wait(&mut self, offset: u64, publication: &Publication, max_count: usize) {
        let weight = publication.weight();
        if self.ahead.len() < max_count
            && self.ahead_bytes + weight <= MAX_AHEAD_BYTES
            && !self.ahead.contains_key(&offset)
        {
            self.ahead_bytes += weight;
            self.ahead.insert(offset, publication.clone());
        }
    }
}

/// A channel's members as a publication sees them.
#[derive(Debug, PartialEq, Eq)]
struct Ready {
    /// Active, nothing lost, not closing: they take the publication as
    /// it is.
    sessions: Arc<[SessionId]>,
    /// Recovering (they buffer it) or owed a `lost` event first.
    others: Vec<SessionId>,
}

impl Ready {
    fn of(
        name: &str,
        members: &BTreeSet<SessionId>,
        sessions: &HashMap<SessionId, Session>,
    ) -> Self {
        let mut ready = Vec::with_capacity(members.len());
        let mut others = Vec::new();
        for id in members {
            let Some(session) = sessions.get(id).filter(|s| !s.closing) else {
                continue;
            };
            let Some(membership) = session.channels.get(name) else {
                continue;
            };
            if matches!(membership.stage, Stage::Active)
                && !membership.lost
                && membership.floor.is_none()
            {
                ready.push(*id);
            } else {
                others.push(*id);
            }
        }
        Self {
            sessions: ready.into(),
            others,
        }
    }
}

/// The publications that waited for what `order` has now delivered, in
/// order; those at or before it are dropped as duplicates.
fn drain_ahead(order: &mut Order) -> Vec<Publication> {
    let mut out = Vec::new();
    while let Some(entry) = order.ahead.first_entry() {
        let offset = *entry.key();
        if offset > order.delivered + 1 {
            break;
        }
        let publication = entry.remove();
        order.ahead_bytes -= publication.weight();
        if offset == order.delivered + 1 {
            order.delivered = offset;
            out.push(publication);
        }
    }
    out
}

/// Drops `name`'s delivery list: one of its members changed.
fn stale(channels: &mut HashMap<String, LocalChannel>, name: &str) {
    if let Some(channel) = channels.get_mut(name) {
        channel.ready = None;
    }
}

/// Marks `session` as closing: no delivery reaches it from now on.
fn start_closing(channels: &mut HashMap<String, LocalChannel>, session: &mut Session) {
    session.closing = true;
    for name in session.channels.keys() {
        stale(channels, name);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubState {
    Unsubscribed,
    Subscribing,
    Subscribed,
    Unsubscribing,
}

/// Something waiting for a broker subscription.
#[derive(Debug)]
enum Waiter {
    Join {
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
    },
    Topic {
        session: SessionId,
        reply: ReplyTo,
    },
}

#[derive(Debug)]
struct Subscription {
    state: SubState,
    waiters: Vec<Waiter>,
}

#[derive(Debug)]
enum Pending {
    Join {
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
        info: Option<Payload>,
    },
    Recover {
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
    },
    Subscription {
        topic: String,
        subscribe: bool,
    },
    Publish {
        session: SessionId,
        reply: ReplyTo,
    },
    Reply {
        session: SessionId,
        reply: ReplyTo,
    },
    Members {
        session: SessionId,
        reply: ReplyTo,
        limit: usize,
    },
    Recent {
        session: SessionId,
        reply: ReplyTo,
    },
    /// A history read to fill a gap in a channel's stream, or (`check`)
    /// to learn whether the stream's tail went missing.
    Fill {
        channel: String,
        epoch: String,
        check: bool,
    },
    Custom {
        session: SessionId,
        reply: ReplyTo,
    },
    /// Fire and forget: leaves, refreshes, join/leave events.
    Ignore,
}

/// The channels state machine of one node: sessions' commands, broker
/// deliveries, control messages and time in; [`Action`]s out. It does no
/// IO, reads no clock and spawns nothing, so it runs the same under any
/// runtime and in tests.
///
/// The driver calls `handle_*` as things happen, then drains
/// [`poll_action`](Self::poll_action) and carries each action out; backend
/// operations come back through [`handle_result`](Self::handle_result). It
/// calls [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout) to refresh presence.
#[derive(Debug)]
pub struct ChannelManager {
    node: NodeId,
    config: Arc<ChannelsConfig>,
    sessions: HashMap<SessionId, Session>,
    channels: HashMap<String, LocalChannel>,
    topics: HashMap<String, BTreeSet<SessionId>>,
    subscriptions: HashMap<String, Subscription>,
    pending: HashMap<OpId, Pending>,
    next_op: u64,
    actions: VecDeque<Action>,
    next_refresh: Option<Instant>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> ChannelError {
    ChannelError::new(code, message.into())
}

fn topic_key(topic: &str) -> String {
    format!("{TOPIC_PREFIX}{topic}")
}

impl ChannelManager {
    /// A manager for node `node`.
    pub fn new(node: NodeId, config: Arc<ChannelsConfig>) -> Self {
        Self {
            node,
            config,
            sessions: HashMap::new(),
            channels: HashMap::new(),
            topics: HashMap::new(),
            subscriptions: HashMap::new(),
            pending: HashMap::new(),
            next_op: 0,
            actions: VecDeque::new(),
            next_refresh: None,
        }
    }

    /// This node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<ChannelsConfig> {
        &self.config
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next: the next
    /// presence refresh, while there are sessions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_refresh
    }

    /// A session opened as `user` (the subject its authenticator gave, a
    /// JWT's `sub`; `None` for an anonymous session) with the
    /// authenticator's `claims` (`Value::Null` for none), which decide
    /// topic access. Anonymous sessions are closed with
    /// [`close_codes::UNAUTHORIZED`] unless the configuration allows them.
    pub fn handle_open(
        &mut self,
        session: SessionId,
        user: Option<&str>,
        claims: &Value,
        now: Instant,
    ) {
        let user = user.map(str::to_owned);
        // Claims are kept only when a topic's access looks at them.
        let claims = user
            .as_ref()
            .filter(|_| self.config.topics.values().any(TopicAccess::needs_claims))
            .map(|_| Arc::new(claims.clone()));
        if user.is_none() && !self.config.allow_anonymous {
            self.actions.push_back(Action::Disconnect {
                session,
                code: close_codes::UNAUTHORIZED,
                reason: "unauthorized: channels need an authenticated session".into(),
            });
            return;
        }
        if self.sessions.contains_key(&session) {
            return;
        }
        self.sessions.insert(
            session,
            Session {
                user,
                claims,
                channels: BTreeMap::new(),
                joining: BTreeMap::new(),
                topics: BTreeMap::new(),
                commands: TokenBucket::new(self.config.command_rate, self.config.command_burst),
                violations: TokenBucket::new(1, self.config.max_violations),
                closing: false,
            },
        );
        if self.next_refresh.is_none() {
            self.next_refresh = Some(now + self.refresh_interval());
        }
    }

    fn refresh_interval(&self) -> Duration {
        (self.config.presence_ttl / 3).max(Duration::from_millis(100))
    }

    /// A session's connection closed: it leaves every channel and topic.
    pub fn handle_closed(&mut self, session: SessionId, _now: Instant) {
        let Some(state) = self.sessions.remove(&session) else {
            return;
        };
        for (channel, membership) in state.channels {
            self.drop_member(session, &channel);
            self.op(
                Operation::Leave {
                    channel: channel.clone(),
                    session,
                },
                Pending::Ignore,
            );
            self.publish_presence_event(
                session,
                state.user.clone(),
                membership.info,
                &channel,
                Presence::Left(LeaveReason::Disconnected),
            );
            self.reconcile(&channel);
        }
        for topic in state.topics.into_keys() {
            self.drop_topic_subscriber(session, &topic);
        }
        if self.sessions.is_empty() {
            self.next_refresh = None;
        }
    }

    /// When `session` may send its next command without passing its
    /// command rate: `None` now, `Some(at)` later. A driver that waits
    /// until then before [`handle_command`](Self::handle_command) paces the
    /// session (it reads nothing meanwhile, so the client's own sending
    /// slows) and none of its commands is refused for the rate, however
    /// they bunch up: a burst after a stall, or after a backend outage
    /// held them back. One that does not wait gets `limit` refusals past
    /// the rate.
    pub fn command_ready_at(&mut self, session: SessionId, now: Instant) -> Option<Instant> {
        if self.config.command_rate == 0 {
            return None;
        }
        let state = self.sessions.get_mut(&session)?;
        match state.commands.time_until(1, now) {
            Some(wait) if wait.is_zero() => None,
            Some(wait) => Some(now + wait),
            // A burst of 0: no command ever passes; let the refusal say so.
            None => None,
        }
    }

    /// A message from a session that is not a valid envelope.
    pub fn handle_malformed(&mut self, session: SessionId, error: &EnvelopeError, now: Instant) {
        let refusal = ChannelError::new(ErrorCode::BadRequest, error.to_string());
        self.refuse(session, &ReplyTo::default(), refusal, now);
    }

    /// A command envelope from a session.
    pub fn handle_command(&mut self, session: SessionId, envelope: Envelope, now: Instant) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        if state.closing {
            return;
        }
        let reply = ReplyTo::of(&envelope);
        if self.config.command_rate > 0 && !state.commands.try_take(1, now) {
            let refusal = error(
                ErrorCode::Limit,
                format!("more than {} commands a second", self.config.command_rate),
            );
            return self.refuse(session, &reply, refusal, now);
        }
        let config = self.config.clone();
        let request = match protocol::parse(envelope, |name| config.commands.contains_key(name)) {
            Ok(request) => request,
            Err(refusal) => return self.refuse(session, &reply, refusal, now),
        };
        if let Err(refusal) = self.command(session, request, &reply) {
            self.refuse(session, &reply, refusal, now);
        }
    }

    fn refuse(&mut self, session: SessionId, reply: &ReplyTo, refusal: ChannelError, now: Instant) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let violation = refusal.code.is_violation();
        self.actions.push_back(Action::Send {
            session,
            envelope: reply.error(&refusal),
        });
        if violation && !state.violations.try_take(1, now) && !state.closing {
            start_closing(&mut self.channels, state);
            self.actions.push_back(Action::Disconnect {
                session,
                code: 1008,
                reason: "too many refused commands".into(),
            });
        }
    }

    fn ok(&mut self, session: SessionId, reply: &ReplyTo, fields: Value) {
        self.actions.push_back(Action::Send {
            session,
            envelope: reply.ok(fields),
        });
    }

    fn op(&mut self, operation: Operation, pending: Pending) -> OpId {
        let op = OpId(self.next_op);
        self.next_op += 1;
        self.pending.insert(op, pending);
        self.actions.push_back(Action::Backend { op, operation });
        op
    }

    fn check_name(&self, name: &str) -> Result<(), ChannelError> {
        if name.len() > self.config.max_name_len {
            return Err(error(
                ErrorCode::Limit,
                format!("names are at most {} bytes", self.config.max_name_len),
            ));
        }
        if !self.config.is_valid_name(name) {
            return Err(error(
                ErrorCode::BadRequest,
                "names are 1 or more of A-Z a-z 0-9 _ - . : @ / =",
            ));
        }
        Ok(())
    }

    fn check_info(&self, info: &Option<Payload>) -> Result<(), ChannelError> {
        match info {
            Some(info) if info.len() > self.config.max_info => Err(error(
                ErrorCode::Limit,
                format!("info is at most {} bytes", self.config.max_info),
            )),
            _ => Ok(()),
        }
    }

    /// The session's membership, if it may use `command` in `channel`.
    fn permitted(
        &self,
        session: SessionId,
        channel: &str,
        command: &str,
    ) -> Result<&Membership, ChannelError> {
        let membership = self.sessions[&session]
            .channels
            .get(channel)
            .ok_or_else(|| error(ErrorCode::NotMember, format!("not in {channel:?}")))?;
        if !self.config.allows(&membership.role, command) {
            return Err(error(
                ErrorCode::Forbidden,
                format!("the role {} may not {command}", membership.role),
            ));
        }
        Ok(membership)
    }

    fn member_record(&self, session: SessionId, info: Option<Payload>) -> Member {
        Member {
            session,
            node: self.node,
            user: self.sessions[&session].user.clone(),
            info,
            role: Role::PARTICIPANT,
        }
    }

    fn command(
        &mut self,
        session: SessionId,
        request: Request,
        reply: &ReplyTo,
    ) -> Result<(), ChannelError> {
        let Request { channel, command } = request;
        match command {
            Command::Create {
                max_participants,
                history_size,
                history_ttl,
                presence_events,
                encrypted,
                info,
            } => {
                self.check_name(&channel)?;
                self.check_info(&info)?;
                self.check_room_for_channel(session, &channel)?;
                let options = self
                    .config
                    .channel_options(
                        max_participants,
                        history_size,
                        history_ttl,
                        presence_events,
                        encrypted,
                    )
                    .map_err(|m| error(ErrorCode::Limit, m))?;
                let operation = Operation::Create {
                    channel: channel.clone(),
                    options,
                    owner: self.member_record(session, info.clone()),
                    ttl: self.config.presence_ttl,
                    limits: crate::backend::CreateLimits {
                        max_channels: self.config.max_channels,
                        max_per_user: self.config.max_channels_per_user,
                    },
                };
                self.start_join(session, channel, reply, None, info, operation);
            }
            Command::Join { since, info } => {
                self.check_name(&channel)?;
                self.check_info(&info)?;
                if self.sessions[&session].channels.contains_key(&channel) {
                    return self.rejoin(session, channel, reply, since);
                }
                self.check_room_for_channel(session, &channel)?;
                let operation = Operation::Join {
                    channel: channel.clone(),
                    member: self.member_record(session, info.clone()),
                    ttl: self.config.presence_ttl,
                };
                self.start_join(session, channel, reply, since, info, operation);
            }
            Command::Leave => {
                let info = self.permitted(session, &channel, "leave")?.info.clone();
                self.leave(session, &channel, info, LeaveReason::Left);
                self.ok(session, reply, json!({}));
            }
            Command::Publish {
                data,
                idempotency_key,
            } => {
                let membership = self.permitted(session, &channel, "publish")?;
                if data.len() > self.config.max_payload {
                    return Err(error(
                        ErrorCode::Limit,
                        format!("data is at most {} bytes", self.config.max_payload),
                    ));
                }
                let options = self.channels.get(&channel).map(|c| c.options);
                if options.is_some_and(|o| o.encrypted) && !data.is_e2e_envelope() {
                    return Err(error(
                        ErrorCode::BadRequest,
                        "an encrypted channel carries only end-to-end envelopes ({\"e2e\": \"keys\" | \"msg\", ...})",
                    ));
                }
                let from = ClientInfo {
                    session,
                    user: self.sessions[&session].user.clone(),
                    info: membership.info.clone(),
                };
                let history = options.and_then(|o| o.history());
                if idempotency_key.is_some() && history.is_none() {
                    return Err(error(
                        ErrorCode::BadRequest,
                        "an idempotency key needs a channel with history: its reply is the first publication's offset",
                    ));
                }
                // Scoped to the publisher, so that nobody can make another
                // user's publish a "duplicate" by sending its key first.
                let idempotency_key = idempotency_key.map(|key| match &from.user {
                    Some(user) => format!("u{}:{user}:{key}", user.len()),
                    None => format!("s:{session}:{key}"),
                });
                self.op(
                    Operation::Publish {
                        channel,
                        publication: Publication::message(Some(from), data),
                        history,
                        idempotency_key,
                    },
                    Pending::Publish {
                        session,
                        reply: reply.clone(),
                    },
                );
            }
            Command::Kick { target } => {
                self.permitted(session, &channel, "kick")?;
                self.op_reply(Operation::Kick { channel, target }, session, reply);
            }
            Command::Ban { user, duration } => {
                self.permitted(session, &channel, "ban")?;
                if self.sessions[&session].user.as_deref() == Some(user.as_str()) {
                    return Err(error(ErrorCode::BadRequest, "a user cannot ban itself"));
                }
                const MAX_BAN_SECS: u64 = 10 * 366 * 24 * 3600;
                if duration.is_some_and(|d| d == 0 || d > MAX_BAN_SECS) {
                    return Err(error(
                        ErrorCode::BadRequest,
                        format!("duration is 1 to {MAX_BAN_SECS} seconds, or absent for no end"),
                    ));
                }
                self.op_reply(
                    Operation::Ban {
                        channel,
                        user,
                        duration: duration.map(Duration::from_secs),
                    },
                    session,
                    reply,
                );
            }
            Command::Unban { user } => {
                self.permitted(session, &channel, "unban")?;
                self.op_reply(Operation::Unban { channel, user }, session, reply);
            }
            Command::SetRole { user, role } => {
                self.permitted(session, &channel, "role")?;
                if !self.config.is_known_role(&role) {
                    return Err(error(
                        ErrorCode::BadRequest,
                        format!("no role named {:?}", role.as_str()),
                    ));
                }
                self.op_reply(
                    Operation::SetRole {
                        channel,
                        user,
                        role,
                    },
                    session,
                    reply,
                );
            }
            Command::Close => {
                self.permitted(session, &channel, "close")?;
                self.op_reply(Operation::Close { channel }, session, reply);
            }
            Command::Presence { limit } => {
                self.permitted(session, &channel, "presence")?;
                let limit = limit
                    .unwrap_or(self.config.max_presence_reply)
                    .min(self.config.max_presence_reply);
                self.op(
                    Operation::Members { channel, limit },
                    Pending::Members {
                        session,
                        reply: reply.clone(),
                        limit,
                    },
                );
            }
            Command::History { limit } => {
                self.permitted(session, &channel, "history")?;
                let kept = self
                    .channels
                    .get(&channel)
                    .and_then(|c| c.options.history())
                    .map_or(0, |h| h.size as usize);
                let limit = limit
                    .unwrap_or(kept)
                    .min(kept)
                    .min(self.config.max_recovery);
                self.op(
                    Operation::Recent { channel, limit },
                    Pending::Recent {
                        session,
                        reply: reply.clone(),
                    },
                );
            }
            Command::Subscribe { filter } => {
                self.subscribe_topic(session, channel, filter, reply)?
            }
            Command::Unsubscribe => {
                if self
                    .sessions
                    .get_mut(&session)
                    .and_then(|s| s.topics.remove(&channel))
                    .is_none()
                {
                    return Err(error(
                        ErrorCode::NotFound,
                        format!("not subscribed to {channel:?}"),
                    ));
                }
                self.drop_topic_subscriber(session, &channel);
                self.ok(session, reply, json!({}));
            }
            Command::Custom { name, data } => {
                let role = self.permitted(session, &channel, &name)?.role.clone();
                let op = OpId(self.next_op);
                self.next_op += 1;
                self.pending.insert(
                    op,
                    Pending::Custom {
                        session,
                        reply: reply.clone(),
                    },
                );
                self.actions.push_back(Action::Custom {
                    op,
                    command: CustomCommand {
                        session,
                        user: self.sessions[&session].user.clone(),
                        channel,
                        name,
                        data,
                        role,
                    },
                });
            }
        }
        Ok(())
    }

    fn check_room_for_channel(
        &self,
        session: SessionId,
        channel: &str,
    ) -> Result<(), ChannelError> {
        let state = &self.sessions[&session];
        if state.joining.contains_key(channel) {
            return Err(error(
                ErrorCode::BadRequest,
                format!("already joining {channel:?}"),
            ));
        }
        if state.channels.len() + state.joining.len() >= self.config.max_channels_per_session {
            return Err(error(
                ErrorCode::Limit,
                format!(
                    "a session is in at most {} channels",
                    self.config.max_channels_per_session
                ),
            ));
        }
        Ok(())
    }

    fn start_join(
        &mut self,
        session: SessionId,
        channel: String,
        reply: &ReplyTo,
        since: Option<Position>,
        info: Option<Payload>,
        operation: Operation,
    ) {
        let op = self.op(
            operation,
            Pending::Join {
                session,
                channel: channel.clone(),
                reply: reply.clone(),
                since,
                info,
            },
        );
        if let Some(state) = self.sessions.get_mut(&session) {
            state.joining.insert(
                channel,
                Joining {
                    op,
                    cancelled: None,
                },
            );
        }
    }

    /// `join` from a member: with `since`, a recovery; without, only the
    /// role.
    fn rejoin(
        &mut self,
        session: SessionId,
        channel: String,
        reply: &ReplyTo,
        since: Option<Position>,
    ) -> Result<(), ChannelError> {
        let has_history = self
            .channels
            .get(&channel)
            .is_some_and(|c| c.options.history().is_some());
        let membership = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.channels.get_mut(&channel))
            .expect("checked by the caller");
        let role = membership.role.clone();
        match (since, &membership.stage) {
            (Some(since), Stage::Active) if has_history => {
                membership.stage = Stage::Recovering {
                    buffer: Vec::new(),
                    overflowed: false,
                };
                stale(&mut self.channels, &channel);
                self.continue_join(session, channel, reply.clone(), Some(since));
            }
            (_, Stage::Recovering { .. }) => {
                return Err(error(
                    ErrorCode::BadRequest,
                    format!("already joining {channel:?}"),
                ));
            }
            _ => self.ok(session, reply, json!({ "role": role, "rejoined": true })),
        }
        Ok(())
    }

    fn leave(
        &mut self,
        session: SessionId,
        channel: &str,
        info: Option<Payload>,
        reason: LeaveReason,
    ) {
        let user = self.sessions.get_mut(&session).and_then(|s| {
            s.channels.remove(channel);
            s.user.clone()
        });
        self.drop_member(session, channel);
        self.op(
            Operation::Leave {
                channel: channel.to_owned(),
                session,
            },
            Pending::Ignore,
        );
        self.publish_presence_event(session, user, info, channel, Presence::Left(reason));
        self.reconcile(channel);
    }

    fn publish_presence_event(
        &mut self,
        session: SessionId,
        user: Option<String>,
        info: Option<Payload>,
        channel: &str,
        presence: Presence,
    ) {
        if !self
            .channels
            .get(channel)
            .is_some_and(|c| c.options.presence_events)
        {
            return;
        }
        let (kind, reason) = match presence {
            Presence::Joined => (PublicationKind::Join, None),
            Presence::Left(reason) => (PublicationKind::Leave, Some(reason)),
        };
        let publication = Publication {
            kind,
            position: None,
            from: Some(ClientInfo {
                session,
                user,
                info,
            }),
            data: None,
            reason,
        };
        self.op(
            Operation::Publish {
                channel: channel.to_owned(),
                publication,
                history: None,
                idempotency_key: None,
            },
            Pending::Ignore,
        );
    }

    /// Starts `operation`, whose result answers `reply`.
    fn op_reply(&mut self, operation: Operation, session: SessionId, reply: &ReplyTo) {
        self.op(
            operation,
            Pending::Reply {
                session,
                reply: reply.clone(),
            },
        );
    }

    fn drop_member(&mut self, session: SessionId, channel: &str) {
        if let Some(local) = self.channels.get_mut(channel) {
            local.members.remove(&session);
            local.ready = None;
        }
    }

    fn subscribe_topic(
        &mut self,
        session: SessionId,
        topic: String,
        filter: Option<Value>,
        reply: &ReplyTo,
    ) -> Result<(), ChannelError> {
        let Some(access) = self.config.topics.get(&topic) else {
            return Err(error(
                ErrorCode::NotFound,
                format!("no topic named {topic:?}"),
            ));
        };
        let state = &self.sessions[&session];
        let request = TopicRequest {
            topic: &topic,
            user: state.user.as_deref(),
            claims: state.claims.as_deref().unwrap_or(&Value::Null),
        };
        if !access.allows(&request) {
            return Err(error(
                ErrorCode::Forbidden,
                format!("this session may not subscribe to {topic:?}"),
            ));
        }
        let filter = match filter {
            None => Filter::parse(json!({}))?,
            Some(value) => {
                if value.to_string().len() > self.config.max_filter {
                    return Err(error(
                        ErrorCode::Limit,
                        format!("a filter is at most {} bytes", self.config.max_filter),
                    ));
                }
                Filter::parse(value)?
            }
        };
        let max_topics = self.config.max_topics_per_session;
        let state = self
            .sessions
            .get_mut(&session)
            .expect("sessions are checked first");
        if !state.topics.contains_key(&topic) && state.topics.len() >= max_topics {
            return Err(error(
                ErrorCode::Limit,
                format!("a session subscribes to at most {max_topics} topics"),
            ));
        }
        state.topics.insert(topic.clone(), filter);
        self.topics
            .entry(topic.clone())
            .or_default()
            .insert(session);
        let key = topic_key(&topic);
        if self.subscription_state(&key) == SubState::Subscribed {
            self.ok(session, reply, json!({}));
        } else {
            self.wait_for_subscription(
                &key,
                Waiter::Topic {
                    session,
                    reply: reply.clone(),
                },
            );
        }
        Ok(())
    }

    /// Queues `waiter` until the broker subscription to `key` is in place,
    /// and asks for it.
    fn wait_for_subscription(&mut self, key: &str, waiter: Waiter) {
        self.subscriptions
            .entry(key.to_owned())
            .or_insert_with(|| Subscription {
                state: SubState::Unsubscribed,
                waiters: Vec::new(),
            })
            .waiters
            .push(waiter);
        self.reconcile(key);
    }

    fn drop_topic_subscriber(&mut self, session: SessionId, topic: &str) {
        if let Some(subscribers) = self.topics.get_mut(topic) {
            subscribers.remove(&session);
            if subscribers.is_empty() {
                self.topics.remove(topic);
            }
        }
        self.reconcile(&topic_key(topic));
    }

    fn subscription_state(&self, key: &str) -> SubState {
        self.subscriptions
            .get(key)
            .map_or(SubState::Unsubscribed, |s| s.state)
    }

    /// Whether this node has anyone for `key` (a channel or `$topic:`).
    fn wants(&self, key: &str) -> bool {
        match key.strip_prefix(TOPIC_PREFIX) {
            Some(topic) => self.topics.contains_key(topic),
            None => self
                .channels
                .get(key)
                .is_some_and(|c| !c.members.is_empty()),
        }
    }

    /// Moves the broker subscription for `key` towards what is wanted:
    /// subscribed while anyone here listens, not otherwise. One operation
    /// at a time per key; the next is decided when it completes.
    fn reconcile(&mut self, key: &str) {
        let wants = self.wants(key);
        let state = self.subscription_state(key);
        match (state, wants) {
            (SubState::Unsubscribed, true) => {
                self.subscriptions
                    .entry(key.to_owned())
                    .or_insert_with(|| Subscription {
                        state: SubState::Unsubscribed,
                        waiters: Vec::new(),
                    })
                    .state = SubState::Subscribing;
                self.op(
                    Operation::Subscribe {
                        topic: key.to_owned(),
                    },
                    Pending::Subscription {
                        topic: key.to_owned(),
                        subscribe: true,
                    },
                );
            }
            (SubState::Subscribed, false) => {
                if let Some(sub) = self.subscriptions.get_mut(key) {
                    sub.state = SubState::Unsubscribing;
                }
                self.op(
                    Operation::Unsubscribe {
                        topic: key.to_owned(),
                    },
                    Pending::Subscription {
                        topic: key.to_owned(),
                        subscribe: false,
                    },
                );
            }
            (SubState::Unsubscribed, false) => {
                if self
                    .subscriptions
                    .get(key)
                    .is_some_and(|s| s.waiters.is_empty())
                {
                    self.subscriptions.remove(key);
                }
                if !key.starts_with(TOPIC_PREFIX)
                    && self.channels.get(key).is_some_and(|c| c.members.is_empty())
                {
                    self.channels.remove(key);
                }
            }
            _ => {}
        }
    }

    /// The result of an [`Action::Backend`] or [`Action::Custom`].
    pub fn handle_result(&mut self, op: OpId, result: OpResult, now: Instant) {
        let Some(pending) = self.pending.remove(&op) else {
            return;
        };
        match (pending, result) {
            (
                Pending::Join {
                    session,
                    channel,
                    reply,
                    since,
                    info,
                },
                OpResult::Joined(result),
            ) => self.joined(op, session, channel, reply, since, info, result, now),
            (
                Pending::Recover {
                    session,
                    channel,
                    reply,
                    since,
                },
                OpResult::History(result),
            ) => self.recovered(session, &channel, &reply, since, result, now),
            (Pending::Subscription { topic, subscribe }, OpResult::Done(result)) => {
                self.subscription_done(&topic, subscribe, result, now);
            }
            (Pending::Publish { session, reply }, OpResult::Published(result)) => match result {
                Ok(published) => {
                    let mut fields = match published.position {
                        Some(p) => json!({ "offset": p.offset, "epoch": p.epoch }),
                        None => json!({}),
                    };
                    if published.duplicate {
                        fields["duplicate"] = json!(true);
                    }
                    self.ok(session, &reply, fields);
                }
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (Pending::Reply { session, reply }, OpResult::Done(result)) => match result {
                Ok(()) => self.ok(session, &reply, json!({})),
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (
                Pending::Members {
                    session,
                    reply,
                    limit,
                },
                OpResult::Roster(result),
            ) => match result {
                Ok(mut roster) => {
                    roster.members.truncate(limit);
                    let truncated = roster.members.len() < roster.total;
                    let members: Vec<Value> = roster
                        .members
                        .iter()
                        .map(|m| {
                            json!({"session": m.session, "user": m.user, "info": m.info, "role": m.role})
                        })
                        .collect();
                    self.ok(
                        session,
                        &reply,
                        json!({ "members": members, "total": roster.total, "truncated": truncated }),
                    );
                }
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (Pending::Recent { session, reply }, OpResult::History(result)) => match result {
                Ok(page) => {
                    let mut fields = json!({ "complete": page.complete });
                    if let Some(top) = &page.top {
                        fields["offset"] = json!(top.offset);
                        fields["epoch"] = json!(top.epoch);
                    }
                    let publications: Vec<PublicationOut<'_>> =
                        page.publications.iter().map(PublicationOut::of).collect();
                    fields["publications"] =
                        serde_json::to_value(publications).unwrap_or(Value::Null);
                    self.ok(session, &reply, fields);
                }
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (
                Pending::Fill {
                    channel,
                    epoch,
                    check,
                },
                OpResult::History(result),
            ) => {
                self.filled(&channel, &epoch, check, result);
            }
            (Pending::Custom { session, reply }, OpResult::Custom(result)) => match result {
                Ok(value) => self.ok(session, &reply, json!({ "result": value })),
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (Pending::Ignore, _) => {}
            (pending, result) => {
                tracing::error!(?pending, ?result, "a backend result of the wrong kind");
                self.fail_pending(pending, now);
            }
        }
    }

    /// Answers a request whose operation came back with a result of the
    /// wrong kind (a driver bug), rather than leaving it unanswered.
    fn fail_pending(&mut self, pending: Pending, now: Instant) {
        let failure = || ChannelError::new(ErrorCode::Internal, "the backend answered wrongly");
        match pending {
            Pending::Join {
                session,
                channel,
                reply,
                ..
            } => {
                if let Some(state) = self.sessions.get_mut(&session) {
                    state.joining.remove(&channel);
                }
                self.refuse(session, &reply, failure(), now);
            }
            Pending::Recover {
                session,
                channel,
                reply,
                ..
            } => self.recovered(session, &channel, &reply, None, Err(failure()), now),
            Pending::Subscription { topic, subscribe } => {
                self.subscription_done(&topic, subscribe, Err(failure()), now);
            }
            Pending::Publish { session, reply }
            | Pending::Reply { session, reply }
            | Pending::Members { session, reply, .. }
            | Pending::Recent { session, reply }
            | Pending::Custom { session, reply } => self.refuse(session, &reply, failure(), now),
            Pending::Fill {
                channel,
                epoch,
                check,
            } => {
                self.filled(&channel, &epoch, check, Err(failure()));
            }
            Pending::Ignore => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn joined(
        &mut self,
        op: OpId,
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
        info: Option<Payload>,
        result: Result<crate::types::JoinGrant, ChannelError>,
        now: Instant,
    ) {
        let joining = self
            .sessions
            .get_mut(&session)
            .and_then(|s| match s.joining.get(&channel) {
                Some(j) if j.op == op => s.joining.remove(&channel),
                _ => None,
            });
        let grant = match result {
            Err(e) => {
                if joining.is_some() {
                    self.refuse(session, &reply, e, now);
                }
                return;
            }
            Ok(grant) => grant,
        };
        let Some(joining) = joining else {
            // The session closed while joining: undo the join.
            self.op(Operation::Leave { channel, session }, Pending::Ignore);
            return;
        };
        if let Some(cancelled) = joining.cancelled {
            self.op(
                Operation::Leave {
                    channel: channel.clone(),
                    session,
                },
                Pending::Ignore,
            );
            return self.refuse(session, &reply, cancelled, now);
        }
        let state = self
            .sessions
            .get_mut(&session)
            .expect("joining came from it");
        let user = state.user.clone();
        state.channels.insert(
            channel.clone(),
            Membership {
                role: grant.role,
                info: info.clone(),
                stage: Stage::Recovering {
                    buffer: Vec::new(),
                    overflowed: false,
                },
                lost: false,
                floor: None,
            },
        );
        let local = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| LocalChannel {
                options: grant.options,
                members: BTreeSet::new(),
                ready: None,
                order: None,
            });
        local.members.insert(session);
        local.ready = None;
        self.publish_presence_event(session, user, info, &channel, Presence::Joined);
        if self.subscription_state(&channel) == SubState::Subscribed {
            self.continue_join(session, channel, reply, since);
        } else {
            let key = channel.clone();
            self.wait_for_subscription(
                &key,
                Waiter::Join {
                    session,
                    channel,
                    reply,
                    since,
                },
            );
        }
    }

    /// The broker subscription is in place: read history (where the
    /// channel keeps it) or answer at once.
    fn continue_join(
        &mut self,
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
    ) {
        if self
            .channels
            .get(&channel)
            .is_some_and(|c| c.options.history().is_some())
        {
            self.op(
                Operation::History {
                    channel: channel.clone(),
                    since: since.clone(),
                    limit: self.config.max_recovery,
                },
                Pending::Recover {
                    session,
                    channel,
                    reply,
                    since,
                },
            );
        } else {
            let page = HistoryPage {
                publications: Vec::new(),
                top: None,
                complete: since.is_none(),
            };
            self.finish_join(session, &channel, &reply, since.is_some(), page);
        }
    }

    fn recovered(
        &mut self,
        session: SessionId,
        channel: &str,
        reply: &ReplyTo,
        since: Option<Position>,
        result: Result<HistoryPage, ChannelError>,
        now: Instant,
    ) {
        let recovering = self
            .sessions
            .get(&session)
            .and_then(|s| s.channels.get(channel))
            .is_some_and(|m| matches!(m.stage, Stage::Recovering { .. }));
        if !recovering {
            // Left, kicked or closed meanwhile; whoever removed it told it.
            return;
        }
        match result {
            Ok(page) => self.finish_join(session, channel, reply, since.is_some(), page),
            Err(e) => {
                let info = self.sessions[&session].channels[channel].info.clone();
                self.leave(session, channel, info, LeaveReason::Left);
                self.refuse(session, reply, e, now);
            }
        }
    }

    /// Answers a join, then delivers what arrived meanwhile.
    fn finish_join(
        &mut self,
        session: SessionId,
        channel: &str,
        reply: &ReplyTo,
        asked_since: bool,
        page: HistoryPage,
    ) {
        let Some(membership) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.channels.get_mut(channel))
        else {
            return;
        };
        let Stage::Recovering { buffer, overflowed } =
            std::mem::replace(&mut membership.stage, Stage::Active)
        else {
            return;
        };
        stale(&mut self.channels, channel);
        let mut fields = json!({ "role": membership.role });
        if self
            .channels
            .get(channel)
            .is_some_and(|c| c.options.encrypted)
        {
            // So a client that does not encrypt knows not to show what
            // arrives as text.
            fields["encrypted"] = json!(true);
        }
        if let Some(top) = &page.top {
            fields["offset"] = json!(top.offset);
            fields["epoch"] = json!(top.epoch);
        }
        if asked_since {
            fields["recovered"] = json!(page.complete);
            let publications: Vec<PublicationOut<'_>> =
                page.publications.iter().map(PublicationOut::of).collect();
            fields["publications"] = serde_json::to_value(publications).unwrap_or(Value::Null);
        }
        let top = page.top.as_ref().map_or(0, |p| p.offset);
        if overflowed {
            membership.lost = true;
        }
        if let Some(position) = &page.top {
            // Its stream starts after `top`: live copies of what the
            // history read already covered are not delivered to it again.
            membership.floor = Some(position.offset);
            if let Some(local) = self.channels.get_mut(channel) {
                let stale = local
                    .order
                    .as_ref()
                    .is_none_or(|order| order.epoch != position.epoch);
                if stale {
                    local.order = Some(Order::after(position));
                }
            }
        }
        self.ok(session, reply, fields);
        for publication in buffer {
            let newer = publication.position.as_ref().is_none_or(|p| p.offset > top);
            if newer {
                let message = protocol::publication_event(channel, &publication);
                self.deliver(channel, Arc::new([session]), None, message);
            }
        }
    }

    fn subscription_done(
        &mut self,
        key: &str,
        subscribe: bool,
        result: Result<(), ChannelError>,
        now: Instant,
    ) {
        let Some(sub) = self.subscriptions.get_mut(key) else {
            return;
        };
        if !subscribe {
            if let Err(e) = &result {
                tracing::warn!(topic = key, error = %e, "unsubscribing failed");
            }
            sub.state = SubState::Unsubscribed;
            return self.reconcile(key);
        }
        let waiters = std::mem::take(&mut sub.waiters);
        match result {
            Ok(()) => {
                sub.state = SubState::Subscribed;
                for waiter in waiters {
                    match waiter {
                        Waiter::Join {
                            session,
                            channel,
                            reply,
                            since,
                        } => self.continue_join(session, channel, reply, since),
                        Waiter::Topic { session, reply } => {
                            if self.sessions.contains_key(&session) {
                                self.ok(session, &reply, json!({}));
                            }
                        }
                    }
                }
            }
            Err(e) => {
                sub.state = SubState::Unsubscribed;
                for waiter in waiters {
                    match waiter {
                        Waiter::Join {
                            session,
                            channel,
                            reply,
                            ..
                        } => {
                            let info = self
                                .sessions
                                .get(&session)
                                .and_then(|s| s.channels.get(&channel))
                                .map(|m| m.info.clone());
                            if let Some(info) = info {
                                self.leave(session, &channel, info, LeaveReason::Left);
                                self.refuse(session, &reply, e.clone(), now);
                            }
                        }
                        Waiter::Topic { session, reply } => {
                            let topic = key.strip_prefix(TOPIC_PREFIX).unwrap_or(key);
                            let had = self
                                .sessions
                                .get_mut(&session)
                                .and_then(|s| s.topics.remove(topic))
                                .is_some();
                            if had {
                                self.drop_topic_subscriber(session, topic);
                                self.refuse(session, &reply, e.clone(), now);
                            }
                        }
                    }
                }
            }
        }
        self.reconcile(key);
    }

    /// A publication on a channel or topic this node subscribed to.
    ///
    /// Publications of a channel with history reach its members once and
    /// in offset order whatever the broker does: one at or before the last
    /// handed out is a duplicate and dropped; one after a gap waits while
    /// the gap is read from history, then both go out in order; a gap the
    /// history no longer holds is a `lost` event to each member (with the
    /// last position it has), never a silent jump.
    pub fn handle_publication(&mut self, channel: &str, publication: &Publication, _now: Instant) {
        if let Some(topic) = channel.strip_prefix(TOPIC_PREFIX) {
            return self.topic_publication(channel, topic, publication);
        }
        match (&publication.position, publication.kind) {
            (Some(position), PublicationKind::Message) => {
                for next in self.in_order(channel, position, publication) {
                    self.fan_out(channel, &next);
                }
            }
            _ => self.fan_out(channel, publication),
        }
    }

    /// What of `publication` (and what waited behind it) goes out now, in
    /// order; starts a history read when it came after a gap.
    fn in_order(
        &mut self,
        channel: &str,
        position: &Position,
        publication: &Publication,
    ) -> Vec<Publication> {
        let max_ahead = self.config.max_recovery_buffer;
        let Some(local) = self.channels.get_mut(channel) else {
            return Vec::new();
        };
        let order = local.order.get_or_insert_with(|| Order::before(position));
        if order.epoch != position.epoch {
            // A new history (the broker lost the old one, or the channel
            // was made anew): it starts here.
            *order = Order::before(position);
        }
        if position.offset <= order.delivered {
            return Vec::new();
        }
        if position.offset > order.delivered + 1 {
            order.wait(position.offset, publication, max_ahead);
            if !order.filling {
                self.read_after_delivered(channel, false);
            }
            return Vec::new();
        }
        order.delivered = position.offset;
        let mut out = vec![publication.clone()];
        out.extend(drain_ahead(order));
        out
    }

    /// A gap's history read came back: what it holds goes out in order,
    /// then what waited behind the gap; a gap it cannot fill is a `lost`
    /// event to every member, with the last position they have.
    fn filled(
        &mut self,
        channel: &str,
        epoch: &str,
        check: bool,
        result: Result<HistoryPage, ChannelError>,
    ) {
        let Some(order) = self
            .channels
            .get_mut(channel)
            .and_then(|local| local.order.as_mut())
            .filter(|order| order.epoch == epoch)
        else {
            return;
        };
        order.filling = false;
        if check && result.is_err() && order.ahead.is_empty() {
            // Nothing is known to be missing: the next check asks again
            // (and a broker that failed tells every member `lost` when it
            // is back).
            return;
        }
        let mut out = Vec::new();
        let mut lost = None;
        match result {
            Ok(page) if page.complete => {
                for publication in page.publications {
                    let Some(offset) = publication.position.as_ref().map(|p| p.offset) else {
                        continue;
                    };
                    if offset == order.delivered + 1 {
                        order.delivered = offset;
                        out.push(publication);
                    }
                }
            }
            result => {
                // Not in history any more (or unreadable): the members are
                // told, and the stream goes on after the gap: at what
                // waited behind it, else after the history's newest.
                lost = Some(Position {
                    offset: order.delivered,
                    epoch: order.epoch.clone(),
                });
                let top = result.ok().and_then(|page| page.top);
                if let Some(&first) = order.ahead.keys().next() {
                    order.delivered = order.delivered.max(first - 1);
                } else if let Some(top) = top {
                    if top.epoch == order.epoch {
                        order.delivered = order.delivered.max(top.offset);
                    } else {
                        *order = Order::after(&top);
                    }
                }
            }
        }
        out.extend(drain_ahead(order));
        let gap_remains = !order.ahead.is_empty();
        if let Some(position) = lost {
            let members: Vec<SessionId> = self
                .channels
                .get(channel)
                .map(|c| c.members.iter().copied().collect())
                .unwrap_or_default();
            for session in members {
                self.actions.push_back(Action::Send {
                    session,
                    envelope: protocol::event(
                        channel,
                        "lost",
                        json!({ "offset": position.offset, "epoch": position.epoch }),
                    ),
                });
            }
        }
        for publication in out {
            self.fan_out(channel, &publication);
        }
        if gap_remains
            && self
                .channels
                .get(channel)
                .and_then(|c| c.order.as_ref())
                .is_some_and(|order| !order.filling)
        {
            // Another gap further on: read it too.
            self.read_after_delivered(channel, false);
        }
    }

    /// Reads `channel`'s history after what its members were handed: to
    /// fill a gap, or (`check`) to find a tail that never arrived.
    fn read_after_delivered(&mut self, channel: &str, check: bool) {
        let Some(order) = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.order.as_mut())
        else {
            return;
        };
        order.filling = true;
        let since = Position {
            offset: order.delivered,
            epoch: order.epoch.clone(),
        };
        let epoch = order.epoch.clone();
        let limit = self.config.max_recovery;
        self.op(
            Operation::History {
                channel: channel.to_owned(),
                since: Some(since),
                limit,
            },
            Pending::Fill {
                channel: channel.to_owned(),
                epoch,
                check,
            },
        );
    }

    /// Hands `publication` to the channel's members: at once to those
    /// ready, to the others as their state says.
    fn fan_out(&mut self, channel: &str, publication: &Publication) {
        let Some(local) = self.channels.get_mut(channel) else {
            return;
        };
        let ready = local
            .ready
            .get_or_insert_with(|| Ready::of(channel, &local.members, &self.sessions));
        let sessions = ready.sessions.clone();
        let others = ready.others.clone();
        let publisher = publication.from.as_ref().map(|f| f.session);
        let except =
            publisher.filter(|_| !self.config.echo && publication.kind == PublicationKind::Message);
        // The members not ready for it: buffered while recovering, or owed
        // a `lost` event first (after which they are ready again).
        let mut late = Vec::new();
        let mut lost = Vec::new();
        let mut changed = false;
        let offset = publication
            .position
            .as_ref()
            .filter(|_| publication.kind == PublicationKind::Message)
            .map(|p| p.offset);
        let max_buffer = self.config.max_recovery_buffer;
        for session in others {
            let Some(membership) = self
                .sessions
                .get_mut(&session)
                .filter(|s| !s.closing)
                .and_then(|s| s.channels.get_mut(channel))
            else {
                continue;
            };
            match &mut membership.stage {
                Stage::Recovering { buffer, overflowed } => {
                    if buffer.len() < max_buffer {
                        buffer.push(publication.clone());
                    } else if !*overflowed {
                        *overflowed = true;
                        buffer.clear();
                    }
                }
                Stage::Active => {
                    if let Some(floor) = membership.floor {
                        match offset {
                            // Its join's history already had it.
                            Some(offset) if offset <= floor => continue,
                            Some(_) => {
                                membership.floor = None;
                                changed = true;
                            }
                            None => {}
                        }
                    }
                    if std::mem::take(&mut membership.lost) {
                        lost.push(session);
                        changed = true;
                    }
                    if except != Some(session) {
                        late.push(session);
                    }
                }
            }
        }
        if changed {
            stale(&mut self.channels, channel);
        }
        for session in lost {
            self.actions.push_back(Action::Send {
                session,
                envelope: protocol::event(channel, "lost", json!({})),
            });
        }
        let everyone_else = sessions.iter().any(|s| Some(*s) != except);
        if everyone_else || !late.is_empty() {
            let message = protocol::publication_event(channel, publication);
            if everyone_else {
                self.deliver(channel, sessions, except, message.clone());
            }
            if !late.is_empty() {
                self.deliver(channel, late.into(), None, message);
            }
        }
    }

    fn deliver(
        &mut self,
        channel: &str,
        sessions: Arc<[SessionId]>,
        except: Option<SessionId>,
        message: EncodedMessage,
    ) {
        self.actions.push_back(Action::Deliver {
            channel: channel.to_owned(),
            sessions,
            except,
            message,
        });
    }

    fn topic_publication(&mut self, key: &str, topic: &str, publication: &Publication) {
        let (Some(subscribers), Some(data)) = (self.topics.get(topic), &publication.data) else {
            return;
        };
        let value = data.to_value();
        let recipients: Vec<SessionId> = subscribers
            .iter()
            .filter(|s| {
                self.sessions.get(s).is_some_and(|state| {
                    !state.closing && state.topics.get(topic).is_some_and(|f| f.matches(&value))
                })
            })
            .copied()
            .collect();
        if !recipients.is_empty() {
            let message = protocol::topic_event(topic, data);
            self.deliver(key, recipients.into(), None, message);
        }
    }

    /// A delivery could not be queued for `session` (its send queue is
    /// full). `channel` is the delivery's channel, or `None` for a reply or
    /// an event of its own, which is never dropped: the session is closed.
    pub fn handle_undelivered(&mut self, session: SessionId, channel: Option<&str>, _now: Instant) {
        let mark_lost = self.config.slow_subscriber == crate::config::SlowSubscriber::MarkLost;
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        if state.closing {
            return;
        }
        if mark_lost
            && let Some(channel) = channel
            && let Some(membership) = state.channels.get_mut(channel)
        {
            membership.lost = true;
            stale(&mut self.channels, channel);
            return;
        }
        start_closing(&mut self.channels, state);
        self.actions.push_back(Action::Disconnect {
            session,
            code: close_codes::SLOW,
            reason: "slow: send queue full".into(),
        });
    }

    /// A control message from any node (this one included); how many of
    /// this node's sessions it removed (a kick, a ban) or closed (a
    /// disconnect).
    pub fn handle_control(&mut self, message: &ControlMessage, _now: Instant) -> usize {
        match message {
            ControlMessage::Remove {
                channel,
                target,
                reason,
            } => {
                let (action, code, leave) = match reason {
                    Removal::Kicked => ("kicked", ErrorCode::Forbidden, LeaveReason::Kicked),
                    Removal::Banned => ("banned", ErrorCode::Banned, LeaveReason::Banned),
                };
                let cancel = ChannelError::new(code, format!("{action} from {channel:?}"));
                self.remove_where(channel, action, cancel, Some(leave), |session, user| {
                    target.matches(session, user)
                })
            }
            ControlMessage::Closed { channel } => {
                // Everyone goes: nobody is left to tell.
                let cancel = error(ErrorCode::NotFound, format!("{channel:?} was closed"));
                self.remove_where(channel, "closed", cancel, None, |_, _| true)
            }
            ControlMessage::RoleChanged {
                channel,
                user,
                role,
            } => {
                let members: Vec<SessionId> = self
                    .channels
                    .get(channel)
                    .map(|c| c.members.iter().copied().collect())
                    .unwrap_or_default();
                for session in members {
                    let Some(state) = self.sessions.get_mut(&session) else {
                        continue;
                    };
                    if state.user.as_deref() != Some(user.as_str()) {
                        continue;
                    }
                    if let Some(membership) = state.channels.get_mut(channel) {
                        membership.role = role.clone();
                        self.actions.push_back(Action::Send {
                            session,
                            envelope: protocol::event(
                                channel,
                                "role",
                                json!({ "user": user, "role": role }),
                            ),
                        });
                    }
                }
                0
            }
            ControlMessage::Disconnect {
                target,
                code,
                reason,
            } => {
                let mut targets: Vec<SessionId> = self
                    .sessions
                    .iter()
                    .filter(|(id, s)| !s.closing && target.matches(**id, s.user.as_deref()))
                    .map(|(id, _)| *id)
                    .collect();
                targets.sort_unstable();
                for session in &targets {
                    if let Some(state) = self.sessions.get_mut(session) {
                        start_closing(&mut self.channels, state);
                    }
                    self.actions.push_back(Action::Disconnect {
                        session: *session,
                        code: *code,
                        reason: reason.clone(),
                    });
                }
                targets.len()
            }
        }
    }

    /// Removes the matching local members of `channel` (telling each with
    /// an `action` event, and the members who remain with a `leave` event
    /// giving `leave` as the reason), and cancels matching joins in flight;
    /// how many members it removed and joins it cancelled.
    fn remove_where(
        &mut self,
        channel: &str,
        action: &str,
        cancel: ChannelError,
        leave: Option<LeaveReason>,
        matches: impl Fn(SessionId, Option<&str>) -> bool,
    ) -> usize {
        let mut sessions: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(id, s)| {
                (s.channels.contains_key(channel) || s.joining.contains_key(channel))
                    && matches(**id, s.user.as_deref())
            })
            .map(|(id, _)| *id)
            .collect();
        sessions.sort_unstable();
        let removed = sessions.len();
        for session in sessions {
            let state = self.sessions.get_mut(&session).expect("listed above");
            if let Some(joining) = state.joining.get_mut(channel) {
                joining.cancelled = Some(cancel.clone());
            }
            let user = state.user.clone();
            if let Some(membership) = state.channels.remove(channel) {
                self.drop_member(session, channel);
                self.actions.push_back(Action::Send {
                    session,
                    envelope: protocol::event(channel, action, json!({})),
                });
                if let Some(reason) = leave {
                    self.publish_presence_event(
                        session,
                        user,
                        membership.info,
                        channel,
                        Presence::Left(reason),
                    );
                }
            }
        }
        self.reconcile(channel);
        removed
    }

    /// The backend lost its connection to the broker and has it again:
    /// publications sent meanwhile may not have reached this node. Every
    /// local member gets a `lost` event (a member still recovering gets
    /// one after its join reply), so clients join again with `since` and
    /// learn whether history filled the gap (`recovered`). Presence is
    /// refreshed at once, so a broker that lost its data gets this node's
    /// entries back.
    pub fn handle_interrupted(&mut self, now: Instant) {
        let mut ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let state = self.sessions.get_mut(&id).expect("listed above");
            if state.closing {
                continue;
            }
            for (name, membership) in &mut state.channels {
                match &mut membership.stage {
                    Stage::Recovering { overflowed, buffer } => {
                        *overflowed = true;
                        buffer.clear();
                    }
                    Stage::Active => {
                        membership.lost = false;
                        self.actions.push_back(Action::Send {
                            session: id,
                            envelope: protocol::event(name, "lost", json!({})),
                        });
                    }
                }
                stale(&mut self.channels, name);
            }
        }
        if self.next_refresh.is_some() {
            self.next_refresh = Some(now);
            self.handle_timeout(now);
        }
    }

    /// Time passed: refreshes presence when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.next_refresh else {
            return;
        };
        if now < due {
            return;
        }
        self.next_refresh = Some(now + self.refresh_interval());
        self.check_positions();
        let mut entries: Vec<(String, SessionId)> = self
            .sessions
            .iter()
            .flat_map(|(id, s)| s.channels.keys().map(move |c| (c.clone(), *id)))
            .collect();
        // Sent with no entries too: a refresh is when a store may sweep
        // what lingered out (the in-process one frees those histories).
        entries.sort_unstable();
        self.op(
            Operation::Refresh {
                entries,
                ttl: self.config.presence_ttl,
            },
            Pending::Ignore,
        );
    }

    /// Asks each channel's history whether publications came after the
    /// last one its members were handed: a publication the broker dropped
    /// with nothing after it would otherwise never be noticed. What the
    /// history holds is delivered; what it no longer holds is a `lost`
    /// event.
    fn check_positions(&mut self) {
        let due: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, local)| local.order.as_ref().is_some_and(|o| !o.filling))
            .map(|(name, _)| name.clone())
            .collect();
        for channel in due {
            self.read_after_delivered(&channel, true);
        }
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// What this node holds now: sessions, channels with a local member,
    /// and subscriptions (a session in a channel, or on a topic).
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            sessions: self.sessions.len(),
            channels: self.channels.len(),
            subscriptions: self
                .sessions
                .values()
                .map(|s| s.channels.len() + s.topics.len())
                .sum(),
        }
    }

    /// The channels `session` is in, with its role in each.
    pub fn memberships(&self, session: SessionId) -> Vec<(String, Role)> {
        self.sessions
            .get(&session)
            .map(|s| {
                s.channels
                    .iter()
                    .map(|(c, m)| (c.clone(), m.role.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The local members of `channel`.
    pub fn local_members(&self, channel: &str) -> Vec<SessionId> {
        self.channels
            .get(channel)
            .map(|c| c.members.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether this node is subscribed to `key` at the broker (a channel,
    /// or `$topic:<name>`).
    pub fn is_subscribed(&self, key: &str) -> bool {
        self.subscription_state(key) == SubState::Subscribed
    }

    /// Operations and custom commands in flight.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Checks the manager's own bookkeeping agrees with itself; a
    /// description of the first disagreement. For tests and fuzzing.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, session) in &self.sessions {
            if session.channels.len() + session.joining.len() > self.config.max_channels_per_session
            {
                return Err(format!("{id:?} is over its channel limit"));
            }
            if session.topics.len() > self.config.max_topics_per_session {
                return Err(format!("{id:?} is over its topic limit"));
            }
            for channel in session.channels.keys() {
                if !self
                    .channels
                    .get(channel)
                    .is_some_and(|c| c.members.contains(id))
                {
                    return Err(format!("{id:?} is in {channel:?} but not its member list"));
                }
            }
            for topic in session.topics.keys() {
                if !self.topics.get(topic).is_some_and(|t| t.contains(id)) {
                    return Err(format!("{id:?} has topic {topic:?} the node does not"));
                }
            }
        }
        for (name, channel) in &self.channels {
            if let Some(order) = &channel.order {
                let weight: usize = order.ahead.values().map(Publication::weight).sum();
                if weight != order.ahead_bytes || weight > MAX_AHEAD_BYTES {
                    return Err(format!(
                        "{name:?} keeps {weight} bytes behind a gap (counted {}, at most {MAX_AHEAD_BYTES})",
                        order.ahead_bytes
                    ));
                }
                if order.ahead.len() > self.config.max_recovery_buffer {
                    return Err(format!("{name:?} keeps too many publications behind a gap"));
                }
            }
            for member in &channel.members {
                if !self
                    .sessions
                    .get(member)
                    .is_some_and(|s| s.channels.contains_key(name))
                {
                    return Err(format!("{member:?} listed in {name:?} without membership"));
                }
            }
            if let Some(ready) = &channel.ready
                && *ready != Ready::of(name, &channel.members, &self.sessions)
            {
                return Err(format!("{name:?}'s delivery list is out of date"));
            }
            if channel.members.is_empty() && self.subscription_state(name) == SubState::Unsubscribed
            {
                return Err(format!(
                    "{name:?} is kept with no members and no subscription"
                ));
            }
        }
        for (topic, subscribers) in &self.topics {
            if subscribers.is_empty() {
                return Err(format!("topic {topic:?} kept with no subscribers"));
            }
        }
        for (key, sub) in &self.subscriptions {
            let in_flight = matches!(sub.state, SubState::Subscribing | SubState::Unsubscribing);
            if !in_flight && (sub.state == SubState::Subscribed) != self.wants(key) {
                return Err(format!(
                    "{key:?} is {:?} but wanted is {}",
                    sub.state,
                    self.wants(key)
                ));
            }
            if !sub.waiters.is_empty() && sub.state != SubState::Subscribing {
                return Err(format!("{key:?} has waiters while {:?}", sub.state));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod tests;
