//! Channels, members, roles and bans on Redis (sorted sets and hashes
//! changed by scripts), and control messages to every node.

use super::*;

impl Presence for RedisBackend {
    fn join<'a>(
        &'a self,
        channel: &'a str,
        member: Member,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<JoinGrant, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.ttl_ms.store(ms(ttl), Ordering::Relaxed);
            let info = serde_json::to_string(&member).map_err(unavailable)?;
            let args = [
                member.session.to_string(),
                info,
                member.node.0.to_string(),
                user_field(member.user.as_deref()),
                ms(ttl).to_string(),
            ];
            let reply = shared
                .membership(&shared.scripts.join, channel, &args)
                .await?;
            let options: ChannelOptions =
                serde_json::from_str(&text(at(&reply, 1))).map_err(unavailable)?;
            let role = role_of(&text(at(&reply, 3)));
            shared.remember(channel, &member, &options, &role);
            Ok(JoinGrant { options, role })
        })
    }

    fn leave<'a>(
        &'a self,
        channel: &'a str,
        session: SessionId,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.node.forget(channel, session);
            let args = [session.to_string(), shared.ttl().to_string()];
            shared
                .membership(&shared.scripts.leave, channel, &args)
                .await
                .map(drop)
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
            shared.ttl_ms.store(ms(ttl), Ordering::Relaxed);
            shared
                .node
                .refresh(entries, |channel, sessions, write_back| async move {
                    shared
                        .refresh_channel(node, &channel, &sessions, ms(ttl), write_back)
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
            let shared = &self.shared;
            let args = [limit.to_string(), shared.ttl().to_string()];
            let reply = shared
                .membership(&shared.scripts.members, channel, &args)
                .await?;
            let reply = &reply[..];
            let members = items(at(reply, 4))
                .chunks(2)
                .filter_map(|pair| {
                    let mut member: Member = serde_json::from_str(&text(at(pair, 0))).ok()?;
                    member.role = role_of(&text(at(pair, 1)));
                    Some(member)
                })
                .collect();
            Ok(Roster {
                members,
                total: usize::try_from(int(at(reply, 3))).unwrap_or(usize::MAX),
            })
        })
    }

    fn kick<'a>(
        &'a self,
        channel: &'a str,
        target: &'a Target,
    ) -> BoxFuture<'a, Result<usize, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let (kind, value) = match target {
                Target::Session(session) => ("s", session.to_string()),
                Target::User(user) => ("u", user_field(Some(user))),
            };
            let args = [
                kind.to_owned(),
                value,
                shared.ttl().to_string(),
                ms(TOMBSTONE_KEPT).to_string(),
            ];
            let reply = shared
                .membership(&shared.scripts.kick, channel, &args)
                .await?;
            let reply = &reply[..];
            Ok(usize::try_from(int(at(reply, 3))).unwrap_or(0))
        })
    }
}

impl ChannelDirectory for RedisBackend {
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
            let max_channels = limits.max_channels;
            shared.ttl_ms.store(ms(ttl), Ordering::Relaxed);
            let count: usize = shared
                .command(redis::cmd("ZCARD").arg(shared.index()))
                .await?;
            if count >= max_channels {
                shared.prune_index().await?;
                let count: usize = shared
                    .command(redis::cmd("ZCARD").arg(shared.index()))
                    .await?;
                if count >= max_channels {
                    return Err(ChannelError::new(
                        ErrorCode::Limit,
                        format!("there are {max_channels} channels, the most allowed"),
                    ));
                }
            }
            if let Some(user) = &owner.user {
                shared.check_created(user, limits.max_per_user).await?;
            }
            owner.role = ChannelRole::OWNER;
            let opts = serde_json::to_string(&options).map_err(unavailable)?;
            let info = serde_json::to_string(&owner).map_err(unavailable)?;
            let args = [
                opts,
                owner.session.to_string(),
                info,
                owner.node.0.to_string(),
                user_field(owner.user.as_deref()),
                ms(ttl).to_string(),
                new_epoch(),
            ];
            let reply = shared
                .on_channel(&shared.scripts.create, channel, &args)
                .await?;
            let status = text(at(items(&reply), 0));
            if status != "ok" {
                return Err(status_error(&status, channel));
            }
            shared
                .command::<()>(redis::cmd("ZADD").arg(shared.index()).arg(0).arg(channel))
                .await?;
            if let Some(user) = &owner.user {
                // A user who created nothing for a week starts a new count.
                let key = shared.created_key(user);
                let mut add = redis::pipe();
                add.cmd("SADD")
                    .arg(&key)
                    .arg(channel)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(7 * 24 * 3600)
                    .ignore();
                let mut conn = shared.conn();
                add.query_async::<()>(&mut conn)
                    .await
                    .map_err(unavailable)?;
            }
            shared.remember(channel, &owner, &options, &ChannelRole::OWNER);
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
        Box::pin(self.shared.summary(channel))
    }

    fn channels(&self, limit: usize) -> BoxFuture<'_, Result<Vec<ChannelSummary>, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            const PAGE: usize = 256;
            let mut out = Vec::new();
            let mut start = 0usize;
            while out.len() < limit {
                let names: Vec<String> = shared
                    .command(
                        redis::cmd("ZRANGE")
                            .arg(shared.index())
                            .arg(start)
                            .arg(start + PAGE - 1),
                    )
                    .await?;
                if names.is_empty() {
                    break;
                }
                start += names.len();
                for name in names {
                    match shared.summary(&name).await? {
                        Some(summary) if out.len() < limit => out.push(summary),
                        Some(_) => break,
                        None => {
                            shared
                                .command::<()>(redis::cmd("ZREM").arg(shared.index()).arg(&name))
                                .await?;
                            start -= 1;
                        }
                    }
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
            let shared = &self.shared;
            let args = [
                user.to_owned(),
                duration.map_or(0, ms).to_string(),
                MAX_BANS_PER_CHANNEL.to_string(),
                shared.ttl().to_string(),
            ];
            shared
                .membership(&shared.scripts.ban, channel, &args)
                .await
                .map(drop)
        })
    }

    fn unban<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let removed: u64 = shared
                .command(
                    redis::cmd("HDEL")
                        .arg(shared.key(channel, "bans"))
                        .arg(user),
                )
                .await?;
            match removed {
                0 => Err(crate::backend::not_banned(channel, user)),
                _ => Ok(()),
            }
        })
    }

    fn set_role<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
        role: &'a ChannelRole,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let args = [
                user.to_owned(),
                role.as_str().to_owned(),
                MAX_ROLES_PER_CHANNEL.to_string(),
            ];
            let reply = shared
                .on_channel(&shared.scripts.set_role, channel, &args)
                .await?;
            match text(&reply).as_str() {
                "ok" => Ok(()),
                status => Err(shared.refused(status, channel)),
            }
        })
    }

    fn delete<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared
                .command::<()>(redis::cmd("DEL").arg(&shared.keys(channel)[..]))
                .await?;
            // So that a node cut off meanwhile does not write its members
            // back into a channel its owner closed.
            shared
                .command::<()>(
                    redis::cmd("SET")
                        .arg(shared.key(channel, "closed"))
                        .arg(1)
                        .arg("PX")
                        .arg(ms(TOMBSTONE_KEPT)),
                )
                .await?;
            shared
                .command::<()>(redis::cmd("ZREM").arg(shared.index()).arg(channel))
                .await
        })
    }

    fn standing<'a>(
        &'a self,
        channel: &'a str,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Standing, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let reply = shared
                .on_channel(&shared.scripts.standing, channel, &[user.to_owned()])
                .await?;
            let reply = items(&reply);
            match text(at(reply, 0)).as_str() {
                "ok" => Ok(Standing {
                    role: match text(at(reply, 1)) {
                        role if role.is_empty() => ChannelRole::PARTICIPANT,
                        role => role_of(&role),
                    },
                    banned: int(at(reply, 2)) == 1,
                }),
                status => Err(shared.refused(status, channel)),
            }
        })
    }
}

impl Controller for RedisBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        RedisBackend::attach(self, node, sink);
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
