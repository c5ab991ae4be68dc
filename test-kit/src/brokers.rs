//! The brokers the cluster tests use: the shared Redis and NATS named by
//! `WS_TEST_REDIS_URL` and `WS_TEST_NATS_URL`, and brokers of a test's own
//! (`redis-server`, `nats-server -js`) on free ports, for the tests that
//! stop, pause or restart one: they signal only their own process, by PID.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a broker may take to start.
const START: Duration = Duration::from_secs(15);

/// Which broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Redis (`redis-server`).
    Redis,
    /// NATS with JetStream (`nats-server -js`).
    Nats,
}

impl Kind {
    /// The variable naming the shared broker.
    pub fn env(self) -> &'static str {
        match self {
            Kind::Redis => "WS_TEST_REDIS_URL",
            Kind::Nats => "WS_TEST_NATS_URL",
        }
    }

    /// Where the shared broker is when the variable is unset.
    pub fn default_url(self) -> &'static str {
        match self {
            Kind::Redis => "redis://127.0.0.1:6379",
            Kind::Nats => "nats://127.0.0.1:4222",
        }
    }

    /// The URL of this kind of broker on a loopback port.
    pub fn url(self, port: u16) -> String {
        match self {
            Kind::Redis => format!("redis://127.0.0.1:{port}"),
            Kind::Nats => format!("nats://127.0.0.1:{port}"),
        }
    }

    fn start_hint(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server --port 6379",
            Kind::Nats => "nats-server -js -p 4222",
        }
    }
}

/// The address in a broker URL (`redis://user:pw@host:port/0`).
pub fn port_of(url: &str) -> Option<SocketAddr> {
    let rest = url.split("://").nth(1)?;
    let host = rest.rsplit('@').next()?.split('/').next()?;
    std::net::ToSocketAddrs::to_socket_addrs(host).ok()?.next()
}

/// The shared broker's URL: the variable's (which must then answer), else
/// the default one if it answers, else `None`, said on stderr with what to
/// start, so the test can skip.
pub fn service(kind: Kind) -> Option<String> {
    if let Ok(url) = std::env::var(kind.env()) {
        let addr = port_of(&url).unwrap_or_else(|| panic!("{}={url}: no address", kind.env()));
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{}={url} is set but unreachable: {e}", kind.env()));
        return Some(url);
    }
    let url = kind.default_url();
    let addr = port_of(url).expect("a fixed address");
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        return Some(url.to_owned());
    }
    eprintln!(
        "skipped: no {kind:?} at {url}; start it ({}) or set {}",
        kind.start_hint(),
        kind.env()
    );
    None
}

/// A key or subject prefix of this test's own, so tests sharing a broker
/// never see each other's channels.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}{}{}", std::process::id(), nanos % 1_000_000_000, test)
}

/// A loopback port nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker of the test's own, on a free port, killed when dropped.
#[derive(Debug)]
pub struct OwnBroker {
    kind: Kind,
    port: u16,
    dir: std::path::PathBuf,
    extra: Vec<String>,
    child: Option<std::process::Child>,
}

impl OwnBroker {
    /// Starts one with its defaults (no persistence for Redis; JetStream
    /// in a directory of its own for NATS).
    pub fn start(kind: Kind) -> Self {
        Self::start_with(kind, &[])
    }

    /// Starts one with `extra` arguments too (a password, users).
    pub fn start_with(kind: Kind, extra: &[&str]) -> Self {
        Self::start_on(kind, free_port(), |_| {
            extra.iter().map(|a| (*a).to_owned()).collect()
        })
    }

    /// Starts one that speaks only TLS on its port, with this certificate
    /// and key (PEM files); clients are not asked for certificates.
    pub fn start_tls(kind: Kind, cert: &std::path::Path, key: &std::path::Path) -> Self {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        Self::start_on(kind, free_port(), |port| {
            let args: Vec<String> = match kind {
                // The plain port off (the last `--port` wins), TLS on ours.
                Kind::Redis => vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cert-file".into(),
                    cert.clone(),
                    "--tls-key-file".into(),
                    key.clone(),
                    "--tls-ca-cert-file".into(),
                    cert.clone(),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ],
                Kind::Nats => vec![
                    "--tls".into(),
                    "--tlscert".into(),
                    cert.clone(),
                    "--tlskey".into(),
                    key.clone(),
                ],
            };
            args
        })
    }

    fn start_on(kind: Kind, port: u16, extra: impl FnOnce(u16) -> Vec<String>) -> Self {
        let dir = std::env::temp_dir().join(format!("ws-broker-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Self {
            kind,
            port,
            dir,
            extra: extra(port),
            child: None,
        };
        broker.restart();
        broker
    }

    /// Its URL, without credentials.
    pub fn url(&self) -> String {
        self.kind.url(self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A directory of its own, for files the test makes for it.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts it again on the same port (after [`kill`](Self::kill)), with
    /// the same arguments.
    pub fn restart(&mut self) {
        let mut command = match self.kind {
            Kind::Redis => {
                let mut c = std::process::Command::new("redis-server");
                c.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"]);
                c
            }
            Kind::Nats => {
                let mut c = std::process::Command::new("nats-server");
                c.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
                    .arg("-sd")
                    .arg(&self.dir);
                c
            }
        };
        let child = command
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}'s server: {e}", self.kind));
        self.child = Some(child);
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(started.elapsed() < START, "{:?} did not start", self.kind);
            std::thread::sleep(Duration::from_millis(50));
        }
        // JetStream answers a little after the port opens.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Kills it (SIGKILL) and waits for it to end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it without killing it (SIGSTOP): it holds its connections
    /// and answers nothing, as a hung broker does.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets it go on after [`pause`](Self::pause) (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the broker runs");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: signalling a child process this test started and has not
        // yet waited for, so its PID is still its own.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A paused broker ignores nothing but SIGKILL; resume it so it
            // can be reaped cleanly either way.
            self.signal(libc::SIGCONT);
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
