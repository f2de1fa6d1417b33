//! The quota, the waiting mode, and the validating builder.

use std::num::NonZeroU32;
use std::time::Duration;

use palisade_core::ByAuthority;
use palisade_core::keyed::KeyedConfig;

use crate::backend::{LocalBackend, RateLimitBackend};
use crate::layer::RateLimitLayer;

/// A rate: one request every [`replenish_interval`](Self::replenish_interval),
/// with at most [`burst`](Self::burst) requests at once.
///
/// The limit is GCRA (the generic cell rate algorithm) as implemented by
/// `governor`: a key that has been idle may send `burst` requests back to
/// back, then one per interval.
///
/// ```
/// use std::time::Duration;
/// use palisade_ratelimit::Quota;
///
/// // 100 requests a second, at most 10 back to back.
/// let q = Quota::per_second(100)?.with_burst(10)?;
/// assert_eq!(q.replenish_interval(), Duration::from_millis(10));
/// assert_eq!(q.burst(), 10);
///
/// // 5 000 requests an hour, as GitHub's REST API allows.
/// let q = Quota::per_period(5_000, Duration::from_secs(3600))?;
/// assert_eq!(q.replenish_interval(), Duration::from_millis(720));
/// assert_eq!(q.burst(), 5_000);
/// # Ok::<(), palisade_ratelimit::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    interval: Duration,
    burst: NonZeroU32,
}

impl Quota {
    /// `n` requests per second. The burst defaults to `n`, as in governor's
    /// `Quota::per_second` and aiolimiter's `AsyncLimiter(max_rate, 1)`.
    pub fn per_second(n: u32) -> Result<Self, ConfigError> {
        Self::per_period(n, Duration::from_secs(1))
    }

    /// `n` requests per minute. The burst defaults to `n`.
    pub fn per_minute(n: u32) -> Result<Self, ConfigError> {
        Self::per_period(n, Duration::from_secs(60))
    }

    /// `n` requests per `period`. The burst defaults to `n`: the whole
    /// period's allowance may be spent at once, as most APIs' windows allow.
    pub fn per_period(n: u32, period: Duration) -> Result<Self, ConfigError> {
        let burst = NonZeroU32::new(n)
            .ok_or_else(|| config_error("quota", "the number of requests must be at least 1"))?;
        if period.is_zero() {
            return Err(config_error("quota", "the period must be longer than zero"));
        }
        let interval = period / n;
        if interval.is_zero() {
            return Err(config_error(
                "quota",
                format!("{n} requests per {period:?} is more than one per nanosecond"),
            ));
        }
        Self { interval, burst }.checked()
    }

    /// governor keeps times in `u64` nanoseconds from its clock's start; a
    /// burst window (interval × burst) near that range overflows inside it.
    /// A quarter of the range (about 146 years) leaves room for the clock.
    fn checked(self) -> Result<Self, ConfigError> {
        const MAX_WINDOW_NS: u128 = (u64::MAX / 4) as u128;
        let window = self
            .interval
            .as_nanos()
            .saturating_mul(u128::from(self.burst.get()));
        if window > MAX_WINDOW_NS {
            return Err(config_error(
                "quota",
                format!(
                    "a burst of {} every {:?} spans more than 146 years; \
                     use a shorter period or a smaller burst",
                    self.burst, self.interval
                ),
            ));
        }
        Ok(self)
    }

    /// One request every `interval`, with a burst of 1 until
    /// [`with_burst`](Self::with_burst) says otherwise.
    pub fn every(interval: Duration) -> Result<Self, ConfigError> {
        if interval.is_zero() {
            return Err(config_error(
                "quota",
                "the interval must be longer than zero",
            ));
        }
        Self {
            interval,
            burst: NonZeroU32::MIN,
        }
        .checked()
    }

    /// The same rate with at most `burst` requests at once.
    pub fn with_burst(self, burst: u32) -> Result<Self, ConfigError> {
        let burst = NonZeroU32::new(burst)
            .ok_or_else(|| config_error("burst", "the burst must be at least 1"))?;
        Self { burst, ..self }.checked()
    }

    /// The time one request's slot takes to replenish.
    pub const fn replenish_interval(&self) -> Duration {
        self.interval
    }

    /// The most requests allowed back to back.
    pub const fn burst(&self) -> u32 {
        self.burst.get()
    }

    /// The sustained rate in requests per second.
    pub fn per_second_f64(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// How long an exhausted burst takes to refill completely.
    pub fn burst_refill(&self) -> Duration {
        self.interval.saturating_mul(self.burst.get())
    }

    /// The equivalent [`governor::Quota`].
    pub fn to_governor(&self) -> governor::Quota {
        // `interval` is non-zero by construction, so `with_period` is `Some`.
        governor::Quota::with_period(self.interval)
            .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.burst)
    }
}

/// What a request does when its key has no slot free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Wait for a slot, but never longer than `max_wait` or what is left of
    /// the request's [`Deadline`](palisade_core::Deadline). A request whose
    /// wait would be longer fails at once with
    /// [`RateLimited`](crate::error::RateLimited), never after having waited.
    Wait {
        /// The longest a request waits for a slot.
        max_wait: Duration,
    },
    /// Fail at once with [`RateLimited`](crate::error::RateLimited) when no
    /// slot is free.
    Reject,
}

/// The default maximum wait: 10 seconds. aiolimiter and governor's
/// `until_ready` wait without bound; a bound makes a quota that cannot be met
/// surface as an error rather than as a hang. A request's `Deadline` clamps it
/// further.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(10);

/// The default cap on a pause the server asks for: 120 seconds, urllib3's
/// `Retry.DEFAULT_BACKOFF_MAX`, so that an absurd `Retry-After` cannot stall a
/// key for hours.
pub const DEFAULT_MAX_SERVER_PAUSE: Duration = Duration::from_secs(120);

pub use palisade_core::error::ConfigError;

/// A [`ConfigError`] of this crate's component.
pub(crate) fn config_error(
    option: &'static str,
    reason: impl Into<std::borrow::Cow<'static, str>>,
) -> ConfigError {
    ConfigError::new("rate limit", option, reason)
}

/// The validated settings shared by every service a layer builds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) quota: Quota,
    pub(crate) mode: Mode,
    pub(crate) listen_to_server: bool,
    pub(crate) max_server_pause: Duration,
    pub(crate) keyed: KeyedConfig,
}

/// Builds a [`RateLimitLayer`]. Start from [`RateLimitLayer::builder`].
///
/// Every option has a documented default; [`build`](Self::build) checks them
/// together and returns a [`ConfigError`] rather than a limiter that cannot
/// work.
#[derive(Debug, Clone)]
pub struct RateLimitBuilder<K = ByAuthority, Bk = LocalBackend> {
    quota: Quota,
    mode: Mode,
    listen_to_server: bool,
    max_server_pause: Duration,
    max_keys: usize,
    idle_timeout: Option<Duration>,
    key_fn: K,
    backend: Bk,
}

impl RateLimitBuilder {
    pub(crate) fn new(quota: Quota) -> Self {
        Self {
            quota,
            mode: Mode::Wait {
                max_wait: DEFAULT_MAX_WAIT,
            },
            listen_to_server: true,
            max_server_pause: DEFAULT_MAX_SERVER_PAUSE,
            max_keys: KeyedConfig::default().max_keys,
            idle_timeout: None,
            key_fn: ByAuthority,
            backend: LocalBackend::new(),
        }
    }

    /// Every default for `quota`; valid by construction.
    pub(crate) fn defaults_for(quota: Quota) -> Config {
        Config {
            quota,
            mode: Mode::Wait {
                max_wait: DEFAULT_MAX_WAIT,
            },
            listen_to_server: true,
            max_server_pause: DEFAULT_MAX_SERVER_PAUSE,
            keyed: KeyedConfig {
                idle_timeout: default_idle_timeout(&quota),
                ..KeyedConfig::default()
            },
        }
    }
}

/// [`KeyedConfig`]'s 10 minutes, or the burst's refill time when longer.
fn default_idle_timeout(quota: &Quota) -> Duration {
    KeyedConfig::default()
        .idle_timeout
        .max(quota.burst_refill())
}

impl<K, Bk> RateLimitBuilder<K, Bk> {
    /// Wait up to `max_wait` for a slot. The default, with
    /// [`DEFAULT_MAX_WAIT`] (10 s).
    pub fn wait(mut self, max_wait: Duration) -> Self {
        self.mode = Mode::Wait { max_wait };
        self
    }

    /// Fail at once when no slot is free, instead of waiting.
    pub fn reject(mut self) -> Self {
        self.mode = Mode::Reject;
        self
    }

    /// Sets the [`Mode`] directly.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Whether a 429 or an exhausted `RateLimit-Remaining` pauses the key
    /// until the server's reset. Default `true`.
    pub fn listen_to_server(mut self, listen: bool) -> Self {
        self.listen_to_server = listen;
        self
    }

    /// The longest pause a server's `Retry-After` or reset header can impose.
    /// Default [`DEFAULT_MAX_SERVER_PAUSE`] (120 s, as urllib3).
    pub fn max_server_pause(mut self, max: Duration) -> Self {
        self.max_server_pause = max;
        self
    }

    /// How long a key's state is kept unused before it is evicted. Default
    /// 10 minutes ([`KeyedConfig`]'s default), or the time the burst takes to
    /// refill when that is longer. It must be at least that refill time, so
    /// that eviction never forgets a limit in force.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// The most keys kept before the least recently used idle ones are
    /// evicted. Default 10 000 ([`KeyedConfig`]'s default).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Partitions requests with `key_fn` instead of by authority, for
    /// example per API key, tenant or route. [`Global`](palisade_core::Global)
    /// gives one limit for every request.
    pub fn key_fn<K2>(self, key_fn: K2) -> RateLimitBuilder<K2, Bk> {
        RateLimitBuilder {
            quota: self.quota,
            mode: self.mode,
            listen_to_server: self.listen_to_server,
            max_server_pause: self.max_server_pause,
            max_keys: self.max_keys,
            idle_timeout: self.idle_timeout,
            key_fn,
            backend: self.backend,
        }
    }

    /// Keeps the limit in `backend` instead of in this process, for example
    /// on Redis so that a fleet shares one quota. Default [`LocalBackend`].
    pub fn backend<Bk2: RateLimitBackend>(self, backend: Bk2) -> RateLimitBuilder<K, Bk2> {
        RateLimitBuilder {
            quota: self.quota,
            mode: self.mode,
            listen_to_server: self.listen_to_server,
            max_server_pause: self.max_server_pause,
            max_keys: self.max_keys,
            idle_timeout: self.idle_timeout,
            key_fn: self.key_fn,
            backend,
        }
    }
}

impl<K, Bk: RateLimitBackend> RateLimitBuilder<K, Bk> {
    /// Validates the settings and builds the layer.
    pub fn build(self) -> Result<RateLimitLayer<K, Bk>, ConfigError> {
        if let Mode::Wait { max_wait } = self.mode
            && max_wait.is_zero()
        {
            return Err(config_error(
                "max_wait",
                "must be longer than zero; use reject() to never wait",
            ));
        }
        if self.max_server_pause.is_zero() {
            return Err(config_error(
                "max_server_pause",
                "must be longer than zero; use listen_to_server(false) to ignore the server",
            ));
        }
        if self.max_keys == 0 {
            return Err(config_error("max_keys", "must be at least 1"));
        }
        let idle_timeout = match self.idle_timeout {
            None => default_idle_timeout(&self.quota),
            Some(idle) if idle.is_zero() => {
                return Err(config_error("idle_timeout", "must be longer than zero"));
            }
            Some(idle) => {
                let refill = self.quota.burst_refill();
                if idle < refill {
                    return Err(config_error(
                        "idle_timeout",
                        format!(
                            "{idle:?} is shorter than the {refill:?} the burst takes to refill, \
                             so eviction would forget a limit in force"
                        ),
                    ));
                }
                idle
            }
        };
        let config = Config {
            quota: self.quota,
            mode: self.mode,
            listen_to_server: self.listen_to_server,
            max_server_pause: self.max_server_pause,
            keyed: KeyedConfig {
                max_keys: self.max_keys,
                idle_timeout,
            },
        };
        Ok(RateLimitLayer::from_parts(
            config,
            self.key_fn,
            self.backend,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_and_absurd_quotas_are_rejected() {
        assert_eq!(Quota::per_second(0).unwrap_err().option(), "quota");
        assert!(Quota::per_period(1, Duration::ZERO).is_err());
        assert!(Quota::per_period(10, Duration::from_nanos(5)).is_err());
        assert!(Quota::every(Duration::ZERO).is_err());
        assert_eq!(
            Quota::per_second(1)
                .unwrap()
                .with_burst(0)
                .unwrap_err()
                .option(),
            "burst"
        );
        let msg = Quota::per_second(0).unwrap_err().to_string();
        assert!(
            msg.starts_with("invalid rate limit configuration: quota:"),
            "{msg}"
        );
    }

    #[test]
    fn quota_constructors() {
        let q = Quota::per_minute(30).unwrap();
        assert_eq!(q.replenish_interval(), Duration::from_secs(2));
        assert_eq!(q.burst(), 30);
        assert_eq!(q.burst_refill(), Duration::from_secs(60));
        let q = Quota::every(Duration::from_millis(250))
            .unwrap()
            .with_burst(4)
            .unwrap();
        assert_eq!(q.per_second_f64(), 4.0);
        let g = q.to_governor();
        assert_eq!(g.replenish_interval(), Duration::from_millis(250));
        assert_eq!(g.burst_size().get(), 4);
    }

    #[test]
    fn builder_rejects_settings_that_cannot_work() {
        let q = Quota::per_second(10).unwrap();
        let err = RateLimitLayer::builder(q)
            .wait(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.option(), "max_wait");
        let err = RateLimitLayer::builder(q)
            .max_server_pause(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.option(), "max_server_pause");
        assert_eq!(
            RateLimitLayer::builder(q)
                .max_keys(0)
                .build()
                .unwrap_err()
                .option(),
            "max_keys"
        );
        let slow = Quota::per_minute(100).unwrap();
        let err = RateLimitLayer::builder(slow)
            .idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_err();
        assert_eq!(err.option(), "idle_timeout");
        assert!(err.to_string().contains("refill"), "{err}");
        assert!(RateLimitLayer::builder(q).reject().build().is_ok());
        // The default idle timeout stretches to cover a long refill.
        let hourly = Quota::per_period(5_000, Duration::from_secs(3600)).unwrap();
        assert!(RateLimitLayer::builder(hourly).build().is_ok());
    }

    proptest! {
        #[test]
        fn interval_times_count_never_exceeds_period(n in 1u32..=u32::MAX, period_ms in 1u64..10_000_000) {
            let period = Duration::from_millis(period_ms);
            match Quota::per_period(n, period) {
                Ok(q) => {
                    // Truncation makes the sustained rate at most 1 ns per
                    // request faster than asked, never slower.
                    let whole = q.replenish_interval().saturating_mul(n);
                    prop_assert!(whole <= period);
                    prop_assert!(period - whole < Duration::from_nanos(u64::from(n)));
                    prop_assert_eq!(q.burst(), n);
                }
                Err(e) => prop_assert!(period.as_nanos() < u128::from(n), "{}", e),
            }
        }
    }
}
