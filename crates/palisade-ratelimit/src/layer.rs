//! The [`RateLimitLayer`].

use std::sync::Arc;

use palisade_core::ByAuthority;
use tower_layer::Layer;

use crate::backend::{LocalBackend, RateLimitBackend};
use crate::config::{Config, Quota, RateLimitBuilder};
use crate::service::RateLimit;
use crate::shared::Shared;

/// Applies a keyed GCRA rate limit to a service. See the [crate docs](crate).
///
/// # Clones share state
///
/// The layer creates the limiter's state once. Every service it builds, and
/// every clone of the layer or of those services, shares that state behind
/// an `Arc`: one layer is one quota per key, however many services use it.
/// Build a second layer for an independent limit.
#[derive(Debug)]
pub struct RateLimitLayer<K = ByAuthority, Bk: RateLimitBackend = LocalBackend> {
    key_fn: K,
    shared: Arc<Shared<Bk>>,
}

impl<K: Clone, Bk: RateLimitBackend> Clone for RateLimitLayer<K, Bk> {
    fn clone(&self) -> Self {
        Self {
            key_fn: self.key_fn.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl RateLimitLayer {
    /// A layer limiting each authority to `quota`, waiting up to 10 s for a
    /// slot and listening to the server; every other option at its default.
    pub fn new(quota: Quota) -> Self {
        Self::from_parts(
            RateLimitBuilder::defaults_for(quota),
            ByAuthority,
            LocalBackend::new(),
        )
    }

    /// A builder for a layer limited by `quota`.
    pub fn builder(quota: Quota) -> RateLimitBuilder {
        RateLimitBuilder::new(quota)
    }
}

impl<K, Bk: RateLimitBackend> RateLimitLayer<K, Bk> {
    pub(crate) fn from_parts(config: Config, key_fn: K, backend: Bk) -> Self {
        Self {
            key_fn,
            shared: Arc::new(Shared::new(config, backend)),
        }
    }

    /// The quota each key is limited to.
    pub fn quota(&self) -> Quota {
        self.shared.config.quota
    }

    /// The backend the limit lives in.
    pub fn backend(&self) -> &Bk {
        &self.shared.backend
    }
}

impl<S, K: Clone, Bk: RateLimitBackend> Layer<S> for RateLimitLayer<K, Bk> {
    type Service = RateLimit<S, K, Bk>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_parts(inner, self.key_fn.clone(), self.shared.clone())
    }
}
