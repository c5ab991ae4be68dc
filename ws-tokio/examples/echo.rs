//! An echo server: every message comes back to its sender.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example echo            # ws://127.0.0.1:9001/
//! cargo run --release -p ws-tokio --example echo -- 0.0.0.0:8080 --max-message 16777216
//! ```
//!
//! Arguments: `[ADDR]` (default `127.0.0.1:9001`, or `$WS_ADDR`),
//! `--max-message BYTES`, `--max-fragments N`. Ctrl-C shuts down
//! gracefully (close 1001 to every client).

use std::time::Duration;

use ws_tokio::{Ctx, Endpoint, Handler, Message, OriginPolicy, ServerConfig};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        // Waiting for room pushes back on a client that sends faster than it
        // reads the echoes; the connection keeps answering pings meanwhile.
        let _ = ctx.send_wait(message).await;
    }
}

struct Args {
    addr: String,
    max_message: Option<usize>,
    max_fragments: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: std::env::var("WS_ADDR").unwrap_or_else(|_| "127.0.0.1:9001".into()),
        max_message: None,
        max_fragments: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--max-message" => args.max_message = Some(number("--max-message")?),
            "--max-fragments" => args.max_fragments = Some(number("--max-fragments")?),
            "-h" | "--help" => {
                return Err("usage: echo [ADDR] [--max-message BYTES] [--max-fragments N]".into());
            }
            addr if !addr.starts_with('-') => args.addr = addr.to_owned(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = parse_args().map_err(std::io::Error::other)?;
    let mut config = ServerConfig::default();
    if let Some(max) = args.max_message {
        config.connection = config.connection.with_max_message_size(max);
        config.send_queue = config.send_queue.max(max);
    }
    if let Some(max) = args.max_fragments {
        config.connection.max_fragments = max;
    }
    let echo = || Endpoint::new(|_| Echo).origin(OriginPolicy::AllowAnyOriginDangerously);
    let server = ws_tokio::server()
        .config(config)
        .route("/", echo())
        .route("/echo", echo())
        .build();
    let listener = ws_tokio::bind(&args.addr).await?;
    println!("echo server listening on ws://{}/", listener.local_addr()?);
    let handle = server.handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            println!("shutting down");
            handle.shutdown(Duration::from_secs(5)).await;
        }
    });
    server.serve(listener).await
}
