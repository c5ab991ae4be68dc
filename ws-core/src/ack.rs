//! Acknowledged delivery, sans-IO: events with an id are resent until the
//! peer acknowledges them or they expire, and a receiver drops duplicates.
//!
//! [`AckSender`] has the shape of every state machine in this crate: hand
//! it messages and acks with the current time, arm a timer for
//! [`poll_timeout`](AckSender::poll_timeout), call
//! [`handle_timeout`](AckSender::handle_timeout) when it passes, then drain
//! [`poll_resend`](AckSender::poll_resend) (write those again) and
//! [`poll_expired`](AckSender::poll_expired) (report those to the sender).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ws_core::Message;
//! use ws_core::ack::{AckConfig, AckSender};
//!
//! let t0 = Instant::now();
//! let mut sender = AckSender::new(AckConfig::default());
//! sender.track("e-1", Message::text(r#"{"type":"event","id":"e-1"}"#), t0)?;
//! // No ack within the resend interval (5 s): send it again.
//! sender.handle_timeout(t0 + Duration::from_secs(5));
//! assert!(sender.poll_resend().is_some());
//! assert!(sender.acknowledge("e-1"));
//! assert_eq!(sender.in_flight(), 0);
//! # Ok::<(), ws_core::ack::AckError>(())
//! ```

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::config::deadline_after;
use crate::message::Message;

/// Timing and bounds of acknowledged delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AckConfig {
    /// Resend an unacknowledged message after this long. Default: 5 s.
    pub resend_after: Duration,
    /// Give up on a message this long after it was first sent. Default: 30 s.
    pub expire_after: Duration,
    /// Unacknowledged messages at once; more are refused with
    /// [`AckError::Full`]. Default: 256.
    pub max_in_flight: usize,
}

impl Default for AckConfig {
    fn default() -> Self {
        Self {
            resend_after: Duration::from_secs(5),
            expire_after: Duration::from_secs(30),
            max_in_flight: 256,
        }
    }
}

/// Why a message could not be tracked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// [`AckConfig::max_in_flight`] messages await acknowledgement.
    #[error("{0} messages already await acknowledgement")]
    Full(usize),
    /// A message with this id is already in flight.
    #[error("a message with id {0:?} is already in flight")]
    DuplicateId(String),
}

#[derive(Debug)]
struct InFlight {
    message: Message,
    expires: Instant,
    next_resend: Instant,
}

/// The sending side: tracks messages until acknowledged, resends them on
/// an interval, reports those that expire.
#[derive(Debug)]
pub struct AckSender {
    config: AckConfig,
    in_flight: HashMap<String, InFlight>,
    /// Each message's next resend or expiry, in order: one entry per
    /// message in flight, so it is bounded like them.
    deadlines: BTreeSet<(Instant, String)>,
    resend: VecDeque<Message>,
    expired: VecDeque<String>,
}

impl AckSender {
    /// A sender with nothing in flight.
    pub fn new(config: AckConfig) -> Self {
        Self {
            config,
            in_flight: HashMap::new(),
            deadlines: BTreeSet::new(),
            resend: VecDeque::new(),
            expired: VecDeque::new(),
        }
    }

    /// Starts tracking `message`, which the caller sends now, under `id`.
    pub fn track(
        &mut self,
        id: impl Into<String>,
        message: Message,
        now: Instant,
    ) -> Result<(), AckError> {
        let id = id.into();
        if self.in_flight.contains_key(&id) {
            return Err(AckError::DuplicateId(id));
        }
        if self.in_flight.len() >= self.config.max_in_flight {
            return Err(AckError::Full(self.in_flight.len()));
        }
        let entry = InFlight {
            message,
            expires: deadline_after(now, self.config.expire_after),
            next_resend: deadline_after(now, self.config.resend_after),
        };
        self.deadlines
            .insert((entry.next_resend.min(entry.expires), id.clone()));
        self.in_flight.insert(id, entry);
        Ok(())
    }

    /// The peer acknowledged `id`. Returns whether it was in flight (a
    /// late or unknown ack is harmless).
    pub fn acknowledge(&mut self, id: &str) -> bool {
        let Some(entry) = self.in_flight.remove(id) else {
            return false;
        };
        self.deadlines
            .remove(&(entry.next_resend.min(entry.expires), id.to_owned()));
        true
    }

    /// Messages awaiting acknowledgement.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The next resend or expiry, if anything is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(when, _)| *when)
    }

    /// Resends and expires what is due at `now`. Safe to call early or
    /// twice.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(first) = self.deadlines.first() {
            if first.0 > now {
                break;
            }
            let (_, id) = self.deadlines.pop_first().expect("checked above");
            let Some(entry) = self.in_flight.get_mut(&id) else {
                continue;
            };
            if entry.expires <= now {
                self.in_flight.remove(&id);
                self.expired.push_back(id);
                continue;
            }
            self.resend.push_back(entry.message.clone());
            entry.next_resend = deadline_after(now, self.config.resend_after);
            let next = entry.next_resend.min(entry.expires);
            self.deadlines.insert((next, id));
        }
    }

    /// A message to send again.
    pub fn poll_resend(&mut self) -> Option<Message> {
        self.resend.pop_front()
    }

    /// The id of a message that expired unacknowledged.
    pub fn poll_expired(&mut self) -> Option<String> {
        self.expired.pop_front()
    }
}

/// The receiving side: remembers recent ids so a resent message is handled
/// once. Remembers at most `capacity` ids, each for `ttl` (which should
/// exceed the sender's `expire_after`); the oldest are forgotten first.
#[derive(Debug)]
pub struct DuplicateFilter {
    capacity: usize,
    ttl: Duration,
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl DuplicateFilter {
    /// Remembers up to `capacity` ids for `ttl` each. Suggested: 4096 and
    /// 60 s (twice the default expiry).
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether `id` is new at `now` (handle the message) or a duplicate
    /// (acknowledge it again, but do not handle it twice).
    pub fn first_time(&mut self, id: &str, now: Instant) -> bool {
        while let Some((when, _)) = self.order.front() {
            if *when + self.ttl > now && self.order.len() < self.capacity {
                break;
            }
            let (when, old) = self.order.pop_front().expect("checked above");
            if self.seen.get(&old) == Some(&when) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_owned(), now);
        self.order.push_back((now, id.to_owned()));
        true
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn config() -> AckConfig {
        AckConfig {
            resend_after: secs(5),
            expire_after: secs(12),
            max_in_flight: 3,
        }
    }

    #[test]
    fn resends_on_the_interval_until_acknowledged() {
        let t0 = Instant::now();
        let mut sender = AckSender::new(config());
        sender.track("a", Message::text("A"), t0).unwrap();
        assert_eq!(sender.poll_timeout(), Some(t0 + secs(5)));
        sender.handle_timeout(t0 + secs(4));
        assert_eq!(sender.poll_resend(), None);
        sender.handle_timeout(t0 + secs(5));
        assert_eq!(sender.poll_resend(), Some(Message::text("A")));
        assert_eq!(sender.poll_resend(), None);
        // Called twice: nothing more.
        sender.handle_timeout(t0 + secs(5));
        assert_eq!(sender.poll_resend(), None);
        assert_eq!(sender.poll_timeout(), Some(t0 + secs(10)));
        assert!(sender.acknowledge("a"));
        assert!(!sender.acknowledge("a"), "a second ack is harmless");
        assert_eq!(sender.poll_timeout(), None);
        sender.handle_timeout(t0 + secs(60));
        assert_eq!(sender.poll_resend(), None);
        assert_eq!(sender.poll_expired(), None);
    }

    #[test]
    fn expires_and_reports_unacknowledged_messages() {
        let t0 = Instant::now();
        let mut sender = AckSender::new(config());
        sender.track("a", Message::text("A"), t0).unwrap();
        sender.track("b", Message::text("B"), t0 + secs(1)).unwrap();
        sender.handle_timeout(t0 + secs(5));
        sender.handle_timeout(t0 + secs(6));
        sender.handle_timeout(t0 + secs(10));
        sender.handle_timeout(t0 + secs(11));
        assert_eq!(sender.poll_expired(), None);
        let resent: Vec<_> = std::iter::from_fn(|| sender.poll_resend()).collect();
        assert_eq!(resent.len(), 4);
        // Expiry comes before the third resend would.
        assert_eq!(sender.poll_timeout(), Some(t0 + secs(12)));
        sender.handle_timeout(t0 + secs(12));
        assert_eq!(sender.poll_expired().as_deref(), Some("a"));
        assert_eq!(sender.in_flight(), 1);
        sender.handle_timeout(t0 + secs(13));
        assert_eq!(sender.poll_expired().as_deref(), Some("b"));
        assert_eq!(sender.poll_resend(), None);
        assert_eq!(sender.in_flight(), 0);
    }

    #[test]
    fn in_flight_is_bounded_and_ids_are_unique() {
        let t0 = Instant::now();
        let mut sender = AckSender::new(config());
        for id in ["a", "b", "c"] {
            sender.track(id, Message::text(id), t0).unwrap();
        }
        assert_eq!(
            sender.track("d", Message::text("d"), t0),
            Err(AckError::Full(3))
        );
        sender.acknowledge("b");
        assert_eq!(
            sender.track("a", Message::text("a"), t0),
            Err(AckError::DuplicateId("a".into()))
        );
        sender.track("d", Message::text("d"), t0).unwrap();
    }

    #[test]
    fn acknowledged_messages_leave_no_deadline_behind() {
        let t0 = Instant::now();
        let mut sender = AckSender::new(config());
        for i in 0..1000 {
            let id = i.to_string();
            sender.track(id.as_str(), Message::text("x"), t0).unwrap();
            assert!(sender.acknowledge(&id));
            assert!(sender.deadlines.len() <= sender.in_flight());
        }
        assert_eq!(sender.poll_timeout(), None);
    }

    #[test]
    fn duplicates_are_dropped_by_id() {
        let t0 = Instant::now();
        let mut filter = DuplicateFilter::new(100, secs(60));
        assert!(filter.first_time("a", t0));
        assert!(!filter.first_time("a", t0 + secs(5)));
        assert!(filter.first_time("b", t0 + secs(5)));
        // Forgotten after the ttl.
        assert!(filter.first_time("a", t0 + secs(61)));
    }

    #[test]
    fn duplicate_filter_memory_is_bounded() {
        let t0 = Instant::now();
        let mut filter = DuplicateFilter::new(10, secs(60));
        for i in 0..1000 {
            assert!(filter.first_time(&i.to_string(), t0));
            assert!(filter.len() <= 10);
        }
        // The newest are still remembered.
        assert!(!filter.first_time("999", t0));
    }
}
