//! WebSocket endpoints mounted in axum (feature `hyper`): upgrades pass
//! the ws-tokio server's admission and run its handler; refusals keep
//! their status; axum's other routes are untouched; shutdown closes
//! upgraded connections with 1001.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ws_tokio::auth::{Authenticator, Identity};
use ws_tokio::{Ctx, Endpoint, Handler, Message, Rejection, Server, http};

/// Echoes, prefixed with the user and peer it was told about.
struct Echo;

impl Handler for Echo {
    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        let user = ctx
            .identity()
            .map_or("?", |i| i.subject.as_str())
            .to_owned();
        let peer = ctx.info().peer_addr.is_some();
        let text = format!("{user} {peer} {}", message.as_text().unwrap_or_default());
        let _ = ctx.send(text).await;
    }
}

struct NeedsName;

impl Authenticator for NeedsName {
    async fn authenticate(&self, request: &http::request::Parts) -> Result<Identity, Rejection> {
        match request.uri.query().and_then(|q| q.strip_prefix("name=")) {
            Some(name) => Ok(Identity::new(name)),
            None => Err(Rejection::plain(http::StatusCode::UNAUTHORIZED, "name?")),
        }
    }
}

async fn websocket(
    State(ws): State<Server>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> impl IntoResponse {
    ws_tokio::upgrade(&ws, request, Some(peer)).await
}

async fn start() -> (SocketAddr, Server) {
    let ws = ws_tokio::server()
        .route("/ws", Endpoint::new(|_| Echo).authenticator(NeedsName))
        .build();
    let app = Router::new()
        .route("/", get(|| async { "plain http" }))
        .route("/ws", get(websocket))
        .route("/elsewhere", get(websocket))
        .with_state(ws.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    (addr, ws)
}

/// The status line of a raw request.
async fn status_of(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = vec![0; 4096];
    let n = stream.read(&mut response).await.unwrap();
    String::from_utf8_lossy(&response[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_upgrade_through_axum_runs_the_handler() {
    let (addr, ws) = start().await;
    let (mut socket, response) = ws_tokio::connect(format!("ws://{addr}/ws?name=ann"))
        .await
        .expect("the upgrade passes");
    assert_eq!(response.status(), 101);
    socket.send("hello").await.unwrap();
    let Some(Ok(Message::Text(reply))) = socket.recv().await else {
        panic!("no echo")
    };
    assert_eq!(
        reply.as_str(),
        "ann true hello",
        "identity and peer reach the handler"
    );
    assert_eq!(ws.handle().count(), 1, "the connection is in the registry");
    assert_eq!(
        ws.handle().connections()[0].info.peer_addr.map(|p| p.ip()),
        Some(addr.ip())
    );

    // Shutdown closes the upgraded connection with 1001.
    let handle = ws.handle();
    let shutdown = tokio::spawn(async move { handle.shutdown(Duration::from_secs(5)).await });
    while socket.recv().await.is_some() {}
    assert_eq!(socket.closed().unwrap().code.as_u16(), 1001);
    shutdown.await.unwrap();
}

#[tokio::test]
async fn refusals_keep_their_status_and_other_routes_work() {
    let (addr, _ws) = start().await;
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    assert!(
        status_of(addr, &upgrade("/ws")).await.contains("401"),
        "authentication"
    );
    assert!(
        status_of(addr, &upgrade("/elsewhere"))
            .await
            .contains("404"),
        "no endpoint of the ws server at that path"
    );
    let evil = format!(
        "GET /ws?name=x HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert!(status_of(addr, &evil).await.contains("403"), "origin check");
    let plain = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(
        status_of(addr, &plain).await.contains("426"),
        "not an upgrade"
    );
    let page = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    assert!(status_of(addr, &page).await.contains("200"));
}
