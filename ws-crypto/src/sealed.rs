//! Encrypted sessions on `ws-async` connections: [`Sealed`] serves a
//! [`SealedHandler`] on any server route (ws-tokio, ws-smol), and
//! [`SealedSocket`] is the client side over a connected
//! [`WebSocket`].
//!
//! The route must offer [`SUBPROTOCOL`] and require it
//! (`Endpoint::new(..).subprotocols([SUBPROTOCOL]).require_subprotocol()`),
//! and the client must ask for it (`client(url)?.subprotocol(SUBPROTOCOL)`):
//! the two then agree on keys with their first messages, and every message
//! after that is sealed. A message that fails to open (altered, replayed,
//! reordered, dropped, or not sealed at all) means someone on the path is
//! interfering, so the side that received it closes the connection with
//! 1008 and a reason naming the failure.
//!
//! **Who is on the other end.** An identity from the upgrade request (an
//! endpoint's authenticator) belongs to whoever sent that request, which
//! is not always who did the key agreement: on a path that can read the
//! request (no TLS, or TLS ended at a proxy), an attacker can forward a
//! user's upgrade and splice in a hello of its own. With
//! [`Sealed::credential_inside`], the client sends its credential as the
//! session's first sealed message instead
//! ([`SealedSocket::open_with_credential`]; never in the upgrade), and
//! the server authenticates the session with it: only the holder of the
//! session's keys can present it, and only the server (holder of the
//! pinned key) can read it. [`SealedCtx::identity`] is then that identity.

use std::pin::Pin;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::lock::Mutex;
use ws_async::adapter::http;
use ws_async::auth::{Authenticator, Identity};
use ws_async::ws_core::handshake::Rejection;
use ws_async::ws_core::policy::Violation;
use ws_async::ws_core::{CloseCode, Closed, Message};
use ws_async::{ConnectionError, ConnectionHandle, Ctx, Handler, SendError, WebSocket};

use crate::keys::PublicKey;
use crate::session::{
    ClientHandshake, Exhausted, HandshakeError, Kind, OpenError, Opener, Sealer, ServerHandshake,
    Session,
};

pub use crate::session::SUBPROTOCOL;

/// The close code of a session whose credential was refused (or that sent
/// none first): the code `ws-channels` uses for unauthenticated sessions.
pub const UNAUTHORIZED: CloseCode = CloseCode::new(4001);

/// Why a sealed message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SealedSendError {
    /// The connection could not take it.
    #[error(transparent)]
    Send(#[from] SendError),
    /// Another task is sending on this session at this moment
    /// ([`SealedSender::try_send`] does not wait for it).
    #[error("another task is sending on this session")]
    Busy,
    /// This direction used every counter; the session must be replaced.
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
}

/// Why a client's encrypted session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The server did not agree to [`SUBPROTOCOL`]: ask for it with
    /// `Client::subprotocol`, and serve it on the route.
    #[error("the server did not agree to the `{SUBPROTOCOL}` subprotocol")]
    NotNegotiated,
    /// The key agreement failed (a pinned key that does not match is here).
    #[error("encrypted session handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A received message was refused; the connection was closed with 1008.
    #[error("encrypted session: {0}")]
    Open(#[from] OpenError),
    /// The server sent something other than a sealed binary message.
    #[error("encrypted session: the server sent a plaintext message")]
    Plaintext,
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The connection closed before the handshake finished.
    #[error("the connection closed during the encrypted session handshake")]
    ClosedEarly,
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SealedSendError),
}

fn reason(error: &dyn std::fmt::Display) -> String {
    let mut text = format!("encrypted session: {error}");
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

fn seal_message(sealer: &mut Sealer, message: &Message) -> Result<Vec<u8>, Exhausted> {
    match message {
        Message::Text(text) => sealer.seal(Kind::Text, text.as_bytes()),
        Message::Binary(bytes) => sealer.seal(Kind::Binary, bytes),
    }
}

fn opened(kind: Kind, body: Vec<u8>) -> Message {
    match kind {
        Kind::Binary => Message::binary(body),
        // The opener checked it is UTF-8.
        Kind::Text => Message::text(String::from_utf8(body).expect("checked UTF-8")),
    }
}

/// Sends sealed messages on one connection; clone it to send from other
/// tasks. Messages are sealed and queued under one lock, so they leave in
/// counter order whoever sends them.
#[derive(Clone)]
pub struct SealedSender {
    handle: ConnectionHandle,
    sealer: Arc<Mutex<Sealer>>,
}

impl std::fmt::Debug for SealedSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSender")
            .field("connection", &self.handle.id())
            .finish_non_exhaustive()
    }
}

impl SealedSender {
    fn new(handle: ConnectionHandle, sealer: Sealer) -> Self {
        Self {
            handle,
            sealer: Arc::new(Mutex::new(sealer)),
        }
    }

    /// Seals `message` and sends it, waiting while the send queue is full.
    /// (Sealed bytes do not compress, so permessage-deflate is skipped.)
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SealedSendError> {
        let message = message.into();
        let mut sealer = self.sealer.lock().await;
        let record = seal_message(&mut sealer, &message)?;
        self.handle
            .send_uncompressed(Message::binary(record))
            .await?;
        Ok(())
    }

    /// Like [`send`](Self::send), but fails with [`SendError::Full`] rather
    /// than wait, or [`SealedSendError::Busy`] while another task is in
    /// the middle of a send on this session.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), SealedSendError> {
        let message = message.into();
        let Some(mut sealer) = self.sealer.try_lock() else {
            return Err(SealedSendError::Busy);
        };
        let record = seal_message(&mut sealer, &message)?;
        match self.handle.try_send_uncompressed(Message::binary(record)) {
            Ok(()) => Ok(()),
            Err(error) => {
                // A refused send queued nothing, so its counter was never
                // used: taking it back leaves no gap the peer would refuse.
                sealer.rewind();
                Err(error.into())
            }
        }
    }

    /// Closes the connection (close frames are not sealed: the code and
    /// reason are visible to the path, as with TLS they are not).
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.handle.close(code, reason).await
    }

    /// The connection's handle. What is sent through it directly is not
    /// sealed, and the peer refuses it.
    pub fn connection(&self) -> &ConnectionHandle {
        &self.handle
    }
}

/// A [`SealedHandler`] callback's view of its connection: sealed sending,
/// and the plain [`Ctx`] for everything else.
pub struct SealedCtx<'a> {
    /// The connection's context: its info, identity, server and timer.
    /// What is sent through it directly is not sealed, and the peer refuses
    /// it.
    pub ctx: &'a mut Ctx,
    sender: &'a SealedSender,
    /// The identity the session's own credential proved, if the route
    /// takes one ([`Sealed::credential_inside`]).
    inside: Option<&'a Identity>,
}

impl SealedCtx<'_> {
    /// Who is at the other end of the session: the identity its own
    /// credential proved when the route takes one
    /// ([`Sealed::credential_inside`]), else the upgrade request's (which
    /// names whoever sent that request; see the module documentation).
    pub fn identity(&self) -> Option<&Identity> {
        self.inside.or_else(|| self.ctx.identity())
    }

    /// Seals `message` and sends it; see [`SealedSender::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SealedSendError> {
        self.sender.send(message).await
    }

    /// See [`SealedSender::try_send`].
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), SealedSendError> {
        self.sender.try_send(message)
    }

    /// Closes the connection.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.sender.close(code, reason).await
    }

    /// A sender to keep or move to another task.
    pub fn sender(&self) -> SealedSender {
        self.sender.clone()
    }
}

/// Callbacks for one encrypted session: [`Handler`]'s, with plaintext
/// messages in and a [`SealedCtx`] that seals what goes out. Serve it as
/// [`Sealed`].
pub trait SealedHandler: Send + 'static {
    /// The session is open: keys are agreed.
    fn on_open(&mut self, ctx: &mut SealedCtx<'_>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// A message arrived and opened.
    fn on_message(
        &mut self,
        ctx: &mut SealedCtx<'_>,
        message: Message,
    ) -> impl Future<Output = ()> + Send;

    /// The timer set with `ctx.ctx.set_timer` is due; see
    /// [`Handler::on_timer`].
    fn on_timer(&mut self, ctx: &mut SealedCtx<'_>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// A message broke a policy whose action is to drop it; see
    /// [`Handler::on_policy_violation`]. (Policies see the sealed bytes.)
    fn on_policy_violation(
        &mut self,
        ctx: &mut SealedCtx<'_>,
        violation: &Violation,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, violation);
        async {}
    }

    /// The server is shutting down: a last sealed message can go out before
    /// the connection is closed with 1001; see [`Handler::on_shutdown`].
    fn on_shutdown(&mut self, ctx: &mut SealedCtx<'_>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// The connection closed (after the session opened). A session closed
    /// for a refused message has code 1008 and the refusal as reason.
    fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) -> impl Future<Output = ()> + Send {
        let _ = (ctx, closed);
        async {}
    }
}

enum State {
    Handshake,
    /// Keys agreed; the session's credential is awaited as its first
    /// message ([`Sealed::credential_inside`]).
    Credential {
        opener: Opener,
        sender: SealedSender,
    },
    Open {
        opener: Opener,
        sender: SealedSender,
        /// The identity the session's credential proved, if it gave one.
        identity: Option<Identity>,
        /// A message was refused and the close is under way: nothing more
        /// reaches the inner handler but its `on_close`.
        refused: bool,
    },
    Refused,
}

/// The session's sender and identity while the inner handler still gets
/// callbacks: open, and no message refused.
fn live_sender(state: &State) -> Option<(&SealedSender, Option<&Identity>)> {
    match state {
        State::Open {
            sender,
            identity,
            refused: false,
            ..
        } => Some((sender, identity.as_ref())),
        _ => None,
    }
}

/// An authenticator, type-erased: a credential (an `Authorization` header
/// value) to the identity it proves.
type Authenticate = Arc<
    dyn Fn(String) -> Pin<Box<dyn Future<Output = Result<Identity, Rejection>> + Send>>
        + Send
        + Sync,
>;

/// Serves a [`SealedHandler`] as a [`Handler`]: answers the client's key
/// agreement, opens every message before the inner handler sees it, and
/// closes with 1008 on the first message that does not open.
pub struct Sealed<H> {
    handshake: ServerHandshake,
    state: State,
    inner: H,
    authenticate: Option<Authenticate>,
}

impl<H> Sealed<H> {
    /// `inner` behind the key agreement of `handshake` (cheap to clone: one
    /// per connection, from the endpoint's factory).
    pub fn new(handshake: ServerHandshake, inner: H) -> Self {
        Self {
            handshake,
            state: State::Handshake,
            inner,
            authenticate: None,
        }
    }

    /// The session's first sealed message is its credential, the value of
    /// an `Authorization` header (`Bearer <JWT>`, `Key <token>`), checked
    /// by `authenticator` as if it came in the upgrade; the inner handler
    /// opens only after it passes, and [`SealedCtx::identity`] is what it
    /// proved. A session whose first message is not a credential
    /// `authenticator` takes is closed with [`UNAUTHORIZED`], and one whose
    /// upgrade named another subject too. Clients send it with
    /// [`SealedSocket::open_with_credential`] (the browser's
    /// `SealedSession.open(.., { credential })`). Share one authenticator
    /// between connections by wrapping it in an `Arc`.
    pub fn credential_inside<A: Authenticator>(mut self, authenticator: Arc<A>) -> Self {
        self.authenticate = Some(Arc::new(move |credential: String| {
            let authenticator = authenticator.clone();
            Box::pin(async move {
                let request = http::Request::builder()
                    .header(http::header::AUTHORIZATION, credential)
                    .body(())
                    .map_err(|_| {
                        Rejection::new(
                            http::StatusCode::UNAUTHORIZED,
                            Default::default(),
                            "not a credential\n",
                        )
                    })?;
                authenticator.authenticate(&request.into_parts().0).await
            })
        }));
        self
    }
}

impl<H: SealedHandler> Handler for Sealed<H> {
    async fn on_open(&mut self, ctx: &mut Ctx) {
        if ctx.info().subprotocol.as_deref() != Some(SUBPROTOCOL) {
            self.state = State::Refused;
            let _ = ctx
                .close(
                    CloseCode::POLICY_VIOLATION,
                    "an encrypted session is required: offer the ws-crypto.session.v1 subprotocol",
                )
                .await;
        }
    }

    async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
        match &mut self.state {
            State::Refused => {}
            State::Handshake => {
                let accepted = match &message {
                    Message::Binary(hello) => self.handshake.accept(hello),
                    Message::Text(_) => Err(HandshakeError::Malformed("hello")),
                };
                match accepted {
                    Ok((Session { sealer, opener, .. }, accept)) => {
                        if ctx
                            .send_uncompressed(Message::binary(accept))
                            .await
                            .is_err()
                        {
                            self.state = State::Refused;
                            return;
                        }
                        let sender = SealedSender::new(ctx.handle(), sealer);
                        if self.authenticate.is_some() {
                            self.state = State::Credential { opener, sender };
                            return;
                        }
                        let mut sealed = SealedCtx {
                            ctx,
                            sender: &sender,
                            inside: None,
                        };
                        self.inner.on_open(&mut sealed).await;
                        self.state = State::Open {
                            opener,
                            sender,
                            identity: None,
                            refused: false,
                        };
                    }
                    Err(error) => {
                        self.state = State::Refused;
                        let _ = ctx
                            .close(CloseCode::POLICY_VIOLATION, &reason(&error))
                            .await;
                    }
                }
            }
            State::Credential { opener, .. } => {
                let plain = match &message {
                    Message::Binary(record) => opener.open(record).map_err(|e| reason(&e)),
                    Message::Text(_) => Err(reason(&"a plaintext message")),
                };
                let credential = match plain {
                    Ok((Kind::Text, body)) => String::from_utf8(body).unwrap_or_default(),
                    Ok(_) => String::new(),
                    Err(why) => {
                        self.state = State::Refused;
                        let _ = ctx.close(CloseCode::POLICY_VIOLATION, &why).await;
                        return;
                    }
                };
                let authenticate = self.authenticate.clone().expect("set for this state");
                let proved = match authenticate(credential).await {
                    // Bound to the upgrade's identity too, when it has one.
                    Ok(identity)
                        if ctx
                            .identity()
                            .is_some_and(|upgrade| upgrade.subject != identity.subject) =>
                    {
                        Err("the session's credential names another user than its upgrade")
                    }
                    Ok(identity) => Ok(identity),
                    Err(_) => Err("the session's first message is not a credential it takes"),
                };
                let State::Credential { opener, sender } =
                    std::mem::replace(&mut self.state, State::Refused)
                else {
                    unreachable!("matched above")
                };
                match proved {
                    Ok(identity) => {
                        let mut sealed = SealedCtx {
                            ctx,
                            sender: &sender,
                            inside: Some(&identity),
                        };
                        self.inner.on_open(&mut sealed).await;
                        self.state = State::Open {
                            opener,
                            sender,
                            identity: Some(identity),
                            refused: false,
                        };
                    }
                    Err(why) => {
                        let _ = ctx.close(UNAUTHORIZED, why).await;
                    }
                }
            }
            State::Open { refused: true, .. } => {}
            State::Open {
                opener,
                sender,
                identity,
                refused,
            } => {
                let plain = match &message {
                    Message::Binary(record) => opener.open(record).map_err(|e| reason(&e)),
                    Message::Text(_) => Err(reason(&"a plaintext message")),
                };
                match plain {
                    Ok((kind, body)) => {
                        let mut sealed = SealedCtx {
                            ctx,
                            sender,
                            inside: identity.as_ref(),
                        };
                        self.inner.on_message(&mut sealed, opened(kind, body)).await;
                    }
                    Err(why) => {
                        *refused = true;
                        let _ = ctx.close(CloseCode::POLICY_VIOLATION, &why).await;
                    }
                }
            }
        }
    }

    async fn on_timer(&mut self, ctx: &mut Ctx) {
        if let Some((sender, inside)) = live_sender(&self.state) {
            let mut sealed = SealedCtx {
                ctx,
                sender,
                inside,
            };
            self.inner.on_timer(&mut sealed).await;
        }
    }

    async fn on_policy_violation(&mut self, ctx: &mut Ctx, violation: &Violation) {
        if let Some((sender, inside)) = live_sender(&self.state) {
            let mut sealed = SealedCtx {
                ctx,
                sender,
                inside,
            };
            self.inner.on_policy_violation(&mut sealed, violation).await;
        }
    }

    async fn on_shutdown(&mut self, ctx: &mut Ctx) {
        if let Some((sender, inside)) = live_sender(&self.state) {
            let mut sealed = SealedCtx {
                ctx,
                sender,
                inside,
            };
            self.inner.on_shutdown(&mut sealed).await;
        }
    }

    async fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) {
        if let State::Open { .. } = self.state {
            self.inner.on_close(ctx, closed).await;
        }
    }
}

/// The client side of an encrypted session, over a connected
/// [`WebSocket`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use ws_crypto::sealed::{SUBPROTOCOL, SealedSocket};
///
/// let (socket, _) = ws_tokio::client("ws://127.0.0.1:9001/sealed")?
///     .subprotocol(SUBPROTOCOL)
///     .connect()
///     .await?;
/// let server_key = "…the server's public key, from its operator…".parse()?;
/// let mut session = SealedSocket::open(socket, Some(server_key)).await?;
/// session.send("hello").await?;
/// if let Some(reply) = session.recv().await {
///     println!("{:?}", reply?);
/// }
/// # Ok(()) }
/// ```
pub struct SealedSocket {
    socket: WebSocket,
    opener: Opener,
    sender: SealedSender,
    server_key: Option<PublicKey>,
    failed: bool,
}

impl std::fmt::Debug for SealedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSocket")
            .field("server_key", &self.server_key)
            .finish_non_exhaustive()
    }
}

impl SealedSocket {
    /// Agrees on keys with the server over `socket` (which must have
    /// negotiated [`SUBPROTOCOL`]). With `pin`, the server must prove it
    /// holds that long-term key, or this fails with
    /// [`HandshakeError::ServerKeyMismatch`] (or `ServerNotAuthenticated`)
    /// and closes the connection with 1008.
    pub async fn open(mut socket: WebSocket, pin: Option<PublicKey>) -> Result<Self, SessionError> {
        if socket.info().subprotocol.as_deref() != Some(SUBPROTOCOL) {
            let _ = socket.close(CloseCode::POLICY_VIOLATION, "").await;
            return Err(SessionError::NotNegotiated);
        }
        let handshake = ClientHandshake::new(pin);
        socket
            .send_uncompressed(Message::binary(Bytes::copy_from_slice(handshake.hello())))
            .await
            .map_err(SealedSendError::from)?;
        let accept = match socket.recv().await {
            Some(Ok(Message::Binary(accept))) => accept,
            Some(Ok(Message::Text(_))) => {
                let _ = socket.close(CloseCode::POLICY_VIOLATION, "").await;
                return Err(SessionError::Plaintext);
            }
            Some(Err(error)) => return Err(error.into()),
            None => return Err(SessionError::ClosedEarly),
        };
        let session = match handshake.finish(&accept) {
            Ok(session) => session,
            Err(error) => {
                let _ = socket
                    .close(CloseCode::POLICY_VIOLATION, &reason(&error))
                    .await;
                return Err(error.into());
            }
        };
        let server_key = session.server_key();
        let Session { sealer, opener, .. } = session;
        Ok(Self {
            sender: SealedSender::new(socket.handle(), sealer),
            socket,
            opener,
            server_key,
            failed: false,
        })
    }

    /// Like [`open`](Self::open), then sends `credential` (the value of an
    /// `Authorization` header: `Bearer <JWT>`, `Key <token>`) as the
    /// session's first sealed message, for a route that takes it there
    /// ([`Sealed::credential_inside`]). Give the credential here only, not
    /// in the upgrade request too: there, a path that can read the request
    /// reads it. Pin the server's key, or an impostor server reads it.
    pub async fn open_with_credential(
        socket: WebSocket,
        pin: Option<PublicKey>,
        credential: &str,
    ) -> Result<Self, SessionError> {
        let session = Self::open(socket, pin).await?;
        session.send(credential.to_owned()).await?;
        Ok(session)
    }

    /// The server's long-term key, if it proved one: pin it to detect a
    /// change next time.
    pub fn server_key(&self) -> Option<PublicKey> {
        self.server_key
    }

    /// Seals and sends `message`.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SealedSendError> {
        self.sender.send(message).await
    }

    /// A sender for other tasks.
    pub fn sender(&self) -> SealedSender {
        self.sender.clone()
    }

    /// The next message, opened; `None` once the connection is closed. A
    /// message that does not open closes the connection with 1008, and
    /// this returns why once, then `None` when the close is complete
    /// (anything the server sent after that message is discarded).
    pub async fn recv(&mut self) -> Option<Result<Message, SessionError>> {
        if self.failed {
            // The session is over: what the server sent after the refused
            // message is not to be trusted. Wait for the close to finish,
            // so `closed` says how it ended.
            while self.socket.recv().await.is_some() {}
            return None;
        }
        let refused = match self.socket.recv().await? {
            Ok(Message::Binary(record)) => match self.opener.open(&record) {
                Ok((kind, body)) => return Some(Ok(opened(kind, body))),
                Err(error) => SessionError::Open(error),
            },
            Ok(Message::Text(_)) => SessionError::Plaintext,
            Err(error) => return Some(Err(error.into())),
        };
        self.failed = true;
        let _ = self
            .socket
            .close(CloseCode::POLICY_VIOLATION, &reason(&refused))
            .await;
        Some(Err(refused))
    }

    /// Closes the connection; [`recv`](Self::recv) then returns what the
    /// server sent before its close, then `None`.
    pub async fn close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        self.socket.close(code, reason).await
    }

    /// How the connection closed, once it has.
    pub fn closed(&self) -> Option<&Closed> {
        self.socket.closed()
    }
}
