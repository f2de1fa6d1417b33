//! Fault injection for palisade: a real flaky upstream server and a
//! client-side chaos layer.
//!
//! # Overview
//!
//! - [`FlakyServer`] is a real HTTP/1.1 and HTTP/2 server on `127.0.0.1`
//!   that answers each route by a [`Script`] of [`Behavior`]s: status
//!   sequences, 429/503 with `Retry-After` in both forms, fixed or seeded
//!   random latency, a TCP reset before the response, a stall mid-body, a
//!   truncated body, a slow trickle and multi-GiB bodies generated chunk by
//!   chunk. It counts, per route, the attempts, the requests in flight and
//!   their maximum, the `Idempotency-Key`s and bodies it received, and when
//!   each request arrived ([`RouteStats`]), plus the TCP connections it
//!   accepted. It is the upstream of palisade's integration tests, of
//!   `palisade demo` and of the benchmarks: the faults a mock cannot make.
//! - [`ChaosLayer`] injects faults on the client side, in the spirit of
//!   Polly's Simmy: latency, a transport error, a status, or an abort after
//!   the request was sent, on a seeded share of calls.
//!
//! # Example
//!
//! A flaky upstream:
//!
//! ```
//! use palisade_chaos::{Behavior, FlakyServer, Script};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! let server = FlakyServer::start().await?;
//! server.script(
//!     "/orders",
//!     Script::new()
//!         .then(Behavior::retry_after_secs(503, 1))
//!         .then(Behavior::reset())
//!         .then(Behavior::status(201)),
//! );
//! let url = server.url("/orders");
//! // ... send requests to `url`, then check what the upstream saw:
//! let stats = server.stats("/orders");
//! assert_eq!(stats.attempts, 0);
//! assert_eq!(stats.distinct_idempotency_keys(), 0);
//! # let _ = url; Ok(()) }
//! ```
//!
//! Client-side faults in a `ServiceBuilder`:
//!
//! ```
//! use std::time::Duration;
//! use palisade_chaos::{ChaosLayer, Fault};
//! use palisade_core::TransportErrorKind;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let chaos = ChaosLayer::builder()
//!     .injection_rate(0.2)
//!     .seed(42)
//!     .fault(Fault::latency(Duration::from_millis(50)))
//!     .fault(Fault::error(TransportErrorKind::Reset))
//!     .fault(Fault::status(503))
//!     .fault(Fault::abort())
//!     .build()?;
//! let svc = ServiceBuilder::new().layer(chaos.clone()).service(service_fn(
//!     |_req: http::Request<String>| async {
//!         Ok::<_, palisade_core::BoxError>(http::Response::new(String::from("ok")))
//!     },
//! ));
//! let _ = svc.oneshot(http::Request::new(String::new())).await;
//! assert!(chaos.injected() <= 1);
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! Put [`ChaosLayer`] where the fault would happen: directly above the
//! transport, below the attempt timeout, so that the resilience layers
//! above it see injected faults as they would see real ones (a latency
//! fault trips the attempt timeout, an error fault is retried, a status
//! fault counts against the breaker).
//!
//! # Clone
//!
//! Every service a [`ChaosLayer`] produces, and every clone of those, shares
//! the layer's seeded generator and injection counter behind an `Arc`. The
//! faults of a run depend only on the seed and the order of calls.
//! [`FlakyServer`] is not `Clone`; share it by reference or in an `Arc`.
//!
//! # Errors
//!
//! Injected transport errors are
//! [`palisade_core::TransportError`]s, so they classify like real ones;
//! their source is an [`InjectedFault`], so tests can tell them apart.
//! [`ChaosLayer::builder`] returns a [`ConfigError`] for an invalid
//! configuration. [`FlakyServer::start`] fails only if it cannot bind a
//! port.
//!
//! # Features
//!
//! None. The crate is meant for tests, demos and benchmarks; a production
//! build can leave it out, or keep a [`ChaosLayer`] with an injection rate
//! of zero, which is a pass-through.

pub mod bomb;
mod config;
pub mod error;
pub mod future;
mod layer;
pub mod server;
mod service;

pub use config::{ChaosBuilder, DEFAULT_INJECTION_RATE, DEFAULT_SEED, Fault};
pub use error::{ConfigError, InjectedFault};
pub use layer::ChaosLayer;
pub use server::{Behavior, FlakyServer, FlakyServerBuilder, RouteStats, Script};
pub use service::Chaos;
