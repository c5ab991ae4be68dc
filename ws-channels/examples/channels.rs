//! A channels server: rooms with owners, presence, history and recovery,
//! kick and ban, a custom command and a server-event topic (see
//! `ws-channels/PROTOCOL.md` for every message), on the in-process backend
//! or, as one node of a cluster, on Redis or NATS.
//!
//! ```sh
//! cargo run --release -p ws-channels --example channels       # ws://127.0.0.1:9003/channels
//! cargo run --release -p ws-channels --example channels -- 0.0.0.0:8080
//! export WS_CLUSTER_KEY=a-secret-of-32-bytes-or-more-shared-by-the-nodes
//! cargo run --release -p ws-channels --features redis --example channels -- 127.0.0.1:9004 redis://127.0.0.1:6379
//! cargo run --release -p ws-channels --features nats --example channels -- 127.0.0.1:9005 nats://127.0.0.1:4222
//! ```
//!
//! The address also comes from `$WS_ADDR` and the backend from
//! `$WS_CHANNELS_BACKEND` (default `memory`); the nodes of a cluster share
//! the key in `$WS_CLUSTER_KEY`, which signs their control messages.
//!
//! Connect with `?user=ann` (this demo trusts the name it is given; a real
//! server uses `KeyAuth` or `BearerJwt`), then send for example
//!
//! ```json
//! {"type":"command","id":"1","channel":"lobby","action":"create","data":{"history_size":100,"presence_events":true}}
//! {"type":"command","id":"2","channel":"lobby","action":"publish","data":{"text":"hello"}}
//! {"type":"command","id":"3","channel":"lobby","action":"roll","data":{"sides":6}}
//! {"type":"command","id":"4","channel":"clock","action":"subscribe"}
//! ```
//!
//! Ctrl-C closes every connection with 1001 and exits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use ws_channels::backend::ClusterKey;
use ws_channels::{Backends, ChannelError, Channels, ChannelsConfig, ErrorCode, TopicAccess};
use ws_tokio::auth::{Authenticator, Identity};
use ws_tokio::{Rejection, http};

/// Takes the user from `?user=`: for trying things out only.
struct NameFromQuery;

impl Authenticator for NameFromQuery {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let user = request
            .uri
            .query()
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("user="))
            .filter(|name| {
                !name.is_empty()
                    && name.len() <= 32
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        match user {
            Some(user) => Ok(Identity::new(user)),
            None => Err(Rejection::plain(
                http::StatusCode::UNAUTHORIZED,
                "connect with ?user=<name> (letters, digits, _)",
            )),
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("WS_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9003".into());
    let backend_url = std::env::args()
        .nth(2)
        .or_else(|| std::env::var("WS_CHANNELS_BACKEND").ok())
        .unwrap_or_else(|| "memory".into());
    let key = match std::env::var("WS_CLUSTER_KEY") {
        Ok(key) => Some(ClusterKey::new(key).map_err(std::io::Error::other)?),
        Err(_) => None,
    };
    let backend = Backends::connect(&backend_url, key)
        .await
        .map_err(std::io::Error::other)?;
    let config = ChannelsConfig::default()
        .role("moderator", ["kick", "publish", "leave", "presence"])
        .topic("clock", TopicAccess::Everyone);
    let channels = Channels::builder(config)
        .backend(backend)
        .command(
            "roll",
            ["participant", "moderator"],
            |command, _| async move {
                let sides = command.data["sides"]
                    .as_u64()
                    .filter(|s| (1..=1000).contains(s));
                let Some(sides) = sides else {
                    return Err(ChannelError::new(
                        ErrorCode::BadRequest,
                        "roll needs `sides`, 1 to 1000",
                    ));
                };
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .subsec_nanos();
                Ok(json!({ "sides": sides, "value": u64::from(nanos) % sides + 1 }))
            },
        )
        .build();

    // A server event every second on the `clock` topic.
    let handle = channels.handle();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let _ = handle.emit("clock", &json!({ "unix": now })).await;
        }
    });

    let endpoint = channels.endpoint().authenticator(NameFromQuery);
    let server = ws_tokio::server().route("/channels", endpoint).build();
    let listener = ws_tokio::bind(&addr).await?;
    println!(
        "channels server listening on ws://{}/channels?user=<name> (backend: {})",
        listener.local_addr()?,
        backend_name(&backend_url)
    );
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    };
    server
        .serve_with_shutdown(listener, ctrl_c, Duration::from_secs(5))
        .await
}

/// The backend's scheme and host, never its password.
fn backend_name(url: &str) -> &str {
    let end = url.find('@').map_or(0, |at| at + 1);
    match url.split_once("://") {
        Some((scheme, _)) if end > 0 => &url[..scheme.len()],
        _ => url,
    }
}
