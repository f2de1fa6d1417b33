use std::time::Duration;

use palisade_core::ByAuthority;
use tower_layer::Layer;

use super::AttemptTimeout;
use crate::config::{AttemptTimeoutBuilder, ConfigError};
use crate::header::DeadlineHeader;

/// Applies an [`AttemptTimeout`] to each attempt. See the
/// [module docs](crate::attempt).
///
/// **Clone:** the layer holds only immutable configuration; services built
/// from it, and their clones, share no mutable state.
#[derive(Debug, Clone)]
pub struct AttemptTimeoutLayer<K = ByAuthority> {
    pub(crate) timeout: Duration,
    pub(crate) header: Option<DeadlineHeader>,
    pub(crate) key_fn: K,
}

impl AttemptTimeoutLayer {
    /// An attempt timeout of `timeout`, otherwise the defaults. Fails when
    /// `timeout` is zero.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        Self::builder().timeout(timeout).build()
    }

    /// A builder starting from the [defaults](crate::config).
    pub fn builder() -> AttemptTimeoutBuilder {
        AttemptTimeoutBuilder::default()
    }
}

impl Default for AttemptTimeoutLayer {
    /// The default attempt timeout, 10 s (Polly's standard handler).
    fn default() -> Self {
        Self {
            timeout: crate::config::DEFAULT_ATTEMPT_TIMEOUT,
            header: None,
            key_fn: ByAuthority,
        }
    }
}

impl<K> AttemptTimeoutLayer<K> {
    /// The layer's own timeout.
    pub const fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S, K: Clone> Layer<S> for AttemptTimeoutLayer<K> {
    type Service = AttemptTimeout<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptTimeout {
            inner,
            timeout: self.timeout,
            header: self.header.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}
