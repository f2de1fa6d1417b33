//! A layer that can be switched off without changing the stack's type or
//! boxing anything: `Toggle<L>` is `Option<L>` as a layer, whose response body
//! is `Either` of the layer's body and the inner body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::Either;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

/// `Some(layer)` applies the layer; `None` passes requests straight through.
#[derive(Debug, Clone)]
pub(crate) struct Toggle<L>(pub(crate) Option<L>);

impl<L, S> Layer<S> for Toggle<L>
where
    L: Layer<S>,
{
    type Service = Toggled<L::Service, S>;

    fn layer(&self, inner: S) -> Self::Service {
        match &self.0 {
            Some(l) => Toggled::On(l.layer(inner)),
            None => Toggled::Off(inner),
        }
    }
}

/// The service of a [`Toggle`].
#[derive(Debug, Clone)]
pub(crate) enum Toggled<A, B> {
    On(A),
    Off(B),
}

impl<A, B, Req, BodyA, BodyB, E> Service<Req> for Toggled<A, B>
where
    A: Service<Req, Response = http::Response<BodyA>, Error = E>,
    B: Service<Req, Response = http::Response<BodyB>, Error = E>,
{
    type Response = http::Response<Either<BodyA, BodyB>>;
    type Error = E;
    type Future = ToggledFuture<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        match self {
            Self::On(a) => a.poll_ready(cx),
            Self::Off(b) => b.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match self {
            Self::On(a) => ToggledFuture::On { fut: a.call(req) },
            Self::Off(b) => ToggledFuture::Off { fut: b.call(req) },
        }
    }
}

pin_project! {
    #[project = ToggledProj]
    pub(crate) enum ToggledFuture<FA, FB> {
        On { #[pin] fut: FA },
        Off { #[pin] fut: FB },
    }
}

impl<FA, FB, BodyA, BodyB, E> Future for ToggledFuture<FA, FB>
where
    FA: Future<Output = Result<http::Response<BodyA>, E>>,
    FB: Future<Output = Result<http::Response<BodyB>, E>>,
{
    type Output = Result<http::Response<Either<BodyA, BodyB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ToggledProj::On { fut } => fut.poll(cx).map_ok(|r| r.map(Either::Left)),
            ToggledProj::Off { fut } => fut.poll(cx).map_ok(|r| r.map(Either::Right)),
        }
    }
}
