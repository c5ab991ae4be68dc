//! Helpers: a server on a free port, a raw TCP client that speaks just
//! enough HTTP and WebSocket framing to misbehave on purpose.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use crate::rt::io::{AsyncReadExt, AsyncWriteExt};
use crate::rt::{self, TcpStream, ws};
use ws::{Ctx, Endpoint, Handler, Message, Server, ServerConfig, ServerHandle};

/// Echoes every message, waiting for room in the send queue.
pub struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }
}

/// A running server on 127.0.0.1 with a free port.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub task: rt::Task<std::io::Result<()>>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
}

pub async fn serve(server: Server) -> TestServer {
    let listener = ws::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = server.handle();
    let task = rt::spawn(async move { server.serve(listener).await });
    TestServer { addr, handle, task }
}

/// A client connection to `url` under `config`.
pub async fn connect_with(url: String, config: ws::ClientConfig) -> ws::WebSocket {
    let (socket, _) = ws::client(url)
        .unwrap()
        .config(config)
        .connect()
        .await
        .unwrap();
    socket
}

/// A client of `server`'s channels route as `user`, with the API key
/// `key-<user>` the channels tests' servers accept.
pub async fn channels_socket(server: &TestServer, user: &str) -> ws::WebSocket {
    let (socket, _) = ws::client(server.url("/channels"))
        .unwrap()
        .header(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(&format!("Key key-{user}")).unwrap(),
        )
        .connect()
        .await
        .unwrap();
    socket
}

pub async fn echo_server(config: ServerConfig) -> TestServer {
    serve(
        ws::server()
            .config(config)
            .route("/echo", Endpoint::new(|_| Echo))
            .build(),
    )
    .await
}

/// A small config for lifecycle tests: short timers.
pub fn quick_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.connection.close_timeout = Duration::from_millis(500);
    config.handshake.timeout = Duration::from_millis(500);
    config
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid handshake request for `path`, with extra header lines.
pub fn request(path: &str, extra: &[&str]) -> String {
    let mut text = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

/// A raw connection to the server.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self { stream }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until the peer closes (or `limit` passes); returns the bytes.
    pub async fn read_to_close(&mut self, limit: Duration) -> Vec<u8> {
        self.read_until_eof(limit).await.0
    }

    /// Reads until the peer closes; returns the bytes and whether the end
    /// of stream (or a reset) came before `limit`.
    pub async fn read_until_eof(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let closed = rt::timeout(limit, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .is_ok();
        (out, closed)
    }

    /// Reads a response head; returns status and head text.
    pub async fn read_head(&mut self) -> (u16, String) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = rt::timeout(Duration::from_secs(5), self.stream.read(&mut byte))
                .await
                .expect("response in time")
                .unwrap();
            assert_eq!(
                n,
                1,
                "connection closed before the head ended: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
        let text = String::from_utf8(head).unwrap();
        let status = text[9..12].parse().unwrap();
        (status, text)
    }

    /// Opens a WebSocket on `path` and checks the 101.
    pub async fn upgrade(addr: SocketAddr, path: &str) -> Self {
        let mut raw = Self::connect(addr).await;
        raw.send(request(path, &[]).as_bytes()).await;
        let (status, head) = raw.read_head().await;
        assert_eq!(status, 101, "{head}");
        raw
    }

    /// Sends a masked client frame.
    pub async fn frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        self.send(&masked_frame(opcode, fin, payload)).await;
    }

    /// Reads one unmasked server frame: (opcode, fin, payload).
    pub async fn read_frame(&mut self) -> Option<(u8, bool, Vec<u8>)> {
        let (first, payload) = self.read_frame_raw().await?;
        Some((first & 0x0F, first & 0x80 != 0, payload))
    }

    /// Reads one unmasked server frame: its first byte (FIN, RSV bits,
    /// opcode) and its payload.
    pub async fn read_frame_raw(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7F {
            126 => {
                let mut ext = [0u8; 2];
                self.stream.read_exact(&mut ext).await.ok()?;
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                self.stream.read_exact(&mut ext).await.ok()?;
                u64::from_be_bytes(ext)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((head[0], payload))
    }

    /// Reads frames until a close frame; returns its code.
    pub async fn read_close_code(&mut self) -> Option<u16> {
        loop {
            let (opcode, _, payload) = rt::timeout(Duration::from_secs(5), self.read_frame())
                .await
                .ok()??;
            if opcode == 8 {
                return Some(if payload.len() >= 2 {
                    u16::from_be_bytes([payload[0], payload[1]])
                } else {
                    1005
                });
            }
        }
    }
}

pub fn masked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    masked_frame_with_rsv(opcode, fin, 0, payload)
}

/// A masked client frame with reserved bits `rsv` (RSV1 = `0b100`).
pub fn masked_frame_with_rsv(opcode: u8, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![(u8::from(fin) << 7) | (rsv << 4) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | u8::try_from(n).unwrap()),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend(u16::try_from(n).unwrap().to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend(key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Waits until `condition` holds, polling; fails after 5 s.
pub async fn eventually(mut condition: impl FnMut() -> bool, what: &str) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        rt::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}
