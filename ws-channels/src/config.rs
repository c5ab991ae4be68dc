//! Limits and options. Every limit is on by default; the defaults are in
//! each field's documentation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::e2e::GroupReader;
use crate::types::{ChannelOptions, ChannelRole, DEFAULT_HISTORY_BYTES, duration_secs};

/// Close codes a channels server sends, in the range RFC 6455 leaves to
/// applications (4000-4999), besides 1008 (policy violation).
pub mod close_codes {
    use ws_core::CloseCode;

    /// Anonymous sessions are not allowed here: authenticate and connect
    /// again.
    pub const UNAUTHORIZED: CloseCode = CloseCode::new(4001);
    /// The session could not keep up: messages could not be queued for it
    /// (its send queue was full). Reconnecting and recovering is safe.
    pub const SLOW: CloseCode = CloseCode::new(4008);
    /// The server disconnected the session on purpose (an operator or the
    /// application); do not reconnect automatically.
    pub const DISCONNECTED: CloseCode = CloseCode::new(4009);
    /// The session's token expired and no `refresh` replaced it:
    /// reconnect with a new token. Reconnecting and recovering is safe.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode::new(4011);
}

/// What happens to a session whose send queue is full when a delivery
/// for it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowSubscriber {
    /// Close it with [`close_codes::SLOW`] and the reason `"slow: send
    /// queue full"`. Default.
    #[default]
    Disconnect,
    /// Keep it, and send it a `lost` event for the channel ahead of the
    /// next delivery that fits, so it can recover the gap by joining again
    /// with `since`.
    MarkLost,
}

/// How a channels node behaves and what it allows.
///
/// It reads from (and writes to) any serde format with the field names as
/// keys and durations in seconds, every field optional (a missing one has
/// its default), unknown keys refused: `ws serve` takes it as the
/// `[channels]` table of its settings file. `topics` read `"everyone"` or
/// `{ roles = [...] }`; `commands`, which need handlers, are set in code
/// only. Call [`check`](Self::check) on what was read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// Channels (joined or being joined) per session. Default 128.
    pub max_channels_per_session: usize,
    /// Channel and topic name length in bytes. Names are 1 to this many
    /// characters from `A-Z a-z 0-9 _ - . : @ / =`. Default 128.
    pub max_name_len: usize,
    /// Channels in all, as the presence store counts them. Default 100,000.
    pub max_channels: usize,
    /// Channels one user may have created that still exist (a channel
    /// lives on for `channel_linger` after its last member leaves), so no
    /// user can take `max_channels` for itself. Default 1,000.
    pub max_channels_per_user: usize,
    /// The most participants a `create` may ask for, and what it gets when
    /// it asks for none. Default 100,000.
    pub max_participants: u32,
    /// The most history a `create` may ask for, in publications. Default
    /// 1,000; channels keep none unless asked.
    pub max_history_size: u32,
    /// The longest history TTL a `create` may ask for. Default 24 hours;
    /// when a channel asks for history without a TTL it gets 5 minutes.
    #[serde(with = "duration_secs")]
    pub max_history_ttl: Duration,
    /// Bytes of publications (about their JSON) one channel's history
    /// keeps, the oldest going first, so history costs memory by what it
    /// holds rather than by counts (1,000 publications of 64 KiB would be
    /// 64 MiB a channel). A recovery from further back than history
    /// reaches answers `recovered: false`. Default 4 MiB. The in-process
    /// backend also caps the history of all channels together
    /// ([`MemoryBackend::max_history_bytes`](crate::MemoryBackend::max_history_bytes)).
    pub max_history_bytes: u64,
    /// Publications one recovery replays at most; a longer gap is reported
    /// as not recovered. Default 1,000.
    pub max_recovery: usize,
    /// Members one `presence` reply lists at most (the total is always
    /// given). Default 1,000.
    pub max_presence_reply: usize,
    /// Size of a publish's data, in bytes of JSON. Default 64 KiB.
    pub max_payload: usize,
    /// Size of a join's `info`, in bytes of JSON. Default 1 KiB.
    pub max_info: usize,
    /// Server-event topics per session. Default 64.
    pub max_topics_per_session: usize,
    /// Size of a topic filter, in bytes of JSON. Default 1 KiB.
    pub max_filter: usize,
    /// Commands per second per session, with bursts of `command_burst`.
    /// [`Channels`](crate::Channels) paces a session that sends faster: it
    /// reads its next command only when the rate allows, so no command is
    /// refused for the rate (see
    /// [`ChannelManager::command_ready_at`](crate::ChannelManager::command_ready_at)).
    /// 0 turns the limit off. Default 50 per second.
    pub command_rate: u64,
    /// See `command_rate`. Default 100.
    pub command_burst: u64,
    /// Refused commands (bad requests, limits, unknown commands) a
    /// session may send in a burst before it is closed with 1008; the
    /// allowance refills at one per second. Default 20.
    pub max_violations: u64,
    /// How long a presence entry lives unless refreshed; the node
    /// refreshes its entries every third of it. Default 60 s.
    #[serde(with = "duration_secs")]
    pub presence_ttl: Duration,
    /// Whether sessions without an identity (see `ws_async::auth`) may use
    /// channels. Default `false`: they are closed with
    /// [`close_codes::UNAUTHORIZED`].
    pub allow_anonymous: bool,
    /// Whether a publisher gets its own publications. Default `true`.
    pub echo: bool,
    /// What happens to a session that cannot keep up. Default
    /// [`SlowSubscriber::Disconnect`].
    pub slow_subscriber: SlowSubscriber,
    /// Whether a session ends when its token does: a session whose
    /// identity carries an `exp` claim (seconds since the Unix epoch, as
    /// in a JWT) is sent an `expiring` event `token_refresh_lead` before
    /// then, and is closed with [`close_codes::TOKEN_EXPIRED`] at `exp`
    /// unless a `refresh` command brought a new token of the same user.
    /// Default `true`: a revoked user's access lasts no longer than its
    /// token.
    pub expire_sessions: bool,
    /// How long before its token's end a session is told to refresh it
    /// (at most half of what the token has left when it arrives).
    /// Default 30 s.
    #[serde(with = "duration_secs")]
    pub token_refresh_lead: Duration,
    /// How long a channel, and its history, outlives its last member, so
    /// that sessions reconnecting after a network failure can join again
    /// and recover. Default 5 minutes.
    #[serde(with = "duration_secs")]
    pub channel_linger: Duration,
    /// How long a user may be away from an encrypted channel (no session
    /// of theirs in it on this node since their last one here left or
    /// disconnected, and none in its presence anywhere) before the server
    /// proposes their removal from the channel's end-to-end group, as it
    /// does for a kick or a ban: membership follows the channel. Checked
    /// at the first presence refresh past it; not in channels of more
    /// than 100,000 members (logged). Zero: never (removals by kick and
    /// ban only). Default 1 hour.
    #[serde(with = "duration_secs")]
    pub group_member_linger: Duration,
    /// Bytes of publications (as [`Publication::weight`](crate::Publication::weight)
    /// counts them) a node hands its members at once when it fills a gap
    /// in a channel's stream from history (after a broker cut it off, say),
    /// with what waited behind the gap. A longer gap is handed out up to
    /// this much, then each member gets a `lost` event with the last
    /// position it has and recovers the rest with `since` in its own
    /// join reply. The fill is the node's burst, not the member's doing:
    /// kept below the send queue (1 MiB by default), it never closes a
    /// member that reads as fast as the network allows as slow. The first
    /// publication goes whatever its size, so a gap always moves on (zero:
    /// one publication, then `lost`). Default 256 KiB.
    pub max_gap_fill_bytes: usize,
    /// Publications buffered for a session while its recovery is read;
    /// past it the session is marked as having lost messages. Default 1,000.
    pub max_recovery_buffer: usize,
    /// Commands each custom role may use (owners may use all, participants
    /// `publish`, `leave`, `presence` and `history`). Empty by default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<ChannelRole, BTreeSet<String>>,
    /// Custom commands and the roles (besides owners) allowed to use them.
    /// Empty by default. Not read from settings: a command needs its
    /// handler, registered in code.
    #[serde(skip)]
    pub commands: BTreeMap<String, BTreeSet<ChannelRole>>,
    /// Topics sessions may subscribe to, and who may. Empty by default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, TopicAccess>,
    /// Size of a `commit` command's commit and Welcome together, in bytes
    /// of base64: end-to-end group handshakes have their own budget,
    /// larger than `max_payload` (a commit removing one of 1,000 MLS
    /// members is about 83 KB, the Welcome adding one to them about
    /// 177 KB). The connection's largest message must let it through too.
    /// Default 1 MiB.
    pub max_handshake: usize,
    /// One-time key packages each device of a user keeps in the key
    /// package directory (besides one last-resort package). Default 100.
    pub max_key_packages_per_device: usize,
    /// Devices per user with key packages in the directory. Default 10.
    pub max_devices_per_user: usize,
    /// Reads end-to-end groups' commits and key packages, so that
    /// encrypted channels take `commit` (ordered by group epoch) and
    /// `claim`, and users `key_packages` ([`crate::e2e`]). `None` by
    /// default: the three are refused. Set in code only.
    #[serde(skip)]
    pub group_reader: Option<Arc<dyn GroupReader>>,
}

/// Who may subscribe to a server-event topic. Others get `forbidden`.
#[derive(Clone)]
#[non_exhaustive]
pub enum TopicAccess {
    /// Every session.
    Everyone,
    /// Sessions whose identity claims one of these roles: a JWT's `roles`
    /// (an array of strings) or `role` (a string) claim.
    Roles(BTreeSet<String>),
    /// Sessions the application's rule lets in, from the topic, the user
    /// and its identity's claims.
    Rule(Arc<dyn Fn(&TopicRequest<'_>) -> bool + Send + Sync>),
}

/// A subscription asked for, as a [`TopicAccess::Rule`] sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct TopicRequest<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The session's user (`None`: anonymous).
    pub user: Option<&'a str>,
    /// Its identity's claims (`Null` when it has none).
    pub claims: &'a serde_json::Value,
}

impl TopicAccess {
    /// [`TopicAccess::Roles`] from names.
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self {
        Self::Roles(roles.into_iter().map(Into::into).collect())
    }

    /// [`TopicAccess::Rule`] from a closure.
    pub fn rule(rule: impl Fn(&TopicRequest<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self::Rule(Arc::new(rule))
    }

    /// Whether the session of `request` may subscribe.
    pub fn allows(&self, request: &TopicRequest<'_>) -> bool {
        match self {
            Self::Everyone => true,
            Self::Roles(roles) => claimed_roles(request.claims).any(|role| roles.contains(role)),
            Self::Rule(rule) => rule(request),
        }
    }

    /// Whether deciding needs the session's claims.
    pub(crate) fn needs_claims(&self) -> bool {
        !matches!(self, Self::Everyone)
    }
}

/// The roles an identity's claims name: `roles` (strings) and `role`.
fn claimed_roles(claims: &serde_json::Value) -> impl Iterator<Item = &str> {
    let listed = claims
        .get("roles")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str);
    listed.chain(claims.get("role").and_then(serde_json::Value::as_str))
}

/// `"everyone"`, or `{ roles = [...] }`; a rule, being code, is written
/// as `"rule"` and cannot be read.
impl Serialize for TopicAccess {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Roles<'a> {
            roles: &'a BTreeSet<String>,
        }
        match self {
            Self::Everyone => serializer.serialize_str("everyone"),
            Self::Roles(roles) => Roles { roles }.serialize(serializer),
            Self::Rule(_) => serializer.serialize_str("rule"),
        }
    }
}

impl<'de> Deserialize<'de> for TopicAccess {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Roles {
            roles: BTreeSet<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Access {
            Name(String),
            Roles(Roles),
        }
        match Access::deserialize(deserializer)? {
            Access::Name(name) if name == "everyone" => Ok(Self::Everyone),
            Access::Name(other) => Err(serde::de::Error::custom(format!(
                "a topic's access is \"everyone\" or {{ roles = [...] }}, not {other:?}"
            ))),
            Access::Roles(Roles { roles }) => Ok(Self::Roles(roles)),
        }
    }
}

impl std::fmt::Debug for TopicAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Everyone => f.write_str("Everyone"),
            Self::Roles(roles) => f.debug_tuple("Roles").field(roles).finish(),
            Self::Rule(_) => f.write_str("Rule(..)"),
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            max_channels_per_session: 128,
            max_name_len: 128,
            max_channels: 100_000,
            max_channels_per_user: 1_000,
            max_participants: 100_000,
            max_history_size: 1_000,
            max_history_ttl: Duration::from_secs(24 * 3600),
            max_history_bytes: DEFAULT_HISTORY_BYTES,
            max_recovery: 1_000,
            max_presence_reply: 1_000,
            max_payload: 64 * 1024,
            max_info: 1024,
            max_topics_per_session: 64,
            max_filter: 1024,
            command_rate: 50,
            command_burst: 100,
            max_violations: 20,
            presence_ttl: Duration::from_secs(60),
            allow_anonymous: false,
            echo: true,
            slow_subscriber: SlowSubscriber::Disconnect,
            expire_sessions: true,
            token_refresh_lead: Duration::from_secs(30),
            channel_linger: Duration::from_secs(300),
            group_member_linger: Duration::from_secs(3600),
            max_gap_fill_bytes: 256 * 1024,
            max_recovery_buffer: 1_000,
            roles: BTreeMap::new(),
            commands: BTreeMap::new(),
            topics: BTreeMap::new(),
            max_handshake: 1 << 20,
            max_key_packages_per_device: 100,
            max_devices_per_user: 10,
            group_reader: None,
        }
    }
}

/// The built-in commands, by their `action` name.
pub(crate) const BUILTIN_COMMANDS: &[&str] = &[
    "create",
    "join",
    "leave",
    "publish",
    "kick",
    "ban",
    "unban",
    "presence",
    "history",
    "role",
    "close",
    "subscribe",
    "unsubscribe",
    "commit",
    "key_packages",
    "claim",
    "refresh",
];

/// What participants may do without being given more.
const PARTICIPANT_COMMANDS: &[&str] = &["publish", "leave", "presence", "history"];

/// The TTL of history asked for without one.
pub(crate) const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(300);

impl ChannelsConfig {
    /// Adds a custom role allowed to use `commands` (built-in or custom).
    pub fn role<I, S>(mut self, role: &str, commands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles.insert(
            ChannelRole::new(role),
            commands.into_iter().map(Into::into).collect(),
        );
        self
    }

    /// Adds a custom command that owners and `roles` may use. Its handler
    /// is registered on [`Channels`](crate::Channels).
    ///
    /// # Panics
    ///
    /// If `name` is a built-in command's (`create`, `join`, `publish`...):
    /// the built-in would always be the one run.
    pub fn command<I, S>(mut self, name: &str, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        assert!(
            !BUILTIN_COMMANDS.contains(&name),
            "{name:?} is a built-in channels command; give the custom command another name"
        );
        self.commands.insert(
            name.to_owned(),
            roles.into_iter().map(|r| role_named(r.as_ref())).collect(),
        );
        self
    }

    /// Adds a topic, and who may subscribe to it (an open topic says
    /// [`TopicAccess::Everyone`]).
    pub fn topic(mut self, name: &str, access: TopicAccess) -> Self {
        self.topics.insert(name.to_owned(), access);
        self
    }

    /// Checks what cannot work: a custom role named `owner` or
    /// `participant` or not a valid name, a topic with an invalid name, a
    /// burst of 0 commands with a rate on, a presence TTL under a second,
    /// limits of 0 on names, payloads or channels a user may create. The
    /// message names the field. (ROBUSTNESS 123)
    pub fn check(&self) -> Result<(), String> {
        for role in self.roles.keys() {
            if *role == ChannelRole::OWNER || *role == ChannelRole::PARTICIPANT {
                return Err(format!(
                    "roles: {:?} is built in; give the custom role another name",
                    role.as_str()
                ));
            }
            if !self.is_valid_name(role.as_str()) {
                return Err(format!("roles: {:?} is not a valid name", role.as_str()));
            }
        }
        if let Some(topic) = self.topics.keys().find(|topic| !self.is_valid_name(topic)) {
            return Err(format!("topics: {topic:?} is not a valid name"));
        }
        if self.command_rate > 0 && self.command_burst == 0 {
            return Err("command_burst: must be at least 1 while command_rate is on".into());
        }
        if self.presence_ttl < Duration::from_secs(1) {
            return Err("presence_ttl: must be at least 1 second".into());
        }
        for (field, value) in [
            ("max_name_len", self.max_name_len),
            ("max_payload", self.max_payload),
            ("max_handshake", self.max_handshake),
            (
                "max_key_packages_per_device",
                self.max_key_packages_per_device,
            ),
            ("max_devices_per_user", self.max_devices_per_user),
            ("max_channels_per_user", self.max_channels_per_user),
            ("max_channels_per_session", self.max_channels_per_session),
        ] {
            if value == 0 {
                return Err(format!("{field}: must be at least 1"));
            }
        }
        Ok(())
    }

    /// Whether `name` is a valid channel or topic name.
    pub fn is_valid_name(&self, name: &str) -> bool {
        !name.is_empty()
            && name.len() <= self.max_name_len
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'_' | b'-' | b'.' | b':' | b'@' | b'/' | b'=')
            })
    }

    /// Whether `role` names a role this node knows.
    pub fn is_known_role(&self, role: &ChannelRole) -> bool {
        *role == ChannelRole::OWNER
            || *role == ChannelRole::PARTICIPANT
            || self.roles.contains_key(role)
    }

    /// Whether `role` may use `command` in a channel.
    pub fn allows(&self, role: &ChannelRole, command: &str) -> bool {
        if *role == ChannelRole::OWNER {
            return true;
        }
        if let Some(roles) = self.commands.get(command)
            && roles.contains(role)
        {
            return true;
        }
        if *role == ChannelRole::PARTICIPANT {
            return PARTICIPANT_COMMANDS.contains(&command);
        }
        self.roles
            .get(role)
            .is_some_and(|commands| commands.contains(command))
    }

    /// The options of a new channel, or why they cannot be granted.
    pub(crate) fn channel_options(
        &self,
        max_participants: Option<u64>,
        history_size: Option<u64>,
        history_ttl_secs: Option<u64>,
        presence_events: bool,
        encrypted: bool,
    ) -> Result<ChannelOptions, String> {
        let max_participants = match max_participants {
            None => self.max_participants,
            Some(0) => return Err("max_participants must be at least 1".into()),
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n <= self.max_participants)
                .ok_or_else(|| format!("max_participants is at most {}", self.max_participants))?,
        };
        let history_size = match history_size {
            None => 0,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n <= self.max_history_size)
                .ok_or_else(|| format!("history_size is at most {}", self.max_history_size))?,
        };
        let history_ttl = match history_ttl_secs {
            None => DEFAULT_HISTORY_TTL.min(self.max_history_ttl),
            Some(secs) => Some(Duration::from_secs(secs))
                .filter(|ttl| *ttl <= self.max_history_ttl)
                .ok_or_else(|| {
                    format!(
                        "history_ttl is at most {} seconds",
                        self.max_history_ttl.as_secs()
                    )
                })?,
        };
        Ok(ChannelOptions {
            max_participants,
            history_size,
            history_ttl,
            history_bytes: self.max_history_bytes,
            presence_events,
            encrypted,
            linger: self.channel_linger,
        })
    }
}

/// The built-in role of that name, or a custom one.
fn role_named(name: &str) -> ChannelRole {
    match name {
        "owner" => ChannelRole::OWNER,
        "participant" => ChannelRole::PARTICIPANT,
        other => ChannelRole::new(other),
    }
}

pub(crate) fn parse_role(name: &str) -> ChannelRole {
    role_named(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A custom command named like one the server parses would never run:
    /// registering one is refused, and every built-in name is one the
    /// parser takes (so none of them reaches a handler).
    #[test]
    fn a_custom_command_cannot_take_a_built_in_name() {
        assert!(BUILTIN_COMMANDS.contains(&"refresh"));
        for name in BUILTIN_COMMANDS {
            let registered = std::panic::catch_unwind(|| {
                ChannelsConfig::default().command(name, ["participant"])
            });
            assert!(registered.is_err(), "{name} was taken as a custom command");
            let envelope = crate::protocol::command_envelope("c", name, serde_json::json!({}));
            let parsed = crate::protocol::parse(envelope, |_| true);
            assert!(
                !matches!(
                    parsed,
                    Ok(crate::protocol::Request {
                        command: crate::protocol::Command::Custom { .. },
                        ..
                    })
                ),
                "{name} parsed as a custom command"
            );
        }
    }

    #[test]
    fn settings_read_over_the_defaults_and_refuse_what_cannot_work() {
        let config: ChannelsConfig = serde_json::from_value(serde_json::json!({
            "max_participants": 5,
            "presence_ttl": 30,
            "slow_subscriber": "mark_lost",
            "roles": {"moderator": ["kick", "publish"]},
            "topics": {"alerts": "everyone", "ops": {"roles": ["oncall"]}},
        }))
        .unwrap();
        assert_eq!(config.max_participants, 5);
        assert_eq!(config.presence_ttl, Duration::from_secs(30));
        assert_eq!(config.slow_subscriber, SlowSubscriber::MarkLost);
        assert!(config.allows(&ChannelRole::new("moderator"), "kick"));
        assert!(matches!(config.topics["alerts"], TopicAccess::Everyone));
        assert!(
            matches!(&config.topics["ops"], TopicAccess::Roles(roles) if roles.contains("oncall"))
        );
        // What was not given keeps its default.
        assert_eq!(config.max_payload, ChannelsConfig::default().max_payload);
        assert_eq!(config.check(), Ok(()));

        // The defaults, written and read back, are the defaults.
        let written = serde_json::to_value(ChannelsConfig::default()).unwrap();
        assert_eq!(written["channel_linger"], 300);
        let read: ChannelsConfig = serde_json::from_value(written.clone()).unwrap();
        assert_eq!(serde_json::to_value(read).unwrap(), written);

        let refused = |value: serde_json::Value| {
            serde_json::from_value::<ChannelsConfig>(value)
                .map_err(|e| e.to_string())
                .and_then(|config| config.check())
                .unwrap_err()
        };
        assert!(refused(serde_json::json!({"max_participant": 5})).contains("max_participant"));
        assert!(refused(serde_json::json!({"commands": {}})).contains("commands"));
        assert!(refused(serde_json::json!({"topics": {"x": "someone"}})).contains("everyone"));
        assert!(refused(serde_json::json!({"roles": {"owner": ["kick"]}})).contains("built in"));
        assert!(refused(serde_json::json!({"topics": {"a b": "everyone"}})).contains("a b"));
        assert!(refused(serde_json::json!({"command_burst": 0})).contains("command_burst"));
        assert!(refused(serde_json::json!({"presence_ttl": 0})).contains("presence_ttl"));
        assert!(refused(serde_json::json!({"max_payload": 0})).contains("max_payload"));
    }

    #[test]
    fn names_are_short_and_plain() {
        let config = ChannelsConfig::default();
        assert!(config.is_valid_name("room:42/chat@eu=1"));
        assert!(!config.is_valid_name(""));
        assert!(!config.is_valid_name("a b"));
        assert!(!config.is_valid_name("$topic"));
        assert!(!config.is_valid_name("é"));
        assert!(!config.is_valid_name(&"a".repeat(129)));
        assert!(config.is_valid_name(&"a".repeat(128)));
    }

    #[test]
    fn roles_allow_what_they_were_given() {
        let config = ChannelsConfig::default()
            .role("moderator", ["kick", "publish"])
            .command("roll", ["participant"])
            .command("reset", ["moderator"]);
        let moderator = ChannelRole::new("moderator");
        assert!(config.allows(&ChannelRole::OWNER, "close"));
        assert!(config.allows(&ChannelRole::PARTICIPANT, "publish"));
        assert!(!config.allows(&ChannelRole::PARTICIPANT, "kick"));
        assert!(config.allows(&ChannelRole::PARTICIPANT, "roll"));
        assert!(!config.allows(&ChannelRole::PARTICIPANT, "reset"));
        assert!(config.allows(&moderator, "kick"));
        assert!(config.allows(&moderator, "reset"));
        assert!(!config.allows(&moderator, "ban"));
        assert!(config.is_known_role(&moderator));
        assert!(!config.is_known_role(&ChannelRole::new("admin")));
    }
}
