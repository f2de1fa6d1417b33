//! The standard stack: its configuration, its composition and its description.

use std::fmt;
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
use crate::telemetry::AttemptSpanLayer;
use crate::toggle::Toggle;

/// The type-erased stack a client sends through: one box for the whole stack,
/// not one per layer. Custom layers ([`ClientBuilder::layer`](crate::ClientBuilder::layer))
/// wrap this type.
pub type HttpService =
    BoxCloneSyncService<http::Request<Body>, http::Response<reqwest::Body>, BoxError>;

type TransportService =
    BoxCloneSyncService<http::Request<Body>, http::Response<reqwest::Body>, BoxError>;

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
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
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
            deadline: Some(Duration::from_secs(30)),
            attempt_timeout: Some(Duration::from_secs(10)),
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
            pool: PoolConfig::default(),
            deadline: None,
            attempt_timeout: None,
            retry: None,
            hedge: None,
            breaker: None,
            rate_limit: None,
            concurrency: None,
            body_timeout: None,
        }
    }

    /// The connection pool (default [`PoolConfig::default`]).
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// The total deadline per logical request (default 30 s); `None` for none.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The attempt timeout (default 10 s); `None` for none.
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = timeout;
        self
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
            return Err(Error::config(format!(
                "attempt_timeout ({a:?}) must not exceed the deadline ({d:?})"
            )));
        }
        if let (Some(b), Some(a)) = (&self.breaker, self.attempt_timeout)
            && let Some(window) = b.config().sampling_duration()
            && window < a * 2
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

pub(crate) fn build(
    cfg: &StackConfig,
    transport: Option<&TransportFactory>,
) -> Result<(HttpService, Description), Error> {
    cfg.validate()?;
    let transport: TransportService = match transport {
        Some(TransportFactory::Service(s)) => s.clone(),
        None => {
            let client = cfg
                .pool
                .client_builder()
                .map_err(|e| Error::config(e.to_string()))?
                // The client follows redirects itself, hop by hop, through the stack.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::config("could not build the HTTP client").with_source(e))?;
            BoxCloneSyncService::new(
                ReqwestService::from(client)
                    .map_err(Into::into)
                    .map_response(|res| res.map(reqwest::Body::wrap)),
            )
        }
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

    let mut desc = Description::default();
    let mut describe = |name: &str, on: bool, settings: String| {
        if on {
            desc.layers.push((name.to_owned(), settings));
        }
    };
    describe(
        "deadline",
        deadline.is_some(),
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
        attempt.is_some(),
        format!("{:?}", cfg.attempt_timeout.unwrap_or_default()),
    );
    describe(
        "body_timeout",
        cfg.body_timeout.is_some(),
        format!("{:?}", cfg.body_timeout),
    );
    describe("transport", true, format!("{:?}", cfg.pool));

    let svc = tower::ServiceBuilder::new()
        .layer(Toggle(deadline))
        .layer(Toggle(cfg.retry.clone()))
        .layer(Toggle(cfg.hedge.clone()))
        .layer(AttemptSpanLayer)
        .layer(Toggle(cfg.breaker.clone()))
        .layer(Toggle(cfg.rate_limit.clone()))
        .layer(Toggle(cfg.concurrency.clone()))
        .layer(Toggle(attempt))
        .layer(Toggle(cfg.body_timeout.clone()))
        .map_request(crate::telemetry::count_send::<Body>)
        .service(transport)
        .map_response(|res: http::Response<_>| res.map(reqwest::Body::wrap));
    Ok((BoxCloneSyncService::new(svc), desc))
}
