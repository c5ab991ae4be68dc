//! What the cluster backends (Redis, NATS) share: the control wire format,
//! heartbeat bookkeeping, the node's state and liveness loop (`node`), and
//! small helpers.

mod node;

pub(crate) use node::{
    ClusterNode, NodeState, beat, broadcast, on_control, request, spawn_listener,
};

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend::Sink;
use crate::types::{
    ChannelError, ClientInfo, ControlMessage, LeaveReason, Member, NodeId, Publication,
    PublicationKind,
};

/// What travels on the control channel, inside its signed envelope: a
/// heartbeat (no `msg`) or a control message, with the sending node, when
/// it was sent (ms since the Unix epoch) and a random number that makes
/// it unique.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ControlWire {
    pub(crate) node: NodeId,
    pub(crate) at: u64,
    pub(crate) nonce: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) msg: Option<ControlMessage>,
    /// With `msg`: the sender waits for every node's [`Answer`] to this
    /// number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) req: Option<u64>,
    /// A node's answer to a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) answer: Option<Answer>,
}

/// How many sessions a request's message removed or closed on a node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Answer {
    /// The node that asked.
    pub(crate) to: NodeId,
    /// Its request's number.
    pub(crate) req: u64,
    pub(crate) sessions: u64,
}

/// The signed envelope: the body's JSON text as it was signed, and its
/// HMAC-SHA256 under the cluster key, in hex.
#[derive(Serialize, Deserialize)]
struct Sealed {
    b: String,
    m: String,
}

/// How far a control message's send time may be from this node's clock.
const FRESH: Duration = Duration::from_secs(60);
/// Control messages remembered against replay at most; more within
/// [`FRESH`] are refused (only the key's holders can send them at all).
const MAX_REMEMBERED: usize = 65_536;

/// Why a control message was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a signed envelope, or its signature is wrong: not from a node
    /// holding the cluster key.
    Forged,
    /// Sent outside the freshness window (or the clocks disagree).
    Stale,
    /// Seen before.
    Replayed,
    /// Too many messages within the window to remember.
    Flooded,
}

/// Signs the control messages this node sends and checks those it
/// receives: signature, freshness, replay.
pub(crate) struct ControlSigner {
    key: crate::backend::ClusterKey,
    /// (sent at, node, nonce) of the messages taken within the window, in
    /// the order they came, and the same as a set.
    seen: Mutex<Remembered>,
    /// When a refusal was last logged, so an attacker's flood cannot
    /// flood the log too.
    logged: Mutex<Option<Instant>>,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// (sent at, node, nonce) of the messages taken, in the order they came,
/// and their (node, nonce) as a set.
type Remembered = (VecDeque<(u64, NodeId, u64)>, HashSet<(NodeId, u64)>);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `bytes` as lowercase hex digits.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long the presence store remembers a kicked session and a closed
/// channel, so that a node cut off from the broker while it happened does
/// not write them back when it returns.
pub(crate) const TOMBSTONE_KEPT: Duration = Duration::from_secs(3600);

/// Acts on what a node missed while cut off from the broker (a kick, a
/// ban, a close), as the presence store shows it when the node writes its
/// members back: through its own sink, as if the control message had
/// arrived.
pub(crate) fn missed(sink: Option<&Arc<dyn Sink>>, message: &ControlMessage) {
    tracing::info!(?message, "acting on what this node missed while cut off");
    if let Some(sink) = sink {
        sink.control(message);
    }
}

/// The hex SHA-256 of `parts`, each length-prefixed so that no two lists
/// run together: a bounded name for an idempotency key that shows no user
/// name to whoever reads the broker.
pub(crate) fn digest_hex(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    for part in parts {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    to_hex(&digest.finalize())
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl ControlSigner {
    pub(crate) fn new(key: crate::backend::ClusterKey) -> Self {
        Self {
            key,
            seen: Mutex::new((VecDeque::new(), HashSet::new())),
            logged: Mutex::new(None),
        }
    }

    fn mac(&self) -> HmacSha256 {
        use hmac::KeyInit;
        HmacSha256::new_from_slice(self.key.secret()).expect("HMAC takes keys of any length")
    }

    /// The signed wire form of `body`, sent now, with a fresh nonce.
    pub(crate) fn seal(&self, mut body: ControlWire) -> String {
        use hmac::Mac;
        body.at = unix_ms();
        body.nonce = NodeId::random().0;
        let b = serde_json::to_string(&body).expect("control messages serialise");
        let mut mac = self.mac();
        mac.update(b.as_bytes());
        let m = to_hex(&mac.finalize().into_bytes());
        serde_json::to_string(&Sealed { b, m }).expect("strings serialise")
    }

    /// The control message in `wire`, if it is signed with the cluster
    /// key, fresh and new.
    pub(crate) fn open(&self, wire: &[u8]) -> Result<ControlWire, Refused> {
        use hmac::Mac;
        let sealed: Sealed = serde_json::from_slice(wire).map_err(|_| Refused::Forged)?;
        let tag = from_hex(&sealed.m).ok_or(Refused::Forged)?;
        let mut mac = self.mac();
        mac.update(sealed.b.as_bytes());
        // Constant time: the check tells nothing of how much was right.
        mac.verify_slice(&tag).map_err(|_| Refused::Forged)?;
        let body: ControlWire = serde_json::from_str(&sealed.b).map_err(|_| Refused::Forged)?;
        let now = unix_ms();
        let window = u64::try_from(FRESH.as_millis()).unwrap_or(u64::MAX);
        if body.at.abs_diff(now) > window {
            return Err(Refused::Stale);
        }
        let mut seen = lock(&self.seen);
        let (order, set) = &mut *seen;
        while order
            .front()
            .is_some_and(|(at, _, _)| now.saturating_sub(*at) > window)
        {
            if let Some((_, node, nonce)) = order.pop_front() {
                set.remove(&(node, nonce));
            }
        }
        if set.contains(&(body.node, body.nonce)) {
            return Err(Refused::Replayed);
        }
        if order.len() >= MAX_REMEMBERED {
            return Err(Refused::Flooded);
        }
        order.push_back((body.at, body.node, body.nonce));
        set.insert((body.node, body.nonce));
        Ok(body)
    }

    /// Logs a refused control message, at most once every ten seconds.
    pub(crate) fn refused(&self, why: &Refused) {
        crate::meters::control_refused();
        let mut logged = lock(&self.logged);
        if logged.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
            *logged = Some(Instant::now());
            tracing::warn!(
                ?why,
                "a control message was refused: not signed with this cluster's key, stale or replayed \
                 (is every node given the same cluster key, and do their clocks agree?)"
            );
        }
    }
}

/// The `leave` event for a member the backend removed (expired, or its
/// node stopped beating).
pub(crate) fn leave(member: Member) -> Publication {
    Publication {
        kind: PublicationKind::Leave,
        position: None,
        from: Some(ClientInfo {
            session: member.session,
            user: member.user,
            info: member.info,
        }),
        data: None,
        reason: Some(LeaveReason::Expired),
        welcome: None,
    }
}

/// The control channel as a node sees it: signing, the peers it hears
/// and the requests it waits on.
pub(crate) struct Control {
    signer: ControlSigner,
    /// Other nodes alive, by their heartbeats.
    pub(crate) peers: Peers,
    requests: Mutex<HashMap<u64, Tally>>,
    heartbeat: Duration,
}

/// What a node must do about what arrived on the control channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Nothing more.
    Nothing,
    /// Publish this answer to a request.
    Answer(String),
    /// Its own heartbeat came back after a silence longer than a peer's
    /// that would be taken for death: this node was stalled (paused, cut
    /// off, its broker hung). The peers may have taken it for dead and
    /// removed its members, and it may have missed publications: it writes
    /// its members back and tells them ([`Sink::interrupted`]).
    Resumed,
}

/// What a request has heard so far.
struct Tally {
    answered: HashSet<NodeId>,
    sessions: usize,
    heard: Arc<tokio::sync::Notify>,
}

impl Control {
    pub(crate) fn new(key: crate::backend::ClusterKey, heartbeat: Duration) -> Self {
        Self {
            signer: ControlSigner::new(key),
            peers: Peers::default(),
            requests: Mutex::new(HashMap::new()),
            heartbeat,
        }
    }

    /// The wire form of this node's heartbeat.
    pub(crate) fn heartbeat(&self, me: NodeId) -> String {
        self.signer.seal(ControlWire {
            node: me,
            ..ControlWire::default()
        })
    }

    /// The wire form of `message` from this node, no answers wanted.
    pub(crate) fn message(&self, me: NodeId, message: ControlMessage) -> String {
        self.signer.seal(ControlWire {
            node: me,
            msg: Some(message),
            ..ControlWire::default()
        })
    }

    /// Handles what arrived on the control channel: a message goes to the
    /// sink, a heartbeat to the peers, an answer to its request; says what
    /// the node must do next.
    pub(crate) fn receive(&self, me: NodeId, payload: &[u8], sink: &dyn Sink) -> Received {
        let wire = match self.signer.open(payload) {
            Ok(wire) => wire,
            Err(why) => {
                self.signer.refused(&why);
                return Received::Nothing;
            }
        };
        if let Some(answer) = wire.answer {
            if answer.to == me {
                self.answered(answer.req, wire.node, answer.sessions);
            }
            return Received::Nothing;
        }
        let Some(message) = wire.msg else {
            if wire.node != me {
                self.peers.heard(wire.node);
                return Received::Nothing;
            }
            return match self.peers.heard_myself(silence(self.heartbeat)) {
                true => Received::Resumed,
                false => Received::Nothing,
            };
        };
        let sessions = sink.control(&message);
        let Some(req) = wire.req else {
            return Received::Nothing;
        };
        Received::Answer(self.signer.seal(ControlWire {
            node: me,
            answer: Some(Answer {
                to: wire.node,
                req,
                sessions: sessions as u64,
            }),
            ..ControlWire::default()
        }))
    }

    fn answered(&self, req: u64, from: NodeId, sessions: u64) {
        let mut requests = lock(&self.requests);
        if let Some(tally) = requests.get_mut(&req)
            && tally.answered.insert(from)
        {
            tally.sessions += usize::try_from(sessions).unwrap_or(usize::MAX);
            tally.heard.notify_one();
        }
    }

    /// Sends `message` through `publish` (given its signed wire) and
    /// waits, up to `wait`, for an answer from this node and every peer
    /// alive now.
    pub(crate) async fn request<F, Fut>(
        &self,
        me: NodeId,
        message: ControlMessage,
        wait: Duration,
        publish: F,
    ) -> Result<crate::backend::Reach, ChannelError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), ChannelError>>,
    {
        let req = NodeId::random().0;
        let heard = Arc::new(tokio::sync::Notify::new());
        lock(&self.requests).insert(
            req,
            Tally {
                answered: HashSet::new(),
                sessions: 0,
                heard: heard.clone(),
            },
        );
        let asked = self.peers.known().len() + 1;
        let wire = self.signer.seal(ControlWire {
            node: me,
            msg: Some(message),
            req: Some(req),
            ..ControlWire::default()
        });
        let deadline = tokio::time::Instant::now() + wait;
        let published = publish(wire).await;
        let outcome = async {
            published?;
            loop {
                let done = lock(&self.requests)
                    .get(&req)
                    .is_some_and(|tally| tally.answered.len() >= asked);
                if done
                    || tokio::time::timeout_at(deadline, heard.notified())
                        .await
                        .is_err()
                {
                    return Ok(());
                }
            }
        }
        .await;
        let tally = lock(&self.requests).remove(&req);
        outcome.map(|()| crate::backend::Reach {
            sessions: tally.as_ref().map_or(0, |t| t.sessions),
            answered: tally.map_or(0, |t| t.answered.len()),
            asked,
        })
    }
}

/// Other nodes' last heartbeats, and this node's own as they came back
/// through the broker: the evidence that this node hears the cluster.
#[derive(Default)]
pub(crate) struct Peers {
    seen: Mutex<HashMap<NodeId, Instant>>,
    /// When this node's last few heartbeats came back, oldest first.
    own: Mutex<VecDeque<Instant>>,
}

/// How long a node may be silent before it is taken for dead: three
/// heartbeats and a half.
fn silence(heartbeat: Duration) -> Duration {
    heartbeat * 3 + heartbeat / 2
}

/// Own heartbeats remembered; a peer is taken for dead only after this
/// node heard this many of its own since the peer's last.
const OWN_BEATS: usize = 3;

impl Peers {
    pub(crate) fn heard(&self, node: NodeId) {
        self.heard_at(node, Instant::now());
    }

    fn heard_at(&self, node: NodeId, at: Instant) {
        lock(&self.seen).insert(node, at);
    }

    /// This node's own heartbeat came back through the broker; whether
    /// the one before came back longer than `silence` ago (this node was
    /// stalled).
    pub(crate) fn heard_myself(&self, silence: Duration) -> bool {
        self.heard_myself_at(Instant::now(), silence)
    }

    fn heard_myself_at(&self, at: Instant, silence: Duration) -> bool {
        let mut own = lock(&self.own);
        let stalled = own
            .back()
            .is_some_and(|last| at.saturating_duration_since(*last) > silence);
        own.push_back(at);
        if own.len() > OWN_BEATS {
            own.pop_front();
        }
        stalled
    }

    /// The nodes heard from and not yet taken for dead.
    pub(crate) fn known(&self) -> Vec<NodeId> {
        lock(&self.seen).keys().copied().collect()
    }

    /// The nodes silent for three heartbeats and a half, forgotten from
    /// now on (a node that comes back is heard again).
    pub(crate) fn silent(&self, heartbeat: Duration) -> Vec<NodeId> {
        self.silent_at(heartbeat, Instant::now())
    }

    /// Silence is judged against this node's own heartbeats: a peer is
    /// dead only if this node heard its own last three come back through
    /// the broker after the peer's last, the latest of them within two
    /// beats. A node that was itself stalled (paused, cut off, its broker
    /// hung) hears none of its own meanwhile, so it takes nobody for dead
    /// for the silence it caused; once it hears the cluster again, live
    /// peers are heard too before three of its own beats come back.
    fn silent_at(&self, heartbeat: Duration, now: Instant) -> Vec<NodeId> {
        let limit = silence(heartbeat);
        let own = lock(&self.own);
        let hearing = own.len() == OWN_BEATS
            && own
                .back()
                .is_some_and(|last| now.saturating_duration_since(*last) <= heartbeat * 2);
        if !hearing {
            return Vec::new();
        }
        let oldest_own = own.front().copied();
        drop(own);
        let mut seen = lock(&self.seen);
        let dead: Vec<NodeId> = seen
            .iter()
            .filter(|(_, at)| {
                now.saturating_duration_since(**at) > limit
                    && oldest_own.is_some_and(|first| first > **at)
            })
            .map(|(node, _)| *node)
            .collect();
        for node in &dead {
            seen.remove(node);
        }
        dead
    }
}

/// The builder methods both cluster configurations have.
macro_rules! shared_settings {
    ($config:ident) => {
        impl $config {
            /// The prefix of every key, channel, subject, stream or bucket
            /// name this backend uses, so deployments can share a broker.
            pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
                self.prefix = prefix.into();
                self
            }

            /// How often this node says it is alive.
            pub fn heartbeat(mut self, every: std::time::Duration) -> Self {
                self.heartbeat = every;
                self
            }

            /// How long `connect` keeps trying.
            pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.connect_timeout = timeout;
                self
            }
        }
    };
}
pub(crate) use shared_settings;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `url` without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds, at least one.
pub(crate) fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX / 4)
        .max(1)
}

/// A fresh history epoch.
pub(crate) fn new_epoch() -> String {
    format!("{:08x}", NodeId::random().0 & 0xffff_ffff)
}

/// How a connection attempt failed.
pub(crate) enum Attempt {
    /// Worth trying again (unreachable, no answer).
    Retry(String),
    /// Not: trying again cannot help (credentials refused); the message
    /// names the broker without its password.
    Fatal(String),
}

impl From<String> for Attempt {
    fn from(error: String) -> Self {
        Self::Retry(error)
    }
}

/// Retries `attempt` with backoff (100 ms doubling to 5 s, each failure
/// logged) until `timeout` has passed, the last try at the deadline, then
/// fails with the last error; a fatal failure ends it at once with
/// [`ErrorCode::BadRequest`](crate::ErrorCode::BadRequest).
pub(crate) async fn with_backoff<T, F, Fut, E>(
    what: &str,
    url: &str,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, ChannelError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<Attempt>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match attempt().await.map_err(Into::into) {
            Ok(value) => return Ok(value),
            Err(Attempt::Fatal(error)) => {
                return Err(ChannelError::new(crate::ErrorCode::BadRequest, error));
            }
            Err(Attempt::Retry(error)) => error,
        };
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(ChannelError::unavailable(format!(
                "{what} at {} unreachable after {attempts} attempts in {elapsed:.1?}: {error}",
                redact(url),
            )));
        }
        // The last pause ends at the deadline, for one more try there.
        let pause = delay.min(timeout - elapsed);
        tracing::warn!(url = %redact(url), %error, retry_in = ?pause, "{what} unreachable; retrying");
        tokio::time::sleep(pause).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(key: &str) -> ControlSigner {
        ControlSigner::new(crate::backend::ClusterKey::new(key).unwrap())
    }

    const KEY: &str = "a cluster key of at least 32 bytes!";

    fn wire_of(message: ControlMessage) -> ControlWire {
        ControlWire {
            node: NodeId(1),
            msg: Some(message),
            ..ControlWire::default()
        }
    }

    fn kick() -> ControlMessage {
        ControlMessage::Remove {
            channel: "room".into(),
            target: crate::Target::User("bob".into()),
            reason: crate::Removal::Kicked,
        }
    }

    // ROBUSTNESS 107: a control message is taken only when signed with the
    // cluster key, sent within the last minute and not seen before: anyone
    // who can publish on the broker cannot forge, alter or replay one.
    #[test]
    fn control_messages_are_signed_fresh_and_new() {
        let node = signer(KEY);
        let wire = node.seal(wire_of(kick()));
        let opened = node.open(wire.as_bytes()).unwrap();
        assert_eq!(opened.msg, Some(kick()));
        assert_eq!(node.open(wire.as_bytes()).unwrap_err(), Refused::Replayed);

        // Unsigned, as before the key (what `redis-cli PUBLISH` sends).
        let plain = serde_json::json!({"node": 1, "msg": {"type": "role_changed", "channel": "room", "user": "mallory", "role": "owner"}});
        assert_eq!(
            node.open(plain.to_string().as_bytes()).unwrap_err(),
            Refused::Forged
        );
        // Signed with another key.
        let other = signer("another cluster key of 32 bytes!!!").seal(wire_of(kick()));
        assert_eq!(node.open(other.as_bytes()).unwrap_err(), Refused::Forged);
        // Altered after signing: the body, or the tag.
        let fresh = node.seal(wire_of(kick()));
        let altered = fresh.replace("bob", "ann");
        assert_eq!(node.open(altered.as_bytes()).unwrap_err(), Refused::Forged);
        let mut sealed: serde_json::Value = serde_json::from_str(&fresh).unwrap();
        sealed["m"] = "00".repeat(32).into();
        assert_eq!(
            node.open(sealed.to_string().as_bytes()).unwrap_err(),
            Refused::Forged
        );
        assert_eq!(node.open(b"not json").unwrap_err(), Refused::Forged);

        // Signed, but sent two minutes ago (a recording replayed later).
        let old = ControlWire {
            at: unix_ms() - 120_000,
            nonce: 7,
            ..wire_of(kick())
        };
        let b = serde_json::to_string(&old).unwrap();
        let mut mac = node.mac();
        hmac::Mac::update(&mut mac, b.as_bytes());
        let m = to_hex(&hmac::Mac::finalize(mac).into_bytes());
        let stale = serde_json::json!({ "b": b, "m": m }).to_string();
        assert_eq!(node.open(stale.as_bytes()).unwrap_err(), Refused::Stale);
    }

    // ROBUSTNESS 117: a node that was itself stalled (SIGSTOP, its broker
    // hung, cut off) hears nobody meanwhile; it must not take every peer
    // for dead and wipe their members from presence. A peer is dead only
    // when this node heard three of its own heartbeats come back after the
    // peer's last.
    #[test]
    fn only_a_node_that_hears_itself_takes_a_silent_peer_for_dead() {
        let beat = Duration::from_secs(1);
        let t0 = Instant::now();
        let at = |secs: f64| t0 + Duration::from_secs_f64(secs);
        // Every node beats; then this node stalls for eight seconds.
        let peers = Peers::default();
        for second in 0..=3 {
            peers.heard_at(NodeId(2), at(f64::from(second)));
            peers.heard_myself_at(at(f64::from(second)), silence(beat));
        }
        assert!(
            peers.silent_at(beat, at(11.0)).is_empty(),
            "stalled, it heard itself last at 3 s"
        );
        // It resumes: its own first beat comes back, and the peer's.
        assert!(
            peers.heard_myself_at(at(11.1), silence(beat)),
            "it knows it was stalled"
        );
        assert!(
            peers.silent_at(beat, at(11.2)).is_empty(),
            "one own beat is no evidence"
        );
        peers.heard_at(NodeId(2), at(11.3));
        peers.heard_myself_at(at(12.1), silence(beat));
        peers.heard_myself_at(at(13.1), silence(beat));
        assert!(
            peers.silent_at(beat, at(13.2)).is_empty(),
            "the peer is alive"
        );

        // The peer dies (kill -9) while this node hears itself: taken for
        // dead three and a half beats after its last.
        assert!(!peers.heard_myself_at(at(14.0), silence(beat)));
        assert!(peers.silent_at(beat, at(14.0)).is_empty(), "silent 2.7 s");
        for second in 15..=18 {
            peers.heard_myself_at(at(f64::from(second)), silence(beat));
        }
        assert_eq!(peers.silent_at(beat, at(18.0)), [NodeId(2)]);
        assert!(peers.known().is_empty());
    }

    #[test]
    fn cluster_keys_are_long_and_hidden() {
        assert!(crate::backend::ClusterKey::new("short").is_err());
        let key = crate::backend::ClusterKey::new(KEY).unwrap();
        assert!(!format!("{key:?}").contains("cluster key"));
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:secret@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redact("nats://a:b@n1:4222"), "nats://***@n1:4222");
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
    }

    #[tokio::test]
    async fn an_unreachable_service_is_a_clear_error_after_retries() {
        let mut tries = 0;
        let started = Instant::now();
        let error = with_backoff(
            "Redis",
            "redis://u:pw@h",
            Duration::from_millis(1500),
            || {
                tries += 1;
                async { Err::<(), _>("refused".to_owned()) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(error.code, crate::ErrorCode::Unavailable);
        assert!(tries >= 3, "{tries}");
        // It keeps trying for the whole timeout (it gave up at 26.7 s of
        // 30 once), the last try at the deadline.
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert!(error.message.contains("refused"), "{error}");
        assert!(!error.message.contains("pw"), "{error}");
    }
}
