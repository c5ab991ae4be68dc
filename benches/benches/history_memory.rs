//! What channel history costs a node in memory, the way the trust review
//! measured it: four sessions each publish 1,000 messages of 63 KB into a
//! channel of its own that keeps 1,000 (the most a channel may ask for),
//! then leave. The server's resident memory is read from /proc before, at
//! the end of the publishing, and after the channels lingered out.
//!
//! ```sh
//! cargo bench -p ws-benches --bench history_memory
//! cargo bench -p ws-benches --bench history_memory -- --messages 300
//! ```
//!
//! It runs two servers side by side, each in its own process: `budgeted`,
//! with the defaults (4 MiB of history per channel, 64 MiB for the node),
//! and `unbudgeted`, with both budgets off, which is what history cost
//! before they existed.

use std::time::Duration;

use serde_json::json;
use ws_benches::{ServerProcess, number_arg, one_worker_runtime};
use ws_channels::protocol::Command;
use ws_channels::{Backends, Channels, ChannelsClient, ChannelsConfig, MemoryBackend};
use ws_tokio::Rejection;
use ws_tokio::auth::{Authenticator, Identity};

/// Channels linger this long after their last member, here: long enough
/// to read memory at the end of the publishing, short enough to wait for.
const LINGER: Duration = Duration::from_secs(3);

/// Whoever the query names (a bench: no credentials).
struct AnyUser;

impl Authenticator for AnyUser {
    async fn authenticate(
        &self,
        request: &ws_tokio::http::request::Parts,
    ) -> Result<Identity, Rejection> {
        let user = request.uri.query().unwrap_or("user=anyone");
        Ok(Identity::new(user.trim_start_matches("user=")))
    }
}

/// The server side: `--serve budgeted|unbudgeted`; prints its address.
fn serve(kind: &str) {
    one_worker_runtime().block_on(async {
        let mut config = ChannelsConfig {
            channel_linger: LINGER,
            // Presence is refreshed (and what lingered out swept) every
            // second while anyone is connected.
            presence_ttl: Duration::from_secs(3),
            command_rate: 0,
            ..ChannelsConfig::default()
        };
        let mut memory = MemoryBackend::new();
        if kind == "unbudgeted" {
            config.max_history_bytes = u64::MAX;
            memory = memory.max_history_bytes(usize::MAX);
        }
        let channels = Channels::builder(config)
            .backend(Backends::memory(memory))
            .build();
        let mut server = ws_tokio::ServerConfig::default();
        server.connection.max_message_size = 128 * 1024;
        let server = ws_tokio::server()
            .config(server)
            .route("/", channels.endpoint().authenticator(AnyUser))
            .build();
        let listener = ws_tokio::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("an address").port());
        server.serve(listener).await.expect("serve");
    });
}

/// One session: creates `channel`, publishes `messages` of 63 KB, waiting
/// for each reply, then leaves.
async fn publisher(addr: std::net::SocketAddr, channel: String, messages: u64) {
    let (socket, _) = ws_tokio::connect(format!("ws://{addr}/?user={channel}"))
        .await
        .expect("connects");
    let mut client = ChannelsClient::new(socket);
    let pad = "x".repeat(63_000);
    let settings = Command::Create {
        max_participants: None,
        history_size: Some(1000),
        history_ttl: Some(3600),
        presence_events: false,
        encrypted: false,
        info: None,
    };
    client
        .create(&channel, Some(settings))
        .await
        .expect("created");
    for n in 1..=messages {
        client
            .publish(&channel, &json!({ "n": n, "pad": pad }))
            .await
            .expect("published");
    }
    client.leave(&channel).await.expect("left");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--serve") {
        serve(&args[at + 1]);
        return;
    }
    // `cargo bench` passes `--bench`; a plain `cargo test` run skips it.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let messages = number_arg("--messages", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "| server | before | after publishing 4 x {messages} x 63 KB | after they left and the channels lingered out |"
    );
    println!("|---|---|---|---|");
    for kind in ["budgeted", "unbudgeted"] {
        let server = ServerProcess::start(kind);
        let rss_mib = || server.rss() as f64 / f64::from(1 << 20);
        let before = rss_mib();
        runtime.block_on(async {
            let publishers: Vec<_> = (0..4)
                .map(|n| tokio::spawn(publisher(server.addr, format!("{kind}{n}"), messages)))
                .collect();
            for publisher in publishers {
                publisher.await.expect("a publisher");
            }
        });
        let published = rss_mib();
        // Someone stays connected, so the node's presence refreshes go on
        // and sweep the channels (and their history) that lingered out.
        let after = runtime.block_on(async {
            let (_stays, _) = ws_tokio::connect(format!("ws://{}/?user=stays", server.addr))
                .await
                .expect("connects");
            tokio::time::sleep(LINGER + Duration::from_secs(3)).await;
            rss_mib()
        });
        println!("| {kind} | {before:.0} MiB | {published:.0} MiB | {after:.0} MiB |");
    }
}
