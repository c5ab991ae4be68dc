//! A channel's entry in the key-value bucket: its options, members,
//! roles, bans and the sessions kicked lately, changed by compare-and-set;
//! and the record of which user created which channels.

use super::*;

/// One channel's presence, as stored in its key-value entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) options: ChannelOptions,
    /// The next join order.
    pub(super) seq: u64,
    /// The history epoch while the channel has no stored message.
    pub(super) epoch: String,
    /// Whether a message was published in `epoch`.
    pub(super) epoch_used: bool,
    pub(super) members: Vec<Entry>,
    pub(super) roles: BTreeMap<String, ChannelRole>,
    /// User -> until, ms since the Unix epoch; 0 for until unbanned.
    pub(super) bans: BTreeMap<String, u64>,
    /// When the last member left, ms since the Unix epoch.
    pub(super) empty_since: Option<u64>,
    /// The user who created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) creator: Option<String>,
    /// Kicked sessions -> until, ms since the Unix epoch: a node that
    /// missed the kick (cut off from the broker) must not write them back.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) kicked: BTreeMap<SessionId, u64>,
}

/// The channels a user created, as stored in the owners bucket; names of
/// channels gone (or made anew by someone else) are dropped when the user
/// reaches its limit.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Created {
    pub(super) channels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) member: Member,
    pub(super) expires: u64,
}

impl Record {
    pub(super) fn new(options: ChannelOptions) -> Self {
        Self {
            options,
            seq: 0,
            epoch: new_epoch(),
            epoch_used: false,
            members: Vec::new(),
            roles: BTreeMap::new(),
            bans: BTreeMap::new(),
            empty_since: None,
            creator: None,
            kicked: BTreeMap::new(),
        }
    }

    /// The epoch of the channel's history while the stream holds none of
    /// its messages: the record's while nothing was published in it; else
    /// the history was lost (expired from the stream, purged) and offsets
    /// start again, in an epoch derived from the record's, so that every
    /// read names the same one until the next publication takes it.
    pub(super) fn empty_history_epoch(&self) -> String {
        if self.epoch_used {
            digest_hex(&["the epoch after", &self.epoch])[..8].to_owned()
        } else {
            self.epoch.clone()
        }
    }

    /// Removes expired members and bans; the members removed.
    pub(super) fn reap(&mut self, now: u64) -> Vec<Member> {
        let mut gone = Vec::new();
        self.members.retain(|entry| {
            let keep = entry.expires > now;
            if !keep {
                gone.push(entry.member.clone());
            }
            keep
        });
        self.bans.retain(|_, until| *until == 0 || *until > now);
        self.kicked.retain(|_, until| *until > now);
        if !gone.is_empty() {
            self.settle(now);
        }
        gone
    }

    pub(super) fn settle(&mut self, now: u64) {
        if self.members.is_empty() {
            self.empty_since.get_or_insert(now);
        } else {
            self.empty_since = None;
        }
    }

    /// Whether an empty channel outlived its linger.
    pub(super) fn lingered_out(&self, now: u64) -> bool {
        self.empty_since
            .is_some_and(|since| now.saturating_sub(since) >= ms(self.options.linger))
    }

    pub(super) fn remove(&mut self, now: u64, matches: impl Fn(&Member) -> bool) -> usize {
        let before = self.members.len();
        self.members.retain(|entry| !matches(&entry.member));
        let removed = before - self.members.len();
        if removed > 0 {
            self.settle(now);
        }
        removed
    }

    pub(super) fn add(&mut self, mut member: Member, role: ChannelRole, now: u64, ttl: u64) {
        member.role = role;
        self.seq += 1;
        self.members.push(Entry {
            member,
            expires: now + ttl,
        });
        self.settle(now);
    }

    pub(super) fn summary(&self, name: &str) -> ChannelSummary {
        ChannelSummary {
            name: name.to_owned(),
            options: self.options,
            members: self.members.len(),
        }
    }
}

impl Shared {
    /// Reads `channel`'s record, lets `change` edit it (`None`: no such
    /// channel, or it lingered out) and writes it back if `change` says it
    /// changed, retrying when another node wrote in between. Expired
    /// members are removed first; `leave` events for them go out after the
    /// write.
    pub(super) async fn modify<T>(
        &self,
        channel: &str,
        mut change: impl FnMut(&mut Option<Record>, u64) -> (Result<T, ChannelError>, bool),
    ) -> Result<T, ChannelError> {
        let key = Self::key(channel);
        for _ in 0..64 {
            self.connected()?;
            let entry = self
                .presence
                .entry(key.clone())
                .await
                .map_err(unavailable)?;
            let (revision, stored) = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => (
                    Some(entry.revision),
                    serde_json::from_slice::<Record>(&entry.value).ok(),
                ),
                Some(entry) => (Some(entry.revision), None),
                None => (None, None),
            };
            let now = now_ms();
            let had = stored.is_some();
            let mut record = stored;
            let mut reaped = Vec::new();
            let mut changed = false;
            if let Some(r) = &mut record {
                reaped = r.reap(now);
                changed = !reaped.is_empty();
                if r.lingered_out(now) {
                    record = None;
                    changed = true;
                }
            }
            let presence_events = record.as_ref().is_some_and(|r| r.options.presence_events);
            let (result, edited) = change(&mut record, now);
            if !(changed || edited) {
                return result;
            }
            let written = match (&record, revision) {
                (Some(r), revision) => {
                    let bytes = serde_json::to_vec(r).map_err(unavailable)?.into();
                    match revision {
                        Some(revision) => self
                            .presence
                            .update(&key, bytes, revision)
                            .await
                            .map(drop)
                            .map_err(|e| {
                                (
                                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                                    e.to_string(),
                                )
                            }),
                        None => self
                            .presence
                            .create(&key, bytes)
                            .await
                            .map(drop)
                            .map_err(|e| {
                                (
                                    e.kind() == kv::CreateErrorKind::AlreadyExists,
                                    e.to_string(),
                                )
                            }),
                    }
                }
                (None, Some(revision)) if had => self
                    .presence
                    .delete_expect_revision(&key, Some(revision))
                    .await
                    .map_err(|e| (true, e.to_string())),
                (None, _) => Ok(()),
            };
            match written {
                Ok(()) => {
                    let others = self.node.expired(reaped);
                    if presence_events {
                        self.leaves(channel, others).await;
                    }
                    return result;
                }
                Err((true, _)) => continue,
                Err((false, error)) => return Err(unavailable(error)),
            }
        }
        Err(ChannelError::unavailable(format!(
            "nats: {channel:?} changed too often to update"
        )))
    }

    /// Fails with `limit` when `user` has created `max` channels that
    /// still exist; the list loses the ones that do not (gone, lingered
    /// out, or made anew by someone else) first.
    pub(super) async fn check_created(&self, user: &str, max: usize) -> Result<(), ChannelError> {
        let key = format!("u.{}", hex(user));
        let (created, _) = self.read_created(&key).await?;
        if created.channels.len() < max {
            return Ok(());
        }
        let now = now_ms();
        let mut alive = Vec::new();
        for channel in &created.channels {
            let entry = self
                .presence
                .entry(Self::key(channel))
                .await
                .map_err(unavailable)?;
            let record = entry
                .filter(|e| e.operation == kv::Operation::Put)
                .and_then(|e| serde_json::from_slice::<Record>(&e.value).ok());
            if record.is_some_and(|r| !r.lingered_out(now) && r.creator.as_deref() == Some(user)) {
                alive.push(channel.clone());
            }
        }
        let count = alive.len();
        self.change_created(&key, |created| {
            created.channels.retain(|name| alive.contains(name));
        })
        .await?;
        if count >= max {
            return Err(crate::backend::too_many_owned(max));
        }
        Ok(())
    }

    /// Adds `channel` to `user`'s created channels.
    pub(super) async fn add_created(&self, user: &str, channel: &str) -> Result<(), ChannelError> {
        let key = format!("u.{}", hex(user));
        self.change_created(&key, |created| {
            if !created.channels.iter().any(|name| name == channel) {
                created.channels.push(channel.to_owned());
            }
        })
        .await
    }

    pub(super) async fn read_created(
        &self,
        key: &str,
    ) -> Result<(Created, Option<u64>), ChannelError> {
        entry::read(&self.created, key).await
    }

    /// Edits a user's created channels by compare-and-set, retrying when
    /// another node wrote in between.
    pub(super) async fn change_created(
        &self,
        key: &str,
        change: impl Fn(&mut Created),
    ) -> Result<(), ChannelError> {
        entry::change(&self.created, key, "a user's created channels", |created| {
            change(created);
            Ok(((), true))
        })
        .await
    }
}
