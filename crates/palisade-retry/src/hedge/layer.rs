//! [`HedgeLayer`].

use std::sync::Arc;

use palisade_core::ByAuthority;
use tower_layer::Layer;

use super::{Hedge, HedgeLayerBuilder, HedgeShared};

/// Wraps services in [`Hedge`]. See the [module docs](super).
///
/// Every service the layer builds, and every clone, shares the extra-load
/// cap, the budget and the latency windows: they live behind an `Arc`.
#[derive(Debug)]
pub struct HedgeLayer<K = ByAuthority> {
    shared: Arc<HedgeShared<K>>,
}

impl<K> Clone for HedgeLayer<K> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl HedgeLayer {
    /// A builder with every default.
    pub const fn builder() -> HedgeLayerBuilder {
        HedgeLayerBuilder::new()
    }
}

impl<K> HedgeLayer<K> {
    pub(crate) const fn from_shared(shared: Arc<HedgeShared<K>>) -> Self {
        Self { shared }
    }
}

impl<S, K> Layer<S> for HedgeLayer<K> {
    type Service = Hedge<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::from_shared(inner, self.shared.clone())
    }
}
