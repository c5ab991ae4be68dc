//! An echo server: every message comes back to its sender.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example echo            # ws://127.0.0.1:9001/
//! cargo run --release -p ws-tokio --example echo -- 0.0.0.0:8080 --max-message 16777216
//! ```
//!
//! Arguments: `[ADDR]` (default `127.0.0.1:9001`, or `$WS_ADDR`),
//! `--max-message BYTES`, `--max-fragments N`, `--deflate` (accept
//! permessage-deflate). Ctrl-C shuts down gracefully (close 1001 to every
//! client).

use std::time::Duration;

use ws_tokio::{Ctx, Endpoint, Handler, Message, OriginPolicy};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        // Waiting for room pushes back on a client that sends faster than it
        // reads the echoes; the connection keeps answering pings meanwhile.
        let _ = ctx.send(message).await;
    }
}

// Command-line parsing, shared by every adapter's echo example.
#[path = "../../adapter-tests/testees/echo_args.rs"]
mod echo_args;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = echo_args::parse().map_err(std::io::Error::other)?;
    let config = args.server_config();
    let echo = || Endpoint::new(|_| Echo).origin(OriginPolicy::AllowAnyOriginDangerously);
    let server = ws_tokio::server()
        .config(config)
        .route("/", echo())
        .route("/echo", echo())
        .build();
    let listener = ws_tokio::bind(&args.addr).await?;
    println!("echo server listening on ws://{}/", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    };
    server
        .serve_with_shutdown(listener, ctrl_c, Duration::from_secs(5))
        .await
}
