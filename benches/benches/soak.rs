//! Soak: waves of connections against one ws-tokio echo server process, for
//! minutes, checking that the server's resident memory returns to its
//! baseline and that no file descriptor leaks.
//!
//! ```sh
//! cargo bench -p ws-benches --bench soak                      # 10 minutes, 10,000 per wave
//! cargo bench -p ws-benches --bench soak -- --minutes 1 --connections 2000
//! ```
//!
//! Each wave opens `--connections` connections, at most 512 at a time:
//! most exchange a message and close cleanly; one in eight sends half a
//! frame and drops its socket (the server sees end of stream mid-frame);
//! one in eight opens TCP and never speaks (a silent socket the handshake
//! cap and deadline must clear). After each wave the client waits until
//! the server holds no more sockets than it did before the first wave,
//! then reads its resident memory and open descriptors from /proc. The
//! first wave warms the allocator and sets the baseline. The run fails
//! (exit status 1) if descriptors do not return to the baseline, or the
//! last wave's memory is more than 10 % above it.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use ws_benches::{number_arg, raise_fd_limit};
use ws_tokio::{CloseCode, Ctx, Endpoint, Handler, Message, ServerConfig};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }
}

/// The server side: this binary run with `--serve`; prints its address.
fn serve() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut config = ServerConfig::default();
        // Silent sockets are cleared by the handshake deadline; keep it
        // short so waves do not wait on it.
        config.handshake.timeout = Duration::from_secs(2);
        let server = ws_tokio::server()
            .config(config)
            .route("/", Endpoint::new(|_| Echo))
            .build();
        let listener = ws_tokio::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("an address"));
        server.serve(listener).await.expect("serve");
    });
}

struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("this binary"))
            .arg("--serve")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server process");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("the address");
        let addr = line.trim().parse().expect("an address");
        Self { child, addr }
    }

    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        self.status("VmRSS:")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(Iterator::count)
            .unwrap_or(0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One connection of a wave, in the way `kind` says.
async fn one(addr: SocketAddr, kind: usize) -> Result<(), String> {
    match kind % 8 {
        // Half a frame, then the socket is dropped.
        6 => {
            let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let request = format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut reader = tokio::io::BufReader::new(&mut stream);
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            if !line.starts_with("HTTP/1.1 101") {
                return Err(line);
            }
            loop {
                line.clear();
                reader
                    .read_line(&mut line)
                    .await
                    .map_err(|e| e.to_string())?;
                if line == "\r\n" {
                    break;
                }
            }
            // A masked binary frame header announcing 100 bytes, and 10.
            let mut frame = vec![0x82, 0x80 | 100, 1, 2, 3, 4];
            frame.extend([0u8; 10]);
            stream.write_all(&frame).await.map_err(|e| e.to_string())?;
            Ok(())
        }
        // A socket that never speaks.
        7 => {
            let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(stream);
            Ok(())
        }
        _ => {
            let (mut socket, _) = ws_tokio::connect(&format!("ws://{addr}/"))
                .await
                .map_err(|e| e.to_string())?;
            let payload = format!("message {kind}");
            socket
                .send(payload.as_str())
                .await
                .map_err(|e| e.to_string())?;
            match socket.recv().await {
                Some(Ok(Message::Text(text))) if text.as_str() == payload => {}
                other => return Err(format!("{other:?}")),
            }
            socket
                .try_close(CloseCode::NORMAL, "")
                .map_err(|e| e.to_string())?;
            while let Some(item) = socket.recv().await {
                item.map_err(|e| e.to_string())?;
            }
            Ok(())
        }
    }
}

async fn wave(addr: SocketAddr, connections: usize) -> usize {
    let permits = Arc::new(Semaphore::new(512));
    let mut tasks = Vec::with_capacity(connections);
    for kind in 0..connections {
        let permit = permits.clone().acquire_owned().await.expect("open");
        tasks.push(tokio::spawn(async move {
            let result = one(addr, kind).await;
            drop(permit);
            result
        }));
    }
    let mut failed = 0;
    for task in tasks {
        if let Err(error) = task.await.expect("a task") {
            if failed == 0 {
                eprintln!("first failure this wave: {error}");
            }
            failed += 1;
        }
    }
    failed
}

fn main() {
    if std::env::args().any(|a| a == "--serve") {
        serve();
        return;
    }
    // `cargo bench` passes `--bench`; a plain `cargo test` run skips it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    raise_fd_limit();
    let minutes = number_arg("--minutes", 10);
    let connections = usize::try_from(number_arg("--connections", 10_000)).expect("a count");
    let server = ServerProcess::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let idle_fds = server.fds();
    println!(
        "soak: {connections} connections per wave for {minutes} min; \
         server idle: {} KiB resident, {idle_fds} descriptors",
        server.rss_kib()
    );
    println!("| wave | elapsed | failed | resident KiB | descriptors |");
    println!("|---|---|---|---|---|");
    let started = Instant::now();
    let mut baseline = None;
    let mut last = (0, 0);
    let mut waves = 0;
    let mut leaked = false;
    while started.elapsed() < Duration::from_secs(minutes * 60) || waves < 2 {
        waves += 1;
        let failed = runtime.block_on(wave(server.addr, connections));
        // The server lets go of sockets as their close handshakes, end of
        // stream and handshake deadlines complete.
        let settle = Instant::now();
        while server.fds() > idle_fds && settle.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(200));
        let (rss, fds) = (server.rss_kib(), server.fds());
        println!(
            "| {waves} | {:.0} s | {failed} | {rss} | {fds} |",
            started.elapsed().as_secs_f64()
        );
        leaked |= fds > idle_fds;
        baseline.get_or_insert(rss);
        last = (rss, fds);
    }
    let baseline = baseline.expect("one wave");
    let growth = last.0 as f64 / baseline as f64 - 1.0;
    println!(
        "baseline after wave 1: {baseline} KiB; after wave {waves}: {} KiB ({:+.1} %); \
         descriptors {} (idle {idle_fds})",
        last.0,
        growth * 100.0,
        last.1
    );
    if leaked || growth > 0.10 {
        eprintln!("soak failed: descriptors leaked or memory did not return to its baseline");
        std::process::exit(1);
    }
}
