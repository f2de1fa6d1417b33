//! Nanoseconds and heap allocations per call of palisade's standard stack,
//! of each of its layers alone, of tower's own layers and of
//! tower-resilience 0.13's equivalent stack, side by side over an in-memory
//! service.
//!
//! Two in-memory upstreams:
//!
//! - `pending`: the response future yields once before answering, as a real
//!   transport waits on I/O, so every timer in the stack is really registered
//!   in tokio's timer wheel and removed again;
//! - `ready`: the response is ready at the first poll: the layers' own code.
//!
//! Cases, each over both upstreams, with the key their results are written
//! under:
//!
//! | case | key | what |
//! |---|---|---|
//! | `baseline (no layer)` | `baseline` | the upstream alone |
//! | `client/default stack` | `client_default` | `palisade::Client` with its default stack and the upstream as its transport: `client.get(url).send().await`, the body read with `bytes()` |
//! | `client/bare stack` | `client_bare` | the same client with no layer (`StackConfig::bare()`): the facade's own cost |
//! | `stack/palisade standard` | `stack_palisade` | the layers composed with `ServiceBuilder` in the facade's order: deadline, retry, breaker, concurrency, attempt timeout, body timeout |
//! | `layer/deadline` | `layer_deadline` | palisade's layers, each alone, with their defaults |
//! | `layer/retry` | `layer_retry` | |
//! | `layer/breaker` | `layer_breaker` | |
//! | `layer/rate limit` | `layer_rate_limit` | a quota no run reaches |
//! | `layer/concurrency` | `layer_concurrency` | |
//! | `layer/attempt timeout` | `layer_attempt_timeout` | |
//! | `layer/body timeout` | `layer_body_timeout` | |
//! | `tower/ConcurrencyLimit` | `tower_concurrency_limit` | tower's own layers, alone: limit 100, timeout 10 s |
//! | `tower/Timeout` | `tower_timeout` | |
//! | `tower/Retry` | `tower_retry` | with a policy that retries errors up to 3 times |
//! | `stack/tower retry + limit + timeout` | `stack_tower` | the three stacked |
//! | `stack/palisade retry + concurrency + attempt timeout` | `stack_palisade_three` | palisade's layers doing the same jobs |
//! | `stack/palisade retry + breaker + concurrency + attempt timeout` | `stack_palisade_four` | palisade's layers doing the four jobs tower-resilience's stack does |
//! | `stack/tower-resilience retry + breaker + bulkhead + time limiter` | `stack_resilience` | tower-resilience 0.13's stack, retry outermost as in palisade, set up as close to palisade's defaults as its settings reach (`resilience_stack` and the functions above it say how) |
//! | `stack/tower-resilience, count-based breaker window` | `stack_resilience_count` | the same with the breaker reading tower-resilience's default window, the last 100 calls, instead of the last 30 s (see below) |
//! | `tower-resilience/baseline (no layer)` | `resilience_baseline` | the request adapter (below) alone |
//! | `tower-resilience/retry` | `resilience_retry` | its retry alone, next to `layer_retry` |
//! | `tower-resilience/circuit breaker` | `resilience_breaker` | its breaker alone, next to `layer_breaker` |
//! | `tower-resilience/circuit breaker, count-based window` | `resilience_breaker_count` | the same over the last 100 calls |
//! | `tower-resilience/bulkhead` | `resilience_bulkhead` | its bulkhead alone, next to `layer_concurrency` |
//! | `tower-resilience/time limiter` | `resilience_time_limiter` | its time limiter alone, next to `layer_attempt_timeout` |
//!
//! tower-resilience's `Retry` clones the request for every attempt and so
//! needs `Req: Clone`, which `http::Request<palisade::Body>` is not. Its rows
//! therefore send `http::Request<Bytes>` (empty body), and an adapter under
//! the stack turns it into `http::Request<palisade::Body>` for the upstream;
//! `resilience_baseline` is that adapter alone.
//!
//! tower-resilience's time-based breaker window (the 30 s window palisade's
//! breaker reads) keeps one record per call and scans every record in the
//! window on every call, under an async mutex. Its cost per call so grows
//! with the calls of the last 30 s, which is what a benchmark running
//! tens of thousands of calls a second fills it with: the `*_count` rows
//! show the stack with the count-based window instead, whose cost is flat.
//!
//! Run: `cargo bench -p palisade-bench --bench stack -- --warm-up-time 1 --measurement-time 2`.
//! `PALISADE_BENCH_FILTER=<substring>` keeps only the cases whose name (as
//! printed, e.g. `ready/layer/retry`) contains it.
//! After criterion's own report, `summary <case>: ...` lines give each
//! case's median time per call over interleaved rounds, its fastest round,
//! and its allocations and bytes per call.
//!
//! # Results
//!
//! In benchmark mode (`cargo bench`, not `cargo test --benches`), the run
//! writes `micro.json` with `palisade_bench::results::Results`, for each
//! case that ran, with `<variant>` `ready` or `pending` and `<key>` from the
//! table above:
//!
//! - `<variant>_<key>_ns`: median nanoseconds per call over the interleaved
//!   rounds;
//! - `<variant>_<key>_allocs`, `<variant>_<key>_bytes`: heap allocations and
//!   bytes allocated per call;
//! - `<variant>_<a>_to_<b>_ratio`: the median over the rounds of `a`'s time
//!   divided by `b`'s in the same round (above 1: `a` is slower), for the
//!   pairs in `RATIOS` below when both ran;
//! - `<variant>_<a>_over_<b>_ns`: the median over the rounds of `a`'s time
//!   per call minus `b`'s, for the pairs in `DIFFERENCES` below;
//!   `<variant>_<a>_over_<b>_allocs` likewise for allocations per call;
//! - `rounds`, `calls_per_round`, `alloc_calls`: the workload;
//! - `cmd` (text): the command that reproduces the figures;
//!   `resilience_note` (text): how tower-resilience was set up.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::poll_fn;
use std::hint::black_box;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use palisade::breaker::BreakerLayer;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::RetryLayer;
use palisade::timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer};
use palisade::{Body, StackConfig};
use palisade_bench::peers::{
    RESILIENCE_NOTE, Window, breaker as resilience_breaker, bulkhead as resilience_bulkhead,
    resilience_stack, retry as resilience_retry, time_limiter as resilience_time_limiter,
};
use palisade_bench::results::{Results, median};
use palisade_bench::upstream::{Res, pending, ready};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_resilience::circuitbreaker::CircuitBreakerError;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const URL: &str = "http://upstream.bench/items";

/// tower's `Retry` needs a policy; this one retries errors up to 3 times
/// and never a response, the least a retry layer does.
#[derive(Clone, Copy)]
struct RetryErrors(usize);

impl<Res, E> tower::retry::Policy<Request<Body>, Res, E> for RetryErrors {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Body>,
        result: &mut Result<Res, E>,
    ) -> Option<Self::Future> {
        match result {
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        let body = req.body().try_clone().ok()?;
        let mut clone = Request::new(body);
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.headers_mut() = req.headers().clone();
        Some(clone)
    }
}

// ---------------------------------------------------------------------------
// tower-resilience 0.13, set up as close to palisade's defaults as it
// reaches: `palisade_bench::peers` says how.

/// The request tower-resilience's rows send: its `Retry` needs `Req: Clone`,
/// and `http::Request<Bytes>` is (`http::Request<palisade::Body>` is not).
type CloneReq = Request<Bytes>;

/// Turns tower-resilience's cloneable request into the upstream's
/// `http::Request<palisade::Body>`, under its stack.
fn adapter<S>(upstream: S) -> tower::util::MapRequest<S, fn(CloneReq) -> Request<Body>> {
    tower::util::MapRequest::new(upstream, |req: CloneReq| req.map(Body::from))
}

// ---------------------------------------------------------------------------

/// One call: ready, call, await the head, read the body to its end.
async fn one_call<Req, S, B>(svc: &mut S, req: Req)
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let mut body = pin!(res.into_body());
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        black_box(frame.unwrap());
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Runs `n` calls on the runtime and returns the time they took.
type Run = Box<dyn FnMut(&Runtime, u64) -> Duration>;

/// Calls with `http::Request<palisade::Body>`, as palisade's stack takes.
fn run<S, B>(svc: S) -> Run
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    run_with(svc, |uri| {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = uri.clone();
        req
    })
}

/// Calls with tower-resilience's cloneable `http::Request<Bytes>`.
fn run_clone<S, B>(svc: S) -> Run
where
    S: Service<CloneReq, Response = Response<B>> + 'static,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    run_with(svc, |uri| {
        let mut req = Request::new(Bytes::new());
        *req.uri_mut() = uri.clone();
        req
    })
}

fn run_with<Req, S, B>(mut svc: S, make: fn(&Uri) -> Req) -> Run
where
    Req: 'static,
    S: Service<Req, Response = Response<B>> + 'static,
    S::Error: Debug,
    B: http_body::Body,
    B::Error: Debug,
{
    let uri = Uri::from_static(URL);
    Box::new(move |rt, n| {
        rt.block_on(async {
            let start = tokio::time::Instant::now();
            for _ in 0..n {
                one_call(&mut svc, make(&uri)).await;
            }
            start.elapsed()
        })
    })
}

fn run_client(client: palisade::Client) -> Run {
    Box::new(move |rt, n| {
        rt.block_on(async {
            let start = tokio::time::Instant::now();
            for _ in 0..n {
                let res = client.get(URL).send().await.unwrap();
                black_box(res.bytes().await.unwrap());
            }
            start.elapsed()
        })
    })
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The facade's standard order and defaults, composed by hand.
fn palisade_standard<S>(
    upstream: S,
) -> impl Service<
    Request<Body>,
    Response = Response<impl http_body::Body<Error = impl Debug>>,
    Error = impl Debug,
>
where
    S: Service<Request<Body>, Response = Res, Error = Infallible> + Clone,
{
    ServiceBuilder::new()
        .layer(DeadlineLayer::new(secs(30)).unwrap())
        .layer(RetryLayer::default())
        .layer(BreakerLayer::new())
        .layer(ConcurrencyLimitLayer::default())
        .layer(AttemptTimeoutLayer::new(secs(10)).unwrap())
        .layer(BodyTimeoutLayer::default())
        .service(upstream)
}

/// One case: its printed name (`<variant>/<name>`), its results key
/// (`<variant>_<key>`) and how to run it.
struct Case {
    name: &'static str,
    key: &'static str,
    run: Run,
}

macro_rules! case {
    ($cases:expr, $variant:literal, $name:literal, $key:literal, $run:expr) => {
        $cases.push(Case {
            name: concat!($variant, "/", $name),
            key: concat!($variant, "_", $key),
            run: $run,
        })
    };
}

macro_rules! cases {
    ($cases:expr, $variant:literal, $upstream:expr) => {{
        case!(
            $cases,
            $variant,
            "baseline (no layer)",
            "baseline",
            run($upstream)
        );
        case!(
            $cases,
            $variant,
            "client/default stack",
            "client_default",
            run_client(
                palisade::Client::builder()
                    .transport($upstream)
                    .build()
                    .unwrap(),
            )
        );
        case!(
            $cases,
            $variant,
            "client/bare stack",
            "client_bare",
            run_client(
                palisade::Client::builder()
                    .stack(|_| StackConfig::bare())
                    .transport($upstream)
                    .build()
                    .unwrap(),
            )
        );
        case!(
            $cases,
            $variant,
            "stack/palisade standard",
            "stack_palisade",
            run(palisade_standard($upstream))
        );
        case!(
            $cases,
            $variant,
            "layer/deadline",
            "layer_deadline",
            run(DeadlineLayer::new(secs(30)).unwrap().layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "layer/retry",
            "layer_retry",
            run(RetryLayer::default().layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "layer/breaker",
            "layer_breaker",
            run(BreakerLayer::new().layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "layer/rate limit",
            "layer_rate_limit",
            // A quota no benchmark reaches: the cost of the check alone.
            run(RateLimitLayer::new(
                Quota::per_second(1_000_000_000)
                    .unwrap()
                    .with_burst(1_000_000)
                    .unwrap(),
            )
            .layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "layer/concurrency",
            "layer_concurrency",
            run(ConcurrencyLimitLayer::default().layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "layer/attempt timeout",
            "layer_attempt_timeout",
            run(AttemptTimeoutLayer::new(secs(10)).unwrap().layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "layer/body timeout",
            "layer_body_timeout",
            run(BodyTimeoutLayer::default().layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "tower/ConcurrencyLimit",
            "tower_concurrency_limit",
            run(tower::limit::ConcurrencyLimitLayer::new(100).layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "tower/Timeout",
            "tower_timeout",
            run(tower::timeout::TimeoutLayer::new(secs(10)).layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "tower/Retry",
            "tower_retry",
            run(tower::retry::RetryLayer::new(RetryErrors(3)).layer($upstream))
        );
        case!(
            $cases,
            $variant,
            "stack/tower retry + limit + timeout",
            "stack_tower",
            run(ServiceBuilder::new()
                .layer(tower::retry::RetryLayer::new(RetryErrors(3)))
                .layer(tower::limit::ConcurrencyLimitLayer::new(100))
                .layer(tower::timeout::TimeoutLayer::new(secs(10)))
                .service($upstream))
        );
        case!(
            $cases,
            $variant,
            "stack/palisade retry + concurrency + attempt timeout",
            "stack_palisade_three",
            run(ServiceBuilder::new()
                .layer(RetryLayer::default())
                .layer(ConcurrencyLimitLayer::default())
                .layer(AttemptTimeoutLayer::new(secs(10)).unwrap())
                .service($upstream))
        );
        case!(
            $cases,
            $variant,
            "stack/palisade retry + breaker + concurrency + attempt timeout",
            "stack_palisade_four",
            run(ServiceBuilder::new()
                .layer(RetryLayer::default())
                .layer(BreakerLayer::new())
                .layer(ConcurrencyLimitLayer::default())
                .layer(AttemptTimeoutLayer::new(secs(10)).unwrap())
                .service($upstream))
        );
        case!(
            $cases,
            $variant,
            "stack/tower-resilience retry + breaker + bulkhead + time limiter",
            "stack_resilience",
            run_clone(resilience_stack(adapter($upstream), Window::Time))
        );
        case!(
            $cases,
            $variant,
            "stack/tower-resilience, count-based breaker window",
            "stack_resilience_count",
            run_clone(resilience_stack(adapter($upstream), Window::Count))
        );
        case!(
            $cases,
            $variant,
            "tower-resilience/baseline (no layer)",
            "resilience_baseline",
            run_clone(adapter($upstream))
        );
        case!(
            $cases,
            $variant,
            "tower-resilience/retry",
            "resilience_retry",
            // Alone, the retry sits directly on the upstream: its error type
            // is the upstream's, wrapped as the breaker's would be.
            run_clone(
                resilience_retry().layer(adapter($upstream).map_err(CircuitBreakerError::Inner))
            )
        );
        case!(
            $cases,
            $variant,
            "tower-resilience/circuit breaker",
            "resilience_breaker",
            run_clone(resilience_breaker(Window::Time).layer(adapter($upstream)))
        );
        case!(
            $cases,
            $variant,
            "tower-resilience/circuit breaker, count-based window",
            "resilience_breaker_count",
            run_clone(resilience_breaker(Window::Count).layer(adapter($upstream)))
        );
        case!(
            $cases,
            $variant,
            "tower-resilience/bulkhead",
            "resilience_bulkhead",
            run_clone(resilience_bulkhead().layer(adapter($upstream)))
        );
        case!(
            $cases,
            $variant,
            "tower-resilience/time limiter",
            "resilience_time_limiter",
            run_clone(resilience_time_limiter().layer(adapter($upstream)))
        );
    }};
}

/// The pairs whose per-round time ratio is written, as
/// `<variant>_<a>_to_<b>_ratio`: each peer against the palisade rows doing
/// the same jobs.
const RATIOS: [(&str, &str); 10] = [
    ("stack_resilience", "stack_palisade_four"),
    ("stack_resilience_count", "stack_palisade_four"),
    ("stack_resilience", "stack_palisade"),
    ("resilience_retry", "layer_retry"),
    ("resilience_breaker", "layer_breaker"),
    ("resilience_breaker_count", "layer_breaker"),
    ("resilience_bulkhead", "layer_concurrency"),
    ("resilience_time_limiter", "layer_attempt_timeout"),
    ("stack_tower", "stack_palisade_three"),
    ("client_default", "stack_palisade"),
];

/// The pairs whose per-round time difference is written, as
/// `<variant>_<a>_over_<b>_ns`: what the client and the layers add to the
/// upstream alone, the figure issue 8's "under 1 µs" aim is about.
const DIFFERENCES: [(&str, &str); 3] = [
    ("client_default", "baseline"),
    ("client_bare", "baseline"),
    ("stack_palisade", "baseline"),
];

const ALLOC_CALLS: u64 = 10_000;
const ROUNDS: usize = 15;
const ROUND_CALLS: u64 = 10_000;

/// Whether criterion measures (`cargo bench`) rather than tests each case
/// once (`cargo test --benches`) or lists them: only then are the
/// interleaved rounds run and the results written.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

/// The command that reproduces this run.
fn command() -> String {
    let mut cmd = String::new();
    if let Ok(filter) = std::env::var("PALISADE_BENCH_FILTER") {
        cmd.push_str(&format!("PALISADE_BENCH_FILTER='{filter}' "));
    }
    cmd.push_str("cargo bench -p palisade-bench --bench stack --");
    for arg in std::env::args().skip(1).filter(|a| a != "--bench") {
        cmd.push(' ');
        cmd.push_str(&arg);
    }
    cmd
}

fn stack(c: &mut Criterion) {
    let rt = runtime();
    let mut all: Vec<Case> = Vec::new();
    // Layers that keep keyed state or spawn nothing still need a runtime
    // context when they are built (timers, clocks).
    let _guard = rt.enter();
    cases!(all, "pending", pending());
    cases!(all, "ready", ready());
    drop(_guard);
    // `PALISADE_BENCH_FILTER=client` keeps only the cases whose name
    // contains it, in criterion's report, the summary and the results alike.
    if let Ok(filter) = std::env::var("PALISADE_BENCH_FILTER") {
        all.retain(|case| case.name.contains(filter.as_str()));
    }

    for case in &mut all {
        let run = &mut case.run;
        c.bench_function(case.name, |b| b.iter_custom(|iters| run(&rt, iters)));
    }
    if !measuring() {
        return;
    }

    // The machine is shared, so criterion's means carry other processes'
    // load. Interleaved rounds expose every case to the same load; the
    // median round is the figure reported, the fastest beside it.
    let mut rounds = vec![Vec::with_capacity(ROUNDS); all.len()];
    for _ in 0..ROUNDS {
        for (i, case) in all.iter_mut().enumerate() {
            rounds[i].push((case.run)(&rt, ROUND_CALLS));
        }
    }
    let per_call = |d: Duration| d.as_nanos() as f64 / ROUND_CALLS as f64;
    let mut results = Results::new("micro");
    let mut allocations = vec![0.0; all.len()];
    for (i, case) in all.iter_mut().enumerate() {
        (case.run)(&rt, 100); // warm
        let region = Region::new(GLOBAL);
        (case.run)(&rt, ALLOC_CALLS);
        let stats = region.change();
        let times: Vec<f64> = rounds[i].iter().map(|d| per_call(*d)).collect();
        let ns = median(&times);
        let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
        let allocs = stats.allocations as f64 / ALLOC_CALLS as f64;
        allocations[i] = allocs;
        let bytes = stats.bytes_allocated as f64 / ALLOC_CALLS as f64;
        println!(
            "summary {}: {ns:.0} ns/call (median of {ROUNDS} interleaved rounds), {fastest:.0} ns/call (fastest), {allocs:.2} allocations/call, {bytes:.1} bytes/call",
            case.name,
        );
        results
            .number(&format!("{}_ns", case.key), ns)
            .number(&format!("{}_allocs", case.key), allocs)
            .number(&format!("{}_bytes", case.key), bytes);
    }

    let index = |key: &str| all.iter().position(|case| case.key == key);
    for variant in ["pending", "ready"] {
        for (a, b) in RATIOS {
            let (Some(ia), Some(ib)) = (
                index(&format!("{variant}_{a}")),
                index(&format!("{variant}_{b}")),
            ) else {
                continue;
            };
            let per_round: Vec<f64> = rounds[ia]
                .iter()
                .zip(&rounds[ib])
                .map(|(ta, tb)| ta.as_secs_f64() / tb.as_secs_f64())
                .collect();
            let ratio = median(&per_round);
            println!("ratio {variant}: {a} / {b} = {ratio:.3} (median per-round ratio)");
            results.number(&format!("{variant}_{a}_to_{b}_ratio"), ratio);
        }
        for (a, b) in DIFFERENCES {
            let (Some(ia), Some(ib)) = (
                index(&format!("{variant}_{a}")),
                index(&format!("{variant}_{b}")),
            ) else {
                continue;
            };
            let per_round: Vec<f64> = rounds[ia]
                .iter()
                .zip(&rounds[ib])
                .map(|(ta, tb)| per_call(*ta) - per_call(*tb))
                .collect();
            let over = median(&per_round);
            println!("difference {variant}: {a} - {b} = {over:.0} ns/call (median per-round)");
            results.number(&format!("{variant}_{a}_over_{b}_ns"), over);
            let allocs = |i: usize| allocations[i];
            let extra = allocs(ia) - allocs(ib);
            println!("difference {variant}: {a} - {b} = {extra:.2} allocations/call");
            results.number(&format!("{variant}_{a}_over_{b}_allocs"), extra);
        }
    }
    results
        .number("rounds", ROUNDS as f64)
        .number("calls_per_round", ROUND_CALLS as f64)
        .number("alloc_calls", ALLOC_CALLS as f64)
        .text("cmd", command())
        .text(
            "resilience_note",
            format!(
                "{RESILIENCE_NOTE} Here an adapter above the upstream turns its \
                 http::Request<Bytes> into http::Request<palisade::Body> (resilience_baseline \
                 is that adapter alone)."
            ),
        );
    match results.write() {
        Ok(path) => println!("results written to {}", path.display()),
        Err(e) => eprintln!("could not write the results: {e}"),
    }
}

criterion_group!(benches, stack);
criterion_main!(benches);
