//! The faults [`ChaosLayer`] injects and its validating builder.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;
use palisade_core::TransportErrorKind;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::error::ConfigError;
use crate::layer::{ChaosLayer, Shared};

/// The default injection rate: 0.001, one call in a thousand, as Polly v8's
/// chaos strategies (`ChaosStrategyOptions.InjectionRate`).
pub const DEFAULT_INJECTION_RATE: f64 = 0.001;

/// The default seed: a fixed one, so that a run is repeatable unless asked
/// otherwise.
pub const DEFAULT_SEED: u64 = 0xc4a05;

/// One kind of fault [`ChaosLayer`] can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub(crate) kind: FaultKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Latency { min: Duration, max: Duration },
    Error(TransportErrorKind),
    Status(u16),
    Abort,
}

impl Fault {
    /// Waits `delay` before sending the request (Simmy's latency strategy).
    pub const fn latency(delay: Duration) -> Self {
        Self {
            kind: FaultKind::Latency {
                min: delay,
                max: delay,
            },
        }
    }

    /// Waits a seeded uniformly random time in `min..=max` before sending the
    /// request.
    pub const fn latency_between(min: Duration, max: Duration) -> Self {
        Self {
            kind: FaultKind::Latency { min, max },
        }
    }

    /// Fails at once with a
    /// [`TransportError`](palisade_core::TransportError) of `kind` whose
    /// source is [`InjectedFault::Error`](crate::error::InjectedFault::Error);
    /// the request is not sent. `Connect` models a refused connection,
    /// `Timeout` or `Reset` a failure the classifier treats as possibly sent.
    pub const fn error(kind: TransportErrorKind) -> Self {
        Self {
            kind: FaultKind::Error(kind),
        }
    }

    /// Answers with `status` and a default (empty) body instead of sending
    /// the request (Simmy's outcome strategy).
    pub const fn status(status: u16) -> Self {
        Self {
            kind: FaultKind::Status(status),
        }
    }

    /// Sends the request, then discards its response and fails with a
    /// `Reset` [`TransportError`](palisade_core::TransportError) whose source
    /// is [`InjectedFault::Abort`](crate::error::InjectedFault::Abort): the
    /// server did the work but the client never learns it, the case that
    /// makes retrying a non-idempotent request unsafe.
    pub const fn abort() -> Self {
        Self {
            kind: FaultKind::Abort,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match self.kind {
            FaultKind::Latency { min, max } => {
                if min > max {
                    Err(ConfigError::InvertedLatency)
                } else if max.is_zero() {
                    Err(ConfigError::ZeroLatency)
                } else {
                    Ok(())
                }
            }
            FaultKind::Status(s) => StatusCode::from_u16(s)
                .map(drop)
                .map_err(|_| ConfigError::InvalidStatus(s)),
            FaultKind::Error(_) | FaultKind::Abort => Ok(()),
        }
    }
}

/// Builds a [`ChaosLayer`]; see [`ChaosLayer::builder`].
#[derive(Debug, Clone)]
pub struct ChaosBuilder {
    rate: f64,
    seed: u64,
    faults: Vec<(Fault, u32)>,
}

impl Default for ChaosBuilder {
    fn default() -> Self {
        Self {
            rate: DEFAULT_INJECTION_RATE,
            seed: DEFAULT_SEED,
            faults: Vec::new(),
        }
    }
}

impl ChaosBuilder {
    /// The share of calls that get a fault, in `0.0..=1.0`. Default:
    /// [`DEFAULT_INJECTION_RATE`] (0.001, Polly v8's). Zero turns the layer
    /// into a pass-through.
    #[must_use]
    pub const fn injection_rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    /// The seed of the generator that decides which calls get which fault.
    /// The same seed and the same sequence of calls give the same faults.
    /// Default: [`DEFAULT_SEED`].
    #[must_use]
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Adds a fault with weight 1.
    #[must_use]
    pub fn fault(self, fault: Fault) -> Self {
        self.weighted_fault(fault, 1)
    }

    /// Adds a fault with a weight: an injected call gets this fault with
    /// probability `weight / sum of weights`.
    #[must_use]
    pub fn weighted_fault(mut self, fault: Fault, weight: u32) -> Self {
        self.faults.push((fault, weight));
        self
    }

    /// Validates the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// A rate that is NaN or outside `0.0..=1.0`, a rate above zero with no
    /// fault, an invalid status, a zero or inverted latency, a zero weight.
    pub fn build(self) -> Result<ChaosLayer, ConfigError> {
        if !(0.0..=1.0).contains(&self.rate) {
            return Err(ConfigError::InvalidRate(self.rate));
        }
        if self.rate > 0.0 && self.faults.is_empty() {
            return Err(ConfigError::NoFaults);
        }
        for (fault, weight) in &self.faults {
            fault.validate()?;
            if *weight == 0 {
                return Err(ConfigError::ZeroWeight);
            }
        }
        let total_weight = self.faults.iter().map(|(_, w)| u64::from(*w)).sum();
        Ok(ChaosLayer {
            shared: Arc::new(Shared {
                rate: self.rate,
                faults: self.faults,
                total_weight,
                rng: Mutex::new(SmallRng::seed_from_u64(self.seed)),
                injected: AtomicU64::new(0),
            }),
        })
    }
}
