//! [`BreakerLayer`]: holds the configuration and the shared per-key state.

use std::fmt;
use std::sync::Arc;

use palisade_core::{ByAuthority, HttpClassifier};
use tower_layer::Layer;

use crate::backend::BreakerStateBackend;
use crate::config::{BreakerConfig, Builder, Listener};
use crate::handle::BreakerHandle;
use crate::service::Breaker;
use crate::state::{Runtime, Shared};

/// Wraps a service in a keyed circuit [`Breaker`].
///
/// The layer builds the per-key state once, when it is built: every service it
/// wraps, and every clone of those services, share it (behind an `Arc`), so a
/// key opened through one clone is open for all. Build a second layer for
/// independent breakers.
pub struct BreakerLayer<C = HttpClassifier, K = ByAuthority> {
    shared: Arc<Shared>,
    classifier: C,
    key_fn: K,
}

impl BreakerLayer {
    /// A layer with every default: Polly's standard breaker (10% failures
    /// over 30 s, at least 100 calls, a 5 s break growing ×2 up to 60 s),
    /// one per origin, classified by [`HttpClassifier`].
    pub fn new() -> Self {
        Self::from_parts(
            BreakerConfig::default(),
            HttpClassifier::new(),
            ByAuthority,
            None,
            None,
        )
    }

    /// A builder to configure the layer.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl Default for BreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, K> BreakerLayer<C, K> {
    pub(crate) fn from_parts(
        cfg: BreakerConfig,
        classifier: C,
        key_fn: K,
        backend: Option<Arc<dyn BreakerStateBackend>>,
        listener: Option<Listener>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(Runtime::new(cfg, backend, listener))),
            classifier,
            key_fn,
        }
    }

    /// A handle on the state this layer's services share: per-key snapshots
    /// and manual control.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.shared.clone())
    }

    /// The validated configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.shared.rt.cfg
    }
}

impl<C: Clone, K: Clone> Clone for BreakerLayer<C, K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<C: fmt::Debug, K: fmt::Debug> fmt::Debug for BreakerLayer<C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerLayer")
            .field("config", self.config())
            .field("classifier", &self.classifier)
            .field("key_fn", &self.key_fn)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone, K: Clone> Layer<S> for BreakerLayer<C, K> {
    type Service = Breaker<S, C, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker::from_parts(
            inner,
            self.shared.clone(),
            self.classifier.clone(),
            self.key_fn.clone(),
        )
    }
}
