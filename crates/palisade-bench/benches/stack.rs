//! Nanoseconds and heap allocations per call of palisade's standard stack,
//! of each of its layers alone, and of tower's own layers side by side, over
//! an in-memory service.
//!
//! Two in-memory upstreams:
//!
//! - `pending`: the response future yields once before answering, as a real
//!   transport waits on I/O, so every timer in the stack is really registered
//!   in tokio's timer wheel and removed again;
//! - `ready`: the response is ready at the first poll: the layers' own code.
//!
//! Cases, each over both upstreams:
//!
//! - `client/default stack`: `palisade::Client` with its default stack and
//!   the upstream as its transport, `client.get(url).send().await` and the
//!   body read with `bytes()`; `client/bare stack` is the same client with
//!   no layer at all (`StackConfig::bare()`), the facade's own cost;
//! - `stack/palisade standard`: the layers composed directly with
//!   `ServiceBuilder` in the facade's order (deadline, retry, breaker,
//!   concurrency, attempt timeout, body timeout);
//! - one row per palisade layer alone;
//! - tower's `ConcurrencyLimit`, `Timeout` and `Retry` (with a policy that
//!   retries errors up to 3 times), alone and stacked, next to the
//!   palisade layers doing the same jobs (`stack/palisade retry + concurrency
//!   + attempt timeout`).
//!
//! Run: `cargo bench -p palisade-bench --bench stack -- --warm-up-time 1 --measurement-time 2`.
//! `PALISADE_BENCH_FILTER=<substring>` keeps only the matching cases.
//! After criterion's own report, `summary <case>: ...` lines give each
//! case's median time per call over interleaved rounds, its fastest round,
//! and its allocations and bytes per call.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use http_body_util::Full;
use palisade::breaker::BreakerLayer;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::RetryLayer;
use palisade::timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer};
use palisade::{Body, StackConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const URL: &str = "http://upstream.bench/items";

type Res = Response<Full<Bytes>>;

fn ok() -> Res {
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

fn pending() -> impl Service<
    Request<Body>,
    Response = Res,
    Error = Infallible,
    Future = impl Future<Output = Result<Res, Infallible>> + Send,
> + Clone
+ Send
+ Sync {
    service_fn(|_req: Request<Body>| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(ok())
    })
}

fn ready() -> impl Service<
    Request<Body>,
    Response = Res,
    Error = Infallible,
    Future = impl Future<Output = Result<Res, Infallible>> + Send,
> + Clone
+ Send
+ Sync {
    service_fn(|_req: Request<Body>| std::future::ready(Ok::<_, Infallible>(ok())))
}

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

/// One call: ready, call, await the head, read the body to its end.
async fn one_call<S, B>(svc: &mut S, uri: &Uri)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = uri.clone();
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

fn run<S, B>(mut svc: S) -> Run
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let uri = Uri::from_static(URL);
    Box::new(move |rt, n| {
        rt.block_on(async {
            let start = tokio::time::Instant::now();
            for _ in 0..n {
                one_call(&mut svc, &uri).await;
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
    Response = Response<impl http_body::Body<Error = impl std::fmt::Debug>>,
    Error = impl std::fmt::Debug,
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

macro_rules! cases {
    ($cases:expr, $variant:literal, $upstream:expr) => {{
        $cases.push((concat!($variant, "/baseline (no layer)"), run($upstream)));
        $cases.push((
            concat!($variant, "/client/default stack"),
            run_client(
                palisade::Client::builder()
                    .transport($upstream)
                    .build()
                    .unwrap(),
            ),
        ));
        $cases.push((
            concat!($variant, "/client/bare stack"),
            run_client(
                palisade::Client::builder()
                    .stack(|_| StackConfig::bare())
                    .transport($upstream)
                    .build()
                    .unwrap(),
            ),
        ));
        $cases.push((
            concat!($variant, "/stack/palisade standard"),
            run(palisade_standard($upstream)),
        ));
        $cases.push((
            concat!($variant, "/layer/deadline"),
            run(DeadlineLayer::new(secs(30)).unwrap().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/layer/retry"),
            run(RetryLayer::default().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/layer/breaker"),
            run(BreakerLayer::new().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/layer/rate limit"),
            // A quota no benchmark reaches: the cost of the check alone.
            run(RateLimitLayer::new(
                Quota::per_second(1_000_000_000)
                    .unwrap()
                    .with_burst(1_000_000)
                    .unwrap(),
            )
            .layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/layer/concurrency"),
            run(ConcurrencyLimitLayer::default().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/layer/attempt timeout"),
            run(AttemptTimeoutLayer::new(secs(10)).unwrap().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/layer/body timeout"),
            run(BodyTimeoutLayer::default().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/tower/ConcurrencyLimit"),
            run(tower::limit::ConcurrencyLimitLayer::new(100).layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/tower/Timeout"),
            run(tower::timeout::TimeoutLayer::new(secs(10)).layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/tower/Retry"),
            run(tower::retry::RetryLayer::new(RetryErrors(3)).layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/stack/tower retry + limit + timeout"),
            run(ServiceBuilder::new()
                .layer(tower::retry::RetryLayer::new(RetryErrors(3)))
                .layer(tower::limit::ConcurrencyLimitLayer::new(100))
                .layer(tower::timeout::TimeoutLayer::new(secs(10)))
                .service($upstream)),
        ));
        $cases.push((
            concat!(
                $variant,
                "/stack/palisade retry + concurrency + attempt timeout"
            ),
            run(ServiceBuilder::new()
                .layer(RetryLayer::default())
                .layer(ConcurrencyLimitLayer::default())
                .layer(AttemptTimeoutLayer::new(secs(10)).unwrap())
                .service($upstream)),
        ));
    }};
}

const ALLOC_CALLS: u64 = 10_000;
const ROUNDS: usize = 15;
const ROUND_CALLS: u64 = 10_000;

fn stack(c: &mut Criterion) {
    let rt = runtime();
    let mut all: Vec<(&'static str, Run)> = Vec::new();
    // Layers that keep keyed state or spawn nothing still need a runtime
    // context when they are built (timers, clocks).
    let _guard = rt.enter();
    cases!(all, "pending", pending());
    cases!(all, "ready", ready());
    drop(_guard);
    // `PALISADE_BENCH_FILTER=client` keeps only the cases whose name
    // contains it, in criterion's report and in the summary alike.
    if let Ok(filter) = std::env::var("PALISADE_BENCH_FILTER") {
        all.retain(|(name, _)| name.contains(filter.as_str()));
    }

    for (name, run) in &mut all {
        c.bench_function(name, |b| b.iter_custom(|iters| run(&rt, iters)));
    }

    // The machine is shared, so criterion's means carry other processes'
    // load. Interleaved rounds expose every case to the same load; the
    // median round is the figure reported, the fastest beside it.
    let mut rounds = vec![Vec::with_capacity(ROUNDS); all.len()];
    for _ in 0..ROUNDS {
        for (i, (_, run)) in all.iter_mut().enumerate() {
            rounds[i].push(run(&rt, ROUND_CALLS));
        }
    }
    for (i, (name, run)) in all.iter_mut().enumerate() {
        run(&rt, 100); // warm
        let region = Region::new(GLOBAL);
        run(&rt, ALLOC_CALLS);
        let stats = region.change();
        let times = &mut rounds[i];
        times.sort_unstable();
        let per_call = |d: Duration| d.as_nanos() as f64 / ROUND_CALLS as f64;
        println!(
            "summary {name}: {:.0} ns/call (median of {ROUNDS} interleaved rounds), {:.0} ns/call (fastest), {:.2} allocations/call, {:.1} bytes/call",
            per_call(times[ROUNDS / 2]),
            per_call(times[0]),
            stats.allocations as f64 / ALLOC_CALLS as f64,
            stats.bytes_allocated as f64 / ALLOC_CALLS as f64,
        );
    }
}

criterion_group!(benches, stack);
criterion_main!(benches);
