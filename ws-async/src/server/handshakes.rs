//! Handshakes in progress, capped before any of their bytes are read.
//!
//! Every accepted socket takes a place here until it is upgraded or
//! refused: its TLS handshake, its HTTP head, authentication and the answer
//! all happen while it holds one. Without a cap, thousands of silent or
//! slow sockets each hold a task and a file descriptor until their
//! handshake deadline, and real clients starve.
//!
//! Past a cap (server-wide, or for one client address) the oldest
//! handshake that has been waiting for its client for at least
//! [`STALLED_AFTER`] is dropped to make room: a real client sends its
//! request at once and is done in milliseconds, so that one is almost
//! always stalling. Younger handshakes are never dropped for the cap (a
//! burst of real clients gets in above it). When the process runs out of
//! file descriptors, the accept loop [sheds](Handshakes::shed) the oldest
//! waiting handshake of any age, so a flood of silent sockets cannot keep
//! real clients out of the backlog.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener};

/// How long a handshake must have been in progress, and be waiting for its
/// client, before a cap may drop it for a newcomer.
pub(crate) const STALLED_AFTER: Duration = Duration::from_millis(250);

/// The address a client is counted under: IPv4 addresses as they are
/// (IPv4-mapped IPv6 ones too), IPv6 addresses by their /64 prefix, the
/// smallest block one subscriber is usually given, so that one host cannot
/// pass for many by changing the low bits of its address.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// A handshake's state as the caps see it.
#[derive(Debug, Default)]
struct Eviction {
    /// Its future is pending: waiting for the client (or its deadline).
    waiting: AtomicBool,
    /// Set when it is dropped to make room for a newer one.
    evicted: AtomicBool,
    event: Event,
}

impl Eviction {
    fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Acquire)
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// Every handshake in progress, oldest first: its client, when it
    /// began, its state.
    by_age: BTreeMap<u64, (Option<IpAddr>, Instant, Arc<Eviction>)>,
    /// Those of each client address.
    by_client: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Eviction>> {
        let (client, _, eviction) = self.by_age.remove(&id)?;
        if let Some(client) = client
            && let Some(ids) = self.by_client.get_mut(&client)
        {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_client.remove(&client);
            }
        }
        Some(eviction)
    }
}

/// The handshakes in progress of one server.
#[derive(Debug)]
pub(crate) struct Handshakes {
    table: Mutex<Table>,
    max: usize,
    max_per_client: usize,
}

impl Handshakes {
    pub(crate) fn new(max: usize, max_per_client: usize) -> Self {
        Self {
            table: Mutex::new(Table::default()),
            max: max.max(1),
            max_per_client: max_per_client.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Every critical section leaves the table consistent.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A place for a new handshake from `peer`, beginning at `now`; past a
    /// cap, the oldest stalled handshake (of that client, if it is the
    /// client's cap that is reached) is dropped.
    pub(crate) fn enter(self: &Arc<Self>, peer: Option<IpAddr>, now: Instant) -> Ticket {
        let client = peer.map(client_key);
        let eviction = Arc::new(Eviction::default());
        let mut evicted = Vec::new();
        let id = {
            let mut table = self.lock();
            let stalled = |table: &Table, id: &u64| {
                let (_, entered, eviction) = &table.by_age[id];
                eviction.waiting() && now.saturating_duration_since(*entered) >= STALLED_AFTER
            };
            if let Some(client) = client {
                let of_client = table.by_client.get(&client).map_or(0, BTreeSet::len);
                if of_client >= self.max_per_client {
                    let oldest = table.by_client[&client]
                        .iter()
                        .find(|id| stalled(&table, id))
                        .copied();
                    evicted.extend(oldest.and_then(|id| table.remove(id)));
                }
            }
            if table.by_age.len() >= self.max {
                let oldest = table.by_age.keys().find(|id| stalled(&table, id)).copied();
                evicted.extend(oldest.and_then(|id| table.remove(id)));
            }
            let id = table.next;
            table.next += 1;
            table.by_age.insert(id, (client, now, eviction.clone()));
            if let Some(client) = client {
                table.by_client.entry(client).or_default().insert(id);
            }
            id
        };
        if !evicted.is_empty() {
            tracing::debug!("too many handshakes in progress; dropped the oldest stalled one");
        }
        for eviction in evicted {
            eviction.evict();
        }
        Ticket {
            handshakes: self.clone(),
            id,
            eviction,
        }
    }

    /// Drops the oldest handshake waiting for its client, whatever its age:
    /// for when the process is out of file descriptors. Returns whether
    /// there was one.
    pub(crate) fn shed(&self) -> bool {
        let victim = {
            let mut table = self.lock();
            let oldest = table
                .by_age
                .iter()
                .find(|(_, (_, _, eviction))| eviction.waiting())
                .map(|(id, _)| *id);
            oldest.and_then(|id| table.remove(id))
        };
        victim.map(|eviction| eviction.evict()).is_some()
    }

    /// Handshakes in progress.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_age.len()
    }
}

/// A handshake's place; released when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    handshakes: Arc<Handshakes>,
    id: u64,
    eviction: Arc<Eviction>,
}

impl Ticket {
    /// Runs `future` until it ends or this handshake is dropped to make
    /// room (then `None`).
    pub(crate) async fn run<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut listener: Option<EventListener> = None;
        std::future::poll_fn(|cx| {
            self.eviction.waiting.store(false, Ordering::Release);
            loop {
                if self.eviction.evicted.load(Ordering::Acquire) {
                    return Poll::Ready(None);
                }
                if let Poll::Ready(output) = future.as_mut().poll(cx) {
                    return Poll::Ready(Some(output));
                }
                self.eviction.waiting.store(true, Ordering::Release);
                match &mut listener {
                    Some(l) => {
                        if Pin::new(l).poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        listener = None;
                    }
                    // Check the flag again once listening: an eviction
                    // between the check and `listen` is not delivered.
                    None => listener = Some(self.eviction.event.listen()),
                }
            }
        })
        .await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.handshakes.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn clients_are_keyed_by_ipv4_address_or_ipv6_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b), "same /64");
        assert_ne!(client_key(a), client_key(c));
        assert_eq!(
            client_key(a),
            IpAddr::V6("2001:db8:1:2::".parse::<Ipv6Addr>().unwrap())
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
        let v4: IpAddr = "192.0.2.8".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }

    fn evicted(ticket: &Ticket) -> bool {
        ticket.eviction.evicted.load(Ordering::Acquire)
    }

    /// Enters a handshake, at `at` ms, that is then waiting for its client.
    fn waiting(handshakes: &Arc<Handshakes>, peer: Option<IpAddr>, at: u64) -> Ticket {
        let ticket = handshakes.enter(peer, ms(at));
        ticket.eviction.waiting.store(true, Ordering::Release);
        ticket
    }

    fn ms(at: u64) -> Instant {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_millis(at)
    }

    #[test]
    fn caps_drop_the_oldest_stalled_handshake() {
        let handshakes = Arc::new(Handshakes::new(4, 2));
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let a = waiting(&handshakes, Some(one), 0);
        let b = waiting(&handshakes, Some(one), 0);
        let c = waiting(&handshakes, Some(two), 0);
        // The client's cap: its oldest goes, the other client's stay.
        let d = waiting(&handshakes, Some(one), 300);
        assert!(evicted(&a) && !evicted(&b) && !evicted(&c) && !evicted(&d));
        assert_eq!(handshakes.len(), 3);
        // The server's cap: the oldest stalled one of all goes.
        let e = waiting(&handshakes, None, 300);
        assert_eq!(handshakes.len(), 4);
        let f = waiting(&handshakes, Some(two), 300);
        assert!(evicted(&b) && !evicted(&c) && !evicted(&e) && !evicted(&f));
        assert_eq!(handshakes.len(), 4);
        drop((a, b, c, d, e, f));
        assert_eq!(handshakes.len(), 0);
        assert!(handshakes.lock().by_client.is_empty());
    }

    // Handshakes the server has not got to yet, and young ones waiting for
    // a client that is merely slow to send, are let in above the cap; the
    // oldest stalled one goes first. Out of descriptors, any waiting one
    // may be shed.
    #[test]
    fn only_stalled_handshakes_are_dropped_for_the_cap() {
        let handshakes = Arc::new(Handshakes::new(2, 2));
        let burst: Vec<Ticket> = (0..3).map(|_| handshakes.enter(None, ms(0))).collect();
        let young = waiting(&handshakes, None, 100);
        let newcomer = handshakes.enter(None, ms(200));
        assert!(burst.iter().all(|t| !evicted(t)) && !evicted(&young));
        assert_eq!(handshakes.len(), 5);
        let later = handshakes.enter(None, ms(400));
        assert!(evicted(&young), "stalled for 300 ms by now");
        assert!(!evicted(&newcomer) && !evicted(&later));
        // Shedding takes any waiting handshake, and only those.
        let fresh = waiting(&handshakes, None, 400);
        assert!(handshakes.shed());
        assert!(evicted(&fresh));
        assert!(!handshakes.shed(), "none left waiting");
        assert!(burst.iter().all(|t| !evicted(t)));
    }

    #[test]
    fn an_evicted_handshake_stops_running() {
        let handshakes = Arc::new(Handshakes::new(1, 1));
        let first = handshakes.enter(None, ms(0));
        let mut run = std::pin::pin!(first.run(std::future::pending::<()>()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(run.as_mut().poll(&mut cx).is_pending());
        let _second = handshakes.enter(None, ms(1000));
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(None));
    }
}
