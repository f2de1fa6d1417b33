//! The response future of [`Retry`](crate::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http::{Request, Response};
use palisade_core::{Body, BoxError, Classify, Deadline, Key, KeyFn, NotReplayable};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::backoff::BackoffState;
use crate::error::DeadlineExceeded;
use crate::events;
use crate::policy::{Attempts, Decision, GiveUp, Shared, copy_with_body, emit_given_up};

pin_project! {
    /// The response future of [`Retry`](crate::Retry).
    ///
    /// It owns the request's template, a clone of the inner service for
    /// retries, and, once a retry is scheduled, the backoff sleep and the
    /// retried response's body being drained. Dropping it at any point drops
    /// all of them, so nothing is left behind. (A retry's budget is spent
    /// when the retry is scheduled, as Finagle spends it, so a retry
    /// cancelled mid-backoff still counts.)
    pub struct ResponseFuture<S, B, C, K>
    where
        S: Service<Request<Body>>,
    {
        #[pin]
        attempt: Option<S::Future>,
        state: State<S, C, K>,
        // Allocated on the first retry only, so that a first-time success
        // carries no timer and moves less.
        waiting: Option<Pin<Box<Waiting<B>>>>,
    }
}

pin_project! {
    struct Waiting<B> {
        #[pin]
        sleep: Sleep,
        #[pin]
        drain: Option<B>,
        drained: usize,
        sleeping: bool,
        // The next attempt's body, cloned when the retry was decided; its
        // request is copied from the template when it is sent.
        next: Option<Body>,
    }
}

struct State<S, C, K> {
    service: S,
    shared: Arc<Shared<C, K>>,
    /// What every attempt is copied from. Its body is empty when the body
    /// cannot be replayed (`unreplayable` says why).
    template: Request<Body>,
    unreplayable: Option<NotReplayable>,
    key: Option<Key>,
    attempts: u32,
    backoff: BackoffState,
    started: Option<Instant>,
    early: Option<BoxError>,
}

impl<S, B, C, K> fmt::Debug for ResponseFuture<S, B, C, K>
where
    S: Service<Request<Body>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.state.attempts)
            .field("in_attempt", &self.attempt.is_some())
            .field(
                "in_backoff",
                &self.waiting.as_ref().is_some_and(|w| w.sleeping),
            )
            .finish_non_exhaustive()
    }
}

impl<S, B, C, K> ResponseFuture<S, B, C, K>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    C: Classify,
    K: KeyFn<Body>,
{
    /// Starts the first attempt on `service`, which must be ready.
    #[inline]
    pub(crate) fn new(mut service: S, mut req: Request<Body>, shared: Arc<Shared<C, K>>) -> Self {
        if Deadline::of(&req).is_some_and(|d| d.is_expired()) {
            // Never start an attempt after the deadline, the first included.
            let key = shared.key(&req);
            events::retry_given_up(&key, 0, "deadline", None, None);
            return Self {
                attempt: None,
                state: State {
                    service,
                    shared,
                    template: req,
                    unreplayable: None,
                    key: Some(key),
                    attempts: 0,
                    backoff: BackoffState::new(),
                    started: None,
                    early: Some(DeadlineExceeded.into()),
                },
                waiting: None,
            };
        }
        shared.inject_key(&mut req);
        let key = shared.needs_key_per_call().then(|| shared.key(&req));
        shared.budget.deposit(key.as_ref());
        // Send a copy of the parts and keep the original in the template:
        // this is the per-call path, so build each request in place.
        let (parts, body) = req.into_parts();
        let (copy, unreplayable) = match body.try_clone() {
            Ok(copy) => (copy, None),
            Err(why) => (Body::empty(), Some(why)),
        };
        let started = shared.adaptive.is_some().then(Instant::now);
        let attempt = service.call(Request::from_parts(parts.clone(), body));
        Self {
            attempt: Some(attempt),
            state: State {
                service,
                shared,
                template: Request::from_parts(parts, copy),
                unreplayable,
                key,
                attempts: 0,
                backoff: BackoffState::new(),
                started,
                early: None,
            },
            waiting: None,
        }
    }
}

fn finish<B>(
    result: Result<Response<B>, BoxError>,
    attempts: u32,
) -> Result<Response<B>, BoxError> {
    result.map(|mut res| {
        if attempts > 1 {
            res.extensions_mut().insert(Attempts(attempts));
        }
        res
    })
}

/// Reads frames of a retried response's body until `cap` bytes were read,
/// the body ends, or it has nothing ready; drops it once done with.
fn poll_drain<B: http_body::Body>(
    mut drain: Pin<&mut Option<B>>,
    cx: &mut Context<'_>,
    drained: &mut usize,
    cap: usize,
) {
    while let Some(body) = drain.as_mut().as_pin_mut() {
        if *drained >= cap {
            drain.set(None);
            break;
        }
        match body.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *drained = drained.saturating_add(data.remaining());
                }
            }
            // The end, or an error: either way the body is done with.
            Poll::Ready(_) => drain.set(None),
            Poll::Pending => break,
        }
    }
}

impl<S, B, C, K> Future for ResponseFuture<S, B, C, K>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    C: Classify,
    K: KeyFn<Body>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let st = &mut *this.state;
            if let Some(fut) = this.attempt.as_mut().as_pin_mut() {
                let result = ready!(fut.poll(cx)).map_err(Into::into);
                this.attempt.set(None);
                st.attempts = st.attempts.saturating_add(1);
                let shared = &*st.shared;
                if let Some(t) = st.started.take() {
                    shared.record_latency(st.key.as_ref(), t.elapsed());
                }
                let outcome = result.as_ref();
                let decision = shared.decide(
                    &st.template,
                    outcome,
                    st.attempts,
                    &mut st.backoff,
                    st.key.as_ref(),
                );
                let (delay, reason, retry_after) = match decision {
                    Decision::Return => return Poll::Ready(finish(result, st.attempts)),
                    Decision::GiveUp(why) => {
                        let key = st.key.get_or_insert_with(|| shared.key(&st.template));
                        emit_given_up(key, st.attempts, why, outcome);
                        return Poll::Ready(finish(result, st.attempts));
                    }
                    Decision::Retry {
                        delay,
                        reason,
                        retry_after,
                    } => (delay, reason, retry_after),
                };
                let key = st.key.get_or_insert_with(|| shared.key(&st.template));
                let next = match st.unreplayable {
                    Some(why) => Err(why),
                    None => st.template.body().try_clone(),
                };
                let next = match next {
                    Ok(next) => next,
                    Err(why) => {
                        emit_given_up(key, st.attempts, GiveUp::BodyNotReplayable(why), outcome);
                        return Poll::Ready(finish(result, st.attempts));
                    }
                };
                if !shared.admit(key, st.attempts) {
                    return Poll::Ready(finish(result, st.attempts));
                }
                let status = outcome.ok().map(|r| r.status().as_u16());
                events::retry_scheduled(key, st.attempts, delay, reason, status, retry_after);
                let drain = match result {
                    Ok(res) if shared.drain_cap > 0 => Some(res.into_body()),
                    _ => None,
                };
                let wake_at = palisade_core::deadline::saturating_after(Instant::now(), delay);
                match this.waiting.as_mut() {
                    Some(w) => {
                        let mut w = w.as_mut().project();
                        w.sleep.as_mut().reset(wake_at);
                        w.drain.set(drain);
                        *w.drained = 0;
                        *w.sleeping = true;
                        *w.next = Some(next);
                    }
                    None => {
                        *this.waiting = Some(Box::pin(Waiting {
                            sleep: tokio::time::sleep_until(wake_at),
                            drain,
                            drained: 0,
                            sleeping: true,
                            next: Some(next),
                        }));
                    }
                }
                continue;
            }
            if let Some(w) = this.waiting.as_mut() {
                let mut w = w.as_mut().project();
                if *w.sleeping {
                    poll_drain(w.drain.as_mut(), cx, w.drained, st.shared.drain_cap);
                    ready!(w.sleep.as_mut().poll(cx));
                    *w.sleeping = false;
                    // Whatever is left unread is not worth waiting for.
                    w.drain.set(None);
                }
                if w.next.is_some() {
                    if let Err(e) = ready!(st.service.poll_ready(cx)) {
                        *w.next = None;
                        return Poll::Ready(Err(e.into()));
                    }
                    let Some(body) = w.next.take() else {
                        continue;
                    };
                    // Readiness may have waited (a queue, a rate limit).
                    if Deadline::of(&st.template).is_some_and(|d| d.is_expired()) {
                        let key = st.key.get_or_insert_with(|| st.shared.key(&st.template));
                        events::retry_given_up(key, st.attempts, "deadline", None, None);
                        return Poll::Ready(Err(DeadlineExceeded.into()));
                    }
                    if st.shared.adaptive.is_some() {
                        st.started = Some(Instant::now());
                    }
                    let req = copy_with_body(&st.template, body);
                    this.attempt.set(Some(st.service.call(req)));
                    continue;
                }
            }
            return Poll::Ready(Err(st
                .early
                .take()
                .unwrap_or_else(|| "retry future polled after completion".into())));
        }
    }
}
