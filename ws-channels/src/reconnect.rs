//! The client half of staying connected, sans-IO: when to connect again
//! (exponential backoff with full jitter, bounded), which channels to join
//! again and from where, and what to hand the application: every
//! publication once and in order, and [`ClientEvent::Joined`] with
//! `recovered: Some(false)` when the server no longer holds what was
//! missed, never a silent gap.
//!
//! A [`Reconnector`] does no I/O and reads no clock. Its driver dials on
//! [`Output::Connect`] and reports [`connected`](Reconnector::connected)
//! or [`connect_failed`](Reconnector::connect_failed), sends the
//! [`Output::Join`]s and [`Output::Leave`]s it is given on the current
//! connection, feeds back each join's reply
//! ([`join_reply`](Reconnector::join_reply)) and every event
//! ([`handle_event`](Reconnector::handle_event)), reports the end of a
//! connection ([`disconnected`](Reconnector::disconnected)) and calls
//! [`handle_timeout`](Reconnector::handle_timeout) at
//! [`poll_timeout`](Reconnector::poll_timeout).
//!
//! How it keeps publications whole, per channel:
//!
//! - it remembers the position (offset and epoch) of the last publication
//!   it handed out; a join after a reconnect asks for what came after it
//!   (`since`), and what the reply carries is handed out first;
//! - publications that arrive while a join is answered wait behind it
//!   (at most [`ReconnectConfig::max_buffered`], then they are dropped and
//!   recovered from history by one more join);
//! - a publication already handed out (by offset, in the same epoch) is
//!   dropped; one that skips offsets, or comes from another epoch, or a
//!   `lost` event, makes it join again from its last position rather than
//!   hand out a gap;
//! - a channel the session was removed from (kicked, banned, closed) or
//!   refused is not joined again.
//!
//! Connections that close with a code that says not to come back
//! ([`NO_RECONNECT`]: authentication, a deliberate disconnect, a client
//! the server found faulty) end it: [`ConnectionState::Closed`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ws_core::CloseCode;

use crate::config::close_codes;
use crate::protocol::{Event, JoinReply, PublicationEvent};
use crate::types::{ChannelError, LeaveReason, Position, PublicationKind};

/// Close codes after which a client does not connect again: 1008 (policy:
/// too many refused commands, a client to fix), 4001 (authentication is
/// needed), 4009 (disconnected on purpose).
pub const NO_RECONNECT: [CloseCode; 3] = [
    CloseCode::POLICY_VIOLATION,
    close_codes::UNAUTHORIZED,
    close_codes::DISCONNECTED,
];

/// How a [`Reconnector`] waits and what it keeps (set fields with
/// `..ReconnectConfig::default()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// The wait before the first attempt after a disconnect, at most
    /// (default 250 ms); it doubles with each failed attempt.
    pub min_delay: Duration,
    /// The longest wait between attempts (default 20 s). A connection
    /// that lasted at least this long starts the doubling again from
    /// `min_delay`; one that dropped sooner counts as a failed attempt, so
    /// a server that accepts and drops at once is not hammered.
    pub max_delay: Duration,
    /// Full jitter (default true): each wait is drawn uniformly between
    /// zero and its bound, so clients cut off together do not come back
    /// together. Without it, each wait is its bound.
    pub jitter: bool,
    /// Failed attempts in a row before giving up
    /// ([`ConnectionState::Closed`]); `None` (the default) never gives up.
    pub max_attempts: Option<u32>,
    /// Publications kept per channel while its join is answered (default
    /// 10,000); past it they are dropped and recovered by joining again.
    pub max_buffered: usize,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(20),
            jitter: true,
            max_attempts: None,
            max_buffered: 10_000,
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Dialling.
    Connecting,
    /// Open: channels are joined (or being joined) on it.
    Connected,
    /// Waiting to dial again.
    Disconnected,
    /// Given up, closed by the application, or closed by the server with
    /// a code in [`NO_RECONNECT`]: nothing more happens.
    Closed,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Dial; then [`Reconnector::connected`] or
    /// [`Reconnector::connect_failed`].
    Connect,
    /// Send `join` for `channel` (with `since`) on connection
    /// `connection`, and give its reply to [`Reconnector::join_reply`]
    /// with that number.
    Join {
        /// The channel.
        channel: String,
        /// Recover what came after this position.
        since: Option<Position>,
        /// The connection it is for.
        connection: u64,
    },
    /// Send `leave` for `channel` on the current connection.
    Leave {
        /// The channel.
        channel: String,
    },
    /// Hand this to the application.
    Event(ClientEvent),
}

/// What the application hears.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The connection changed state.
    State {
        /// The new state.
        state: ConnectionState,
        /// Why, for `Disconnected` and `Closed`: the close code or error.
        reason: Option<String>,
        /// For `Disconnected`: how long until the next attempt.
        retry_in: Option<Duration>,
    },
    /// `channel` is joined on the current connection.
    Joined {
        /// The channel.
        channel: String,
        /// `None` for a first join or a channel without history;
        /// `Some(true)` when everything since the last publication handed
        /// out follows; `Some(false)` when some of it is gone (the history
        /// no longer reaches back, or was lost): recover another way.
        recovered: Option<bool>,
    },
    /// A publication, a join or a leave in a channel: each publication
    /// once, in order.
    Publication {
        /// The channel.
        channel: String,
        /// Message, join or leave.
        kind: PublicationKind,
        /// What it says.
        publication: PublicationEvent,
    },
    /// The server refused to join `channel`; it is not joined again.
    JoinFailed {
        /// The channel.
        channel: String,
        /// Why.
        error: ChannelError,
    },
    /// The session was removed from `channel` (kicked, banned, or the
    /// channel closed); it is not joined again.
    Removed {
        /// The channel.
        channel: String,
        /// Why.
        reason: LeaveReason,
    },
    /// Any other event (roles, topics, notices), as it came.
    Other(Event),
}

#[derive(Debug, Default)]
struct Wanted {
    /// The last publication handed out.
    last: Option<Position>,
    /// The connection a join is in flight on.
    joining: Option<u64>,
    /// What arrived while the join was answered.
    buffer: Vec<(PublicationKind, PublicationEvent)>,
    /// The buffer overflowed: join again once this join is answered.
    overflowed: bool,
    /// Joined at least once: later joins recover with `since`.
    joined_before: bool,
}

/// The state of a client that stays connected; see the
/// [module](self).
#[derive(Debug)]
pub struct Reconnector {
    config: ReconnectConfig,
    state: ConnectionState,
    started: bool,
    /// Numbers each connection, so a reply from an earlier one is not
    /// taken for this one's.
    connection: u64,
    connected_at: Option<Instant>,
    failed_attempts: u32,
    next_attempt: Option<Instant>,
    channels: BTreeMap<String, Wanted>,
    outputs: std::collections::VecDeque<Output>,
    rng: fastrand::Rng,
}

impl Reconnector {
    /// A client that is not connected yet; [`start`](Self::start) dials.
    /// Waits are jittered from the system's randomness.
    pub fn new(config: ReconnectConfig) -> Self {
        Self::with_rng(config, fastrand::Rng::new())
    }

    /// As [`new`](Self::new), with jitter drawn from `seed` (for tests
    /// and simulations that replay).
    pub fn with_seed(config: ReconnectConfig, seed: u64) -> Self {
        Self::with_rng(config, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(config: ReconnectConfig, rng: fastrand::Rng) -> Self {
        Self {
            config,
            state: ConnectionState::Disconnected,
            started: false,
            connection: 0,
            connected_at: None,
            failed_attempts: 0,
            next_attempt: None,
            channels: BTreeMap::new(),
            outputs: Default::default(),
            rng,
        }
    }

    /// Where the connection is.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// The current connection's number (0 before the first).
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// The channels it keeps joined, with the last position handed out
    /// in each.
    pub fn channels(&self) -> impl Iterator<Item = (&str, Option<&Position>)> {
        self.channels
            .iter()
            .map(|(name, wanted)| (name.as_str(), wanted.last.as_ref()))
    }

    /// Dials for the first time; later attempts come by themselves (and
    /// after [`close`](Self::close), none).
    pub fn start(&mut self) {
        if !self.started && self.state == ConnectionState::Disconnected {
            self.started = true;
            self.dial();
        }
    }

    /// Joins `channel` now (when connected) and after every reconnect,
    /// recovering from the last publication handed out. `since` is where
    /// to start the first time (a position the application kept), or
    /// `None` for from now.
    pub fn join(&mut self, channel: &str, since: Option<Position>) {
        if self.state == ConnectionState::Closed || self.channels.contains_key(channel) {
            return;
        }
        let joined_before = since.is_some();
        self.channels.insert(
            channel.to_owned(),
            Wanted {
                last: since,
                joined_before,
                ..Wanted::default()
            },
        );
        if self.state == ConnectionState::Connected {
            self.send_join(channel);
        }
    }

    /// Stops keeping `channel` joined (and leaves it, when connected).
    pub fn leave(&mut self, channel: &str) {
        if self.channels.remove(channel).is_some() && self.state == ConnectionState::Connected {
            self.outputs.push_back(Output::Leave {
                channel: channel.to_owned(),
            });
        }
    }

    /// The application is done: no more attempts.
    pub fn close(&mut self) {
        self.set_state(
            ConnectionState::Closed,
            Some("closed by the application".into()),
            None,
        );
        self.next_attempt = None;
    }

    /// The connection asked for is open: every channel kept is joined on
    /// it.
    pub fn connected(&mut self, now: Instant) {
        if self.state != ConnectionState::Connecting {
            return;
        }
        self.connection += 1;
        self.connected_at = Some(now);
        self.set_state(ConnectionState::Connected, None, None);
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for channel in names {
            self.send_join(&channel);
        }
    }

    /// The connection asked for could not be made (refused, timed out, the
    /// handshake failed): another attempt is scheduled, or it gives up.
    pub fn connect_failed(&mut self, now: Instant, reason: &str) {
        if self.state != ConnectionState::Connecting {
            return;
        }
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        self.schedule(now, reason.to_owned());
    }

    /// The connection ended, with the server's close code if it sent one.
    pub fn disconnected(&mut self, now: Instant, code: Option<CloseCode>, reason: &str) {
        if !matches!(
            self.state,
            ConnectionState::Connected | ConnectionState::Connecting
        ) {
            return;
        }
        let why = match code {
            Some(code) => format!("closed with {}: {reason}", code.as_u16()),
            None => reason.to_owned(),
        };
        // Joins in flight on it are answered by nobody now; what waited
        // behind them comes again from history.
        for wanted in self.channels.values_mut() {
            wanted.joining = None;
            wanted.buffer.clear();
            wanted.overflowed = false;
        }
        if code.is_some_and(|code| NO_RECONNECT.contains(&code)) {
            self.next_attempt = None;
            self.set_state(ConnectionState::Closed, Some(why), None);
            return;
        }
        let lasted = self
            .connected_at
            .filter(|_| self.state == ConnectionState::Connected)
            .map(|at| now.saturating_duration_since(at));
        match lasted {
            Some(lasted) if lasted >= self.config.max_delay => self.failed_attempts = 0,
            _ => self.failed_attempts = self.failed_attempts.saturating_add(1),
        }
        self.schedule(now, why);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due: the next
    /// attempt, while disconnected.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Time passed: dials when the next attempt is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == ConnectionState::Disconnected
            && self.next_attempt.is_some_and(|at| at <= now)
        {
            self.next_attempt = None;
            self.dial();
        }
    }

    /// The reply to the join of `channel` sent on `connection`.
    pub fn join_reply(
        &mut self,
        connection: u64,
        channel: &str,
        reply: Result<JoinReply, ChannelError>,
    ) {
        let Some(wanted) = self.channels.get_mut(channel) else {
            return;
        };
        if connection != self.connection || wanted.joining != Some(connection) {
            return;
        }
        wanted.joining = None;
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                self.channels.remove(channel);
                self.event(ClientEvent::JoinFailed {
                    channel: channel.to_owned(),
                    error,
                });
                return;
            }
        };
        let asked_since = wanted.joined_before && wanted.last.is_some();
        wanted.joined_before = true;
        let recovered = reply.recovered.filter(|_| asked_since);
        let top = reply.position();
        if recovered == Some(false) || !asked_since {
            // From the history's top on: what came before is gone (said
            // by `recovered`) or was never asked for.
            wanted.last = top;
        }
        let buffered = std::mem::take(&mut wanted.buffer);
        let overflowed = std::mem::take(&mut wanted.overflowed);
        self.event(ClientEvent::Joined {
            channel: channel.to_owned(),
            recovered,
        });
        let recovered_ones = reply.publications.unwrap_or_default();
        for publication in recovered_ones {
            self.accept(channel, PublicationKind::Message, publication);
        }
        for (kind, publication) in buffered {
            self.accept(channel, kind, publication);
        }
        if overflowed {
            self.rejoin(channel);
        }
    }

    /// An event from the current connection.
    pub fn handle_event(&mut self, event: Event) {
        match event {
            Event::Publication {
                channel,
                kind,
                publication,
            } => self.accept(&channel, kind, publication),
            Event::Lost { channel, .. } => {
                if self.channels.contains_key(&channel) {
                    self.rejoin(&channel);
                }
            }
            Event::Removed { channel, reason } => {
                if self.channels.remove(&channel).is_some() {
                    self.event(ClientEvent::Removed { channel, reason });
                }
            }
            other => self.event(ClientEvent::Other(other)),
        }
    }

    /// The next thing to do, oldest first.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// A publication for `channel`, live or from a join's reply: handed
    /// out if it is the next one, dropped if it was handed out already,
    /// kept behind a join in flight, and the cause of a join from the
    /// last position if it skips some.
    fn accept(&mut self, channel: &str, kind: PublicationKind, publication: PublicationEvent) {
        let max_buffered = self.config.max_buffered;
        let Some(wanted) = self.channels.get_mut(channel) else {
            return;
        };
        if wanted.joining.is_some() {
            if wanted.buffer.len() < max_buffered {
                wanted.buffer.push((kind, publication));
            } else {
                wanted.overflowed = true;
            }
            return;
        }
        if let Some(position) = publication.position() {
            match &wanted.last {
                Some(last) if last.epoch == position.epoch && position.offset <= last.offset => {
                    // Handed out already.
                    return;
                }
                Some(last) if last.epoch != position.epoch || position.offset > last.offset + 1 => {
                    // A gap: what is missing comes from history first.
                    let since = Some(last.clone());
                    self.rejoin_from(channel, since);
                    if let Some(wanted) = self.channels.get_mut(channel) {
                        wanted.buffer.push((kind, publication));
                    }
                    return;
                }
                _ => wanted.last = Some(position),
            }
        }
        self.event(ClientEvent::Publication {
            channel: channel.to_owned(),
            kind,
            publication,
        });
    }

    /// Joins `channel` again from the last position handed out, if no join
    /// is in flight for it.
    fn rejoin(&mut self, channel: &str) {
        let since = self.channels.get(channel).and_then(|w| w.last.clone());
        self.rejoin_from(channel, since);
    }

    fn rejoin_from(&mut self, channel: &str, since: Option<Position>) {
        if self.state != ConnectionState::Connected {
            // The next connection joins it from there anyway.
            return;
        }
        let connection = self.connection;
        let Some(wanted) = self.channels.get_mut(channel) else {
            return;
        };
        if wanted.joining.is_some() {
            return;
        }
        wanted.joining = Some(connection);
        wanted.joined_before = true;
        self.outputs.push_back(Output::Join {
            channel: channel.to_owned(),
            since,
            connection,
        });
    }

    fn send_join(&mut self, channel: &str) {
        let connection = self.connection;
        let Some(wanted) = self.channels.get_mut(channel) else {
            return;
        };
        wanted.joining = Some(connection);
        let since = wanted.last.clone().filter(|_| wanted.joined_before);
        self.outputs.push_back(Output::Join {
            channel: channel.to_owned(),
            since,
            connection,
        });
    }

    fn dial(&mut self) {
        self.set_state(ConnectionState::Connecting, None, None);
        self.outputs.push_back(Output::Connect);
    }

    fn schedule(&mut self, now: Instant, reason: String) {
        if self
            .config
            .max_attempts
            .is_some_and(|max| self.failed_attempts >= max)
        {
            self.next_attempt = None;
            let why = format!("{reason}; gave up after {} attempts", self.failed_attempts);
            self.set_state(ConnectionState::Closed, Some(why), None);
            return;
        }
        let wait = self.delay();
        self.next_attempt = Some(now + wait);
        self.set_state(ConnectionState::Disconnected, Some(reason), Some(wait));
    }

    /// The wait before the next attempt: `min_delay` doubled for each
    /// failed attempt before this one, at most `max_delay`, drawn from
    /// zero up to that with jitter.
    fn delay(&mut self) -> Duration {
        let doublings = self.failed_attempts.saturating_sub(1).min(32);
        let bound = self
            .config
            .min_delay
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.config.max_delay);
        if !self.config.jitter {
            return bound;
        }
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.u64(0..=nanos))
    }

    fn set_state(
        &mut self,
        state: ConnectionState,
        reason: Option<String>,
        retry_in: Option<Duration>,
    ) {
        if self.state == state || self.state == ConnectionState::Closed {
            return;
        }
        self.state = state;
        self.event(ClientEvent::State {
            state,
            reason,
            retry_in,
        });
    }

    fn event(&mut self, event: ClientEvent) {
        self.outputs.push_back(Output::Event(event));
    }
}

#[cfg(test)]
mod tests;
