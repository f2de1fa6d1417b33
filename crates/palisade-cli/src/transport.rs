//! The transport under the demo's stack: reqwest, with an optional hook
//! that decides how requests are sent (the overload scenario puts a model of
//! an upstream's worker pool in front of the real server).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use palisade::Body;
use palisade::core::TransportError;
use palisade_reqwest::{ReqwestService, ResponseBody};
use tower::Service;

/// The transport's response future.
pub(crate) type TransportFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, TransportError>> + Send>>;

/// Replaces how requests are sent: given reqwest and a request, it returns
/// the response future. The demo uses it to put a model of an overloaded
/// upstream's worker pool in front of the real server.
pub(crate) type Intercept =
    Arc<dyn Fn(ReqwestService, http::Request<Body>) -> TransportFuture + Send + Sync>;

/// reqwest (through palisade-reqwest), optionally intercepted.
#[derive(Clone)]
pub(crate) struct Transport {
    inner: ReqwestService,
    intercept: Option<Intercept>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("inner", &self.inner)
            .field("intercept", &self.intercept.is_some())
            .finish()
    }
}

impl Transport {
    /// A transport over reqwest that follows no redirect itself: the client
    /// follows them hop by hop, each through the whole stack.
    pub(crate) fn new(pool: &palisade::PoolConfig) -> anyhow::Result<Self> {
        let client = pool
            .client_builder()?
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            inner: ReqwestService::new(client),
            intercept: None,
        })
    }

    /// Sends the requests `intercept` takes its own way.
    pub(crate) fn with_intercept(mut self, intercept: Intercept) -> Self {
        self.intercept = Some(intercept);
        self
    }
}

impl Service<http::Request<Body>> for Transport {
    type Response = http::Response<ResponseBody>;
    type Error = TransportError;
    type Future = TransportFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        match &self.intercept {
            Some(intercept) => intercept(self.inner.clone(), req),
            None => Box::pin(self.inner.call(req)),
        }
    }
}
