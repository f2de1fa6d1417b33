//! The state every clone of a layer's services shares: the backend, and per
//! key the backend's state, the server's pause and the local wait queue.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use governor::clock::Clock;
use http::{HeaderMap, HeaderName, StatusCode};
use palisade_core::keyed::KeyedMap;
use palisade_core::{Key, RetryAfter};

use crate::backend::RateLimitBackend;
use crate::clock::TokioClock;
use crate::config::Config;

pub(crate) struct Shared<Bk: RateLimitBackend> {
    pub(crate) config: Config,
    pub(crate) backend: Bk,
    keys: KeyedMap<Entry<Bk::KeyState>>,
    /// The global key's entry, outside the map: an unkeyed limiter (the
    /// [`Global`](palisade_core::Global) key function) then pays no lookup,
    /// and its one entry is never evicted.
    global: OnceLock<Arc<Entry<Bk::KeyState>>>,
    pub(crate) clock: TokioClock,
}

impl<Bk: RateLimitBackend> std::fmt::Debug for Shared<Bk> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("backend", &self.backend)
            .field("keys", &self.key_count())
            .finish()
    }
}

/// One key's state in this process.
pub(crate) struct Entry<S> {
    pub(crate) backend: S,
    /// Clock reading (ns) until which the server asked us to pause; 0: none.
    paused_until: AtomicU64,
    /// Mirrors `queue.waiters`, read without the lock on the fast path.
    waiters: AtomicU32,
    queue: Mutex<Queue>,
}

/// Requests of one key waiting in this process. Each has a slot, one
/// replenish interval after the previous one, so that the wait announced to a
/// request is the wait it gets, and waiters go in arrival order instead of
/// all waking for the same slot.
#[derive(Debug, Default)]
struct Queue {
    /// The latest slot reserved (clock reading, ns).
    tail: u64,
    waiters: u32,
}

/// A request's place in its key's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) at: u64,
    /// The queue's tail before this slot was reserved, restored if this
    /// request leaves while it is still last.
    prev_tail: u64,
}

/// The headers that carry a remaining count, looked up by their parsed
/// names first so that most responses cost no header-name parsing.
static REMAINING_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("ratelimit-remaining"),
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("x-ratelimit-remaining"),
];

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<S> Entry<S> {
    pub(crate) fn new(backend: S) -> Self {
        Self {
            backend,
            paused_until: AtomicU64::new(0),
            waiters: AtomicU32::new(0),
            queue: Mutex::new(Queue::default()),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn paused_until(&self) -> u64 {
        self.paused_until.load(Ordering::Acquire)
    }

    pub(crate) fn pause_until(&self, until: u64) {
        self.paused_until.fetch_max(until, Ordering::AcqRel);
    }

    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Acquire) > 0
    }

    /// Joins the queue no earlier than `earliest`, one interval after the
    /// last waiter. Fails with the slot it would have had when that is past
    /// `limit`, leaving the queue untouched.
    pub(crate) fn reserve(&self, earliest: u64, interval: u64, limit: u64) -> Result<Slot, u64> {
        let mut q = self.queue();
        let at = if q.waiters > 0 {
            earliest.max(q.tail.saturating_add(interval))
        } else {
            earliest
        };
        if at > limit {
            return Err(at);
        }
        let slot = Slot {
            at,
            prev_tail: q.tail,
        };
        q.tail = q.tail.max(at);
        q.waiters += 1;
        self.waiters.store(q.waiters, Ordering::Release);
        Ok(slot)
    }

    /// Moves a waiter that woke but found its slot taken by another instance
    /// sharing the backend (missed by more than one interval) to the back of
    /// the queue, no earlier than `earliest`. Re-targeting the next free
    /// slot instead would send every such waiter, on every instance, after
    /// the same slot again. Fails, leaving the queue untouched, when that is
    /// past `limit`.
    pub(crate) fn rewait(
        &self,
        slot: &mut Slot,
        earliest: u64,
        interval: u64,
        limit: u64,
    ) -> Result<u64, u64> {
        let mut q = self.queue();
        // Missed by less than one interval: the wake came late (tokio wakes
        // on a millisecond tick) or the previous sender did, which moved the
        // schedule by the same lateness. The slot is still this waiter's;
        // sending it to the back would make every late wake cost a whole
        // queue, and a long queue would run out of its wait.
        if earliest <= slot.at.saturating_add(interval) {
            if earliest > limit {
                return Err(earliest);
            }
            slot.at = earliest;
            q.tail = q.tail.max(earliest);
            return Ok(earliest);
        }
        // `waiters` counts this one: others wait too when it is above 1.
        let at = if q.waiters > 1 {
            earliest.max(q.tail.saturating_add(interval))
        } else {
            earliest
        };
        if at > limit {
            return Err(at);
        }
        slot.prev_tail = q.tail;
        q.tail = q.tail.max(at);
        slot.at = at;
        Ok(at)
    }

    /// Leaves the queue. A request that leaves without sending gives its
    /// slot back when nobody queued behind it.
    pub(crate) fn leave(&self, slot: &Slot, sent: bool) {
        let mut q = self.queue();
        if !sent && q.tail == slot.at {
            q.tail = slot.prev_tail;
        }
        q.waiters = q.waiters.saturating_sub(1);
        self.waiters.store(q.waiters, Ordering::Release);
    }
}

impl<Bk: RateLimitBackend> Shared<Bk> {
    pub(crate) fn new(config: Config, backend: Bk) -> Self {
        Self {
            keys: KeyedMap::new(config.keyed),
            global: OnceLock::new(),
            config,
            backend,
            clock: TokioClock::new(),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now().as_u64()
    }

    pub(crate) fn entry(&self, key: &Key) -> Arc<Entry<Bk::KeyState>> {
        let make = || Entry::new(self.backend.key_state(key, &self.config.quota));
        if *key == Key::global() {
            return self.global.get_or_init(|| Arc::new(make())).clone();
        }
        self.keys.get_or_insert_with(key, make)
    }

    /// The entry of `key`, if it has one; counts as a use.
    pub(crate) fn existing(&self, key: &Key) -> Option<Arc<Entry<Bk::KeyState>>> {
        if *key == Key::global() {
            return self.global.get().cloned();
        }
        self.keys.get(key)
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len() + usize::from(self.global.get().is_some())
    }

    pub(crate) fn evict_idle(&self) -> usize {
        self.keys.evict_idle()
    }

    pub(crate) fn interval(&self) -> u64 {
        nanos(self.config.quota.replenish_interval())
    }

    /// Reads the server's view of this key from a response, and pauses the
    /// key when the server says its quota is spent: a 429 with
    /// `Retry-After` (either form) or a reset header, or a
    /// `RateLimit-Remaining: 0` (or `X-RateLimit-Remaining: 0`) with a reset.
    /// Returns the pause applied.
    pub(crate) fn observe(
        &self,
        key: &Key,
        entry: &Entry<Bk::KeyState>,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<Duration> {
        if !self.config.listen_to_server {
            return None;
        }
        let max = self.config.max_server_pause;
        let pause = if status == StatusCode::TOO_MANY_REQUESTS {
            RetryAfter::from_headers(headers, max)
        } else if REMAINING_HEADERS.iter().any(|h| headers.contains_key(h))
            && RetryAfter::remaining(headers) == Some(0)
        {
            RetryAfter::reset_at(headers, SystemTime::now()).map(|d| d.min(max))
        } else {
            None
        }?;
        if pause.is_zero() {
            return None;
        }
        entry.pause_until(self.now().saturating_add(nanos(pause)));
        self.backend.pause(key, &entry.backend, pause);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_slots_are_spaced_and_given_back() {
        let e = Entry::new(());
        let a = e.reserve(100, 10, 1_000).unwrap();
        assert_eq!(a.at, 100);
        let b = e.reserve(50, 10, 1_000).unwrap();
        assert_eq!(b.at, 110, "queues behind the first waiter");
        let c = e.reserve(50, 10, 1_000).unwrap();
        assert_eq!(c.at, 120);
        assert_eq!(e.reserve(50, 10, 125).unwrap_err(), 130, "past the limit");
        // The last waiter leaves without sending: its slot is given back.
        e.leave(&c, false);
        assert_eq!(e.reserve(50, 10, 1_000).unwrap().at, 120);
    }

    #[test]
    fn an_empty_queue_takes_the_backend_time() {
        let e = Entry::new(());
        let a = e.reserve(500, 10, 1_000).unwrap();
        e.leave(&a, true);
        assert!(!e.has_waiters());
        assert_eq!(e.reserve(300, 10, 1_000).unwrap().at, 300);
    }

    proptest::proptest! {
        /// Whatever the arrivals and departures, waiters' slots never pass
        /// their limit, and while others wait a new slot is at least one
        /// interval after the previous tail.
        #[test]
        fn slots_respect_limits_and_spacing(
            ops in proptest::collection::vec((0u64..1_000, 0u64..2_000, proptest::bool::ANY), 1..200),
            interval in 1u64..50,
        ) {
            let e = Entry::new(());
            let mut held: Vec<Slot> = Vec::new();
            for (earliest, limit, leave) in ops {
                if leave && !held.is_empty() {
                    let s = held.remove(0);
                    e.leave(&s, false);
                    continue;
                }
                let tail_before = e.queue().tail;
                let others = !held.is_empty();
                match e.reserve(earliest, interval, limit) {
                    Ok(s) => {
                        proptest::prop_assert!(s.at <= limit);
                        proptest::prop_assert!(s.at >= earliest);
                        if others {
                            proptest::prop_assert!(s.at >= tail_before + interval);
                        }
                        held.push(s);
                    }
                    Err(at) => {
                        proptest::prop_assert!(at > limit);
                        proptest::prop_assert_eq!(e.queue().tail, tail_before);
                    }
                }
                proptest::prop_assert_eq!(e.queue().waiters as usize, held.len());
                proptest::prop_assert_eq!(e.has_waiters(), !held.is_empty());
            }
        }
    }
}
