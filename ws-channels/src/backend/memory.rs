//! The in-process backend: broker, presence store and controller in one
//! mutex. One node needs nothing else; several nodes attached to one
//! `MemoryBackend` behave as a cluster in one process (the tests use this).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::admission::{Admission, Seat, admit};
use super::key_packages::{KeyPackageStore, unix_now};
use super::{
    BoxFuture, Broker, ChannelDirectory, Controller, CreateLimits, IDEMPOTENCY_WINDOW, Presence,
    Published, Reach, Sink, Standing, UserKeyPackages,
};
use crate::types::{
    ChannelError, ChannelOptions, ChannelRole, ChannelSummary, ControlMessage, ErrorCode,
    HistoryPage, HistorySpec, JoinGrant, Member, NodeId, Position, Publication, Roster, SessionId,
    Target,
};

/// Bans kept per channel at most; more fail with
/// [`ErrorCode::Limit`].
pub const MAX_BANS_PER_CHANNEL: usize = 10_000;
/// Users with a role other than participant, per channel at most.
pub const MAX_ROLES_PER_CHANNEL: usize = 10_000;

/// A clock, so tests can move time.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Broker, presence store and controller in memory. Every operation
/// completes at once; deliveries are made to the sinks inside `publish`
/// and `broadcast`, under one lock, so every node sees one order.
///
/// History is kept within each channel's byte budget
/// ([`ChannelsConfig::max_history_bytes`](crate::ChannelsConfig::max_history_bytes))
/// and within one budget for all channels together
/// ([`max_history_bytes`](Self::max_history_bytes), 64 MiB by default):
/// past it the oldest publication of all goes first, whichever channel
/// it is in, so this process's memory is bounded by what history holds.
pub struct MemoryBackend {
    state: Mutex<State>,
    clock: Clock,
}

/// Idempotency keys a channel remembers at most (the newest), so that a
/// member publishing with a new key each time cannot grow the node's
/// memory beyond the history's budget by more than this.
pub const MAX_KEYS_PER_CHANNEL: usize = 10_000;

/// [`MemoryBackend::max_group_info_bytes`]'s default.
pub const DEFAULT_MAX_GROUP_INFO_BYTES: usize = 64 << 20;

/// [`MemoryBackend::max_history_bytes`]'s default.
pub const DEFAULT_MAX_HISTORY_BYTES: usize = 64 << 20;

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryBackend")
            .field("nodes", &state.sinks.len())
            .field("channels", &state.channels.len())
            .finish()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
struct State {
    sinks: BTreeMap<NodeId, Arc<dyn Sink>>,
    subscriptions: HashMap<String, Vec<NodeId>>,
    histories: HashMap<String, History>,
    /// Bytes (publications' weights) in every history.
    history_bytes: usize,
    /// The most `history_bytes` may reach.
    max_history_bytes: usize,
    /// Each history's oldest publication by its number: the oldest of
    /// all is the first.
    oldest: BTreeMap<u64, String>,
    /// The number of the next publication kept.
    next_kept: u64,
    channels: BTreeMap<String, Channel>,
    /// Per user, the channels it created that exist: kept in step with
    /// `channels` by `add_channel` and `remove_channel`.
    created: HashMap<String, usize>,
    /// Per user, its devices' key packages.
    key_packages: HashMap<String, UserKeyPackages>,
    /// Bytes of every channel's kept GroupInfo, and the most they may
    /// reach.
    group_info_bytes: usize,
    max_group_info_bytes: usize,
    /// Channels with a kept GroupInfo by when it was kept, oldest first.
    group_infos: BTreeMap<u64, String>,
    /// The number of the next GroupInfo kept.
    next_group_info: u64,
    epochs: u64,
    epoch_base: u64,
}

struct History {
    epoch: String,
    top: u64,
    entries: VecDeque<Kept>,
    /// The entries' weights.
    bytes: usize,
    /// Idempotency keys published with in the last
    /// [`IDEMPOTENCY_WINDOW`] (the newest [`MAX_KEYS_PER_CHANNEL`]), and
    /// the offsets they got.
    once: HashMap<String, u64>,
    /// The same keys by when they are forgotten, soonest first.
    once_until: VecDeque<(Instant, String)>,
    /// The epoch of the channel's end-to-end group
    /// ([`Broker::publish_commit`]).
    group_epoch: u64,
    /// The newest GroupInfo a commit came with, its epoch, and its number
    /// among every channel's kept GroupInfo.
    group_info: Option<(u64, String, u64)>,
}

/// A publication in history.
struct Kept {
    /// When it expires.
    expires: Instant,
    /// Its number among every channel's publications kept, for the
    /// oldest-first eviction across channels.
    number: u64,
    /// Its weight ([`Publication::weight`]).
    bytes: usize,
    publication: Publication,
}

impl History {
    fn position(&self) -> Position {
        Position {
            offset: self.top,
            epoch: self.epoch.clone(),
        }
    }
}

struct Entry {
    member: Member,
    expires: Instant,
    seq: u64,
}

struct Channel {
    options: ChannelOptions,
    members: HashMap<SessionId, Entry>,
    next_seq: u64,
    roles: HashMap<String, ChannelRole>,
    bans: HashMap<String, Option<Instant>>,
    empty_since: Option<Instant>,
    /// The user who created it.
    creator: Option<String>,
}

impl Channel {
    /// Drops expired entries and bans.
    fn expire(&mut self, now: Instant) {
        let before = self.members.len();
        self.members.retain(|_, entry| entry.expires > now);
        self.bans.retain(|_, until| until.is_none_or(|t| t > now));
        if before > 0 && self.members.is_empty() {
            self.empty_since = Some(now);
        }
    }

    fn is_gone(&self, now: Instant) -> bool {
        self.empty_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.options.linger)
    }

    fn summary(&self, name: &str) -> ChannelSummary {
        ChannelSummary {
            name: name.to_owned(),
            options: self.options,
            members: self.members.len(),
        }
    }

    fn remove(&mut self, now: Instant, matches: impl Fn(&Member) -> bool) -> usize {
        let before = self.members.len();
        self.members.retain(|_, entry| !matches(&entry.member));
        let removed = before - self.members.len();
        if removed > 0 && self.members.is_empty() {
            self.empty_since = Some(now);
        }
        removed
    }
}

fn not_found(channel: &str) -> ChannelError {
    ChannelError::new(ErrorCode::NotFound, format!("no channel named {channel:?}"))
}

impl MemoryBackend {
    /// An empty backend on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(Instant::now))
    }

    /// An empty backend on `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            state: Mutex::new(State {
                epoch_base: NodeId::random().0,
                max_history_bytes: DEFAULT_MAX_HISTORY_BYTES,
                max_group_info_bytes: DEFAULT_MAX_GROUP_INFO_BYTES,
                ..State::default()
            }),
            clock,
        }
    }

    /// Caps the history of all channels together at `bytes` (publications'
    /// weights, about their JSON size): past it, the oldest publication of
    /// all goes first. Default [`DEFAULT_MAX_HISTORY_BYTES`] (64 MiB).
    pub fn max_history_bytes(self, bytes: usize) -> Self {
        self.lock().max_history_bytes = bytes;
        self
    }

    /// Caps the GroupInfo kept for every encrypted channel together at
    /// `bytes` ([`Broker::group_info`]; up to about 180 KB for a group of
    /// 1,000): past it, the oldest kept goes first, and its channel gets no
    /// removal proposals from the server until its next commit. Default
    /// [`DEFAULT_MAX_GROUP_INFO_BYTES`] (64 MiB).
    pub fn max_group_info_bytes(self, bytes: usize) -> Self {
        self.lock().max_group_info_bytes = bytes;
        self
    }

    /// Bytes (publications' weights) the history of every channel holds
    /// now.
    pub fn history_bytes(&self) -> usize {
        self.lock().history_bytes
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State is only changed in whole steps, so it is consistent even if
        // a sink panicked while the lock was held.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }
}

impl State {
    fn new_epoch(&mut self) -> String {
        self.epochs += 1;
        format!("{:08x}", (self.epoch_base ^ self.epochs) & 0xffff_ffff)
    }

    /// Keeps `publication` in history (with `history`) and hands it to
    /// every subscribed node; its position.
    fn publish(
        &mut self,
        channel: &str,
        mut publication: Publication,
        history: Option<HistorySpec>,
        now: Instant,
    ) -> Option<Position> {
        let position = history.map(|spec| {
            let history = self.history(channel);
            history.top += 1;
            let position = history.position();
            publication.position = Some(position.clone());
            self.keep(channel, publication.clone(), spec, now);
            position
        });
        if let Some(nodes) = self.subscriptions.get(channel) {
            for node in nodes {
                if let Some(sink) = self.sinks.get(node) {
                    sink.publication(channel, &publication);
                }
            }
        }
        position
    }

    /// `channel`'s history, begun (empty, in a new epoch) if it has none.
    fn history(&mut self, channel: &str) -> &mut History {
        if !self.histories.contains_key(channel) {
            let epoch = self.new_epoch();
            self.histories.insert(
                channel.to_owned(),
                History {
                    epoch,
                    top: 0,
                    entries: VecDeque::new(),
                    bytes: 0,
                    once: HashMap::new(),
                    once_until: VecDeque::new(),
                    group_epoch: 0,
                    group_info: None,
                },
            );
        }
        self.histories.get_mut(channel).expect("inserted above")
    }

    /// Keeps `publication` in `channel`'s history (begun), then trims it
    /// to `spec` and every history to the node's budget.
    fn keep(&mut self, channel: &str, publication: Publication, spec: HistorySpec, now: Instant) {
        let number = self.next_kept;
        self.next_kept += 1;
        let bytes = publication.weight();
        let history = self.history(channel);
        let was_empty = history.entries.is_empty();
        history.bytes += bytes;
        history.entries.push_back(Kept {
            expires: now + spec.ttl,
            number,
            bytes,
            publication,
        });
        self.history_bytes += bytes;
        if was_empty {
            self.oldest.insert(number, channel.to_owned());
        }
        self.trim(channel, now, Some(spec));
        while self.history_bytes > self.max_history_bytes {
            let Some((_, oldest)) = self.oldest.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            self.pop_oldest(&oldest);
        }
    }

    /// Drops `channel`'s expired publications, and with `spec` those past
    /// its size and byte budget, oldest first.
    fn trim(&mut self, channel: &str, now: Instant, spec: Option<HistorySpec>) {
        loop {
            let Some(history) = self.histories.get(channel) else {
                return;
            };
            let Some(front) = history.entries.front() else {
                return;
            };
            let over = spec.is_some_and(|spec| {
                history.entries.len() > spec.size as usize || history.bytes as u64 > spec.max_bytes
            });
            if front.expires > now && !over {
                return;
            }
            self.pop_oldest(channel);
        }
    }

    /// Drops the oldest publication of `channel`'s history.
    fn pop_oldest(&mut self, channel: &str) {
        let Some(history) = self.histories.get_mut(channel) else {
            return;
        };
        let Some(kept) = history.entries.pop_front() else {
            return;
        };
        history.bytes -= kept.bytes;
        self.history_bytes -= kept.bytes;
        self.oldest.remove(&kept.number);
        if let Some(next) = history.entries.front() {
            self.oldest.insert(next.number, channel.to_owned());
        }
    }

    /// Keeps `info` as `channel`'s GroupInfo of `epoch` (its history
    /// begun), then the oldest kept go until all fit the node's budget.
    fn keep_group_info(&mut self, channel: &str, epoch: u64, info: &str) {
        self.forget_group_info(channel);
        let number = self.next_group_info;
        self.next_group_info += 1;
        self.group_info_bytes += info.len();
        self.group_infos.insert(number, channel.to_owned());
        self.history(channel).group_info = Some((epoch, info.to_owned(), number));
        while self.group_info_bytes > self.max_group_info_bytes {
            let Some((_, oldest)) = self.group_infos.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            self.forget_group_info(&oldest);
        }
    }

    /// Forgets `channel`'s kept GroupInfo, if any.
    fn forget_group_info(&mut self, channel: &str) {
        let Some((_, info, number)) = self
            .histories
            .get_mut(channel)
            .and_then(|h| h.group_info.take())
        else {
            return;
        };
        self.group_info_bytes -= info.len();
        self.group_infos.remove(&number);
    }

    /// Forgets `channel`'s history.
    fn drop_history(&mut self, channel: &str) {
        self.forget_group_info(channel);
        let Some(history) = self.histories.remove(channel) else {
            return;
        };
        self.history_bytes -= history.bytes;
        if let Some(front) = history.entries.front() {
            self.oldest.remove(&front.number);
        }
    }

    /// The channel, unless it is missing or has lingered out (then its
    /// history goes too).
    fn live_channel(&mut self, name: &str, now: Instant) -> Option<&mut Channel> {
        let gone = match self.channels.get_mut(name) {
            None => return None,
            Some(channel) => {
                channel.expire(now);
                channel.is_gone(now)
            }
        };
        if gone {
            self.remove_channel(name);
            return None;
        }
        self.channels.get_mut(name)
    }

    fn add_channel(&mut self, name: &str, channel: Channel) {
        if let Some(creator) = &channel.creator {
            *self.created.entry(creator.clone()).or_insert(0) += 1;
        }
        self.channels.insert(name.to_owned(), channel);
    }

    /// Removes a channel and its history.
    fn remove_channel(&mut self, name: &str) {
        self.drop_history(name);
        let Some(channel) = self.channels.remove(name) else {
            return;
        };
        if let Some(creator) = channel.creator
            && let Some(count) = self.created.get_mut(&creator)
        {
            *count -= 1;
            if *count == 0 {
                self.created.remove(&creator);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        let names: Vec<String> = self.channels.keys().cloned().collect();
        for name in names {
            self.live_channel(&name, now);
        }
        debug_assert_eq!(
            self.created.values().sum::<usize>(),
            self.channels
                .values()
                .filter(|c| c.creator.is_some())
                .count(),
            "the creators' counts follow the channels"
        );
        let orphans: Vec<String> = self
            .histories
            .keys()
            .filter(|name| !self.channels.contains_key(*name))
            .cloned()
            .collect();
        for name in orphans {
            self.drop_history(&name);
        }
        debug_assert_eq!(
            self.history_bytes,
            self.histories.values().map(|h| h.bytes).sum::<usize>(),
            "the node's history bytes follow the channels'"
        );
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl Broker for MemoryBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        self.lock().sinks.insert(node, sink);
    }

    fn subscribe<'a>(
        &'a self,
        node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let mut state = self.lock();
        let nodes = state.subscriptions.entry(channel.to_owned()).or_default();
        if !nodes.contains(&node) {
            nodes.push(node);
        }
        ready(Ok(()))
    }

    fn unsubscribe<'a>(
        &'a self,
        node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let mut state = self.lock();
        if let Some(nodes) = state.subscriptions.get_mut(channel) {
            nodes.retain(|n| *n != node);
            if nodes.is_empty() {
                state.subscriptions.remove(channel);
            }
        }
        ready(Ok(()))
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: Option<HistorySpec>,
    ) -> BoxFuture<'a, Result<Option<Position>, ChannelError>> {
        let now = self.now();
        ready(Ok(self.lock().publish(channel, publication, history, now)))
    }

    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        spec: HistorySpec,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Published, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let history = state.history(channel);
        while let Some((until, _)) = history.once_until.front()
            && (*until <= now || history.once_until.len() >= MAX_KEYS_PER_CHANNEL)
        {
            let (_, key) = history.once_until.pop_front().expect("looked at above");
            history.once.remove(&key);
        }
        if let Some(&offset) = history.once.get(key) {
            return ready(Ok(Published {
                position: Some(Position {
                    offset,
                    epoch: history.epoch.clone(),
                }),
                duplicate: true,
            }));
        }
        let position = state.publish(channel, publication, Some(spec), now);
        if let (Some(position), Some(history)) = (&position, state.histories.get_mut(channel)) {
            history.once.insert(key.to_owned(), position.offset);
            history
                .once_until
                .push_back((now + IDEMPOTENCY_WINDOW, key.to_owned()));
        }
        ready(Ok(Published {
            position,
            duplicate: false,
        }))
    }

    fn publish_commit<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        spec: HistorySpec,
        epoch: u64,
        group_info: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Position, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let history = state.history(channel);
        if history.group_epoch != epoch {
            return ready(Err(super::group_conflict(
                channel,
                history.group_epoch,
                epoch,
            )));
        }
        history.group_epoch += 1;
        if let Some(info) = group_info {
            state.keep_group_info(channel, epoch + 1, info);
        }
        let position = state.publish(channel, publication, Some(spec), now);
        ready(Ok(position.expect("published with history")))
    }

    fn group_info<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, String)>, ChannelError>> {
        let state = self.lock();
        ready(Ok(state
            .histories
            .get(channel)
            .and_then(|h| h.group_info.as_ref())
            .map(|(epoch, info, _)| (*epoch, info.clone()))))
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        state.history(channel);
        state.trim(channel, now, None);
        let history = state.history(channel);
        let top = history.position();
        let Some(since) = since else {
            return ready(Ok(HistoryPage {
                publications: Vec::new(),
                top: Some(top),
                complete: true,
            }));
        };
        let first_kept = history
            .entries
            .front()
            .and_then(|kept| kept.publication.position.as_ref().map(|p| p.offset))
            .unwrap_or(history.top + 1);
        let missing = history.top.saturating_sub(since.offset);
        let complete = since.epoch == history.epoch
            && since.offset <= history.top
            && since.offset + 1 >= first_kept
            && usize::try_from(missing).is_ok_and(|m| m <= limit);
        let publications = if complete {
            history
                .entries
                .iter()
                .map(|kept| &kept.publication)
                .filter(|p| p.position.as_ref().is_some_and(|p| p.offset > since.offset))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        ready(Ok(HistoryPage {
            publications,
            top: Some(top),
            complete,
        }))
    }

    fn recent<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        state.history(channel);
        state.trim(channel, now, None);
        let history = state.history(channel);
        let skip = history.entries.len().saturating_sub(limit);
        ready(Ok(HistoryPage {
            publications: history
                .entries
                .iter()
                .skip(skip)
                .map(|kept| kept.publication.clone())
                .collect(),
            top: Some(history.position()),
            complete: skip == 0,
        }))
    }

    fn remove_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.lock().drop_history(channel);
        ready(Ok(()))
    }
}

impl Presence for MemoryBackend {
    fn join<'a>(
        &'a self,
        channel: &'a str,
        mut member: Member,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(record) = state.live_channel(channel, now) else {
            return ready(Err(not_found(channel)));
        };
        let admission = admit(&Seat {
            banned: member
                .user
                .as_ref()
                .is_some_and(|user| record.bans.contains_key(user)),
            member_role: record.members.get(&member.session).map(|e| &e.member.role),
            members: record.members.len(),
            max_participants: record.options.max_participants,
            user_role: member.user.as_ref().and_then(|user| record.roles.get(user)),
        });
        let role = match admission {
            Admission::Admitted(role) => role,
            Admission::Member(role) => {
                if let Some(entry) = record.members.get_mut(&member.session) {
                    entry.expires = now + ttl;
                }
                return ready(Ok(JoinGrant {
                    options: record.options,
                    role,
                }));
            }
            refused => {
                return ready(Err(refused
                    .refusal(channel)
                    .expect("a refusal for every admission that is not a seat")));
            }
        };
        member.role = role;
        let grant = JoinGrant {
            options: record.options,
            role: member.role.clone(),
        };
        let seq = record.next_seq;
        record.next_seq += 1;
        record.empty_since = None;
        record.members.insert(
            member.session,
            Entry {
                member,
                expires: now + ttl,
                seq,
            },
        );
        ready(Ok(grant))
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        session: SessionId,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        if let Some(record) = state.live_channel(channel, now) {
            record.remove(now, |m| m.session == session);
        }
        ready(Ok(()))
    }

    fn refresh<'a>(
        &'a self,
        node: NodeId,
        entries: &'a [(String, SessionId)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        for (channel, session) in entries {
            if let Some(entry) = state
                .channels
                .get_mut(channel)
                .and_then(|c| c.members.get_mut(session))
                .filter(|e| e.member.node == node)
            {
                entry.expires = now + ttl;
            }
        }
        // Refreshes come every few seconds from every node: a good time to
        // drop what has expired everywhere.
        state.sweep(now);
        ready(Ok(()))
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Roster, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(record) = state.live_channel(channel, now) else {
            return ready(Err(not_found(channel)));
        };
        let mut entries: Vec<&Entry> = record.members.values().collect();
        entries.sort_unstable_by_key(|e| e.seq);
        ready(Ok(Roster {
            total: entries.len(),
            members: entries
                .into_iter()
                .take(limit)
                .map(|e| e.member.clone())
                .collect(),
        }))
    }

    fn kick<'a>(
        &'a self,
        channel: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<usize, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(record) = state.live_channel(channel, now) else {
            return ready(Err(not_found(channel)));
        };
        ready(Ok(record.remove(now, |m| {
            target.matches(m.session, m.user.as_deref())
        })))
    }
}

impl KeyPackageStore for MemoryBackend {
    fn change_key_packages<'a, T: Send + 'a>(
        &'a self,
        user: &'a str,
        change: impl Fn(&mut UserKeyPackages, u64) -> Result<T, ChannelError> + Send + Sync + 'a,
    ) -> BoxFuture<'a, Result<T, ChannelError>> {
        let mut state = self.lock();
        let packages = state.key_packages.entry(user.to_owned()).or_default();
        let result = change(packages, unix_now());
        if packages.is_empty() {
            state.key_packages.remove(user);
        }
        ready(result)
    }
}

impl ChannelDirectory for MemoryBackend {
    fn create<'a>(
        &'a self,
        channel: &'a str,
        options: ChannelOptions,
        mut owner: Member,
        ttl: Duration,
        limits: CreateLimits,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        if state.live_channel(channel, now).is_some() {
            return ready(Err(ChannelError::new(
                ErrorCode::AlreadyExists,
                format!("a channel named {channel:?} exists"),
            )));
        }
        let max_channels = limits.max_channels;
        let owned = |state: &State| {
            owner
                .user
                .as_ref()
                .and_then(|user| state.created.get(user))
                .copied()
                .unwrap_or(0)
        };
        if state.channels.len() >= max_channels || owned(&state) >= limits.max_per_user {
            state.sweep(now);
            if state.channels.len() >= max_channels {
                return ready(Err(ChannelError::new(
                    ErrorCode::Limit,
                    format!("there are {max_channels} channels, the most allowed"),
                )));
            }
            if owned(&state) >= limits.max_per_user {
                return ready(Err(super::too_many_owned(limits.max_per_user)));
            }
        }
        // A channel made anew starts a new history, so offsets from an
        // earlier channel of that name are never taken for this one's.
        state.drop_history(channel);
        owner.role = ChannelRole::OWNER;
        let creator = owner.user.clone();
        let mut roles = HashMap::new();
        if let Some(user) = &owner.user {
            roles.insert(user.clone(), ChannelRole::OWNER);
        }
        let mut members = HashMap::new();
        members.insert(
            owner.session,
            Entry {
                member: owner,
                expires: now + ttl,
                seq: 0,
            },
        );
        state.add_channel(
            channel,
            Channel {
                options,
                members,
                next_seq: 1,
                roles,
                bans: HashMap::new(),
                empty_since: None,
                creator,
            },
        );
        ready(Ok(JoinGrant {
            options,
            role: ChannelRole::OWNER,
        }))
    }

    fn channel<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<ChannelSummary>, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        ready(Ok(state
            .live_channel(channel, now)
            .map(|c| c.summary(channel))))
    }

    fn channels(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ChannelSummary>, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        state.sweep(now);
        ready(Ok(state
            .channels
            .iter()
            .take(limit)
            .map(|(name, c)| c.summary(name))
            .collect()))
    }

    fn ban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        duration: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(record) = state.live_channel(channel, now) else {
            return ready(Err(not_found(channel)));
        };
        if record.bans.len() >= MAX_BANS_PER_CHANNEL && !record.bans.contains_key(user) {
            return ready(Err(ChannelError::new(
                ErrorCode::Limit,
                format!("{channel:?} has {MAX_BANS_PER_CHANNEL} bans, the most allowed"),
            )));
        }
        let until = duration.map(|d| {
            now.checked_add(d)
                .unwrap_or(now + Duration::from_secs(1 << 40))
        });
        record.bans.insert(user.to_owned(), until);
        record.remove(now, |m| m.user.as_deref() == Some(user));
        ready(Ok(()))
    }

    fn unban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(record) = state.live_channel(channel, now) else {
            return ready(Err(not_found(channel)));
        };
        ready(match record.bans.remove(user) {
            Some(_) => Ok(()),
            None => Err(super::not_banned(channel, user)),
        })
    }

    fn set_role<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        role: &'a ChannelRole,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(record) = state.live_channel(channel, now) else {
            return ready(Err(not_found(channel)));
        };
        if *role == ChannelRole::PARTICIPANT {
            record.roles.remove(user);
        } else {
            if record.roles.len() >= MAX_ROLES_PER_CHANNEL && !record.roles.contains_key(user) {
                return ready(Err(ChannelError::new(
                    ErrorCode::Limit,
                    format!(
                        "{channel:?} has {MAX_ROLES_PER_CHANNEL} roles given, the most allowed"
                    ),
                )));
            }
            record.roles.insert(user.to_owned(), role.clone());
        }
        for entry in record.members.values_mut() {
            if entry.member.user.as_deref() == Some(user) {
                entry.member.role = role.clone();
            }
        }
        ready(Ok(()))
    }

    fn delete<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        if state.live_channel(channel, now).is_none() {
            return ready(Err(not_found(channel)));
        }
        state.remove_channel(channel);
        ready(Ok(()))
    }

    fn standing<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Standing, ChannelError>> {
        let now = self.now();
        let mut state = self.lock();
        let Some(record) = state.live_channel(channel, now) else {
            return ready(Err(not_found(channel)));
        };
        ready(Ok(Standing {
            role: record
                .roles
                .get(user)
                .cloned()
                .unwrap_or(ChannelRole::PARTICIPANT),
            banned: record.bans.contains_key(user),
        }))
    }
}

impl Controller for MemoryBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        self.lock().sinks.insert(node, sink);
    }

    fn broadcast(&self, message: ControlMessage) -> BoxFuture<'_, Result<(), ChannelError>> {
        let state = self.lock();
        for sink in state.sinks.values() {
            sink.control(&message);
        }
        ready(Ok(()))
    }

    fn request(
        &self,
        message: ControlMessage,
        _wait: Duration,
    ) -> BoxFuture<'_, Result<Reach, ChannelError>> {
        let state = self.lock();
        let sessions = state
            .sinks
            .values()
            .map(|sink| sink.control(&message))
            .sum();
        ready(Ok(Reach {
            sessions,
            answered: state.sinks.len(),
            asked: state.sinks.len(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// The memory backend's futures are ready at once.
    fn now<T>(future: impl Future<Output = T>) -> T {
        match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(value) => value,
            Poll::Pending => panic!("the memory backend never waits"),
        }
    }

    fn channel(store: &MemoryBackend) {
        create(store, "room", 10).unwrap();
    }

    fn create(
        store: &MemoryBackend,
        name: &str,
        max_channels: usize,
    ) -> Result<JoinGrant, ChannelError> {
        let options = ChannelOptions {
            max_participants: 10,
            history_size: 0,
            history_ttl: Duration::from_secs(60),
            history_bytes: 1 << 20,
            presence_events: false,
            encrypted: false,
            linger: Duration::from_secs(60),
        };
        let owner = Member {
            session: SessionId(1),
            node: NodeId(1),
            user: Some("owner".into()),
            info: None,
            role: ChannelRole::OWNER,
        };
        let limits = CreateLimits {
            max_channels,
            max_per_user: 1_000,
        };
        now(store.create(name, options, owner, Duration::from_secs(60), limits))
    }

    fn kb_message(n: u64) -> Publication {
        // About 1 KiB of JSON each, all of one weight.
        let data = serde_json::json!({"n": format!("{n:04}"), "pad": "x".repeat(900)});
        Publication::message(None, crate::Payload::new(&data))
    }

    fn spec(max_bytes: u64) -> HistorySpec {
        HistorySpec {
            size: 1_000,
            ttl: Duration::from_secs(600),
            max_bytes,
        }
    }

    fn offsets(store: &MemoryBackend, channel: &str) -> Vec<u64> {
        let state = store.lock();
        state.histories.get(channel).map_or_else(Vec::new, |h| {
            h.entries
                .iter()
                .map(|kept| kept.publication.position.as_ref().unwrap().offset)
                .collect()
        })
    }

    // ROBUSTNESS 119: idempotency keys are remembered within a bound: the
    // newest 10,000 a channel, so one key per publish cannot grow memory
    // without end; the newest keep their guarantee.
    #[test]
    fn idempotency_keys_are_bounded_per_channel() {
        let store = MemoryBackend::new();
        let publish =
            |key: &str| now(store.publish_once("k", kb_message(0), spec(u64::MAX), key)).unwrap();
        for n in 0..MAX_KEYS_PER_CHANNEL + 1 {
            assert!(!publish(&format!("key {n}")).duplicate);
        }
        assert!(store.lock().histories["k"].once.len() <= MAX_KEYS_PER_CHANNEL);
        assert!(publish(&format!("key {MAX_KEYS_PER_CHANNEL}")).duplicate);
        assert!(!publish("key 0").duplicate, "the oldest was forgotten");
    }

    // ROBUSTNESS 145: the GroupInfo kept for every encrypted channel is
    // bounded by bytes for the node, the oldest kept going first.
    #[test]
    fn kept_group_infos_keep_to_the_nodes_byte_budget() {
        let store = MemoryBackend::new().max_group_info_bytes(10);
        let commit = |channel: &str, epoch: u64, info: &str| {
            now(store.publish_commit(channel, kb_message(0), spec(10), epoch, Some(info))).unwrap();
        };
        commit("a", 0, "aaaa");
        commit("b", 0, "bbbb");
        assert_eq!(store.lock().group_info_bytes, 8);
        // A newer one replaces its channel's, and counts once.
        commit("a", 1, "AAAA");
        assert_eq!(store.lock().group_info_bytes, 8);
        // Past the budget, the oldest kept goes (b's, now).
        commit("c", 0, "cccc");
        assert_eq!(now(store.group_info("b")).unwrap(), None);
        assert_eq!(
            now(store.group_info("a")).unwrap(),
            Some((2, "AAAA".into()))
        );
        assert_eq!(
            now(store.group_info("c")).unwrap(),
            Some((1, "cccc".into()))
        );
        assert_eq!(store.lock().group_info_bytes, 8);
        // A history forgotten gives its GroupInfo's bytes back.
        now(store.remove_history("a")).unwrap();
        assert_eq!(store.lock().group_info_bytes, 4);
        assert_eq!(store.lock().group_infos.len(), 1);
    }

    // ROBUSTNESS 106: history is bounded by bytes, per channel and for the
    // node, the oldest publication going first; a recovery from further
    // back says it cannot (`complete: false`), never a partial replay.
    #[test]
    fn history_keeps_to_its_byte_budgets() {
        let weight = kb_message(0).weight();
        let store = MemoryBackend::new().max_history_bytes(10 * weight);
        for n in 0..20 {
            now(store.publish("a", kb_message(n), Some(spec(4 * weight as u64)))).unwrap();
        }
        assert_eq!(
            offsets(&store, "a"),
            [17, 18, 19, 20],
            "four fit in the channel's budget"
        );
        assert_eq!(store.history_bytes(), 4 * weight);
        let epoch = store.lock().histories["a"].epoch.clone();
        let page = now(store.history("a", Some(Position { offset: 15, epoch }), 100)).unwrap();
        assert!(!page.complete && page.publications.is_empty(), "{page:?}");

        // Over the node's budget, the oldest of all goes, whichever channel.
        for n in 0..8 {
            now(store.publish("b", kb_message(n), Some(spec(100 * weight as u64)))).unwrap();
        }
        assert_eq!(store.history_bytes(), 10 * weight);
        assert_eq!(offsets(&store, "a"), [19, 20], "a's oldest went first");
        assert_eq!(offsets(&store, "b").len(), 8);
        for n in 8..12 {
            now(store.publish("b", kb_message(n), Some(spec(100 * weight as u64)))).unwrap();
        }
        assert!(offsets(&store, "a").is_empty());
        assert_eq!(offsets(&store, "b"), (3..=12).collect::<Vec<_>>());
        assert_eq!(store.history_bytes(), 10 * weight);

        // Forgetting a history gives its bytes back.
        now(store.remove_history("b")).unwrap();
        now(store.remove_history("a")).unwrap();
        assert_eq!(store.history_bytes(), 0);
        assert!(store.lock().oldest.is_empty());
    }

    #[test]
    fn channels_are_capped() {
        let store = MemoryBackend::new();
        create(&store, "a", 2).unwrap();
        create(&store, "b", 2).unwrap();
        assert_eq!(create(&store, "c", 2).unwrap_err().code, ErrorCode::Limit);
        assert_eq!(
            create(&store, "a", 2).unwrap_err().code,
            ErrorCode::AlreadyExists
        );
    }

    #[test]
    fn bans_and_roles_per_channel_are_capped() {
        let store = MemoryBackend::new();
        channel(&store);
        for n in 0..MAX_BANS_PER_CHANNEL {
            now(store.ban("room", &format!("u{n}"), None)).unwrap();
        }
        let refused = now(store.ban("room", "one-more", None)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Limit);
        // Banning someone banned already only changes the duration.
        now(store.ban("room", "u0", Some(Duration::from_secs(5)))).unwrap();

        let moderator = ChannelRole::new("moderator");
        // The owner's role is one of them.
        for n in 1..MAX_ROLES_PER_CHANNEL {
            now(store.set_role("room", &format!("r{n}"), &moderator)).unwrap();
        }
        let refused = now(store.set_role("room", "one-more", &moderator)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Limit);
        now(store.set_role("room", "r1", &ChannelRole::PARTICIPANT)).unwrap();
    }
}
