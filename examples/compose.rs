//! Run: `cargo run -p palisade --example compose`
//!
//! The five palisade layers composed by hand with `tower::ServiceBuilder`
//! around the reqwest transport, in the standard order, against an embedded
//! flaky upstream that fails twice before answering. No facade: this is how
//! a library author or an existing tower stack uses the layer crates.

use std::time::Duration;

use palisade::breaker::BreakerLayer;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::{BackoffStrategy, RetryPolicy};
use palisade::timeout::{AttemptTimeoutLayer, DeadlineLayer};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::Body;
use palisade_reqwest::ReqwestService;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), palisade_core::BoxError> {
    let upstream = FlakyServer::start().await?;
    upstream.script(
        "/items",
        Script::new()
            .then(Behavior::retry_after_secs(503, 0))
            .then(Behavior::status(502))
            .then(Behavior::ok(r#"{"items":[1,2,3]}"#)),
    );

    let retry = RetryPolicy::builder()
        .backoff(BackoffStrategy::ExponentialFullJitter)
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_millis(500))
        .build_layer()?;
    let stack = ServiceBuilder::new()
        .layer(
            DeadlineLayer::builder()
                .budget(Duration::from_secs(5))
                .build()?,
        ) // 2. one deadline
        .layer(retry) // 3. retry: backoff, Retry-After, idempotency
        .layer(BreakerLayer::new()) // 4. breaker, per host
        .layer(RateLimitLayer::new(Quota::per_second(50)?)) // 5. rate limit, per host
        .layer(ConcurrencyLimitLayer::default()) // 6. concurrency, per host
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(1))?) // 7. attempt timeout
        .service(ReqwestService::new(reqwest::Client::new())); // 8. transport

    let req = http::Request::get(upstream.url("/items")).body(Body::empty())?;
    let res = stack.oneshot(req).await?;
    println!(
        "status {} after {} attempt(s); the upstream saw {} request(s)",
        res.status(),
        palisade::retry::Attempts::of(&res),
        upstream.stats("/items").attempts
    );
    Ok(())
}
