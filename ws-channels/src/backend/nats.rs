//! A cluster backend on NATS with JetStream (feature `nats`): broker,
//! presence store and controller for any number of nodes sharing one NATS
//! server or cluster.
//!
//! - **Publications**: a subject per channel or topic,
//!   `<prefix>.live.<hex of the name>`, subscribed by a node only while it
//!   has local participants there. A publication to a channel with history
//!   is published to the JetStream stream `<prefix>-history`
//!   (`<prefix>.hist.<hex>`), which stores it and republishes it to the
//!   live subject in stream order: appended and published in one step.
//!   Offsets grow by one per channel: the publisher sets the next offset
//!   and JetStream refuses it unless the channel's last stored message is
//!   the one it read (`Nats-Expected-Last-Subject-Sequence`), so two
//!   publishers racing on one channel take turns. The stream keeps at most
//!   [`NatsConfig::max_history`] messages per channel and none older than
//!   [`NatsConfig::max_history_age`]; each channel's own size and TTL
//!   apply when history is read.
//! - **Presence**: one JetStream key-value entry per channel in the bucket
//!   `<prefix>-presence` (options, members in join order with their
//!   expiry, roles, bans), changed by compare-and-set on its revision, so
//!   joins check existence, bans and capacity atomically. Expiry uses the
//!   nodes' clocks, which must agree to well under the presence TTL. The
//!   entry is one value of at most the server's `max_payload` (1 MiB by
//!   default): a few thousand members per channel. Channels larger than
//!   that need the Redis backend.
//! - **Control**: `<prefix>.control` carries kicks, bans, role changes,
//!   disconnects and heartbeats, as with Redis; the members of a node silent
//!   for three and a half heartbeats are removed by the nodes sharing its channels.
//! - **Failures**: [`NatsBackend::connect`] retries with backoff until
//!   [`NatsConfig::connect_timeout`]. The client reconnects on its own and
//!   subscribes again; on reconnecting the node is told
//!   ([`Sink::interrupted`]), and writes its members back if the presence
//!   bucket lost them. Publishing while disconnected fails with
//!   [`ErrorCode::Unavailable`].
//!
//! The backend runs on tokio: build [`Channels`](crate::Channels) with it
//! inside a tokio runtime.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, HeaderMap};
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};

use super::cluster::{
    Attempt, Control, Received, TOMBSTONE_KEPT, digest_hex, leave, lock, missed, ms, new_epoch,
    redact, to_hex, with_backoff,
};
use super::memory::{MAX_BANS_PER_CHANNEL, MAX_ROLES_PER_CHANNEL};
use super::{
    BoxFuture, Broker, ClusterKey, Controller, CreateLimits, IDEMPOTENCY_WINDOW, PresenceStore,
    Published, Reach, Sink, Standing,
};
use crate::types::TOPIC_PREFIX;
use crate::types::{
    ChannelError, ChannelOptions, ChannelSummary, ControlMessage, ErrorCode, HistoryPage,
    HistorySpec, JoinGrant, Member, NodeId, Position, Publication, Removal, Role, Roster,
    SessionId, Target,
};

/// How to reach NATS and how to behave towards it.
#[derive(Clone)]
pub struct NatsConfig {
    /// `nats://[user:password@]host[:port]`, or several separated by
    /// commas.
    pub url: String,
    /// The first token of every subject, and the start of the stream and
    /// bucket names, so deployments can share a NATS. Default `"ws"`.
    /// Letters, digits, `-` and `_`.
    pub prefix: String,
    /// How often a node says it is alive; a node silent for three and a half is taken
    /// for dead. Default 2 s.
    pub heartbeat: Duration,
    /// How long [`NatsBackend::connect`] keeps trying. Default 30 s.
    pub connect_timeout: Duration,
    /// How long one request may take before it fails with
    /// [`ErrorCode::Unavailable`]. Default 5 s.
    pub command_timeout: Duration,
    /// Messages the history stream keeps per channel at most: the largest
    /// `history_size` a channel may ask for. Default 1,000 (the default
    /// `ChannelsConfig::max_history_size`).
    pub max_history: u32,
    /// How long the history stream keeps a message at most: the longest
    /// `history_ttl` a channel may ask for. Default 24 hours. Publish
    /// idempotency keys are remembered this long when it is shorter than
    /// [`IDEMPOTENCY_WINDOW`].
    pub max_history_age: Duration,
    /// Bytes the history stream holds at most, every channel together (on
    /// the NATS server's disk); past it the oldest messages go. Default
    /// 1 GiB.
    pub max_history_bytes: u64,
    /// The cluster's shared secret, which signs control messages (see
    /// [`ClusterKey`]).
    pub cluster_key: ClusterKey,
    /// A CA certificate (PEM file) to trust for TLS instead of the
    /// Mozilla roots; TLS is then required.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("max_history", &self.max_history)
            .field("max_history_age", &self.max_history_age)
            .field("max_history_bytes", &self.max_history_bytes)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish_non_exhaustive()
    }
}

impl NatsConfig {
    /// Trusts this CA certificate (a PEM file) for TLS instead of the
    /// Mozilla roots, and requires TLS.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// The defaults, for the NATS at `url` (`tls://` requires TLS), with
    /// the cluster's key.
    pub fn new(url: impl Into<String>, cluster_key: ClusterKey) -> Self {
        Self {
            url: url.into(),
            prefix: "ws".into(),
            heartbeat: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(5),
            max_history: 1_000,
            max_history_age: Duration::from_secs(24 * 3600),
            max_history_bytes: 1 << 30,
            cluster_key,
            tls_ca_file: None,
        }
    }
}

super::cluster::shared_settings!(NatsConfig);

/// How long a user's list of created channels outlives its last change.
const CREATED_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

const OFFSET: &str = "Ws-Offset";
const EPOCH: &str = "Ws-Epoch";
const EXPIRES: &str = "Ws-Expires";
const PREVIOUS: &str = "Ws-Previous";

/// One channel's presence, as stored in its key-value entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    options: ChannelOptions,
    /// The next join order.
    seq: u64,
    /// The history epoch while the channel has no stored message.
    epoch: String,
    /// Whether a message was published in `epoch`.
    epoch_used: bool,
    members: Vec<Entry>,
    roles: BTreeMap<String, Role>,
    /// User -> until, ms since the Unix epoch; 0 for until unbanned.
    bans: BTreeMap<String, u64>,
    /// When the last member left, ms since the Unix epoch.
    empty_since: Option<u64>,
    /// The user who created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    creator: Option<String>,
    /// Kicked sessions -> until, ms since the Unix epoch: a node that
    /// missed the kick (cut off from the broker) must not write them back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    kicked: BTreeMap<SessionId, u64>,
}

/// The channels a user created, as stored in the owners bucket; names of
/// channels gone (or made anew by someone else) are dropped when the user
/// reaches its limit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Created {
    channels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    member: Member,
    expires: u64,
}

impl Record {
    fn new(options: ChannelOptions) -> Self {
        Self {
            options,
            seq: 0,
            epoch: new_epoch(),
            epoch_used: false,
            members: Vec::new(),
            roles: BTreeMap::new(),
            bans: BTreeMap::new(),
            empty_since: None,
            creator: None,
            kicked: BTreeMap::new(),
        }
    }

    /// The epoch of the channel's history while the stream holds none of
    /// its messages: the record's while nothing was published in it; else
    /// the history was lost (expired from the stream, purged) and offsets
    /// start again, in an epoch derived from the record's, so that every
    /// read names the same one until the next publication takes it.
    fn empty_history_epoch(&self) -> String {
        if self.epoch_used {
            digest_hex(&["the epoch after", &self.epoch])[..8].to_owned()
        } else {
            self.epoch.clone()
        }
    }

    /// Removes expired members and bans; the members removed.
    fn reap(&mut self, now: u64) -> Vec<Member> {
        let mut gone = Vec::new();
        self.members.retain(|entry| {
            let keep = entry.expires > now;
            if !keep {
                gone.push(entry.member.clone());
            }
            keep
        });
        self.bans.retain(|_, until| *until == 0 || *until > now);
        self.kicked.retain(|_, until| *until > now);
        if !gone.is_empty() {
            self.settle(now);
        }
        gone
    }

    fn settle(&mut self, now: u64) {
        if self.members.is_empty() {
            self.empty_since.get_or_insert(now);
        } else {
            self.empty_since = None;
        }
    }

    /// Whether an empty channel outlived its linger.
    fn lingered_out(&self, now: u64) -> bool {
        self.empty_since
            .is_some_and(|since| now.saturating_sub(since) >= ms(self.options.linger))
    }

    fn remove(&mut self, now: u64, matches: impl Fn(&Member) -> bool) -> usize {
        let before = self.members.len();
        self.members.retain(|entry| !matches(&entry.member));
        let removed = before - self.members.len();
        if removed > 0 {
            self.settle(now);
        }
        removed
    }

    fn add(&mut self, mut member: Member, role: Role, now: u64, ttl: u64) {
        member.role = role;
        self.seq += 1;
        self.members.push(Entry {
            member,
            expires: now + ttl,
        });
        self.settle(now);
    }

    fn summary(&self, name: &str) -> ChannelSummary {
        ChannelSummary {
            name: name.to_owned(),
            options: self.options,
            members: self.members.len(),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why the NATS server would not create the history stream, in words that
/// say what to change: JetStream reserves a stream's `max_bytes` up front,
/// so a budget larger than the server's free JetStream storage is refused.
fn history_stream_refused(
    error: &jetstream::context::CreateStreamError,
    budget: u64,
) -> ChannelError {
    use jetstream::context::CreateStreamErrorKind;
    match error.kind() {
        CreateStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STORAGE_RESOURCES_EXCEEDED =>
        {
            unavailable(format!(
                "JetStream cannot reserve the history stream's budget of {budget} bytes \
                 (max_history_bytes; ws serve --history-bytes): give JetStream more storage \
                 (max_file_store) or lower the budget"
            ))
        }
        _ => unavailable(format!("the history stream: {error} (is JetStream on?)")),
    }
}

fn unavailable(error: impl fmt::Display) -> ChannelError {
    ChannelError::unavailable(format!("nats: {error}"))
}

fn not_found(channel: &str) -> ChannelError {
    ChannelError::new(ErrorCode::NotFound, format!("no channel named {channel:?}"))
}

fn hex(name: &str) -> String {
    to_hex(name.as_bytes())
}

fn unhex(text: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.as_str().parse().ok()
}

/// Broker, presence store and controller on NATS. Make it with
/// [`connect`](Self::connect) and hand it to
/// [`Backends::shared`](crate::Backends::shared).
pub struct NatsBackend {
    shared: Arc<Shared>,
}

impl fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBackend")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// What this node added to presence, to write back if the bucket loses it.
#[derive(Clone)]
struct LocalEntry {
    options: ChannelOptions,
    member: Member,
}

struct Shared {
    config: NatsConfig,
    client: Client,
    history: stream::Stream,
    presence: kv::Store,
    /// Per user, the channels it created ([`Created`]).
    created: kv::Store,
    /// Channels their owners closed in the last [`TOMBSTONE_KEPT`].
    closed: kv::Store,
    attached: OnceLock<(NodeId, Arc<dyn Sink>)>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Per subscribed channel or topic, the task that delivers it.
    subscriptions: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    local: Mutex<HashMap<(String, SessionId), LocalEntry>>,
    restore: AtomicBool,
    control: Control,
    events: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<async_nats::Event>>>,
}

impl Drop for NatsBackend {
    fn drop(&mut self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
        for (_, task) in lock(&self.shared.subscriptions).drain() {
            task.abort();
        }
    }
}

/// Where a walk back through a channel's history starts: its newest
/// message's stream sequence and offset, the epoch, the byte budget.
struct Walk<'a> {
    sequence: u64,
    top: u64,
    epoch: &'a str,
    budget: u64,
}

/// What a NATS URL says about who connects.
enum Credentials {
    /// `nats://user:password@host`.
    User(String, String),
    /// `nats://token@host`.
    Token(String),
}

/// The servers of `urls` (one, or several separated by commas) without
/// credentials, and the credentials they carry (async-nats leaves those in
/// a URL unused). Each part is percent-decoded.
fn servers(urls: &str) -> Result<(Vec<async_nats::ServerAddr>, Option<Credentials>), ChannelError> {
    let bad = |why: String| ChannelError::new(ErrorCode::BadRequest, why);
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| bad(format!("{}: credentials are not UTF-8", redact(urls))))
    };
    let mut servers = Vec::new();
    let mut credentials = None;
    for one in urls.split(',') {
        let mut url = url::Url::parse(one.trim())
            .map_err(|e| bad(format!("not a NATS URL: {}: {e}", redact(one))))?;
        if !url.username().is_empty() {
            let user = decode(url.username())?;
            credentials = Some(match url.password() {
                Some(password) => Credentials::User(user, decode(password)?),
                None => Credentials::Token(user),
            });
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        let server = url
            .as_str()
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| bad(format!("not a NATS URL: {}: {e}", redact(one))))?;
        servers.push(server);
    }
    Ok((servers, credentials))
}

/// A key-value bucket, made if missing: its stream as `create_key_value`
/// would make it; that call first asks for account information, whose
/// reply from NATS servers before 2.10 the client cannot read.
async fn bucket(
    jetstream: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> Result<kv::Store, ChannelError> {
    jetstream
        .create_or_update_stream(stream::Config {
            name: format!("KV_{name}"),
            max_age,
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..stream::Config::default()
        })
        .await
        .map_err(|e| unavailable(format!("the bucket {name}: {e}")))?;
    jetstream
        .get_key_value(name)
        .await
        .map_err(|e| unavailable(format!("the bucket {name}: {e}")))
}

impl NatsBackend {
    /// Connects to NATS, trying again with backoff (100 ms doubling to
    /// 5 s, each failure logged) until `config.connect_timeout`, then
    /// failing with [`ErrorCode::Unavailable`] and the last error; then
    /// makes the history stream and the presence bucket if they are
    /// missing. A bad prefix fails at once with [`ErrorCode::BadRequest`].
    pub async fn connect(config: NatsConfig) -> Result<Self, ChannelError> {
        let prefix_ok = !config.prefix.is_empty()
            && config
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !prefix_ok {
            return Err(ChannelError::new(
                ErrorCode::BadRequest,
                "the NATS prefix is letters, digits, - and _",
            ));
        }
        let (servers, credentials) = servers(&config.url)?;
        let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let client = with_backoff("NATS", &config.url, config.connect_timeout, || {
            let events_tx = events_tx.clone();
            let mut options = async_nats::ConnectOptions::new()
                .connection_timeout(config.command_timeout)
                .request_timeout(Some(config.command_timeout))
                .max_reconnects(None)
                .event_callback(move |event| {
                    let events_tx = events_tx.clone();
                    async move {
                        let _ = events_tx.send(event);
                    }
                });
            if let Some(ca) = &config.tls_ca_file {
                options = options.add_root_certificates(ca.clone()).require_tls(true);
            }
            match &credentials {
                Some(Credentials::User(user, password)) => {
                    options = options.user_and_password(user.clone(), password.clone());
                }
                Some(Credentials::Token(token)) => options = options.token(token.clone()),
                None => {}
            }
            let servers = servers.clone();
            let url = config.url.clone();
            async move {
                options.connect(servers).await.map_err(|e| {
                    // Wrong credentials will not get better by trying again.
                    if e.kind() == async_nats::ConnectErrorKind::AuthorizationViolation {
                        Attempt::Fatal(format!(
                            "NATS at {} refused the credentials: {e}",
                            redact(&url)
                        ))
                    } else {
                        Attempt::Retry(e.to_string())
                    }
                })
            }
        })
        .await?;
        let jetstream = jetstream::new(client.clone());
        let prefix = &config.prefix;
        let history = jetstream
            .create_or_update_stream(stream::Config {
                name: format!("{prefix}-history"),
                subjects: vec![format!("{prefix}.hist.>")],
                max_messages_per_subject: i64::from(config.max_history),
                max_age: config.max_history_age,
                max_bytes: i64::try_from(config.max_history_bytes).unwrap_or(i64::MAX),
                // JetStream refuses a window longer than the messages live.
                duplicate_window: IDEMPOTENCY_WINDOW.min(config.max_history_age),
                storage: stream::StorageType::File,
                republish: Some(stream::Republish {
                    source: format!("{prefix}.hist.>"),
                    destination: format!("{prefix}.live.>"),
                    headers_only: false,
                }),
                ..stream::Config::default()
            })
            .await
            .map_err(|e| history_stream_refused(&e, config.max_history_bytes))?;
        let history = jetstream
            .get_stream(history.config.name)
            .await
            .map_err(unavailable)?;
        let presence = bucket(&jetstream, &format!("{prefix}-presence"), Duration::ZERO).await?;
        // A user who created nothing for a week starts a new count.
        let created = bucket(&jetstream, &format!("{prefix}-created"), CREATED_KEPT).await?;
        let closed = bucket(&jetstream, &format!("{prefix}-closed"), TOMBSTONE_KEPT).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                history,
                presence,
                created,
                closed,
                attached: OnceLock::new(),
                tasks: Mutex::new(Vec::new()),
                subscriptions: Mutex::new(HashMap::new()),
                local: Mutex::new(HashMap::new()),
                restore: AtomicBool::new(false),
                events: Mutex::new(Some(events_rx)),
                control: Control::new(config.cluster_key.clone(), config.heartbeat),
                config,
            }),
        })
    }

    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        if self.shared.attached.set((node, sink.clone())).is_err() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(Shared::listen(self.shared.clone(), node, sink));
                lock(&self.shared.tasks).push(task);
            }
            Err(_) => tracing::error!(
                "the NATS backend needs a tokio runtime: build Channels inside one; \
                 this node receives nothing"
            ),
        }
    }
}

impl Shared {
    fn live_subject(&self, channel: &str) -> String {
        format!("{}.live.{}", self.config.prefix, hex(channel))
    }

    fn history_subject(&self, channel: &str) -> String {
        format!("{}.hist.{}", self.config.prefix, hex(channel))
    }

    fn control_subject(&self) -> String {
        format!("{}.control", self.config.prefix)
    }

    fn key(channel: &str) -> String {
        format!("c.{}", hex(channel))
    }

    fn connected(&self) -> Result<(), ChannelError> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            _ => Err(ChannelError::unavailable(
                "nats: not connected (reconnecting)",
            )),
        }
    }

    /// Reads `channel`'s record, lets `change` edit it (`None`: no such
    /// channel, or it lingered out) and writes it back if `change` says it
    /// changed, retrying when another node wrote in between. Expired
    /// members are removed first; `leave` events for them go out after the
    /// write.
    async fn modify<T>(
        &self,
        channel: &str,
        mut change: impl FnMut(&mut Option<Record>, u64) -> (Result<T, ChannelError>, bool),
    ) -> Result<T, ChannelError> {
        let key = Self::key(channel);
        for _ in 0..64 {
            self.connected()?;
            let entry = self
                .presence
                .entry(key.clone())
                .await
                .map_err(unavailable)?;
            let (revision, stored) = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => (
                    Some(entry.revision),
                    serde_json::from_slice::<Record>(&entry.value).ok(),
                ),
                Some(entry) => (Some(entry.revision), None),
                None => (None, None),
            };
            let now = now_ms();
            let had = stored.is_some();
            let mut record = stored;
            let mut reaped = Vec::new();
            let mut changed = false;
            if let Some(r) = &mut record {
                reaped = r.reap(now);
                changed = !reaped.is_empty();
                if r.lingered_out(now) {
                    record = None;
                    changed = true;
                }
            }
            let presence_events = record.as_ref().is_some_and(|r| r.options.presence_events);
            let (result, edited) = change(&mut record, now);
            if !(changed || edited) {
                return result;
            }
            let written = match (&record, revision) {
                (Some(r), revision) => {
                    let bytes = serde_json::to_vec(r).map_err(unavailable)?.into();
                    match revision {
                        Some(revision) => self
                            .presence
                            .update(&key, bytes, revision)
                            .await
                            .map(drop)
                            .map_err(|e| {
                                (
                                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                                    e.to_string(),
                                )
                            }),
                        None => self
                            .presence
                            .create(&key, bytes)
                            .await
                            .map(drop)
                            .map_err(|e| {
                                (
                                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                                    e.to_string(),
                                )
                            }),
                    }
                }
                (None, Some(revision)) if had => self
                    .presence
                    .delete_expect_revision(&key, Some(revision))
                    .await
                    .map_err(|e| (true, e.to_string())),
                (None, _) => Ok(()),
            };
            match written {
                Ok(()) => {
                    let me = self.me().ok();
                    let (own, others): (Vec<Member>, Vec<Member>) =
                        reaped.into_iter().partition(|m| Some(m.node) == me);
                    if !own.is_empty() {
                        // This node's own entries ran out while it could
                        // not refresh them (stalled, cut off); its sessions
                        // are still here: they are written back, not
                        // announced as gone.
                        self.restore.store(true, Ordering::Relaxed);
                    }
                    if presence_events {
                        self.leaves(channel, others).await;
                    }
                    return result;
                }
                Err((true, _)) => continue,
                Err((false, error)) => return Err(unavailable(error)),
            }
        }
        Err(ChannelError::unavailable(format!(
            "nats: {channel:?} changed too often to update"
        )))
    }

    /// Fails with `limit` when `user` has created `max` channels that
    /// still exist; the list loses the ones that do not (gone, lingered
    /// out, or made anew by someone else) first.
    async fn check_created(&self, user: &str, max: usize) -> Result<(), ChannelError> {
        let key = format!("u.{}", hex(user));
        let (created, _) = self.read_created(&key).await?;
        if created.channels.len() < max {
            return Ok(());
        }
        let now = now_ms();
        let mut alive = Vec::new();
        for channel in &created.channels {
            let entry = self
                .presence
                .entry(Self::key(channel))
                .await
                .map_err(unavailable)?;
            let record = entry
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| serde_json::from_slice::<Record>(&e.value).ok());
            if record.is_some_and(|r| !r.lingered_out(now) && r.creator.as_deref() == Some(user)) {
                alive.push(channel.clone());
            }
        }
        let count = alive.len();
        self.change_created(&key, |created| {
            created.channels.retain(|name| alive.contains(name));
        })
        .await?;
        if count >= max {
            return Err(super::too_many_owned(max));
        }
        Ok(())
    }

    /// Adds `channel` to `user`'s created channels.
    async fn add_created(&self, user: &str, channel: &str) -> Result<(), ChannelError> {
        let key = format!("u.{}", hex(user));
        self.change_created(&key, |created| {
            if !created.channels.iter().any(|name| name == channel) {
                created.channels.push(channel.to_owned());
            }
        })
        .await
    }

    async fn read_created(&self, key: &str) -> Result<(Created, Option<u64>), ChannelError> {
        let entry = self.created.entry(key).await.map_err(unavailable)?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => (
                serde_json::from_slice(&entry.value).unwrap_or_default(),
                Some(entry.revision),
            ),
            Some(entry) => (Created::default(), Some(entry.revision)),
            None => (Created::default(), None),
        })
    }

    /// Edits a user's created channels by compare-and-set, retrying when
    /// another node wrote in between.
    async fn change_created(
        &self,
        key: &str,
        change: impl Fn(&mut Created),
    ) -> Result<(), ChannelError> {
        for _ in 0..64 {
            let (mut created, revision) = self.read_created(key).await?;
            change(&mut created);
            let bytes = serde_json::to_vec(&created).map_err(unavailable)?.into();
            let written = match revision {
                Some(revision) => self
                    .created
                    .update(key, bytes, revision)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        (
                            e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            e.to_string(),
                        )
                    }),
                None => self
                    .created
                    .create(key, bytes)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        (
                            e.kind() == kv::CreateErrorKind::AlreadyExists,
                            e.to_string(),
                        )
                    }),
            };
            match written {
                Ok(()) => return Ok(()),
                Err((true, _)) => continue,
                Err((false, error)) => return Err(unavailable(error)),
            }
        }
        Err(ChannelError::unavailable(
            "nats: a user's created channels changed too often to update",
        ))
    }

    /// Walks a channel's history back from its newest message for as long
    /// as `more(offset, taken)` says, each message checked to be the one
    /// expected: its offset, this epoch, not expired, within the byte
    /// budget. The publications, newest first, and whether the walk ended
    /// because `more` said so rather than at a message missing or out of
    /// place.
    async fn walk_back(
        &self,
        walk: Walk<'_>,
        mut more: impl FnMut(u64, usize) -> bool,
    ) -> (Vec<Publication>, bool) {
        let now = now_ms();
        let mut publications = Vec::new();
        let mut sequence = walk.sequence;
        let mut expected = walk.top;
        let mut bytes = 0u64;
        while more(expected, publications.len()) {
            let Ok(message) = self.history.get_raw_message(sequence).await else {
                return (publications, false);
            };
            let headers = &message.headers;
            bytes += message.payload.len() as u64;
            let fits = bytes <= walk.budget
                && header_u64(headers, OFFSET) == Some(expected)
                && headers.get(EPOCH).map(|e| e.as_str()) == Some(walk.epoch)
                && header_u64(headers, EXPIRES).is_some_and(|x| x > now);
            match serde_json::from_slice::<Publication>(&message.payload) {
                Ok(mut publication) if fits => {
                    publication.position = Some(Position {
                        offset: expected,
                        epoch: walk.epoch.to_owned(),
                    });
                    publications.push(publication);
                }
                _ => return (publications, false),
            }
            sequence = header_u64(headers, PREVIOUS).unwrap_or(0);
            expected -= 1;
        }
        (publications, true)
    }

    async fn leaves(&self, channel: &str, members: Vec<Member>) {
        for member in members {
            if let Err(e) = self.send_live(channel, &leave(member)).await {
                tracing::warn!(channel, error = %e, "a leave event for an expired member was not sent");
            }
        }
    }

    async fn send_live(
        &self,
        channel: &str,
        publication: &Publication,
    ) -> Result<(), ChannelError> {
        self.connected()?;
        let payload = serde_json::to_vec(publication).map_err(unavailable)?;
        self.client
            .publish(self.live_subject(channel), payload.into())
            .await
            .map_err(unavailable)
    }

    /// Whether `channel`'s owner closed it in the last [`TOMBSTONE_KEPT`].
    async fn closed_lately(&self, channel: &str) -> Result<bool, ChannelError> {
        let entry = self
            .closed
            .entry(Self::key(channel))
            .await
            .map_err(unavailable)?;
        Ok(entry.is_some_and(|e| e.operation == kv::Operation::Put))
    }

    /// Acts on what this node missed while cut off ([`missed`]).
    fn missed(&self, message: ControlMessage) {
        missed(self.attached.get().map(|(_, sink)| sink), &message);
    }

    async fn record(&self, channel: &str) -> Result<Option<Record>, ChannelError> {
        let entry = self
            .presence
            .entry(Self::key(channel))
            .await
            .map_err(unavailable)?;
        let now = now_ms();
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| serde_json::from_slice::<Record>(&e.value).ok())
            .map(|mut r| {
                r.reap(now);
                r
            })
            .filter(|r| !r.lingered_out(now)))
    }

    /// Appends `publication` to `channel`'s history (which republishes it
    /// live) at the next offset, racing publishers retrying on the
    /// stream's last-sequence check. With an idempotency `key`, JetStream
    /// drops a publish whose message id it saw within its duplicate window
    /// ([`IDEMPOTENCY_WINDOW`]) and names the first; its position is read
    /// back from the stream.
    async fn append(
        &self,
        channel: &str,
        publication: &Publication,
        spec: HistorySpec,
        key: Option<&str>,
    ) -> Result<Published, ChannelError> {
        self.connected()?;
        let payload: bytes::Bytes = serde_json::to_vec(publication).map_err(unavailable)?.into();
        let subject = self.history_subject(channel);
        let jetstream = jetstream::new(self.client.clone());
        for _ in 0..64 {
            let (previous, offset, epoch) = match self.last(channel).await? {
                Some((sequence, offset, epoch)) => (sequence, offset + 1, epoch),
                None => (0, 1, self.fresh_epoch(channel).await?),
            };
            let mut headers = HeaderMap::new();
            headers.insert(OFFSET, offset.to_string().as_str());
            headers.insert(EPOCH, epoch.as_str());
            headers.insert(EXPIRES, (now_ms() + ms(spec.ttl)).to_string().as_str());
            headers.insert(PREVIOUS, previous.to_string().as_str());
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                previous.to_string().as_str(),
            );
            if let Some(key) = key {
                // Per channel and epoch (the stream holds every channel);
                // hashed, so no user name shows in the stream.
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    digest_hex(&[channel, &epoch, key]).as_str(),
                );
            }
            let ack = jetstream
                .publish_with_headers(subject.clone(), headers, payload.clone())
                .await
                .map_err(unavailable)?
                .await;
            match ack {
                Ok(ack) if ack.duplicate => {
                    return Ok(Published {
                        position: self.position_of(ack.sequence).await,
                        duplicate: true,
                    });
                }
                Ok(_) => {
                    return Ok(Published {
                        position: Some(Position { offset, epoch }),
                        duplicate: false,
                    });
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    continue;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ChannelError::unavailable(format!(
            "nats: too many publishers raced on {channel:?}"
        )))
    }

    /// The channel position of the stream's message `sequence`, if the
    /// stream still holds it.
    async fn position_of(&self, sequence: u64) -> Option<Position> {
        let message = self.history.get_raw_message(sequence).await.ok()?;
        Some(Position {
            offset: header_u64(&message.headers, OFFSET)?,
            epoch: message.headers.get(EPOCH)?.as_str().to_owned(),
        })
    }

    /// The channel's newest stored message: stream sequence, offset, epoch.
    async fn last(&self, channel: &str) -> Result<Option<(u64, u64, String)>, ChannelError> {
        match self
            .history
            .get_last_raw_message_by_subject(&self.history_subject(channel))
            .await
        {
            Ok(message) => Ok(Some((
                message.sequence,
                header_u64(&message.headers, OFFSET).unwrap_or(0),
                message
                    .headers
                    .get(EPOCH)
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default(),
            ))),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The epoch a channel without stored messages publishes in
    /// ([`Record::empty_history_epoch`]), from now on the record's.
    async fn fresh_epoch(&self, channel: &str) -> Result<String, ChannelError> {
        self.modify(channel, |record, _| match record {
            None => (Err(not_found(channel)), false),
            Some(r) => {
                r.epoch = r.empty_history_epoch();
                r.epoch_used = true;
                (Ok(r.epoch.clone()), true)
            }
        })
        .await
    }

    async fn subscribe(self: &Arc<Self>, channel: &str) -> Result<(), ChannelError> {
        self.connected()?;
        let Some((_, sink)) = self.attached.get() else {
            return Err(ChannelError::unavailable("nats: not attached to a node"));
        };
        let mut subscriber = self
            .client
            .subscribe(self.live_subject(channel))
            .await
            .map_err(unavailable)?;
        // The SUB has reached the server once a flush returns: nothing
        // published after this returns is missed.
        self.client.flush().await.map_err(unavailable)?;
        let sink = sink.clone();
        let name = channel.to_owned();
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let Ok(mut publication) = serde_json::from_slice::<Publication>(&message.payload)
                else {
                    tracing::warn!(channel = name, "an unreadable publication");
                    continue;
                };
                if let Some(headers) = &message.headers
                    && let (Some(offset), Some(epoch)) =
                        (header_u64(headers, OFFSET), headers.get(EPOCH))
                {
                    publication.position = Some(Position {
                        offset,
                        epoch: epoch.as_str().to_owned(),
                    });
                }
                sink.publication(&name, &publication);
            }
        });
        if let Some(old) = lock(&self.subscriptions).insert(channel.to_owned(), task) {
            old.abort();
        }
        Ok(())
    }

    async fn listen(self: Arc<Self>, node: NodeId, sink: Arc<dyn Sink>) {
        let mut control = loop {
            match self.client.subscribe(self.control_subject()).await {
                Ok(subscriber) => break subscriber,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to the control subject; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut events = lock(&self.events).take();
        let mut instance = self.instance().await;
        let mut disconnected = false;
        let mut beat = tokio::time::interval(self.config.heartbeat);
        loop {
            tokio::select! {
                message = control.next() => {
                    let Some(message) = message else { return };
                    match self.control.receive(node, &message.payload, sink.as_ref()) {
                        Received::Nothing => {}
                        Received::Answer(answer) => {
                            let this = self.clone();
                            tokio::spawn(async move {
                                let _ = this.publish_control(answer).await;
                            });
                        }
                        Received::Resumed => {
                            tracing::warn!(
                                "this node was stalled longer than a peer's death: writing its members back"
                            );
                            self.restore.store(true, Ordering::Relaxed);
                            sink.interrupted();
                        }
                    }
                }
                event = async {
                    match &mut events {
                        Some(events) => events.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match event {
                        Some(async_nats::Event::Disconnected) => {
                            tracing::warn!("NATS connection lost; reconnecting");
                            disconnected = true;
                        }
                        Some(async_nats::Event::Connected) if disconnected => {
                            disconnected = false;
                            // Told at once, before anything else is awaited:
                            // the client has subscribed again and delivers
                            // already. What this node holds is written back
                            // whether or not the bucket lost it (a peer may
                            // have taken it for dead meanwhile).
                            self.restore.store(true, Ordering::Relaxed);
                            sink.interrupted();
                            let marker = self.instance().await;
                            let lost_data = marker.is_none() || marker != instance;
                            tracing::info!(lost_data, "NATS connection restored");
                            if marker.is_some() {
                                instance = marker;
                            }
                        }
                        Some(async_nats::Event::SlowConsumer(subscription)) => {
                            // The client dropped messages this node was too
                            // slow to take: every member is told, and gaps
                            // in a channel's offsets are read from history.
                            tracing::warn!(subscription, "NATS dropped messages for this slow node");
                            sink.interrupted();
                        }
                        Some(_) => {}
                        None => events = None,
                    }
                }
                _ = beat.tick() => self.beat(node).await,
            }
        }
    }

    /// A marker entry that tells whether the presence bucket kept its data.
    async fn instance(&self) -> Option<String> {
        for _ in 0..20 {
            let _ = self
                .presence
                .create("instance", new_epoch().into_bytes().into())
                .await;
            if let Ok(Some(value)) = self.presence.get("instance").await {
                return Some(String::from_utf8_lossy(&value).into_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// The node this backend is attached to.
    fn me(&self) -> Result<NodeId, ChannelError> {
        self.attached
            .get()
            .map(|(node, _)| *node)
            .ok_or_else(|| ChannelError::unavailable("nats: the backend is not attached to a node"))
    }

    async fn publish_control(&self, wire: String) -> Result<(), ChannelError> {
        self.connected()?;
        self.client
            .publish(self.control_subject(), wire.into())
            .await
            .map_err(unavailable)
    }

    async fn beat(self: &Arc<Self>, node: NodeId) {
        if self.connected().is_ok() {
            let _ = self.publish_control(self.control.heartbeat(node)).await;
        }
        for gone in self.control.peers.silent(self.config.heartbeat) {
            tracing::warn!(node = ?gone, "a node stopped beating; removing its members");
            let this = self.clone();
            tokio::spawn(async move {
                let channels: Vec<String> = lock(&this.subscriptions)
                    .keys()
                    .filter(|c| !c.starts_with(TOPIC_PREFIX))
                    .cloned()
                    .collect();
                for channel in channels {
                    let result = this
                        .modify(&channel, |record, now| {
                            let Some(r) = record else {
                                return (Ok((Vec::new(), false)), false);
                            };
                            let mut gone_members = Vec::new();
                            r.members.retain(|e| {
                                let keep = e.member.node != gone;
                                if !keep {
                                    gone_members.push(e.member.clone());
                                }
                                keep
                            });
                            r.settle(now);
                            let changed = !gone_members.is_empty();
                            let events = r.options.presence_events;
                            (Ok((gone_members, events)), changed)
                        })
                        .await;
                    match result {
                        Ok((members, true)) => this.leaves(&channel, members).await,
                        Ok(_) => {}
                        Err(e) => tracing::warn!(
                            channel,
                            error = %e,
                            "a dead node's members stay until they expire"
                        ),
                    }
                }
            });
        }
    }

    /// Drops every stored message of `channel`.
    async fn purge(&self, channel: &str) -> Result<(), ChannelError> {
        self.connected()?;
        self.history
            .purge()
            .filter(self.history_subject(channel))
            .await
            .map(drop)
            .map_err(unavailable)
    }

    fn remember(&self, channel: &str, member: &Member, options: ChannelOptions) {
        lock(&self.local).insert(
            (channel.to_owned(), member.session),
            LocalEntry {
                options,
                member: member.clone(),
            },
        );
    }
}

fn channel_from_key(key: &str) -> Option<String> {
    unhex(key.strip_prefix("c.")?)
}

impl Broker for NatsBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        NatsBackend::attach(self, node, sink);
    }

    fn subscribe<'a>(
        &'a self,
        _node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(self.shared.subscribe(channel))
    }

    fn unsubscribe<'a>(
        &'a self,
        _node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            // Dropping the subscriber unsubscribes.
            if let Some(task) = lock(&self.shared.subscriptions).remove(channel) {
                task.abort();
            }
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: Option<HistorySpec>,
    ) -> BoxFuture<'a, Result<Option<Position>, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let Some(spec) = history else {
                return shared.send_live(channel, &publication).await.map(|()| None);
            };
            shared
                .append(channel, &publication, spec, None)
                .await
                .map(|published| published.position)
        })
    }

    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        spec: HistorySpec,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Published, ChannelError>> {
        Box::pin(async move {
            self.shared
                .append(channel, &publication, spec, Some(key))
                .await
        })
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let last = shared.last(channel).await?;
            let (sequence, top, epoch) = match last {
                Some(last) => last,
                None => {
                    let epoch = match shared.record(channel).await? {
                        Some(r) => r.empty_history_epoch(),
                        None => new_epoch(),
                    };
                    (0, 0, epoch)
                }
            };
            let page_top = Some(Position {
                offset: top,
                epoch: epoch.clone(),
            });
            let Some(since) = since else {
                return Ok(HistoryPage {
                    publications: Vec::new(),
                    top: page_top,
                    complete: true,
                });
            };
            let (size, budget) = shared.record(channel).await?.map_or((0, 0), |r| {
                (u64::from(r.options.history_size), r.options.history_bytes)
            });
            let missing = top.saturating_sub(since.offset);
            let mut complete = since.epoch == epoch
                && since.offset <= top
                && missing <= size
                && usize::try_from(missing).is_ok_and(|m| m <= limit);
            // The stream keeps each channel's messages by count and age;
            // the channel's byte budget applies here: a gap holding more
            // bytes than it reaches further back than the history does.
            let mut publications = Vec::new();
            if complete {
                let walk = Walk {
                    sequence,
                    top,
                    epoch: &epoch,
                    budget,
                };
                let (newest_first, whole) = shared
                    .walk_back(walk, |offset, _| offset > since.offset)
                    .await;
                complete = whole;
                publications = newest_first;
            }
            if complete {
                publications.reverse();
            } else {
                publications.clear();
            }
            Ok(HistoryPage {
                publications,
                top: page_top,
                complete,
            })
        })
    }

    fn recent<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let Some((sequence, top, epoch)) = shared.last(channel).await? else {
                let epoch = match shared.record(channel).await? {
                    Some(r) => r.empty_history_epoch(),
                    None => new_epoch(),
                };
                return Ok(HistoryPage {
                    publications: Vec::new(),
                    top: Some(Position { offset: 0, epoch }),
                    complete: true,
                });
            };
            let (size, budget) = shared.record(channel).await?.map_or((0, 0), |r| {
                (u64::from(r.options.history_size), r.options.history_bytes)
            });
            let walk = Walk {
                sequence,
                top,
                epoch: &epoch,
                budget,
            };
            let (mut publications, _) = shared
                .walk_back(walk, |offset, taken| {
                    offset > 0 && top - offset < size && taken < limit
                })
                .await;
            let complete = publications.len() < limit;
            publications.reverse();
            Ok(HistoryPage {
                publications,
                top: Some(Position { offset: top, epoch }),
                complete,
            })
        })
    }

    fn remove_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.purge(channel).await?;
            // History begins again in a new epoch, named now so joins
            // before the next publication see the epoch it will have.
            shared
                .modify(channel, |record, _| match record {
                    Some(r) => {
                        r.epoch = new_epoch();
                        r.epoch_used = false;
                        (Ok(()), true)
                    }
                    None => (Ok(()), false),
                })
                .await
        })
    }
}

impl PresenceStore for NatsBackend {
    fn create<'a>(
        &'a self,
        channel: &'a str,
        options: ChannelOptions,
        mut owner: Member,
        ttl: Duration,
        limits: CreateLimits,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let status = shared.presence.status().await.map_err(unavailable)?;
            // One value per channel (deleted ones count until compacted),
            // and the instance marker.
            let max_channels = limits.max_channels;
            if status.values() > max_channels as u64 {
                return Err(ChannelError::new(
                    ErrorCode::Limit,
                    format!("there are {max_channels} channels, the most allowed"),
                ));
            }
            if let Some(user) = &owner.user {
                shared.check_created(user, limits.max_per_user).await?;
            }
            owner.role = Role::OWNER;
            let ttl = ms(ttl);
            let granted = shared
                .modify(channel, |record, now| {
                    if record.is_some() {
                        return (
                            Err(ChannelError::new(
                                ErrorCode::AlreadyExists,
                                format!("a channel named {channel:?} exists"),
                            )),
                            false,
                        );
                    }
                    let mut r = Record::new(options);
                    if let Some(user) = &owner.user {
                        r.roles.insert(user.clone(), Role::OWNER);
                    }
                    r.creator.clone_from(&owner.user);
                    r.add(owner.clone(), Role::OWNER, now, ttl);
                    *record = Some(r);
                    (Ok(()), true)
                })
                .await;
            granted?;
            shared
                .closed
                .delete(Shared::key(channel))
                .await
                .map_err(unavailable)?;
            if let Some(user) = &owner.user {
                shared.add_created(user, channel).await?;
            }
            // A channel made anew starts a new history.
            shared.purge(channel).await?;
            shared.remember(channel, &owner, options);
            Ok(JoinGrant {
                options,
                role: Role::OWNER,
            })
        })
    }

    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: Member,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let ttl = ms(ttl);
            let grant = shared
                .modify(channel, |record, now| {
                    let Some(r) = record else {
                        return (Err(not_found(channel)), false);
                    };
                    if let Some(user) = &member.user
                        && r.bans.contains_key(user)
                    {
                        return (
                            Err(ChannelError::new(
                                ErrorCode::Banned,
                                format!("banned from {channel:?}"),
                            )),
                            false,
                        );
                    }
                    if let Some(entry) = r
                        .members
                        .iter_mut()
                        .find(|e| e.member.session == member.session)
                    {
                        entry.expires = now + ttl;
                        let role = entry.member.role.clone();
                        return (
                            Ok(JoinGrant {
                                options: r.options,
                                role,
                            }),
                            true,
                        );
                    }
                    if r.members.len() >= r.options.max_participants as usize {
                        return (
                            Err(ChannelError::new(
                                ErrorCode::Full,
                                format!("{channel:?} is full"),
                            )),
                            false,
                        );
                    }
                    let role = member
                        .user
                        .as_ref()
                        .and_then(|u| r.roles.get(u).cloned())
                        .unwrap_or(Role::PARTICIPANT);
                    r.add(member.clone(), role.clone(), now, ttl);
                    (
                        Ok(JoinGrant {
                            options: r.options,
                            role,
                        }),
                        true,
                    )
                })
                .await?;
            shared.remember(channel, &member, grant.options);
            Ok(grant)
        })
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        session: SessionId,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, now| match record {
                    Some(r) => {
                        let removed = r.remove(now, |m| m.session == session);
                        (Ok(()), removed > 0)
                    }
                    None => (Ok(()), false),
                })
                .await
        })
    }

    fn refresh<'a>(
        &'a self,
        node: NodeId,
        entries: &'a [(String, SessionId)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let ttl = ms(ttl);
            let mut by_channel: BTreeMap<&str, Vec<SessionId>> = BTreeMap::new();
            for (channel, session) in entries {
                by_channel.entry(channel).or_default().push(*session);
            }
            lock(&shared.local).retain(|(channel, session), _| {
                by_channel
                    .get(channel.as_str())
                    .is_some_and(|s| s.contains(session))
            });
            let restore = shared.restore.swap(false, Ordering::Relaxed);
            let mut result = Ok(());
            for (channel, sessions) in &by_channel {
                let local: Vec<LocalEntry> = if restore {
                    let local = lock(&shared.local);
                    sessions
                        .iter()
                        .filter_map(|s| local.get(&((*channel).to_owned(), *s)).cloned())
                        .collect()
                } else {
                    Vec::new()
                };
                if !local.is_empty() && shared.closed_lately(channel).await? {
                    shared.missed(ControlMessage::Closed {
                        channel: (*channel).to_owned(),
                    });
                    continue;
                }
                let refreshed = shared
                    .modify(channel, |record, now| {
                        if record.is_none() && !local.is_empty() {
                            *record = Some(Record::new(local[0].options));
                        }
                        let Some(r) = record else {
                            return (Ok((Vec::new(), Vec::new())), false);
                        };
                        let mut changed = false;
                        for entry in &mut r.members {
                            if entry.member.node == node && sessions.contains(&entry.member.session)
                            {
                                entry.expires = now + ttl;
                                changed = true;
                            }
                        }
                        // Written back unless kicked or banned meanwhile.
                        let (mut kicked, mut barred) = (Vec::new(), Vec::new());
                        for entry in &local {
                            let session = entry.member.session;
                            if r.members.iter().any(|e| e.member.session == session) {
                                continue;
                            }
                            if r.kicked.contains_key(&session) {
                                kicked.push(session);
                                continue;
                            }
                            let user = entry.member.user.as_ref();
                            if user.is_some_and(|user| r.bans.contains_key(user)) {
                                barred.push(session);
                                continue;
                            }
                            let role = entry.member.role.clone();
                            if let Some(user) = user
                                && role != Role::PARTICIPANT
                            {
                                r.roles.entry(user.clone()).or_insert(role.clone());
                            }
                            r.add(entry.member.clone(), role, now, ttl);
                            changed = true;
                        }
                        (Ok((kicked, barred)), changed)
                    })
                    .await;
                let refreshed = refreshed.map(|(kicked, barred)| {
                    for (sessions, reason) in [(kicked, Removal::Kicked), (barred, Removal::Banned)]
                    {
                        for session in sessions {
                            shared.missed(ControlMessage::Remove {
                                channel: (*channel).to_owned(),
                                target: Target::Session(session),
                                reason,
                            });
                        }
                    }
                });
                if let Err(e) = refreshed {
                    result = Err(e);
                }
            }
            if restore && result.is_err() {
                shared.restore.store(true, Ordering::Relaxed);
            }
            result
        })
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Roster, ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, _| match record {
                    None => (Err(not_found(channel)), false),
                    Some(r) => (
                        Ok(Roster {
                            total: r.members.len(),
                            members: r
                                .members
                                .iter()
                                .take(limit)
                                .map(|e| e.member.clone())
                                .collect(),
                        }),
                        false,
                    ),
                })
                .await
        })
    }

    fn channel<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<ChannelSummary>, ChannelError>> {
        Box::pin(async move {
            self.shared.connected()?;
            Ok(self
                .shared
                .record(channel)
                .await?
                .map(|r| r.summary(channel)))
        })
    }

    fn channels(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ChannelSummary>, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let mut keys = shared.presence.keys().await.map_err(unavailable)?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                if let Some(name) = key.ok().as_deref().and_then(channel_from_key) {
                    names.push(name);
                }
            }
            names.sort();
            let mut out = Vec::new();
            for name in names {
                if out.len() >= limit {
                    break;
                }
                if let Some(record) = shared.record(&name).await? {
                    out.push(record.summary(&name));
                }
            }
            Ok(out)
        })
    }

    fn kick<'a>(
        &'a self,
        channel: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<usize, ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, now| match record {
                    None => (Err(not_found(channel)), false),
                    Some(r) => {
                        let kicked: Vec<SessionId> = r
                            .members
                            .iter()
                            .filter(|e| target.matches(e.member.session, e.member.user.as_deref()))
                            .map(|e| e.member.session)
                            .collect();
                        r.remove(now, |m| kicked.contains(&m.session));
                        let until = now + ms(TOMBSTONE_KEPT);
                        r.kicked.extend(kicked.iter().map(|s| (*s, until)));
                        (Ok(kicked.len()), !kicked.is_empty())
                    }
                })
                .await
        })
    }

    fn ban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        duration: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, now| {
                    let Some(r) = record else {
                        return (Err(not_found(channel)), false);
                    };
                    if r.bans.len() >= MAX_BANS_PER_CHANNEL && !r.bans.contains_key(user) {
                        return (
                            Err(ChannelError::new(
                                ErrorCode::Limit,
                                format!(
                                    "{channel:?} has {MAX_BANS_PER_CHANNEL} bans, the most allowed"
                                ),
                            )),
                            false,
                        );
                    }
                    let until = duration.map_or(0, |d| now.saturating_add(ms(d)));
                    r.bans.insert(user.to_owned(), until);
                    r.remove(now, |m| m.user.as_deref() == Some(user));
                    (Ok(()), true)
                })
                .await
        })
    }

    fn unban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, _| {
                    let removed = record
                        .as_mut()
                        .is_some_and(|r| r.bans.remove(user).is_some());
                    match removed {
                        true => (Ok(()), true),
                        false => (Err(super::not_banned(channel, user)), false),
                    }
                })
                .await
        })
    }

    fn set_role<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        role: &'a Role,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, _| {
                    let Some(r) = record else {
                        return (Err(not_found(channel)), false);
                    };
                    if *role == Role::PARTICIPANT {
                        r.roles.remove(user);
                    } else {
                        if r.roles.len() >= MAX_ROLES_PER_CHANNEL && !r.roles.contains_key(user) {
                            return (
                                Err(ChannelError::new(
                                    ErrorCode::Limit,
                                    format!(
                                        "{channel:?} has {MAX_ROLES_PER_CHANNEL} roles given, the most allowed"
                                    ),
                                )),
                                false,
                            );
                        }
                        r.roles.insert(user.to_owned(), role.clone());
                    }
                    for entry in &mut r.members {
                        if entry.member.user.as_deref() == Some(user) {
                            entry.member.role = role.clone();
                        }
                    }
                    (Ok(()), true)
                })
                .await
        })
    }

    fn delete<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared
                .modify(channel, |record, _| {
                    let existed = record.take().is_some();
                    (Ok(()), existed)
                })
                .await?;
            // So that a node cut off meanwhile does not write its members
            // back into a channel its owner closed (the bucket forgets it
            // after `TOMBSTONE_KEPT`).
            shared
                .closed
                .put(Shared::key(channel), bytes::Bytes::from_static(b"1"))
                .await
                .map(drop)
                .map_err(unavailable)
        })
    }

    fn standing<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Standing, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            // `record` drops expired bans and members.
            let record = shared
                .record(channel)
                .await?
                .ok_or_else(|| not_found(channel))?;
            Ok(Standing {
                role: record.roles.get(user).cloned().unwrap_or(Role::PARTICIPANT),
                banned: record.bans.contains_key(user),
            })
        })
    }
}

impl Controller for NatsBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        NatsBackend::attach(self, node, sink);
    }

    fn broadcast(&self, message: ControlMessage) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let wire = shared.control.message(shared.me()?, message);
            shared.publish_control(wire).await
        })
    }

    fn request(
        &self,
        message: ControlMessage,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Reach, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared
                .control
                .request(shared.me()?, message, wait, |wire| {
                    shared.publish_control(wire)
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_subject_tokens_and_back() {
        for name in ["room", "a:b@c/d=e.f", "$topic:clock"] {
            let token = hex(name);
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(channel_from_key(&Shared::key(name)).as_deref(), Some(name));
        }
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn the_password_stays_out_of_debug() {
        let key = ClusterKey::new("a cluster key of at least 32 bytes!").unwrap();
        let config = NatsConfig::new("nats://me:hunter2@n1:4222", key);
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
