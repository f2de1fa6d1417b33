use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use palisade_core::{BoxError, Deadline, Key};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::error::{BodyDeadlineExceeded, BodyIdleTimeout};
use crate::event::{self, Kind};
use crate::time;

pin_project! {
    /// A response body with an idle timeout and a deadline. See the
    /// [module docs](crate::body).
    ///
    /// One timer serves both bounds, set to whichever is due first, and it
    /// is created lazily, the first time the reader has to wait: a body that
    /// is always ready (already buffered) never touches the timer wheel.
    /// Dropping the body drops the inner body and deregisters the timer.
    pub struct TimeoutBody<B> {
        #[pin]
        inner: Option<B>,
        #[pin]
        sleep: Option<Sleep>,
        idle: Option<Duration>,
        // When the reader, now waiting, hits the idle timeout; `None` while
        // it is not waiting.
        idle_at: Option<Instant>,
        deadline_at: Option<Instant>,
        started: Option<Instant>,
        deadline_is_request: bool,
        key: Option<Key>,
    }
}

impl<B> TimeoutBody<B> {
    /// Wraps `inner` with an idle timeout, a total bound counted from now,
    /// and the request's `deadline`; each is optional. The deadline in force
    /// is the earlier of `now + total` and `deadline`.
    pub fn new(
        inner: B,
        idle: Option<Duration>,
        total: Option<Duration>,
        deadline: Option<Deadline>,
    ) -> Self {
        let started = (total.is_some() || deadline.is_some()).then(Instant::now);
        let own = total.zip(started).map(|(t, s)| time::after(s, t));
        let (deadline_at, deadline_is_request) = match (own, deadline) {
            (Some(own), Some(d)) if d.instant() <= own => (Some(d.instant()), true),
            (Some(own), _) => (Some(own), false),
            (None, Some(d)) => (Some(d.instant()), true),
            (None, None) => (None, false),
        };
        Self {
            inner: Some(inner),
            sleep: None,
            idle,
            idle_at: None,
            deadline_at,
            started,
            deadline_is_request,
            key: None,
        }
    }

    /// Sets the `key` field of this body's timeout events.
    pub fn with_key(mut self, key: Key) -> Self {
        self.key = Some(key);
        self
    }

    /// The inner body, or `None` once a timeout has dropped it.
    pub fn get_ref(&self) -> Option<&B> {
        self.inner.as_ref()
    }

    /// Consumes the wrapper, returning the inner body unless a timeout has
    /// dropped it.
    pub fn into_inner(self) -> Option<B> {
        self.inner
    }

    /// Whether a timeout has fired and dropped the inner body.
    pub fn is_timed_out(&self) -> bool {
        self.inner.is_none()
    }
}

impl<B> Body for TimeoutBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        // Data already here is delivered whatever the clocks say.
        if let Poll::Ready(frame) = inner.poll_frame(cx) {
            *this.idle_at = None;
            if frame.is_none() {
                this.sleep.set(None);
            }
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }

        // The reader waits: the idle clock starts now, unless already running.
        if let (Some(idle), None) = (*this.idle, *this.idle_at) {
            *this.idle_at = Some(time::after(Instant::now(), idle));
        }
        let Some(due) = earliest(*this.idle_at, *this.deadline_at) else {
            return Poll::Pending;
        };
        match this.sleep.as_mut().as_pin_mut() {
            Some(sleep) if sleep.deadline() == due => {}
            Some(sleep) => sleep.reset(due),
            None => this.sleep.set(Some(sleep_until(due))),
        }
        let Some(sleep) = this.sleep.as_mut().as_pin_mut() else {
            return Poll::Pending;
        };
        if sleep.poll(cx).is_pending() {
            return Poll::Pending;
        }

        let err: BoxError = match *this.deadline_at {
            Some(at) if at <= due => {
                let elapsed = this.started.map_or(Duration::ZERO, |s| {
                    Instant::now().saturating_duration_since(s)
                });
                event::timed_out(Kind::BodyDeadline, elapsed, this.key.as_ref());
                if *this.deadline_is_request {
                    BodyDeadlineExceeded::request(elapsed).into()
                } else {
                    BodyDeadlineExceeded::body(elapsed).into()
                }
            }
            _ => {
                let idle = this.idle.unwrap_or_default();
                event::timed_out(Kind::BodyIdle, idle, this.key.as_ref());
                BodyIdleTimeout::new(idle).into()
            }
        };
        // Drop the half-read body now: its connection must not be reused.
        this.inner.set(None);
        this.sleep.set(None);
        Poll::Ready(Some(Err(err)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl<B> fmt::Debug for TimeoutBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutBody")
            .field("idle", &self.idle)
            .field("deadline_at", &self.deadline_at)
            .field("timed_out", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}
