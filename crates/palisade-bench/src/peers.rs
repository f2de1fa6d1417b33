//! The peers palisade is measured against, set up once for every benchmark
//! that compares with them.
//!
//! tower-resilience 0.13's stack is built in palisade's order (retry
//! outermost, then circuit breaker, bulkhead and time limiter) and with
//! palisade's defaults as far as its settings reach:
//!
//! - [`retry`]: 4 attempts, exponential backoff from 2 s with jitter up to
//!   30 s, palisade's retried statuses ([`RETRY_STATUSES`]), errors retried
//!   except an open circuit, and a token-bucket budget of 100 retries
//!   refilled at 10 per second and by each success (tower-resilience has no
//!   Finagle-style 20 % ratio; palisade's reserve is 10 per second × 10 s);
//! - [`breaker`]: failure ratio 0.1 over the last 30 s (or the last 100
//!   calls, see [`Window`]), at least 100 calls, break 5 s, one probe,
//!   errors and 5xx count as failures ([`ServerErrors`]); one breaker, not
//!   one per host, and no growing break;
//! - [`bulkhead`]: 100 calls at once, waiting up to 5 s (palisade also
//!   bounds its queue to 1024, keys it per host and holds the slot until
//!   the body is read);
//! - [`time_limiter`]: 10 s per attempt.
//!
//! Its retry clones the request, so its stack takes a cloneable request
//! (`http::Request<Bytes>`) where palisade's takes
//! `http::Request<palisade::Body>`.

use std::future::Future;
use std::time::Duration;

use http::StatusCode;
use tower::{Service, ServiceBuilder};
use tower_resilience::bulkhead::{BulkheadLayer, BulkheadServiceError};
use tower_resilience::circuitbreaker::{
    CircuitBreakerError, CircuitBreakerLayer, FailureClassifier, SlidingWindowType,
};
use tower_resilience::retry::{ExponentialRandomBackoff, RetryBudgetBuilder, RetryLayer};
use tower_resilience::timelimiter::{FixedTimeout, TimeLimiterError, TimeLimiterLayer};

/// The statuses palisade's retry retries (`DEFAULT_RETRY_STATUSES`).
pub const RETRY_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// How tower-resilience was set up, in words, for the results files.
pub const RESILIENCE_NOTE: &str = "tower-resilience 0.13 (features circuitbreaker, bulkhead, \
     retry, timelimiter): retry (4 attempts, exponential backoff from 2 s with jitter up to \
     30 s, palisade's retried statuses, token-bucket budget of 100 refilled at 10/s) over a \
     circuit breaker (failure ratio 0.1 over the last 30 s, or the last 100 calls in the \
     count-window rows, at least 100 calls, 5 s break, one probe, errors and 5xx are \
     failures) over a bulkhead (100 at once, waiting up to 5 s) over a time limiter (10 s). \
     Its retry needs a cloneable request, so its stack takes http::Request<Bytes> where \
     palisade takes http::Request<palisade::Body>.";

/// A response whose status the peers' classifiers read: an
/// `http::Response` in memory, a `reqwest::Response` over loopback.
pub trait Status {
    /// The response's status.
    fn status_code(&self) -> StatusCode;
}

impl<B> Status for http::Response<B> {
    fn status_code(&self) -> StatusCode {
        self.status()
    }
}

impl Status for reqwest::Response {
    fn status_code(&self) -> StatusCode {
        self.status()
    }
}

/// palisade's breaker counts errors and 5xx responses as failures;
/// tower-resilience's default classifier counts errors only.
#[derive(Clone, Copy, Debug)]
pub struct ServerErrors;

impl<R: Status, E> FailureClassifier<R, E> for ServerErrors {
    fn classify(&self, result: &Result<R, E>) -> bool {
        match result {
            Ok(res) => res.status_code().is_server_error(),
            Err(_) => true,
        }
    }
}

/// The window tower-resilience's breaker reads.
#[derive(Clone, Copy, Debug)]
pub enum Window {
    /// palisade's (Polly's): the last 30 s. tower-resilience keeps one
    /// record per call in it and scans them all on every call, so a call
    /// costs more the more calls the last 30 s saw.
    Time,
    /// tower-resilience's default: the last 100 calls, counted.
    Count,
}

/// palisade's `AttemptTimeoutLayer::new(10 s)`.
pub fn time_limiter() -> TimeLimiterLayer<FixedTimeout> {
    TimeLimiterLayer::builder()
        .timeout_duration(Duration::from_secs(10))
        .build()
}

/// palisade's `ConcurrencyLimitLayer::default()`: 100 at once, waiting up
/// to 5 s for a slot.
pub fn bulkhead() -> BulkheadLayer {
    BulkheadLayer::builder()
        .max_concurrent_calls(100)
        .max_wait_duration(Duration::from_secs(5))
        .build()
        .expect("valid bulkhead settings")
}

/// palisade's `BreakerLayer::new()` (Polly's standard handler), reading
/// `window`.
pub fn breaker(window: Window) -> CircuitBreakerLayer<ServerErrors> {
    let builder = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.1)
        .minimum_number_of_calls(100)
        .wait_duration_in_open(Duration::from_secs(5))
        .permitted_calls_in_half_open(1);
    let builder = match window {
        Window::Time => builder
            .sliding_window_type(SlidingWindowType::TimeBased)
            .sliding_window_duration(Duration::from_secs(30)),
        Window::Count => builder
            .sliding_window_type(SlidingWindowType::CountBased)
            .sliding_window_size(100),
    };
    builder
        .failure_classifier_type(ServerErrors)
        .build()
        .expect("valid breaker settings")
}

/// palisade's `RetryLayer::default()`, above a circuit breaker whose inner
/// error is `E`.
pub fn retry<Req, Res: Status, E>() -> RetryLayer<Req, Res, CircuitBreakerError<E>> {
    let backoff = ExponentialRandomBackoff::new(Duration::from_secs(2), 0.5)
        .expect("valid randomization factor")
        .max_interval(Duration::from_secs(30));
    let budget = RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("valid budget");
    RetryLayer::builder()
        .max_attempts(4)
        .backoff(backoff)
        .retry_on(|e: &CircuitBreakerError<E>| !matches!(e, CircuitBreakerError::OpenCircuit))
        .retry_on_response(|res: &Res| RETRY_STATUSES.contains(&res.status_code().as_u16()))
        .budget(budget)
        .build()
}

/// The error tower-resilience's stack returns over an upstream failing
/// with `E`.
pub type ResilienceError<E> = CircuitBreakerError<BulkheadServiceError<TimeLimiterError<E>>>;

/// tower-resilience's whole stack over `upstream`, in palisade's order.
pub fn resilience_stack<S, Req, Res>(
    upstream: S,
    window: Window,
) -> impl Service<
    Req,
    Response = Res,
    Error = ResilienceError<S::Error>,
    Future = impl Future<Output = Result<Res, ResilienceError<S::Error>>> + Send + 'static,
> + Clone
where
    S: Service<Req, Response = Res> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    Req: Clone + Send + 'static,
    Res: Status + Send + 'static,
{
    ServiceBuilder::new()
        .layer(retry())
        .layer(breaker(window))
        .layer(bulkhead())
        .layer(time_limiter())
        .service(upstream)
}
