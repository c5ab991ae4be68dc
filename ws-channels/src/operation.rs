//! What the manager asks of its backends ([`Operation`]) and how each
//! turned out ([`OpResult`]): the one interface between the state machine
//! and the IO that carries its work out ([`Backends::execute`](crate::Backends::execute)
//! or your own driver).

use std::time::Duration;

use serde_json::Value;

// The traits each operation names in its docs.
use crate::backend::{
    ClaimedKeyPackage, CreateLimits, DeviceKeyPackages, KeyPackageLimits, KeyPackageUpload,
    Published,
};
use crate::types::{
    ChannelError, ChannelOptions, ChannelRole, HistoryPage, HistorySpec, JoinGrant, Member,
    Position, Publication, Roster, SessionId, Target,
};
#[cfg(doc)]
use crate::{
    backend::{Broker, ChannelDirectory, Controller, KeyPackageDirectory, Presence},
    types::ControlMessage,
};

/// Backend work the manager asks for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Operation {
    /// [`ChannelDirectory::create`].
    Create {
        /// The channel.
        channel: String,
        /// Its settings.
        options: ChannelOptions,
        /// The creating session, as owner.
        owner: Member,
        /// Presence TTL.
        ttl: Duration,
        /// Channels in all, and per user, at most.
        limits: CreateLimits,
    },
    /// [`Presence::join`].
    Join {
        /// The channel.
        channel: String,
        /// The joining session.
        member: Member,
        /// Presence TTL.
        ttl: Duration,
    },
    /// [`Presence::leave`].
    Leave {
        /// The channel.
        channel: String,
        /// The session.
        session: SessionId,
    },
    /// [`Broker::subscribe`].
    Subscribe {
        /// A channel, or a server-event topic as `$topic:<name>`.
        topic: String,
    },
    /// [`Broker::unsubscribe`].
    Unsubscribe {
        /// As for `Subscribe`.
        topic: String,
    },
    /// [`Broker::publish`].
    Publish {
        /// A channel, or a server-event topic as `$topic:<name>`.
        channel: String,
        /// What to publish.
        publication: Publication,
        /// The channel's history, if it keeps one.
        history: Option<HistorySpec>,
        /// Publish only once per this key, scoped to the publisher
        /// ([`Broker::publish_once`]); the manager sends one only with
        /// `history`.
        idempotency_key: Option<String>,
    },
    /// [`Broker::publish_commit`].
    Commit {
        /// The channel.
        channel: String,
        /// The commit, as members receive it.
        publication: Publication,
        /// The channel's history.
        history: HistorySpec,
        /// The group epoch the commit is made in.
        epoch: u64,
        /// The GroupInfo of the epoch it starts, base64, if it came with
        /// one.
        group_info: Option<String>,
    },
    /// [`Broker::history`].
    History {
        /// The channel.
        channel: String,
        /// Recover after this position.
        since: Option<Position>,
        /// Publications at most.
        limit: usize,
    },
    /// The epoch of the newest GroupInfo [`Broker::group_info`] keeps for
    /// an end-to-end encrypted channel: where its group is, read for a
    /// joining session before its history.
    GroupEpoch {
        /// The channel.
        channel: String,
    },
    /// [`Broker::recent`].
    Recent {
        /// The channel.
        channel: String,
        /// Publications at most.
        limit: usize,
    },
    /// [`Presence::members`].
    Members {
        /// The channel.
        channel: String,
        /// Members at most.
        limit: usize,
    },
    /// [`Presence::kick`], then a [`ControlMessage::Remove`].
    Kick {
        /// The channel.
        channel: String,
        /// Whom.
        target: Target,
    },
    /// [`ChannelDirectory::ban`], then a [`ControlMessage::Remove`].
    Ban {
        /// The channel.
        channel: String,
        /// Whom.
        user: String,
        /// How long; `None` until unbanned.
        duration: Option<Duration>,
    },
    /// Proposes `user`'s removal from `channel`'s end-to-end group, as for
    /// a kick, if presence lists no session of theirs in the channel
    /// ([`ChannelsConfig::group_member_linger`](crate::ChannelsConfig::group_member_linger)).
    RemoveFromGroupIfAway {
        /// The channel.
        channel: String,
        /// Whom.
        user: String,
    },
    /// [`ChannelDirectory::unban`].
    Unban {
        /// The channel.
        channel: String,
        /// Whom.
        user: String,
    },
    /// [`ChannelDirectory::set_role`], then a [`ControlMessage::RoleChanged`].
    SetRole {
        /// The channel.
        channel: String,
        /// Whom.
        user: String,
        /// The new role.
        role: ChannelRole,
    },
    /// [`ChannelDirectory::delete`], [`Broker::remove_history`], then a
    /// [`ControlMessage::Closed`].
    Close {
        /// The channel.
        channel: String,
    },
    /// [`KeyPackageDirectory::upload_key_packages`].
    UploadKeyPackages {
        /// Whose.
        user: String,
        /// One device's packages.
        upload: KeyPackageUpload,
        /// What a user may keep.
        limits: KeyPackageLimits,
    },
    /// [`KeyPackageDirectory::claim_key_packages`].
    ClaimKeyPackages {
        /// Whose.
        user: String,
        /// Devices (fingerprints) left out: those already in the group.
        except: Vec<String>,
    },
    /// [`Presence::refresh`] of every local entry.
    Refresh {
        /// (channel, session) pairs.
        entries: Vec<(String, SessionId)>,
        /// Presence TTL.
        ttl: Duration,
    },
}

/// How an [`Operation`] (or a custom command) turned out.
#[derive(Debug, Clone, PartialEq)]
pub enum OpResult {
    /// Operations without a value.
    Done(Result<(), ChannelError>),
    /// `Create` and `Join`.
    Joined(Result<JoinGrant, ChannelError>),
    /// `Publish` and `Commit`.
    Published(Result<Published, ChannelError>),
    /// `History` and `Recent`.
    History(Result<HistoryPage, ChannelError>),
    /// `GroupEpoch`: `None` when no commit came with a GroupInfo.
    GroupEpoch(Result<Option<u64>, ChannelError>),
    /// `Members`.
    Roster(Result<Roster, ChannelError>),
    /// A custom command's reply data.
    Custom(Result<Value, ChannelError>),
    /// `UploadKeyPackages`: what each of the user's devices has.
    KeyPackages(Result<Vec<DeviceKeyPackages>, ChannelError>),
    /// `ClaimKeyPackages`: one package per device.
    Claimed(Result<Vec<ClaimedKeyPackage>, ChannelError>),
    /// [`Action::Authenticate`](crate::manager::Action::Authenticate): whom
    /// the token names, or why it was refused.
    Authenticated(Result<Authenticated, ChannelError>),
}

/// Whom a token a session sent with `refresh` names, as the driver's
/// authenticator read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    /// The subject (a JWT's `sub`): it must be the session's user.
    pub user: String,
    /// The token's claims (`Value::Null` for none): they replace the
    /// session's for topic access from now on.
    pub claims: Value,
    /// When the token ends, on the driver's monotonic clock (from its
    /// `exp`); `None`: it does not.
    pub expires: Option<std::time::Instant>,
}
