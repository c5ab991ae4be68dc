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
    ) -> Result<Published, ChannelError> {
        self.connected()?;
        let payload: bytes::Bytes = serde_json::to_vec(publication).map_err(unavailable)?.into();
        let subject = self.history_subject(channel);
        let jetstream = jetstream::new(self.client.clone());
        for _ in 0..64 {
            let (previous, offset, epoch) = match self.last(channel).await? {
                Some((sequence, offset, epoch)) => (sequence, offset + 1, epoch),
                None => (0, 1, self.fresh_epoch(channel).await?),
            };
            let mut headers = HeaderMap::new();
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
        match self
            .history
            .get_last_raw_message_by_subject(&self.history_subject(channel))
            .await
        {
            Ok(message) => Ok(Some((
                message.sequence,
                header_u64(&message.headers, OFFSET).unwrap_or(0),
                message
                    .headers
                    .get(EPOCH)
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default(),
            ))),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The epoch a channel without stored messages publishes in
    /// ([`Record::empty_history_epoch`]), from now on the record's.
    pub(super) async fn fresh_epoch(&self, channel: &str) -> Result<String, ChannelError> {
        self.modify(channel, |record, _| match record {
            None => (Err(not_found(channel)), false),
            Some(r) => {
                r.epoch = r.empty_history_epoch();
                r.epoch_used = true;
                (Ok(r.epoch.clone()), true)
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
