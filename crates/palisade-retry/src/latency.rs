//! Recent latencies per key, for the adaptive backoff floor and for hedging
//! after the observed percentile.
//!
//! Each key keeps two log-linear histograms, the current window and the one
//! before it, so a percentile reflects the last one to two windows. Buckets
//! have 8 sub-buckets per power of two (at most 12.5 % relative error) and
//! a percentile is reported as its bucket's upper bound, so estimates err on
//! the slow side: a hedge goes out a little later rather than too early.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::Key;
use palisade_core::keyed::{KeyedConfig, KeyedMap};
use tokio::time::Instant;

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Values are microseconds, up to 2^34 µs (about 4.8 hours); longer ones
/// land in the last bucket.
const MAX_MSB: u32 = 34;
const BUCKETS: usize = ((MAX_MSB - SUB_BITS + 1) as usize + 1) * SUB as usize;

fn bucket_of(micros: u64) -> usize {
    let v = micros.min((1u64 << (MAX_MSB + 1)) - 1);
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) & (SUB - 1);
    ((msb - SUB_BITS + 1) as u64 * SUB + sub) as usize
}

/// The largest value that falls in `idx`, in microseconds.
fn upper_bound(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < SUB {
        return idx;
    }
    let octave = idx / SUB; // >= 1
    let sub = idx % SUB;
    let shift = octave - 1;
    ((SUB + sub) << shift) + (1u64 << shift) - 1
}

struct Hist {
    counts: Box<[u32; BUCKETS]>,
    total: u32,
}

impl Hist {
    fn new() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            total: 0,
        }
    }

    fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }
}

struct Windows {
    current: Hist,
    previous: Hist,
    current_start: Instant,
}

/// Recent latencies of one key.
pub(crate) struct LatencyWindow {
    inner: Mutex<Windows>,
    window: Duration,
}

impl LatencyWindow {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            inner: Mutex::new(Windows {
                current: Hist::new(),
                previous: Hist::new(),
                current_start: Instant::now(),
            }),
            window,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let age = now.saturating_duration_since(w.current_start);
        if age >= self.window {
            if age >= self.window.saturating_mul(2) {
                w.previous.clear();
            } else {
                let w = &mut *w;
                std::mem::swap(&mut w.previous, &mut w.current);
            }
            w.current.clear();
            w.current_start = now;
        }
        w
    }

    pub(crate) fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut w = self.lock();
        let i = bucket_of(micros);
        w.current.counts[i] = w.current.counts[i].saturating_add(1);
        w.current.total = w.current.total.saturating_add(1);
    }

    /// The `q` quantile (0 < q <= 1) of recent latencies, or `None` with
    /// fewer than `min_samples` samples.
    pub(crate) fn quantile(&self, q: f64, min_samples: u32) -> Option<Duration> {
        let w = self.lock();
        let total = u64::from(w.current.total) + u64::from(w.previous.total);
        if total == 0 || total < u64::from(min_samples) {
            return None;
        }
        // The smallest value with at least q of the samples at or below it.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0u64;
        for i in 0..BUCKETS {
            seen += u64::from(w.current.counts[i]) + u64::from(w.previous.counts[i]);
            if seen >= rank {
                return Some(Duration::from_micros(upper_bound(i)));
            }
        }
        Some(Duration::from_micros(upper_bound(BUCKETS - 1)))
    }
}

/// Latency windows per key, bounded like every keyed map.
#[derive(Clone)]
pub(crate) struct Latencies {
    map: Arc<KeyedMap<LatencyWindow>>,
    window: Duration,
}

impl std::fmt::Debug for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Latencies")
            .field("keys", &self.map.len())
            .field("window", &self.window)
            .finish()
    }
}

impl Latencies {
    pub(crate) fn new(window: Duration) -> Self {
        // Each key costs about 2 KiB of histogram, so keep fewer keys than
        // the default keyed map does.
        let config = KeyedConfig {
            max_keys: 1024,
            ..KeyedConfig::default()
        };
        Self {
            map: Arc::new(KeyedMap::new(config)),
            window,
        }
    }

    pub(crate) fn record(&self, key: &Key, latency: Duration) {
        self.map
            .get_or_insert_with(key, || LatencyWindow::new(self.window))
            .record(latency);
    }

    pub(crate) fn quantile(&self, key: &Key, q: f64, min_samples: u32) -> Option<Duration> {
        self.map.get(key)?.quantile(q, min_samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for v in (0..5000u64).chain([1 << 20, (1 << 34) + 5, u64::MAX]) {
            let i = bucket_of(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            assert!(i >= last || v > 5000);
            last = i;
            if v < (1 << (MAX_MSB + 1)) {
                assert!(upper_bound(i) >= v, "{v} above bound {}", upper_bound(i));
            }
        }
    }

    proptest! {
        #[test]
        fn bucket_error_is_at_most_an_eighth(v in 1u64..(1 << 34)) {
            let ub = upper_bound(bucket_of(v));
            prop_assert!(ub >= v);
            prop_assert!((ub - v) as f64 <= v as f64 / 8.0 + 1.0, "v={} ub={}", v, ub);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn quantile_reflects_recent_windows_only() {
        let w = LatencyWindow::new(Duration::from_secs(10));
        assert_eq!(w.quantile(0.95, 1), None);
        for ms in 1..=100u64 {
            w.record(Duration::from_millis(ms));
        }
        assert_eq!(w.quantile(0.5, 200), None, "too few samples");
        let p95 = w.quantile(0.95, 10).unwrap();
        assert!(
            p95 >= Duration::from_millis(95) && p95 <= Duration::from_millis(107),
            "{p95:?}"
        );
        let p50 = w.quantile(0.5, 10).unwrap();
        assert!(
            p50 >= Duration::from_millis(50) && p50 <= Duration::from_millis(57),
            "{p50:?}"
        );
        // Still seen during the next window, forgotten after two.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(w.quantile(0.5, 10).is_some());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(w.quantile(0.5, 1), None);
    }
}
