//! The errors the rate limiter fails with.
//!
//! A request refused by the limiter fails with [`RateLimited`], boxed as a
//! [`BoxError`](palisade_core::BoxError). Its `retry_after` says when a slot
//! would have been free, or when the server's pause ends; it is `None` when a
//! shared backend refused without a time (fail closed). Recover it with
//! [`palisade_core::error::find`]. The inner service's own errors pass
//! through unchanged.

pub use crate::config::ConfigError;
pub use palisade_core::error::RateLimited;
