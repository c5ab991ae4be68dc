//! The backends a node uses, chosen by URL or given, and how each
//! [`Operation`] is carried out on them (some take several steps).

use std::sync::Arc;

use crate::backend::{
    Broker, ChannelStore, ClusterKey, Controller, KeyPackageDirectory, MemoryBackend, Published,
    REQUEST_WAIT, Sink,
};
#[cfg(feature = "nats")]
use crate::backend::{NatsBackend, NatsConfig};
#[cfg(feature = "redis")]
use crate::backend::{RedisBackend, RedisConfig};
use crate::e2e::GroupReader;
use crate::operation::{OpResult, Operation};
use crate::types::{ChannelError, ControlMessage, NodeId, Target};

/// Members read to tell whether a user is away from an encrypted channel;
/// in a larger channel the server does not propose removals for absence.
const MAX_AWAY_CHECK: usize = 100_000;

/// The backends a node uses: broker, channel store, controller and key
/// package directory.
#[derive(Clone)]
pub struct Backends {
    /// Publications and history.
    pub broker: Arc<dyn Broker>,
    /// Channels, members, roles, bans: [`Presence`](crate::backend::Presence)
    /// and the [`ChannelDirectory`](crate::backend::ChannelDirectory) on
    /// one state.
    pub store: Arc<dyn ChannelStore>,
    /// Kicks, bans, role changes and disconnects for every node.
    pub controller: Arc<dyn Controller>,
    /// Users' key packages for end-to-end groups.
    pub keys: Arc<dyn KeyPackageDirectory>,
    /// Proposes removals from encrypted channels' groups
    /// ([`with_group_reader`](Self::with_group_reader)).
    group_reader: Option<Arc<dyn GroupReader>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backends { .. }")
    }
}

impl Backends {
    /// All of them in one [`MemoryBackend`]: one node, or several nodes in
    /// one process. Give an `Arc` to keep a handle on it (to read
    /// [`MemoryBackend::history_bytes`], say).
    pub fn memory(memory: impl Into<Arc<MemoryBackend>>) -> Self {
        let memory = memory.into();
        Self {
            broker: memory.clone(),
            store: memory.clone(),
            controller: memory.clone(),
            keys: memory,
            group_reader: None,
        }
    }

    /// One value that is all of them: a cluster backend such as
    /// `RedisBackend` or `NatsBackend`.
    pub fn shared<T: Broker + ChannelStore + Controller + KeyPackageDirectory>(backend: T) -> Self {
        let backend = Arc::new(backend);
        Self {
            broker: backend.clone(),
            store: backend.clone(),
            controller: backend.clone(),
            keys: backend,
            group_reader: None,
        }
    }

    /// After a user is kicked or banned from an encrypted channel, the
    /// server proposes the removal of its devices from the channel's group
    /// with `reader` ([`GroupReader::propose_remove`]), from the newest
    /// GroupInfo a commit came with, and publishes the proposals to the
    /// channel for the next member who commits. [`Channels`](crate::Channels)
    /// sets the one in [`ChannelsConfig::group_reader`](crate::ChannelsConfig::group_reader).
    pub fn with_group_reader(mut self, reader: Arc<dyn GroupReader>) -> Self {
        self.group_reader = Some(reader);
        self
    }

    /// The backend a URL names: `memory` (one node; the default),
    /// `redis://...` or `rediss://...` (feature `redis`), `nats://...` or
    /// `tls://...` (NATS over TLS; feature `nats`), each with its defaults
    /// and the key or subject prefix `ws`. A cluster backend needs the
    /// cluster's `key` (see [`ClusterKey`]); `memory` takes `None`.
    /// Connecting retries with backoff for up to 30 s, then fails with
    /// [`ErrorCode::Unavailable`](crate::ErrorCode::Unavailable);
    /// credentials the broker refuses, a URL of another scheme, a backend
    /// this build lacks or a cluster backend without a key fail at once
    /// with [`ErrorCode::BadRequest`](crate::ErrorCode::BadRequest).
    pub async fn connect(url: &str, key: Option<ClusterKey>) -> Result<Self, ChannelError> {
        let scheme = url.split("://").next().unwrap_or(url);
        #[cfg(not(any(feature = "redis", feature = "nats")))]
        let _ = key;
        #[cfg(not(all(feature = "redis", feature = "nats")))]
        let missing = || {
            ChannelError::new(
                crate::ErrorCode::BadRequest,
                format!(
                    "this build has no {scheme} backend: enable ws-channels' `{}` feature",
                    if matches!(scheme, "nats" | "tls") {
                        "nats"
                    } else {
                        "redis"
                    }
                ),
            )
        };
        #[cfg(any(feature = "redis", feature = "nats"))]
        let key = || {
            key.clone().ok_or_else(|| {
                ChannelError::new(
                    crate::ErrorCode::BadRequest,
                    "a cluster backend needs the cluster's key (ClusterKey), shared by its nodes",
                )
            })
        };
        match scheme {
            "memory" => Ok(Self::memory(MemoryBackend::new())),
            #[cfg(feature = "redis")]
            "redis" | "rediss" => Ok(Self::shared(
                RedisBackend::connect(RedisConfig::new(url, key()?)).await?,
            )),
            #[cfg(not(feature = "redis"))]
            "redis" | "rediss" => Err(missing()),
            #[cfg(feature = "nats")]
            "nats" | "tls" => Ok(Self::shared(
                NatsBackend::connect(NatsConfig::new(url, key()?)).await?,
            )),
            #[cfg(not(feature = "nats"))]
            "nats" | "tls" => Err(missing()),
            _ => Err(ChannelError::new(
                crate::ErrorCode::BadRequest,
                format!(
                    "unknown channel backend {scheme:?}: use memory, redis://..., rediss://..., \
                     nats://... or tls://..."
                ),
            )),
        }
    }

    /// Attaches a node's sink to the broker and the controller.
    pub fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        self.broker.attach(node, sink.clone());
        self.controller.attach(node, sink);
    }

    /// Carries out one operation the manager asked for.
    pub async fn execute(&self, node: NodeId, operation: Operation) -> OpResult {
        match operation {
            Operation::Create {
                channel,
                options,
                owner,
                ttl,
                limits,
            } => OpResult::Joined(
                self.store
                    .create(&channel, options, owner, ttl, limits)
                    .await,
            ),
            Operation::Join {
                channel,
                member,
                ttl,
            } => OpResult::Joined(self.store.join(&channel, member, ttl).await),
            Operation::Leave { channel, session } => {
                OpResult::Done(self.store.leave(&channel, session).await)
            }
            Operation::Subscribe { topic } => {
                OpResult::Done(self.broker.subscribe(node, &topic).await)
            }
            Operation::Unsubscribe { topic } => {
                OpResult::Done(self.broker.unsubscribe(node, &topic).await)
            }
            Operation::Publish {
                channel,
                publication,
                history,
                idempotency_key,
            } => OpResult::Published(match (history, idempotency_key) {
                (Some(history), Some(key)) => {
                    self.broker
                        .publish_once(&channel, publication, history, &key)
                        .await
                }
                (history, _) => self
                    .broker
                    .publish(&channel, publication, history)
                    .await
                    .map(|position| Published {
                        position,
                        duplicate: false,
                    }),
            }),
            Operation::Commit {
                channel,
                publication,
                history,
                epoch,
                group_info,
            } => OpResult::Published(
                self.broker
                    .publish_commit(&channel, publication, history, epoch, group_info.as_deref())
                    .await
                    .map(|position| Published {
                        position: Some(position),
                        duplicate: false,
                    }),
            ),
            Operation::History {
                channel,
                since,
                limit,
            } => OpResult::History(self.broker.history(&channel, since, limit).await),
            Operation::GroupEpoch { channel } => OpResult::GroupEpoch(
                self.broker
                    .group_info(&channel)
                    .await
                    .map(|kept| kept.map(|(epoch, _)| epoch)),
            ),
            Operation::Recent { channel, limit } => {
                OpResult::History(self.broker.recent(&channel, limit).await)
            }
            Operation::Members { channel, limit } => {
                OpResult::Roster(self.store.members(&channel, limit).await)
            }
            Operation::Kick { channel, target } => {
                // Every node is told, whatever presence says: a session
                // missing from presence (its entry expired, the broker
                // lost it) is still removed where it is.
                let result = match self.store.kick(&channel, &target).await {
                    Ok(listed) => {
                        if let Target::User(user) = &target {
                            self.propose_removal(&channel, user).await;
                        }
                        let removal = ControlMessage::Remove {
                            channel,
                            target,
                            reason: crate::types::Removal::Kicked,
                        };
                        match self.controller.request(removal, REQUEST_WAIT).await {
                            Ok(_) if listed > 0 => Ok(()),
                            Ok(reach) => reach.found("that member in the channel").map(drop),
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                OpResult::Done(result)
            }
            Operation::Ban {
                channel,
                user,
                duration,
            } => {
                let result = match self.store.ban(&channel, &user, duration).await {
                    Ok(()) => {
                        self.propose_removal(&channel, &user).await;
                        self.controller
                            .broadcast(ControlMessage::Remove {
                                channel,
                                target: Target::User(user),
                                reason: crate::types::Removal::Banned,
                            })
                            .await
                    }
                    Err(e) => Err(e),
                };
                OpResult::Done(result)
            }
            Operation::RemoveFromGroupIfAway { channel, user } => {
                let result = match self.store.members(&channel, MAX_AWAY_CHECK).await {
                    // A roster cut short cannot say the user is away.
                    Ok(roster) if roster.total > roster.members.len() => {
                        tracing::warn!(
                            channel,
                            user,
                            members = roster.total,
                            "too many members to tell whether a user is away: no removal proposed"
                        );
                        Ok(())
                    }
                    Ok(roster) => {
                        let present = roster
                            .members
                            .iter()
                            .any(|m| m.user.as_deref() == Some(user.as_str()));
                        if !present {
                            self.propose_removal(&channel, &user).await;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                OpResult::Done(result)
            }
            Operation::Unban { channel, user } => {
                OpResult::Done(self.store.unban(&channel, &user).await)
            }
            Operation::SetRole {
                channel,
                user,
                role,
            } => {
                let result = match self.store.set_role(&channel, &user, &role).await {
                    Ok(()) => {
                        self.controller
                            .broadcast(ControlMessage::RoleChanged {
                                channel,
                                user,
                                role,
                            })
                            .await
                    }
                    Err(e) => Err(e),
                };
                OpResult::Done(result)
            }
            Operation::Close { channel } => {
                let mut result = self.store.delete(&channel).await;
                if result.is_ok() {
                    result = self.broker.remove_history(&channel).await;
                }
                if result.is_ok() {
                    result = self
                        .controller
                        .broadcast(ControlMessage::Closed { channel })
                        .await;
                }
                OpResult::Done(result)
            }
            Operation::UploadKeyPackages {
                user,
                upload,
                limits,
            } => OpResult::KeyPackages(self.keys.upload_key_packages(&user, upload, limits).await),
            Operation::ClaimKeyPackages { user, except } => {
                OpResult::Claimed(self.keys.claim_key_packages(&user, &except).await)
            }
            Operation::Refresh { entries, ttl } => {
                OpResult::Done(self.store.refresh(node, &entries, ttl).await)
            }
        }
    }
}

impl Backends {
    /// Proposes the removal of `user`'s devices from `channel`'s group and
    /// publishes the proposals there, as the server: `{"e2e": "proposal",
    /// "epoch": E, "user": ..., "proposals": [...]}`. Best effort after the
    /// kick or ban itself, which stands either way: a channel without a
    /// group (or whose commits came without GroupInfo), a user with no
    /// device in it, or a failure (logged) proposes nothing.
    async fn propose_removal(&self, channel: &str, user: &str) {
        let Some(reader) = &self.group_reader else {
            return;
        };
        let result = async {
            let Some(summary) = self.store.channel(channel).await? else {
                return Ok(());
            };
            let Some(history) = summary
                .options
                .history()
                .filter(|_| summary.options.encrypted)
            else {
                return Ok(());
            };
            let Some((_, group_info)) = self.broker.group_info(channel).await? else {
                return Ok(());
            };
            use base64::Engine as _;
            let engine = base64::engine::general_purpose::STANDARD;
            let info = engine.decode(&group_info).map_err(|e| {
                ChannelError::new(crate::ErrorCode::Internal, format!("a kept GroupInfo: {e}"))
            })?;
            let Some(proposed) = reader
                .propose_remove(&info, user)
                .map_err(|e| ChannelError::new(crate::ErrorCode::Internal, e))?
            else {
                return Ok(());
            };
            let proposals: Vec<String> = proposed
                .proposals
                .iter()
                .map(|p| engine.encode(p))
                .collect();
            let data = serde_json::json!({
                "e2e": crate::e2e::PROPOSAL_KIND,
                "epoch": proposed.epoch,
                "user": user,
                "proposals": proposals,
            });
            let publication =
                crate::types::Publication::message(None, crate::types::Payload::new(&data));
            self.broker
                .publish(channel, publication, Some(history))
                .await
                .map(drop)
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(channel, %error, "could not propose a removal from the channel's group");
        }
    }
}
