//! # Cancellation storm
//!
//! Requests dropped at any point leak nothing: the httpx
//! `PoolTimeout`-after-cancellation class of bug, where cancelled requests
//! keep pool slots until the pool refuses everyone.
//!
//! Thousands of requests go through the full standard stack (deadline,
//! retry, breaker, rate limit, concurrency limit, attempt and body
//! timeouts) and 80 % of them are dropped at a seeded random moment, from
//! their first poll to past their end. Small limits, short breaks and a
//! tight rate make those moments land in every waiting state: waiting for a
//! rate slot, queued for a permit, holding a half-open probe slot, sleeping
//! in a retry's backoff, waiting for the upstream, and halfway through the
//! body. The test checks that the queue and the half-open state were really
//! reached. Afterwards:
//!
//! - every concurrency permit is back (`in_flight == 0`, `queued == 0` for
//!   every key, from [`Diagnostics`](palisade::concurrency::Diagnostics));
//! - no half-open probe slot is held (`probes_in_flight == 0` for every key
//!   of the breaker's handle that is not open; an open circuit's count is
//!   stale, a bug pinned by the ignored test at the end, and harmless
//!   because entering half-open resets it);
//! - every rate slot is back: after the burst's refill time, a whole burst
//!   goes through at once, without waiting (measured exactly on the paused
//!   clock), so no cancelled waiter kept a place in the queue;
//! - the upstream sees nothing in flight ([`MemoryUpstream::in_flight`],
//!   [`RouteStats::in_flight`](palisade_chaos::RouteStats)), nor does the
//!   client;
//! - a fresh batch then succeeds.
//!
//! Two runs, both with the 10 000 requests:
//!
//! - `in_memory_storm_…`: over four upstream origins on an in-memory
//!   upstream and tokio's paused clock: deterministic, and about a second
//!   of CPU in a debug build.
//! - `flaky_server_storm_…`: through the real reqwest transport against the
//!   loopback `FlakyServer` (random latency, cycling 503s, trickled bodies,
//!   and a second server that is down for good), on the real clock, since a
//!   paused clock would fire timers while a request waits on a socket. The
//!   requests, routes and drop points are seeded; which drop lands where
//!   depends on the scheduler, so its assertions are outcomes with wide
//!   margins, never durations. About 80 % are dropped and each drop
//!   mid-flight costs an HTTP/1 connection (some 2 000 to 3 000 in all,
//!   well within the loopback's ephemeral ports); it takes 5 to 10 s on
//!   two loaded cores.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use palisade::breaker::{BreakerLayer, CircuitState};
use palisade::concurrency::{ConcurrencyLimitLayer, Limit};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::{BackoffStrategy, RetryLayer, RetryPolicy};
use palisade::{Client, Kind, StackConfig};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::{Key, TransportErrorKind};
use palisade_tests::{MemoryUpstream, Reply};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;
use tokio::time::Instant;

const SEED: u64 = 0x0057_0711;
const PER_KEY_LIMIT: usize = 16;
const BURST: u32 = 20;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn retry(seed: u64) -> RetryLayer {
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff(BackoffStrategy::Constant)
        .base_delay(ms(20))
        .max_delay(ms(20))
        .seed(seed)
        .build_layer()
        .unwrap()
}

/// Every stateful layer, configured so that the storm reaches each of its
/// waiting states: small limits, short breaks, a rate that makes requests
/// wait.
struct Layers {
    breaker: BreakerLayer,
    rate: RateLimitLayer,
    concurrency: ConcurrencyLimitLayer,
    half_opened: Arc<Mutex<u32>>,
}

impl Layers {
    fn new(rate_per_sec: u32) -> Self {
        let half_opened = Arc::new(Mutex::new(0u32));
        let counter = half_opened.clone();
        let breaker = BreakerLayer::builder()
            .consecutive_failures(3)
            .failure_ratio(0.5)
            .break_duration(ms(100))
            .max_break_duration(ms(400))
            .jitter(0.0)
            .half_open_probes(2)
            .seed(SEED)
            .on_transition(move |t| {
                if t.to == CircuitState::HalfOpen {
                    *counter.lock().unwrap() += 1;
                }
            })
            .build()
            .unwrap();
        let rate = RateLimitLayer::builder(
            Quota::per_second(rate_per_sec)
                .unwrap()
                .with_burst(BURST)
                .unwrap(),
        )
        .wait(Duration::from_secs(1))
        .build()
        .unwrap();
        let concurrency = ConcurrencyLimitLayer::builder()
            .limit(Limit::fixed(PER_KEY_LIMIT))
            .max_queue(32)
            .max_wait(ms(500))
            .build()
            .unwrap();
        Self {
            breaker,
            rate,
            concurrency,
            half_opened,
        }
    }

    fn stack(&self) -> StackConfig {
        StackConfig::default()
            .deadline(Some(Duration::from_secs(3)))
            .attempt_timeout(Some(ms(400)))
            .retry(Some(retry(SEED)))
            .breaker(Some(self.breaker.clone()))
            .rate_limit(Some(self.rate.clone()))
            .concurrency(Some(self.concurrency.clone()))
    }

    /// Asserts that nothing any request reserved is still held.
    fn assert_all_released(&self) {
        let diag = self.concurrency.diagnostics();
        assert!(!diag.is_empty(), "the storm reached the concurrency layer");
        for k in diag.keys() {
            assert_eq!(
                (k.in_flight, k.queued),
                (0, 0),
                "{}: a permit or a queue place leaked: {k:?}",
                k.key
            );
        }
        let handle = self.breaker.handle();
        assert!(!handle.is_empty(), "the storm reached the breaker");
        for (key, snap) in handle.snapshot() {
            // An open circuit may report a stale count: see
            // `breaker_snapshot_of_a_reopened_circuit_reports_no_probe_in_flight`.
            // Entering half-open resets it, so it holds no slot; the fresh
            // batches below prove that.
            if snap.state != CircuitState::Open {
                assert_eq!(
                    snap.probes_in_flight, 0,
                    "{key}: a half-open probe slot leaked: {snap:?}"
                );
            }
        }
    }

    /// Asserts that the storm really drove the layers into their waiting
    /// states, so that "nothing leaked" means something.
    fn assert_storm_reached_every_state(&self) {
        let diag = self.concurrency.diagnostics();
        assert!(
            diag.keys()
                .iter()
                .any(|k| k.peak_in_flight == PER_KEY_LIMIT && k.wait.max() > Duration::ZERO),
            "some key queued at its limit: {:?}",
            diag.keys()
        );
        let opened: u64 = self
            .breaker
            .handle()
            .snapshot()
            .iter()
            .map(|(_, s)| s.opened)
            .sum();
        assert!(opened > 0, "the breaker opened during the storm");
        assert!(
            *self.half_opened.lock().unwrap() > 0,
            "the breaker went half-open during the storm"
        );
    }
}

/// When to drop a request: `None` (with probability `1 - share`) lets it
/// finish; otherwise a seeded delay from 0 (dropped at its first poll) to
/// `max`, past most requests' end.
fn drop_point(rng: &mut SmallRng, share: f64, max: Duration) -> Option<Duration> {
    if !rng.random_bool(share) {
        None
    } else {
        Some(Duration::from_micros(
            rng.random_range(0..max.as_micros() as u64),
        ))
    }
}

/// What happened to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Fate {
    Dropped,
    Ok(u16),
    Err(Kind),
}

async fn fetch(client: Client, method: Method, url: String, drop_after: Option<Duration>) -> Fate {
    let run = async move {
        let res = match client.request(method, &url).send().await {
            Ok(res) => res,
            Err(e) => return Fate::Err(e.kind()),
        };
        let status = res.status().as_u16();
        match res.bytes().await {
            Ok(_) => Fate::Ok(status),
            Err(_) => Fate::Err(Kind::Body),
        }
    };
    match drop_after {
        None => run.await,
        Some(d) => tokio::time::timeout(d, run).await.unwrap_or(Fate::Dropped),
    }
}

/// Runs `n` requests, at most `parallel` at once, each dropped at its
/// seeded drop point, and returns how many met each fate.
async fn storm(
    client: &Client,
    n: usize,
    parallel: usize,
    seed: u64,
    drops: (f64, Duration),
    url: impl Fn(&mut SmallRng) -> String,
) -> HashMap<Fate, usize> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut tasks = JoinSet::new();
    let mut fates = HashMap::new();
    for _ in 0..n {
        if tasks.len() >= parallel
            && let Some(done) = tasks.join_next().await
        {
            *fates.entry(done.expect("no request panics")).or_insert(0) += 1;
        }
        let method = if rng.random_bool(0.1) {
            Method::POST
        } else {
            Method::GET
        };
        let drop_after = drop_point(&mut rng, drops.0, drops.1);
        tasks.spawn(fetch(client.clone(), method, url(&mut rng), drop_after));
    }
    while let Some(done) = tasks.join_next().await {
        *fates.entry(done.expect("no request panics")).or_insert(0) += 1;
    }
    fates
}

const ORIGINS: [&str; 4] = [
    "http://a.storm.test",
    "http://b.storm.test",
    "http://c.storm.test",
    "http://flaky.storm.test",
];

#[tokio::test(start_paused = true)]
async fn in_memory_storm_of_10_000_dropped_requests_leaks_nothing() {
    let healthy = Arc::new(AtomicBool::new(false));
    let rng = Mutex::new(SmallRng::seed_from_u64(SEED ^ 1));
    let h = healthy.clone();
    let upstream = MemoryUpstream::new(move |req| {
        if h.load(Ordering::SeqCst) {
            return Reply::ok();
        }
        let mut rng = rng.lock().unwrap();
        let latency = ms(rng.random_range(0..60));
        let roll: f64 = rng.random();
        let flaky = req.uri().host() == Some("flaky.storm.test");
        let reply = if flaky && roll < 0.6 || roll < 0.03 {
            Reply::status(503)
        } else if roll < 0.04 {
            Reply::error(TransportErrorKind::Reset)
        } else if roll < 0.05 {
            Reply::error(TransportErrorKind::Connect)
        } else {
            // A body that takes a while, so drops land mid-body too.
            Reply::ok().with_body(4, vec![b'x'; 1024], ms(10))
        };
        reply.with_latency(latency)
    });
    let layers = Layers::new(300);
    let client = Client::builder()
        .stack(|_| layers.stack())
        .transport(upstream.clone())
        .build()
        .unwrap();

    let fates = storm(&client, 10_000, 128, SEED, (0.8, ms(400)), |rng| {
        let origin = ORIGINS[rng.random_range(0..ORIGINS.len())];
        format!("{origin}/item/{}", rng.random_range(0..100u32))
    })
    .await;

    let total: usize = fates.values().sum();
    assert_eq!(total, 10_000);
    // A quarter dropped, most of the rest answered, and the flaky origin's
    // circuit refused some.
    assert!(
        fates.get(&Fate::Dropped).copied().unwrap_or(0) > 2_000,
        "{fates:?}"
    );
    assert!(
        fates.get(&Fate::Ok(200)).copied().unwrap_or(0) > 2_000,
        "{fates:?}"
    );
    assert!(
        fates.contains_key(&Fate::Err(Kind::CircuitOpen)),
        "{fates:?}"
    );

    // Everything was dropped or finished: nothing may still be held.
    layers.assert_storm_reached_every_state();
    layers.assert_all_released();
    assert_eq!(
        upstream.in_flight(),
        0,
        "the upstream still serves requests"
    );
    assert_eq!(client.in_flight(), 0);

    // The upstream recovers. Once the longest break is over, two requests
    // per origin (the two half-open probes) close any open circuit.
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for origin in ORIGINS {
        for _ in 0..2 {
            let res = client.get(&format!("{origin}/probe")).send().await.unwrap();
            assert_eq!(res.status(), 200, "{origin}");
        }
    }
    let handle = layers.breaker.handle();
    for (key, snap) in handle.snapshot() {
        assert_eq!(snap.state, CircuitState::Closed, "{key}: {snap:?}");
    }

    // Rate slots: after the burst's refill time, a whole burst per origin
    // goes at once. A cancelled waiter still queued would make one wait.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let mut batch = JoinSet::new();
    for origin in ORIGINS {
        for i in 0..BURST {
            let client = client.clone();
            let url = format!("{origin}/fresh/{i}");
            batch.spawn(async move { client.get(&url).send().await.map(|r| r.status()) });
        }
    }
    let mut ok = 0;
    while let Some(r) = batch.join_next().await {
        assert_eq!(r.unwrap().unwrap(), 200);
        ok += 1;
    }
    assert_eq!(ok, ORIGINS.len() * BURST as usize);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "a fresh burst waited: a rate slot or permit was not given back"
    );

    // And a larger fresh batch, paced by the limiter, succeeds entirely.
    let fates = storm(&client, 400, 32, SEED ^ 2, (0.0, ms(1)), |rng| {
        format!("{}/again", ORIGINS[rng.random_range(0..ORIGINS.len())])
    })
    .await;
    assert_eq!(fates, HashMap::from([(Fate::Ok(200), 400)]));
    layers.assert_all_released();
    assert_eq!(upstream.in_flight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_server_storm_of_10_000_dropped_requests_leaks_nothing() {
    let server = FlakyServer::builder().seed(SEED).start().await.unwrap();
    server.script(
        "/fast",
        Script::always(Behavior::ok("fast").with_random_latency(ms(0), ms(20))),
    );
    server.script(
        "/flaky",
        Script::new()
            .then(Behavior::status(503).with_random_latency(ms(0), ms(10)))
            .then(Behavior::status(503).with_random_latency(ms(0), ms(10)))
            .then(Behavior::ok("ok").with_random_latency(ms(0), ms(10)))
            .cycle(),
    );
    // 8 KiB in 1 KiB chunks, 3 ms apart: drops land mid-body.
    server.script(
        "/body",
        Script::always(Behavior::trickle(8192, 1024, ms(3))),
    );
    // A second upstream, another origin and so another circuit, down for
    // good: its failures open its circuit, which then goes half-open.
    let down = FlakyServer::builder().seed(SEED).start().await.unwrap();
    down.script(
        "/down",
        Script::always(Behavior::status(503).with_random_latency(ms(0), ms(10))),
    );
    let routes = ["/fast", "/flaky", "/body"];

    let layers = Layers::new(2_000);
    let client = Client::builder()
        .base_url(&server.url("/"))
        .stack(|_| layers.stack())
        .build()
        .unwrap();

    let base = server.url("");
    let fates = storm(&client, 10_000, 64, SEED ^ 3, (0.8, ms(40)), |rng| {
        if rng.random_bool(0.1) {
            down.url("/down")
        } else {
            format!("{base}{}", routes[rng.random_range(0..routes.len())])
        }
    })
    .await;
    eprintln!(
        "fates of the 10 000 requests: {fates:?}; {} + {} connections",
        server.connections_accepted(),
        down.connections_accepted()
    );
    assert_eq!(fates.values().sum::<usize>(), 10_000);
    assert!(
        fates.get(&Fate::Dropped).copied().unwrap_or(0) > 2_500,
        "{fates:?}"
    );
    assert!(
        fates.get(&Fate::Ok(200)).copied().unwrap_or(0) > 500,
        "{fates:?}"
    );
    layers.assert_storm_reached_every_state();
    layers.assert_all_released();
    assert_eq!(client.in_flight(), 0);

    // The server notices a dropped request when its connection closes, at
    // the latest when it next writes to it: give it a generous while.
    let settled = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if routes.iter().all(|r| server.stats(r).in_flight == 0)
                && down.stats("/down").in_flight == 0
            {
                break;
            }
            tokio::time::sleep(ms(20)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "the server still has requests in flight: {:?}",
        (
            routes.map(|r| server.stats(r).in_flight),
            down.stats("/down").in_flight
        )
    );

    // A fresh batch succeeds, once any open circuit's break is over.
    server.script("/flaky", Script::always(Behavior::ok("ok")));
    tokio::time::sleep(ms(500)).await;
    let key = Key::origin(&base.parse().unwrap());
    // Two requests: the two half-open probes, if the circuit is open.
    for _ in 0..2 {
        let res = client.get("flaky").send().await.unwrap();
        assert_eq!(res.status(), 200);
        // The body-aware permit is held until the body is read or dropped.
        assert_eq!(res.text().await.unwrap(), "ok");
    }
    assert_eq!(
        layers.breaker.handle().state(&key).unwrap().state,
        CircuitState::Closed
    );
    let fates = storm(&client, 100, 16, SEED ^ 4, (0.0, ms(1)), |rng| {
        format!("{base}{}", routes[rng.random_range(0..routes.len())])
    })
    .await;
    assert_eq!(fates, HashMap::from([(Fate::Ok(200), 100)]));
    layers.assert_all_released();
}

/// A half-open circuit with two probes out: the first fails and re-opens
/// the circuit; the second then ends. Nothing is in flight, yet the
/// breaker's snapshot still counts one probe, because re-opening keeps the
/// half-open count and the second probe's end, from an older generation,
/// is ignored. Entering half-open again resets the count, so no slot is
/// lost; only what the snapshot reports is wrong.
#[tokio::test(start_paused = true)]
async fn breaker_snapshot_of_a_reopened_circuit_reports_no_probe_in_flight() {
    let upstream = MemoryUpstream::new(|req| match req.uri().path() {
        "/fail" => Reply::status(503),
        _ => Reply::ok().with_latency(Duration::from_secs(1)),
    });
    let breaker = BreakerLayer::builder()
        .consecutive_failures(1)
        .break_duration(Duration::from_secs(1))
        .max_break_duration(Duration::from_secs(1))
        .jitter(0.0)
        .half_open_probes(2)
        .build()
        .unwrap();
    let client = Client::builder()
        .base_url("http://reopen.test/")
        .stack(|_| StackConfig::bare().breaker(Some(breaker.clone())))
        .transport(upstream.clone())
        .build()
        .unwrap();
    let key = Key::origin(&"http://reopen.test".parse().unwrap());

    assert_eq!(client.get("fail").send().await.unwrap().status(), 503);
    assert_eq!(
        breaker.handle().state(&key).unwrap().state,
        CircuitState::Open
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Probe 1 is slow; probe 2 fails and re-opens the circuit.
    let c = client.clone();
    let slow = tokio::spawn(async move { c.get("slow").send().await.map(|r| r.status()) });
    tokio::task::yield_now().await;
    assert_eq!(breaker.handle().state(&key).unwrap().probes_in_flight, 1);
    assert_eq!(client.get("fail").send().await.unwrap().status(), 503);
    assert_eq!(
        breaker.handle().state(&key).unwrap().state,
        CircuitState::Open
    );
    assert_eq!(slow.await.unwrap().unwrap(), 200);
    assert_eq!(upstream.in_flight(), 0);

    let snap = breaker.handle().state(&key).unwrap();
    assert_eq!(snap.state, CircuitState::Open);
    assert_eq!(snap.probes_in_flight, 0, "no probe is in flight: {snap:?}");
}
