//! What the tests of the `ws` binary share: `ws serve` as a child
//! process, `ws ctl` runs, raw HTTP, a channels client.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use ws_channels::ChannelsClient;
use ws_channels::protocol::command_envelope;
use ws_tokio::{Message, WebSocket};

pub const WAIT: Duration = Duration::from_secs(15);
pub const TOKEN: &str = "test-admin-token-0123456789";
/// The cluster key the tests' `ws serve` nodes share.
pub const CLUSTER_KEY: &str = "the cluster key of the ws serve tests";

pub fn ws_binary() -> &'static str {
    env!("CARGO_BIN_EXE_ws")
}

/// A file of its own under the temporary directory.
pub fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ws-server-tests-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A running `ws serve`, killed when dropped.
pub struct Serve {
    pub child: Child,
    /// The first address it listens on.
    pub addr: SocketAddr,
    /// Every address, in the order given.
    pub addrs: Vec<SocketAddr>,
    /// The `--admin-listen` addresses, in the order given.
    pub admin_addrs: Vec<SocketAddr>,
}

impl Serve {
    /// `ws serve ARGS` logging warnings only to the test's stderr.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(args, env, false).await
    }

    /// `ws serve ARGS` with `env` (over `WS_LOG=warn`); with `capture_logs`
    /// its stderr is kept for [`stop`](Self::stop). Reads the address of
    /// each `--listen` address it prints.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)], capture_logs: bool) -> Self {
        Self::spawn_with(args, env, capture_logs, |_| {}).await
    }

    /// [`spawn`](Self::spawn), with `configure` applied to the command
    /// last (to lower a resource limit, say).
    pub async fn spawn_with(
        args: &[&str],
        env: &[(&str, &str)],
        capture_logs: bool,
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let mut command = Command::new(ws_binary());
        command
            .arg("serve")
            .args(args)
            .env_remove("WS_ADMIN_TOKEN")
            .env_remove("WS_LISTEN")
            .env("WS_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if capture_logs {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .kill_on_drop(true);
        configure(&mut command);
        let mut child = command.spawn().expect("ws serve starts");
        let count = |flag: &str, default: usize| {
            args.iter()
                .position(|a| *a == flag)
                .map_or(default, |at| args[at + 1].split(',').count())
        };
        let listeners = count("--listen", 1);
        let admin_listeners = count("--admin-listen", 0);
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut addrs = Vec::new();
        for _ in 0..listeners + admin_listeners {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .expect("ws serve prints its addresses")
                .unwrap()
                .expect("ws serve prints its addresses");
            // "ws serve: page http://127.0.0.1:PORT/  channels ws://..."
            let addr = line
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|addr| addr.parse().ok())
                .unwrap_or_else(|| panic!("no address in {line:?}"));
            addrs.push(addr);
        }
        let admin_addrs = addrs.split_off(listeners);
        Self {
            child,
            addr: addrs[0],
            addrs,
            admin_addrs,
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: signalling a child process this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    /// SIGTERM, then its exit status and what it logged (with
    /// `capture_logs`).
    pub async fn stop(self) -> (Option<i32>, String) {
        self.terminate();
        let output = tokio::time::timeout(WAIT, self.child.wait_with_output())
            .await
            .expect("ws serve exits after draining")
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn ctl(&self, token: &str, args: &[&str]) -> (i32, String, String) {
        run_ctl(&self.http(), token, args).await
    }

    pub async fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let (code, out, err) = self.ctl(TOKEN, &all).await;
        assert_eq!(code, 0, "ws ctl {args:?}: {out} {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?} is not JSON: {e}"))
    }

    pub async fn metrics(&self) -> String {
        http_get(self.addr, "/metrics").await
    }
}

pub async fn run_ctl(server: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(ws_binary())
            .arg("ctl")
            .arg("--server")
            .arg(server)
            .arg("--token")
            .arg(token)
            .args(args)
            .env_remove("WS_ADMIN_TOKEN")
            .output(),
    )
    .await
    .expect("ws ctl answers in time")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "ws ctl panicked: {stderr}");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    )
}

/// A GET over a fresh connection, the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    let response = raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// A channels session through ws-channels' client, at the wire's level
/// (replies and events as the JSON the server wrote), with the events
/// that arrived between responses.
pub struct Peer {
    pub client: ChannelsClient,
    pub events: VecDeque<Value>,
}

impl Peer {
    pub async fn connect(addr: SocketAddr, user: &str) -> Self {
        let (ws, _) = ws_tokio::connect(format!("ws://{addr}/channels?user={user}"))
            .await
            .expect("connects");
        Self {
            client: ChannelsClient::new(ws),
            events: VecDeque::new(),
        }
    }

    /// The connection, for sending and reading around the client (bursts
    /// of commands without waiting for replies, a close).
    pub fn ws(&mut self) -> &mut WebSocket {
        self.client.socket_mut()
    }

    /// The next message read from the connection itself, whole; `None`
    /// once it has closed.
    pub async fn recv(&mut self) -> Option<Value> {
        match tokio::time::timeout(WAIT, self.ws().recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => Some(serde_json::from_str(text.as_str()).unwrap()),
            Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("nothing arrived in time"),
        }
    }

    pub async fn command(&mut self, channel: &str, action: &str, data: Value) -> Value {
        let command = command_envelope(channel, action, data);
        let reply = tokio::time::timeout(WAIT, self.client.send_envelope(command))
            .await
            .expect("a response in time")
            .expect("a response");
        for event in self.client.take_buffered_events() {
            self.events.push_back(serde_json::to_value(event).unwrap());
        }
        reply.data.expect("responses carry data")
    }

    /// The next event from the server, whole; `None` once closed.
    async fn next_event(&mut self) -> Option<Value> {
        match tokio::time::timeout(WAIT, self.client.next_event_envelope()).await {
            Ok(Some(Ok(event))) => Some(serde_json::to_value(event).unwrap()),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("nothing arrived in time"),
        }
    }

    /// The next event with `action`, skipping others.
    pub async fn event(&mut self, action: &str) -> Value {
        if let Some(at) = self.events.iter().position(|e| e["action"] == action) {
            return self.events.remove(at).unwrap();
        }
        loop {
            let message = self.next_event().await.expect("an event");
            if message["action"] == action {
                return message;
            }
            self.events.push_back(message);
        }
    }

    /// Reads until the connection closes: its close code.
    pub async fn closed(&mut self) -> u16 {
        while self.next_event().await.is_some() {}
        self.client.socket().closed().expect("closed").code.as_u16()
    }
}

pub fn settings_file(extra: &str) -> PathBuf {
    temp_file(
        "ws.toml",
        format!("listen = [\"127.0.0.1:0\"]\nadmin_token = \"{TOKEN}\"\n{extra}").as_bytes(),
    )
}

/// The value of the unlabelled `name` in Prometheus text, 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

/// A raw request and the whole response.
pub async fn raw(addr: SocketAddr, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response)
        .await
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

/// `ws serve` with bad settings: the exit status and the message.
pub async fn refused_settings(args: &[&str]) -> String {
    let output = tokio::time::timeout(
        WAIT,
        Command::new(ws_binary())
            .arg("serve")
            .args(args)
            .env_remove("WS_LISTEN")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("ws serve gives up at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// The status of a WebSocket handshake refused with `origin`, if any.
pub async fn handshake_status(addr: SocketAddr, origin: Option<&str>) -> String {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let response = raw(
        addr,
        format!(
            "GET /channels?user=ann HTTP/1.1\r\nHost: {addr}\r\n{origin}Upgrade: websocket\r\n\
             Connection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        ),
    )
    .await;
    response.lines().next().unwrap_or_default().to_owned()
}

/// A raw request and the response's head, without waiting for the end of
/// the connection (an upgrade keeps it open).
pub async fn raw_head(addr: SocketAddr, request: String) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(WAIT, stream.read(&mut byte)).await {
            Ok(Ok(1)) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}
