//! A broadcast chat server: every text message goes to everyone else.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example chat             # ws://127.0.0.1:9002/chat
//! cargo run --release -p ws-tokio --example chat -- 0.0.0.0:8080
//! ```
//!
//! Connect with `?name=alice` to pick a name (percent-encoded, unique; a
//! taken name gets a suffix). `/who` counts who is here. Slow clients whose send queue is full
//! miss messages instead of slowing everyone down, and are told so.

use std::time::Duration;

use ws_tokio::{ConnectionInfo, Ctx, Endpoint, Handler, Message};

struct Member {
    name: String,
}

impl Member {
    fn new(info: &ConnectionInfo) -> Self {
        let wanted = info
            .query_param("name")
            .filter(|name| {
                !name.is_empty()
                    && name.chars().count() <= 32
                    && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
            .unwrap_or_else(|| format!("guest-{}", &info.id.to_string()[..6]));
        Self { name: wanted }
    }
}

impl Handler for Member {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        let server = ctx.server();
        let mut name = self.name.clone();
        let mut n = 1;
        while server.set_name(ctx.id(), &name).is_err() {
            n += 1;
            name = format!("{}-{n}", self.name);
        }
        self.name = name;
        let _ = ctx.try_send(format!("welcome, {}", self.name));
        server.broadcast(format!("* {} joined", self.name), Some(ctx.id()));
    }

    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let Message::Text(text) = message else {
            let _ = ctx.try_send("text messages only");
            return;
        };
        let server = ctx.server();
        if text.trim() == "/who" {
            let _ = ctx.try_send(format!("{} here", server.count_on("/chat")));
            return;
        }
        let delivery = server.broadcast(format!("{}: {text}", self.name), Some(ctx.id()));
        for slow in delivery.dropped {
            let _ = server.try_send_to(slow, "(you missed a message: you are reading too slowly)");
        }
    }

    async fn on_close(&mut self, ctx: &mut Ctx, _closed: &ws_tokio::Closed) {
        ctx.server()
            .broadcast(format!("* {} left", self.name), Some(ctx.id()));
    }

    async fn on_shutdown(&mut self, ctx: &mut Ctx) {
        let _ = ctx.try_send("server restarting, please reconnect");
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("WS_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    let server = ws_tokio::server()
        .route("/chat", Endpoint::new(Member::new))
        .build();
    let listener = ws_tokio::bind(&addr).await?;
    println!(
        "chat server listening on ws://{}/chat",
        listener.local_addr()?
    );
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    };
    server
        .serve_with_shutdown(listener, ctrl_c, Duration::from_secs(5))
        .await
}
