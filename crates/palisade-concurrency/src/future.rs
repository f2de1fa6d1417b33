//! The response future of [`ConcurrencyLimit`](crate::ConcurrencyLimit).
//!
//! A keyed layer learns its key only in `call`, so a request that cannot get
//! a permit at once waits here, inside the response future, not in
//! `poll_ready`. Dropping the future at any point leaks nothing: a queued
//! request leaves its queue (or passes on a permit it was just granted), a
//! running one returns its permit, and neither feeds the adaptive limit.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use http_body::Body;
use palisade_core::{BoxError, Class, Classify};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::error::{Overloaded, QueueTimeout};
use crate::events::{self, ShedReason};
use crate::gate::{Acquire, Gate};
use crate::limit::Sample;
use crate::permit::{Permit, Slot, Ticket};
use crate::shared::Partition;

pin_project! {
    /// The response future of [`ConcurrencyLimit`](crate::ConcurrencyLimit).
    pub struct ResponseFuture<S, R, C>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S::Future, S, R>,
        classify: C,
        body_aware: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, R> {
        // Queued at the key's gate, or (with `key` set) at the global one.
        Waiting {
            #[pin]
            sleep: Sleep,
            ticket: Option<Ticket>,
            key: Option<(Slot, usize)>,
            global: Option<Arc<Partition>>,
            max_queue: usize,
            since: Instant,
            request: Option<R>,
            service: Option<S>,
        },
        Calling {
            #[pin]
            future: F,
            permit: Option<Permit>,
            started: Option<Instant>,
            in_flight: usize,
        },
        Failed {
            error: Option<BoxError>,
        },
        Done,
    }
}

impl<S, R, C> fmt::Debug for ResponseFuture<S, R, C>
where
    S: Service<R>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Calling { .. } => "calling",
            State::Failed { .. } => "failed",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// What entering one gate came to.
pub(crate) enum Entry {
    Now(usize),
    Queued(Ticket),
    Shed(BoxError),
}

/// Takes a permit of `part`, queues for one, or sheds. `wait` is how long a
/// request may wait, computed only when it would have to.
pub(crate) fn enter(
    part: &Arc<Partition>,
    max_queue: usize,
    wait: impl FnOnce() -> Duration,
) -> Entry {
    if let Some(n) = part.gate.try_acquire() {
        part.stats.record_no_wait();
        return Entry::Now(n);
    }
    match part.gate.acquire(max_queue, !wait().is_zero()) {
        Acquire::Acquired { in_flight } => {
            part.stats.record_no_wait();
            Entry::Now(in_flight)
        }
        Acquire::Queued {
            waiter,
            queued,
            in_flight,
        } => {
            events::queued(&part.key, queued, in_flight);
            Entry::Queued(Ticket::new(part.clone(), waiter))
        }
        Acquire::QueueFull => {
            part.stats.record_queue_full();
            events::shed(&part.key, ShedReason::QueueFull, 0);
            Entry::Shed(Box::new(Overloaded::new()))
        }
        Acquire::WouldWait => {
            part.stats.record_queue_timeout();
            events::shed(&part.key, ShedReason::QueueTimeout, 0);
            Entry::Shed(Box::new(QueueTimeout::new()))
        }
    }
}

/// Whether an outcome is a sample for the adaptive limit, and if so whether
/// it is a drop.
///
/// - Overload signals (429, 503, timeout, reset) are drops.
/// - Successes and client errors are ordinary samples: the upstream answered
///   in its normal time.
/// - Local refusals ([`Class::Rejected`]) are not samples: the upstream never
///   saw the request (Netflix concurrency-limits PR 146).
/// - Other failures (a 500, a connect error, another transport error) are
///   not samples either: they are health signals for the circuit breaker,
///   and their latency (often a fast failure) says nothing about queueing.
fn sample_kind(class: &Class) -> Option<bool> {
    if class.is_overload_signal() {
        Some(true)
    } else if class.is_success() || matches!(class, Class::ClientError(_)) {
        Some(false)
    } else {
        None
    }
}

fn far_future(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}

impl<S, R, C> ResponseFuture<S, R, C>
where
    S: Service<R>,
{
    /// The request holds its permits and has been sent.
    pub(crate) fn calling(
        future: S::Future,
        permit: Permit,
        in_flight: usize,
        classify: C,
        body_aware: bool,
    ) -> Self {
        let started = permit.key.partition().gate.is_adaptive().then(Instant::now);
        Self {
            state: State::Calling {
                future,
                permit: Some(permit),
                started,
                in_flight,
            },
            classify,
            body_aware,
        }
    }

    /// The request failed before it was sent.
    pub(crate) fn failed(error: BoxError, classify: C, body_aware: bool) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            classify,
            body_aware,
        }
    }

    /// The request is queued, at the key's gate (`key` is `None`) or at the
    /// global gate (`key` holds the key's permit and its in-flight count).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn waiting(
        ticket: Ticket,
        key: Option<(Slot, usize)>,
        global: Option<Arc<Partition>>,
        max_queue: usize,
        wait: Duration,
        request: R,
        service: S,
        classify: C,
        body_aware: bool,
    ) -> Self {
        let since = Instant::now();
        Self {
            state: State::Waiting {
                sleep: tokio::time::sleep_until(far_future(since, wait)),
                ticket: Some(ticket),
                key,
                global,
                max_queue,
                since,
                request: Some(request),
                service: Some(service),
            },
            classify,
            body_aware,
        }
    }
}

enum Next<R, S> {
    Call {
        request: R,
        service: S,
        permit: Permit,
        in_flight: usize,
    },
    Fail(BoxError),
}

impl<S, R, C, B> Future for ResponseFuture<S, R, C>
where
    S: Service<R, Response = Response<B>>,
    S::Error: Into<BoxError>,
    C: Classify,
    B: Body,
{
    type Output = Result<Response<ResponseBody<B>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Calling {
                    future,
                    permit,
                    started,
                    in_flight,
                } => {
                    let res = ready!(future.poll(cx)).map_err(Into::into);
                    let permit = permit.take();
                    if let (Some(started), Some(p)) = (*started, &permit) {
                        let class = this.classify.classify(res.as_ref());
                        if let Some(dropped) = sample_kind(&class) {
                            p.key.partition().record_sample(&Sample {
                                started,
                                rtt: started.elapsed(),
                                in_flight: *in_flight,
                                dropped,
                            });
                        }
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(res.map(|res| {
                        let keep = *this.body_aware && !res.body().is_end_stream();
                        let permit = if keep { permit } else { None };
                        res.map(|b| ResponseBody::new(b, permit))
                    }));
                }
                StateProj::Waiting {
                    sleep,
                    ticket,
                    key,
                    global,
                    max_queue,
                    since,
                    request,
                    service,
                } => {
                    let t = ticket.as_ref().expect("waiting without a ticket");
                    match Gate::poll_granted(t.waiter(), cx) {
                        Poll::Ready(in_flight) => {
                            let t = ticket.take().expect("waiting without a ticket");
                            let part = t.partition().clone();
                            part.stats.record_wait(since.elapsed());
                            let slot = t.redeem();
                            let ready = match key.take() {
                                // The global permit: both are now held.
                                Some((key_slot, key_in_flight)) => {
                                    Some((key_slot, key_in_flight, Some(slot)))
                                }
                                // The key's permit; the global one may be next.
                                None => match global.as_ref() {
                                    None => Some((slot, in_flight, None)),
                                    Some(g) => match enter(g, *max_queue, || Duration::MAX) {
                                        Entry::Now(_) => {
                                            Some((slot, in_flight, Some(Slot::new(g.clone()))))
                                        }
                                        Entry::Queued(gt) => {
                                            *ticket = Some(gt);
                                            *key = Some((slot, in_flight));
                                            None
                                        }
                                        Entry::Shed(e) => {
                                            this.state.set(State::Done);
                                            return Poll::Ready(Err(e));
                                        }
                                    },
                                },
                            };
                            match ready {
                                // Queued at the global gate: poll it now so
                                // its waker is registered.
                                None => continue,
                                Some((key_slot, in_flight, global_slot)) => Next::Call {
                                    request: request.take().expect("request taken twice"),
                                    service: service.take().expect("service taken twice"),
                                    permit: Permit {
                                        key: key_slot,
                                        global: global_slot,
                                    },
                                    in_flight,
                                },
                            }
                        }
                        Poll::Pending => {
                            ready!(sleep.poll(cx));
                            let part = ticket.as_ref().map(|t| t.partition().clone());
                            if let Some(part) = part {
                                part.stats.record_queue_timeout();
                                let waited =
                                    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX);
                                events::shed(&part.key, ShedReason::QueueTimeout, waited);
                            }
                            Next::Fail(Box::new(QueueTimeout::new()))
                        }
                    }
                }
                StateProj::Failed { error } => {
                    let e = error.take().expect("future polled after completion");
                    this.state.set(State::Done);
                    return Poll::Ready(Err(e));
                }
                StateProj::Done => panic!("future polled after completion"),
            };
            match next {
                Next::Call {
                    request,
                    mut service,
                    permit,
                    in_flight,
                } => {
                    let future = service.call(request);
                    let started = permit.key.partition().gate.is_adaptive().then(Instant::now);
                    this.state.set(State::Calling {
                        future,
                        permit: Some(permit),
                        started,
                        in_flight,
                    });
                }
                Next::Fail(e) => {
                    // Dropping the state leaves the queue and frees any
                    // permit already held.
                    this.state.set(State::Done);
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}
