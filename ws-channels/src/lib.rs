//! Channels over WebSocket: sessions create, join and leave named
//! channels, publish to them, read who is there, recover what they missed,
//! and subscribe to server-event topics; owners kick, ban and hand out
//! roles. Commands and events are JSON envelopes; every shape is in
//! `PROTOCOL.md` next to this crate.
//!
//! The crate has two halves. The sans-IO core needs ws-core alone, no
//! runtime and no ws-async (build it with `default-features = false`):
//!
//! - [`ChannelManager`]: the state machine of one node, sans-IO like
//!   `ws-core`'s connection: commands, deliveries, control messages and
//!   time in, [`Action`]s out; backend work as [`Operation`]s, answered
//!   with [`OpResult`]s.
//! - [`backend`]: the traits a cluster implements ([`Broker`](backend::Broker),
//!   [`PresenceStore`](backend::PresenceStore),
//!   [`Controller`](backend::Controller)) and the in-process
//!   [`MemoryBackend`], the default, with which one node needs nothing
//!   else; [`Backends`] holds a node's three and carries an [`Operation`]
//!   out on them.
//!
//! On top of it, the IO:
//!
//! - two cluster backends on tokio: Redis (feature `redis`) and NATS with
//!   JetStream (feature `nats`). [`Backends::connect`] takes a URL:
//!   `memory`, `redis://...`, `nats://...`.
//! - `Channels` (feature `service`, on by default): the glue that serves
//!   the manager on any `ws-async` server route and carries out its
//!   actions, with `ChannelsHandle` for code outside connections.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use ws_channels::{Channels, ChannelsConfig};
//!
//! let channels = Channels::new(ChannelsConfig {
//!     allow_anonymous: true,
//!     ..ChannelsConfig::default()
//! });
//! // With ws-tokio:
//! // let server = ws_tokio::server().route("/channels", channels.endpoint()).build();
//! // server.serve(ws_tokio::bind("127.0.0.1:9001").await?).await
//! # let _ = channels; Ok(()) }
//! ```
//!
//! Every limit is on by default ([`ChannelsConfig`]); a command past one is
//! answered with the error code `limit`, and a session that keeps sending
//! refused commands is closed with 1008.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod backends;
mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod manager;
// The service counts deliveries, disconnects and interruptions; the core
// alone counts only what its cluster backends refuse.
#[cfg_attr(not(feature = "service"), allow(dead_code))]
mod meters;
mod operation;
mod protocol;
#[cfg(feature = "service")]
mod service;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod sim;
mod types;

pub use backend::MemoryBackend;
pub use backends::Backends;
pub use config::{ChannelsConfig, SlowSubscriber, TopicAccess, TopicRequest, close_codes};
pub use manager::{Action, ChannelManager, CustomCommand, NodeStats, OpId};
pub use operation::{OpResult, Operation};
#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
pub use service::{Channels, ChannelsBuilder, ChannelsHandle, Session};
pub use types::{
    ChannelError, ChannelOptions, ChannelSummary, ClientInfo, ControlMessage, ErrorCode,
    HistoryPage, HistorySpec, JoinGrant, LeaveReason, Member, NodeId, Payload, Position,
    Publication, PublicationKind, Removal, Role, Roster, SessionId, TOPIC_PREFIX, Target,
};
