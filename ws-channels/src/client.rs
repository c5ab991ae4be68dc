//! A channels client over any connected [`WebSocket`]: ids, replies
//! matched to requests, events kept in order while a reply is awaited.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::Value;
use ws_async::{ConnectionError, SendError, WebSocket};
use ws_core::envelope::{Envelope, Kind};
use ws_core::{CloseCode, Message};

use crate::protocol::{
    Command, Event, HistoryReply, JoinReply, PresenceReply, PublishReply, Reply, Request,
    ServerMessage,
};
use crate::types::{ChannelError, ChannelRole, Payload, Position, Target};

/// Why a request or a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an error.
    #[error("refused: {0}")]
    Refused(ChannelError),
    /// The connection ended (cleanly, or with the error in
    /// [`Connection`](Self::Connection) when it did not).
    #[error("the connection is closed")]
    Closed,
    /// The connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// A request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// No reply came in time ([`ReconnectingClient`](crate::ReconnectingClient)'s
    /// command timeout); the command may still take effect.
    #[error("no reply within {after:?}")]
    TimedOut {
        /// The timeout.
        after: Duration,
    },
    /// The server sent something that is not a channels message.
    #[error("not a channels message: {0}")]
    Malformed(String),
    /// More than the client's limit of events arrived while a reply was
    /// awaited (a flood, or a reply that never comes). They are all kept:
    /// read them with `next_event`; the reply, if it comes, is skipped.
    #[error("more than {limit} events arrived while a reply was awaited")]
    TooManyEvents {
        /// The limit ([`ChannelsClient::with_max_buffered_events`]).
        limit: usize,
    },
}

impl ClientError {
    /// The server's refusal, if that is what this is.
    pub fn refusal(&self) -> Option<&ChannelError> {
        match self {
            Self::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }
}

/// A channels client on one connection.
///
/// Requests get ids of their own (`c1`, `c2`, ...) and wait for the reply
/// with that id; the events that arrive meanwhile are kept, in order, for
/// [`next_event`](Self::next_event). One request at a time: a method
/// borrows the client mutably until its reply is in. There are no
/// timeouts here: wrap a call in your runtime's timeout, and drop the
/// client (or close it) when one fires, since its reply may still come.
///
/// ```no_run
/// # async fn run(socket: ws_async::WebSocket) -> Result<(), ws_channels::ClientError> {
/// use ws_channels::ChannelsClient;
/// use ws_channels::protocol::Event;
///
/// let mut client = ChannelsClient::new(socket);
/// client.join("lobby", None).await?;
/// client.publish("lobby", &serde_json::json!({"text": "hello"})).await?;
/// while let Some(event) = client.next_event().await {
///     if let Event::Publication { publication, .. } = event? {
///         println!("{:?}: {:?}", publication.from, publication.data);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ChannelsClient {
    socket: WebSocket,
    next_id: u64,
    /// Events (and other envelopes that are not replies) that arrived
    /// while a reply was awaited, in order.
    events: VecDeque<Envelope>,
    /// Past this many buffered events a request gives up.
    max_buffered_events: usize,
}

/// [`ChannelsClient::with_max_buffered_events`]'s default.
pub const MAX_BUFFERED_EVENTS: usize = 10_000;

impl ChannelsClient {
    /// A client on `socket`, connected to a channels endpoint.
    pub fn new(socket: WebSocket) -> Self {
        Self {
            socket,
            next_id: 0,
            events: VecDeque::new(),
            max_buffered_events: MAX_BUFFERED_EVENTS,
        }
    }

    /// How many events may wait while a reply is awaited before the
    /// request fails with [`ClientError::TooManyEvents`], so a server that
    /// floods cannot grow the buffer without bound. Default
    /// [`MAX_BUFFERED_EVENTS`] (10,000).
    pub fn with_max_buffered_events(mut self, limit: usize) -> Self {
        self.max_buffered_events = limit;
        self
    }

    /// The connection.
    pub fn socket(&self) -> &WebSocket {
        &self.socket
    }

    /// The connection, to send or read around the client (reading from it
    /// skips the client's reply matching).
    pub fn socket_mut(&mut self) -> &mut WebSocket {
        &mut self.socket
    }

    /// Takes the events that arrived while replies were awaited and have
    /// not been read yet, oldest first, without waiting for more.
    pub fn take_buffered_events(&mut self) -> Vec<Envelope> {
        self.events.drain(..).collect()
    }

    /// The connection back, with the events not read yet.
    pub fn into_parts(self) -> (WebSocket, Vec<Envelope>) {
        (self.socket, self.events.into())
    }

    /// Sends `request` and waits for its reply: the reply's data (without
    /// `ok`), or [`ClientError::Refused`] with the server's error.
    pub async fn request(&mut self, request: &Request) -> Result<Value, ClientError> {
        self.reply(request)
            .await?
            .result
            .map_err(ClientError::Refused)
    }

    /// Sends `request` and waits for its whole [`Reply`].
    pub async fn reply(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let reply = self
            .send_envelope(request.to_envelope(String::new()))
            .await?;
        match ServerMessage::from_envelope(reply) {
            Some(ServerMessage::Reply(reply)) => Ok(reply),
            other => Err(ClientError::Malformed(format!("{other:?}"))),
        }
    }

    /// Sends `command` for `channel` and waits for its reply's data.
    pub async fn command(&mut self, channel: &str, command: Command) -> Result<Value, ClientError> {
        self.request(&Request::new(channel, command)).await
    }

    /// Sends `envelope` with an id of the client's own and waits for the
    /// reply envelope as the server wrote it. For what [`Command`] cannot
    /// say: a newer server's commands, envelope fields of an application's
    /// own, or malformed commands (a test of the server's checks).
    pub async fn send_envelope(&mut self, mut envelope: Envelope) -> Result<Envelope, ClientError> {
        self.next_id += 1;
        let id = format!("c{}", self.next_id);
        envelope.id = Some(id.clone());
        self.socket.send(envelope.to_message()).await?;
        loop {
            let envelope = self.read().await?;
            match envelope.kind {
                Some(Kind::Response) if envelope.id.as_deref() == Some(id.as_str()) => {
                    return Ok(envelope);
                }
                // The reply to a request given up on (a timeout around an
                // earlier call).
                Some(Kind::Response) => {}
                _ => {
                    self.events.push_back(envelope);
                    if self.events.len() > self.max_buffered_events {
                        return Err(ClientError::TooManyEvents {
                            limit: self.max_buffered_events,
                        });
                    }
                }
            }
        }
    }

    /// The next event; `None` once the connection has closed cleanly.
    pub async fn next_event(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            let envelope = match self.next_event_envelope().await? {
                Ok(envelope) => envelope,
                Err(error) => return Some(Err(error)),
            };
            if let Some(ServerMessage::Event(event)) = ServerMessage::from_envelope(envelope) {
                return Some(Ok(event));
            }
        }
    }

    /// The next event as the server wrote it (or another envelope that is
    /// not a reply); `None` once the connection has closed cleanly.
    pub async fn next_event_envelope(&mut self) -> Option<Result<Envelope, ClientError>> {
        if let Some(envelope) = self.events.pop_front() {
            return Some(Ok(envelope));
        }
        loop {
            match self.read().await {
                Ok(envelope) if envelope.kind == Some(Kind::Response) => {}
                Ok(envelope) => return Some(Ok(envelope)),
                Err(ClientError::Closed) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Closes the connection with `code` and `reason`, after what was sent
    /// before.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), ClientError> {
        Ok(self.socket.close(code, reason).await?)
    }

    /// The next envelope from the server; text that is not one is an
    /// error, binary messages are skipped.
    async fn read(&mut self) -> Result<Envelope, ClientError> {
        loop {
            let message = match self.socket.recv().await {
                None => return Err(ClientError::Closed),
                Some(message) => message?,
            };
            let Message::Text(text) = message else {
                continue;
            };
            return Envelope::from_slice(text.as_bytes())
                .map_err(|_| ClientError::Malformed(text.to_string()));
        }
    }

    /// `create`s `channel` with the settings of [`Command::Create`] in
    /// `settings` (or [`Command::create`]'s) and joins it as its owner.
    pub async fn create(
        &mut self,
        channel: &str,
        settings: Option<Command>,
    ) -> Result<JoinReply, ClientError> {
        let command = settings.unwrap_or_else(Command::create);
        typed(self.command(channel, command).await?)
    }

    /// `join`s `channel`, recovering what came after `since` when given
    /// (the reply's `publications`, or `recovered: false`).
    pub async fn join(
        &mut self,
        channel: &str,
        since: Option<Position>,
    ) -> Result<JoinReply, ClientError> {
        typed(
            self.command(channel, Command::Join { since, info: None })
                .await?,
        )
    }

    /// `leave`s `channel`.
    pub async fn leave(&mut self, channel: &str) -> Result<(), ClientError> {
        self.command(channel, Command::Leave).await.map(drop)
    }

    /// `publish`es `data` on `channel`.
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

    /// `presence`: who is in `channel`.
    pub async fn presence(&mut self, channel: &str) -> Result<PresenceReply, ClientError> {
        typed(
            self.command(channel, Command::Presence { limit: None })
                .await?,
        )
    }

    /// `history`: the newest publications of `channel`, at most `limit`.
    pub async fn history(
        &mut self,
        channel: &str,
        limit: Option<usize>,
    ) -> Result<HistoryReply, ClientError> {
        typed(self.command(channel, Command::History { limit }).await?)
    }

    /// `kick`s `user` out of `channel`.
    pub async fn kick(&mut self, channel: &str, user: &str) -> Result<(), ClientError> {
        let target = Target::User(user.to_owned());
        self.command(channel, Command::Kick { target })
            .await
            .map(drop)
    }

    /// `ban`s `user` from `channel` for `duration` seconds, or until
    /// `unban`.
    pub async fn ban(
        &mut self,
        channel: &str,
        user: &str,
        duration: Option<u64>,
    ) -> Result<(), ClientError> {
        let user = user.to_owned();
        self.command(channel, Command::Ban { user, duration })
            .await
            .map(drop)
    }

    /// `refresh`: `token` replaces the session's ending one (after
    /// [`Event::Expiring`](crate::protocol::Event::Expiring)); it must name
    /// the session's user. How long the session has now (`None`: no end).
    pub async fn refresh(&mut self, token: &str) -> Result<Option<Duration>, ClientError> {
        let command = Command::Refresh {
            token: crate::protocol::Token::new(token),
        };
        let reply = self
            .command(crate::protocol::SESSION_CHANNEL, command)
            .await?;
        Ok(reply
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(Duration::from_secs))
    }

    /// Gives `user` the role `role` in `channel`.
    pub async fn set_role(
        &mut self,
        channel: &str,
        user: &str,
        role: ChannelRole,
    ) -> Result<(), ClientError> {
        let user = user.to_owned();
        self.command(channel, Command::SetRole { user, role })
            .await
            .map(drop)
    }
}

/// A reply's data as the type the protocol says it has.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, ClientError> {
    serde_json::from_value(data).map_err(|error| ClientError::Malformed(error.to_string()))
}
