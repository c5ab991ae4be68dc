//! The wire, typed, for both ends: a [`Request`] (a [`Command`] for a
//! channel) is what a client encodes ([`Request::to_envelope`]) and the
//! server parses ([`Request::parse`]); what the server sends back is a
//! [`ServerMessage`]: a [`Reply`] to a request or an [`Event`].
//! `PROTOCOL.md` documents every shape, and the tests here check that each
//! side reads what the other writes.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use ws_core::EncodedMessage;
use ws_core::Message;
use ws_core::envelope::{Envelope, Kind};

use crate::types::{
    ChannelError, ChannelRole, ClientInfo, ErrorCode, LeaveReason, Member, Payload, Position,
    Publication, PublicationKind, SessionId, Target,
};

/// What a reply answers: the request's id, channel and action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReplyTo {
    pub(crate) id: Option<String>,
    pub(crate) channel: Option<String>,
    pub(crate) action: Option<String>,
}

impl ReplyTo {
    pub(crate) fn of(envelope: &Envelope) -> Self {
        Self {
            id: envelope.id.clone(),
            channel: envelope.channel.clone(),
            action: envelope.action.clone(),
        }
    }

    /// A success reply with `fields` next to `"ok": true`.
    pub(crate) fn ok(&self, fields: Value) -> Envelope {
        let mut data = Map::new();
        data.insert("ok".into(), Value::Bool(true));
        if let Value::Object(fields) = fields {
            data.extend(fields);
        }
        self.reply(Value::Object(data))
    }

    /// An error reply.
    pub(crate) fn error(&self, error: &ChannelError) -> Envelope {
        self.reply(json!({
            "ok": false,
            "code": error.code.as_str(),
            "message": error.message,
        }))
    }

    fn reply(&self, data: Value) -> Envelope {
        Envelope {
            kind: Some(Kind::Response),
            id: self.id.clone(),
            channel: self.channel.clone(),
            action: self.action.clone(),
            data: Some(data),
            ..Envelope::default()
        }
    }
}

/// A command, as a client sends it and the server reads it (`action` and
/// `data` on the wire; `PROTOCOL.md` says who may send each).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// `create`: make the channel and join it as its owner.
    Create {
        /// Participants at most; `None`: the server's limit.
        max_participants: Option<u64>,
        /// Publications kept for recovery; `None`: no history.
        history_size: Option<u64>,
        /// How long history is kept, in seconds; `None`: the default.
        history_ttl: Option<u64>,
        /// Announce joins and leaves to members.
        presence_events: bool,
        /// Carry only end-to-end envelopes.
        encrypted: bool,
        /// What members see about this session.
        info: Option<Payload>,
    },
    /// `join`: join, recovering what was missed after `since`.
    Join {
        /// The last position the client has.
        since: Option<Position>,
        /// What members see about this session.
        info: Option<Payload>,
    },
    /// `leave`.
    Leave,
    /// `publish`.
    Publish {
        /// The message.
        data: Payload,
        /// Makes a retry publish once (`params.idempotency_key`).
        idempotency_key: Option<String>,
    },
    /// `kick`: a user's sessions, or one session.
    Kick {
        /// Whom.
        target: Target,
    },
    /// `ban`, for `duration` seconds or until `unban`.
    Ban {
        /// Whom.
        user: String,
        /// Seconds; `None`: until unbanned.
        duration: Option<u64>,
    },
    /// `unban`.
    Unban {
        /// Whom.
        user: String,
    },
    /// `presence`: who is in the channel.
    Presence {
        /// Members at most.
        limit: Option<usize>,
    },
    /// `history`: the newest publications.
    History {
        /// Publications at most.
        limit: Option<usize>,
    },
    /// `role`: give a user a role in the channel.
    SetRole {
        /// Whom.
        user: String,
        /// The role.
        role: ChannelRole,
    },
    /// `close`: end the channel for everyone.
    Close,
    /// `subscribe` to a server-event topic.
    Subscribe {
        /// Only events whose fields match (`PROTOCOL.md`).
        filter: Option<Value>,
    },
    /// `unsubscribe` from a topic.
    Unsubscribe,
    /// `commit`: an end-to-end group's commit for the channel's current
    /// group epoch, published to every member if no other commit took the
    /// epoch first (`conflict` otherwise). Encrypted channels only.
    Commit {
        /// The commit (an MLS public message), base64.
        commit: String,
        /// The Welcome for the members it adds, base64.
        welcome: Option<String>,
        /// The users the Welcome adds devices of: only their sessions
        /// receive it (inside the commit's publication, as its `welcome`).
        /// `None`: every member does.
        welcome_to: Option<Vec<String>>,
        /// The GroupInfo of the epoch it starts (with the ratchet tree),
        /// base64: what the server proposes removals from.
        group_info: Option<String>,
    },
    /// `key_packages`, to the channel [`KEYS_CHANNEL`]: this user's
    /// device uploads key packages for end-to-end groups (with none, asks
    /// what its devices have).
    KeyPackages {
        /// One-time key packages (MLS), base64, all of one device.
        key_packages: Vec<String>,
        /// The device's last-resort package, base64.
        last_resort: Option<String>,
    },
    /// `claim`: one key package per device of `user`, to add it to the
    /// channel's group. Encrypted channels only.
    Claim {
        /// Whose.
        user: String,
        /// Devices of the user (fingerprints) already in the group, whose
        /// packages stay in the directory; empty (the default) for none.
        except: Vec<String>,
    },
    /// `refresh`, to the channel [`SESSION_CHANNEL`]: a new token for
    /// this session, before its current one expires (the server sends
    /// [`Event::Expiring`] ahead of that). It must name the session's user;
    /// the session then lasts until the new token's `exp`.
    Refresh {
        /// The token, as the client would present it at the handshake.
        token: Token,
    },
    /// A command the application registered.
    Custom {
        /// Its `action`.
        name: String,
        /// Its `data`.
        data: Value,
    },
}

impl Command {
    /// `create` with every setting left to the server: no history, no
    /// presence events, not encrypted, no info.
    pub fn create() -> Self {
        Self::Create {
            max_participants: None,
            history_size: None,
            history_ttl: None,
            presence_events: false,
            encrypted: false,
            info: None,
        }
    }

    /// `create` of an end-to-end encrypted channel keeping `history_size`
    /// publications, at least one (its group's commits travel through
    /// history), and announcing joins (members learn from them whom to
    /// add): what an MLS client makes. The rest is left to the server.
    pub fn create_encrypted(history_size: u64) -> Self {
        Self::Create {
            max_participants: None,
            history_size: Some(history_size.max(1)),
            history_ttl: None,
            presence_events: true,
            encrypted: true,
            info: None,
        }
    }
}

/// A command envelope of any `action` and `data`, without an id: for what
/// [`Command`] cannot say (a newer server's commands, an application's own
/// envelope fields, malformed commands in a test of the server's checks).
/// [`ChannelsClient::send_envelope`](crate::ChannelsClient::send_envelope)
/// gives it an id.
pub fn command_envelope(channel: &str, action: &str, data: Value) -> Envelope {
    Envelope {
        kind: Some(Kind::Command),
        channel: Some(channel.to_owned()),
        action: Some(action.to_owned()),
        data: Some(data),
        ..Envelope::default()
    }
}

/// The channel name `key_packages` is sent to: a user's key packages
/// belong to no channel (`$` is in no channel's name).
pub const KEYS_CHANNEL: &str = "$keys";

/// The channel name `refresh` is sent to: a session's token belongs to no
/// channel.
pub const SESSION_CHANNEL: &str = "$session";

/// A credential in a `refresh` command. Its `Debug` shows no part of it,
/// so a logged command does not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// `token`, as the client would present it at the handshake.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

/// A command with the channel (or topic) it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The channel or topic.
    pub channel: String,
    /// What to do there.
    pub command: Command,
}

impl Request {
    /// `command` for `channel`.
    pub fn new(channel: impl Into<String>, command: Command) -> Self {
        Self {
            channel: channel.into(),
            command,
        }
    }

    /// Parses a command envelope, as the server does. `is_custom` says
    /// whether an unknown action names a registered custom command.
    pub fn parse(
        envelope: Envelope,
        is_custom: impl Fn(&str) -> bool,
    ) -> Result<Self, ChannelError> {
        parse(envelope, is_custom)
    }

    /// The command envelope with the id `id`, as a client sends it.
    pub fn to_envelope(&self, id: impl Into<String>) -> Envelope {
        fn object(
            fields: impl IntoIterator<Item = (&'static str, Option<Value>)>,
        ) -> Option<Value> {
            let map: Map<String, Value> = fields
                .into_iter()
                .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
                .collect();
            Some(Value::Object(map))
        }
        let payload = |payload: &Option<Payload>| payload.as_ref().map(Payload::to_value);
        let mut params = None;
        let (action, data) = match &self.command {
            Command::Create {
                max_participants,
                history_size,
                history_ttl,
                presence_events,
                encrypted,
                info,
            } => (
                "create",
                object([
                    ("max_participants", max_participants.map(Value::from)),
                    ("history_size", history_size.map(Value::from)),
                    ("history_ttl", history_ttl.map(Value::from)),
                    (
                        "presence_events",
                        presence_events.then_some(Value::Bool(true)),
                    ),
                    ("encrypted", encrypted.then_some(Value::Bool(true))),
                    ("info", payload(info)),
                ]),
            ),
            Command::Join { since, info } => (
                "join",
                object([
                    ("since", since.as_ref().map(|since| json!(since))),
                    ("info", payload(info)),
                ]),
            ),
            Command::Leave => ("leave", None),
            Command::Publish {
                data,
                idempotency_key,
            } => {
                params = idempotency_key.as_ref().map(|key| {
                    Map::from_iter([("idempotency_key".to_owned(), Value::from(key.as_str()))])
                });
                ("publish", Some(data.to_value()))
            }
            Command::Kick { target } => (
                "kick",
                Some(match target {
                    Target::User(user) => json!({ "user": user }),
                    Target::Session(session) => json!({ "session": session }),
                }),
            ),
            Command::Ban { user, duration } => (
                "ban",
                object([
                    ("user", Some(Value::from(user.as_str()))),
                    ("duration", duration.map(Value::from)),
                ]),
            ),
            Command::Unban { user } => ("unban", Some(json!({ "user": user }))),
            Command::Presence { limit } => {
                ("presence", object([("limit", limit.map(Value::from))]))
            }
            Command::History { limit } => ("history", object([("limit", limit.map(Value::from))])),
            Command::SetRole { user, role } => {
                ("role", Some(json!({ "user": user, "role": role.as_str() })))
            }
            Command::Close => ("close", None),
            Command::Subscribe { filter } => ("subscribe", object([("filter", filter.clone())])),
            Command::Unsubscribe => ("unsubscribe", None),
            Command::Commit {
                commit,
                welcome,
                welcome_to,
                group_info,
            } => (
                "commit",
                object([
                    ("commit", Some(Value::from(commit.as_str()))),
                    ("welcome", welcome.as_deref().map(Value::from)),
                    ("welcome_to", welcome_to.as_ref().map(|users| json!(users))),
                    ("group_info", group_info.as_deref().map(Value::from)),
                ]),
            ),
            Command::KeyPackages {
                key_packages,
                last_resort,
            } => (
                "key_packages",
                object([
                    ("key_packages", Some(json!(key_packages))),
                    ("last_resort", last_resort.as_deref().map(Value::from)),
                ]),
            ),
            Command::Claim { user, except } => (
                "claim",
                object([
                    ("user", Some(Value::from(user.as_str()))),
                    ("except", (!except.is_empty()).then(|| json!(except))),
                ]),
            ),
            Command::Refresh { token } => ("refresh", Some(json!({ "token": token.as_str() }))),
            Command::Custom { name, data } => (name.as_str(), Some(data.clone())),
        };
        Envelope {
            kind: Some(Kind::Command),
            id: Some(id.into()),
            channel: Some(self.channel.clone()),
            action: Some(action.to_owned()),
            data,
            params,
            ..Envelope::default()
        }
    }
}

fn bad_request(message: impl Into<String>) -> ChannelError {
    ChannelError::new(ErrorCode::BadRequest, message.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateData {
    max_participants: Option<u64>,
    history_size: Option<u64>,
    history_ttl: Option<u64>,
    #[serde(default)]
    presence_events: bool,
    #[serde(default)]
    encrypted: bool,
    info: Option<Payload>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinData {
    since: Option<Position>,
    info: Option<Payload>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickData {
    user: Option<String>,
    session: Option<SessionId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BanData {
    user: String,
    duration: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserData {
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimData {
    user: String,
    #[serde(default)]
    except: Vec<String>,
}

/// `presence` and `history` take how many at most.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceData {
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleData {
    user: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitData {
    commit: String,
    welcome: Option<String>,
    welcome_to: Option<Vec<String>>,
    group_info: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyPackagesData {
    #[serde(default)]
    key_packages: Vec<String>,
    last_resort: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshData {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeData {
    filter: Option<Value>,
}

/// `data` as `T`; an absent `data` reads as `{}`.
fn fields<T: serde::de::DeserializeOwned>(data: Option<Value>) -> Result<T, ChannelError> {
    serde_json::from_value(data.unwrap_or_else(|| json!({})))
        .map_err(|e| bad_request(format!("bad data: {e}")))
}

/// The longest idempotency key, in bytes.
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 64;

/// A command's `params`: only `publish` takes one, `idempotency_key`, 1 to
/// 64 bytes of printable ASCII; anything else there is refused so that a
/// misspelt key never passes silently (and a retry with it publishes twice).
fn idempotency_key(
    params: Option<Map<String, Value>>,
    action: &str,
) -> Result<Option<String>, ChannelError> {
    let Some(mut params) = params else {
        return Ok(None);
    };
    let key = params.remove("idempotency_key");
    if let Some(other) = params.keys().next() {
        return Err(bad_request(format!(
            "unknown field {other:?} in `params` (publish takes `idempotency_key`)"
        )));
    }
    let Some(key) = key else {
        return Ok(None);
    };
    if action != "publish" {
        return Err(bad_request("only publish takes an `idempotency_key`"));
    }
    match key {
        Value::String(key)
            if (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len())
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key))
        }
        _ => Err(bad_request(format!(
            "`idempotency_key` is a string of 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        ))),
    }
}

/// Parses a command envelope. `is_custom` says whether an unknown action
/// names a registered custom command.
pub(crate) fn parse(
    envelope: Envelope,
    is_custom: impl Fn(&str) -> bool,
) -> Result<Request, ChannelError> {
    if envelope.kind != Some(Kind::Command) {
        return Err(bad_request("channels take envelopes of type \"command\""));
    }
    let Some(action) = envelope.action else {
        return Err(bad_request("a command needs an `action`"));
    };
    let Some(channel) = envelope.channel else {
        return Err(bad_request("a command needs a `channel`"));
    };
    let data = envelope.data;
    let idempotency_key = idempotency_key(envelope.params, &action)?;
    let command = match action.as_str() {
        "create" => {
            let d: CreateData = fields(data)?;
            Command::Create {
                max_participants: d.max_participants,
                history_size: d.history_size,
                history_ttl: d.history_ttl,
                presence_events: d.presence_events,
                encrypted: d.encrypted,
                info: d.info,
            }
        }
        "join" => {
            let d: JoinData = fields(data)?;
            Command::Join {
                since: d.since,
                info: d.info,
            }
        }
        "leave" => Command::Leave,
        "publish" => Command::Publish {
            data: Payload::new(
                &data.ok_or_else(|| bad_request("publish needs `data`, the message"))?,
            ),
            idempotency_key,
        },
        "kick" => {
            let d: KickData = fields(data)?;
            let target = match (d.user, d.session) {
                (Some(user), None) => Target::User(user),
                (None, Some(session)) => Target::Session(session),
                _ => return Err(bad_request("kick needs `user` or `session`, not both")),
            };
            Command::Kick { target }
        }
        "ban" => {
            let d: BanData = fields(data)?;
            Command::Ban {
                user: d.user,
                duration: d.duration,
            }
        }
        "unban" => Command::Unban {
            user: fields::<UserData>(data)?.user,
        },
        "presence" => Command::Presence {
            limit: fields::<PresenceData>(data)?.limit,
        },
        "history" => Command::History {
            limit: fields::<PresenceData>(data)?.limit,
        },
        "role" => {
            let d: RoleData = fields(data)?;
            Command::SetRole {
                user: d.user,
                role: crate::config::parse_role(&d.role),
            }
        }
        "close" => Command::Close,
        "subscribe" => {
            let d: SubscribeData = fields(data)?;
            Command::Subscribe { filter: d.filter }
        }
        "unsubscribe" => Command::Unsubscribe,
        "commit" => {
            let d: CommitData = fields(data)?;
            Command::Commit {
                commit: d.commit,
                welcome: d.welcome,
                welcome_to: d.welcome_to,
                group_info: d.group_info,
            }
        }
        "key_packages" => {
            let d: KeyPackagesData = fields(data)?;
            Command::KeyPackages {
                key_packages: d.key_packages,
                last_resort: d.last_resort,
            }
        }
        "claim" => {
            let d: ClaimData = fields(data)?;
            Command::Claim {
                user: d.user,
                except: d.except,
            }
        }
        "refresh" => Command::Refresh {
            token: Token(fields::<RefreshData>(data)?.token),
        },
        name if is_custom(name) => Command::Custom {
            name: name.to_owned(),
            data: data.unwrap_or(Value::Null),
        },
        name => {
            return Err(ChannelError::new(
                ErrorCode::UnknownCommand,
                format!("no command named {name:?}"),
            ));
        }
    };
    Ok(Request { channel, command })
}

/// A topic subscriber's filter: every field named must equal the value
/// given, or one of the values when an array is given. `{}` passes all.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Filter(Vec<(String, Vec<Value>)>);

impl Filter {
    pub(crate) fn parse(value: Value) -> Result<Self, ChannelError> {
        let Value::Object(map) = value else {
            return Err(bad_request(
                "a filter is an object of field names to values",
            ));
        };
        let mut rules = Vec::with_capacity(map.len());
        for (field, wanted) in map {
            let values = match wanted {
                Value::Array(values) => values,
                other => vec![other],
            };
            if values
                .iter()
                .any(|v| matches!(v, Value::Array(_) | Value::Object(_)))
            {
                return Err(bad_request(
                    "filter values are strings, numbers, booleans or null",
                ));
            }
            rules.push((field, values));
        }
        Ok(Self(rules))
    }

    pub(crate) fn matches(&self, data: &Value) -> bool {
        self.0
            .iter()
            .all(|(field, wanted)| data.get(field).is_some_and(|v| wanted.contains(v)))
    }
}

#[derive(Serialize)]
struct EventOut<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    action: &'a str,
    data: &'a T,
}

/// A publication as clients see it, written by the server (borrowed: it is
/// encoded once per publication on the hot path); clients read it as a
/// [`PublicationEvent`].
#[derive(Serialize)]
pub struct PublicationOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<LeaveReason>,
}

impl<'a> PublicationOut<'a> {
    /// The wire's view of `publication` for a session of `user`: with a
    /// commit's Welcome only for the users it is for.
    pub fn to(publication: &'a Publication, user: Option<&str>) -> Self {
        Self::with_welcome(publication, publication.welcomes(user))
    }

    /// The wire's view of `publication` for anyone: without a Welcome
    /// addressed to some users.
    pub fn of(publication: &'a Publication) -> Self {
        Self::with_welcome(publication, false)
    }

    fn with_welcome(publication: &'a Publication, welcome: bool) -> Self {
        Self {
            offset: publication.position.as_ref().map(|p| p.offset),
            epoch: publication.position.as_ref().map(|p| p.epoch.as_str()),
            from: publication.from.as_ref(),
            data: publication.data_with_welcome(welcome),
            reason: publication.reason,
        }
    }
}

fn event_text<T: Serialize>(channel: &str, action: &str, data: &T) -> String {
    serde_json::to_string(&EventOut {
        kind: "event",
        channel,
        action,
        data,
    })
    .expect("events always serialise")
}

/// The event for a publication, encoded once for every recipient (with
/// `welcome`: as the users a commit's Welcome is for receive it).
pub(crate) fn publication_event(
    channel: &str,
    publication: &Publication,
    welcome: bool,
) -> EncodedMessage {
    let action = match publication.kind {
        PublicationKind::Message => "message",
        PublicationKind::Join => "join",
        PublicationKind::Leave => "leave",
    };
    let text = event_text(
        channel,
        action,
        &PublicationOut::with_welcome(publication, welcome),
    );
    EncodedMessage::new(&Message::text(text))
}

/// A server-event topic's event, encoded once for every recipient.
pub(crate) fn topic_event(topic: &str, data: &Payload) -> EncodedMessage {
    EncodedMessage::new(&Message::text(event_text(topic, "event", data)))
}

/// A `lost` event on `channel` (`data` is `{}` or the last position the
/// members have), encoded once for every recipient.
pub(crate) fn lost_event(channel: &str, data: &Value) -> EncodedMessage {
    EncodedMessage::new(&Message::text(event_text(channel, "lost", data)))
}

/// An event for one session.
pub(crate) fn event(channel: &str, action: &str, data: Value) -> Envelope {
    Envelope {
        kind: Some(Kind::Event),
        channel: Some(channel.to_owned()),
        action: Some(action.to_owned()),
        data: Some(data),
        ..Envelope::default()
    }
}

/// The `expiring` event: the session's token ends in `expires_in`; send
/// `refresh` before then, or the session is closed with
/// [`TOKEN_EXPIRED`](crate::close_codes::TOKEN_EXPIRED).
pub(crate) fn expiring_event(expires_in: std::time::Duration) -> Envelope {
    Envelope {
        kind: Some(Kind::Event),
        action: Some("expiring".to_owned()),
        data: Some(json!({ "expires_in": expires_in.as_secs() })),
        ..Envelope::default()
    }
}

/// What a server sends: a reply to a request, or an event.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The answer to a [`Request`], by its id.
    Reply(Reply),
    /// Something that happened.
    Event(Event),
}

impl ServerMessage {
    /// Reads a message from the server; `None` when it is neither a reply
    /// nor an event (another envelope type, or a reply without `data`).
    pub fn from_envelope(envelope: Envelope) -> Option<Self> {
        match envelope.kind? {
            Kind::Response => Reply::from_envelope(envelope).map(Self::Reply),
            Kind::Event => Some(Self::Event(Event::from_envelope(envelope)?)),
            _ => None,
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The request's id.
    pub id: Option<String>,
    /// The request's channel.
    pub channel: Option<String>,
    /// The request's action.
    pub action: Option<String>,
    /// What the command returned (its `data` without `ok`), or why it was
    /// refused. A code this version does not know reads as
    /// [`ErrorCode::Internal`], with the code in the message.
    pub result: Result<Value, ChannelError>,
}

impl Reply {
    fn from_envelope(envelope: Envelope) -> Option<Self> {
        let Value::Object(mut data) = envelope.data? else {
            return None;
        };
        let result = match data.remove("ok") {
            Some(Value::Bool(true)) => Ok(Value::Object(data)),
            _ => {
                let text = |field: &str| match data.get(field) {
                    Some(Value::String(text)) => text.clone(),
                    _ => String::new(),
                };
                let (code, message) = (text("code"), text("message"));
                Err(match ErrorCode::parse(&code) {
                    Some(code) => ChannelError::new(code, message),
                    None => ChannelError::new(ErrorCode::Internal, format!("{code}: {message}")),
                })
            }
        };
        Some(Self {
            id: envelope.id,
            channel: envelope.channel,
            action: envelope.action,
            result,
        })
    }
}

/// A publication as a member receives it (`message`, `join` and `leave`
/// events), as the server writes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PublicationEvent {
    /// Its offset, in channels with history.
    pub offset: Option<u64>,
    /// Its epoch, in channels with history.
    pub epoch: Option<String>,
    /// Who sent it; `None` for the server.
    pub from: Option<ClientInfo>,
    /// The message (`message` events), as its JSON text.
    pub data: Option<Payload>,
    /// Why a session left (`leave` events).
    pub reason: Option<LeaveReason>,
}

impl PublicationEvent {
    /// Where it is in the channel's history.
    pub fn position(&self) -> Option<Position> {
        Some(Position {
            offset: self.offset?,
            epoch: self.epoch.clone()?,
        })
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The reply to `create` and `join`, as the server writes it and a client
/// reads it (`P`: the publications' type on each side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "P: Deserialize<'de>"))]
pub struct JoinReply<P = PublicationEvent> {
    /// The session's role in the channel.
    pub role: ChannelRole,
    /// The channel carries only end-to-end envelopes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub encrypted: bool,
    /// The newest offset in history, in channels with history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The history's epoch, in channels with history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// For a join with `since`: whether every publication after it is in
    /// `publications` (`false`: some are gone, recover another way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// For a join with `since`: what came after it, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publications: Option<Vec<P>>,
    /// The session was in the channel already (a join that changed
    /// nothing).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rejoined: bool,
    /// In an encrypted channel, the server's identity as its group names
    /// it as external sender (an MLS `SigningIdentity`, base64): the only
    /// one besides members that may propose, and only removals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_sender: Option<String>,
    /// In an encrypted channel, the epoch its group is at as the server
    /// last heard (that of the newest commit that came with a GroupInfo),
    /// read before the history: a device whose group is at an older epoch
    /// once it has handled `publications` missed commits, and asks to be
    /// added again. `None` before any such commit. A server that
    /// overstates it has the device ask for nothing it could not: members
    /// add a device again only at an epoch the group left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_epoch: Option<u64>,
}

impl<P> JoinReply<P> {
    /// Where the channel's history is, in channels with history.
    pub fn position(&self) -> Option<Position> {
        Some(Position {
            offset: self.offset?,
            epoch: self.epoch.clone()?,
        })
    }
}

/// The reply to `publish`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublishReply {
    /// Its offset, in channels with history (the first one's, for a
    /// duplicate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Its epoch, in channels with history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// Nothing was published: an earlier publish with the same
    /// idempotency key was.
    #[serde(default, skip_serializing_if = "is_false")]
    pub duplicate: bool,
}

/// The reply to `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "P: Deserialize<'de>"))]
pub struct HistoryReply<P = PublicationEvent> {
    /// Whether `publications` is all history holds (up to the limit).
    pub complete: bool,
    /// The newest offset in history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The history's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The newest publications, oldest first.
    pub publications: Vec<P>,
}

/// The reply to a custom command: what its handler returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomReply {
    /// The handler's value.
    pub result: Value,
}

/// The reply to `presence`, as the server writes it and a client reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceReply {
    /// The members listed (at most the `limit` asked for).
    pub members: Vec<PresenceMember>,
    /// How many members the channel has.
    pub total: u64,
    /// Whether `members` leaves some out.
    #[serde(default)]
    pub truncated: bool,
}

impl PresenceReply {
    /// The reply listing `members` of `total`.
    pub fn new(members: &[Member], total: u64) -> Self {
        Self {
            truncated: (members.len() as u64) < total,
            members: members.iter().map(PresenceMember::from).collect(),
            total,
        }
    }
}

/// One member in a [`PresenceReply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceMember {
    /// Its session.
    pub session: SessionId,
    /// Its user, if authenticated.
    pub user: Option<String>,
    /// What it said about itself when it joined.
    pub info: Option<Payload>,
    /// Its role.
    pub role: ChannelRole,
}

impl From<&Member> for PresenceMember {
    fn from(member: &Member) -> Self {
        Self {
            session: member.session,
            user: member.user.clone(),
            info: member.info.clone(),
            role: member.role.clone(),
        }
    }
}

/// Something the server tells a session (`PROTOCOL.md`, "Events").
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A publication, a join or a leave in a channel.
    Publication {
        /// The channel.
        channel: String,
        /// Message, join or leave.
        kind: PublicationKind,
        /// What it says.
        publication: PublicationEvent,
    },
    /// This session was removed from `channel`: `kicked`, `banned` or
    /// `closed` (the channel was closed).
    Removed {
        /// The channel.
        channel: String,
        /// Why: [`LeaveReason::Kicked`], [`LeaveReason::Banned`], or
        /// [`LeaveReason::Left`] for a closed channel.
        reason: LeaveReason,
    },
    /// This session's user got a new role in `channel`.
    ChannelRole {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
        /// The role.
        role: ChannelRole,
    },
    /// Publications for this session may be missing in `channel` from
    /// here: join again with `since` to recover.
    Lost {
        /// The channel.
        channel: String,
        /// The last position delivered before the gap, when known.
        last: Option<Position>,
    },
    /// The session's token ends in `expires_in` (whole seconds): send
    /// [`Command::Refresh`] with a new one before then, or the session is
    /// closed with [`TOKEN_EXPIRED`](crate::close_codes::TOKEN_EXPIRED).
    Expiring {
        /// How long the session has left.
        expires_in: std::time::Duration,
    },
    /// A server event on a subscribed topic.
    Topic {
        /// The topic.
        topic: String,
        /// The event's data.
        data: Value,
    },
    /// Any other event (an administrator's `notice`, an application's own).
    Other {
        /// The channel, if any.
        channel: Option<String>,
        /// The event's name.
        action: String,
        /// Its data.
        data: Value,
    },
}

impl Event {
    fn from_envelope(envelope: Envelope) -> Option<Self> {
        let action = envelope.action?;
        let data = envelope.data.unwrap_or(Value::Null);
        let Some(channel) = envelope.channel else {
            if action == "expiring"
                && let Some(seconds) = data.get("expires_in").and_then(Value::as_u64)
            {
                return Some(Self::Expiring {
                    expires_in: std::time::Duration::from_secs(seconds),
                });
            }
            return Some(Self::Other {
                channel: None,
                action,
                data,
            });
        };
        let publication = |kind, data: Value| {
            let publication = serde_json::from_value(data.clone()).ok()?;
            Some(Self::Publication {
                channel: channel.clone(),
                kind,
                publication,
            })
        };
        let removed = |reason| {
            Some(Self::Removed {
                channel: channel.clone(),
                reason,
            })
        };
        match action.as_str() {
            "message" => publication(PublicationKind::Message, data),
            "join" => publication(PublicationKind::Join, data),
            "leave" => publication(PublicationKind::Leave, data),
            "kicked" => removed(LeaveReason::Kicked),
            "banned" => removed(LeaveReason::Banned),
            "closed" => removed(LeaveReason::Left),
            "role" => Some(Self::ChannelRole {
                user: data.get("user")?.as_str()?.to_owned(),
                role: crate::config::parse_role(data.get("role")?.as_str()?),
                channel,
            }),
            "lost" => Some(Self::Lost {
                last: serde_json::from_value(data).ok(),
                channel,
            }),
            "event" => Some(Self::Topic {
                topic: channel,
                data,
            }),
            _ => Some(Self::Other {
                channel: Some(channel),
                action,
                data,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The envelope an encoded frame carries (its payload is the frame's
    /// last `payload_len` bytes).
    fn sent(message: EncodedMessage) -> Envelope {
        let frame = message.as_bytes();
        Envelope::from_slice(&frame[frame.len() - message.payload_len()..]).unwrap()
    }

    #[test]
    fn an_encrypted_channel_keeps_at_least_one_publication() {
        let Command::Create { history_size, .. } = Command::create_encrypted(0) else {
            unreachable!("a create")
        };
        assert_eq!(history_size, Some(1));
    }

    #[test]
    fn every_command_a_client_encodes_is_the_one_the_server_parses() {
        let info = Some(Payload::new(&json!({"name": "Ann"})));
        let commands = [
            Command::Create {
                max_participants: Some(5),
                history_size: Some(100),
                history_ttl: Some(60),
                presence_events: true,
                encrypted: true,
                info: info.clone(),
            },
            Command::create(),
            Command::Join {
                since: Some(Position {
                    offset: 7,
                    epoch: "e1".into(),
                }),
                info,
            },
            Command::Join {
                since: None,
                info: None,
            },
            Command::Leave,
            Command::Publish {
                data: Payload::new(&json!({"text": "hi", "n": [1, 2]})),
                idempotency_key: Some("retry-1".into()),
            },
            Command::Publish {
                data: Payload::new(&json!("plain")),
                idempotency_key: None,
            },
            Command::Kick {
                target: Target::User("bob".into()),
            },
            Command::Kick {
                target: Target::Session(SessionId(0xfeed)),
            },
            Command::Ban {
                user: "bob".into(),
                duration: Some(3600),
            },
            Command::Ban {
                user: "bob".into(),
                duration: None,
            },
            Command::Unban { user: "bob".into() },
            Command::Presence { limit: Some(10) },
            Command::History { limit: None },
            Command::SetRole {
                user: "cy".into(),
                role: ChannelRole::new("moderator"),
            },
            Command::SetRole {
                user: "cy".into(),
                role: ChannelRole::OWNER,
            },
            Command::Close,
            Command::Subscribe {
                filter: Some(json!({"region": ["eu", "us"]})),
            },
            Command::Subscribe { filter: None },
            Command::Unsubscribe,
            Command::Commit {
                commit: "AAEC".into(),
                welcome: Some("AwQF".into()),
                welcome_to: Some(vec!["ann".into(), "bob".into()]),
                group_info: Some("BgcI".into()),
            },
            Command::Commit {
                commit: "AAEC".into(),
                welcome: None,
                welcome_to: None,
                group_info: None,
            },
            Command::KeyPackages {
                key_packages: vec!["AAEC".into(), "AwQF".into()],
                last_resort: Some("BgcI".into()),
            },
            Command::KeyPackages {
                key_packages: Vec::new(),
                last_resort: None,
            },
            Command::Refresh {
                token: Token::new("eyJ.a.b"),
            },
            Command::Claim {
                user: "bo".into(),
                except: Vec::new(),
            },
            Command::Claim {
                user: "bo".into(),
                except: vec!["3f2a".into()],
            },
            Command::Custom {
                name: "roll".into(),
                data: json!({"sides": 6}),
            },
        ];
        for command in commands {
            let request = Request::new("room", command);
            let envelope = request.to_envelope("7");
            assert_eq!(envelope.id.as_deref(), Some("7"));
            // Through the wire's text, as a client sends it.
            let text = envelope.to_message();
            let parsed = Request::parse(
                Envelope::from_slice(text.as_text().unwrap().as_bytes()).unwrap(),
                |name| name == "roll",
            );
            assert_eq!(parsed.as_ref(), Ok(&request), "{text}");
        }
    }

    #[test]
    fn replies_the_server_writes_read_back_as_results() {
        let to = ReplyTo {
            id: Some("3".into()),
            channel: Some("room".into()),
            action: Some("publish".into()),
        };
        let ok = ServerMessage::from_envelope(to.ok(json!({"offset": 4, "epoch": "e"})));
        assert_eq!(
            ok,
            Some(ServerMessage::Reply(Reply {
                id: Some("3".into()),
                channel: Some("room".into()),
                action: Some("publish".into()),
                result: Ok(json!({"offset": 4, "epoch": "e"})),
            }))
        );
        for code in [
            ErrorCode::NotFound,
            ErrorCode::Forbidden,
            ErrorCode::Full,
            ErrorCode::Banned,
            ErrorCode::Limit,
            ErrorCode::BadRequest,
            ErrorCode::AlreadyExists,
            ErrorCode::NotMember,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::UnknownCommand,
        ] {
            let refusal = ChannelError::new(code, "because");
            let Some(ServerMessage::Reply(reply)) =
                ServerMessage::from_envelope(to.error(&refusal))
            else {
                panic!("not a reply");
            };
            assert_eq!(reply.result, Err(refusal));
        }
        // A code from a newer server is kept, not lost.
        let newer = Envelope::from_slice(
            br#"{"type":"response","id":"9","data":{"ok":false,"code":"gone","message":"bye"}}"#,
        )
        .unwrap();
        let Some(ServerMessage::Reply(reply)) = ServerMessage::from_envelope(newer) else {
            panic!("not a reply");
        };
        assert_eq!(
            reply.result,
            Err(ChannelError::new(ErrorCode::Internal, "gone: bye"))
        );
    }

    #[test]
    fn typed_replies_the_server_writes_read_back() {
        let to = ReplyTo::default();
        let read = |data: Value| match ServerMessage::from_envelope(to.ok(data)) {
            Some(ServerMessage::Reply(reply)) => reply.result.unwrap(),
            other => panic!("not a reply: {other:?}"),
        };
        let mut kept = Publication::message(None, Payload::new(&json!("hi")));
        kept.position = Some(Position {
            offset: 2,
            epoch: "e".into(),
        });
        let written = JoinReply {
            role: ChannelRole::OWNER,
            encrypted: true,
            offset: Some(2),
            epoch: Some("e".into()),
            recovered: Some(false),
            publications: Some(vec![PublicationOut::of(&kept)]),
            rejoined: false,
            external_sender: Some("AAEC".into()),
            group_epoch: Some(7),
        };
        let joined: JoinReply = serde_json::from_value(read(json!(written))).unwrap();
        assert_eq!(joined.role, ChannelRole::OWNER);
        assert!(joined.encrypted && !joined.rejoined);
        assert_eq!(joined.external_sender.as_deref(), Some("AAEC"));
        assert_eq!(joined.group_epoch, Some(7));
        assert_eq!(joined.position(), kept.position);
        assert_eq!(joined.recovered, Some(false));
        let publications = joined.publications.unwrap();
        assert_eq!(publications[0].position(), kept.position);
        assert_eq!(
            publications[0].data.as_ref().unwrap().to_value(),
            json!("hi")
        );

        let published = PublishReply {
            offset: Some(9),
            epoch: Some("e".into()),
            duplicate: true,
        };
        assert_eq!(
            serde_json::from_value::<PublishReply>(read(json!(published.clone()))).unwrap(),
            published
        );
        // A channel without history: nothing but `ok`.
        assert_eq!(read(json!(PublishReply::default())), json!({}));
        let history: HistoryReply<PublicationOut<'_>> = HistoryReply {
            complete: true,
            offset: Some(2),
            epoch: Some("e".into()),
            publications: vec![PublicationOut::of(&kept)],
        };
        let history: HistoryReply = serde_json::from_value(read(json!(history))).unwrap();
        assert!(history.complete);
        assert_eq!(history.publications.len(), 1);
    }

    #[test]
    fn events_the_server_writes_read_back_typed() {
        let from = ClientInfo {
            session: SessionId(9),
            user: Some("ann".into()),
            info: None,
        };
        let mut message = Publication::message(Some(from.clone()), Payload::new(&json!({"t": 1})));
        message.position = Some(Position {
            offset: 5,
            epoch: "e".into(),
        });
        let Some(ServerMessage::Event(Event::Publication {
            channel,
            kind,
            publication,
        })) = ServerMessage::from_envelope(sent(publication_event("room", &message, false)))
        else {
            panic!("not a publication");
        };
        assert_eq!((channel.as_str(), kind), ("room", PublicationKind::Message));
        assert_eq!(publication.position(), message.position);
        assert_eq!(publication.from, Some(from.clone()));
        assert_eq!(
            publication.data.map(|d| d.to_value()),
            Some(json!({"t": 1}))
        );
        let leave = Publication {
            kind: PublicationKind::Leave,
            position: None,
            from: Some(from),
            data: None,
            reason: Some(LeaveReason::Banned),
            welcome: None,
        };
        let Some(ServerMessage::Event(Event::Publication { publication, .. })) =
            ServerMessage::from_envelope(sent(publication_event("room", &leave, false)))
        else {
            panic!("not a publication");
        };
        assert_eq!(publication.reason, Some(LeaveReason::Banned));
        assert_eq!(
            ServerMessage::from_envelope(sent(topic_event("alerts", &Payload::new(&json!(3))))),
            Some(ServerMessage::Event(Event::Topic {
                topic: "alerts".into(),
                data: json!(3)
            }))
        );
        let typed = |envelope| match ServerMessage::from_envelope(envelope) {
            Some(ServerMessage::Event(event)) => event,
            other => panic!("not an event: {other:?}"),
        };
        assert_eq!(
            typed(event("room", "lost", json!({"offset": 4, "epoch": "e"}))),
            Event::Lost {
                channel: "room".into(),
                last: Some(Position {
                    offset: 4,
                    epoch: "e".into()
                })
            }
        );
        let expiring = expiring_event(std::time::Duration::from_millis(30_900));
        assert_eq!(expiring.channel, None);
        assert_eq!(
            typed(expiring),
            Event::Expiring {
                expires_in: std::time::Duration::from_secs(30)
            }
        );
        assert_eq!(format!("{:?}", Token::new("secret")), "Token(..)");
        assert_eq!(
            typed(event("room", "lost", json!({}))),
            Event::Lost {
                channel: "room".into(),
                last: None
            }
        );
        for (action, reason) in [
            ("kicked", LeaveReason::Kicked),
            ("banned", LeaveReason::Banned),
            ("closed", LeaveReason::Left),
        ] {
            assert_eq!(
                typed(event("room", action, json!({}))),
                Event::Removed {
                    channel: "room".into(),
                    reason
                }
            );
        }
        assert_eq!(
            typed(event(
                "room",
                "role",
                json!({"user": "cy", "role": ChannelRole::new("mod")})
            )),
            Event::ChannelRole {
                channel: "room".into(),
                user: "cy".into(),
                role: ChannelRole::new("mod")
            }
        );
    }

    fn command(text: &str) -> Result<Request, ChannelError> {
        parse(Envelope::from_slice(text.as_bytes()).unwrap(), |name| {
            name == "roll"
        })
    }

    #[test]
    fn commands_parse_with_their_data() {
        let join = command(
            r#"{"type":"command","id":"1","channel":"room","action":"join","data":{"since":{"offset":3,"epoch":"e"}}}"#,
        )
        .unwrap();
        assert_eq!(join.channel, "room");
        assert_eq!(
            join.command,
            Command::Join {
                since: Some(Position {
                    offset: 3,
                    epoch: "e".into()
                }),
                info: None
            }
        );
        let kick = command(
            r#"{"type":"command","channel":"room","action":"kick","data":{"session":"00000000000000ff"}}"#,
        )
        .unwrap();
        assert_eq!(
            kick.command,
            Command::Kick {
                target: Target::Session(SessionId(255))
            }
        );
        let custom =
            command(r#"{"type":"command","channel":"room","action":"roll","data":[6]}"#).unwrap();
        assert_eq!(
            custom.command,
            Command::Custom {
                name: "roll".into(),
                data: json!([6])
            }
        );
    }

    #[test]
    fn malformed_commands_say_why() {
        for (text, code) in [
            (
                r#"{"type":"event","channel":"r","action":"join"}"#,
                ErrorCode::BadRequest,
            ),
            (
                r#"{"type":"command","action":"join"}"#,
                ErrorCode::BadRequest,
            ),
            (
                r#"{"type":"command","channel":"r","action":"fly"}"#,
                ErrorCode::UnknownCommand,
            ),
            (
                r#"{"type":"command","channel":"r","action":"publish"}"#,
                ErrorCode::BadRequest,
            ),
            (
                r#"{"type":"command","channel":"r","action":"join","data":{"sinse":1}}"#,
                ErrorCode::BadRequest,
            ),
            (
                r#"{"type":"command","channel":"r","action":"kick","data":{"user":"a","session":"01"}}"#,
                ErrorCode::BadRequest,
            ),
        ] {
            assert_eq!(command(text).unwrap_err().code, code, "{text}");
        }
    }

    #[test]
    fn filters_match_fields() {
        let filter = Filter::parse(json!({"printer": ["p1", "p2"], "level": "error"})).unwrap();
        assert!(filter.matches(&json!({"printer": "p2", "level": "error", "x": 1})));
        assert!(!filter.matches(&json!({"printer": "p3", "level": "error"})));
        assert!(!filter.matches(&json!({"printer": "p1"})));
        assert!(!filter.matches(&json!("p1")));
        assert!(Filter::parse(json!({})).unwrap().matches(&json!(null)));
        assert!(Filter::parse(json!([1])).is_err());
        assert!(Filter::parse(json!({"a": {"b": 1}})).is_err());
    }

    #[test]
    fn publications_are_events() {
        let publication = Publication {
            kind: PublicationKind::Message,
            position: Some(Position {
                offset: 7,
                epoch: "ab".into(),
            }),
            from: Some(ClientInfo {
                session: SessionId(1),
                user: Some("ann".into()),
                info: None,
            }),
            data: Some(Payload::new(&json!({"text": "hi"}))),
            reason: None,
            welcome: None,
        };
        let encoded = publication_event("room", &publication, false);
        let frame = encoded.as_bytes();
        assert_eq!(frame[0], 0x81, "a final, unmasked text frame");
        assert_eq!(frame[1], 126, "a 16-bit length");
        let text = std::str::from_utf8(&frame[4..]).unwrap();
        assert_eq!(text.len(), encoded.payload_len());
        assert_eq!(
            serde_json::from_str::<Value>(text).unwrap(),
            json!({"type": "event", "channel": "room", "action": "message", "data": {
                "offset": 7, "epoch": "ab",
                "from": {"session": "0000000000000001", "user": "ann"},
                "data": {"text": "hi"}}})
        );
    }
}
