//! Redis backends for palisade: one rate quota, and one view of open circuits, shared by a fleet.
//!
//! # Overview
//!
//! When many instances call an API under one API key, each instance's local
//! limit is wrong by a factor of the fleet's size. [`RedisBackend`] keeps the
//! limit on Redis instead, as a [`RateLimitBackend`](palisade_ratelimit::RateLimitBackend)
//! for `palisade-ratelimit`:
//!
//! - **Atomic GCRA, one round trip.** Each decision is one `EVALSHA` of a Lua
//!   script that reads and updates the key's theoretical arrival time on
//!   Redis's own clock, so instances never race and clock skew between them
//!   does not matter.
//! - **Namespaced, cluster-ready keys.** Keys look like
//!   `{palisade:rl:https://api.example.com:443}:tat`: every key of one
//!   palisade key shares a Redis Cluster hash tag, so the script touches one
//!   shard.
//! - **Server pauses are shared.** When one instance sees a 429 with
//!   `Retry-After` (or an exhausted `RateLimit-Remaining`), it records the
//!   pause on Redis and every instance holds that key back until it ends.
//! - **A failure policy.** When Redis is unreachable, erroring, or slower
//!   than the call timeout (default 20 ms), [`FailurePolicy::FailOpen`] (the
//!   default) decides with a limiter local to the instance, and
//!   [`FailurePolicy::FailClosed`] refuses. A
//!   [`BACKEND_FALLBACK`](palisade_core::events::BACKEND_FALLBACK) event is
//!   emitted, and [`RedisStats::fallbacks`] counted, each time. After a
//!   failure, decisions skip Redis for the retry interval (default 1 s) while
//!   the connection is remade in the background, so an outage costs one call
//!   timeout per interval, not one per request. A call that times out after
//!   Redis ran the script may have spent a slot there that the request then
//!   does not use: the fleet errs on the side of sending less.
//!
//! With the `breaker` feature (default), [`RedisBackend`] is also a
//! `palisade_breaker::BreakerStateBackend`: when one instance opens a key's
//! circuit, it stores the break on Redis (`{palisade:br:<key>}:open`, with the
//! break as its TTL) and the other instances open that key too on their next
//! sync. If Redis cannot answer, the breaker keeps its local decision.
//!
//! # Example
//!
//! Three clients, as three processes would be, share 10 requests a second:
//!
//! ```no_run
//! use palisade_core::{Body, BoxError};
//! use palisade_ratelimit::{Quota, RateLimitLayer};
//! use palisade_redis::RedisBackend;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main] async fn main() -> Result<(), BoxError> {
//! let quota = Quota::per_second(10)?;
//! let client = || -> Result<_, BoxError> {
//!     let backend = RedisBackend::builder(redis::Client::open("redis://127.0.0.1:6379")?)
//!         .namespace("my-app")
//!         .build()?;
//!     let limit = RateLimitLayer::builder(quota).backend(backend).build()?;
//!     Ok(ServiceBuilder::new().layer(limit).service(service_fn(
//!         |_req: http::Request<Body>| async {
//!             Ok::<_, BoxError>(http::Response::new(Body::empty()))
//!         },
//!     )))
//! };
//! let fleet = [client()?, client()?, client()?];
//! for svc in fleet {
//!     let req = http::Request::get("https://api.example.com/").body(Body::empty())?;
//!     svc.oneshot(req).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! A complete program is `examples/fleet_quota.rs`
//! (`cargo run -p palisade-redis --example fleet_quota`).
//!
//! # Order
//!
//! The backend changes where the rate limiter's state lives, not where the
//! limiter sits: see `palisade-ratelimit`.
//!
//! # Clone
//!
//! [`RedisBackend`] is cheap to clone. Clones share the connection, the
//! counters and the failure state. The quota itself is shared by every
//! instance using the same Redis, namespace and quota.
//!
//! # Errors
//!
//! Configuration errors are a [`ConfigError`]. Redis errors never reach the
//! request: the [`FailurePolicy`] turns them into a decision. Failing closed,
//! a request fails with [`RateLimited`](palisade_core::error::RateLimited)
//! and no `retry_after`.
//!
//! # Features
//!
//! - `breaker` (default): implements `palisade_breaker::BreakerStateBackend`
//!   for [`RedisBackend`].
//! - `tracing` (default): emits [`BACKEND_FALLBACK`](palisade_core::events::BACKEND_FALLBACK)
//!   (`backend`, `policy`, `reason`) under [`palisade_core::events::TARGET`]
//!   each time the failure policy is applied.
//!
//! # Tests
//!
//! The tests run against a real `redis-server`, started on a free port with
//! persistence off and stopped afterwards. They fail, rather than skip, when
//! `redis-server` is not on `PATH` (`apt-get install -y redis-server`).

mod backend;
#[cfg(feature = "breaker")]
mod breaker;
mod config;
mod keys;

pub use backend::{DecisionFuture, RedisBackend, RedisKeyState, RedisStats};
pub use config::{
    ConfigError, DEFAULT_CALL_TIMEOUT, DEFAULT_NAMESPACE, DEFAULT_RETRY_INTERVAL, FailurePolicy,
    RedisBackendBuilder,
};
