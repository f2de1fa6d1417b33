//! Shared vocabulary for the palisade resilience layers.
//!
//! Every palisade layer is its own crate and none reaches into another. They
//! cooperate through the few types defined here:
//!
//! - [`Classify`] and [`Class`]: one classification of an attempt's outcome
//!   that retry, the breaker, adaptive concurrency and metrics all read.
//! - [`RetryAfter`]: `Retry-After` and rate-limit reset headers, parsed
//!   totally: never a panic, always capped.
//! - [`Deadline`]: the instant the whole logical request must finish by, a
//!   request extension every waiting layer clamps to.
//! - [`Key`], [`KeyFn`] and [`keyed::KeyedMap`]: how keyed layers partition
//!   state (by origin by default), with idle eviction and a size bound.
//! - [`Body`]: the request body, cheap to clone when buffered and replayable
//!   up to a cap when streamed.
//! - [`error`]: each layer's named failure, and [`TransportError`], which
//!   keeps the transport's own error as its source.
//! - [`events`]: the names of every event and metric.
//!
//! # Example
//!
//! A custom layer can use the shared vocabulary directly:
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::{Body, Class, Classify, Deadline, HttpClassifier, Key};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let upstream = service_fn(|req: http::Request<Body>| async move {
//!     let left = Deadline::of(&req).map(|d| d.remaining());
//!     assert!(left.is_some());
//!     Ok::<_, palisade_core::BoxError>(http::Response::builder().status(503).body(()).unwrap())
//! });
//!
//! let mut req = http::Request::get("https://api.example.com/items").body(Body::empty()).unwrap();
//! Deadline::after(Duration::from_secs(30)).apply(req.extensions_mut());
//! assert_eq!(Key::origin(req.uri()).to_string(), "https://api.example.com:443");
//!
//! let res = upstream.oneshot(req).await;
//! let class = HttpClassifier::new().classify(res.as_ref());
//! assert!(matches!(class, Class::ServerError { .. }));
//! # }
//! ```
//!
//! # Time
//!
//! All time is [`tokio::time`], so tests run on a paused clock. Wall-clock
//! time is used only where HTTP needs it: to turn an HTTP-date into a delay.

pub mod body;
pub mod classify;
pub mod deadline;
pub mod error;
pub mod events;
pub mod key;
pub mod keyed;
pub mod overrides;
pub mod retry_after;

pub use body::{Body, NotReplayable};
pub use classify::{Class, Classify, HttpClassifier};
pub use deadline::Deadline;
pub use error::{BoxError, TransportError, TransportErrorKind};
pub use key::{ByAuthority, Global, Key, KeyFn, KeyHasher};
pub use retry_after::RetryAfter;
