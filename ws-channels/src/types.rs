//! The records the manager, the backends and the wire share: ids,
//! positions, publications, members, roles, control messages and errors.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Broker topics of server-event topics start with this; channel names
/// cannot, so the two never meet.
pub const TOPIC_PREFIX: &str = "$topic:";

/// One WebSocket connection taking part in channels. Its value is the
/// connection's id, which the server draws from a CSPRNG, so ids are
/// neither predictable nor reused. Written as 16 hex digits on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl std::str::FromStr for SessionId {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(text, 16).map(Self)
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom("a session id is 16 hex digits"))
    }
}

/// One server process in a cluster (one [`ChannelManager`](crate::ChannelManager)).
/// Presence entries carry it so that a node's entries can expire together
/// when it stops refreshing them. Written as 16 hex digits in JSON (a
/// number above 2^53 would lose digits in JavaScript and other readers
/// that take numbers as doubles); a number is read too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written<'a> {
            Number(u64),
            Text(#[serde(borrow)] Cow<'a, str>),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(n) => Ok(Self(n)),
            Written::Text(text) => u64::from_str_radix(&text, 16)
                .map(Self)
                .map_err(|_| serde::de::Error::custom("a node id is 16 hex digits")),
        }
    }
}

impl NodeId {
    /// A node id from the operating system's random source.
    pub fn random() -> Self {
        let mut bytes = [0; 8];
        // A node without randomness could not draw session ids either.
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        Self(u64::from_le_bytes(bytes))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Where a publication sits in its channel's history: an offset that
/// grows by one per publication, within an epoch that changes whenever the
/// history is lost and begun again (a broker restart, a channel made anew),
/// so an offset from an older epoch is never taken for a newer one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The publication's number within the epoch, from 1.
    pub offset: u64,
    /// The history's identity.
    pub epoch: String,
}

/// A JSON value held as its text, checked once when made, so it can be
/// written into every delivery without being encoded again.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(Arc<str>);

impl Payload {
    /// The text of `value`.
    pub fn new(value: &Value) -> Self {
        Self(value.to_string().into())
    }

    /// Checks that `text` is one JSON value.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)?;
        Ok(Self(text.into()))
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The length of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: the shortest JSON value is one byte.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this is an end-to-end envelope: a JSON object whose `e2e`
    /// field is a non-empty string naming the envelope's kind. What the
    /// kinds are and what else the object carries belongs to the
    /// end-to-end client (`ws-crypto`, the page's module); the server only
    /// tells an envelope from plaintext.
    pub fn is_e2e_envelope(&self) -> bool {
        self.e2e_kind().is_some_and(|kind| !kind.is_empty())
    }

    /// The kind an end-to-end envelope names in its `e2e` field, if this
    /// is one.
    pub fn e2e_kind(&self) -> Option<Cow<'_, str>> {
        #[derive(Deserialize)]
        struct Tagged<'a> {
            // Borrowed unless the string has escapes.
            #[serde(borrow)]
            e2e: Cow<'a, str>,
        }
        serde_json::from_str::<Tagged<'_>>(&self.0)
            .ok()
            .map(|tagged| tagged.e2e)
    }

    /// The value, parsed.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 64;
        match self.0.char_indices().nth(SHOWN) {
            None => write!(f, "Payload({})", self.0),
            Some((end, _)) => write!(f, "Payload({}… {} bytes)", &self.0[..end], self.0.len()),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue =
            serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(Self(raw.get().into()))
    }
}

/// Who sent a publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The publishing session.
    pub session: SessionId,
    /// Its authenticated user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What it said about itself when it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Payload>,
}

/// What a publication is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublicationKind {
    /// Data published to the channel (kept in history when the channel
    /// has one).
    Message,
    /// A session joined (channels with presence events only; never kept).
    Join,
    /// A session left (channels with presence events only; never kept).
    Leave,
}

/// Why a session left a channel, as its `leave` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaveReason {
    /// It sent `leave`.
    Left,
    /// Its connection closed.
    Disconnected,
    /// It was kicked (by a member with the right, or the server).
    Kicked,
    /// Its user was banned.
    Banned,
    /// Its presence expired: its node stopped refreshing it (crashed, cut
    /// off from the broker).
    Expired,
}

/// What travels through the broker to every node with participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Message, join or leave.
    pub kind: PublicationKind,
    /// Its place in history, set by the broker for messages of channels
    /// that keep history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
    /// The sender; `None` for the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<ClientInfo>,
    /// The data; `None` for join and leave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Payload>,
    /// Why the session left, for `leave`; `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<LeaveReason>,
    /// An end-to-end group commit's Welcome, delivered (inside `data`, as
    /// its `welcome`) only to the sessions of the users it adds; `None`
    /// for everything else, and for a commit whose author did not say whom
    /// its Welcome is for (then `data` carries it to everyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome: Option<Welcome>,
}

/// A Welcome that goes with a commit to the users it adds, not to every
/// member: in a group of 1,000 it is about 177 KB (it carries the ratchet
/// tree), which every member would receive and none but the newcomers can
/// open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The users whose sessions receive it (the committer's word: it only
    /// decides who hears of its own add).
    pub users: Vec<String>,
    /// The Welcome, base64.
    pub message: String,
}

impl Publication {
    /// About the size of its JSON, in bytes, without writing it: what
    /// history budgets count.
    pub fn weight(&self) -> usize {
        const FIELDS: usize = 96;
        let from = self.from.as_ref().map_or(0, |from| {
            48 + from.user.as_ref().map_or(0, String::len)
                + from.info.as_ref().map_or(0, Payload::len)
        });
        let welcome = self.welcome.as_ref().map_or(0, |welcome| {
            welcome.message.len() + welcome.users.iter().map(|u| u.len() + 3).sum::<usize>()
        });
        FIELDS + from + self.data.as_ref().map_or(0, Payload::len) + welcome
    }

    /// Whether its Welcome is for `user`.
    pub fn welcomes(&self, user: Option<&str>) -> bool {
        self.welcome
            .as_ref()
            .is_some_and(|welcome| user.is_some_and(|user| welcome.users.iter().any(|u| u == user)))
    }

    /// `data` as the users its Welcome is for receive it (`welcome`: with
    /// the Welcome as its `welcome` field) or as everyone else does.
    pub fn data_with_welcome(&self, welcome: bool) -> Option<Payload> {
        let data = self.data.as_ref()?;
        match self.welcome.as_ref().filter(|_| welcome) {
            Some(welcome) => {
                let mut value = data.to_value();
                if let Some(fields) = value.as_object_mut() {
                    fields.insert("welcome".into(), Value::String(welcome.message.clone()));
                }
                Some(Payload::new(&value))
            }
            None => Some(data.clone()),
        }
    }

    /// A message with `data` from `from` (the server when `None`).
    pub fn message(from: Option<ClientInfo>, data: Payload) -> Self {
        Self {
            kind: PublicationKind::Message,
            position: None,
            from,
            data: Some(data),
            reason: None,
            welcome: None,
        }
    }
}

/// How much history a channel keeps: what a broker needs on every publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySpec {
    /// At most this many publications.
    pub size: u32,
    /// Each for at most this long.
    #[serde(with = "duration_secs")]
    pub ttl: Duration,
    /// At most this many bytes of publications (their JSON), the oldest
    /// going first.
    pub max_bytes: u64,
}

/// [`ChannelsConfig::max_history_bytes`](crate::ChannelsConfig::max_history_bytes)'s
/// default, and the budget of channels stored before there was one.
pub(crate) const DEFAULT_HISTORY_BYTES: u64 = 4 << 20;

/// The per-channel history budget of channels stored before it existed.
fn default_history_bytes() -> u64 {
    DEFAULT_HISTORY_BYTES
}

/// A channel's settings, fixed when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOptions {
    /// Participants (sessions) at most.
    pub max_participants: u32,
    /// Publications kept for recovery; 0 keeps none (then joins cannot
    /// recover and publications carry no offset).
    pub history_size: u32,
    /// How long each kept publication stays.
    #[serde(with = "duration_secs")]
    pub history_ttl: Duration,
    /// Bytes of publications (their JSON) the history keeps at most; the
    /// oldest go first.
    #[serde(default = "default_history_bytes")]
    pub history_bytes: u64,
    /// Whether participants get `join` and `leave` events.
    pub presence_events: bool,
    /// An end-to-end encrypted channel: its publications must be
    /// end-to-end envelopes (objects tagged `{"e2e": "<kind>", ...}`, see
    /// [`Payload::is_e2e_envelope`]), so no client publishes plaintext
    /// into it by mistake. The server checks the tag; it cannot read the
    /// content. Default: false.
    #[serde(default)]
    pub encrypted: bool,
    /// How long the channel, and its history, outlives its last member,
    /// so sessions that reconnect can join again and recover.
    #[serde(with = "duration_secs")]
    pub linger: Duration,
}

impl ChannelOptions {
    /// The history a broker keeps, if any.
    pub fn history(&self) -> Option<HistorySpec> {
        (self.history_size > 0 && !self.history_ttl.is_zero()).then_some(HistorySpec {
            size: self.history_size,
            ttl: self.history_ttl,
            max_bytes: self.history_bytes,
        })
    }
}

pub(crate) mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A role in a channel. Owners may use every command; participants may
/// publish, leave and read presence; applications add roles of their own
/// ([`ChannelsConfig::role`](crate::ChannelsConfig::role)).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelRole(Cow<'static, str>);

impl ChannelRole {
    /// The creator of a channel, and whoever it makes owner.
    pub const OWNER: ChannelRole = ChannelRole(Cow::Borrowed("owner"));
    /// Everyone else, by default.
    pub const PARTICIPANT: ChannelRole = ChannelRole(Cow::Borrowed("participant"));

    /// A role named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// Its name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ChannelRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelRole({})", self.0)
    }
}

impl fmt::Display for ChannelRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One session's entry in a channel's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The session.
    pub session: SessionId,
    /// The node it is connected to.
    pub node: NodeId,
    /// Its authenticated user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What it said about itself when it joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Payload>,
    /// Its role.
    pub role: ChannelRole,
}

/// What a presence store grants a session that joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGrant {
    /// The channel's settings.
    pub options: ChannelOptions,
    /// The role the session holds.
    pub role: ChannelRole,
}

/// A channel's roster, as much of it as was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Roster {
    /// Members, oldest first, at most the limit asked for.
    pub members: Vec<Member>,
    /// How many members there are in all.
    pub total: usize,
}

/// A channel as a presence store knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub options: ChannelOptions,
    /// How many members it has.
    pub members: usize,
}

/// A page of history read for a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// The publications after the position asked for, oldest first; empty
    /// when the history no longer covers that position.
    pub publications: Vec<Publication>,
    /// The newest position in the history (offset 0 when nothing was ever
    /// published in this epoch).
    pub top: Option<Position>,
    /// Whether `publications` is every publication after the position
    /// asked for: false when the epoch changed, when some were trimmed or
    /// expired, or when more than the limit are missing.
    pub complete: bool,
}

/// Whom a kick removes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// One session.
    Session(SessionId),
    /// Every session of a user.
    User(String),
}

impl Target {
    /// Whether the session of `user` is targeted.
    pub fn matches(&self, session: SessionId, user: Option<&str>) -> bool {
        match self {
            Self::Session(s) => *s == session,
            Self::User(u) => user == Some(u.as_str()),
        }
    }
}

/// Why sessions were removed from a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Removal {
    /// Kicked: may join again.
    Kicked,
    /// Banned: may not join again until unbanned or the ban ends.
    Banned,
}

/// A message to every node, through the [`Controller`](crate::backend::Controller).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ControlMessage {
    /// Remove the target's sessions from a channel (its presence entries
    /// are already gone).
    Remove {
        /// The channel.
        channel: String,
        /// Whom.
        target: Target,
        /// Why.
        reason: Removal,
    },
    /// A user's role in a channel changed.
    RoleChanged {
        /// The channel.
        channel: String,
        /// The user.
        user: String,
        /// The new role.
        role: ChannelRole,
    },
    /// A channel was closed: every participant is out.
    Closed {
        /// The channel.
        channel: String,
    },
    /// Close every connection of the target with a code and reason.
    Disconnect {
        /// Whom.
        target: Target,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// The stable code of a refused command, as sent in error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No such channel, topic, member or session.
    NotFound,
    /// The session's role does not allow the command, or anonymous
    /// sessions may not use it.
    Forbidden,
    /// The channel has its maximum of participants.
    Full,
    /// The user is banned from the channel.
    Banned,
    /// A limit was reached: channels or topics per session, command rate,
    /// payload, name or filter size, channels in all.
    Limit,
    /// The command is malformed: missing or ill-typed fields, a bad name.
    BadRequest,
    /// A channel of that name exists.
    AlreadyExists,
    /// The command needs the session to be in the channel.
    NotMember,
    /// The backend (broker, presence store, controller) failed; retrying
    /// later may succeed.
    Unavailable,
    /// A custom command's handler failed.
    Internal,
    /// No command of that name.
    UnknownCommand,
    /// A commit for an epoch the channel's end-to-end group is not at
    /// (another commit won it): take in the channel's newest commit and
    /// commit again on top.
    Conflict,
}

impl ErrorCode {
    /// The code as written on the wire, e.g. `"not_found"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::Full => "full",
            Self::Banned => "banned",
            Self::Limit => "limit",
            Self::BadRequest => "bad_request",
            Self::AlreadyExists => "already_exists",
            Self::NotMember => "not_member",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::UnknownCommand => "unknown_command",
            Self::Conflict => "conflict",
        }
    }

    /// The code `as_str` writes, read back; `None` for a code this
    /// version does not know.
    pub fn parse(code: &str) -> Option<Self> {
        [
            Self::NotFound,
            Self::Forbidden,
            Self::Full,
            Self::Banned,
            Self::Limit,
            Self::BadRequest,
            Self::AlreadyExists,
            Self::NotMember,
            Self::Unavailable,
            Self::Internal,
            Self::UnknownCommand,
            Self::Conflict,
        ]
        .into_iter()
        .find(|known| known.as_str() == code)
    }

    /// Whether the error is the client's fault, and so counts towards
    /// closing a session that keeps sending bad commands.
    pub fn is_violation(self) -> bool {
        matches!(self, Self::Limit | Self::BadRequest | Self::UnknownCommand)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a command was not carried out, as its session is told: a stable
/// code and a message for people. Backends answer in the same terms on
/// purpose: a store decides admission (`full`, `banned`, `not_found`) and
/// its refusal is the client's answer, and a broker that cannot be reached
/// is `unavailable` to the client too; nothing is translated in between.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ChannelError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: Cow<'static, str>,
}

impl ChannelError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A backend failure ([`ErrorCode::Unavailable`]).
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Node ids are 64-bit: as JSON numbers, readers that use doubles
    // (JavaScript, jq) would change those above 2^53.
    #[test]
    fn node_ids_are_written_as_hex_and_read_either_way() {
        let node = NodeId(u64::MAX - 6);
        let json = serde_json::to_string(&node).unwrap();
        assert_eq!(json, "\"fffffffffffffff9\"");
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), node);
        assert_eq!(
            serde_json::from_str::<NodeId>("18446744073709551609").unwrap(),
            node,
            "entries written before as numbers"
        );
        assert!(serde_json::from_str::<NodeId>("\"not hex\"").is_err());
        let member: Member = serde_json::from_value(serde_json::json!({
            "session": "00000000000000ff", "node": "0000000000000001", "role": "owner"
        }))
        .unwrap();
        assert_eq!(member.node, NodeId(1));
    }
}
