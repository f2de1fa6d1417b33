//! The response body, which holds the request's permit until it ends.
//!
//! With body-aware permits (the default), the permit taken for a request is
//! released when its response body has been read to the end, has failed, or
//! is dropped, not when the response head arrives. A streaming download thus
//! counts against the limit for as long as it streams, which is when it
//! occupies a connection and the upstream. tower's `ConcurrencyLimit`
//! releases at the head instead (tower-http PR 447 is still open on this);
//! [`Builder::body_aware(false)`](crate::Builder::body_aware) does the same
//! here.
//!
//! A body that is already at its end when the head arrives (an empty body, a
//! `HEAD` response, a 204) releases the permit at once.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::permit::Permit;

pin_project! {
    /// A response body that releases the request's permit when it ends or is
    /// dropped. Frames, trailers, size hints and errors pass through as they
    /// are.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) const fn new(inner: B, permit: Option<Permit>) -> Self {
        Self { inner, permit }
    }

    /// Whether this body still holds a permit.
    pub const fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }

    /// The inner body.
    pub const fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// The inner body. The permit is released: the body no longer counts
    /// against the limit.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let res = this.inner.as_mut().poll_frame(cx);
        let done = match &res {
            Poll::Ready(None | Some(Err(_))) => true,
            // Some bodies know they are done with the last frame; nobody
            // needs to poll again for the permit to be returned.
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if done {
            this.permit.take();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("holds_permit", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}
