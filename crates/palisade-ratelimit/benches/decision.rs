//! ns per rate-limit decision, keyed and unkeyed, and heap allocations per
//! call, over an in-memory service.
//!
//! `cargo bench -p palisade-ratelimit --bench decision -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use palisade_core::keyed::{KeyedConfig, KeyedMap};
use palisade_core::{Global, Key};
use palisade_ratelimit::{LocalBackend, LocalLimiter, Quota, RateLimitBackend, RateLimitLayer};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

/// So generous that no decision in a benchmark run is ever refused.
fn unlimited() -> Quota {
    Quota::per_period(1_000_000_000, Duration::from_secs(1)).unwrap()
}

fn upstream() -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = Infallible,
    Future = std::future::Ready<Result<http::Response<()>, Infallible>>,
> + Clone {
    tower::service_fn(|_req: http::Request<()>| std::future::ready(Ok(http::Response::new(()))))
}

fn requests(hosts: usize) -> Vec<http::Request<()>> {
    (0..hosts)
        .map(|i| {
            http::Request::get(format!("https://api-{i}.example.com/items"))
                .body(())
                .unwrap()
        })
        .collect()
}

fn clone_req(r: &http::Request<()>) -> http::Request<()> {
    let mut req = http::Request::new(());
    *req.uri_mut() = r.uri().clone();
    req
}

fn allocs_per_call(label: &str, mut call: impl FnMut()) {
    const N: usize = 10_000;
    for _ in 0..1000 {
        call();
    }
    let region = Region::new(GLOBAL);
    for _ in 0..N {
        call();
    }
    let s = region.change();
    println!(
        "{label}: {:.2} allocations and {:.1} bytes per call",
        s.allocations as f64 / N as f64,
        s.bytes_allocated as f64 / N as f64
    );
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit");

    // The decision alone: governor's GCRA on tokio's clock.
    let limiter = LocalLimiter::new(&unlimited());
    g.bench_function("decision/governor_check", |b| {
        b.iter(|| black_box(limiter.check()))
    });

    // The backend's decision, through its future.
    let backend = LocalBackend::new();
    let state = backend.key_state(&Key::global(), &unlimited());
    g.bench_function("decision/backend_check", |b| {
        b.iter(|| black_box(backend.check(&Key::global(), &state).now_or_never()))
    });

    // A decision as the layer makes it. Unkeyed (the Global key), the layer
    // keeps the one entry outside the map: an Arc clone and the check.
    let global = std::sync::Arc::new(LocalLimiter::new(&unlimited()));
    g.bench_function("decision/unkeyed", |b| {
        b.iter(|| {
            let l = global.clone();
            black_box(l.check())
        })
    });
    // Keyed, the lookup in the shared, evicting KeyedMap, over 100 origins.
    let map: KeyedMap<LocalLimiter> = KeyedMap::new(KeyedConfig::default());
    let keys: Vec<Key> = requests(100).iter().map(|r| Key::origin(r.uri())).collect();
    let mut k = 0;
    g.bench_function("decision/keyed_100_origins", |b| {
        b.iter(|| {
            k = (k + 1) % keys.len();
            let l = map.get_or_insert_with(&keys[k], || LocalLimiter::new(&unlimited()));
            black_box(l.check())
        })
    });

    // The whole layer around an in-memory service, unkeyed (Global).
    let mut unkeyed = RateLimitLayer::builder(unlimited())
        .reject()
        .key_fn(Global)
        .build()
        .unwrap()
        .layer(upstream());
    let reqs = requests(1);
    g.bench_function("layer/unkeyed", |b| {
        b.iter(|| {
            let fut = unkeyed.call(clone_req(&reqs[0]));
            black_box(fut.now_or_never())
        })
    });

    // Keyed by authority, over 100 hosts.
    let mut keyed = RateLimitLayer::builder(unlimited())
        .reject()
        .build()
        .unwrap()
        .layer(upstream());
    let reqs = requests(100);
    let mut i = 0;
    g.bench_function("layer/keyed_100_hosts", |b| {
        b.iter(|| {
            i = (i + 1) % reqs.len();
            let fut = keyed.call(clone_req(&reqs[i]));
            black_box(fut.now_or_never())
        })
    });

    // A refusal: the quota is spent, the request fails at once.
    let mut refusing = RateLimitLayer::builder(Quota::per_minute(1).unwrap())
        .reject()
        .key_fn(Global)
        .build()
        .unwrap()
        .layer(upstream());
    let one = requests(1);
    let _ = refusing.call(clone_req(&one[0])).now_or_never();
    g.bench_function("layer/refused", |b| {
        b.iter(|| black_box(refusing.call(clone_req(&one[0])).now_or_never()))
    });
    g.finish();

    // The bare service and the request clone, to subtract.
    let mut bare = upstream();
    c.bench_function("baseline/bare_service", |b| {
        b.iter(|| black_box(bare.call(clone_req(&reqs[0])).now_or_never()))
    });

    allocs_per_call("baseline/bare_service", || {
        let _ = bare.call(clone_req(&reqs[0])).now_or_never();
    });
    allocs_per_call("layer/unkeyed", || {
        let _ = unkeyed.call(clone_req(&reqs[0])).now_or_never();
    });
    let mut j = 0;
    allocs_per_call("layer/keyed_100_hosts", || {
        j = (j + 1) % reqs.len();
        let _ = keyed.call(clone_req(&reqs[j])).now_or_never();
    });
    allocs_per_call("layer/refused", || {
        let _ = refusing.call(clone_req(&one[0])).now_or_never();
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
