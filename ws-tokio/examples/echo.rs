//! An echo server: every message comes back to its sender.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example echo            # ws://127.0.0.1:9001/
//! cargo run --release -p ws-tokio --example echo -- 0.0.0.0:8080
//! ```
//!
//! The address defaults to `$WS_ADDR`, else `127.0.0.1:9001`. Ctrl-C shuts
//! down gracefully (close 1001 to every client).

use std::time::Duration;

use ws_tokio::{Ctx, Endpoint, Handler, Message};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        // Waiting for room pushes back on a client that sends faster than it
        // reads the echoes; the connection keeps answering pings meanwhile.
        let _ = ctx.send(message).await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("WS_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let server = ws_tokio::server()
        .route("/", Endpoint::new(|_| Echo))
        .route("/echo", Endpoint::new(|_| Echo))
        .build();
    let listener = ws_tokio::bind(&addr).await?;
    println!("echo server listening on ws://{}/", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    };
    server
        .serve_with_shutdown(listener, ctrl_c, Duration::from_secs(5))
        .await
}
