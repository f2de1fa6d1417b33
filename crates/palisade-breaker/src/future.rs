//! The breaker's response future.
//!
//! An admitted call's future holds a guard on its key's circuit. The guard
//! records the outcome when the response head (or an error) arrives; if the
//! future is dropped first (the caller gave up, a timeout fired, a `select!`
//! lost), the guard gives back the half-open probe slot the call held, so a
//! cancelled probe can never wedge the circuit half-open.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::Response;
use palisade_core::error::CircuitOpen;
use palisade_core::{BoxError, Classify};
use pin_project_lite::pin_project;

use crate::backend::{BackendFuture, SharedState};
use crate::state::{KeyState, Ticket};

/// Records an admitted call's outcome once, or releases its probe slot on drop.
pub(crate) struct CallGuard {
    state: Arc<KeyState>,
    ticket: Ticket,
    done: bool,
}

impl CallGuard {
    /// Taken before the inner service is called, so that even a panicking
    /// `call` gives the slot back as it unwinds.
    pub(crate) const fn new(state: Arc<KeyState>, ticket: Ticket) -> Self {
        Self {
            state,
            ticket,
            done: false,
        }
    }

    pub(crate) fn state(&self) -> &KeyState {
        &self.state
    }

    fn finish(&mut self, class: &palisade_core::Class) -> Option<SharedState> {
        self.done = true;
        self.state.record(&self.ticket, class)
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.release(&self.ticket);
        }
    }
}

pin_project! {
    /// The future [`Breaker`](crate::Breaker) returns.
    ///
    /// Fails at once with [`CircuitOpen`] when the call was refused; otherwise
    /// drives the inner future and records its outcome. Dropping it releases
    /// whatever it holds.
    pub struct ResponseFuture<F, C, T> {
        #[pin]
        kind: Kind<F, C, T>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C, T> {
        Rejected {
            error: Option<CircuitOpen>,
        },
        Called {
            #[pin]
            inner: F,
            guard: CallGuard,
            classifier: C,
            sync: Option<BackendFuture<SharedState>>,
        },
        // Only with a backend: the outcome is known, the shared state is
        // still being read or written.
        Finishing {
            output: Option<Result<T, BoxError>>,
            state: Arc<KeyState>,
            sync: Option<BackendFuture<SharedState>>,
            publish: Option<BackendFuture<()>>,
        },
    }
}

impl<F, C, T> ResponseFuture<F, C, T> {
    pub(crate) const fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }

    pub(crate) const fn called(
        inner: F,
        guard: CallGuard,
        classifier: C,
        sync: Option<BackendFuture<SharedState>>,
    ) -> Self {
        Self {
            kind: Kind::Called {
                inner,
                guard,
                classifier,
                sync,
            },
        }
    }
}

impl<F, C, T> fmt::Debug for ResponseFuture<F, C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Called { guard, .. } if guard.ticket.probe => "probe",
            Kind::Called { .. } => "called",
            Kind::Finishing { .. } => "finishing",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

fn poll_sync(
    sync: &mut Option<BackendFuture<SharedState>>,
    state: &KeyState,
    cx: &mut Context<'_>,
) {
    if let Some(fut) = sync
        && let Poll::Ready(res) = fut.as_mut().poll(cx)
    {
        match res {
            Ok(shared) => state.apply_remote(shared),
            Err(e) => state.backend_failed("fetch", &e),
        }
        *sync = None;
    }
}

impl<F, C, RB, E> Future for ResponseFuture<F, C, Response<RB>>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    C: Classify,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().kind.project() {
                KindProj::Rejected { error } => {
                    let error = error
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
                KindProj::Called {
                    inner,
                    guard,
                    classifier,
                    sync,
                } => {
                    poll_sync(sync, &guard.state, cx);
                    let output = ready!(inner.poll(cx)).map_err(Into::into);
                    let class = classifier.classify(output.as_ref());
                    let publish = guard
                        .finish(&class)
                        .and_then(|shared| guard.state.publish(shared));
                    if publish.is_none() && sync.is_none() {
                        return Poll::Ready(output);
                    }
                    let next = Kind::Finishing {
                        output: Some(output),
                        state: guard.state.clone(),
                        sync: sync.take(),
                        publish,
                    };
                    self.as_mut().project().kind.set(next);
                }
                KindProj::Finishing {
                    output,
                    state,
                    sync,
                    publish,
                } => {
                    poll_sync(sync, state, cx);
                    if let Some(fut) = publish
                        && let Poll::Ready(res) = fut.as_mut().poll(cx)
                    {
                        if let Err(e) = res {
                            state.backend_failed("publish", &e);
                        }
                        *publish = None;
                    }
                    if sync.is_some() || publish.is_some() {
                        return Poll::Pending;
                    }
                    let output = output
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(output);
                }
            }
        }
    }
}
