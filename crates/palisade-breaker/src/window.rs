//! The sliding windows the ratio policies read: the last N calls, or the
//! calls of the last T split into buckets.

use crate::config::Window;

/// Counts over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Calls recorded (failures and successes; local rejections are not calls).
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Calls slower than the slow-call threshold, failed or not.
    pub slow: u64,
}

const FAILED: u8 = 1;
const SLOW: u8 = 2;

#[derive(Debug)]
pub(crate) enum Sliding {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Sliding {
    pub(crate) fn new(window: Window) -> Self {
        match window {
            Window::Count { size } => Self::Count(CountWindow::new(size as usize)),
            Window::Time { length, buckets } => {
                let bucket_ns = u64::try_from(length.as_nanos() / u128::from(buckets))
                    .unwrap_or(u64::MAX)
                    .max(1);
                Self::Time(TimeWindow::new(bucket_ns, buckets as usize))
            }
        }
    }

    pub(crate) fn record(&mut self, now_ns: u64, failed: bool, slow: bool) {
        match self {
            Self::Count(w) => w.record(failed, slow),
            Self::Time(w) => w.record(now_ns, failed, slow),
        }
    }

    pub(crate) fn counts(&self, now_ns: u64) -> WindowCounts {
        match self {
            Self::Count(w) => w.counts(),
            Self::Time(w) => w.counts(now_ns),
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Self::Count(w) => w.clear(),
            Self::Time(w) => w.clear(),
        }
    }
}

/// A ring of the last `size` outcomes with running totals, so reading the
/// counts is O(1).
#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: Box<[u8]>,
    next: usize,
    len: usize,
    failures: u64,
    slow: u64,
}

impl CountWindow {
    pub(crate) fn new(size: usize) -> Self {
        Self {
            ring: vec![0; size.max(1)].into_boxed_slice(),
            next: 0,
            len: 0,
            failures: 0,
            slow: 0,
        }
    }

    pub(crate) fn record(&mut self, failed: bool, slow: bool) {
        if self.len == self.ring.len() {
            let old = self.ring[self.next];
            self.failures -= u64::from(old & FAILED);
            self.slow -= u64::from((old & SLOW) >> 1);
        } else {
            self.len += 1;
        }
        self.ring[self.next] = u8::from(failed) | (u8::from(slow) << 1);
        self.failures += u64::from(failed);
        self.slow += u64::from(slow);
        self.next = (self.next + 1) % self.ring.len();
    }

    pub(crate) fn counts(&self) -> WindowCounts {
        WindowCounts {
            calls: self.len as u64,
            failures: self.failures,
            slow: self.slow,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
        self.failures = 0;
        self.slow = 0;
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket-length interval since the epoch this bucket counts;
    /// a bucket whose index is not the current one is reused.
    index: u64,
    calls: u64,
    failures: u64,
    slow: u64,
}

/// The last `buckets × bucket_ns` of time, in buckets. The window covers the
/// current, partial bucket and the `buckets − 1` before it, so its span is
/// between `(buckets − 1) × bucket_ns` and `buckets × bucket_ns`, as Polly's
/// rolling health metrics do.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    bucket_ns: u64,
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    pub(crate) fn new(bucket_ns: u64, buckets: usize) -> Self {
        Self {
            bucket_ns: bucket_ns.max(1),
            buckets: vec![Bucket::default(); buckets.max(1)].into_boxed_slice(),
        }
    }

    fn live(&self, b: &Bucket, current: u64) -> bool {
        b.index <= current && current - b.index < self.buckets.len() as u64
    }

    pub(crate) fn record(&mut self, now_ns: u64, failed: bool, slow: bool) {
        let index = now_ns / self.bucket_ns;
        let n = self.buckets.len() as u64;
        let b = &mut self.buckets[(index % n) as usize];
        if b.index != index {
            *b = Bucket {
                index,
                ..Bucket::default()
            };
        }
        b.calls += 1;
        b.failures += u64::from(failed);
        b.slow += u64::from(slow);
    }

    pub(crate) fn counts(&self, now_ns: u64) -> WindowCounts {
        let current = now_ns / self.bucket_ns;
        let mut c = WindowCounts::default();
        for b in self.buckets.iter().filter(|b| self.live(b, current)) {
            c.calls += b.calls;
            c.failures += b.failures;
            c.slow += b.slow;
        }
        c
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn count_window_keeps_the_last_n() {
        let mut w = CountWindow::new(3);
        w.record(true, false);
        w.record(true, true);
        w.record(false, false);
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 3,
                failures: 2,
                slow: 1
            }
        );
        w.record(false, false); // pushes out the first failure
        assert_eq!(
            w.counts(),
            WindowCounts {
                calls: 3,
                failures: 1,
                slow: 1
            }
        );
        w.clear();
        assert_eq!(w.counts(), WindowCounts::default());
    }

    #[test]
    fn time_window_forgets_buckets_older_than_its_span() {
        // 4 buckets of 10 ns.
        let mut w = TimeWindow::new(10, 4);
        w.record(0, true, false);
        w.record(15, false, true);
        assert_eq!(w.counts(15).calls, 2);
        // At 39 the bucket [0, 10) is still the oldest of four.
        assert_eq!(w.counts(39).failures, 1);
        // At 40 it has slid out.
        assert_eq!(
            w.counts(40),
            WindowCounts {
                calls: 1,
                failures: 0,
                slow: 1
            }
        );
        assert_eq!(w.counts(60), WindowCounts::default());
    }

    #[derive(Debug, Clone)]
    struct Event {
        dt: u64,
        failed: bool,
        slow: bool,
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        proptest::collection::vec(
            (0u64..200, any::<bool>(), any::<bool>()).prop_map(|(dt, failed, slow)| Event {
                dt,
                failed,
                slow,
            }),
            0..300,
        )
    }

    proptest! {
        /// The ring agrees with a naive "last N outcomes" list.
        #[test]
        fn count_window_matches_model(size in 1usize..40, evs in events()) {
            let mut w = CountWindow::new(size);
            let mut model: Vec<(bool, bool)> = Vec::new();
            for e in &evs {
                w.record(e.failed, e.slow);
                model.push((e.failed, e.slow));
                let tail = &model[model.len().saturating_sub(size)..];
                let expect = WindowCounts {
                    calls: tail.len() as u64,
                    failures: tail.iter().filter(|e| e.0).count() as u64,
                    slow: tail.iter().filter(|e| e.1).count() as u64,
                };
                prop_assert_eq!(w.counts(), expect);
            }
        }

        /// The buckets agree with a naive list of timestamped outcomes filtered
        /// to the buckets still in the window, at every step and at a later
        /// read time.
        #[test]
        fn time_window_matches_model(
            bucket_ns in 1u64..50,
            buckets in 1usize..12,
            evs in events(),
            later in 0u64..2_000,
        ) {
            let mut w = TimeWindow::new(bucket_ns, buckets);
            let mut model: Vec<(u64, bool, bool)> = Vec::new();
            let mut now = 0u64;
            let expect = |model: &[(u64, bool, bool)], now: u64| {
                let current = now / bucket_ns;
                let live: Vec<_> = model
                    .iter()
                    .filter(|(t, ..)| current - t / bucket_ns < buckets as u64)
                    .collect();
                WindowCounts {
                    calls: live.len() as u64,
                    failures: live.iter().filter(|e| e.1).count() as u64,
                    slow: live.iter().filter(|e| e.2).count() as u64,
                }
            };
            for e in &evs {
                now += e.dt;
                w.record(now, e.failed, e.slow);
                model.push((now, e.failed, e.slow));
                prop_assert_eq!(w.counts(now), expect(&model, now));
            }
            prop_assert_eq!(w.counts(now + later), expect(&model, now + later));
            // Totals never exceed what was recorded.
            let c = w.counts(now);
            prop_assert!(c.failures <= c.calls && c.slow <= c.calls);
        }
    }
}
