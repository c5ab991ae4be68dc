//! A connection as the rest of the program sees it: its identifier, what is
//! known about it, and the handle that sends to it from anywhere.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use ws_core::close::CloseFrame;
use ws_core::deflate::DeflateParams;
use ws_core::{CloseCode, EncodedMessage, Message, Role, UsageError};

use crate::error::SendError;
use crate::outbox::{Outbox, Outgoing};

/// A connection's identifier, unique within a process and drawn at random
/// so it reveals nothing about other connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

impl ConnectionId {
    pub(crate) fn random() -> Self {
        use rand_core::{Rng, SeedableRng};
        use std::sync::{Mutex, OnceLock};
        static RNG: OnceLock<Mutex<rand_chacha::ChaCha20Rng>> = OnceLock::new();
        let rng =
            RNG.get_or_init(|| Mutex::new(rand_chacha::ChaCha20Rng::from_seed(random_seed())));
        let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
        Self(rng.next_u64())
    }

    /// The raw value.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Parses what [`Display`](fmt::Display) writes: 16 hexadecimal digits.
impl std::str::FromStr for ConnectionId {
    type Err = InvalidConnectionId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidConnectionId);
        }
        u64::from_str_radix(text, 16)
            .map(Self)
            .map_err(|_| InvalidConnectionId)
    }
}

/// A connection id that is not 16 hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a connection id is 16 hexadecimal digits")]
pub struct InvalidConnectionId;

/// 32 bytes from the operating system's random source.
pub(crate) fn random_seed() -> [u8; 32] {
    let mut seed = [0; 32];
    getrandom::fill(&mut seed).expect("the operating system's random source failed");
    seed
}

/// What is known about a connection: who, where, how it was opened.
///
/// Its `Debug` output shows credentials in the request (`Authorization`,
/// `Cookie`, `Sec-WebSocket-Protocol`) as `Sensitive`.
#[derive(Debug)]
pub struct ConnectionInfo {
    /// The connection's identifier.
    pub id: ConnectionId,
    /// The peer's address, when the transport has one.
    pub peer_addr: Option<SocketAddr>,
    /// The handshake request (server side) with any extensions the
    /// authenticate hook inserted, or the request that was sent (client
    /// side).
    pub request: http::request::Parts,
    /// The subprotocol in use.
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters in force, if it was negotiated.
    pub deflate: Option<DeflateParams>,
    /// Which side we are.
    pub role: Role,
}

impl ConnectionInfo {
    /// The request's query string as `(name, value)` pairs, in order,
    /// `+` and percent escapes decoded (`?name=J%C3%BCrg+B` gives
    /// `("name", "Jürg B")`). Invalid UTF-8 is replaced, never an error.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.request.uri.query().unwrap_or_default();
        form_urlencoded::parse(query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    /// The first value of the query parameter `name`, decoded as
    /// [`query`](Self::query) does.
    pub fn query_param(&self, name: &str) -> Option<String> {
        crate::auth::query_param(&self.request, name)
    }
}

/// Sends to one connection from anywhere: its handler (through
/// [`Ctx`](crate::Ctx)), other tasks, other connections. Cheap to clone.
///
/// The vocabulary is tokio's: `send(..).await` waits while the
/// connection's send queue is full (so a slow peer slows the sender down),
/// `try_send(..)` never waits and fails with [`SendError::Full`] instead.
/// Every method fails with [`SendError::Closed`] once the connection is
/// closing, and with [`SendError::Invalid`] (sending nothing) for what may
/// not be sent.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    id: ConnectionId,
    outbox: Arc<Outbox>,
}

impl ConnectionHandle {
    pub(crate) fn new(id: ConnectionId, outbox: Arc<Outbox>) -> Self {
        Self { id, outbox }
    }

    /// The connection's identifier.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Whether the connection is closing or closed: sends fail.
    pub fn is_closed(&self) -> bool {
        self.outbox.is_closing()
    }

    /// Queues a message, waiting for room in the send queue. With
    /// permessage-deflate on, it is compressed when it reaches the
    /// configured threshold.
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.outbox.push(Outgoing::Message(message.into()))
    }

    /// Queues a message without waiting; fails with [`SendError::Full`]
    /// when the send queue is full (nothing is queued then).
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.try_push(Outgoing::Message(message.into()))
    }

    /// Queues a message that is never compressed, even with
    /// permessage-deflate on, waiting for room: for data that does not
    /// compress, or secrets that must not share a compression context with
    /// data an attacker chooses (CRIME, BREACH).
    pub fn send_uncompressed(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.outbox.push(Outgoing::Uncompressed(message.into()))
    }

    /// [`send_uncompressed`](Self::send_uncompressed) without waiting.
    pub fn try_send_uncompressed(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.try_push(Outgoing::Uncompressed(message.into()))
    }

    /// Queues one piece of a message sent in pieces, waiting for room: the
    /// first piece's kind (text or binary) is the message's, `is_last` ends
    /// it. Whole messages queued meanwhile wait until it ends. A message
    /// cannot be withdrawn once its first piece is out: to give up on one
    /// (after an error, or a cancelled `send_fragment`), close the
    /// connection.
    pub fn send_fragment(
        &self,
        data: impl Into<Message>,
        is_last: bool,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.outbox.push(Outgoing::Fragment(data.into(), is_last))
    }

    /// [`send_fragment`](Self::send_fragment) without waiting.
    pub fn try_send_fragment(
        &self,
        data: impl Into<Message>,
        is_last: bool,
    ) -> Result<(), SendError> {
        self.try_push(Outgoing::Fragment(data.into(), is_last))
    }

    /// Queues a message [encoded once](EncodedMessage) for many
    /// connections, waiting for room: a server's fan-out. A client's frames
    /// are masked one by one, so a client connection refuses it with
    /// [`SendError::Invalid`]. Never compressed.
    pub fn send_encoded(
        &self,
        message: &EncodedMessage,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        self.outbox.push(Outgoing::Encoded(message.clone()))
    }

    /// [`send_encoded`](Self::send_encoded) without waiting.
    pub fn try_send_encoded(&self, message: &EncodedMessage) -> Result<(), SendError> {
        self.try_push(Outgoing::Encoded(message.clone()))
    }

    /// [`try_send_encoded`](Self::try_send_encoded) on each of `handles`
    /// but the one at `except`: a fan-out. Returns the positions in
    /// `handles` of the connections whose queue was full (they miss the
    /// message); connections that are closing or closed are passed over.
    ///
    /// The same as calling `try_send_encoded` in a loop, but over thousands
    /// of connections, whose queues are seldom in the CPU's cache, it asks
    /// for each queue a few connections ahead, so the memory reads overlap
    /// instead of coming one after another.
    pub fn try_send_encoded_each(
        handles: &[ConnectionHandle],
        message: &EncodedMessage,
        except: Option<usize>,
    ) -> Vec<usize> {
        const AHEAD: usize = 8;
        let mut refused = Vec::new();
        for handle in handles.iter().take(AHEAD) {
            prefetch(&handle.outbox);
        }
        for (at, handle) in handles.iter().enumerate() {
            if let Some(ahead) = handles.get(at + AHEAD) {
                prefetch(&ahead.outbox);
            }
            if Some(at) == except {
                continue;
            }
            if let Err(SendError::Full { .. }) = handle.try_send_encoded(message) {
                refused.push(at);
            }
        }
        refused
    }

    /// Sends a ping (at most 125 bytes), waiting for room; its pong is
    /// answered by the peer and not reported.
    pub fn ping(
        &self,
        payload: impl Into<Bytes>,
    ) -> impl Future<Output = Result<(), SendError>> + Send + '_ {
        let item = ping(payload.into());
        async move { self.outbox.push(item?).await }
    }

    /// [`ping`](Self::ping) without waiting.
    pub fn try_ping(&self, payload: impl Into<Bytes>) -> Result<(), SendError> {
        self.try_push(ping(payload.into())?)
    }

    /// Starts the close handshake once everything queued before has gone to
    /// the connection, and waits until it has; nothing can be sent after
    /// it. A code that may not be sent (1005, 1006, 1015, below 1000...) or
    /// a reason over 123 bytes fails with [`SendError::Invalid`] and sends
    /// nothing.
    ///
    /// The whole close takes at most the connection's `close_timeout` (10
    /// s by default), even when the peer reads nothing: what is queued in
    /// front of the close goes first for half of it, then is dropped and
    /// the close sent alone; at `close_timeout` the connection is dropped
    /// whether or not the peer answered.
    ///
    /// Closing while a message is half sent with
    /// [`send_fragment`](Self::send_fragment) abandons that message: the
    /// peer sees the close instead of its last piece, and whole messages
    /// queued behind it are dropped.
    pub fn close<'a>(
        &'a self,
        code: CloseCode,
        reason: &str,
    ) -> impl Future<Output = Result<(), SendError>> + Send + use<'a> {
        let queued = self.try_close(code, reason);
        async move {
            queued?;
            self.outbox.close_taken().await;
            Ok(())
        }
    }

    /// Queues the close as [`close`](Self::close) does, without waiting.
    pub fn try_close(&self, code: CloseCode, reason: &str) -> Result<(), SendError> {
        close(&self.outbox, code, reason)
    }

    fn try_push(&self, item: Outgoing) -> Result<(), SendError> {
        self.outbox.try_push(item).map_err(|(error, _)| error)
    }

    pub(crate) fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }
}

/// Asks the CPU to bring `outbox` into its cache; a hint, nothing else.
#[inline]
fn prefetch(outbox: &Arc<Outbox>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let at = Arc::as_ptr(outbox).cast::<i8>();
        // SAFETY: `sse`, which the instruction needs, is part of every
        // x86_64 target; a prefetch reads nothing and never faults, even
        // at an address that is not mapped.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(at);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = outbox;
}

fn ping(payload: Bytes) -> Result<Outgoing, SendError> {
    if payload.len() > ws_core::frame::MAX_CONTROL_PAYLOAD {
        return Err(SendError::Invalid(UsageError::ControlPayloadTooLarge(
            payload.len(),
        )));
    }
    Ok(Outgoing::Ping(payload))
}

/// Validates a close and queues it.
pub(crate) fn close(outbox: &Outbox, code: CloseCode, reason: &str) -> Result<(), SendError> {
    let frame = CloseFrame::new(code, reason).map_err(SendError::Invalid)?;
    outbox.close_with(frame)
}
