//! A reconnect storm: N `ReconnectingClient`s in one channel of a channels
//! server in its own process; the server is killed and started again on
//! the same port, and every client comes back by itself. Reported per
//! round, with full jitter (the default) and without it, interleaved: the
//! time until every client is joined again, the spread of those times,
//! the attempts that failed, and the CPU time the new server spent until
//! all were back and its peak resident memory.
//!
//! `cargo bench -p ws-benches --bench reconnect_storm` (`-- --clients N
//! --rounds N` to change it; default 5,000 clients, 2 rounds of each).
//! The server accepts handshakes from one address as from many (its
//! per-address handshake cap raised to the total, as behind a proxy),
//! since every client here is on 127.0.0.1.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use ws_benches::{ServerProcess, number_arg, one_worker_runtime, percentile, raise_fd_limit};
use ws_channels::reconnect::{ClientEvent, ConnectionState, ReconnectConfig};
use ws_channels::{Channels, ChannelsClient, ChannelsConfig, ReconnectingClient};
use ws_tokio::{ServerConfig, TokioRuntime};

/// The server side: this binary run with `--serve PORT` (0: any); prints
/// its port, then keeps channel `room` open (its owner, a client of its
/// own, stays in it).
fn serve(port: u16) {
    one_worker_runtime().block_on(async {
        let config = ChannelsConfig {
            allow_anonymous: true,
            ..ChannelsConfig::default()
        };
        let channels = Channels::builder(config).build();
        let mut server_config = ServerConfig::default();
        server_config.max_handshakes_per_client = server_config.max_handshakes;
        let server = ws_tokio::server()
            .config(server_config)
            .route("/channels", channels.endpoint())
            .build();
        let listener = ws_tokio::bind(("127.0.0.1", port)).await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { server.serve(listener).await });
        let (socket, _) = ws_tokio::connect(&format!("ws://{addr}/channels"))
            .await
            .expect("the owner's connection");
        let mut owner = ChannelsClient::new(socket);
        let create = ws_channels::protocol::Command::Create {
            max_participants: None,
            history_size: Some(100),
            history_ttl: Some(300),
            presence_events: false,
            encrypted: false,
            info: None,
        };
        owner.create("room", Some(create)).await.expect("room");
        println!("{}", addr.port());
        // Events nobody reads are dropped by the owner's client only when
        // it reads; it reads, so its queue stays empty.
        while owner.next_event().await.is_some() {}
    });
}

/// What a client tells the bench.
enum Report {
    Joined(Instant),
    AttemptFailed,
}

struct Round {
    all_back: Duration,
    p50: Duration,
    p99: Duration,
    first: Duration,
    failed_attempts: usize,
    server_cpu: Duration,
    peak_rss: u64,
}

fn round(clients: usize, jitter: bool) -> Round {
    let server = ServerProcess::start("0");
    let addr = server.addr;
    let runtime = one_worker_runtime();
    let (reports, mut received) = mpsc::unbounded_channel();
    let config = ReconnectConfig {
        jitter,
        ..ReconnectConfig::default()
    };
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let reports = reports.clone();
            let config = config.clone();
            runtime.spawn(async move {
                let url = format!("ws://{addr}/channels");
                let mut client = ReconnectingClient::new(TokioRuntime, config, move || {
                    let url = url.clone();
                    async move { ws_tokio::connect(&url).await.map(|(socket, _)| socket) }
                });
                client.join("room", None);
                while let Some(event) = client.next_event().await {
                    let report = match event {
                        ClientEvent::Joined { .. } => Report::Joined(Instant::now()),
                        ClientEvent::State {
                            state: ConnectionState::Disconnected,
                            ..
                        } => Report::AttemptFailed,
                        _ => continue,
                    };
                    if reports.send(report).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    // Everyone in first (a storm of its own, not measured).
    let mut joined = 0;
    runtime.block_on(async {
        while joined < clients {
            match tokio::time::timeout(Duration::from_secs(120), received.recv()).await {
                Ok(Some(Report::Joined(_))) => joined += 1,
                Ok(Some(Report::AttemptFailed)) => {}
                _ => panic!("only {joined} of {clients} joined at the start"),
            }
        }
    });
    // The restart: killed, and at once a new process on the same port.
    let port = addr.port().to_string();
    drop(server);
    let restarted = Instant::now();
    let server = ServerProcess::start(&port);
    let mut back = Vec::with_capacity(clients);
    let mut failed_attempts = 0usize;
    let cpu_before = server.cpu();
    runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(300);
        while back.len() < clients {
            assert!(
                Instant::now() < deadline,
                "only {} of {clients} came back",
                back.len()
            );
            match tokio::time::timeout(Duration::from_secs(1), received.recv()).await {
                Ok(Some(Report::Joined(at))) => back.push(at - restarted),
                Ok(Some(Report::AttemptFailed)) => failed_attempts += 1,
                Ok(None) => panic!("the clients stopped"),
                Err(_) => {}
            }
        }
    });
    let server_cpu = server.cpu() - cpu_before;
    let peak_rss = server.peak_rss();
    for task in tasks {
        task.abort();
    }
    drop(runtime);
    drop(server);
    back.sort();
    Round {
        all_back: *back.last().expect("clients"),
        p50: percentile(&back, 50),
        p99: percentile(&back, 99),
        first: back[0],
        // Each client's disconnect is one Disconnected event; the rest
        // are attempts that failed.
        failed_attempts: failed_attempts.saturating_sub(clients),
        server_cpu,
        peak_rss,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(args[i + 1].parse().expect("a port"));
        return;
    }
    // `cargo bench` passes `--bench`; a plain `cargo test` run skips it.
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    raise_fd_limit();
    let clients = usize::try_from(number_arg("--clients", 5_000)).expect("a count");
    let rounds = number_arg("--rounds", 2);
    println!(
        "reconnect storm: {clients} clients in one channel, the server killed and started again; \
         waits 250 ms doubling to 20 s"
    );
    println!(
        "| round | jitter | all back | first | p50 | p99 | failed attempts | server CPU until all back | server peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in 1..=rounds {
        for jitter in [true, false] {
            let r = round(clients, jitter);
            println!(
                "| {n} | {} | {:.2} s | {:.3} s | {:.2} s | {:.2} s | {} | {} ms | {} MiB |",
                if jitter { "full" } else { "off" },
                r.all_back.as_secs_f64(),
                r.first.as_secs_f64(),
                r.p50.as_secs_f64(),
                r.p99.as_secs_f64(),
                r.failed_attempts,
                r.server_cpu.as_millis(),
                r.peak_rss >> 20,
            );
        }
    }
}
