//! The [`BodyTimeout`](super::BodyTimeout) response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use palisade_core::{Deadline, Key};
use pin_project_lite::pin_project;

use super::TimeoutBody;

pin_project! {
    /// The response future of [`BodyTimeout`](super::BodyTimeout): the inner
    /// future, whose response body is wrapped in a [`TimeoutBody`] when it
    /// arrives. It adds no timer of its own: bound the wait for the head
    /// with an [`AttemptTimeout`](crate::AttemptTimeout).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        idle: Option<Duration>,
        total: Option<Duration>,
        deadline: Option<Deadline>,
        key: Option<Key>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        idle: Option<Duration>,
        total: Option<Duration>,
        deadline: Option<Deadline>,
        key: Option<Key>,
    ) -> Self {
        Self {
            inner,
            idle,
            total,
            deadline,
            key,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<TimeoutBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.inner.poll(cx))?;
        let (idle, total, deadline, key) =
            (*this.idle, *this.total, *this.deadline, this.key.take());
        Poll::Ready(Ok(res.map(|body| {
            let body = TimeoutBody::new(body, idle, total, deadline);
            match key {
                Some(key) => body.with_key(key),
                None => body,
            }
        })))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("idle", &self.idle)
            .field("total", &self.total)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
