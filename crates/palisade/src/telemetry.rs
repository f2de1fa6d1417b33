//! Spans: one per logical request (opened by the client) and one per attempt
//! (this layer, placed just inside retry so that every attempt gets its own).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

tokio::task_local! {
    /// Attempts handed to the transport for the logical request this task is
    /// sending: set by the client around each request, counted by
    /// [`count_send`] just above the transport, so an attempt refused by a
    /// layer (an open circuit, a full queue) is not counted. A task-local
    /// rather than a request extension, so counting allocates nothing; no
    /// layer spawns the attempts it sends.
    static ATTEMPTS: std::cell::Cell<u32>;
}

/// A future run with its own attempt counter in scope.
pub(crate) type AttemptCounter<F> = tokio::task::futures::TaskLocalFuture<std::cell::Cell<u32>, F>;

/// Runs `fut` counting the attempts it sends; read the count with
/// [`attempts_counted`] once it is done.
pub(crate) fn count_attempts<F: Future>(fut: F) -> AttemptCounter<F> {
    ATTEMPTS.scope(std::cell::Cell::new(0), fut)
}

/// The attempts a finished [`AttemptCounter`] counted.
pub(crate) fn attempts_counted<F>(counter: Pin<&mut AttemptCounter<F>>) -> u32 {
    counter.take_value().map_or(0, std::cell::Cell::into_inner)
}

/// Counts one attempt handed to the transport. Outside a client's request
/// there is nothing to count.
pub(crate) fn count_send<B>(req: http::Request<B>) -> http::Request<B> {
    let _ = ATTEMPTS.try_with(|n| n.set(n.get().saturating_add(1)));
    req
}

/// Opens an `attempt` span around each call.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AttemptSpanLayer;

impl<S> Layer<S> for AttemptSpanLayer {
    type Service = AttemptSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttemptSpan { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct AttemptSpan<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for AttemptSpan<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Error: std::fmt::Display,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = tracing::debug_span!(
            target: "palisade",
            "attempt",
            method = %req.method(),
            key = %palisade_core::Key::origin(req.uri()),
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        AttemptFuture {
            fut,
            span,
            start: Instant::now(),
        }
    }
}

pin_project! {
    pub(crate) struct AttemptFuture<F> {
        #[pin]
        fut: F,
        span: tracing::Span,
        start: Instant,
    }
}

impl<F, RB, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: std::fmt::Display,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _enter = this.span.enter();
        let out = std::task::ready!(this.fut.poll(cx));
        this.span
            .record("duration_ms", this.start.elapsed().as_millis() as u64);
        match &out {
            Ok(res) => {
                this.span.record("status", res.status().as_u16());
            }
            Err(e) => {
                this.span.record("error", tracing::field::display(e));
            }
        }
        Poll::Ready(out)
    }
}

/// The metrics' registration metadata: what `metrics::histogram!` and friends
/// would give from this module.
#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// How many origins a client keeps metric keys for; requests to further
/// origins build their keys per request (same names and labels).
#[cfg(feature = "metrics")]
const MAX_ORIGINS: usize = 256;

/// How many `(method, status, outcome)` combinations an origin keeps a
/// duration key for; further ones are built per request.
#[cfg(feature = "metrics")]
const MAX_DURATION_KEYS: usize = 64;

/// A client's metric keys, built once per origin (bounded) and reused, so
/// that a request to a known origin builds no label: with no recorder
/// installed, recording allocates nothing. Only the keys are kept; every
/// handle is still asked of the recorder in force at the time (global or
/// thread-local), as the `metrics` macros do.
#[cfg(feature = "metrics")]
#[derive(Default)]
pub(crate) struct MetricKeys {
    origins: std::sync::RwLock<
        std::collections::HashMap<
            palisade_core::Key,
            std::sync::Arc<OriginMetrics>,
            std::hash::BuildHasherDefault<palisade_core::KeyHasher>,
        >,
    >,
}

#[cfg(feature = "metrics")]
impl MetricKeys {
    /// The keys of `origin`'s metrics.
    pub(crate) fn origin(&self, origin: &palisade_core::Key) -> std::sync::Arc<OriginMetrics> {
        let cached = self
            .origins
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(origin)
            .cloned();
        if let Some(keys) = cached {
            return keys;
        }
        let keys = std::sync::Arc::new(OriginMetrics::new(origin));
        let mut map = self
            .origins
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(existing) = map.get(origin) {
            return existing.clone();
        }
        if map.len() < MAX_ORIGINS {
            map.insert(origin.clone(), keys.clone());
        }
        keys
    }
}

/// The metric keys of one origin.
#[cfg(feature = "metrics")]
pub(crate) struct OriginMetrics {
    /// The `server.address` label.
    address: metrics::SharedString,
    active: metrics::Key,
    attempts: metrics::Key,
    retries: metrics::Key,
    /// Few per origin (a method or two, a few statuses): a list searched in
    /// order is quicker than hashing.
    durations: std::sync::RwLock<Vec<(DurationLabels, std::sync::Arc<metrics::Key>)>>,
}

/// What distinguishes one `http.client.request.duration` key from another
/// for the same origin: the method (standard ones only), the status code (0
/// for none) and the outcome.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy, PartialEq, Eq)]
struct DurationLabels {
    method: &'static str,
    status: u16,
    kind: &'static str,
}

#[cfg(feature = "metrics")]
impl OriginMetrics {
    fn new(origin: &palisade_core::Key) -> Self {
        use palisade_core::events::metrics as names;
        let address =
            metrics::SharedString::from_shared(std::sync::Arc::<str>::from(origin.to_string()));
        let by_address = |name: &'static str| {
            metrics::Key::from_parts(
                name,
                vec![metrics::Label::new("server.address", address.clone())],
            )
        };
        Self {
            active: by_address(names::ACTIVE_REQUESTS),
            attempts: by_address(names::ATTEMPTS),
            retries: by_address(names::RETRIES),
            address,
            durations: std::sync::RwLock::default(),
        }
    }

    /// Records a request's duration under its key, from the cache when it
    /// can be kept there.
    fn record_duration(
        &self,
        method: &http::Method,
        status: Option<http::StatusCode>,
        kind: &'static str,
        seconds: f64,
    ) {
        let record = |key: &metrics::Key| {
            metrics::with_recorder(|r| r.register_histogram(key, &METADATA)).record(seconds);
        };
        let Some(method_label) = standard_method(method) else {
            return record(&self.build_duration(method.as_str().to_owned().into(), status, kind));
        };
        let labels = DurationLabels {
            method: method_label,
            status: status.map_or(0, |s| s.as_u16()),
            kind,
        };
        let cached = self
            .durations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(l, _)| *l == labels)
            .map(|(_, key)| key.clone());
        let key = cached.unwrap_or_else(|| {
            let key = std::sync::Arc::new(self.build_duration(
                metrics::SharedString::const_str(method_label),
                status,
                kind,
            ));
            let mut map = self
                .durations
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, existing)) = map.iter().find(|(l, _)| *l == labels) {
                return existing.clone();
            }
            if map.len() < MAX_DURATION_KEYS {
                map.push((labels, key.clone()));
            }
            key
        });
        record(&key);
    }

    fn build_duration(
        &self,
        method: metrics::SharedString,
        status: Option<http::StatusCode>,
        kind: &'static str,
    ) -> metrics::Key {
        use metrics::{Label, SharedString};
        let status: SharedString = match status {
            Some(s) => s.as_u16().to_string().into(),
            None => SharedString::const_str(""),
        };
        metrics::Key::from_parts(
            palisade_core::events::metrics::REQUEST_DURATION,
            vec![
                Label::from_static_parts("error.type", kind),
                Label::new("http.request.method", method),
                Label::new("server.address", self.address.clone()),
                Label::new("http.response.status_code", status),
            ],
        )
    }
}

/// The label of a standard method, with no allocation.
#[cfg(feature = "metrics")]
fn standard_method(method: &http::Method) -> Option<&'static str> {
    Some(match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        _ => return None,
    })
}

/// Records one logical request's metrics, named after the OpenTelemetry HTTP
/// client conventions and Polly's resilience instruments, under its origin's
/// keys.
#[cfg(feature = "metrics")]
pub(crate) fn record_request(
    keys: &OriginMetrics,
    method: &http::Method,
    outcome: &Result<reqwest::Response, crate::Error>,
    elapsed: std::time::Duration,
) {
    let (status, kind) = match outcome {
        Ok(res) => (Some(res.status()), "ok"),
        Err(e) => (None, e.kind().as_str()),
    };
    keys.record_duration(method, status, kind, elapsed.as_secs_f64());
    if let Ok(res) = outcome {
        let attempts = crate::attempts(res);
        metrics::with_recorder(|r| r.register_histogram(&keys.attempts, &METADATA))
            .record(f64::from(attempts));
        if attempts > 1 {
            metrics::with_recorder(|r| r.register_counter(&keys.retries, &METADATA))
                .increment(u64::from(attempts - 1));
        }
    }
}

/// Counts a logical request in `http.client.active_requests` while it lives,
/// cancellation included.
#[cfg(feature = "metrics")]
pub(crate) struct Active(metrics::Gauge);

#[cfg(feature = "metrics")]
impl Active {
    pub(crate) fn new(keys: &OriginMetrics) -> Self {
        let g = metrics::with_recorder(|r| r.register_gauge(&keys.active, &METADATA));
        g.increment(1.0);
        Self(g)
    }
}

#[cfg(feature = "metrics")]
impl Drop for Active {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
