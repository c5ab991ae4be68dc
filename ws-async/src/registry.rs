//! Live connections by id and unique name; sending from outside a
//! connection; the shutdown switch.
//!
//! Groups of connections (rooms, topics, presence) are not kept here: the
//! `ws-channels` crate owns that concept, across one node or many.

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use event_listener::{Event as Notify, EventListener};
use ws_core::Message;

use crate::connection::{ConnectionHandle, ConnectionId, ConnectionInfo};
use crate::error::SendError;
use crate::outbox::Outgoing;
use crate::runtime::{AnyRuntime, Runtime, sleep_until};

/// A server-wide signal: shutting down (run `on_shutdown`, close with
/// 1001) and, past the drain deadline, killed (drop at once).
#[derive(Debug, Default)]
pub(crate) struct Shutdown {
    pub(crate) draining: AtomicBool,
    pub(crate) killed: AtomicBool,
    pub(crate) notify: Notify,
}

#[derive(Debug)]
struct Entry {
    handle: ConnectionHandle,
    info: Arc<ConnectionInfo>,
    endpoint: Arc<str>,
    name: Option<String>,
}

/// One open connection, as [`ServerHandle::connections`] lists it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OpenConnection {
    /// Sends to it and closes it.
    pub handle: ConnectionHandle,
    /// Who and where: peer address, handshake request (with the
    /// [`Identity`](crate::auth::Identity) an authenticator set), subprotocol.
    pub info: Arc<ConnectionInfo>,
    /// The path of the endpoint it connected to.
    pub endpoint: Arc<str>,
    /// Its unique name, if one was set ([`ServerHandle::set_name`]).
    pub name: Option<String>,
}

#[derive(Debug, Default)]
struct Tables {
    connections: BTreeMap<ConnectionId, Entry>,
    names: BTreeMap<String, ConnectionId>,
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

/// Controls a running server: its registry of connections (by id and
/// unique name), sending from outside a connection, and graceful shutdown.
/// Cheap to clone; every connection's handler has one
/// ([`Ctx::server`](crate::Ctx::server)).
///
/// It keeps no groups of connections: channels, rooms and presence, on one
/// node or across a cluster, are `ws-channels`' job.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    runtime: AnyRuntime,
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
            if let Some(entry) = tables.connections.remove(&self.id)
                && let Some(name) = entry.name
            {
                tables.names.remove(&name);
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

impl ServerHandle {
    pub(crate) fn new(runtime: AnyRuntime) -> Self {
        Self {
            shared: Arc::new(Shared::default()),
            runtime,
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The current time on the server's runtime clock.
    pub fn now(&self) -> Instant {
        self.runtime.now()
    }

    /// Runs `future` in the background on the server's runtime: work that
    /// belongs to no connection, such as a library's periodic upkeep.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(Box::pin(future));
    }

    /// Waits until `deadline` on the server's runtime clock.
    pub async fn sleep_until(&self, deadline: Instant) {
        sleep_until(&self.runtime, deadline).await;
    }

    pub(crate) fn register(
        &self,
        handle: ConnectionHandle,
        info: Arc<ConnectionInfo>,
        endpoint: Arc<str>,
    ) -> Registration {
        let id = handle.id();
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        lock(&self.shared.tables).connections.insert(
            id,
            Entry {
                handle,
                info,
                endpoint,
                name: None,
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

    /// Every open connection, in the order of their ids (a snapshot: it
    /// holds the registry's lock only while it copies).
    pub fn connections(&self) -> Vec<OpenConnection> {
        lock(&self.shared.tables)
            .connections
            .values()
            .map(|e| OpenConnection {
                handle: e.handle.clone(),
                info: e.info.clone(),
                endpoint: e.endpoint.clone(),
                name: e.name.clone(),
            })
            .collect()
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

    /// Queues `message` for connection `id` without waiting; see
    /// [`ConnectionHandle::try_send`]. [`SendError::Closed`] when no such
    /// connection is open.
    pub fn try_send_to(
        &self,
        id: ConnectionId,
        message: impl Into<Message>,
    ) -> Result<(), SendError> {
        let handle = self.get(id).ok_or(SendError::Closed)?;
        handle.try_send(message)
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
        let runtime = self.runtime.clone();
        let mut deadline = Box::pin(async move {
            let deadline = ws_core::config::deadline_after(runtime.now(), grace);
            sleep_until(&runtime, deadline).await;
        });
        // Kept across polls: a listener dropped while pending would miss the
        // last connection's end, and the drain would last the whole grace.
        let mut listener: Option<EventListener> = None;
        let drained = poll_fn(|cx| {
            loop {
                if self.shared.active.load(Ordering::Acquire) == 0 {
                    return Poll::Ready(true);
                }
                match &mut listener {
                    // Listening before the second look: a change in between
                    // is not missed.
                    None => listener = Some(self.shared.active_changed.listen()),
                    Some(l) => {
                        if Pin::new(l).poll(cx).is_pending() {
                            break;
                        }
                        listener = None;
                    }
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
