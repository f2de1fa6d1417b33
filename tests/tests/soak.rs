//! # Soak: memory stays flat
//!
//! Hundreds of thousands of requests through the full standard stack, on an
//! in-memory upstream with seeded random latency and bodies, and a
//! `ChaosLayer` above it injecting a fault into 20 % of calls (latency past
//! the attempt timeout, resets, refused connections, 503s, and aborts after
//! the request was sent). Retries, the breaker, the rate limiter and the
//! concurrency limit all keep state. After a warm-up that lets every
//! allocator pool and map reach its working size, the resident set size
//! (`VmRSS` from `/proc/self/status`) may grow by at most 16 MiB over the
//! rest of the run: a leak of even 100 bytes per request would exceed it.
//!
//! **Scaled down** from the 1 000 000 requests to 20 000 of warm-up
//! and 200 000 measured, so that it takes well under a minute in a debug
//! build on two cores; the bound holds per request just the same. Tokio's
//! paused clock makes the latencies and timeouts free, and the run
//! deterministic. It runs in its own test binary, so that no other test
//! allocates in the process while it measures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use palisade::breaker::BreakerLayer;
use palisade::concurrency::{ConcurrencyLimitLayer, Limit};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::{BackoffStrategy, RetryPolicy};
use palisade::{Client, Kind, StackConfig};
use palisade_chaos::{ChaosLayer, Fault};
use palisade_core::TransportErrorKind;
use palisade_tests::{MemoryUpstream, Reply, rss_bytes};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x50a4;
const WARM_UP: usize = 20_000;
const MEASURED: usize = 200_000;
const PARALLEL: usize = 64;
const MAX_GROWTH: u64 = 16 * 1024 * 1024;
const ORIGINS: [&str; 4] = [
    "http://a.soak.test",
    "http://b.soak.test",
    "http://c.soak.test",
    "http://d.soak.test",
];

/// Runs `n` requests, `PARALLEL` at a time, reading every body, and counts
/// the outcomes.
async fn run(client: &Client, n: usize, from: usize) -> HashMap<Result<u16, Kind>, usize> {
    let mut outcomes = HashMap::new();
    let mut requests = futures_util::stream::iter(from..from + n)
        .map(|i| {
            let client = client.clone();
            async move {
                // A little think time, so that tokio's paused clock moves on
                // even when every request fails fast (an open circuit).
                tokio::time::sleep(Duration::from_micros(500)).await;
                let url = format!("{}/items/{}", ORIGINS[i % ORIGINS.len()], i % 16);
                match client.get(&url).send().await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        match res.bytes().await {
                            Ok(_) => Ok(status),
                            Err(e) => Err(e.status().map_or(Kind::Body, |_| Kind::Status)),
                        }
                    }
                    Err(e) => Err(e.kind()),
                }
            }
        })
        .buffer_unordered(PARALLEL);
    while let Some(outcome) = requests.next().await {
        *outcomes.entry(outcome).or_insert(0) += 1;
    }
    outcomes
}

#[tokio::test(start_paused = true)]
async fn memory_stays_flat_over_200_000_requests_with_random_faults() {
    let Some(_) = rss_bytes() else {
        eprintln!("no /proc/self/status: RSS cannot be read on this platform");
        return;
    };
    let rng = Mutex::new(SmallRng::seed_from_u64(SEED));
    let upstream = MemoryUpstream::new(move |_| {
        let mut rng = rng.lock().unwrap();
        let latency = Duration::from_millis(rng.random_range(0..5));
        let chunks = rng.random_range(0..4);
        Reply::ok().with_latency(latency).with_body(
            chunks,
            vec![b'x'; 256],
            Duration::from_millis(1),
        )
    });
    let chaos = ChaosLayer::builder()
        .injection_rate(0.2)
        .seed(SEED)
        .fault(Fault::latency(Duration::from_millis(80)))
        .fault(Fault::error(TransportErrorKind::Reset))
        .fault(Fault::error(TransportErrorKind::Connect))
        .fault(Fault::status(503))
        .fault(Fault::abort())
        .build()
        .unwrap();
    let transport = tower::ServiceBuilder::new()
        .layer(chaos.clone())
        .service(upstream.clone());
    let concurrency = ConcurrencyLimitLayer::builder()
        .limit(Limit::fixed(32))
        .build()
        .unwrap();
    let stack = StackConfig::default()
        .deadline(Some(Duration::from_secs(1)))
        .attempt_timeout(Some(Duration::from_millis(50)))
        .retry(Some(
            RetryPolicy::builder()
                .backoff(BackoffStrategy::Constant)
                .base_delay(Duration::from_millis(5))
                .max_delay(Duration::from_millis(5))
                .seed(SEED)
                .build_layer()
                .unwrap(),
        ))
        .breaker(Some(
            BreakerLayer::builder()
                .consecutive_failures(5)
                .failure_ratio(0.5)
                .break_duration(Duration::from_millis(200))
                .max_break_duration(Duration::from_millis(800))
                .seed(SEED)
                .build()
                .unwrap(),
        ))
        .rate_limit(Some(RateLimitLayer::new(
            Quota::per_second(100_000)
                .unwrap()
                .with_burst(1_000)
                .unwrap(),
        )))
        .concurrency(Some(concurrency.clone()));
    let client = Client::builder()
        .stack(|_| stack)
        .transport(transport)
        .build()
        .unwrap();

    let warm = run(&client, WARM_UP, 0).await;
    let before = rss_bytes().unwrap();
    let outcomes = run(&client, MEASURED, WARM_UP).await;
    let after = rss_bytes().unwrap();

    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS {} KiB -> {} KiB (+{} KiB) over {MEASURED} requests; outcomes {outcomes:?}",
        before / 1024,
        after / 1024,
        growth / 1024
    );
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {} KiB over {MEASURED} requests (warm-up outcomes {warm:?})",
        growth / 1024
    );

    // The run was what it claims: every request ended, faults were
    // injected and met, and most requests still succeeded.
    assert_eq!(outcomes.values().sum::<usize>(), MEASURED);
    assert!(
        chaos.injected() > (MEASURED / 10) as u64,
        "{}",
        chaos.injected()
    );
    let ok = outcomes.get(&Ok(200)).copied().unwrap_or(0);
    assert!(ok > MEASURED / 2, "{outcomes:?}");
    assert!(outcomes.len() > 2, "faults surfaced: {outcomes:?}");
    // And nothing is held once it is over.
    assert_eq!(upstream.in_flight(), 0);
    assert_eq!(client.in_flight(), 0);
    for k in concurrency.diagnostics().keys() {
        assert_eq!((k.in_flight, k.queued), (0, 0), "{k:?}");
    }
}
