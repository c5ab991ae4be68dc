//! The connection state machine: everything after the opening handshake.

mod outgoing;
mod receive;
mod send;

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::close::{CloseCode, CloseFrame, MAX_CLOSE_REASON, truncate_reason};
use crate::config::{BackpressurePolicy, Config, ReceiveMode, earliest};
use crate::deflate::state::DeflateState;
use crate::deflate::{DeflateConfig, DeflateParams, InflateError};
use crate::error::{Backpressure, ProtocolError, SendRefused, UsageError};
use crate::frame::{
    FrameDecoder, FrameHeader, HeaderRules, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, RSV1, Step,
};
use crate::message::{EncodedMessage, Fragment, Message, Utf8Bytes, Utf8Validator};
use crate::role::Role;
use outgoing::{OutgoingQueue, PayloadSource, ZERO_COPY_MIN};
use receive::{Ahead, Decoded, End, FrameText, Incoming};

/// Pong bytes answered at once per drain of the send buffer; see
/// [`Connection::poll_event`] and ROBUSTNESS 32: a peer that reads gets a
/// pong for every ping, one that floods pings without reading gets this
/// much plus one pong for its latest ping.
pub const PONG_BUDGET: usize = 4096;

/// How many times `read_buffer_size` [`Connection::recv_buf`] reserves
/// for the rest of a large frame in progress.
const READ_AHEAD_FACTOR: usize = 4;

/// Which end started something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// This endpoint.
    Local,
    /// The peer.
    Remote,
}

/// Which timer closed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Timeout {
    /// No frame arrived within `pong_timeout` of a keepalive ping.
    KeepAlive,
    /// No frame arrived within `idle_timeout`.
    Idle,
    /// The peer did not answer our close frame within `close_timeout`.
    CloseHandshake,
}

/// Why the connection closed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The close handshake completed; `initiated_by` sent the first close
    /// frame.
    Handshake {
        /// Who sent the first close frame.
        initiated_by: Side,
    },
    /// The peer broke the protocol or a limit; we sent a close frame with
    /// the error's code.
    ProtocolViolation(ProtocolError),
    /// A timer expired.
    Timeout(Timeout),
    /// A send overflowed the outgoing buffer under
    /// [`BackpressurePolicy::Close`].
    Backpressure,
    /// The transport ended before the close handshake completed.
    TransportClosed,
}

impl std::fmt::Display for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KeepAlive => "no answer to the keepalive ping",
            Self::Idle => "idle for too long",
            Self::CloseHandshake => "the peer did not answer the close in time",
        })
    }
}

impl std::fmt::Display for CloseCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Handshake {
                initiated_by: Side::Local,
            } => f.write_str("closed by us, the peer answered"),
            Self::Handshake {
                initiated_by: Side::Remote,
            } => f.write_str("closed by the peer"),
            Self::ProtocolViolation(error) => write!(f, "the peer broke the protocol: {error}"),
            Self::Timeout(timeout) => timeout.fmt(f),
            Self::Backpressure => f.write_str("the peer did not read what was sent"),
            Self::TransportClosed => {
                f.write_str("the connection was lost before a close handshake")
            }
        }
    }
}

/// The final event of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// After a close handshake, the code the peer sent (1005 if it sent
    /// none); after a protocol violation or backpressure, the code we sent;
    /// after a timeout or a lost transport, 1006.
    pub code: CloseCode,
    /// The reason accompanying `code`.
    pub reason: String,
    /// What closed the connection.
    pub cause: CloseCause,
}

/// Something the application should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A whole message ([`ReceiveMode::Buffered`]).
    Message(Message),
    /// One frame of a message ([`ReceiveMode::Streaming`]).
    Fragment(Fragment),
    /// The peer pinged; the pong is already queued.
    Ping(Bytes),
    /// The peer sent a pong (solicited or not).
    Pong(Bytes),
    /// The connection is closed. Always the last event. Write out what
    /// [`Connection::poll_transmit`] still returns, then close the transport.
    Closed(Closed),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We sent a close frame and wait for the peer's until `deadline`
    /// (`None`: a `close_timeout` too large to add means forever).
    CloseSent {
        deadline: Option<Instant>,
    },
    Closed,
}

/// A WebSocket connection after the opening handshake, as a state machine.
///
/// It performs no IO, reads no clock and draws no randomness of its own:
/// bytes and the current time come in as arguments, events and bytes to
/// write come out, and a client's mask keys come from a CSPRNG seeded by the
/// caller.
///
/// # Driving it
///
/// 1. Received bytes go in with [`handle_read`](Self::handle_read), or by
///    appending to [`recv_buf`](Self::recv_buf) and calling
///    [`handle_received`](Self::handle_received). If the transport reaches
///    end of stream, call [`handle_transport_closed`](Self::handle_transport_closed):
///    whatever arrived before it is still decoded and delivered, so the
///    order of end of stream and decoding does not matter.
/// 2. Call [`poll_event`](Self::poll_event) until it returns `None`. Frames
///    are decoded lazily here, so one read that carried many frames yields
///    all of them in this loop, and automatic replies (pong, close) are
///    queued as they are seen. While the application is busy with a
///    message and not ready for the next, call
///    [`poll_control_event`](Self::poll_control_event) instead: it decodes
///    ahead, answering pings and reporting pongs, and keeps the messages it
///    passes for `poll_event`.
/// 3. Send with [`send`](Self::send) and friends; they queue bytes.
/// 4. Write out everything from [`transmit_slices`](Self::transmit_slices)
///    (then [`advance_transmit`](Self::advance_transmit)) or
///    [`poll_transmit`](Self::poll_transmit). Replies to a whole batch of
///    messages leave in one vectored write.
/// 5. Arm a timer for [`poll_timeout`](Self::poll_timeout) and call
///    [`handle_timeout`](Self::handle_timeout) when it passes (early or
///    repeated calls are harmless), then go back to step 2: timeouts can
///    close the connection and queue a keepalive ping.
///
/// After [`Event::Closed`], flush the transmit side and close the
/// transport; a server closes first, a client waits briefly for the server
/// to do so (RFC 6455 §7.1.1).
#[derive(Debug)]
pub struct Connection {
    role: Role,
    config: Config,
    state: State,
    closed_event: Option<Closed>,
    now: Instant,
    /// What [`poll_control_event`](Self::poll_control_event) decoded ahead
    /// of the application. Boxed and only while it holds something: most
    /// connections never decode ahead.
    ahead: Option<Box<Ahead>>,
    /// The transport reached end of stream: what is buffered is still
    /// decoded and delivered, then the connection closes (1006).
    eof: bool,

    read_buf: BytesMut,
    /// Size of the allocation `read_buf` was last given; payloads much
    /// smaller than it are copied out so they do not pin it.
    read_alloc: usize,
    decoder: FrameDecoder,
    incoming: Option<Incoming>,
    frame_text: FrameText,
    utf8: Utf8Validator,

    out: OutgoingQueue,
    pending_pong: Option<Bytes>,
    /// Pong bytes queued since the send buffer was last empty.
    pong_bytes: usize,
    /// Kind of the message being sent in fragments (`true` for text).
    sending_text: Option<bool>,
    /// The message being sent in fragments is compressed.
    sending_compressed: bool,
    /// permessage-deflate, when negotiated. Boxed: connections without it
    /// should not carry its size.
    deflate: Option<Box<DeflateState>>,
    /// Boxed: it is a few hundred bytes that a server, which never masks,
    /// should not carry in every connection.
    mask_rng: Option<Box<ChaCha20Rng>>,

    /// When bytes last arrived: the peer is alive.
    last_input_at: Instant,
    ping_sent_at: Option<Instant>,
    keepalive_pings: u64,
    ping_window: (Instant, u32),
}

impl Connection {
    /// A server-side connection (incoming frames must be masked).
    pub fn server(config: Config, now: Instant) -> Self {
        Self::new(Role::Server, config, now, None)
    }

    /// A client-side connection. `mask_seed` seeds the ChaCha20 CSPRNG that
    /// draws a fresh mask key for every frame sent: pass 32 bytes from the
    /// operating system's random source (for example `getrandom`).
    pub fn client(config: Config, now: Instant, mask_seed: [u8; 32]) -> Self {
        Self::new(
            Role::Client,
            config,
            now,
            Some(Box::new(ChaCha20Rng::from_seed(mask_seed))),
        )
    }

    fn new(role: Role, config: Config, now: Instant, mask_rng: Option<Box<ChaCha20Rng>>) -> Self {
        let rules = HeaderRules {
            expect_masked: role == Role::Server && !config.accept_unmasked_frames,
            expect_unmasked: role == Role::Client,
            max_payload: config.max_frame_size.min(config.max_message_size),
            allowed_rsv: 0,
            reject_non_minimal: config.reject_non_minimal_lengths,
        };
        Self {
            role,
            state: State::Open,
            closed_event: None,
            now,
            ahead: None,
            eof: false,
            read_buf: BytesMut::new(),
            read_alloc: 0,
            decoder: FrameDecoder::new(rules),
            incoming: None,
            frame_text: FrameText::default(),
            utf8: Utf8Validator::new(),
            out: OutgoingQueue::default(),
            pending_pong: None,
            pong_bytes: 0,
            sending_text: None,
            sending_compressed: false,
            deflate: None,
            mask_rng,
            last_input_at: now,
            ping_sent_at: None,
            keepalive_pings: 0,
            ping_window: (now, 0),
            config,
        }
    }

    /// Turns on permessage-deflate as the handshake agreed it (`agreed`
    /// comes from [`Accepted::deflate`](crate::handshake::Accepted::deflate)
    /// or [`ServerResponse::deflate`](crate::handshake::ServerResponse::deflate));
    /// `config` supplies the threshold and level for what we send. Call
    /// before any input.
    ///
    /// Frames with RSV1 are then accepted on a message's first frame and
    /// inflated in bounded steps within `max_message_size` (1009 past it,
    /// counted over the inflated bytes of all fragments; 1007 for corrupt
    /// data). Whole messages of at least `config.threshold` bytes are sent
    /// compressed, fragmented ones always; see
    /// [`send_uncompressed`](Self::send_uncompressed) to opt out. The
    /// compressor and decompressor are allocated on first use.
    pub fn with_deflate(mut self, agreed: DeflateParams, config: &DeflateConfig) -> Self {
        self.deflate = Some(Box::new(DeflateState::new(self.role, agreed, config)));
        self.decoder.set_allowed_rsv(RSV1);
        self
    }

    /// The permessage-deflate parameters in force, if it was turned on.
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_deref().map(DeflateState::agreed)
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether messages can still be sent (no close frame sent or received).
    #[inline]
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Whether the connection has closed. [`Event::Closed`] may still be
    /// waiting in [`poll_event`](Self::poll_event).
    #[inline]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    // ---- input ---------------------------------------------------------

    /// Appends received bytes. Decoding happens in
    /// [`poll_event`](Self::poll_event). Any bytes count as a sign of life
    /// for the keepalive and idle timers, whether or not they are decoded
    /// yet. Bytes arriving after the connection closed, or after the peer's
    /// close frame, are discarded.
    pub fn handle_read(&mut self, data: &[u8], now: Instant) {
        self.advance_clock(now);
        if self.input_ended() {
            return;
        }
        if !data.is_empty() {
            self.saw_input();
        }
        self.reserve_read(data.len());
        self.decoder.append(&mut self.read_buf, data);
    }

    /// The read buffer, with at least `read_buffer_size` bytes of spare
    /// capacity (or, while a frame is in progress and the room left holds
    /// the rest of it, that room), for reading from the transport without
    /// an extra copy.
    /// Append only (for example with tokio's `read_buf`), at most the spare
    /// capacity, then call [`handle_received`](Self::handle_received).
    ///
    /// While a large frame is in progress, room for its rest (up to four
    /// times `read_buffer_size`) is reserved instead, so it arrives in a few
    /// large reads rather than many small ones with a copy at every growth
    /// of the buffer. The reservation ahead of data that has not arrived
    /// stays bounded by that multiple, whatever length the peer declares.
    pub fn recv_buf(&mut self) -> &mut BytesMut {
        let base = self.config.read_buffer_size;
        let frame_rest = self.decoder.missing(&self.read_buf);
        if frame_rest > 0 && self.read_buf.capacity() - self.read_buf.len() >= frame_rest {
            // The frame in progress fits in the room left: making more
            // could move all of it that arrived (up to a whole large
            // frame) to the front of the allocation, to read a few bytes.
            return &mut self.read_buf;
        }
        self.reserve_read(frame_rest.clamp(base, base.saturating_mul(READ_AHEAD_FACTOR)));
        &mut self.read_buf
    }

    /// Records bytes appended to [`recv_buf`](Self::recv_buf) at `now`: a
    /// sign of life, as in [`handle_read`](Self::handle_read).
    pub fn handle_received(&mut self, now: Instant) {
        self.advance_clock(now);
        if self.input_ended() {
            self.discard_input();
        } else {
            self.saw_input();
        }
    }

    /// The transport reached end of stream or failed. Input already
    /// received is still decoded and delivered by
    /// [`poll_event`](Self::poll_event), a close frame in it completing the
    /// close handshake; then the connection closes, reported as 1006 unless
    /// the close handshake completed. Timers stop: nothing more can arrive.
    pub fn handle_transport_closed(&mut self, now: Instant) {
        self.advance_clock(now);
        self.eof = true;
    }

    /// Whether input is no longer wanted: the connection closed, or the
    /// peer's close frame (or a violation) was found ahead.
    fn input_ended(&self) -> bool {
        matches!(self.state, State::Closed) || self.eof || self.ahead_end().is_some()
    }

    fn saw_input(&mut self) {
        self.last_input_at = self.now;
        // Bytes after a keepalive ping prove the peer alive as a pong
        // would: a peer busy sending a large message need not answer first.
        self.ping_sent_at = None;
    }

    fn ahead_end(&self) -> Option<&(End, Option<Instant>)> {
        self.ahead.as_ref().and_then(|ahead| ahead.end.as_ref())
    }

    /// Drops undecoded input, and the decoder's state with it.
    fn discard_input(&mut self) {
        self.read_buf.clear();
        self.decoder.reset();
    }

    fn advance_clock(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn reserve_read(&mut self, additional: usize) {
        if self.read_buf.capacity() - self.read_buf.len() >= additional
            || self.read_buf.try_reclaim(additional)
        {
            return;
        }
        // Doubling keeps the copies of a large frame's prefix amortised
        // linear; the buffer only ever grows with bytes that arrived.
        let len = self.read_buf.len();
        let capacity = (len + additional)
            .max(len.saturating_mul(2))
            .max(self.config.read_buffer_size);
        let mut fresh = BytesMut::with_capacity(capacity);
        fresh.extend_from_slice(&self.read_buf);
        self.read_buf = fresh;
        self.read_alloc = capacity;
    }

    /// Releases buffer allocations that hold no data, for example when a
    /// connection goes idle. Costs a fresh allocation on the next read or
    /// send.
    pub fn shrink_buffers(&mut self) {
        if self.read_buf.is_empty() {
            self.read_buf = BytesMut::new();
            self.read_alloc = 0;
        }
        self.out.shrink();
        if let Some(deflate) = &mut self.deflate {
            let receiving = self.incoming.as_ref().is_some_and(|i| i.compressed);
            deflate.shrink(receiving, self.sending_compressed);
        }
    }

    // ---- events --------------------------------------------------------

    /// The next event, decoding buffered input as needed. Call until `None`
    /// after every input and every timeout.
    ///
    /// Input is decoded only as far as the event returned, so an adapter
    /// that reacts to each message before asking for the next keeps its
    /// replies in order with whatever the peer sent next (including a
    /// protocol error, which closes the connection). Events decoded ahead
    /// by [`poll_control_event`](Self::poll_control_event) come first, in
    /// the order they arrived, and [`Event::Closed`] always comes last.
    #[must_use = "events carry messages and the connection's end"]
    pub fn poll_event(&mut self) -> Option<Event> {
        // The common case between messages, asked several times per
        // message by a driver: nothing buffered, nothing pending. (An empty
        // buffer holds no partial frame: the decoder leaves a frame's
        // bytes in it until the frame is taken.)
        if self.read_buf.is_empty()
            && self.ahead.is_none()
            && self.closed_event.is_none()
            && !self.eof
        {
            return None;
        }
        if let Some(ahead) = &mut self.ahead {
            if let Some(event) = ahead.events.pop_front() {
                ahead.bytes -= held_len(&event);
                return Some(event);
            }
            // Everything before the peer's close (or violation) is
            // delivered, and the application has asked for more: its
            // replies are queued, so the close can follow them.
            let end = ahead.end.take();
            self.ahead = None;
            if let Some((end, _)) = end {
                self.end(end);
            }
        }
        loop {
            if let Some(closed) = self.closed_event.take() {
                return Some(Event::Closed(closed));
            }
            if matches!(self.state, State::Closed) {
                return None;
            }
            match self.decode() {
                Some(Decoded::Event(event)) => return Some(event),
                Some(Decoded::End(end)) => self.end(end),
                None if self.eof => self.finish(
                    CloseCode::ABNORMAL,
                    String::new(),
                    CloseCause::TransportClosed,
                ),
                None => return None,
            }
        }
    }

    /// While the application is still busy with the previous message:
    /// decodes ahead, answering pings at once and returning [`Event::Ping`]
    /// and [`Event::Pong`], and keeps the messages it passes (in order) for
    /// [`poll_event`](Self::poll_event). Call until `None` after every input
    /// while the application is busy.
    ///
    /// A close frame or a protocol violation found ahead is not acted on at
    /// once, as that would send our close frame before the application's
    /// replies to the messages in front of it: it takes effect when
    /// `poll_event` reaches it, or `close_timeout` after it was found
    /// (through [`handle_timeout`](Self::handle_timeout)), whichever comes
    /// first. Nothing after it is decoded. Either way every message in
    /// front of it is delivered.
    ///
    /// Memory: the messages kept count in
    /// [`buffered_input`](Self::buffered_input); an adapter bounds them by
    /// not reading past its limit.
    #[must_use = "events carry pings and pongs"]
    pub fn poll_control_event(&mut self) -> Option<Event> {
        while !self.input_ended() {
            let end = match self.decode()? {
                Decoded::Event(event @ (Event::Ping(_) | Event::Pong(_))) => return Some(event),
                Decoded::Event(event) => {
                    let ahead = self.ahead.get_or_insert_with(Box::default);
                    ahead.bytes += held_len(&event);
                    ahead.events.push_back(event);
                    continue;
                }
                Decoded::End(end) => end,
            };
            if !matches!(self.state, State::Open) {
                // Our close frame went out already: nothing we send can be
                // overtaken, so the close takes effect now. The events in
                // front of it still come first.
                self.end(end);
                return None;
            }
            let deadline = self.now.checked_add(self.config.close_timeout);
            self.ahead.get_or_insert_with(Box::default).end = Some((end, deadline));
            // Nothing after a close frame or a violation is read.
            self.discard_input();
        }
        None
    }

    /// Bytes received and not yet delivered: undecoded input and messages
    /// decoded ahead. An adapter that pauses delivery should stop reading
    /// once this passes its bound.
    pub fn buffered_input(&self) -> usize {
        let ahead = self.ahead.as_ref().map_or(0, |ahead| ahead.bytes);
        self.decoder.undecoded(&self.read_buf) + ahead
    }

    /// Bytes waiting to be written, after encoding any pending pong.
    #[inline]
    pub fn transmit_len(&mut self) -> usize {
        // Called on every pass of a driver's loop; a pong is rare.
        if self.pending_pong.is_some() {
            self.flush_pending_pong();
        }
        self.out.len()
    }

    /// Fills `dst` with the waiting bytes, in order, for one vectored write;
    /// returns how many slices it filled. Then call
    /// [`advance_transmit`](Self::advance_transmit) with the bytes written.
    pub fn transmit_slices<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        if self.pending_pong.is_some() {
            self.flush_pending_pong();
        }
        self.out.slices(dst)
    }

    /// Marks `written` bytes from [`transmit_slices`](Self::transmit_slices)
    /// as sent.
    ///
    /// # Panics
    ///
    /// If `written` exceeds the bytes waiting.
    pub fn advance_transmit(&mut self, written: usize) {
        self.out.advance(written);
        if self.out.len() == 0 {
            self.pong_bytes = 0;
        }
    }

    /// Takes the next chunk of bytes to write, or `None` when nothing waits.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.flush_pending_pong();
        let chunk = self.out.pop();
        if self.out.len() == 0 {
            self.pong_bytes = 0;
        }
        chunk
    }

    // ---- timers --------------------------------------------------------

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// has work to do, or `None` when no timer is armed. A duration too
    /// large to add to an `Instant` (such as `Duration::MAX`) means never.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some((_, deadline)) = self.ahead_end() {
            // The peer is closing (or broke the protocol): the only timer
            // left is the one that acts on it.
            return *deadline;
        }
        if self.eof {
            // Nothing more can arrive, so no timer has anything to wait for.
            return None;
        }
        match self.state {
            State::Closed => None,
            State::CloseSent { deadline } => deadline,
            State::Open => {
                let keepalive =
                    self.config
                        .ping_interval
                        .and_then(|interval| match self.ping_sent_at {
                            Some(sent) => sent.checked_add(self.config.pong_timeout),
                            None => self.last_input_at.checked_add(interval),
                        });
                let idle = self
                    .config
                    .idle_timeout
                    .and_then(|t| self.last_input_at.checked_add(t));
                let fragment = self
                    .incoming
                    .as_ref()
                    .zip(self.config.fragment_timeout)
                    .and_then(|(incoming, t)| incoming.started.checked_add(t));
                earliest(earliest(keepalive, idle), fragment)
            }
        }
    }

    /// Runs the timers that are due at `now`: a close or violation found
    /// ahead whose time is up, close deadline, fragment deadline, pong
    /// deadline, idle timeout, keepalive ping. Then call
    /// [`poll_event`](Self::poll_event) and transmit.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_clock(now);
        let now = self.now;
        if let Some((_, deadline)) = self.ahead_end() {
            if deadline.is_some_and(|deadline| now >= deadline) {
                let end = self.ahead.as_mut().and_then(|ahead| ahead.end.take());
                if let Some((end, _)) = end {
                    self.end(end);
                }
            }
            return;
        }
        if self.eof {
            return;
        }
        let due =
            |since: Instant, after: Duration| since.checked_add(after).is_some_and(|at| now >= at);
        match self.state {
            State::Closed => {}
            State::CloseSent { deadline } => {
                if deadline.is_some_and(|deadline| now >= deadline) {
                    self.finish(
                        CloseCode::ABNORMAL,
                        String::new(),
                        CloseCause::Timeout(Timeout::CloseHandshake),
                    );
                }
            }
            State::Open => {
                let fragment_expired = self
                    .incoming
                    .as_ref()
                    .zip(self.config.fragment_timeout)
                    .is_some_and(|(incoming, t)| due(incoming.started, t));
                if fragment_expired {
                    self.fail(ProtocolError::FragmentTimeout);
                    return;
                }
                if let Some(sent) = self.ping_sent_at
                    && due(sent, self.config.pong_timeout)
                {
                    self.abort(
                        Timeout::KeepAlive,
                        CloseCode::INTERNAL_ERROR,
                        "keepalive timeout",
                    );
                    return;
                }
                if let Some(idle) = self.config.idle_timeout
                    && due(self.last_input_at, idle)
                {
                    self.abort(Timeout::Idle, CloseCode::GOING_AWAY, "idle timeout");
                    return;
                }
                if let Some(interval) = self.config.ping_interval
                    && self.ping_sent_at.is_none()
                    && due(self.last_input_at, interval)
                {
                    self.keepalive_pings += 1;
                    let payload = self.keepalive_pings.to_be_bytes();
                    self.flush_pending_pong();
                    let mask = self.next_mask();
                    self.out.push_frame(
                        OpCode::Ping,
                        true,
                        PayloadSource::Borrowed(&payload),
                        mask,
                    );
                    self.ping_sent_at = Some(now);
                }
            }
        }
    }

    /// Closes without a handshake: the peer is presumed gone. A close frame
    /// is queued in case it is not.
    fn abort(&mut self, timeout: Timeout, code: CloseCode, reason: &str) {
        self.push_close(Some(code), reason);
        self.finish(
            CloseCode::ABNORMAL,
            reason.to_owned(),
            CloseCause::Timeout(timeout),
        );
    }
}

/// The payload size of an event held for later delivery.
fn held_len(event: &Event) -> usize {
    match event {
        Event::Message(message) => message.len(),
        Event::Fragment(fragment) => fragment.data.len(),
        Event::Ping(payload) | Event::Pong(payload) => payload.len(),
        Event::Closed(_) => 0,
    }
}

/// A message from its validated payload.
fn whole_message(text: bool, data: Bytes) -> Message {
    if text {
        Message::Text(Utf8Bytes::from_validated(data))
    } else {
        Message::Binary(data)
    }
}

#[cfg(test)]
mod tests;
