//! This node's broker subscriptions: one per channel or topic with local
//! participants, subscribed when the first arrives and unsubscribed when
//! the last leaves, with the sessions waiting for one to be ready.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SubState {
    Unsubscribed,
    Subscribing,
    Subscribed,
    Unsubscribing,
}

/// Something waiting for a broker subscription.
#[derive(Debug)]
pub(super) enum Waiter {
    Join {
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
    },
    Topic {
        session: SessionId,
        reply: ReplyTo,
    },
}

#[derive(Debug)]
pub(super) struct Subscription {
    pub(super) state: SubState,
    pub(super) waiters: Vec<Waiter>,
}

impl ChannelManager {
    pub(super) fn subscribe_topic(
        &mut self,
        session: SessionId,
        topic: String,
        filter: Option<Value>,
        reply: &ReplyTo,
    ) -> Result<(), ChannelError> {
        let Some(access) = self.config.topics.get(&topic) else {
            return Err(error(
                ErrorCode::NotFound,
                format!("no topic named {topic:?}"),
            ));
        };
        let state = &self.sessions[&session];
        let request = TopicRequest {
            topic: &topic,
            user: state.user.as_deref(),
            claims: state.claims.as_deref().unwrap_or(&Value::Null),
        };
        if !access.allows(&request) {
            return Err(error(
                ErrorCode::Forbidden,
                format!("this session may not subscribe to {topic:?}"),
            ));
        }
        let filter = match filter {
            None => Filter::parse(json!({}))?,
            Some(value) => {
                if value.to_string().len() > self.config.max_filter {
                    return Err(error(
                        ErrorCode::Limit,
                        format!("a filter is at most {} bytes", self.config.max_filter),
                    ));
                }
                Filter::parse(value)?
            }
        };
        let max_topics = self.config.max_topics_per_session;
        let state = self
            .sessions
            .get_mut(&session)
            .expect("sessions are checked first");
        if !state.topics.contains_key(&topic) && state.topics.len() >= max_topics {
            return Err(error(
                ErrorCode::Limit,
                format!("a session subscribes to at most {max_topics} topics"),
            ));
        }
        state.topics.insert(topic.clone(), filter);
        self.topics
            .entry(topic.clone())
            .or_default()
            .insert(session);
        let key = topic_key(&topic);
        if self.subscription_state(&key) == SubState::Subscribed {
            self.ok(session, reply, json!({}));
        } else {
            self.wait_for_subscription(
                &key,
                Waiter::Topic {
                    session,
                    reply: reply.clone(),
                },
            );
        }
        Ok(())
    }

    /// Queues `waiter` until the broker subscription to `key` is in place,
    /// and asks for it.
    pub(super) fn wait_for_subscription(&mut self, key: &str, waiter: Waiter) {
        self.subscriptions
            .entry(key.to_owned())
            .or_insert_with(|| Subscription {
                state: SubState::Unsubscribed,
                waiters: Vec::new(),
            })
            .waiters
            .push(waiter);
        self.reconcile(key);
    }

    pub(super) fn drop_topic_subscriber(&mut self, session: SessionId, topic: &str) {
        if let Some(subscribers) = self.topics.get_mut(topic) {
            subscribers.remove(&session);
            if subscribers.is_empty() {
                self.topics.remove(topic);
            }
        }
        self.reconcile(&topic_key(topic));
    }

    pub(super) fn subscription_state(&self, key: &str) -> SubState {
        self.subscriptions
            .get(key)
            .map_or(SubState::Unsubscribed, |s| s.state)
    }

    /// Whether this node has anyone for `key` (a channel or `$topic:`).
    pub(super) fn wants(&self, key: &str) -> bool {
        match key.strip_prefix(TOPIC_PREFIX) {
            Some(topic) => self.topics.contains_key(topic),
            None => self
                .channels
                .get(key)
                .is_some_and(|c| !c.members.is_empty()),
        }
    }

    /// Moves the broker subscription for `key` towards what is wanted:
    /// subscribed while anyone here listens, not otherwise. One operation
    /// at a time per key; the next is decided when it completes.
    pub(super) fn reconcile(&mut self, key: &str) {
        let wants = self.wants(key);
        let state = self.subscription_state(key);
        match (state, wants) {
            (SubState::Unsubscribed, true) => {
                self.subscriptions
                    .entry(key.to_owned())
                    .or_insert_with(|| Subscription {
                        state: SubState::Unsubscribed,
                        waiters: Vec::new(),
                    })
                    .state = SubState::Subscribing;
                self.op(
                    Operation::Subscribe {
                        topic: key.to_owned(),
                    },
                    Pending::Subscription {
                        topic: key.to_owned(),
                        subscribe: true,
                    },
                );
            }
            (SubState::Subscribed, false) => {
                if let Some(sub) = self.subscriptions.get_mut(key) {
                    sub.state = SubState::Unsubscribing;
                }
                self.op(
                    Operation::Unsubscribe {
                        topic: key.to_owned(),
                    },
                    Pending::Subscription {
                        topic: key.to_owned(),
                        subscribe: false,
                    },
                );
            }
            (SubState::Unsubscribed, false) => {
                if self
                    .subscriptions
                    .get(key)
                    .is_some_and(|s| s.waiters.is_empty())
                {
                    self.subscriptions.remove(key);
                }
                if !key.starts_with(TOPIC_PREFIX)
                    && self.channels.get(key).is_some_and(|c| c.members.is_empty())
                {
                    self.channels.remove(key);
                }
            }
            _ => {}
        }
    }

    pub(super) fn subscription_done(
        &mut self,
        key: &str,
        subscribe: bool,
        result: Result<(), ChannelError>,
        now: Instant,
    ) {
        let Some(sub) = self.subscriptions.get_mut(key) else {
            return;
        };
        if !subscribe {
            if let Err(e) = &result {
                tracing::warn!(topic = key, error = %e, "unsubscribing failed");
            }
            sub.state = SubState::Unsubscribed;
            return self.reconcile(key);
        }
        let waiters = std::mem::take(&mut sub.waiters);
        match result {
            Ok(()) => {
                sub.state = SubState::Subscribed;
                for waiter in waiters {
                    match waiter {
                        Waiter::Join {
                            session,
                            channel,
                            reply,
                            since,
                        } => self.continue_join(session, channel, reply, since),
                        Waiter::Topic { session, reply } => {
                            if self.sessions.contains_key(&session) {
                                self.ok(session, &reply, json!({}));
                            }
                        }
                    }
                }
            }
            Err(e) => {
                sub.state = SubState::Unsubscribed;
                for waiter in waiters {
                    match waiter {
                        Waiter::Join {
                            session,
                            channel,
                            reply,
                            ..
                        } => {
                            let info = self
                                .sessions
                                .get(&session)
                                .and_then(|s| s.channels.get(&channel))
                                .map(|m| m.info.clone());
                            if let Some(info) = info {
                                self.leave(session, &channel, info, LeaveReason::Left);
                                self.refuse(session, &reply, e.clone(), now);
                            }
                        }
                        Waiter::Topic { session, reply } => {
                            let topic = key.strip_prefix(TOPIC_PREFIX).unwrap_or(key);
                            let had = self
                                .sessions
                                .get_mut(&session)
                                .and_then(|s| s.topics.remove(topic))
                                .is_some();
                            if had {
                                self.drop_topic_subscriber(session, topic);
                                self.refuse(session, &reply, e.clone(), now);
                            }
                        }
                    }
                }
            }
        }
        self.reconcile(key);
    }
}
