//! Run: `cargo run -p palisade --example single_crate`
//!
//! Only `palisade-retry` over a plain reqwest service: what a library author
//! pulls into their own tower stack. A POST without an idempotency key is
//! not resent after a reset; the same POST with a key is, and carries the
//! same key on every attempt.

use std::time::Duration;

use palisade::retry::{BackoffStrategy, RetryPolicy};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::Body;
use palisade_reqwest::ReqwestService;
use tower::{Layer, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), palisade_core::BoxError> {
    let upstream = FlakyServer::start().await?;
    let retry = RetryPolicy::builder()
        .backoff(BackoffStrategy::Constant)
        .base_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(20))
        .build_layer()?;
    let svc = retry.layer(ReqwestService::new(reqwest::Client::new()));

    upstream.script(
        "/orders",
        Script::new()
            .then(Behavior::reset())
            .then(Behavior::status(201)),
    );
    let post = http::Request::post(upstream.url("/orders")).body(Body::from("{}"))?;
    let outcome = svc.clone().oneshot(post).await;
    println!(
        "POST without a key: {} ; upstream attempts: {}",
        outcome.map_or_else(|e| format!("error ({e})"), |r| r.status().to_string()),
        upstream.stats("/orders").attempts
    );

    upstream.script(
        "/orders",
        Script::new()
            .then(Behavior::reset())
            .then(Behavior::status(201)),
    );
    let post = http::Request::post(upstream.url("/orders"))
        .header("idempotency-key", "order-42")
        .body(Body::from("{}"))?;
    let res = svc.oneshot(post).await?;
    let stats = upstream.stats("/orders");
    println!(
        "POST with a key: {} ; upstream attempts so far: {} ; keys seen: {:?}",
        res.status(),
        stats.attempts,
        stats.idempotency_keys
    );
    Ok(())
}
