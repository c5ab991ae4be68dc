//! Our side of the interop tests with Python `websockets` and Node `ws`
//! (see `interop/`), written once for every adapter: each adapter's
//! `interop` binary includes it with a `rt` module naming the adapter
//! (`rt::ws`) and its `rt::timeout`.
//!
//! ```sh
//! interop server 127.0.0.1:0          # prints "listening on PORT"
//! interop client ws://127.0.0.1:PORT  # runs every scenario, exit 1 on failure
//! ```
//!
//! Both sides implement the same paths:
//!
//! | path | behaviour |
//! |---|---|
//! | `/echo` | echoes everything (messages up to 32 MiB) |
//! | `/deflate` | echoes, with permessage-deflate accepted (our server compresses every message) |
//! | `/close` | closes with 4000 "bye" after the first message |
//! | `/going-away` | closes with 1001 "going away" after the first message |
//! | `/big` | answers a message "N" with N bytes of binary |
//! | `/drop` | drops the TCP connection after the first message |
//! | `/last-close` | (our server only) answers with how the previous connection closed |

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rt::{self, ws};
use ws::ws_core::deflate::{DeflateConfig, DeflateParams};
use ws::{
    ClientConfig, CloseCode, Closed, ConnectionError, Ctx, Endpoint, Handler, Message,
    ServerConfig, WebSocket,
};

use ws_interop::events::events;

const MAX: usize = 32 << 20;

/// permessage-deflate with every message compressed, however small.
fn deflate_everything() -> DeflateConfig {
    let mut config = DeflateConfig::default();
    config.threshold = 0;
    config
}

type LastClose = Arc<Mutex<String>>;

/// How a close is reported: "CODE REASON".
fn describe(closed: &Closed) -> String {
    format!("{} {}", closed.code, closed.reason)
}

#[derive(Clone, Copy)]
enum Behaviour {
    Echo,
    Close(CloseCode, &'static str),
    Big,
    Drop,
    LastClose,
}

struct Peer {
    behaviour: Behaviour,
    last: LastClose,
}

impl Handler for Peer {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        match self.behaviour {
            Behaviour::Echo => {
                let _ = ctx.send(message).await;
            }
            Behaviour::Close(code, reason) => {
                let _ = ctx.try_close(code, reason);
            }
            Behaviour::Big => {
                let size = std::str::from_utf8(message.as_bytes())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0usize);
                let _ = ctx.send(vec![0x5a; size]).await;
            }
            // The server side never needs this path: interop clients drop
            // their own connections to test it.
            Behaviour::Drop => {}
            Behaviour::LastClose => {
                let last = self.last.lock().unwrap().clone();
                let _ = ctx.try_send(last);
            }
        }
    }

    async fn on_close(&mut self, _ctx: &mut Ctx, closed: &Closed) {
        if !matches!(self.behaviour, Behaviour::LastClose) {
            *self.last.lock().unwrap() = describe(closed);
        }
    }
}

async fn server(addr: &str) -> std::io::Result<()> {
    let mut config = ServerConfig::default();
    config.connection = config.connection.with_max_message_size(MAX);
    config.send_queue = MAX;
    let last: LastClose = Arc::default();
    let endpoint = |behaviour| {
        let last = last.clone();
        Endpoint::new(move |_| Peer {
            behaviour,
            last: last.clone(),
        })
        .origin(ws::OriginPolicy::AllowAnyOriginDangerously)
    };
    let server = ws::server()
        .config(config)
        .route("/echo", endpoint(Behaviour::Echo))
        .route(
            "/deflate",
            endpoint(Behaviour::Echo).deflate(Some(deflate_everything())),
        )
        .route(
            "/close",
            endpoint(Behaviour::Close(CloseCode::new(4000), "bye")),
        )
        .route(
            "/going-away",
            endpoint(Behaviour::Close(CloseCode::GOING_AWAY, "going away")),
        )
        .route("/big", endpoint(Behaviour::Big))
        .route("/drop", endpoint(Behaviour::Drop))
        .route("/last-close", endpoint(Behaviour::LastClose))
        .build();
    let listener = ws::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?.port());
    server.serve(listener).await
}

type Result<T> = std::result::Result<T, String>;

async fn connect(base: &str, path: &str, max: usize) -> Result<WebSocket> {
    connect_with(base, path, max, None).await
}

async fn connect_with(
    base: &str,
    path: &str,
    max: usize,
    deflate: Option<DeflateConfig>,
) -> Result<WebSocket> {
    let mut config = ClientConfig::default();
    config.connection = config.connection.with_max_message_size(max);
    config.send_queue = MAX;
    config.deflate = deflate;
    let (socket, _) = ws::client(format!("{base}{path}"))
        .map_err(|e| e.to_string())?
        .config(config)
        .connect()
        .await
        .map_err(|e| format!("connect {path}: {e}"))?;
    Ok(socket)
}

async fn next(socket: &mut WebSocket) -> Result<Message> {
    match rt::timeout(Duration::from_secs(20), socket.recv()).await {
        Ok(Some(Ok(message))) => Ok(message),
        Ok(other) => Err(format!("expected a message, got {other:?}")),
        Err(_) => Err("timed out waiting for a message".into()),
    }
}

/// Reads until the stream ends; returns how it ended.
async fn end(socket: &mut WebSocket) -> Result<(Closed, Option<ConnectionError>)> {
    let mut error = None;
    loop {
        match rt::timeout(Duration::from_secs(20), socket.recv()).await {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => error = Some(e),
            Ok(None) => break,
            Err(_) => return Err("timed out waiting for the close".into()),
        }
    }
    let closed = socket.closed().cloned().ok_or("no close recorded")?;
    Ok((closed, error))
}

/// Sends each message and checks its echo, then "fragmented" in three
/// fragments.
async fn echo_each(socket: &mut WebSocket, messages: &[Message], what: &str) -> Result<()> {
    for message in messages {
        socket
            .send(message.clone())
            .await
            .map_err(|e| e.to_string())?;
        check(
            next(socket).await? == *message,
            &format!("{what} of a {}-byte message", message.len()),
        )?;
    }
    for (i, piece) in ["frag", "ment", "ed"].iter().enumerate() {
        socket
            .send_fragment(*piece, i == 2)
            .await
            .map_err(|e| e.to_string())?;
    }
    check(
        next(socket).await? == Message::text("fragmented"),
        &format!("{what} of a fragmented message"),
    )
}

fn check(ok: bool, what: &str) -> Result<()> {
    if ok { Ok(()) } else { Err(what.to_owned()) }
}

async fn echo(base: &str) -> Result<()> {
    let mut socket = connect(base, "/echo", MAX).await?;
    let big = Message::binary(
        (0..16 << 20)
            .map(|i: u32| (i % 249) as u8)
            .collect::<Vec<u8>>(),
    );
    let small = [
        Message::text("héllo ✓"),
        Message::binary(vec![0, 255, 1, 254]),
        Message::text(""),
    ];
    echo_each(&mut socket, &small, "echo").await?;
    socket
        .try_ping(&b"are you there"[..])
        .map_err(|e| e.to_string())?;
    socket.send(big.clone()).await.map_err(|e| e.to_string())?;
    check(next(&mut socket).await? == big, "echo of 16 MiB")?;
    close_cleanly(&mut socket).await
}

/// Closes with 1000 "done" and checks the handshake completed.
async fn close_cleanly(socket: &mut WebSocket) -> Result<()> {
    socket
        .try_close(CloseCode::NORMAL, "done")
        .map_err(|e| e.to_string())?;
    let (closed, error) = end(socket).await?;
    check(
        error.is_none() && closed.code == CloseCode::NORMAL,
        &format!("clean close, got {closed:?} {error:?}"),
    )
}

/// Echo with permessage-deflate offered: the peer must accept it, and
/// compressed messages of every shape must come back unchanged.
async fn compressed_echo(base: &str) -> Result<DeflateParams> {
    let mut socket = connect_with(base, "/deflate", MAX, Some(deflate_everything())).await?;
    let agreed = socket
        .info()
        .deflate
        .ok_or("the peer did not accept permessage-deflate")?;
    let messages = [
        Message::text(events(4 << 20)),
        Message::binary(events(100_000).into_bytes()),
        Message::text("héllo ✓"),
        Message::text(""),
        Message::text(events(3000)),
    ];
    echo_each(&mut socket, &messages, "compressed echo").await?;
    socket
        .send_uncompressed(Message::text(events(2000)))
        .await
        .map_err(|e| e.to_string())?;
    check(
        next(&mut socket).await? == Message::text(events(2000)),
        "echo of a message sent uncompressed",
    )?;
    close_cleanly(&mut socket).await?;
    Ok(agreed)
}

async fn closed_by_server(base: &str, path: &str, code: u16, reason: &str) -> Result<()> {
    let mut socket = connect(base, path, MAX).await?;
    socket.send("go").await.map_err(|e| e.to_string())?;
    let (closed, error) = end(&mut socket).await?;
    check(
        error.is_none() && closed.code == CloseCode::new(code) && closed.reason == reason,
        &format!("{path}: expected {code} {reason:?}, got {closed:?} {error:?}"),
    )
}

async fn too_big(base: &str) -> Result<()> {
    let mut socket = connect(base, "/big", 1 << 20).await?;
    socket
        .send(((2 << 20) as u32).to_string())
        .await
        .map_err(|e| e.to_string())?;
    let (closed, error) = end(&mut socket).await?;
    check(
        closed.code == CloseCode::MESSAGE_TOO_BIG && error.is_some(),
        &format!("expected to fail with 1009, got {closed:?}"),
    )
}

async fn dropped(base: &str) -> Result<()> {
    let mut socket = connect(base, "/drop", MAX).await?;
    socket.send("go").await.map_err(|e| e.to_string())?;
    let (closed, error) = end(&mut socket).await?;
    check(
        closed.code == CloseCode::ABNORMAL && error.is_some(),
        &format!("expected 1006, got {closed:?}"),
    )
}

async fn client(base: &str) -> bool {
    let results = [
        ("echo", echo(base).await),
        (
            "close 4000",
            closed_by_server(base, "/close", 4000, "bye").await,
        ),
        (
            "close 1001",
            closed_by_server(base, "/going-away", 1001, "going away").await,
        ),
        ("too big 1009", too_big(base).await),
        ("dropped 1006", dropped(base).await),
        (
            "compressed echo",
            compressed_echo(base)
                .await
                // On stderr: the harnesses read stdout for results.
                .map(|agreed| eprintln!("permessage-deflate agreed: {}", agreed.to_header())),
        ),
    ];
    let mut ok = true;
    for (name, result) in results {
        match result {
            Ok(()) => println!("ok {name}"),
            Err(error) => {
                ok = false;
                println!("FAILED {name}: {error}");
            }
        }
    }
    ok
}

/// Runs `server ADDR` or `client URL` from the command line.
pub(crate) async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("server"), Some(addr)) => {
            if let Err(error) = server(addr).await {
                eprintln!("{error}");
                std::process::exit(1);
            }
        }
        (Some("client"), Some(base)) => std::process::exit(if client(base).await { 0 } else { 1 }),
        _ => {
            eprintln!("usage: interop server ADDR | interop client ws://HOST:PORT");
            std::process::exit(2);
        }
    }
}
