//! Messages waiting for a connection's driver, from any task.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use event_listener::{Event, EventListener};
use ws_core::close::CloseFrame;
use ws_core::{EncodedMessage, Message, Role, UsageError};

use crate::error::SendError;

/// Something to send on a connection.
#[derive(Debug, Clone)]
pub(crate) enum Outgoing {
    Message(Message),
    /// A whole message never to be compressed.
    Uncompressed(Message),
    /// One piece of a message sent in pieces; `true` for the last.
    Fragment(Message, bool),
    Ping(Bytes),
    /// A whole message encoded once for many connections (server only).
    Encoded(EncodedMessage),
    /// Always the last item: nothing is accepted after it.
    Close(CloseFrame),
}

impl Outgoing {
    fn weight(&self) -> usize {
        match self {
            Self::Message(m) | Self::Uncompressed(m) | Self::Fragment(m, _) => m.len(),
            Self::Ping(p) => p.len(),
            Self::Encoded(encoded) => encoded.payload_len(),
            Self::Close(frame) => frame.reason.len(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    /// A close was queued: nothing more is accepted.
    closing: bool,
    /// The connection is closed: nothing is queued or accepted.
    closed: bool,
    /// The kind (`true` for text) of the message being sent in fragments,
    /// as queued.
    fragments: Option<bool>,
}

impl State {
    /// Refuses items once closing, fragments that change a message's kind
    /// midway, and pre-encoded messages on a client (the engine would
    /// refuse them later, with nobody left to tell).
    fn check(&self, item: &Outgoing, role: Role) -> Result<(), SendError> {
        if self.closed || self.closing {
            return Err(SendError::Closed);
        }
        if matches!(item, Outgoing::Encoded(_)) && role == Role::Client {
            return Err(SendError::Invalid(UsageError::EncodedFromClient));
        }
        if let (Outgoing::Fragment(data, _), Some(text)) = (item, self.fragments)
            && data.is_text() != text
        {
            return Err(SendError::Invalid(UsageError::FragmentKindMismatch));
        }
        Ok(())
    }

    fn push(&mut self, item: Outgoing) {
        match &item {
            Outgoing::Fragment(data, last) => self.fragments = (!last).then(|| data.is_text()),
            Outgoing::Close(_) => self.closing = true,
            _ => {}
        }
        self.bytes += item.weight();
        self.queue.push_back(item);
    }
}

/// What [`Outbox::drain`] does with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drain {
    Take,
    Skip,
    Stop,
}

/// A byte-bounded queue into one connection.
///
/// Senders (the handler's context, cloned handles, the server registry)
/// push from any task; the connection's driver drains it into the protocol
/// state machine as that accepts more. A push that would go past `limit`
/// bytes is refused (or waited on, for async senders), except into an empty
/// queue, so a single message larger than the limit still goes through.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    driver: AtomicWaker,
    room: Event,
    /// Someone has waited on `room`. Until then the driver does not
    /// notify it: a notification takes the event's lock even with no one
    /// listening, which a fan-out to thousands of connections would pay
    /// on every write. Set before listening and read after the state's
    /// lock is let go, so a waiter that looked at the state before a
    /// drain is always notified (see [`Outbox::listen`]).
    waited: AtomicBool,
    /// The queue holds items. Written under the state's lock, read
    /// without it, so a driver with nothing to send takes no lock: a
    /// push sets it before waking the driver, and the driver looks again
    /// after registering for that wake.
    pending: AtomicBool,
    /// The driver is running and will drain before it waits again, so a
    /// push need not wake it: a handler's reply would otherwise schedule
    /// its own connection's task a second time for every message. Cleared
    /// (after registering its waker) before the driver's last look at
    /// `pending`, set when it starts a pass; both `SeqCst`, as are the
    /// push's store to `pending` and load of this flag, so either the push
    /// sees the driver asleep and wakes it or the driver sees the push.
    driver_awake: AtomicBool,
    /// The connection's timer fired: the outbox is also the waker the
    /// driver polls its timer with (see [`Wake for Outbox`](#impl-Wake-for-Outbox)),
    /// so waiting needs one registration (the driver's, above) rather than
    /// the timer's too, and the timer is polled only when this says it
    /// fired.
    timer_fired: AtomicBool,
    /// A close was queued or the connection closed (the state's `closing`
    /// or `closed`), readable without the lock for the [reply lane](ReplyLane).
    refusing: AtomicBool,
    limit: usize,
    role: Role,
    /// Times the state's lock was taken, for tests of the paths that
    /// should not take it.
    #[cfg(test)]
    locks: std::sync::atomic::AtomicUsize,
}

/// The waker the driver polls its timer with: records that the timer
/// fired and wakes the driver as a push would.
impl Wake for Outbox {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.timer_fired.store(true, Ordering::SeqCst);
        self.driver.wake();
    }
}

impl Outbox {
    pub(crate) fn new(limit: usize, role: Role) -> Self {
        Self {
            state: Mutex::new(State::default()),
            driver: AtomicWaker::new(),
            room: Event::new(),
            waited: AtomicBool::new(false),
            pending: AtomicBool::new(false),
            driver_awake: AtomicBool::new(false),
            timer_fired: AtomicBool::new(false),
            refusing: AtomicBool::new(false),
            limit,
            role,
            #[cfg(test)]
            locks: Default::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        #[cfg(test)]
        self.locks.fetch_add(1, Ordering::Relaxed);
        // A panic while holding this lock cannot leave the queue half
        // updated (every critical section is a few field writes), so a
        // poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` if there is room.
    pub(crate) fn try_push(&self, item: Outgoing) -> Result<(), (SendError, Outgoing)> {
        let item = match self.try_reply_lane(item) {
            Ok(()) => return Ok(()),
            Err(item) => item,
        };
        {
            let mut state = self.lock();
            if let Err(error) = state.check(&item, self.role) {
                return Err((error, item));
            }
            if !self.fits(&state, item.weight()) {
                let error = SendError::Full {
                    queued: state.bytes,
                    limit: self.limit,
                };
                return Err((error, item));
            }
            self.queue(&mut state, item);
        }
        self.wake_driver();
        Ok(())
    }

    /// Adds `item` to the queue (checked already).
    fn queue(&self, state: &mut State, item: Outgoing) {
        if matches!(item, Outgoing::Close(_)) {
            self.refusing.store(true, Ordering::SeqCst);
        }
        state.push(item);
        self.pending.store(true, Ordering::SeqCst);
    }

    /// Queues `item` regardless of the limit: for a sink whose
    /// `poll_ready` saw room, and for close frames, which are small and
    /// come once.
    pub(crate) fn force_push(&self, item: Outgoing) -> Result<(), SendError> {
        {
            let mut state = self.lock();
            state.check(&item, self.role)?;
            self.queue(&mut state, item);
        }
        self.wake_driver();
        Ok(())
    }

    /// Queues the close frame after everything queued before it; nothing
    /// is accepted after it.
    pub(crate) fn close_with(&self, frame: CloseFrame) -> Result<(), SendError> {
        self.force_push(Outgoing::Close(frame))
    }

    /// Whether a close is queued and not yet taken by the driver.
    pub(crate) fn close_waiting(&self) -> bool {
        matches!(self.lock().queue.back(), Some(Outgoing::Close(_)))
    }

    /// Takes the queued close frame out of turn, dropping what waits in
    /// front of it, and closes the outbox: for a peer that reads nothing,
    /// past the close deadline.
    pub(crate) fn take_close(&self) -> Option<CloseFrame> {
        let close = {
            let mut state = self.lock();
            match state.queue.pop_back() {
                Some(Outgoing::Close(frame)) => {
                    if state.queue.is_empty() {
                        self.pending.store(false, Ordering::SeqCst);
                    }
                    Some(frame)
                }
                Some(other) => {
                    state.queue.push_back(other);
                    None
                }
                None => None,
            }
        };
        if close.is_some() {
            self.close();
        }
        close
    }

    /// Whether a push of `weight` bytes is accepted now: into an empty
    /// queue always, otherwise within the limit.
    fn fits(&self, state: &State, weight: usize) -> bool {
        state.bytes == 0 || state.bytes.saturating_add(weight) <= self.limit
    }

    /// Queues `item`, waiting until it fits.
    pub(crate) async fn push(&self, mut item: Outgoing) -> Result<(), SendError> {
        let weight = item.weight();
        loop {
            let listener = match self.try_push(item) {
                Ok(()) => return Ok(()),
                Err((SendError::Full { .. }, back)) => {
                    item = back;
                    self.listen()
                }
                Err((error, _)) => return Err(error),
            };
            // Re-check after listening, with the same rule as `try_push`, so
            // a drain between the refusal and `listen` is not missed and a
            // refusal is never retried without waiting.
            {
                let state = self.lock();
                if state.closed || self.fits(&state, weight) {
                    continue;
                }
            }
            listener.await;
        }
    }

    /// Ready when a push of any size would be accepted (the queue is below
    /// its limit) or the outbox is closed. `listener` holds the
    /// registration between polls.
    pub(crate) fn poll_room(
        &self,
        cx: &mut Context<'_>,
        listener: &mut Option<EventListener>,
    ) -> Poll<Result<(), SendError>> {
        loop {
            {
                let state = self.lock();
                if state.closed {
                    return Poll::Ready(Err(SendError::Closed));
                }
                if state.bytes < self.limit {
                    *listener = None;
                    return Poll::Ready(Ok(()));
                }
            }
            match listener {
                Some(l) => {
                    std::task::ready!(std::pin::Pin::new(l).poll(cx));
                    *listener = None;
                }
                None => *listener = Some(self.listen()),
            }
        }
    }

    /// Registers the driver to be woken by the next push. The driver
    /// drains once more after this (see `driver_awake`).
    pub(crate) fn register_driver(&self, cx: &mut Context<'_>) {
        self.driver.register(cx.waker());
        self.driver_awake.store(false, Ordering::SeqCst);
    }

    /// The driver is running: pushes until its next
    /// [`register_driver`](Self::register_driver) need not wake it.
    pub(crate) fn driver_running(&self) {
        self.driver_awake.store(true, Ordering::SeqCst);
    }

    fn wake_driver(&self) {
        if !self.driver_awake.load(Ordering::SeqCst) {
            self.driver.wake();
        }
    }

    /// Whether the timer woke us since [`clear_timer_fired`](Self::clear_timer_fired).
    #[inline]
    pub(crate) fn timer_fired(&self) -> bool {
        self.timer_fired.load(Ordering::SeqCst)
    }

    /// Before polling the timer: a wake after this is a new one.
    pub(crate) fn clear_timer_fired(&self) {
        self.timer_fired.store(false, Ordering::SeqCst);
    }

    /// Whether anything is queued (without taking the lock).
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Hands queued items to `take` in order. `Take` removes the item,
    /// `Stop` ends the drain with it first in line, `Skip` leaves it in
    /// place and looks further (a whole message waiting for a fragmented
    /// one to end must not block that message's remaining fragments).
    pub(crate) fn drain(&self, mut take: impl FnMut(&Outgoing) -> Drain) {
        if !self.pending.load(Ordering::SeqCst) {
            return;
        }
        let mut freed = 0;
        let mut taken = false;
        {
            let mut state = self.lock();
            let mut at = 0;
            while let Some(item) = state.queue.get(at) {
                match take(item) {
                    Drain::Take => {
                        freed += item.weight();
                        taken = true;
                        state.queue.remove(at);
                    }
                    Drain::Skip => at += 1,
                    Drain::Stop => break,
                }
            }
            state.bytes -= freed;
            if state.queue.is_empty() {
                self.pending.store(false, Ordering::SeqCst);
            }
        }
        // Waiters for room, for a flush and for a close to be taken.
        if taken && self.waited.load(Ordering::SeqCst) {
            self.room.notify(usize::MAX);
        }
    }

    /// Whether a close was queued or the connection closed: nothing more
    /// is accepted.
    pub(crate) fn is_closing(&self) -> bool {
        let state = self.lock();
        state.closing || state.closed
    }

    /// Resolves once the queued close has been taken by the driver (or the
    /// outbox closed).
    pub(crate) async fn close_taken(&self) {
        loop {
            let listener = self.listen();
            if !self.close_waiting() {
                return;
            }
            listener.await;
        }
    }

    /// Refuses further pushes, drops what is queued and wakes every waiter.
    pub(crate) fn close(&self) {
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            if !state.queue.is_empty() {
                tracing::debug!(
                    items = state.queue.len(),
                    "the connection closed before these could be sent"
                );
            }
            state.closed = true;
            self.refusing.store(true, Ordering::SeqCst);
            state.queue = VecDeque::new();
            state.bytes = 0;
            self.pending.store(false, Ordering::SeqCst);
        }
        self.room.notify(usize::MAX);
        self.driver.wake();
    }

    /// A listener woken when the driver takes items (or the outbox closes).
    pub(crate) fn listen_drained(&self) -> EventListener {
        self.listen()
    }

    /// Listens on `room`. Every waiter listens first and then looks at the
    /// state under its lock: either it sees a drain that happened before,
    /// or that drain's unlock came after this look and so after `waited`
    /// was set, and the drain notifies.
    fn listen(&self) -> EventListener {
        self.waited.store(true, Ordering::SeqCst);
        self.room.listen()
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().queue.is_empty()
    }

    /// Hands a whole message to this thread's [`ReplyLane`] if it is open
    /// for this outbox, empty, and nothing is queued (so nothing queued
    /// can be meant to go out before it); gives it back otherwise.
    #[inline]
    fn try_reply_lane(&self, item: Outgoing) -> Result<(), Outgoing> {
        if !matches!(item, Outgoing::Message(_) | Outgoing::Uncompressed(_)) {
            return Err(item);
        }
        let owner = self as *const Self as usize;
        let mut item = Some(item);
        let _ = REPLY_LANE.try_with(|lane| {
            if lane.owner.get() != owner
                || self.pending.load(Ordering::SeqCst)
                || self.refusing.load(Ordering::SeqCst)
            {
                return;
            }
            if let Ok(mut slot) = lane.item.try_borrow_mut()
                && slot.is_none()
            {
                *slot = item.take();
            }
        });
        match item {
            None => Ok(()),
            Some(item) => Err(item),
        }
    }

    /// Puts back at the head of the queue a reply the engine could not
    /// take from the [`ReplyLane`] (its buffer is full, a fragmented
    /// message is open, it closed): it was accepted before anything now
    /// queued, and goes out first. Dropped if the outbox is closed, as
    /// what was queued was.
    pub(crate) fn requeue_reply(&self, item: Outgoing) {
        let mut state = self.lock();
        if state.closed {
            tracing::debug!("the connection closed before a reply could be sent");
            return;
        }
        state.bytes += item.weight();
        state.queue.push_front(item);
        self.pending.store(true, Ordering::SeqCst);
    }
}

/// A handler's reply to its own connection, on the way from the callback
/// to the engine without the send queue.
///
/// While a connection's driver polls one of its handler's callbacks it
/// opens this thread's lane for the connection's outbox
/// ([`ReplyLane::open`]); a whole message sent to that outbox while the
/// lane is empty and nothing is queued waits here instead of taking the
/// queue's lock and being drained again under it, and the driver feeds
/// it to the engine as soon as the poll returns. Nothing queued can be
/// meant to go before it (the queue was empty, and only this driver,
/// busy polling, drains it); whatever is queued after it goes after it
/// (the driver feeds the lane first, or puts the reply back at the head
/// of the queue). One message at most: a second send in the same poll
/// is queued as before, so the queue's limit still bounds what a
/// callback can send without waiting.
pub(crate) struct ReplyLane {
    /// The address of the outbox whose driver is polling on this thread
    /// (0 for none); it cannot be freed meanwhile, as the driver holds it.
    owner: Cell<usize>,
    item: RefCell<Option<Outgoing>>,
}

thread_local! {
    static REPLY_LANE: ReplyLane = const {
        ReplyLane {
            owner: Cell::new(0),
            item: RefCell::new(None),
        }
    };
}

/// This thread's lane open for one outbox until [`close`](Self::close)
/// (or drop, which discards the reply: the poll unwound).
pub(crate) struct OpenLane {
    /// The outbox the lane was open for before (a callback polling another
    /// connection's driver on this thread, of all things, gets its lane
    /// back); `None` when this one did not open it.
    outer: Option<usize>,
}

impl ReplyLane {
    /// Opens this thread's lane for `outbox`. Left as it is, so sends
    /// take the queue, if the lane holds a reply already (opened by a
    /// driver further up this thread's stack).
    #[inline]
    pub(crate) fn open(outbox: &Arc<Outbox>) -> OpenLane {
        let owner = Arc::as_ptr(outbox) as usize;
        let outer = REPLY_LANE
            .try_with(|lane| match lane.item.try_borrow() {
                Ok(item) if item.is_none() => Some(lane.owner.replace(owner)),
                _ => None,
            })
            .ok()
            .flatten();
        OpenLane { outer }
    }
}

impl OpenLane {
    /// Closes the lane and returns the reply it holds.
    #[inline]
    pub(crate) fn close(mut self) -> Option<Outgoing> {
        let outer = self.outer.take()?;
        REPLY_LANE
            .try_with(|lane| {
                lane.owner.set(outer);
                lane.item.try_borrow_mut().ok()?.take()
            })
            .ok()
            .flatten()
    }
}

impl Drop for OpenLane {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            let _ = REPLY_LANE.try_with(|lane| {
                lane.owner.set(outer);
                if let Ok(mut item) = lane.item.try_borrow_mut() {
                    item.take();
                }
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::Future;
    use ws_core::CloseCode;

    fn msg(n: usize) -> Outgoing {
        Outgoing::Message(Message::binary(vec![0; n]))
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    pub(crate) struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Outbox {
        /// Times the state's lock was taken.
        pub(crate) fn locks(&self) -> usize {
            self.locks.load(Ordering::Relaxed)
        }
    }

    impl CountingWaker {
        pub(crate) fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn pushes_wake_a_waiting_driver_but_not_a_running_one() {
        let outbox = Outbox::new(1 << 20, Role::Server);
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);

        outbox.register_driver(&mut cx);
        outbox.try_push(msg(1)).unwrap();
        assert_eq!(counter.count(), 1, "a waiting driver is woken");

        // Running (a handler's callback replying): it drains before it
        // waits again, so waking it would only poll its task once more.
        outbox.register_driver(&mut cx);
        outbox.driver_running();
        outbox.try_push(msg(1)).unwrap();
        outbox.force_push(msg(1)).unwrap();
        assert_eq!(counter.count(), 1, "a running driver is not woken");
        assert!(
            outbox.has_pending(),
            "and it sees the pushes when it drains"
        );

        // About to wait again: pushes wake it.
        outbox.register_driver(&mut cx);
        outbox.try_push(msg(1)).unwrap();
        assert_eq!(counter.count(), 2);
        // Closing always wakes it.
        outbox.register_driver(&mut cx);
        outbox.driver_running();
        outbox.close();
        assert_eq!(counter.count(), 3);
    }

    #[test]
    fn the_timer_waker_marks_the_timer_fired_and_wakes_the_driver() {
        let outbox = Arc::new(Outbox::new(1 << 20, Role::Server));
        let counter = Arc::new(CountingWaker::default());
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let timer_waker = std::task::Waker::from(outbox.clone());

        outbox.register_driver(&mut cx);
        assert!(!outbox.timer_fired());
        timer_waker.wake_by_ref();
        assert!(outbox.timer_fired());
        assert_eq!(counter.count(), 1);
        outbox.clear_timer_fired();
        assert!(!outbox.timer_fired());
        // Woken while nothing is registered (the driver is between its
        // last look and registering): the flag stays for that look.
        timer_waker.wake();
        assert!(outbox.timer_fired());
        assert_eq!(counter.count(), 1);
    }

    #[test]
    fn encoded_messages_are_for_servers_and_weigh_their_payload() {
        let encoded = EncodedMessage::new(&Message::text("x".repeat(60)));
        let client = Outbox::new(100, Role::Client);
        let refused = client
            .try_push(Outgoing::Encoded(encoded.clone()))
            .unwrap_err();
        assert!(matches!(
            refused.0,
            SendError::Invalid(UsageError::EncodedFromClient)
        ));
        let server = Outbox::new(100, Role::Server);
        server.try_push(Outgoing::Encoded(encoded.clone())).unwrap();
        let full = server.try_push(Outgoing::Encoded(encoded)).unwrap_err();
        assert!(
            matches!(full.0, SendError::Full { queued: 60, .. }),
            "{full:?}"
        );
    }

    #[test]
    fn limit_refuses_but_empty_queue_takes_anything() {
        let outbox = Outbox::new(100, Role::Server);
        outbox.try_push(msg(1000)).unwrap();
        assert!(matches!(
            outbox.try_push(msg(1)),
            Err((
                SendError::Full {
                    queued: 1000,
                    limit: 100
                },
                _
            ))
        ));
        outbox.drain(|_| Drain::Take);
        outbox.try_push(msg(60)).unwrap();
        outbox.try_push(msg(40)).unwrap();
        assert!(outbox.try_push(msg(1)).is_err());
        outbox
            .close_with(CloseFrame::new(CloseCode::NORMAL, "").unwrap())
            .unwrap();
        assert!(matches!(outbox.force_push(msg(1)), Err(SendError::Closed)));
        assert!(outbox.close_waiting());
        assert!(
            outbox
                .close_with(CloseFrame::new(CloseCode::NORMAL, "").unwrap())
                .is_err(),
            "one close only"
        );
        assert_eq!(outbox.take_close().map(|f| f.code), Some(CloseCode::NORMAL));
        assert!(outbox.is_empty());
    }

    #[test]
    fn fragments_keep_their_message_kind() {
        let outbox = Outbox::new(1000, Role::Server);
        outbox
            .try_push(Outgoing::Fragment(Message::text("a"), false))
            .unwrap();
        assert!(matches!(
            outbox.try_push(Outgoing::Fragment(Message::binary(vec![1]), false)),
            Err((SendError::Invalid(UsageError::FragmentKindMismatch), _))
        ));
        outbox
            .try_push(Outgoing::Fragment(Message::text("b"), true))
            .unwrap();
        outbox
            .try_push(Outgoing::Fragment(Message::binary(vec![1]), true))
            .unwrap();
    }

    fn len(item: Option<Outgoing>) -> Option<usize> {
        item.map(|item| item.weight())
    }

    #[test]
    fn the_reply_lane_takes_one_message_for_its_own_outbox() {
        let own = Arc::new(Outbox::new(1 << 20, Role::Server));
        let other = Arc::new(Outbox::new(1 << 20, Role::Server));
        let lane = ReplyLane::open(&own);
        other.try_push(msg(1)).unwrap();
        assert!(!other.is_empty(), "another connection's send is queued");
        let locks = own.locks();
        own.try_push(msg(2)).unwrap();
        assert_eq!(own.locks(), locks, "the lane takes no lock");
        own.try_push(msg(3)).unwrap();
        own.try_push(Outgoing::Ping(Bytes::new())).unwrap();
        assert_eq!(len(lane.close()), Some(2));
        let mut queued = Vec::new();
        own.drain(|item| {
            queued.push(item.weight());
            Drain::Take
        });
        assert_eq!(queued, [3, 0], "the second send and the ping are queued");
        // Closed: sends are queued again.
        own.try_push(msg(4)).unwrap();
        assert!(!own.is_empty());
    }

    #[test]
    fn the_reply_lane_waits_behind_the_queue_and_refuses_after_a_close() {
        let outbox = Arc::new(Outbox::new(1 << 20, Role::Server));
        outbox.try_push(msg(1)).unwrap();
        let lane = ReplyLane::open(&outbox);
        outbox.try_push(msg(2)).unwrap();
        assert_eq!(len(lane.close()), None, "something was queued before it");
        outbox.drain(|_| Drain::Take);

        outbox
            .close_with(CloseFrame::new(CloseCode::NORMAL, "").unwrap())
            .unwrap();
        outbox.drain(|_| Drain::Take);
        let lane = ReplyLane::open(&outbox);
        assert!(matches!(
            outbox.try_push(msg(3)),
            Err((SendError::Closed, _))
        ));
        assert_eq!(len(lane.close()), None);
    }

    #[test]
    fn a_requeued_reply_goes_first_unless_the_outbox_closed() {
        let outbox = Arc::new(Outbox::new(1 << 20, Role::Server));
        outbox.try_push(msg(2)).unwrap();
        outbox.requeue_reply(msg(1));
        let mut order = Vec::new();
        outbox.drain(|item| {
            order.push(item.weight());
            Drain::Take
        });
        assert_eq!(order, [1, 2]);
        outbox.close();
        outbox.requeue_reply(msg(1));
        assert!(outbox.is_empty());
        assert!(!outbox.has_pending());
    }

    #[test]
    fn a_nested_lane_gives_the_outer_one_back_and_a_dropped_one_closes() {
        let outer = Arc::new(Outbox::new(1 << 20, Role::Server));
        let inner = Arc::new(Outbox::new(1 << 20, Role::Server));
        let outer_lane = ReplyLane::open(&outer);
        let inner_lane = ReplyLane::open(&inner);
        inner.try_push(msg(1)).unwrap();
        outer.try_push(msg(2)).unwrap();
        assert!(!outer.is_empty(), "the outer lane is not open meanwhile");
        assert_eq!(len(inner_lane.close()), Some(1));
        outer.drain(|_| Drain::Take);
        outer.try_push(msg(3)).unwrap();
        // Holding a reply, the lane is not opened for another outbox.
        let inner_lane = ReplyLane::open(&inner);
        inner.try_push(msg(4)).unwrap();
        assert!(!inner.is_empty(), "queued");
        assert_eq!(len(inner_lane.close()), None);
        assert_eq!(len(outer_lane.close()), Some(3));

        // A poll that unwound: the lane closes all the same.
        inner.drain(|_| Drain::Take);
        drop(ReplyLane::open(&inner));
        inner.try_push(msg(5)).unwrap();
        assert!(!inner.is_empty());
    }

    #[test]
    fn drain_stops_at_the_first_refusal_and_keeps_order() {
        let outbox = Outbox::new(1000, Role::Server);
        for n in [1, 2, 3] {
            outbox.try_push(msg(n)).unwrap();
        }
        let mut seen = Vec::new();
        outbox.drain(|item| {
            let Outgoing::Message(m) = item else { panic!() };
            if m.len() == 3 {
                return Drain::Stop;
            }
            seen.push(m.len());
            Drain::Take
        });
        assert_eq!(seen, [1, 2]);
        assert!(!outbox.is_empty());
        outbox.close();
        assert!(matches!(
            outbox.try_push(msg(1)),
            Err((SendError::Closed, _))
        ));
        assert!(outbox.is_empty());
    }

    #[test]
    fn skipped_items_keep_their_place() {
        let outbox = Outbox::new(1000, Role::Server);
        for n in [1, 2, 3, 4] {
            outbox.try_push(msg(n)).unwrap();
        }
        let mut taken = Vec::new();
        outbox.drain(|item| {
            let Outgoing::Message(m) = item else { panic!() };
            if m.len() % 2 == 1 {
                return Drain::Skip;
            }
            taken.push(m.len());
            Drain::Take
        });
        assert_eq!(taken, [2, 4]);
        let mut rest = Vec::new();
        outbox.drain(|item| {
            let Outgoing::Message(m) = item else { panic!() };
            rest.push(m.len());
            Drain::Take
        });
        assert_eq!(rest, [1, 3]);
    }

    #[test]
    fn async_push_waits_for_room() {
        let outbox = Arc::new(Outbox::new(10, Role::Server));
        outbox.try_push(msg(10)).unwrap();
        let waiter = {
            let outbox = outbox.clone();
            std::thread::spawn(move || {
                futures_util::FutureExt::now_or_never(outbox.push(msg(5))).is_some()
            })
        };
        assert!(!waiter.join().unwrap(), "push must wait while full");
        let outbox2 = outbox.clone();
        let pusher = std::thread::spawn(move || futures_executor_block_on(outbox2.push(msg(5))));
        std::thread::sleep(std::time::Duration::from_millis(50));
        outbox.drain(|_| Drain::Take);
        assert!(pusher.join().unwrap().is_ok());
    }

    // A push that does not fit waits (yields) instead of retrying in a
    // loop: with the queue non-empty but under its limit, a message that
    // would overflow it must not spin.
    #[test]
    fn push_that_does_not_fit_waits_instead_of_spinning() {
        let outbox = Arc::new(Outbox::new(100, Role::Server));
        outbox.try_push(msg(10)).unwrap();
        // Poll on another thread: a spinning push never returns from poll.
        let (done, polled) = std::sync::mpsc::channel();
        let poller = outbox.clone();
        std::thread::spawn(move || {
            let mut push = std::pin::pin!(poller.push(msg(95)));
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let first = push.as_mut().poll(&mut cx).is_pending();
            poller.drain(|_| Drain::Take);
            let second = push.as_mut().poll(&mut cx).is_ready();
            let _ = done.send((first, second));
        });
        let (first, second) = polled
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("push spun instead of waiting");
        assert!(first, "must wait while 10 + 95 > 100");
        assert!(second, "fits once drained");
    }

    /// A minimal executor for the test above.
    fn futures_executor_block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let thread = std::thread::current();
        let waker = std::task::Waker::from(Arc::new(ThreadWaker(thread)));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }

    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
}
