//! An echo server on smol: every message comes back to its sender.
//!
//! ```sh
//! cargo run --release -p ws-smol --example echo_smol            # ws://127.0.0.1:9001/
//! cargo run --release -p ws-smol --example echo_smol -- 0.0.0.0:8080 --max-message 16777216
//! ```
//!
//! Arguments: `[ADDR]` (default `127.0.0.1:9001`, or `$WS_ADDR`),
//! `--max-message BYTES`, `--max-fragments N`, `--deflate` (accept
//! permessage-deflate). Ctrl-C (or SIGTERM) shuts down gracefully (close
//! 1001 to every client).

use std::time::Duration;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use ws_smol::{Ctx, Endpoint, Handler, Message, OriginPolicy};

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

fn main() -> std::io::Result<()> {
    let args = echo_args::parse().map_err(std::io::Error::other)?;
    let echo = || Endpoint::new(|_| Echo).origin(OriginPolicy::AllowAnyOriginDangerously);
    let server = ws_smol::server()
        .config(args.server_config())
        .route("/", echo())
        .route("/echo", echo())
        .build();
    smol::block_on(async {
        let listener = ws_smol::bind(&args.addr).await?;
        println!("echo server listening on ws://{}/", listener.local_addr()?);
        let mut signals = Signals::new([Signal::Int, Signal::Term])?;
        let stop = async move {
            let _ = signals.next().await;
            println!("shutting down");
        };
        server
            .serve_with_shutdown(listener, stop, Duration::from_secs(5))
            .await
    })
}
