//! The sans-IO channels state machine of one node.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ws_core::envelope::{Envelope, EnvelopeError};
use ws_core::policy::TokenBucket;
use ws_core::{CloseCode, EncodedMessage};

use crate::config::{ChannelsConfig, TopicAccess, TopicRequest, close_codes};
use crate::operation::{OpResult, Operation};
use crate::protocol::{
    self, Command, CustomReply, Filter, HistoryReply, JoinReply, PresenceReply, PublicationOut,
    PublishReply, ReplyTo, Request,
};
use crate::types::{
    ChannelError, ChannelOptions, ChannelRole, ClientInfo, ControlMessage, ErrorCode, HistoryPage,
    LeaveReason, Member, NodeId, Payload, Position, Publication, PublicationKind, Removal,
    SessionId, TOPIC_PREFIX,
};

mod commands;
mod control;
mod delivery;
mod expiry;
mod order;
mod pending;
mod subscriptions;

use order::{MAX_AHEAD_BYTES, Order, Ready};
use pending::{Pending, PendingOps};
use subscriptions::{SubState, Subscriptions, Waiter};

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
    pub role: ChannelRole,
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
    /// Check a token a session sent with `refresh` (as its handshake's
    /// would be), then hand whom it names ([`OpResult::Authenticated`]) to
    /// [`ChannelManager::handle_result`].
    Authenticate {
        /// Its id.
        op: OpId,
        /// The session that sent it.
        session: SessionId,
        /// The token.
        token: protocol::Token,
    },
    /// Close a session's connection.
    Disconnect {
        /// Whom.
        session: SessionId,
        /// The close code.
        code: CloseCode,
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
    role: ChannelRole,
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
    /// When its token ends, if it does ([`ChannelManager::handle_expiry`]).
    expiry: Option<expiry::Expiry>,
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

/// The channels state machine of one node: sessions' commands, broker
/// deliveries, control messages and time in; [`Action`]s out. It does no
/// IO, reads no clock and spawns nothing, so it runs the same under any
/// runtime and in tests.
///
/// # Driving it
///
/// A driver owns the manager of its node (the `Channels` service is one,
/// on ws-async; the crate's simulator another) and does five things:
///
/// 1. **Feed input as it happens.** [`handle_open`](Self::handle_open)
///    when a session's connection opens and
///    [`handle_closed`](Self::handle_closed) when it has ended;
///    [`handle_command`](Self::handle_command) for each message a session
///    sends ([`handle_malformed`](Self::handle_malformed) for one that is
///    not an envelope), after waiting until
///    [`command_ready_at`](Self::command_ready_at) says the session's rate
///    allows it (the wait is what paces a fast client; commands that
///    arrive anyway are refused with `limit`);
///    [`handle_publication`](Self::handle_publication) for each delivery
///    the broker makes to this node, [`handle_control`](Self::handle_control)
///    for each control message, and [`handle_interrupted`](Self::handle_interrupted)
///    when the broker connection came back after a loss.
/// 2. **Drain after every `handle_*` call.** Call
///    [`poll_action`](Self::poll_action) until it returns `None`, and
///    carry each action out. `Send` and `Deliver` are queued on the
///    sessions' connections without waiting; a session whose queue refuses
///    one is reported with [`handle_undelivered`](Self::handle_undelivered),
///    which may be called while draining. `Disconnect` closes a
///    connection (`handle_closed` follows when it has). `Backend` and
///    `Custom` run outside the manager, since they take a round trip: do
///    not hold the manager while they run.
/// 3. **Hand results back.** Each `Backend` or `Custom` action's outcome
///    goes to [`handle_result`](Self::handle_result) with its [`OpId`],
///    in any order and interleaved with any other input; then drain
///    again. A result for an `OpId` the manager does not know (answered
///    already) is ignored, as are commands and reports for sessions it
///    does not know or is closing.
/// 4. **Keep time.** Every `now` given is from a monotonic clock and never
///    earlier than one given before. When [`poll_timeout`](Self::poll_timeout)
///    passes, call [`handle_timeout`](Self::handle_timeout) (presence
///    refresh and position checks); ask `poll_timeout` again after each
///    input, since sessions arriving start the timer.
/// 5. **One manager per node, and a node id of its own.** The id names
///    this node's presence entries, subscriptions and heartbeats in the
///    cluster, so no two live nodes may share one (`Channels` draws it at
///    random unless given one, [`NodeId::random`]).
#[derive(Debug)]
pub struct ChannelManager {
    node: NodeId,
    config: Arc<ChannelsConfig>,
    sessions: HashMap<SessionId, Session>,
    channels: HashMap<String, LocalChannel>,
    subscriptions: Subscriptions,
    pending: PendingOps,
    actions: VecDeque<Action>,
    next_refresh: Option<Instant>,
    /// Users whose session here left an encrypted channel, by when
    /// their removal from its group is due (`group_member_linger`), and
    /// the same by channel and user (one entry each).
    departures: BTreeSet<(Instant, String, String)>,
    departed: HashMap<(String, String), Instant>,
    /// Sessions whose tokens end, by when they are next due: told to
    /// refresh, then closed (one entry each).
    expiries: BTreeSet<(Instant, SessionId)>,
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
            subscriptions: Subscriptions::default(),
            pending: PendingOps::default(),
            actions: VecDeque::new(),
            next_refresh: None,
            departures: BTreeSet::new(),
            departed: HashMap::new(),
            expiries: BTreeSet::new(),
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
    /// presence refresh while there are sessions, an absent user's
    /// removal from an encrypted channel's group, or a session's token
    /// ending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let departure = self.departures.first().map(|(at, ..)| *at);
        let expiry = self.expiries.first().map(|(at, _)| *at);
        [self.next_refresh, departure, expiry]
            .into_iter()
            .flatten()
            .min()
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
                expiry: None,
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
    pub fn handle_closed(&mut self, session: SessionId, now: Instant) {
        let Some(state) = self.sessions.remove(&session) else {
            return;
        };
        if let Some(expiry) = &state.expiry {
            self.expiries.remove(&(expiry.due(), session));
        }
        for (channel, membership) in state.channels {
            if self.is_encrypted(&channel) {
                self.note_departure(state.user.as_deref(), &channel, now);
            }
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
        // Without an id to answer, a response is an `error` one: what
        // every envelope reader (the clients') takes.
        let reply = ReplyTo {
            action: Some("error".into()),
            ..ReplyTo::default()
        };
        self.refuse(session, &reply, refusal, now);
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
    pub fn memberships(&self, session: SessionId) -> Vec<(String, ChannelRole)> {
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
        let due: BTreeSet<(Instant, SessionId)> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| Some((s.expiry.as_ref()?.due(), *id)))
            .collect();
        if due != self.expiries {
            return Err("the token expiries differ from the sessions' ends".into());
        }
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
                if !self
                    .subscriptions
                    .subscribers(topic)
                    .is_some_and(|t| t.contains(id))
                {
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
        for (topic, subscribers) in self.subscriptions.topics() {
            if subscribers.is_empty() {
                return Err(format!("topic {topic:?} kept with no subscribers"));
            }
        }
        for (key, sub) in self.subscriptions.iter() {
            let in_flight = matches!(sub.state, SubState::Subscribing | SubState::Unsubscribing);
            if !in_flight && (sub.state == SubState::Subscribed) != self.wants(key) {
                return Err(format!(
                    "{key:?} is {:?} but wanted is {}",
                    sub.state,
                    self.wants(key)
                ));
            }
            // Waiters wait for a subscribe in flight, or for the one that
            // follows the unsubscribe in flight.
            let awaited = matches!(sub.state, SubState::Subscribing | SubState::Unsubscribing);
            if !sub.waiters.is_empty() && !awaited {
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
