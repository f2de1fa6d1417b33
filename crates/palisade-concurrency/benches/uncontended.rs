//! Uncontended cost per call over an in-memory service that answers at once,
//! and heap allocations per call.
//!
//! ```text
//! cargo bench -p palisade-concurrency --bench uncontended -- --warm-up-time 1 --measurement-time 3
//! ```

use std::alloc::System;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use http_body_util::Empty;
use palisade_concurrency::limit::Vegas;
use palisade_concurrency::{ConcurrencyLimitLayer, Limit};
use palisade_core::{BoxError, Global};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[derive(Clone)]
struct Instant200;

impl Service<Request<()>> for Instant200 {
    type Response = Response<Empty<Bytes>>;
    type Error = BoxError;
    type Future = Ready<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        ready(Ok(Response::new(Empty::new())))
    }
}

fn request(uri: &Uri) -> Request<()> {
    let mut r = Request::new(());
    *r.uri_mut() = uri.clone();
    r
}

/// One call: ready, call, poll to completion, drop the response (which
/// returns the permit).
fn once<S>(svc: &mut S, uri: &Uri)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let fut = pin!(svc.call(request(uri)));
    match fut.poll(&mut cx) {
        Poll::Ready(res) => drop(black_box(res.unwrap())),
        Poll::Pending => panic!("uncontended calls complete at once"),
    }
}

fn allocations<S>(name: &str, svc: &mut S, uri: &Uri)
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    once(svc, uri); // the key's state is created on first use
    let n = 10_000;
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        once(svc, uri);
    }
    let stats = region.change();
    println!(
        "{name}: {:.2} allocations/call, {:.1} bytes/call",
        stats.allocations as f64 / n as f64,
        stats.bytes_allocated as f64 / n as f64
    );
}

fn bench(c: &mut Criterion) {
    let uri: Uri = "https://api.example.com/items".parse().unwrap();
    let mut g = c.benchmark_group("uncontended");

    let mut bare = Instant200;
    let mut tower_limit = tower::limit::ConcurrencyLimitLayer::new(100).layer(Instant200);
    let mut fixed = ConcurrencyLimitLayer::default().layer(Instant200);
    let mut fixed_global_key = ConcurrencyLimitLayer::builder()
        .key_fn(Global)
        .build()
        .unwrap()
        .layer(Instant200);
    let mut with_global_cap = ConcurrencyLimitLayer::builder()
        .global_limit(1000)
        .build()
        .unwrap()
        .layer(Instant200);
    let mut vegas = ConcurrencyLimitLayer::builder()
        .limit(Vegas::new())
        .build()
        .unwrap()
        .layer(Instant200);
    let mut fixed_head = ConcurrencyLimitLayer::builder()
        .limit(Limit::fixed(100))
        .body_aware(false)
        .build()
        .unwrap()
        .layer(Instant200);

    g.bench_function("bare service", |b| b.iter(|| once(&mut bare, &uri)));
    g.bench_function("tower ConcurrencyLimit(100)", |b| {
        b.iter(|| once(&mut tower_limit, &uri))
    });
    g.bench_function("fixed, by authority", |b| b.iter(|| once(&mut fixed, &uri)));
    g.bench_function("fixed, by authority, permit released at head", |b| {
        b.iter(|| once(&mut fixed_head, &uri))
    });
    g.bench_function("fixed, one global key", |b| {
        b.iter(|| once(&mut fixed_global_key, &uri))
    });
    g.bench_function("fixed, by authority + global cap", |b| {
        b.iter(|| once(&mut with_global_cap, &uri))
    });
    g.bench_function("vegas, by authority", |b| b.iter(|| once(&mut vegas, &uri)));
    g.finish();

    allocations("bare service", &mut bare, &uri);
    allocations("tower ConcurrencyLimit(100)", &mut tower_limit, &uri);
    allocations("fixed, by authority", &mut fixed, &uri);
    allocations("fixed, one global key", &mut fixed_global_key, &uri);
    allocations(
        "fixed, by authority + global cap",
        &mut with_global_cap,
        &uri,
    );
    allocations("vegas, by authority", &mut vegas, &uri);
}

criterion_group!(benches, bench);
criterion_main!(benches);
