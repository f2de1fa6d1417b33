//! The transport under the standard stack, and how attempts are counted.
//!
//! A request that fails carries no response to read
//! [`palisade::attempts`] from, yet each row reports how many attempts
//! reached the upstream. So the command counts them at the bottom of the
//! stack: [`CountLayer`], outside the stack, gives each logical request an
//! [`AttemptCounter`] extension (taken from a task-local set by
//! [`counted`]); the retry layer copies extensions into every attempt; and
//! [`Transport`] adds one to the counter each time it sends.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use palisade::Body;
use palisade::core::TransportError;
use palisade_reqwest::{ReqwestService, ResponseBody};
use tower::{Layer, Service};

/// Attempts sent for one logical request.
#[derive(Debug, Clone, Default)]
pub(crate) struct AttemptCounter(Arc<AtomicU32>);

impl AttemptCounter {
    /// The attempts sent so far.
    pub(crate) fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

tokio::task_local! {
    static CURRENT: AttemptCounter;
}

/// Runs `fut` (which sends one logical request through a client built
/// with [`CountLayer`]) with `counter` counting its attempts.
pub(crate) async fn counted<F: Future>(counter: AttemptCounter, fut: F) -> F::Output {
    CURRENT.scope(counter, fut).await
}

/// Tags each request with the current task's [`AttemptCounter`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CountLayer;

impl<S> Layer<S> for CountLayer {
    type Service = CountAttempts<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountAttempts { inner }
    }
}

/// The service of [`CountLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CountAttempts<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for CountAttempts<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if let Ok(counter) = CURRENT.try_with(AttemptCounter::clone) {
            req.extensions_mut().insert(counter);
        }
        self.inner.call(req)
    }
}

/// The transport's response future.
pub(crate) type TransportFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<ResponseBody>, TransportError>> + Send>>;

/// Replaces how requests are sent: given reqwest and a request, it returns
/// the response future. The demo uses it to put a model of an overloaded
/// upstream's worker pool in front of the real server.
pub(crate) type Intercept =
    Arc<dyn Fn(ReqwestService, http::Request<Body>) -> TransportFuture + Send + Sync>;

/// reqwest (through palisade-reqwest), counting the attempts it sends.
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

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        if let Some(counter) = req.extensions_mut().remove::<AttemptCounter>() {
            counter.0.fetch_add(1, Ordering::Relaxed);
        }
        match &self.intercept {
            Some(intercept) => intercept(self.inner.clone(), req),
            None => Box::pin(self.inner.call(req)),
        }
    }
}
