//! Admission before any WebSocket state exists: handshakes in progress are
//! capped, and running out of file descriptors is survived. Both change
//! the process's file descriptor limit, so they live in their own test
//! binary and run one after the other in one test.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;
use ws_tokio::ws_core::handshake::ClientRequest;
use ws_tokio::{
    ClientConfig, Ctx, Endpoint, Handler, Message, ServerConfig, TokioIo, TokioRuntime,
};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }
}

async fn echo_server(config: ServerConfig) -> (SocketAddr, ws_tokio::ServerHandle) {
    let server = ws_tokio::server()
        .config(config)
        .route("/", Endpoint::new(|_| Echo))
        .build();
    let listener = ws_tokio::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = server.handle();
    tokio::spawn(async move { server.serve(listener).await });
    (addr, handle)
}

async fn echo_once(addr: SocketAddr) {
    let (mut socket, _) = ws_tokio::connect(&format!("ws://{addr}/")).await.unwrap();
    socket.send("hello").await.unwrap();
    assert_eq!(
        socket.recv().await.unwrap().unwrap(),
        Message::text("hello")
    );
}

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(status, 0);
    limit
}

fn set_nofile(soft: libc::rlim_t) {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: nofile().rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    let status = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(status, 0);
}

/// File descriptors open in this process now.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Restores the soft limit when the test ends, however it ends.
struct Restore(libc::rlim_t);

impl Drop for Restore {
    fn drop(&mut self) {
        set_nofile(self.0);
    }
}

// 5,000 silent TCP connections, and a real client still completes its
// handshake within a second. The clients' sockets are made before the
// process's descriptor limit is lowered to a few hundred above them, so
// the server (as if it were its own process) has room for only a few
// hundred sockets: it lets the flood in above its handshake cap while the
// sockets are young, runs out of descriptors, and then drops the oldest
// silent handshakes to make room, reaching the real client in the backlog.
// A server that kept every silent socket until its handshake deadline
// (10 s) would leave the real client waiting.
async fn silent_sockets_do_not_starve_real_clients() {
    let silent_count = 5_000;
    let before = nofile();
    let _restore = Restore(before.rlim_cur);
    let needed = (open_fds() + silent_count + 1000) as libc::rlim_t;
    assert!(
        before.rlim_max >= needed,
        "this test needs {needed} file descriptors; the hard limit is {}",
        before.rlim_max
    );
    set_nofile(needed);
    let (addr, handle) = echo_server(ServerConfig::default()).await;
    let sockets: Vec<TcpSocket> = (0..=silent_count)
        .map(|_| TcpSocket::new_v4().unwrap())
        .collect();
    set_nofile((open_fds() + 300) as libc::rlim_t);
    let mut sockets = sockets.into_iter();
    let real = sockets.next().unwrap();
    // The flood itself gets through: a server that held its first few
    // hundred silent sockets until their deadline would stop accepting, and
    // connects would wait in a full backlog.
    let flood = async {
        let mut silent = Vec::with_capacity(silent_count);
        for socket in sockets {
            silent.push(socket.connect(addr).await.unwrap());
        }
        silent
    };
    let silent = tokio::time::timeout(Duration::from_secs(10), flood)
        .await
        .expect("5,000 connects within 10 s");
    let started = Instant::now();
    let echo = async {
        let io = TokioIo(real.connect(addr).await.unwrap());
        let request = ClientRequest::new(&format!("ws://{addr}/")).unwrap();
        let (mut socket, _) =
            ws_async::connect_with(TokioRuntime, io, &request, &ClientConfig::default())
                .await
                .unwrap();
        socket.send("hello").await.unwrap();
        assert_eq!(
            socket.recv().await.unwrap().unwrap(),
            Message::text("hello")
        );
    };
    tokio::time::timeout(Duration::from_secs(1), echo)
        .await
        .expect("a real client is served within a second");
    assert!(started.elapsed() < Duration::from_secs(1));
    // The silent sockets count as handshakes, never as connections.
    assert!(handle.count() <= 1);
    drop(silent);
}

/// Counts warnings and infos from the accept loop.
#[derive(Default)]
struct Counter {
    warnings: AtomicUsize,
    recoveries: AtomicUsize,
}

struct Counting(Arc<Counter>);

impl tracing::Subscriber for Counting {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let target = event.metadata().target();
        if !target.starts_with("ws_async") {
            return;
        }
        match *event.metadata().level() {
            tracing::Level::WARN => {
                self.0.warnings.fetch_add(1, Ordering::SeqCst);
            }
            tracing::Level::INFO => {
                self.0.recoveries.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// Out of file descriptors: the accept loop warns once (not on every retry),
// backs off, and serves again once descriptors are free.
async fn running_out_of_file_descriptors_is_survived_quietly() {
    let counter = Arc::new(Counter::default());
    let _subscriber = tracing::subscriber::set_default(Counting(counter.clone()));
    let before = nofile();
    let _restore = Restore(before.rlim_cur);
    let (addr, _handle) = echo_server(ServerConfig::default()).await;
    // A ceiling a little above what is open, then every descriptor but one
    // taken: the client's socket gets the last, the server's accept none.
    set_nofile((open_fds() + 64) as libc::rlim_t);
    let mut hoard: Vec<OwnedFd> = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hoard.push(file.into()),
            Err(error) if error.raw_os_error() == Some(libc::EMFILE) => break,
            Err(error) => panic!("{error}"),
        }
    }
    hoard.pop();
    let client = tokio::spawn(async move { echo_once(addr).await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !client.is_finished(),
        "the server had no descriptor to accept with"
    );
    assert_eq!(
        counter.warnings.load(Ordering::SeqCst),
        1,
        "one warning for the whole episode"
    );
    drop(hoard);
    tokio::time::timeout(Duration::from_secs(3), client)
        .await
        .expect("served once descriptors are free")
        .unwrap();
    assert_eq!(
        counter.recoveries.load(Ordering::SeqCst),
        1,
        "the recovery is logged"
    );
    assert_eq!(counter.warnings.load(Ordering::SeqCst), 1);
}

#[test]
fn file_descriptor_limits() {
    // On one thread each, so the counting subscriber sees the accept loop.
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    runtime().block_on(silent_sockets_do_not_starve_real_clients());
    runtime().block_on(running_out_of_file_descriptors_is_survived_quietly());
}
