//! Benchmarks for palisade (not published): the cost of the standard stack
//! per call, and its throughput over loopback HTTP, side by side with tower's
//! own layers, bare reqwest and reqwest-middleware.
//!
//! - `benches/stack.rs` (criterion): nanoseconds and heap allocations per
//!   call over an in-memory service, for `palisade::Client`, the standard
//!   stack composed with `ServiceBuilder`, each layer alone and tower's
//!   `ConcurrencyLimit`, `Timeout` and `Retry`.
//!   `cargo bench -p palisade-bench --bench stack -- --warm-up-time 1 --measurement-time 2`
//! - `src/bin/loopback.rs`: requests per second against a local hyper
//!   server, 64 in flight, interleaved rounds, as a ratio to bare reqwest.
//!   `cargo run --release -p palisade-bench --bin loopback`
//!
//! The figures, the machine they were measured on and how to read them are
//! in `docs/benchmarks/palisade-stack.md`.
//!
//! # Example
//!
//! The in-memory upstream the micro benchmarks measure against: the
//! standard stack's cost is what a `palisade::Client` adds on top of it.
//!
//! ```
//! use std::convert::Infallible;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), palisade::Error> {
//! let client = palisade::Client::builder()
//!     .base_url("http://bench.test/")
//!     .transport(tower::service_fn(|_req: http::Request<palisade::Body>| async {
//!         Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
//!             bytes::Bytes::from_static(b"ok"),
//!         )))
//!     }))
//!     .build()?;
//! let res = client.get("items").send().await?;
//! assert_eq!(res.status(), 200);
//! # Ok(()) }
//! ```
