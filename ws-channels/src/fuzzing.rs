//! The body of the `channels` fuzz target: arbitrary commands from
//! arbitrary sessions on two nodes, with time passing, backend work held
//! in flight, slow sessions, reconnects, and publications dropped, held
//! or doubled on their way. Encrypted channels' commands (`commit`,
//! `key_packages`, `claim`) go through a reader of a toy framing, with
//! bytes that are and are not commits and key packages, for any group,
//! epoch and user. Some sessions' tokens end, and `refresh` brings tokens
//! of the simulation's kind (`user:seconds`) or garbage, for any user. No
//! panic, the managers' invariants hold after every
//! step, and when everyone has gone nothing is left behind.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::{BUILTIN_COMMANDS, ChannelsConfig, SlowSubscriber, TopicAccess};
use crate::sim::{Sim, Transit};
use crate::types::SessionId;

/// Beyond the built-in commands: one the application registers, and one
/// nobody does.
const OTHER_ACTIONS: [&str; 2] = ["roll", "nonsense"];
const NAMES: [&str; 4] = ["c0", "c1", "t", "bad name"];

/// Runs the ops `data` encodes.
pub fn channels(data: &[u8]) {
    let mark_lost = data.first().is_some_and(|b| b & 1 == 1);
    let config = ChannelsConfig {
        max_channels_per_session: 2,
        max_topics_per_session: 1,
        max_violations: 8,
        command_burst: 16,
        allow_anonymous: true,
        slow_subscriber: if mark_lost {
            SlowSubscriber::MarkLost
        } else {
            SlowSubscriber::Disconnect
        },
        ..ChannelsConfig::default()
    }
    .role("mod", ["kick", "publish", "leave", "commit"])
    .command("roll", ["participant"])
    .topic("t", TopicAccess::Everyone);
    let config = ChannelsConfig {
        group_reader: Some(Arc::new(crate::sim::ToyReader)),
        ..config
    };
    let mut sim = Sim::new(2, config);
    let mut open: Vec<(usize, SessionId)> = Vec::new();
    let mut next = 1u64;
    let mut bytes = data.iter().skip(1).copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let pick = |open: &Vec<(usize, SessionId)>| {
            (!open.is_empty()).then(|| open[usize::from(arg) % open.len()])
        };
        match op % 8 {
            0 => {
                let users = [None, Some("u0"), Some("u1"), Some("u2")];
                let session = SessionId(next);
                next += 1;
                let node = usize::from(arg >> 7);
                sim.open(node, session, users[usize::from(arg) % 4]);
                // Its token ends within a minute.
                if arg & 0x40 != 0 {
                    sim.expire_in(node, session, Duration::from_secs(u64::from(arg & 0x3f)));
                }
                open.push((node, session));
            }
            1 => {
                if let Some((node, session)) = pick(&open) {
                    sim.close(node, session);
                    open.retain(|(_, s)| *s != session);
                }
            }
            2 => match arg >> 6 {
                // Backend work held back and run an item at a time, so
                // commands and deliveries come while joins are in flight.
                3 => sim.hold(arg & 1 == 1),
                2 => {
                    sim.step(usize::from(arg & 1));
                }
                // A node's broker connection dropped and came back.
                1 => sim.interrupt(usize::from(arg & 1)),
                _ => sim.advance(Duration::from_secs(u64::from(arg))),
            },
            // A publication on its way to a node dropped, held back or
            // doubled, or what was held let go.
            3 if arg & 0x40 != 0 => {
                let node = usize::from(arg >> 7);
                match arg & 3 {
                    0 => sim.transit(node, &[Transit::Drop]),
                    1 => sim.transit(node, &[Transit::Hold]),
                    2 => sim.transit(node, &[Transit::Twice]),
                    _ => sim.release(node),
                }
            }
            3 => {
                if let Some((node, session)) = pick(&open) {
                    sim.set_slow(node, session, arg & 0x80 != 0);
                }
            }
            4 => {
                // Raw text, as much as the next byte says.
                let len = usize::from(bytes.next().unwrap_or(0) % 64);
                let text: Vec<u8> = bytes.by_ref().take(len).collect();
                if let Some((node, session)) = pick(&open) {
                    sim.send(node, session, &String::from_utf8_lossy(&text));
                }
            }
            _ => {
                let shape = bytes.next().unwrap_or(0);
                let Some((node, session)) = pick(&open) else {
                    continue;
                };
                let count = BUILTIN_COMMANDS.len() + OTHER_ACTIONS.len();
                let choice = usize::from(shape) % count;
                let action = BUILTIN_COMMANDS
                    .get(choice)
                    .copied()
                    .unwrap_or_else(|| OTHER_ACTIONS[choice - BUILTIN_COMMANDS.len()]);
                let channel = NAMES[usize::from(shape >> 4) % NAMES.len()];
                let user = ["u0", "u1", "u2"][usize::from(arg) % 3];
                let data = match action {
                    "create" => serde_json::json!({
                        "max_participants": arg % 3 + 1,
                        "history_size": arg % 4,
                        "presence_events": arg & 1 == 1,
                        "encrypted": arg & 2 == 2,
                    }),
                    // A commit for either channel's group at a small epoch,
                    // or bytes that are none; sometimes with a GroupInfo.
                    "commit" => {
                        let group = NAMES[usize::from(arg >> 6) % 2];
                        let mut commit = vec![b'C', arg % 4];
                        commit.extend_from_slice(group.as_bytes());
                        if arg & 0x20 != 0 {
                            commit[0] = b'?';
                        }
                        let mut data = serde_json::json!({ "commit": BASE64.encode(&commit) });
                        if arg & 0x10 != 0 {
                            data["group_info"] = BASE64.encode([b'G', arg % 4]).into();
                        }
                        data
                    }
                    "key_packages" => {
                        let package = |n: u8| BASE64.encode([b'K', n % 3, n % 2]);
                        serde_json::json!({
                            "key_packages": (0..arg % 4).map(package).collect::<Vec<_>>(),
                            "last_resort": package(arg),
                        })
                    }
                    "claim" if arg & 1 == 1 => {
                        serde_json::json!({"user": user, "except": [format!("{:x}", arg >> 1)]})
                    }
                    "claim" => serde_json::json!({"user": user}),
                    "join" if arg & 1 == 1 => {
                        serde_json::json!({"since": {"offset": arg >> 1, "epoch": "x"}})
                    }
                    "kick" if arg & 1 == 1 => {
                        serde_json::json!({"session": format!("{:016x}", arg >> 1)})
                    }
                    "kick" | "ban" | "unban" => serde_json::json!({"user": user}),
                    "role" => {
                        let role = ["owner", "participant", "mod", "x"][usize::from(arg) % 4];
                        serde_json::json!({"user": user, "role": role})
                    }
                    "subscribe" => serde_json::json!({"filter": {"k": arg}}),
                    "refresh" if arg & 1 == 1 => serde_json::json!({"token": ""}),
                    "refresh" => serde_json::json!({"token": format!("{user}:{}", arg >> 2)}),
                    "publish" => match arg % 4 {
                        0 => serde_json::json!({"e2e": "mls", "message": "AA=="}),
                        1 => serde_json::json!({"e2e": "commit", "epoch": arg}),
                        2 => serde_json::json!({"e2e": "proposal", "epoch": arg}),
                        _ => serde_json::json!({"n": arg}),
                    },
                    _ => serde_json::json!({}),
                };
                let channel = match action {
                    "key_packages" if arg & 1 == 0 => crate::protocol::KEYS_CHANNEL,
                    "refresh" if arg & 2 == 0 => crate::protocol::SESSION_CHANNEL,
                    _ => channel,
                };
                let text = serde_json::json!({
                    "type": "command", "id": arg, "channel": channel, "action": action, "data": data,
                });
                sim.send(node, session, &text.to_string());
            }
        }
        for node in 0..2 {
            if let Err(e) = sim.with_manager(node, |m| m.check_invariants()) {
                panic!("node {node}: {e}");
            }
        }
    }
    sim.hold(false);
    for (node, session) in open {
        sim.close(node, session);
    }
    for node in 0..2 {
        sim.with_manager(node, |m| {
            assert_eq!(m.session_count(), 0);
            assert_eq!(m.pending_count(), 0, "operations left unanswered");
            if let Err(e) = m.check_invariants() {
                panic!("node {node}: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_few_inputs_run_clean() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..200 {
            let data: Vec<u8> = (0..len * 3)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed.to_le_bytes()[0]
                })
                .collect();
            super::channels(&data);
        }
    }
}
