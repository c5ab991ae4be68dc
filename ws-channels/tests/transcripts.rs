//! The protocol's transcripts (`ws-channels/transcripts/*.json`, format in
//! its README) against a real server on ws-tokio, and every message in
//! them through the Rust client's types: the commands parse as the server
//! parses them and encode back the same, and what the server sent reads
//! as the typed reply or event it is. The TypeScript client runs the same
//! files (`clients/js/test/transcripts.test.mjs`), and `PROTOCOL.md`'s
//! examples are checked against them here, so the three cannot drift.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use ws_channels::protocol::{Event, Request, ServerMessage};
use ws_channels::{Channels, ChannelsConfig};
use ws_core::envelope::Envelope;
use ws_tokio::{Message, WebSocket};

mod support;
use support::NameFromQuery;

const WAIT: Duration = Duration::from_secs(5);
/// How long a session must stay silent at the end of a transcript.
const QUIET: Duration = Duration::from_millis(300);

fn transcripts() -> Vec<(PathBuf, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "transcripts in {dir:?}");
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            (path, value)
        })
        .collect()
}

/// Whether `actual` matches `pattern`: equal JSON, where a pattern string
/// `"$any"` matches any value, and any other `"$name"` binds the value the
/// first time and must be equal to it after. Objects must have the same
/// keys: a field the transcript does not name is drift.
fn matches(pattern: &Value, actual: &Value, bound: &mut HashMap<String, Value>) -> bool {
    match (pattern, actual) {
        (Value::String(p), _) if p == "$any" => true,
        (Value::String(p), _) if p.starts_with('$') => match bound.get(p) {
            Some(value) => value == actual,
            None => {
                bound.insert(p.clone(), actual.clone());
                true
            }
        },
        (Value::Object(p), Value::Object(a)) => {
            p.len() == a.len()
                && p.iter()
                    .all(|(k, v)| a.get(k).is_some_and(|av| matches(v, av, bound)))
        }
        (Value::Array(p), Value::Array(a)) => {
            p.len() == a.len() && p.iter().zip(a).all(|(pv, av)| matches(pv, av, bound))
        }
        _ => pattern == actual,
    }
}

/// `message` with every bound `"$name"` replaced by its value.
fn substitute(message: &Value, bound: &HashMap<String, Value>) -> Value {
    match message {
        Value::String(name) if bound.contains_key(name) => bound[name].clone(),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), substitute(v, bound)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, bound)).collect()),
        other => other.clone(),
    }
}

async fn server() -> std::net::SocketAddr {
    // As the TypeScript runner's `ws serve`: `printers` is open to all.
    let config = ChannelsConfig::default().topic("printers", ws_channels::TopicAccess::Everyone);
    let channels = Channels::builder(config).build();
    let endpoint = channels.endpoint().authenticator(NameFromQuery);
    let server = ws_tokio::server().route("/channels", endpoint).build();
    let listener = ws_tokio::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { server.serve(listener).await });
    addr
}

async fn next_text(socket: &mut WebSocket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(text.as_str()).unwrap());
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) | Err(_) => return None,
        }
    }
}

/// Plays `transcript` against the server at `addr`: what every session
/// sent and received, in order.
async fn play(
    addr: std::net::SocketAddr,
    name: &str,
    transcript: &Value,
) -> (Vec<Value>, Vec<Value>) {
    let mut sessions: BTreeMap<String, WebSocket> = BTreeMap::new();
    let mut bound = HashMap::new();
    let (mut sent, mut received) = (Vec::new(), Vec::new());
    let steps = transcript["steps"].as_array().expect("steps");
    for (at, step) in steps.iter().enumerate() {
        let place = format!("{name} step {at}: {step}");
        if let Some(session) = step["connect"].as_str() {
            let user = step["user"].as_str().unwrap_or(session);
            let url = format!("ws://{addr}/channels?user={user}");
            let (socket, _) = ws_tokio::connect(&url).await.expect("connects");
            sessions.insert(session.to_owned(), socket);
        } else if let Some(session) = step["send"].as_str() {
            let socket = sessions
                .get_mut(session)
                .unwrap_or_else(|| panic!("{place}"));
            // `text`: anything, sent as it is; `message`: an envelope, with
            // what the transcript bound so far put in.
            let text = match step["text"].as_str() {
                Some(text) => text.to_owned(),
                None => {
                    let message = substitute(&step["message"], &bound);
                    sent.push(message.clone());
                    message.to_string()
                }
            };
            socket.send(Message::text(text)).await.unwrap();
        } else if let Some(session) = step["receive"].as_str() {
            // `message`, or `messages` that may come in any order (the
            // protocol orders a reply and an event of another cause
            // differently on different backends).
            let mut expected: Vec<&Value> = match step["messages"].as_array() {
                Some(several) => several.iter().collect(),
                None => vec![&step["message"]],
            };
            let socket = sessions
                .get_mut(session)
                .unwrap_or_else(|| panic!("{place}"));
            while !expected.is_empty() {
                let actual = next_text(socket, WAIT)
                    .await
                    .unwrap_or_else(|| panic!("{place}: nothing came"));
                let at = expected.iter().position(|pattern| {
                    let mut trial = bound.clone();
                    let fits = matches(pattern, &actual, &mut trial);
                    if fits {
                        bound = trial;
                    }
                    fits
                });
                let at = at.unwrap_or_else(|| panic!("{place}\n  got {actual}\n  with {bound:?}"));
                expected.remove(at);
                received.push(actual);
            }
        } else if let Some(session) = step["close"].as_str() {
            let mut socket = sessions
                .remove(session)
                .unwrap_or_else(|| panic!("{place}"));
            let _ = socket.close(ws_core::CloseCode::NORMAL, "").await;
            while next_text(&mut socket, WAIT).await.is_some() {}
        } else {
            panic!("{place}: no connect, send, receive or close");
        }
    }
    for (session, socket) in &mut sessions {
        if let Some(more) = next_text(socket, QUIET).await {
            panic!("{name}: {session} got more than the transcript says: {more}");
        }
    }
    (sent, received)
}

/// `command` without `data` when it says nothing (`{}`): the protocol
/// reads the two alike.
fn without_empty_data(command: &Value) -> Value {
    let mut command = command.clone();
    if command["data"] == json!({}) {
        command.as_object_mut().unwrap().remove("data");
    }
    command
}

/// The Rust client's reading of a message the server sent: typed, not
/// left as an unknown event.
fn read_typed(message: &Value) -> ServerMessage {
    let envelope = Envelope::from_slice(message.to_string().as_bytes()).unwrap();
    let typed = ServerMessage::from_envelope(envelope)
        .unwrap_or_else(|| panic!("the client cannot read {message}"));
    match &typed {
        ServerMessage::Reply(reply) => {
            assert_eq!(
                reply.result.is_ok(),
                message["data"]["ok"] == true,
                "{message}"
            );
            if let Err(refusal) = &reply.result {
                assert_eq!(
                    json!(refusal.code),
                    message["data"]["code"],
                    "a code the client does not know: {message}"
                );
            }
        }
        ServerMessage::Event(Event::Other { action, .. }) => {
            panic!("the client reads {action:?} as an event it does not know: {message}")
        }
        ServerMessage::Event(_) => {}
    }
    typed
}

#[tokio::test]
async fn every_transcript_holds_against_the_server_and_the_rust_client() {
    let mut actions = BTreeSet::new();
    for (path, transcript) in transcripts() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        // A server of its own: no channel of another transcript lingers.
        let (sent, received) = play(server().await, &name, &transcript).await;
        for command in &sent {
            let envelope = Envelope::from_slice(command.to_string().as_bytes()).unwrap();
            let Ok(request) = Request::parse(envelope, |_| false) else {
                // Sent to be refused: the transcript's reply says how.
                continue;
            };
            let id = command["id"].as_str().unwrap_or_default();
            let encoded: Value = serde_json::from_str(&request.to_envelope(id).to_json()).unwrap();
            assert_eq!(
                without_empty_data(&encoded),
                without_empty_data(command),
                "{name}: the Rust client encodes this command otherwise"
            );
            actions.insert(format!("command {}", command["action"].as_str().unwrap()));
        }
        for message in &received {
            read_typed(message);
            actions.insert(format!(
                "{} {}",
                message["type"].as_str().unwrap(),
                message["action"].as_str().unwrap_or_default()
            ));
        }
    }
    eprintln!("covered: {actions:?}");
}

/// Whether `example` has the shape of `pattern`: the same fields, each of
/// the same JSON type (a pattern's `"$name"` stands for any). A
/// publication's payload and a member's `info` are the application's, any
/// JSON: not compared.
fn same_shape(example: &Value, pattern: &Value, depth: usize) -> bool {
    match (example, pattern) {
        (_, Value::String(p)) if p.starts_with('$') => true,
        (Value::Object(e), Value::Object(p)) => {
            e.len() == p.len()
                && e.iter().all(|(k, ev)| {
                    p.get(k).is_some_and(|pv| {
                        (depth > 0 && (k == "data" || k == "info")) || same_shape(ev, pv, depth + 1)
                    })
                })
        }
        (Value::Array(e), Value::Array(p)) => match (e.first(), p.first()) {
            (Some(e), Some(p)) => same_shape(e, p, depth + 1),
            _ => true,
        },
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// The messages a transcript sends and expects.
fn transcript_messages(transcript: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for step in transcript["steps"].as_array().unwrap() {
        if let Some(several) = step["messages"].as_array() {
            all.extend(several.iter().cloned());
        } else if step["message"].is_object() {
            all.push(step["message"].clone());
        }
    }
    all
}

/// Examples a transcript cannot play, and where they are checked instead:
/// end-to-end encryption's commands and publications carry MLS messages
/// made by real members; `expiring` needs a token that ends.
const CHECKED_ELSEWHERE: &[(&str, &str)] = &[
    ("commit", "ws-server/tests/mls_channels.rs"),
    ("key_packages", "ws-server/tests/mls_channels.rs"),
    ("claim", "ws-server/tests/mls_channels.rs"),
    ("expiring", "ws-server/tests/security.rs (JWTs that end)"),
    (
        "roll",
        "adapter-tests/channels.rs (a custom command needs the application's handler)",
    ),
    (
        "event",
        "adapter-tests/channels.rs (topic events come from the application)",
    ),
    ("lost", "test-kit/tests/cluster.rs (a broker's loss)"),
];

#[test]
fn the_examples_in_protocol_md_are_in_the_transcripts() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("PROTOCOL.md")).unwrap();
    let known: Vec<Value> = transcripts()
        .iter()
        .flat_map(|(_, transcript)| transcript_messages(transcript))
        .collect();
    let mut checked = 0;
    let mut missing = Vec::new();
    for block in doc.split("```json\n").skip(1) {
        let block = block.split("```").next().unwrap();
        // A block holds one message or several, one after the other.
        let parsed: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(block)
            .into_iter()
            .collect();
        let Ok(examples) = parsed else {
            assert!(
                block.contains("{...}"),
                "PROTOCOL.md: an example that is not JSON, nor marked as a sketch with {{...}}: {block}"
            );
            continue;
        };
        for example in examples {
            let action = example["action"].as_str().unwrap_or_default();
            let e2e = example["data"]["data"].get("e2e").is_some();
            if CHECKED_ELSEWHERE.iter().any(|(a, _)| *a == action) || e2e {
                continue;
            }
            let found = known.iter().any(|message| {
                message["type"] == example["type"]
                    && message["action"] == example["action"]
                    && same_shape(&example, message, 0)
            });
            if found {
                checked += 1;
            } else {
                missing.push(example);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "PROTOCOL.md: no transcript has a message of the shape of these:\n{}",
        missing
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(checked >= 15, "{checked} examples checked");
}
