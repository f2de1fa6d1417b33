//! How long to wait before each retry.
//!
//! A [`Backoff`] is a validated [`BackoffStrategy`] with a base and a maximum
//! delay. It is pure arithmetic over a seedable random number generator, so
//! it can be used on its own and tested deterministically:
//!
//! ```
//! use std::time::Duration;
//! use palisade_retry::backoff::{Backoff, BackoffState, BackoffStrategy};
//! use rand::SeedableRng;
//!
//! let backoff = Backoff::new(
//!     BackoffStrategy::ExponentialFullJitter,
//!     Duration::from_millis(100),
//!     Duration::from_secs(5),
//! )
//! .unwrap();
//! let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
//! let mut state = BackoffState::new();
//! let first = backoff.next_delay(&mut state, &mut rng);
//! let second = backoff.next_delay(&mut state, &mut rng);
//! assert!(first <= Duration::from_millis(100));
//! assert!(second <= Duration::from_millis(200));
//! ```

use std::time::Duration;

use rand::Rng;

use crate::error::ConfigError;

/// The largest `max_delay` accepted: one day. Anything longer is a mistake
/// (a unit error, say) rather than a policy.
pub const MAX_BACKOFF: Duration = Duration::from_secs(24 * 3600);

/// The shape of the delays between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackoffStrategy {
    /// Exponential growth with "full jitter": the `n`th retry waits a uniform
    /// random time in `[0, min(max, base * 2^(n-1))]`. This is the strategy
    /// AWS's "Exponential Backoff and Jitter" analysis found to spread retries
    /// best.
    ExponentialFullJitter,
    /// Decorrelated jitter with a smooth exponential envelope: the idea behind
    /// Polly's `DecorrelatedJitterV2`. The first retry's median delay is about
    /// `base`, later ones grow exponentially without the clumping of plain
    /// jitter, and no two clients fall into step.
    DecorrelatedJitter,
    /// Always `base`. No jitter.
    Constant,
    /// `base * n` for the `n`th retry, capped at `max`. No jitter.
    Linear,
}

impl BackoffStrategy {
    /// A short stable name, for events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ExponentialFullJitter => "exponential_full_jitter",
            Self::DecorrelatedJitter => "decorrelated_jitter",
            Self::Constant => "constant",
            Self::Linear => "linear",
        }
    }
}

/// A validated backoff: strategy, base delay and maximum delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    strategy: BackoffStrategy,
    base: Duration,
    max: Duration,
}

/// The per-request state a backoff needs between retries.
///
/// Start each logical request with [`BackoffState::new`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BackoffState {
    retries: u32,
    /// The decorrelated-jitter formula's previous value.
    prev: f64,
}

impl BackoffState {
    /// The state before the first retry.
    pub const fn new() -> Self {
        Self {
            retries: 0,
            prev: 0.0,
        }
    }

    /// How many delays have been drawn.
    pub const fn retries(&self) -> u32 {
        self.retries
    }
}

// Constants of the decorrelated-jitter envelope: `2^t * tanh(sqrt(P * t))`
// rises smoothly from 0, and scaling by 1/1.4 puts the first retry's median
// near `base`.
const DECORRELATED_P: f64 = 4.0;
const DECORRELATED_SCALE: f64 = 1.0 / 1.4;

impl Backoff {
    /// Validates and creates a backoff.
    ///
    /// # Errors
    ///
    /// `base` must be greater than zero, `max` at least `base` and at most
    /// [`MAX_BACKOFF`].
    pub fn new(
        strategy: BackoffStrategy,
        base: Duration,
        max: Duration,
    ) -> Result<Self, ConfigError> {
        if base.is_zero() {
            return Err(ConfigError::Zero {
                field: "base_delay",
            });
        }
        if max.is_zero() {
            return Err(ConfigError::Zero { field: "max_delay" });
        }
        if base > max {
            return Err(ConfigError::Inverted {
                min: "base_delay",
                max: "max_delay",
            });
        }
        if max > MAX_BACKOFF {
            return Err(ConfigError::Invalid {
                field: "max_delay",
                reason: "must be at most one day",
            });
        }
        Ok(Self {
            strategy,
            base,
            max,
        })
    }

    /// The strategy.
    pub const fn strategy(&self) -> BackoffStrategy {
        self.strategy
    }

    /// The base delay.
    pub const fn base(&self) -> Duration {
        self.base
    }

    /// The maximum delay.
    pub const fn max(&self) -> Duration {
        self.max
    }

    /// The delay before the next retry, advancing `state`.
    pub fn next_delay<R: Rng + ?Sized>(&self, state: &mut BackoffState, rng: &mut R) -> Duration {
        self.next_delay_with_base(self.base, state, rng)
    }

    /// Like [`next_delay`](Self::next_delay), with `base` in place of the
    /// configured base (clamped to `[base, max]`). The adaptive floor uses
    /// this to scale delays with observed latency.
    pub fn next_delay_with_base<R: Rng + ?Sized>(
        &self,
        base: Duration,
        state: &mut BackoffState,
        rng: &mut R,
    ) -> Duration {
        let base = base.clamp(self.base, self.max);
        state.retries = state.retries.saturating_add(1);
        let n = state.retries;
        match self.strategy {
            BackoffStrategy::Constant => base,
            BackoffStrategy::Linear => base.saturating_mul(n).min(self.max),
            BackoffStrategy::ExponentialFullJitter => {
                // Past 2^64 the envelope is far beyond any allowed maximum.
                let ceiling = nanos(base)
                    .saturating_mul(1u128 << (n - 1).min(64))
                    .min(nanos(self.max));
                from_nanos(rng.random_range(0..=ceiling))
            }
            BackoffStrategy::DecorrelatedJitter => {
                let t = f64::from(n - 1) + rng.random::<f64>();
                let next = 2f64.powf(t) * (DECORRELATED_P * t).sqrt().tanh();
                let step = (next - state.prev) * DECORRELATED_SCALE * base.as_secs_f64();
                state.prev = next;
                if !step.is_finite() || step >= self.max.as_secs_f64() {
                    self.max
                } else {
                    Duration::try_from_secs_f64(step.max(0.0))
                        .unwrap_or(self.max)
                        .min(self.max)
                }
            }
        }
    }
}

fn nanos(d: Duration) -> u128 {
    d.as_nanos()
}

fn from_nanos(n: u128) -> Duration {
    let secs = u64::try_from(n / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 1e9, so it fits.
    let sub = (n % 1_000_000_000) as u32;
    Duration::new(secs, sub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn invalid_bounds_are_errors() {
        let s = BackoffStrategy::Constant;
        assert_eq!(
            Backoff::new(s, Duration::ZERO, ms(10)),
            Err(ConfigError::Zero {
                field: "base_delay"
            })
        );
        assert_eq!(
            Backoff::new(s, ms(20), ms(10)),
            Err(ConfigError::Inverted {
                min: "base_delay",
                max: "max_delay"
            })
        );
        assert!(Backoff::new(s, ms(1), MAX_BACKOFF + ms(1)).is_err());
        assert!(Backoff::new(s, ms(10), ms(10)).is_ok());
    }

    #[test]
    fn constant_and_linear_are_exact() {
        let mut rng = SmallRng::seed_from_u64(1);
        let c = Backoff::new(BackoffStrategy::Constant, ms(100), ms(1000)).unwrap();
        let mut st = BackoffState::new();
        for _ in 0..5 {
            assert_eq!(c.next_delay(&mut st, &mut rng), ms(100));
        }
        let l = Backoff::new(BackoffStrategy::Linear, ms(100), ms(350)).unwrap();
        let mut st = BackoffState::new();
        let got: Vec<_> = (0..5).map(|_| l.next_delay(&mut st, &mut rng)).collect();
        assert_eq!(got, [ms(100), ms(200), ms(300), ms(350), ms(350)]);
    }

    #[test]
    fn seeded_jitter_is_reproducible() {
        for strategy in [
            BackoffStrategy::ExponentialFullJitter,
            BackoffStrategy::DecorrelatedJitter,
        ] {
            let b = Backoff::new(strategy, ms(100), Duration::from_secs(30)).unwrap();
            let run = |seed| {
                let mut rng = SmallRng::seed_from_u64(seed);
                let mut st = BackoffState::new();
                (0..8)
                    .map(|_| b.next_delay(&mut st, &mut rng))
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(42), run(42));
            assert_ne!(run(42), run(43));
        }
    }

    #[test]
    fn decorrelated_first_retry_median_is_near_base() {
        let b = Backoff::new(BackoffStrategy::DecorrelatedJitter, ms(1000), ms(60_000)).unwrap();
        let mut rng = SmallRng::seed_from_u64(9);
        let mut firsts: Vec<Duration> = (0..2001)
            .map(|_| b.next_delay(&mut BackoffState::new(), &mut rng))
            .collect();
        firsts.sort();
        let median = firsts[1000];
        assert!(
            median > ms(700) && median < ms(1400),
            "median {median:?} should be near the base"
        );
    }

    #[test]
    fn decorrelated_grows_on_average() {
        let b = Backoff::new(BackoffStrategy::DecorrelatedJitter, ms(100), ms(3_600_000)).unwrap();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut sums = [0f64; 6];
        for _ in 0..500 {
            let mut st = BackoffState::new();
            for s in &mut sums {
                *s += b.next_delay(&mut st, &mut rng).as_secs_f64();
            }
        }
        for w in sums.windows(2) {
            assert!(w[1] > w[0], "mean delays should grow: {sums:?}");
        }
    }

    proptest! {
        #[test]
        fn full_jitter_stays_under_its_envelope(
            base_ms in 1u64..5_000, extra_ms in 0u64..100_000, retries in 1u32..200, seed in any::<u64>()
        ) {
            let base = ms(base_ms);
            let max = ms(base_ms + extra_ms);
            let b = Backoff::new(BackoffStrategy::ExponentialFullJitter, base, max).unwrap();
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut st = BackoffState::new();
            for n in 1..=retries {
                let d = b.next_delay(&mut st, &mut rng);
                let envelope = base.as_nanos().saturating_mul(1u128 << (n - 1).min(100)).min(max.as_nanos());
                prop_assert!(d.as_nanos() <= envelope, "retry {} delay {:?} over {}", n, d, envelope);
            }
        }

        #[test]
        fn every_strategy_respects_max(
            base_ms in 1u64..5_000, extra_ms in 0u64..100_000, retries in 1u32..300, seed in any::<u64>(), which in 0usize..4
        ) {
            let strategy = [
                BackoffStrategy::ExponentialFullJitter,
                BackoffStrategy::DecorrelatedJitter,
                BackoffStrategy::Constant,
                BackoffStrategy::Linear,
            ][which];
            let max = ms(base_ms + extra_ms);
            let b = Backoff::new(strategy, ms(base_ms), max).unwrap();
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut st = BackoffState::new();
            for _ in 0..retries {
                prop_assert!(b.next_delay(&mut st, &mut rng) <= max);
            }
        }

        #[test]
        fn adaptive_base_is_clamped(base_ms in 1u64..1_000, floor_ms in 0u64..1_000_000, seed in any::<u64>()) {
            let max = ms(base_ms * 10);
            let b = Backoff::new(BackoffStrategy::Constant, ms(base_ms), max).unwrap();
            let mut rng = SmallRng::seed_from_u64(seed);
            let d = b.next_delay_with_base(ms(floor_ms), &mut BackoffState::new(), &mut rng);
            prop_assert!(d >= ms(base_ms) && d <= max);
        }
    }
}
