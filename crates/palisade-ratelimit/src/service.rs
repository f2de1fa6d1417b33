//! The [`RateLimit`] service.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use palisade_core::{BoxError, ByAuthority, Key, KeyFn};
use tower_service::Service;

use crate::backend::{LocalBackend, RateLimitBackend};
use crate::future::ResponseFuture;
use crate::shared::Shared;

/// Limits the rate of requests per key. Built by
/// [`RateLimitLayer`](crate::RateLimitLayer).
///
/// # Clones share state
///
/// Every service a layer builds, and every clone of one, shares the layer's
/// limits, queues and server pauses behind one `Arc`. Cloning a
/// `RateLimit` (as reqwest clients and tower buffers do) therefore never
/// multiplies the quota.
#[derive(Debug)]
pub struct RateLimit<S, K = ByAuthority, Bk: RateLimitBackend = LocalBackend> {
    inner: S,
    key_fn: K,
    shared: Arc<Shared<Bk>>,
}

impl<S: Clone, K: Clone, Bk: RateLimitBackend> Clone for RateLimit<S, K, Bk> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            key_fn: self.key_fn.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, K, Bk: RateLimitBackend> RateLimit<S, K, Bk> {
    pub(crate) fn from_parts(inner: S, key_fn: K, shared: Arc<Shared<Bk>>) -> Self {
        Self {
            inner,
            key_fn,
            shared,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the limiter, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// How many keys the limiter holds state for.
    pub fn key_count(&self) -> usize {
        self.shared.key_count()
    }

    /// Evicts every key that is idle and has no request in flight. Idle keys
    /// are also evicted as keys are used; this forces a sweep now. Returns how
    /// many were evicted. The global key, the only key of an unkeyed limiter,
    /// is never evicted.
    pub fn evict_idle(&self) -> usize {
        self.shared.evict_idle()
    }

    /// How long `key` stays paused because the server asked, if it is.
    pub fn paused_for(&self, key: &Key) -> Option<Duration> {
        let entry = self.shared.existing(key)?;
        let left = entry.paused_until().checked_sub(self.shared.now())?;
        (left > 0).then(|| Duration::from_nanos(left))
    }

    /// The backend the limit lives in.
    pub fn backend(&self) -> &Bk {
        &self.shared.backend
    }
}

impl<S, K, Bk, B, RB> Service<Request<B>> for RateLimit<S, K, Bk>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    K: KeyFn<B>,
    Bk: RateLimitBackend,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, Bk>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The key is known only in `call`, so a request waits for its slot in
        // the response future; readiness is the inner service's.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = self.key_fn.key(&req);
        let entry = self.shared.entry(&key);
        // The readied service goes with the request; this one gets a clone
        // and is polled ready again before the next call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::new(inner, req, self.shared.clone(), entry, key)
    }
}
