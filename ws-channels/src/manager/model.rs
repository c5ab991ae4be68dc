//! Model-based tests: random command sequences from sessions on two nodes
//! (with reconnects, kicks, bans, role changes, closes and time passing)
//! run through the managers on the memory backend and through a small
//! reference model; replies, memberships, roles and deliveries must agree.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::config::ChannelsConfig;
use crate::sim::{Out, Sim};
use crate::types::{ChannelRole, SessionId};

const USERS: [&str; 3] = ["u0", "u1", "u2"];
const CHANNELS: [&str; 3] = ["c0", "c1", "c2"];
const LINGER: u64 = 300;
const MAX_CHANNELS_PER_SESSION: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Open {
        user: usize,
    },
    Close {
        session: usize,
    },
    Create {
        session: usize,
        channel: usize,
        max: Option<u8>,
    },
    Join {
        session: usize,
        channel: usize,
    },
    Leave {
        session: usize,
        channel: usize,
    },
    Publish {
        session: usize,
        channel: usize,
    },
    Kick {
        session: usize,
        channel: usize,
        user: usize,
    },
    Ban {
        session: usize,
        channel: usize,
        user: usize,
    },
    Unban {
        session: usize,
        channel: usize,
        user: usize,
    },
    SetRole {
        session: usize,
        channel: usize,
        user: usize,
        role: usize,
    },
    CloseChannel {
        session: usize,
        channel: usize,
    },
    Advance {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..8usize;
    let c = 0..CHANNELS.len();
    let u = 0..USERS.len();
    prop_oneof![
        2 => u.clone().prop_map(|user| Op::Open { user }),
        1 => s.clone().prop_map(|session| Op::Close { session }),
        2 => (s.clone(), c.clone(), prop::option::of(1..3u8))
            .prop_map(|(session, channel, max)| Op::Create { session, channel, max }),
        4 => (s.clone(), c.clone()).prop_map(|(session, channel)| Op::Join { session, channel }),
        1 => (s.clone(), c.clone()).prop_map(|(session, channel)| Op::Leave { session, channel }),
        4 => (s.clone(), c.clone()).prop_map(|(session, channel)| Op::Publish { session, channel }),
        1 => (s.clone(), c.clone(), u.clone())
            .prop_map(|(session, channel, user)| Op::Kick { session, channel, user }),
        1 => (s.clone(), c.clone(), u.clone())
            .prop_map(|(session, channel, user)| Op::Ban { session, channel, user }),
        1 => (s.clone(), c.clone(), u.clone())
            .prop_map(|(session, channel, user)| Op::Unban { session, channel, user }),
        1 => (s.clone(), c.clone(), u.clone(), 0..4usize)
            .prop_map(|(session, channel, user, role)| Op::SetRole { session, channel, user, role }),
        1 => (s.clone(), c.clone()).prop_map(|(session, channel)| Op::CloseChannel { session, channel }),
        1 => (1..=20u64).prop_map(|secs| Op::Advance { secs }),
    ]
}

const ROLES: [&str; 4] = ["owner", "participant", "mod", "viewer"];

fn allows(role: &str, command: &str) -> bool {
    match role {
        "owner" => true,
        "participant" => matches!(command, "publish" | "leave" | "presence"),
        "mod" => matches!(command, "kick" | "publish" | "leave" | "presence"),
        _ => matches!(command, "leave" | "presence"),
    }
}

#[derive(Debug, Default)]
struct ModelChannel {
    max: usize,
    members: BTreeMap<u64, String>,
    roles: BTreeMap<String, String>,
    bans: BTreeSet<String>,
    empty_since: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    /// Open sessions: id → user.
    sessions: BTreeMap<u64, String>,
    channels: BTreeMap<String, ModelChannel>,
}

impl Model {
    fn expire(&mut self) {
        let now = self.now;
        self.channels
            .retain(|_, c| c.empty_since.is_none_or(|since| now - since < LINGER));
    }

    fn remove_members(&mut self, channel: &str, which: impl Fn(u64, &str) -> bool) -> Vec<u64> {
        let now = self.now;
        let Some(record) = self.channels.get_mut(channel) else {
            return Vec::new();
        };
        let removed: Vec<u64> = record
            .members
            .iter()
            .filter(|(s, u)| which(**s, u))
            .map(|(s, _)| *s)
            .collect();
        for s in &removed {
            record.members.remove(s);
        }
        if !removed.is_empty() && record.members.is_empty() {
            record.empty_since = Some(now);
        }
        removed
    }

    fn memberships(&self, session: u64) -> Vec<(String, ChannelRole)> {
        let user = &self.sessions[&session];
        self.channels
            .iter()
            .filter(|(_, c)| c.members.contains_key(&session))
            .map(|(name, c)| {
                let role = c.roles.get(user).map_or("participant", String::as_str);
                (name.clone(), role_of(role))
            })
            .collect()
    }

    fn member_role(&self, session: u64, channel: &str) -> Option<String> {
        let record = self.channels.get(channel)?;
        record.members.get(&session)?;
        let user = &self.sessions[&session];
        Some(
            record
                .roles
                .get(user)
                .cloned()
                .unwrap_or("participant".into()),
        )
    }

    fn count(&self, session: u64) -> usize {
        self.channels
            .values()
            .filter(|c| c.members.contains_key(&session))
            .count()
    }
}

fn role_of(name: &str) -> ChannelRole {
    match name {
        "owner" => ChannelRole::OWNER,
        "participant" => ChannelRole::PARTICIPANT,
        other => ChannelRole::new(other),
    }
}

struct Run {
    sim: Sim,
    model: Model,
    /// Session ids in order of opening (ops pick by index).
    opened: Vec<u64>,
    next_id: u32,
    published: u64,
}

fn node_of(session: u64) -> usize {
    (session % 2) as usize
}

impl Run {
    fn new() -> Self {
        let config = ChannelsConfig {
            max_channels_per_session: MAX_CHANNELS_PER_SESSION,
            command_burst: 1_000_000,
            max_violations: 1_000_000,
            channel_linger: Duration::from_secs(LINGER),
            ..ChannelsConfig::default()
        }
        .role("mod", ["kick", "publish", "leave", "presence"])
        .role("viewer", ["leave", "presence"]);
        Self {
            sim: Sim::new(2, config),
            model: Model::default(),
            opened: Vec::new(),
            next_id: 0,
            published: 0,
        }
    }

    fn pick(&self, index: usize) -> Option<u64> {
        let open: Vec<u64> = self
            .opened
            .iter()
            .copied()
            .filter(|s| self.model.sessions.contains_key(s))
            .collect();
        (!open.is_empty()).then(|| open[index % open.len()])
    }

    /// Sends a command and returns its reply's error code (`None` for ok),
    /// with every message each session got meanwhile.
    fn command(
        &mut self,
        session: u64,
        channel: &str,
        action: &str,
        data: Value,
    ) -> (Option<String>, BTreeMap<u64, Vec<Value>>) {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let text = json!({"type": "command", "id": id, "channel": channel, "action": action, "data": data});
        self.sim
            .send(node_of(session), SessionId(session), &text.to_string());
        let mut outputs = self.collect();
        let mine = outputs.entry(session).or_default();
        let position = mine
            .iter()
            .position(|m| m["type"] == "response" && m["id"] == id)
            .unwrap_or_else(|| panic!("no reply to {action} on {channel}: {mine:?}"));
        let reply = mine.remove(position);
        let code = (reply["data"]["ok"] != true)
            .then(|| reply["data"]["code"].as_str().unwrap().to_owned());
        (code, outputs)
    }

    fn collect(&mut self) -> BTreeMap<u64, Vec<Value>> {
        let mut all = BTreeMap::new();
        for &session in self.model.sessions.keys() {
            let outs = self.sim.take(node_of(session), SessionId(session));
            let messages = outs
                .into_iter()
                .map(|o| match o {
                    Out::Message(v) => v,
                    Out::Closed(code, reason) => panic!("{session:x} closed: {code} {reason}"),
                })
                .collect();
            all.insert(session, messages);
        }
        all
    }

    fn step(&mut self, op: &Op) {
        let ch = |c: &usize| CHANNELS[*c];
        match op {
            Op::Open { user } => {
                self.next_id += 1;
                let session = u64::from(self.next_id) * 7919;
                self.opened.push(session);
                self.model.sessions.insert(session, USERS[*user].to_owned());
                self.sim
                    .open(node_of(session), SessionId(session), Some(USERS[*user]));
            }
            Op::Close { session } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                self.sim.close(node_of(session), SessionId(session));
                self.model.sessions.remove(&session);
                let names: Vec<String> = self.model.channels.keys().cloned().collect();
                for name in names {
                    self.model.remove_members(&name, |s, _| s == session);
                }
                self.collect();
            }
            Op::Advance { secs } => {
                self.sim.advance(Duration::from_secs(*secs));
                self.model.now += secs;
                self.model.expire();
                self.collect();
            }
            Op::Create {
                session,
                channel,
                max,
            } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                let data = match max {
                    Some(max) => json!({ "max_participants": max }),
                    None => json!({}),
                };
                let (code, _) = self.command(session, ch(channel), "create", data);
                self.model.expire();
                let expected = if self.model.count(session) >= MAX_CHANNELS_PER_SESSION {
                    Some("limit")
                } else if self.model.channels.contains_key(ch(channel)) {
                    Some("already_exists")
                } else {
                    None
                };
                assert_eq!(code.as_deref(), expected, "{op:?}");
                if expected.is_none() {
                    let user = self.model.sessions[&session].clone();
                    let mut record = ModelChannel {
                        max: max.map_or(usize::MAX, usize::from),
                        ..ModelChannel::default()
                    };
                    record.members.insert(session, user.clone());
                    record.roles.insert(user, "owner".into());
                    self.model.channels.insert(ch(channel).to_owned(), record);
                }
            }
            Op::Join { session, channel } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                let (code, _) = self.command(session, ch(channel), "join", json!({}));
                self.model.expire();
                let user = self.model.sessions[&session].clone();
                let expected = match self.model.channels.get(ch(channel)) {
                    Some(c) if c.members.contains_key(&session) => None,
                    _ if self.model.count(session) >= MAX_CHANNELS_PER_SESSION => Some("limit"),
                    None => Some("not_found"),
                    Some(c) if c.bans.contains(&user) => Some("banned"),
                    Some(c) if c.members.len() >= c.max => Some("full"),
                    Some(_) => None,
                };
                assert_eq!(code.as_deref(), expected, "{op:?}");
                if expected.is_none() {
                    let record = self.model.channels.get_mut(ch(channel)).unwrap();
                    record.members.insert(session, user);
                    record.empty_since = None;
                }
            }
            Op::Leave { session, channel } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                let (code, _) = self.command(session, ch(channel), "leave", json!({}));
                self.model.expire();
                let expected = match self.model.member_role(session, ch(channel)) {
                    None => Some("not_member"),
                    Some(_) => None,
                };
                assert_eq!(code.as_deref(), expected, "{op:?}");
                if expected.is_none() {
                    self.model.remove_members(ch(channel), |s, _| s == session);
                }
            }
            Op::Publish { session, channel } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                self.published += 1;
                let n = self.published;
                let (code, outputs) =
                    self.command(session, ch(channel), "publish", json!({ "n": n }));
                self.model.expire();
                let expected = match self.model.member_role(session, ch(channel)) {
                    None => Some("not_member"),
                    Some(role) if !allows(&role, "publish") => Some("forbidden"),
                    Some(_) => None,
                };
                assert_eq!(code.as_deref(), expected, "{op:?}");
                let members: BTreeSet<u64> = match expected {
                    None => self.model.channels[ch(channel)]
                        .members
                        .keys()
                        .copied()
                        .collect(),
                    Some(_) => BTreeSet::new(),
                };
                for (s, messages) in outputs {
                    let got = messages
                        .iter()
                        .filter(|m| m["action"] == "message" && m["data"]["data"]["n"] == n)
                        .count();
                    let wanted = usize::from(members.contains(&s));
                    assert_eq!(got, wanted, "{s:x} got publication {n} {got} times: {op:?}");
                }
            }
            Op::Kick {
                session,
                channel,
                user,
            } => self.removal(op, *session, ch(channel), "kick", USERS[*user]),
            Op::Ban {
                session,
                channel,
                user,
            } => self.removal(op, *session, ch(channel), "ban", USERS[*user]),
            Op::Unban {
                session,
                channel,
                user,
            } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                let (code, _) = self.command(
                    session,
                    ch(channel),
                    "unban",
                    json!({ "user": USERS[*user] }),
                );
                self.model.expire();
                let mut expected = self.permission(session, ch(channel), "unban");
                // Lifting no ban is `not_found`.
                if expected.is_none()
                    && !self.model.channels[ch(channel)].bans.contains(USERS[*user])
                {
                    expected = Some("not_found");
                }
                assert_eq!(code.as_deref(), expected, "{op:?}");
                if expected.is_none() {
                    self.model
                        .channels
                        .get_mut(ch(channel))
                        .unwrap()
                        .bans
                        .remove(USERS[*user]);
                }
            }
            Op::SetRole {
                session,
                channel,
                user,
                role,
            } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                let data = json!({ "user": USERS[*user], "role": ROLES[*role] });
                let (code, _) = self.command(session, ch(channel), "role", data);
                self.model.expire();
                let expected = self.permission(session, ch(channel), "role");
                assert_eq!(code.as_deref(), expected, "{op:?}");
                if expected.is_none() {
                    let record = self.model.channels.get_mut(ch(channel)).unwrap();
                    if ROLES[*role] == "participant" {
                        record.roles.remove(USERS[*user]);
                    } else {
                        record
                            .roles
                            .insert(USERS[*user].into(), ROLES[*role].into());
                    }
                }
            }
            Op::CloseChannel { session, channel } => {
                let Some(session) = self.pick(*session) else {
                    return;
                };
                let (code, outputs) = self.command(session, ch(channel), "close", json!({}));
                self.model.expire();
                let expected = self.permission(session, ch(channel), "close");
                assert_eq!(code.as_deref(), expected, "{op:?}");
                if expected.is_none() {
                    let record = self.model.channels.remove(ch(channel)).unwrap();
                    for member in record.members.keys() {
                        let told = outputs[member]
                            .iter()
                            .filter(|m| m["action"] == "closed")
                            .count();
                        assert_eq!(told, 1, "{member:x} told of the close {told} times");
                    }
                }
            }
        }
    }

    fn permission(&self, session: u64, channel: &str, command: &str) -> Option<&'static str> {
        match self.model.member_role(session, channel) {
            None => Some("not_member"),
            Some(role) if !allows(&role, command) => Some("forbidden"),
            Some(_) => None,
        }
    }

    fn removal(&mut self, op: &Op, session: usize, channel: &str, action: &str, user: &str) {
        let Some(session) = self.pick(session) else {
            return;
        };
        let (code, outputs) = self.command(session, channel, action, json!({ "user": user }));
        self.model.expire();
        let own = self.model.sessions[&session].clone();
        let mut expected = self.permission(session, channel, action);
        if expected.is_none() && action == "ban" && own == user {
            expected = Some("bad_request");
        }
        let targets = self
            .model
            .channels
            .get(channel)
            .map_or(0, |c| c.members.values().filter(|u| *u == user).count());
        if expected.is_none() && action == "kick" && targets == 0 {
            expected = Some("not_found");
        }
        assert_eq!(code.as_deref(), expected, "{op:?}");
        if expected.is_some() {
            return;
        }
        if action == "ban" {
            self.model
                .channels
                .get_mut(channel)
                .unwrap()
                .bans
                .insert(user.to_owned());
        }
        let removed = self.model.remove_members(channel, |_, u| u == user);
        let event = if action == "ban" { "banned" } else { "kicked" };
        for s in removed {
            let told = outputs[&s].iter().filter(|m| m["action"] == event).count();
            assert_eq!(told, 1, "{s:x} told of the {action} {told} times");
        }
    }

    fn check(&self) {
        for node in 0..2 {
            self.sim
                .with_manager(node, |m| m.check_invariants())
                .unwrap_or_else(|e| panic!("node {node}: {e}"));
        }
        for &session in self.model.sessions.keys() {
            let actual = self
                .sim
                .with_manager(node_of(session), |m| m.memberships(SessionId(session)));
            assert_eq!(actual, self.model.memberships(session), "{session:x}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn managers_agree_with_the_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        for op in &ops {
            run.step(op);
            run.check();
        }
        // Everyone goes: nothing is left behind on any node or in presence.
        let sessions: Vec<u64> = run.model.sessions.keys().copied().collect();
        for session in sessions {
            run.sim.close(node_of(session), SessionId(session));
        }
        for node in 0..2 {
            run.sim.with_manager(node, |m| {
                assert_eq!(m.session_count(), 0);
                assert_eq!(m.pending_count(), 0);
                m.check_invariants().unwrap();
            });
        }
        for channel in CHANNELS {
            if let Ok(roster) = run.sim.run(run.sim.backend().store.members(channel, 10)) {
                assert_eq!(roster.total, 0, "{channel}");
            }
        }
    }
}

/// What happens between the broker and the nodes while two publishers (one
/// per node) publish: publications dropped, held back (and delivered late)
/// or delivered twice on their way to a node, broker connections that
/// drop and come back, time passing (history trimmed by size, position
/// checks due).
#[derive(Debug, Clone)]
enum Wire {
    Publish { node: usize },
    Transit { node: usize, fault: usize },
    Release { node: usize },
    Interrupt { node: usize },
    Advance { secs: u64 },
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        6 => (0..2usize).prop_map(|node| Wire::Publish { node }),
        3 => (0..2usize, 0..3usize).prop_map(|(node, fault)| Wire::Transit { node, fault }),
        1 => (0..2usize).prop_map(|node| Wire::Release { node }),
        1 => (0..2usize).prop_map(|node| Wire::Interrupt { node }),
        1 => (1..=15u64).prop_map(|secs| Wire::Advance { secs }),
    ]
}

/// Checks one member's messages on "room": each offset once, in order,
/// and every gap in them (and a tail short of `newest`) told by a `lost`
/// event in its place.
fn no_gap_passes_silently(session: u64, log: &[Value], newest: u64) -> Result<(), String> {
    let mut last: Option<u64> = None;
    let mut told = false;
    for event in log.iter().filter(|e| e["channel"] == "room") {
        match event["action"].as_str() {
            Some("lost") => told = true,
            Some("message") => {
                let offset = event["data"]["offset"].as_u64().expect("an offset");
                if let Some(last) = last {
                    if offset <= last {
                        return Err(format!("{session:x}: {offset} after {last}"));
                    }
                    if offset > last + 1 && !told {
                        return Err(format!("{session:x}: {last} then {offset}, no lost"));
                    }
                }
                last = Some(offset);
                told = false;
            }
            _ => {}
        }
    }
    match last {
        Some(last) if last < newest && !told => Err(format!(
            "{session:x}: ended at {last} of {newest} without a lost event"
        )),
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_gap_reaches_a_member_silently(
        wires in prop::collection::vec(wire(), 1..60),
        // About 160 bytes a publication: a fill hands out one to a few
        // at once, or all.
        max_gap_fill_bytes in prop_oneof![0usize..700, Just(usize::MAX)],
    ) {
        use crate::sim::Transit;
        let config = ChannelsConfig {
            presence_ttl: Duration::from_secs(30),
            command_burst: 1_000_000,
            max_gap_fill_bytes,
            ..ChannelsConfig::default()
        };
        let mut sim = Sim::new(2, config);
        // Publishers 0xa (node 0) and 0xb (node 1); members 0xc, 0xd.
        let sessions = [(0usize, 0xa_u64), (1, 0xb), (0, 0xc), (1, 0xd)];
        for (node, id) in sessions {
            sim.open(node, SessionId(id), Some(&format!("u{id:x}")));
        }
        let command = |id: u32, action: &str, data: Value| {
            json!({"type": "command", "id": id.to_string(), "channel": "room",
                   "action": action, "data": data}).to_string()
        };
        // A small history, so some gaps are beyond filling.
        sim.send(0, SessionId(0xa), &command(1, "create", json!({"history_size": 4})));
        for (node, id) in &sessions[1..] {
            sim.send(*node, SessionId(*id), &command(1, "join", json!({})));
        }
        let mut logs: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
        let mut newest = 0;
        let mut next_id = 10;
        let take = |sim: &mut Sim, logs: &mut BTreeMap<u64, Vec<Value>>, newest: &mut u64| {
            for (node, id) in sessions {
                for out in sim.take(node, SessionId(id)) {
                    let Out::Message(message) = out else { panic!("{id:x} closed: {out:?}") };
                    if message["type"] == "response"
                        && message["action"] == "publish"
                        && let Some(offset) = message["data"]["offset"].as_u64()
                    {
                        *newest = (*newest).max(offset);
                    }
                    logs.entry(id).or_default().push(message);
                }
            }
        };
        take(&mut sim, &mut logs, &mut newest);
        for step in &wires {
            match *step {
                Wire::Publish { node } => {
                    next_id += 1;
                    let publisher = sessions[node].1;
                    sim.send(node, SessionId(publisher), &command(next_id, "publish", json!(next_id)));
                }
                Wire::Transit { node, fault } => {
                    sim.transit(node, &[[Transit::Drop, Transit::Hold, Transit::Twice][fault]]);
                }
                Wire::Release { node } => sim.release(node),
                Wire::Interrupt { node } => sim.interrupt(node),
                Wire::Advance { secs } => sim.advance(Duration::from_secs(secs)),
            }
            take(&mut sim, &mut logs, &mut newest);
            for node in 0..2 {
                sim.with_manager(node, |m| m.check_invariants())
                    .unwrap_or_else(|e| panic!("node {node}: {e}"));
            }
        }
        // What was held arrives at last, and a position check comes due.
        sim.release(0);
        sim.release(1);
        sim.advance(Duration::from_secs(11));
        take(&mut sim, &mut logs, &mut newest);
        for (id, log) in &logs {
            if let Err(e) = no_gap_passes_silently(*id, log, newest) {
                panic!("{e}\n{wires:?}\n{log:#?}");
            }
        }
    }
}
