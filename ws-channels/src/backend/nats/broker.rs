//! Publications and history on NATS: a subject per channel, one
//! JetStream stream that stores and republishes in order.

use super::*;

impl Broker for NatsBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        NatsBackend::attach(self, node, sink);
    }

    fn subscribe<'a>(
        &'a self,
        _node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(self.shared.subscribe(channel))
    }

    fn unsubscribe<'a>(
        &'a self,
        _node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            // Dropping the subscriber unsubscribes.
            if let Some(task) = lock(&self.shared.subscriptions).remove(channel) {
                task.abort();
            }
            Ok(())
        })
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: Option<HistorySpec>,
    ) -> BoxFuture<'a, Result<Option<Position>, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let Some(spec) = history else {
                return shared.send_live(channel, &publication).await.map(|()| None);
            };
            shared
                .append(channel, &publication, spec, None, None)
                .await
                .map(|published| published.position)
        })
    }

    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        spec: HistorySpec,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Published, ChannelError>> {
        Box::pin(async move {
            self.shared
                .append(channel, &publication, spec, Some(key), None)
                .await
        })
    }

    fn publish_commit<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        spec: HistorySpec,
        epoch: u64,
        group_info: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Position, ChannelError>> {
        Box::pin(async move {
            let published = self
                .shared
                .append(channel, &publication, spec, None, Some(epoch))
                .await?;
            if let Some(info) = group_info {
                // After the commit: a GroupInfo kept for an epoch the group
                // reached is never ahead of the channel. The commit is out
                // whatever happens here, so its author is told so (it
                // would otherwise drop a commit every member applies); a
                // GroupInfo not kept only leaves the server's removal
                // proposals for this epoch unmade.
                let kept = self.shared.keep_group_info(channel, epoch + 1, info).await;
                if let Err(error) = kept {
                    tracing::warn!(channel, %error, "a commit's GroupInfo was not kept");
                }
            }
            Ok(published.position.expect("published with history"))
        })
    }

    fn group_info<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, String)>, ChannelError>> {
        Box::pin(async move {
            Ok(self
                .shared
                .kept_group_info(channel)
                .await?
                .map(|kept| (kept.epoch, kept.info)))
        })
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let last = shared.last(channel).await?;
            let (sequence, top, epoch) = match last {
                Some(last) => last,
                None => {
                    let epoch = match shared.record(channel).await? {
                        Some(r) => r.empty_history_epoch(),
                        None => new_epoch(),
                    };
                    (0, 0, epoch)
                }
            };
            let page_top = Some(Position {
                offset: top,
                epoch: epoch.clone(),
            });
            let Some(since) = since else {
                return Ok(HistoryPage {
                    publications: Vec::new(),
                    top: page_top,
                    complete: true,
                });
            };
            let (size, budget) = shared.record(channel).await?.map_or((0, 0), |r| {
                (u64::from(r.options.history_size), r.options.history_bytes)
            });
            let missing = top.saturating_sub(since.offset);
            let mut complete = since.epoch == epoch
                && since.offset <= top
                && missing <= size
                && usize::try_from(missing).is_ok_and(|m| m <= limit);
            // The stream keeps each channel's messages by count and age;
            // the channel's byte budget applies here: a gap holding more
            // bytes than it reaches further back than the history does.
            let mut publications = Vec::new();
            if complete {
                let walk = Walk {
                    sequence,
                    top,
                    epoch: &epoch,
                    budget,
                };
                let (newest_first, whole) = shared
                    .walk_back(walk, |offset, _| offset > since.offset)
                    .await;
                complete = whole;
                publications = newest_first;
            }
            if complete {
                publications.reverse();
            } else {
                publications.clear();
            }
            Ok(HistoryPage {
                publications,
                top: page_top,
                complete,
            })
        })
    }

    fn recent<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.connected()?;
            let Some((sequence, top, epoch)) = shared.last(channel).await? else {
                let epoch = match shared.record(channel).await? {
                    Some(r) => r.empty_history_epoch(),
                    None => new_epoch(),
                };
                return Ok(HistoryPage {
                    publications: Vec::new(),
                    top: Some(Position { offset: 0, epoch }),
                    complete: true,
                });
            };
            let (size, budget) = shared.record(channel).await?.map_or((0, 0), |r| {
                (u64::from(r.options.history_size), r.options.history_bytes)
            });
            let walk = Walk {
                sequence,
                top,
                epoch: &epoch,
                budget,
            };
            let (mut publications, _) = shared
                .walk_back(walk, |offset, taken| {
                    offset > 0 && top - offset < size && taken < limit
                })
                .await;
            let complete = publications.len() < limit;
            publications.reverse();
            Ok(HistoryPage {
                publications,
                top: Some(Position { offset: top, epoch }),
                complete,
            })
        })
    }

    fn remove_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            shared.purge(channel).await?;
            // The group goes with the history: a channel made anew has
            // another.
            shared
                .groups
                .purge(hex(channel))
                .await
                .map_err(unavailable)?;
            // History begins again in a new epoch, named now so joins
            // before the next publication see the epoch it will have.
            shared
                .modify(channel, |record, _| match record {
                    Some(r) => {
                        r.epoch = new_epoch();
                        r.epoch_used = false;
                        (Ok(()), true)
                    }
                    None => (Ok(()), false),
                })
                .await
        })
    }
}
