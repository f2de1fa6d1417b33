//! ns per call and heap allocations per call through the breaker, over an
//! in-memory service that is always ready and answers at once.
//!
//! `cargo bench -p palisade-breaker --bench breaker -- --warm-up-time 1 --measurement-time 3`

use std::alloc::System;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use http::{Request, Response, StatusCode, Uri};
use palisade_breaker::{BreakerLayer, Window};
use palisade_core::keyed::{KeyedConfig, KeyedMap};
use palisade_core::{ByAuthority, Global, KeyFn};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Answers every request at once with the current status.
#[derive(Clone)]
struct Upstream(Arc<AtomicU16>);

impl Service<Request<()>> for Upstream {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        let mut res = Response::new(());
        *res.status_mut() = StatusCode::from_u16(self.0.load(Ordering::Relaxed)).unwrap();
        std::future::ready(Ok(res))
    }
}

fn poll_now<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("the upstream is always ready"),
    }
}

/// One call, request construction included (it allocates nothing with a
/// static URI).
fn one_call<S>(svc: &mut S, uri: &Uri) -> bool
where
    S: Service<Request<()>, Response = Response<()>>,
{
    let mut req = Request::new(());
    *req.uri_mut() = uri.clone();
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    poll_now(svc.call(req)).is_ok()
}

/// Average heap allocations and bytes per call over `n` calls.
fn allocs_per_call<S>(svc: &mut S, uri: &Uri, n: usize) -> (f64, f64)
where
    S: Service<Request<()>, Response = Response<()>>,
{
    for _ in 0..100 {
        one_call(svc, uri);
    }
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        black_box(one_call(svc, uri));
    }
    let stats = region.change();
    (
        stats.allocations as f64 / n as f64,
        stats.bytes_allocated as f64 / n as f64,
    )
}

type Case = (&'static str, Box<dyn FnMut() -> bool>);

/// Every case, each a closure making one call.
fn cases() -> Vec<Case> {
    let uri = Uri::from_static("http://api.example.com/items");
    let status = Arc::new(AtomicU16::new(200));
    let hour = Duration::from_secs(3600);

    let bare = Upstream(status.clone());
    // Polly's standard breaker: 30 s time window in 10 buckets.
    let time_window = BreakerLayer::new().layer(Upstream(status.clone()));
    let count_window = BreakerLayer::builder()
        .window(Window::count(100))
        .build()
        .unwrap()
        .layer(Upstream(status.clone()));
    let consecutive = BreakerLayer::builder()
        .without_failure_ratio()
        .consecutive_failures(5)
        .build()
        .unwrap()
        .layer(Upstream(status.clone()));
    let open = BreakerLayer::builder()
        .without_failure_ratio()
        .consecutive_failures(1)
        .break_duration(hour)
        .max_break_duration(hour)
        .idle_timeout(2 * hour)
        .build()
        .unwrap()
        .layer(Upstream(status.clone()));
    // The same two breakers under one global key: what the breaker costs
    // without palisade-core's per-origin key (build, hash, compare).
    let global_closed = BreakerLayer::builder()
        .key(Global)
        .build()
        .unwrap()
        .layer(Upstream(status.clone()));
    let global_open = BreakerLayer::builder()
        .key(Global)
        .without_failure_ratio()
        .consecutive_failures(1)
        .break_duration(hour)
        .max_break_duration(hour)
        .idle_timeout(2 * hour)
        .build()
        .unwrap()
        .layer(Upstream(status.clone()));
    // Trip the open-path breakers once.
    status.store(500, Ordering::Relaxed);
    let (mut o, mut go) = (open.clone(), global_open.clone());
    assert!(one_call(&mut o, &uri) && one_call(&mut go, &uri));
    status.store(200, Ordering::Relaxed);
    assert!(!one_call(&mut o, &uri), "the circuit should be open");
    assert!(!one_call(&mut go, &uri), "the circuit should be open");

    let n = 100_000;
    let report = |name: &str, (a, b): (f64, f64)| {
        println!("allocations per call  {name:<30} {a:.3} allocs, {b:.1} bytes");
    };
    if std::env::var_os("PALISADE_BENCH_LOOP").is_none() {
        report("bare_service", allocs_per_call(&mut bare.clone(), &uri, n));
        report(
            "closed_time_window",
            allocs_per_call(&mut time_window.clone(), &uri, n),
        );
        report(
            "closed_count_window",
            allocs_per_call(&mut count_window.clone(), &uri, n),
        );
        report(
            "closed_consecutive",
            allocs_per_call(&mut consecutive.clone(), &uri, n),
        );
        report(
            "open_fast_fail",
            allocs_per_call(&mut open.clone(), &uri, n),
        );
        report(
            "global_key_closed_time_window",
            allocs_per_call(&mut global_closed.clone(), &uri, n),
        );
        report(
            "global_key_open_fast_fail",
            allocs_per_call(&mut global_open.clone(), &uri, n),
        );
    }

    vec![
        ("core_key_and_map_lookup", {
            // palisade-core alone: the origin key and the keyed-map lookup
            // every keyed layer does per call, request built as in one_call.
            let map: KeyedMap<u8> = KeyedMap::new(KeyedConfig::default());
            let u = uri.clone();
            Box::new(move || {
                let mut req = Request::new(());
                *req.uri_mut() = u.clone();
                let key = ByAuthority.key(&req);
                *map.get_or_insert_with(&key, || 0) == 0
            })
        }),
        ("bare_service", {
            let mut s = bare.clone();
            let u = uri.clone();
            Box::new(move || one_call(&mut s, &u))
        }),
        ("closed_time_window", {
            let mut s = time_window.clone();
            let u = uri.clone();
            Box::new(move || one_call(&mut s, &u))
        }),
        ("closed_count_window", {
            let mut s = count_window.clone();
            let u = uri.clone();
            Box::new(move || one_call(&mut s, &u))
        }),
        ("closed_consecutive", {
            let mut s = consecutive.clone();
            let u = uri.clone();
            Box::new(move || one_call(&mut s, &u))
        }),
        ("open_fast_fail", {
            let mut s = open.clone();
            let u = uri.clone();
            Box::new(move || one_call(&mut s, &u))
        }),
        ("global_key_closed_time_window", {
            let mut s = global_closed.clone();
            let u = uri.clone();
            Box::new(move || one_call(&mut s, &u))
        }),
        ("global_key_open_fast_fail", {
            let mut s = global_open.clone();
            let u = uri.clone();
            Box::new(move || one_call(&mut s, &u))
        }),
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    for (name, mut f) in cases() {
        g.bench_function(name, |b| b.iter(|| black_box(f())));
    }
    g.finish();
}

/// `PALISADE_BENCH_LOOP=<case>:<n>` runs one case `n` times and nothing else,
/// so that `perf stat` can read CPU time and instructions per call, which a
/// loaded machine does not inflate the way it inflates wall time.
fn run_loop(spec: &str) {
    let (name, n) = spec
        .split_once(':')
        .expect("PALISADE_BENCH_LOOP=<case>:<n>");
    let n: u64 = n.parse().expect("a call count");
    let (_, mut f) = cases()
        .into_iter()
        .find(|(c, _)| *c == name)
        .expect("a known case");
    for _ in 0..n {
        black_box(f());
    }
}

criterion_group!(benches, bench);

fn main() {
    if let Some(spec) = std::env::var_os("PALISADE_BENCH_LOOP") {
        run_loop(spec.to_str().expect("utf-8"));
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
