//! Keyed GCRA rate limiting for HTTP clients, as a tower layer that listens to the server.
//!
//! # Overview
//!
//! [`RateLimitLayer`] holds each key (by default each authority: scheme, host
//! and port) to a [`Quota`]: one request per replenish interval, with a
//! burst. The algorithm is GCRA, run by [`governor`], on a clock backed by
//! [`tokio::time`] ([`clock::TokioClock`]) so that tests pause it.
//!
//! - **Two modes.** [`Mode::Wait`] (the default) waits for a slot, but never
//!   longer than `max_wait` (default 10 s) or what is left of the request's
//!   [`Deadline`](palisade_core::Deadline); when the wait would be longer the
//!   request fails at once with [`RateLimited`](error::RateLimited), not after
//!   having waited. [`Mode::Reject`] fails at once whenever no slot is free.
//!   Requests of one key that wait in this process queue in arrival order,
//!   each with its own slot, so the wait announced is the wait served. Two
//!   things can still take a slot a request waited for: another instance
//!   sharing the quota through a shared backend, or a pause the server asks
//!   for meanwhile. The request then goes to the back of the queue, and fails
//!   with `RateLimited` if that is past its limit: only then does a request
//!   fail after having waited.
//! - **A slot is spent only by a request that is sent.** The slot is taken at
//!   the moment of sending, after any wait. A request dropped while it waits
//!   spends nothing and gives its place in the queue back.
//! - **Listening to the server.** A 429 with `Retry-After` (seconds or an
//!   HTTP-date) or a reset header, or a response with `RateLimit-Remaining: 0`
//!   / `X-RateLimit-Remaining: 0` and `RateLimit-Reset` / `X-RateLimit-Reset`
//!   (or the `RateLimit` structured header), pauses that key until the reset,
//!   capped by `max_server_pause` (default 120 s). Later requests of the key
//!   wait or fail instead of hitting the server again. A 429 with no such
//!   header sets no pause: it says nothing about how long, and retry's
//!   backoff handles it.
//! - **Keys** come from a [`KeyFn`](palisade_core::KeyFn): [`ByAuthority`](palisade_core::ByAuthority)
//!   by default, [`Global`](palisade_core::Global) for one limit, or any
//!   closure (per API key, tenant, route). Idle keys are evicted (default
//!   after 10 minutes, and at most 10 000 keys), so memory stays bounded
//!   whatever hosts are seen.
//! - **Backends.** The limit lives in a [`RateLimitBackend`]. [`LocalBackend`],
//!   the default, keeps it in this process; `palisade-redis` keeps it on Redis
//!   so that a fleet shares one quota.
//!
//! Tokio's timer has a resolution of 1 ms. A key paced faster than one
//! request per millisecond keeps its full rate while waiting only if its
//! burst covers a millisecond (for 10 000 requests/s, a burst of at least 10);
//! otherwise waiters that wake in the same millisecond wait again, and the
//! key runs below its quota, never above it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::{Body, BoxError};
//! use palisade_ratelimit::{Quota, RateLimitLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let limit = RateLimitLayer::builder(Quota::per_second(50)?.with_burst(10)?)
//!     .wait(Duration::from_secs(2))
//!     .build()?;
//!
//! let client = ServiceBuilder::new().layer(limit).service(service_fn(
//!     |_req: http::Request<Body>| async {
//!         Ok::<_, BoxError>(http::Response::new(Body::empty()))
//!     },
//! ));
//!
//! let req = http::Request::get("https://api.example.com/items").body(Body::empty())?;
//! let res = client.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! In the standard stack the limiter sits inside retry and the circuit
//! breaker, and outside the concurrency limit and the attempt timeout:
//! every attempt spends a slot because every attempt reaches the upstream,
//! an open circuit fails before spending one, and time spent waiting for a
//! slot is not counted against the attempt timeout.
//!
//! # Clone
//!
//! The layer creates its state once. Every service it builds, and every
//! clone of the layer or of those services, shares the same limits, queues
//! and server pauses behind an `Arc`, so cloning a client never multiplies a
//! quota. Build a second layer for an independent limit.
//!
//! # Errors
//!
//! A refused request fails with [`RateLimited`](error::RateLimited) (boxed),
//! whose `retry_after` says when a slot frees or the server's pause ends, or
//! is `None` when a shared backend refused without a time. Invalid settings
//! are a [`ConfigError`] from [`RateLimitBuilder::build`]. The inner
//! service's errors pass through unchanged.
//!
//! # Features
//!
//! - `tracing` (default): emits [`RATE_LIMITED`](palisade_core::events::RATE_LIMITED)
//!   (`key`, `wait_ms`, `source`: `local` or `server`) when a request is
//!   refused and [`RATE_LIMIT_WAITED`](palisade_core::events::RATE_LIMIT_WAITED)
//!   (`key`, `wait_ms`) when one was sent after waiting, under the target
//!   [`palisade_core::events::TARGET`].

pub mod backend;
pub mod clock;
mod config;
pub mod error;
pub mod future;
mod layer;
mod service;
mod shared;

pub use backend::{Decision, LocalBackend, LocalLimiter, RateLimitBackend};
pub use config::{
    ConfigError, DEFAULT_MAX_SERVER_PAUSE, DEFAULT_MAX_WAIT, Mode, Quota, RateLimitBuilder,
};
pub use layer::RateLimitLayer;
pub use service::RateLimit;
