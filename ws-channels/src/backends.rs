//! The three backends a node uses, chosen by URL or given, and how each
//! [`Operation`] is carried out on them (some take several steps).

use std::sync::Arc;

use crate::backend::{
    Broker, ChannelStore, ClusterKey, Controller, MemoryBackend, Published, REQUEST_WAIT, Sink,
};
#[cfg(feature = "nats")]
use crate::backend::{NatsBackend, NatsConfig};
#[cfg(feature = "redis")]
use crate::backend::{RedisBackend, RedisConfig};
use crate::operation::{OpResult, Operation};
use crate::types::{ChannelError, ControlMessage, NodeId, Target};

/// The three backends a node uses.
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
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backends { .. }")
    }
}

impl Backends {
    /// All three in one [`MemoryBackend`]: one node, or several nodes in
    /// one process. Give an `Arc` to keep a handle on it (to read
    /// [`MemoryBackend::history_bytes`], say).
    pub fn memory(memory: impl Into<Arc<MemoryBackend>>) -> Self {
        let memory = memory.into();
        Self {
            broker: memory.clone(),
            store: memory.clone(),
            controller: memory,
        }
    }

    /// One value that is all three: a cluster backend such as
    /// `RedisBackend` or `NatsBackend`.
    pub fn shared<T: Broker + ChannelStore + Controller>(backend: T) -> Self {
        let backend = Arc::new(backend);
        Self {
            broker: backend.clone(),
            store: backend.clone(),
            controller: backend,
        }
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
            Operation::History {
                channel,
                since,
                limit,
            } => OpResult::History(self.broker.history(&channel, since, limit).await),
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
            Operation::Refresh { entries, ttl } => {
                OpResult::Done(self.store.refresh(node, &entries, ttl).await)
            }
        }
    }
}
