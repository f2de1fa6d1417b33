//! Retry budgets: retries as a bounded fraction of requests.
//!
//! A budget caps retries so that a failing upstream sees at most a little
//! more traffic than it would without retries, instead of the 4× a naive
//! "retry three times" policy sends during an outage. The model is Finagle's
//! `RetryBudget`:
//!
//! - every logical request **deposits** [`retry_ratio`](BudgetConfig::retry_ratio)
//!   of a retry (default 0.2: 20 %);
//! - every retry (and every hedge) **withdraws** one whole retry, and fails
//!   when less than one is available;
//! - a **reserve** of [`min_retries_per_sec`](BudgetConfig::min_retries_per_sec)
//!   × [`ttl`](BudgetConfig::ttl) retries (default 10/s × 10 s) is always
//!   there, so that a client with little traffic can still retry;
//! - deposits and withdrawals **expire** after `ttl` (default 10 s), kept in
//!   ten slots of `ttl / 10`, so the budget follows recent traffic.
//!
//! Arithmetic is in fixed point with a resolution of one millionth of a retry
//! per request, so a fractional ratio such as 0.6 allows exactly 6 retries per
//! 10 requests. (tower's `TpsBudget` truncates `1 / ratio` for ratios below
//! one and so allows one retry per request at 0.6: tower issue 857.)
//!
//! [`RetryBudget`] is a handle: its clones share one budget. Give the same
//! handle to the [`RetryLayer`](crate::RetryLayer) and the
//! [`HedgeLayer`](crate::HedgeLayer) so that hedges and retries spend one
//! budget.
//!
//! ```
//! use palisade_retry::budget::{BudgetConfig, RetryBudget};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let config = BudgetConfig::new(Duration::from_secs(10), 0, 0.6).unwrap();
//! let budget = RetryBudget::new(config);
//! for _ in 0..10 {
//!     budget.deposit();
//! }
//! let allowed = (0..10).filter(|_| budget.try_withdraw()).count();
//! assert_eq!(allowed, 6);
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use palisade_core::Key;
use palisade_core::keyed::{KeyedConfig, KeyedMap};
use tokio::time::Instant;

use crate::error::{ConfigError, check_range};

/// Fixed-point units per retry: one millionth of a retry is the resolution.
const SCALE: i64 = 1_000_000;
const SLOTS: usize = 10;

/// The largest ratio accepted: Finagle allows up to 1000 retries per request.
pub const MAX_RETRY_RATIO: f64 = 1000.0;

/// The settings of a [`RetryBudget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    ttl: Duration,
    min_retries_per_sec: u32,
    retry_ratio: f64,
}

impl Default for BudgetConfig {
    /// Finagle's defaults: ttl 10 s, at least 10 retries per second, 20 % of
    /// requests.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(10),
            min_retries_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// Validates a budget configuration.
    ///
    /// - `ttl`: how long deposits and withdrawals count. Between 1 s and 1 h
    ///   (Finagle's bounds); default 10 s.
    /// - `min_retries_per_sec`: the reserve, retries per second always
    ///   allowed; default 10 (Finagle).
    /// - `retry_ratio`: retries each request earns, `0.2` for 20 %; between 0
    ///   and [`MAX_RETRY_RATIO`]; default 0.2 (Finagle).
    ///
    /// # Errors
    ///
    /// A ttl out of range, a ratio that is NaN, infinite or out of range, or
    /// both the reserve and the ratio zero (a budget that never allows a
    /// retry: configure no retries instead).
    pub fn new(
        ttl: Duration,
        min_retries_per_sec: u32,
        retry_ratio: f64,
    ) -> Result<Self, ConfigError> {
        if ttl.is_zero() {
            return Err(ConfigError::Zero {
                field: "budget.ttl",
            });
        }
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
            return Err(ConfigError::OutOfRange {
                field: "budget.ttl",
                value: ttl.as_secs_f64(),
                allowed: "between 1 and 3600 seconds",
            });
        }
        check_range(
            "budget.retry_ratio",
            retry_ratio,
            0.0,
            MAX_RETRY_RATIO,
            "between 0 and 1000",
        )?;
        if min_retries_per_sec == 0 && retry_ratio == 0.0 {
            return Err(ConfigError::Invalid {
                field: "budget",
                reason: "allows no retry at all: `min_retries_per_sec` and `retry_ratio` are both zero",
            });
        }
        Ok(Self {
            ttl,
            min_retries_per_sec,
            retry_ratio,
        })
    }

    /// How long deposits and withdrawals count.
    pub const fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Retries per second always allowed.
    pub const fn min_retries_per_sec(&self) -> u32 {
        self.min_retries_per_sec
    }

    /// Retries each request earns.
    pub const fn retry_ratio(&self) -> f64 {
        self.retry_ratio
    }

    fn deposit_units(&self) -> i64 {
        // Validated to [0, 1000], so the product fits comfortably.
        (self.retry_ratio * SCALE as f64).round() as i64
    }

    fn reserve_units(&self) -> i64 {
        let per_ttl = u128::from(self.min_retries_per_sec) * self.ttl.as_millis() / 1000;
        i64::try_from(per_ttl.saturating_mul(SCALE as u128)).unwrap_or(i64::MAX / 2)
    }
}

/// A sliding window of deposits and withdrawals, in fixed-point units.
///
/// Deposits, one per request, are lock-free: an atomic add to the current
/// slot. Rotating to a new slot and withdrawing (one per retry) take a lock,
/// so that withdrawals are exact. A deposit races with rotation only if it
/// is delayed by a whole `ttl`, which cannot happen in practice.
pub(crate) struct Window {
    slots: [AtomicI64; SLOTS],
    /// The number of the current slot since `epoch`; its index is
    /// `head % SLOTS`.
    head: AtomicU64,
    epoch: Instant,
    slot_nanos: u64,
    rotate: Mutex<()>,
    deposit: i64,
    reserve: i64,
}

impl Window {
    pub(crate) fn new(config: &BudgetConfig) -> Self {
        let slot = config.ttl / SLOTS as u32;
        Self {
            slots: Default::default(),
            head: AtomicU64::new(0),
            epoch: Instant::now(),
            // The ttl is validated to at least one second.
            slot_nanos: u64::try_from(slot.as_nanos()).unwrap_or(u64::MAX).max(1),
            rotate: Mutex::new(()),
            deposit: config.deposit_units(),
            reserve: config.reserve_units(),
        }
    }

    fn slot_now(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX) / self.slot_nanos
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The lock guards no data of its own, so a poisoned one is as good.
        self.rotate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the head to slot `n`, clearing the slots it passes. Call with
    /// the lock held.
    fn advance(&self, n: u64) {
        let head = self.head.load(Ordering::Acquire);
        if n <= head {
            return;
        }
        for k in 1..=(n - head).min(SLOTS as u64) {
            self.slots[((head + k) % SLOTS as u64) as usize].store(0, Ordering::Relaxed);
        }
        self.head.store(n, Ordering::Release);
    }

    fn sum(&self) -> i64 {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(0i64, i64::saturating_add)
    }

    pub(crate) fn deposit(&self) {
        if self.deposit == 0 {
            return;
        }
        let n = self.slot_now();
        if n > self.head.load(Ordering::Acquire) {
            let _g = self.lock();
            self.advance(n);
        }
        self.slots[(n % SLOTS as u64) as usize].fetch_add(self.deposit, Ordering::Relaxed);
    }

    pub(crate) fn try_withdraw(&self) -> bool {
        let _g = self.lock();
        let n = self.slot_now();
        self.advance(n);
        if self.sum().saturating_add(self.reserve) < SCALE {
            return false;
        }
        self.slots[(n % SLOTS as u64) as usize].fetch_sub(SCALE, Ordering::Relaxed);
        true
    }

    /// Gives back a retry withdrawn for nothing (a hedge that another
    /// budget then refused).
    pub(crate) fn refund(&self) {
        let _g = self.lock();
        let n = self.slot_now();
        self.advance(n);
        self.slots[(n % SLOTS as u64) as usize].fetch_add(SCALE, Ordering::Relaxed);
    }

    pub(crate) fn available(&self) -> f64 {
        let _g = self.lock();
        self.advance(self.slot_now());
        self.sum().saturating_add(self.reserve).max(0) as f64 / SCALE as f64
    }
}

/// A retry budget. See the [module docs](self).
///
/// Clones share one budget: it lives behind an `Arc`.
#[derive(Clone)]
pub struct RetryBudget {
    window: Arc<Window>,
    config: BudgetConfig,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("config", &self.config)
            .field("available", &self.available())
            .finish()
    }
}

impl Default for RetryBudget {
    /// A budget with Finagle's defaults.
    fn default() -> Self {
        Self::new(BudgetConfig::default())
    }
}

impl RetryBudget {
    /// A new budget, full of its reserve.
    pub fn new(config: BudgetConfig) -> Self {
        Self {
            window: Arc::new(Window::new(&config)),
            config,
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Records one logical request: earns `retry_ratio` of a retry.
    pub fn deposit(&self) {
        self.window.deposit();
    }

    /// Takes one retry from the budget, if one is available.
    pub fn try_withdraw(&self) -> bool {
        self.window.try_withdraw()
    }

    /// How many retries are available now (reserve included), to a
    /// millionth.
    pub fn available(&self) -> f64 {
        self.window.available()
    }

    pub(crate) fn refund(&self) {
        self.window.refund();
    }
}

/// One budget per [`Key`], for example per upstream origin, so that one
/// failing upstream cannot spend the retries of another.
///
/// Clones share every key's budget. Idle keys are evicted as
/// [`KeyedMap`] describes.
#[derive(Clone)]
pub struct KeyedBudget {
    map: Arc<KeyedMap<Window>>,
    config: BudgetConfig,
}

impl fmt::Debug for KeyedBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBudget")
            .field("config", &self.config)
            .field("keys", &self.map.len())
            .finish()
    }
}

impl KeyedBudget {
    /// A keyed budget with the default bounds on the number of keys.
    pub fn new(config: BudgetConfig) -> Self {
        Self::with_keyed_config(config, KeyedConfig::default())
    }

    /// A keyed budget with explicit bounds on the number of keys.
    pub fn with_keyed_config(config: BudgetConfig, keyed: KeyedConfig) -> Self {
        Self {
            map: Arc::new(KeyedMap::new(keyed)),
            config,
        }
    }

    fn window(&self, key: &Key) -> Arc<Window> {
        self.map
            .get_or_insert_with(key, || Window::new(&self.config))
    }

    /// Records one logical request for `key`.
    pub fn deposit(&self, key: &Key) {
        self.window(key).deposit();
    }

    /// Takes one retry from `key`'s budget, if one is available.
    pub fn try_withdraw(&self, key: &Key) -> bool {
        self.window(key).try_withdraw()
    }

    /// How many retries `key` has available now.
    pub fn available(&self, key: &Key) -> f64 {
        self.window(key).available()
    }
}

/// Which budget a retry layer spends.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Budget {
    /// One budget for every request; the retry layer's default, with
    /// Finagle's settings.
    Shared(RetryBudget),
    /// One budget per key.
    Keyed(KeyedBudget),
    /// No budget: only `max_attempts` bounds retries. Not recommended: during
    /// an outage every request is sent `max_attempts` times.
    Unlimited,
}

impl Budget {
    pub(crate) const fn needs_key(&self) -> bool {
        matches!(self, Self::Keyed(_))
    }

    pub(crate) fn deposit(&self, key: Option<&Key>) {
        match (self, key) {
            (Self::Shared(b), _) => b.deposit(),
            (Self::Keyed(b), Some(k)) => b.deposit(k),
            _ => {}
        }
    }

    pub(crate) fn try_withdraw(&self, key: Option<&Key>) -> bool {
        match (self, key) {
            (Self::Shared(b), _) => b.try_withdraw(),
            (Self::Keyed(b), Some(k)) => b.try_withdraw(k),
            (Self::Keyed(b), None) => b.try_withdraw(&Key::global()),
            (Self::Unlimited, _) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(ttl_s: u64, min: u32, ratio: f64) -> BudgetConfig {
        BudgetConfig::new(Duration::from_secs(ttl_s), min, ratio).unwrap()
    }

    #[test]
    fn config_is_validated() {
        assert!(BudgetConfig::new(Duration::ZERO, 10, 0.2).is_err());
        assert!(BudgetConfig::new(Duration::from_millis(500), 10, 0.2).is_err());
        assert!(BudgetConfig::new(Duration::from_secs(10), 10, f64::NAN).is_err());
        assert!(BudgetConfig::new(Duration::from_secs(10), 10, f64::INFINITY).is_err());
        assert!(BudgetConfig::new(Duration::from_secs(10), 10, -0.1).is_err());
        assert!(BudgetConfig::new(Duration::from_secs(10), 10, 1000.5).is_err());
        let both_zero = BudgetConfig::new(Duration::from_secs(10), 0, 0.0).unwrap_err();
        assert!(both_zero.to_string().contains("no retry"), "{both_zero}");
        let d = BudgetConfig::default();
        assert_eq!(
            (d.ttl(), d.min_retries_per_sec(), d.retry_ratio()),
            (Duration::from_secs(10), 10, 0.2)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_ratio_below_one_does_not_over_issue_tower_857() {
        let budget = RetryBudget::new(cfg(1, 0, 0.6));
        for _ in 0..10 {
            budget.deposit();
        }
        let allowed = (0..10).filter(|_| budget.try_withdraw()).count();
        assert_eq!(allowed, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn reserve_allows_min_retries_per_ttl_without_traffic() {
        let budget = RetryBudget::new(cfg(10, 10, 0.2));
        assert_eq!(budget.available(), 100.0);
        let allowed = (0..150).filter(|_| budget.try_withdraw()).count();
        assert_eq!(allowed, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn withdrawals_and_deposits_expire_after_ttl() {
        let budget = RetryBudget::new(cfg(10, 1, 0.5));
        for _ in 0..20 {
            budget.deposit();
        }
        assert_eq!((0..100).filter(|_| budget.try_withdraw()).count(), 20);
        assert!(!budget.try_withdraw());
        // Half the window later nothing has expired yet.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!budget.try_withdraw());
        // After the ttl everything has: only the reserve is left.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.available(), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_one_budget() {
        let a = RetryBudget::new(cfg(1, 0, 1.0));
        let b = a.clone();
        a.deposit();
        assert!(b.try_withdraw());
        assert!(!a.try_withdraw());
    }

    #[test]
    fn concurrent_deposits_are_all_counted() {
        let budget = RetryBudget::new(cfg(3600, 0, 1.0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let b = budget.clone();
                s.spawn(move || {
                    for _ in 0..10_000 {
                        b.deposit();
                    }
                });
            }
        });
        assert_eq!(budget.available(), 40_000.0);
        let taken = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let b = budget.clone();
                    s.spawn(move || (0..20_000).filter(|_| b.try_withdraw()).count())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(taken, 40_000, "withdrawals are exact under contention");
    }

    #[tokio::test(start_paused = true)]
    async fn keyed_budgets_are_independent() {
        let budget = KeyedBudget::new(cfg(1, 0, 1.0));
        let (x, y) = (Key::from("x"), Key::from("y"));
        budget.deposit(&x);
        assert!(!budget.try_withdraw(&y), "y earned nothing");
        assert!(budget.try_withdraw(&x));
        assert!(!budget.clone().try_withdraw(&x));
    }

    proptest! {
        // With no time passing, each withdrawal succeeds exactly when the
        // retries taken so far plus this one fit within the reserve plus the
        // ratio of the deposits so far: the model, with exact fractions.
        #[test]
        fn withdrawals_follow_exact_fixed_point_model(
            ratio_milli in 0u32..=5000,
            min_per_sec in 0u32..20,
            ttl_s in 1u64..30,
            ops in proptest::collection::vec(any::<bool>(), 0..400),
        ) {
            prop_assume!(ratio_milli > 0 || min_per_sec > 0);
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let _g = rt.enter();
            let ratio = f64::from(ratio_milli) / 1000.0;
            let budget = RetryBudget::new(cfg(ttl_s, min_per_sec, ratio));
            let reserve = u64::from(min_per_sec) * ttl_s;
            let (mut deposits, mut withdrawals) = (0u64, 0u64);
            for deposit in ops {
                if deposit {
                    budget.deposit();
                    deposits += 1;
                } else {
                    // (w + 1) <= reserve + d * ratio, in thousandths.
                    let fits = (withdrawals + 1) * 1000 <= reserve * 1000 + deposits * u64::from(ratio_milli);
                    prop_assert_eq!(budget.try_withdraw(), fits);
                    if fits {
                        withdrawals += 1;
                    }
                }
            }
        }

        // Over any run, with time passing, a window never allows more than
        // its reserve plus the ratio of the deposits made inside it.
        #[test]
        fn never_over_issues_within_a_ttl(
            ratio_milli in 0u32..=2000,
            min_per_sec in 0u32..5,
            steps in proptest::collection::vec((any::<bool>(), 0u64..400), 1..300),
        ) {
            prop_assume!(ratio_milli > 0 || min_per_sec > 0);
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let ttl = Duration::from_secs(2);
                let budget = RetryBudget::new(BudgetConfig::new(ttl, min_per_sec, f64::from(ratio_milli) / 1000.0).unwrap());
                let start = Instant::now();
                let mut log: Vec<(Duration, bool)> = Vec::new(); // (at, is_deposit); withdrawals that succeeded
                for (deposit, gap_ms) in steps {
                    tokio::time::advance(Duration::from_millis(gap_ms)).await;
                    let at = Instant::now() - start;
                    if deposit {
                        budget.deposit();
                        log.push((at, true));
                    } else if budget.try_withdraw() {
                        log.push((at, false));
                    }
                }
                // Any interval of length ttl: withdrawals in it <= reserve + ratio * deposits in [start - ttl, end].
                for &(t0, _) in &log {
                    let w = log.iter().filter(|(t, d)| !d && *t >= t0 && *t < t0 + ttl).count() as u64;
                    let d = log.iter().filter(|(t, d)| *d && *t + ttl > t0 && *t < t0 + ttl).count() as u64;
                    let reserve = u64::from(min_per_sec) * ttl.as_secs();
                    // Withdrawals may also spend deposits up to one ttl before t0.
                    prop_assert!(w * 1000 <= 2 * reserve * 1000 + d * u64::from(ratio_milli),
                        "w={} d={} reserve={}", w, d, reserve);
                }
                Ok(())
            })?;
        }
    }
}
