//! An echo server on smol: every message comes back to its sender.
//!
//! ```sh
//! cargo run --release -p ws-smol --example echo_smol            # ws://127.0.0.1:9001/
//! cargo run --release -p ws-smol --example echo_smol -- 0.0.0.0:8080
//! ```
//!
//! The address defaults to `$WS_ADDR`, else `127.0.0.1:9001`. Ctrl-C (or
//! SIGTERM) shuts down gracefully (close 1001 to every client).

use std::time::Duration;

use async_signal::{Signal, Signals};
use futures_lite::StreamExt;
use ws_smol::{Ctx, Endpoint, Handler, Message};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        // Waiting for room pushes back on a client that sends faster than it
        // reads the echoes; the connection keeps answering pings meanwhile.
        let _ = ctx.send(message).await;
    }
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("WS_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = ws_smol::server()
        .route("/", Endpoint::new(|_| Echo))
        .route("/echo", Endpoint::new(|_| Echo))
        .build();
    smol::block_on(async {
        let listener = ws_smol::bind(&addr).await?;
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
