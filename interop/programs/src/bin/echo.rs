//! The Autobahn TestSuite's echo server on tokio (`.ci/autobahn.sh`):
//! `[ADDR] [--max-message BYTES] [--max-fragments N] [--deflate]`.

use std::time::Duration;

use ws_tokio::{Ctx, Endpoint, Handler, Message, OriginPolicy};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = ws_interop::echo_args::parse().map_err(std::io::Error::other)?;
    let echo = || Endpoint::new(|_| Echo).origin(OriginPolicy::AllowAnyOriginDangerously);
    let server = ws_tokio::server()
        .config(args.server_config())
        .route("/", echo())
        .route("/echo", echo())
        .build();
    let listener = ws_tokio::bind(&args.addr).await?;
    println!("echo testee listening on ws://{}/", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    server
        .serve_with_shutdown(listener, ctrl_c, Duration::from_secs(5))
        .await
}
