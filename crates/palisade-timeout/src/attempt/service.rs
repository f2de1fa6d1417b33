use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{BoxError, ByAuthority, Deadline, KeyFn};
use tokio::time::Instant;
use tower_service::Service;

use super::future::{Bound, ResponseFuture};
use crate::header::DeadlineHeader;
use crate::{event, time};

/// Fails an attempt that has no response head within its timeout. Built by
/// [`AttemptTimeoutLayer`](super::AttemptTimeoutLayer); see the
/// [module docs](crate::attempt).
///
/// **Clone:** a clone has the same configuration and shares no mutable state.
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S, K = ByAuthority> {
    pub(crate) inner: S,
    pub(crate) timeout: Duration,
    pub(crate) header: Option<DeadlineHeader>,
    pub(crate) key_fn: K,
}

impl<S, K> AttemptTimeout<S, K> {
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

impl<S, K, B> Service<http::Request<B>> for AttemptTimeout<S, K>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    K: KeyFn<B>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        // A per-request override replaces this layer's own timeout.
        let timeout = palisade_core::overrides::AttemptTimeout::of(&req).unwrap_or(self.timeout);
        let own = time::after(start, timeout);
        let (at, bound) = match Deadline::of(&req) {
            // On a tie the deadline is reported: no retry could fit either.
            Some(d) if d.instant() <= own => (d.instant(), Bound::Deadline),
            _ => (own, Bound::Attempt),
        };
        let key = event::key_for(&self.key_fn, &req);
        if at <= start {
            return ResponseFuture::expired(start, key);
        }
        if let Some(header) = &self.header {
            header.write(req.headers_mut(), at - start);
        }
        // No clone of `inner`: the future does not outlive this borrow.
        ResponseFuture::new(self.inner.call(req), at, bound, start, key)
    }
}
