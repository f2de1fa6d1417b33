//! The breaker's errors.
//!
//! A refused call fails with [`CircuitOpen`], boxed as a
//! [`BoxError`](palisade_core::BoxError); recover it with
//! [`palisade_core::error::find`]. The inner service's errors pass through
//! unchanged (boxed). An invalid configuration is a [`ConfigError`].

pub use crate::config::ConfigError;
pub use palisade_core::error::CircuitOpen;
