//! Our MLS member for the interop test with `ts-mls` (`interop/node/mls.mjs`):
//! devices and their groups driven over stdin, one JSON command per line,
//! one JSON answer per line on stdout. Binary fields are standard base64.
//!
//! Commands (`user` names the device): `device`, `key_package`, `create`
//! (`channel`), `add` (`key_packages`), `remove` (`member`), `role`
//! (`member`, `role`: "owner", "committer" or none), `join`
//! (`welcome`), `encrypt` (`data`, text), `receive` (`message`),
//! `members`. Commits are confirmed at once: there is no Delivery Service
//! between the two sides of this test. An error is answered as
//! `{"error": "..."}`, and the program goes on.

use std::collections::HashMap;
use std::io::{BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use ws_crypto::mls::{DeliveryService, Device, Group, Received};

#[derive(Default)]
struct Peer {
    devices: HashMap<String, Device>,
    groups: HashMap<String, Group>,
    server: Option<DeliveryService>,
}

fn bytes(command: &Value, field: &str) -> Result<Vec<u8>, String> {
    let text = command[field]
        .as_str()
        .ok_or_else(|| format!("no {field}"))?;
    STANDARD.decode(text).map_err(|e| format!("{field}: {e}"))
}

fn text(command: &Value, field: &str) -> Result<String, String> {
    command[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no {field}"))
}

impl Peer {
    fn run(&mut self, command: &Value) -> Result<Value, String> {
        let user = text(command, "user")?;
        let e = |e: ws_crypto::mls::MlsError| e.to_string();
        match command["op"].as_str().unwrap_or_default() {
            "device" => {
                let device = Device::new(&user).map_err(e)?;
                let answer = json!({ "fingerprint": device.fingerprint() });
                self.devices.insert(user, device);
                Ok(answer)
            }
            "key_package" => {
                let package = self.device(&user)?.key_package().map_err(e)?;
                Ok(json!({ "key_package": STANDARD.encode(package) }))
            }
            "create" => {
                if self.server.is_none() {
                    self.server = Some(DeliveryService::new("ws serve").map_err(e)?);
                }
                let server = self.server.as_ref().expect("made above");
                let sender = server.external_sender().map_err(e)?;
                let group = self
                    .device(&user)?
                    .create_group(&text(command, "channel")?, &sender)
                    .map_err(e)?;
                self.groups.insert(user, group);
                Ok(json!({}))
            }
            "add" => {
                let packages = command["key_packages"]
                    .as_array()
                    .ok_or("no key_packages")?
                    .iter()
                    .map(|p| STANDARD.decode(p.as_str().unwrap_or_default()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let group = self.group(&user)?;
                let commit = group.add(&packages).map_err(e)?;
                group.confirm().map_err(e)?;
                Ok(json!({
                    "commit": STANDARD.encode(&commit.commit),
                    "welcome": commit.welcome.map(|w| STANDARD.encode(w)),
                }))
            }
            "remove" => {
                let group = self.group(&user)?;
                let commit = group.remove(&text(command, "member")?).map_err(e)?;
                group.confirm().map_err(e)?;
                Ok(json!({ "commit": STANDARD.encode(&commit.commit) }))
            }
            "role" => {
                // The group's roles: "owner", "committer", or none.
                let role = match command["role"].as_str() {
                    Some("owner") => Some(ws_crypto::mls::GroupRole::Owner),
                    Some("committer") => Some(ws_crypto::mls::GroupRole::Committer),
                    _ => None,
                };
                let group = self.group(&user)?;
                let commit = group.set_role(&text(command, "member")?, role).map_err(e)?;
                group.confirm().map_err(e)?;
                Ok(json!({ "commit": STANDARD.encode(&commit.commit) }))
            }
            "join" => {
                let group = self
                    .device(&user)?
                    .join(&bytes(command, "welcome")?)
                    .map_err(e)?;
                let answer = json!({ "epoch": group.epoch() });
                self.groups.insert(user, group);
                Ok(answer)
            }
            "encrypt" => {
                let data = text(command, "data")?;
                let message = self.group(&user)?.encrypt(data.as_bytes()).map_err(e)?;
                Ok(json!({ "message": STANDARD.encode(message) }))
            }
            "receive" => {
                let message = bytes(command, "message")?;
                Ok(match self.group(&user)?.receive(&message).map_err(e)? {
                    Received::Message { from, data } => json!({
                        "kind": "message",
                        "from": from.user,
                        "data": String::from_utf8_lossy(&data),
                    }),
                    Received::Commit {
                        epoch,
                        added,
                        removed,
                        removed_me,
                    } => json!({
                        "kind": "commit",
                        "epoch": epoch,
                        "added": added,
                        "removed": removed,
                        "removed_me": removed_me,
                    }),
                    Received::Proposal => json!({ "kind": "proposal" }),
                    _ => json!({ "kind": "other" }),
                })
            }
            "members" => {
                let group = self.group(&user)?;
                let members: Vec<Value> = group
                    .members()
                    .into_iter()
                    .map(|m| json!({ "index": m.index, "user": m.user, "fingerprint": m.fingerprint }))
                    .collect();
                Ok(json!({ "epoch": group.epoch(), "members": members }))
            }
            other => Err(format!("unknown op {other:?}")),
        }
    }

    fn device(&self, user: &str) -> Result<&Device, String> {
        self.devices
            .get(user)
            .ok_or_else(|| format!("no device {user:?}"))
    }

    fn group(&mut self, user: &str) -> Result<&mut Group, String> {
        self.groups
            .get_mut(user)
            .ok_or_else(|| format!("{user:?} is in no group"))
    }
}

fn main() {
    let mut peer = Peer::default();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(command) => peer
                .run(&command)
                .unwrap_or_else(|error| json!({ "error": error })),
            Err(error) => json!({ "error": error.to_string() }),
        };
        let mut out = stdout.lock();
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
}
