//! Live connections by id, unique name and group; push from outside a
//! connection; the shutdown switch.

use std::collections::{BTreeMap, BTreeSet};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use event_listener::Event as Notify;
use ws_core::Message;

use crate::driver::{ConnectionHandle, ConnectionId, Shutdown};
use crate::error::SendError;
use crate::outbox::Outgoing;
use crate::runtime::{BoxFuture, Runtime, sleep_until};

#[derive(Debug)]
struct Entry {
    handle: ConnectionHandle,
    endpoint: Arc<str>,
    name: Option<String>,
    groups: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct Tables {
    connections: BTreeMap<ConnectionId, Entry>,
    names: BTreeMap<String, ConnectionId>,
    groups: BTreeMap<String, BTreeSet<ConnectionId>>,
}

/// State shared by a server's accept loop, its connections and its handles.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    tables: Mutex<Tables>,
    pub(crate) shutdown: Arc<Shutdown>,
    /// Connections past their handshake and not yet finished.
    active: AtomicUsize,
    /// Connections holding a slot of the server's connection limit: from
    /// admission (before the 101 is written) until they end, so the limit
    /// holds under a burst of handshakes.
    pub(crate) admitted: Arc<AtomicUsize>,
    active_changed: Notify,
    /// The accept loop should return.
    pub(crate) stopped: AtomicBool,
    pub(crate) stop: Notify,
}

/// Why a name could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Another connection holds the name.
    #[error("the name is taken by connection {0}")]
    Taken(ConnectionId),
    /// The connection is not (or no longer) registered.
    #[error("no such connection")]
    NotConnected,
}

/// The outcome of a send to many connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Connections the message was queued for.
    pub delivered: usize,
    /// Connections whose send queue was full: the message was dropped for
    /// them (they are too slow).
    pub dropped: Vec<ConnectionId>,
}

/// Controls a running server: its registry of connections (by id, unique
/// name and group), sending from outside a connection, and graceful
/// shutdown. Cheap to clone; every connection's handler has one.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    runtime: Arc<dyn RuntimeClock>,
}

/// The parts of a runtime the handle needs, object-safe.
pub(crate) trait RuntimeClock: Send + Sync + std::fmt::Debug {
    fn sleep(&self, duration: Duration) -> BoxFuture<()>;
}

impl<R: Runtime> RuntimeClock for R {
    fn sleep(&self, duration: Duration) -> BoxFuture<()> {
        let runtime = self.clone();
        Box::pin(async move {
            let deadline = ws_core::config::deadline_after(runtime.now(), duration);
            sleep_until(&runtime, deadline).await;
        })
    }
}

/// Keeps a connection in the registry while it lives.
#[derive(Debug)]
pub(crate) struct Registration {
    shared: Arc<Shared>,
    id: ConnectionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        {
            let mut tables = lock(&self.shared.tables);
            if let Some(entry) = tables.connections.remove(&self.id) {
                if let Some(name) = entry.name {
                    tables.names.remove(&name);
                }
                for group in entry.groups {
                    remove_member(&mut tables, &group, self.id);
                }
            }
        }
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
        self.shared.active_changed.notify(usize::MAX);
    }
}

fn lock(tables: &Mutex<Tables>) -> MutexGuard<'_, Tables> {
    // Every critical section leaves the tables consistent before it can
    // panic, so a poisoned lock still guards valid data.
    tables
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn remove_member(tables: &mut Tables, group: &str, id: ConnectionId) {
    if let Some(members) = tables.groups.get_mut(group) {
        members.remove(&id);
        if members.is_empty() {
            tables.groups.remove(group);
        }
    }
}

impl ServerHandle {
    pub(crate) fn new<R: Runtime>(runtime: R) -> Self {
        Self {
            shared: Arc::new(Shared::default()),
            runtime: Arc::new(runtime),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn register(&self, handle: ConnectionHandle, endpoint: Arc<str>) -> Registration {
        let id = handle.id();
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        lock(&self.shared.tables).connections.insert(
            id,
            Entry {
                handle,
                endpoint,
                name: None,
                groups: BTreeSet::new(),
            },
        );
        Registration {
            shared: self.shared.clone(),
            id,
        }
    }

    /// Open connections.
    pub fn count(&self) -> usize {
        lock(&self.shared.tables).connections.len()
    }

    /// Open connections of the endpoint at `path`.
    pub fn count_on(&self, path: &str) -> usize {
        lock(&self.shared.tables)
            .connections
            .values()
            .filter(|e| &*e.endpoint == path)
            .count()
    }

    /// The connection with `id`.
    pub fn get(&self, id: ConnectionId) -> Option<ConnectionHandle> {
        lock(&self.shared.tables)
            .connections
            .get(&id)
            .map(|e| e.handle.clone())
    }

    /// Gives connection `id` a unique `name` (replacing its previous one).
    pub fn set_name(&self, id: ConnectionId, name: &str) -> Result<(), NameError> {
        let mut tables = lock(&self.shared.tables);
        if let Some(&holder) = tables.names.get(name) {
            if holder != id {
                return Err(NameError::Taken(holder));
            }
            return Ok(());
        }
        let entry = tables
            .connections
            .get_mut(&id)
            .ok_or(NameError::NotConnected)?;
        let old = entry.name.replace(name.to_owned());
        if let Some(old) = old {
            tables.names.remove(&old);
        }
        tables.names.insert(name.to_owned(), id);
        Ok(())
    }

    /// The connection named `name`.
    pub fn by_name(&self, name: &str) -> Option<ConnectionHandle> {
        let tables = lock(&self.shared.tables);
        let id = tables.names.get(name)?;
        tables.connections.get(id).map(|e| e.handle.clone())
    }

    /// Adds connection `id` to `group`. Returns false if it is not
    /// connected.
    pub fn join(&self, id: ConnectionId, group: &str) -> bool {
        let mut tables = lock(&self.shared.tables);
        let Some(entry) = tables.connections.get_mut(&id) else {
            return false;
        };
        entry.groups.insert(group.to_owned());
        tables
            .groups
            .entry(group.to_owned())
            .or_default()
            .insert(id);
        true
    }

    /// Removes connection `id` from `group`.
    pub fn leave(&self, id: ConnectionId, group: &str) {
        let mut tables = lock(&self.shared.tables);
        if let Some(entry) = tables.connections.get_mut(&id) {
            entry.groups.remove(group);
        }
        remove_member(&mut tables, group, id);
    }

    /// Members of `group`.
    pub fn members(&self, group: &str) -> Vec<ConnectionId> {
        lock(&self.shared.tables)
            .groups
            .get(group)
            .map(|m| m.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Queues `message` for connection `id`.
    pub fn send_to(&self, id: ConnectionId, message: impl Into<Message>) -> Result<(), SendError> {
        let handle = self.get(id).ok_or(SendError::Closed)?;
        handle.send(message)
    }

    /// Queues `message` for every member of `group`.
    pub fn send_to_group(&self, group: &str, message: impl Into<Message>) -> Delivery {
        let targets: Vec<ConnectionHandle> = {
            let tables = lock(&self.shared.tables);
            tables
                .groups
                .get(group)
                .into_iter()
                .flatten()
                .filter_map(|id| tables.connections.get(id).map(|e| e.handle.clone()))
                .collect()
        };
        deliver(targets, message.into())
    }

    /// Queues `message` for every connection except `except` (typically the
    /// sender). Slow connections whose queue is full miss it and are listed
    /// in the result.
    pub fn broadcast(&self, message: impl Into<Message>, except: Option<ConnectionId>) -> Delivery {
        let targets: Vec<ConnectionHandle> = lock(&self.shared.tables)
            .connections
            .values()
            .filter(|e| Some(e.handle.id()) != except)
            .map(|e| e.handle.clone())
            .collect();
        deliver(targets, message.into())
    }

    /// Whether a shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.draining.load(Ordering::Acquire)
    }

    /// Shuts the server down gracefully: new handshakes get 503, every
    /// connection's `on_shutdown` runs (after the callback it is in, if
    /// any) and it is closed with 1001; once all have closed, or `grace`
    /// has passed, the accept loop returns. Past `grace` the remaining
    /// connections are dropped, callbacks still running included, and
    /// their sockets closed. Resolves when that is done.
    pub async fn shutdown(&self, grace: Duration) {
        let shutdown = &self.shared.shutdown;
        shutdown.draining.store(true, Ordering::Release);
        shutdown.notify.notify(usize::MAX);
        let mut deadline = self.runtime.sleep(grace);
        let drained = poll_fn(|cx| {
            loop {
                if self.shared.active.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(true);
                }
                let mut listener = self.shared.active_changed.listen();
                if self.shared.active.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(true);
                }
                if Pin::new(&mut listener).poll(cx).is_pending() {
                    break;
                }
            }
            deadline.as_mut().poll(cx).map(|()| false)
        })
        .await;
        if !drained {
            tracing::warn!(
                remaining = self.shared.active.load(Ordering::Acquire),
                "shutdown grace period over; dropping the remaining connections"
            );
            shutdown.killed.store(true, Ordering::Release);
            shutdown.notify.notify(usize::MAX);
        }
        self.shared.stopped.store(true, Ordering::Release);
        self.shared.stop.notify(usize::MAX);
    }
}

use std::future::Future;

fn deliver(targets: Vec<ConnectionHandle>, message: Message) -> Delivery {
    let mut delivery = Delivery::default();
    for target in targets {
        match target.outbox().try_push(Outgoing::Message(message.clone())) {
            Ok(()) => delivery.delivered += 1,
            Err((SendError::Full { .. }, _)) => delivery.dropped.push(target.id()),
            // Closed, or closing; whole messages are never invalid.
            Err(_) => {}
        }
    }
    delivery
}
