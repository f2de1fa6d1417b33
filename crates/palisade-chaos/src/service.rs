use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use palisade_core::{BoxError, TransportError};
use tower_service::Service;

use crate::config::FaultKind;
use crate::error::InjectedFault;
use crate::future::ResponseFuture;
use crate::layer::{Draw, Shared};

/// A service that injects faults before (or after) calling its inner
/// service; built by [`ChaosLayer`](crate::ChaosLayer).
///
/// Clones share the layer's seeded generator and counter. The response body
/// type must implement [`Default`] so a status fault can answer with an
/// empty body; the inner service must be [`Clone`] so a latency fault can
/// hold a readied copy while it waits.
pub struct Chaos<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Chaos<S> {
    pub(crate) const fn from_parts(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// How many faults this service and every clone of its layer injected.
    pub fn injected(&self) -> u64 {
        self.shared.injected()
    }
}

impl<S: Clone> Clone for Chaos<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Chaos<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .field("injection_rate", &self.shared.rate)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Chaos<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone,
    S::Error: Into<BoxError>,
    ResB: Default,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request<ReqB>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        match self.shared.draw() {
            None => ResponseFuture::called(self.inner.call(req), false),
            Some(Draw::Latency(delay)) => {
                // The readied service goes with the request; `self` keeps a
                // fresh clone that will be polled ready before its own call.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::delayed(delay, ready, req)
            }
            Some(Draw::Other(FaultKind::Abort)) => {
                ResponseFuture::called(self.inner.call(req), true)
            }
            Some(Draw::Other(FaultKind::Error(kind))) => {
                ResponseFuture::ready(Err(TransportError::new(kind, InjectedFault::Error).into()))
            }
            Some(Draw::Other(FaultKind::Status(code))) => {
                let mut res = Response::new(ResB::default());
                // Validated by the builder.
                *res.status_mut() =
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                ResponseFuture::ready(Ok(res))
            }
            Some(Draw::Other(FaultKind::Latency { .. })) => {
                // `draw` always turns a latency fault into `Draw::Latency`.
                ResponseFuture::called(self.inner.call(req), false)
            }
        }
    }
}
