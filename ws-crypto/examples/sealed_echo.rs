//! An echo server behind an encrypted session: it prints its address and
//! its public key (for clients to pin), greets each client as soon as the
//! session is open ("hello, sealed"), then echoes every message sealed.
//! On `/sealed-auth` the session's first message is its credential
//! (`Key key-chromium`, for the user `chromium`): the greeting names the
//! user.
//! The browser test of `ws serve` connects to it from Chromium.
//!
//! ```text
//! cargo run -p ws-crypto --example sealed_echo -- 127.0.0.1:9003 [ORIGIN]
//! ```
//!
//! Browsers may connect from its own origin, or from ORIGIN (such as
//! `http://127.0.0.1:8080`, a page of `ws serve`).

use ws_crypto::KeyPair;
use ws_crypto::sealed::{SUBPROTOCOL, Sealed, SealedCtx, SealedHandler};
use ws_crypto::session::ServerHandshake;
use ws_tokio::{Endpoint, Message, OriginPolicy};

struct Echo;

impl SealedHandler for Echo {
    async fn on_open(&mut self, ctx: &mut SealedCtx<'_>) {
        // At once, so the greeting may arrive while the client still
        // processes the accept.
        let user = ctx.identity().map_or("sealed", |i| i.subject.as_str());
        let _ = ctx.send(Message::text(format!("hello, {user}"))).await;
    }

    async fn on_message(&mut self, ctx: &mut SealedCtx<'_>, message: Message) {
        let _ = ctx.send(message).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9003".into());
    let origin = match std::env::args().nth(2) {
        Some(origin) => OriginPolicy::AllowList(vec![origin]),
        None => OriginPolicy::SameOrigin,
    };
    let handshake = ServerHandshake::new(Some(KeyPair::generate()));
    let key = handshake.public_key().expect("a long-term key");
    let keys = std::sync::Arc::new(ws_tokio::auth::KeyAuth::new().key("key-chromium", "chromium"));
    let inside = handshake.clone();
    let server = ws_tokio::server()
        .route(
            "/sealed",
            Endpoint::new(move |_| Sealed::new(handshake.clone(), Echo))
                .subprotocols([SUBPROTOCOL])
                .require_subprotocol()
                .origin(origin.clone()),
        )
        .route(
            "/sealed-auth",
            Endpoint::new(move |_| {
                Sealed::new(inside.clone(), Echo).credential_inside(keys.clone())
            })
            .subprotocols([SUBPROTOCOL])
            .require_subprotocol()
            .origin(origin),
        )
        .build();
    let listener = ws_tokio::bind(&addr).await?;
    println!("listening ws://{}/sealed key {key}", listener.local_addr()?);
    server.serve(listener).await
}
