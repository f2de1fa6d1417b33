//! The [`DeadlineTimeout`](super::DeadlineTimeout) response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use palisade_core::{BoxError, Key};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::error::DeadlineExceeded;
use crate::event::{self, Kind};

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Bounded { #[pin] inner: F, #[pin] sleep: Sleep, start: Instant, key: Option<Key> },
        Unbounded { #[pin] inner: F },
        Expired { start: Instant, key: Option<Key> },
        Done,
    }
}

pin_project! {
    /// The response future of [`DeadlineTimeout`](super::DeadlineTimeout):
    /// the inner future raced against the deadline.
    ///
    /// Dropping it drops the inner future and deregisters the timer.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, at: Instant, start: Instant, key: Option<Key>) -> Self {
        Self {
            state: State::Bounded {
                inner,
                sleep: sleep_until(at),
                start,
                key,
            },
        }
    }

    pub(crate) fn unbounded(inner: F) -> Self {
        Self {
            state: State::Unbounded { inner },
        }
    }

    pub(crate) fn expired(start: Instant, key: Option<Key>) -> Self {
        Self {
            state: State::Expired { start, key },
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
        let (start, key) = match this.state.as_mut().project() {
            StateProj::Unbounded { inner } => return inner.poll(cx).map_err(Into::into),
            StateProj::Bounded {
                inner,
                sleep,
                start,
                key,
            } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                ready!(sleep.poll(cx));
                (*start, key.take())
            }
            StateProj::Expired { start, key } => (*start, key.take()),
            StateProj::Done => return Poll::Ready(Err(DeadlineExceeded.into())),
        };
        // Cancel whatever is in flight now: a retry, a backoff, a queue wait.
        this.state.set(State::Done);
        let elapsed = Instant::now().saturating_duration_since(start);
        event::timed_out(Kind::Deadline, elapsed, key.as_ref());
        Poll::Ready(Err(DeadlineExceeded.into()))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Bounded { .. } => "bounded",
            State::Unbounded { .. } => "unbounded",
            State::Expired { .. } | State::Done => "expired",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
