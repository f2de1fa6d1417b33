use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core::{ByAuthority, Deadline, KeyFn};
use tower_service::Service;

use super::TimeoutBody;
use super::future::ResponseFuture;
use crate::event;

/// Wraps each response body in a [`TimeoutBody`]. Built by
/// [`BodyTimeoutLayer`](super::BodyTimeoutLayer); see the
/// [module docs](crate::body).
///
/// The service's error type is the inner one, unchanged: body timeouts
/// surface as errors of the body, not of the call.
///
/// **Clone:** a clone has the same configuration and shares no mutable state.
#[derive(Debug, Clone)]
pub struct BodyTimeout<S, K = ByAuthority> {
    pub(crate) inner: S,
    pub(crate) idle: Option<Duration>,
    pub(crate) total: Option<Duration>,
    pub(crate) request_deadline: bool,
    pub(crate) key_fn: K,
}

impl<S, K> BodyTimeout<S, K> {
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

impl<S, K, ReqB, ResB> Service<http::Request<ReqB>> for BodyTimeout<S, K>
where
    S: Service<http::Request<ReqB>, Response = http::Response<ResB>>,
    K: KeyFn<ReqB>,
{
    type Response = http::Response<TimeoutBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        let deadline = if self.request_deadline {
            Deadline::of(&req)
        } else {
            None
        };
        let key = event::key_for(&self.key_fn, &req);
        ResponseFuture::new(self.inner.call(req), self.idle, self.total, deadline, key)
    }
}
