//! Channels across nodes: three node processes on Redis, three on NATS,
//! and one node on the in-process backend, side by side in the same run.
//!
//! ```sh
//! cargo bench -p ws-benches --bench cluster                        # 300 subscribers, 3 rounds of 5 s
//! cargo bench -p ws-benches --bench cluster -- --quick             # 1 round of 2 s
//! cargo bench -p ws-benches --bench cluster -- --subscribers 300,3000 --backends redis,nats
//! ```
//!
//! Redis and NATS come from `WS_TEST_REDIS_URL` and `WS_TEST_NATS_URL`
//! (default `redis://127.0.0.1:6379`, `nats://127.0.0.1:4222`); each cell
//! uses a key and subject prefix of its own.
//!
//! Each node is this binary again (`--serve`), ws-tokio with one worker
//! serving `ws_channels::Channels` on the backend. The subscribers are
//! spread evenly over the nodes and join one channel (no history); one
//! publisher per node publishes to it, so every publication crosses the
//! broker to reach two nodes out of three. Publishers go as fast as the
//! subscribers keep up: a publisher waits while more than eight
//! publications per subscriber are undelivered. Each publication carries
//! its send time; the load client (this process, one tokio worker) times
//! each delivery. Per cell: deliveries per second, publish-to-delivery
//! p50/p99, and publications lost (counted, never expected). The median
//! round is reported.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use ws_benches::{ServerProcess, fmt_rate, list_arg, one_worker_runtime, percentile};
use ws_channels::backend::{NatsBackend, NatsConfig, RedisBackend, RedisConfig};
use ws_channels::protocol::{Command, Request};
use ws_channels::{Backends, Channels, ChannelsClient, ChannelsConfig, Payload};
use ws_tokio::auth::{Authenticator, Identity};
use ws_tokio::{Message, Rejection, http};

const BACKENDS: [&str; 3] = ["memory", "redis", "nats"];
const PAYLOAD: usize = 64;
/// Undelivered publications per subscriber before publishers wait.
const WINDOW: u64 = 8;

struct AnyUser;

impl Authenticator for AnyUser {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        let user = request
            .uri
            .query()
            .and_then(|q| q.strip_prefix("user="))
            .unwrap_or("anon");
        Ok(Identity::new(user))
    }
}

fn url(backend: &str) -> String {
    match backend {
        "redis" => {
            std::env::var("WS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
        }
        "nats" => {
            std::env::var("WS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
        }
        _ => "memory".into(),
    }
}

/// The cluster key every node of the bench shares.
fn bench_key() -> ws_channels::backend::ClusterKey {
    ws_channels::backend::ClusterKey::new("the cluster key of the bench's nodes").unwrap()
}

/// `--serve backend:prefix`: one node.
fn serve(spec: &str) {
    let (backend, prefix) = spec.split_once(':').expect("backend:prefix");
    one_worker_runtime().block_on(async {
        let backend = match backend {
            "redis" => Backends::shared(
                RedisBackend::connect(RedisConfig::new(url("redis"), bench_key()).prefix(prefix))
                    .await
                    .expect("Redis"),
            ),
            "nats" => {
                let mut config = NatsConfig::new(url("nats"), bench_key()).prefix(prefix);
                // JetStream reserves the byte budget up front, and every
                // cell makes a stream of its own.
                config.max_history_bytes = 64 << 20;
                Backends::shared(NatsBackend::connect(config).await.expect("NATS"))
            }
            _ => Backends::connect("memory", None).await.expect("memory"),
        };
        let config = ChannelsConfig {
            command_rate: 1_000_000,
            command_burst: 1_000_000,
            ..ChannelsConfig::default()
        };
        let channels = Channels::builder(config).backend(backend).build();
        let server = ws_tokio::server()
            .route("/", channels.endpoint().authenticator(AnyUser))
            .build();
        let listener = ws_tokio::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        server.serve(listener).await.unwrap();
    });
}

/// A publish, encoded by the protocol's own types.
fn publish(id: u64, data: &serde_json::Value) -> Message {
    let command = Command::Publish {
        data: Payload::new(data),
        idempotency_key: None,
    };
    Request::new("bench", command)
        .to_envelope(id.to_string())
        .to_message()
}

async fn connect(node: &ServerProcess, user: &str) -> ChannelsClient {
    let url = format!("ws://{}/?user={user}", node.addr);
    ChannelsClient::new(ws_tokio::connect(url.as_str()).await.expect("connects").0)
}

struct Cell {
    deliveries_per_second: f64,
    p50: Duration,
    p99: Duration,
    lost: u64,
}

/// The send time a delivery carries, from `"t":<micros>` in its text.
fn sent_at(text: &str) -> Option<u64> {
    let start = text.find("\"t\":")? + 4;
    let digits: &str = &text[start..];
    let end = digits.find(|c: char| !c.is_ascii_digit())?;
    digits[..end].parse().ok()
}

async fn run_cell(nodes: &[ServerProcess], subscribers: usize, seconds: f64) -> Cell {
    let origin = Instant::now();
    let mut owner = connect(&nodes[0], "owner").await;
    owner.create("bench", None).await.expect("create");
    let mut publishers = vec![owner.into_parts().0];
    for node in &nodes[1..] {
        let mut publisher = connect(node, "publisher").await;
        publisher.join("bench", None).await.expect("join");
        publishers.push(publisher.into_parts().0);
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for n in 0..subscribers {
        let mut client = connect(&nodes[n % nodes.len()], &format!("s{n}")).await;
        client.join("bench", None).await.expect("join");
        // Deliveries are read raw, their send time found in the text
        // without parsing: the load client must not be the bottleneck.
        let (mut socket, _) = client.into_parts();
        let (delivered, finished) = (delivered.clone(), finished.clone());
        readers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while !finished.load(Ordering::Relaxed) {
                let Ok(next) = tokio::time::timeout(Duration::from_millis(50), socket.recv()).await
                else {
                    continue;
                };
                let Some(Ok(Message::Text(text))) = next else {
                    break;
                };
                if let Some(sent) = sent_at(&text) {
                    let now = u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX);
                    latencies.push(now.saturating_sub(sent));
                    delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    // Publishers' own deliveries are read and dropped.
    let published = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    let padding = "x".repeat(PAYLOAD);
    let started = Instant::now();
    for publisher in publishers {
        let (delivered, published, stop, padding) = (
            delivered.clone(),
            published.clone(),
            stop.clone(),
            padding.clone(),
        );
        writers.push(tokio::spawn(async move {
            let (sender, mut receiver) = publisher.split();
            let drain = tokio::spawn(async move { while receiver.recv().await.is_some() {} });
            let mut id = 10;
            while !stop.load(Ordering::Relaxed) {
                let outstanding = published.load(Ordering::Relaxed) * subscribers as u64
                    - delivered.load(Ordering::Relaxed);
                if outstanding > WINDOW * subscribers as u64 {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    continue;
                }
                id += 1;
                let t = u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX);
                let data = json!({ "t": t, "pad": padding });
                published.fetch_add(1, Ordering::Relaxed);
                if sender.send(publish(id, &data)).await.is_err() {
                    break;
                }
            }
            drain.abort();
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let in_window = delivered.load(Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    // Let what is in flight arrive, then count what never did.
    let settle = Instant::now();
    let expected = published.load(Ordering::Relaxed) * subscribers as u64;
    while delivered.load(Ordering::Relaxed) < expected && settle.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lost = expected.saturating_sub(delivered.load(Ordering::Relaxed));
    finished.store(true, Ordering::Relaxed);
    let mut latencies: Vec<u64> = Vec::new();
    for reader in readers {
        latencies.append(&mut reader.await.unwrap_or_default());
    }
    latencies.sort_unstable();
    let at = |percent| Duration::from_micros(percentile(&latencies, percent));
    Cell {
        deliveries_per_second: in_window as f64 / elapsed.as_secs_f64(),
        p50: at(50),
        p99: at(99),
        lost,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1]);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rounds = list_arg(&args, "--rounds", &[if quick { 1 } else { 3 }])[0];
    let seconds = if quick { 2.0 } else { 5.0 };
    let subscribers = list_arg(&args, "--subscribers", &[300]);
    let backends: Vec<String> = args
        .iter()
        .position(|a| a == "--backends")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || BACKENDS.iter().map(|s| (*s).to_owned()).collect(),
            |list| list.split(',').map(str::to_owned).collect(),
        );
    let runtime = one_worker_runtime();
    let mut any_lost = false;
    println!("| backend | nodes | subscribers | deliveries/s | p50 | p99 | lost |");
    println!("|---|---|---|---|---|---|---|");
    for &count in &subscribers {
        let mut cells: Vec<(String, Vec<Cell>)> =
            backends.iter().map(|b| (b.clone(), Vec::new())).collect();
        for round in 0..rounds {
            for (backend, results) in &mut cells {
                let prefix = format!("bench{}n{count}r{round}{backend}", std::process::id());
                let nodes: Vec<ServerProcess> = (0..if backend == "memory" { 1 } else { 3 })
                    .map(|_| ServerProcess::start(&format!("{backend}:{prefix}")))
                    .collect();
                results.push(runtime.block_on(run_cell(&nodes, count, seconds)));
            }
        }
        for (backend, mut results) in cells {
            results.sort_by(|a, b| a.deliveries_per_second.total_cmp(&b.deliveries_per_second));
            any_lost |= results.iter().any(|r| r.lost > 0);
            let median = &results[results.len() / 2];
            println!(
                "| {backend} | {} | {count} | {} | {:.1?} | {:.1?} | {} |",
                if backend == "memory" { 1 } else { 3 },
                fmt_rate(median.deliveries_per_second),
                median.p50,
                median.p99,
                median.lost
            );
        }
    }
    if any_lost {
        eprintln!("publications were lost: a delivery guarantee is broken");
        std::process::exit(1);
    }
}
