//! A keyed circuit breaker for tower HTTP clients: sliding-window and
//! slow-call trip policies, and a half-open state that cannot leak.
//!
//! # Overview
//!
//! [`BreakerLayer`] wraps a service in a [`Breaker`] that keeps one circuit per
//! key, by default per origin ([`ByAuthority`](palisade_core::ByAuthority)), so
//! one dead host never blocks another. Idle keys are evicted through
//! [`palisade_core::keyed::KeyedMap`].
//!
//! Each circuit is **closed**, **open**, **half-open** or **isolated**:
//!
//! - **Closed**: calls go through. Each outcome is classified by a
//!   [`Classify`](palisade_core::Classify) (default
//!   [`HttpClassifier`](palisade_core::HttpClassifier): 5xx, timeouts, connect
//!   failures and resets are failures; 4xx and 429 are not, and a local
//!   refusal from a layer below is not counted at all). The circuit opens when
//!   any configured policy trips:
//!   - [`consecutive_failures`](Builder::consecutive_failures): N failures in a row;
//!   - [`failure_ratio`](Builder::failure_ratio): at least this share of the
//!     calls in the [`Window`] failed, once it holds
//!     [`minimum_throughput`](Builder::minimum_throughput) calls (Polly's
//!     defaults: 0.1 over 30 s, 100 calls);
//!   - [`slow_calls`](Builder::slow_calls): at least this share of the window's
//!     calls took the threshold or longer (Resilience4j's slow-call rate).
//! - **Open**: calls fail at once with
//!   [`CircuitOpen { retry_after }`](error::CircuitOpen), before the inner
//!   service is called, so no rate token, permit or connection is spent. The
//!   break starts at 5 s and doubles on each opening in a row up to 60 s,
//!   shortened by a seeded random jitter. A 503 with `Retry-After` that opens
//!   the circuit makes the break at least that long, within the maximum.
//! - **Half-open**: once the break is over, exactly
//!   [`half_open_probes`](Builder::half_open_probes) calls go through; the rest
//!   fail fast. All probes succeeding closes the circuit; one failing re-opens
//!   it with a longer break. A probe whose future is dropped gives its slot
//!   back.
//! - **Isolated**: held open by hand through [`BreakerHandle::isolate`] until
//!   [`BreakerHandle::close`].
//!
//! Every transition bumps the circuit's generation; a result that arrives
//! after a transition, from a call admitted before it, is ignored. Every
//! transition is reported as a [`Transition`] to
//! [`on_transition`](Builder::on_transition) and as a `tracing` event.
//! [`BreakerHandle`] reads each key's [`KeySnapshot`] and controls it by hand.
//!
//! A [`BreakerStateBackend`] shares each key's open state across instances
//! (`palisade-redis` implements it; [`MemoryBackend`] is the in-memory one).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use palisade_breaker::{BreakerLayer, Window};
//! use palisade_core::{Body, BoxError, Key};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = BreakerLayer::builder()
//!     .consecutive_failures(5)
//!     .failure_ratio(0.5)
//!     .window(Window::time(Duration::from_secs(10)))
//!     .minimum_throughput(20)
//!     .break_duration(Duration::from_secs(5))
//!     .build()?;
//! let handle = breaker.handle();
//!
//! let client = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|_req: http::Request<Body>| async {
//!         Ok::<_, BoxError>(http::Response::builder().status(503).body(()).unwrap())
//!     }));
//!
//! for _ in 0..5 {
//!     let req = http::Request::get("https://api.example.com/items").body(Body::empty())?;
//!     let res = client.clone().oneshot(req).await?;
//!     assert_eq!(res.status(), 503);
//! }
//! // Five failures in a row: the sixth call fails fast.
//! let req = http::Request::get("https://api.example.com/items").body(Body::empty())?;
//! let err = client.clone().oneshot(req).await.unwrap_err();
//! let open = palisade_core::error::find::<palisade_breaker::error::CircuitOpen>(&*err).unwrap();
//! assert!(open.retry_after.is_some());
//!
//! let key = Key::origin(&"https://api.example.com".parse()?);
//! assert_eq!(handle.state(&key).unwrap().state, palisade_breaker::CircuitState::Open);
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! In palisade's standard stack the breaker sits inside retry and outside the
//! rate limiter, the concurrency limit and the attempt timeout:
//!
//! ```text
//! telemetry → deadline → retry → breaker → rate limit → concurrency → attempt timeout → transport
//! ```
//!
//! - Inside retry, so each attempt is judged, and a retry of an open key fails
//!   fast instead of reaching the upstream.
//! - Outside the rate limiter and the concurrency limit, so a refused call
//!   spends neither a token nor a permit.
//! - Outside the attempt timeout, so a timed-out attempt counts as a failure.
//!
//! The breaker classifies a call by its response head; an error in the body
//! stream afterwards is not seen.
//!
//! # Clone
//!
//! A [`BreakerLayer`] builds its state once. Every [`Breaker`] it makes, and
//! every clone of one, shares that state behind an `Arc`, as do the
//! [`BreakerHandle`]s it gives out. `reqwest::Client` is `Clone` and shares a
//! pool; the breaker likewise never multiplies its circuits by cloning.
//!
//! # Errors
//!
//! A refused call fails with [`error::CircuitOpen`] boxed as a
//! [`BoxError`](palisade_core::BoxError), whose `retry_after` says how long
//! until a probe may go (`None` while isolated or while the half-open probes
//! are all taken). Inner errors are boxed and passed through unchanged. The
//! builder returns [`error::ConfigError`] for an invalid configuration: zero,
//! NaN, out-of-range and inverted values, a window that could never trip, or
//! an idle timeout shorter than the longest break.
//!
//! # Features
//!
//! - `tracing` (default): emits
//!   [`BREAKER_STATE_CHANGED`](palisade_core::events::BREAKER_STATE_CHANGED)
//!   (`key`, `from`, `to`, `reason`, `break_ms`, `generation`) at `INFO` on
//!   every transition,
//!   [`BREAKER_REJECTED`](palisade_core::events::BREAKER_REJECTED)
//!   (`key`, `retry_after_ms`) at `DEBUG` on every fast fail, and
//!   [`BACKEND_FALLBACK`](palisade_core::events::BACKEND_FALLBACK) at `WARN`
//!   when the backend fails, all with target
//!   [`TARGET`](palisade_core::events::TARGET).

pub mod backend;
mod config;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod service;
mod state;
mod window;

pub use backend::{BreakerStateBackend, MemoryBackend, SharedState};
pub use config::{
    BreakerConfig, Builder, DEFAULT_BREAK_DURATION, DEFAULT_BREAK_MULTIPLIER, DEFAULT_BUCKETS,
    DEFAULT_FAILURE_RATIO, DEFAULT_HALF_OPEN_PROBES, DEFAULT_JITTER, DEFAULT_MAX_BREAK_DURATION,
    DEFAULT_MINIMUM_THROUGHPUT, DEFAULT_SAMPLING_DURATION, DEFAULT_SYNC_INTERVAL, SlowCalls,
    Window,
};
pub use handle::{BreakerHandle, CircuitState, KeySnapshot, Transition, TransitionReason};
pub use layer::BreakerLayer;
pub use service::Breaker;
pub use window::WindowCounts;
