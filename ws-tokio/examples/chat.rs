//! A broadcast chat server: every text message goes to everyone else.
//!
//! ```sh
//! cargo run --release -p ws-tokio --example chat             # ws://127.0.0.1:9002/chat
//! cargo run --release -p ws-tokio --example chat -- 0.0.0.0:8080
//! ```
//!
//! Connect with `?name=alice` to pick a name (unique; a taken name gets a
//! suffix). `/who` counts who is here. Slow clients whose send queue is full
//! miss messages instead of slowing everyone down, and are told so.

use std::time::Duration;

use ws_tokio::{ConnectionInfo, Ctx, Endpoint, Handler, Message, ServerHandle};

struct Member {
    name: String,
}

impl Member {
    fn new(info: &ConnectionInfo) -> Self {
        let wanted = info
            .request
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("name=")))
            .filter(|name| {
                !name.is_empty()
                    && name.len() <= 32
                    && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
            .map_or_else(
                || format!("guest-{}", &info.id.to_string()[..6]),
                str::to_owned,
            );
        Self { name: wanted }
    }

    fn server<'a>(&self, ctx: &'a Ctx) -> &'a ServerHandle {
        ctx.server().expect("a server connection")
    }
}

impl Handler for Member {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        let server = self.server(ctx);
        let mut name = self.name.clone();
        let mut n = 1;
        while server.set_name(ctx.id(), &name).is_err() {
            n += 1;
            name = format!("{}-{n}", self.name);
        }
        self.name = name;
        server.join(ctx.id(), "chat");
        let _ = ctx.send(format!("welcome, {}", self.name));
        server.send_to_group("chat", format!("* {} joined", self.name));
    }

    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let Message::Text(text) = message else {
            let _ = ctx.send("text messages only");
            return;
        };
        let server = self.server(ctx);
        if text.trim() == "/who" {
            let _ = ctx.send(format!("{} here", server.members("chat").len()));
            return;
        }
        let delivery = server.broadcast(format!("{}: {text}", self.name), Some(ctx.id()));
        for slow in delivery.dropped {
            if let Some(handle) = server.get(slow) {
                let _ = handle.send("(you missed a message: you are reading too slowly)");
            }
        }
    }

    async fn on_close(&mut self, ctx: &mut Ctx, _closed: &ws_tokio::Closed) {
        self.server(ctx)
            .broadcast(format!("* {} left", self.name), Some(ctx.id()));
    }

    async fn on_shutdown(&mut self, ctx: &mut Ctx) {
        let _ = ctx.send("server restarting, please reconnect");
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
    let handle = server.handle();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            handle.shutdown(Duration::from_secs(5)).await;
        }
    });
    server.serve(listener).await
}
