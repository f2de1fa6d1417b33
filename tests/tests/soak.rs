//! # Soak: memory stays flat
//!
//! The 1 000 000 requests through the full standard stack, on an
//! in-memory upstream with seeded random latency and bodies, and a
//! `ChaosLayer` above it injecting a fault into 20 % of calls (latency past
//! the attempt timeout, resets, refused connections, 503s, and aborts after
//! the request was sent). Retries, the breaker, the rate limiter and the
//! concurrency limit all keep state. After a warm-up that lets every
//! allocator pool and map reach its working size, the resident set size
//! (`VmRSS` from `/proc/self/status`) may grow by at most 16 MiB over the
//! 1 000 000 measured requests: a leak of 17 bytes per request would
//! exceed it. (It grows by a few hundred KiB.)
//!
//! Two workers share the load, each on its own thread with its own paused
//! current-thread runtime, stack and seeds: 20 000 requests of warm-up
//! each, then 500 000 measured each, with the RSS read while both stacks
//! are alive. A paused clock needs a current-thread runtime, so one worker
//! would use one core; two share the 100 s or so of CPU that the run takes
//! in a debug build between two cores. Tokio's paused clock makes the
//! latencies and timeouts free, and each worker's run deterministic. It
//! runs in its own test binary, so that no other test allocates in the
//! process while it measures.
//!
//! Optimising the dependencies in the test profile
//! (`[profile.dev.package."*"] opt-level = 1`) would make it about twice as
//! fast, but costs more build time than it saves on every clean build (the
//! suite's dependencies took 2.5 times the CPU to build), so the suite
//! stays at the default profile. `crates/palisade-bench`'s `memory` binary
//! measures the same kind of run in release.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
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
/// Workers, each on its own thread, runtime and stack.
const WORKERS: usize = 2;
/// Requests per worker before the first RSS reading.
const WARM_UP: usize = 20_000;
/// Requests per worker between the two RSS readings.
const MEASURED: usize = 500_000;
const PARALLEL: usize = 64;
const MAX_GROWTH: u64 = 16 * 1024 * 1024;
const ORIGINS: [&str; 4] = [
    "http://a.soak.test",
    "http://b.soak.test",
    "http://c.soak.test",
    "http://d.soak.test",
];

/// How many requests ended with each status or error kind.
type Outcomes = HashMap<Result<u16, Kind>, usize>;

/// Runs `n` requests, `PARALLEL` at a time, reading every body, and counts
/// the outcomes.
async fn run(client: &Client, n: usize, from: usize) -> Outcomes {
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

/// One worker's stack and the handles the checks need.
struct Soak {
    client: Client,
    upstream: MemoryUpstream,
    chaos: ChaosLayer,
    concurrency: ConcurrencyLimitLayer,
}

impl Soak {
    /// The full standard stack over a seeded in-memory upstream, with a
    /// `ChaosLayer` directly above the transport. Call it inside the
    /// worker's runtime, so that every layer reads that runtime's clock.
    fn new(seed: u64) -> Self {
        let rng = Mutex::new(SmallRng::seed_from_u64(seed));
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
            .seed(seed)
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
                    .seed(seed)
                    .build_layer()
                    .unwrap(),
            ))
            .breaker(Some(
                BreakerLayer::builder()
                    .consecutive_failures(5)
                    .failure_ratio(0.5)
                    .break_duration(Duration::from_millis(200))
                    .max_break_duration(Duration::from_millis(800))
                    .seed(seed)
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
        Self {
            client,
            upstream,
            chaos,
            concurrency,
        }
    }
}

/// What one worker saw.
#[derive(Debug)]
struct Report {
    worker: usize,
    warm_up: Outcomes,
    measured: Outcomes,
    injected: u64,
}

/// One worker: its own paused current-thread runtime and its own stack.
/// It warms up, says so on `ready`, waits for `go`, runs the measured
/// requests, says so again, and waits for `go` once more before it checks
/// that nothing is held and drops its stack: the RSS is read while both
/// workers' stacks are alive, so that state kept in them counts.
fn worker(worker: usize, ready: Sender<()>, go: Receiver<()>) -> Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let soak = rt.block_on(async { Soak::new(SEED ^ worker as u64) });
    let warm_up = rt.block_on(run(&soak.client, WARM_UP, 0));
    ready.send(()).unwrap();
    go.recv()
        .expect("the test reads the RSS, then lets the workers go");
    let measured = rt.block_on(run(&soak.client, MEASURED, WARM_UP));
    ready.send(()).unwrap();
    go.recv()
        .expect("the test reads the RSS, then lets the workers go");

    // Nothing is held once it is over.
    assert_eq!(soak.upstream.in_flight(), 0, "worker {worker}");
    assert_eq!(soak.client.in_flight(), 0, "worker {worker}");
    for k in soak.concurrency.diagnostics().keys() {
        assert_eq!((k.in_flight, k.queued), (0, 0), "worker {worker}: {k:?}");
    }
    Report {
        worker,
        warm_up,
        measured,
        injected: soak.chaos.injected(),
    }
}

#[test]
fn memory_stays_flat_over_1_000_000_requests_with_random_faults() {
    let Some(_) = rss_bytes() else {
        eprintln!("no /proc/self/status: RSS cannot be read on this platform");
        return;
    };
    let (before, after, reports) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|id| {
                let (ready_tx, ready) = mpsc::channel();
                let (go, go_rx) = mpsc::channel();
                let handle = std::thread::Builder::new()
                    .name(format!("soak-{id}"))
                    .spawn_scoped(scope, move || worker(id, ready_tx, go_rx))
                    .unwrap();
                (handle, ready, go)
            })
            .collect();
        // A worker that panics drops its `ready`, so these fail instead of
        // hanging; the other worker's `go` is then dropped with `workers`,
        // which ends it too.
        for (_, ready, _) in &workers {
            ready.recv().expect("a worker failed during its warm-up");
        }
        let before = rss_bytes().unwrap();
        for (_, _, go) in &workers {
            go.send(()).unwrap();
        }
        for (_, ready, _) in &workers {
            ready
                .recv()
                .expect("a worker failed during its measured run");
        }
        let after = rss_bytes().unwrap();
        for (_, _, go) in &workers {
            go.send(()).unwrap();
        }
        let reports: Vec<Report> = workers
            .into_iter()
            .map(|(handle, _, _)| handle.join().expect("a worker failed its checks"))
            .collect();
        (before, after, reports)
    });

    let total = WORKERS * MEASURED;
    let growth = after.saturating_sub(before);
    eprintln!(
        "RSS {} KiB -> {} KiB (+{} KiB) over {total} requests",
        before / 1024,
        after / 1024,
        growth / 1024
    );
    for r in &reports {
        eprintln!(
            "worker {}: {} faults injected; outcomes {:?}",
            r.worker, r.injected, r.measured
        );
    }
    assert!(
        growth < MAX_GROWTH,
        "RSS grew by {} KiB over {total} requests ({reports:?})",
        growth / 1024
    );

    // The run was what it claims: every request ended, faults were
    // injected and met, and most requests still succeeded.
    for r in &reports {
        assert_eq!(r.measured.values().sum::<usize>(), MEASURED, "{r:?}");
        assert!(r.injected > (MEASURED / 10) as u64, "{r:?}");
        let ok = r.measured.get(&Ok(200)).copied().unwrap_or(0);
        assert!(ok > MEASURED / 2, "{r:?}");
        assert!(r.measured.len() > 2, "faults surfaced: {r:?}");
        assert_eq!(r.warm_up.values().sum::<usize>(), WARM_UP, "{r:?}");
    }
}
