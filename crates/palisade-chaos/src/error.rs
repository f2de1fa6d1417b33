//! The errors of the chaos layer: the marker of an injected fault, and
//! configuration errors.

use std::error::Error as StdError;
use std::fmt;

/// The source of every [`TransportError`](palisade_core::TransportError) the
/// [`Chaos`](crate::Chaos) service injects, so that tests can tell an injected
/// fault from a real one with
/// [`palisade_core::error::find`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InjectedFault {
    /// A transport error injected instead of sending the request: the inner
    /// service was never called.
    Error,
    /// The request was sent and its response discarded, as if the connection
    /// died after the server had processed it.
    Abort,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Error => f.write_str("fault injected by palisade-chaos"),
            Self::Abort => {
                f.write_str("response aborted by palisade-chaos after the request was sent")
            }
        }
    }
}

impl StdError for InjectedFault {}

/// An invalid [`ChaosLayer`](crate::ChaosLayer) configuration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The injection rate is NaN or outside `0.0..=1.0`.
    InvalidRate(f64),
    /// The injection rate is above zero but there is no fault to inject.
    NoFaults,
    /// A status fault's code is not a valid HTTP status.
    InvalidStatus(u16),
    /// A latency fault of zero, or a range whose maximum is zero.
    ZeroLatency,
    /// A latency range whose minimum is above its maximum.
    InvertedLatency,
    /// A fault weight of zero.
    ZeroWeight,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidRate(r) => write!(
                f,
                "invalid chaos injection rate {r}: expected a number in 0.0..=1.0"
            ),
            Self::NoFaults => {
                f.write_str("chaos injection rate is above zero but no fault is configured")
            }
            Self::InvalidStatus(s) => {
                write!(f, "invalid chaos status fault {s}: expected 100..=999")
            }
            Self::ZeroLatency => f.write_str("chaos latency fault of zero injects nothing"),
            Self::InvertedLatency => {
                f.write_str("chaos latency range has its minimum above its maximum")
            }
            Self::ZeroWeight => f.write_str("chaos fault weight must be at least 1"),
        }
    }
}

impl StdError for ConfigError {}
