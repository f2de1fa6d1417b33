//! [`InFlightRequest`]: one logical request's future, from admission to its
//! outcome.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::telemetry::AttemptCounter;

/// How a logical request ended.
pub(crate) enum Outcome<T> {
    /// The request's future finished, after this many attempts reached the
    /// transport.
    Done(T, u32),
    /// Shutdown's grace period ran out first.
    Cancelled,
}

pin_project! {
    /// A logical request in flight: its future, with the attempt counter in
    /// scope, raced (biased towards the request) against shutdown's
    /// cancellation, polled and dropped inside the request's span.
    ///
    /// It does what `tracing::Instrumented` over `tokio::select!` over async
    /// blocks would, written out so that the request's future (the largest
    /// part of a call's state) is stored once and not copied through three
    /// nested wrappers.
    pub(crate) struct InFlightRequest<F, C> {
        #[pin]
        run: Option<AttemptCounter<F>>,
        #[pin]
        cancelled: Option<C>,
        span: tracing::Span,
    }

    impl<F, C> PinnedDrop for InFlightRequest<F, C> {
        fn drop(this: Pin<&mut Self>) {
            // Whatever the futures release when dropped (permits, the
            // in-flight count) is released inside the span, as
            // `Instrumented` does.
            let mut this = this.project();
            let _enter = this.span.enter();
            this.run.set(None);
            this.cancelled.set(None);
        }
    }
}

impl<F: Future, C> InFlightRequest<F, C> {
    /// Runs `run` in `span` until it finishes or `cancelled` resolves.
    pub(crate) fn new(run: F, cancelled: C, span: tracing::Span) -> Self {
        Self {
            run: Some(crate::telemetry::count_attempts(run)),
            cancelled: Some(cancelled),
            span,
        }
    }
}

impl<F, C> Future for InFlightRequest<F, C>
where
    F: Future,
    C: Future<Output = ()>,
{
    type Output = Outcome<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _enter = this.span.enter();
        let Some(mut run) = this.run.as_mut().as_pin_mut() else {
            panic!("InFlightRequest polled after completion");
        };
        let outcome = if let Poll::Ready(out) = run.as_mut().poll(cx) {
            Outcome::Done(out, crate::telemetry::attempts_counted(run))
        } else if let Some(cancelled) = this.cancelled.as_mut().as_pin_mut()
            && cancelled.poll(cx).is_ready()
        {
            Outcome::Cancelled
        } else {
            return Poll::Pending;
        };
        // Release the request's state (and its place in flight) now, as the
        // end of the request, inside the span.
        this.run.set(None);
        this.cancelled.set(None);
        Poll::Ready(outcome)
    }
}
