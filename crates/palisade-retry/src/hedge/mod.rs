//! Hedged requests: a second attempt when the first is slow.
//!
//! [`HedgeLayer`] sends an idempotent request once, and if no response has
//! come after a delay, sends it again; the first response wins and the
//! other attempt is cancelled (its future dropped, which releases whatever
//! it held in inner layers: a concurrency permit, a pooled connection). This
//! cuts tail latency when a few attempts are slow for reasons unrelated to
//! the request, as in "The Tail at Scale" and Finagle's backup requests.
//!
//! - **Only idempotent requests** are hedged: `GET`, `HEAD`, `OPTIONS`,
//!   `TRACE`, `PUT`, `DELETE`, or a request with the
//!   [`Idempotent`](crate::Idempotent) extension. An idempotency key is not
//!   enough: two concurrent copies would race on the server.
//! - **The delay** is fixed ([`HedgeDelay::Fixed`]) or the observed
//!   percentile of recent latencies for the request's key
//!   ([`HedgeDelay::Percentile`], p95 by default), clamped to bounds. Until
//!   a key has enough samples, its requests are not hedged.
//! - **Extra load is capped**: hedges are at most
//!   [`max_extra_load`](HedgeLayerBuilder::max_extra_load) of requests
//!   (default 5 %), counted over 10 s as a [`RetryBudget`] does.
//! - **The retry budget** is spent too when one is given with
//!   [`budget`](HedgeLayerBuilder::budget): pass the retry layer's
//!   so that retries and hedges share it.
//! - The first **response** wins, whatever its status. An error does not
//!   win while the other attempt is still running.
//!
//! ```
//! use std::time::Duration;
//! use palisade_retry::{HedgeLayer, RetryLayer, RetryPolicy, Budget};
//! use tower::ServiceBuilder;
//!
//! let policy = RetryPolicy::default();
//! let hedge = HedgeLayer::builder()
//!     .delay(Duration::from_millis(50))
//!     .budget(policy.budget().clone())
//!     .build()
//!     .unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy))
//!     .layer(hedge)
//!     .service_fn(|_req: http::Request<palisade_core::Body>| async {
//!         Ok::<_, palisade_core::BoxError>(http::Response::new(String::new()))
//!     });
//! # drop(svc);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::{Body, ByAuthority, Key, KeyFn};

use crate::budget::{Budget, BudgetConfig, RetryBudget};
use crate::error::{ConfigError, check_range};
use crate::latency::Latencies;

pub mod future;
mod layer;
mod service;

pub use layer::HedgeLayer;
pub use service::Hedge;

/// When to send the hedge.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum HedgeDelay {
    /// After a fixed delay.
    Fixed(Duration),
    /// After the `quantile` (0.5 to 0.999) of recent latencies for the key,
    /// clamped to `[min, max]`.
    Percentile {
        /// The quantile, 0.95 for p95.
        quantile: f64,
        /// The shortest delay.
        min: Duration,
        /// The longest delay.
        max: Duration,
    },
}

/// The default hedge delay: the p95 of recent latencies for the key, between
/// 1 ms and 30 s. At p95, about 5 % of requests are hedged, matching the
/// default extra-load cap.
pub const DEFAULT_HEDGE_DELAY: HedgeDelay = HedgeDelay::Percentile {
    quantile: 0.95,
    min: Duration::from_millis(1),
    max: Duration::from_secs(30),
};

/// The default cap on extra load: 5 % of requests may be hedged. "The Tail
/// at Scale" reports p99.9 cut by hedging at about 2 % extra load; 5 % leaves
/// room for bursts.
pub const DEFAULT_MAX_EXTRA_LOAD: f64 = 0.05;

pub(crate) struct HedgeShared<K> {
    pub(crate) key_fn: K,
    pub(crate) delay: HedgeDelay,
    pub(crate) extra_load: RetryBudget,
    pub(crate) budget: Option<Budget>,
    pub(crate) latencies: Option<Latencies>,
    pub(crate) min_samples: u32,
}

impl<K> fmt::Debug for HedgeShared<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeShared")
            .field("delay", &self.delay)
            .field("extra_load", &self.extra_load)
            .field("budget", &self.budget)
            .field("min_samples", &self.min_samples)
            .finish_non_exhaustive()
    }
}

impl<K: KeyFn<Body>> HedgeShared<K> {
    /// The hedge delay for `key` now, or `None` when there are too few
    /// samples to tell.
    pub(crate) fn delay_for(&self, key: Option<&Key>) -> Option<Duration> {
        match self.delay {
            HedgeDelay::Fixed(d) => Some(d),
            HedgeDelay::Percentile { quantile, min, max } => {
                let q = self
                    .latencies
                    .as_ref()?
                    .quantile(key?, quantile, self.min_samples)?;
                Some(q.clamp(min, max))
            }
        }
    }

    pub(crate) const fn needs_key_per_call(&self) -> bool {
        self.latencies.is_some() || matches!(self.budget, Some(Budget::Keyed(_)))
    }

    /// Spends the extra-load cap and the shared budget for one hedge.
    pub(crate) fn admit(&self, key: &Key) -> bool {
        if !self.extra_load.try_withdraw() {
            crate::events::budget_exhausted(key, 1, true);
            return false;
        }
        if let Some(b) = &self.budget
            && !b.try_withdraw(Some(key))
        {
            self.extra_load.refund();
            crate::events::budget_exhausted(key, 1, true);
            return false;
        }
        true
    }
}

/// Builds a [`HedgeLayer`], validating every setting.
pub struct HedgeLayerBuilder<K = ByAuthority> {
    key_fn: K,
    delay: HedgeDelay,
    max_extra_load: f64,
    min_hedges_per_sec: u32,
    budget: Option<Budget>,
    min_samples: u32,
    window: Duration,
}

impl<K: fmt::Debug> fmt::Debug for HedgeLayerBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayerBuilder")
            .field("key_fn", &self.key_fn)
            .field("delay", &self.delay)
            .field("max_extra_load", &self.max_extra_load)
            .field("min_hedges_per_sec", &self.min_hedges_per_sec)
            .field("budget", &self.budget)
            .field("min_samples", &self.min_samples)
            .field("window", &self.window)
            .finish()
    }
}

impl Default for HedgeLayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HedgeLayerBuilder {
    /// A builder with every default.
    pub const fn new() -> Self {
        Self {
            key_fn: ByAuthority,
            delay: DEFAULT_HEDGE_DELAY,
            max_extra_load: DEFAULT_MAX_EXTRA_LOAD,
            min_hedges_per_sec: 0,
            budget: None,
            min_samples: 20,
            window: Duration::from_secs(30),
        }
    }
}

impl<K> HedgeLayerBuilder<K> {
    /// Hedges after a fixed delay.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = HedgeDelay::Fixed(d);
        self
    }

    /// Hedges after the `quantile` of recent latencies for the key, clamped
    /// to `[min, max]`. Default: [`DEFAULT_HEDGE_DELAY`] (p95, 1 ms to 30 s).
    pub fn percentile(mut self, quantile: f64, min: Duration, max: Duration) -> Self {
        self.delay = HedgeDelay::Percentile { quantile, min, max };
        self
    }

    /// The most hedges as a fraction of requests, in (0, 1]. Default
    /// [`DEFAULT_MAX_EXTRA_LOAD`] (0.05).
    pub fn max_extra_load(mut self, fraction: f64) -> Self {
        self.max_extra_load = fraction;
        self
    }

    /// Hedges per second allowed whatever the traffic, like a retry budget's
    /// reserve. Default 0, as Finagle's backup requests: at low traffic the
    /// fraction alone applies.
    pub fn min_hedges_per_sec(mut self, n: u32) -> Self {
        self.min_hedges_per_sec = n;
        self
    }

    /// Also spends `budget` (the retry layer's, say) for every hedge. The
    /// hedge layer withdraws from it but does not deposit: the retry layer
    /// counts the requests. Default: none.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Samples a key needs before percentile hedging starts. Default 20.
    pub fn min_samples(mut self, n: u32) -> Self {
        self.min_samples = n;
        self
    }

    /// How long a latency sample counts (one to two windows). Default 30 s.
    pub fn window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }

    /// Keys latencies, budgets and events with `key_fn`. Default
    /// [`ByAuthority`].
    pub fn key_fn<K2: KeyFn<Body>>(self, key_fn: K2) -> HedgeLayerBuilder<K2> {
        HedgeLayerBuilder {
            key_fn,
            delay: self.delay,
            max_extra_load: self.max_extra_load,
            min_hedges_per_sec: self.min_hedges_per_sec,
            budget: self.budget,
            min_samples: self.min_samples,
            window: self.window,
        }
    }

    /// Validates the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A zero or inverted delay, a quantile outside 0.5..=0.999, an extra
    /// load outside (0, 1], zero `min_samples` or a zero window.
    pub fn build(self) -> Result<HedgeLayer<K>, ConfigError> {
        let latencies = match self.delay {
            HedgeDelay::Fixed(d) => {
                if d.is_zero() {
                    return Err(ConfigError::Zero {
                        field: "hedge.delay",
                    });
                }
                None
            }
            HedgeDelay::Percentile { quantile, min, max } => {
                check_range(
                    "hedge.quantile",
                    quantile,
                    0.5,
                    0.999,
                    "between 0.5 and 0.999",
                )?;
                if min.is_zero() {
                    return Err(ConfigError::Zero {
                        field: "hedge.min_delay",
                    });
                }
                if min > max {
                    return Err(ConfigError::Inverted {
                        min: "hedge.min_delay",
                        max: "hedge.max_delay",
                    });
                }
                if self.window.is_zero() {
                    return Err(ConfigError::Zero {
                        field: "hedge.window",
                    });
                }
                if self.min_samples == 0 {
                    return Err(ConfigError::Zero {
                        field: "hedge.min_samples",
                    });
                }
                Some(Latencies::new(self.window))
            }
        };
        if self.max_extra_load.is_nan() || self.max_extra_load <= 0.0 {
            return Err(ConfigError::OutOfRange {
                field: "hedge.max_extra_load",
                value: self.max_extra_load,
                allowed: "in (0, 1]",
            });
        }
        check_range(
            "hedge.max_extra_load",
            self.max_extra_load,
            0.0,
            1.0,
            "in (0, 1]",
        )?;
        let extra = BudgetConfig::new(
            Duration::from_secs(10),
            self.min_hedges_per_sec,
            self.max_extra_load,
        )?;
        Ok(HedgeLayer::from_shared(Arc::new(HedgeShared {
            key_fn: self.key_fn,
            delay: self.delay,
            extra_load: RetryBudget::new(extra),
            budget: self.budget,
            latencies,
            min_samples: self.min_samples,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_errors() {
        let e = |b: HedgeLayerBuilder| b.build().unwrap_err().to_string();
        assert!(e(HedgeLayerBuilder::new().delay(Duration::ZERO)).contains("hedge.delay"));
        assert!(
            e(HedgeLayerBuilder::new().percentile(
                f64::NAN,
                Duration::from_millis(1),
                Duration::from_secs(1)
            ))
            .contains("quantile")
        );
        assert!(
            e(HedgeLayerBuilder::new().percentile(
                0.95,
                Duration::from_secs(2),
                Duration::from_secs(1)
            ))
            .contains("must not be greater")
        );
        assert!(e(HedgeLayerBuilder::new().max_extra_load(0.0)).contains("max_extra_load"));
        assert!(e(HedgeLayerBuilder::new().max_extra_load(1.5)).contains("max_extra_load"));
        assert!(e(HedgeLayerBuilder::new().min_samples(0)).contains("min_samples"));
        assert!(HedgeLayerBuilder::new().build().is_ok());
    }
}
