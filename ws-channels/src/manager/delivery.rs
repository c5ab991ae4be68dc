//! Publications reaching this node: through the order gate to every local
//! member (encoded once), and to topic subscribers; deliveries a session
//! could not take.

use super::*;

impl ChannelManager {
    /// A publication on a channel or topic this node subscribed to.
    ///
    /// Publications of a channel with history reach its members once and
    /// in offset order whatever the broker does: one at or before the last
    /// handed out is a duplicate and dropped; one after a gap waits while
    /// the gap is read from history, then both go out in order; a gap the
    /// history no longer holds is a `lost` event to each member (with the
    /// last position it has), never a silent jump.
    pub fn handle_publication(&mut self, channel: &str, publication: &Publication, _now: Instant) {
        if let Some(topic) = channel.strip_prefix(TOPIC_PREFIX) {
            return self.topic_publication(channel, topic, publication);
        }
        match (&publication.position, publication.kind) {
            (Some(position), PublicationKind::Message) => {
                for next in self.in_order(channel, position, publication) {
                    self.fan_out(channel, &next);
                }
            }
            _ => self.fan_out(channel, publication),
        }
    }

    /// Hands `publication` to the channel's members: at once to those
    /// ready, to the others as their state says.
    pub(super) fn fan_out(&mut self, channel: &str, publication: &Publication) {
        let Some(local) = self.channels.get_mut(channel) else {
            return;
        };
        let ready = local
            .ready
            .get_or_insert_with(|| Ready::of(channel, &local.members, &self.sessions));
        let sessions = ready.sessions.clone();
        let others = ready.others.clone();
        let publisher = publication.from.as_ref().map(|f| f.session);
        // A session is not told of its own join (its reply told it), nor,
        // without echo, of its own messages.
        let except = publisher.filter(|_| match publication.kind {
            PublicationKind::Message => !self.config.echo,
            PublicationKind::Join => true,
            _ => false,
        });
        // The members not ready for it: buffered while recovering, or owed
        // a `lost` event first (after which they are ready again).
        let mut late = Vec::new();
        let mut lost = Vec::new();
        let mut changed = false;
        let offset = publication
            .position
            .as_ref()
            .filter(|_| publication.kind == PublicationKind::Message)
            .map(|p| p.offset);
        let max_buffer = self.config.max_recovery_buffer;
        for session in others {
            let Some(membership) = self
                .sessions
                .get_mut(&session)
                .filter(|s| !s.closing)
                .and_then(|s| s.channels.get_mut(channel))
            else {
                continue;
            };
            match &mut membership.stage {
                Stage::Recovering { buffer, overflowed } => {
                    if buffer.len() < max_buffer {
                        buffer.push(publication.clone());
                    } else if !*overflowed {
                        *overflowed = true;
                        buffer.clear();
                    }
                }
                Stage::Active => {
                    if let Some(floor) = membership.floor {
                        match offset {
                            // Its join's history already had it.
                            Some(offset) if offset <= floor => continue,
                            Some(_) => {
                                membership.floor = None;
                                changed = true;
                            }
                            None => {}
                        }
                    }
                    if std::mem::take(&mut membership.lost) {
                        lost.push(session);
                        changed = true;
                    }
                    if except != Some(session) {
                        late.push(session);
                    }
                }
            }
        }
        if changed {
            stale(&mut self.channels, channel);
        }
        if !lost.is_empty() {
            self.tell_lost(channel, lost.into(), json!({}));
        }
        if publication.welcome.is_some() {
            // A commit whose Welcome is for some users: their sessions get
            // it, the rest the commit alone (one encoding each).
            let (named, rest): (Vec<SessionId>, Vec<SessionId>) = sessions
                .iter()
                .copied()
                .filter(|s| Some(*s) != except)
                .chain(late)
                .partition(|s| {
                    let user = self.sessions.get(s).and_then(|state| state.user.as_deref());
                    publication.welcomes(user)
                });
            for (recipients, welcome) in [(named, true), (rest, false)] {
                if !recipients.is_empty() {
                    let message = protocol::publication_event(channel, publication, welcome);
                    self.deliver(channel, recipients.into(), None, message);
                }
            }
            return;
        }
        let everyone_else = sessions.iter().any(|s| Some(*s) != except);
        if everyone_else || !late.is_empty() {
            let message = protocol::publication_event(channel, publication, false);
            if everyone_else {
                self.deliver(channel, sessions, except, message.clone());
            }
            if !late.is_empty() {
                self.deliver(channel, late.into(), None, message);
            }
        }
    }

    /// Tells `sessions` they may have missed publications on `channel`
    /// (after the position in `data`, when it has one). Delivered as the
    /// channel's publications are, so one a session cannot take counts
    /// against the channel, as a publication would: with
    /// [`SlowSubscriber::MarkLost`](crate::SlowSubscriber::MarkLost) it
    /// is told again ahead of the next delivery that fits, rather than
    /// closed as for a reply of its own.
    pub(super) fn tell_lost(&mut self, channel: &str, sessions: Arc<[SessionId]>, data: Value) {
        let message = protocol::lost_event(channel, &data);
        self.deliver(channel, sessions, None, message);
    }

    pub(super) fn deliver(
        &mut self,
        channel: &str,
        sessions: Arc<[SessionId]>,
        except: Option<SessionId>,
        message: EncodedMessage,
    ) {
        self.actions.push_back(Action::Deliver {
            channel: channel.to_owned(),
            sessions,
            except,
            message,
        });
    }

    pub(super) fn topic_publication(&mut self, key: &str, topic: &str, publication: &Publication) {
        let (Some(subscribers), Some(data)) =
            (self.subscriptions.subscribers(topic), &publication.data)
        else {
            return;
        };
        let value = data.to_value();
        let recipients: Vec<SessionId> = subscribers
            .iter()
            .filter(|s| {
                self.sessions.get(s).is_some_and(|state| {
                    !state.closing && state.topics.get(topic).is_some_and(|f| f.matches(&value))
                })
            })
            .copied()
            .collect();
        if !recipients.is_empty() {
            let message = protocol::topic_event(topic, data);
            self.deliver(key, recipients.into(), None, message);
        }
    }

    /// A delivery could not be queued for `session` (its send queue is
    /// full). `channel` is the delivery's channel, or `None` for a reply or
    /// an event of its own, which is never dropped: the session is closed.
    pub fn handle_undelivered(&mut self, session: SessionId, channel: Option<&str>, _now: Instant) {
        let mark_lost = self.config.slow_subscriber == crate::config::SlowSubscriber::MarkLost;
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        if state.closing {
            return;
        }
        if mark_lost
            && let Some(channel) = channel
            && let Some(membership) = state.channels.get_mut(channel)
        {
            membership.lost = true;
            stale(&mut self.channels, channel);
            return;
        }
        start_closing(&mut self.channels, state);
        self.actions.push_back(Action::Disconnect {
            session,
            code: close_codes::SLOW,
            reason: "slow: send queue full".into(),
        });
    }
}
