//! The wire: commands parsed from envelopes, replies and events written as
//! envelopes. `PROTOCOL.md` documents every shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use ws_core::EncodedMessage;
use ws_core::Message;
use ws_core::envelope::{Envelope, Kind};

use crate::types::{
    ChannelError, ClientInfo, ErrorCode, LeaveReason, Payload, Position, Publication,
    PublicationKind, Role, SessionId, Target,
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

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    Create {
        max_participants: Option<u64>,
        history_size: Option<u64>,
        history_ttl: Option<u64>,
        presence_events: bool,
        encrypted: bool,
        info: Option<Payload>,
    },
    Join {
        since: Option<Position>,
        info: Option<Payload>,
    },
    Leave,
    Publish {
        data: Payload,
        idempotency_key: Option<String>,
    },
    Kick {
        target: Target,
    },
    Ban {
        user: String,
        duration: Option<u64>,
    },
    Unban {
        user: String,
    },
    Presence {
        limit: Option<usize>,
    },
    History {
        limit: Option<usize>,
    },
    SetRole {
        user: String,
        role: Role,
    },
    Close,
    Subscribe {
        filter: Option<Value>,
    },
    Unsubscribe,
    Custom {
        name: String,
        data: Value,
    },
}

/// A command with the channel (or topic) it names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Request {
    pub(crate) channel: String,
    pub(crate) command: Command,
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

/// A publication as clients see it.
#[derive(Serialize)]
pub(crate) struct PublicationOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a ClientInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<LeaveReason>,
}

impl<'a> PublicationOut<'a> {
    pub(crate) fn of(publication: &'a Publication) -> Self {
        Self {
            offset: publication.position.as_ref().map(|p| p.offset),
            epoch: publication.position.as_ref().map(|p| p.epoch.as_str()),
            from: publication.from.as_ref(),
            data: publication.data.as_ref(),
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

/// The event for a publication, encoded once for every recipient.
pub(crate) fn publication_event(channel: &str, publication: &Publication) -> EncodedMessage {
    let action = match publication.kind {
        PublicationKind::Message => "message",
        PublicationKind::Join => "join",
        PublicationKind::Leave => "leave",
    };
    let text = event_text(channel, action, &PublicationOut::of(publication));
    EncodedMessage::new(&Message::text(text))
}

/// A server-event topic's event, encoded once for every recipient.
pub(crate) fn topic_event(topic: &str, data: &Payload) -> EncodedMessage {
    EncodedMessage::new(&Message::text(event_text(topic, "event", data)))
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

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        let encoded = publication_event("room", &publication);
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
