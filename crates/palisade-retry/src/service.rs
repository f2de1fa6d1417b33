//! [`Retry`].

use std::task::{Context, Poll};

use http::{Request, Response};
use palisade_core::{Body, BoxError, ByAuthority, Classify, HttpClassifier, KeyFn};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::policy::RetryPolicy;

/// Retries failed attempts of an HTTP request according to a
/// [`RetryPolicy`]. See the [crate docs](crate).
///
/// Clones share the policy's state (budget, random number generator,
/// latency windows) behind an `Arc`; each clone has its own clone of the
/// inner service.
#[derive(Debug)]
pub struct Retry<S, C = HttpClassifier, K = ByAuthority> {
    inner: S,
    policy: RetryPolicy<C, K>,
}

impl<S: Clone, C, K> Clone for Retry<S, C, K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
        }
    }
}

impl<S, C, K> Retry<S, C, K> {
    /// Wraps `inner` with `policy`.
    pub const fn new(inner: S, policy: RetryPolicy<C, K>) -> Self {
        Self { inner, policy }
    }

    /// The policy.
    pub const fn policy(&self) -> &RetryPolicy<C, K> {
        &self.policy
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

impl<S, B, C, K> Service<Request<Body>> for Retry<S, C, K>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    C: Classify,
    K: KeyFn<Body>,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, C, K>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The readied service sends the first attempt; the fresh clone stays
        // here to be readied for the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(inner, req, self.policy.shared.clone())
    }
}
