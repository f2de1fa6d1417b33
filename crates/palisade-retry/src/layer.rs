//! [`RetryLayer`].

use palisade_core::{ByAuthority, HttpClassifier};
use tower_layer::Layer;

use crate::config::RetryPolicyBuilder;
use crate::error::ConfigError;
use crate::policy::RetryPolicy;
use crate::service::Retry;

/// Wraps services in [`Retry`] with one [`RetryPolicy`].
///
/// Every service the layer builds, and every clone of those, shares the
/// policy's state (budget, random number generator, latency windows): it
/// lives behind an `Arc`.
#[derive(Debug)]
pub struct RetryLayer<C = HttpClassifier, K = ByAuthority> {
    policy: RetryPolicy<C, K>,
}

impl<C, K> Clone for RetryLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
        }
    }
}

impl Default for RetryLayer {
    /// The layer with the default policy.
    fn default() -> Self {
        Self::new(RetryPolicy::default())
    }
}

impl RetryLayer {
    /// A builder for the policy; finish it with
    /// [`build_layer`](RetryPolicyBuilder::build_layer).
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::new()
    }

    /// The layer with the default policy, validated.
    ///
    /// # Errors
    ///
    /// None in practice: the defaults are valid.
    pub fn try_default() -> Result<Self, ConfigError> {
        RetryPolicyBuilder::new().build_layer()
    }
}

impl<C, K> RetryLayer<C, K> {
    /// A layer applying `policy`.
    pub const fn new(policy: RetryPolicy<C, K>) -> Self {
        Self { policy }
    }

    /// The policy.
    pub const fn policy(&self) -> &RetryPolicy<C, K> {
        &self.policy
    }
}

impl<S, C, K> Layer<S> for RetryLayer<C, K> {
    type Service = Retry<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone())
    }
}
