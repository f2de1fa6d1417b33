//! Run: `cargo run -p palisade --example chaos_testing`
//!
//! Using `ChaosLayer` in your own test suite: faults injected at the
//! transport (20 % of calls: a reset, a 503 or 200 ms of latency, seeded so
//! every run is the same), under the whole standard stack, to check that
//! your client code survives them. The upstream itself is healthy.

use std::time::Duration;

use palisade::retry::{BackoffStrategy, RetryPolicy};
use palisade::{Client, StackConfig};
use palisade_chaos::{ChaosLayer, Fault, FlakyServer};
use palisade_core::TransportErrorKind;
use palisade_reqwest::ReqwestService;
use tower::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = FlakyServer::start().await?;
    let chaos = ChaosLayer::builder()
        .injection_rate(0.2)
        .seed(2026)
        .fault(Fault::error(TransportErrorKind::Reset))
        .fault(Fault::status(503))
        .fault(Fault::latency(Duration::from_millis(200)))
        .build()?;
    let transport = chaos.layer(ReqwestService::new(reqwest::Client::new()));
    let retry = RetryPolicy::builder()
        .backoff(BackoffStrategy::Constant)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(10))
        .build_layer()?;
    let client = Client::builder()
        .base_url(&upstream.url("/"))
        .transport(transport)
        .stack(|s: StackConfig| s.retry(Some(retry)))
        .build()?;

    let mut ok = 0;
    for _ in 0..50 {
        if client
            .get("ping")
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ok += 1;
        }
    }
    println!(
        "{ok}/50 succeeded with {} faults injected; the upstream saw {} requests",
        chaos.injected(),
        upstream.total_attempts()
    );
    assert_eq!(ok, 50, "retries absorb every injected fault");
    Ok(())
}
