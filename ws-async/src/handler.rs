//! The handler API: the callbacks a connection runs ([`Handler`]), wrappers
//! that change some of them and pass the rest on ([`Layer`]), and a
//! callback's view of its connection ([`Ctx`]).

use std::future::Future;
use std::io;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Instant;

#[cfg(feature = "envelope")]
use ws_core::envelope::Envelope;
use ws_core::policy::Violation;
use ws_core::{Closed, Message};

use crate::auth::Identity;
use crate::connection::{ConnectionHandle, ConnectionInfo};
#[cfg(feature = "envelope")]
use crate::error::SendError;
use crate::registry::ServerHandle;

/// Callbacks for one connection. A fresh handler is made for every
/// connection, so its fields are the connection's own data.
///
/// All callbacks of one connection run in order in that connection's task;
/// while one is waiting, the connection keeps reading (up to a bound),
/// answering pings and writing, and the messages that arrive meanwhile wait
/// in order for the next `on_message`. A slow callback delays only its own
/// connection; a panicking one closes its connection with 1011 and no
/// further callbacks run. A callback still running when a server shutdown's
/// grace period ends is dropped there, like any future cancelled at an
/// `.await`.
///
/// To change some callbacks of another handler and pass the others on
/// unchanged, write a [`Layer`] rather than a second `Handler`: a layer
/// cannot forget to pass one on.
pub trait Handler: Send + 'static {
    /// The connection is open.
    fn on_open(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// A message arrived.
    fn on_message(&mut self, ctx: &mut Ctx, message: Message) -> impl Future<Output = ()> + Send;

    /// The timer set with [`Ctx::set_timer`] is due. It is cleared before
    /// this runs; set it again for the next one. For sans-IO state machines
    /// that want `handle_timeout(now)` at their `poll_timeout()` (such as
    /// [`ws_core::ack::AckSender`]) without a task of their own.
    fn on_timer(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// A message broke one of the endpoint's policies whose action is
    /// [`OnViolation::Drop`](ws_core::policy::OnViolation::Drop): it was
    /// dropped, the connection stays open. (A violated
    /// [`OnViolation::Close`](ws_core::policy::OnViolation::Close) policy
    /// closes with 1008 instead, reported to [`on_close`](Self::on_close).)
    fn on_policy_violation(
        &mut self,
        ctx: &mut Ctx,
        violation: &Violation,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, violation);
        async {}
    }

    /// The server is shutting down; the connection is closed with 1001 once
    /// this returns.
    fn on_shutdown(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// The connection closed. No more callbacks follow.
    fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) -> impl Future<Output = ()> + Send {
        let _ = (ctx, closed);
        async {}
    }
}

/// Changes some callbacks of an inner handler `H`; every callback a layer
/// does not override goes to the inner handler unchanged, so none can be
/// forgotten. Serve it as [`Layered`].
///
/// ```
/// # use ws_async::{Ctx, Handler, Layer, Layered};
/// # use ws_async::ws_core::Message;
/// # struct App;
/// # impl Handler for App {
/// #     async fn on_message(&mut self, _: &mut Ctx, _: Message) {}
/// # }
/// /// Counts messages, then lets the inner handler have them.
/// struct Counting(u64);
///
/// impl<H: Handler> Layer<H> for Counting {
///     async fn on_message(&mut self, inner: &mut H, ctx: &mut Ctx, message: Message) {
///         self.0 += 1;
///         inner.on_message(ctx, message).await;
///     }
/// }
///
/// let handler = Layered::new(Counting(0), App); // a Handler
/// ```
pub trait Layer<H: Handler>: Send + 'static {
    /// See [`Handler::on_open`]. Default: the inner handler's.
    fn on_open(&mut self, inner: &mut H, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        inner.on_open(ctx)
    }

    /// See [`Handler::on_message`]. Default: the inner handler's.
    fn on_message(
        &mut self,
        inner: &mut H,
        ctx: &mut Ctx,
        message: Message,
    ) -> impl Future<Output = ()> + Send {
        inner.on_message(ctx, message)
    }

    /// See [`Handler::on_timer`]. Default: the inner handler's.
    fn on_timer(&mut self, inner: &mut H, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        inner.on_timer(ctx)
    }

    /// See [`Handler::on_policy_violation`]. Default: the inner handler's.
    fn on_policy_violation(
        &mut self,
        inner: &mut H,
        ctx: &mut Ctx,
        violation: &Violation,
    ) -> impl Future<Output = ()> + Send {
        inner.on_policy_violation(ctx, violation)
    }

    /// See [`Handler::on_shutdown`]. Default: the inner handler's.
    fn on_shutdown(&mut self, inner: &mut H, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        inner.on_shutdown(ctx)
    }

    /// See [`Handler::on_close`]. Default: the inner handler's.
    fn on_close(
        &mut self,
        inner: &mut H,
        ctx: &mut Ctx,
        closed: &Closed,
    ) -> impl Future<Output = ()> + Send {
        inner.on_close(ctx, closed)
    }
}

/// A [`Layer`] around a handler, served as a [`Handler`].
#[derive(Debug, Clone, Default)]
pub struct Layered<L, H> {
    /// The layer, which sees every callback first.
    pub layer: L,
    /// The handler it wraps.
    pub inner: H,
}

impl<L, H> Layered<L, H> {
    /// `layer` around `inner`.
    pub fn new(layer: L, inner: H) -> Self {
        Self { layer, inner }
    }
}

impl<L: Layer<H>, H: Handler> Handler for Layered<L, H> {
    fn on_open(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        self.layer.on_open(&mut self.inner, ctx)
    }

    fn on_message(&mut self, ctx: &mut Ctx, message: Message) -> impl Future<Output = ()> + Send {
        self.layer.on_message(&mut self.inner, ctx, message)
    }

    fn on_timer(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        self.layer.on_timer(&mut self.inner, ctx)
    }

    fn on_policy_violation(
        &mut self,
        ctx: &mut Ctx,
        violation: &Violation,
    ) -> impl Future<Output = ()> + Send {
        self.layer
            .on_policy_violation(&mut self.inner, ctx, violation)
    }

    fn on_shutdown(&mut self, ctx: &mut Ctx) -> impl Future<Output = ()> + Send {
        self.layer.on_shutdown(&mut self.inner, ctx)
    }

    fn on_close(&mut self, ctx: &mut Ctx, closed: &Closed) -> impl Future<Output = ()> + Send {
        self.layer.on_close(&mut self.inner, ctx, closed)
    }
}

/// A handler's view of its connection: what is known about it, the server
/// it belongs to, its timer, and (through `Deref`) every sending method of
/// its [`ConnectionHandle`]: `ctx.send(message).await`,
/// `ctx.try_send(message)`, `ctx.close(code, reason).await`, ...
#[derive(Debug)]
pub struct Ctx {
    handle: ConnectionHandle,
    info: Arc<ConnectionInfo>,
    server: ServerHandle,
    timer: Option<Instant>,
    timer_changed: bool,
    transport_error: Option<Arc<io::Error>>,
}

impl Deref for Ctx {
    type Target = ConnectionHandle;

    fn deref(&self) -> &ConnectionHandle {
        &self.handle
    }
}

impl Ctx {
    pub(crate) fn new(
        handle: ConnectionHandle,
        info: Arc<ConnectionInfo>,
        server: ServerHandle,
    ) -> Self {
        Self {
            handle,
            info,
            server,
            timer: None,
            timer_changed: false,
            transport_error: None,
        }
    }

    /// Identity, address, request (with its query) and subprotocol of the
    /// connection.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// The identity the endpoint's [`Authenticator`](crate::auth::Authenticator)
    /// established, if it has one.
    pub fn identity(&self) -> Option<&Identity> {
        self.info.request.extensions.get::<Identity>()
    }

    /// A handle for sending to this connection from other tasks.
    pub fn handle(&self) -> ConnectionHandle {
        self.handle.clone()
    }

    /// The server this connection belongs to: its registry, broadcast and
    /// shutdown.
    pub fn server(&self) -> &ServerHandle {
        &self.server
    }

    /// The current time on the server's runtime clock (tokio's paused
    /// clock in tests): what to pass to sans-IO state machines.
    pub fn now(&self) -> Instant {
        self.server.now()
    }

    /// Calls [`Handler::on_timer`] at `at` (at once if it has passed),
    /// replacing any timer set before. The timer runs on the connection's
    /// own task, between callbacks.
    pub fn set_timer(&mut self, at: Instant) {
        self.timer = Some(at);
        self.timer_changed = true;
    }

    /// Cancels the timer.
    pub fn clear_timer(&mut self) {
        self.timer = None;
        self.timer_changed = true;
    }

    /// When [`Handler::on_timer`] is next due, if a timer is set.
    pub fn timer(&self) -> Option<Instant> {
        self.timer
    }

    /// In `on_close`: the transport error that ended the connection, if
    /// one did.
    pub fn transport_error(&self) -> Option<&Arc<io::Error>> {
        self.transport_error.as_ref()
    }

    /// Queues an envelope as a JSON text message, waiting for room; see
    /// [`ConnectionHandle::send`].
    #[cfg(feature = "envelope")]
    pub async fn send_envelope(&self, envelope: &Envelope) -> Result<(), SendError> {
        self.handle.send(envelope.to_message()).await
    }

    /// Queues an envelope without waiting; see
    /// [`ConnectionHandle::try_send`].
    #[cfg(feature = "envelope")]
    pub fn try_send_envelope(&self, envelope: &Envelope) -> Result<(), SendError> {
        self.handle.try_send(envelope.to_message())
    }

    /// The timer as the last callback left it, if it changed.
    pub(crate) fn take_timer_change(&mut self) -> Option<Option<Instant>> {
        std::mem::take(&mut self.timer_changed).then_some(self.timer)
    }

    /// The timer fired: it is cleared before `on_timer` runs.
    pub(crate) fn timer_fired(&mut self) {
        self.timer = None;
    }

    pub(crate) fn set_transport_error(&mut self, error: Option<Arc<io::Error>>) {
        self.transport_error = error;
    }
}
