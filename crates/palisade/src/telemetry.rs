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

/// Runs `fut` counting the attempts it sends; returns its output and the count.
pub(crate) async fn count_attempts<F: Future>(fut: F) -> (F::Output, u32) {
    ATTEMPTS
        .scope(std::cell::Cell::new(0), async {
            let out = fut.await;
            (out, ATTEMPTS.try_with(std::cell::Cell::get).unwrap_or(0))
        })
        .await
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

/// Records one logical request's metrics, named after the OpenTelemetry HTTP
/// client conventions and Polly's resilience instruments. The origin's label
/// is built once per request and shared by every metric.
#[cfg(feature = "metrics")]
pub(crate) fn record_request(
    method: &http::Method,
    address: &metrics::SharedString,
    outcome: &Result<reqwest::Response, crate::Error>,
    elapsed: std::time::Duration,
) {
    use metrics::{Label, SharedString};
    use palisade_core::events::metrics as names;
    let (status, kind): (SharedString, &'static str) = match outcome {
        Ok(res) => (res.status().as_u16().to_string().into(), "ok"),
        Err(e) => (SharedString::const_str(""), e.kind().as_str()),
    };
    let method: SharedString = match *method {
        http::Method::GET => SharedString::const_str("GET"),
        http::Method::POST => SharedString::const_str("POST"),
        http::Method::PUT => SharedString::const_str("PUT"),
        http::Method::DELETE => SharedString::const_str("DELETE"),
        http::Method::PATCH => SharedString::const_str("PATCH"),
        http::Method::HEAD => SharedString::const_str("HEAD"),
        ref other => other.as_str().to_owned().into(),
    };
    let labels = vec![
        Label::from_static_parts("error.type", kind),
        Label::new("http.request.method", method),
        Label::new("server.address", address.clone()),
        Label::new("http.response.status_code", status),
    ];
    metrics::histogram!(names::REQUEST_DURATION, labels).record(elapsed.as_secs_f64());
    if let Ok(res) = outcome {
        let attempts = crate::attempts(res);
        metrics::histogram!(names::ATTEMPTS, "server.address" => address.clone())
            .record(f64::from(attempts));
        if attempts > 1 {
            metrics::counter!(names::RETRIES, "server.address" => address.clone())
                .increment(u64::from(attempts - 1));
        }
    }
}

/// The `server.address` label of a request, built once.
#[cfg(feature = "metrics")]
pub(crate) fn address_label(key: &palisade_core::Key) -> metrics::SharedString {
    metrics::SharedString::from_shared(std::sync::Arc::<str>::from(key.to_string()))
}

/// Counts a logical request in `http.client.active_requests` while it lives,
/// cancellation included.
#[cfg(feature = "metrics")]
pub(crate) struct Active(metrics::Gauge);

#[cfg(feature = "metrics")]
impl Active {
    pub(crate) fn new(address: &metrics::SharedString) -> Self {
        let g = metrics::gauge!(
            palisade_core::events::metrics::ACTIVE_REQUESTS,
            "server.address" => address.clone()
        );
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
