//! Fan-out: one publisher, many subscribed connections, side by side in
//! the same run.
//!
//! ```sh
//! cargo bench -p ws-benches --bench fanout                       # 3 rounds of 5 s cells
//! cargo bench -p ws-benches --bench fanout -- --quick            # 2 s cells, 1 round
//! cargo bench -p ws-benches --bench fanout -- --rounds 3 --subscribers 1000,10000 --payloads 16,1024
//! cargo bench -p ws-benches --bench fanout -- --servers ws-channels,bound
//! ```
//!
//! Servers, each in its own process on a tokio runtime with one worker:
//!
//! - `ws-channels`: ws-tokio serving `ws_channels::Channels` on the
//!   in-process backend. Subscribers `join` channel `bench`; the publisher
//!   creates it and sends `publish` commands. Each publication is encoded
//!   once and the same frame queued to every subscriber; the event carries
//!   the channel, the publication's offset and the data (about 110 bytes
//!   more than the data). The other servers forward what the publisher
//!   sends, so the load client pads their messages to the size of
//!   ws-channels' events (measured in the same round, ws-channels first):
//!   every server writes the same bytes per delivery.
//! - `tokio-tungstenite`: tokio-tungstenite 0.30 the way its users write a
//!   fan-out: the publisher's messages go into a `tokio::sync::broadcast`
//!   channel (capacity 1024), and each subscriber's task receives from it
//!   and `send`s to its socket. Subscribers that lag lose messages; the
//!   table counts them.
//! - `bound`: no library: the publisher's frames are unmasked and the same
//!   bytes written straight to every subscriber's socket from one task,
//!   all frames that arrived together in one write per subscriber. No
//!   queues, no per-connection tasks, no envelope: the least work a
//!   fan-out can do.
//!
//! The load client (this process, one tokio worker) opens the subscribers,
//! then publishes as fast as the subscribers keep up: message `k` goes out
//! once every subscriber has received message `k - 8` (or after 50 ms
//! without progress, so a server that drops messages cannot stall it).
//! Each message carries its send time; subscribers time each delivery.
//! Per cell: deliveries per second, publish-to-delivery p50/p99, the
//! server's CPU time per delivery, deliveries lost, and the growth of the
//! server's resident memory per subscribed connection. Cells run once per
//! round with the servers in turn; the median round is reported.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use ws_benches::{
    ServerProcess, fmt_rate, frame_lengths, list_arg, one_worker_runtime, percentile,
};
use ws_channels::Payload;
use ws_channels::protocol::{Command, Request};

const SERVERS: [&str; 3] = ["ws-channels", "tokio-tungstenite", "bound"];
const SUBSCRIBERS: [usize; 2] = [1_000, 10_000];
const PAYLOADS: [usize; 2] = [16, 1024];
/// Added to send times so they always have twelve digits.
const T_ORIGIN: u64 = 100_000_000_000;
/// Messages the publisher may be ahead of the slowest subscriber.
const WINDOW: u64 = 8;

// ---- servers ------------------------------------------------------------

mod servers {
    use std::sync::{Arc, Mutex};

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    use ws_core::frame::apply_mask;
    use ws_core::handshake::{Accept, ServerHandshake};

    pub(crate) async fn ws_channels(listener: TcpListener) {
        let config = ws_channels::ChannelsConfig {
            allow_anonymous: true,
            echo: false,
            command_rate: 1_000_000,
            command_burst: 1_000_000,
            ..ws_channels::ChannelsConfig::default()
        };
        let channels = ws_channels::Channels::new(config);
        let mut server_config = ws_tokio::ServerConfig::default();
        // The load client opens thousands of connections from one address.
        server_config.max_handshakes_per_client = server_config.max_handshakes;
        let server = ws_tokio::server()
            .config(server_config)
            .route("/", channels.endpoint())
            .build();
        let _ = server
            .serve(ws_tokio::TokioListener::from_tcp(listener))
            .await;
    }

    /// A fan-out as tokio-tungstenite users write it: a broadcast channel,
    /// one task per subscriber receiving from it and sending.
    pub(crate) async fn tokio_tungstenite(listener: TcpListener) {
        let (tx, _) = tokio::sync::broadcast::channel::<Message>(1024);
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut path = String::new();
                // tungstenite's callback type has a large error variant.
                #[allow(clippy::result_large_err)]
                let callback = |request: &Request, response: Response| {
                    path = request.uri().path().to_owned();
                    Ok(response)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                let (mut write, mut read) = ws.split();
                if path == "/pub" {
                    while let Some(Ok(message)) = read.next().await {
                        if message.is_text() || message.is_binary() {
                            let _ = tx.send(message);
                        }
                    }
                    return;
                }
                let mut rx = tx.subscribe();
                tokio::spawn(async move { while let Some(Ok(_)) = read.next().await {} });
                loop {
                    match rx.recv().await {
                        Ok(message) => {
                            if write.send(message).await.is_err() {
                                return;
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
    }

    /// The bound: the publisher's task writes each frame's bytes to every
    /// subscriber socket itself.
    pub(crate) async fn bound(listener: TcpListener) {
        let subscribers: Arc<Mutex<Vec<Arc<TcpStream>>>> = Arc::default();
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let subscribers = subscribers.clone();
            tokio::spawn(async move {
                let mut input = bytes::BytesMut::with_capacity(64 * 1024);
                let mut handshake =
                    ServerHandshake::new(Default::default(), std::time::Instant::now());
                let upgrade = loop {
                    if stream.read_buf(&mut input).await.unwrap_or(0) == 0 {
                        return;
                    }
                    match handshake.handle_input(&input) {
                        Ok(Some(upgrade)) => break upgrade,
                        Ok(None) => input.clear(),
                        Err(_) => return,
                    }
                };
                let publisher = upgrade.request().uri().path() == "/pub";
                let Ok(accepted) = upgrade.accept(Accept::new()) else {
                    return;
                };
                if stream.write_all(&accepted.to_bytes()).await.is_err() {
                    return;
                }
                if !publisher {
                    subscribers.lock().unwrap().push(Arc::new(stream));
                    return;
                }
                input.clear();
                let mut batch = Vec::new();
                loop {
                    // Every frame that has arrived goes out in one write
                    // per subscriber, as a server's write buffer would.
                    batch.clear();
                    while let Some(frame) = next_frame(&mut input) {
                        batch.extend_from_slice(&frame);
                    }
                    if !batch.is_empty() {
                        let targets = subscribers.lock().unwrap().clone();
                        for target in targets {
                            let _ = write_all(&target, &batch).await;
                        }
                    }
                    if stream.read_buf(&mut input).await.unwrap_or(0) == 0 {
                        return;
                    }
                }
            });
        }
    }

    /// The next complete masked frame in `input`, unmasked and re-headed
    /// as a server frame.
    fn next_frame(input: &mut bytes::BytesMut) -> Option<Vec<u8>> {
        let (len, header_len) = ws_benches::frame_lengths(input)?;
        if input.len() < (header_len + 4).saturating_add(len) {
            return None;
        }
        let key = [
            input[header_len],
            input[header_len + 1],
            input[header_len + 2],
            input[header_len + 3],
        ];
        let mut frame = Vec::with_capacity(header_len + len);
        frame.extend_from_slice(&input[..header_len]);
        frame[1] &= 0x7f;
        let start = frame.len();
        frame.extend_from_slice(&input[header_len + 4..header_len + 4 + len]);
        apply_mask(&mut frame[start..], key, 0);
        bytes::Buf::advance(input, header_len + 4 + len);
        Some(frame)
    }

    async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            match stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn serve(name: &str) -> io::Result<()> {
    one_worker_runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        match name {
            "ws-channels" => servers::ws_channels(listener).await,
            "tokio-tungstenite" => servers::tokio_tungstenite(listener).await,
            "bound" => servers::bound(listener).await,
            other => panic!("unknown server {other}"),
        }
        Ok(())
    })
}

// ---- the load client ------------------------------------------------------

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// Opens a WebSocket on `path`; returns the stream and any bytes after the
/// 101.
async fn open(addr: SocketAddr, path: &str) -> io::Result<(TcpStream, BytesMut)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut input = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(end) = input.windows(4).position(|w| w == b"\r\n\r\n") {
            if !input.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&input).into_owned(),
                ));
            }
            input.advance(end + 4);
            return Ok((stream, input));
        }
    }
}

/// A masked client text frame.
/// A command on the bench's channel, as the protocol's types encode it;
/// the load client sends it over its raw socket.
fn command_text(command: Command) -> String {
    let message = Request::new("bench", command).to_envelope("b").to_message();
    message.as_text().expect("commands are text").to_owned()
}

fn masked(payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    match payload.len() {
        n @ 0..126 => frame.push(0x80 | u8::try_from(n).expect("under 126")),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).expect("under 64 KiB").to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// The payload of the next complete server frame in `input`.
fn next_payload(input: &mut BytesMut) -> Option<BytesMut> {
    let (len, header_len) = frame_lengths(input)?;
    if input.len() < len.saturating_add(header_len) {
        return None;
    }
    input.advance(header_len);
    Some(input.split_to(len))
}

/// The send time in a payload: the digits after `"t":`.
fn sent_at(payload: &[u8]) -> Option<u64> {
    let at = payload.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits = payload[at..].iter().take_while(|b| b.is_ascii_digit());
    Some(digits.fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

fn micros_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The size of the data a publisher sends for a payload of `payload`.
fn data_len(payload: usize) -> usize {
    format!(r#"{{"t":{T_ORIGIN},"p":"{}"}}"#, "x".repeat(payload)).len()
}

/// Shared between the publisher and the subscribers.
struct Shared {
    base: Instant,
    delivered: AtomicU64,
    measuring: AtomicBool,
    progress: Notify,
    subscribers: u64,
    /// Publish-to-delivery times in µs; a shared sink because the
    /// subscriber tasks are aborted at the end of a cell.
    latencies: std::sync::Mutex<Vec<u32>>,
    /// The size of the first frame payload a subscriber received.
    first_frame: AtomicUsize,
}

/// One subscriber: counts deliveries, times every 16th while measuring.
async fn subscribe(mut stream: TcpStream, mut input: BytesMut, shared: Arc<Shared>) {
    let mut seen = 0u64;
    loop {
        while let Some(payload) = next_payload(&mut input) {
            seen += 1;
            if seen == 1 {
                let _ = shared.first_frame.compare_exchange(
                    0,
                    payload.len(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            let total = shared.delivered.fetch_add(1, Ordering::Relaxed) + 1;
            if total.is_multiple_of(shared.subscribers) {
                shared.progress.notify_one();
            }
            if seen.is_multiple_of(16)
                && shared.measuring.load(Ordering::Relaxed)
                && let Some(t) = sent_at(&payload)
            {
                let now = micros_since(shared.base) + T_ORIGIN;
                let latency = u32::try_from(now.saturating_sub(t)).unwrap_or(u32::MAX);
                shared.latencies.lock().unwrap().push(latency);
            }
        }
        input.reserve(64 * 1024);
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Opens a channels subscriber: the 101, then a join and its reply.
async fn open_subscriber(server: &str, addr: SocketAddr) -> io::Result<(TcpStream, BytesMut)> {
    if server != "ws-channels" {
        return open(addr, "/").await;
    }
    let (mut stream, mut input) = open(addr, "/").await?;
    let join = command_text(Command::Join {
        since: None,
        info: None,
    });
    stream.write_all(&masked(join.as_bytes())).await?;
    loop {
        if let Some(reply) = next_payload(&mut input) {
            if !reply.windows(9).any(|w| w == br#""ok":true"#) {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&reply).into_owned(),
                ));
            }
            return Ok((stream, input));
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

struct Cell {
    deliveries_per_sec: f64,
    p50_us: u32,
    p99_us: u32,
    cpu_per_delivery: Duration,
    lost: u64,
    memory_per_subscriber: f64,
    /// The size of a delivered frame's payload.
    frame: usize,
}

async fn run_cell(
    server: &str,
    process: &ServerProcess,
    subscribers: usize,
    payload: usize,
    padding: usize,
    seconds: f64,
) -> io::Result<Cell> {
    let addr = process.addr;
    // The publisher first: on ws-channels it creates the channel.
    let (mut publisher, _) = open(addr, if server == "ws-channels" { "/" } else { "/pub" }).await?;
    if server == "ws-channels" {
        let create = command_text(Command::create());
        publisher.write_all(&masked(create.as_bytes())).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = process.rss();
    let shared = Arc::new(Shared {
        base: Instant::now(),
        delivered: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        progress: Notify::new(),
        subscribers: subscribers as u64,
        latencies: std::sync::Mutex::default(),
        first_frame: AtomicUsize::new(0),
    });
    let gate = Arc::new(Semaphore::new(200));
    let mut opening = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let gate = gate.clone();
        let server = server.to_owned();
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            open_subscriber(&server, addr).await
        }));
    }
    let mut tasks = Vec::with_capacity(subscribers);
    for opened in opening {
        let (stream, input) = opened.await.expect("the opening task")?;
        tasks.push(tokio::spawn(subscribe(stream, input, shared.clone())));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = process.rss();

    // Replies to publish commands (ws-channels) are read and dropped.
    let (mut publisher_read, mut publisher_write) = publisher.into_split();
    let drain = tokio::spawn(async move {
        let mut sink = vec![0; 64 * 1024];
        while publisher_read.read(&mut sink).await.unwrap_or(0) > 0 {}
    });
    let pad = "x".repeat(payload + padding);
    let warmup = Duration::from_secs(1);
    let measure = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut sent = 0u64;
    let (mut delivered_at_start, mut cpu_at_start) = (0, Duration::ZERO);
    let mut measure_started = None;
    loop {
        let elapsed = started.elapsed();
        if measure_started.is_none() && elapsed >= warmup {
            delivered_at_start = shared.delivered.load(Ordering::Relaxed);
            cpu_at_start = process.cpu();
            measure_started = Some(Instant::now());
            shared.measuring.store(true, Ordering::Relaxed);
        }
        if elapsed >= warmup + measure {
            break;
        }
        // Wait for the subscribers to be within the window.
        let wanted = sent.saturating_sub(WINDOW) * shared.subscribers;
        while shared.delivered.load(Ordering::Relaxed) < wanted {
            let progress = shared.progress.notified();
            if shared.delivered.load(Ordering::Relaxed) >= wanted {
                break;
            }
            if tokio::time::timeout(Duration::from_millis(50), progress)
                .await
                .is_err()
            {
                break;
            }
        }
        sent += 1;
        // Twelve digits, so every message of a cell has the same size.
        let t = micros_since(shared.base) + T_ORIGIN;
        let data = format!(r#"{{"t":{t},"p":"{pad}"}}"#);
        debug_assert_eq!(data.len(), data_len(payload + padding));
        let text = if server == "ws-channels" {
            command_text(Command::Publish {
                data: Payload::from_json(&data).expect("JSON"),
                idempotency_key: None,
            })
        } else {
            data
        };
        publisher_write.write_all(&masked(text.as_bytes())).await?;
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let window = measure_started.map_or(measure, |s| s.elapsed());
    let delivered = shared.delivered.load(Ordering::Relaxed) - delivered_at_start;
    let cpu = process.cpu().saturating_sub(cpu_at_start);
    // Whatever is still in flight is let through before counting losses.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let expected = sent * shared.subscribers;
    let lost = expected.saturating_sub(shared.delivered.load(Ordering::Relaxed));
    drop(publisher_write);
    drain.abort();
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    let mut latencies = std::mem::take(&mut *shared.latencies.lock().unwrap());
    latencies.sort_unstable();
    let pick = |percent| percentile(&latencies, percent);
    Ok(Cell {
        deliveries_per_sec: delivered as f64 / window.as_secs_f64(),
        p50_us: pick(50),
        p99_us: pick(99),
        cpu_per_delivery: cpu / u32::try_from(delivered.max(1)).unwrap_or(u32::MAX),
        lost,
        memory_per_subscriber: rss_after.saturating_sub(rss_before) as f64 / subscribers as f64,
        frame: shared.first_frame.load(Ordering::Relaxed),
    })
}

fn fmt_cell(cell: &Cell) -> String {
    let lost = if cell.lost > 0 {
        format!(", {} lost", cell.lost)
    } else {
        String::new()
    };
    format!(
        "{}/s ({}/{} µs, {:.2} µs CPU, {:.1} KiB{lost})",
        fmt_rate(cell.deliveries_per_sec),
        cell.p50_us,
        cell.p99_us,
        cell.cpu_per_delivery.as_nanos() as f64 / 1000.0,
        cell.memory_per_subscriber / 1024.0,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1]).expect("the server");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rounds = list_arg(&args, "--rounds", &[if quick { 1 } else { 3 }])[0];
    let seconds = if quick { 2.0 } else { 5.0 };
    let subscribers = list_arg(&args, "--subscribers", &SUBSCRIBERS);
    let payloads = list_arg(&args, "--payloads", &PAYLOADS);
    let servers: Vec<String> = args
        .iter()
        .position(|a| a == "--servers")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| SERVERS.iter().map(|s| (*s).to_owned()).collect());
    raise_fd_limit(subscribers.iter().max().copied().unwrap_or(0) * 2 + 1000);
    let rt = one_worker_runtime();
    let mut results: BTreeMap<(usize, usize, String), Vec<Cell>> = BTreeMap::new();
    for round in 0..rounds {
        for &n in &subscribers {
            for &payload in &payloads {
                // The servers without channels get messages as large as
                // ws-channels' events, so every server writes the same
                // bytes per delivery (within the few digits of an offset).
                let mut padding = 0;
                for server in &servers {
                    let process = ServerProcess::start(server);
                    let extra = if server == "ws-channels" { 0 } else { padding };
                    let cell = rt
                        .block_on(run_cell(server, &process, n, payload, extra, seconds))
                        .unwrap_or_else(|e| panic!("{server}, {n} subscribers: {e}"));
                    eprintln!(
                        "round {} | {n} subscribers | {payload} B | {server}: {}",
                        round + 1,
                        fmt_cell(&cell)
                    );
                    if server == "ws-channels" {
                        padding = cell.frame.saturating_sub(data_len(payload));
                    }
                    results
                        .entry((n, payload, server.clone()))
                        .or_default()
                        .push(cell);
                }
            }
        }
    }
    println!("\n| subscribers | payload | {} |", servers.join(" | "));
    println!("|---|---|{}", "---|".repeat(servers.len()));
    for &n in &subscribers {
        for &payload in &payloads {
            let mut row = format!("| {n} | {payload} B |");
            for server in &servers {
                let cells = results.get_mut(&(n, payload, server.clone())).unwrap();
                cells.sort_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec));
                row.push_str(&format!(" {} |", fmt_cell(&cells[cells.len() / 2])));
            }
            println!("{row}");
        }
    }
    println!("\nws-channels' deliveries/s over each other server's (median rounds):");
    for &n in &subscribers {
        for &payload in &payloads {
            let rate = |s: &str| {
                results
                    .get(&(n, payload, s.to_owned()))
                    .map(|cells| cells[cells.len() / 2].deliveries_per_sec)
            };
            let Some(ours) = rate("ws-channels") else {
                continue;
            };
            let others: Vec<String> = servers
                .iter()
                .filter(|s| *s != "ws-channels")
                .filter_map(|s| rate(s).map(|r| format!("{s} {:.2}x", ours / r)))
                .collect();
            println!("  {n} subscribers, {payload} B: {}", others.join(", "));
        }
    }
}

/// Ten thousand subscribers and the server's ends of them need more file
/// descriptors than the usual soft limit.
fn raise_fd_limit(wanted: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit
                .rlim_max
                .min(wanted as libc::rlim_t)
                .max(limit.rlim_cur);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
