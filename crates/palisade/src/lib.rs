//! Resilient HTTP client: reqwest behind palisade's standard stack.
//!
//! `palisade` composes every palisade layer, in the standard order, behind a
//! client as easy as reqwest's:
//!
//! ```no_run
//! # async fn run() -> Result<(), palisade::Error> {
//! let client = palisade::Client::builder()
//!     .base_url("https://api.example.com/v1/")
//!     .bearer_token("s3cret")
//!     .build()?;
//! let res = client.get("items").query(&[("page", "1")]).send().await?;
//! println!("{} after {} attempt(s)", res.status(), palisade::attempts(&res));
//! # Ok(()) }
//! ```
//!
//! Compression is negotiated and decoded by the client, and every buffered
//! read of a body (`send_json`, pages, batch results, the blocking client's
//! `bytes`/`text`/`json`, [`ResponseExt`] after `send()`) is capped, 64 MiB
//! by default, with a bound on the decompression ratio: see [`limit`].
//!
//! See `docs/layer-order.md` for the order of the layers and why.

pub mod auth;
pub mod batch;
pub mod blocking;
mod client;
mod credentials;
pub mod download;
mod error;
mod hop;
mod in_flight;
pub mod limit;
pub mod paginate;
mod redact;
mod request;
mod shutdown;
mod stack;
mod telemetry;
mod toggle;

/// The layer crates, re-exported so one dependency gives the whole stack.
pub use palisade_breaker as breaker;
pub use palisade_concurrency as concurrency;
pub use palisade_core as core;
pub use palisade_ratelimit as ratelimit;
pub use palisade_retry as retry;
pub use palisade_timeout as timeout;

pub use auth::{Auth, ClientCredentials, Token, TokenFuture, TokenProvider};
pub use batch::{Batch, DEFAULT_BATCH_CONCURRENCY, FetchUnordered, Fetched};
pub use client::{
    Client, ClientBuilder, DEFAULT_MAX_REDIRECTS, DEFAULT_USER_AGENT, error_for_status,
};
pub use download::{DEFAULT_MAX_RESUMES, Download, Downloaded, Progress};
pub use error::{Error, Kind};
pub use limit::{BodyTooLarge, DEFAULT_MAX_BODY, ResponseExt};
pub use paginate::{Paginate, Pagination};
pub use palisade_core::Body;
pub use palisade_reqwest::PoolConfig;
pub use request::{Overrides, Request, RequestBuilder};
pub use stack::{Description, HttpService, StackConfig};

/// How many attempts the stack made for this response (1 when it was not
/// retried, or when no retry layer is in the stack).
pub fn attempts(res: &reqwest::Response) -> u32 {
    res.extensions()
        .get::<palisade_retry::Attempts>()
        .map_or(1, |a| a.0)
}

/// The README's example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
