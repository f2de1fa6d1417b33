use std::time::Duration;

use palisade_core::ByAuthority;
use tower_layer::Layer;

use super::BodyTimeout;
use crate::config::{BodyTimeoutBuilder, ConfigError};

/// Wraps each response body in a [`TimeoutBody`](super::TimeoutBody). See
/// the [module docs](crate::body).
///
/// **Clone:** the layer holds only immutable configuration; services built
/// from it, and their clones, share no mutable state.
#[derive(Debug, Clone)]
pub struct BodyTimeoutLayer<K = ByAuthority> {
    pub(crate) idle: Option<Duration>,
    pub(crate) total: Option<Duration>,
    pub(crate) request_deadline: bool,
    pub(crate) key_fn: K,
}

impl BodyTimeoutLayer {
    /// An idle timeout of `idle`, otherwise the defaults (no total bound,
    /// the request's deadline honoured). Fails when `idle` is zero.
    pub fn idle(idle: Duration) -> Result<Self, ConfigError> {
        Self::builder().idle(idle).build()
    }

    /// A builder starting from the [defaults](crate::config).
    pub fn builder() -> BodyTimeoutBuilder {
        BodyTimeoutBuilder::default()
    }
}

impl Default for BodyTimeoutLayer {
    /// A 30 s idle timeout, no total bound, the request's deadline honoured.
    fn default() -> Self {
        Self {
            idle: Some(crate::config::DEFAULT_BODY_IDLE_TIMEOUT),
            total: None,
            request_deadline: true,
            key_fn: ByAuthority,
        }
    }
}

impl<K> BodyTimeoutLayer<K> {
    /// The idle timeout, if any.
    pub const fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }

    /// The total bound on the body, if any.
    pub const fn total_timeout(&self) -> Option<Duration> {
        self.total
    }
}

impl<S, K: Clone> Layer<S> for BodyTimeoutLayer<K> {
    type Service = BodyTimeout<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyTimeout {
            inner,
            idle: self.idle,
            total: self.total,
            request_deadline: self.request_deadline,
            key_fn: self.key_fn.clone(),
        }
    }
}
