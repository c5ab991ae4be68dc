//! A deterministic driver for tests and fuzzing: managers of several nodes
//! on one [`MemoryBackend`], a movable clock, and recorded outputs per
//! session. Not a public API.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde_json::Value;
use ws_core::CloseCode;
use ws_core::envelope::Envelope;

use crate::backend::{MemoryBackend, Sink};
use crate::backends::Backends;
use crate::config::ChannelsConfig;
use crate::manager::{Action, ChannelManager, CustomCommand, OpId};
use crate::operation::{Authenticated, OpResult, Operation};
use crate::protocol::Token;
use crate::types::{ChannelError, ControlMessage, ErrorCode, NodeId, Publication, SessionId};

/// What a session was sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A message, parsed.
    Message(Value),
    /// The connection was closed.
    Closed(CloseCode, String),
}

/// A backend operation's result on its way back to its node.
pub struct Answer(OpId, OpResult);

enum Work {
    Backend(OpId, Operation),
    Custom(OpId, CustomCommand),
    Authenticate(OpId, Token),
}

/// One node: a manager and what it produced.
pub struct SimNode {
    id: NodeId,
    state: Mutex<NodeState>,
}

struct NodeState {
    manager: ChannelManager,
    outputs: BTreeMap<SessionId, Vec<Out>>,
    slow: BTreeSet<SessionId>,
    work: VecDeque<Work>,
    /// What happens to the next publications on their way to this node.
    transit: VecDeque<Transit>,
    /// Publications held on the way ([`Transit::Hold`]).
    held: Vec<(String, Publication)>,
}

/// What the broker does with a publication on its way to a node: the
/// faults the manager's order gate meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transit {
    /// Delivers it.
    Deliver,
    /// Loses it (a slow consumer cut off, a reconnect).
    Drop,
    /// Keeps it until [`Sim::release`] (delivered late, out of order).
    Hold,
    /// Delivers it twice.
    Twice,
}

impl SimNode {
    fn lock(&self) -> MutexGuard<'_, NodeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl NodeState {
    fn drain(&mut self, now: Instant) {
        while let Some(action) = self.manager.poll_action() {
            match action {
                Action::Send { session, envelope } => {
                    if self.slow.contains(&session) {
                        self.manager.handle_undelivered(session, None, now);
                    } else {
                        self.record(session, Out::Message(parse(&envelope)));
                    }
                }
                Action::Deliver {
                    channel,
                    sessions,
                    except,
                    message,
                } => {
                    let bytes = message.as_bytes();
                    let header = if bytes[1] & 0x7f == 126 {
                        4
                    } else if bytes[1] & 0x7f == 127 {
                        10
                    } else {
                        2
                    };
                    let value: Value =
                        serde_json::from_slice(&bytes[header..]).expect("deliveries are JSON");
                    let mut seen = BTreeSet::new();
                    for &session in sessions.iter().filter(|s| Some(**s) != except) {
                        assert!(seen.insert(session), "{session:?} twice in one delivery");
                        if self.slow.contains(&session) {
                            self.manager
                                .handle_undelivered(session, Some(&channel), now);
                        } else {
                            self.record(session, Out::Message(value.clone()));
                        }
                    }
                }
                Action::Disconnect {
                    session,
                    code,
                    reason,
                } => self.record(session, Out::Closed(code, reason)),
                Action::Backend { op, operation } => {
                    self.work.push_back(Work::Backend(op, operation))
                }
                Action::Custom { op, command } => self.work.push_back(Work::Custom(op, command)),
                Action::Authenticate { op, token, .. } => {
                    self.work.push_back(Work::Authenticate(op, token))
                }
            }
        }
    }

    /// Records what an open session was sent; a closed one gets nothing.
    fn record(&mut self, session: SessionId, out: Out) {
        if let Some(outputs) = self.outputs.get_mut(&session) {
            outputs.push(out);
        }
    }
}

fn parse(envelope: &Envelope) -> Value {
    serde_json::from_str(&envelope.to_json()).expect("envelopes are JSON")
}

struct SimSink {
    node: Arc<SimNode>,
    clock: Arc<Mutex<Instant>>,
}

impl Sink for SimSink {
    fn publication(&self, channel: &str, publication: &Publication) {
        let now = *self.clock.lock().unwrap();
        let mut state = self.node.lock();
        let times = match state.transit.pop_front().unwrap_or(Transit::Deliver) {
            Transit::Deliver => 1,
            Transit::Drop => 0,
            Transit::Hold => {
                state.held.push((channel.to_owned(), publication.clone()));
                0
            }
            Transit::Twice => 2,
        };
        for _ in 0..times {
            state.manager.handle_publication(channel, publication, now);
        }
        state.drain(now);
    }

    fn control(&self, message: &ControlMessage) -> usize {
        let now = *self.clock.lock().unwrap();
        let mut state = self.node.lock();
        let removed = state.manager.handle_control(message, now);
        state.drain(now);
        removed
    }
}

/// The simulation's tokens: `user` (no end) or `user:seconds` (ending
/// that long after `now`); anything else is refused with `forbidden`.
pub fn sim_token(token: &str, now: Instant) -> Result<Authenticated, ChannelError> {
    let (user, expires) = match token.split_once(':') {
        None => (token, None),
        Some((user, seconds)) => {
            let seconds: u64 = seconds
                .parse()
                .map_err(|_| ChannelError::new(ErrorCode::Forbidden, "invalid token"))?;
            (user, Some(now + Duration::from_secs(seconds)))
        }
    };
    if user.is_empty() {
        return Err(ChannelError::new(ErrorCode::Forbidden, "invalid token"));
    }
    Ok(Authenticated {
        user: user.to_owned(),
        claims: Value::Null,
        expires,
    })
}

/// Several nodes on one in-memory backend.
pub struct Sim {
    clock: Arc<Mutex<Instant>>,
    backend: Backends,
    nodes: Vec<Arc<SimNode>>,
    /// What custom commands answer.
    pub custom: fn(&CustomCommand) -> Result<Value, ChannelError>,
    /// Checks `refresh` tokens, given the time: by default [`sim_token`]'s
    /// scheme.
    pub tokens: fn(&str, Instant) -> Result<Authenticated, ChannelError>,
    /// Backend work waits for [`Sim::step`] instead of running at once,
    /// so commands, deliveries and time can come while it is in flight.
    held: bool,
}

impl Sim {
    /// `nodes` nodes with `config`.
    pub fn new(nodes: usize, config: ChannelsConfig) -> Self {
        let clock = Arc::new(Mutex::new(Instant::now()));
        let reading = clock.clone();
        let mut backend = Backends::memory(MemoryBackend::with_clock(Arc::new(move || {
            *reading.lock().unwrap()
        })));
        if let Some(reader) = &config.group_reader {
            backend = backend.with_group_reader(reader.clone());
        }
        let config = Arc::new(config);
        let nodes = (0..nodes)
            .map(|i| {
                let id = NodeId(i as u64 + 1);
                let node = Arc::new(SimNode {
                    id,
                    state: Mutex::new(NodeState {
                        manager: ChannelManager::new(id, config.clone()),
                        outputs: BTreeMap::new(),
                        slow: BTreeSet::new(),
                        work: VecDeque::new(),
                        transit: VecDeque::new(),
                        held: Vec::new(),
                    }),
                });
                backend.attach(
                    id,
                    Arc::new(SimSink {
                        node: node.clone(),
                        clock: clock.clone(),
                    }),
                );
                node
            })
            .collect();
        Self {
            clock,
            backend,
            nodes,
            custom: |command| Ok(command.data.clone()),
            tokens: sim_token,
            held: false,
        }
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        *self.clock.lock().unwrap()
    }

    /// Moves the clock on and lets every node handle its timeout.
    pub fn advance(&mut self, by: Duration) {
        let now = {
            let mut clock = self.clock.lock().unwrap();
            *clock += by;
            *clock
        };
        for node in &self.nodes {
            let mut state = node.lock();
            state.manager.handle_timeout(now);
            state.drain(now);
        }
        self.settle();
    }

    fn node(&self, node: usize) -> &Arc<SimNode> {
        &self.nodes[node % self.nodes.len()]
    }

    /// Opens `session` on `node` as `user`.
    pub fn open(&mut self, node: usize, session: SessionId, user: Option<&str>) {
        self.open_as(node, session, user, &Value::Null);
    }

    /// Opens `session` on `node` as `user` with the authenticator's
    /// `claims`.
    pub fn open_as(&mut self, node: usize, session: SessionId, user: Option<&str>, claims: &Value) {
        let now = self.now();
        {
            let mut state = self.node(node).lock();
            state.outputs.entry(session).or_default();
            state.manager.handle_open(session, user, claims, now);
            state.drain(now);
        }
        self.settle();
    }

    /// `session`'s token ends `in` from now
    /// ([`ChannelManager::handle_expiry`]).
    pub fn expire_in(&mut self, node: usize, session: SessionId, r#in: Duration) {
        let now = self.now();
        {
            let mut state = self.node(node).lock();
            state.manager.handle_expiry(session, now + r#in, now);
            state.drain(now);
        }
        self.settle();
    }

    /// Closes `session` on `node`.
    pub fn close(&mut self, node: usize, session: SessionId) {
        let now = self.now();
        {
            let mut state = self.node(node).lock();
            state.manager.handle_closed(session, now);
            state.outputs.remove(&session);
            state.slow.remove(&session);
            state.drain(now);
        }
        self.settle();
    }

    /// Sends `session` on `node` a command, and runs everything it leads
    /// to.
    pub fn command(&mut self, node: usize, session: SessionId, envelope: Envelope) {
        let now = self.now();
        {
            let mut state = self.node(node).lock();
            state.manager.handle_command(session, envelope, now);
            state.drain(now);
        }
        self.settle();
    }

    /// Sends a command given as JSON text.
    pub fn send(&mut self, node: usize, session: SessionId, json: &str) {
        match Envelope::from_slice(json.as_bytes()) {
            Ok(envelope) => self.command(node, session, envelope),
            Err(error) => {
                let now = self.now();
                let mut state = self.node(node).lock();
                state.manager.handle_malformed(session, &error, now);
                state.drain(now);
            }
        }
    }

    /// Tells `node` its broker connection was lost and restored.
    pub fn interrupt(&mut self, node: usize) {
        let now = self.now();
        {
            let mut state = self.node(node).lock();
            state.manager.handle_interrupted(now);
            state.drain(now);
        }
        self.settle();
    }

    /// Makes `session`'s send queue refuse (or accept again) everything.
    pub fn set_slow(&mut self, node: usize, session: SessionId, slow: bool) {
        let mut state = self.node(node).lock();
        if slow {
            state.slow.insert(session);
        } else {
            state.slow.remove(&session);
        }
    }

    /// What happens to the next publications on their way to `node`, one
    /// entry each (then they are delivered).
    pub fn transit(&mut self, node: usize, faults: &[Transit]) {
        self.node(node)
            .lock()
            .transit
            .extend(faults.iter().copied());
    }

    /// Delivers to `node` what [`Transit::Hold`] kept, in the order held.
    pub fn release(&mut self, node: usize) {
        let now = self.now();
        {
            let mut state = self.node(node).lock();
            for (channel, publication) in std::mem::take(&mut state.held) {
                state
                    .manager
                    .handle_publication(&channel, &publication, now);
            }
            state.drain(now);
        }
        self.settle();
    }

    /// Holds backend work (`true`) until [`Sim::step`] runs it one item
    /// at a time, or lets it run to the end after each call again
    /// (`false`, the default; this runs what was held).
    pub fn hold(&mut self, held: bool) {
        self.held = held;
        self.settle();
    }

    /// Runs one item of held backend work, `node`'s if it has any, else
    /// another node's; false when none is left.
    pub fn step(&mut self, node: usize) -> bool {
        let count = self.nodes.len();
        (0..count).any(|i| self.run_one(&self.nodes[(node + i) % count].clone()))
    }

    fn run_one(&self, node: &Arc<SimNode>) -> bool {
        let Some(answer) = self.execute_one(node) else {
            return false;
        };
        self.deliver_answer(node, answer);
        true
    }

    fn execute_one(&self, node: &Arc<SimNode>) -> Option<Answer> {
        let work = node.lock().work.pop_front()?;
        Some(match work {
            Work::Backend(op, operation) => {
                Answer(op, now_or_never(self.backend.execute(node.id, operation)))
            }
            Work::Custom(op, command) => Answer(op, OpResult::Custom((self.custom)(&command))),
            Work::Authenticate(op, token) => Answer(
                op,
                OpResult::Authenticated((self.tokens)(token.as_str(), self.now())),
            ),
        })
    }

    fn deliver_answer(&self, node: &Arc<SimNode>, Answer(op, result): Answer) {
        let now = self.now();
        let mut state = node.lock();
        state.manager.handle_result(op, result, now);
        state.drain(now);
    }

    /// Runs `node`'s next item of held backend work against the backend
    /// now, and keeps the answer from the node until [`Sim::answer`]:
    /// what happens meanwhile happens after the broker answered and
    /// before the node hears it, as when its task waits for the lock.
    pub fn execute(&mut self, node: usize) -> Option<Answer> {
        self.execute_one(self.node(node))
    }

    /// Hands `node` an answer [`Sim::execute`] kept.
    pub fn answer(&mut self, node: usize, answer: Answer) {
        self.deliver_answer(self.node(node), answer);
        self.settle();
    }

    /// Runs backend work until none is left, unless it is held.
    pub fn settle(&mut self) {
        if self.held {
            return;
        }
        while self.nodes.iter().any(|node| self.run_one(node)) {}
    }

    /// Takes what `session` on `node` was sent so far.
    pub fn take(&mut self, node: usize, session: SessionId) -> Vec<Out> {
        self.node(node)
            .lock()
            .outputs
            .get_mut(&session)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Runs `f` on a node's manager.
    pub fn with_manager<T>(&self, node: usize, f: impl FnOnce(&ChannelManager) -> T) -> T {
        f(&self.node(node).lock().manager)
    }

    /// The backends.
    pub fn backend(&self) -> &Backends {
        &self.backend
    }

    /// Runs a backend future that must complete at once (the memory
    /// backend's do).
    pub fn run<T>(&self, future: impl Future<Output = T>) -> T {
        now_or_never(future)
    }
}

fn now_or_never<T>(future: impl Future<Output = T>) -> T {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the memory backend never waits"),
    }
}

/// A group reader of a toy framing, so tests and the fuzzer reach what the node
/// does with what it reads: `C <epoch> <group>` is a commit, `K <user>
/// <device>` a key package of user `u<user>` (user 2's expired), `G
/// <epoch>` a GroupInfo the server proposes removals from.
#[derive(Debug)]
pub struct ToyReader;

impl crate::e2e::GroupReader for ToyReader {
    fn read_commit(&self, commit: &[u8]) -> Result<crate::e2e::CommitFrame, String> {
        match commit {
            [b'C', epoch, group @ ..] => Ok(crate::e2e::CommitFrame {
                group: group.to_vec(),
                epoch: u64::from(*epoch),
            }),
            _ => Err("not a toy commit".into()),
        }
    }

    fn read_key_package(&self, key_package: &[u8]) -> Result<crate::e2e::KeyPackageFrame, String> {
        match key_package {
            [b'K', user @ 0..=2, device] => Ok(crate::e2e::KeyPackageFrame {
                user: format!("u{user}"),
                device: format!("d{device}"),
                expires: if *user == 2 { 1 } else { u64::MAX },
            }),
            _ => Err("not a toy key package".into()),
        }
    }

    fn external_sender(&self) -> Option<Vec<u8>> {
        Some(b"toy server".to_vec())
    }

    fn propose_remove(
        &self,
        group_info: &[u8],
        user: &str,
    ) -> Result<Option<crate::e2e::RemoveProposals>, String> {
        match group_info {
            [b'G', epoch] => Ok(Some(crate::e2e::RemoveProposals {
                epoch: u64::from(*epoch),
                proposals: vec![user.as_bytes().to_vec()],
            })),
            _ => Err("not a toy GroupInfo".into()),
        }
    }
}
