//! A node's place in the cluster, written once for every cluster backend:
//! which node it is, its control channel, the presence entries it would
//! write back if the broker lost them, and the liveness loop (heartbeats
//! out, silent peers' members removed). A backend implements
//! [`ClusterNode`] for its shared state with what only it knows: how to
//! send on its control channel, which channels it hosts, and how to remove
//! a dead node's members from one channel in one step.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{Control, Received, lock, missed};
use crate::backend::{ClusterKey, Reach, Sink};
use crate::types::{ChannelError, ControlMessage, Member, NodeId, SessionId};

/// What a cluster backend keeps about its own node. `E` is what it needs
/// to write one of this node's presence entries back.
pub(crate) struct NodeState<E> {
    /// The backend's name, for errors.
    backend: &'static str,
    pub(crate) control: Control,
    attached: OnceLock<(NodeId, Arc<dyn Sink>)>,
    /// Set when the broker may have lost this node's entries: the next
    /// refresh writes them back.
    write_back: AtomicBool,
    /// This node's presence entries, by channel and session.
    local: Mutex<HashMap<(String, SessionId), E>>,
}

impl<E: Clone> NodeState<E> {
    pub(crate) fn new(backend: &'static str, key: ClusterKey, heartbeat: Duration) -> Self {
        Self {
            backend,
            control: Control::new(key, heartbeat),
            attached: OnceLock::new(),
            write_back: AtomicBool::new(false),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Attaches the node; false when it was attached already (the first
    /// attachment stays).
    pub(crate) fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) -> bool {
        self.attached.set((node, sink)).is_ok()
    }

    /// The node this backend is attached to.
    pub(crate) fn me(&self) -> Result<NodeId, ChannelError> {
        self.attached.get().map(|(node, _)| *node).ok_or_else(|| {
            ChannelError::unavailable(format!(
                "{}: the backend is not attached to a node",
                self.backend
            ))
        })
    }

    /// The sink this node delivers to, once attached.
    pub(crate) fn sink(&self) -> Option<&Arc<dyn Sink>> {
        self.attached.get().map(|(_, sink)| sink)
    }

    /// Acts on what this node missed while cut off ([`missed`]).
    pub(crate) fn missed(&self, message: ControlMessage) {
        missed(self.sink(), &message);
    }

    /// Remembers one of this node's entries, to write it back if needed.
    pub(crate) fn remember(&self, channel: &str, session: SessionId, entry: E) {
        lock(&self.local).insert((channel.to_owned(), session), entry);
    }

    /// Forgets an entry: its session left.
    pub(crate) fn forget(&self, channel: &str, session: SessionId) {
        lock(&self.local).remove(&(channel.to_owned(), session));
    }

    /// Whether this node has entries in `channel`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn holds(&self, channel: &str) -> bool {
        lock(&self.local).keys().any(|(c, _)| c == channel)
    }

    /// This node's entries for `sessions` of `channel`, those it has.
    pub(crate) fn entries(&self, channel: &str, sessions: &[SessionId]) -> Vec<(SessionId, E)> {
        let local = lock(&self.local);
        sessions
            .iter()
            .filter_map(|s| {
                local
                    .get(&(channel.to_owned(), *s))
                    .map(|e| (*s, e.clone()))
            })
            .collect()
    }

    /// Marks this node's entries for writing back at the next refresh;
    /// true when they were not marked already.
    pub(crate) fn write_back_later(&self) -> bool {
        !self.write_back.swap(true, Ordering::Relaxed)
    }

    /// The broker may have lost this node's entries and publications sent
    /// to it (a reconnect, a stall, a slow consumer): its entries are
    /// written back and its sessions told ([`Sink::interrupted`]).
    pub(crate) fn interrupted(&self) {
        self.write_back.store(true, Ordering::Relaxed);
        if let Some(sink) = self.sink() {
            sink.interrupted();
        }
    }

    /// Of members a broker step removed as expired, those of other nodes
    /// (to announce as gone). This node's own entries ran out while it
    /// could not refresh them (stalled, cut off): its sessions are still
    /// here, so they are written back, not announced.
    pub(crate) fn expired(&self, members: Vec<Member>) -> Vec<Member> {
        let me = self.me().ok();
        let (own, others): (Vec<Member>, Vec<Member>) =
            members.into_iter().partition(|m| Some(m.node) == me);
        if !own.is_empty() {
            self.write_back_later();
        }
        others
    }

    /// Refreshes this node's entries (what the manager holds now, `entries`),
    /// one channel at a time with `each(channel, sessions, write_back)`:
    /// entries the manager no longer has are forgotten first, and when a
    /// write-back was due and some channel failed, it is due again.
    pub(crate) async fn refresh<F, Fut>(
        &self,
        entries: &[(String, SessionId)],
        mut each: F,
    ) -> Result<(), ChannelError>
    where
        F: FnMut(String, Vec<SessionId>, bool) -> Fut,
        Fut: Future<Output = Result<(), ChannelError>>,
    {
        let mut by_channel: BTreeMap<&str, Vec<SessionId>> = BTreeMap::new();
        for (channel, session) in entries {
            by_channel.entry(channel).or_default().push(*session);
        }
        lock(&self.local).retain(|(channel, session), _| {
            by_channel
                .get(channel.as_str())
                .is_some_and(|s| s.contains(session))
        });
        let write_back = self.write_back.swap(false, Ordering::Relaxed);
        let mut result = Ok(());
        for (channel, sessions) in by_channel {
            if let Err(e) = each(channel.to_owned(), sessions, write_back).await {
                result = Err(e);
            }
        }
        if write_back && result.is_err() {
            self.write_back.store(true, Ordering::Relaxed);
        }
        result
    }
}

/// Runs the backend's listening loop on the tokio runtime it was
/// attached in; with no runtime, says so (the node then receives
/// nothing) and returns `None`.
pub(crate) fn spawn_listener(
    backend: &str,
    listen: impl Future<Output = ()> + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => Some(runtime.spawn(listen)),
        Err(_) => {
            tracing::error!(
                backend,
                "a cluster backend needs a tokio runtime: build Channels inside one; \
                 this node receives nothing"
            );
            None
        }
    }
}

/// What the liveness loop needs from a cluster backend's shared state.
pub(crate) trait ClusterNode: Send + Sync + 'static {
    /// What one of this node's entries needs to be written back.
    type Entry: Clone + Send + 'static;

    fn node_state(&self) -> &NodeState<Self::Entry>;

    /// How often this node says it is alive.
    fn heartbeat_every(&self) -> Duration;

    /// Sends a sealed control message to every node.
    fn send_control(&self, wire: String) -> impl Future<Output = Result<(), ChannelError>> + Send;

    /// The channels (not topics) this node hosts participants in.
    fn hosted_channels(&self) -> Vec<String>;

    /// Removes `gone`'s members from `channel` in one step on the broker,
    /// and publishes their `leave` events if the channel has them, so
    /// exactly one node announces each.
    fn reap(
        &self,
        channel: &str,
        gone: NodeId,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send;
}

/// Handles what arrived on the control channel: a message goes to the
/// sink, an answer to a request is sent, and a node that finds it was
/// stalled longer than a peer's death writes its members back.
pub(crate) fn on_control<N: ClusterNode>(
    node: &Arc<N>,
    me: NodeId,
    payload: &[u8],
    sink: &dyn Sink,
) {
    let state = node.node_state();
    match state.control.receive(me, payload, sink) {
        Received::Nothing => {}
        Received::Answer(answer) => {
            let node = node.clone();
            tokio::spawn(async move {
                let _ = node.send_control(answer).await;
            });
        }
        Received::Resumed => {
            tracing::warn!(
                "this node was stalled longer than a peer's death: writing its members back"
            );
            state.interrupted();
        }
    }
}

/// Says this node is alive, and removes the members of nodes that stopped
/// saying so from the channels this node shares with them.
pub(crate) async fn beat<N: ClusterNode>(node: &Arc<N>, me: NodeId) {
    let state = node.node_state();
    let _ = node.send_control(state.control.heartbeat(me)).await;
    for gone in state.control.peers.silent(node.heartbeat_every()) {
        tracing::warn!(node = ?gone, "a node stopped beating; removing its members");
        let node = node.clone();
        tokio::spawn(async move {
            for channel in node.hosted_channels() {
                if let Err(e) = node.reap(&channel, gone).await {
                    tracing::warn!(channel, error = %e, "a dead node's members stay until they expire");
                }
            }
        });
    }
}

/// [`Controller::broadcast`](crate::backend::Controller::broadcast) for a
/// cluster backend.
pub(crate) async fn broadcast<N: ClusterNode>(
    node: &N,
    message: ControlMessage,
) -> Result<(), ChannelError> {
    let state = node.node_state();
    let wire = state.control.message(state.me()?, message);
    node.send_control(wire).await
}

/// [`Controller::request`](crate::backend::Controller::request) for a
/// cluster backend.
pub(crate) async fn request<N: ClusterNode>(
    node: &N,
    message: ControlMessage,
    wait: Duration,
) -> Result<Reach, ChannelError> {
    let state = node.node_state();
    state
        .control
        .request(state.me()?, message, wait, |wire| node.send_control(wire))
        .await
}
