use std::time::Duration;

use tower_layer::Layer;

use super::InheritDeadline;
use crate::config::InheritDeadlineBuilder;
use crate::header::DeadlineHeader;

/// Server side: reads the caller's deadline header and lets outbound calls
/// inherit it. See the [module docs](crate::inherit).
///
/// **Clone:** the layer holds only immutable configuration; services built
/// from it, and their clones, share no mutable state.
#[derive(Debug, Clone, Default)]
pub struct InheritDeadlineLayer {
    pub(crate) header: DeadlineHeader,
    pub(crate) max: Option<Duration>,
}

impl InheritDeadlineLayer {
    /// Reads `header`, with no cap on the incoming budget.
    pub fn new(header: DeadlineHeader) -> Self {
        Self { header, max: None }
    }

    /// A builder starting from the [defaults](crate::config).
    pub fn builder() -> InheritDeadlineBuilder {
        InheritDeadlineBuilder::default()
    }
}

impl<S> Layer<S> for InheritDeadlineLayer {
    type Service = InheritDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InheritDeadline {
            inner,
            header: self.header.clone(),
            max: self.max,
        }
    }
}
