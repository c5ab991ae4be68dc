//! Publications and history on Redis: a PUB/SUB channel per channel, a
//! Stream of history per channel, appended and published by one script.

use super::*;

impl Broker for RedisBackend {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        RedisBackend::attach(self, node, sink);
    }

    fn subscribe<'a>(
        &'a self,
        _node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            lock(&shared.topics).insert(channel.to_owned());
            let result = async {
                let mut pubsub = shared.pubsub().await?;
                tokio::time::timeout(
                    shared.config.command_timeout,
                    pubsub.subscribe(shared.pubsub_channel(channel)),
                )
                .await
                .map_err(|_| ChannelError::unavailable("redis: SUBSCRIBE timed out"))?
                .map_err(unavailable)
            }
            .await;
            if result.is_err() {
                lock(&shared.topics).remove(channel);
            }
            result
        })
    }

    fn unsubscribe<'a>(
        &'a self,
        _node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            lock(&shared.topics).remove(channel);
            let pubsub = shared.pubsub.borrow().clone();
            // Down: the reconnect subscribes only what is still wanted.
            if let Some(mut pubsub) = pubsub {
                let _ = tokio::time::timeout(
                    shared.config.command_timeout,
                    pubsub.unsubscribe(shared.pubsub_channel(channel)),
                )
                .await;
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
                return shared
                    .send_publication(channel, publication)
                    .await
                    .map(|()| None);
            };
            shared
                .append(channel, &publication, spec, None, None, None)
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
                .append(channel, &publication, spec, Some(key), None, None)
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
                .append(channel, &publication, spec, None, Some(epoch), group_info)
                .await?;
            Ok(published.position.expect("published with history"))
        })
    }

    fn group_info<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, String)>, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let kept: Option<String> = shared
                .command(
                    redis::cmd("HGET")
                        .arg(shared.key(channel, "meta"))
                        .arg("ginfo"),
                )
                .await?;
            Ok(kept.and_then(|kept| {
                let (epoch, info) = kept.split_once(' ')?;
                Some((epoch.parse().ok()?, info.to_owned()))
            }))
        })
    }

    fn recent<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let reply = shared
                .on_channel(&shared.scripts.recent, channel, &[limit.to_string()])
                .await?;
            let reply = items(&reply);
            if reply.is_empty() {
                return Ok(HistoryPage {
                    publications: Vec::new(),
                    top: Some(Position {
                        offset: 0,
                        epoch: new_epoch(),
                    }),
                    complete: true,
                });
            }
            let epoch = text(at(reply, 0));
            let top = int(at(reply, 1));
            let kept = int(at(reply, 2));
            let mut publications = Vec::new();
            for entry in items(at(reply, 3)).chunks(3) {
                if let Some((_, publication)) = stream_entry(entry, &epoch) {
                    publications.push(publication);
                }
            }
            publications.reverse();
            Ok(HistoryPage {
                complete: publications.len() as u64 >= kept,
                publications,
                top: Some(Position { offset: top, epoch }),
            })
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
            let after = since
                .as_ref()
                .map_or_else(|| "-1".to_owned(), |p| p.offset.to_string());
            let mut invocation = shared.scripts.history.prepare_invoke();
            invocation
                .key(shared.key(channel, "meta"))
                .key(shared.key(channel, "hist"))
                .arg(after)
                .arg(limit);
            let mut conn = shared.conn();
            let reply: Reply = invocation
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let reply = items(&reply);
            if reply.is_empty() {
                // No such channel: an empty history no position belongs to.
                return Ok(HistoryPage {
                    publications: Vec::new(),
                    top: Some(Position {
                        offset: 0,
                        epoch: new_epoch(),
                    }),
                    complete: since.is_none(),
                });
            }
            let epoch = text(at(reply, 0));
            let top = int(at(reply, 1));
            let now = int(at(reply, 2));
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
            let entries = items(at(reply, 3));
            let mut publications = Vec::new();
            let mut complete = since.epoch == epoch
                && since.offset <= top
                && usize::try_from(top - since.offset).is_ok_and(|m| m <= limit);
            let mut expected = since.offset + 1;
            for entry in entries.chunks(3) {
                if !complete {
                    break;
                }
                let expires = int(at(entry, 1));
                match stream_entry(entry, &epoch) {
                    Some((offset, publication)) if offset == expected && expires > now => {
                        publications.push(publication);
                        expected += 1;
                    }
                    _ => complete = false,
                }
            }
            if expected != top + 1 {
                complete = false;
            }
            if !complete {
                publications.clear();
            }
            Ok(HistoryPage {
                publications,
                top: page_top,
                complete,
            })
        })
    }

    fn remove_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let shared = &self.shared;
            let mut invocation = shared.scripts.remove_history.prepare_invoke();
            invocation
                .key(shared.key(channel, "meta"))
                .key(shared.key(channel, "hist"))
                .arg(new_epoch());
            let mut conn = shared.conn();
            invocation
                .invoke_async::<()>(&mut conn)
                .await
                .map_err(unavailable)
        })
    }
}
