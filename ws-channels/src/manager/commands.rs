//! Commands from sessions: checked (rate, names, sizes, roles), answered
//! at once or turned into backend operations.

use super::*;

impl ChannelManager {
    /// A command envelope from a session.
    pub fn handle_command(&mut self, session: SessionId, envelope: Envelope, now: Instant) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        if state.closing {
            return;
        }
        let reply = ReplyTo::of(&envelope);
        if self.config.command_rate > 0 && !state.commands.try_take(1, now) {
            let refusal = error(
                ErrorCode::Limit,
                format!("more than {} commands a second", self.config.command_rate),
            );
            return self.refuse(session, &reply, refusal, now);
        }
        let config = self.config.clone();
        let request = match protocol::parse(envelope, |name| config.commands.contains_key(name)) {
            Ok(request) => request,
            Err(refusal) => return self.refuse(session, &reply, refusal, now),
        };
        if let Err(refusal) = self.command(session, request, &reply) {
            self.refuse(session, &reply, refusal, now);
        }
    }

    pub(super) fn refuse(
        &mut self,
        session: SessionId,
        reply: &ReplyTo,
        refusal: ChannelError,
        now: Instant,
    ) {
        let Some(state) = self.sessions.get_mut(&session) else {
            return;
        };
        let violation = refusal.code.is_violation();
        self.actions.push_back(Action::Send {
            session,
            envelope: reply.error(&refusal),
        });
        if violation && !state.violations.try_take(1, now) && !state.closing {
            start_closing(&mut self.channels, state);
            self.actions.push_back(Action::Disconnect {
                session,
                code: CloseCode::POLICY_VIOLATION,
                reason: "too many refused commands".into(),
            });
        }
    }

    pub(super) fn ok(&mut self, session: SessionId, reply: &ReplyTo, fields: Value) {
        self.actions.push_back(Action::Send {
            session,
            envelope: reply.ok(fields),
        });
    }

    pub(super) fn op(&mut self, operation: Operation, pending: Pending) -> OpId {
        let op = self.pending.start(pending);
        self.actions.push_back(Action::Backend { op, operation });
        op
    }

    pub(super) fn check_name(&self, name: &str) -> Result<(), ChannelError> {
        if name.len() > self.config.max_name_len {
            return Err(error(
                ErrorCode::Limit,
                format!("names are at most {} bytes", self.config.max_name_len),
            ));
        }
        if !self.config.is_valid_name(name) {
            return Err(error(
                ErrorCode::BadRequest,
                "names are 1 or more of A-Z a-z 0-9 _ - . : @ / =",
            ));
        }
        Ok(())
    }

    pub(super) fn check_info(&self, info: &Option<Payload>) -> Result<(), ChannelError> {
        match info {
            Some(info) if info.len() > self.config.max_info => Err(error(
                ErrorCode::Limit,
                format!("info is at most {} bytes", self.config.max_info),
            )),
            _ => Ok(()),
        }
    }

    /// The session's membership, if it may use `command` in `channel`.
    pub(super) fn permitted(
        &self,
        session: SessionId,
        channel: &str,
        command: &str,
    ) -> Result<&Membership, ChannelError> {
        let membership = self.sessions[&session]
            .channels
            .get(channel)
            .ok_or_else(|| error(ErrorCode::NotMember, format!("not in {channel:?}")))?;
        if !self.config.allows(&membership.role, command) {
            return Err(error(
                ErrorCode::Forbidden,
                format!("the role {} may not {command}", membership.role),
            ));
        }
        Ok(membership)
    }

    pub(super) fn member_record(&self, session: SessionId, info: Option<Payload>) -> Member {
        Member {
            session,
            node: self.node,
            user: self.sessions[&session].user.clone(),
            info,
            role: ChannelRole::PARTICIPANT,
        }
    }

    pub(super) fn command(
        &mut self,
        session: SessionId,
        request: Request,
        reply: &ReplyTo,
    ) -> Result<(), ChannelError> {
        let Request { channel, command } = request;
        match command {
            Command::Create {
                max_participants,
                history_size,
                history_ttl,
                presence_events,
                encrypted,
                info,
            } => {
                self.check_name(&channel)?;
                self.check_info(&info)?;
                self.check_room_for_channel(session, &channel)?;
                let options = self
                    .config
                    .channel_options(
                        max_participants,
                        history_size,
                        history_ttl,
                        presence_events,
                        encrypted,
                    )
                    .map_err(|m| error(ErrorCode::Limit, m))?;
                let operation = Operation::Create {
                    channel: channel.clone(),
                    options,
                    owner: self.member_record(session, info.clone()),
                    ttl: self.config.presence_ttl,
                    limits: crate::backend::CreateLimits {
                        max_channels: self.config.max_channels,
                        max_per_user: self.config.max_channels_per_user,
                    },
                };
                self.start_join(session, channel, reply, None, info, operation);
            }
            Command::Join { since, info } => {
                self.check_name(&channel)?;
                self.check_info(&info)?;
                if self.sessions[&session].channels.contains_key(&channel) {
                    return self.rejoin(session, channel, reply, since);
                }
                self.check_room_for_channel(session, &channel)?;
                let operation = Operation::Join {
                    channel: channel.clone(),
                    member: self.member_record(session, info.clone()),
                    ttl: self.config.presence_ttl,
                };
                self.start_join(session, channel, reply, since, info, operation);
            }
            Command::Leave => {
                let info = self.permitted(session, &channel, "leave")?.info.clone();
                self.leave(session, &channel, info, LeaveReason::Left);
                self.ok(session, reply, json!({}));
            }
            Command::Publish {
                data,
                idempotency_key,
            } => {
                let membership = self.permitted(session, &channel, "publish")?;
                if data.len() > self.config.max_payload {
                    return Err(error(
                        ErrorCode::Limit,
                        format!("data is at most {} bytes", self.config.max_payload),
                    ));
                }
                let options = self.channels.get(&channel).map(|c| c.options);
                if options.is_some_and(|o| o.encrypted) && !data.is_e2e_envelope() {
                    return Err(error(
                        ErrorCode::BadRequest,
                        "an encrypted channel carries only end-to-end envelopes ({\"e2e\": \"<kind>\", ...})",
                    ));
                }
                let from = ClientInfo {
                    session,
                    user: self.sessions[&session].user.clone(),
                    info: membership.info.clone(),
                };
                let history = options.and_then(|o| o.history());
                if idempotency_key.is_some() && history.is_none() {
                    return Err(error(
                        ErrorCode::BadRequest,
                        "an idempotency key needs a channel with history: its reply is the first publication's offset",
                    ));
                }
                // Scoped to the publisher, so that nobody can make another
                // user's publish a "duplicate" by sending its key first.
                let idempotency_key = idempotency_key.map(|key| match &from.user {
                    Some(user) => format!("u{}:{user}:{key}", user.len()),
                    None => format!("s:{session}:{key}"),
                });
                self.op(
                    Operation::Publish {
                        channel,
                        publication: Publication::message(Some(from), data),
                        history,
                        idempotency_key,
                    },
                    Pending::Publish {
                        session,
                        reply: reply.clone(),
                    },
                );
            }
            Command::Kick { target } => {
                self.permitted(session, &channel, "kick")?;
                self.op_reply(Operation::Kick { channel, target }, session, reply);
            }
            Command::Ban { user, duration } => {
                self.permitted(session, &channel, "ban")?;
                if self.sessions[&session].user.as_deref() == Some(user.as_str()) {
                    return Err(error(ErrorCode::BadRequest, "a user cannot ban itself"));
                }
                const MAX_BAN_SECS: u64 = 10 * 366 * 24 * 3600;
                if duration.is_some_and(|d| d == 0 || d > MAX_BAN_SECS) {
                    return Err(error(
                        ErrorCode::BadRequest,
                        format!("duration is 1 to {MAX_BAN_SECS} seconds, or absent for no end"),
                    ));
                }
                self.op_reply(
                    Operation::Ban {
                        channel,
                        user,
                        duration: duration.map(Duration::from_secs),
                    },
                    session,
                    reply,
                );
            }
            Command::Unban { user } => {
                self.permitted(session, &channel, "unban")?;
                self.op_reply(Operation::Unban { channel, user }, session, reply);
            }
            Command::SetRole { user, role } => {
                self.permitted(session, &channel, "role")?;
                if !self.config.is_known_role(&role) {
                    return Err(error(
                        ErrorCode::BadRequest,
                        format!("no role named {:?}", role.as_str()),
                    ));
                }
                self.op_reply(
                    Operation::SetRole {
                        channel,
                        user,
                        role,
                    },
                    session,
                    reply,
                );
            }
            Command::Close => {
                self.permitted(session, &channel, "close")?;
                self.op_reply(Operation::Close { channel }, session, reply);
            }
            Command::Presence { limit } => {
                self.permitted(session, &channel, "presence")?;
                let limit = limit
                    .unwrap_or(self.config.max_presence_reply)
                    .min(self.config.max_presence_reply);
                self.op(
                    Operation::Members { channel, limit },
                    Pending::Members {
                        session,
                        reply: reply.clone(),
                        limit,
                    },
                );
            }
            Command::History { limit } => {
                self.permitted(session, &channel, "history")?;
                let kept = self
                    .channels
                    .get(&channel)
                    .and_then(|c| c.options.history())
                    .map_or(0, |h| h.size as usize);
                let limit = limit
                    .unwrap_or(kept)
                    .min(kept)
                    .min(self.config.max_recovery);
                self.op(
                    Operation::Recent { channel, limit },
                    Pending::Recent {
                        session,
                        reply: reply.clone(),
                    },
                );
            }
            Command::Subscribe { filter } => {
                self.subscribe_topic(session, channel, filter, reply)?
            }
            Command::Unsubscribe => {
                if self
                    .sessions
                    .get_mut(&session)
                    .and_then(|s| s.topics.remove(&channel))
                    .is_none()
                {
                    return Err(error(
                        ErrorCode::NotFound,
                        format!("not subscribed to {channel:?}"),
                    ));
                }
                self.drop_topic_subscriber(session, &channel);
                self.ok(session, reply, json!({}));
            }
            Command::Custom { name, data } => {
                let role = self.permitted(session, &channel, &name)?.role.clone();
                let op = self.pending.start(Pending::Custom {
                    session,
                    reply: reply.clone(),
                });
                self.actions.push_back(Action::Custom {
                    op,
                    command: CustomCommand {
                        session,
                        user: self.sessions[&session].user.clone(),
                        channel,
                        name,
                        data,
                        role,
                    },
                });
            }
        }
        Ok(())
    }

    pub(super) fn check_room_for_channel(
        &self,
        session: SessionId,
        channel: &str,
    ) -> Result<(), ChannelError> {
        let state = &self.sessions[&session];
        if state.joining.contains_key(channel) {
            return Err(error(
                ErrorCode::BadRequest,
                format!("already joining {channel:?}"),
            ));
        }
        if state.channels.len() + state.joining.len() >= self.config.max_channels_per_session {
            return Err(error(
                ErrorCode::Limit,
                format!(
                    "a session is in at most {} channels",
                    self.config.max_channels_per_session
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn start_join(
        &mut self,
        session: SessionId,
        channel: String,
        reply: &ReplyTo,
        since: Option<Position>,
        info: Option<Payload>,
        operation: Operation,
    ) {
        let op = self.op(
            operation,
            Pending::Join {
                session,
                channel: channel.clone(),
                reply: reply.clone(),
                since,
                info,
            },
        );
        if let Some(state) = self.sessions.get_mut(&session) {
            state.joining.insert(
                channel,
                Joining {
                    op,
                    cancelled: None,
                },
            );
        }
    }

    /// `join` from a member: with `since`, a recovery; without, only the
    /// role.
    pub(super) fn rejoin(
        &mut self,
        session: SessionId,
        channel: String,
        reply: &ReplyTo,
        since: Option<Position>,
    ) -> Result<(), ChannelError> {
        let has_history = self
            .channels
            .get(&channel)
            .is_some_and(|c| c.options.history().is_some());
        let membership = self
            .sessions
            .get_mut(&session)
            .and_then(|s| s.channels.get_mut(&channel))
            .expect("checked by the caller");
        let role = membership.role.clone();
        match (since, &membership.stage) {
            (Some(since), Stage::Active) if has_history => {
                membership.stage = Stage::Recovering {
                    buffer: Vec::new(),
                    overflowed: false,
                };
                stale(&mut self.channels, &channel);
                self.continue_join(session, channel, reply.clone(), Some(since));
            }
            (_, Stage::Recovering { .. }) => {
                return Err(error(
                    ErrorCode::BadRequest,
                    format!("already joining {channel:?}"),
                ));
            }
            _ => {
                let rejoined: JoinReply<PublicationOut<'_>> = JoinReply {
                    role,
                    encrypted: false,
                    offset: None,
                    epoch: None,
                    recovered: None,
                    publications: None,
                    rejoined: true,
                };
                self.ok(session, reply, json!(rejoined));
            }
        }
        Ok(())
    }

    pub(super) fn leave(
        &mut self,
        session: SessionId,
        channel: &str,
        info: Option<Payload>,
        reason: LeaveReason,
    ) {
        let user = self.sessions.get_mut(&session).and_then(|s| {
            s.channels.remove(channel);
            s.user.clone()
        });
        self.drop_member(session, channel);
        self.op(
            Operation::Leave {
                channel: channel.to_owned(),
                session,
            },
            Pending::Ignore,
        );
        self.publish_presence_event(session, user, info, channel, Presence::Left(reason));
        self.reconcile(channel);
    }

    pub(super) fn publish_presence_event(
        &mut self,
        session: SessionId,
        user: Option<String>,
        info: Option<Payload>,
        channel: &str,
        presence: Presence,
    ) {
        if !self
            .channels
            .get(channel)
            .is_some_and(|c| c.options.presence_events)
        {
            return;
        }
        let (kind, reason) = match presence {
            Presence::Joined => (PublicationKind::Join, None),
            Presence::Left(reason) => (PublicationKind::Leave, Some(reason)),
        };
        let publication = Publication {
            kind,
            position: None,
            from: Some(ClientInfo {
                session,
                user,
                info,
            }),
            data: None,
            reason,
        };
        self.op(
            Operation::Publish {
                channel: channel.to_owned(),
                publication,
                history: None,
                idempotency_key: None,
            },
            Pending::Ignore,
        );
    }

    /// Starts `operation`, whose result answers `reply`.
    pub(super) fn op_reply(&mut self, operation: Operation, session: SessionId, reply: &ReplyTo) {
        self.op(
            operation,
            Pending::Reply {
                session,
                reply: reply.clone(),
            },
        );
    }

    pub(super) fn drop_member(&mut self, session: SessionId, channel: &str) {
        if let Some(local) = self.channels.get_mut(channel) {
            local.members.remove(&session);
            local.ready = None;
        }
    }
}
