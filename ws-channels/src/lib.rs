//! Channels over WebSocket: sessions create, join and leave named
//! channels, publish to them, read who is there, recover what they missed,
//! and subscribe to server-event topics; owners kick, ban and hand out
//! roles. Commands and events are JSON envelopes; every shape is in
//! `PROTOCOL.md` next to this crate.
//!
//! The crate has three layers:
//!
//! - [`ChannelManager`]: the state machine of one node, sans-IO like
//!   `ws-core`'s connection: commands, deliveries, control messages and
//!   time in, [`Action`]s out.
//! - [`backend`]: the traits a cluster implements ([`Broker`](backend::Broker),
//!   [`PresenceStore`](backend::PresenceStore),
//!   [`Controller`](backend::Controller)), the in-process
//!   [`MemoryBackend`], the default, with which one node needs nothing
//!   else, and two cluster backends: Redis (feature `redis`) and NATS
//!   with JetStream (feature `nats`), both on tokio.
//!   [`Backend::connect`] takes a URL: `memory`, `redis://...`,
//!   `nats://...`.
//! - [`Channels`]: the glue that serves the manager on any `ws-async`
//!   server route and carries out its actions, with [`ChannelsHandle`]
//!   for code outside connections.
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
mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod manager;
mod meters;
mod protocol;
mod service;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod sim;
mod types;

pub use backend::{Backend, MemoryBackend, OpResult, Operation};
pub use config::{ChannelsConfig, SlowSubscriber, TopicAccess, TopicRequest, close_codes};
pub use manager::{Action, ChannelManager, CustomCommand, NodeStats, OpId, TOPIC_PREFIX};
pub use service::{Channels, ChannelsBuilder, ChannelsHandle, Session};
pub use types::{
    ChannelError, ChannelOptions, ChannelSummary, ClientInfo, ControlMessage, ErrorCode,
    HistoryPage, HistorySpec, JoinGrant, LeaveReason, Member, NodeId, Payload, Position,
    Publication, PublicationKind, Removal, Role, Roster, SessionId, Target,
};
