//! [`Breaker`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use palisade_core::{BoxError, ByAuthority, Classify, HttpClassifier, KeyFn};
use tower_service::Service;

use crate::future::{CallGuard, ResponseFuture};
use crate::handle::BreakerHandle;
use crate::state::Shared;

/// A keyed circuit breaker around `S`. Built by
/// [`BreakerLayer`](crate::BreakerLayer).
///
/// Clones share the per-key state with each other and with the layer that
/// made them (behind an `Arc`).
///
/// While a key is open, [`call`](Service::call) returns a future that fails
/// with [`CircuitOpen`](crate::error::CircuitOpen) without calling `S`.
pub struct Breaker<S, C = HttpClassifier, K = ByAuthority> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    key_fn: K,
}

impl<S, C, K> Breaker<S, C, K> {
    pub(crate) const fn from_parts(
        inner: S,
        shared: Arc<Shared>,
        classifier: C,
        key_fn: K,
    ) -> Self {
        Self {
            inner,
            shared,
            classifier,
            key_fn,
        }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub const fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the breaker, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A handle on the shared per-key state.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.shared.clone())
    }
}

impl<S: Clone, C: Clone, K: Clone> Clone for Breaker<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<S: fmt::Debug, C: fmt::Debug, K: fmt::Debug> fmt::Debug for Breaker<S, C, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("classifier", &self.classifier)
            .field("key_fn", &self.key_fn)
            .finish_non_exhaustive()
    }
}

impl<S, C, K, B, RB> Service<Request<B>> for Breaker<S, C, K>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    C: Classify,
    K: KeyFn<B>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, Response<RB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = self.key_fn.key(&req);
        let state = self.shared.key_state(&key);
        match state.admit() {
            Ok(ticket) => {
                let guard = CallGuard::new(state, ticket);
                let sync = guard.state().claim_sync();
                // The readied inner service is called here and now: the
                // breaker never waits, so the future need not own it.
                let inner = self.inner.call(req);
                ResponseFuture::called(inner, guard, self.classifier.clone(), sync)
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
