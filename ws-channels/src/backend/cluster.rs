//! What the cluster backends (Redis, NATS) share: the control wire format,
//! heartbeat bookkeeping, and small helpers.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::types::{
    ChannelError, ClientInfo, ControlMessage, LeaveReason, Member, NodeId, Publication,
    PublicationKind,
};

/// What travels on the control channel: a heartbeat (no `msg`) or a
/// control message, with the sending node.
#[derive(Serialize, Deserialize)]
pub(crate) struct ControlWire {
    pub(crate) node: NodeId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) msg: Option<ControlMessage>,
}

/// The `leave` event for a member the backend removed (expired, or its
/// node stopped beating).
pub(crate) fn leave(member: Member) -> Publication {
    Publication {
        kind: PublicationKind::Leave,
        position: None,
        from: Some(ClientInfo {
            session: member.session,
            user: member.user,
            info: member.info,
        }),
        data: None,
        reason: Some(LeaveReason::Expired),
    }
}

/// Other nodes' last heartbeats.
#[derive(Default)]
pub(crate) struct Peers {
    seen: Mutex<HashMap<NodeId, Instant>>,
}

impl Peers {
    pub(crate) fn heard(&self, node: NodeId) {
        lock(&self.seen).insert(node, Instant::now());
    }

    /// The nodes silent for three heartbeats and a half, forgotten from
    /// now on (a node that comes back is heard again).
    pub(crate) fn silent(&self, heartbeat: Duration) -> Vec<NodeId> {
        let limit = heartbeat * 3 + heartbeat / 2;
        let mut seen = lock(&self.seen);
        let dead: Vec<NodeId> = seen
            .iter()
            .filter(|(_, at)| at.elapsed() > limit)
            .map(|(node, _)| *node)
            .collect();
        for node in &dead {
            seen.remove(node);
        }
        dead
    }
}

/// The builder methods both cluster configurations have.
macro_rules! shared_settings {
    ($config:ident) => {
        impl $config {
            /// The prefix of every key, channel, subject, stream or bucket
            /// name this backend uses, so deployments can share a broker.
            pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
                self.prefix = prefix.into();
                self
            }

            /// How often this node says it is alive.
            pub fn heartbeat(mut self, every: std::time::Duration) -> Self {
                self.heartbeat = every;
                self
            }

            /// How long `connect` keeps trying.
            pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.connect_timeout = timeout;
                self
            }
        }
    };
}
pub(crate) use shared_settings;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// `url` without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Milliseconds, at least one.
pub(crate) fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX / 4)
        .max(1)
}

/// A fresh history epoch.
pub(crate) fn new_epoch() -> String {
    format!("{:08x}", NodeId::random().0 & 0xffff_ffff)
}

/// Retries `attempt` with backoff (100 ms doubling to 5 s, each failure
/// logged) until `timeout` has passed, the last try at the deadline, then
/// fails with the last error.
pub(crate) async fn with_backoff<T, F, Fut>(
    what: &str,
    url: &str,
    timeout: Duration,
    mut attempt: F,
) -> Result<T, ChannelError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            return Err(ChannelError::unavailable(format!(
                "{what} at {} unreachable after {attempts} attempts in {elapsed:.1?}: {error}",
                redact(url),
            )));
        }
        // The last pause ends at the deadline, for one more try there.
        let pause = delay.min(timeout - elapsed);
        tracing::warn!(url = %redact(url), %error, retry_in = ?pause, "{what} unreachable; retrying");
        tokio::time::sleep(pause).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("redis://user:secret@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(redact("nats://a:b@n1:4222"), "nats://***@n1:4222");
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
    }

    #[tokio::test]
    async fn an_unreachable_service_is_a_clear_error_after_retries() {
        let mut tries = 0;
        let started = Instant::now();
        let error = with_backoff(
            "Redis",
            "redis://u:pw@h",
            Duration::from_millis(1500),
            || {
                tries += 1;
                async { Err::<(), _>("refused".to_owned()) }
            },
        )
        .await
        .unwrap_err();
        assert_eq!(error.code, crate::ErrorCode::Unavailable);
        assert!(tries >= 3, "{tries}");
        // It keeps trying for the whole timeout (it gave up at 26.7 s of
        // 30 once), the last try at the deadline.
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
        assert!(error.message.contains("refused"), "{error}");
        assert!(!error.message.contains("pw"), "{error}");
    }
}
