//! One channels node for the cluster tests (`test-kit/tests/cluster.rs`)
//! and the cluster benchmark: a ws-tokio server with ws-channels on the
//! backend its URL names, the MLS Delivery Service for encrypted channels.
//!
//! `channels_node --backend URL [--listen ADDR] [--prefix P]
//! [--presence-ttl-ms N] [--heartbeat-ms N] [--connect-timeout-ms N]
//! [--command-timeout-ms N] [--cluster-key K] [--slow-subscriber disconnect|mark_lost]`
//! (the key defaults to [`TEST_CLUSTER_KEY`], which every test node
//! shares; the slow-subscriber policy to `disconnect`).
//!
//! Users come from `?user=<name>` (trusted: for tests only). Prints
//! `listening on <addr>` once it accepts connections.

use std::sync::Arc;
use std::time::Duration;

use ws_channels::backend::{ClusterKey, NatsBackend, NatsConfig, RedisBackend, RedisConfig};
use ws_channels::{Backends, Channels, ChannelsConfig, SlowSubscriber};
use ws_crypto::mls::{DeliveryService, MlsReader};
use ws_tokio::auth::{Authenticator, Identity};
use ws_tokio::{Rejection, http};

struct NameFromQuery;

impl Authenticator for NameFromQuery {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let user = request
            .uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("user="))
            .filter(|name| !name.is_empty());
        match user {
            Some(user) => Ok(Identity::new(user)),
            None => Err(Rejection::plain(
                http::StatusCode::UNAUTHORIZED,
                "connect with ?user=<name>",
            )),
        }
    }
}

/// The cluster key of the test nodes unless told another.
const TEST_CLUSTER_KEY: &str = "the cluster key of the test nodes, not secret";

struct Args {
    backend: String,
    cluster_key: String,
    listen: String,
    prefix: String,
    presence_ttl: Duration,
    heartbeat: Duration,
    connect_timeout: Duration,
    command_timeout: Duration,
    slow_subscriber: SlowSubscriber,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        backend: String::new(),
        cluster_key: TEST_CLUSTER_KEY.into(),
        listen: "127.0.0.1:0".into(),
        prefix: "ws".into(),
        presence_ttl: Duration::from_secs(60),
        heartbeat: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(30),
        command_timeout: Duration::from_secs(5),
        slow_subscriber: SlowSubscriber::Disconnect,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let millis = || {
            value
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| format!("{flag}: not a number of milliseconds: {value}"))
        };
        match flag.as_str() {
            "--backend" => args.backend = value.clone(),
            "--cluster-key" => args.cluster_key = value.clone(),
            "--listen" => args.listen = value.clone(),
            "--prefix" => args.prefix = value.clone(),
            "--presence-ttl-ms" => args.presence_ttl = millis()?,
            "--heartbeat-ms" => args.heartbeat = millis()?,
            "--connect-timeout-ms" => args.connect_timeout = millis()?,
            "--command-timeout-ms" => args.command_timeout = millis()?,
            "--slow-subscriber" => {
                args.slow_subscriber = serde_json::from_value(serde_json::json!(value))
                    .map_err(|_| format!("{flag}: disconnect or mark_lost, not {value}"))?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.backend.is_empty() {
        return Err("--backend URL is required (memory, redis://..., nats://...)".into());
    }
    Ok(args)
}

async fn backend(args: &Args) -> Result<Backends, ws_channels::ChannelError> {
    let key = ClusterKey::new(&args.cluster_key)?;
    if args.backend.starts_with("redis") {
        let mut config = RedisConfig::new(&args.backend, key)
            .prefix(&args.prefix)
            .heartbeat(args.heartbeat)
            .connect_timeout(args.connect_timeout);
        config.command_timeout = args.command_timeout;
        Ok(Backends::shared(RedisBackend::connect(config).await?))
    } else if args.backend.starts_with("nats") {
        let mut config = NatsConfig::new(&args.backend, key)
            .prefix(&args.prefix)
            .heartbeat(args.heartbeat)
            .connect_timeout(args.connect_timeout);
        // JetStream reserves the stream's byte budget up front; test runs
        // on a shared server each make a stream of their own.
        config.max_history_bytes = 16 << 20;
        config.command_timeout = args.command_timeout;
        Ok(Backends::shared(NatsBackend::connect(config).await?))
    } else {
        Backends::connect(&args.backend, None).await
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = parse().map_err(std::io::Error::other)?;
    let backend = backend(&args).await.map_err(std::io::Error::other)?;
    // The MLS Delivery Service, one identity for every node of the cluster
    // (as `ws serve` makes it from the cluster key).
    let key = ClusterKey::new(&args.cluster_key).map_err(std::io::Error::other)?;
    let service = DeliveryService::from_secret("ws serve", key.secret())
        .and_then(|service| MlsReader::new().with_service(service))
        .map_err(std::io::Error::other)?;
    let config = ChannelsConfig {
        presence_ttl: args.presence_ttl,
        command_rate: 100_000,
        command_burst: 100_000,
        group_reader: Some(Arc::new(service)),
        slow_subscriber: args.slow_subscriber,
        ..ChannelsConfig::default()
    };
    let channels = Channels::builder(config).backend(backend).build();
    let endpoint = channels.endpoint().authenticator(NameFromQuery);
    let server = ws_tokio::server().route("/channels", endpoint).build();
    let listener = ws_tokio::bind(&args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server
        .serve_with_shutdown(listener, ctrl_c, Duration::from_secs(2))
        .await
}
