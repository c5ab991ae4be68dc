//! History in the JetStream stream: appending with per-channel offsets by
//! compare-and-set, reading back, epochs.

use super::*;

impl Shared {
    /// Walks a channel's history back from its newest message for as long
    /// as `more(offset, taken)` says, each message checked to be the one
    /// expected: its offset, this epoch, not expired, within the byte
    /// budget. The publications, newest first, and whether the walk ended
    /// because `more` said so rather than at a message missing or out of
    /// place.
    pub(super) async fn walk_back(
        &self,
        walk: Walk<'_>,
        mut more: impl FnMut(u64, usize) -> bool,
    ) -> (Vec<Publication>, bool) {
        let now = now_ms();
        let mut publications = Vec::new();
        let mut sequence = walk.sequence;
        let mut expected = walk.top;
        let mut bytes = 0u64;
        while more(expected, publications.len()) {
            let Ok(message) = self.history.get_raw_message(sequence).await else {
                return (publications, false);
            };
            let headers = &message.headers;
            bytes += message.payload.len() as u64;
            let fits = bytes <= walk.budget
                && header_u64(headers, OFFSET) == Some(expected)
                && headers.get(EPOCH).map(|e| e.as_str()) == Some(walk.epoch)
                && header_u64(headers, EXPIRES).is_some_and(|x| x > now);
            match serde_json::from_slice::<Publication>(&message.payload) {
                Ok(mut publication) if fits => {
                    publication.position = Some(Position {
                        offset: expected,
                        epoch: walk.epoch.to_owned(),
                    });
                    publications.push(publication);
                }
                _ => return (publications, false),
            }
            sequence = header_u64(headers, PREVIOUS).unwrap_or(0);
            expected -= 1;
        }
        (publications, true)
    }

    /// Appends `publication` to `channel`'s history (which republishes it
    /// live) at the next offset, racing publishers retrying on the
    /// stream's last-sequence check. With an idempotency `key`, JetStream
    /// drops a publish whose message id it saw within its duplicate window
    /// ([`IDEMPOTENCY_WINDOW`]) and names the first; its position is read
    /// back from the stream.
    pub(super) async fn append(
        &self,
        channel: &str,
        publication: &Publication,
        spec: HistorySpec,
        key: Option<&str>,
        commit_epoch: Option<u64>,
    ) -> Result<Published, ChannelError> {
        self.connected()?;
        let payload: bytes::Bytes = serde_json::to_vec(publication).map_err(unavailable)?.into();
        let subject = self.history_subject(channel);
        let jetstream = jetstream::new(self.client.clone());
        for _ in 0..64 {
            let (previous, offset, epoch, group_epoch) = match self.newest(channel).await? {
                Some(newest) => (
                    newest.sequence,
                    newest.offset + 1,
                    newest.epoch,
                    newest.group_epoch,
                ),
                None => {
                    let (epoch, group_epoch) = self.fresh_epoch(channel).await?;
                    (0, 1, epoch, group_epoch)
                }
            };
            // The group's epoch travels on every message, so the newest
            // one says it; the stream's last-sequence check makes the
            // comparison and the append one step.
            let group_epoch = match (commit_epoch, group_epoch) {
                (Some(want), Some(at)) if want != at => {
                    return Err(group_conflict(channel, at, want));
                }
                (Some(want), _) => Some(want + 1),
                (None, known) => known,
            };
            let mut headers = HeaderMap::new();
            if let Some(group_epoch) = group_epoch {
                headers.insert(GROUP_EPOCH, group_epoch.to_string().as_str());
            }
            headers.insert(OFFSET, offset.to_string().as_str());
            headers.insert(EPOCH, epoch.as_str());
            headers.insert(EXPIRES, (now_ms() + ms(spec.ttl)).to_string().as_str());
            headers.insert(PREVIOUS, previous.to_string().as_str());
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                previous.to_string().as_str(),
            );
            if let Some(key) = key {
                // Per channel and epoch (the stream holds every channel);
                // hashed, so no user name shows in the stream.
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    digest_hex(&[channel, &epoch, key]).as_str(),
                );
            }
            let ack = jetstream
                .publish_with_headers(subject.clone(), headers, payload.clone())
                .await
                .map_err(unavailable)?
                .await;
            match ack {
                Ok(ack) if ack.duplicate => {
                    return Ok(Published {
                        position: self.position_of(ack.sequence).await,
                        duplicate: true,
                    });
                }
                Ok(_) => {
                    return Ok(Published {
                        position: Some(Position { offset, epoch }),
                        duplicate: false,
                    });
                }
                Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                    continue;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ChannelError::unavailable(format!(
            "nats: too many publishers raced on {channel:?}"
        )))
    }

    /// The channel position of the stream's message `sequence`, if the
    /// stream still holds it.
    pub(super) async fn position_of(&self, sequence: u64) -> Option<Position> {
        let message = self.history.get_raw_message(sequence).await.ok()?;
        Some(Position {
            offset: header_u64(&message.headers, OFFSET)?,
            epoch: message.headers.get(EPOCH)?.as_str().to_owned(),
        })
    }

    /// The channel's newest stored message: stream sequence, offset, epoch.
    pub(super) async fn last(
        &self,
        channel: &str,
    ) -> Result<Option<(u64, u64, String)>, ChannelError> {
        Ok(self
            .newest(channel)
            .await?
            .map(|newest| (newest.sequence, newest.offset, newest.epoch)))
    }

    /// The channel's newest stored message, if the stream holds one.
    async fn newest(&self, channel: &str) -> Result<Option<Newest>, ChannelError> {
        match self
            .history
            .get_last_raw_message_by_subject(&self.history_subject(channel))
            .await
        {
            Ok(message) => Ok(Some(Newest {
                sequence: message.sequence,
                offset: header_u64(&message.headers, OFFSET).unwrap_or(0),
                epoch: message
                    .headers
                    .get(EPOCH)
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default(),
                group_epoch: header_u64(&message.headers, GROUP_EPOCH),
            })),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The epoch a channel without stored messages publishes in
    /// ([`Record::empty_history_epoch`]), from now on the record's, and
    /// its group's epoch: 0 when nothing was ever published in the
    /// channel, unknown when its history was lost.
    pub(super) async fn fresh_epoch(
        &self,
        channel: &str,
    ) -> Result<(String, Option<u64>), ChannelError> {
        self.modify(channel, |record, _| match record {
            None => (Err(not_found(channel)), false),
            Some(r) => {
                let group_epoch = (!r.epoch_used).then_some(0);
                r.epoch = r.empty_history_epoch();
                r.epoch_used = true;
                (Ok((r.epoch.clone(), group_epoch)), true)
            }
        })
        .await
    }

    /// Drops every stored message of `channel`.
    pub(super) async fn purge(&self, channel: &str) -> Result<(), ChannelError> {
        self.connected()?;
        self.history
            .purge()
            .filter(self.history_subject(channel))
            .await
            .map(drop)
            .map_err(unavailable)
    }
}

/// A channel's newest stored message, as its headers say.
struct Newest {
    /// Its stream sequence.
    sequence: u64,
    offset: u64,
    epoch: String,
    /// The channel's group epoch; `None` when the message does not say.
    group_epoch: Option<u64>,
}

/// A channel's newest GroupInfo, as kept in the `<prefix>-groups` bucket.
#[derive(Serialize, Deserialize)]
pub(super) struct KeptGroupInfo {
    pub(super) epoch: u64,
    pub(super) info: String,
}

impl Shared {
    /// The channel's kept GroupInfo, if any.
    pub(super) async fn kept_group_info(
        &self,
        channel: &str,
    ) -> Result<Option<KeptGroupInfo>, ChannelError> {
        self.connected()?;
        let (kept, _) = entry::read::<Option<KeptGroupInfo>>(&self.groups, &hex(channel)).await?;
        Ok(kept)
    }

    /// Keeps `info` as the channel's GroupInfo of `epoch`, unless one of a
    /// later epoch is kept (writers racing take turns by revision).
    pub(super) async fn keep_group_info(
        &self,
        channel: &str,
        epoch: u64,
        info: &str,
    ) -> Result<(), ChannelError> {
        self.connected()?;
        entry::change(
            &self.groups,
            &hex(channel),
            "a channel's GroupInfo",
            |kept: &mut Option<KeptGroupInfo>| {
                if kept.as_ref().is_some_and(|k| k.epoch >= epoch) {
                    return Ok(((), false));
                }
                *kept = Some(KeptGroupInfo {
                    epoch,
                    info: info.to_owned(),
                });
                Ok(((), true))
            },
        )
        .await
    }
}
