//! The [`ConcurrencyLimitLayer`].

use std::fmt;
use std::sync::Arc;

use palisade_core::{ByAuthority, HttpClassifier};
use tower_layer::Layer;

use crate::config::{Builder, Config};
use crate::diagnostics::Diagnostics;
use crate::service::ConcurrencyLimit;
use crate::shared::Shared;

/// Applies [`ConcurrencyLimit`] to a service.
///
/// Build it with [`ConcurrencyLimitLayer::builder`]; the default (a fixed
/// limit of 100 per origin, a queue of 1024, a 5 s maximum wait, body-aware
/// permits) is [`ConcurrencyLimitLayer::default`].
///
/// **Clones share state.** The layer holds its state behind an `Arc`, built
/// once by [`Builder::build`]. Every service it produces, every clone of the
/// layer and every clone of those services share the same limits, queues and
/// statistics.
pub struct ConcurrencyLimitLayer<K = ByAuthority, C = HttpClassifier> {
    shared: Arc<Shared>,
    key_fn: K,
    classify: C,
}

impl ConcurrencyLimitLayer {
    /// A builder with every default.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl Default for ConcurrencyLimitLayer {
    fn default() -> Self {
        Self::from_parts(Config::default(), ByAuthority, HttpClassifier::new())
    }
}

impl<K, C> ConcurrencyLimitLayer<K, C> {
    pub(crate) fn from_parts(config: Config, key_fn: K, classify: C) -> Self {
        Self {
            shared: Arc::new(Shared::new(config)),
            key_fn,
            classify,
        }
    }

    /// The most requests one key may have in flight: the fixed limit, or an
    /// adaptive limit's maximum. A connection pool that keeps fewer idle
    /// connections per host than this churns connections under full load.
    pub fn max_in_flight_per_key(&self) -> usize {
        self.shared.config.limit.bounds().1
    }

    /// A read handle on the shared state: limits, in flight, queues, waits.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics::new(self.shared.clone())
    }
}

impl<K: Clone, C: Clone> Clone for ConcurrencyLimitLayer<K, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            key_fn: self.key_fn.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<K, C> fmt::Debug for ConcurrencyLimitLayer<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimitLayer")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for ConcurrencyLimitLayer<K, C> {
    type Service = ConcurrencyLimit<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::new(
            inner,
            self.shared.clone(),
            self.key_fn.clone(),
            self.classify.clone(),
        )
    }
}
