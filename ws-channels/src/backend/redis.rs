//! A cluster backend on Redis (feature `redis`): broker, presence store
//! and controller for any number of nodes sharing one Redis.
//!
//! - **Publications**: one Redis PUB/SUB channel per channel or topic,
//!   subscribed by a node only while it has local participants there.
//!   A publication to a channel with history is appended to a Redis Stream
//!   (`MAXLEN` the channel's history size; each entry carries its expiry)
//!   and published by one Lua script, so offsets and delivery order agree
//!   on every node. The same script publishes an end-to-end group's commit
//!   only at the group epoch kept in the channel's metadata, and moves it
//!   on ([`Broker::publish_commit`]).
//! - **Key packages**: one JSON value per user (`{prefix}:keys:<hex>`),
//!   changed by a compare-and-set script, living until its last package
//!   expires.
//! - **Presence**: per channel a sorted set of members in join order, a
//!   sorted set of expiries on the Redis clock, and hashes of member data,
//!   roles and bans; joins check existence, bans and capacity in one
//!   script. Every key of a channel lives while its members are refreshed,
//!   then the channel's linger, so a deployment whose nodes all stopped
//!   leaves nothing behind. All keys of a channel share a hash tag
//!   (`{prefix}:{<channel>}:...`) for Redis Cluster; the list of channel
//!   names is one key besides.
//! - **Control**: one PUB/SUB channel carries kicks, bans, role changes,
//!   disconnects and every node's heartbeat. A node silent for three and
//!   a half heartbeats is taken for dead: the nodes sharing its channels remove
//!   its members, and expired members are removed whenever a channel's
//!   presence is touched; each removal is one script, so exactly one node
//!   publishes the `leave` event (channels with presence events).
//! - **Failures**: [`RedisBackend::connect`] retries with backoff until
//!   [`RedisConfig::connect_timeout`]. While running, a lost connection is
//!   re-established in the background with backoff: every subscription the
//!   node still needs is made again in one `SUBSCRIBE`, the node is told
//!   ([`Sink::interrupted`]) so its sessions get `lost` events and can
//!   recover from history, and if Redis lost its data (a restart without
//!   persistence, noticed by a marker key) the node writes its members
//!   back. Meanwhile local traffic goes on; commands that need Redis fail
//!   with [`ErrorCode::Unavailable`], publishes included.
//!
//! The backend runs on tokio: build [`Channels`](crate::Channels) with it
//! inside a tokio runtime.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink};
use redis::{Client, Script, Value as Reply};
use serde::{Deserialize, Serialize};

use super::admission;
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
mod key_packages;
mod scripts;
mod store;

use scripts::Scripts;

/// How to reach Redis and how to behave towards it.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` (or `rediss://` with
    /// TLS).
    pub url: String,
    /// Put before every key and PUB/SUB channel, so deployments can share
    /// a Redis. Default `"ws"`. No `{` or `}`.
    pub prefix: String,
    /// How often a node says it is alive; a node silent for three and a half is taken
    /// for dead. Default 2 s.
    pub heartbeat: Duration,
    /// How long [`RedisBackend::connect`] keeps trying. Default 30 s.
    pub connect_timeout: Duration,
    /// How long one command may take before it fails with
    /// [`ErrorCode::Unavailable`]. Default 5 s.
    pub command_timeout: Duration,
    /// The cluster's shared secret, which signs control messages (see
    /// [`ClusterKey`]).
    pub cluster_key: ClusterKey,
    /// A CA certificate (PEM) to trust for `rediss://` instead of the
    /// system's roots: for a Redis whose certificate a private CA signed.
    pub tls_ca: Option<Vec<u8>>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("tls_ca", &self.tls_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// The defaults, for the Redis at `url`, with the cluster's key.
    pub fn new(url: impl Into<String>, cluster_key: ClusterKey) -> Self {
        Self {
            url: url.into(),
            prefix: "ws".into(),
            heartbeat: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(5),
            cluster_key,
            tls_ca: None,
        }
    }

    /// Trusts this CA certificate (PEM) for `rediss://` instead of the
    /// system's roots.
    pub fn tls_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }
}

super::cluster::shared_settings!(RedisConfig);

/// What this node added to presence, to write back if Redis loses it.
#[derive(Clone)]
struct LocalEntry {
    options: String,
    info: String,
    role: String,
    user: String,
}

/// Broker, presence store and controller on Redis. Make it with
/// [`connect`](Self::connect) and hand it to
/// [`Backends::shared`](crate::Backends::shared).
pub struct RedisBackend {
    shared: Arc<Shared>,
}

struct Shared {
    config: RedisConfig,
    client: Client,
    conn: ConnectionManager,
    scripts: Scripts,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Channels and `$topic:` keys this node is subscribed to.
    topics: Mutex<BTreeSet<String>>,
    /// The live PUB/SUB connection's command half, `None` while down.
    pubsub: tokio::sync::watch::Sender<Option<PubSubSink>>,
    /// The presence TTL the manager last asked for, in ms.
    ttl_ms: AtomicU64,
    node: NodeState<LocalEntry>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.shared.task).take() {
            task.abort();
        }
    }
}

/// Whether Redis refused the connection's credentials (a wrong password,
/// an unknown or disabled ACL user).
fn refuses_credentials(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    matches!(error.kind(), redis::ErrorKind::AuthenticationFailed)
        || text.contains("WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("NOPERM")
}

fn unavailable(error: impl fmt::Display) -> ChannelError {
    ChannelError::unavailable(format!("redis: {error}"))
}

fn not_found(channel: &str) -> ChannelError {
    ChannelError::new(ErrorCode::NotFound, format!("no channel named {channel:?}"))
}

fn text(reply: &Reply) -> String {
    match reply {
        Reply::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Reply::SimpleString(s) => s.clone(),
        Reply::Int(n) => n.to_string(),
        Reply::Okay => "OK".into(),
        _ => String::new(),
    }
}

fn int(reply: &Reply) -> u64 {
    match reply {
        Reply::Int(n) => u64::try_from(*n).unwrap_or(0),
        other => text(other).parse().unwrap_or(0),
    }
}

fn items(reply: &Reply) -> &[Reply] {
    match reply {
        Reply::Array(items) | Reply::Set(items) => items,
        _ => &[],
    }
}

fn at(reply: &[Reply], index: usize) -> &Reply {
    reply.get(index).unwrap_or(&Reply::Nil)
}

/// A user as the scripts store it: empty for none, `=name` for a name.
fn user_field(user: Option<&str>) -> String {
    user.map(|u| format!("={u}")).unwrap_or_default()
}

/// What travels on a channel's PUB/SUB channel.
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    o: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    p: Publication,
}

impl RedisBackend {
    /// Connects to Redis, trying again with backoff (100 ms doubling to
    /// 5 s, each failure logged) until `config.connect_timeout`, then
    /// failing with [`ErrorCode::Unavailable`] and the last error. A URL
    /// that is not a Redis URL fails at once with
    /// [`ErrorCode::BadRequest`].
    pub async fn connect(config: RedisConfig) -> Result<Self, ChannelError> {
        if config.prefix.contains(['{', '}']) {
            return Err(ChannelError::new(
                ErrorCode::BadRequest,
                "the Redis key prefix may not contain { or }",
            ));
        }
        let client = match &config.tls_ca {
            None => Client::open(config.url.as_str()),
            Some(ca) => Client::build_with_tls(
                config.url.as_str(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            ),
        }
        .map_err(|e| {
            ChannelError::new(
                ErrorCode::BadRequest,
                format!("not a Redis URL: {}: {e}", redact(&config.url)),
            )
        })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.command_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = with_backoff("Redis", &config.url, config.connect_timeout, || async {
            let attempt = async {
                let mut conn = client
                    .get_connection_manager_with_config(manager.clone())
                    .await?;
                redis::cmd("PING").query_async::<()>(&mut conn).await?;
                Ok::<_, redis::RedisError>(conn)
            };
            match tokio::time::timeout(config.command_timeout, attempt).await {
                Ok(Ok(conn)) => Ok(conn),
                // Wrong credentials will not get better by trying again.
                Ok(Err(e)) if refuses_credentials(&e) => Err(Attempt::Fatal(format!(
                    "Redis at {} refused the credentials: {e}",
                    redact(&config.url)
                ))),
                Ok(Err(e)) => Err(Attempt::Retry(e.to_string())),
                Err(_) => Err(Attempt::Retry(format!(
                    "no answer within {:?}",
                    config.command_timeout
                ))),
            }
        })
        .await?;
        let (pubsub, _) = tokio::sync::watch::channel(None);
        Ok(Self {
            shared: Arc::new(Shared {
                client,
                conn,
                scripts: Scripts::new(),
                task: Mutex::new(None),
                topics: Mutex::new(BTreeSet::new()),
                pubsub,
                ttl_ms: AtomicU64::new(60_000),
                node: NodeState::new("redis", config.cluster_key.clone(), config.heartbeat),
                config,
            }),
        })
    }

    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        if !self.shared.node.attach(node, sink.clone()) {
            return;
        }
        if let Some(task) =
            super::cluster::spawn_listener("redis", Shared::listen(self.shared.clone(), node, sink))
        {
            *lock(&self.shared.task) = Some(task);
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
        self.command::<()>(redis::cmd("PUBLISH").arg(self.control_channel()).arg(wire))
            .await
    }

    fn hosted_channels(&self) -> Vec<String> {
        lock(&self.topics)
            .iter()
            .filter(|t| !t.starts_with(TOPIC_PREFIX))
            .cloned()
            .collect()
    }

    async fn reap(&self, channel: &str, gone: NodeId) -> Result<(), ChannelError> {
        let args = [gone.0.to_string(), self.ttl().to_string()];
        self.membership(&self.scripts.reap_node, channel, &args)
            .await
            .map(drop)
    }
}

impl Shared {
    fn key(&self, channel: &str, part: &str) -> String {
        format!("{}:{{{channel}}}:{part}", self.config.prefix)
    }

    /// The ten keys of a channel, in the scripts' order (`prelude.lua`).
    fn keys(&self, channel: &str) -> [String; 10] {
        [
            "meta", "mem", "exp", "info", "who", "roles", "bans", "hist", "kicked", "closed",
        ]
        .map(|part| self.key(channel, part))
    }

    fn pubsub_channel(&self, channel: &str) -> String {
        format!("{}:pub:{channel}", self.config.prefix)
    }

    fn control_channel(&self) -> String {
        format!("{}:control", self.config.prefix)
    }

    fn index(&self) -> String {
        format!("{}:channels", self.config.prefix)
    }

    fn ttl(&self) -> u64 {
        self.ttl_ms.load(Ordering::Relaxed)
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs a script on `channel`'s eight keys.
    async fn on_channel(
        &self,
        script: &Script,
        channel: &str,
        args: &[String],
    ) -> Result<Reply, ChannelError> {
        let mut invocation = script.prepare_invoke();
        for key in self.keys(channel) {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn();
        invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// Runs a script that may remove expired members (its reply starts
    /// with a status, the channel's options and the members removed),
    /// sends their `leave` events, and turns a refusal into its error.
    async fn membership(
        &self,
        script: &Script,
        channel: &str,
        args: &[String],
    ) -> Result<Vec<Reply>, ChannelError> {
        let reply = self.on_channel(script, channel, args).await?;
        let Reply::Array(reply) = reply else {
            return Err(ChannelError::unavailable(
                "redis: a script answered wrongly",
            ));
        };
        self.leaves(channel, &text(at(&reply, 1)), at(&reply, 2))
            .await;
        match text(at(&reply, 0)).as_str() {
            "ok" | "gone" => Ok(reply),
            status => Err(self.refused(status, channel)),
        }
    }

    async fn command<T: redis::FromRedisValue>(
        &self,
        command: &redis::Cmd,
    ) -> Result<T, ChannelError> {
        let mut conn = self.conn();
        command.query_async(&mut conn).await.map_err(unavailable)
    }

    /// Publishes `leave` events for members a script removed, if the
    /// channel has presence events.
    async fn leaves(&self, channel: &str, options: &str, reaped: &Reply) {
        let reaped = items(reaped);
        if reaped.is_empty() {
            return;
        }
        let members = self.node.expired(
            reaped
                .iter()
                .filter_map(|info| serde_json::from_str::<Member>(&text(info)).ok())
                .collect(),
        );
        let presence_events = serde_json::from_str::<ChannelOptions>(options)
            .is_ok_and(|options| options.presence_events);
        if !presence_events {
            return;
        }
        for member in members {
            if let Err(e) = self.send_publication(channel, leave(member)).await {
                tracing::warn!(channel, error = %e, "a leave event for an expired member was not sent");
            }
        }
    }

    async fn send_publication(
        &self,
        channel: &str,
        publication: Publication,
    ) -> Result<(), ChannelError> {
        let wire = Wire {
            o: None,
            e: None,
            p: publication,
        };
        let text = serde_json::to_string(&wire).map_err(unavailable)?;
        self.command::<()>(
            redis::cmd("PUBLISH")
                .arg(self.pubsub_channel(channel))
                .arg(text),
        )
        .await
    }

    /// Waits (up to the command timeout) for the PUB/SUB connection.
    async fn pubsub(&self) -> Result<PubSubSink, ChannelError> {
        let mut watch = self.pubsub.subscribe();
        let ready =
            tokio::time::timeout(self.config.command_timeout, watch.wait_for(Option::is_some))
                .await;
        match ready {
            Ok(Ok(sink)) => Ok(sink.clone().expect("waited for Some")),
            _ => Err(ChannelError::unavailable(
                "redis: no PUB/SUB connection (reconnecting)",
            )),
        }
    }

    /// Keeps the PUB/SUB connection up for as long as the backend lives:
    /// delivers what arrives, beats, notices dead peers, reconnects.
    async fn listen(self: Arc<Self>, node: NodeId, sink: Arc<dyn Sink>) {
        let mut first = true;
        let mut delay = Duration::from_millis(100);
        let mut instance: Option<String> = None;
        loop {
            let mut channels = vec![self.control_channel()];
            channels.extend(
                lock(&self.topics)
                    .iter()
                    .map(|topic| self.pubsub_channel(topic)),
            );
            let connect = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&channels).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = match tokio::time::timeout(self.config.command_timeout, connect).await {
                Ok(Ok(pubsub)) => pubsub,
                failed => {
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => "no answer".into(),
                    };
                    tracing::warn!(%error, retry_in = ?delay, "Redis PUB/SUB unreachable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let connected = Instant::now();
            let (commands, mut messages) = pubsub.split();
            self.pubsub.send_replace(Some(commands.clone()));
            if !first {
                // What this node holds is written back whether or not Redis
                // lost it (a peer may have taken it for dead meanwhile).
                self.node.interrupted();
            }
            let marker = self.instance().await;
            if !first {
                let lost_data = match (&instance, &marker) {
                    (Some(before), Some(now)) => before != now,
                    _ => true,
                };
                tracing::info!(
                    subscriptions = channels.len(),
                    lost_data,
                    "Redis PUB/SUB connection restored"
                );
            }
            if marker.is_some() {
                instance = marker;
            }
            first = false;
            let mut beat = tokio::time::interval(self.config.heartbeat);
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        self.deliver(node, &sink, &message);
                    }
                    _ = beat.tick() => {
                        super::cluster::beat(&self, node).await;
                        let mut ping = commands.clone();
                        let alive = tokio::time::timeout(
                            self.config.command_timeout,
                            ping.ping::<Reply>(),
                        )
                        .await;
                        if !matches!(alive, Ok(Ok(_))) {
                            break;
                        }
                    }
                }
            }
            self.pubsub.send_replace(None);
            tracing::warn!("Redis PUB/SUB connection lost; reconnecting");
            // A connection that keeps failing at once is retried with
            // backoff too.
            if connected.elapsed() > Duration::from_secs(10) {
                delay = Duration::from_millis(100);
            } else {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }

    /// The marker key that tells whether Redis kept its data: set once by
    /// the first node to look, gone after a restart without persistence.
    async fn instance(&self) -> Option<String> {
        let key = format!("{}:instance", self.config.prefix);
        // The command connection reconnects on its own first error.
        for _ in 0..5 {
            let set = self
                .command::<()>(redis::cmd("SET").arg(&key).arg(new_epoch()).arg("NX"))
                .await;
            if set.is_ok()
                && let Ok(value) = self.command::<String>(redis::cmd("GET").arg(&key)).await
            {
                return Some(value);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn deliver(self: &Arc<Self>, node: NodeId, sink: &Arc<dyn Sink>, message: &redis::Msg) {
        let name = message.get_channel_name();
        let payload = message.get_payload_bytes();
        if name == self.control_channel() {
            super::cluster::on_control(self, node, payload, sink.as_ref());
            return;
        }
        let prefix = format!("{}:pub:", self.config.prefix);
        let Some(channel) = name.strip_prefix(&prefix) else {
            return;
        };
        match serde_json::from_slice::<Wire>(payload) {
            Ok(Wire { o, e, mut p }) => {
                if let (Some(offset), Some(epoch)) = (o, e) {
                    p.position = Some(Position { offset, epoch });
                }
                sink.publication(channel, &p);
            }
            Err(e) => tracing::warn!(channel, error = %e, "an unreadable publication"),
        }
    }

    /// Appends `publication` to `channel`'s history and publishes it, in
    /// one script; with an idempotency `key`, only if no publish with the
    /// key was made in the last [`IDEMPOTENCY_WINDOW`].
    async fn append(
        &self,
        channel: &str,
        publication: &Publication,
        spec: HistorySpec,
        key: Option<&str>,
        group_epoch: Option<u64>,
        group_info: Option<&str>,
    ) -> Result<Published, ChannelError> {
        let json = serde_json::to_string(publication).map_err(unavailable)?;
        let mut invocation = self.scripts.publish.prepare_invoke();
        invocation
            .key(self.key(channel, "meta"))
            .key(self.key(channel, "hist"))
            .arg(json)
            .arg(spec.size)
            .arg(ms(spec.ttl))
            .arg(self.pubsub_channel(channel))
            .arg(spec.max_bytes)
            .arg(ms(IDEMPOTENCY_WINDOW))
            .arg(group_epoch.map_or_else(String::new, |e| e.to_string()))
            .arg(group_info.unwrap_or_default());
        if let Some(key) = key {
            // Hashed: bounded in length, and no user name in key names.
            let digest = digest_hex(&[key]);
            invocation.key(self.key(channel, &format!("once:{digest}")));
        }
        let mut conn = self.conn();
        let reply: Reply = invocation
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let reply = items(&reply);
        let status = text(at(reply, 0));
        let position = Position {
            offset: int(at(reply, 1)),
            epoch: text(at(reply, 2)),
        };
        match status.as_str() {
            "ok" | "duplicate" => Ok(Published {
                position: Some(position),
                duplicate: status == "duplicate",
            }),
            "conflict" => Err(group_conflict(
                channel,
                position.offset,
                group_epoch.unwrap_or_default(),
            )),
            status => Err(self.refused(status, channel)),
        }
    }

    /// A script's refusal as an error. A channel this node has members
    /// in cannot be missing: Redis lost it (a restart without its data, an
    /// eviction), so the answer is `unavailable`, not `not_found`, and the
    /// node writes its members back and tells them at once (once, until
    /// the next refresh has done so).
    fn refused(&self, status: &str, channel: &str) -> ChannelError {
        if status != "not_found" || !self.node.holds(channel) {
            return status_error(status, channel);
        }
        if self.node.write_back_later() {
            tracing::warn!(
                channel,
                "Redis lost a channel this node has members in: writing them back"
            );
            if let Some(sink) = self.node.sink() {
                sink.interrupted();
            }
        }
        ChannelError::unavailable(format!(
            "redis: {channel:?} is missing from Redis (restarted without its data?); \
             this node is writing its members back, retry"
        ))
    }

    fn remember(
        &self,
        channel: &str,
        member: &Member,
        options: &ChannelOptions,
        role: &ChannelRole,
    ) {
        let (Ok(info), Ok(options)) = (
            serde_json::to_string(member),
            serde_json::to_string(options),
        ) else {
            return;
        };
        self.node.remember(
            channel,
            member.session,
            LocalEntry {
                options,
                info,
                role: role.as_str().to_owned(),
                user: user_field(member.user.as_deref()),
            },
        );
    }

    async fn refresh_channel(
        &self,
        node: NodeId,
        channel: &str,
        sessions: &[SessionId],
        ttl: u64,
        restore: bool,
    ) -> Result<(), ChannelError> {
        let mut args = vec![node.0.to_string(), ttl.to_string()];
        args.extend(sessions.iter().map(SessionId::to_string));
        let reply = self
            .membership(&self.scripts.refresh, channel, &args)
            .await?;
        let reply = &reply[..];
        if !restore {
            return Ok(());
        }
        let missing: Vec<SessionId> = if text(at(reply, 0)) == "gone" {
            sessions.to_vec()
        } else {
            items(at(reply, 3))
                .iter()
                .filter_map(|s| text(s).parse().ok())
                .collect()
        };
        let entries = self.node.entries(channel, &missing);
        let Some((_, first)) = entries.first() else {
            return Ok(());
        };
        let mut args = vec![first.options.clone(), new_epoch(), ttl.to_string()];
        for (session, entry) in &entries {
            args.extend([
                session.to_string(),
                entry.info.clone(),
                node.0.to_string(),
                entry.role.clone(),
                entry.user.clone(),
            ]);
        }
        let reply = self
            .on_channel(&self.scripts.restore, channel, &args)
            .await?;
        let reply = items(&reply);
        if text(at(reply, 0)) == "closed" {
            self.node.missed(ControlMessage::Closed {
                channel: channel.to_owned(),
            });
            return Ok(());
        }
        let sessions = |reply: &Reply| -> Vec<SessionId> {
            items(reply)
                .iter()
                .filter_map(|s| text(s).parse().ok())
                .collect()
        };
        for (removed, reason) in [
            (sessions(at(reply, 2)), Removal::Kicked),
            (sessions(at(reply, 3)), Removal::Banned),
        ] {
            for session in removed {
                self.node.missed(ControlMessage::Remove {
                    channel: channel.to_owned(),
                    target: Target::Session(session),
                    reason,
                });
            }
        }
        self.command::<()>(redis::cmd("ZADD").arg(self.index()).arg(0).arg(channel))
            .await?;
        tracing::info!(
            channel,
            restored = int(at(reply, 1)),
            "presence written back"
        );
        Ok(())
    }

    async fn summary(&self, channel: &str) -> Result<Option<ChannelSummary>, ChannelError> {
        let reply = self.on_channel(&self.scripts.summary, channel, &[]).await?;
        let reply = items(&reply);
        if reply.is_empty() {
            return Ok(None);
        }
        let options = serde_json::from_str(&text(at(reply, 0))).map_err(unavailable)?;
        Ok(Some(ChannelSummary {
            name: channel.to_owned(),
            options,
            members: usize::try_from(int(at(reply, 1))).unwrap_or(usize::MAX),
        }))
    }

    /// The set of channels `user` created (names, some perhaps gone).
    fn created_key(&self, user: &str) -> String {
        format!("{}:created:{}", self.config.prefix, to_hex(user.as_bytes()))
    }

    /// Fails with `limit` when `user` has created `max` channels that
    /// still exist; the set loses the ones that do not (gone, or made
    /// anew by someone else) first.
    async fn check_created(&self, user: &str, max: usize) -> Result<(), ChannelError> {
        let key = self.created_key(user);
        let count: usize = self.command(redis::cmd("SCARD").arg(&key)).await?;
        if count < max {
            return Ok(());
        }
        let names: Vec<String> = self.command(redis::cmd("SMEMBERS").arg(&key)).await?;
        let mine = user_field(Some(user));
        let mut alive = 0;
        for name in names {
            let creator: Option<String> = self
                .command(
                    redis::cmd("HGET")
                        .arg(self.key(&name, "meta"))
                        .arg("creator"),
                )
                .await?;
            if creator.as_deref() == Some(mine.as_str()) {
                alive += 1;
            } else {
                self.command::<()>(redis::cmd("SREM").arg(&key).arg(&name))
                    .await?;
            }
        }
        if alive >= max {
            return Err(super::too_many_owned(max));
        }
        Ok(())
    }

    /// Drops names of channels that are gone from the index.
    async fn prune_index(&self) -> Result<(), ChannelError> {
        let names: Vec<String> = self
            .command(redis::cmd("ZRANGE").arg(self.index()).arg(0).arg(-1))
            .await?;
        for name in names {
            let exists: bool = self
                .command(redis::cmd("EXISTS").arg(self.key(&name, "meta")))
                .await?;
            if !exists {
                self.command::<()>(redis::cmd("ZREM").arg(self.index()).arg(&name))
                    .await?;
            }
        }
        Ok(())
    }
}

/// A history entry as the scripts return it (stream id, expiry, JSON):
/// its offset and its publication, positioned in `epoch`.
fn stream_entry(entry: &[Reply], epoch: &str) -> Option<(u64, Publication)> {
    let offset: u64 = text(at(entry, 0)).split('-').next()?.parse().ok()?;
    let mut publication = serde_json::from_str::<Publication>(&text(at(entry, 2))).ok()?;
    publication.position = Some(Position {
        offset,
        epoch: epoch.to_owned(),
    });
    Some((offset, publication))
}

fn status_error(status: &str, channel: &str) -> ChannelError {
    match status {
        "not_found" => not_found(channel),
        "exists" => ChannelError::new(
            ErrorCode::AlreadyExists,
            format!("a channel named {channel:?} exists"),
        ),
        // join.lua follows the rules of `admission::admit`.
        "banned" => admission::banned(channel),
        "full" => admission::full(channel),
        "limit" => ChannelError::new(
            ErrorCode::Limit,
            format!("{channel:?} has as many bans or roles as allowed"),
        ),
        other => ChannelError::unavailable(format!("redis: unexpected script status {other:?}")),
    }
}

fn role_of(name: &str) -> ChannelRole {
    match name {
        "owner" => ChannelRole::OWNER,
        "participant" => ChannelRole::PARTICIPANT,
        other => ChannelRole::new(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_stays_out_of_debug() {
        let key = ClusterKey::new("a cluster key of at least 32 bytes!").unwrap();
        let config = RedisConfig::new("redis://:hunter2@db", key);
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
