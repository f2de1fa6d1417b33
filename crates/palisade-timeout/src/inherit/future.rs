//! The future that runs inside an inherited-deadline scope.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use palisade_core::Deadline;
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;

pin_project! {
    /// A future run with a deadline [inherited](crate::inherit) by the
    /// outbound calls it makes. Returned by [`scope`](crate::inherit::scope),
    /// [`carry`](crate::inherit::carry) and as the response future of
    /// [`InheritDeadline`](crate::InheritDeadline).
    pub struct Scoped<F> {
        #[pin]
        inner: TaskLocalFuture<Option<Deadline>, F>,
    }
}

impl<F> Scoped<F> {
    pub(crate) fn new(inner: TaskLocalFuture<Option<Deadline>, F>) -> Self {
        Self { inner }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

impl<F> fmt::Debug for Scoped<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}
