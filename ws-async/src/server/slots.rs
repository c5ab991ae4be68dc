//! Connection limits: slots held while a connection lives, per server,
//! per endpoint, per client address and per user.

use super::*;

/// Held while a connection occupies a slot of a connection limit.
#[derive(Debug)]
pub(super) struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Whether no slot is free now.
    pub(super) fn full(counter: &AtomicUsize, max: Option<usize>) -> bool {
        max.is_some_and(|max| counter.load(Ordering::Acquire) >= max)
    }

    pub(super) fn take(counter: &Arc<AtomicUsize>, max: Option<usize>) -> Option<Self> {
        let previous = counter.fetch_add(1, Ordering::AcqRel);
        if max.is_some_and(|max| previous >= max) {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(counter.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connections counted per key (a client's address, a user), each key
/// capped on its own.
#[derive(Debug)]
pub(super) struct KeyedCounts<K>(Arc<Mutex<std::collections::HashMap<K, usize>>>);

impl<K> Default for KeyedCounts<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: std::hash::Hash + Eq + Clone> KeyedCounts<K> {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<K, usize>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `key` has no slot free now.
    pub(super) fn full(&self, key: &K, max: Option<usize>) -> bool {
        max.is_some_and(|max| self.lock().get(key).is_some_and(|n| *n >= max))
    }

    /// A slot for `key`, unless it has `max` already; no limit, no count.
    pub(super) fn take(&self, key: K, max: Option<usize>) -> Result<Option<KeyedSlot<K>>, ()> {
        let Some(max) = max else { return Ok(None) };
        let mut counts = self.lock();
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= max {
            return Err(());
        }
        *count += 1;
        Ok(Some(KeyedSlot {
            counts: self.0.clone(),
            key,
        }))
    }
}

/// Held while a connection occupies one of its key's slots.
#[derive(Debug)]
pub(super) struct KeyedSlot<K: std::hash::Hash + Eq> {
    pub(super) counts: Arc<Mutex<std::collections::HashMap<K, usize>>>,
    pub(super) key: K,
}

impl<K: std::hash::Hash + Eq> Drop for KeyedSlot<K> {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // The map keeps only keys with connections, so it is as large as
        // the clients connected, never as the clients ever seen.
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The slots an admitted connection holds until it ends.
#[derive(Debug)]
pub(super) struct Slots {
    pub(super) _server: Slot,
    pub(super) _endpoint: Slot,
    pub(super) _client: Option<KeyedSlot<IpAddr>>,
    pub(super) _user: Option<KeyedSlot<String>>,
}

/// A refusal for too many connections of one client or user.
pub(super) fn too_many(what: &str, max: Option<usize>) -> Rejection {
    Rejection::plain(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "too many connections {what}: at most {}",
            max.unwrap_or_default()
        ),
    )
}
