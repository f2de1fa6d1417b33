//! The state one layer's services share: per-key partitions and the global one.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::Key;
use palisade_core::keyed::KeyedMap;

use crate::config::{Config, LimitCallback, LimitChange};
use crate::diagnostics::{KeyStats, WAIT_BUCKETS, WaitTimes};
use crate::events;
use crate::gate::Gate;
use crate::limit::{Algorithm, Limit, Sample};

/// Counters kept outside the gate's lock.
pub(crate) struct Stats {
    wait: [AtomicU64; WAIT_BUCKETS],
    queue_full: AtomicU64,
    queue_timeout: AtomicU64,
    overload_signals: AtomicU64,
}

impl Stats {
    fn new() -> Self {
        Self {
            wait: std::array::from_fn(|_| AtomicU64::new(0)),
            queue_full: AtomicU64::new(0),
            queue_timeout: AtomicU64::new(0),
            overload_signals: AtomicU64::new(0),
        }
    }

    pub(crate) fn record_wait(&self, wait: Duration) {
        self.wait[WaitTimes::bucket_of(wait)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_no_wait(&self) {
        self.wait[0].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_queue_full(&self) {
        self.queue_full.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_queue_timeout(&self) {
        self.queue_timeout.fetch_add(1, Ordering::Relaxed);
    }
}

/// One key's limit (or the global one) with its counters.
pub(crate) struct Partition {
    pub(crate) key: Key,
    pub(crate) gate: Gate,
    pub(crate) stats: Stats,
    on_change: Option<LimitCallback>,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("key", &self.key)
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl Partition {
    pub(crate) fn new(key: Key, limit: &Limit, on_change: Option<LimitCallback>) -> Self {
        Self {
            key,
            gate: Gate::new(Algorithm::new(limit)),
            stats: Stats::new(),
            on_change,
        }
    }

    /// Feeds one sample to the adaptive limit and announces any change.
    pub(crate) fn record_sample(&self, sample: &Sample) {
        if sample.dropped {
            self.stats.overload_signals.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((from, to)) = self.gate.sample(sample) {
            events::limit_changed(&self.key, from, to);
            if let Some(cb) = &self.on_change {
                cb(&self.key, LimitChange { from, to });
            }
        }
    }

    pub(crate) fn stats(&self) -> KeyStats {
        let view = self.gate.view();
        let mut buckets = [0u64; WAIT_BUCKETS];
        for (b, a) in buckets.iter_mut().zip(&self.stats.wait) {
            *b = a.load(Ordering::Relaxed);
        }
        KeyStats {
            key: self.key.clone(),
            limit: view.limit,
            in_flight: view.in_flight,
            queued: view.queued,
            peak_in_flight: view.peak,
            rejected_queue_full: self.stats.queue_full.load(Ordering::Relaxed),
            rejected_queue_timeout: self.stats.queue_timeout.load(Ordering::Relaxed),
            overload_signals: self.stats.overload_signals.load(Ordering::Relaxed),
            wait: WaitTimes::from_buckets(buckets),
        }
    }
}

/// Everything the services of one layer share, behind one `Arc`.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) map: KeyedMap<Partition>,
    pub(crate) global: Option<Arc<Partition>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("keys", &self.map.len())
            .field("global", &self.global)
            .finish()
    }
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let global = config
            .global_limit
            .map(|n| Arc::new(Partition::new(Key::global(), &Limit::Fixed(n), None)));
        Self {
            map: KeyedMap::new(config.keyed),
            global,
            config,
        }
    }

    /// The partition of `key`, created on first use.
    pub(crate) fn partition(&self, key: &Key) -> Arc<Partition> {
        self.map.get_or_insert_with(key, || {
            Partition::new(
                key.clone(),
                &self.config.limit,
                self.config.on_limit_change.clone(),
            )
        })
    }
}
