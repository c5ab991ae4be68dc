//! A connection as a `Stream` of received messages and a `Sink` of messages
//! to send, driven by its own task.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use event_listener::EventListener;
use futures_core::Stream;
use futures_sink::Sink;
use ws_core::close::CloseFrame;
use ws_core::{CloseCode, Closed, Message};

use crate::connection::{ConnectionHandle, ConnectionInfo};
use crate::error::{ConnectionError, SendError};
use crate::handler::{Ctx, Handler};
use crate::outbox::Outgoing;

type Item = Result<Message, ConnectionError>;

/// Shared by the two halves: when both are gone, the connection is closed
/// (1000), as nobody can use it any more.
#[derive(Debug)]
struct CloseOnDrop(Arc<crate::outbox::Outbox>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.close_with(CloseFrame {
            code: CloseCode::NORMAL,
            reason: String::new(),
        });
    }
}

/// How far the application has asked to read: the number of the message it
/// is waiting for (1 for the first).
#[derive(Debug, Default)]
struct Demand {
    requested: AtomicU64,
    changed: event_listener::Event,
}

impl Demand {
    fn request(&self, message: u64) {
        if self.requested.fetch_max(message, Ordering::AcqRel) < message {
            self.changed.notify(usize::MAX);
        }
    }
}

/// An open WebSocket connection.
///
/// Its own task runs the connection: it reads, answers pings, runs the
/// keepalive and close timers and writes, whether or not the application is
/// currently receiving or sending. Received messages wait in a short queue;
/// when the application does not take them the task keeps reading (and so
/// keeps answering pings) until a byte bound (the message limit plus one
/// read), then stops reading, which pushes back on the peer. Any bytes that
/// arrive count as a sign of life, so a slow reader is never taken for a
/// dead peer by the keepalive.
///
/// Messages are handed over in order and none is lost: what arrived before
/// the peer closed (or before the connection dropped) is still delivered,
/// and the stream then ends. `recv` returns `None` after a completed close
/// handshake, or one `Err` first when the connection ended abnormally.
///
/// Replies keep their order with what the peer sent: the peer's close, or a
/// protocol error, that arrives behind messages the application has not
/// taken yet is acted on once the application asks for the message after
/// them (so whatever it sent in reply goes out first), or after the
/// connection's `close_timeout` (10 s by default) if it does not. Until
/// then sending still works; after it, sends fail with
/// [`SendError::Closed`] and the remaining messages are still delivered.
/// `read_ahead` in [`ClientConfig`](crate::ClientConfig) lets the task hand
/// that many messages over ahead of the application's asking, for
/// throughput.
///
/// `recv` is cancel-safe: dropping its future loses no message. Sending
/// uses [`ConnectionHandle`]'s vocabulary (the socket derefs to its
/// handle): `send(..).await` waits while the send queue is full, so a slow
/// peer slows the sender down, and `try_send(..)` fails with
/// [`SendError::Full`] instead; `close(code, reason).await` goes out after
/// what was sent before it. [`split`](Self::split) gives independent
/// halves; dropping both closes the connection (1000).
///
/// `send` and `close` are also the names of `futures`' `SinkExt` methods;
/// the socket's own take precedence (`SinkExt::close(&mut socket)` reaches
/// the sink's, which closes with 1000).
#[derive(Debug)]
pub struct WebSocket {
    sender: WsSender,
    receiver: WsReceiver,
}

/// The sending half of a [`WebSocket`]: a `Sink<Message>`, and through
/// `Deref` its connection's [`ConnectionHandle`].
#[derive(Debug)]
pub struct WsSender {
    handle: ConnectionHandle,
    _open: Arc<CloseOnDrop>,
    info: Arc<ConnectionInfo>,
    listener: Option<EventListener>,
}

/// The receiving half of a [`WebSocket`]. A `Stream` of messages, ending
/// with `None` after a close handshake, or with one `Err` before `None`
/// when the connection ended abnormally.
#[derive(Debug)]
pub struct WsReceiver {
    _open: Arc<CloseOnDrop>,
    // Boxed: the receiver is not `Unpin`, and the halves should be.
    messages: Pin<Box<async_channel::Receiver<Item>>>,
    closed: Arc<OnceLock<Closed>>,
    demand: Arc<Demand>,
    received: u64,
}

impl WebSocket {
    pub(crate) fn new(
        handle: ConnectionHandle,
        info: Arc<ConnectionInfo>,
        read_ahead: usize,
    ) -> (Self, Forward) {
        // Bounded by the demand below in either case; a large `read_ahead`
        // must not allocate its capacity up front.
        let (tx, rx) = if read_ahead < 1024 {
            async_channel::bounded(read_ahead + 1)
        } else {
            async_channel::unbounded()
        };
        let closed = Arc::new(OnceLock::new());
        let demand = Arc::new(Demand::default());
        let open = Arc::new(CloseOnDrop(handle.outbox().clone()));
        let socket = Self {
            sender: WsSender {
                _open: open.clone(),
                handle,
                info,
                listener: None,
            },
            receiver: WsReceiver {
                _open: open,
                messages: Box::pin(rx),
                closed: closed.clone(),
                demand: demand.clone(),
                received: 0,
            },
        };
        let forward = Forward {
            tx,
            closed,
            demand,
            delivered: 0,
            read_ahead: read_ahead as u64,
        };
        (socket, forward)
    }

    /// Sends a message, waiting while the send queue is full; see
    /// [`ConnectionHandle::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.sender.send(message).await
    }

    /// Starts the close handshake after what was sent before and waits
    /// until it has gone to the connection; keep receiving to see the end
    /// (the peer's remaining messages, then `None`). See
    /// [`ConnectionHandle::close`] for what is checked.
    pub fn close<'a>(
        &'a self,
        code: CloseCode,
        reason: &str,
    ) -> impl Future<Output = Result<(), SendError>> + Send + use<'a> {
        self.sender.close(code, reason)
    }

    /// The next message; `None` once the connection is closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Item> {
        self.receiver.recv().await
    }

    /// How the connection closed, once it has.
    pub fn closed(&self) -> Option<&Closed> {
        self.receiver.closed()
    }

    /// A clonable handle for sending from other tasks.
    pub fn handle(&self) -> ConnectionHandle {
        self.sender.handle.clone()
    }

    /// The connection's identity, address, request and subprotocol.
    pub fn info(&self) -> &ConnectionInfo {
        &self.sender.info
    }

    /// Independent sending and receiving halves.
    pub fn split(self) -> (WsSender, WsReceiver) {
        (self.sender, self.receiver)
    }
}

impl std::ops::Deref for WebSocket {
    type Target = ConnectionHandle;

    fn deref(&self) -> &ConnectionHandle {
        &self.sender.handle
    }
}

impl WsSender {
    /// Sends a message, waiting while the send queue is full; see
    /// [`ConnectionHandle::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.handle.send(message).await
    }

    /// Starts the close handshake and waits until it has gone to the
    /// connection; see [`ConnectionHandle::close`].
    pub fn close<'a>(
        &'a self,
        code: CloseCode,
        reason: &str,
    ) -> impl Future<Output = Result<(), SendError>> + Send + use<'a> {
        self.handle.close(code, reason)
    }

    /// A clonable handle to the same connection.
    pub fn handle(&self) -> ConnectionHandle {
        self.handle.clone()
    }

    /// The connection's identity, address, request and subprotocol.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }
}

impl std::ops::Deref for WsSender {
    type Target = ConnectionHandle;

    fn deref(&self) -> &ConnectionHandle {
        &self.handle
    }
}

impl Sink<Message> for WsSender {
    type Error = SendError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        let this = self.get_mut();
        this.handle.outbox().poll_room(cx, &mut this.listener)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), SendError> {
        // `poll_ready` saw room; the queue may overshoot its bound by this
        // one message.
        self.handle.outbox().force_push(Outgoing::Message(item))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        // Flushed once the driver has taken everything into the protocol
        // engine, which writes it as the transport allows.
        let this = self.get_mut();
        loop {
            if this.handle.outbox().is_empty() {
                this.listener = None;
                return Poll::Ready(Ok(()));
            }
            match &mut this.listener {
                Some(listener) => {
                    std::task::ready!(Pin::new(listener).poll(cx));
                    this.listener = None;
                }
                None => this.listener = Some(this.handle.outbox().listen_drained()),
            }
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        // Already closing is as good as closing.
        let _ = self.handle.try_close(CloseCode::NORMAL, "");
        Poll::Ready(Ok(()))
    }
}

use std::future::Future;

impl WsReceiver {
    /// The next message; `None` once the connection is closed. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Item> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// How the connection closed, once it has.
    pub fn closed(&self) -> Option<&Closed> {
        self.closed.get()
    }
}

impl Drop for WsReceiver {
    fn drop(&mut self) {
        // Unblock a driver waiting for demand: nobody will ask any more.
        self.messages.close();
        self.demand.changed.notify(usize::MAX);
    }
}

impl Stream for WsReceiver {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = &mut *self;
        // Asking for message n+1 tells the driver the application is done
        // with message n.
        this.demand.request(this.received + 1);
        let item = std::task::ready!(this.messages.as_mut().poll_next(cx));
        if item.is_some() {
            this.received += 1;
        }
        Poll::Ready(item)
    }
}

impl Stream for WebSocket {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        Pin::new(&mut self.receiver).poll_next(cx)
    }
}

impl Sink<Message> for WebSocket {
    type Error = SendError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.sender).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), SendError> {
        Pin::new(&mut self.sender).start_send(item)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.sender).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        Pin::new(&mut self.sender).poll_close(cx)
    }
}

/// The handler behind a [`WebSocket`]: forwards messages to the receiving
/// half.
#[derive(Debug)]
pub(crate) struct Forward {
    tx: async_channel::Sender<Item>,
    closed: Arc<OnceLock<Closed>>,
    demand: Arc<Demand>,
    delivered: u64,
    read_ahead: u64,
}

impl Handler for Forward {
    async fn on_message(&mut self, _ctx: &mut Ctx, message: Message) {
        // A dropped receiver means the application only sends: the message
        // is discarded and the connection keeps running.
        if self.tx.send(Ok(message)).await.is_err() {
            return;
        }
        self.delivered += 1;
        // Return (letting the driver decode the next message) once the
        // application asks for a message within `read_ahead` of the next.
        let wanted = self.delivered + 1;
        loop {
            let asked = || {
                let requested = self.demand.requested.load(Ordering::Acquire);
                requested.saturating_add(self.read_ahead) >= wanted || self.tx.is_closed()
            };
            if asked() {
                return;
            }
            let listener = self.demand.changed.listen();
            if asked() {
                return;
            }
            listener.await;
        }
    }

    async fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) {
        let _ = self.closed.set(closed.clone());
        if ConnectionError::is_abnormal(closed) {
            let error = ConnectionError {
                closed: closed.clone(),
                io: ctx.transport_error().cloned(),
            };
            let _ = self.tx.send(Err(error)).await;
        }
        self.tx.close();
    }
}
