//! Keyed concurrency limits for tower HTTP clients: a bounded FIFO queue,
//! a bounded wait, body-aware permits, and adaptive limits (AIMD, Gradient2,
//! Vegas) driven by HTTP signals.
//!
//! # Overview
//!
//! [`ConcurrencyLimitLayer`] caps how many requests are in flight **per key**
//! (by origin by default, see [`palisade_core::KeyFn`]) and, optionally, in
//! total ([`Builder::global_limit`]). A request that finds its key at the cap
//! waits, inside its response future, in a FIFO queue:
//!
//! - **bounded queue**: when [`max_queue`](Builder::max_queue) requests are
//!   already waiting, it fails at once with [`Overloaded`](error::Overloaded)
//!   (load shedding);
//! - **bounded wait**: it waits at most [`max_wait`](Builder::max_wait),
//!   clamped to what remains of its [`Deadline`](palisade_core::Deadline),
//!   then fails with [`QueueTimeout`](error::QueueTimeout). Like httpx's
//!   pool timeout, this is the wait for a slot, distinct from the connect
//!   timeout.
//!
//! **Body-aware permits.** By default a permit is held until the response
//! body has been read to the end, has failed or is dropped, not merely until
//! the head arrives, so a streaming download counts against the limit for as
//! long as it streams. [`Builder::body_aware(false)`](Builder::body_aware)
//! releases at the head instead, as tower's `ConcurrencyLimit` does. See
//! [`body`].
//!
//! **Adaptive limits.** [`limit::Limit`] chooses a fixed limit or one of
//! [`limit::Aimd`], [`limit::Gradient2`] and [`limit::Vegas`], with Netflix
//! concurrency-limits' defaults. The classifier (`Classify`, default
//! [`HttpClassifier`](palisade_core::HttpClassifier)) feeds them: a 429, a
//! 503, a timeout or a reset is a drop; the limiter's own rejections and
//! caller cancellations are not samples at all (see [`limit`] for the whole
//! table). The limit stays within `[min, max]`, is readable with
//! [`Diagnostics::limit`], and every change is a
//! [`LIMIT_CHANGED`](palisade_core::events::LIMIT_CHANGED) event and a call
//! of [`Builder::on_limit_change`]. Which algorithm suits which upstream is
//! measured in `docs/benchmarks/palisade-concurrency.md`: Vegas reads
//! queueing from latency alone; AIMD and Gradient2 need the upstream's drop
//! signals (503s, 429s, timeouts).
//!
//! **Diagnostics.** [`Diagnostics`] reports, per key, the limit, requests in
//! flight and queued, the peak in flight and the wait-time distribution. If
//! peak in-flight pins at the cap, the gate is the bottleneck.
//!
//! Idle keys are evicted ([`palisade_core::keyed::KeyedMap`]); a key with
//! requests in flight or queued never is. How this limit relates to reqwest's
//! connection pool and to the file-descriptor limit is in `docs/tuning.md`:
//! limit ≤ pool ≤ a safe fraction of `ulimit -n`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_concurrency::{ConcurrencyLimitLayer, limit::Gradient2};
//! use palisade_core::{BoxError, Key};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), BoxError> {
//! let limit = ConcurrencyLimitLayer::builder()
//!     .limit(Gradient2::new().min_limit(4).max_limit(256))
//!     .max_queue(64)
//!     .max_wait(Duration::from_secs(2))
//!     .build()?;
//! let diagnostics = limit.diagnostics();
//!
//! let upstream = service_fn(|_req: http::Request<String>| async {
//!     Ok::<_, BoxError>(http::Response::new(String::from("ok")))
//! });
//! let client = ServiceBuilder::new().layer(limit).service(upstream);
//!
//! let req = http::Request::get("https://api.example.com/items").body(String::new())?;
//! let res = client.oneshot(req).await?;
//! assert_eq!(res.status(), 200);
//!
//! let key = Key::origin(&"https://api.example.com".parse()?);
//! assert_eq!(diagnostics.limit(&key), Some(20));
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! In palisade's standard stack this layer sits inside retry, the circuit
//! breaker and the rate limiter, and outside the attempt timeout:
//!
//! ```text
//! deadline → retry → breaker → rate limit → concurrency → attempt timeout → transport
//! ```
//!
//! - Every attempt takes its own permit; a retry's backoff sleep holds none,
//!   because retry is outside.
//! - An open circuit or a missing rate token fails before a permit is taken.
//! - The attempt timeout is inside, so it measures wire time only, not queue
//!   time, and its timeouts reach the adaptive limit as drops.
//!
//! # Clone
//!
//! The layer builds its state once, behind an `Arc`. Every service it
//! produces, every clone of the layer and every clone of a service share the
//! same limits, queues and statistics: cloning never multiplies a limit. The
//! inner service must be `Clone`: a request that has to wait keeps the inner
//! service that was made ready for it and leaves a clone in its place.
//!
//! # Errors
//!
//! The service's error is [`BoxError`](palisade_core::BoxError). This layer
//! adds two, from [`palisade_core::error`], re-exported in [`error`]:
//! [`Overloaded`](error::Overloaded) (queue full) and
//! [`QueueTimeout`](error::QueueTimeout) (waited too long). Both classify as
//! [`Class::Rejected`](palisade_core::Class::Rejected): the request never
//! left. Inner errors pass through unchanged. An invalid configuration is a
//! [`ConfigError`] from [`Builder::build`], never a panic.
//!
//! # Features
//!
//! - `tracing` (default): emits `queued`, `shed` and `limit_changed` events
//!   at `DEBUG` level on target [`palisade_core::events::TARGET`], with the
//!   fields listed in [`palisade_core::events`]. Off, they compile away.

mod config;
mod events;
mod gate;
mod layer;
mod permit;
mod service;
mod shared;

pub mod body;
pub mod diagnostics;
pub mod error;
pub mod future;
pub mod limit;

pub use body::ResponseBody;
pub use config::{Builder, ConfigError, DEFAULT_MAX_QUEUE, DEFAULT_MAX_WAIT, LimitChange};
pub use diagnostics::{Diagnostics, KeyStats, WaitTimes};
pub use layer::ConcurrencyLimitLayer;
pub use limit::Limit;
pub use service::ConcurrencyLimit;
