use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::json;
use ws_core::envelope::Envelope;

use super::*;
use crate::ChannelsConfig;
use crate::protocol::ServerMessage;
use crate::sim::{Out, Sim, Transit};
use crate::types::SessionId;

fn steady() -> ReconnectConfig {
    ReconnectConfig {
        jitter: false,
        ..ReconnectConfig::default()
    }
}

fn drain(client: &mut Reconnector) -> Vec<Output> {
    std::iter::from_fn(|| client.poll_output()).collect()
}

fn retry_in(outputs: &[Output]) -> Option<Duration> {
    outputs.iter().find_map(|output| match output {
        Output::Event(ClientEvent::State {
            state: ConnectionState::Disconnected,
            retry_in,
            ..
        }) => *retry_in,
        _ => None,
    })
}

fn publication(offset: u64, epoch: &str) -> PublicationEvent {
    PublicationEvent {
        offset: Some(offset),
        epoch: Some(epoch.into()),
        from: None,
        data: Some(crate::Payload::new(&json!(offset))),
        reason: None,
    }
}

fn handed_out(outputs: &[Output]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(ClientEvent::Publication { publication, .. }) => publication.offset,
            _ => None,
        })
        .collect()
}

fn message(channel: &str, publication: PublicationEvent) -> Event {
    Event::Publication {
        channel: channel.into(),
        kind: PublicationKind::Message,
        publication,
    }
}

fn joined_at(top: u64, recovered: Option<bool>, publications: Vec<PublicationEvent>) -> JoinReply {
    let mut reply: JoinReply =
        serde_json::from_value(json!({"role": "participant", "offset": top, "epoch": "e"}))
            .unwrap();
    reply.recovered = recovered;
    reply.publications = recovered.map(|_| publications);
    reply
}

/// A client connected once, in `channel`, at offset `top` of epoch "e".
fn in_channel(channel: &str, top: u64) -> (Reconnector, Instant) {
    let now = Instant::now();
    let mut client = Reconnector::with_seed(steady(), 1);
    client.join(channel, None);
    client.start();
    client.connected(now);
    client.join_reply(1, channel, Ok(joined_at(top, None, Vec::new())));
    drain(&mut client);
    (client, now)
}

#[test]
fn waits_double_up_to_the_bound_and_a_long_connection_starts_again() {
    let mut client = Reconnector::with_seed(steady(), 1);
    let mut now = Instant::now();
    client.start();
    assert_eq!(drain(&mut client).last(), Some(&Output::Connect));
    let mut waits = Vec::new();
    for _ in 0..9 {
        client.connect_failed(now, "refused");
        let wait = retry_in(&drain(&mut client)).unwrap();
        waits.push(wait.as_millis());
        assert_eq!(client.poll_timeout(), Some(now + wait));
        now += wait;
        client.handle_timeout(now);
        assert_eq!(drain(&mut client).last(), Some(&Output::Connect));
    }
    assert_eq!(
        waits,
        [250, 500, 1000, 2000, 4000, 8000, 16000, 20000, 20000]
    );
    // A connection that drops at once is one more failure ...
    client.connected(now);
    client.disconnected(now + Duration::from_secs(1), None, "reset");
    assert_eq!(retry_in(&drain(&mut client)), Some(Duration::from_secs(20)));
    // ... one that lasted starts from the shortest wait.
    now += Duration::from_secs(21);
    client.handle_timeout(now);
    client.connected(now);
    client.disconnected(now + Duration::from_secs(20), None, "reset");
    assert_eq!(
        retry_in(&drain(&mut client)),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn jitter_spreads_waits_within_their_bound() {
    let mut firsts = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let mut client = Reconnector::with_seed(ReconnectConfig::default(), seed);
        let mut now = Instant::now();
        client.start();
        let mut waits = Vec::new();
        for _ in 0..3 {
            client.connect_failed(now, "refused");
            waits.push(retry_in(&drain(&mut client)).unwrap());
            now += Duration::from_secs(60);
            client.handle_timeout(now);
        }
        // Drawn from zero up to 250 ms, 500 ms, 1 s.
        for (wait, bound) in waits.iter().zip([250, 500, 1000]) {
            assert!(*wait <= Duration::from_millis(bound), "{waits:?}");
        }
        firsts.insert(waits[0]);
    }
    assert!(firsts.len() > 150, "only {} distinct waits", firsts.len());
}

#[test]
fn gives_up_after_its_attempts() {
    let config = ReconnectConfig {
        max_attempts: Some(3),
        ..steady()
    };
    let mut client = Reconnector::with_seed(config, 1);
    let mut now = Instant::now();
    client.start();
    for _ in 0..3 {
        client.connect_failed(now, "refused");
        now += Duration::from_secs(60);
        client.handle_timeout(now);
    }
    assert_eq!(client.state(), ConnectionState::Closed);
    assert_eq!(client.poll_timeout(), None);
    let outputs = drain(&mut client);
    assert!(matches!(
        outputs.last(),
        Some(Output::Event(ClientEvent::State { state: ConnectionState::Closed, reason: Some(why), .. }))
            if why.contains("gave up after 3")
    ));
}

#[test]
fn a_close_that_says_not_to_come_back_ends_it() {
    for (code, again) in [
        (Some(close_codes::UNAUTHORIZED), false),
        (Some(close_codes::DISCONNECTED), false),
        (Some(CloseCode::POLICY_VIOLATION), false),
        (Some(close_codes::SLOW), true),
        (Some(CloseCode::GOING_AWAY), true),
        (Some(CloseCode::SERVICE_RESTART), true),
        (None, true),
    ] {
        let (mut client, now) = in_channel("room", 0);
        client.disconnected(now, code, "bye");
        let state = client.state();
        assert_eq!(
            state == ConnectionState::Disconnected,
            again,
            "{code:?}: {state:?}"
        );
        assert_eq!(client.poll_timeout().is_some(), again);
    }
}

#[test]
fn every_channel_is_joined_again_from_its_last_publication() {
    let (mut client, now) = in_channel("room", 3);
    client.join("other", None);
    client.join_reply(1, "other", Ok(joined_at(0, None, Vec::new())));
    client.handle_event(message("room", publication(4, "e")));
    drain(&mut client);
    client.disconnected(now, None, "cut");
    client.handle_timeout(now + Duration::from_secs(1));
    client.connected(now + Duration::from_secs(1));
    let joins: Vec<(String, Option<u64>, u64)> = drain(&mut client)
        .into_iter()
        .filter_map(|output| match output {
            Output::Join {
                channel,
                since,
                connection,
            } => Some((channel, since.map(|s| s.offset), connection)),
            _ => None,
        })
        .collect();
    assert_eq!(
        joins,
        [("other".into(), Some(0), 2), ("room".into(), Some(4), 2)]
    );
    // A reply from the first connection is not this one's.
    client.join_reply(
        1,
        "room",
        Ok(joined_at(9, Some(true), vec![publication(5, "e")])),
    );
    assert!(handed_out(&drain(&mut client)).is_empty());
    // What the reply recovers comes first, then what waited behind it,
    // each once.
    client.handle_event(message("room", publication(6, "e")));
    client.handle_event(message("room", publication(7, "e")));
    client.join_reply(
        2,
        "room",
        Ok(joined_at(
            6,
            Some(true),
            vec![publication(5, "e"), publication(6, "e")],
        )),
    );
    let outputs = drain(&mut client);
    assert!(outputs.contains(&Output::Event(ClientEvent::Joined {
        channel: "room".into(),
        recovered: Some(true)
    })));
    assert_eq!(handed_out(&outputs), [5, 6, 7]);
}

#[test]
fn what_history_lost_is_said_and_the_channel_goes_on_from_its_top() {
    let (mut client, now) = in_channel("room", 3);
    client.disconnected(now, None, "cut");
    client.handle_timeout(now + Duration::from_secs(1));
    client.connected(now + Duration::from_secs(1));
    drain(&mut client);
    client.join_reply(2, "room", Ok(joined_at(40, Some(false), Vec::new())));
    let outputs = drain(&mut client);
    assert!(outputs.contains(&Output::Event(ClientEvent::Joined {
        channel: "room".into(),
        recovered: Some(false)
    })));
    client.handle_event(message("room", publication(41, "e")));
    assert_eq!(handed_out(&drain(&mut client)), [41]);
}

#[test]
fn duplicates_are_dropped_and_a_gap_is_filled_from_history_first() {
    let (mut client, _) = in_channel("room", 0);
    for offset in [1, 2, 2, 1] {
        client.handle_event(message("room", publication(offset, "e")));
    }
    assert_eq!(handed_out(&drain(&mut client)), [1, 2]);
    // 3 and 4 never came: 5 waits while they are read.
    client.handle_event(message("room", publication(5, "e")));
    client.handle_event(message("room", publication(6, "e")));
    let outputs = drain(&mut client);
    assert!(handed_out(&outputs).is_empty());
    assert!(outputs.contains(&Output::Join {
        channel: "room".into(),
        since: Some(Position {
            offset: 2,
            epoch: "e".into()
        }),
        connection: 1
    }));
    client.join_reply(
        1,
        "room",
        Ok(joined_at(
            5,
            Some(true),
            vec![
                publication(3, "e"),
                publication(4, "e"),
                publication(5, "e"),
            ],
        )),
    );
    assert_eq!(handed_out(&drain(&mut client)), [3, 4, 5, 6]);
    // A `lost` event: joined again from the last one handed out.
    client.handle_event(Event::Lost {
        channel: "room".into(),
        last: None,
    });
    assert!(drain(&mut client).contains(&Output::Join {
        channel: "room".into(),
        since: Some(Position {
            offset: 6,
            epoch: "e".into()
        }),
        connection: 1
    }));
}

#[test]
fn removed_and_refused_channels_are_not_joined_again() {
    let (mut client, now) = in_channel("room", 0);
    client.join("closed", None);
    client.handle_event(Event::Removed {
        channel: "room".into(),
        reason: LeaveReason::Banned,
    });
    client.join_reply(
        1,
        "closed",
        Err(ChannelError::new(
            crate::ErrorCode::NotFound,
            "no such channel",
        )),
    );
    let outputs = drain(&mut client);
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Event(ClientEvent::Removed { .. })))
    );
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Event(ClientEvent::JoinFailed { .. })))
    );
    client.disconnected(now, None, "cut");
    client.handle_timeout(now + Duration::from_secs(1));
    client.connected(now + Duration::from_secs(1));
    assert!(
        !drain(&mut client)
            .iter()
            .any(|o| matches!(o, Output::Join { .. }))
    );
}

// The client against the real manager (the simulator's nodes on one
// memory backend): connections cut at arbitrary times, the next one on
// another node, the server refusing connections for a while, and
// publications lost on their way to the client's node.

#[derive(Debug, Clone)]
enum Step {
    Publish,
    Cut,
    SwitchNode,
    Refuse(bool),
    LoseNext,
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => Just(Step::Publish),
        2 => Just(Step::Cut),
        1 => Just(Step::SwitchNode),
        1 => any::<bool>().prop_map(Step::Refuse),
        1 => Just(Step::LoseNext),
        3 => (1..3_000u64).prop_map(Step::Wait),
    ]
}

const PUBLISHER: SessionId = SessionId(0xfff);

/// What the application saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Publication(u64),
    Unrecovered,
}

struct Harness {
    sim: Sim,
    client: Reconnector,
    session: Option<(usize, SessionId)>,
    node: usize,
    refusing: bool,
    sessions: u64,
    ids: u64,
    joins: HashMap<String, (u64, String)>,
    acked: Vec<u64>,
    seen: Vec<Seen>,
}

impl Harness {
    fn new(history_size: u64) -> Self {
        let mut sim = Sim::new(2, ChannelsConfig::default());
        sim.open(0, PUBLISHER, Some("p"));
        let create = json!({"type": "command", "id": "c", "channel": "room", "action": "create",
            "data": {"history_size": history_size, "history_ttl": 3600}});
        sim.send(0, PUBLISHER, &create.to_string());
        sim.take(0, PUBLISHER);
        let config = ReconnectConfig {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..ReconnectConfig::default()
        };
        let mut harness = Self {
            sim,
            client: Reconnector::with_seed(config, 7),
            session: None,
            node: 0,
            refusing: false,
            sessions: 0,
            ids: 0,
            joins: HashMap::new(),
            acked: Vec::new(),
            seen: Vec::new(),
        };
        harness.client.join("room", None);
        harness.client.start();
        harness.pump();
        harness
    }

    fn now(&self) -> Instant {
        self.sim.now()
    }

    fn run(&mut self, step: Step) {
        match step {
            Step::Publish => {
                self.ids += 1;
                let publish = json!({"type": "command", "id": format!("p{}", self.ids),
                    "channel": "room", "action": "publish", "data": {"n": self.ids}});
                self.sim.send(0, PUBLISHER, &publish.to_string());
                for out in self.sim.take(0, PUBLISHER) {
                    if let Out::Message(value) = out
                        && value["type"] == "response"
                    {
                        assert_eq!(value["data"]["ok"], true, "{value}");
                        self.acked.push(value["data"]["offset"].as_u64().unwrap());
                    }
                }
            }
            Step::Cut => {
                if let Some((node, session)) = self.session.take() {
                    self.sim.close(node, session);
                    let now = self.now();
                    self.client.disconnected(now, None, "cut");
                }
            }
            Step::SwitchNode => self.node = 1 - self.node,
            Step::Refuse(refusing) => self.refusing = refusing,
            Step::LoseNext => {
                if let Some((node, _)) = self.session {
                    self.sim.transit(node, &[Transit::Drop]);
                }
            }
            Step::Wait(millis) => {
                self.sim.advance(Duration::from_millis(millis));
                let now = self.now();
                self.client.handle_timeout(now);
            }
        }
        self.pump();
    }

    /// Carries outputs to the simulator and what it sends back to the
    /// client, until neither has anything more.
    fn pump(&mut self) {
        loop {
            let mut progress = false;
            while let Some(output) = self.client.poll_output() {
                progress = true;
                self.carry(output);
            }
            if let Some((node, session)) = self.session {
                for out in self.sim.take(node, session) {
                    progress = true;
                    self.receive(out);
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn carry(&mut self, output: Output) {
        let now = self.now();
        match output {
            Output::Connect => {
                if self.refusing {
                    self.client.connect_failed(now, "refused");
                } else {
                    self.sessions += 1;
                    let session = SessionId(0x1000 + self.sessions);
                    self.sim.open(self.node, session, Some("c"));
                    self.session = Some((self.node, session));
                    self.client.connected(now);
                }
            }
            Output::Join {
                channel,
                since,
                connection,
            } => {
                let Some((node, session)) = self.session else {
                    return;
                };
                self.ids += 1;
                let id = format!("j{}", self.ids);
                let data = match since {
                    Some(since) => json!({"since": since}),
                    None => json!({}),
                };
                self.joins.insert(id.clone(), (connection, channel.clone()));
                let join = json!({"type": "command", "id": id, "channel": channel, "action": "join", "data": data});
                self.sim.send(node, session, &join.to_string());
            }
            Output::Leave { .. } => {}
            Output::Event(ClientEvent::Publication { publication, .. }) => {
                self.seen
                    .push(Seen::Publication(publication.offset.unwrap()));
            }
            Output::Event(ClientEvent::Joined {
                recovered: Some(false),
                ..
            }) => self.seen.push(Seen::Unrecovered),
            Output::Event(ClientEvent::JoinFailed { error, .. }) => {
                panic!("the join was refused: {error:?}")
            }
            Output::Event(_) => {}
        }
    }

    fn receive(&mut self, out: Out) {
        let now = self.now();
        match out {
            Out::Closed(code, reason) => {
                self.session = None;
                self.client.disconnected(now, Some(code), &reason);
            }
            Out::Message(value) => {
                let envelope = Envelope::from_slice(value.to_string().as_bytes()).unwrap();
                match ServerMessage::from_envelope(envelope) {
                    Some(ServerMessage::Reply(reply)) => {
                        let id = reply.id.clone().unwrap_or_default();
                        if let Some((connection, channel)) = self.joins.remove(&id) {
                            let result = reply
                                .result
                                .map(|data| serde_json::from_value::<JoinReply>(data).unwrap());
                            self.client.join_reply(connection, &channel, result);
                        }
                    }
                    Some(ServerMessage::Event(event)) => self.client.handle_event(event),
                    None => {}
                }
            }
        }
    }

    /// Everything up, time for a reconnect, and one last publication:
    /// the client must be back and have it.
    fn settle(&mut self) {
        self.refusing = false;
        for _ in 0..20 {
            self.run(Step::Wait(1_000));
            if self.client.state() == ConnectionState::Connected {
                break;
            }
        }
        assert_eq!(self.client.state(), ConnectionState::Connected);
        self.run(Step::Publish);
        // Long enough for the node's position check, which finds a tail
        // lost on its way to the node.
        for _ in 0..60 {
            self.run(Step::Wait(1_000));
        }
    }

    fn delivered(&self) -> Vec<u64> {
        self.seen
            .iter()
            .filter_map(|seen| match seen {
                Seen::Publication(offset) => Some(*offset),
                Seen::Unrecovered => None,
            })
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With history covering every gap: exactly the publications the
    /// server acknowledged, in order, each once, whatever the cuts.
    #[test]
    fn with_history_enough_every_acknowledged_publication_arrives_once_in_order(
        steps in prop::collection::vec(step(), 1..60)
    ) {
        let mut harness = Harness::new(1000);
        for step in steps {
            harness.run(step);
        }
        harness.settle();
        prop_assert_eq!(harness.delivered(), harness.acked.clone());
        prop_assert!(!harness.seen.contains(&Seen::Unrecovered));
    }

    /// With a history of 3: never a duplicate or a step back, and every
    /// gap in what arrived is told (`recovered: false`) where it is.
    /// (The last publication may be before the history's top a lossy
    /// join moved on to: told too.)
    #[test]
    fn with_little_history_every_gap_is_told_where_it_is(
        steps in prop::collection::vec(step(), 1..60)
    ) {
        let mut harness = Harness::new(3);
        for step in steps {
            harness.run(step);
        }
        harness.settle();
        let mut last = 0;
        let mut told = false;
        for seen in &harness.seen {
            match seen {
                Seen::Unrecovered => told = true,
                Seen::Publication(offset) => {
                    prop_assert!(*offset > last, "{:?}", harness.seen);
                    prop_assert!(*offset == last + 1 || told, "a gap before {} was not told: {:?}", offset, harness.seen);
                    last = *offset;
                    told = false;
                }
            }
        }
        // The last one arrived, or what came after the last one that did
        // was told lost (a channel goes on from its history's top then).
        prop_assert!(Some(last) == harness.acked.last().copied() || told, "{:?}", harness.seen);
    }
}

#[test]
fn what_was_published_during_a_cut_arrives_after_the_reconnect() {
    let mut harness = Harness::new(1000);
    harness.run(Step::Publish);
    harness.run(Step::Cut);
    harness.run(Step::Publish);
    assert_eq!(harness.delivered(), [1]);
    harness.settle();
    assert_eq!(harness.delivered(), [1, 2, 3]);
    assert_eq!(harness.acked, [1, 2, 3]);
}

// ROBUSTNESS 164: a flood while a join is answered is bounded: past
// `max_buffered` publications are dropped and read again from history by
// one more join, none handed out out of order or lost silently.
#[test]
fn a_flood_while_joining_is_bounded_and_recovered_from_history() {
    let config = ReconnectConfig {
        max_buffered: 3,
        ..steady()
    };
    let mut client = Reconnector::with_seed(config, 1);
    let now = Instant::now();
    client.join("room", None);
    client.start();
    client.connected(now);
    client.join_reply(1, "room", Ok(joined_at(0, None, Vec::new())));
    client.handle_event(message("room", publication(1, "e")));
    drain(&mut client);
    // A gap: a join from 1 is in flight while 3..=10 arrive.
    for offset in 3..=10 {
        client.handle_event(message("room", publication(offset, "e")));
    }
    client.join_reply(
        1,
        "room",
        Ok(joined_at(10, Some(true), vec![publication(2, "e")])),
    );
    let outputs = drain(&mut client);
    // 2 from the reply, then the three kept; the rest comes from history.
    assert_eq!(handed_out(&outputs), [2, 3, 4, 5]);
    assert!(outputs.contains(&Output::Join {
        channel: "room".into(),
        since: Some(Position {
            offset: 5,
            epoch: "e".into()
        }),
        connection: 1
    }));
    client.join_reply(
        1,
        "room",
        Ok(joined_at(
            10,
            Some(true),
            (6..=10).map(|o| publication(o, "e")).collect(),
        )),
    );
    assert_eq!(handed_out(&drain(&mut client)), [6, 7, 8, 9, 10]);
}
