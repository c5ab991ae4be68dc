//! A WebSocket endpoint inside an axum application: axum serves the HTTP
//! routes, and `/ws` hands upgrades to a ws-tokio server (its handler,
//! origin check, limits and shutdown), which runs each connection on the
//! upgraded stream.
//!
//! ```sh
//! cargo run -p ws-tokio --features hyper --example axum   # http://127.0.0.1:9006/, ws://127.0.0.1:9006/ws
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::IntoResponse;
use axum::routing::get;
use ws_tokio::{Ctx, Endpoint, Handler, Message, Server};

struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let _ = ctx.send(message).await;
    }
}

async fn websocket(
    State(ws): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> impl IntoResponse {
    ws_tokio::upgrade(&ws, request, Some(peer)).await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("WS_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9006".into());
    // The route of the ws-tokio server is the path axum hands over.
    let ws = ws_tokio::server()
        .route("/ws", Endpoint::new(|_| Echo))
        .build();
    let app = Router::new()
        .route(
            "/",
            get(|| async { "an axum app; WebSocket echo at /ws\n" }),
        )
        .route("/ws", get(websocket))
        .with_state(ws.clone());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "axum app on http://{}/ with ws://{}/ws",
        listener.local_addr()?,
        listener.local_addr()?
    );
    let shutdown = async move {
        let _ = tokio::signal::ctrl_c().await;
        // Upgraded connections are the WebSocket server's: close them with
        // 1001 and wait (at most 5 s) before axum stops.
        ws.handle().shutdown(Duration::from_secs(5)).await;
    };
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
