//! Commands from sessions: checked (rate, names, sizes, roles), answered
//! at once or turned into backend operations.

use super::*;
use crate::backend::{KeyPackageLimits, KeyPackageUpload, StoredKeyPackage};
use crate::e2e::{COMMIT_KIND, GroupReader, MAX_KEY_PACKAGE_BYTES, PROPOSAL_KIND};
use crate::protocol::KEYS_CHANNEL;
use crate::types::Welcome;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Departures from encrypted channels a node keeps waiting out
/// (`group_member_linger`); a few in tests, so the bound is tried.
pub(super) const MAX_DEPARTURES: usize = if cfg!(test) { 4 } else { 100_000 };

/// Users one commit's Welcome may name (`welcome_to`): more than one
/// commit adds within the handshake budget.
pub(super) const MAX_WELCOME_USERS: usize = 1000;

/// Base64 `text` from the command's `field`, decoded.
fn base64(field: &str, text: &str) -> Result<Vec<u8>, ChannelError> {
    BASE64.decode(text).map_err(|e| {
        error(
            ErrorCode::BadRequest,
            format!("`{field}` is not base64: {e}"),
        )
    })
}

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
        if let Err(refusal) = self.command(session, request, &reply, now) {
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
        now: Instant,
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
            Command::Refresh { token } => self.refresh(session, &channel, token, reply)?,
            Command::Leave => {
                let info = self.permitted(session, &channel, "leave")?.info.clone();
                let user = self.sessions.get(&session).and_then(|s| s.user.clone());
                let encrypted = self.is_encrypted(&channel);
                self.leave(session, &channel, info, LeaveReason::Left);
                if encrypted {
                    self.note_departure(user.as_deref(), &channel, now);
                }
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
                if options.is_some_and(|o| o.encrypted) {
                    match data.e2e_kind() {
                        Some(kind) if kind == COMMIT_KIND => {
                            return Err(error(
                                ErrorCode::BadRequest,
                                "a group's commits go through `commit`, which orders them",
                            ));
                        }
                        Some(kind) if kind == PROPOSAL_KIND => {
                            return Err(error(
                                ErrorCode::BadRequest,
                                "only the server proposes in a channel's group",
                            ));
                        }
                        Some(kind) if !kind.is_empty() => {}
                        _ => {
                            return Err(error(
                                ErrorCode::BadRequest,
                                "an encrypted channel carries only end-to-end envelopes ({\"e2e\": \"<kind>\", ...})",
                            ));
                        }
                    }
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
            Command::Commit {
                commit,
                welcome,
                welcome_to,
                group_info,
            } => self.commit(
                session,
                channel,
                commit,
                (welcome, welcome_to, group_info),
                reply,
            )?,
            Command::KeyPackages {
                key_packages,
                last_resort,
            } => self.upload_key_packages(session, &channel, key_packages, last_resort, reply)?,
            Command::Claim { user, except } => {
                self.permitted(session, &channel, "commit")?;
                self.encrypted_channel(&channel)?;
                self.group_reader()?;
                // A user has at most that many devices in the directory,
                // so a longer list says nothing more; bounded, it cannot
                // make a claim cost more than the user's own entry.
                if except.len() > self.config.max_devices_per_user {
                    return Err(ChannelError::new(
                        ErrorCode::BadRequest,
                        format!(
                            "`except` names at most {} devices (max_devices_per_user)",
                            self.config.max_devices_per_user
                        ),
                    ));
                }
                self.op(
                    Operation::ClaimKeyPackages { user, except },
                    Pending::KeyPackages {
                        session,
                        reply: reply.clone(),
                    },
                );
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

    /// `commit`: checked here (role, channel, size, framing), ordered by
    /// the broker ([`Operation::Commit`]).
    fn commit(
        &mut self,
        session: SessionId,
        channel: String,
        commit: String,
        (welcome, welcome_to, group_info): (Option<String>, Option<Vec<String>>, Option<String>),
        reply: &ReplyTo,
    ) -> Result<(), ChannelError> {
        let info = self.permitted(session, &channel, "commit")?.info.clone();
        let options = self.encrypted_channel(&channel)?;
        let Some(history) = options.history() else {
            return Err(error(
                ErrorCode::BadRequest,
                "this encrypted channel keeps no history: a group's commits need it (create it with history_size)",
            ));
        };
        let size = commit.len()
            + welcome.as_ref().map_or(0, String::len)
            + group_info.as_ref().map_or(0, String::len);
        if size > self.config.max_handshake {
            return Err(error(
                ErrorCode::Limit,
                format!(
                    "a commit with its Welcome and GroupInfo is at most {} bytes",
                    self.config.max_handshake
                ),
            ));
        }
        let reader = self.group_reader()?;
        let bytes = base64("commit", &commit)?;
        if let Some(welcome) = &welcome {
            base64("welcome", welcome)?;
        }
        if let Some(group_info) = &group_info {
            base64("group_info", group_info)?;
        }
        if let Some(users) = &welcome_to {
            self.check_welcome_to(users, welcome.is_some())?;
        }
        let frame = reader
            .read_commit(&bytes)
            .map_err(|e| error(ErrorCode::BadRequest, format!("not a commit: {e}")))?;
        if frame.group != channel.as_bytes() {
            return Err(error(
                ErrorCode::BadRequest,
                "the commit is for another group: a channel's group is named after the channel",
            ));
        }
        let mut data = json!({ "e2e": COMMIT_KIND, "epoch": frame.epoch, "commit": commit });
        let mut addressed = None;
        match (welcome, welcome_to) {
            (Some(message), Some(users)) => addressed = Some(Welcome { users, message }),
            (Some(welcome), None) => data["welcome"] = Value::String(welcome),
            (None, _) => {}
        }
        let from = ClientInfo {
            session,
            user: self.sessions[&session].user.clone(),
            info,
        };
        let mut publication = Publication::message(Some(from), Payload::new(&data));
        publication.welcome = addressed;
        self.op(
            Operation::Commit {
                channel,
                publication,
                history,
                epoch: frame.epoch,
                group_info,
            },
            Pending::Publish {
                session,
                reply: reply.clone(),
            },
        );
        Ok(())
    }

    /// `welcome_to`: the users a commit's Welcome adds, each a user name,
    /// at most [`MAX_WELCOME_USERS`], with a Welcome to address.
    fn check_welcome_to(&self, users: &[String], has_welcome: bool) -> Result<(), ChannelError> {
        if !has_welcome {
            return Err(error(
                ErrorCode::BadRequest,
                "`welcome_to` without a `welcome`",
            ));
        }
        if users.is_empty() || users.len() > MAX_WELCOME_USERS {
            return Err(error(
                ErrorCode::BadRequest,
                format!("`welcome_to` names 1 to {MAX_WELCOME_USERS} users"),
            ));
        }
        if users
            .iter()
            .any(|user| user.is_empty() || user.len() > self.config.max_name_len)
        {
            return Err(error(
                ErrorCode::BadRequest,
                format!(
                    "`welcome_to` holds user names, of 1 to {} bytes",
                    self.config.max_name_len
                ),
            ));
        }
        Ok(())
    }

    /// The options of `channel`, an encrypted channel this node has
    /// members in.
    fn encrypted_channel(&self, channel: &str) -> Result<ChannelOptions, ChannelError> {
        match self.channels.get(channel).map(|c| c.options) {
            Some(options) if options.encrypted => Ok(options),
            _ => Err(error(
                ErrorCode::BadRequest,
                format!("{channel:?} is not an encrypted channel"),
            )),
        }
    }

    /// The reader of end-to-end groups' messages, if the server has one.
    fn group_reader(&self) -> Result<Arc<dyn GroupReader>, ChannelError> {
        self.config.group_reader.clone().ok_or_else(|| {
            error(
                ErrorCode::BadRequest,
                "this server does not serve end-to-end groups (it has no group reader)",
            )
        })
    }

    /// `key_packages`: every package checked to be valid, in the session's
    /// user's name and of one device, then kept in the directory.
    fn upload_key_packages(
        &mut self,
        session: SessionId,
        channel: &str,
        key_packages: Vec<String>,
        last_resort: Option<String>,
        reply: &ReplyTo,
    ) -> Result<(), ChannelError> {
        if channel != KEYS_CHANNEL {
            return Err(error(
                ErrorCode::BadRequest,
                format!("key_packages is sent to the channel {KEYS_CHANNEL:?}"),
            ));
        }
        let reader = self.group_reader()?;
        let Some(user) = self.sessions[&session].user.clone() else {
            return Err(error(
                ErrorCode::Forbidden,
                "key packages name a user: anonymous sessions have none",
            ));
        };
        let mut device: Option<String> = None;
        let mut check = |text: &str| -> Result<StoredKeyPackage, ChannelError> {
            if text.len() > MAX_KEY_PACKAGE_BYTES {
                return Err(error(
                    ErrorCode::Limit,
                    format!("a key package is at most {MAX_KEY_PACKAGE_BYTES} bytes of base64"),
                ));
            }
            let frame = reader
                .read_key_package(&base64("key_packages", text)?)
                .map_err(|e| error(ErrorCode::BadRequest, format!("a bad key package: {e}")))?;
            if frame.user != user {
                return Err(error(
                    ErrorCode::Forbidden,
                    format!(
                        "a key package in the name of {:?}: a user uploads only its own",
                        frame.user
                    ),
                ));
            }
            match &device {
                Some(device) if *device != frame.device => {
                    return Err(error(
                        ErrorCode::BadRequest,
                        "the key packages of one upload come from one device",
                    ));
                }
                Some(_) => {}
                None => device = Some(frame.device),
            }
            Ok(StoredKeyPackage {
                package: text.to_owned(),
                expires: frame.expires,
            })
        };
        let one_time = key_packages
            .iter()
            .map(|text| check(text))
            .collect::<Result<Vec<_>, _>>()?;
        let last_resort = last_resort.as_deref().map(&mut check).transpose()?;
        let upload = KeyPackageUpload {
            // No package: a question about the user's devices.
            device: device.unwrap_or_default(),
            one_time,
            last_resort,
        };
        self.op(
            Operation::UploadKeyPackages {
                user,
                upload,
                limits: KeyPackageLimits {
                    per_device: self.config.max_key_packages_per_device,
                    devices: self.config.max_devices_per_user,
                },
            },
            Pending::KeyPackages {
                session,
                reply: reply.clone(),
            },
        );
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
                    external_sender: None,
                    group_epoch: None,
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
            welcome: None,
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

    /// Whether `channel`, which this node has members in, is encrypted.
    pub(super) fn is_encrypted(&self, channel: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.options.encrypted)
    }

    /// `user`'s session left `channel`, an encrypted channel, here: their
    /// removal from its group is proposed after `group_member_linger`
    /// unless they have a session in it by then, here or elsewhere.
    /// Whether they still have a session here is asked when it is due, not
    /// now: a mass disconnect then costs no scan of the channel per session.
    pub(super) fn note_departure(&mut self, user: Option<&str>, channel: &str, now: Instant) {
        let linger = self.config.group_member_linger;
        let Some(user) = user else { return };
        if linger.is_zero() {
            return;
        }
        let key = (channel.to_owned(), user.to_owned());
        if let Some(earlier) = self.departed.insert(key.clone(), now + linger) {
            self.departures
                .remove(&(earlier, key.0.clone(), key.1.clone()));
        }
        self.departures.insert((now + linger, key.0, key.1));
        // Bounded: past the bound the one due first is checked now (an
        // early check of a user who left; none is dropped).
        while self.departures.len() > MAX_DEPARTURES {
            self.depart_first();
        }
    }

    /// Takes the departure due first: unless the user is back in the
    /// channel on this node, the backends propose their removal if
    /// presence lists none of their sessions anywhere.
    pub(super) fn depart_first(&mut self) {
        let Some((_, channel, user)) = self.departures.pop_first() else {
            return;
        };
        self.departed.remove(&(channel.clone(), user.clone()));
        if !self.is_here(&user, &channel) {
            self.op(
                Operation::RemoveFromGroupIfAway { channel, user },
                Pending::Ignore,
            );
        }
    }

    /// Whether a session of `user` on this node is in `channel`.
    pub(super) fn is_here(&self, user: &str, channel: &str) -> bool {
        self.channels.get(channel).is_some_and(|local| {
            local.members.iter().any(|session| {
                self.sessions
                    .get(session)
                    .is_some_and(|s| s.user.as_deref() == Some(user))
            })
        })
    }

    pub(super) fn drop_member(&mut self, session: SessionId, channel: &str) {
        if let Some(local) = self.channels.get_mut(channel) {
            local.members.remove(&session);
            local.ready = None;
        }
    }
}
