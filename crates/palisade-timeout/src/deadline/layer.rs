use std::time::Duration;

use palisade_core::ByAuthority;
use tower_layer::Layer;

use super::DeadlineTimeout;
use crate::config::{ConfigError, DeadlineBuilder};
use crate::header::DeadlineHeader;

/// Sets and enforces the request's [`Deadline`](palisade_core::Deadline).
/// See the [module docs](crate::deadline).
///
/// **Clone:** the layer holds only immutable configuration; services built
/// from it, and their clones, share no mutable state.
#[derive(Debug, Clone)]
pub struct DeadlineLayer<K = ByAuthority> {
    pub(crate) budget: Option<Duration>,
    pub(crate) inherit: bool,
    pub(crate) header: Option<DeadlineHeader>,
    pub(crate) key_fn: K,
}

impl DeadlineLayer {
    /// A total budget of `budget` per logical request, otherwise the
    /// defaults. Fails when `budget` is zero.
    pub fn new(budget: Duration) -> Result<Self, ConfigError> {
        Self::builder().budget(budget).build()
    }

    /// A builder starting from the [defaults](crate::config).
    pub fn builder() -> DeadlineBuilder {
        DeadlineBuilder::default()
    }
}

impl Default for DeadlineLayer {
    /// A 30 s budget (Polly's standard handler), inheriting the caller's
    /// deadline.
    fn default() -> Self {
        Self {
            budget: Some(crate::config::DEFAULT_TOTAL_BUDGET),
            inherit: true,
            header: None,
            key_fn: ByAuthority,
        }
    }
}

impl<K> DeadlineLayer<K> {
    /// The layer's own budget, if it has one.
    pub const fn budget(&self) -> Option<Duration> {
        self.budget
    }
}

impl<S, K: Clone> Layer<S> for DeadlineLayer<K> {
    type Service = DeadlineTimeout<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineTimeout {
            inner,
            budget: self.budget,
            inherit: self.inherit,
            header: self.header.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}
