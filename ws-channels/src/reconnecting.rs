//! [`ReconnectingClient`]: the [`Reconnector`](crate::reconnect::Reconnector)
//! driven on ws-async, so every runtime adapter gets it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::Value;
use ws_async::{BoxFuture, ConnectError, Runtime, WebSocket};
use ws_core::envelope::Envelope;
use ws_core::{CloseCode, Message};

use crate::client::{ClientError, typed};
use crate::protocol::{
    Command, Event, JoinReply, PublishReply, Request, SESSION_CHANNEL, ServerMessage, Token,
};
use crate::reconnect::{ClientEvent, ConnectionState, Output, ReconnectConfig, Reconnector};
use crate::types::{Payload, Position};

/// [`ReconnectingClient::with_command_timeout`]'s default.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// [`ReconnectingClient::with_connect_timeout`]'s default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

type Connect = Box<dyn FnMut() -> BoxFuture<Result<WebSocket, ConnectError>> + Send>;

type FetchToken = Box<dyn FnMut() -> BoxFuture<Option<String>> + Send>;

/// A channels client that stays connected: it dials with `connect` (called
/// for every attempt, so it can fetch a fresh token each time), joins the
/// channels it keeps again after every reconnect from the last
/// publication it handed out, and hands out each publication once and in
/// order (see [`reconnect`](crate::reconnect) for the rules).
///
/// Read [`next_event`](Self::next_event) in a loop: it also does the
/// reconnecting, so a client nobody reads from does not come back.
/// Commands ([`publish`](Self::publish), [`command`](Self::command)) need
/// a connection ([`ClientError::Closed`] without one) and time out after
/// [`COMMAND_TIMEOUT`] ([`ClientError::TimedOut`]); a publication whose
/// reply was lost may or may not have been made: give it an idempotency
/// key ([`Command::Publish`]) and send it again.
///
/// ```no_run
/// # async fn run() {
/// use ws_channels::ReconnectingClient;
/// use ws_channels::reconnect::{ClientEvent, ReconnectConfig};
///
/// let mut client = ReconnectingClient::new(ws_tokio::TokioRuntime, ReconnectConfig::default(), || {
///     Box::pin(async { ws_tokio::connect("ws://127.0.0.1:9003/channels?user=ann").await.map(|(socket, _)| socket) })
/// });
/// client.join("lobby", None);
/// while let Some(event) = client.next_event().await {
///     if let ClientEvent::Publication { publication, .. } = event {
///         println!("{:?}", publication.data);
///     }
/// }
/// # }
/// ```
pub struct ReconnectingClient<R: Runtime> {
    runtime: R,
    connect: Connect,
    machine: Reconnector,
    socket: Option<WebSocket>,
    /// Joins in flight: request id -> (connection, channel).
    joins: HashMap<String, (u64, String)>,
    events: VecDeque<ClientEvent>,
    next_id: u64,
    command_timeout: Duration,
    connect_timeout: Duration,
    fetch_token: Option<FetchToken>,
    /// The server said the session's token is ending (`expiring`).
    refresh_due: bool,
    /// `refresh` commands in flight, by request id.
    refreshes: HashSet<String>,
}

impl<R: Runtime> fmt::Debug for ReconnectingClient<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("state", &self.machine.state())
            .field("connection", &self.machine.connection())
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

/// What a wait on the connection brought.
enum Received {
    Reply(crate::protocol::Reply),
    Other,
    Closed,
    TimedOut,
}

impl<R: Runtime> ReconnectingClient<R> {
    /// A client that dials with `connect` on `runtime`; it starts at the
    /// first [`next_event`](Self::next_event) or command.
    pub fn new<F, C>(runtime: R, config: ReconnectConfig, mut connect: C) -> Self
    where
        C: FnMut() -> F + Send + 'static,
        F: Future<Output = Result<WebSocket, ConnectError>> + Send + 'static,
    {
        let mut machine = Reconnector::new(config);
        machine.start();
        Self {
            runtime,
            connect: Box::new(move || Box::pin(connect())),
            machine,
            socket: None,
            joins: HashMap::new(),
            events: VecDeque::new(),
            next_id: 0,
            command_timeout: COMMAND_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            fetch_token: None,
            refresh_due: false,
            refreshes: HashSet::new(),
        }
    }

    /// Keeps the session open past its token: when the server says the
    /// token is ending ([`Event::Expiring`], which still reaches
    /// [`next_event`](Self::next_event)), the client calls `fetch` for a
    /// new one and sends it with `refresh`. `None` from `fetch`, or a
    /// refused refresh (logged), lets the server close the session at
    /// the token's end (4011); the client then reconnects, and `connect`
    /// brings a new token. Default: none (reconnect at every token's end).
    pub fn with_token_refresh<F, Fut>(mut self, mut fetch: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Option<String>> + Send + 'static,
    {
        self.fetch_token = Some(Box::new(move || Box::pin(fetch())));
        self
    }

    /// How long a command waits for its reply. Default
    /// [`COMMAND_TIMEOUT`] (10 s).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long one attempt to connect may take. Default
    /// [`CONNECT_TIMEOUT`] (15 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Where the connection is.
    pub fn state(&self) -> ConnectionState {
        self.machine.state()
    }

    /// Keeps `channel` joined from now on (from `since`, a position kept
    /// from an earlier run, when given).
    pub fn join(&mut self, channel: &str, since: Option<Position>) {
        self.machine.join(channel, since);
    }

    /// Stops keeping `channel` joined, and leaves it.
    pub fn leave(&mut self, channel: &str) {
        self.machine.leave(channel);
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(&mut self) {
        self.machine.close();
        if let Some(socket) = self.socket.take() {
            let _ = socket.close(CloseCode::NORMAL, "").await;
        }
    }

    /// The next event; `None` once closed (by [`close`](Self::close), a
    /// close code that says not to come back, or `max_attempts`) and
    /// every event before that has been read.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        loop {
            self.carry_out().await;
            if self.refresh_due {
                self.refresh().await;
            }
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            match self.machine.state() {
                ConnectionState::Closed => return None,
                ConnectionState::Connected => {
                    self.receive(None).await;
                }
                ConnectionState::Disconnected => {
                    if let Some(at) = self.machine.poll_timeout() {
                        self.runtime.timer(at).await_fired().await;
                    }
                    let now = self.runtime.now();
                    self.machine.handle_timeout(now);
                }
                // `carry_out` dials.
                ConnectionState::Connecting => {}
            }
        }
    }

    /// `publish`es `data` on `channel` and waits for its acknowledgment.
    pub async fn publish(
        &mut self,
        channel: &str,
        data: &Value,
    ) -> Result<PublishReply, ClientError> {
        let command = Command::Publish {
            data: Payload::new(data),
            idempotency_key: None,
        };
        typed(self.command(channel, command).await?)
    }

    /// Sends `command` for `channel` on the current connection and waits
    /// for its reply's data; events that arrive meanwhile go their way
    /// (to [`next_event`](Self::next_event)).
    pub async fn command(&mut self, channel: &str, command: Command) -> Result<Value, ClientError> {
        self.carry_out().await;
        if self.machine.state() != ConnectionState::Connected {
            return Err(ClientError::Closed);
        }
        let id = self.send(&Request::new(channel, command)).await;
        let deadline = self.runtime.now() + self.command_timeout;
        loop {
            match self.receive(Some(deadline)).await {
                Received::Reply(reply) if reply.id.as_deref() == Some(id.as_str()) => {
                    return reply.result.map_err(ClientError::Refused);
                }
                Received::Reply(_) | Received::Other => self.carry_out().await,
                Received::Closed => return Err(ClientError::Closed),
                Received::TimedOut => {
                    return Err(ClientError::TimedOut {
                        after: self.command_timeout,
                    });
                }
            }
        }
    }

    /// Does what the state machine asks: dials, sends joins and leaves,
    /// keeps events for the application.
    async fn carry_out(&mut self) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Connect => self.dial().await,
                Output::Join {
                    channel,
                    since,
                    connection,
                } => {
                    let id = self
                        .send(&Request::new(&channel, Command::Join { since, info: None }))
                        .await;
                    self.joins.insert(id, (connection, channel));
                }
                Output::Leave { channel } => {
                    self.send(&Request::new(&channel, Command::Leave)).await;
                }
                Output::Event(event) => self.events.push_back(event),
            }
        }
    }

    async fn dial(&mut self) {
        let deadline = self.runtime.now() + self.connect_timeout;
        let attempt = (self.connect)();
        let timer = self.runtime.timer(deadline);
        let result = futures_lite::future::or(async { Some(attempt.await) }, async {
            timer.await_fired().await;
            None
        })
        .await;
        let now = self.runtime.now();
        match result {
            Some(Ok(socket)) => {
                self.socket = Some(socket);
                self.joins.clear();
                self.refreshes.clear();
                self.refresh_due = false;
                self.machine.connected(now);
            }
            Some(Err(error)) => self.machine.connect_failed(now, &error.to_string()),
            None => self.machine.connect_failed(now, "timed out"),
        }
    }

    /// Fetches a new token and sends it with `refresh`.
    async fn refresh(&mut self) {
        self.refresh_due = false;
        let Some(fetch) = self.fetch_token.as_mut() else {
            return;
        };
        let Some(token) = fetch().await else {
            return;
        };
        if self.machine.state() != ConnectionState::Connected {
            return;
        }
        let token = Token::new(token);
        let id = self
            .send(&Request::new(SESSION_CHANNEL, Command::Refresh { token }))
            .await;
        self.refreshes.insert(id);
    }

    /// Sends `request` with an id of its own on the current connection
    /// (a failure shows as the connection's end when it is read): the id.
    async fn send(&mut self, request: &Request) -> String {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        if let Some(socket) = &self.socket {
            let _ = socket
                .send(request.to_envelope(id.clone()).to_message())
                .await;
        }
        id
    }

    /// Waits for the next message (until `deadline`, if given) and hands
    /// it to the state machine; a reply is also returned.
    async fn receive(&mut self, deadline: Option<Instant>) -> Received {
        let Some(socket) = self.socket.as_mut() else {
            return Received::Closed;
        };
        let next = match deadline {
            None => Some(socket.recv().await),
            Some(deadline) => {
                let timer = self.runtime.timer(deadline);
                let fired = async {
                    timer.await_fired().await;
                    None
                };
                futures_lite::future::or(async { Some(socket.recv().await) }, fired).await
            }
        };
        let Some(next) = next else {
            return Received::TimedOut;
        };
        let now = self.runtime.now();
        match next {
            Some(Ok(Message::Text(text))) => {
                let Ok(envelope) = Envelope::from_slice(text.as_bytes()) else {
                    return Received::Other;
                };
                match ServerMessage::from_envelope(envelope) {
                    Some(ServerMessage::Reply(reply)) => {
                        if reply
                            .id
                            .as_ref()
                            .is_some_and(|id| self.refreshes.remove(id))
                        {
                            if let Err(refusal) = reply.result {
                                tracing::warn!(%refusal, "the server refused a new token; the session ends with its old one");
                            }
                            return Received::Other;
                        }
                        let join = reply.id.as_ref().and_then(|id| self.joins.remove(id));
                        if let Some((connection, channel)) = join {
                            let result = reply.result.and_then(|data| {
                                serde_json::from_value::<JoinReply>(data).map_err(|error| {
                                    crate::ChannelError::new(
                                        crate::ErrorCode::Internal,
                                        format!("a join reply that does not read: {error}"),
                                    )
                                })
                            });
                            self.machine.join_reply(connection, &channel, result);
                            return Received::Other;
                        }
                        Received::Reply(reply)
                    }
                    Some(ServerMessage::Event(event)) => {
                        if matches!(event, Event::Expiring { .. }) {
                            self.refresh_due = self.fetch_token.is_some();
                        }
                        self.machine.handle_event(event);
                        Received::Other
                    }
                    None => Received::Other,
                }
            }
            Some(Ok(_)) => Received::Other,
            Some(Err(_)) | None => {
                let closed = self.socket.take().and_then(|s| s.closed().cloned());
                // 1006: no close frame came (a cut, a crash): nothing said.
                let code = closed
                    .as_ref()
                    .map(|c| c.code)
                    .filter(|code| *code != CloseCode::ABNORMAL);
                let reason = closed.map_or_else(|| "the connection ended".into(), |c| c.reason);
                self.joins.clear();
                self.refreshes.clear();
                self.refresh_due = false;
                self.machine.disconnected(now, code, &reason);
                Received::Closed
            }
        }
    }
}

/// Awaiting a runtime timer.
trait AwaitFired {
    fn await_fired(self) -> impl Future<Output = ()> + Send;
}

impl AwaitFired for Pin<Box<dyn ws_async::Timer>> {
    fn await_fired(mut self) -> impl Future<Output = ()> + Send {
        std::future::poll_fn(move |cx| self.as_mut().poll_fired(cx))
    }
}
