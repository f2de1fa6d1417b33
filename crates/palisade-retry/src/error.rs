//! Errors of the retry and hedge layers.
//!
//! At run time the layers add only one failure of their own:
//! [`DeadlineExceeded`], when the request's [`Deadline`](palisade_core::Deadline)
//! has passed before an attempt could start. Every other outcome is the inner
//! service's own, passed through unchanged (boxed), so that a
//! `reqwest::Error` or a [`TransportError`](palisade_core::TransportError) is
//! never lost. When the retry budget runs out the layer returns the last
//! outcome, not [`BudgetExhausted`]; the type is re-exported for callers that
//! match on it elsewhere.
//!
//! [`ConfigError`] is what the builders return for a configuration that
//! cannot work.

use std::fmt;

pub use palisade_core::error::{BoxError, BudgetExhausted, DeadlineExceeded};

/// A configuration the builders refuse, with the field and the reason.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration or count that must be greater than zero was zero.
    Zero {
        /// The setting.
        field: &'static str,
    },
    /// A number was NaN or infinite.
    NotFinite {
        /// The setting.
        field: &'static str,
    },
    /// A number was outside its allowed range.
    OutOfRange {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The allowed range, in words.
        allowed: &'static str,
    },
    /// A lower bound was greater than its upper bound.
    Inverted {
        /// The lower bound's setting.
        min: &'static str,
        /// The upper bound's setting.
        max: &'static str,
    },
    /// Anything else, explained.
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero { field } => write!(
                f,
                "invalid retry config: `{field}` must be greater than zero"
            ),
            Self::NotFinite { field } => {
                write!(f, "invalid retry config: `{field}` must be a finite number")
            }
            Self::OutOfRange {
                field,
                value,
                allowed,
            } => write!(
                f,
                "invalid retry config: `{field}` is {value}, but must be {allowed}"
            ),
            Self::Inverted { min, max } => write!(
                f,
                "invalid retry config: `{min}` must not be greater than `{max}`"
            ),
            Self::Invalid { field, reason } => {
                write!(f, "invalid retry config: `{field}` {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Checks that `value` is finite and within `[lo, hi]`.
pub(crate) fn check_range(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    allowed: &'static str,
) -> Result<(), ConfigError> {
    if !value.is_finite() {
        return Err(ConfigError::NotFinite { field });
    }
    if value < lo || value > hi {
        return Err(ConfigError::OutOfRange {
            field,
            value,
            allowed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_field() {
        let errs = [
            ConfigError::Zero {
                field: "base_delay",
            },
            ConfigError::NotFinite {
                field: "retry_ratio",
            },
            ConfigError::OutOfRange {
                field: "retry_ratio",
                value: -1.0,
                allowed: "between 0 and 1000",
            },
            ConfigError::Inverted {
                min: "base_delay",
                max: "max_delay",
            },
        ];
        for e in errs {
            let s = e.to_string();
            assert!(s.starts_with("invalid retry config"), "{s}");
            assert!(s.contains('`'), "{s}");
        }
        assert!(check_range("p", f64::NAN, 0.0, 1.0, "x").is_err());
        assert!(check_range("p", 2.0, 0.0, 1.0, "x").is_err());
        assert!(check_range("p", 0.5, 0.0, 1.0, "x").is_ok());
    }
}
