//! What each key's limit is doing: in flight, queued, peak, waits.
//!
//! Read it from [`Diagnostics`], which a layer and each of its services hand
//! out. The one question it answers best: **if peak in-flight pins at the
//! cap, the gate is the bottleneck.** When [`KeyStats::peak_in_flight`]
//! reaches [`KeyStats::limit`] and the wait distribution grows a tail,
//! requests are queueing in this layer, not at the upstream; raise the limit
//! (if the upstream can take it) or shed earlier with a smaller
//! `max_queue`. When the peak stays well below the limit, the limit is not
//! what makes requests slow.
//!
//! ```
//! use palisade_concurrency::ConcurrencyLimitLayer;
//! use palisade_core::Key;
//!
//! let layer = ConcurrencyLimitLayer::builder().build().unwrap();
//! let diag = layer.diagnostics();
//! for stats in diag.keys() {
//!     if stats.gate_is_bottleneck() {
//!         eprintln!("{}: p99 wait {:?}", stats.key, stats.wait.quantile(0.99));
//!     }
//! }
//! assert!(diag.key(&Key::from("never-seen")).is_none());
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::Key;

use crate::shared::Shared;

/// How many wait-time buckets there are: zero, then powers of two of
/// microseconds up to about 6 days.
pub(crate) const WAIT_BUCKETS: usize = 40;

/// A read handle on a layer's state. Cheap to clone; every clone, the layer
/// and all its services look at the same state.
#[derive(Clone)]
pub struct Diagnostics {
    shared: Arc<Shared>,
}

impl fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Diagnostics")
            .field("keys", &self.shared.map.len())
            .finish_non_exhaustive()
    }
}

impl Diagnostics {
    pub(crate) const fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The statistics of `key`, if it has been seen and not evicted. Counts
    /// as a use of the key, delaying its idle eviction.
    pub fn key(&self, key: &Key) -> Option<KeyStats> {
        self.shared.map.get(key).map(|p| p.stats())
    }

    /// The limit in force for `key`, if it has been seen and not evicted.
    /// Counts as a use of the key.
    pub fn limit(&self, key: &Key) -> Option<usize> {
        self.shared.map.get(key).map(|p| p.gate.limit())
    }

    /// The statistics of every key held. Does not count as a use.
    pub fn keys(&self) -> Vec<KeyStats> {
        self.shared
            .map
            .snapshot()
            .into_iter()
            .map(|(_, p)| p.stats())
            .collect()
    }

    /// The statistics of the global limit, if one is configured. Its key is
    /// [`Key::global`].
    pub fn global(&self) -> Option<KeyStats> {
        self.shared.global.as_ref().map(|p| p.stats())
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.shared.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.shared.map.is_empty()
    }

    /// Starts a new peak measurement for every key (and the global limit)
    /// from what is in flight now, so a peak can be read per interval.
    pub fn reset_peaks(&self) {
        for (_, p) in self.shared.map.snapshot() {
            p.gate.reset_peak();
        }
        if let Some(g) = &self.shared.global {
            g.gate.reset_peak();
        }
    }

    /// Evicts every key that is idle and has nothing in flight or queued.
    /// Returns how many were evicted. This also happens on its own as
    /// requests arrive.
    pub fn evict_idle(&self) -> usize {
        self.shared.map.evict_idle()
    }
}

/// One key's statistics at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyStats {
    /// The key.
    pub key: Key,
    /// The limit in force now.
    pub limit: usize,
    /// Requests holding a permit now (body-aware permits count until the
    /// body ends).
    pub in_flight: usize,
    /// Requests waiting for a permit now.
    pub queued: usize,
    /// The most requests in flight at once since the key was created or
    /// [`Diagnostics::reset_peaks`] was called.
    pub peak_in_flight: usize,
    /// Requests shed at once because the queue was full.
    pub rejected_queue_full: u64,
    /// Requests that waited their maximum wait without a permit.
    pub rejected_queue_timeout: u64,
    /// Samples that were overload signals (429, 503, timeout, reset); only
    /// counted by adaptive limits.
    pub overload_signals: u64,
    /// How long admitted requests waited for their permit.
    pub wait: WaitTimes,
}

impl KeyStats {
    /// Whether the peak in flight reached the limit: this layer, not the
    /// upstream, is what held requests back.
    pub const fn gate_is_bottleneck(&self) -> bool {
        self.peak_in_flight >= self.limit
    }

    /// How many requests were admitted (got a permit).
    pub fn admitted(&self) -> u64 {
        self.wait.count()
    }
}

/// The distribution of waits for a permit, in power-of-two buckets of
/// microseconds. Requests admitted at once are in the zero bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct WaitTimes {
    buckets: [u64; WAIT_BUCKETS],
}

impl fmt::Debug for WaitTimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitTimes")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max())
            .finish()
    }
}

impl WaitTimes {
    pub(crate) const fn from_buckets(buckets: [u64; WAIT_BUCKETS]) -> Self {
        Self { buckets }
    }

    pub(crate) fn bucket_of(wait: Duration) -> usize {
        let us = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        let i = (u64::BITS - us.leading_zeros()) as usize;
        i.min(WAIT_BUCKETS - 1)
    }

    fn upper(i: usize) -> Duration {
        if i == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros(1u64 << i)
        }
    }

    /// How many waits were recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// How many requests got their permit without waiting.
    pub const fn immediate(&self) -> u64 {
        self.buckets[0]
    }

    /// An upper bound of the `q` quantile (`q` in `[0, 1]`): the top of the
    /// bucket it falls in, so at most twice the true value. Zero when nothing
    /// was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(i);
            }
        }
        Self::upper(WAIT_BUCKETS - 1)
    }

    /// An upper bound of the longest wait.
    pub fn max(&self) -> Duration {
        self.buckets
            .iter()
            .rposition(|&n| n > 0)
            .map_or(Duration::ZERO, Self::upper)
    }

    /// Each non-empty bucket as `(upper bound, count)`, shortest first.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (Self::upper(i), *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn times(waits: &[Duration]) -> WaitTimes {
        let mut b = [0u64; WAIT_BUCKETS];
        for w in waits {
            b[WaitTimes::bucket_of(*w)] += 1;
        }
        WaitTimes::from_buckets(b)
    }

    #[test]
    fn quantiles_of_known_waits() {
        let mut waits = vec![Duration::ZERO; 90];
        waits.extend(std::iter::repeat_n(Duration::from_millis(10), 9));
        waits.push(Duration::from_secs(1));
        let t = times(&waits);
        assert_eq!(t.count(), 100);
        assert_eq!(t.immediate(), 90);
        assert_eq!(t.quantile(0.5), Duration::ZERO);
        let p95 = t.quantile(0.95);
        assert!(p95 >= Duration::from_millis(10) && p95 <= Duration::from_millis(20));
        let max = t.max();
        assert!(max >= Duration::from_secs(1) && max <= Duration::from_secs(2));
        assert_eq!(times(&[]).quantile(0.99), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn quantile_bounds_the_true_value_within_two_times(
            mut waits in proptest::collection::vec(0u64..10_000_000, 1..200),
            q in 0.0f64..=1.0,
        ) {
            waits.sort_unstable();
            let ds: Vec<Duration> = waits.iter().map(|&us| Duration::from_micros(us)).collect();
            let t = times(&ds);
            let rank = ((q * waits.len() as f64).ceil() as usize).max(1);
            let truth = Duration::from_micros(waits[rank - 1]);
            let est = t.quantile(q);
            prop_assert!(est >= truth, "{est:?} < {truth:?}");
            prop_assert!(est <= truth * 2 + Duration::from_micros(1), "{est:?} > 2 × {truth:?}");
        }
    }
}
