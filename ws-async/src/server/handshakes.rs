//! Handshakes in progress, capped before any of their bytes are read.
//!
//! Every accepted socket takes a place here until it is upgraded or
//! refused: its TLS handshake, its HTTP head, authentication and the answer
//! all happen while it holds one. Without a cap, thousands of silent or
//! slow sockets each hold a task and a file descriptor until their
//! handshake deadline, and real clients starve. Past a cap (server-wide, or
//! for one client address) the oldest handshake that is waiting for its
//! client is dropped to make room: a real client sends its request at once
//! and is done in milliseconds, so the oldest one waiting is almost always
//! one that is stalling. A handshake the server has not got to yet (a burst
//! of real clients while the server is busy) is never dropped; when none is
//! waiting, the newcomer is let in above the cap.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;

use event_listener::{Event, EventListener};

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
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// Every handshake in progress, oldest first.
    by_age: BTreeMap<u64, (Option<IpAddr>, Arc<Eviction>)>,
    /// Those of each client address.
    by_client: HashMap<IpAddr, BTreeSet<u64>>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Arc<Eviction>> {
        let (client, eviction) = self.by_age.remove(&id)?;
        if let Some(client) = client {
            if let Some(ids) = self.by_client.get_mut(&client) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_client.remove(&client);
                }
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

    /// A place for a new handshake from `peer`, dropping the oldest one in
    /// progress (of that client, if it is the client's cap that is
    /// reached) when a cap is reached.
    pub(crate) fn enter(self: &Arc<Self>, peer: Option<IpAddr>) -> Ticket {
        let client = peer.map(client_key);
        let eviction = Arc::new(Eviction::default());
        let mut evicted = Vec::new();
        let id = {
            let mut table = self.lock();
            if let Some(client) = client {
                let of_client = table.by_client.get(&client).map_or(0, BTreeSet::len);
                if of_client >= self.max_per_client {
                    let oldest = table.by_client[&client]
                        .iter()
                        .copied()
                        .find(|id| table.by_age[id].1.waiting());
                    evicted.extend(oldest.and_then(|id| table.remove(id)));
                }
            }
            if table.by_age.len() >= self.max {
                let oldest = table
                    .by_age
                    .iter()
                    .find(|(_, (_, eviction))| eviction.waiting())
                    .map(|(id, _)| *id);
                evicted.extend(oldest.and_then(|id| table.remove(id)));
            }
            let id = table.next;
            table.next += 1;
            table.by_age.insert(id, (client, eviction.clone()));
            if let Some(client) = client {
                table.by_client.entry(client).or_default().insert(id);
            }
            id
        };
        if !evicted.is_empty() {
            tracing::debug!(
                evicted = evicted.len(),
                "too many handshakes in progress; dropped the oldest"
            );
        }
        for eviction in evicted {
            eviction.evicted.store(true, Ordering::Release);
            eviction.event.notify(usize::MAX);
        }
        Ticket {
            handshakes: self.clone(),
            id,
            eviction,
        }
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

    /// Enters a handshake that is then waiting for its client.
    fn waiting(handshakes: &Arc<Handshakes>, peer: Option<IpAddr>) -> Ticket {
        let ticket = handshakes.enter(peer);
        ticket.eviction.waiting.store(true, Ordering::Release);
        ticket
    }

    #[test]
    fn caps_drop_the_oldest_handshake_waiting_for_its_client() {
        let handshakes = Arc::new(Handshakes::new(4, 2));
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let a = waiting(&handshakes, Some(one));
        let b = waiting(&handshakes, Some(one));
        let c = waiting(&handshakes, Some(two));
        // The client's cap: its oldest goes, the other client's stay.
        let d = waiting(&handshakes, Some(one));
        assert!(evicted(&a) && !evicted(&b) && !evicted(&c) && !evicted(&d));
        assert_eq!(handshakes.len(), 3);
        // The server's cap: the oldest of all goes.
        let e = waiting(&handshakes, None);
        assert_eq!(handshakes.len(), 4);
        let f = waiting(&handshakes, Some(two));
        assert!(evicted(&b) && !evicted(&c) && !evicted(&e) && !evicted(&f));
        assert_eq!(handshakes.len(), 4);
        drop((a, b, c, d, e, f));
        assert_eq!(handshakes.len(), 0);
        assert!(handshakes.lock().by_client.is_empty());
    }

    // A burst the server has not got to yet is let in above the cap rather
    // than dropped; the oldest waiting one goes before any of it.
    #[test]
    fn handshakes_not_yet_run_are_never_dropped() {
        let handshakes = Arc::new(Handshakes::new(2, 2));
        let burst: Vec<Ticket> = (0..4).map(|_| handshakes.enter(None)).collect();
        assert!(burst.iter().all(|t| !evicted(t)));
        assert_eq!(handshakes.len(), 4);
        let stalled = waiting(&handshakes, None);
        let newcomer = handshakes.enter(None);
        assert!(evicted(&stalled) && !evicted(&newcomer));
        assert!(burst.iter().all(|t| !evicted(t)));
    }

    #[test]
    fn an_evicted_handshake_stops_running() {
        let handshakes = Arc::new(Handshakes::new(1, 1));
        let first = handshakes.enter(None);
        let mut run = std::pin::pin!(first.run(std::future::pending::<()>()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(run.as_mut().poll(&mut cx).is_pending());
        let _second = handshakes.enter(None);
        assert_eq!(run.as_mut().poll(&mut cx), Poll::Ready(None));
    }
}
