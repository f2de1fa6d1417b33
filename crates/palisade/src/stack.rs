//! The standard stack: its configuration, its composition and its description.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use palisade_core::{Body, BoxError};
use palisade_reqwest::{PoolConfig, ReqwestService};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use palisade_breaker::BreakerLayer;
use palisade_concurrency::ConcurrencyLimitLayer;
use palisade_ratelimit::RateLimitLayer;
use palisade_retry::{HedgeLayer, RetryLayer};
use palisade_timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer};

use crate::error::Error;
use crate::shutdown::Shutdown;
use crate::telemetry::AttemptSpanLayer;
use crate::toggle::Toggle;

/// The type-erased stack a client sends through: one box for the whole stack,
/// not one per layer. Custom layers ([`ClientBuilder::layer`](crate::ClientBuilder::layer))
/// wrap this type.
pub type HttpService =
    BoxCloneSyncService<http::Request<Body>, http::Response<reqwest::Body>, BoxError>;

type TransportService =
    BoxCloneSyncService<http::Request<Body>, http::Response<reqwest::Body>, BoxError>;

/// A custom layer added with [`ClientBuilder::layer`](crate::ClientBuilder::layer).
pub(crate) type CustomLayer = Arc<dyn Fn(HttpService) -> HttpService + Send + Sync>;

/// The future of one call through a [`Route`].
type RouteFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<reqwest::Body>, BoxError>> + Send + 'static>>;

/// A composed stack behind one pointer.
pub(crate) trait Stack: Send + Sync {
    /// Clones the stack, readies the clone and calls it with `req`. When the
    /// clone is ready at once (the usual case: the layers wait inside their
    /// futures), the call's future is the only allocation; otherwise the
    /// clone is kept in the returned future, which finishes readying it
    /// (its wake-up is already registered with `cx`) and then calls it.
    ///
    /// The response body, still of the stack's concrete type, is counted
    /// in flight by `shutdown` and boxed into a `reqwest::Body` once: the
    /// one box of the response path.
    fn ready_call(
        &self,
        cx: &mut Context<'_>,
        req: http::Request<Body>,
        shutdown: &Arc<Shutdown>,
    ) -> RouteFuture;
}

impl<S, B> Stack for S
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    fn ready_call(
        &self,
        cx: &mut Context<'_>,
        req: http::Request<Body>,
        shutdown: &Arc<Shutdown>,
    ) -> RouteFuture {
        use futures_util::TryFutureExt as _;
        let shutdown = shutdown.clone();
        let wrap =
            move |res: http::Response<B>| res.map(|b| reqwest::Body::wrap(shutdown.guard_body(b)));
        let mut svc = self.clone();
        match svc.poll_ready(cx) {
            Poll::Ready(Ok(())) => Box::pin(svc.call(req).map_ok(wrap)),
            Poll::Ready(Err(e)) => Box::pin(std::future::ready(Err(e))),
            Poll::Pending => Box::pin(svc.oneshot(req).map_ok(wrap)),
        }
    }
}

/// Where a client sends a request: a stack (and the custom layers around
/// it), and the deadline budget its logical requests start with.
#[derive(Clone)]
pub(crate) struct Route {
    path: Path,
    deadline: Option<Duration>,
}

#[derive(Clone)]
enum Path {
    /// The stack alone, with its concrete type kept behind the pointer: a
    /// call costs one allocation (its future) rather than two (a boxed clone
    /// of the service and its future).
    Stack(Arc<dyn Stack>),
    /// The stack inside custom layers, which take and give an [`HttpService`].
    Custom(HttpService),
}

impl Route {
    /// The stack's deadline budget per logical request, if it has one.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// Readies the route and sends `req` through it. The response body
    /// stays counted in flight by `shutdown` until it ends or is dropped, so
    /// shutdown waits for downloads too, then cancels them.
    pub(crate) async fn send(
        &self,
        req: http::Request<Body>,
        shutdown: &Arc<Shutdown>,
    ) -> Result<http::Response<reqwest::Body>, BoxError> {
        match &self.path {
            Path::Stack(stack) => {
                let mut req = Some(req);
                let call = std::future::poll_fn(|cx| match req.take() {
                    Some(req) => Poll::Ready(stack.ready_call(cx, req, shutdown)),
                    None => unreachable!("a completed poll_fn is not polled again"),
                })
                .await;
                call.await
            }
            // Custom layers take and give `reqwest::Body`: the guard is a
            // second box here.
            Path::Custom(svc) => {
                let res = svc.clone().oneshot(req).await?;
                Ok(res.map(|b| reqwest::Body::wrap(shutdown.guard_body(b))))
            }
        }
    }
}

/// Where the stack's requests finally go: reqwest built from a
/// [`PoolConfig`], or a service given for tests.
#[derive(Clone)]
pub(crate) enum TransportFactory {
    Service(TransportService),
}

impl TransportFactory {
    pub(crate) fn service<S, B>(service: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self::Service(BoxCloneSyncService::new(
            service
                .map_err(Into::into)
                .map_response(|res: http::Response<B>| res.map(reqwest::Body::wrap)),
        ))
    }
}

/// The configuration of one stack: the client's default stack, or a mount's.
///
/// Defaults follow Microsoft's standard resilience handler
/// (`Microsoft.Extensions.Http.Resilience`, `AddStandardResilienceHandler`,
/// itself built on Polly v8):
///
/// | layer | default | source |
/// |---|---|---|
/// | deadline | 30 s per logical request | standard handler, total request timeout |
/// | retry | 3 retries (4 attempts), exponential backoff with decorrelated jitter from 2 s, `Retry-After` honoured up to 60 s, Finagle budget | standard handler; Polly `DecorrelatedJitterV2`; Finagle |
/// | hedge | off | opt-in: it adds load |
/// | breaker | failure ratio 0.1 over 30 s, minimum throughput 100, break 5 s, per host | standard handler |
/// | rate limit | off | only the upstream knows its quota |
/// | concurrency | 100 in flight per host, queue 1024, wait up to 5 s | httpx and aiohttp pool limit (100); httpx pool timeout (5 s) |
/// | pool | 100 idle connections kept per host, to match the concurrency limit | limit ≤ pool (`docs/tuning.md`) |
/// | attempt timeout | 10 s | standard handler |
/// | body timeout | 30 s between chunks | a stalled body fails instead of hanging |
///
/// Layers hold their state (breakers, limiters, budgets) when they are
/// built, so every stack built from one `StackConfig`, and every clone of
/// it, shares that state. Give two mounts two separately built layers to
/// keep them apart, or the same layer to share a limit between them.
#[derive(Clone)]
pub struct StackConfig {
    pub(crate) pool: PoolConfig,
    /// Whether the pool was set by the user, or is the default that sizes
    /// itself to the concurrency limit.
    pub(crate) pool_set: bool,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    /// Whether the attempt timeout was set by the user, or is the default
    /// that yields to a shorter deadline.
    pub(crate) attempt_timeout_set: bool,
    pub(crate) retry: Option<RetryLayer>,
    pub(crate) hedge: Option<HedgeLayer>,
    pub(crate) breaker: Option<BreakerLayer>,
    pub(crate) rate_limit: Option<RateLimitLayer>,
    pub(crate) concurrency: Option<ConcurrencyLimitLayer>,
    pub(crate) body_timeout: Option<BodyTimeoutLayer>,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            // As many idle connections kept per host as the concurrency limit
            // lets run at once (limit ≤ pool, docs/tuning.md); httpx's 20
            // would make a busy host open ~1 new connection per 80 requests.
            pool: PoolConfig::default().max_idle_per_host(100),
            pool_set: false,
            deadline: Some(Duration::from_secs(30)),
            attempt_timeout: Some(Duration::from_secs(10)),
            attempt_timeout_set: false,
            retry: Some(RetryLayer::default()),
            hedge: None,
            breaker: Some(BreakerLayer::new()),
            rate_limit: None,
            concurrency: Some(ConcurrencyLimitLayer::default()),
            body_timeout: Some(BodyTimeoutLayer::default()),
        }
    }
}

impl fmt::Debug for StackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackConfig")
            .field("pool", &self.pool)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("retry", &self.retry.is_some())
            .field("hedge", &self.hedge.is_some())
            .field("breaker", &self.breaker.is_some())
            .field("rate_limit", &self.rate_limit.is_some())
            .field("concurrency", &self.concurrency.is_some())
            .field("body_timeout", &self.body_timeout.is_some())
            .finish()
    }
}

impl StackConfig {
    /// A stack with no resilience layer at all: only the transport. Add back
    /// what you want.
    pub fn bare() -> Self {
        Self {
            // No concurrency limit: keep every idle connection, or a busy
            // host churns them (the idle timeout still closes them).
            pool: PoolConfig::default().max_idle_per_host(usize::MAX),
            pool_set: false,
            deadline: None,
            attempt_timeout: None,
            attempt_timeout_set: false,
            retry: None,
            hedge: None,
            breaker: None,
            rate_limit: None,
            concurrency: None,
            body_timeout: None,
        }
    }

    /// The connection pool (default: [`PoolConfig::default`] keeping as many
    /// idle connections per host as the concurrency limit lets run at once,
    /// and all of them with no concurrency limit). A pool set here is used
    /// as it is; one that keeps fewer idle connections than the concurrency
    /// limit is reported with a warning event when the client is built.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self.pool_set = true;
        self
    }

    /// The total deadline per logical request (default 30 s); `None` for none.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The attempt timeout (default 10 s, or the deadline when that is
    /// shorter); `None` for none. Set explicitly, it must not exceed the
    /// deadline.
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = timeout;
        self.attempt_timeout_set = true;
        self
    }

    /// The settings in force once defaults have yielded to what was set: a
    /// default attempt timeout is clamped to a shorter deadline, and a
    /// default pool keeps as many idle connections per host as the
    /// concurrency limit lets run.
    fn resolved(&self) -> StackConfig {
        let mut cfg = self.clone();
        if !cfg.attempt_timeout_set
            && let (Some(a), Some(d)) = (cfg.attempt_timeout, cfg.deadline)
            && a > d
        {
            cfg.attempt_timeout = Some(d);
        }
        if !cfg.pool_set {
            let idle = cfg
                .concurrency
                .as_ref()
                .map_or(usize::MAX, ConcurrencyLimitLayer::max_in_flight_per_key);
            cfg.pool = cfg.pool.max_idle_per_host(idle);
        }
        cfg
    }

    /// The retry layer (default [`RetryLayer::default`]); `None` for no retries.
    pub fn retry(mut self, retry: Option<RetryLayer>) -> Self {
        self.retry = retry;
        self
    }

    /// The hedging layer (default off).
    pub fn hedge(mut self, hedge: Option<HedgeLayer>) -> Self {
        self.hedge = hedge;
        self
    }

    /// The circuit breaker (default [`BreakerLayer::new`]: Polly's standard
    /// handler); `None` for none.
    pub fn breaker(mut self, breaker: Option<BreakerLayer>) -> Self {
        self.breaker = breaker;
        self
    }

    /// The rate limiter (default none).
    pub fn rate_limit(mut self, rate_limit: Option<RateLimitLayer>) -> Self {
        self.rate_limit = rate_limit;
        self
    }

    /// The concurrency limit (default [`ConcurrencyLimitLayer::default`]:
    /// 100 per host); `None` for none.
    pub fn concurrency(mut self, concurrency: Option<ConcurrencyLimitLayer>) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The response body timeouts (default 30 s idle between chunks); `None`
    /// for none.
    pub fn body_timeout(mut self, body_timeout: Option<BodyTimeoutLayer>) -> Self {
        self.body_timeout = body_timeout;
        self
    }

    /// The breaker's layer, to read its state ([`BreakerLayer::handle`]).
    pub fn breaker_layer(&self) -> Option<&BreakerLayer> {
        self.breaker.as_ref()
    }

    /// The concurrency layer, to read its diagnostics.
    pub fn concurrency_layer(&self) -> Option<&ConcurrencyLimitLayer> {
        self.concurrency.as_ref()
    }

    fn validate(&self) -> Result<(), Error> {
        for (name, d) in [
            ("deadline", self.deadline),
            ("attempt_timeout", self.attempt_timeout),
        ] {
            if d == Some(Duration::ZERO) {
                return Err(Error::config(format!("{name} must be greater than zero")));
            }
        }
        if let (Some(a), Some(d)) = (self.attempt_timeout, self.deadline)
            && a > d
        {
            // Only two settings the user made can conflict: a default
            // attempt timeout was clamped by `resolved`.
            return Err(Error::config(format!(
                "attempt_timeout ({a:?}) must not exceed the deadline ({d:?})"
            )));
        }
        if let (Some(b), Some(a)) = (&self.breaker, self.attempt_timeout)
            && let Some(window) = b.config().sampling_duration()
            && window < a.saturating_mul(2)
        {
            return Err(Error::config(format!(
                "the breaker's sampling window ({window:?}) must be at least twice the \
                 attempt_timeout ({a:?}), or timeouts cannot be sampled in it"
            )));
        }
        Ok(())
    }
}

/// The composed stack and every layer's settings, outermost first (Polly's
/// pipeline descriptor is the model). Its `Display` is a readable list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    /// The default stack's layers: `(name, settings)`, outermost first.
    pub layers: Vec<(String, String)>,
    /// Each mount's prefix and its stack.
    pub mounts: Vec<(String, Description)>,
}

impl Description {
    /// Whether the stack has a layer named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.layers.iter().any(|(n, _)| n == name)
    }

    /// The settings of the layer named `name`.
    pub fn settings(&self, name: &str) -> Option<&str> {
        self.layers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
    }
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, settings)) in self.layers.iter().enumerate() {
            writeln!(f, "{}. {name}: {settings}", i + 1)?;
        }
        for (prefix, d) in &self.mounts {
            writeln!(f, "mount {prefix}:")?;
            for line in d.to_string().lines() {
                writeln!(f, "   {line}")?;
            }
        }
        Ok(())
    }
}

/// The transport of one stack.
enum Transport {
    /// A service given for tests.
    Given(TransportService),
    /// reqwest.
    Reqwest(reqwest::Client),
}

/// Builds the stack of `cfg` over `transport` (reqwest when `None`), inside
/// the `custom` layers.
pub(crate) fn build(
    cfg: &StackConfig,
    transport: Option<&TransportFactory>,
    custom: &[CustomLayer],
    user_agent: &http::HeaderValue,
) -> Result<(Route, Description), Error> {
    let cfg = &cfg.resolved();
    cfg.validate()?;
    if let Some(c) = &cfg.concurrency
        && cfg.pool.get_max_idle_per_host() < c.max_in_flight_per_key()
    {
        tracing::warn!(
            target: "palisade",
            max_idle_per_host = cfg.pool.get_max_idle_per_host(),
            concurrency = c.max_in_flight_per_key(),
            "the pool keeps fewer idle connections per host than the concurrency limit lets \
             run: under full load connections will be opened and closed on every burst"
        );
    }
    let transport = match transport {
        Some(TransportFactory::Service(s)) => Transport::Given(s.clone()),
        None => Transport::Reqwest(
            cfg.pool
                .client_builder()
                .map_err(|e| Error::config(e.to_string()))?
                // The client follows redirects itself, hop by hop, through the stack.
                .redirect(reqwest::redirect::Policy::none())
                // A default header: a request's own User-Agent wins.
                .user_agent(user_agent.clone())
                // So is the coding the client negotiates (and decodes, see
                // `limit.rs`): a request's own Accept-Encoding wins, and a
                // request with no headers costs the facade no header map.
                .default_headers(http::HeaderMap::from_iter([(
                    http::header::ACCEPT_ENCODING,
                    http::HeaderValue::from_static(crate::limit::ACCEPT_ENCODING),
                )]))
                // And decodes the final body itself, counting the wire bytes
                // under the decoder (`limit.rs`); off even if another crate
                // in the build turns reqwest's decoders on.
                .no_gzip()
                .no_brotli()
                .no_zstd()
                .no_deflate()
                .build()
                .map_err(|e| Error::config("could not build the HTTP client").with_source(e))?,
        ),
    };
    let deadline = match cfg.deadline {
        Some(d) => Some(
            DeadlineLayer::builder()
                .budget(d)
                .build()
                .map_err(|e| Error::config(e.to_string()))?,
        ),
        None => None,
    };
    let attempt = match cfg.attempt_timeout {
        Some(d) => Some(AttemptTimeoutLayer::new(d).map_err(|e| Error::config(e.to_string()))?),
        None => None,
    };
    let desc = describe(cfg, deadline.is_some(), attempt.is_some());
    let layers = Layers {
        cfg,
        deadline,
        attempt,
    };
    let route = match transport {
        Transport::Given(s) => layers.route(s, custom),
        // Kept unboxed under the layers: a boxed transport would cost an
        // allocation per attempt for its clone and one for its future.
        Transport::Reqwest(client) => layers.route(
            ReqwestService::from(client)
                .map_err(Into::<BoxError>::into)
                .map_response(|res| res.map(reqwest::Body::wrap)),
            custom,
        ),
    };
    Ok((route, desc))
}

fn describe(cfg: &StackConfig, deadline: bool, attempt: bool) -> Description {
    let mut desc = Description::default();
    let mut describe = |name: &str, on: bool, settings: String| {
        if on {
            desc.layers.push((name.to_owned(), settings));
        }
    };
    describe(
        "deadline",
        deadline,
        format!("{:?}", cfg.deadline.unwrap_or_default()),
    );
    describe(
        "retry",
        cfg.retry.is_some(),
        format!("{:?}", cfg.retry.as_ref().map(RetryLayer::policy)),
    );
    describe("hedge", cfg.hedge.is_some(), format!("{:?}", cfg.hedge));
    describe(
        "breaker",
        cfg.breaker.is_some(),
        format!("{:?}", cfg.breaker.as_ref().map(BreakerLayer::config)),
    );
    describe(
        "rate_limit",
        cfg.rate_limit.is_some(),
        format!("{:?}", cfg.rate_limit),
    );
    describe(
        "concurrency",
        cfg.concurrency.is_some(),
        format!("{:?}", cfg.concurrency),
    );
    describe(
        "attempt_timeout",
        attempt,
        format!("{:?}", cfg.attempt_timeout.unwrap_or_default()),
    );
    describe(
        "body_timeout",
        cfg.body_timeout.is_some(),
        format!("{:?}", cfg.body_timeout),
    );
    describe("transport", true, format!("{:?}", cfg.pool));
    desc
}

/// The layers of one stack, ready to be put over a transport.
struct Layers<'a> {
    cfg: &'a StackConfig,
    deadline: Option<DeadlineLayer>,
    attempt: Option<AttemptTimeoutLayer>,
}

impl Layers<'_> {
    /// Whether no layer is on (`StackConfig::bare()`).
    fn none(&self) -> bool {
        let cfg = self.cfg;
        self.deadline.is_none()
            && self.attempt.is_none()
            && cfg.retry.is_none()
            && cfg.hedge.is_none()
            && cfg.breaker.is_none()
            && cfg.rate_limit.is_none()
            && cfg.concurrency.is_none()
            && cfg.body_timeout.is_none()
    }

    /// The layers over `transport`, in the standard order, inside `custom`.
    fn route<T>(self, transport: T, custom: &[CustomLayer]) -> Route
    where
        T: tower::Service<
                http::Request<Body>,
                Response = http::Response<reqwest::Body>,
                Error = BoxError,
            > + Clone
            + Send
            + Sync
            + 'static,
        T::Future: Send + 'static,
    {
        let deadline = self.cfg.deadline;
        if self.none() {
            // A switched-off layer costs nothing at run time, but its
            // future's type is still in the stack's: with every layer off,
            // the stack is built without them, so each call's future is a
            // few words instead of several KiB copied on every move.
            let svc = tower::ServiceBuilder::new()
                .layer(AttemptSpanLayer)
                .map_request(crate::telemetry::count_send::<Body>)
                .service(transport);
            return finish(svc, custom, deadline);
        }
        let cfg = self.cfg;
        // Everything below the hedge, the same with or without it.
        let below = tower::ServiceBuilder::new()
            .layer(AttemptSpanLayer)
            .layer(Toggle(cfg.breaker.clone()))
            .layer(Toggle(cfg.rate_limit.clone()))
            .layer(Toggle(cfg.concurrency.clone()))
            .layer(Toggle(self.attempt))
            .layer(Toggle(cfg.body_timeout.clone()))
            .map_request(crate::telemetry::count_send::<Body>)
            .service(transport);
        let above = tower::ServiceBuilder::new()
            .layer(Toggle(self.deadline))
            .layer(Toggle(cfg.retry.clone()));
        match cfg.hedge.clone() {
            // A hedge future holds two copies of the stack below it, so its
            // type alone doubled every call's future: without hedging (the
            // default) the stack is built without it.
            None => finish(above.service(below), custom, deadline),
            Some(hedge) => finish(above.layer(hedge).service(below), custom, deadline),
        }
    }
}

/// The route of a composed stack: behind one pointer, or inside `custom`.
fn finish<S, B>(svc: S, custom: &[CustomLayer], deadline: Option<Duration>) -> Route
where
    S: tower::Service<http::Request<Body>, Response = http::Response<B>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    if custom.is_empty() {
        return Route {
            path: Path::Stack(Arc::new(svc)),
            deadline,
        };
    }
    let mut svc =
        HttpService::new(svc.map_response(|res: http::Response<B>| res.map(reqwest::Body::wrap)));
    for layer in custom.iter().rev() {
        svc = layer(svc);
    }
    Route {
        path: Path::Custom(svc),
        deadline,
    }
}
