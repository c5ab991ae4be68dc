//! What a node needs from the rest of the cluster: a [`Broker`]
//! (publications and history), a [`ChannelStore`] ([`Presence`] and the
//! [`ChannelDirectory`]) and a [`Controller`] (control messages to every
//! node), and the in-process default that implements them all.
//!
//! A node runs one [`ChannelManager`](crate::ChannelManager); the manager
//! asks for backend work with [`Operation`](crate::Operation)s and the
//! glue ([`Channels`](crate::Channels)) carries each out with
//! [`Backends::execute`](crate::Backends::execute). Deliveries come the other way, through the
//! [`Sink`] each backend is attached to.
//!
//! # What a backend must guarantee
//!
//! - **Order per channel.** Every node receives a channel's publications in
//!   the order their offsets were assigned, and never the same publication
//!   twice. Different channels need not be ordered with each other.
//! - **Delivery is at most once; history is the record.** A publication a
//!   node misses (a broker reconnect, a node's subscription starting late)
//!   is not redelivered; clients recover it from history by position. So a
//!   broker must append to history and assign the offset in the same step
//!   as it publishes, and must start a new epoch whenever history may have
//!   lost entries (a restart without persistence), so that no recovery
//!   silently skips a gap.
//! - **Interest-based fan-out.** A node is subscribed to a channel's topic
//!   only while it hosts participants there; publications reach only
//!   subscribed nodes.
//! - **Atomic joins.** [`Presence::join`] checks the channel exists,
//!   the user is not banned and there is room, and adds the member, in one
//!   step, so two nodes admitting the last two places at once cannot both
//!   succeed, and a ban and a join racing on two nodes leave the user out.
//! - **Expiry.** Presence entries carry a TTL and the node that owns them
//!   refreshes them; a crashed node's entries disappear when their TTL
//!   runs out.
//! - **Control reaches every node.** A [`ControlMessage`] broadcast reaches
//!   every node's sink, the sender's included, before (in-process) or
//!   soon after (cluster) `broadcast` returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::types::{
    ChannelError, ChannelOptions, ChannelRole, ChannelSummary, ControlMessage, HistoryPage,
    HistorySpec, JoinGrant, Member, NodeId, Position, Publication, Roster, SessionId, Target,
};

pub mod admission;
#[cfg(any(feature = "redis", feature = "nats"))]
mod cluster;
pub mod key_packages;
pub mod memory;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

pub use key_packages::{
    ClaimedKeyPackage, DeviceKeyPackages, KeyPackageDirectory, KeyPackageLimits, KeyPackageUpload,
    StoredKeyPackage, UserKeyPackages,
};
pub use memory::MemoryBackend;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::{NatsBackend, NatsConfig};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisBackend, RedisConfig};

/// A boxed future, so the traits can be used as `dyn` objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How long a publish's idempotency key is remembered: a publish retried
/// with the same key within this time is not published again
/// ([`Broker::publish_once`]).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(300);

/// What a publish did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// Where the publication is in the channel's history; `None` for a
    /// channel without history. For a duplicate, the first publication's.
    pub position: Option<Position>,
    /// Nothing was published: an earlier publish with the same
    /// idempotency key was.
    pub duplicate: bool,
}

/// Where a backend delivers what reaches this node.
pub trait Sink: Send + Sync + 'static {
    /// A publication on a channel (or topic) this node subscribed to.
    /// Called in offset order per channel.
    fn publication(&self, channel: &str, publication: &Publication);

    /// A control message for every node; how many of this node's
    /// sessions it removed or closed (a kick's, a disconnect's), for
    /// [`Controller::request`]; 0 for the others.
    fn control(&self, message: &ControlMessage) -> usize;

    /// The backend lost its connection to the broker and has it again,
    /// resubscribed: publications sent meanwhile may have been missed, and
    /// a broker that restarted without persistence may have lost this
    /// node's presence entries. The default does nothing.
    fn interrupted(&self) {}
}

/// Moves publications between nodes and keeps channel history.
pub trait Broker: Send + Sync + 'static {
    /// Deliver this node's subscriptions to `sink` from now on.
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>);

    /// Starts delivering `channel`'s publications to `node`. The manager
    /// subscribes when the first local participant joins, and reads
    /// history for a recovery only after this returns, so nothing falls
    /// between the two.
    fn subscribe<'a>(
        &'a self,
        node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// Stops delivering `channel` to `node`: its last local participant
    /// left.
    fn unsubscribe<'a>(
        &'a self,
        node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// Publishes to every subscribed node. With `history`, appends to the
    /// channel's history first and returns the publication's position.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: Option<HistorySpec>,
    ) -> BoxFuture<'a, Result<Option<Position>, ChannelError>>;

    /// Publishes like [`publish`](Self::publish) with history, once per
    /// `key`: when a publication with the same `key` was made on `channel`
    /// within [`IDEMPOTENCY_WINDOW`] (in the channel's current epoch),
    /// publishes nothing and returns the first one's position,
    /// [`Published::duplicate`]. The check and the publish are one step,
    /// so publishes racing with one key make one publication. `key` is
    /// already scoped to the publisher by the caller.
    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: HistorySpec,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Published, ChannelError>>;

    /// Publishes an end-to-end group's commit like
    /// [`publish`](Self::publish) with history, only when the channel's
    /// group is at `epoch`, and moves the group to `epoch + 1` in the same
    /// step: of commits racing for one epoch, exactly one is published.
    /// Otherwise fails with [`ErrorCode::Conflict`](crate::ErrorCode::Conflict)
    /// ([`group_conflict`]). A channel's group starts at epoch 0 when the
    /// channel is created. When the broker no longer knows the epoch (it
    /// lost the channel's history, or restored the channel after losing
    /// it), the next commit, at whatever epoch, sets it again.
    ///
    /// With `group_info` (the GroupInfo of the epoch the commit starts,
    /// base64), keeps it as the channel's for [`group_info`](Self::group_info),
    /// unless a newer one is kept.
    fn publish_commit<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: HistorySpec,
        epoch: u64,
        group_info: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Position, ChannelError>>;

    /// The newest GroupInfo a commit on `channel` came with, and the epoch
    /// it is of: what the server proposes removals from. `None` when no
    /// commit came with one (or the channel is gone).
    fn group_info<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, String)>, ChannelError>>;

    /// The publications after `since` (at most `limit`), or, without
    /// `since`, only the newest position: what a joining session needs to
    /// recover a gap or to know where it starts.
    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>>;

    /// The newest `limit` publications the history keeps (fewer when it
    /// holds fewer), oldest first, and the newest position; `complete`
    /// says whether they are all it keeps. For a session that wants to see
    /// what was said before it came.
    fn recent<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>>;

    /// Forgets a closed channel's history.
    fn remove_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>>;
}

/// Who is in a channel: members join (admitted atomically against the
/// directory's bans and the channel's capacity), leave, are kicked, are
/// refreshed by the node that holds them and expire when it stops.
/// Implemented together with [`ChannelDirectory`] on one state; see
/// [`ChannelStore`].
pub trait Presence: Send + Sync + 'static {
    /// Adds `member` (its `role` is ignored: the store's role for the user
    /// is granted) atomically against existence, bans and capacity. Joining
    /// again with a session already present succeeds and refreshes it.
    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: Member,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>>;

    /// Removes a session. A channel with no members left is removed.
    fn leave<'a>(
        &'a self,
        channel: &'a str,
        session: SessionId,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// Extends the TTL of `node`'s entries.
    fn refresh<'a>(
        &'a self,
        node: NodeId,
        entries: &'a [(String, SessionId)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// Up to `limit` members, oldest first, and the total.
    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Roster, ChannelError>>;

    /// Removes the target's members; how many were removed.
    fn kick<'a>(
        &'a self,
        channel: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<usize, ChannelError>>;
}

/// Which channels exist and the standing of users in them: creation and
/// deletion, roles and bans. Implemented together with [`Presence`] on
/// one state; see [`ChannelStore`].
pub trait ChannelDirectory: Send + Sync + 'static {
    /// Creates a channel with `owner` as its first member, or fails with
    /// [`ErrorCode::AlreadyExists`](crate::ErrorCode::AlreadyExists), or
    /// [`ErrorCode::Limit`](crate::ErrorCode::Limit) past `limits`: the
    /// channels in all, and those the owner's user created that still
    /// exist.
    fn create<'a>(
        &'a self,
        channel: &'a str,
        options: ChannelOptions,
        owner: Member,
        ttl: Duration,
        limits: CreateLimits,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>>;

    /// Removes a channel, its members, roles and bans.
    fn delete<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// One channel, if it exists.
    fn channel<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<ChannelSummary>, ChannelError>>;

    /// Up to `limit` channels, by name.
    fn channels(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ChannelSummary>, ChannelError>>;

    /// Bans `user` (for `duration`, or until unbanned) and removes its
    /// members. Joins check bans, so a ban outlives reconnects.
    fn ban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        duration: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// Lifts a ban; lifting none (or in a channel that does not exist)
    /// fails with [`ErrorCode::NotFound`](crate::ErrorCode::NotFound).
    fn unban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// Gives `user` `role` in the channel, now and when it joins again.
    fn set_role<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        role: &'a ChannelRole,
    ) -> BoxFuture<'a, Result<(), ChannelError>>;

    /// `user`'s role in the channel (participant unless given another)
    /// and whether it is banned, as the store has them now; a channel
    /// that does not exist is [`ErrorCode::NotFound`](crate::ErrorCode::NotFound).
    /// Nodes check a role change or a ban they are told of against it
    /// before acting on it.
    fn standing<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Standing, ChannelError>>;
}

/// Presence and the channel directory on one state, as a node needs them:
/// a join is checked against bans and capacity and a ban removes members
/// in one step, so the two halves cannot live apart. Implemented for every
/// type that implements both.
pub trait ChannelStore: Presence + ChannelDirectory {}

impl<T: Presence + ChannelDirectory + ?Sized> ChannelStore for T {}

/// A user's standing in a channel ([`ChannelDirectory::standing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Its role.
    pub role: ChannelRole,
    /// Whether it is banned now.
    pub banned: bool,
}

/// Sends control messages to every node.
pub trait Controller: Send + Sync + 'static {
    /// Deliver control messages to `sink` from now on.
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>);

    /// Sends `message` to every attached node, this one included.
    fn broadcast(&self, message: ControlMessage) -> BoxFuture<'_, Result<(), ChannelError>>;

    /// Sends `message` to every node, this one included, and counts the
    /// sessions it removed or closed there, waiting up to `wait` for the
    /// nodes this one knows to be alive to answer.
    fn request(
        &self,
        message: ControlMessage,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Reach, ChannelError>>;
}

/// What a [`Controller::request`] reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reach {
    /// Sessions removed or closed, on every node that answered.
    pub sessions: usize,
    /// Nodes that answered, this one included.
    pub answered: usize,
    /// Nodes that were asked: this one and those alive by their
    /// heartbeats.
    pub asked: usize,
}

impl Reach {
    /// Whether every node asked answered.
    pub fn complete(&self) -> bool {
        self.answered >= self.asked
    }

    /// `Ok` when it reached a session; `not_found` when every node said
    /// it had none; `unavailable` when none was found but some nodes did
    /// not answer.
    pub fn found(self, what: &str) -> Result<Self, ChannelError> {
        match (self.sessions, self.complete()) {
            (0, true) => Err(ChannelError::new(
                crate::ErrorCode::NotFound,
                format!("no session of {what} on any node"),
            )),
            (0, false) => Err(ChannelError::unavailable(format!(
                "no session of {what} on the {} nodes that answered; {} did not",
                self.answered,
                self.asked - self.answered
            ))),
            _ => Ok(self),
        }
    }
}

/// How long a kick or a disconnect waits for the nodes to say whom they
/// removed.
pub const REQUEST_WAIT: Duration = Duration::from_secs(2);

/// The error of a commit for an epoch the channel's group is not at:
/// its author takes in the commit that won and commits again on top.
pub fn group_conflict(channel: &str, at: u64, epoch: u64) -> ChannelError {
    ChannelError::new(
        crate::ErrorCode::Conflict,
        format!("the group of {channel:?} is at epoch {at}, not {epoch}"),
    )
}

/// The error of lifting a ban that is not there.
pub(crate) fn not_banned(channel: &str, user: &str) -> ChannelError {
    ChannelError::new(
        crate::ErrorCode::NotFound,
        format!("{user:?} is not banned from {channel:?}"),
    )
}

/// The secret every node of a cluster shares: control messages (kicks,
/// bans, role changes, disconnects, heartbeats) are signed with it
/// (HMAC-SHA256) and each node takes only those that carry a valid
/// signature, were sent within the last minute (nodes' clocks must agree
/// that closely) and were not seen before. Anyone who can publish on the
/// broker but lacks the key cannot forge or replay one. At least 32 bytes;
/// `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterKey(Arc<[u8]>);

impl ClusterKey {
    /// A key from `secret` (32 bytes or more, for example 32 random bytes
    /// or a long random string), or [`ErrorCode::BadRequest`](crate::ErrorCode::BadRequest).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ChannelError> {
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(ChannelError::new(
                crate::ErrorCode::BadRequest,
                "a cluster key needs at least 32 bytes",
            ));
        }
        Ok(Self(secret.into()))
    }

    /// The secret, for deriving the keys of other uses from it with a key
    /// derivation function that names each use (HKDF with its own `info`,
    /// as `ws_crypto::mls::DeliveryService::from_secret` does), so that
    /// one secret shared by the nodes serves them all without one use
    /// weakening another.
    pub fn secret(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// What a [`ChannelDirectory::create`] may not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateLimits {
    /// Channels in all.
    pub max_channels: usize,
    /// Channels one user created that still exist (a channel's creator is
    /// its first owner; anonymous creators are not counted).
    pub max_per_user: usize,
}

/// The error of a create past [`CreateLimits::max_per_user`].
pub(crate) fn too_many_owned(max: usize) -> ChannelError {
    ChannelError::new(
        crate::ErrorCode::Limit,
        format!("a user may have created at most {max} channels that still exist"),
    )
}
