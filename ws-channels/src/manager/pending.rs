//! Backend operations in flight, and what their results do: a join
//! admitted, recovered and finished, a failure answered.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

#[derive(Debug)]
pub(super) enum Pending {
    Join {
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
        info: Option<Payload>,
    },
    /// An encrypted channel's group epoch, read for a join before its
    /// history.
    GroupEpoch {
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
    },
    Recover {
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
        group_epoch: Option<u64>,
    },
    Subscription {
        topic: String,
        subscribe: bool,
    },
    Publish {
        session: SessionId,
        reply: ReplyTo,
    },
    Reply {
        session: SessionId,
        reply: ReplyTo,
    },
    Members {
        session: SessionId,
        reply: ReplyTo,
        limit: usize,
    },
    Recent {
        session: SessionId,
        reply: ReplyTo,
    },
    /// A history read to fill a gap in a channel's stream, or (`check`)
    /// to learn whether the stream's tail went missing.
    Fill {
        channel: String,
        epoch: String,
        check: bool,
    },
    Custom {
        session: SessionId,
        reply: ReplyTo,
    },
    /// `key_packages` and `claim`.
    KeyPackages {
        session: SessionId,
        reply: ReplyTo,
    },
    /// A `refresh` command's token, being checked.
    Refresh {
        session: SessionId,
        reply: ReplyTo,
    },
    /// Fire and forget: leaves, refreshes, join/leave events.
    Ignore,
}

/// The operations in flight, by id: each [`Action::Backend`] or
/// [`Action::Custom`] is started here and finished by its result, once; a
/// result for an id not here (answered already) finds nothing.
#[derive(Debug, Default)]
pub(super) struct PendingOps {
    in_flight: HashMap<OpId, Pending>,
    next: u64,
}

impl PendingOps {
    /// Starts an operation: its new id.
    pub(super) fn start(&mut self, pending: Pending) -> OpId {
        let op = OpId(self.next);
        self.next += 1;
        self.in_flight.insert(op, pending);
        op
    }

    /// Finishes `op`: what it was for, if it was in flight.
    pub(super) fn finish(&mut self, op: OpId) -> Option<Pending> {
        self.in_flight.remove(&op)
    }

    /// How many are in flight.
    pub(super) fn len(&self) -> usize {
        self.in_flight.len()
    }
}

impl ChannelManager {
    /// The result of an [`Action::Backend`] or [`Action::Custom`].
    pub fn handle_result(&mut self, op: OpId, result: OpResult, now: Instant) {
        let Some(pending) = self.pending.finish(op) else {
            return;
        };
        match (pending, result) {
            (
                Pending::Join {
                    session,
                    channel,
                    reply,
                    since,
                    info,
                },
                OpResult::Joined(result),
            ) => self.joined(op, session, channel, reply, since, info, result, now),
            (
                Pending::GroupEpoch {
                    session,
                    channel,
                    reply,
                    since,
                },
                OpResult::GroupEpoch(result),
            ) => {
                // Advisory: a join goes on without it (its history read
                // meets the same broker and fails the join if it is down).
                let group_epoch = result.ok().flatten();
                self.read_history(session, channel, reply, since, group_epoch);
            }
            (
                Pending::Recover {
                    session,
                    channel,
                    reply,
                    since,
                    group_epoch,
                },
                OpResult::History(result),
            ) => self.recovered(session, &channel, &reply, since, group_epoch, result, now),
            (Pending::Subscription { topic, subscribe }, OpResult::Done(result)) => {
                self.subscription_done(&topic, subscribe, result, now);
            }
            (Pending::Publish { session, reply }, OpResult::Published(result)) => match result {
                Ok(published) => {
                    let (offset, epoch) = published
                        .position
                        .map_or((None, None), |p| (Some(p.offset), Some(p.epoch)));
                    let fields = PublishReply {
                        offset,
                        epoch,
                        duplicate: published.duplicate,
                    };
                    self.ok(session, &reply, json!(fields));
                }
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (Pending::Reply { session, reply }, OpResult::Done(result)) => match result {
                Ok(()) => self.ok(session, &reply, json!({})),
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (
                Pending::Members {
                    session,
                    reply,
                    limit,
                },
                OpResult::Roster(result),
            ) => match result {
                Ok(mut roster) => {
                    roster.members.truncate(limit);
                    let presence = PresenceReply::new(&roster.members, roster.total as u64);
                    self.ok(session, &reply, json!(presence));
                }
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (Pending::Recent { session, reply }, OpResult::History(result)) => match result {
                Ok(page) => {
                    let user = self.user_of(session);
                    let fields = HistoryReply {
                        complete: page.complete,
                        offset: page.top.as_ref().map(|top| top.offset),
                        epoch: page.top.as_ref().map(|top| top.epoch.clone()),
                        publications: page
                            .publications
                            .iter()
                            .map(|p| PublicationOut::to(p, user.as_deref()))
                            .collect(),
                    };
                    self.ok(session, &reply, json!(fields));
                }
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (
                Pending::Fill {
                    channel,
                    epoch,
                    check,
                },
                OpResult::History(result),
            ) => {
                self.filled(&channel, &epoch, check, result);
            }
            (Pending::Custom { session, reply }, OpResult::Custom(result)) => match result {
                Ok(result) => self.ok(session, &reply, json!(CustomReply { result })),
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (Pending::KeyPackages { session, reply }, OpResult::KeyPackages(result)) => {
                match result {
                    Ok(devices) => self.ok(session, &reply, json!({ "devices": devices })),
                    Err(e) => self.refuse(session, &reply, e, now),
                }
            }
            (Pending::KeyPackages { session, reply }, OpResult::Claimed(result)) => match result {
                Ok(claimed) => self.ok(session, &reply, json!({ "key_packages": claimed })),
                Err(e) => self.refuse(session, &reply, e, now),
            },
            (Pending::Refresh { session, reply }, OpResult::Authenticated(result)) => {
                self.refreshed(session, &reply, result, now);
            }
            (Pending::Ignore, _) => {}
            (pending, result) => {
                tracing::error!(?pending, ?result, "a backend result of the wrong kind");
                self.fail_pending(pending, now);
            }
        }
    }

    /// Answers a request whose operation came back with a result of the
    /// wrong kind (a driver bug), rather than leaving it unanswered.
    pub(super) fn fail_pending(&mut self, pending: Pending, now: Instant) {
        let failure = || ChannelError::new(ErrorCode::Internal, "the backend answered wrongly");
        match pending {
            Pending::Join {
                session,
                channel,
                reply,
                ..
            } => {
                if let Some(state) = self.sessions.get_mut(&session) {
                    state.joining.remove(&channel);
                }
                self.refuse(session, &reply, failure(), now);
            }
            Pending::GroupEpoch {
                session,
                channel,
                reply,
                since,
            } => self.read_history(session, channel, reply, since, None),
            Pending::Recover {
                session,
                channel,
                reply,
                ..
            } => self.recovered(session, &channel, &reply, None, None, Err(failure()), now),
            Pending::Subscription { topic, subscribe } => {
                self.subscription_done(&topic, subscribe, Err(failure()), now);
            }
            Pending::Publish { session, reply }
            | Pending::Reply { session, reply }
            | Pending::Members { session, reply, .. }
            | Pending::Recent { session, reply }
            | Pending::Custom { session, reply }
            | Pending::KeyPackages { session, reply }
            | Pending::Refresh { session, reply } => self.refuse(session, &reply, failure(), now),
            Pending::Fill {
                channel,
                epoch,
                check,
            } => {
                self.filled(&channel, &epoch, check, Err(failure()));
            }
            Pending::Ignore => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn joined(
        &mut self,
        op: OpId,
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
        info: Option<Payload>,
        result: Result<crate::types::JoinGrant, ChannelError>,
        now: Instant,
    ) {
        let joining = self
            .sessions
            .get_mut(&session)
            .and_then(|s| match s.joining.get(&channel) {
                Some(j) if j.op == op => s.joining.remove(&channel),
                _ => None,
            });
        let grant = match result {
            Err(e) => {
                if joining.is_some() {
                    self.refuse(session, &reply, e, now);
                }
                return;
            }
            Ok(grant) => grant,
        };
        let Some(joining) = joining else {
            // The session closed while joining: undo the join.
            self.op(Operation::Leave { channel, session }, Pending::Ignore);
            return;
        };
        if let Some(cancelled) = joining.cancelled {
            self.op(
                Operation::Leave {
                    channel: channel.clone(),
                    session,
                },
                Pending::Ignore,
            );
            return self.refuse(session, &reply, cancelled, now);
        }
        let state = self
            .sessions
            .get_mut(&session)
            .expect("joining came from it");
        state.channels.insert(
            channel.clone(),
            Membership {
                role: grant.role,
                info,
                stage: Stage::Recovering {
                    buffer: Vec::new(),
                    overflowed: false,
                },
                lost: false,
                floor: None,
            },
        );
        let local = self
            .channels
            .entry(channel.clone())
            .or_insert_with(|| LocalChannel {
                options: grant.options,
                members: BTreeSet::new(),
                ready: None,
                order: None,
            });
        local.members.insert(session);
        local.ready = None;
        // The others hear of the join once its stream has its start
        // (`finish_join`): what they answer with comes after it.
        if self.subscription_state(&channel) == SubState::Subscribed {
            self.continue_join(session, channel, reply, since);
        } else {
            let key = channel.clone();
            self.wait_for_subscription(
                &key,
                Waiter::Join {
                    session,
                    channel,
                    reply,
                    since,
                },
            );
        }
    }

    /// The broker subscription is in place: in an encrypted channel, read
    /// where its group is; then its history.
    pub(super) fn continue_join(
        &mut self,
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
    ) {
        let encrypted = self
            .channels
            .get(&channel)
            .is_some_and(|c| c.options.encrypted);
        if encrypted && self.config.group_reader.is_some() {
            // Before the history: commits after this read are in the
            // history page or come live, so a device that handled them
            // and is still older missed some.
            self.op(
                Operation::GroupEpoch {
                    channel: channel.clone(),
                },
                Pending::GroupEpoch {
                    session,
                    channel,
                    reply,
                    since,
                },
            );
        } else {
            self.read_history(session, channel, reply, since, None);
        }
    }

    /// Reads history (where the channel keeps it) or answers at once.
    fn read_history(
        &mut self,
        session: SessionId,
        channel: String,
        reply: ReplyTo,
        since: Option<Position>,
        group_epoch: Option<u64>,
    ) {
        if !self.is_recovering(session, &channel) {
            // Left, kicked or closed meanwhile; whoever removed it told it.
            return;
        }
        if self
            .channels
            .get(&channel)
            .is_some_and(|c| c.options.history().is_some())
        {
            self.op(
                Operation::History {
                    channel: channel.clone(),
                    since: since.clone(),
                    limit: self.config.max_recovery,
                },
                Pending::Recover {
                    session,
                    channel,
                    reply,
                    since,
                    group_epoch,
                },
            );
        } else {
            let page = HistoryPage {
                publications: Vec::new(),
                top: None,
                complete: since.is_none(),
            };
            self.finish_join(
                session,
                &channel,
                &reply,
                since.is_some(),
                group_epoch,
                page,
            );
        }
    }

    /// The user `session` is of, if it is known and named.
    fn user_of(&self, session: SessionId) -> Option<String> {
        self.sessions.get(&session).and_then(|s| s.user.clone())
    }

    fn is_recovering(&self, session: SessionId, channel: &str) -> bool {
        self.sessions
            .get(&session)
            .and_then(|s| s.channels.get(channel))
            .is_some_and(|m| matches!(m.stage, Stage::Recovering { .. }))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn recovered(
        &mut self,
        session: SessionId,
        channel: &str,
        reply: &ReplyTo,
        since: Option<Position>,
        group_epoch: Option<u64>,
        result: Result<HistoryPage, ChannelError>,
        now: Instant,
    ) {
        if !self.is_recovering(session, channel) {
            // Left, kicked or closed meanwhile; whoever removed it told it.
            return;
        }
        match result {
            Ok(page) => {
                self.finish_join(session, channel, reply, since.is_some(), group_epoch, page)
            }
            Err(e) => {
                let info = self.sessions[&session].channels[channel].info.clone();
                self.leave(session, channel, info, LeaveReason::Left);
                self.refuse(session, reply, e, now);
            }
        }
    }

    /// Answers a join, then delivers what arrived meanwhile.
    pub(super) fn finish_join(
        &mut self,
        session: SessionId,
        channel: &str,
        reply: &ReplyTo,
        asked_since: bool,
        group_epoch: Option<u64>,
        page: HistoryPage,
    ) {
        let user = self.user_of(session);
        let Some(membership) = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.channels.get_mut(channel))
        else {
            return;
        };
        let Stage::Recovering { buffer, overflowed } =
            std::mem::replace(&mut membership.stage, Stage::Active)
        else {
            return;
        };
        stale(&mut self.channels, channel);
        let encrypted = self
            .channels
            .get(channel)
            .is_some_and(|c| c.options.encrypted);
        let fields = JoinReply {
            role: membership.role.clone(),
            // So a client that does not encrypt knows not to show what
            // arrives as text.
            encrypted,
            offset: page.top.as_ref().map(|top| top.offset),
            epoch: page.top.as_ref().map(|top| top.epoch.clone()),
            recovered: asked_since.then_some(page.complete),
            publications: asked_since.then(|| {
                page.publications
                    .iter()
                    .map(|p| PublicationOut::to(p, user.as_deref()))
                    .collect()
            }),
            rejoined: false,
            external_sender: self
                .config
                .group_reader
                .as_ref()
                .filter(|_| encrypted)
                .and_then(|reader| reader.external_sender())
                .map(|sender| BASE64.encode(sender)),
            group_epoch,
        };
        let fields = json!(fields);
        let top = page.top.as_ref().map_or(0, |p| p.offset);
        if overflowed {
            membership.lost = true;
        }
        if let Some(position) = &page.top {
            // Its stream starts after `top`: live copies of what the
            // history read already covered are not delivered to it again.
            membership.floor = Some(position.offset);
            if let Some(local) = self.channels.get_mut(channel) {
                let stale = local
                    .order
                    .as_ref()
                    .is_none_or(|order| order.epoch != position.epoch);
                if stale {
                    local.order = Some(Order::after(position));
                }
            }
        }
        let info = membership.info.clone();
        self.ok(session, reply, fields);
        for publication in buffer {
            let newer = publication.position.as_ref().is_none_or(|p| p.offset > top);
            if newer {
                let welcome = publication.welcomes(user.as_deref());
                let message = protocol::publication_event(channel, &publication, welcome);
                self.deliver(channel, Arc::new([session]), None, message);
            }
        }
        // Only now, with the joiner's start fixed by its history read:
        // whatever another member publishes in answer lands after it.
        self.publish_presence_event(session, user, info, channel, Presence::Joined);
    }
}
