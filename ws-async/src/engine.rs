//! The engine of a connection: one task that moves bytes between the
//! transport and a `ws_core::Connection`, runs its timers and the
//! handler's, and calls the handler.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::EventListener;
use futures_util::FutureExt;
use ws_core::close::{MAX_CLOSE_REASON, truncate_reason};
use ws_core::config::{deadline_after, earliest};
use ws_core::policy::{PolicySet, Verdict, Violation};
use ws_core::{CloseCode, Closed, Connection, Event, Message};

use crate::connection::close;
use crate::handler::{Ctx, Handler};
use crate::meters::{self, ConnectionMeters};
use crate::outbox::{Drain, Outbox, Outgoing, ReplyLane};
use crate::registry::Shutdown;
use crate::runtime::{Runtime, Timer, Transport, read_some, with_deadline};

/// Tunables of the driver around the protocol engine.
#[derive(Debug, Clone)]
pub(crate) struct DriverLimits {
    /// Received bytes not yet decoded above which reading pauses while a
    /// callback runs. Must hold a whole frame: the message limit plus a
    /// read's worth.
    pub(crate) inbound_bytes: usize,
    /// After the connection closes, how long to keep trying to write the
    /// close frame and shut the transport down.
    pub(crate) linger: Duration,
    /// Release buffer memory when the connection goes idle.
    pub(crate) shrink_when_idle: bool,
}

/// What a connection learns from the server's [`Shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Drain,
    Kill,
}

/// One connection's view of the [`Shutdown`] signal: reports draining once
/// and killing whenever asked, with a wake-up registered only when the
/// connection is about to wait (not once per message).
struct ShutdownWatch {
    shutdown: Option<Arc<Shutdown>>,
    listener: Option<EventListener>,
    /// The waker `listener` was last polled with: polling it again with
    /// the same one would change nothing, and costs a lock.
    registered: Option<Waker>,
    drain_seen: bool,
}

impl ShutdownWatch {
    fn new(shutdown: Option<Arc<Shutdown>>) -> Self {
        Self {
            shutdown,
            listener: None,
            registered: None,
            drain_seen: false,
        }
    }

    /// The signal not yet reported (kill before drain).
    fn check(&mut self) -> Option<Signal> {
        let shutdown = self.shutdown.as_ref()?;
        if shutdown.killed.load(Ordering::Acquire) {
            return Some(Signal::Kill);
        }
        if !self.drain_seen && shutdown.draining.load(Ordering::Acquire) {
            self.drain_seen = true;
            return Some(Signal::Drain);
        }
        None
    }

    /// Whether the server was killed.
    fn killed(&self) -> bool {
        self.shutdown
            .as_ref()
            .is_some_and(|s| s.killed.load(Ordering::Acquire))
    }

    /// Before waiting: be woken when the signal changes.
    fn register(&mut self, cx: &mut Context<'_>) {
        let Some(shutdown) = &self.shutdown else {
            return;
        };
        let listener = self.listener.get_or_insert_with(|| {
            let listener = shutdown.notify.listen();
            // A notification sent before `listen` is not delivered to it:
            // look at the flags again.
            if shutdown.killed.load(Ordering::Acquire)
                || (!self.drain_seen && shutdown.draining.load(Ordering::Acquire))
            {
                cx.waker().wake_by_ref();
            }
            listener
        });
        // Polled again only when something may have changed: a new
        // waker, or a notification somewhere on the event (ours, or one
        // passed on to ours when another connection dropped its listener
        // unread). `is_notified` is one atomic load; a poll takes a lock.
        if !shutdown.notify.is_notified()
            && self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return;
        }
        if Pin::new(listener).poll(cx).is_ready() {
            self.listener = None;
            self.registered = None;
            cx.waker().wake_by_ref();
        } else {
            self.registered = Some(cx.waker().clone());
        }
    }
}

/// The transport, the protocol state machine and what lies between them.
pub(crate) struct Link<R: Runtime, T: Transport> {
    runtime: R,
    io: T,
    conn: Connection,
    outbox: Arc<Outbox>,
    limits: DriverLimits,
    timer: Pin<Box<dyn Timer>>,
    timer_at: Option<Instant>,
    /// The timer has been polled since it was last armed, with
    /// `timer_waker`: it wakes that (setting the outbox's `timer_fired`)
    /// when it fires, so until then it need not be polled again.
    timer_polled: bool,
    /// Wakes the outbox's driver registration, marking the timer fired.
    timer_waker: Waker,
    /// Checked for every incoming message before a handler sees it.
    pub(crate) policies: PolicySet,
    /// A close is queued behind data the peer has not made room for: by
    /// this instant (half the close timeout after the close began) it goes
    /// out anyway, in front of that data.
    close_by: Option<Instant>,
    /// A close this side began ends by this instant (`close_timeout` after
    /// it began), answered or not: queued data, our close frame and the
    /// peer's reply all fit in that one bound, so a peer that reads
    /// nothing holds the connection no longer.
    close_until: Option<Instant>,
    /// The last fragment taken into the engine was not the last of its
    /// message.
    fragment_open: bool,
    /// The handler's timer ([`Ctx::set_timer`]), and whether it is due.
    app_timer: Option<Instant>,
    app_due: bool,
    io_error: Option<Arc<io::Error>>,
    read_done: bool,
    write_done: bool,
    needs_flush: bool,
    /// When bytes last arrived.
    read_at: Option<Instant>,
    /// When the buffers are released if nothing arrives before.
    shrink_at: Option<Instant>,
    /// Buffers may hold allocations worth releasing.
    holds_buffers: bool,
    /// Passes of `pump_io`, for looking at the timers on some busy ones.
    busy_passes: u8,
    /// A read returned `Pending` in this poll of the task: the transport
    /// holds our waker, so reading again before the task is woken would
    /// only repeat that (in tokio, a lock and a registration per try).
    read_blocked: bool,
    /// Message counters (feature `metrics`; server connections only).
    pub(crate) meters: ConnectionMeters,
}

/// How long a connection must go without input before its buffers are
/// released: a connection in a steady exchange keeps them rather than
/// freeing and allocating them again for every message.
const SHRINK_AFTER: Duration = Duration::from_millis(250);

impl<R: Runtime, T: Transport> Link<R, T> {
    pub(crate) fn new(
        runtime: R,
        io: T,
        conn: Connection,
        outbox: Arc<Outbox>,
        limits: DriverLimits,
    ) -> Self {
        let timer = runtime.timer(runtime.now() + Duration::from_secs(3600));
        let timer_waker = Waker::from(outbox.clone());
        Self {
            runtime,
            io,
            conn,
            outbox,
            limits,
            timer,
            timer_at: None,
            timer_polled: false,
            timer_waker,
            policies: PolicySet::new(),
            close_by: None,
            close_until: None,
            fragment_open: false,
            app_timer: None,
            app_due: false,
            io_error: None,
            read_done: false,
            write_done: false,
            needs_flush: false,
            read_at: None,
            shrink_at: None,
            holds_buffers: true,
            busy_passes: 0,
            read_blocked: false,
            meters: ConnectionMeters::off(),
        }
    }

    /// The transport error that ended the connection, if any.
    pub(crate) fn io_error(&self) -> Option<Arc<io::Error>> {
        self.io_error.clone()
    }

    /// Arms (or with `None` cancels) the handler's timer.
    fn set_app_timer(&mut self, at: Option<Instant>) {
        self.app_timer = at;
        self.app_due = false;
    }

    /// Does the IO that is ready: queued sends into the engine, bytes out,
    /// bytes in, timers. Decoding is left to the caller. Returns whether
    /// anything happened; when nothing did, a wake-up is registered for
    /// everything it waits on.
    fn pump_io(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = self.take_outbox();
        progress |= self.write(cx);
        progress |= self.read(cx);
        // The timers are looked at when nothing else moved (and so before
        // every wait), and every few passes of a stretch that keeps moving,
        // so a flood cannot hold them off; not on every pass of the
        // per-message path.
        self.busy_passes = self.busy_passes.wrapping_add(1);
        if !progress || self.busy_passes.is_multiple_of(16) {
            progress |= self.timers();
        }
        if !progress {
            // Registered only now, before waiting, rather than on every
            // drain: then a handler's replies during a busy stretch do not
            // each wake this very task. Draining once more after
            // registering catches a push that came in between.
            self.outbox.register_driver(cx);
            // A timer that fired in between woke no one.
            progress = self.take_outbox() || self.outbox.timer_fired();
        }
        if !progress {
            progress = self.maybe_shrink();
        }
        progress
    }

    /// Feeds queued items into the engine. Called several times per
    /// message, so the common case (nothing queued) is a flag check.
    #[inline]
    fn take_outbox(&mut self) -> bool {
        if self.conn.is_open() && !self.outbox.has_pending() {
            return false;
        }
        self.take_queued()
    }

    fn take_queued(&mut self) -> bool {
        if !self.conn.is_open() {
            // Nothing more can be sent: senders must learn it now rather
            // than have their messages wait for nothing.
            self.outbox.close();
            return false;
        }
        let conn = &mut self.conn;
        let runtime = &self.runtime;
        let fragment_open = &mut self.fragment_open;
        let meters = &self.meters;
        let mut taken = false;
        let mut skipped = false;
        let mut stopped = false;
        let mut close_taken = false;
        self.outbox.drain(|item| {
            // Nothing may overtake a whole message that is waiting for a
            // fragmented one to end, unless that message was abandoned: its
            // last fragment can no longer be queued behind a close.
            if skipped && !*fragment_open && matches!(item, Outgoing::Close(..)) {
                stopped = true;
                return Drain::Stop;
            }
            let accepted = offer(conn, item, || runtime.now(), meters);
            match accepted {
                Ok(()) => {
                    match item {
                        Outgoing::Fragment(_, last) => *fragment_open = !*last,
                        Outgoing::Close(_) => close_taken = true,
                        _ => {}
                    }
                    taken = true;
                    Drain::Take
                }
                // The engine's buffer is full: wait for the transport.
                Err(ws_core::SendRefused::Backpressure(_)) => {
                    stopped = true;
                    Drain::Stop
                }
                // A whole message while a fragmented one is open waits for
                // its last fragment, which may be queued behind it.
                Err(ws_core::SendRefused::Usage(ws_core::UsageError::MessageInProgress)) => {
                    skipped = true;
                    Drain::Skip
                }
                // The engine closed meanwhile (its buffer overflowed under
                // a closing backpressure policy); the outbox validated
                // everything else.
                Err(ws_core::SendRefused::Usage(error)) => {
                    tracing::debug!(%error, "dropped an outgoing item");
                    Drain::Take
                }
            }
        });
        // The outbox's lock only while no close has begun, and only when
        // the engine could not take everything.
        let waiting = self.close_until.is_none()
            && self.conn.is_open()
            && (stopped || skipped)
            && self.outbox.close_waiting();
        if (close_taken || waiting) && self.close_until.is_none() {
            let timeout = self.conn.config().close_timeout;
            let now = self.runtime.now();
            self.close_until = Some(deadline_after(now, timeout));
            if waiting {
                // The close waits behind data the peer has not read yet:
                // half the time for that data, half for the close.
                self.close_by = Some(deadline_after(now, timeout / 2));
            }
        }
        if !self.conn.is_open() {
            self.outbox.close();
        }
        taken
    }

    /// Feeds the engine the reply a callback left in the [`ReplyLane`]:
    /// ahead of anything queued, which came after it. What the engine
    /// cannot take now goes back to the head of the queue, where
    /// [`take_queued`](Self::take_queued) deals with it as with any item.
    fn take_reply(&mut self, reply: Outgoing) {
        let runtime = &self.runtime;
        if offer(&mut self.conn, &reply, || runtime.now(), &self.meters).is_err() {
            self.outbox.requeue_reply(reply);
        }
    }

    /// Past `close_by`: the close goes out in front of what the peer did not
    /// read.
    fn force_close(&mut self) {
        self.close_by = None;
        if let Some(frame) = self.outbox.take_close() {
            tracing::debug!("the peer reads nothing: closing in front of queued data");
            let _ = self
                .conn
                .close(frame.code, &frame.reason, self.runtime.now());
        }
    }

    /// Writes what the engine has to send. Called on every pass, so the
    /// common case (nothing to write) is two checks. Whether another pass
    /// has something to act on: more to write, items queued for the room
    /// a write made, or the close of a transport that failed. A write that
    /// left nothing to do is not progress: after the usual reply the
    /// connection can wait now rather than after one more pass.
    #[inline]
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        if self.conn.transmit_len() == 0 && !self.needs_flush {
            return false;
        }
        self.write_out(cx)
    }

    fn write_out(&mut self, cx: &mut Context<'_>) -> bool {
        let mut wrote = false;
        let was_done = self.write_done;
        while !self.write_done && self.conn.transmit_len() > 0 {
            // Small frames share one staging buffer, so a write rarely has
            // more than a few slices (one per large payload).
            let mut slices = [IoSlice::new(&[]); 16];
            let n = self.conn.transmit_slices(&mut slices);
            match self.io.poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => self.transport_failed(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => {
                    self.conn.advance_transmit(written);
                    self.needs_flush = true;
                    self.holds_buffers = true;
                    wrote = true;
                }
                Poll::Ready(Err(error)) => self.transport_failed(error),
                // More to write: the next pass tries again if this one wrote.
                Poll::Pending => return wrote,
            }
        }
        if self.needs_flush && !self.write_done {
            match self.io.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(error)) => self.transport_failed(error),
                Poll::Pending => {}
            }
        }
        // The transport failed: the engine holds the close to deliver.
        let failed = self.write_done && !was_done;
        failed || (wrote && (self.conn.transmit_len() > 0 || self.outbox.has_pending()))
    }

    /// The task was woken and is polled: everything it waits on may have
    /// changed.
    fn begin_poll(&mut self) {
        self.outbox.driver_running();
        self.read_blocked = false;
    }

    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.read_blocked || self.read_done || self.conn.is_closed() {
            return false;
        }
        if self.conn.buffered_input() >= self.limits.inbound_bytes {
            return false;
        }
        match self.io.poll_read_buf(cx, self.conn.recv_buf()) {
            Poll::Ready(Ok(0)) => {
                self.read_done = true;
                self.conn.handle_transport_closed(self.runtime.now());
            }
            Poll::Ready(Ok(_)) => {
                let now = self.runtime.now();
                self.conn.handle_received(now);
                self.read_at = Some(now);
                self.holds_buffers = true;
            }
            Poll::Ready(Err(error)) => {
                // Reading failed: what arrived before is still delivered,
                // and writing may still work (the close frame, at least).
                tracing::debug!(%error, "reading failed");
                self.io_error.get_or_insert_with(|| Arc::new(error));
                self.read_done = true;
                self.conn.handle_transport_closed(self.runtime.now());
            }
            Poll::Pending => {
                self.read_blocked = true;
                return false;
            }
        }
        true
    }

    fn transport_failed(&mut self, error: io::Error) {
        tracing::debug!(%error, "transport failed");
        if self.io_error.is_none() {
            self.io_error = Some(Arc::new(error));
        }
        self.read_done = true;
        self.write_done = true;
        self.conn.handle_transport_closed(self.runtime.now());
    }

    /// While a callback runs: decodes ahead, so pings are answered and
    /// pongs and a close are noticed; messages wait in the engine, in
    /// order, for the callback to return.
    fn control_events(&mut self) -> bool {
        let mut any = false;
        while self.conn.poll_control_event().is_some() {
            any = true;
        }
        any
    }

    /// When no callback runs: the handler's timer if it is due, else the
    /// next message or the close, after feeding queued sends into the
    /// engine so replies stay ahead of whatever the peer sent next.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        // Bounded so one busy connection cannot hold a worker thread.
        for _ in 0..256 {
            if std::mem::take(&mut self.app_due) {
                return Poll::Ready(Next::Timer);
            }
            self.take_outbox();
            match self.conn.poll_event() {
                Some(Event::Message(message)) => return Poll::Ready(Next::Message(message)),
                Some(Event::Closed(closed)) => {
                    self.outbox.close();
                    return Poll::Ready(Next::Closed(closed));
                }
                // Pongs are answered by the engine; fragments only occur in
                // streaming mode, which the driver does not enable.
                Some(Event::Ping(_) | Event::Pong(_) | Event::Fragment(_)) => continue,
                None => {}
            }
            if !self.pump_io(cx) {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// IO and control frames while a callback runs.
    fn poll_busy(&mut self, cx: &mut Context<'_>) {
        for _ in 0..256 {
            // Decoding first: what it finds (a close, say) can change the
            // timers, which `pump_io` then arms.
            let progress = self.control_events() | self.pump_io(cx);
            if !progress {
                return;
            }
        }
        cx.waker().wake_by_ref();
    }

    fn timers(&mut self) -> bool {
        let deadline = earliest(
            earliest(
                self.conn.poll_timeout(),
                earliest(self.close_by, self.close_until),
            ),
            earliest(self.app_timer, self.shrink_at),
        );
        let Some(deadline) = deadline else {
            return false;
        };
        // Every read moves the idle and keepalive deadlines later.
        // Resetting the runtime's timer each time costs more than letting
        // an earlier one fire and re-arming then, so the timer is only
        // moved earlier. While an armed timer is no later than the
        // deadline, it has not fired and the deadline has not passed
        // either: no clock read is needed on this, the per-message path.
        if self.timer_at.is_none_or(|armed| armed > deadline) {
            let now = self.runtime.now();
            if deadline <= now {
                self.handle_timeout(now);
                return true;
            }
            self.timer.as_mut().reset(deadline);
            self.timer_at = Some(deadline);
            self.timer_polled = false;
        }
        // The driver's own waker is registered with the outbox before every
        // wait; the timer wakes it through `timer_waker`.
        if self.timer_polled && !self.outbox.timer_fired() {
            return false;
        }
        self.outbox.clear_timer_fired();
        let mut timer_cx = Context::from_waker(&self.timer_waker);
        self.timer_polled = true;
        if self.timer.as_mut().poll_fired(&mut timer_cx).is_ready() {
            self.timer_polled = false;
            self.timer_at = None;
            // Possibly early for the current deadline: the engine then
            // ignores it and the next pass re-arms.
            self.handle_timeout(self.runtime.now());
            return true;
        }
        false
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.close_by.is_some_and(|by| now >= by) {
            self.force_close();
        }
        if self.close_until.is_some_and(|until| now >= until) && !self.conn.is_closed() {
            self.close_until = None;
            tracing::debug!("the close did not complete within close_timeout: dropping");
            self.transport_failed(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer did not complete the close handshake within close_timeout",
            ));
        }
        if self.app_timer.is_some_and(|at| now >= at) {
            self.app_timer = None;
            self.app_due = true;
        }
        if self.shrink_at.is_some_and(|at| now >= at) {
            self.shrink_at = None;
            let quiet = self
                .read_at
                .is_none_or(|read| now.saturating_duration_since(read) >= SHRINK_AFTER);
            if quiet && self.conn.transmit_len() == 0 {
                self.conn.shrink_buffers();
                self.holds_buffers = false;
            }
        }
        self.conn.handle_timeout(now);
    }

    /// An idle connection should cost little memory: drops empty buffers
    /// once nothing has arrived for [`SHRINK_AFTER`] (at once if nothing
    /// ever did), arming the timer for it. Whether the timer fired on the
    /// spot, which counts as progress.
    fn maybe_shrink(&mut self) -> bool {
        if !self.limits.shrink_when_idle || !self.holds_buffers || self.conn.transmit_len() > 0 {
            return false;
        }
        match self.read_at.and_then(|read| read.checked_add(SHRINK_AFTER)) {
            Some(due) => {
                self.shrink_at = Some(due);
                // An armed timer no later than `due` covers it.
                if self.timer_at.is_none_or(|armed| armed > due) {
                    self.timers()
                } else {
                    false
                }
            }
            None => {
                self.conn.shrink_buffers();
                self.holds_buffers = false;
                false
            }
        }
    }

    /// Closes from our side (shutdown, policy, handler panic), after
    /// whatever the handler queued before; a no-op when a close is queued
    /// already.
    fn close(&mut self, code: CloseCode, reason: &str) {
        let _ = close(&self.outbox, code, reason);
    }

    /// After the close: writes what is left (the close frame), shuts the
    /// write side down and reads (discarding) until the peer closes too.
    /// Bounded by `linger`.
    async fn finish(&mut self) {
        let runtime = self.runtime.clone();
        let deadline = earliest(
            Some(deadline_after(runtime.now(), self.limits.linger)),
            self.close_until,
        )
        .expect("one of them is set");
        let _ = with_deadline(&runtime, deadline, async {
            poll_fn(|cx| {
                self.write(cx);
                if self.write_done || (self.conn.transmit_len() == 0 && !self.needs_flush) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
            if !self.write_done {
                let _ = poll_fn(|cx| self.io.poll_shutdown(cx)).await;
            }
            if !self.read_done {
                // A client: RFC 6455 §7.1.1, the server closes the TCP
                // connection first; read until it does. A server: a
                // socket closed with unread input sends a reset, which can
                // reach the peer before it reads our close frame (a client
                // still writing a message too big for us gets a broken
                // pipe instead of 1009); read until the peer, which has
                // our FIN, closes.
                let mut sink = bytes::BytesMut::with_capacity(1024);
                loop {
                    sink.clear();
                    match read_some(&mut self.io, &mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        })
        .await;
    }
}

impl<R: Runtime, T: Transport> Drop for Link<R, T> {
    fn drop(&mut self) {
        // However the connection's task ends (even dropped unfinished, as
        // when its runtime shuts down), senders waiting for room must learn
        // that nobody will make it.
        self.outbox.close();
    }
}

/// Hands one queued item to the engine, counting what it accepts. A
/// fragment's effect on the open message is the caller's to track.
fn offer(
    conn: &mut Connection,
    item: &Outgoing,
    now: impl FnOnce() -> Instant,
    meters: &ConnectionMeters,
) -> Result<(), ws_core::SendRefused> {
    match item {
        // By reference: the queue keeps the message until the engine
        // accepts it, and a clone of a payload that owns its buffer would
        // allocate to share it.
        Outgoing::Message(message) => conn.send_ref(message),
        Outgoing::Uncompressed(message) => conn.send_uncompressed_ref(message),
        Outgoing::Fragment(data, last) => conn.send_fragment(data.clone(), *last),
        Outgoing::Ping(payload) => conn.ping(payload),
        Outgoing::Encoded(encoded) => conn.send_encoded(encoded),
        Outgoing::Close(frame) => conn.close(frame.code, &frame.reason, now()),
    }
    .inspect(|()| match item {
        Outgoing::Message(m) | Outgoing::Uncompressed(m) => meters.sent(m.len(), true),
        Outgoing::Fragment(m, last) => meters.sent(m.len(), *last),
        Outgoing::Encoded(e) => meters.sent(e.payload_len(), true),
        Outgoing::Ping(_) | Outgoing::Close(_) => {}
    })
}

enum Next {
    Message(Message),
    Timer,
    Shutdown,
    Closed(Closed),
    Killed,
}

/// How a connection ends when the server is killed past its grace period.
fn killed(meters: &ConnectionMeters) -> Closed {
    meters.closed(CloseCode::ABNORMAL);
    Closed {
        code: CloseCode::ABNORMAL,
        reason: "server shut down".into(),
        cause: ws_core::CloseCause::TransportClosed,
    }
}

/// Runs a connection until it closes: the handler's callbacks, interleaved
/// with the link's IO. Returns how it closed.
///
/// Not an `async fn`: that would move its arguments from the future's
/// captures into locals and keep both copies (the link is most of an idle
/// connection's memory); an `async move` block uses its captures in place.
#[allow(clippy::manual_async_fn)]
pub(crate) fn drive<R, T, H>(
    mut link: Link<R, T>,
    mut handler: H,
    mut ctx: Ctx,
    shutdown: Option<Arc<Shutdown>>,
) -> impl Future<Output = Closed> + Send
where
    R: Runtime,
    T: Transport,
    H: Handler,
{
    async move {
        let mut watch = ShutdownWatch::new(shutdown);
        let mut poisoned = false;
        let mut policy_closed = false;
        macro_rules! call {
            ($callback:expr) => {
                if call(&mut link, &mut poisoned, &mut watch, $callback).await == Outcome::Killed {
                    link.outbox.close();
                    return killed(&link.meters);
                }
                if let Some(timer) = ctx.take_timer_change() {
                    link.set_app_timer(timer);
                }
            };
        }
        call!(handler.on_open(&mut ctx));
        let closed = loop {
            let next = poll_fn(|cx| {
                match watch.check() {
                    Some(Signal::Kill) => return Poll::Ready(Next::Killed),
                    Some(Signal::Drain) => return Poll::Ready(Next::Shutdown),
                    None => {}
                }
                link.begin_poll();
                let next = link.poll_next(cx);
                if next.is_pending() {
                    watch.register(cx);
                }
                next
            })
            .await;
            match next {
                // After a policy closed the connection, nothing more is
                // delivered.
                Next::Message(_) if policy_closed => {}
                Next::Message(message) => {
                    link.meters.received(message.len());
                    let verdict = if link.policies.is_empty() {
                        Verdict::Allow
                    } else {
                        let now = link.runtime.now();
                        link.policies.check(&message, now)
                    };
                    match verdict {
                        Verdict::Allow if !poisoned => {
                            call!(handler.on_message(&mut ctx, message));
                        }
                        Verdict::Allow => {}
                        Verdict::Drop(violation) => {
                            meters::policy_violation(violation.policy, false);
                            tracing::debug!(%violation, "dropped a message");
                            if !poisoned {
                                call!(handler.on_policy_violation(&mut ctx, &violation));
                            }
                        }
                        Verdict::Close(violation) => {
                            meters::policy_violation(violation.policy, true);
                            tracing::debug!(%violation, "closing on a policy violation");
                            policy_closed = true;
                            link.close(CloseCode::POLICY_VIOLATION, &close_reason(&violation));
                        }
                    }
                }
                Next::Timer => {
                    ctx.timer_fired();
                    if !poisoned {
                        call!(handler.on_timer(&mut ctx));
                    }
                }
                Next::Shutdown => {
                    if !poisoned {
                        call!(handler.on_shutdown(&mut ctx));
                    }
                    link.close(CloseCode::GOING_AWAY, "server shutting down");
                }
                Next::Closed(closed) => {
                    ctx.set_transport_error(link.io_error());
                    if !poisoned {
                        call!(handler.on_close(&mut ctx, &closed));
                    }
                    break closed;
                }
                Next::Killed => {
                    link.outbox.close();
                    return killed(&link.meters);
                }
            }
        };
        link.meters.closed(closed.code);
        link.finish().await;
        closed
    }
}

/// A violation as a close reason, cut to the 123 bytes a close frame holds.
fn close_reason(violation: &Violation) -> String {
    let reason = violation.to_string();
    truncate_reason(&reason, MAX_CLOSE_REASON).to_owned()
}

/// How a callback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It returned, or panicked (then the connection closes with 1011).
    Done,
    /// The server was killed while it ran: it was dropped unfinished.
    Killed,
}

/// Runs one callback to completion while the link keeps doing IO. A panic
/// closes the connection with 1011 and poisons the handler; a kill of the
/// server (its grace period is over) drops the callback.
fn call<'a, R, T, F>(
    link: &'a mut Link<R, T>,
    poisoned: &'a mut bool,
    watch: &'a mut ShutdownWatch,
    callback: F,
) -> Call<'a, R, T, F>
where
    R: Runtime,
    T: Transport,
    F: Future<Output = ()>,
{
    Call {
        callback: AssertUnwindSafe(callback).catch_unwind(),
        link,
        poisoned,
        watch,
    }
}

pin_project_lite::pin_project! {
    /// [`call`]'s future. A struct rather than an `async fn`, which would
    /// hold the callback's future twice (argument and pinned local) in
    /// every connection's memory.
    struct Call<'a, R: Runtime, T: Transport, F> {
        #[pin]
        callback: futures_util::future::CatchUnwind<AssertUnwindSafe<F>>,
        link: &'a mut Link<R, T>,
        poisoned: &'a mut bool,
        watch: &'a mut ShutdownWatch,
    }
}

impl<R: Runtime, T: Transport, F: Future<Output = ()>> Future for Call<'_, R, T, F> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.project();
        if this.watch.killed() {
            return Poll::Ready(Outcome::Killed);
        }
        // What the callback queues is drained before this task waits.
        this.link.begin_poll();
        let lane = ReplyLane::open(&this.link.outbox);
        let polled = this.callback.poll(cx);
        if let Some(reply) = lane.close() {
            this.link.take_reply(reply);
        }
        match polled {
            Poll::Ready(Ok(())) => Poll::Ready(Outcome::Done),
            Poll::Ready(Err(_panic)) => {
                tracing::warn!("a handler callback panicked; closing its connection with 1011");
                **this.poisoned = true;
                this.link.close(CloseCode::INTERNAL_ERROR, "internal error");
                Poll::Ready(Outcome::Done)
            }
            Poll::Pending => {
                this.link.poll_busy(cx);
                this.watch.register(cx);
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use bytes::BytesMut;

    use crate::outbox::tests::CountingWaker;
    use crate::runtime::BoxFuture;
    use crate::{ConnectionHandle, Endpoint, ServerBuilder};

    /// A runtime whose timers never fire and whose spawned tasks the test
    /// polls itself.
    #[derive(Clone, Default)]
    struct Manual {
        spawned: Arc<Mutex<Vec<BoxFuture<()>>>>,
    }

    impl std::fmt::Debug for Manual {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Manual")
        }
    }

    struct Never;

    impl Timer for Never {
        fn reset(self: Pin<&mut Self>, _: Instant) {}
        fn poll_fired(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    impl Runtime for Manual {
        fn spawn(&self, future: BoxFuture<()>) {
            self.spawned.lock().unwrap().push(future);
        }
        fn timer(&self, _: Instant) -> Pin<Box<dyn Timer>> {
            Box::pin(Never)
        }
    }

    /// Bytes in and out; a read with nothing to read is `Pending` (the
    /// test polls again after adding some, so no wake-up is needed).
    #[derive(Default)]
    struct Pipe {
        inbound: VecDeque<u8>,
        written: Vec<u8>,
        reads: usize,
        /// Writes fail (the peer reset the connection); reads still wait.
        broken: bool,
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Pipe>>);

    impl Transport for Shared {
        fn poll_read_buf(
            &mut self,
            _: &mut Context<'_>,
            buf: &mut BytesMut,
        ) -> Poll<io::Result<usize>> {
            let mut pipe = self.0.lock().unwrap();
            pipe.reads += 1;
            if pipe.inbound.is_empty() {
                return Poll::Pending;
            }
            let n = pipe.inbound.len().min(buf.capacity() - buf.len()).max(1);
            let bytes: Vec<u8> = pipe.inbound.drain(..n).collect();
            buf.extend_from_slice(&bytes);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            &mut self,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut pipe = self.0.lock().unwrap();
            if pipe.broken {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            let mut n = 0;
            for buf in bufs {
                pipe.written.extend_from_slice(buf);
                n += buf.len();
            }
            Poll::Ready(Ok(n))
        }
        fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A server connection over a [`Pipe`], its tasks polled by hand, and
    /// a client engine at the other end.
    struct Harness {
        runtime: Manual,
        pipe: Shared,
        tasks: Vec<BoxFuture<()>>,
        counter: Arc<CountingWaker>,
        waker: Waker,
        client: Connection,
    }

    impl Harness {
        fn open<H: Handler + Clone + Sync>(handler: H) -> Self {
            let runtime = Manual::default();
            let server = ServerBuilder::new(runtime.clone())
                .route("/", Endpoint::new(move |_| handler.clone()))
                .build();
            let pipe = Shared::default();
            pipe.0.lock().unwrap().inbound.extend(
                b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            );
            let io = pipe.clone();
            let accept = async move { server.accept(io, None).await };
            let counter = Arc::new(CountingWaker::default());
            let mut harness = Self {
                runtime,
                pipe,
                tasks: vec![Box::pin(accept)],
                waker: Waker::from(counter.clone()),
                counter,
                client: Connection::client(ws_core::Config::client(), Instant::now(), [7; 32]),
            };
            for _ in 0..4 {
                harness.poll();
            }
            let mut pipe = harness.pipe.0.lock().unwrap();
            let end = pipe.written.windows(4).position(|w| w == b"\r\n\r\n");
            assert!(pipe.written.starts_with(b"HTTP/1.1 101"), "no 101");
            pipe.written.drain(..end.unwrap() + 4);
            drop(pipe);
            harness
        }

        /// Polls every task once; none may end.
        fn poll(&mut self) {
            assert!(!self.poll_until_one_ends(), "the connection ended");
        }

        /// Polls every task once; whether one of them ended.
        fn poll_until_one_ends(&mut self) -> bool {
            self.tasks
                .extend(self.runtime.spawned.lock().unwrap().drain(..));
            let mut cx = Context::from_waker(&self.waker);
            let before = self.tasks.len();
            self.tasks
                .retain_mut(|task| task.as_mut().poll(&mut cx).is_pending());
            self.tasks.len() < before
        }

        /// Sends `message` from the client.
        fn send(&mut self, message: Message) {
            self.client.send(message).unwrap();
            let mut frame = Vec::new();
            while let Some(chunk) = self.client.poll_transmit() {
                frame.extend_from_slice(&chunk);
            }
            self.pipe.0.lock().unwrap().inbound.extend(frame);
        }

        /// What the server wrote, as the client's events.
        fn received(&mut self) -> Vec<Event> {
            let written = std::mem::take(&mut self.pipe.0.lock().unwrap().written);
            self.client.handle_read(&written, Instant::now());
            std::iter::from_fn(|| self.client.poll_event()).collect()
        }

        fn reads(&self) -> usize {
            self.pipe.0.lock().unwrap().reads
        }
    }

    /// Echoes, and keeps its connection's send queue for the test to look
    /// at.
    #[derive(Clone, Default)]
    struct Echo {
        outbox: Arc<Mutex<Option<Arc<Outbox>>>>,
        closed: Arc<Mutex<Option<Closed>>>,
    }

    impl Handler for Echo {
        async fn on_open(&mut self, ctx: &mut Ctx) {
            *self.outbox.lock().unwrap() = Some(ctx.handle().outbox().clone());
        }

        async fn on_close(&mut self, _: &mut Ctx, closed: &Closed) {
            *self.closed.lock().unwrap() = Some(closed.clone());
        }

        async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
            let _ = ctx.send(message).await;
        }
    }

    // An echo takes one poll of the connection's task per message, and the
    // handler's reply does not wake the task it runs on (it did, for every
    // message: twice the polls); after a read found nothing, the same poll
    // does not try again (two reads per message: the data, then `Pending`);
    // the reply reaches the engine through the reply lane, without the send
    // queue's lock.
    #[test]
    fn an_echo_is_one_poll_and_wakes_nothing() {
        let echo = Echo::default();
        let mut harness = Harness::open(echo.clone());
        let outbox = echo.outbox.lock().unwrap().clone().expect("opened");
        let woken_before = harness.counter.count();
        let reads_before = harness.reads();
        let locks_before = outbox.locks();
        for i in 0..100u32 {
            let text = format!("message {i}");
            harness.send(Message::text(text.clone()));
            // One poll: the message is read, handled and its echo written.
            harness.poll();
            let received = harness.received();
            assert!(
                matches!(&received[..], [Event::Message(echo)] if *echo == Message::text(text.clone())),
                "message {i}: expected its echo after one poll, got {received:?}"
            );
        }
        assert_eq!(
            harness.counter.count() - woken_before,
            0,
            "the task woke itself while echoing"
        );
        assert_eq!(
            harness.reads() - reads_before,
            200,
            "reads for 100 messages"
        );
        assert_eq!(
            outbox.locks() - locks_before,
            0,
            "send queue locks for 100 echoes"
        );
    }

    // A write that fails ends the connection at once: the handler hears
    // of the close in the same poll, with nothing else (no read, no timer,
    // no send) left to wake the task for it.
    #[test]
    fn a_failed_write_closes_the_connection_in_the_same_poll() {
        let echo = Echo::default();
        let mut harness = Harness::open(echo.clone());
        harness.pipe.0.lock().unwrap().broken = true;
        harness.send(Message::text("into a broken pipe"));
        assert!(
            harness.poll_until_one_ends(),
            "the connection is still waiting after its write failed"
        );
        let closed = echo.closed.lock().unwrap().clone();
        let closed = closed.expect("on_close ran");
        assert_eq!(closed.code, CloseCode::ABNORMAL);
    }

    /// Sends what each message asks for, through the context or a handle of
    /// its own connection: `m:TEXT` a message, `f:TEXT` a first fragment,
    /// `l:TEXT` a last one, `c` a close; several, separated by spaces.
    #[derive(Clone)]
    struct Scripted;

    impl Handler for Scripted {
        async fn on_message(&mut self, ctx: &mut Ctx, message: Message) {
            let script = message.as_text().unwrap().to_owned();
            let handle = ctx.handle();
            for (n, step) in script.split(' ').enumerate() {
                // Alternately the context and a cloned handle: both are
                // the same connection's sends, in one order.
                let via: &ConnectionHandle = if n % 2 == 0 { ctx } else { &handle };
                let result = match step.split_once(':') {
                    Some(("m", text)) => via.send(Message::text(text.to_owned())).await,
                    Some(("f", text)) => {
                        via.send_fragment(Message::text(text.to_owned()), false)
                            .await
                    }
                    Some(("l", text)) => {
                        via.send_fragment(Message::text(text.to_owned()), true)
                            .await
                    }
                    _ => via.close(CloseCode::NORMAL, "done").await,
                };
                result.unwrap();
            }
        }
    }

    fn texts(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|event| match event {
                Event::Message(message) => message.as_text().unwrap().to_owned(),
                Event::Closed(closed) => format!("closed {}", closed.code.as_u16()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    // The first send of a callback takes the reply lane, the rest the send
    // queue, from the context or from a handle: they arrive in the order
    // they were sent, and a close queued after them goes out after them.
    #[test]
    fn sends_from_a_callback_keep_their_order() {
        let mut harness = Harness::open(Scripted);
        harness.send(Message::text("m:a m:b m:c"));
        harness.poll();
        assert_eq!(texts(&harness.received()), ["a", "b", "c"]);
        harness.send(Message::text("m:d c"));
        harness.poll();
        harness.poll();
        let received = texts(&harness.received());
        assert_eq!(
            received.first().map(String::as_str),
            Some("d"),
            "{received:?}"
        );
        assert!(!harness.client.is_open(), "no close after the message");
    }

    // A whole message sent while a fragmented one is open waits for its
    // last fragment; from the reply lane, the engine refuses it, and it
    // goes back to the head of the send queue rather than being lost; a
    // reply sent while it waits there goes after it.
    #[test]
    fn a_reply_the_engine_refuses_waits_in_the_queue() {
        let mut harness = Harness::open(Scripted);
        harness.send(Message::text("f:x"));
        harness.poll();
        assert!(
            harness.received().is_empty(),
            "a first fragment is no message"
        );
        // The second send of that callback was queued behind the first;
        // the next callback's reply finds the queue holding both, and
        // queues behind them.
        for whole in ["m:whole m:after", "m:last"] {
            harness.send(Message::text(whole));
            harness.poll();
            assert!(harness.received().is_empty(), "the whole message waits");
        }
        harness.send(Message::text("l:y"));
        harness.poll();
        harness.poll();
        assert_eq!(texts(&harness.received()), ["xy", "whole", "after", "last"]);
    }

    #[test]
    fn policy_close_reasons_fit_a_close_frame_on_a_char_boundary() {
        let violation = Violation {
            policy: "custom",
            reason: "é".repeat(100),
        };
        let reason = close_reason(&violation);
        assert!(reason.len() <= MAX_CLOSE_REASON);
        assert!(reason.len() >= MAX_CLOSE_REASON - 1);
        assert!(violation.to_string().starts_with(&reason));
        let short = Violation {
            policy: "p",
            reason: "r".into(),
        };
        assert_eq!(close_reason(&short), "p: r");
    }
}
