//! HTTP-aware retries for tower clients: backoff with jitter, `Retry-After`,
//! retry budgets, idempotency safety and hedging.
//!
//! # Overview
//!
//! [`RetryLayer`] wraps a service of `http::Request<palisade_core::Body>`
//! (any response body) in [`Retry`], which sends a failed attempt again
//! when that is both useful and safe, as [`RetryPolicy`] decides:
//!
//! - **A connect failure is retried for any method**: the request never
//!   left.
//! - **For an idempotent request**, that is a `GET`, `HEAD`, `OPTIONS`,
//!   `TRACE`, `PUT` or `DELETE`, a request carrying an idempotency key
//!   (`Idempotency-Key` by default), or one marked [`Idempotent`]:
//!   statuses 408, 429, 500, 502, 503 and 504, attempt timeouts, connection
//!   resets and truncated responses are retried.
//! - **A `POST` or `PATCH` without a key is never sent again** once it may
//!   have reached the server. With
//!   [`inject_idempotency_key`](RetryPolicyBuilder::inject_idempotency_key)
//!   the layer gives it a key (a UUID v4) before its first attempt, the same
//!   on every attempt; a key the caller set is kept.
//! - **A local refusal is not retried**: an open circuit, a local rate
//!   limit or a shed request ([`Class::Rejected`](palisade_core::Class::Rejected))
//!   is the breaker's or the limiter's decision, returned as it is.
//! - **Custom rules** ([`retry_if`](RetryPolicyBuilder::retry_if)) see the
//!   request and the classified outcome ([`palisade_core::Class`]).
//! - **Backoff** ([`BackoffStrategy`]): decorrelated jitter (default),
//!   exponential with full jitter, constant or linear, between a base and a
//!   maximum delay, with a seedable random number generator.
//! - **`Retry-After`** on 429 and 503 (configurable) is honoured when longer
//!   than the backoff. When the server asks for longer than
//!   [`max_retry_after`](RetryPolicyBuilder::max_retry_after) (60 s) or than
//!   what is left of the request's [`Deadline`](palisade_core::Deadline),
//!   the layer does not wait: it returns that response at once, its
//!   `Retry-After` header intact.
//! - **The deadline**: no attempt starts after it and no backoff sleeps past
//!   it; when the next attempt could not start in time, the last outcome is
//!   returned.
//! - **A retry budget** ([`budget`]), Finagle's model: 20 % of requests plus
//!   10 retries per second, over 10 s. When it is spent the last outcome is
//!   returned and a `budget_exhausted` event says so.
//! - **Bodies**: a buffered [`Body`](palisade_core::Body) is replayed
//!   without copying; a streaming one up to its replay cap (64 KiB). Past
//!   the cap the request is sent once, and the `retry_given_up` event says
//!   why.
//! - **Connection reuse**: a retried response's body is read, up to
//!   [`drain_cap`](RetryPolicyBuilder::drain_cap) (16 KiB) and only during
//!   the backoff, then dropped, so its connection can go back to the pool.
//! - **An adaptive backoff floor** ([`AdaptiveFloor`], off by default)
//!   scales the base delay with the p95 latency of the key.
//! - **Attempts**: a response that took more than one attempt carries an
//!   [`Attempts`] extension; [`Attempts::of`] reads it.
//!
//! [`HedgeLayer`] sends a second copy of a slow idempotent request and
//! keeps the first response; see [`hedge`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::{Body, BoxError};
//! use palisade_retry::{Attempts, BackoffStrategy, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let retry = RetryLayer::builder()
//!     .max_attempts(3)
//!     .backoff(BackoffStrategy::ExponentialFullJitter)
//!     .base_delay(Duration::from_millis(100))
//!     .max_delay(Duration::from_secs(5))
//!     .inject_idempotency_key(true)
//!     .build_layer()?;
//!
//! let mut first = true;
//! let svc = ServiceBuilder::new().layer(retry).service_fn(move |_req: http::Request<Body>| {
//!     let status = if std::mem::take(&mut first) { 503 } else { 200 };
//!     async move { Ok::<_, BoxError>(http::Response::builder().status(status).body(String::new())?) }
//! });
//!
//! let req = http::Request::get("https://api.example.com/items").body(Body::empty())?;
//! let res = svc.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(Attempts::of(&res), 2);
//! # Ok(())
//! # }
//! ```
//!
//! # Order
//!
//! Retry sits outside everything that should happen once per attempt: the
//! circuit breaker, the rate limiter, the concurrency limit and the attempt
//! timeout, and inside the total deadline, whose [`Deadline`](palisade_core::Deadline)
//! it reads:
//!
//! ```text
//! telemetry → deadline → retry (→ hedge) → breaker → rate limit → concurrency → attempt timeout → transport
//! ```
//!
//! A backoff sleep holds no permit and no token. Put [`HedgeLayer`] just
//! inside [`RetryLayer`], and give it the retry policy's budget.
//!
//! # Clone
//!
//! The layer, its services and their clones share the policy's state behind
//! an `Arc`: the budget, the random number generator and the latency
//! windows. A [`RetryBudget`] handle can also be shared explicitly, with a
//! [`HedgeLayer`] or across clients.
//!
//! # Errors
//!
//! [`Retry`]'s error is the inner service's error, boxed and otherwise
//! untouched, so a transport's error (a `reqwest::Error`, a
//! [`TransportError`](palisade_core::TransportError)) reaches the caller
//! whole. The layer's only own failure is
//! [`DeadlineExceeded`](error::DeadlineExceeded), when the deadline passed
//! before an attempt could start. An exhausted budget returns the last
//! outcome, not an error. Configuration mistakes are [`ConfigError`]s from
//! the builders.
//!
//! # Features
//!
//! - `tracing` (default): a `tracing` event for every decision, with target
//!   [`palisade_core::events::TARGET`] and the names and fields of
//!   [`palisade_core::events`]: `retry_scheduled` (`key`, `attempt`,
//!   `delay_ms`, `reason`, `status`, `retry_after_ms`), `retry_given_up`
//!   (`key`, `attempt`, `reason`, `detail`, `status`), `budget_exhausted`
//!   (`key`, `attempt`, `hedge`) and `hedge_sent` (`key`, `delay_ms`).
//!   Without the feature they are compiled out.
//!
//! # Using tower's `Retry`
//!
//! [`RetryPolicy`] implements `tower::retry::Policy`, so a stack built on
//! `tower::retry::Retry` can adopt the same rules, budget and backoff; see
//! its docs for the two differences.

pub mod backoff;
pub mod budget;
mod config;
pub mod error;
mod events;
pub mod future;
pub mod hedge;
mod latency;
mod layer;
mod policy;
mod service;

pub use backoff::{Backoff, BackoffStrategy};
pub use budget::{Budget, BudgetConfig, KeyedBudget, RetryBudget};
pub use config::{
    AdaptiveFloor, DEFAULT_BASE_DELAY, DEFAULT_DRAIN_CAP, DEFAULT_IDEMPOTENCY_HEADER,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY, DEFAULT_MAX_RETRY_AFTER, DEFAULT_RETRY_AFTER_STATUSES,
    DEFAULT_RETRY_STATUSES, RetryPolicyBuilder,
};
pub use error::ConfigError;
pub use hedge::{Hedge, HedgeDelay, HedgeLayer, HedgeLayerBuilder};
pub use layer::RetryLayer;
pub use policy::{Attempts, Idempotent, RetryPolicy};
pub use service::Retry;
