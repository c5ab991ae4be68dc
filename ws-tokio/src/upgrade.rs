//! WebSocket endpoints inside a hyper 1 or axum server (feature `hyper`):
//! the HTTP library reads the request, [`upgrade`] admits it by the
//! [`Server`]'s rules and, once the 101 is sent, runs the connection on
//! the upgraded stream in a task of its own.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use ws_async::Server;

/// The body of the responses [`upgrade`] returns.
pub type UpgradeBody = Full<Bytes>;

/// Answers `request` for `server`: `101 Switching Protocols` when it is a
/// WebSocket upgrade that passes the server's admission (route by path,
/// origin, subprotocol, authentication, limits, shutdown), with the
/// connection then running in a spawned task; otherwise the refusal the
/// server would send (426 for a request that is no upgrade, 404 for a path
/// with no endpoint, 401/403/503...).
///
/// `peer` is the client's address (axum's `ConnectInfo`, or what the
/// hyper accept loop got), used for per-client limits and
/// [`ConnectionInfo::peer_addr`](ws_async::ConnectionInfo::peer_addr).
/// The hyper connection must be served with upgrades enabled
/// (`serve_connection(..).with_upgrades()`; `axum::serve` does that).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use axum::{Router, extract::{ConnectInfo, Request, State}, routing::get};
/// use std::net::SocketAddr;
/// use ws_tokio::{Endpoint, Handler, Server, Ctx, Message};
///
/// struct Echo;
/// impl Handler for Echo {
///     async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
///         let _ = ctx.send(message).await;
///     }
/// }
///
/// let ws = ws_tokio::server().route("/ws", Endpoint::new(|_| Echo)).build();
/// let app = Router::new()
///     .route("/ws", get(|State(ws): State<Server>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request| async move {
///         ws_tokio::upgrade(&ws, request, Some(peer)).await
///     }))
///     .with_state(ws);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
/// # }
/// ```
pub async fn upgrade<B>(
    server: &Server,
    mut request: http::Request<B>,
    peer: Option<SocketAddr>,
) -> http::Response<UpgradeBody> {
    let on_upgrade = hyper::upgrade::on(&mut request);
    let (parts, _body) = request.into_parts();
    match server
        .upgrade(http::Request::from_parts(parts, ()), peer)
        .await
    {
        Ok(upgrade) => {
            let response = upgrade.response().clone().map(|()| Full::default());
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let io = crate::TokioIo(hyper_util::rt::TokioIo::new(upgraded));
                        upgrade.run(io).await;
                    }
                    // The client left before the 101 reached it; dropping
                    // the upgrade gives its connection slot back.
                    Err(error) => tracing::debug!(%error, "the HTTP upgrade failed"),
                }
            });
            response
        }
        Err(rejection) => rejection.response().clone().map(Full::new),
    }
}
