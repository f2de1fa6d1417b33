//! Configuration: a validating builder and the validated [`BreakerConfig`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::keyed::KeyedConfig;
use palisade_core::{ByAuthority, Classify, HttpClassifier};

use crate::backend::BreakerStateBackend;
use crate::handle::Transition;
use crate::layer::BreakerLayer;

/// Polly's standard failure ratio: 10% of the calls in the window.
pub const DEFAULT_FAILURE_RATIO: f64 = 0.1;
/// Polly's standard sampling duration: 30 s.
pub const DEFAULT_SAMPLING_DURATION: Duration = Duration::from_secs(30);
/// Buckets a time window is split into, as Polly's rolling health metrics.
pub const DEFAULT_BUCKETS: u32 = 10;
/// Polly's standard minimum throughput: 100 calls in the window.
pub const DEFAULT_MINIMUM_THROUGHPUT: u32 = 100;
/// Polly's standard break duration: 5 s.
pub const DEFAULT_BREAK_DURATION: Duration = Duration::from_secs(5);
/// The longest a break grows to: 60 s, Resilience4j's default wait in the open state.
pub const DEFAULT_MAX_BREAK_DURATION: Duration = Duration::from_secs(60);
/// Each repeated opening doubles the break.
pub const DEFAULT_BREAK_MULTIPLIER: f64 = 2.0;
/// A break is shortened by up to 10% at random, so that instances which
/// opened together do not all probe at the same instant.
pub const DEFAULT_JITTER: f64 = 0.1;
/// One probe in the half-open state, as Polly.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;
/// How often a key's state is read from a shared backend, at most.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The window the ratio policies (failure ratio and slow-call ratio) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// The last `size` calls (Resilience4j's count-based sliding window).
    Count {
        /// How many calls.
        size: u32,
    },
    /// The calls of the last `length`, counted in `buckets` buckets of
    /// `length / buckets` each (Polly's sampling duration). The oldest bucket
    /// slides out whole, so the span read is between `length − length/buckets`
    /// and `length`.
    Time {
        /// The sampling duration.
        length: Duration,
        /// How many buckets it is split into.
        buckets: u32,
    },
}

impl Window {
    /// The last `size` calls.
    pub const fn count(size: u32) -> Self {
        Self::Count { size }
    }

    /// The calls of the last `length`, in [`DEFAULT_BUCKETS`] buckets.
    pub const fn time(length: Duration) -> Self {
        Self::Time {
            length,
            buckets: DEFAULT_BUCKETS,
        }
    }

    /// The calls of the last `length`, in `buckets` buckets.
    pub const fn time_with_buckets(length: Duration, buckets: u32) -> Self {
        Self::Time { length, buckets }
    }
}

impl Default for Window {
    /// 30 s in 10 buckets (Polly's standard sampling duration).
    fn default() -> Self {
        Self::time(DEFAULT_SAMPLING_DURATION)
    }
}

/// Resilience4j's slow-call policy: trip when at least `ratio` of the calls in
/// the window took `threshold` or longer, failed or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowCalls {
    /// A call is slow when its response head took at least this long.
    pub threshold: Duration,
    /// The share of slow calls, in `(0, 1]`, that trips the breaker.
    pub ratio: f64,
}

pub use palisade_core::error::ConfigError;

/// A [`ConfigError`] of this crate's component.
pub(crate) fn config_error(
    option: &'static str,
    reason: impl Into<std::borrow::Cow<'static, str>>,
) -> ConfigError {
    ConfigError::new("breaker", option, reason)
}

/// A validated breaker configuration. Built by [`Builder::build`]; read it
/// back with [`BreakerLayer::config`].
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) failure_ratio: Option<f64>,
    pub(crate) slow_calls: Option<SlowCalls>,
    pub(crate) window: Window,
    pub(crate) minimum_throughput: u32,
    pub(crate) break_duration: Duration,
    pub(crate) max_break_duration: Duration,
    pub(crate) break_multiplier: f64,
    pub(crate) jitter: f64,
    pub(crate) half_open_probes: u32,
    pub(crate) honor_retry_after: bool,
    pub(crate) keyed: KeyedConfig,
    pub(crate) seed: Option<u64>,
    pub(crate) sync_interval: Duration,
}

impl Default for BreakerConfig {
    /// Polly's standard circuit breaker: 10% failures over 30 s with at least
    /// 100 calls, a 5 s break, growing ×2 up to 60 s.
    fn default() -> Self {
        Self {
            consecutive_failures: None,
            failure_ratio: Some(DEFAULT_FAILURE_RATIO),
            slow_calls: None,
            window: Window::default(),
            minimum_throughput: DEFAULT_MINIMUM_THROUGHPUT,
            break_duration: DEFAULT_BREAK_DURATION,
            max_break_duration: DEFAULT_MAX_BREAK_DURATION,
            break_multiplier: DEFAULT_BREAK_MULTIPLIER,
            jitter: DEFAULT_JITTER,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
            honor_retry_after: true,
            keyed: KeyedConfig::default(),
            seed: None,
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }
}

impl BreakerConfig {
    /// Trip after this many failures in a row, if set.
    pub const fn consecutive_failures(&self) -> Option<u32> {
        self.consecutive_failures
    }
    /// Trip when this share of the window's calls failed, if set.
    pub const fn failure_ratio(&self) -> Option<f64> {
        self.failure_ratio
    }
    /// The slow-call policy, if set.
    pub const fn slow_calls(&self) -> Option<SlowCalls> {
        self.slow_calls
    }
    /// The window the ratio policies read.
    pub const fn window(&self) -> Window {
        self.window
    }
    /// Calls the window must hold before a ratio policy may trip.
    pub const fn minimum_throughput(&self) -> u32 {
        self.minimum_throughput
    }
    /// The first break.
    pub const fn break_duration(&self) -> Duration {
        self.break_duration
    }
    /// The longest break, Retry-After included.
    pub const fn max_break_duration(&self) -> Duration {
        self.max_break_duration
    }
    /// How much each repeated opening multiplies the break by.
    pub const fn break_multiplier(&self) -> f64 {
        self.break_multiplier
    }
    /// The share by which a break may be shortened at random.
    pub const fn jitter(&self) -> f64 {
        self.jitter
    }
    /// Probes allowed in the half-open state.
    pub const fn half_open_probes(&self) -> u32 {
        self.half_open_probes
    }
    /// Whether a 503's `Retry-After` may lengthen a break.
    pub const fn honor_retry_after(&self) -> bool {
        self.honor_retry_after
    }
    /// Bounds of the per-key state map.
    pub const fn keyed(&self) -> KeyedConfig {
        self.keyed
    }
    /// How often a key's state is read from a shared backend, at most.
    pub const fn sync_interval(&self) -> Duration {
        self.sync_interval
    }
    /// The span of the ratio window in time, when it is a time window.
    pub const fn sampling_duration(&self) -> Option<Duration> {
        match self.window {
            Window::Time { length, .. } => Some(length),
            Window::Count { .. } => None,
        }
    }

    /// The break for the `openings`-th opening in a row (1-based), before
    /// any Retry-After: `break_duration × multiplier^(openings − 1)`, capped at
    /// the maximum, then shortened by up to `jitter` of itself; `unit` is a
    /// random number in `[0, 1)`.
    pub(crate) fn break_for(&self, openings: u32, unit: f64) -> Duration {
        let exp = i32::try_from(openings.saturating_sub(1)).unwrap_or(i32::MAX);
        let nominal = Duration::try_from_secs_f64(
            self.break_duration.as_secs_f64() * self.break_multiplier.powi(exp),
        )
        .unwrap_or(self.max_break_duration)
        .min(self.max_break_duration);
        let cut = (self.jitter * unit.clamp(0.0, 1.0)).clamp(0.0, 1.0);
        let jittered = Duration::try_from_secs_f64(nominal.as_secs_f64() * (1.0 - cut))
            .unwrap_or(nominal)
            .min(nominal);
        // Never a zero break: it would let traffic straight through.
        jittered.max(Duration::from_millis(1).min(nominal))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ratio_ok = |r: f64| r.is_finite() && r > 0.0 && r <= 1.0;
        if self.consecutive_failures.is_none()
            && self.failure_ratio.is_none()
            && self.slow_calls.is_none()
        {
            return Err(config_error(
                "failure_ratio",
                "is disabled and no other trip policy (consecutive_failures, slow_calls) is set: the breaker could never open",
            ));
        }
        if self.consecutive_failures == Some(0) {
            return Err(config_error("consecutive_failures", "must be at least 1"));
        }
        if let Some(r) = self.failure_ratio
            && !ratio_ok(r)
        {
            return Err(config_error(
                "failure_ratio",
                format!("must be in (0, 1], got {r}"),
            ));
        }
        if let Some(s) = self.slow_calls {
            if s.threshold.is_zero() {
                return Err(config_error(
                    "slow_calls",
                    "threshold must be greater than zero",
                ));
            }
            if !ratio_ok(s.ratio) {
                return Err(config_error(
                    "slow_calls",
                    format!("ratio must be in (0, 1], got {}", s.ratio),
                ));
            }
        }
        if self.minimum_throughput == 0 {
            return Err(config_error("minimum_throughput", "must be at least 1"));
        }
        match self.window {
            Window::Count { size } => {
                if size == 0 {
                    return Err(config_error("window", "count must be at least 1"));
                }
                if size < self.minimum_throughput
                    && (self.failure_ratio.is_some() || self.slow_calls.is_some())
                {
                    return Err(config_error(
                        "minimum_throughput",
                        format!(
                            "({}) exceeds the count window ({size}): a ratio policy could never trip",
                            self.minimum_throughput
                        ),
                    ));
                }
            }
            Window::Time { length, buckets } => {
                if buckets == 0 {
                    return Err(config_error("window", "buckets must be at least 1"));
                }
                if length < Duration::from_millis(u64::from(buckets)) {
                    return Err(config_error(
                        "window",
                        format!(
                            "length ({length:?}) must give each of its {buckets} buckets at least 1 ms"
                        ),
                    ));
                }
            }
        }
        if self.break_duration.is_zero() {
            return Err(config_error("break_duration", "must be greater than zero"));
        }
        if self.max_break_duration < self.break_duration {
            return Err(config_error(
                "max_break_duration",
                format!(
                    "({:?}) is shorter than break_duration ({:?})",
                    self.max_break_duration, self.break_duration
                ),
            ));
        }
        if !self.break_multiplier.is_finite() || self.break_multiplier < 1.0 {
            return Err(config_error(
                "break_multiplier",
                format!(
                    "must be finite and at least 1, got {}",
                    self.break_multiplier
                ),
            ));
        }
        if !self.jitter.is_finite() || !(0.0..1.0).contains(&self.jitter) {
            return Err(config_error(
                "jitter",
                format!("must be in [0, 1), got {}", self.jitter),
            ));
        }
        if self.half_open_probes == 0 {
            return Err(config_error("half_open_probes", "must be at least 1"));
        }
        if self.keyed.max_keys == 0 {
            return Err(config_error("max_keys", "must be at least 1"));
        }
        if self.keyed.idle_timeout.is_zero() {
            return Err(config_error("idle_timeout", "must be greater than zero"));
        }
        // An open key that is evicted forgets it is open, and a window
        // outliving its key is lost: the idle timeout must cover both.
        if self.keyed.idle_timeout < self.max_break_duration {
            return Err(config_error(
                "idle_timeout",
                format!(
                    "({:?}) is shorter than max_break_duration ({:?}): an open key could be evicted and forget it is open",
                    self.keyed.idle_timeout, self.max_break_duration
                ),
            ));
        }
        if let Window::Time { length, .. } = self.window
            && self.keyed.idle_timeout < length
        {
            return Err(config_error(
                "idle_timeout",
                format!(
                    "({:?}) is shorter than the sampling window ({length:?})",
                    self.keyed.idle_timeout
                ),
            ));
        }
        if self.sync_interval.is_zero() {
            return Err(config_error("sync_interval", "must be greater than zero"));
        }
        Ok(())
    }
}

pub(crate) type Listener = Arc<dyn Fn(&Transition) + Send + Sync>;

/// Builds a [`BreakerLayer`], validating every option. Start from
/// [`BreakerLayer::builder`].
///
/// Every option has a default, documented on its method; with none set the
/// breaker is Polly's standard one, keyed by origin.
pub struct Builder<C = HttpClassifier, K = ByAuthority> {
    cfg: BreakerConfig,
    classifier: C,
    key_fn: K,
    backend: Option<Arc<dyn BreakerStateBackend>>,
    listener: Option<Listener>,
}

impl<C: fmt::Debug, K: fmt::Debug> fmt::Debug for Builder<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("cfg", &self.cfg)
            .field("classifier", &self.classifier)
            .field("key_fn", &self.key_fn)
            .field("backend", &self.backend)
            .field(
                "listener",
                &self.listener.as_ref().map(|_| "Fn(&Transition)"),
            )
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with every default.
    pub fn new() -> Self {
        Self {
            cfg: BreakerConfig::default(),
            classifier: HttpClassifier::new(),
            key_fn: ByAuthority,
            backend: None,
            listener: None,
        }
    }
}

impl<C, K> Builder<C, K> {
    /// Trip after `n` failures in a row, whatever the window says. Default:
    /// off (Polly's standard handler uses the ratio alone). Only a success
    /// breaks a streak: a 429 or another 4xx between two failures neither
    /// counts nor resets it.
    #[must_use]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.cfg.consecutive_failures = Some(n);
        self
    }

    /// Trip when at least `ratio` of the window's calls failed, once the
    /// window holds [`minimum_throughput`](Self::minimum_throughput) calls.
    /// Default: 0.1 (Polly).
    #[must_use]
    pub fn failure_ratio(mut self, ratio: f64) -> Self {
        self.cfg.failure_ratio = Some(ratio);
        self
    }

    /// Turns the failure-ratio policy off, to rely on
    /// [`consecutive_failures`](Self::consecutive_failures) or
    /// [`slow_calls`](Self::slow_calls) alone.
    #[must_use]
    pub fn without_failure_ratio(mut self) -> Self {
        self.cfg.failure_ratio = None;
        self
    }

    /// Trip when at least `ratio` of the window's calls took `threshold` or
    /// longer to produce a response head (Resilience4j's slow-call rate). A
    /// slow half-open probe counts as a failed one. Default: off.
    #[must_use]
    pub fn slow_calls(mut self, threshold: Duration, ratio: f64) -> Self {
        self.cfg.slow_calls = Some(SlowCalls { threshold, ratio });
        self
    }

    /// The window the ratio policies read. Default: the last 30 s in 10
    /// buckets (Polly's sampling duration).
    #[must_use]
    pub fn window(mut self, window: Window) -> Self {
        self.cfg.window = window;
        self
    }

    /// Calls the window must hold before a ratio policy may trip. Default:
    /// 100 (Polly).
    #[must_use]
    pub fn minimum_throughput(mut self, calls: u32) -> Self {
        self.cfg.minimum_throughput = calls;
        self
    }

    /// The first break: how long the circuit stays open before probing.
    /// Default: 5 s (Polly).
    #[must_use]
    pub fn break_duration(mut self, d: Duration) -> Self {
        self.cfg.break_duration = d;
        self
    }

    /// The longest break, however often the circuit re-opens and whatever
    /// `Retry-After` says. Default: 60 s (Resilience4j's wait in the open state).
    #[must_use]
    pub fn max_break_duration(mut self, d: Duration) -> Self {
        self.cfg.max_break_duration = d;
        self
    }

    /// What each opening in a row multiplies the break by; `1.0` keeps it
    /// constant. Reset when the circuit closes. Default: 2.
    #[must_use]
    pub fn break_multiplier(mut self, m: f64) -> Self {
        self.cfg.break_multiplier = m;
        self
    }

    /// A break is shortened by a random share of itself up to `jitter`, in
    /// `[0, 1)`; `0` disables it. Default: 0.1.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.cfg.jitter = jitter;
        self
    }

    /// Seeds the jitter so that breaks are reproducible (tests). Default: a
    /// random seed per layer.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.cfg.seed = Some(seed);
        self
    }

    /// How many probes the half-open state lets through; all must succeed to
    /// close the circuit, one failure re-opens it. Default: 1 (Polly).
    #[must_use]
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.cfg.half_open_probes = n;
        self
    }

    /// Whether a 503 with `Retry-After` that opens the circuit makes the break
    /// at least that long (bounded by
    /// [`max_break_duration`](Self::max_break_duration)). Default: on.
    #[must_use]
    pub fn honor_retry_after(mut self, on: bool) -> Self {
        self.cfg.honor_retry_after = on;
        self
    }

    /// The most keys (upstreams) kept at once. Default: 10 000 (palisade-core).
    ///
    /// Past it, the least recently used key with no call in flight is
    /// evicted, even if it is open; isolated keys are never evicted.
    #[must_use]
    pub fn max_keys(mut self, n: usize) -> Self {
        self.cfg.keyed.max_keys = n;
        self
    }

    /// How long an unused key's state is kept; must be at least
    /// [`max_break_duration`](Self::max_break_duration) and the sampling
    /// window. Default: 10 minutes (palisade-core).
    #[must_use]
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.cfg.keyed.idle_timeout = d;
        self
    }

    /// How often, at most, a key's state is read from the
    /// [`backend`](Self::backend). Default: 1 s.
    #[must_use]
    pub fn sync_interval(mut self, d: Duration) -> Self {
        self.cfg.sync_interval = d;
        self
    }

    /// Shares each key's open state with other instances through `backend`.
    /// Default: none, the state is this layer's alone.
    #[must_use]
    pub fn backend(mut self, backend: Arc<dyn BreakerStateBackend>) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Calls `f` on every state transition, after the state has changed and
    /// outside any lock. Default: none (the `tracing` event is always emitted).
    #[must_use]
    pub fn on_transition(mut self, f: impl Fn(&Transition) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(f));
        self
    }

    /// Decides what counts as a failure. Default: [`HttpClassifier`] (5xx,
    /// timeouts, connect failures and resets; never 4xx or 429).
    pub fn classify<C2: Classify>(self, classifier: C2) -> Builder<C2, K> {
        Builder {
            cfg: self.cfg,
            classifier,
            key_fn: self.key_fn,
            backend: self.backend,
            listener: self.listener,
        }
    }

    /// Decides which breaker a request goes through. Default: [`ByAuthority`],
    /// one breaker per origin; [`palisade_core::Global`] gives a single one.
    pub fn key<K2>(self, key_fn: K2) -> Builder<C, K2> {
        Builder {
            cfg: self.cfg,
            classifier: self.classifier,
            key_fn,
            backend: self.backend,
            listener: self.listener,
        }
    }

    /// Validates the configuration and builds the layer, whose state every
    /// service it makes shares.
    pub fn build(self) -> Result<BreakerLayer<C, K>, ConfigError> {
        self.cfg.validate()?;
        Ok(BreakerLayer::from_parts(
            self.cfg,
            self.classifier,
            self.key_fn,
            self.backend,
            self.listener,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(b: Builder) -> ConfigError {
        b.build().expect_err("configuration should be rejected")
    }

    #[test]
    fn defaults_are_pollys_standard_breaker() {
        let c = BreakerConfig::default();
        assert_eq!(c.failure_ratio(), Some(0.1));
        assert_eq!(c.sampling_duration(), Some(Duration::from_secs(30)));
        assert_eq!(c.minimum_throughput(), 100);
        assert_eq!(c.break_duration(), Duration::from_secs(5));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn zero_nan_and_inverted_values_are_rejected() {
        let b = Builder::new;
        assert_eq!(
            err(b().consecutive_failures(0)).option(),
            "consecutive_failures"
        );
        assert_eq!(err(b().failure_ratio(f64::NAN)).option(), "failure_ratio");
        assert_eq!(err(b().failure_ratio(0.0)).option(), "failure_ratio");
        assert_eq!(err(b().failure_ratio(1.5)).option(), "failure_ratio");
        assert_eq!(
            err(b().slow_calls(Duration::ZERO, 0.5)).option(),
            "slow_calls"
        );
        assert_eq!(
            err(b().slow_calls(Duration::from_secs(1), f64::INFINITY)).option(),
            "slow_calls"
        );
        assert_eq!(
            err(b().minimum_throughput(0)).option(),
            "minimum_throughput"
        );
        assert_eq!(err(b().window(Window::count(0))).option(), "window");
        assert_eq!(
            err(b().window(Window::count(50))).option(),
            "minimum_throughput"
        );
        assert_eq!(
            err(b().window(Window::time_with_buckets(Duration::from_secs(1), 0))).option(),
            "window"
        );
        assert_eq!(
            err(b().break_duration(Duration::ZERO)).option(),
            "break_duration"
        );
        assert_eq!(
            err(b().max_break_duration(Duration::from_secs(1))).option(),
            "max_break_duration"
        );
        assert_eq!(err(b().break_multiplier(0.5)).option(), "break_multiplier");
        assert_eq!(
            err(b().break_multiplier(f64::NAN)).option(),
            "break_multiplier"
        );
        assert_eq!(err(b().jitter(1.0)).option(), "jitter");
        assert_eq!(err(b().jitter(-0.1)).option(), "jitter");
        assert_eq!(err(b().half_open_probes(0)).option(), "half_open_probes");
        assert_eq!(err(b().max_keys(0)).option(), "max_keys");
        assert_eq!(
            err(b().idle_timeout(Duration::from_secs(10))).option(),
            "idle_timeout"
        );
        assert_eq!(
            err(b().sync_interval(Duration::ZERO)).option(),
            "sync_interval"
        );
        let e = err(b().without_failure_ratio());
        assert!(e.to_string().contains("could never open"), "{e}");
        let e = err(b().failure_ratio(2.0));
        assert_eq!(
            e.to_string(),
            "invalid breaker configuration: failure_ratio: must be in (0, 1], got 2"
        );
    }

    #[test]
    fn consecutive_alone_is_valid() {
        assert!(
            Builder::new()
                .without_failure_ratio()
                .consecutive_failures(3)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn break_grows_then_caps() {
        let c = BreakerConfig {
            jitter: 0.0,
            ..BreakerConfig::default()
        };
        let secs: Vec<u64> = (1..=6).map(|n| c.break_for(n, 0.5).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 60, 60]);
        assert_eq!(c.break_for(u32::MAX, 0.0), Duration::from_secs(60));
    }

    proptest! {
        #[test]
        fn break_arithmetic(
            base_ms in 1u64..100_000,
            extra_ms in 0u64..1_000_000,
            mult in 1.0f64..10.0,
            jitter in 0.0f64..0.999,
            openings in 1u32..200,
            unit in 0.0f64..1.0,
        ) {
            let c = BreakerConfig {
                break_duration: Duration::from_millis(base_ms),
                max_break_duration: Duration::from_millis(base_ms + extra_ms),
                break_multiplier: mult,
                jitter,
                ..BreakerConfig::default()
            };
            let no_jitter = BreakerConfig { jitter: 0.0, ..c.clone() };
            let nominal = no_jitter.break_for(openings, unit);
            let d = c.break_for(openings, unit);
            // Bounded by the maximum, never below the jitter floor, never zero.
            prop_assert!(nominal <= c.max_break_duration);
            prop_assert!(nominal >= c.break_duration.min(c.max_break_duration));
            prop_assert!(d <= nominal);
            prop_assert!(d.as_secs_f64() >= nominal.as_secs_f64() * (1.0 - jitter) - 1e-6);
            prop_assert!(!d.is_zero());
            // Growth is monotone in the number of openings.
            prop_assert!(no_jitter.break_for(openings + 1, unit) >= nominal);
        }
    }
}
