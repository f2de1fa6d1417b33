//! The keyed-state map every keyed layer shares.
//!
//! [`KeyedMap`] maps a [`Key`] to a layer's per-key state (a breaker, a
//! limiter, a queue) behind an `Arc`. Memory stays bounded whatever hosts are
//! seen:
//!
//! - an entry unused for [`idle_timeout`](KeyedConfig::idle_timeout) is evicted
//!   by a sweep that runs at most once per idle timeout, on access;
//! - when the map holds [`max_keys`](KeyedConfig::max_keys), inserting evicts
//!   idle entries and then the least recently used sixteenth of the map, in
//!   one pass, so a full map scans itself once per `max_keys / 16` new keys.
//!
//! An entry that is in use (some request still holds its `Arc`, for example an
//! in-flight permit) is never evicted, since dropping it would reset a limit
//! that is being enforced. The map can therefore exceed `max_keys` only by the
//! number of keys with work in flight.
//!
//! ```
//! use palisade_core::{Key, keyed::{KeyedConfig, KeyedMap}};
//! use std::sync::atomic::{AtomicU32, Ordering};
//!
//! let map: KeyedMap<AtomicU32> = KeyedMap::new(KeyedConfig::default());
//! let a = map.get_or_insert_with(&Key::from("a"), || AtomicU32::new(0));
//! a.fetch_add(1, Ordering::Relaxed);
//! assert_eq!(map.get(&Key::from("a")).unwrap().load(Ordering::Relaxed), 1);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::key::{Key, KeyHasher};

type Slots<V> = HashMap<Key, Slot<V>, std::hash::BuildHasherDefault<KeyHasher>>;

/// Bounds for a [`KeyedMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedConfig {
    /// The most keys kept before least-recently-used eviction. Default 10 000.
    pub max_keys: usize,
    /// How long an unused key is kept. Default 10 minutes, long enough to
    /// outlive a breaker's break and a rate window, short enough that a
    /// crawler's one-off hosts do not accumulate.
    pub idle_timeout: Duration,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

struct Slot<V> {
    value: Arc<V>,
    last_used: AtomicU64,
}

/// A bounded map from [`Key`] to shared per-key state. See the [module docs](self).
pub struct KeyedMap<V> {
    slots: RwLock<Slots<V>>,
    config: KeyedConfig,
    epoch: Instant,
    last_sweep: AtomicU64,
}

impl<V> fmt::Debug for KeyedMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedMap")
            .field("len", &self.len())
            .field("config", &self.config)
            .finish()
    }
}

impl<V> KeyedMap<V> {
    /// Creates an empty map.
    pub fn new(config: KeyedConfig) -> Self {
        Self {
            slots: RwLock::new(HashMap::default()),
            config: KeyedConfig {
                max_keys: config.max_keys.max(1),
                ..config
            },
            epoch: Instant::now(),
            last_sweep: AtomicU64::new(0),
        }
    }

    /// The map's bounds.
    pub const fn config(&self) -> &KeyedConfig {
        &self.config
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.epoch)
                .as_millis(),
        )
        .unwrap_or(u64::MAX)
    }

    fn idle_ms(&self) -> u64 {
        u64::try_from(self.config.idle_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Slots<V>> {
        self.slots.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Slots<V>> {
        self.slots.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The state for `key`, if present. Counts as a use.
    pub fn get(&self, key: &Key) -> Option<Arc<V>> {
        let now = self.now_ms();
        let slots = self.read();
        let slot = slots.get(key)?;
        slot.last_used.store(now, Ordering::Relaxed);
        Some(slot.value.clone())
    }

    /// The state for `key`, created with `make` if absent. Counts as a use,
    /// and may run an idle sweep or an eviction.
    pub fn get_or_insert_with(&self, key: &Key, make: impl FnOnce() -> V) -> Arc<V> {
        let now = self.now_ms();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.idle_ms()
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(now);
        }
        {
            let slots = self.read();
            if let Some(slot) = slots.get(key) {
                slot.last_used.store(now, Ordering::Relaxed);
                return slot.value.clone();
            }
        }
        let mut slots = self.write();
        if let Some(slot) = slots.get(key) {
            slot.last_used.store(now, Ordering::Relaxed);
            return slot.value.clone();
        }
        if slots.len() >= self.config.max_keys {
            Self::sweep_locked(&mut slots, now, self.idle_ms());
            if slots.len() >= self.config.max_keys {
                // Evict a batch of the least recently used keys, not just
                // one: a scan of the whole map then happens once per
                // max_keys/16 new keys instead of on every one, which matters
                // to a crawler that meets a new host on every request.
                let batch = (self.config.max_keys / 16).max(1);
                let mut idle: Vec<(u64, Key)> = slots
                    .iter()
                    .filter(|(_, s)| Arc::strong_count(&s.value) == 1)
                    .map(|(k, s)| (s.last_used.load(Ordering::Relaxed), k.clone()))
                    .collect();
                // Keys with work in flight are never evicted: they are
                // bounded by the work itself, so this one is admitted anyway.
                if idle.len() > batch {
                    idle.select_nth_unstable_by_key(batch, |(used, _)| *used);
                    idle.truncate(batch);
                }
                for (_, k) in idle {
                    slots.remove(&k);
                }
            }
        }
        let value = Arc::new(make());
        slots.insert(
            key.clone(),
            Slot {
                value: value.clone(),
                last_used: AtomicU64::new(now),
            },
        );
        value
    }

    fn sweep_locked(slots: &mut Slots<V>, now: u64, idle: u64) -> usize {
        let before = slots.len();
        slots.retain(|_, s| {
            Arc::strong_count(&s.value) > 1
                || now.saturating_sub(s.last_used.load(Ordering::Relaxed)) < idle
        });
        before - slots.len()
    }

    fn sweep(&self, now: u64) -> usize {
        let idle = self.idle_ms();
        Self::sweep_locked(&mut self.write(), now, idle)
    }

    /// Evicts every entry that is idle and not in use now. Returns how many
    /// were evicted.
    pub fn evict_idle(&self) -> usize {
        let now = self.now_ms();
        self.last_sweep.store(now, Ordering::Relaxed);
        self.sweep(now)
    }

    /// Removes `key`.
    pub fn remove(&self, key: &Key) -> Option<Arc<V>> {
        self.write().remove(key).map(|s| s.value)
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// A snapshot of every key and its state, for diagnostics. Does not count
    /// as a use.
    pub fn snapshot(&self) -> Vec<(Key, Arc<V>)> {
        self.read()
            .iter()
            .map(|(k, s)| (k.clone(), s.value.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(max_keys: usize, idle_secs: u64) -> KeyedConfig {
        KeyedConfig {
            max_keys,
            idle_timeout: Duration::from_secs(idle_secs),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn same_key_shares_state() {
        let map: KeyedMap<u32> = KeyedMap::new(cfg(10, 60));
        let a = map.get_or_insert_with(&Key::from("a"), || 1);
        let b = map.get_or_insert_with(&Key::from("a"), || 2);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*b, 1);
        assert_eq!(map.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_swept_on_access() {
        let map: KeyedMap<u32> = KeyedMap::new(cfg(1000, 60));
        for i in 0..100 {
            drop(map.get_or_insert_with(&Key::from(format!("host-{i}")), || i));
        }
        assert_eq!(map.len(), 100);
        tokio::time::advance(Duration::from_secs(30)).await;
        drop(map.get_or_insert_with(&Key::from("host-0"), || 0));
        assert_eq!(map.len(), 100, "nothing is idle yet");
        tokio::time::advance(Duration::from_secs(31)).await;
        // host-0 was used 31 s ago; the other 99 are 61 s idle.
        drop(map.get_or_insert_with(&Key::from("fresh"), || 0));
        assert_eq!(map.len(), 2);
        assert!(map.get(&Key::from("host-0")).is_some());
        assert!(map.get(&Key::from("host-5")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn size_is_bounded_by_lru_eviction() {
        let map: KeyedMap<u32> = KeyedMap::new(cfg(8, 3600));
        for i in 0..1000u32 {
            drop(map.get_or_insert_with(&Key::from(format!("host-{i}")), || i));
            tokio::time::advance(Duration::from_millis(1)).await;
            assert!(map.len() <= 8);
        }
        // The most recent keys survive.
        assert!(map.get(&Key::from("host-999")).is_some());
        assert!(map.get(&Key::from("host-0")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_map_evicts_the_oldest_sixteenth_at_once() {
        let map: KeyedMap<u32> = KeyedMap::new(cfg(160, 3600));
        for i in 0..160u32 {
            drop(map.get_or_insert_with(&Key::from(format!("host-{i}")), || i));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(map.len(), 160);
        drop(map.get_or_insert_with(&Key::from("one-more"), || 0));
        // The ten least recently used went in one pass.
        assert_eq!(map.len(), 151);
        assert!(map.get(&Key::from("host-9")).is_none());
        assert!(map.get(&Key::from("host-10")).is_some());
        assert!(map.get(&Key::from("one-more")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn entries_in_use_are_never_evicted() {
        let map: KeyedMap<u32> = KeyedMap::new(cfg(2, 1));
        let held = map.get_or_insert_with(&Key::from("held"), || 7);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(map.evict_idle(), 0);
        for i in 0..10u32 {
            drop(map.get_or_insert_with(&Key::from(format!("h{i}")), || i));
        }
        assert!(map.get(&Key::from("held")).is_some());
        assert!(map.len() <= 2);
        drop(held);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(map.evict_idle(), 2);
        assert!(map.is_empty());
    }
}
