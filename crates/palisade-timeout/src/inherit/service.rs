use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::Deadline;
use tower_service::Service;

use super::Scoped;
use crate::header::DeadlineHeader;

/// Reads the caller's deadline from a header into the request's
/// [`Deadline`] extension and runs the inner service in an inherited-deadline
/// [scope](crate::inherit::scope). Built by
/// [`InheritDeadlineLayer`](super::InheritDeadlineLayer).
///
/// A missing or malformed header sets nothing; a zero budget sets a deadline
/// that has already passed, so outbound calls fail fast. A `Deadline`
/// already in the request is kept if earlier.
///
/// **Clone:** a clone has the same configuration and shares no mutable state.
#[derive(Debug, Clone)]
pub struct InheritDeadline<S> {
    pub(crate) inner: S,
    pub(crate) header: DeadlineHeader,
    pub(crate) max: Option<Duration>,
}

impl<S> InheritDeadline<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for InheritDeadline<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Scoped<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let deadline = match self.header.read(req.headers()) {
            Some(budget) => {
                let budget = self.max.map_or(budget, |max| budget.min(max));
                Some(Deadline::after(budget).apply(req.extensions_mut()))
            }
            None => Deadline::of(&req),
        };
        // `call` itself may start outbound work, so it runs in the scope too.
        super::call_in_scope(deadline, || self.inner.call(req))
    }
}
