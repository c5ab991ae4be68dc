//! The conformance suite on every backend in this repository: the
//! in-process default, Redis and NATS (from `WS_TEST_REDIS_URL` and
//! `WS_TEST_NATS_URL`; skipped with a message when unset and nothing
//! answers on the default port), plus what only one backend does.

use std::time::Duration;

use ws_channels::backend::{ClusterKey, NatsBackend, NatsConfig, RedisBackend, RedisConfig};
use ws_channels::{Backends, HistorySpec, MemoryBackend};
use ws_test_kit::brokers::{Kind, service, unique_prefix};
use ws_test_kit::conformance::{LIMITS, TTL, member, message, options};

fn key() -> ClusterKey {
    ClusterKey::new("the cluster key of the conformance tests").unwrap()
}

/// A prefix of a check's own on the shared broker: `unique_prefix` of a
/// short label, so stream and bucket names stay short.
fn prefix(check: &str) -> String {
    let label: String = check
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect();
    unique_prefix(&label)
}

fn nats_config(url: String, check: &str) -> NatsConfig {
    let mut config = NatsConfig::new(url, key()).prefix(prefix(check));
    // JetStream reserves the stream's byte budget up front; every check
    // makes a stream of its own on the shared server.
    config.max_history_bytes = 16 << 20;
    config
}

mod memory {
    use super::*;

    async fn fresh(_check: &'static str) -> Option<Backends> {
        Some(Backends::memory(MemoryBackend::new()))
    }
    ws_test_kit::backend_conformance!("memory", fresh);
}

mod redis {
    use super::*;

    async fn fresh(check: &'static str) -> Option<Backends> {
        let url = service(Kind::Redis)?;
        let redis = RedisBackend::connect(RedisConfig::new(url, key()).prefix(prefix(check)))
            .await
            .expect("Redis connects");
        Some(Backends::shared(redis))
    }
    ws_test_kit::backend_conformance!("redis", fresh);
}

mod nats {
    use super::*;

    async fn fresh(check: &'static str) -> Option<Backends> {
        let url = service(Kind::Nats)?;
        let nats = NatsBackend::connect(nats_config(url, check))
            .await
            .expect("NATS connects");
        Some(Backends::shared(nats))
    }
    ws_test_kit::backend_conformance!("nats", fresh);
}

// A NATS history that the stream emptied (its messages aged out) names one
// epoch on every read until the next publication takes it: a position
// check, which reads it every refresh, sees one loss, not a new one each
// time (it drew a new random epoch per read).
#[tokio::test]
async fn an_emptied_nats_history_keeps_one_epoch() {
    let Some(url) = service(Kind::Nats) else {
        return;
    };
    let mut config = nats_config(url, "emptied");
    config.max_history_age = Duration::from_secs(1);
    let backend = Backends::shared(NatsBackend::connect(config).await.expect("NATS connects"));
    backend
        .store
        .create("log", options(10, 10), member(1, "al"), TTL, LIMITS)
        .await
        .unwrap();
    let spec = HistorySpec {
        size: 10,
        ttl: Duration::from_secs(1),
        max_bytes: 1 << 20,
    };
    let broker = &backend.broker;
    let first = broker
        .publish("log", message(1), Some(spec))
        .await
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    let emptied = loop {
        let top = broker.history("log", None, 10).await.unwrap().top.unwrap();
        if top.offset == 0 {
            break top;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never aged out"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(emptied.epoch, first.epoch, "the old offsets are gone");
    let again = broker.history("log", None, 10).await.unwrap().top.unwrap();
    assert_eq!(again, emptied, "one epoch, read after read");
    let from_old = broker.history("log", Some(first), 10).await.unwrap();
    assert!(!from_old.complete, "what aged out cannot be recovered");
    let from_empty = broker
        .history("log", Some(emptied.clone()), 10)
        .await
        .unwrap();
    assert!(from_empty.complete, "nothing is missing after the loss");
    let next = broker
        .publish("log", message(2), Some(spec))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((next.offset, &next.epoch), (1, &emptied.epoch));
}
