//! The standard stack: its configuration, its composition and its description.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use palisade_core::{Body, BoxError};
use palisade_reqwest::{PoolConfig, ReqwestService};
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use crate::error::Error;

/// The type-erased stack a client sends through: one box for the whole stack,
/// not one per layer.
pub(crate) type HttpService =
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
/// (`Microsoft.Extensions.Http.Resilience`, `AddStandardResilienceHandler`):
/// a 30 s total deadline, a 10 s attempt timeout, 3 retries with exponential
/// backoff and jitter honouring `Retry-After`, a breaker at a 10 % failure
/// ratio over 30 s with a minimum throughput of 100 and a 5 s break, a
/// concurrency limit per host, and no rate limit unless one is configured.
#[derive(Clone)]
pub struct StackConfig {
    pub(crate) pool: PoolConfig,
    pub(crate) deadline: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) idempotency_header: Option<String>,
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            pool: PoolConfig::default(),
            deadline: Some(Duration::from_secs(30)),
            attempt_timeout: Some(Duration::from_secs(10)),
            idempotency_header: None,
        }
    }
}

impl fmt::Debug for StackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackConfig")
            .field("pool", &self.pool)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

impl StackConfig {
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
    let mut desc = Description::default();
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
    desc.layers
        .push(("transport".into(), format!("{:?}", cfg.pool)));
    Ok((transport, desc))
}
