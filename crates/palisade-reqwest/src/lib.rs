//! The palisade transport: a `reqwest::Client` as a tower `Service` over
//! `http` types.
//!
//! # Overview
//!
//! [`ReqwestService`] sits at the bottom of a palisade stack. It takes
//! `http::Request<palisade_core::Body>`, the request type every palisade
//! layer carries, and returns `http::Response<`[`ResponseBody`]`>`, whose
//! body streams straight from reqwest. So tower-http layers and palisade
//! layers compose above it in one `ServiceBuilder`, and a 1 GiB download is
//! never held in memory.
//!
//! - Request bodies: a buffered [`Body`](palisade_core::Body) is handed to
//!   reqwest as `Bytes` with its `Content-Length`, without copying; a
//!   streaming one is streamed ([`into_reqwest_body`]).
//! - Failures, of the response future or of the body, are
//!   [`TransportError`](palisade_core::TransportError)s whose
//!   [`kind`](palisade_core::TransportErrorKind) tells a connect failure
//!   (never sent, safe to resend) from a reset, a truncated body or a
//!   timeout ([`transport_error_kind`]). The `reqwest::Error` is kept as the
//!   source, never stringified: `is_connect()`, `is_timeout()` and `url()`
//!   stay reachable, and [`HttpClassifier`](palisade_core::HttpClassifier)
//!   reads the kind.
//! - [`into_reqwest_response`] and [`wrap_reqwest_response`] turn a response
//!   back into a `reqwest::Response` for code written against reqwest;
//!   [`from_reqwest_response`] and [`into_reqwest_request`] go the other way.
//! - [`PoolConfig`] builds the client with pool, socket, HTTP/2 and TLS
//!   settings whose defaults are justified against httpx and aiohttp.
//!
//! # Example
//!
//! ```no_run
//! use palisade_core::{Body, Classify, HttpClassifier};
//! use palisade_reqwest::{PoolConfig, ReqwestService, into_reqwest_response};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let transport = ReqwestService::from_pool(&PoolConfig::new())?;
//! let svc = ServiceBuilder::new()
//!     // palisade's layers go here: retry, breaker, rate limit, concurrency, timeout.
//!     .service(transport);
//!
//! let req = http::Request::get("https://api.example.com/items").body(Body::empty())?;
//! match svc.oneshot(req).await {
//!     Ok(res) => {
//!         let class = HttpClassifier::new().classify_response(&res);
//!         println!("{} -> {}", res.status(), class.as_str());
//!         let items: serde_json::Value = into_reqwest_response(res).json().await?;
//!         println!("{items}");
//!     }
//!     Err(err) => {
//!         let class = HttpClassifier::new().classify_error(&err);
//!         println!("failed ({}): safe to resend: {}", class.as_str(), class.never_sent());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Order
//!
//! The transport is always innermost: every palisade layer wraps it.
//!
//! # Clone
//!
//! [`ReqwestService`] clones share the `reqwest::Client`, and so its
//! connection pool. Build one per process (or per upstream with different
//! settings) and clone it.
//!
//! # Errors
//!
//! The service's error and the body's error are
//! [`TransportError`](palisade_core::TransportError); see
//! [`transport_error_kind`] for how a `reqwest::Error` is classified.
//! [`PoolConfig::build`] returns a [`ConfigError`] for zero durations, or
//! when reqwest cannot build the client.
//!
//! # Features
//!
//! None of its own. TLS is rustls with certificate verification on, and
//! HTTP/2 is enabled (negotiated by ALPN over HTTPS).

mod body;
mod config;
mod convert;
pub mod error;
pub mod future;
mod service;

pub use body::{ResponseBody, into_reqwest_body};
pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_IDLE_PER_HOST,
    DEFAULT_TCP_KEEPALIVE, PoolConfig,
};
pub use convert::{
    ParsedUrl, from_reqwest_response, into_reqwest_request, into_reqwest_response,
    to_reqwest_response, wrap_reqwest_response,
};
pub use error::{ConfigError, transport_error, transport_error_kind};
pub use service::ReqwestService;
