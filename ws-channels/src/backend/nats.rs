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
//!   apply when history is read. Every message carries the channel's
//!   end-to-end group epoch (`Ws-Group-Epoch`), so a commit is published
//!   only at the epoch the newest message names, under the same
//!   last-sequence check ([`Broker::publish_commit`]).
//! - **Key packages**: one JSON entry per user in the bucket
//!   `<prefix>-keys`, changed by compare-and-set on its revision, kept 30
//!   days after the last upload or claim.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv, stream};
use async_nats::{Client, HeaderMap};
use futures_lite::StreamExt;
use serde::{Deserialize, Serialize};

use super::admission::{Admission, Seat, admit};
use super::cluster::{
    Attempt, ClusterNode, NodeState, TOMBSTONE_KEPT, digest_hex, leave, lock, ms, new_epoch,
    redact, to_hex, with_backoff,
};
use super::memory::{MAX_BANS_PER_CHANNEL, MAX_ROLES_PER_CHANNEL};
use super::{
    BoxFuture, Broker, ChannelDirectory, ClusterKey, Controller, CreateLimits, IDEMPOTENCY_WINDOW,
    Presence, Published, Reach, Sink, Standing, group_conflict,
};
use crate::types::TOPIC_PREFIX;
use crate::types::{
    ChannelError, ChannelOptions, ChannelRole, ChannelSummary, ControlMessage, ErrorCode,
    HistoryPage, HistorySpec, JoinGrant, Member, NodeId, Position, Publication, Removal, Roster,
    SessionId, Target,
};

mod broker;
mod entry;
mod history;
mod key_packages;
mod record;
mod store;

use record::Record;

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
/// How long a user's key packages are kept after their last upload or
/// claim (the bucket's age limit; each package's own lifetime applies
/// too).
const KEYS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

const OFFSET: &str = "Ws-Offset";
const EPOCH: &str = "Ws-Epoch";
const EXPIRES: &str = "Ws-Expires";
const PREVIOUS: &str = "Ws-Previous";
/// The channel's end-to-end group epoch after the message
/// ([`Broker::publish_commit`]).
const GROUP_EPOCH: &str = "Ws-Group-Epoch";

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
    /// Per user, its devices' key packages, for [`KEYS_KEPT`] after the
    /// last change.
    keys: kv::Store,
    /// Per channel, the newest GroupInfo a commit came with.
    groups: kv::Store,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Per subscribed channel or topic, the task that delivers it.
    subscriptions: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    node: NodeState<LocalEntry>,
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
        let keys = bucket(&jetstream, &format!("{prefix}-keys"), KEYS_KEPT).await?;
        let groups = bucket(&jetstream, &format!("{prefix}-groups"), KEYS_KEPT).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                history,
                presence,
                created,
                closed,
                keys,
                groups,
                tasks: Mutex::new(Vec::new()),
                subscriptions: Mutex::new(HashMap::new()),
                events: Mutex::new(Some(events_rx)),
                node: NodeState::new("nats", config.cluster_key.clone(), config.heartbeat),
                config,
            }),
        })
    }

    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        if !self.shared.node.attach(node, sink.clone()) {
            return;
        }
        if let Some(task) =
            super::cluster::spawn_listener("nats", Shared::listen(self.shared.clone(), node, sink))
        {
            lock(&self.shared.tasks).push(task);
        }
    }
}

impl ClusterNode for Shared {
    type Entry = LocalEntry;

    fn node_state(&self) -> &NodeState<LocalEntry> {
        &self.node
    }

    fn heartbeat_every(&self) -> Duration {
        self.config.heartbeat
    }

    async fn send_control(&self, wire: String) -> Result<(), ChannelError> {
        self.connected()?;
        self.client
            .publish(self.control_subject(), wire.into())
            .await
            .map_err(unavailable)
    }

    fn hosted_channels(&self) -> Vec<String> {
        lock(&self.subscriptions)
            .keys()
            .filter(|c| !c.starts_with(TOPIC_PREFIX))
            .cloned()
            .collect()
    }

    async fn reap(&self, channel: &str, gone: NodeId) -> Result<(), ChannelError> {
        let (members, presence_events) = self
            .modify(channel, |record, now| {
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
            .await?;
        if presence_events {
            self.leaves(channel, members).await;
        }
        Ok(())
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

    async fn subscribe(self: &Arc<Self>, channel: &str) -> Result<(), ChannelError> {
        self.connected()?;
        let Some(sink) = self.node.sink() else {
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
                    super::cluster::on_control(&self, node, &message.payload, sink.as_ref());
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
                            self.node.interrupted();
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
                _ = beat.tick() => super::cluster::beat(&self, node).await,
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

    fn remember(&self, channel: &str, member: &Member, options: ChannelOptions) {
        self.node.remember(
            channel,
            member.session,
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
