//! Timeouts for palisade: an attempt timeout, one deadline for the whole
//! logical request, and response body idle and deadline timeouts.
//!
//! # Overview
//!
//! "Requests hang indefinitely" is the failure users of HTTP clients report
//! most. This crate bounds every stage of a request, each with its own layer
//! and its own error:
//!
//! - [`DeadlineLayer`] sets the request's [`Deadline`] from a total budget
//!   (retries, backoffs and queue waits included) and fails with
//!   [`DeadlineExceeded`](error::DeadlineExceeded) when it passes. Every
//!   waiting layer inside clamps its wait to what is left. See [`deadline`].
//! - [`AttemptTimeoutLayer`] bounds one attempt, from sending it to its
//!   response head, to the smaller of its own timeout and what is left of
//!   the deadline, failing with [`Elapsed`](error::Elapsed). See [`attempt`].
//! - [`BodyTimeoutLayer`] wraps the response body in a [`TimeoutBody`] with
//!   an idle timeout per frame and a deadline for the whole body, the
//!   request's deadline included. See [`body`], which also explains why
//!   tower-http's body timeouts are not reused.
//! - [`InheritDeadlineLayer`] is for servers: it reads the caller's deadline
//!   from a header, and outbound calls made while handling that request
//!   inherit it. See [`inherit`], which shows the axum set-up.
//!
//! The remaining budget can be sent downstream in a header whose name and
//! format ([`DeadlineHeader`], [`HeaderFormat`]) are configurable.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use palisade_timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineHeader, DeadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let transport = service_fn(|req: http::Request<()>| async move {
//!     // The upstream is told how long this attempt may take.
//!     assert!(req.headers().contains_key("x-request-timeout-ms"));
//!     Ok::<_, std::io::Error>(http::Response::new(Full::new(Bytes::from_static(b"hello"))))
//! });
//!
//! let client = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(30))?)
//!     // retry, breaker, rate limit and concurrency layers go here
//!     .layer(BodyTimeoutLayer::builder().idle(Duration::from_secs(10)).build()?)
//!     .layer(
//!         AttemptTimeoutLayer::builder()
//!             .timeout(Duration::from_secs(10))
//!             .send_header(DeadlineHeader::default())
//!             .build()?,
//!     )
//!     .service(transport);
//!
//! let res = client.oneshot(http::Request::new(())).await?;
//! let body = res.into_body().collect().await?.to_bytes();
//! assert_eq!(body, "hello");
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! In palisade's standard stack, outermost first:
//!
//! 1. telemetry;
//! 2. **[`DeadlineLayer`]**: outside retry, so the budget covers every
//!    attempt and every wait;
//! 3. retry, circuit breaker, rate limiter, concurrency limit: each clamps
//!    its waits to the deadline;
//! 4. **[`BodyTimeoutLayer`]**: inside the concurrency limit, so a body that
//!    times out ends and releases its permit;
//! 5. **[`AttemptTimeoutLayer`]**: next to the transport, so it counts wire
//!    time only, not time spent queueing for a permit or a rate token;
//! 6. the transport.
//!
//! [`InheritDeadlineLayer`] belongs on the server's router, not in the
//! client stack.
//!
//! # Clone
//!
//! These layers keep no mutable state: a layer and every service built from
//! it hold an immutable copy of the configuration, so cloning a service (as
//! `reqwest::Client`-style transports invite) changes nothing about its
//! limits. The deadline itself travels with the request, in its extensions.
//!
//! # Errors
//!
//! Each timeout has its own error, boxed into [`BoxError`](error::BoxError):
//! [`Elapsed`](error::Elapsed) (attempt),
//! [`DeadlineExceeded`](error::DeadlineExceeded) (the request's deadline,
//! before the head), [`BodyIdleTimeout`](error::BodyIdleTimeout) and
//! [`BodyDeadlineExceeded`](error::BodyDeadlineExceeded) (body). palisade-core's
//! classifier reads all four as [`Class::Timeout`](palisade_core::Class::Timeout).
//! Inner errors pass through unchanged. Timeouts are errors, never synthetic
//! `408`/`504` responses. Invalid configuration (a zero duration, a body
//! total bound shorter than its idle timeout, a layer that would bound
//! nothing) is a [`ConfigError`] from the builder.
//!
//! # Events
//!
//! Each timeout emits one `tracing` event at `INFO`, target
//! [`palisade`](palisade_core::events::TARGET), message
//! [`timed_out`](palisade_core::events::TIMED_OUT), with fields `kind`
//! (`attempt`, `deadline`, `body_idle`, `body_deadline`), `elapsed_ms` and
//! `key` (the request's origin by default; set another with the builders'
//! `key_fn`). The key is computed only when a subscriber listens to that
//! target and level.
//!
//! # Features
//!
//! - `tracing` (default): emit the events above. Off, they cost nothing.
//!
//! # Cost
//!
//! No layer allocates on its own per call beyond what the `http` crate needs
//! to store a [`Deadline`] in the request's extensions (done by
//! [`DeadlineLayer`] only) and to build a header value when one is sent. The
//! timers are tokio's, stored inline in the response futures.
//! `docs/benchmarks.md` (generated by `just bench`) has the figures, and
//! `docs/benchmarks/palisade-timeout.md` the method behind them.

pub mod attempt;
pub mod body;
pub mod config;
pub mod deadline;
pub mod error;
pub mod header;
pub mod inherit;

mod event;
mod time;

pub use attempt::{AttemptTimeout, AttemptTimeoutLayer};
pub use body::{BodyTimeout, BodyTimeoutLayer, TimeoutBody};
pub use config::ConfigError;
pub use deadline::{DeadlineLayer, DeadlineTimeout};
pub use header::{DeadlineHeader, HeaderFormat};
pub use inherit::{InheritDeadline, InheritDeadlineLayer};
pub use palisade_core::Deadline;
