//! Spans: one per logical request (opened by the client) and one per attempt
//! (this layer, placed just inside retry so that every attempt gets its own).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

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
/// client conventions and Polly's resilience instruments.
#[cfg(feature = "metrics")]
pub(crate) fn record_request(
    method: &http::Method,
    key: &palisade_core::Key,
    outcome: &Result<reqwest::Response, crate::Error>,
    elapsed: std::time::Duration,
) {
    use palisade_core::events::metrics as names;
    let (status, kind) = match outcome {
        Ok(res) => (res.status().as_str().to_owned(), "ok"),
        Err(e) => (String::new(), e.kind().as_str()),
    };
    let labels = [
        ("http.request.method", method.as_str().to_owned()),
        ("server.address", key.to_string()),
        ("http.response.status_code", status),
        ("error.type", kind.to_owned()),
    ];
    metrics::histogram!(names::REQUEST_DURATION, &labels).record(elapsed.as_secs_f64());
    if let Ok(res) = outcome {
        let attempts = crate::attempts(res);
        metrics::histogram!(names::ATTEMPTS, "server.address" => key.to_string())
            .record(f64::from(attempts));
        if attempts > 1 {
            metrics::counter!(names::RETRIES, "server.address" => key.to_string())
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
    pub(crate) fn new(key: &palisade_core::Key) -> Self {
        let g = metrics::gauge!(
            palisade_core::events::metrics::ACTIVE_REQUESTS,
            "server.address" => key.to_string()
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
