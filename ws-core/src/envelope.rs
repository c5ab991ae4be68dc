//! A typed message envelope with JSON on the wire.
//!
//! One struct carries both shapes applications built on this toolkit speak:
//! HyperIoT's (`cmd`, `payload`, `contentType`, `timestamp`, `params`) and
//! Hydrogen's (`type`, `id`, `timestamp`, `channel`, `action`, `data`,
//! `auth`). Every field is optional on the wire and absent fields are not
//! written. Parsing never panics: malformed input is an [`EnvelopeError`],
//! and [`Envelope::error_reply`] turns one into a reply.
//!
//! ```
//! use ws_core::Message;
//! use ws_core::envelope::{Envelope, Kind};
//!
//! let text = r#"{"type":"command","id":"7","action":"print","data":{"file":"a.gcode"}}"#;
//! let command = Envelope::from_message(&Message::text(text))?;
//! assert_eq!(command.kind, Some(Kind::Command));
//! let reply = command.response(serde_json::json!({"queued": true}));
//! assert_eq!(reply.id.as_deref(), Some("7"));
//! assert_eq!(reply.kind, Some(Kind::Response));
//! let wire = reply.to_message();
//! assert!(wire.is_text());
//! # Ok::<(), ws_core::envelope::EnvelopeError>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::message::Message;

/// What an envelope is (Hydrogen's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A request for action or information (client to server); always
    /// answered with a response.
    Command,
    /// A notification (server to client); may ask for an acknowledgement.
    Event,
    /// The answer to a command.
    Response,
    /// The receipt of an event, carrying its `id`.
    Ack,
}

/// When a message was made: epoch milliseconds (HyperIoT) or an RFC 3339
/// string (Hydrogen), kept as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Timestamp {
    /// Milliseconds since the Unix epoch.
    EpochMillis(u64),
    /// An RFC 3339 date-time such as `2025-02-26T18:45:00.000Z`.
    Text(String),
}

/// Credentials carried in a message. Its `Debug` output never shows them.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Auth {
    /// An authentication token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A signature of the message, where required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("Auth")
            .field("token", &redact(&self.token))
            .field("signature", &redact(&self.signature))
            .finish()
    }
}

/// The envelope. Build one with [`Envelope::command`], [`Envelope::event`]
/// or struct update syntax, `Envelope { .., ..Envelope::default() }` (fields
/// may be added in later versions).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Envelope {
    /// Command, event, response or acknowledgement (`type` on the wire).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// Identifies the message; responses and acks carry the id they answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the message was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    /// Where it goes (`system`, `print`, a channel name...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The command or event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The command's or event's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// A command for the server (HyperIoT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// The content (HyperIoT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The content's media type (`contentType` on the wire; `content_type`
    /// is accepted too).
    #[serde(
        rename = "contentType",
        alias = "content_type",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
    /// Further parameters (HyperIoT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
}

/// Why a message is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Binary messages do not carry envelopes.
    #[error("envelopes are JSON text, not binary")]
    Binary,
    /// Not JSON, or JSON of the wrong shape (a field of the wrong type, an
    /// unknown `type`, nesting deeper than 128 levels).
    #[error("malformed envelope at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What serde_json reported.
        message: String,
    },
    /// Well-formed JSON that breaks a rule of its kind.
    #[error("invalid envelope: {0}")]
    Invalid(&'static str),
}

impl From<serde_json::Error> for EnvelopeError {
    fn from(error: serde_json::Error) -> Self {
        Self::Json {
            line: error.line(),
            column: error.column(),
            message: error.to_string(),
        }
    }
}

impl Envelope {
    /// A command named `action`.
    pub fn command(action: impl Into<String>) -> Self {
        Self {
            kind: Some(Kind::Command),
            action: Some(action.into()),
            ..Self::default()
        }
    }

    /// An event named `action` with `data`.
    pub fn event(action: impl Into<String>, data: Value) -> Self {
        Self {
            kind: Some(Kind::Event),
            action: Some(action.into()),
            data: Some(data),
            ..Self::default()
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the channel.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// The response to this command: same id, channel and action.
    pub fn response(&self, data: Value) -> Self {
        Self {
            kind: Some(Kind::Response),
            id: self.id.clone(),
            channel: self.channel.clone(),
            action: self.action.clone(),
            data: Some(data),
            ..Self::default()
        }
    }

    /// The acknowledgement of this event: its id.
    pub fn ack(&self) -> Self {
        Self {
            kind: Some(Kind::Ack),
            id: self.id.clone(),
            ..Self::default()
        }
    }

    /// A response reporting `error`, answering `request` if it was parsed
    /// far enough to have an id. `action` is `"error"` and `data` is
    /// `{"error": "<why>"}`.
    pub fn error_reply(request: Option<&Envelope>, error: &EnvelopeError) -> Self {
        Self {
            kind: Some(Kind::Response),
            id: request.and_then(|r| r.id.clone()),
            action: Some("error".into()),
            data: Some(serde_json::json!({ "error": error.to_string() })),
            ..Self::default()
        }
    }

    /// Parses and checks JSON bytes.
    pub fn from_slice(json: &[u8]) -> Result<Self, EnvelopeError> {
        let envelope: Self = serde_json::from_slice(json)?;
        envelope.validate()?;
        Ok(envelope)
    }

    /// Parses and checks a text message.
    pub fn from_message(message: &Message) -> Result<Self, EnvelopeError> {
        match message {
            Message::Text(text) => Self::from_slice(text.as_bytes()),
            Message::Binary(_) => Err(EnvelopeError::Binary),
        }
    }

    /// The rules of each kind: a command names what to do (`action` or
    /// `cmd`); responses and acks carry the id they answer.
    pub fn validate(&self) -> Result<(), EnvelopeError> {
        match self.kind {
            Some(Kind::Command) if self.action.is_none() && self.cmd.is_none() => Err(
                EnvelopeError::Invalid("a command needs an `action` or a `cmd`"),
            ),
            Some(Kind::Ack) if self.id.is_none() => Err(EnvelopeError::Invalid(
                "an ack needs the `id` it acknowledges",
            )),
            Some(Kind::Response)
                if self.id.is_none() && self.action.as_deref() != Some("error") =>
            {
                Err(EnvelopeError::Invalid(
                    "a response needs the `id` it answers",
                ))
            }
            _ => Ok(()),
        }
    }

    /// The JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serialises")
    }

    /// The JSON as a text message.
    pub fn to_message(&self) -> Message {
        Message::text(self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hyperiot_shape_round_trips() {
        let text = r#"{"cmd":"FOLLOW","payload":"hello","contentType":"text/plain","timestamp":1700000000000,"params":{"channelId":"c1"}}"#;
        let envelope = Envelope::from_slice(text.as_bytes()).unwrap();
        assert_eq!(envelope.cmd.as_deref(), Some("FOLLOW"));
        assert_eq!(envelope.payload, Some(json!("hello")));
        assert_eq!(envelope.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            envelope.timestamp,
            Some(Timestamp::EpochMillis(1_700_000_000_000))
        );
        assert_eq!(envelope.params.as_ref().unwrap()["channelId"], "c1");
        let json = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        assert_eq!(json(&envelope.to_json()), json(text));
        // The snake_case spelling is read too.
        let snake = Envelope::from_slice(br#"{"content_type":"a/b"}"#).unwrap();
        assert_eq!(snake.content_type.as_deref(), Some("a/b"));
    }

    #[test]
    fn hydrogen_shape_round_trips() {
        let text = r#"{"type":"event","id":"e-1","timestamp":"2025-02-26T18:45:00.000Z","channel":"print","action":"progress","data":{"percent":42},"auth":{"token":"secret","signature":"sig"}}"#;
        let envelope = Envelope::from_slice(text.as_bytes()).unwrap();
        assert_eq!(envelope.kind, Some(Kind::Event));
        assert_eq!(
            envelope.timestamp,
            Some(Timestamp::Text("2025-02-26T18:45:00.000Z".into()))
        );
        assert_eq!(envelope.data, Some(json!({"percent": 42})));
        assert_eq!(envelope.to_json(), text);
        let ack = envelope.ack();
        assert_eq!(ack.to_json(), r#"{"type":"ack","id":"e-1"}"#);
    }

    #[test]
    fn credentials_never_reach_debug_output() {
        let envelope =
            Envelope::from_slice(br#"{"auth":{"token":"hunter2","signature":"s3cret"}}"#).unwrap();
        let debug = format!("{envelope:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn malformed_envelopes_are_typed_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"not json",
            b"[1, 2]",
            b"{\"type\": \"shout\"}",
            b"{\"id\": 5}",
            b"{\"params\": []}",
            b"{\"timestamp\": -1}",
            b"{\"type\": \"command\"",
            b"\xff\xfe",
        ];
        for bytes in cases {
            let error = Envelope::from_slice(bytes).unwrap_err();
            assert!(matches!(error, EnvelopeError::Json { .. }), "{error:?}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let error = Envelope::from_slice(format!("{{\"data\":{deep}}}").as_bytes()).unwrap_err();
        assert!(error.to_string().contains("recursion limit"), "{error}");
        assert_eq!(
            Envelope::from_message(&Message::binary(vec![b'{', b'}'])),
            Err(EnvelopeError::Binary)
        );
    }

    #[test]
    fn kind_rules() {
        assert_eq!(
            Envelope::from_slice(br#"{"type":"command"}"#),
            Err(EnvelopeError::Invalid(
                "a command needs an `action` or a `cmd`"
            ))
        );
        assert!(Envelope::from_slice(br#"{"type":"command","cmd":"x"}"#).is_ok());
        assert!(Envelope::from_slice(br#"{"type":"ack"}"#).is_err());
        assert!(Envelope::from_slice(br#"{"type":"response"}"#).is_err());
        assert!(Envelope::from_slice(br#"{"type":"event"}"#).is_ok());
        // Unknown fields are ignored, for forward compatibility.
        assert!(Envelope::from_slice(br#"{"type":"event","future":1}"#).is_ok());
    }

    #[test]
    fn error_replies_answer_the_request_id() {
        let request = Envelope::command("print").with_id("42");
        let error = EnvelopeError::Invalid("no such printer");
        let reply = Envelope::error_reply(Some(&request), &error);
        assert_eq!(
            reply.to_json(),
            r#"{"type":"response","id":"42","action":"error","data":{"error":"invalid envelope: no such printer"}}"#
        );
        // Valid by its own rules, so peers can parse it back.
        assert_eq!(Envelope::from_slice(reply.to_json().as_bytes()), Ok(reply));
        let anonymous = Envelope::error_reply(None, &EnvelopeError::Binary);
        assert!(Envelope::from_slice(anonymous.to_json().as_bytes()).is_ok());
    }

    #[test]
    fn numbers_survive_a_round_trip_unchanged() {
        // Found by the envelope fuzz target: serde_json's default float
        // parser may land one unit in the last place away from the nearest
        // double, so a number relayed through an envelope changed in its
        // last digits. These are values where it did.
        for text in [
            r#"{"data":{"percent":46666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666}}"#,
            r#"{"data":[0.1,2.2250738585072014e-308,1.7976931348623157e308,9007199254740993,-0.0,5e-324]}"#,
        ] {
            let envelope = Envelope::from_slice(text.as_bytes()).unwrap();
            let again = Envelope::from_slice(envelope.to_json().as_bytes()).unwrap();
            assert_eq!(again, envelope, "{text}");
        }
        let big = Envelope::from_slice(
            br#"{"data":46666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666}"#,
        )
        .unwrap();
        // The nearest double, as Rust's own (correctly rounded) parser finds it.
        let nearest: f64 =
            "46666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666"
                .parse()
                .unwrap();
        assert_eq!(big.data.unwrap().as_f64(), Some(nearest));
    }
}
