//! The Autobahn TestSuite's echo server on smol (`.ci/autobahn.sh`):
//! `[ADDR] [--max-message BYTES] [--max-fragments N] [--deflate]`.

use ws_smol::{Ctx, Endpoint, Handler, Message, OriginPolicy};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }
}

fn main() -> std::io::Result<()> {
    let args = ws_interop::echo_args::parse().map_err(std::io::Error::other)?;
    let echo = || Endpoint::new(|_| Echo).origin(OriginPolicy::AllowAnyOriginDangerously);
    let server = ws_smol::server()
        .config(args.server_config())
        .route("/", echo())
        .route("/echo", echo())
        .build();
    smol::block_on(async {
        let listener = ws_smol::bind(&args.addr).await?;
        println!("echo testee listening on ws://{}/", listener.local_addr()?);
        server.serve(listener).await
    })
}
