#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
mod backends;
#[cfg(feature = "service")]
mod client;
mod config;
pub mod e2e;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod manager;
// The service counts deliveries, disconnects and interruptions; the core
// alone counts only what its cluster backends refuse.
#[cfg_attr(not(feature = "service"), allow(dead_code))]
mod meters;
mod operation;
pub mod protocol;
pub mod reconnect;
#[cfg(feature = "service")]
mod reconnecting;
#[cfg(feature = "service")]
mod service;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod sim;
mod types;

pub use backend::MemoryBackend;
pub use backends::Backends;
#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
pub use client::{ChannelsClient, ClientError, MAX_BUFFERED_EVENTS};
pub use config::{ChannelsConfig, SlowSubscriber, TopicAccess, TopicRequest, close_codes};
pub use manager::{Action, ChannelManager, CustomCommand, NodeStats, OpId};
pub use operation::{OpResult, Operation};
#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
pub use reconnecting::{COMMAND_TIMEOUT, CONNECT_TIMEOUT, ReconnectingClient};
#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
pub use service::{Channels, ChannelsBuilder, ChannelsHandle, Session};
pub use types::{
    ChannelError, ChannelOptions, ChannelRole, ChannelSummary, ClientInfo, ControlMessage,
    ErrorCode, HistoryPage, HistorySpec, JoinGrant, LeaveReason, Member, NodeId, Payload, Position,
    Publication, PublicationKind, Removal, Roster, SessionId, TOPIC_PREFIX, Target, Welcome,
};
