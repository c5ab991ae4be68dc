//! Per-connection policies, checked for every incoming message.
//!
//! A [`PolicySet`] holds policies in order, each with what to do when it is
//! violated ([`OnViolation`]): close the connection with 1008 and the
//! violation as the reason, or drop the message and report it. Time comes
//! in as an argument, as everywhere in `ws-core`, so rate limits run on a
//! virtual clock in tests.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ws_core::Message;
//! use ws_core::policy::{MaxMessagesPerSecond, MaxPayloadBytes, OnViolation, PolicySet, Verdict};
//!
//! let mut policies = PolicySet::new()
//!     .with(MaxPayloadBytes::new(50_000), OnViolation::Close)
//!     .with(MaxMessagesPerSecond::new(2), OnViolation::Drop);
//! let now = Instant::now();
//! let hello = Message::text("hello");
//! assert_eq!(policies.check(&hello, now), Verdict::Allow);
//! assert_eq!(policies.check(&hello, now), Verdict::Allow);
//! assert!(matches!(policies.check(&hello, now), Verdict::Drop(_)));
//! // Half a second refills one message's worth.
//! assert_eq!(policies.check(&hello, now + Duration::from_millis(500)), Verdict::Allow);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::time::{Duration, Instant};

use crate::message::Message;

/// A rule every incoming message must pass.
pub trait Policy: Send + fmt::Debug {
    /// A short name for reports and close reasons, e.g. `"max-messages-per-second"`.
    fn name(&self) -> &'static str;

    /// Checks `message`, arriving at `now`. A message that passes counts
    /// against the policy's budget; one that fails does not. The error is a
    /// human-readable reason.
    fn check(&mut self, message: &Message, now: Instant) -> Result<(), String>;
}

/// What happens to a message that violates a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnViolation {
    /// Close the connection with 1008 (policy violation) and the violation
    /// as the reason.
    Close,
    /// Drop the message and report the violation; the connection stays open.
    Drop,
}

/// A policy a message violated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The policy's [`Policy::name`].
    pub policy: &'static str,
    /// Why the message failed.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.policy, self.reason)
    }
}

/// The outcome of [`PolicySet::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Every policy passed: deliver the message.
    Allow,
    /// A policy with [`OnViolation::Drop`] failed: discard the message.
    Drop(Violation),
    /// A policy with [`OnViolation::Close`] failed: close with 1008.
    Close(Violation),
}

/// Policies in order, each with its action. Empty by default (every
/// message passes).
#[derive(Debug, Default)]
pub struct PolicySet {
    entries: Vec<(Box<dyn Policy>, OnViolation)>,
}

impl PolicySet {
    /// No policies.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `policy`, checked after those added before it.
    pub fn with(mut self, policy: impl Policy + 'static, on_violation: OnViolation) -> Self {
        self.entries.push((Box::new(policy), on_violation));
        self
    }

    /// Whether there are no policies.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `message` against each policy in order; the first violation
    /// decides. Policies after it do not see the message, so a dropped
    /// message never counts against their budgets.
    pub fn check(&mut self, message: &Message, now: Instant) -> Verdict {
        for (policy, on_violation) in &mut self.entries {
            if let Err(reason) = policy.check(message, now) {
                let violation = Violation {
                    policy: policy.name(),
                    reason,
                };
                return match on_violation {
                    OnViolation::Close => Verdict::Close(violation),
                    OnViolation::Drop => Verdict::Drop(violation),
                };
            }
        }
        Verdict::Allow
    }
}

/// A token bucket on integer arithmetic: holds up to `burst` tokens and
/// refills `rate` tokens per second, continuously.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: u64,
    /// Tokens in billionths, so refills of a few nanoseconds are not lost.
    nano_tokens: u128,
    last: Option<Instant>,
}

const NANOS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket of `burst` tokens refilling at `rate` per second.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate,
            burst,
            nano_tokens: u128::from(burst) * NANOS,
            last: None,
        }
    }

    /// Takes `tokens` if the bucket holds that many at `now`; takes nothing
    /// otherwise. A `now` earlier than a previous one refills nothing.
    pub fn try_take(&mut self, tokens: u64, now: Instant) -> bool {
        self.refill(now);
        let wanted = u128::from(tokens) * NANOS;
        if self.nano_tokens >= wanted {
            self.nano_tokens -= wanted;
            true
        } else {
            false
        }
    }

    /// How long after `now` the bucket holds `tokens` (zero: it does now),
    /// without taking any; `None` if it never will (more than `burst`, or
    /// a rate of 0 with too few left). For pacing: wait that long, then
    /// [`try_take`](Self::try_take).
    pub fn time_until(&mut self, tokens: u64, now: Instant) -> Option<Duration> {
        self.refill(now);
        let wanted = u128::from(tokens) * NANOS;
        if self.nano_tokens >= wanted {
            return Some(Duration::ZERO);
        }
        if tokens > self.burst || self.rate == 0 {
            return None;
        }
        // Nanoseconds for the missing billionths at `rate` per second,
        // rounded up so the bucket does hold them then.
        let missing = wanted - self.nano_tokens;
        let nanos = missing.div_ceil(u128::from(self.rate));
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.nano_tokens / NANOS).unwrap_or(u64::MAX)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
        let full = u128::from(self.burst) * NANOS;
        let refill = elapsed.as_nanos().saturating_mul(u128::from(self.rate));
        self.nano_tokens = self.nano_tokens.saturating_add(refill).min(full);
    }
}

/// At most `rate` messages per second, with bursts of up to `rate`
/// messages (one second's worth) unless [`with_burst`](Self::with_burst)
/// says otherwise. The "max messages per second" policy of HyperIoT.
#[derive(Debug, Clone)]
pub struct MaxMessagesPerSecond {
    bucket: TokenBucket,
}

impl MaxMessagesPerSecond {
    /// `rate` messages per second, bursts of `rate`.
    pub fn new(rate: u64) -> Self {
        Self::with_burst(rate, rate)
    }

    /// `rate` messages per second, bursts of `burst`.
    pub fn with_burst(rate: u64, burst: u64) -> Self {
        Self {
            bucket: TokenBucket::new(rate, burst),
        }
    }
}

impl Policy for MaxMessagesPerSecond {
    fn name(&self) -> &'static str {
        "max-messages-per-second"
    }

    fn check(&mut self, _message: &Message, now: Instant) -> Result<(), String> {
        if self.bucket.try_take(1, now) {
            Ok(())
        } else {
            Err(format!(
                "more than {} messages per second",
                self.bucket.rate
            ))
        }
    }
}

/// At most `rate` payload bytes per second, with bursts of up to `rate`
/// bytes unless [`with_burst`](Self::with_burst) says otherwise. A message
/// larger than the burst never passes, so the burst should be at least the
/// largest message allowed.
#[derive(Debug, Clone)]
pub struct MaxBytesPerSecond {
    bucket: TokenBucket,
}

impl MaxBytesPerSecond {
    /// `rate` bytes per second, bursts of `rate` bytes.
    pub fn new(rate: u64) -> Self {
        Self::with_burst(rate, rate)
    }

    /// `rate` bytes per second, bursts of `burst` bytes.
    pub fn with_burst(rate: u64, burst: u64) -> Self {
        Self {
            bucket: TokenBucket::new(rate, burst),
        }
    }
}

impl Policy for MaxBytesPerSecond {
    fn name(&self) -> &'static str {
        "max-bytes-per-second"
    }

    fn check(&mut self, message: &Message, now: Instant) -> Result<(), String> {
        let len = u64::try_from(message.len()).unwrap_or(u64::MAX);
        if self.bucket.try_take(len, now) {
            Ok(())
        } else {
            Err(format!("more than {} bytes per second", self.bucket.rate))
        }
    }
}

/// Messages of at most `max` payload bytes. Unlike the connection's
/// `max_message_size`, which closes with 1009 while the message is still
/// arriving, this is checked on whole messages and can drop instead of
/// close. The "max payload bytes" policy of HyperIoT.
#[derive(Debug, Clone)]
pub struct MaxPayloadBytes {
    max: usize,
}

impl MaxPayloadBytes {
    /// Messages up to `max` bytes pass.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl Policy for MaxPayloadBytes {
    fn name(&self) -> &'static str {
        "max-payload-bytes"
    }

    fn check(&mut self, message: &Message, _now: Instant) -> Result<(), String> {
        if message.len() <= self.max {
            Ok(())
        } else {
            Err(format!("{} bytes, more than {}", message.len(), self.max))
        }
    }
}

/// Settings of a [`ConnectionRateLimiter`]: how often one client (an IP
/// address, say) may open connections, and how long a client that keeps
/// coming back too fast is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionRate {
    /// Connections per second a client may open, sustained. Default: 10.
    pub per_second: u64,
    /// Connections a client may open at once. Default: 20.
    pub burst: u64,
    /// Refusals, counted until the client slows down to its rate, after
    /// which it is blocked. Default: 10.
    pub block_after: u32,
    /// How long a blocked client is refused outright. Default: 60 s.
    pub block_for: Duration,
    /// Clients tracked at once, bounding memory (about 100 bytes each).
    /// Past it, the least recently seen client that is not blocked is
    /// forgotten. Default: 65,536.
    pub max_tracked: usize,
}

impl Default for ConnectionRate {
    fn default() -> Self {
        Self {
            per_second: 10,
            burst: 20,
            block_after: 10,
            block_for: Duration::from_secs(60),
            max_tracked: 65_536,
        }
    }
}

/// The answer of [`ConnectionRateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Within its rate.
    Allow,
    /// Too fast; may retry after the given time (HTTP 429).
    Limited {
        /// When the next connection would be allowed.
        retry_after: Duration,
    },
    /// Blocked for coming back too fast too often (HTTP 429).
    Blocked {
        /// When the block ends.
        retry_after: Duration,
    },
}

#[derive(Debug)]
struct ClientState {
    bucket: TokenBucket,
    strikes: u32,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// Connection-rate limiting per client, sans-IO: the server asks
/// [`check`](Self::check) for every handshake with the client's key and
/// the time, and answers 429 unless it is [`Admission::Allow`]. Memory is
/// bounded by [`ConnectionRate::max_tracked`].
#[derive(Debug)]
pub struct ConnectionRateLimiter<K> {
    rate: ConnectionRate,
    clients: HashMap<K, ClientState>,
}

impl<K: Hash + Eq + Clone> ConnectionRateLimiter<K> {
    /// A limiter with `rate`'s settings and no clients yet.
    pub fn new(rate: ConnectionRate) -> Self {
        Self {
            rate,
            clients: HashMap::new(),
        }
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.clients.len()
    }

    /// Whether `client` may open a connection at `now`; counts it if so.
    pub fn check(&mut self, client: &K, now: Instant) -> Admission {
        if !self.clients.contains_key(client) && !self.make_room(now) {
            // Everyone tracked is blocked: refuse newcomers rather than
            // forget a block or grow without bound.
            return Admission::Limited {
                retry_after: self.rate.block_for,
            };
        }
        let rate = &self.rate;
        let state = self
            .clients
            .entry(client.clone())
            .or_insert_with(|| ClientState {
                bucket: TokenBucket::new(rate.per_second, rate.burst),
                strikes: 0,
                blocked_until: None,
                last_seen: now,
            });
        state.last_seen = state.last_seen.max(now);
        if let Some(until) = state.blocked_until {
            if now < until {
                return Admission::Blocked {
                    retry_after: until - now,
                };
            }
            state.blocked_until = None;
        }
        if state.bucket.try_take(1, now) {
            if state.bucket.available(now) == rate.burst.saturating_sub(1) {
                // Back to (nearly) a full bucket: it has slowed down.
                state.strikes = 0;
            }
            return Admission::Allow;
        }
        state.strikes = state.strikes.saturating_add(1);
        if state.strikes >= rate.block_after {
            state.strikes = 0;
            state.blocked_until = Some(crate::config::deadline_after(now, rate.block_for));
            return Admission::Blocked {
                retry_after: rate.block_for,
            };
        }
        Admission::Limited {
            retry_after: Duration::from_nanos(1_000_000_000 / rate.per_second.max(1)),
        }
    }

    /// Frees a slot for a new client if the table is full: first clients
    /// whose state is as good as new (a full bucket, no strikes, no block),
    /// else the least recently seen unblocked one. False if every tracked
    /// client is blocked.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.clients.len() < self.rate.max_tracked.max(1) {
            return true;
        }
        let burst = self.rate.burst;
        self.clients.retain(|_, state| {
            let blocked = state.blocked_until.is_some_and(|until| until > now);
            blocked || state.strikes > 0 || state.bucket.available(now) < burst
        });
        if self.clients.len() < self.rate.max_tracked.max(1) {
            return true;
        }
        let oldest = self
            .clients
            .iter()
            .filter(|(_, state)| state.blocked_until.is_none_or(|until| until <= now))
            .min_by_key(|(_, state)| state.last_seen)
            .map(|(key, _)| key.clone());
        match oldest {
            Some(key) => {
                self.clients.remove(&key);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bucket_refills_continuously_up_to_the_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 5);
        assert_eq!(bucket.available(t0), 5);
        assert!(bucket.try_take(5, t0));
        assert!(!bucket.try_take(1, t0));
        // 10 per second: one token every 100 ms.
        assert!(!bucket.try_take(1, t0 + ms(99)));
        assert!(bucket.try_take(1, t0 + ms(100)));
        // Never more than the burst, however long it sat.
        assert_eq!(bucket.available(t0 + Duration::from_secs(3600)), 5);
    }

    #[test]
    fn bucket_says_when_it_holds_enough() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(3, 2);
        assert_eq!(bucket.time_until(1, t0), Some(Duration::ZERO));
        assert!(bucket.try_take(2, t0));
        // 3 per second: a token every 333.33... ms, rounded up.
        let wait = bucket.time_until(1, t0).unwrap();
        assert_eq!(wait, Duration::from_nanos(333_333_334));
        assert!(!bucket.try_take(1, t0 + wait - Duration::from_nanos(1)));
        assert!(bucket.try_take(1, t0 + wait));
        assert_eq!(bucket.time_until(3, t0 + wait), None, "more than the burst");
        let mut dry = TokenBucket::new(0, 1);
        assert!(dry.try_take(1, t0));
        assert_eq!(dry.time_until(1, t0 + Duration::from_secs(9)), None);
    }

    #[test]
    fn bucket_ignores_time_going_backwards() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::new(1, 1);
        assert!(bucket.try_take(1, t0));
        assert!(!bucket.try_take(1, t0 - Duration::from_secs(5)));
        assert!(!bucket.try_take(1, t0 + ms(999)));
        assert!(bucket.try_take(1, t0 + ms(1000)));
    }

    #[test]
    fn refused_take_consumes_nothing() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, 100);
        assert!(!bucket.try_take(101, t0));
        assert!(bucket.try_take(100, t0));
    }

    #[test]
    fn messages_per_second() {
        let t0 = Instant::now();
        let message = Message::text("x");
        let mut policy = MaxMessagesPerSecond::new(3);
        for _ in 0..3 {
            assert!(policy.check(&message, t0).is_ok());
        }
        let reason = policy.check(&message, t0).unwrap_err();
        assert_eq!(reason, "more than 3 messages per second");
        assert!(policy.check(&message, t0 + ms(334)).is_ok());
        assert!(policy.check(&message, t0 + ms(334)).is_err());
    }

    #[test]
    fn bytes_per_second() {
        let t0 = Instant::now();
        let mut policy = MaxBytesPerSecond::new(1000);
        assert!(policy.check(&Message::binary(vec![0; 600]), t0).is_ok());
        assert!(policy.check(&Message::binary(vec![0; 600]), t0).is_err());
        assert!(policy.check(&Message::binary(vec![0; 400]), t0).is_ok());
        assert!(policy.check(&Message::binary(vec![0; 1]), t0).is_err());
        assert!(
            policy
                .check(&Message::binary(vec![0; 500]), t0 + ms(500))
                .is_ok()
        );
        // Larger than the burst: never.
        assert!(
            policy
                .check(
                    &Message::binary(vec![0; 1001]),
                    t0 + Duration::from_secs(60)
                )
                .is_err()
        );
    }

    #[test]
    fn payload_bytes() {
        let now = Instant::now();
        let mut policy = MaxPayloadBytes::new(4);
        assert!(policy.check(&Message::text("four"), now).is_ok());
        assert_eq!(
            policy.check(&Message::text("fives"), now).unwrap_err(),
            "5 bytes, more than 4"
        );
    }

    #[test]
    fn first_violation_decides_and_later_policies_do_not_count_it() {
        let t0 = Instant::now();
        let mut set = PolicySet::new()
            .with(MaxPayloadBytes::new(10), OnViolation::Drop)
            .with(MaxMessagesPerSecond::new(2), OnViolation::Close);
        let big = Message::binary(vec![0; 11]);
        let small = Message::text("ok");
        for _ in 0..5 {
            assert!(matches!(
                set.check(&big, t0),
                Verdict::Drop(Violation {
                    policy: "max-payload-bytes",
                    ..
                })
            ));
        }
        // The dropped messages did not use the rate budget.
        assert_eq!(set.check(&small, t0), Verdict::Allow);
        assert_eq!(set.check(&small, t0), Verdict::Allow);
        match set.check(&small, t0) {
            Verdict::Close(violation) => {
                assert_eq!(violation.policy, "max-messages-per-second");
                assert_eq!(
                    violation.to_string(),
                    "max-messages-per-second: more than 2 messages per second"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_set_allows_everything() {
        let mut set = PolicySet::new();
        assert!(set.is_empty());
        assert_eq!(
            set.check(&Message::binary(vec![0; 1 << 20]), Instant::now()),
            Verdict::Allow
        );
    }

    fn rate(per_second: u64, burst: u64, block_after: u32) -> ConnectionRate {
        ConnectionRate {
            per_second,
            burst,
            block_after,
            block_for: Duration::from_secs(60),
            max_tracked: 1000,
        }
    }

    #[test]
    fn connection_rate_allows_the_burst_then_limits_then_blocks() {
        let t0 = Instant::now();
        let mut limiter = ConnectionRateLimiter::new(rate(2, 3, 3));
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a", t0), Admission::Allow);
        }
        assert_eq!(
            limiter.check(&"a", t0),
            Admission::Limited {
                retry_after: ms(500)
            }
        );
        assert!(matches!(limiter.check(&"a", t0), Admission::Limited { .. }));
        // Another client is not affected.
        assert_eq!(limiter.check(&"b", t0), Admission::Allow);
        // The third refusal blocks, and the block outlasts the refill.
        assert_eq!(
            limiter.check(&"a", t0),
            Admission::Blocked {
                retry_after: Duration::from_secs(60)
            }
        );
        assert_eq!(
            limiter.check(&"a", t0 + Duration::from_secs(10)),
            Admission::Blocked {
                retry_after: Duration::from_secs(50)
            }
        );
        assert_eq!(
            limiter.check(&"a", t0 + Duration::from_secs(60)),
            Admission::Allow
        );
    }

    #[test]
    fn connection_rate_forgives_a_client_that_slowed_down() {
        let t0 = Instant::now();
        let mut limiter = ConnectionRateLimiter::new(rate(1, 1, 2));
        assert_eq!(limiter.check(&1, t0), Admission::Allow);
        assert!(matches!(limiter.check(&1, t0), Admission::Limited { .. }));
        // Back at its rate for a while: the strike is cleared.
        for s in 1..5 {
            assert_eq!(
                limiter.check(&1, t0 + Duration::from_secs(s)),
                Admission::Allow
            );
        }
        let later = t0 + Duration::from_secs(4);
        assert!(matches!(
            limiter.check(&1, later),
            Admission::Limited { .. }
        ));
    }

    #[test]
    fn connection_rate_memory_is_bounded() {
        let t0 = Instant::now();
        let mut limiter = ConnectionRateLimiter::new(ConnectionRate {
            max_tracked: 100,
            ..rate(1, 1, 1)
        });
        // A flood from many addresses, each one connection too many.
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i));
            let _ = limiter.check(&i, now);
            let _ = limiter.check(&i, now);
            assert!(limiter.tracked() <= 100);
        }
        // Everyone tracked is blocked now: a newcomer is refused rather
        // than a block forgotten.
        let now = t0 + Duration::from_millis(20);
        assert!(matches!(
            limiter.check(&999_999, now),
            Admission::Limited { .. }
        ));
        assert_eq!(limiter.tracked(), 100);
        // Once blocks expire, newcomers are tracked again.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(limiter.check(&999_999, later), Admission::Allow);
    }
}
