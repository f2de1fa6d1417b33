//! The validating builder of [`RetryPolicy`].

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, Request, StatusCode};
use palisade_core::{Body, ByAuthority, Class, Classify, HttpClassifier, KeyFn};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::RetryLayer;
use crate::backoff::{Backoff, BackoffStrategy};
use crate::budget::{Budget, BudgetConfig, KeyedBudget, RetryBudget};
use crate::error::{ConfigError, check_range};
use crate::latency::Latencies;
use crate::policy::{Predicate, RetryPolicy, Shared};

/// The default maximum attempts, first one included: 4, that is 3 retries,
/// as Polly's standard resilience handler.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// The default base delay: 2 s, as Polly's standard resilience handler.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(2);
/// The default maximum delay between attempts: 30 s, Polly's standard
/// handler's total request timeout, beyond which a wait cannot help.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// The default longest `Retry-After` honoured: 60 s. A server asking for more
/// gets its response returned to the caller at once.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The default cap on how much of a retried response's body is read so its
/// connection can return to the pool: 16 KiB. Error pages are a few KiB;
/// past that, closing the connection is cheaper than reading on. (Go's
/// `net/http` reads up to 2 KiB of a redirect's body for the same reason.)
pub const DEFAULT_DRAIN_CAP: usize = 16 * 1024;
/// The default idempotency-key header, from the IETF `Idempotency-Key` draft.
pub const DEFAULT_IDEMPOTENCY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The statuses retried by default (for idempotent requests): 408, 429, 500,
/// 502, 503 and 504, as Polly's `HttpRetryStrategyOptions` and httpx-style
/// retry transports do.
pub const DEFAULT_RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];
/// The statuses whose `Retry-After` is honoured by default: 429 and 503, the
/// two RFC 9110 and RFC 6585 define it for.
pub const DEFAULT_RETRY_AFTER_STATUSES: [u16; 2] = [429, 503];

/// A set of HTTP statuses, as a bit set over 100..=599.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatusSet([u64; 8]);

impl StatusSet {
    fn from_codes(field: &'static str, codes: &[u16]) -> Result<Self, ConfigError> {
        let mut bits = [0u64; 8];
        for &code in codes {
            if !(100..=599).contains(&code) {
                return Err(ConfigError::OutOfRange {
                    field,
                    value: f64::from(code),
                    allowed: "HTTP statuses between 100 and 599",
                });
            }
            let i = usize::from(code - 100);
            bits[i / 64] |= 1 << (i % 64);
        }
        Ok(Self(bits))
    }

    pub(crate) fn contains(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        if !(100..=599).contains(&code) {
            return false;
        }
        let i = usize::from(code - 100);
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(
                (100u16..=599).filter(|c| StatusCode::from_u16(*c).is_ok_and(|s| self.contains(s))),
            )
            .finish()
    }
}

/// Scales the backoff's base delay with the recent latency of the key: the
/// base becomes `multiplier ×` the `quantile` of recent attempt latencies,
/// never below the configured base and never above `max_floor`.
///
/// A slow upstream then gets proportionally longer pauses, instead of being
/// retried at a fixed rhythm tuned for a fast one. Off by default; enable it
/// with [`RetryPolicyBuilder::adaptive_floor`]. Latencies are recorded per
/// key, for the last one to two `window`s, and at least `min_samples` are
/// needed before the floor moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveFloor {
    quantile: f64,
    multiplier: f64,
    max_floor: Option<Duration>,
    window: Duration,
    min_samples: u32,
}

impl Default for AdaptiveFloor {
    fn default() -> Self {
        Self::new()
    }
}

impl AdaptiveFloor {
    /// p95 × 1.0, bounded by the backoff's maximum delay, over 30 s windows
    /// with at least 20 samples.
    pub const fn new() -> Self {
        Self {
            quantile: 0.95,
            multiplier: 1.0,
            max_floor: None,
            window: Duration::from_secs(30),
            min_samples: 20,
        }
    }

    /// The latency quantile, in (0, 1]. Default 0.95.
    pub const fn quantile(mut self, q: f64) -> Self {
        self.quantile = q;
        self
    }

    /// The factor applied to the quantile, in (0, 100]. Default 1.0.
    pub const fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m;
        self
    }

    /// The highest base delay the floor may set. Default: the backoff's
    /// maximum delay.
    pub const fn max_floor(mut self, d: Duration) -> Self {
        self.max_floor = Some(d);
        self
    }

    /// How long a latency sample counts (between one and two windows).
    /// Default 30 s.
    pub const fn window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }

    /// Samples needed before the floor moves. Default 20.
    pub const fn min_samples(mut self, n: u32) -> Self {
        self.min_samples = n;
        self
    }

    fn validate(&self, backoff: &Backoff) -> Result<(), ConfigError> {
        if self.quantile.is_nan() || self.quantile <= 0.0 {
            return Err(ConfigError::OutOfRange {
                field: "adaptive_floor.quantile",
                value: self.quantile,
                allowed: "in (0, 1]",
            });
        }
        check_range(
            "adaptive_floor.quantile",
            self.quantile,
            0.0,
            1.0,
            "in (0, 1]",
        )?;
        if self.multiplier.is_nan() || self.multiplier <= 0.0 {
            return Err(ConfigError::OutOfRange {
                field: "adaptive_floor.multiplier",
                value: self.multiplier,
                allowed: "in (0, 100]",
            });
        }
        check_range(
            "adaptive_floor.multiplier",
            self.multiplier,
            0.0,
            100.0,
            "in (0, 100]",
        )?;
        if self.window.is_zero() {
            return Err(ConfigError::Zero {
                field: "adaptive_floor.window",
            });
        }
        if self.min_samples == 0 {
            return Err(ConfigError::Zero {
                field: "adaptive_floor.min_samples",
            });
        }
        if let Some(max) = self.max_floor {
            if max.is_zero() {
                return Err(ConfigError::Zero {
                    field: "adaptive_floor.max_floor",
                });
            }
            if max < backoff.base() {
                return Err(ConfigError::Inverted {
                    min: "base_delay",
                    max: "adaptive_floor.max_floor",
                });
            }
        }
        Ok(())
    }
}

/// The adaptive floor in use: its settings and the latencies it reads.
#[derive(Debug)]
pub(crate) struct Adaptive {
    pub(crate) config: AdaptiveFloor,
    pub(crate) latencies: Latencies,
}

impl Adaptive {
    /// The base delay for `key`'s next backoff, or the configured base.
    pub(crate) fn base(&self, backoff: &Backoff, key: &palisade_core::Key) -> Duration {
        let cap = self.config.max_floor.unwrap_or(backoff.max());
        match self
            .latencies
            .quantile(key, self.config.quantile, self.config.min_samples)
        {
            Some(q) => {
                // A multiplier that is negative, NaN or overflows gives the
                // cap, never a panic; so does a cap below the base.
                let scaled = Duration::try_from_secs_f64(q.as_secs_f64() * self.config.multiplier)
                    .unwrap_or(cap);
                scaled.min(cap).max(backoff.base())
            }
            None => backoff.base(),
        }
    }
}

enum BudgetChoice {
    Default,
    Shared(RetryBudget),
    Keyed(BudgetConfig),
    Unlimited,
}

/// Builds a [`RetryPolicy`] (or a [`RetryLayer`]), validating every setting.
///
/// Every default is documented beside its setter and drawn from Polly's
/// standard resilience handler and Finagle's retry budget.
pub struct RetryPolicyBuilder<C = HttpClassifier, K = ByAuthority> {
    classifier: C,
    key_fn: K,
    max_attempts: u32,
    strategy: BackoffStrategy,
    base_delay: Duration,
    max_delay: Duration,
    max_retry_after: Duration,
    retry_statuses: Vec<u16>,
    retry_after_statuses: Vec<u16>,
    budget: BudgetChoice,
    idempotency_header: HeaderName,
    inject_key: bool,
    predicate: Option<Predicate>,
    seed: Option<u64>,
    drain_cap: usize,
    adaptive: Option<AdaptiveFloor>,
}

impl<C: fmt::Debug, K: fmt::Debug> fmt::Debug for RetryPolicyBuilder<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("classifier", &self.classifier)
            .field("key_fn", &self.key_fn)
            .field("max_attempts", &self.max_attempts)
            .field("strategy", &self.strategy)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("max_retry_after", &self.max_retry_after)
            .field("retry_statuses", &self.retry_statuses)
            .field("retry_after_statuses", &self.retry_after_statuses)
            .field("idempotency_header", &self.idempotency_header)
            .field("inject_idempotency_key", &self.inject_key)
            .field("retry_if", &self.predicate.is_some())
            .field("seed", &self.seed)
            .field("drain_cap", &self.drain_cap)
            .field("adaptive_floor", &self.adaptive)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicyBuilder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self {
            classifier: HttpClassifier::new(),
            key_fn: ByAuthority,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            strategy: BackoffStrategy::DecorrelatedJitter,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            retry_statuses: DEFAULT_RETRY_STATUSES.to_vec(),
            retry_after_statuses: DEFAULT_RETRY_AFTER_STATUSES.to_vec(),
            budget: BudgetChoice::Default,
            idempotency_header: DEFAULT_IDEMPOTENCY_HEADER,
            inject_key: false,
            predicate: None,
            seed: None,
            drain_cap: DEFAULT_DRAIN_CAP,
            adaptive: None,
        }
    }
}

impl<C, K> RetryPolicyBuilder<C, K> {
    /// The most attempts per logical request, the first one included.
    /// Default [`DEFAULT_MAX_ATTEMPTS`] (4: three retries, as Polly's
    /// standard handler). `1` disables retries; `0` is an error.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The backoff strategy. Default [`BackoffStrategy::DecorrelatedJitter`],
    /// as Polly's exponential backoff with jitter.
    pub fn backoff(mut self, strategy: BackoffStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The base delay. Default [`DEFAULT_BASE_DELAY`] (2 s, Polly).
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The longest delay between attempts. Default [`DEFAULT_MAX_DELAY`] (30 s).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The longest `Retry-After` honoured. A longer one is not waited for:
    /// its response is returned to the caller at once. Default
    /// [`DEFAULT_MAX_RETRY_AFTER`] (60 s).
    pub fn max_retry_after(mut self, d: Duration) -> Self {
        self.max_retry_after = d;
        self
    }

    /// The response statuses retried (for idempotent requests). Default
    /// [`DEFAULT_RETRY_STATUSES`].
    pub fn retry_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.retry_statuses = statuses.into_iter().collect();
        self
    }

    /// The statuses whose `Retry-After` (or rate-limit reset header) is
    /// honoured. Default [`DEFAULT_RETRY_AFTER_STATUSES`] (429 and 503).
    pub fn retry_after_statuses(mut self, statuses: impl IntoIterator<Item = u16>) -> Self {
        self.retry_after_statuses = statuses.into_iter().collect();
        self
    }

    /// Spends `budget`, which may be shared with other layers (a
    /// [`HedgeLayer`](crate::HedgeLayer), another client). Default: a new
    /// [`RetryBudget`] with Finagle's settings, shared by every clone of the
    /// policy.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// One budget per key (see [`key_fn`](Self::key_fn)), each with `config`.
    pub fn keyed_budget(mut self, config: BudgetConfig) -> Self {
        self.budget = BudgetChoice::Keyed(config);
        self
    }

    /// No budget: only `max_attempts` bounds retries. Not recommended for
    /// production, where an outage then multiplies traffic by
    /// `max_attempts`.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::Unlimited;
        self
    }

    /// The header that carries an idempotency key. A request with it is
    /// retried like an idempotent one. Default `Idempotency-Key`
    /// ([`DEFAULT_IDEMPOTENCY_HEADER`]).
    pub fn idempotency_header(mut self, name: HeaderName) -> Self {
        self.idempotency_header = name;
        self
    }

    /// Adds an idempotency key (a UUID v4) to every non-idempotent request
    /// that has none, before its first attempt; every attempt then carries
    /// the same key, so the server can deduplicate them. A key the caller set
    /// is kept. Default off: the server must support the header.
    pub fn inject_idempotency_key(mut self, on: bool) -> Self {
        self.inject_key = on;
        self
    }

    /// A custom rule, asked first for every outcome that is not a success:
    /// `Some(true)` retries, `Some(false)` does not, `None` falls back to the
    /// default rules. Whatever it says, a non-idempotent request without an
    /// idempotency key is never sent again once it may have reached the
    /// server, and `max_attempts`, the deadline and the budget still apply.
    pub fn retry_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&Request<Body>, &Class) -> Option<bool> + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(f));
        self
    }

    /// Seeds the jitter's random number generator, for reproducible tests.
    /// Default: seeded from the operating system.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many bytes of a retried response's body are read (during the
    /// backoff) so its connection can be reused. Default
    /// [`DEFAULT_DRAIN_CAP`] (16 KiB); `0` drops bodies unread.
    pub fn drain_cap(mut self, bytes: usize) -> Self {
        self.drain_cap = bytes;
        self
    }

    /// Enables the adaptive backoff floor. Off by default.
    pub fn adaptive_floor(mut self, floor: AdaptiveFloor) -> Self {
        self.adaptive = Some(floor);
        self
    }

    /// Uses `classifier` to classify outcomes. Default [`HttpClassifier`].
    pub fn classifier<C2: Classify>(self, classifier: C2) -> RetryPolicyBuilder<C2, K> {
        RetryPolicyBuilder {
            classifier,
            key_fn: self.key_fn,
            max_attempts: self.max_attempts,
            strategy: self.strategy,
            base_delay: self.base_delay,
            max_delay: self.max_delay,
            max_retry_after: self.max_retry_after,
            retry_statuses: self.retry_statuses,
            retry_after_statuses: self.retry_after_statuses,
            budget: self.budget,
            idempotency_header: self.idempotency_header,
            inject_key: self.inject_key,
            predicate: self.predicate,
            seed: self.seed,
            drain_cap: self.drain_cap,
            adaptive: self.adaptive,
        }
    }

    /// Uses `key_fn` to key budgets, latencies and events. Default
    /// [`ByAuthority`] (the request's origin).
    pub fn key_fn<K2: KeyFn<Body>>(self, key_fn: K2) -> RetryPolicyBuilder<C, K2> {
        RetryPolicyBuilder {
            classifier: self.classifier,
            key_fn,
            max_attempts: self.max_attempts,
            strategy: self.strategy,
            base_delay: self.base_delay,
            max_delay: self.max_delay,
            max_retry_after: self.max_retry_after,
            retry_statuses: self.retry_statuses,
            retry_after_statuses: self.retry_after_statuses,
            budget: self.budget,
            idempotency_header: self.idempotency_header,
            inject_key: self.inject_key,
            predicate: self.predicate,
            seed: self.seed,
            drain_cap: self.drain_cap,
            adaptive: self.adaptive,
        }
    }
}

impl<C: Classify, K: KeyFn<Body>> RetryPolicyBuilder<C, K> {
    /// Validates the settings and builds the policy.
    ///
    /// # Errors
    ///
    /// Zero `max_attempts`, a zero or inverted delay, a zero
    /// `max_retry_after`, statuses outside 100..=599, or an invalid
    /// [`AdaptiveFloor`].
    pub fn build(self) -> Result<RetryPolicy<C, K>, ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::Zero {
                field: "max_attempts",
            });
        }
        let backoff = Backoff::new(self.strategy, self.base_delay, self.max_delay)?;
        if self.max_retry_after.is_zero() {
            return Err(ConfigError::Zero {
                field: "max_retry_after",
            });
        }
        let retry_statuses = StatusSet::from_codes("retry_statuses", &self.retry_statuses)?;
        let retry_after_statuses =
            StatusSet::from_codes("retry_after_statuses", &self.retry_after_statuses)?;
        let adaptive = match self.adaptive {
            Some(config) => {
                config.validate(&backoff)?;
                Some(Adaptive {
                    config,
                    latencies: Latencies::new(config.window),
                })
            }
            None => None,
        };
        let budget = match self.budget {
            BudgetChoice::Default => Budget::Shared(RetryBudget::default()),
            BudgetChoice::Shared(b) => Budget::Shared(b),
            BudgetChoice::Keyed(c) => Budget::Keyed(KeyedBudget::new(c)),
            BudgetChoice::Unlimited => Budget::Unlimited,
        };
        let rng = match self.seed {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::from_os_rng(),
        };
        Ok(RetryPolicy::from_shared(Arc::new(Shared {
            classifier: self.classifier,
            key_fn: self.key_fn,
            max_attempts: self.max_attempts,
            backoff,
            max_retry_after: self.max_retry_after,
            retry_statuses,
            retry_after_statuses,
            budget,
            idempotency_header: self.idempotency_header,
            inject_key: self.inject_key,
            predicate: self.predicate,
            rng: Mutex::new(rng),
            drain_cap: self.drain_cap,
            adaptive,
        })))
    }

    /// Validates the settings and builds a [`RetryLayer`].
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_layer(self) -> Result<RetryLayer<C, K>, ConfigError> {
        self.build().map(RetryLayer::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        let p = RetryPolicyBuilder::new().build().unwrap();
        assert_eq!(p.max_attempts(), 4);
        assert_eq!(p.backoff().base(), Duration::from_secs(2));
        assert_eq!(p.backoff().max(), Duration::from_secs(30));
        assert!(matches!(p.budget(), Budget::Shared(_)));
    }

    #[test]
    fn invalid_settings_are_clear_errors() {
        let err = |b: RetryPolicyBuilder| b.build().unwrap_err().to_string();
        assert!(err(RetryPolicyBuilder::new().max_attempts(0)).contains("max_attempts"));
        assert!(err(RetryPolicyBuilder::new().base_delay(Duration::ZERO)).contains("base_delay"));
        assert!(
            err(RetryPolicyBuilder::new()
                .base_delay(Duration::from_secs(5))
                .max_delay(Duration::from_secs(1)))
            .contains("must not be greater")
        );
        assert!(
            err(RetryPolicyBuilder::new().max_retry_after(Duration::ZERO))
                .contains("max_retry_after")
        );
        assert!(
            err(RetryPolicyBuilder::new().retry_statuses([503, 700])).contains("retry_statuses")
        );
        assert!(
            err(RetryPolicyBuilder::new().adaptive_floor(AdaptiveFloor::new().quantile(f64::NAN)))
                .contains("quantile")
        );
        assert!(
            err(RetryPolicyBuilder::new().adaptive_floor(AdaptiveFloor::new().multiplier(0.0)))
                .contains("multiplier")
        );
        assert!(
            err(RetryPolicyBuilder::new()
                .adaptive_floor(AdaptiveFloor::new().max_floor(Duration::from_millis(1))))
            .contains("max_floor")
        );
        assert!(
            err(RetryPolicyBuilder::new().adaptive_floor(AdaptiveFloor::new().min_samples(0)))
                .contains("min_samples")
        );
    }

    #[test]
    fn status_sets() {
        let s = StatusSet::from_codes("x", &[100, 408, 599]).unwrap();
        assert!(s.contains(StatusCode::from_u16(408).unwrap()));
        assert!(s.contains(StatusCode::from_u16(599).unwrap()));
        assert!(s.contains(StatusCode::CONTINUE));
        assert!(!s.contains(StatusCode::OK));
        assert!(!s.contains(StatusCode::from_u16(999).unwrap()));
        assert_eq!(format!("{s:?}"), "{100, 408, 599}");
    }
}
