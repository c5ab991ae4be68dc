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

/// What [`Subscriptions::next_step`] decided for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Subscribe now: the state is `Subscribing`.
    Subscribe,
    /// Unsubscribe now: the state is `Unsubscribing`.
    Unsubscribe,
    /// Nothing is wanted and nothing is subscribed: the key is forgotten,
    /// with what waited for it for sessions that are gone.
    Idle,
    /// Where it should be, or an operation is in flight (the next step is
    /// decided when it completes).
    Settled,
}

/// This node's broker subscriptions and what they are for: per key (a
/// channel, or `$topic:` and a topic) the one subscription's state, one
/// operation at a time, and what waits for it; per topic, the local
/// sessions subscribed (a topic's reference count; a channel's is its
/// local members, kept in its `LocalChannel`).
#[derive(Debug, Default)]
pub(super) struct Subscriptions {
    by_key: HashMap<String, Subscription>,
    topics: HashMap<String, BTreeSet<SessionId>>,
}

impl Subscriptions {
    pub(super) fn state(&self, key: &str) -> SubState {
        self.by_key
            .get(key)
            .map_or(SubState::Unsubscribed, |s| s.state)
    }

    /// Queues `waiter` until the subscription to `key` is in place.
    pub(super) fn wait(&mut self, key: &str, waiter: Waiter) {
        self.entry(key).waiters.push(waiter);
    }

    fn entry(&mut self, key: &str) -> &mut Subscription {
        self.by_key
            .entry(key.to_owned())
            .or_insert_with(|| Subscription {
                state: SubState::Unsubscribed,
                waiters: Vec::new(),
            })
    }

    pub(super) fn add_subscriber(&mut self, topic: &str, session: SessionId) {
        self.topics
            .entry(topic.to_owned())
            .or_default()
            .insert(session);
    }

    pub(super) fn remove_subscriber(&mut self, topic: &str, session: SessionId) {
        if let Some(subscribers) = self.topics.get_mut(topic) {
            subscribers.remove(&session);
            if subscribers.is_empty() {
                self.topics.remove(topic);
            }
        }
    }

    /// The local sessions subscribed to `topic`, if any.
    pub(super) fn subscribers(&self, topic: &str) -> Option<&BTreeSet<SessionId>> {
        self.topics.get(topic)
    }

    /// Moves `key` towards `wanted`: subscribed while anyone here listens,
    /// not otherwise, one operation at a time.
    pub(super) fn next_step(&mut self, key: &str, wanted: bool) -> Step {
        match (self.state(key), wanted) {
            (SubState::Unsubscribed, true) => {
                self.entry(key).state = SubState::Subscribing;
                Step::Subscribe
            }
            (SubState::Subscribed, false) => {
                self.entry(key).state = SubState::Unsubscribing;
                Step::Unsubscribe
            }
            (SubState::Unsubscribed, false) => {
                // A waiter's session is a member or a subscriber, which
                // makes the key wanted: with nothing wanted, whatever
                // still waits belongs to sessions gone, and goes too.
                self.by_key.remove(key);
                Step::Idle
            }
            _ => Step::Settled,
        }
    }

    /// A subscribe on `key` finished, `ok` or not: what waited for it,
    /// to serve or to refuse. `None` for a key this node no longer tracks.
    pub(super) fn subscribe_finished(&mut self, key: &str, ok: bool) -> Option<Vec<Waiter>> {
        let sub = self.by_key.get_mut(key)?;
        sub.state = if ok {
            SubState::Subscribed
        } else {
            SubState::Unsubscribed
        };
        Some(std::mem::take(&mut sub.waiters))
    }

    /// An unsubscribe on `key` finished (a failure is only logged: what
    /// the broker still delivers for a key nobody here wants is dropped).
    /// What waits for the key (a
    /// join that came meanwhile) keeps waiting for the next subscribe.
    /// False for a key this node no longer tracks.
    pub(super) fn unsubscribe_finished(&mut self, key: &str) -> bool {
        match self.by_key.get_mut(key) {
            Some(sub) => {
                sub.state = SubState::Unsubscribed;
                true
            }
            None => false,
        }
    }

    /// Every key's subscription, for the invariants.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Subscription)> {
        self.by_key.iter()
    }

    /// Every topic's subscribers, for the invariants.
    pub(super) fn topics(&self) -> impl Iterator<Item = (&String, &BTreeSet<SessionId>)> {
        self.topics.iter()
    }
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
        self.subscriptions.add_subscriber(&topic, session);
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
        self.subscriptions.wait(key, waiter);
        self.reconcile(key);
    }

    pub(super) fn drop_topic_subscriber(&mut self, session: SessionId, topic: &str) {
        self.subscriptions.remove_subscriber(topic, session);
        self.reconcile(&topic_key(topic));
    }

    pub(super) fn subscription_state(&self, key: &str) -> SubState {
        self.subscriptions.state(key)
    }

    /// Whether this node has anyone for `key` (a channel or `$topic:`).
    pub(super) fn wants(&self, key: &str) -> bool {
        match key.strip_prefix(TOPIC_PREFIX) {
            Some(topic) => self.subscriptions.subscribers(topic).is_some(),
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
        let wanted = self.wants(key);
        let (operation, subscribe) = match self.subscriptions.next_step(key, wanted) {
            Step::Subscribe => (
                Operation::Subscribe {
                    topic: key.to_owned(),
                },
                true,
            ),
            Step::Unsubscribe => (
                Operation::Unsubscribe {
                    topic: key.to_owned(),
                },
                false,
            ),
            Step::Idle => {
                // A channel with no member here and no subscription is
                // forgotten.
                if !key.starts_with(TOPIC_PREFIX)
                    && self.channels.get(key).is_some_and(|c| c.members.is_empty())
                {
                    self.channels.remove(key);
                }
                return;
            }
            Step::Settled => return,
        };
        self.op(
            operation,
            Pending::Subscription {
                topic: key.to_owned(),
                subscribe,
            },
        );
    }

    pub(super) fn subscription_done(
        &mut self,
        key: &str,
        subscribe: bool,
        result: Result<(), ChannelError>,
        now: Instant,
    ) {
        if !subscribe {
            if let Err(e) = &result {
                tracing::warn!(topic = key, error = %e, "unsubscribing failed");
            }
            if self.subscriptions.unsubscribe_finished(key) {
                self.reconcile(key);
            }
            return;
        }
        let Some(waiters) = self.subscriptions.subscribe_finished(key, result.is_ok()) else {
            return;
        };
        match result {
            Ok(()) => {
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
