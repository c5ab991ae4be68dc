//! Echo servers on ws-tokio, ws-smol, tokio-tungstenite and fastwebsockets,
//! and a minimal bound, driven in turn by the same load client in the same
//! run.
//!
//! ```sh
//! cargo bench -p ws-echo-bench --bench echo                  # full matrix, 3 rounds of 2 s cells
//! cargo bench -p ws-echo-bench --bench echo -- --quick       # 1 s cells, 1 round
//! cargo bench -p ws-echo-bench --bench echo -- --quick --rounds 3   # benches/README.md's table, ~10 min
//! cargo bench -p ws-echo-bench --bench echo -- --rounds 5    # median of 5 runs per cell
//! cargo bench -p ws-echo-bench --bench echo -- --servers ws-tokio,fastwebsockets
//! cargo bench -p ws-echo-bench --bench echo -- --connections 64 --payloads 16 --in-flight 1,16
//! cargo bench -p ws-echo-bench --bench echo -- --idle-only   # memory per idle connection
//! # permessage-deflate: JSON payloads, ws-tokio with and without it
//! cargo bench -p ws-echo-bench --bench echo -- --quick --json \
//!     --servers ws-tokio,ws-tokio+deflate,tokio-tungstenite
//! # memory per connection that has compressed a message, per setting
//! cargo bench -p ws-echo-bench --bench echo -- --active-memory \
//!     --servers ws-tokio,ws-tokio+deflate,ws-tokio+deflate-w10,ws-tokio+deflate-nct
//! # instructions per message, each server under valgrind's callgrind
//! cargo bench -p ws-echo-bench --bench echo -- --instructions
//! cargo bench -p ws-echo-bench --bench echo -- --instructions --servers ws-tokio \
//!     --connections 1 --payloads 16 --in-flight 16 --keep-dumps target/callgrind
//! ```
//!
//! `--instructions` counts instead of timing: each server runs under
//! `valgrind --tool=callgrind`, the load client sends 5,000 echoes, the
//! server's counters are dumped (`callgrind_control -d`), 20,000 more, and
//! dumped again; the second dump divided by 20,000 is the user-space
//! instructions per message. The figure does not depend on what else the
//! machine is doing, so it can rank servers that throughput on a shared
//! two-core machine cannot: runs agree within about 1 % with one message
//! in flight (64 KiB included), within about 3 % with 16, where how many
//! messages share a read varies. Default rows: 1 connection 16 B 1 in flight,
//! 16 x 1 KiB x 1, 1 x 16 B x 16, 1 x 1 KiB x 16, 1 x 64 KiB x 4; or the
//! matrix of `--connections`, `--payloads`, `--in-flight`.
//!
//! Each server runs in its own process (this binary re-executed with
//! `--serve NAME`) on a tokio runtime built the same way: multi-threaded
//! with one worker, TCP_NODELAY on accepted sockets. ws-smol runs on the
//! same budget: one async-executor on one thread. The load client uses
//! ws-core directly over tokio sockets on its own one-worker runtime, so
//! the two share the machine's two cores evenly.
//!
//! `minimal` is no library but a bound: the least work an echo server can
//! do (see its module). Where even it is not some factor faster than a
//! peer, no server can be, on this machine with this load client.
//! `ws-core` is another bound, in no default list: ws-core's engine under
//! the plainest loop, with no driver (see its module).
//!
//! Runs on a shared two-core machine vary by a fifth from one to the next,
//! so every cell runs once per round, the servers in turn, and the run
//! with the median rate is reported. After the table, ws-tokio's rate
//! divided by every other server's.
//!
//! For every cell (connections x payload x messages in flight per
//! connection) it reports echoed messages per second, p50/p99 round-trip
//! latency, the server's CPU time per message (from /proc) and the bytes
//! the server sent per echo. Then it opens 5,000 idle connections to a
//! fresh server process and reports the growth of its resident memory per
//! connection.
//!
//! `ws-tokio+deflate` is ws-tokio accepting permessage-deflate with its
//! defaults (15-bit windows, context takeover, messages from 128 bytes
//! compressed at level 1); the load client then offers and uses it too.
//! `+deflate-w10` caps both windows at 10 bits, `+deflate-nct` turns
//! context takeover off both ways. tokio-tungstenite 0.30 and
//! fastwebsockets 0.10 do not implement permessage-deflate. `--json`
//! replaces the constant payload bytes, which no real traffic resembles,
//! with JSON-like text: 64 different messages per size, sent in turn.
//!
//! `ws-tokio+no-timers` is ws-tokio without the work per message that
//! fastwebsockets and tokio-tungstenite do not do: no keepalive ping, no
//! idle timeout and no release of idle buffers, so the driver arms no
//! timer and reads no deadline. Set against `ws-tokio` it gives what those
//! defaults cost; set against the peers, a comparison of equal duties.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use ws_benches::{ServerProcess, fmt_rate, list_arg, one_worker_runtime};
use ws_core::deflate::DeflateConfig;
use ws_core::handshake::{ClientHandshake, ClientRequest};
use ws_core::{Config, Connection, Event, HandshakeLimits, Message};

/// The JSON-like payloads of `--json`, shared with the interop testee
/// (whose crate links the NATS backend this package keeps out).
#[path = "../../../interop/programs/src/events.rs"]
#[allow(unreachable_pub)] // `pub` for the testee crate it belongs to
mod events;

const SERVERS: [&str; 5] = [
    "ws-tokio",
    "ws-smol",
    "tokio-tungstenite",
    "fastwebsockets",
    "minimal",
];
const CONNECTIONS: [usize; 3] = [1, 64, 512];
const PAYLOADS: [usize; 3] = [16, 1024, 64 * 1024];
const IN_FLIGHT: [usize; 2] = [1, 16];
/// `--instructions`' rows unless the matrix is given: (connections,
/// payload, in flight).
const INSTRUCTION_ROWS: [(usize, usize, usize); 5] = [
    (1, 16, 1),
    (16, 1024, 1),
    (1, 16, 16),
    (1, 1024, 16),
    (1, 64 * 1024, 4),
];
const INSTRUCTION_SERVERS: [&str; 5] = [
    "ws-tokio",
    "ws-smol",
    "fastwebsockets",
    "tokio-tungstenite",
    "minimal",
];
const IDLE_CONNECTIONS: usize = 5000;
const ACTIVE_CONNECTIONS: usize = 1000;

/// The permessage-deflate settings a server name asks for (`None`: off).
fn deflate_setting(name: &str) -> Option<DeflateConfig> {
    let (_, variant) = name.split_once("+deflate")?;
    let mut config = DeflateConfig::default();
    match variant {
        "" => {}
        "-w10" => {
            config.server_max_window_bits = 10;
            config.client_max_window_bits = 10;
        }
        "-nct" => {
            config.server_no_context_takeover = true;
            config.client_no_context_takeover = true;
        }
        other => panic!("unknown deflate variant {other}"),
    }
    Some(config)
}

/// Whether a server name asks for ws-tokio without its timers.
fn timers_off(name: &str) -> bool {
    name.ends_with("+no-timers")
}

/// JSON-like text of `n` bytes, as a feed of events would carry.
fn json_payload(n: usize) -> Vec<u8> {
    events::events(n).into_bytes()
}

/// 64 different JSON-like messages of `n` bytes, cut at different places
/// from one stream of events: a connection sends them in turn, so that
/// context takeover meets similar messages, not the same one again.
fn json_payloads(n: usize) -> Arc<[Bytes]> {
    const STEP: usize = 97;
    let stream = Bytes::from(json_payload(n + 64 * STEP));
    (0..64)
        .map(|k| stream.slice(k * STEP..k * STEP + n))
        .collect()
}

// ---- servers: in echo/serving.rs --------------------------------------------

#[path = "echo/serving.rs"]
mod serving;
use serving::serve;

// ---- the load client ------------------------------------------------------

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// A client connection; offers permessage-deflate with `deflate`.
async fn open(
    addr: SocketAddr,
    deflate: Option<&DeflateConfig>,
) -> io::Result<(TcpStream, Connection)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut request = ClientRequest::new(&format!("ws://{addr}/")).expect("a valid URI");
    if let Some(config) = deflate {
        request = request.deflate(config.clone());
    }
    let (mut handshake, wire) = ClientHandshake::new(
        &request,
        rand_nonce(),
        HandshakeLimits::default(),
        Instant::now(),
    )
    .expect("a valid request");
    tokio::io::AsyncWriteExt::write_all(&mut stream, &wire).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let response = loop {
        buf.clear();
        if tokio::io::AsyncReadExt::read_buf(&mut stream, &mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(response) = handshake.handle_input(&buf).map_err(io::Error::other)? {
            break response;
        }
    };
    let mut config = Config::client();
    config.ping_interval = None;
    config.idle_timeout = None;
    config.max_outgoing_buffer = usize::MAX;
    let mut conn = Connection::client(config, Instant::now(), rand_seed());
    if let (Some(agreed), Some(config)) = (response.deflate, deflate) {
        conn = conn.with_deflate(agreed, config);
    } else if deflate.is_some() {
        return Err(io::Error::other("the server declined permessage-deflate"));
    }
    conn.handle_read(&response.rest, Instant::now());
    Ok((stream, conn))
}

fn rand_nonce() -> [u8; 16] {
    let mut nonce = [0; 16];
    getrandom::fill(&mut nonce).expect("random bytes");
    nonce
}

fn rand_seed() -> [u8; 32] {
    let mut seed = [0; 32];
    getrandom::fill(&mut seed).expect("random bytes");
    seed
}

#[derive(Default)]
struct ConnStats {
    messages: u64,
    latencies_us: Vec<u32>,
    /// Bytes received while measuring.
    received: u64,
}

/// Keeps `in_flight` messages outstanding on one connection until told to
/// stop, timing each round trip and counting every echo in `echoed`.
async fn drive(
    stream: TcpStream,
    mut conn: Connection,
    payloads: Arc<[Bytes]>,
    in_flight: usize,
    phase: Arc<AtomicU8>,
    echoed: Arc<AtomicU64>,
) -> io::Result<ConnStats> {
    let mut stats = ConnStats::default();
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(in_flight);
    let mut next_payload = payloads.iter().cycle();
    for _ in 0..in_flight {
        let payload = next_payload.next().expect("at least one payload");
        conn.send(Message::Binary(payload.clone())).expect("send");
        sent.push_back(Instant::now());
    }
    loop {
        // try_read/try_write never yield: without this, a connection whose
        // echoes always arrive in time (a fast server) would keep the
        // client's one worker forever and starve the others.
        tokio::task::consume_budget().await;
        // Write what is queued, then read what has arrived.
        while conn.transmit_len() > 0 {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = conn.transmit_slices(&mut slices);
            match stream.try_write_vectored(&slices[..n]) {
                Ok(written) => conn.advance_transmit(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let buf = conn.recv_buf();
        match stream.try_read_buf(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                if phase.load(Ordering::Relaxed) == MEASURE {
                    stats.received += n as u64;
                }
                conn.handle_received(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let interest = if conn.transmit_len() > 0 {
                    tokio::io::Interest::READABLE | tokio::io::Interest::WRITABLE
                } else {
                    tokio::io::Interest::READABLE
                };
                stream.ready(interest).await?;
                continue;
            }
            Err(e) => return Err(e),
        }
        let current = phase.load(Ordering::Relaxed);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(_) => {
                    echoed.fetch_add(1, Ordering::Relaxed);
                    let started = sent.pop_front().expect("an echo for a message sent");
                    if current == MEASURE {
                        stats.messages += 1;
                        let micros = started.elapsed().as_micros();
                        stats
                            .latencies_us
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    if current != STOP {
                        let payload = next_payload.next().expect("at least one payload");
                        conn.send(Message::Binary(payload.clone())).expect("send");
                        sent.push_back(Instant::now());
                    }
                }
                Event::Closed(closed) => {
                    return Err(io::Error::other(format!("closed: {closed:?}")));
                }
                _ => {}
            }
        }
        if current == STOP && sent.is_empty() {
            return Ok(stats);
        }
    }
}

struct Cell {
    messages_per_sec: f64,
    p50_us: u32,
    p99_us: u32,
    cpu_ns_per_message: f64,
    /// Bytes the server sent per echoed message, frame headers included.
    wire_bytes_per_message: f64,
}

/// Server, connections, payload size, messages in flight.
type CellKey = (String, usize, usize, usize);

/// One cell's shape.
struct Load {
    connections: usize,
    /// Sent in turn.
    payloads: Arc<[Bytes]>,
    in_flight: usize,
    deflate: Option<DeflateConfig>,
}

/// The load's connections, each driven by its own task.
type Drivers = Vec<tokio::task::JoinHandle<io::Result<ConnStats>>>;

/// Opens the load's connections, then starts them all.
async fn start_load(
    server: &ServerProcess,
    load: &Load,
    phase: &Arc<AtomicU8>,
    echoed: &Arc<AtomicU64>,
) -> Drivers {
    // Every connection is open before any starts sending: handshakes on
    // this thread would otherwise queue behind busy connection tasks.
    let mut opened = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        opened.push(
            open(server.addr, load.deflate.as_ref())
                .await
                .expect("connect"),
        );
    }
    opened
        .into_iter()
        .map(|(stream, conn)| {
            tokio::spawn(drive(
                stream,
                conn,
                load.payloads.clone(),
                load.in_flight,
                phase.clone(),
                echoed.clone(),
            ))
        })
        .collect()
}

async fn run_cell(
    server: &ServerProcess,
    load: &Load,
    warmup: Duration,
    measure: Duration,
) -> Cell {
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let tasks = start_load(server, load, &phase, &Arc::default()).await;
    tokio::time::sleep(warmup).await;
    let cpu_before = server.cpu();
    phase.store(MEASURE, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    phase.store(STOP, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu = server.cpu().saturating_sub(cpu_before);
    let mut messages = 0;
    let mut received = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let stats = task
            .await
            .expect("a connection task")
            .expect("a healthy connection");
        messages += stats.messages;
        received += stats.received;
        latencies.extend(stats.latencies_us);
    }
    latencies.sort_unstable();
    // Nearest-rank percentile, in integer arithmetic.
    let pick = |percent: usize| {
        latencies
            .get(latencies.len().saturating_sub(1) * percent / 100)
            .copied()
            .unwrap_or(0)
    };
    Cell {
        messages_per_sec: messages as f64 / elapsed.as_secs_f64(),
        p50_us: pick(50),
        p99_us: pick(99),
        cpu_ns_per_message: cpu.as_nanos() as f64 / messages.max(1) as f64,
        wire_bytes_per_message: received as f64 / messages.max(1) as f64,
    }
}

/// Echoes sent through before the first counter dump (warm-up), and
/// between the two dumps (the measure), in `--instructions` mode.
const WARM_ECHOES: u64 = 5_000;
const COUNTED_ECHOES: u64 = 20_000;

/// User-space instructions the server executes per echoed message: the
/// server runs under callgrind; its counters are dumped (and reset) after
/// `WARM_ECHOES` echoes and again `COUNTED_ECHOES` later. Instructions
/// are counted, not timed, so the figure is the same run after run
/// whatever else the machine does. `None` if the server under valgrind
/// does not get through the load within two minutes.
async fn count_instructions(name: &str, load: &Load, dumps: &std::path::Path) -> Option<f64> {
    let out = dumps.join(format!(
        "{name}.{}.{}.{}",
        load.connections,
        load.in_flight,
        load.payloads[0].len()
    ));
    let wrapper = [
        "valgrind".to_owned(),
        "--quiet".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    let server = ServerProcess::start_under(name, &wrapper);
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let echoed = Arc::new(AtomicU64::new(0));
    let tasks = start_load(&server, load, &phase, &echoed).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let reached = |target: u64| {
        let echoed = echoed.clone();
        async move {
            while echoed.load(Ordering::Relaxed) < target {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            true
        }
    };
    let dump = || {
        let status = std::process::Command::new("callgrind_control")
            .args(["-d", &server.pid().to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        status.is_ok_and(|s| s.success())
    };
    let counted = reached(WARM_ECHOES).await
        && dump()
        && reached(WARM_ECHOES + COUNTED_ECHOES).await
        && dump();
    phase.store(STOP, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    drop(server);
    if !counted {
        return None;
    }
    // Dump 2 holds what ran between the two dumps.
    let text = std::fs::read_to_string(format!("{}.2", out.display())).ok()?;
    let total: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(total as f64 / COUNTED_ECHOES as f64)
}

/// Resident memory per idle connection: a fresh server, one connection to
/// warm it up, then 5,000 more that stay idle.
async fn idle_memory(name: &str) -> f64 {
    let server = ServerProcess::start(name);
    let deflate = deflate_setting(name);
    let _warm = open(server.addr, deflate.as_ref()).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss();
    let mut idle = Vec::with_capacity(IDLE_CONNECTIONS);
    for _ in 0..IDLE_CONNECTIONS {
        idle.push(open(server.addr, deflate.as_ref()).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss();
    drop(idle);
    after.saturating_sub(before) as f64 / IDLE_CONNECTIONS as f64
}

/// Resident memory per connection that has exchanged one 1 KiB JSON
/// message each way and then gone idle: with permessage-deflate, what its
/// compressor and decompressor keep (or release) per setting.
async fn active_memory(name: &str) -> f64 {
    let server = ServerProcess::start(name);
    let deflate = deflate_setting(name);
    let payload = Bytes::from(json_payload(1024));
    let _warm = echo_once(server.addr, deflate.as_ref(), &payload).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.rss();
    let mut active = Vec::with_capacity(ACTIVE_CONNECTIONS);
    for _ in 0..ACTIVE_CONNECTIONS {
        active.push(echo_once(server.addr, deflate.as_ref(), &payload).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = server.rss();
    drop(active);
    after.saturating_sub(before) as f64 / ACTIVE_CONNECTIONS as f64
}

/// Opens a connection, sends `payload` and waits for its echo; hands the
/// connection back open.
async fn echo_once(
    addr: SocketAddr,
    deflate: Option<&DeflateConfig>,
    payload: &Bytes,
) -> (TcpStream, Connection) {
    let (stream, mut conn) = open(addr, deflate).await.expect("connect");
    conn.send(Message::Binary(payload.clone())).expect("send");
    await_echo(stream, conn).await.expect("an echo")
}

async fn await_echo(
    stream: TcpStream,
    mut conn: Connection,
) -> io::Result<(TcpStream, Connection)> {
    loop {
        while conn.transmit_len() > 0 {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = conn.transmit_slices(&mut slices);
            stream.writable().await?;
            match stream.try_write_vectored(&slices[..n]) {
                Ok(written) => conn.advance_transmit(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        stream.readable().await?;
        match stream.try_read_buf(conn.recv_buf()) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => conn.handle_received(Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Message(_) => return Ok((stream, conn)),
                Event::Closed(closed) => {
                    return Err(io::Error::other(format!("closed: {closed:?}")));
                }
                _ => {}
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1]).expect("the server");
        return;
    }
    if args.iter().any(|a| a == "--instructions") {
        instructions_table(&args);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let active_only = args.iter().any(|a| a == "--active-memory");
    let servers: Vec<String> = args
        .iter()
        .position(|a| a == "--servers")
        .map(|i| args[i + 1].split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| SERVERS.iter().map(|s| s.to_string()).collect());
    let connections_list = list_arg(&args, "--connections", &CONNECTIONS);
    let payloads = list_arg(&args, "--payloads", &PAYLOADS);
    let in_flights = list_arg(&args, "--in-flight", &IN_FLIGHT);
    let (connections_list, payloads, in_flights) =
        if args.iter().any(|a| a == "--idle-only") || active_only {
            (Vec::new(), Vec::new(), Vec::new())
        } else {
            (connections_list, payloads, in_flights)
        };
    let (warmup, measure) = if quick {
        (Duration::from_millis(200), Duration::from_secs(1))
    } else {
        (Duration::from_millis(500), Duration::from_secs(2))
    };
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .map(|i| args[i + 1].parse().expect("--rounds N"))
        .unwrap_or(if quick { 1 } else { 3 });
    let rt = one_worker_runtime();
    // Every server stays up for the whole run, idle while another is
    // measured. Rounds go over the cells and, within a cell, over the
    // servers in turn, so a slow spell of the machine hits all of them.
    let processes: Vec<ServerProcess> = servers.iter().map(|n| ServerProcess::start(n)).collect();
    let mut runs: BTreeMap<CellKey, Vec<Cell>> = BTreeMap::new();
    for round in 1..=rounds {
        for &connections in &connections_list {
            for &payload in &payloads {
                let sent: Arc<[Bytes]> = if json {
                    json_payloads(payload)
                } else {
                    Arc::new([Bytes::from(vec![0xAB; payload])])
                };
                for &in_flight in &in_flights {
                    for (name, server) in servers.iter().zip(&processes) {
                        let load = Load {
                            connections,
                            payloads: sent.clone(),
                            in_flight,
                            deflate: deflate_setting(name),
                        };
                        let cell = rt.block_on(run_cell(server, &load, warmup, measure));
                        eprintln!(
                            "round {round}/{rounds} {name:>18} conns {connections:>3} payload {payload:>5} in-flight {in_flight:>2}: {} msg/s",
                            fmt_rate(cell.messages_per_sec)
                        );
                        runs.entry((name.clone(), connections, payload, in_flight))
                            .or_default()
                            .push(cell);
                    }
                }
            }
        }
    }
    drop(processes);
    // The run with the median rate stands for the cell.
    let table: BTreeMap<CellKey, Cell> = runs
        .into_iter()
        .map(|(key, mut cells)| {
            cells.sort_by(|a, b| a.messages_per_sec.total_cmp(&b.messages_per_sec));
            (key, cells.swap_remove(cells.len() / 2))
        })
        .collect();
    if active_only {
        println!(
            "\nresident memory per connection after one 1 KiB JSON echo, then idle ({ACTIVE_CONNECTIONS} connections)\n"
        );
        println!("| server | bytes per connection |\n|---|---|");
        for name in &servers {
            println!("| {name} | {:.0} |", rt.block_on(active_memory(name)));
        }
        return;
    }
    let idle: Vec<(String, f64)> = servers
        .iter()
        .map(|name| (name.clone(), rt.block_on(idle_memory(name))))
        .collect();

    let of = if rounds > 1 {
        format!(", median of {rounds} rounds")
    } else {
        String::new()
    };
    if json {
        println!(
            "\nmessages/s (p50 / p99 latency, server CPU per message, bytes sent per echo), JSON payloads{of}\n"
        );
    } else {
        println!("\nmessages/s (p50 / p99 latency, server CPU per message){of}\n");
    }
    print!("| connections | payload | in flight |");
    for name in &servers {
        print!(" {name} |");
    }
    println!();
    println!("|---|---|---|{}", "---|".repeat(servers.len()));
    for &connections in &connections_list {
        for &payload in &payloads {
            for &in_flight in &in_flights {
                print!("| {connections} | {payload} B | {in_flight} |");
                for name in &servers {
                    if let Some(cell) = table.get(&(name.clone(), connections, payload, in_flight))
                    {
                        let wire = if json {
                            format!(", {:.0} B", cell.wire_bytes_per_message)
                        } else {
                            String::new()
                        };
                        print!(
                            " {} ({}/{} µs, {:.1} µs{wire}) |",
                            fmt_rate(cell.messages_per_sec),
                            cell.p50_us,
                            cell.p99_us,
                            cell.cpu_ns_per_message / 1000.0
                        );
                    }
                }
                println!();
            }
        }
    }
    print_ratios(&table, &servers, &connections_list, &payloads, &in_flights);
    println!("\nresident memory per idle connection ({IDLE_CONNECTIONS} connections)\n");
    println!("| server | bytes per connection |\n|---|---|");
    for (name, bytes) in idle {
        println!("| {name} | {:.0} |", bytes);
    }
}

/// ws-tokio's rate divided by every other server's, per cell: the form the
/// targets are stated in.
/// `--instructions`: the table of instructions per message, each server
/// under callgrind in turn.
fn instructions_table(args: &[String]) {
    let servers: Vec<String> = args
        .iter()
        .position(|a| a == "--servers")
        .map(|i| args[i + 1].split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| INSTRUCTION_SERVERS.iter().map(|s| s.to_string()).collect());
    let matrix = ["--connections", "--payloads", "--in-flight"]
        .iter()
        .any(|flag| args.iter().any(|a| a == flag));
    let rows: Vec<(usize, usize, usize)> = if matrix {
        let mut rows = Vec::new();
        for c in list_arg(args, "--connections", &CONNECTIONS) {
            for p in list_arg(args, "--payloads", &PAYLOADS) {
                for f in list_arg(args, "--in-flight", &IN_FLIGHT) {
                    rows.push((c, p, f));
                }
            }
        }
        rows
    } else {
        INSTRUCTION_ROWS.to_vec()
    };
    // With `--keep-dumps DIR` the dumps stay there, for
    // `callgrind_annotate --inclusive=yes DIR/<server>.<conns>.<in flight>.<bytes>.2`.
    let kept = args
        .iter()
        .position(|a| a == "--keep-dumps")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let dumps = kept.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("ws-bench-callgrind-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dumps).expect("a directory for callgrind's dumps");
    let rt = one_worker_runtime();
    println!(
        "instructions per echoed message (callgrind; {COUNTED_ECHOES} echoes counted after {WARM_ECHOES})\n"
    );
    println!(
        "| connections, payload, in flight | {} |",
        servers.join(" | ")
    );
    println!("|---|{}", "---|".repeat(servers.len()));
    for (connections, payload, in_flight) in rows {
        let mut line = format!("| {connections}, {payload} B, {in_flight} |");
        for name in &servers {
            let load = Load {
                connections,
                payloads: Arc::new([Bytes::from(vec![0xAB; payload])]),
                in_flight,
                deflate: deflate_setting(name),
            };
            let figure = rt.block_on(count_instructions(name, &load, &dumps));
            let cell =
                figure.map_or_else(|| "(did not finish)".to_owned(), |n| format!("{:.0}", n));
            eprintln!("{name} conns {connections} payload {payload} in-flight {in_flight}: {cell}");
            line.push_str(&format!(" {cell} |"));
        }
        println!("{line}");
    }
    if kept.is_none() {
        let _ = std::fs::remove_dir_all(&dumps);
    }
}

fn print_ratios(
    table: &BTreeMap<CellKey, Cell>,
    servers: &[String],
    connections_list: &[usize],
    payloads: &[usize],
    in_flights: &[usize],
) {
    let base = "ws-tokio";
    let others: Vec<&String> = servers.iter().filter(|s| *s != base).collect();
    if !servers.iter().any(|s| s == base) || others.is_empty() {
        return;
    }
    let rate = |name: &str, c: usize, p: usize, f: usize| {
        table
            .get(&(name.to_owned(), c, p, f))
            .map(|cell| cell.messages_per_sec)
    };
    println!("\n{base}'s messages/s divided by each other server's\n");
    print!("| connections | payload | in flight |");
    for name in &others {
        print!(" ÷ {name} |");
    }
    println!("\n|---|---|---|{}", "---|".repeat(others.len()));
    for &c in connections_list {
        for &p in payloads {
            for &f in in_flights {
                print!("| {c} | {p} B | {f} |");
                for name in &others {
                    match (rate(base, c, p, f), rate(name, c, p, f)) {
                        (Some(ours), Some(theirs)) if theirs > 0.0 => {
                            print!(" {:.2} |", ours / theirs)
                        }
                        _ => print!(" - |"),
                    }
                }
                println!();
            }
        }
    }
}
