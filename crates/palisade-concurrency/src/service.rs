//! The [`ConcurrencyLimit`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Body;
use palisade_core::{BoxError, ByAuthority, Classify, Deadline, HttpClassifier, KeyFn};
use tower_service::Service;

use crate::body::ResponseBody;
use crate::diagnostics::Diagnostics;
use crate::future::{Entry, ResponseFuture, enter};
use crate::permit::{Permit, Slot};
use crate::shared::Shared;

/// Limits how many requests are in flight per key (and, optionally, in
/// total), with a bounded FIFO queue, a bounded wait and body-aware permits.
///
/// Built by [`ConcurrencyLimitLayer`](crate::ConcurrencyLimitLayer). See the
/// [crate docs](crate) for the whole behaviour.
///
/// **Clones share state.** Every clone of this service, and every service the
/// same layer produced, shares the same per-key limits, queues and
/// statistics, behind an `Arc`. Cloning never multiplies a limit.
pub struct ConcurrencyLimit<S, K = ByAuthority, C = HttpClassifier> {
    inner: S,
    shared: Arc<Shared>,
    key_fn: K,
    classify: C,
}

impl<S, K, C> ConcurrencyLimit<S, K, C> {
    pub(crate) const fn new(inner: S, shared: Arc<Shared>, key_fn: K, classify: C) -> Self {
        Self {
            inner,
            shared,
            key_fn,
            classify,
        }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// A read handle on the shared state: limits, in flight, queues, waits.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics::new(self.shared.clone())
    }
}

impl<S: Clone, K: Clone, C: Clone> Clone for ConcurrencyLimit<S, K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            key_fn: self.key_fn.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, K, C> fmt::Debug for ConcurrencyLimit<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl<S, K, C, ReqBody, ResBody> Service<Request<ReqBody>> for ConcurrencyLimit<S, K, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    K: KeyFn<ReqBody>,
    C: Classify,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<ReqBody>, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's alone: the key, and so the permit
        // to wait for, is known only in `call`.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let cfg = &shared.config;
        let classify = self.classify.clone();
        let body_aware = cfg.body_aware;
        let key = self.key_fn.key(&req);
        let part = shared.partition(&key);
        drop(key);
        let max_wait = cfg.max_wait;
        let wait = |req: &Request<ReqBody>| Deadline::clamp_for(req, max_wait);

        let (ticket, key_held) = match enter(&part, cfg.max_queue, || wait(&req)) {
            Entry::Shed(e) => return ResponseFuture::failed(e, classify, body_aware),
            Entry::Queued(ticket) => (ticket, None),
            Entry::Now(in_flight) => {
                let key_slot = Slot::new(part);
                match &shared.global {
                    None => {
                        let permit = Permit {
                            key: key_slot,
                            global: None,
                        };
                        // Uncontended: the inner service is ready, call it
                        // now without cloning it.
                        let fut = self.inner.call(req);
                        return ResponseFuture::calling(
                            fut, permit, in_flight, classify, body_aware,
                        );
                    }
                    Some(g) => match enter(g, cfg.max_queue, || wait(&req)) {
                        // Dropping `key_slot` gives the key's permit back.
                        Entry::Shed(e) => return ResponseFuture::failed(e, classify, body_aware),
                        Entry::Queued(ticket) => (ticket, Some((key_slot, in_flight))),
                        Entry::Now(_) => {
                            let permit = Permit {
                                key: key_slot,
                                global: Some(Slot::new(g.clone())),
                            };
                            let fut = self.inner.call(req);
                            return ResponseFuture::calling(
                                fut, permit, in_flight, classify, body_aware,
                            );
                        }
                    },
                }
            }
        };

        // The request must wait: keep the service that was made ready for it
        // and leave a fresh clone in its place.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let wait = wait(&req);
        ResponseFuture::waiting(
            ticket,
            key_held,
            shared.global.clone(),
            cfg.max_queue,
            wait,
            req,
            service,
            classify,
            body_aware,
        )
    }
}
