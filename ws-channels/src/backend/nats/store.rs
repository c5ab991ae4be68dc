//! Channels, members, roles and bans in the key-value bucket, and control
//! messages to every node.

use super::*;

impl Presence for NatsBackend {
    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: Member,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let ttl = ms(ttl);
            let grant = shared
                .modify(channel, |record, now| {
                    let Some(r) = record else {
                        return (Err(not_found(channel)), false);
                    };
                    let admission = admit(&Seat {
                        banned: member.user.as_ref().is_some_and(|u| r.bans.contains_key(u)),
                        member_role: r
                            .members
                            .iter()
                            .find(|e| e.member.session == member.session)
                            .map(|e| &e.member.role),
                        members: r.members.len(),
                        max_participants: r.options.max_participants,
                        user_role: member.user.as_ref().and_then(|u| r.roles.get(u)),
                    });
                    let role = match admission {
                        Admission::Admitted(role) => role,
                        Admission::Member(role) => {
                            if let Some(entry) = r
                                .members
                                .iter_mut()
                                .find(|e| e.member.session == member.session)
                            {
                                entry.expires = now + ttl;
                            }
                            return (
                                Ok(JoinGrant {
                                    options: r.options,
                                    role,
                                }),
                                true,
                            );
                        }
                        refused => {
                            let refusal = refused
                                .refusal(channel)
                                .expect("a refusal for every admission that is not a seat");
                            return (Err(refusal), false);
                        }
                    };
                    r.add(member.clone(), role.clone(), now, ttl);
                    (
                        Ok(JoinGrant {
                            options: r.options,
                            role,
                        }),
                        true,
                    )
                })
                .await?;
            shared.remember(channel, &member, grant.options);
            Ok(grant)
        })
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        session: SessionId,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared.node.forget(channel, session);
            self.shared
                .modify(channel, |record, now| match record {
                    Some(r) => {
                        let removed = r.remove(now, |m| m.session == session);
                        (Ok(()), removed > 0)
                    }
                    None => (Ok(()), false),
                })
                .await
        })
    }

    fn refresh<'a>(
        &'a self,
        node: NodeId,
        entries: &'a [(String, SessionId)],
        ttl: Duration,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let ttl = ms(ttl);
            shared
                .node
                .refresh(entries, |channel, sessions, write_back| async move {
                    shared
                        .refresh_channel(node, &channel, &sessions, ttl, write_back)
                        .await
                })
                .await
        })
    }

    fn members<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Roster, ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, _| match record {
                    None => (Err(not_found(channel)), false),
                    Some(r) => (
                        Ok(Roster {
                            total: r.members.len(),
                            members: r
                                .members
                                .iter()
                                .take(limit)
                                .map(|e| e.member.clone())
                                .collect(),
                        }),
                        false,
                    ),
                })
                .await
        })
    }

    fn kick<'a>(
        &'a self,
        channel: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<usize, ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, now| match record {
                    None => (Err(not_found(channel)), false),
                    Some(r) => {
                        let kicked: Vec<SessionId> = r
                            .members
                            .iter()
                            .filter(|e| target.matches(e.member.session, e.member.user.as_deref()))
                            .map(|e| e.member.session)
                            .collect();
                        r.remove(now, |m| kicked.contains(&m.session));
                        let until = now + ms(TOMBSTONE_KEPT);
                        r.kicked.extend(kicked.iter().map(|s| (*s, until)));
                        (Ok(kicked.len()), !kicked.is_empty())
                    }
                })
                .await
        })
    }
}

impl ChannelDirectory for NatsBackend {
    fn create<'a>(
        &'a self,
        channel: &'a str,
        options: ChannelOptions,
        mut owner: Member,
        ttl: Duration,
        limits: CreateLimits,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let status = shared.presence.status().await.map_err(unavailable)?;
            // One value per channel (deleted ones count until compacted),
            // and the instance marker.
            let max_channels = limits.max_channels;
            if status.values() > max_channels as u64 {
                return Err(ChannelError::new(
                    ErrorCode::Limit,
                    format!("there are {max_channels} channels, the most allowed"),
                ));
            }
            if let Some(user) = &owner.user {
                shared.check_created(user, limits.max_per_user).await?;
            }
            owner.role = ChannelRole::OWNER;
            let ttl = ms(ttl);
            let granted = shared
                .modify(channel, |record, now| {
                    if record.is_some() {
                        return (
                            Err(ChannelError::new(
                                ErrorCode::AlreadyExists,
                                format!("a channel named {channel:?} exists"),
                            )),
                            false,
                        );
                    }
                    let mut r = Record::new(options);
                    if let Some(user) = &owner.user {
                        r.roles.insert(user.clone(), ChannelRole::OWNER);
                    }
                    r.creator.clone_from(&owner.user);
                    r.add(owner.clone(), ChannelRole::OWNER, now, ttl);
                    *record = Some(r);
                    (Ok(()), true)
                })
                .await;
            granted?;
            shared
                .closed
                .delete(Shared::key(channel))
                .await
                .map_err(unavailable)?;
            if let Some(user) = &owner.user {
                shared.add_created(user, channel).await?;
            }
            // A channel made anew starts a new history.
            shared.purge(channel).await?;
            shared.remember(channel, &owner, options);
            Ok(JoinGrant {
                options,
                role: ChannelRole::OWNER,
            })
        })
    }

    fn channel<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<ChannelSummary>, ChannelError>> {
        Box::pin(async move {
            self.shared.connected()?;
            Ok(self
                .shared
                .record(channel)
                .await?
                .map(|r| r.summary(channel)))
        })
    }

    fn channels(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ChannelSummary>, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let mut keys = shared.presence.keys().await.map_err(unavailable)?;
            let mut names = Vec::new();
            while let Some(key) = keys.next().await {
                if let Some(name) = key.ok().as_deref().and_then(channel_from_key) {
                    names.push(name);
                }
            }
            names.sort();
            let mut out = Vec::new();
            for name in names {
                if out.len() >= limit {
                    break;
                }
                if let Some(record) = shared.record(&name).await? {
                    out.push(record.summary(&name));
                }
            }
            Ok(out)
        })
    }

    fn ban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        duration: Option<Duration>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, now| {
                    let Some(r) = record else {
                        return (Err(not_found(channel)), false);
                    };
                    if r.bans.len() >= MAX_BANS_PER_CHANNEL && !r.bans.contains_key(user) {
                        return (
                            Err(ChannelError::new(
                                ErrorCode::Limit,
                                format!(
                                    "{channel:?} has {MAX_BANS_PER_CHANNEL} bans, the most allowed"
                                ),
                            )),
                            false,
                        );
                    }
                    let until = duration.map_or(0, |d| now.saturating_add(ms(d)));
                    r.bans.insert(user.to_owned(), until);
                    r.remove(now, |m| m.user.as_deref() == Some(user));
                    (Ok(()), true)
                })
                .await
        })
    }

    fn unban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, _| {
                    let removed = record
                        .as_mut()
                        .is_some_and(|r| r.bans.remove(user).is_some());
                    match removed {
                        true => (Ok(()), true),
                        false => (Err(crate::backend::not_banned(channel, user)), false),
                    }
                })
                .await
        })
    }

    fn set_role<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        role: &'a ChannelRole,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            self.shared
                .modify(channel, |record, _| {
                    let Some(r) = record else {
                        return (Err(not_found(channel)), false);
                    };
                    if *role == ChannelRole::PARTICIPANT {
                        r.roles.remove(user);
                    } else {
                        if r.roles.len() >= MAX_ROLES_PER_CHANNEL && !r.roles.contains_key(user) {
                            return (
                                Err(ChannelError::new(
                                    ErrorCode::Limit,
                                    format!(
                                        "{channel:?} has {MAX_ROLES_PER_CHANNEL} roles given, the most allowed"
                                    ),
                                )),
                                false,
                            );
                        }
                        r.roles.insert(user.to_owned(), role.clone());
                    }
                    for entry in &mut r.members {
                        if entry.member.user.as_deref() == Some(user) {
                            entry.member.role = role.clone();
                        }
                    }
                    (Ok(()), true)
                })
                .await
        })
    }

    fn delete<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared
                .modify(channel, |record, _| {
                    let existed = record.take().is_some();
                    (Ok(()), existed)
                })
                .await?;
            // So that a node cut off meanwhile does not write its members
            // back into a channel its owner closed (the bucket forgets it
            // after `TOMBSTONE_KEPT`).
            shared
                .closed
                .put(Shared::key(channel), bytes::Bytes::from_static(b"1"))
                .await
                .map(drop)
                .map_err(unavailable)
        })
    }

    fn standing<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Standing, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            // `record` drops expired bans and members.
            let record = shared
                .record(channel)
                .await?
                .ok_or_else(|| not_found(channel))?;
            Ok(Standing {
                role: record
                    .roles
                    .get(user)
                    .cloned()
                    .unwrap_or(ChannelRole::PARTICIPANT),
                banned: record.bans.contains_key(user),
            })
        })
    }
}

impl Controller for NatsBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        NatsBackend::attach(self, node, sink);
    }

    fn broadcast(&self, message: ControlMessage) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(super::super::cluster::broadcast(&*self.shared, message))
    }

    fn request(
        &self,
        message: ControlMessage,
        wait: Duration,
    ) -> BoxFuture<'_, Result<Reach, ChannelError>> {
        Box::pin(super::super::cluster::request(&*self.shared, message, wait))
    }
}

impl Shared {
    /// Extends `node`'s entries for `sessions` in `channel`; with
    /// `write_back`, adds back those the bucket lost, unless they were
    /// kicked or banned meanwhile or the channel was closed (those are
    /// acted on as missed control messages).
    async fn refresh_channel(
        &self,
        node: NodeId,
        channel: &str,
        sessions: &[SessionId],
        ttl: u64,
        write_back: bool,
    ) -> Result<(), ChannelError> {
        let local: Vec<LocalEntry> = if write_back {
            self.node
                .entries(channel, sessions)
                .into_iter()
                .map(|(_, entry)| entry)
                .collect()
        } else {
            Vec::new()
        };
        if !local.is_empty() && self.closed_lately(channel).await? {
            self.node.missed(ControlMessage::Closed {
                channel: channel.to_owned(),
            });
            return Ok(());
        }
        let (kicked, barred) = self
            .modify(channel, |record, now| {
                if record.is_none() && !local.is_empty() {
                    *record = Some(Record::new(local[0].options));
                }
                let Some(r) = record else {
                    return (Ok((Vec::new(), Vec::new())), false);
                };
                let mut changed = false;
                for entry in &mut r.members {
                    if entry.member.node == node && sessions.contains(&entry.member.session) {
                        entry.expires = now + ttl;
                        changed = true;
                    }
                }
                // Written back unless kicked or banned meanwhile.
                let (mut kicked, mut barred) = (Vec::new(), Vec::new());
                for entry in &local {
                    let session = entry.member.session;
                    if r.members.iter().any(|e| e.member.session == session) {
                        continue;
                    }
                    if r.kicked.contains_key(&session) {
                        kicked.push(session);
                        continue;
                    }
                    let user = entry.member.user.as_ref();
                    if user.is_some_and(|user| r.bans.contains_key(user)) {
                        barred.push(session);
                        continue;
                    }
                    let role = entry.member.role.clone();
                    if let Some(user) = user
                        && role != ChannelRole::PARTICIPANT
                    {
                        r.roles.entry(user.clone()).or_insert(role.clone());
                    }
                    r.add(entry.member.clone(), role, now, ttl);
                    changed = true;
                }
                (Ok((kicked, barred)), changed)
            })
            .await?;

        for (sessions, reason) in [(kicked, Removal::Kicked), (barred, Removal::Banned)] {
            for session in sessions {
                self.node.missed(ControlMessage::Remove {
                    channel: channel.to_owned(),
                    target: Target::Session(session),
                    reason,
                });
            }
        }
        Ok(())
    }
}
