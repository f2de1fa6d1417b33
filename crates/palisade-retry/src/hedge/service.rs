//! [`Hedge`].

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use palisade_core::{Body, BoxError, ByAuthority, KeyFn};
use tower_service::Service;

use super::HedgeShared;
use super::future::ResponseFuture;

/// Sends a second copy of a slow idempotent request. See the
/// [module docs](super).
///
/// Clones share the extra-load cap, the budget and the latency windows
/// behind an `Arc`; each clone has its own clone of the inner service.
#[derive(Debug)]
pub struct Hedge<S, K = ByAuthority> {
    inner: S,
    shared: Arc<HedgeShared<K>>,
}

impl<S: Clone, K> Clone for Hedge<S, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, K> Hedge<S, K> {
    pub(crate) const fn from_shared(inner: S, shared: Arc<HedgeShared<K>>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, K> Service<Request<Body>> for Hedge<S, K>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    K: KeyFn<Body>,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = ResponseFuture<S, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        ResponseFuture::start(&mut self.inner, req, self.shared.clone())
    }
}
