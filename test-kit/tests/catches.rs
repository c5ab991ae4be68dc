//! The conformance suite fails a backend that breaks the contract: here a
//! broker that forgets idempotency keys (every `publish_once` publishes
//! anew) and group epochs (every commit is published), as a hasty
//! third-party backend might.

use std::sync::Arc;

use ws_channels::backend::{BoxFuture, Broker, Published, Sink};
use ws_channels::{
    Backends, ChannelError, HistoryPage, HistorySpec, MemoryBackend, NodeId, Position, Publication,
};

struct ForgetsKeys(Arc<MemoryBackend>);

impl Broker for ForgetsKeys {
    fn attach(&self, node: NodeId, sink: Arc<dyn Sink>) {
        Broker::attach(&*self.0, node, sink);
    }

    fn subscribe<'a>(
        &'a self,
        node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.0.subscribe(node, channel)
    }

    fn unsubscribe<'a>(
        &'a self,
        node: NodeId,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.0.unsubscribe(node, channel)
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: Option<HistorySpec>,
    ) -> BoxFuture<'a, Result<Option<Position>, ChannelError>> {
        self.0.publish(channel, publication, history)
    }

    fn publish_once<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: HistorySpec,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Published, ChannelError>> {
        Box::pin(async move {
            let position = self.0.publish(channel, publication, Some(history)).await?;
            Ok(Published {
                position,
                duplicate: false,
            })
        })
    }

    fn publish_commit<'a>(
        &'a self,
        channel: &'a str,
        publication: Publication,
        history: HistorySpec,
        _epoch: u64,
        _group_info: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Position, ChannelError>> {
        Box::pin(async move {
            let position = self.0.publish(channel, publication, Some(history)).await?;
            Ok(position.expect("published with history"))
        })
    }

    fn group_info<'a>(
        &'a self,
        channel: &'a str,
    ) -> BoxFuture<'a, Result<Option<(u64, String)>, ChannelError>> {
        self.0.group_info(channel)
    }

    fn history<'a>(
        &'a self,
        channel: &'a str,
        since: Option<Position>,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        self.0.history(channel, since, limit)
    }

    fn recent<'a>(
        &'a self,
        channel: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<HistoryPage, ChannelError>> {
        self.0.recent(channel, limit)
    }

    fn remove_history<'a>(&'a self, channel: &'a str) -> BoxFuture<'a, Result<(), ChannelError>> {
        self.0.remove_history(channel)
    }
}

#[tokio::test]
#[should_panic(expected = "forgetful")]
async fn a_broker_that_forgets_idempotency_keys_fails_the_suite() {
    let memory = Arc::new(MemoryBackend::new());
    let mut backends = Backends::memory(memory.clone());
    backends.broker = Arc::new(ForgetsKeys(memory));
    ws_test_kit::conformance::a_key_publishes_once_even_when_retries_race("forgetful", &backends)
        .await;
}

#[tokio::test]
async fn the_same_check_passes_on_the_broker_it_wraps() {
    let backends = Backends::memory(MemoryBackend::new());
    ws_test_kit::conformance::a_key_publishes_once_even_when_retries_race("memory", &backends)
        .await;
}

#[tokio::test]
#[should_panic(expected = "forgetful")]
async fn a_broker_that_ignores_group_epochs_fails_the_suite() {
    let memory = Arc::new(MemoryBackend::new());
    let mut backends = Backends::memory(memory.clone());
    backends.broker = Arc::new(ForgetsKeys(memory));
    ws_test_kit::conformance::commits_are_published_one_per_group_epoch("forgetful", &backends)
        .await;
}

#[tokio::test]
async fn the_commit_check_passes_on_the_broker_it_wraps() {
    let backends = Backends::memory(MemoryBackend::new());
    ws_test_kit::conformance::commits_are_published_one_per_group_epoch("memory", &backends).await;
}
