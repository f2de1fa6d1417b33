use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{BoxError, ByAuthority, Deadline, KeyFn};
use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::header::DeadlineHeader;
use crate::{event, inherit, time};

/// Sets the request's deadline and fails the request when it passes. Built
/// by [`DeadlineLayer`](super::DeadlineLayer); see the
/// [module docs](crate::deadline).
///
/// **Clone:** a clone has the same configuration and shares no mutable state.
#[derive(Debug, Clone)]
pub struct DeadlineTimeout<S, K = ByAuthority> {
    pub(crate) inner: S,
    pub(crate) budget: Option<Duration>,
    pub(crate) inherit: bool,
    pub(crate) header: Option<DeadlineHeader>,
    pub(crate) key_fn: K,
}

impl<S, K> DeadlineTimeout<S, K> {
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

impl<S, K, B> Service<http::Request<B>> for DeadlineTimeout<S, K>
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
        // A per-request budget replaces this layer's own, and may be longer.
        let budget = palisade_core::overrides::TotalTimeout::of(&req).or(self.budget);
        let mut own = budget.map(|b| Deadline::at(time::after(start, b)));
        if self.inherit
            && let Some(inherited) = inherit::current()
        {
            own = Some(own.map_or(inherited, |d| d.tighten(inherited)));
        }
        // Tightened in place when one is already there: `Extensions::insert`
        // would box a new value.
        let deadline = if let Some(existing) = req.extensions_mut().get_mut::<Deadline>() {
            if let Some(d) = own {
                *existing = existing.tighten(d);
            }
            Some(*existing)
        } else if let Some(d) = own {
            req.extensions_mut().insert(d);
            Some(d)
        } else {
            None
        };
        let Some(deadline) = deadline else {
            return ResponseFuture::unbounded(self.inner.call(req));
        };
        let key = event::key_for(&self.key_fn, &req);
        let at = deadline.instant();
        if at <= start {
            return ResponseFuture::expired(start, key);
        }
        if let Some(header) = &self.header {
            header.write(req.headers_mut(), at - start);
        }
        ResponseFuture::new(self.inner.call(req), at, start, key)
    }
}
