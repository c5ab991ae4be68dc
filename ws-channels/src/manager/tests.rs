use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use ws_core::CloseCode;

use crate::config::{ChannelsConfig, SlowSubscriber, TopicAccess, close_codes};
use crate::sim::{Out, Sim};
use crate::types::{ChannelRole, SessionId};

const A: SessionId = SessionId(0xa);
const B: SessionId = SessionId(0xb);
const C: SessionId = SessionId(0xc);

fn cmd(id: u32, channel: &str, action: &str, data: Value) -> String {
    json!({"type": "command", "id": id.to_string(), "channel": channel, "action": action, "data": data})
        .to_string()
}

fn messages(outs: Vec<Out>) -> Vec<Value> {
    outs.into_iter()
        .map(|o| match o {
            Out::Message(v) => v,
            Out::Closed(code, reason) => panic!("closed {code} {reason}"),
        })
        .collect()
}

/// The one reply among `outs`, checked to answer `id`.
fn reply(outs: Vec<Out>, id: u32) -> Value {
    let replies: Vec<Value> = messages(outs)
        .into_iter()
        .filter(|m| m["type"] == "response")
        .collect();
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["id"], id.to_string());
    replies[0]["data"].clone()
}

fn error_code(data: &Value) -> &str {
    assert_eq!(data["ok"], false, "{data}");
    data["code"].as_str().unwrap()
}

fn events(outs: Vec<Out>, action: &str) -> Vec<Value> {
    messages(outs)
        .into_iter()
        .filter(|m| m["type"] == "event" && m["action"] == action)
        .map(|m| m["data"].clone())
        .collect()
}

/// One node, users a, b, c on sessions A, B, C; A owns "room".
fn room(config: ChannelsConfig, create: Value) -> Sim {
    let mut sim = Sim::new(1, config);
    sim.open(0, A, Some("a"));
    sim.open(0, B, Some("b"));
    sim.open(0, C, Some("c"));
    sim.send(0, A, &cmd(1, "room", "create", create));
    assert_eq!(reply(sim.take(0, A), 1)["role"], "owner");
    sim
}

fn join(sim: &mut Sim, session: SessionId, id: u32) -> Value {
    sim.send(0, session, &cmd(id, "room", "join", json!({})));
    reply(sim.take(0, session), id)
}

#[test]
fn publish_reaches_each_member_once_in_order() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    assert_eq!(join(&mut sim, B, 1)["role"], "participant");
    for n in 0..3 {
        sim.send(0, A, &cmd(10 + n, "room", "publish", json!({ "n": n })));
    }
    let got: Vec<Value> = events(sim.take(0, B), "message")
        .into_iter()
        .map(|d| d["data"]["n"].clone())
        .collect();
    assert_eq!(got, [json!(0), json!(1), json!(2)]);
    let own = sim.take(0, A);
    assert_eq!(
        events(own.clone(), "message").len(),
        3,
        "echo is on by default"
    );
    assert_eq!(events(sim.take(0, C), "message").len(), 0, "C never joined");
    let from = &events(own, "message")[0]["from"];
    assert_eq!(from["user"], "a");
    assert_eq!(from["session"], "000000000000000a");
}

#[test]
fn echo_off_spares_the_publisher() {
    let config = ChannelsConfig {
        echo: false,
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({}));
    join(&mut sim, B, 1);
    sim.send(0, A, &cmd(2, "room", "publish", json!("hi")));
    let own = sim.take(0, A);
    assert_eq!(reply(own.clone(), 2)["ok"], true);
    assert!(events(own, "message").is_empty());
    assert_eq!(events(sim.take(0, B), "message").len(), 1);
}

#[test]
fn participants_cannot_use_owner_commands() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    join(&mut sim, B, 1);
    for (id, action, data) in [
        (2, "kick", json!({"user": "a"})),
        (3, "ban", json!({"user": "a"})),
        (4, "unban", json!({"user": "a"})),
        (5, "role", json!({"user": "b", "role": "owner"})),
        (6, "close", json!({})),
    ] {
        sim.send(0, B, &cmd(id, "room", action, data));
        assert_eq!(
            error_code(&reply(sim.take(0, B), id)),
            "forbidden",
            "{action}"
        );
    }
    // Not a member at all.
    sim.send(0, C, &cmd(7, "room", "publish", json!(1)));
    assert_eq!(error_code(&reply(sim.take(0, C), 7)), "not_member");
    // Nothing was published by the refused commands.
    assert!(events(sim.take(0, A), "message").is_empty());
}

#[test]
fn roles_given_by_the_owner_take_effect_and_outlive_rejoining() {
    let config = ChannelsConfig::default().role("moderator", ["kick", "publish", "leave"]);
    let mut sim = room(config, json!({}));
    join(&mut sim, B, 1);
    join(&mut sim, C, 2);
    sim.send(
        0,
        A,
        &cmd(3, "room", "role", json!({"user": "b", "role": "moderator"})),
    );
    assert_eq!(reply(sim.take(0, A), 3)["ok"], true);
    assert_eq!(events(sim.take(0, B), "role")[0]["role"], "moderator");
    sim.send(0, B, &cmd(4, "room", "kick", json!({"user": "c"})));
    assert_eq!(reply(sim.take(0, B), 4)["ok"], true);
    assert_eq!(events(sim.take(0, C), "kicked").len(), 1);
    // The role is the user's: it holds when b leaves and joins again.
    sim.send(0, B, &cmd(5, "room", "leave", json!({})));
    reply(sim.take(0, B), 5);
    assert_eq!(join(&mut sim, B, 6)["role"], "moderator");
    sim.send(
        0,
        A,
        &cmd(7, "room", "role", json!({"user": "b", "role": "admin"})),
    );
    assert_eq!(error_code(&reply(sim.take(0, A), 7)), "bad_request");
    assert_eq!(
        sim.with_manager(0, |m| m.memberships(B)),
        [("room".to_owned(), ChannelRole::new("moderator"))]
    );
}

#[test]
fn a_ban_outlives_reconnecting_until_lifted_or_over() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    join(&mut sim, B, 1);
    sim.send(
        0,
        A,
        &cmd(2, "room", "ban", json!({"user": "b", "duration": 60})),
    );
    assert_eq!(reply(sim.take(0, A), 2)["ok"], true);
    assert_eq!(events(sim.take(0, B), "banned").len(), 1);
    assert!(sim.with_manager(0, |m| m.memberships(B)).is_empty());
    // Reconnect as a new session of the same user.
    sim.close(0, B);
    let b2 = SessionId(0xb2);
    sim.open(0, b2, Some("b"));
    assert_eq!(error_code(&join(&mut sim, b2, 3)), "banned");
    sim.advance(Duration::from_secs(61));
    sim.take(0, A);
    assert_eq!(join(&mut sim, b2, 4)["ok"], true, "the ban ran out");
    sim.send(0, A, &cmd(5, "room", "ban", json!({"user": "b"})));
    reply(sim.take(0, A), 5);
    sim.send(0, A, &cmd(6, "room", "unban", json!({"user": "b"})));
    reply(sim.take(0, A), 6);
    sim.take(0, b2);
    assert_eq!(join(&mut sim, b2, 7)["ok"], true, "unbanned");
    sim.send(0, A, &cmd(8, "room", "ban", json!({"user": "a"})));
    assert_eq!(error_code(&reply(sim.take(0, A), 8)), "bad_request");
}

#[test]
fn kicking_one_session_or_every_session_of_a_user() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    let b2 = SessionId(0xb2);
    sim.open(0, b2, Some("b"));
    join(&mut sim, B, 1);
    sim.send(0, b2, &cmd(2, "room", "join", json!({})));
    reply(sim.take(0, b2), 2);
    sim.send(
        0,
        A,
        &cmd(3, "room", "kick", json!({"session": B.to_string()})),
    );
    assert_eq!(reply(sim.take(0, A), 3)["ok"], true);
    assert_eq!(sim.with_manager(0, |m| m.local_members("room")), [A, b2]);
    sim.send(0, A, &cmd(4, "room", "kick", json!({"user": "b"})));
    reply(sim.take(0, A), 4);
    assert_eq!(sim.with_manager(0, |m| m.local_members("room")), [A]);
    sim.send(0, A, &cmd(5, "room", "kick", json!({"user": "nobody"})));
    assert_eq!(error_code(&reply(sim.take(0, A), 5)), "not_found");
    // A kicked session gets nothing published after the kick.
    sim.take(0, B);
    sim.send(0, A, &cmd(6, "room", "publish", json!(1)));
    assert!(sim.take(0, B).is_empty());
}

#[test]
fn full_channels_refuse_joins() {
    let mut sim = room(ChannelsConfig::default(), json!({"max_participants": 2}));
    join(&mut sim, B, 1);
    assert_eq!(error_code(&join(&mut sim, C, 2)), "full");
    sim.send(0, B, &cmd(3, "room", "leave", json!({})));
    reply(sim.take(0, B), 3);
    assert_eq!(join(&mut sim, C, 4)["ok"], true);
}

#[test]
fn errors_for_missing_and_existing_channels() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    sim.send(0, B, &cmd(1, "nowhere", "join", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 1)), "not_found");
    sim.send(0, B, &cmd(2, "room", "create", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 2)), "already_exists");
    sim.send(0, B, &cmd(3, "bad name", "create", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 3)), "bad_request");
    sim.send(0, B, &cmd(4, &"x".repeat(129), "create", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 4)), "limit");
    sim.send(0, B, &cmd(5, "room", "dance", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 5)), "unknown_command");
    sim.send(
        0,
        B,
        &cmd(6, "r2", "create", json!({"history_size": 1_000_000})),
    );
    assert_eq!(error_code(&reply(sim.take(0, B), 6)), "limit");
    sim.send(
        0,
        B,
        &cmd(7, "r2", "create", json!({"max_participants": 0})),
    );
    assert_eq!(error_code(&reply(sim.take(0, B), 7)), "limit");
    sim.send(0, B, &cmd(8, "room", "leave", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 8)), "not_member");
}

#[test]
fn presence_lists_members_with_info_and_counts() {
    let mut sim = room(
        ChannelsConfig {
            max_presence_reply: 2,
            ..ChannelsConfig::default()
        },
        json!({}),
    );
    sim.send(
        0,
        B,
        &cmd(1, "room", "join", json!({"info": {"name": "Bea"}})),
    );
    reply(sim.take(0, B), 1);
    join(&mut sim, C, 2);
    sim.send(0, B, &cmd(3, "room", "presence", json!({})));
    let roster = reply(sim.take(0, B), 3);
    assert_eq!(roster["total"], 3);
    assert_eq!(roster["truncated"], true);
    let members = roster["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["user"], "a");
    assert_eq!(members[0]["role"], "owner");
    assert_eq!(members[1]["info"]["name"], "Bea");
}

#[test]
fn presence_events_announce_joins_and_leaves() {
    let mut sim = room(ChannelsConfig::default(), json!({"presence_events": true}));
    join(&mut sim, B, 1);
    let joins = events(sim.take(0, A), "join");
    assert_eq!(joins.len(), 1);
    assert_eq!(joins[0]["from"]["user"], "b");
    sim.close(0, B);
    let leaves = events(sim.take(0, A), "leave");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["from"]["user"], "b");
    assert_eq!(leaves[0]["reason"], "disconnected");
    join(&mut sim, C, 2);
    sim.take(0, A);
    sim.send(0, C, &cmd(3, "room", "leave", json!({})));
    assert_eq!(events(sim.take(0, A), "leave")[0]["reason"], "left");
}

// ROBUSTNESS 102: every removal is an event to the members who remain,
// whoever removed the member (a kick or ban by a member, by the server, on
// any node), so no roster keeps someone who is gone.
#[test]
fn kicks_and_bans_tell_the_members_who_remain() {
    let mut sim = Sim::new(2, ChannelsConfig::default());
    sim.open(0, A, Some("a"));
    sim.open(1, B, Some("b"));
    sim.open(1, C, Some("c"));
    sim.send(
        0,
        A,
        &cmd(1, "room", "create", json!({"presence_events": true})),
    );
    assert_eq!(reply(sim.take(0, A), 1)["ok"], true);
    for (session, id) in [(B, 2), (C, 3)] {
        sim.send(1, session, &cmd(id, "room", "join", json!({})));
        assert_eq!(reply(sim.take(1, session), id)["ok"], true);
    }
    sim.take(0, A);
    sim.send(0, A, &cmd(4, "room", "kick", json!({"user": "b"})));
    sim.settle();
    let outs = sim.take(0, A);
    assert_eq!(reply(outs.clone(), 4)["ok"], true);
    assert_eq!(events(sim.take(1, B), "kicked").len(), 1);
    let leaves = events(outs, "leave");
    assert_eq!(leaves.len(), 1, "the owner's roster loses b");
    assert_eq!(
        (
            leaves[0]["from"]["user"].as_str(),
            leaves[0]["reason"].as_str()
        ),
        (Some("b"), Some("kicked"))
    );
    let leaves = events(sim.take(1, C), "leave");
    assert_eq!(leaves.len(), 1, "so does c's, on the other node");

    sim.send(0, A, &cmd(5, "room", "ban", json!({"user": "c"})));
    sim.settle();
    let outs = sim.take(0, A);
    assert_eq!(reply(outs.clone(), 5)["ok"], true);
    let leaves = events(outs, "leave");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["reason"], "banned");
    // The server's own kick (the admin API, `ChannelsHandle::kick`).
    sim.open(1, B, Some("b"));
    sim.send(1, B, &cmd(6, "room", "join", json!({})));
    assert_eq!(reply(sim.take(1, B), 6)["ok"], true);
    sim.take(0, A);
    let kicked = sim.run(sim.backend().execute(
        crate::NodeId(0),
        crate::Operation::Kick {
            channel: "room".into(),
            target: crate::Target::User("b".into()),
        },
    ));
    assert_eq!(kicked, crate::OpResult::Done(Ok(())));
    sim.settle();
    let leaves = events(sim.take(0, A), "leave");
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["reason"], "kicked");
}

// A newcomer (a new tab) sees what was said before it came: the newest
// publications history keeps, as many as asked for and no more than the
// channel keeps; members only.
#[test]
fn members_read_recent_history() {
    let mut sim = room(
        ChannelsConfig::default(),
        json!({"history_size": 3, "history_ttl": 60}),
    );
    for n in 0..5 {
        sim.send(0, A, &cmd(10 + n, "room", "publish", json!(n)));
    }
    sim.take(0, A);
    join(&mut sim, B, 1);
    let said = |data: &Value| -> Vec<Value> {
        data["publications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["data"].clone())
            .collect()
    };
    sim.send(0, B, &cmd(2, "room", "history", json!({})));
    let all = reply(sim.take(0, B), 2);
    assert_eq!(said(&all), [json!(2), json!(3), json!(4)], "{all}");
    assert_eq!(
        (all["offset"].as_u64(), all["complete"].as_bool()),
        (Some(5), Some(true))
    );
    sim.send(0, B, &cmd(3, "room", "history", json!({"limit": 2})));
    let two = reply(sim.take(0, B), 3);
    assert_eq!(said(&two), [json!(3), json!(4)]);
    assert_eq!(two["complete"], false);
    sim.send(0, C, &cmd(4, "room", "history", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, C), 4)), "not_member");
    sim.send(0, A, &cmd(5, "quiet", "create", json!({})));
    reply(sim.take(0, A), 5);
    sim.send(0, A, &cmd(6, "quiet", "history", json!({})));
    assert!(
        said(&reply(sim.take(0, A), 6)).is_empty(),
        "no history kept"
    );
}

/// A room with history on node 0 (A owns it) and B as a member on node 1.
fn two_node_room(history_size: u64) -> Sim {
    two_node_room_with(ChannelsConfig::default(), history_size)
}

fn two_node_room_with(config: ChannelsConfig, history_size: u64) -> Sim {
    let mut sim = Sim::new(2, config);
    sim.open(0, A, Some("a"));
    sim.open(1, B, Some("b"));
    sim.send(
        0,
        A,
        &cmd(
            1,
            "room",
            "create",
            json!({"history_size": history_size, "history_ttl": 60}),
        ),
    );
    assert_eq!(reply(sim.take(0, A), 1)["ok"], true);
    sim.send(1, B, &cmd(2, "room", "join", json!({})));
    assert_eq!(reply(sim.take(1, B), 2)["ok"], true);
    sim
}

fn publish_n(sim: &mut Sim, from: u32, to: u32) {
    for n in from..=to {
        sim.send(0, A, &cmd(100 + n, "room", "publish", json!(n)));
    }
    sim.take(0, A);
}

/// The `n` of each message B got, in order.
fn received(sim: &mut Sim) -> Vec<u64> {
    events(sim.take(1, B), "message")
        .iter()
        .map(|e| e["data"].as_u64().unwrap())
        .collect()
}

// ROBUSTNESS 115: the broker loses a publication on its way to a node (a
// slow consumer cut off, a reconnect): the node sees the gap in offsets,
// reads it from history and hands everything out once, in order; no silent
// jump.
#[test]
fn a_gap_on_the_way_is_filled_from_history() {
    use crate::sim::Transit::{Deliver, Drop};
    let mut sim = two_node_room(100);
    sim.transit(1, &[Deliver, Drop, Drop, Deliver]);
    publish_n(&mut sim, 1, 5);
    assert_eq!(received(&mut sim), [1, 2, 3, 4, 5]);
}

// ROBUSTNESS 115: out of order, or twice: members get each once, in order.
#[test]
fn swapped_and_repeated_publications_reach_members_once_in_order() {
    use crate::sim::Transit::{Deliver, Hold, Twice};
    let mut sim = two_node_room(100);
    sim.transit(1, &[Deliver, Hold, Twice, Twice]);
    publish_n(&mut sim, 1, 4);
    // 3 came before 2: it waits; the history read fills 2.
    assert_eq!(received(&mut sim), [1, 2, 3, 4]);
    // The late copy of 2 is a duplicate.
    sim.release(1);
    assert!(received(&mut sim).is_empty());
    // No history read needed when the missing one comes first.
    sim.hold(true);
    sim.transit(1, &[Hold, Deliver]);
    publish_n(&mut sim, 5, 5);
    sim.step(0);
    publish_n(&mut sim, 6, 6);
    sim.step(0);
    sim.release(1);
    sim.hold(false);
    assert_eq!(received(&mut sim), [5, 6]);
}

// ROBUSTNESS 115: a gap the history no longer holds is a `lost` event to
// each member, with the last position it has, then the stream goes on.
#[test]
fn a_gap_history_cannot_fill_is_reported_lost() {
    use crate::sim::Transit::{Deliver, Drop};
    let mut sim = two_node_room(2);
    sim.transit(1, &[Deliver, Drop, Drop, Drop]);
    publish_n(&mut sim, 1, 5);
    let outs = sim.take(1, B);
    let lost = events(outs.clone(), "lost");
    assert_eq!(lost.len(), 1, "{outs:?}");
    assert_eq!(lost[0]["offset"], 1);
    let got: Vec<u64> = events(outs, "message")
        .iter()
        .map(|e| e["data"].as_u64().unwrap())
        .collect();
    assert_eq!(got, [1, 5]);
}

// ROBUSTNESS 115: what arrives behind a gap waits within a byte budget
// (4 MiB a channel on a node), not whatever the broker sends meanwhile;
// what does not fit is read from history with the gap.
#[test]
fn publications_behind_a_gap_wait_within_a_byte_budget() {
    let mut sim = big_gap(16 << 20);
    let got: Vec<u64> = events(sim.take(1, B), "message")
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(got, (1..=101).collect::<Vec<u64>>());
}

/// Node 1 misses the first of 101 publications of 50 KB and reads the gap
/// from history while the rest arrive behind it, handing out at most
/// `max_gap_fill_bytes` of them at once.
fn big_gap(max_gap_fill_bytes: usize) -> Sim {
    use crate::sim::Transit::Drop;
    let config = ChannelsConfig {
        max_history_bytes: 16 << 20,
        command_burst: 1_000,
        max_gap_fill_bytes,
        ..ChannelsConfig::default()
    };
    let mut sim = Sim::new(2, config);
    sim.open(0, A, Some("a"));
    sim.open(1, B, Some("b"));
    sim.send(
        0,
        A,
        &cmd(1, "room", "create", json!({"history_size": 1000})),
    );
    assert_eq!(reply(sim.take(0, A), 1)["ok"], true);
    sim.send(1, B, &cmd(2, "room", "join", json!({})));
    assert_eq!(reply(sim.take(1, B), 2)["ok"], true);
    // The first is lost on its way to node 1, and its history read is
    // held while 5 MB more arrive behind the gap.
    sim.transit(1, &[Drop]);
    sim.hold(true);
    let pad = "p".repeat(50 * 1024);
    for n in 1..=101u32 {
        sim.send(
            0,
            A,
            &cmd(100 + n, "room", "publish", json!({"n": n, "pad": pad})),
        );
        assert!(sim.step(0), "the publish runs");
        sim.with_manager(1, |m| m.check_invariants()).unwrap();
    }
    sim.hold(false);
    sim
}

// ROBUSTNESS 154: a gap filled from history is the node's burst, not the
// member's: it is handed out up to `max_gap_fill_bytes` (below the send
// queue), then a `lost` event with the last position handed out, and the
// stream goes on; the member recovers the rest with `since`. (Handed out
// whole, 5 MB at once closed members that read promptly with 4008.)
#[test]
fn a_gap_fill_larger_than_its_budget_ends_in_a_lost_event() {
    let budget = 256 * 1024;
    let mut sim = big_gap(budget);
    // At once: at most the budget, in order from the first, then `lost`
    // where it stopped.
    let first = messages(sim.take(1, B));
    let handed_out: usize = first
        .iter()
        .filter(|e| e["action"] == "message")
        .map(|e| e.to_string().len())
        .sum();
    assert!(handed_out <= budget, "{handed_out} bytes at once");
    let (got, losts) = nothing_lost_silently(&first);
    assert!(!got.is_empty() && got[0] == 1, "{got:?}");
    assert_eq!(losts.first().map(|l| &l["offset"]), Some(&json!(got.len())));
    // The stream goes on after the gap (what did not fit behind it is
    // read as another gap, again within the budget)...
    publish_n(&mut sim, 102, 102);
    let mut all = first;
    all.extend(messages(sim.take(1, B)));
    let (got, losts) = nothing_lost_silently(&all);
    assert_eq!(got.last(), Some(&102));
    // ...and the member recovers what it was told it lost.
    sim.send(1, B, &cmd(3, "room", "join", json!({"since": losts[0]})));
    let rejoin = reply(sim.take(1, B), 3);
    assert_eq!(rejoin["recovered"], true, "{rejoin}");
    let replayed: Vec<u64> = rejoin["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"]["n"].as_u64().unwrap_or(102))
        .collect();
    assert_eq!(
        replayed,
        (losts[0]["offset"].as_u64().unwrap() + 1..=102).collect::<Vec<u64>>()
    );
}

// ROBUSTNESS 154: the first publication of a fill goes whatever its
// size (a commit of an encrypted channel may be larger than the budget),
// so a gap always moves on.
#[test]
fn a_fill_hands_out_one_publication_whatever_its_size() {
    let mut sim = big_gap(0);
    let (got, losts) = nothing_lost_silently(&messages(sim.take(1, B)));
    assert_eq!(got, [1]);
    assert_eq!(losts.len(), 1);
    assert_eq!(losts[0]["offset"], 1);
}

// ROBUSTNESS 154: what arrives while a fill's history read is answered
// waits behind it; what of it does not fit the budget after the fill is
// let go with one `lost` event where the members stopped, not dropped.
#[test]
fn what_waits_behind_a_fill_beyond_its_budget_is_told_lost() {
    use crate::sim::Transit::{Deliver, Drop};
    // Room for three small publications (about 146 bytes each) at once.
    let config = ChannelsConfig {
        max_gap_fill_bytes: 500,
        ..ChannelsConfig::default()
    };
    let mut sim = two_node_room_with(config, 100);
    sim.transit(1, &[Deliver, Drop]);
    publish_n(&mut sim, 1, 2);
    sim.hold(true);
    // 3 reveals the gap at node 1; history holds 1 to 3 when read.
    sim.send(0, A, &cmd(103, "room", "publish", json!(3)));
    assert!(sim.step(0), "the publish runs");
    let read = sim.execute(1).expect("node 1 reads the gap");
    // 4 to 7 arrive before node 1 hears the answer, and wait.
    for n in 4..=7 {
        sim.send(0, A, &cmd(100 + n, "room", "publish", json!(n)));
        assert!(sim.step(0), "the publish runs");
    }
    sim.hold(false);
    sim.answer(1, read);
    publish_n(&mut sim, 8, 8);
    let (got, losts) = nothing_lost_silently(&messages(sim.take(1, B)));
    assert_eq!(got, [1, 2, 3, 4, 8]);
    assert_eq!(losts.len(), 1);
    assert_eq!(losts[0]["offset"], 4);
}

/// The offsets of the messages among `events` and the `lost` events'
/// data, checked: offsets rise, and each jump comes right after a `lost`
/// event naming the last offset before it.
fn nothing_lost_silently(events: &[Value]) -> (Vec<u64>, Vec<Value>) {
    let (mut got, mut losts, mut told) = (Vec::<u64>::new(), Vec::new(), None);
    for event in events.iter().filter(|e| e["type"] == "event") {
        match event["action"].as_str() {
            Some("lost") => {
                told = event["data"]["offset"].as_u64();
                losts.push(event["data"].clone());
            }
            Some("message") => {
                let offset = event["data"]["offset"].as_u64().unwrap();
                let last = got.last().copied().unwrap_or(0);
                assert!(
                    offset == last + 1 || (offset > last && told == Some(last)),
                    "{last} then {offset}, told {told:?}"
                );
                got.push(offset);
                told = None;
            }
            _ => {}
        }
    }
    (got, losts)
}

// ROBUSTNESS 160: a member answers another's join event at once (an
// owner adding a newcomer's device to an encrypted channel's group: only
// that commit carries the newcomer's Welcome). The join event goes out
// once the joiner's stream has its start (the history read answered), so
// the answer comes after that start and reaches the joiner. It went out
// before the read; an answer stored before the read was counted as
// history the joiner had not asked for, and never reached it.
#[test]
fn what_answers_a_join_event_reaches_the_joiner() {
    let mut sim = Sim::new(2, ChannelsConfig::default());
    sim.open(0, A, Some("a"));
    sim.open(1, B, Some("b"));
    let options = json!({"history_size": 10, "history_ttl": 60, "presence_events": true});
    sim.send(0, A, &cmd(1, "room", "create", options));
    assert_eq!(reply(sim.take(0, A), 1)["ok"], true);
    sim.hold(true);
    sim.send(1, B, &cmd(2, "room", "join", json!({})));
    // B's node runs its backend work one item at a time; the moment A
    // hears of b, A answers, and A's publish runs before anything more.
    let mut answered = false;
    while sim.step(1) {
        let heard = events(sim.take(0, A), "join")
            .iter()
            .any(|e| e["from"]["user"] == "b");
        if heard && !answered {
            sim.send(0, A, &cmd(3, "room", "publish", json!("welcome")));
            assert!(sim.step(0), "A's publish runs");
            answered = true;
        }
    }
    sim.hold(false);
    assert!(answered, "A heard of b's join");
    let outs = messages(sim.take(1, B));
    let joined = outs
        .iter()
        .position(|m| m["type"] == "response" && m["id"] == "2")
        .expect("B's join is answered");
    assert_eq!(outs[joined]["data"]["ok"], true, "{outs:?}");
    assert!(
        outs[joined..]
            .iter()
            .any(|m| m["action"] == "message" && m["data"]["data"] == "welcome"),
        "the answer to its join reaches b after its reply: {outs:?}"
    );
}

// ROBUSTNESS 116: a member that joins again with `since` gets the replay
// once: live copies of what the replay held, arriving after it, are not
// delivered to it again.
#[test]
fn a_rejoin_replay_is_not_followed_by_its_live_copies() {
    use crate::sim::Transit::Hold;
    let mut sim = two_node_room(100);
    publish_n(&mut sim, 1, 2);
    assert_eq!(received(&mut sim), [1, 2]);
    let position = sim
        .run(sim.backend().broker.history("room", None, 0))
        .unwrap()
        .top
        .unwrap();
    // 3 and 4 are published; their live copies are held on the way.
    sim.transit(1, &[Hold, Hold]);
    publish_n(&mut sim, 3, 4);
    sim.send(
        1,
        B,
        &cmd(
            3,
            "room",
            "join",
            json!({"since": {"offset": position.offset, "epoch": position.epoch}}),
        ),
    );
    let rejoin = reply(sim.take(1, B), 3);
    let replayed: Vec<Value> = rejoin["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    assert_eq!(replayed, [json!(3), json!(4)]);
    sim.release(1);
    assert!(received(&mut sim).is_empty(), "3 and 4 came twice");
    publish_n(&mut sim, 5, 5);
    assert_eq!(received(&mut sim), [5]);
}

fn keyed_publish(id: u32, data: Value, key: &str) -> String {
    json!({"type": "command", "id": id.to_string(), "channel": "room", "action": "publish",
           "data": data, "params": {"idempotency_key": key}})
    .to_string()
}

// ROBUSTNESS 119: a publish answered `unavailable` may have been done; a
// retry with the same idempotency key is answered with the first one's
// position and publishes nothing.
#[test]
fn a_publish_retried_with_its_key_is_published_once() {
    let mut sim = room(ChannelsConfig::default(), json!({"history_size": 10}));
    join(&mut sim, B, 1);
    sim.send(0, A, &keyed_publish(2, json!("hello"), "k-1"));
    let first = reply(sim.take(0, A), 2);
    assert_eq!(first["offset"], 1, "{first}");
    assert_eq!(first.get("duplicate"), None);
    sim.send(0, A, &keyed_publish(3, json!("hello"), "k-1"));
    let again = reply(sim.take(0, A), 3);
    assert_eq!(again["ok"], true);
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(
        (&again["offset"], &again["epoch"]),
        (&first["offset"], &first["epoch"])
    );
    assert_eq!(events(sim.take(0, B), "message").len(), 1);
    // Another key is another publication.
    sim.send(0, A, &keyed_publish(4, json!("hello"), "k-2"));
    assert_eq!(reply(sim.take(0, A), 4)["offset"], 2);
    // After the window the key is forgotten.
    sim.advance(crate::backend::IDEMPOTENCY_WINDOW + Duration::from_secs(1));
    sim.take(0, B);
    sim.send(0, A, &keyed_publish(5, json!("hello"), "k-1"));
    assert_eq!(reply(sim.take(0, A), 5)["offset"], 3);
}

// SECURITY: keys are the publisher's own. Another member who sends the key
// it expects someone to use cannot make that publish a "duplicate".
#[test]
fn another_member_cannot_claim_a_publishers_key() {
    let mut sim = room(ChannelsConfig::default(), json!({"history_size": 10}));
    join(&mut sim, B, 1);
    sim.send(0, B, &keyed_publish(2, json!("squat"), "order-7"));
    assert_eq!(reply(sim.take(0, B), 2)["offset"], 1);
    sim.send(0, A, &keyed_publish(3, json!("mine"), "order-7"));
    let mine = reply(sim.take(0, A), 3);
    assert_eq!(mine["offset"], 2, "{mine}");
    assert_eq!(mine.get("duplicate"), None);
    let got: Vec<Value> = events(sim.take(0, B), "message")
        .into_iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(got, [json!("mine")]);
}

#[test]
fn idempotency_keys_are_checked() {
    let mut sim = room(ChannelsConfig::default(), json!({"history_size": 10}));
    let long = "k".repeat(65);
    for (id, params) in [
        (2, json!({"idempotency_key": ""})),
        (3, json!({"idempotency_key": long})),
        (4, json!({"idempotency_key": "with space"})),
        (5, json!({"idempotency_key": 7})),
        (6, json!({"idempotency_kee": "typo"})),
    ] {
        let command = json!({"type": "command", "id": id.to_string(), "channel": "room",
                             "action": "publish", "data": 1, "params": params});
        sim.send(0, A, &command.to_string());
        assert_eq!(
            error_code(&reply(sim.take(0, A), id)),
            "bad_request",
            "{params}"
        );
    }
    // Only publish takes one.
    let join = json!({"type": "command", "id": "7", "channel": "room", "action": "presence",
                      "params": {"idempotency_key": "k"}});
    sim.send(0, A, &join.to_string());
    assert_eq!(error_code(&reply(sim.take(0, A), 7)), "bad_request");
    // A channel without history has no offset to answer a retry with.
    sim.send(0, A, &cmd(8, "plain", "create", json!({})));
    reply(sim.take(0, A), 8);
    let plain = json!({"type": "command", "id": "9", "channel": "plain", "action": "publish",
                       "data": 1, "params": {"idempotency_key": "k"}});
    sim.send(0, A, &plain.to_string());
    assert_eq!(error_code(&reply(sim.take(0, A), 9)), "bad_request");
}

#[test]
fn presence_expires_unless_refreshed() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    // The node refreshes its entries as time passes: they stay.
    for _ in 0..10 {
        sim.advance(Duration::from_secs(20));
    }
    let roster = sim.run(sim.backend().store.members("room", 10)).unwrap();
    assert_eq!(roster.total, 1);
}

#[test]
fn recovery_replays_the_gap_or_says_it_cannot() {
    let mut sim = room(
        ChannelsConfig::default(),
        json!({"history_size": 3, "history_ttl": 60}),
    );
    let joined = join(&mut sim, B, 1);
    assert_eq!(joined["offset"], 0);
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    sim.send(0, A, &cmd(2, "room", "publish", json!("one")));
    let published = reply(sim.take(0, A), 2);
    assert_eq!(published["offset"], 1);
    // B drops off and comes back: it missed "two".
    sim.close(0, B);
    sim.send(0, A, &cmd(3, "room", "publish", json!("two")));
    let b2 = SessionId(0xb2);
    sim.open(0, b2, Some("b"));
    sim.send(
        0,
        b2,
        &cmd(
            4,
            "room",
            "join",
            json!({"since": {"offset": 1, "epoch": epoch}}),
        ),
    );
    let recovered = reply(sim.take(0, b2), 4);
    assert_eq!(recovered["recovered"], true);
    assert_eq!(recovered["offset"], 2);
    let replayed = recovered["publications"].as_array().unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0]["data"], "two");
    assert_eq!(replayed[0]["offset"], 2);
    // A gap longer than the history: not recovered, nothing replayed.
    sim.close(0, b2);
    for n in 0..5 {
        sim.send(0, A, &cmd(10 + n, "room", "publish", json!(n)));
    }
    let b3 = SessionId(0xb3);
    sim.open(0, b3, Some("b"));
    sim.send(
        0,
        b3,
        &cmd(
            5,
            "room",
            "join",
            json!({"since": {"offset": 2, "epoch": epoch}}),
        ),
    );
    let gap = reply(sim.take(0, b3), 5);
    assert_eq!(gap["recovered"], false);
    assert_eq!(gap["publications"], json!([]));
    assert_eq!(gap["offset"], 7);
    // Another epoch is never taken for this one.
    sim.send(
        0,
        b3,
        &cmd(
            6,
            "room",
            "join",
            json!({"since": {"offset": 7, "epoch": "other"}}),
        ),
    );
    let other = reply(sim.take(0, b3), 6);
    assert_eq!(other["recovered"], false);
    // Expired history is a gap too.
    sim.advance(Duration::from_secs(61));
    sim.send(
        0,
        b3,
        &cmd(
            7,
            "room",
            "join",
            json!({"since": {"offset": 6, "epoch": epoch}}),
        ),
    );
    assert_eq!(reply(sim.take(0, b3), 7)["recovered"], false);
    sim.send(
        0,
        b3,
        &cmd(
            8,
            "room",
            "join",
            json!({"since": {"offset": 7, "epoch": epoch}}),
        ),
    );
    assert_eq!(
        reply(sim.take(0, b3), 8)["recovered"],
        true,
        "nothing missed"
    );
}

#[test]
fn channels_linger_for_reconnects_then_go() {
    let mut sim = room(ChannelsConfig::default(), json!({"history_size": 10}));
    sim.send(0, A, &cmd(2, "room", "publish", json!("x")));
    let epoch = reply(sim.take(0, A), 2)["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.close(0, A);
    assert!(!sim.with_manager(0, |m| m.is_subscribed("room")));
    sim.advance(Duration::from_secs(60));
    let a2 = SessionId(0xa2);
    sim.open(0, a2, Some("a"));
    sim.send(
        0,
        a2,
        &cmd(
            3,
            "room",
            "join",
            json!({"since": {"offset": 0, "epoch": epoch}}),
        ),
    );
    let back = reply(sim.take(0, a2), 3);
    assert_eq!(back["role"], "owner", "the owner's role survives");
    assert_eq!(back["recovered"], true);
    assert_eq!(back["publications"][0]["data"], "x");
    sim.close(0, a2);
    sim.advance(Duration::from_secs(301));
    let channels = sim.run(sim.backend().store.channels(10)).unwrap();
    assert!(channels.is_empty(), "{channels:?}");
}

#[test]
fn closing_a_channel_tells_everyone() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    join(&mut sim, B, 1);
    sim.send(0, A, &cmd(2, "room", "close", json!({})));
    assert_eq!(reply(sim.take(0, A), 2)["ok"], true);
    assert_eq!(events(sim.take(0, B), "closed").len(), 1);
    assert!(sim.with_manager(0, |m| m.local_members("room")).is_empty());
    assert!(!sim.with_manager(0, |m| m.is_subscribed("room")));
    sim.with_manager(0, |m| m.check_invariants()).unwrap();
}

#[test]
fn slow_subscribers_are_disconnected_and_others_go_on() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    join(&mut sim, B, 1);
    join(&mut sim, C, 2);
    sim.set_slow(0, B, true);
    sim.send(0, A, &cmd(3, "room", "publish", json!(1)));
    sim.set_slow(0, B, false);
    assert_eq!(
        sim.take(0, B),
        [Out::Closed(
            close_codes::SLOW,
            "slow: send queue full".into()
        )]
    );
    sim.send(0, A, &cmd(4, "room", "publish", json!(2)));
    assert!(
        sim.take(0, B).is_empty(),
        "a closing session gets nothing more"
    );
    assert_eq!(events(sim.take(0, C), "message").len(), 2);
}

// ROBUSTNESS 155: with `mark_lost`, a slow member is told `lost` ahead of
// the next delivery that fits; a `lost` event that does not fit either
// waits for room, and the session is not closed for it. (It went as the
// session's own message, and one that did not fit closed it with 4008
// whatever the policy.)
#[test]
fn slow_subscribers_can_be_told_what_they_lost() {
    let config = ChannelsConfig {
        slow_subscriber: SlowSubscriber::MarkLost,
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({}));
    join(&mut sim, B, 1);
    sim.set_slow(0, B, true);
    // The first marks it; the next two find no room for the event either.
    for n in 1..=3 {
        sim.send(0, A, &cmd(2 + n, "room", "publish", json!(n)));
    }
    sim.set_slow(0, B, false);
    sim.send(0, A, &cmd(9, "room", "publish", json!(4)));
    let got = messages(sim.take(0, B));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["action"], "lost");
    assert_eq!(got[0]["channel"], "room");
    assert_eq!(got[1]["data"]["data"], 4);
}

/// Runs held backend work an item at a time, checking the manager's
/// invariants (its cached delivery lists among them) after each.
fn step_through(sim: &mut Sim) {
    loop {
        sim.with_manager(0, |m| m.check_invariants()).unwrap();
        if !sim.step(0) {
            return;
        }
    }
}

/// The `n`s of the messages among `outs`.
fn numbers(outs: Vec<Out>) -> Vec<Value> {
    events(outs, "message")
        .into_iter()
        .map(|d| d["data"]["n"].clone())
        .collect()
}

#[test]
fn deliveries_follow_members_joining_recovering_and_losing_while_work_is_in_flight() {
    let config = ChannelsConfig {
        slow_subscriber: SlowSubscriber::MarkLost,
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({"history_size": 10}));
    let epoch = join(&mut sim, C, 1)["epoch"].as_str().unwrap().to_owned();
    sim.send(0, A, &cmd(2, "room", "publish", json!({"n": 1})));
    assert_eq!(numbers(sim.take(0, C)), [json!(1)]);

    // B joins, and publications come while its join and its history read
    // are in flight: it gets each exactly once, in order.
    sim.hold(true);
    sim.send(0, B, &cmd(3, "room", "join", json!({})));
    sim.step(0);
    sim.with_manager(0, |m| m.check_invariants()).unwrap();
    sim.send(0, A, &cmd(4, "room", "publish", json!({"n": 2})));
    step_through(&mut sim);
    sim.send(0, A, &cmd(5, "room", "publish", json!({"n": 3})));
    step_through(&mut sim);
    assert_eq!(numbers(sim.take(0, B)), [json!(2), json!(3)]);
    assert_eq!(numbers(sim.take(0, C)), [json!(2), json!(3)]);

    // C, a member, recovers from offset 1 again while A's publication is
    // in flight (it arrives while C's history read is): the replay and
    // the new publication, none twice.
    sim.send(0, A, &cmd(6, "room", "publish", json!({"n": 4})));
    sim.send(
        0,
        C,
        &cmd(
            7,
            "room",
            "join",
            json!({"since": {"offset": 1, "epoch": epoch}}),
        ),
    );
    step_through(&mut sim);
    let outs = messages(sim.take(0, C));
    let replayed: Vec<Value> = outs
        .iter()
        .filter(|m| m["type"] == "response")
        .flat_map(|m| {
            m["data"]["publications"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|p| p["data"]["n"].clone())
        .collect();
    let live: Vec<Value> = outs
        .iter()
        .filter(|m| m["action"] == "message")
        .map(|m| m["data"]["data"]["n"].clone())
        .collect();
    assert_eq!([replayed, live].concat(), [json!(2), json!(3), json!(4)]);

    // B's queue refuses one: B is owed a `lost` event, then is back in
    // the common list.
    sim.hold(false);
    sim.set_slow(0, B, true);
    sim.send(0, A, &cmd(8, "room", "publish", json!({"n": 5})));
    sim.set_slow(0, B, false);
    for n in 6..8 {
        sim.send(0, A, &cmd(n + 3, "room", "publish", json!({ "n": n })));
        sim.with_manager(0, |m| m.check_invariants()).unwrap();
    }
    let outs = messages(sim.take(0, B));
    let actions: Vec<&str> = outs.iter().filter_map(|m| m["action"].as_str()).collect();
    // n = 4 went out before; n = 5 was refused.
    assert_eq!(actions[..2], ["message", "lost"], "{outs:?}");
    let after_lost: Vec<Value> = outs[2..]
        .iter()
        .filter(|m| m["action"] == "message")
        .map(|m| m["data"]["data"]["n"].clone())
        .collect();
    assert_eq!(after_lost, [json!(6), json!(7)]);
}

#[test]
fn a_broker_interruption_tells_every_member_to_recover() {
    let mut sim = room(ChannelsConfig::default(), json!({"history_size": 10}));
    join(&mut sim, B, 1);
    sim.send(0, A, &cmd(2, "room", "publish", json!({ "n": 1 })));
    let seen = events(sim.take(0, B), "message");
    let since = json!({"offset": seen[0]["offset"], "epoch": seen[0]["epoch"]});
    sim.take(0, A);
    // C's join is in flight: granted, its history not read yet.
    sim.hold(true);
    sim.send(0, C, &cmd(3, "room", "join", json!({})));
    assert!(sim.step(0));

    sim.interrupt(0);
    for session in [A, B] {
        assert_eq!(events(sim.take(0, session), "lost").len(), 1);
    }
    step_through(&mut sim);
    sim.hold(false);
    assert_eq!(reply(sim.take(0, C), 3)["ok"], true);
    // C is told with the next delivery, after its join reply.
    sim.send(0, A, &cmd(4, "room", "publish", json!({ "n": 2 })));
    let outs = messages(sim.take(0, C));
    let actions: Vec<&str> = outs.iter().map(|m| m["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["lost", "message"]);
    // Joining again from the last position seen recovers the gap.
    sim.send(0, B, &cmd(5, "room", "join", json!({ "since": since })));
    let rejoined = reply(
        sim.take(0, B)
            .into_iter()
            .filter(|o| !matches!(o, Out::Message(m) if m["type"] == "event"))
            .collect(),
        5,
    );
    assert_eq!(rejoined["recovered"], true, "{rejoined}");
    assert_eq!(rejoined["publications"][0]["data"]["n"], 2);
}

#[test]
fn anonymous_sessions_are_closed_unless_allowed() {
    let mut sim = Sim::new(1, ChannelsConfig::default());
    sim.open(0, A, None);
    assert_eq!(
        sim.take(0, A),
        [Out::Closed(
            close_codes::UNAUTHORIZED,
            "unauthorized: channels need an authenticated session".into()
        )]
    );
    assert_eq!(sim.with_manager(0, |m| m.session_count()), 0);
    let mut sim = Sim::new(
        1,
        ChannelsConfig {
            allow_anonymous: true,
            ..ChannelsConfig::default()
        },
    );
    sim.open(0, A, None);
    sim.send(0, A, &cmd(1, "room", "create", json!({})));
    assert_eq!(reply(sim.take(0, A), 1)["role"], "owner");
}

#[test]
fn limits_on_channels_topics_payloads_and_rate() {
    let config = ChannelsConfig {
        max_channels_per_session: 2,
        max_topics_per_session: 1,
        max_payload: 16,
        max_info: 8,
        max_filter: 20,
        command_burst: 30,
        command_rate: 1,
        max_violations: 1000,
        ..ChannelsConfig::default()
    }
    .topic("t1", TopicAccess::Everyone)
    .topic("t2", TopicAccess::Everyone);
    let mut sim = room(config, json!({}));
    sim.send(0, A, &cmd(1, "two", "create", json!({})));
    reply(sim.take(0, A), 1);
    sim.send(0, A, &cmd(2, "three", "create", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, A), 2)), "limit");
    sim.send(0, A, &cmd(3, "room", "publish", json!("x".repeat(20))));
    assert_eq!(error_code(&reply(sim.take(0, A), 3)), "limit");
    sim.send(
        0,
        B,
        &cmd(4, "room", "join", json!({"info": "x".repeat(10)})),
    );
    assert_eq!(error_code(&reply(sim.take(0, B), 4)), "limit");
    sim.send(
        0,
        B,
        &cmd(
            5,
            "t1",
            "subscribe",
            json!({"filter": {"k": "x".repeat(20)}}),
        ),
    );
    assert_eq!(error_code(&reply(sim.take(0, B), 5)), "limit");
    sim.send(0, B, &cmd(6, "t1", "subscribe", json!({})));
    assert_eq!(reply(sim.take(0, B), 6)["ok"], true);
    sim.send(0, B, &cmd(7, "t2", "subscribe", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 7)), "limit");
    sim.send(0, B, &cmd(8, "t3", "subscribe", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, B), 8)), "not_found");
    // The command rate: the burst is spent, and the next is refused.
    let mut refused = 0;
    for n in 0..40 {
        sim.send(0, C, &cmd(100 + n, "nowhere", "join", json!({})));
        if error_code(&reply(sim.take(0, C), 100 + n)) == "limit" {
            refused += 1;
        }
    }
    assert_eq!(refused, 10);
    sim.with_manager(0, |m| m.check_invariants()).unwrap();
}

#[test]
fn sessions_sending_refused_commands_are_closed() {
    let config = ChannelsConfig {
        max_violations: 3,
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({}));
    for n in 0..3 {
        sim.send(0, B, "not json");
        let data = reply_without_id(sim.take(0, B));
        assert_eq!(error_code(&data), "bad_request", "{n}");
    }
    sim.send(0, B, &cmd(9, "room", "fly", json!({})));
    let outs = sim.take(0, B);
    assert_eq!(
        outs.last(),
        Some(&Out::Closed(
            CloseCode::POLICY_VIOLATION,
            "too many refused commands".into()
        ))
    );
    // Errors that are not the client's fault do not count.
    for n in 0..10 {
        sim.send(0, C, &cmd(n, "nowhere", "join", json!({})));
        assert_eq!(error_code(&reply(sim.take(0, C), n)), "not_found");
    }
}

fn reply_without_id(outs: Vec<Out>) -> Value {
    let messages = messages(outs);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["type"], "response");
    messages[0]["data"].clone()
}

// ROBUSTNESS 108: a topic's access decides who may subscribe: a session
// whose identity lacks the role, or that the application's rule refuses,
// gets `forbidden` and receives nothing.
#[test]
fn topics_admit_only_whom_their_access_names() {
    let config = ChannelsConfig::default()
        .topic("ops", TopicAccess::roles(["admin", "oncall"]))
        .topic(
            "tenant/1",
            TopicAccess::rule(|request| request.claims["tenant"] == 1),
        )
        .topic("news", TopicAccess::Everyone);
    let mut sim = Sim::new(1, config);
    sim.open_as(0, A, Some("a"), &json!({"roles": ["oncall"], "tenant": 1}));
    sim.open_as(0, B, Some("b"), &json!({"role": "admin", "tenant": 2}));
    sim.open_as(0, C, Some("c"), &json!({"roles": "admin", "tenant": "1"}));
    let subscribe = |sim: &mut Sim, session, id, topic: &str| {
        sim.send(0, session, &cmd(id, topic, "subscribe", json!({})));
        let data = reply(sim.take(0, session), id);
        if data["ok"] == true {
            "ok".to_owned()
        } else {
            error_code(&data).to_owned()
        }
    };
    assert_eq!(subscribe(&mut sim, A, 1, "ops"), "ok");
    assert_eq!(subscribe(&mut sim, B, 2, "ops"), "ok");
    // `roles` must be an array: a string there is no role.
    assert_eq!(subscribe(&mut sim, C, 3, "ops"), "forbidden");
    assert_eq!(subscribe(&mut sim, A, 4, "tenant/1"), "ok");
    assert_eq!(subscribe(&mut sim, B, 5, "tenant/1"), "forbidden");
    assert_eq!(subscribe(&mut sim, C, 6, "tenant/1"), "forbidden");
    assert_eq!(subscribe(&mut sim, C, 7, "news"), "ok");
    // What the server emits on "ops" reaches A and B only.
    let publication = crate::Publication::message(None, crate::Payload::new(&json!({"alert": 1})));
    sim.run(
        sim.backend()
            .broker
            .publish("$topic:ops", publication, None),
    )
    .unwrap();
    sim.settle();
    assert_eq!(events(sim.take(0, A), "event").len(), 1);
    assert_eq!(events(sim.take(0, B), "event").len(), 1);
    assert!(events(sim.take(0, C), "event").is_empty());
}

#[test]
fn topics_deliver_to_matching_filters() {
    let config = ChannelsConfig::default().topic("printers", TopicAccess::Everyone);
    let mut sim = Sim::new(2, config);
    sim.open(0, A, Some("a"));
    sim.open(1, B, Some("b"));
    sim.send(
        0,
        A,
        &cmd(
            1,
            "printers",
            "subscribe",
            json!({"filter": {"printer": "p1"}}),
        ),
    );
    reply(sim.take(0, A), 1);
    sim.send(1, B, &cmd(2, "printers", "subscribe", json!({})));
    reply(sim.take(1, B), 2);
    let publication = crate::types::Publication::message(
        None,
        crate::types::Payload::new(&json!({"printer": "p2", "state": "idle"})),
    );
    sim.run(
        sim.backend()
            .broker
            .publish("$topic:printers", publication, None),
    )
    .unwrap();
    assert!(sim.take(0, A).is_empty(), "filtered out");
    let got = messages(sim.take(1, B));
    assert_eq!(got[0]["channel"], "printers");
    assert_eq!(got[0]["action"], "event");
    assert_eq!(got[0]["data"]["state"], "idle");
    sim.send(1, B, &cmd(3, "printers", "unsubscribe", json!({})));
    reply(sim.take(1, B), 3);
    assert!(!sim.with_manager(1, |m| m.is_subscribed("$topic:printers")));
    assert!(sim.with_manager(0, |m| m.is_subscribed("$topic:printers")));
}

#[test]
fn nodes_subscribe_only_while_they_host_participants() {
    let mut sim = Sim::new(2, ChannelsConfig::default());
    sim.open(0, A, Some("a"));
    sim.open(1, B, Some("b"));
    sim.send(0, A, &cmd(1, "room", "create", json!({})));
    reply(sim.take(0, A), 1);
    assert!(sim.with_manager(0, |m| m.is_subscribed("room")));
    assert!(!sim.with_manager(1, |m| m.is_subscribed("room")));
    sim.send(1, B, &cmd(2, "room", "join", json!({})));
    reply(sim.take(1, B), 2);
    assert!(sim.with_manager(1, |m| m.is_subscribed("room")));
    sim.send(0, A, &cmd(3, "room", "publish", json!("across")));
    reply(sim.take(0, A), 3);
    assert_eq!(events(sim.take(1, B), "message")[0]["data"], "across");
    // A kick on node 0 reaches node 1's session.
    sim.send(0, A, &cmd(4, "room", "kick", json!({"user": "b"})));
    reply(sim.take(0, A), 4);
    assert_eq!(events(sim.take(1, B), "kicked").len(), 1);
    assert!(!sim.with_manager(1, |m| m.is_subscribed("room")));
    for node in 0..2 {
        sim.with_manager(node, |m| m.check_invariants()).unwrap();
    }
}

#[test]
fn custom_commands_run_for_the_roles_given() {
    let config = ChannelsConfig::default().command("roll", ["participant"]);
    let mut sim = room(config, json!({}));
    join(&mut sim, B, 1);
    sim.send(0, B, &cmd(2, "room", "roll", json!({"sides": 6})));
    assert_eq!(reply(sim.take(0, B), 2)["result"], json!({"sides": 6}));
    sim.custom = |_| {
        Err(crate::types::ChannelError::new(
            crate::types::ErrorCode::Internal,
            "dice lost",
        ))
    };
    sim.send(0, B, &cmd(3, "room", "roll", json!({})));
    let failed = reply(sim.take(0, B), 3);
    assert_eq!(error_code(&failed), "internal");
    assert_eq!(failed["message"], "dice lost");
    sim.send(0, C, &cmd(4, "room", "roll", json!({})));
    assert_eq!(error_code(&reply(sim.take(0, C), 4)), "not_member");
}

#[test]
fn closing_a_session_leaves_no_trace() {
    let config = ChannelsConfig::default().topic("t", TopicAccess::Everyone);
    let mut sim = room(config, json!({}));
    join(&mut sim, B, 1);
    sim.send(0, B, &cmd(2, "t", "subscribe", json!({})));
    reply(sim.take(0, B), 2);
    sim.close(0, A);
    sim.close(0, B);
    sim.close(0, C);
    sim.with_manager(0, |m| {
        m.check_invariants().unwrap();
        assert_eq!(m.session_count(), 0);
        assert!(!m.is_subscribed("room"));
        assert!(!m.is_subscribed("$topic:t"));
        assert_eq!(m.pending_count(), 0);
        assert_eq!(m.poll_timeout(), None);
    });
    let roster = sim.run(sim.backend().store.members("room", 10)).unwrap();
    assert_eq!(roster.total, 0);
}

#[test]
fn an_encrypted_channel_carries_only_end_to_end_envelopes() {
    let mut sim = room(ChannelsConfig::default(), json!({"encrypted": true}));
    join(&mut sim, B, 1);
    for (id, plaintext) in [
        (2, json!("hi")),
        (3, json!({"text": "hi"})),
        (4, json!({"e2e": ""})),
        (5, json!({"e2e": 1})),
        (6, json!(["e2e", "msg"])),
        (7, json!({"e2e": {"kind": "msg"}})),
    ] {
        sim.send(0, B, &cmd(id, "room", "publish", plaintext));
        assert_eq!(error_code(&reply(sim.take(0, B), id)), "bad_request");
    }
    let sealed =
        json!({"e2e": "msg", "epoch": 1, "seq": 1, "nonce": "AAAAAAAAAAAAAAAA", "ct": "AAAA"});
    sim.send(0, B, &cmd(8, "room", "publish", sealed.clone()));
    let outs = sim.take(0, B);
    assert_eq!(events(outs.clone(), "message")[0]["data"], sealed);
    assert_eq!(reply(outs, 8)["ok"], true);
    // The kinds are the end-to-end client's business, not the server's.
    let other_kind = json!({"e2e": "mls", "message": "AAAA"});
    sim.send(0, B, &cmd(9, "room", "publish", other_kind));
    assert_eq!(reply(sim.take(0, B), 9)["ok"], true);
    // An ordinary channel takes anything.
    sim.send(0, A, &cmd(10, "open", "create", json!({})));
    sim.send(0, A, &cmd(11, "open", "publish", json!("hi")));
    let replies: Vec<Value> = messages(sim.take(0, A))
        .into_iter()
        .filter(|m| m["type"] == "response")
        .collect();
    assert!(
        replies.iter().all(|r| r["data"]["ok"] == true),
        "{replies:?}"
    );
}

#[test]
fn a_subscriber_arriving_while_the_node_unsubscribes_is_served_by_the_next_subscription() {
    let config = ChannelsConfig::default().topic("t", TopicAccess::Everyone);
    let mut sim = Sim::new(1, config);
    sim.open(0, A, Some("a"));
    sim.open(0, B, Some("b"));
    sim.send(0, A, &cmd(1, "t", "subscribe", json!({})));
    assert_eq!(reply(sim.take(0, A), 1)["ok"], true);
    // A leaves the topic: the node unsubscribes, and the broker is slow.
    sim.hold(true);
    sim.send(0, A, &cmd(2, "t", "unsubscribe", json!({})));
    reply(sim.take(0, A), 2);
    // B subscribes while the unsubscribe is in flight: it waits.
    sim.send(0, B, &cmd(3, "t", "subscribe", json!({})));
    assert!(sim.take(0, B).is_empty(), "no answer before the broker's");
    sim.with_manager(0, |m| m.check_invariants()).unwrap();
    // The unsubscribe completes, the node subscribes again, and B is
    // answered once it has.
    sim.hold(false);
    assert_eq!(reply(sim.take(0, B), 3)["ok"], true);
    sim.with_manager(0, |m| {
        m.check_invariants().unwrap();
        assert!(m.is_subscribed("$topic:t"));
        assert_eq!(m.pending_count(), 0);
    });
}

#[test]
fn a_subscriber_that_leaves_while_the_node_unsubscribes_leaves_nothing_waiting() {
    let config = ChannelsConfig::default().topic("t", TopicAccess::Everyone);
    let mut sim = Sim::new(1, config);
    sim.open(0, A, Some("a"));
    sim.open(0, B, Some("b"));
    sim.send(0, A, &cmd(1, "t", "subscribe", json!({})));
    reply(sim.take(0, A), 1);
    sim.hold(true);
    sim.send(0, A, &cmd(2, "t", "unsubscribe", json!({})));
    // B subscribes while the unsubscribe is in flight, and is gone before
    // it completes.
    sim.send(0, B, &cmd(3, "t", "subscribe", json!({})));
    sim.close(0, B);
    sim.hold(false);
    sim.with_manager(0, |m| {
        m.check_invariants().unwrap();
        assert!(!m.is_subscribed("$topic:t"));
        assert_eq!(m.pending_count(), 0);
    });
}

/// The users the server proposed removing in `outs`.
fn proposed_removals(outs: Vec<Out>) -> Vec<String> {
    events(outs, "message")
        .into_iter()
        .filter(|e| e["data"]["e2e"] == "proposal")
        .map(|e| e["data"]["user"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_user_away_from_an_encrypted_channel_past_the_linger_is_proposed_for_removal() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = ChannelsConfig {
        group_member_linger: Duration::from_secs(60),
        group_reader: Some(Arc::new(crate::sim::ToyReader)),
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({"encrypted": true, "history_size": 10}));
    join(&mut sim, B, 2);
    join(&mut sim, C, 3);
    // A commit leaves the server a GroupInfo to propose from.
    let commit = json!({"commit": b64(b"C\0room"), "group_info": b64(b"G\x01")});
    sim.send(0, A, &cmd(4, "room", "commit", commit));
    assert_eq!(reply(sim.take(0, A), 4)["ok"], true);
    // b leaves; c's connection drops and c is back within the linger.
    sim.send(0, B, &cmd(5, "room", "leave", json!({})));
    assert_eq!(reply(sim.take(0, B), 5)["ok"], true);
    sim.close(0, C);
    sim.advance(Duration::from_secs(30));
    sim.open(0, C, Some("c"));
    join(&mut sim, C, 6);
    assert!(proposed_removals(sim.take(0, A)).is_empty(), "too early");
    sim.advance(Duration::from_secs(31));
    assert_eq!(proposed_removals(sim.take(0, A)), ["b"]);
    // Once: the departure is gone.
    sim.advance(Duration::from_secs(120));
    assert!(proposed_removals(sim.take(0, A)).is_empty());
}

#[test]
fn a_zero_group_member_linger_proposes_no_removal_for_absence() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = ChannelsConfig {
        group_member_linger: Duration::ZERO,
        group_reader: Some(Arc::new(crate::sim::ToyReader)),
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({"encrypted": true, "history_size": 10}));
    join(&mut sim, B, 2);
    let commit = json!({"commit": b64(b"C\0room"), "group_info": b64(b"G\x01")});
    sim.send(0, A, &cmd(3, "room", "commit", commit));
    assert_eq!(reply(sim.take(0, A), 3)["ok"], true);
    sim.close(0, B);
    sim.advance(Duration::from_secs(24 * 3600));
    assert!(proposed_removals(sim.take(0, A)).is_empty());
}

#[test]
fn departures_waiting_out_the_linger_are_bounded_and_none_is_dropped() {
    use base64::Engine as _;
    let config = ChannelsConfig {
        group_member_linger: Duration::from_secs(3600),
        group_reader: Some(Arc::new(crate::sim::ToyReader)),
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({"encrypted": true, "history_size": 10}));
    let commit = json!({
        "commit": base64::engine::general_purpose::STANDARD.encode(b"C\0room"),
        "group_info": base64::engine::general_purpose::STANDARD.encode(b"G\x01"),
    });
    sim.send(0, A, &cmd(2, "room", "commit", commit));
    assert_eq!(reply(sim.take(0, A), 2)["ok"], true);
    // Six users come and go, two past the bound: the two who left first
    // are proposed for removal at once, long before the linger.
    let max = super::commands::MAX_DEPARTURES;
    for n in 0..max + 2 {
        let session = SessionId(0x100 + n as u64);
        sim.open(0, session, Some(&format!("u{n}")));
        join(&mut sim, session, 10);
        sim.close(0, session);
    }
    assert_eq!(proposed_removals(sim.take(0, A)), ["u0", "u1"]);
    // The others when their linger is out.
    sim.advance(Duration::from_secs(3601));
    let mut rest = proposed_removals(sim.take(0, A));
    rest.sort();
    assert_eq!(
        rest,
        (2..max + 2).map(|n| format!("u{n}")).collect::<Vec<_>>()
    );
}

// ROBUSTNESS 162: a device back after missing commits learns it from its
// join reply, not from the group's next message.
#[test]
fn a_join_of_an_encrypted_channel_says_where_its_group_is() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = ChannelsConfig {
        group_reader: Some(Arc::new(crate::sim::ToyReader)),
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({"encrypted": true, "history_size": 10}));
    // No commit yet: nothing to say.
    assert!(join(&mut sim, B, 2).get("group_epoch").is_none());
    for (id, epoch) in [(3u32, 0u8), (4, 1)] {
        let commit = json!({"commit": b64(&[&[b'C', epoch][..], b"room"].concat()), "group_info": b64(&[b'G', epoch + 1])});
        sim.send(0, A, &cmd(id, "room", "commit", commit));
        assert_eq!(reply(sim.take(0, A), id)["ok"], true);
    }
    // With `since` (what a reconnecting device sends) and without.
    sim.send(
        0,
        C,
        &cmd(
            5,
            "room",
            "join",
            json!({"since": {"offset": 0, "epoch": "x"}}),
        ),
    );
    let joined = reply(sim.take(0, C), 5);
    assert_eq!(joined["group_epoch"], 2, "{joined}");
    let d = SessionId(0x40);
    sim.open(0, d, Some("d"));
    assert_eq!(join(&mut sim, d, 6)["group_epoch"], 2);
    // A channel that is not encrypted has no group.
    sim.send(
        0,
        A,
        &cmd(7, "plain", "create", json!({"history_size": 10})),
    );
    assert!(reply(sim.take(0, A), 7).get("group_epoch").is_none());
    sim.send(0, B, &cmd(8, "plain", "join", json!({})));
    assert!(reply(sim.take(0, B), 8).get("group_epoch").is_none());
}

// ROBUSTNESS 163: a commit's Welcome goes to the sessions of the users it
// adds, not to every member (in a group of 1,000 it is ~177 KB that only
// the newcomers can open); live, in a join's recovery and in `history`.
#[test]
fn a_commits_welcome_reaches_only_the_users_it_adds() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let config = ChannelsConfig {
        group_reader: Some(Arc::new(crate::sim::ToyReader)),
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({"encrypted": true, "history_size": 10}));
    join(&mut sim, B, 2);
    join(&mut sim, C, 3);
    let welcome = b64(b"W for b");
    let commit = json!({
        "commit": b64(b"C\0room"), "welcome": welcome, "welcome_to": ["b"],
        "group_info": b64(b"G\x01"),
    });
    sim.send(0, A, &cmd(4, "room", "commit", commit));
    assert_eq!(reply(sim.take(0, A), 4)["ok"], true);
    let to_b = events(sim.take(0, B), "message");
    let to_c = events(sim.take(0, C), "message");
    assert_eq!(to_b[0]["data"]["welcome"], welcome, "{to_b:?}");
    assert_eq!(to_b[0]["data"]["e2e"], "commit");
    assert_eq!(to_c[0]["data"]["e2e"], "commit");
    assert!(to_c[0]["data"].get("welcome").is_none(), "{to_c:?}");
    // What history gives back is addressed the same way.
    for (session, user, gets) in [(SessionId(0xb2), "b", true), (SessionId(0xc2), "c", false)] {
        sim.open(0, session, Some(user));
        let since = json!({"since": {"offset": 0, "epoch": to_c[0]["epoch"]}});
        sim.send(0, session, &cmd(5, "room", "join", since));
        let joined = reply(sim.take(0, session), 5);
        assert_eq!(joined["recovered"], true, "{joined}");
        let commits: Vec<&Value> = joined["publications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["data"]["e2e"] == "commit")
            .collect();
        assert_eq!(commits.len(), 1, "{joined}");
        assert_eq!(
            commits[0]["data"].get("welcome").is_some(),
            gets,
            "{user}: {joined}"
        );
        sim.send(0, session, &cmd(6, "room", "history", json!({"limit": 10})));
        let history = reply(sim.take(0, session), 6);
        let kept = history["publications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["data"]["e2e"] == "commit")
            .cloned()
            .unwrap();
        assert_eq!(
            kept["data"].get("welcome").is_some(),
            gets,
            "{user}: {history}"
        );
    }
    // Without `welcome_to`, everyone gets it, as before.
    let commit = json!({"commit": b64(b"C\x01room"), "welcome": welcome});
    sim.send(0, A, &cmd(7, "room", "commit", commit));
    assert_eq!(reply(sim.take(0, A), 7)["ok"], true);
    assert_eq!(
        events(sim.take(0, C), "message")[0]["data"]["welcome"],
        welcome
    );
    // Malformed addresses are refused.
    for bad in [
        json!({"commit": b64(b"C\x02room"), "welcome_to": ["b"]}),
        json!({"commit": b64(b"C\x02room"), "welcome": welcome, "welcome_to": []}),
        json!({"commit": b64(b"C\x02room"), "welcome": welcome, "welcome_to": [""]}),
        json!({"commit": b64(b"C\x02room"), "welcome": welcome, "welcome_to": ["x".repeat(1000)]}),
        json!({"commit": b64(b"C\x02room"), "welcome": welcome, "welcome_to": vec!["b"; 1001]}),
    ] {
        sim.send(0, A, &cmd(8, "room", "commit", bad.clone()));
        assert_eq!(
            error_code(&reply(sim.take(0, A), 8)),
            "bad_request",
            "{bad}"
        );
    }
}

/// What `session` was sent and whether it was closed, with its code.
fn closed_with(outs: &[Out]) -> Option<CloseCode> {
    outs.iter().find_map(|out| match out {
        Out::Closed(code, _) => Some(*code),
        Out::Message(_) => None,
    })
}

#[test]
fn a_session_is_told_to_refresh_then_closed_when_its_token_ends() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    join(&mut sim, B, 1);
    sim.expire_in(0, B, Duration::from_secs(100));
    sim.advance(Duration::from_secs(69));
    assert!(events(sim.take(0, B), "expiring").is_empty(), "too early");
    sim.advance(Duration::from_secs(1));
    let told = sim.take(0, B);
    assert_eq!(
        events(told.clone(), "expiring"),
        [json!({"expires_in": 30})]
    );
    assert!(messages(told).iter().all(|m| m.get("channel").is_none()));
    sim.advance(Duration::from_secs(29));
    assert_eq!(closed_with(&sim.take(0, B)), None);
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        closed_with(&sim.take(0, B)),
        Some(close_codes::TOKEN_EXPIRED)
    );
    // Closing: nothing published from now on reaches it.
    sim.send(0, A, &cmd(2, "room", "publish", json!("after")));
    assert!(events(sim.take(0, B), "message").is_empty());
    sim.with_manager(0, |m| m.check_invariants()).unwrap();
}

#[test]
fn a_token_with_little_left_is_told_at_half_of_it() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    sim.expire_in(0, B, Duration::from_secs(10));
    sim.advance(Duration::from_secs(4));
    assert!(events(sim.take(0, B), "expiring").is_empty());
    sim.advance(Duration::from_secs(1));
    assert_eq!(
        events(sim.take(0, B), "expiring"),
        [json!({"expires_in": 5})]
    );
}

#[test]
fn a_refresh_with_a_token_of_its_own_user_moves_the_end() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    join(&mut sim, B, 1);
    sim.expire_in(0, B, Duration::from_secs(60));
    sim.advance(Duration::from_secs(30));
    assert_eq!(events(sim.take(0, B), "expiring").len(), 1);
    sim.send(
        0,
        B,
        &cmd(2, "$session", "refresh", json!({"token": "b:3600"})),
    );
    assert_eq!(
        reply(sim.take(0, B), 2),
        json!({"ok": true, "expires_in": 3600})
    );
    sim.advance(Duration::from_secs(3569));
    let outs = sim.take(0, B);
    assert_eq!(closed_with(&outs), None, "the old end passed long ago");
    assert!(events(outs, "expiring").is_empty());
    sim.advance(Duration::from_secs(1));
    assert_eq!(events(sim.take(0, B), "expiring").len(), 1, "told again");
    // A token without an end: the session lasts.
    sim.send(0, B, &cmd(3, "$session", "refresh", json!({"token": "b"})));
    assert_eq!(reply(sim.take(0, B), 3), json!({"ok": true}));
    sim.advance(Duration::from_secs(100_000));
    assert_eq!(closed_with(&sim.take(0, B)), None);
    sim.with_manager(0, |m| m.check_invariants()).unwrap();
}

/// The attacker holds a valid token of another user (leaked, or its own
/// second account's): `refresh` with it neither makes its session that
/// user nor keeps it open past its own token.
#[test]
fn a_refresh_cannot_make_a_session_another_user() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    join(&mut sim, C, 1);
    sim.expire_in(0, C, Duration::from_secs(60));
    sim.send(
        0,
        C,
        &cmd(2, "$session", "refresh", json!({"token": "a:3600"})),
    );
    assert_eq!(error_code(&reply(sim.take(0, C), 2)), "forbidden");
    // Still c, and still a participant: not the owner a is.
    sim.send(0, C, &cmd(3, "room", "kick", json!({"user": "b"})));
    assert_eq!(error_code(&reply(sim.take(0, C), 3)), "forbidden");
    sim.send(0, C, &cmd(4, "room", "publish", json!("hi")));
    let got = events(sim.take(0, A), "message");
    assert_eq!(got[0]["from"]["user"], "c");
    sim.take(0, C);
    sim.advance(Duration::from_secs(60));
    assert_eq!(
        closed_with(&sim.take(0, C)),
        Some(close_codes::TOKEN_EXPIRED),
        "its own token's end stands"
    );
}

#[test]
fn refreshes_that_are_refused() {
    let config = ChannelsConfig {
        allow_anonymous: true,
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({}));
    sim.expire_in(0, B, Duration::from_secs(60));
    for (id, channel, data, code) in [
        (1, "room", json!({"token": "b:3600"}), "bad_request"),
        (2, "$session", json!({}), "bad_request"),
        (
            3,
            "$session",
            json!({"token": "b:3600", "x": 1}),
            "bad_request",
        ),
        (4, "$session", json!({"token": "b:soon"}), "forbidden"),
    ] {
        sim.send(0, B, &cmd(id, channel, "refresh", data));
        assert_eq!(error_code(&reply(sim.take(0, B), id)), code, "{id}");
    }
    sim.advance(Duration::from_secs(60));
    assert_eq!(
        closed_with(&sim.take(0, B)),
        Some(close_codes::TOKEN_EXPIRED)
    );
    const ANONYMOUS: SessionId = SessionId(0xd);
    sim.open(0, ANONYMOUS, None);
    sim.send(
        0,
        ANONYMOUS,
        &cmd(5, "$session", "refresh", json!({"token": "d"})),
    );
    assert_eq!(error_code(&reply(sim.take(0, ANONYMOUS), 5)), "forbidden");
}

#[test]
fn sessions_outlive_their_tokens_when_expiry_is_off() {
    let config = ChannelsConfig {
        expire_sessions: false,
        ..ChannelsConfig::default()
    };
    let mut sim = room(config, json!({}));
    sim.expire_in(0, B, Duration::from_secs(10));
    sim.advance(Duration::from_secs(3600));
    let outs = sim.take(0, B);
    assert_eq!(closed_with(&outs), None);
    assert!(events(outs, "expiring").is_empty());
}

#[test]
fn a_closed_session_leaves_no_timer_behind() {
    let mut sim = room(ChannelsConfig::default(), json!({}));
    sim.expire_in(0, B, Duration::from_secs(10));
    sim.close(0, B);
    sim.close(0, A);
    sim.close(0, C);
    assert_eq!(sim.with_manager(0, |m| m.poll_timeout()), None);
}
