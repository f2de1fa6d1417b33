//! The [`AttemptTimeout`](super::AttemptTimeout) response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_core::{BoxError, Key};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::error::{DeadlineExceeded, Elapsed};
use crate::event::{self, Kind};

/// Which bound the timer was set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    Attempt,
    Deadline,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] inner: F, #[pin] sleep: Sleep },
        Expired,
        Done,
    }
}

pin_project! {
    /// The response future of [`AttemptTimeout`](super::AttemptTimeout):
    /// the inner future raced against the effective timeout.
    ///
    /// Dropping it drops the inner future and deregisters the timer.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        bound: Bound,
        start: Instant,
        key: Option<Key>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(
        inner: F,
        at: Instant,
        bound: Bound,
        start: Instant,
        key: Option<Key>,
    ) -> Self {
        Self {
            state: State::Running {
                inner,
                sleep: sleep_until(at),
            },
            bound,
            start,
            key,
        }
    }

    pub(crate) fn expired(start: Instant, key: Option<Key>) -> Self {
        Self {
            state: State::Expired,
            bound: Bound::Deadline,
            start,
            key,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        match this.state.as_mut().project() {
            StateProj::Running { inner, sleep } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                ready!(sleep.poll(cx));
            }
            StateProj::Expired => {}
            StateProj::Done => return Poll::Ready(Err(Elapsed.into())),
        }
        // Drop the attempt now, so its connection is not pooled mid-response.
        this.state.set(State::Done);
        let elapsed = Instant::now().saturating_duration_since(*this.start);
        let err: BoxError = match this.bound {
            Bound::Attempt => {
                event::timed_out(Kind::Attempt, elapsed, this.key.as_ref());
                Elapsed.into()
            }
            Bound::Deadline => {
                event::timed_out(Kind::Deadline, elapsed, this.key.as_ref());
                DeadlineExceeded.into()
            }
        };
        Poll::Ready(Err(err))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("bound", &self.bound)
            .field("running", &matches!(self.state, State::Running { .. }))
            .finish_non_exhaustive()
    }
}
