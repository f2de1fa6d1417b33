//! The response future of [`Hedge`](super::Hedge).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use palisade_core::{Body, BoxError, Deadline, Key, KeyFn};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::HedgeShared;
use crate::events;
use crate::policy::{Idempotent, replay, split};

pin_project! {
    /// The response future of [`Hedge`](super::Hedge).
    ///
    /// It holds the first attempt, the timer, and once sent the hedge. When
    /// one attempt responds, the other is dropped at once; dropping this
    /// future drops both.
    pub struct ResponseFuture<S, K>
    where
        S: Service<Request<Body>>,
    {
        #[pin]
        primary: Option<S::Future>,
        #[pin]
        hedge: Option<S::Future>,
        #[pin]
        timer: Option<Sleep>,
        state: State<S, K>,
    }
}

struct State<S, K> {
    /// The service for the hedge; `None` when the request is not hedged.
    service: Option<S>,
    template: Option<Request<Body>>,
    shared: Arc<HedgeShared<K>>,
    key: Option<Key>,
    delay: Duration,
    primary_started: Option<Instant>,
    hedge_started: Option<Instant>,
    /// When to hedge, until the timer is armed: on the first poll that
    /// finds the first attempt pending, so an attempt that answers at once
    /// costs no timer.
    hedge_at: Option<Instant>,
    /// The timer fired and the budgets agreed: waiting for readiness.
    wants_hedge: bool,
}

impl<S, K> fmt::Debug for ResponseFuture<S, K>
where
    S: Service<Request<Body>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("primary", &self.primary.is_some())
            .field("hedge", &self.hedge.is_some())
            .field("delay", &self.state.delay)
            .finish_non_exhaustive()
    }
}

impl<S, B, K> ResponseFuture<S, K>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: Into<BoxError>,
    K: KeyFn<Body>,
{
    /// Sends the first attempt on `inner`, which must be ready, and arms the
    /// hedge timer when the request may be hedged.
    pub(crate) fn start(inner: &mut S, req: Request<Body>, shared: Arc<HedgeShared<K>>) -> Self {
        shared.extra_load.deposit();
        let key = shared.needs_key_per_call().then(|| shared.key_fn.key(&req));
        let primary_started = shared.latencies.is_some().then(Instant::now);
        let hedgeable =
            req.method().is_idempotent() || req.extensions().get::<Idempotent>().is_some();
        let plan = if hedgeable {
            shared
                .delay_for(key.as_ref())
                .filter(|delay| Deadline::of(&req).is_none_or(|d| *delay < d.remaining()))
        } else {
            None
        };
        let (primary, service, template, hedge_at, delay) = match plan {
            Some(delay) => match split(req) {
                (template, req, None) => {
                    let clone = inner.clone();
                    let mut svc = std::mem::replace(inner, clone);
                    let primary = svc.call(req);
                    let at = Some(palisade_core::deadline::saturating_after(
                        Instant::now(),
                        delay,
                    ));
                    (primary, Some(svc), Some(template), at, delay)
                }
                // The body cannot be sent twice: no hedge.
                (_, req, Some(_)) => (inner.call(req), None, None, None, Duration::ZERO),
            },
            None => (inner.call(req), None, None, None, Duration::ZERO),
        };
        Self {
            primary: Some(primary),
            hedge: None,
            timer: None,
            state: State {
                hedge_at,
                service,
                template,
                shared,
                key,
                delay,
                primary_started,
                hedge_started: None,
                wants_hedge: false,
            },
        }
    }
}

impl<S, K> State<S, K>
where
    K: KeyFn<Body>,
{
    fn record(&self, started: Option<Instant>) {
        if let (Some(l), Some(k), Some(t)) = (&self.shared.latencies, &self.key, started) {
            l.record(k, t.elapsed());
        }
    }
}

impl<S, B, K> Future for ResponseFuture<S, K>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    K: KeyFn<Body>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let st = &mut *this.state;
            if this.primary.is_none() && this.hedge.is_none() {
                return Poll::Ready(Err("hedge future polled after completion".into()));
            }
            if let Some(p) = this.primary.as_mut().as_pin_mut()
                && let Poll::Ready(result) = p.poll(cx)
            {
                this.primary.set(None);
                match result {
                    Ok(res) => {
                        st.record(st.primary_started);
                        // The loser is cancelled now, not when the caller
                        // drops this future.
                        this.hedge.set(None);
                        this.timer.set(None);
                        return Poll::Ready(Ok(res));
                    }
                    Err(e) if this.hedge.is_none() => {
                        this.timer.set(None);
                        st.hedge_at = None;
                        st.wants_hedge = false;
                        return Poll::Ready(Err(e.into()));
                    }
                    // The hedge may still answer.
                    Err(_) => {}
                }
            }
            if let Some(h) = this.hedge.as_mut().as_pin_mut()
                && let Poll::Ready(result) = h.poll(cx)
            {
                this.hedge.set(None);
                match result {
                    Ok(res) => {
                        st.record(st.hedge_started);
                        this.primary.set(None);
                        return Poll::Ready(Ok(res));
                    }
                    Err(e) if this.primary.is_none() => return Poll::Ready(Err(e.into())),
                    Err(_) => {}
                }
            }
            if let Some(at) = st.hedge_at.take() {
                this.timer.set(Some(tokio::time::sleep_until(at)));
            }
            if let Some(t) = this.timer.as_mut().as_pin_mut()
                && t.poll(cx).is_ready()
            {
                this.timer.set(None);
                let shared = &*st.shared;
                let key = match &st.template {
                    Some(t) => st.key.get_or_insert_with(|| shared.key_fn.key(t)),
                    None => st.key.get_or_insert_with(Key::global),
                };
                let expired = st
                    .template
                    .as_ref()
                    .and_then(Deadline::of)
                    .is_some_and(|d| d.is_expired());
                st.wants_hedge = !expired && shared.admit(key);
            }
            if st.wants_hedge
                && let Some(svc) = st.service.as_mut()
            {
                match svc.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        st.wants_hedge = false;
                        if let Some(req) = st.template.as_ref().and_then(|t| replay(t).ok()) {
                            if let Some(key) = &st.key {
                                events::hedge_sent(key, st.delay);
                            }
                            st.hedge_started = Some(Instant::now());
                            this.hedge.set(Some(svc.call(req)));
                            continue;
                        }
                    }
                    // The hedge is an optimisation: without a service for it,
                    // the first attempt carries on alone.
                    Poll::Ready(Err(_)) => st.wants_hedge = false,
                    Poll::Pending => {}
                }
            }
            return Poll::Pending;
        }
    }
}
