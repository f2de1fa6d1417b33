//! ns and heap allocations per call for `Retry` (and `Hedge`) over an
//! in-memory service that succeeds the first time.
//!
//! `cargo bench -p palisade-retry --bench retry -- --warm-up-time 1 --measurement-time 3`
//!
//! For every case it prints, before criterion's own report:
//! - `allocations <case>`: allocations and bytes per call, counted with
//!   `stats_alloc` over 10 000 calls after a warm-up;
//! - `best <case>`: the best time per call over 25 interleaved rounds of
//!   20 000 calls, the figure least disturbed by other work on the machine.
//!
//! Every case builds its request inside the measured loop, so compare each
//! with `bare`, the same request sent to the upstream with no layer.
//!
//! `PALISADE_BENCH_LOOP=<case>` instead runs that case alone for 1 000 000
//! calls and exits, for `perf stat` / `perf record`.

use std::alloc::System;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::Criterion;
use http::{HeaderValue, Method, Request, Response, Uri, header};
use palisade_core::{Body, BoxError};
use palisade_retry::{HedgeLayer, RetryLayer, RetryPolicy};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn get_request() -> Request<Body> {
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = Uri::from_static("http://api.test/items");
    req
}

fn post_request() -> Request<Body> {
    let mut req = Request::new(Body::from(Bytes::from_static(b"{\"name\":\"widget\"}")));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = Uri::from_static("http://api.test/items");
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer token"),
    );
    req
}

/// Drives one call to completion; the in-memory service never waits.
fn call<S>(svc: &mut S, req: Request<Body>) -> Response<String>
where
    S: Service<Request<Body>, Response = Response<String>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the in-memory service is always ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(res)) => res,
        _ => panic!("the in-memory service answers at once"),
    }
}

fn upstream() -> impl Service<
    Request<Body>,
    Response = Response<String>,
    Error = BoxError,
    Future = std::future::Ready<Result<Response<String>, BoxError>>,
> + Clone {
    service_fn(|_req: Request<Body>| std::future::ready(Ok(Response::new(String::new()))))
}

type Case = (String, Box<dyn FnMut()>);
type MakeRequest = fn() -> Request<Body>;

fn cases_for<S>(name: &str, svc: S, out: &mut Vec<Case>)
where
    S: Service<Request<Body>, Response = Response<String>> + Clone + 'static,
    S::Error: std::fmt::Debug,
{
    let requests: [(&str, MakeRequest); 2] =
        [("get", get_request), ("post_body_2_headers", post_request)];
    for (label, make) in requests {
        let mut svc = svc.clone();
        out.push((
            format!("{name}/{label}"),
            Box::new(move || {
                black_box(call(&mut svc, make()));
            }),
        ));
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    let mut cases = Vec::new();
    cases_for("bare", upstream(), &mut cases);
    cases_for(
        "retry_default",
        RetryLayer::default().layer(upstream()),
        &mut cases,
    );
    let no_budget = RetryPolicy::builder().no_budget().build_layer().unwrap();
    cases_for("retry_no_budget", no_budget.layer(upstream()), &mut cases);
    let keyed = RetryPolicy::builder()
        .keyed_budget(Default::default())
        .build_layer()
        .unwrap();
    cases_for("retry_keyed_budget", keyed.layer(upstream()), &mut cases);
    cases_for(
        "tower_retry_with_policy",
        tower::retry::Retry::new(RetryPolicy::default(), upstream()),
        &mut cases,
    );
    let hedge = HedgeLayer::builder()
        .delay(Duration::from_millis(50))
        .build()
        .unwrap();
    cases_for("hedge_fixed_delay", hedge.layer(upstream()), &mut cases);

    if let Ok(only) = std::env::var("PALISADE_BENCH_LOOP") {
        for (name, f) in &mut cases {
            if *name == only {
                for _ in 0..1_000_000 {
                    f();
                }
            }
        }
        return;
    }

    for (name, f) in &mut cases {
        const N: usize = 10_000;
        for _ in 0..100 {
            f();
        }
        let region = Region::new(GLOBAL);
        for _ in 0..N {
            f();
        }
        let stats = region.change();
        println!(
            "allocations {name}: {:.2} allocs/call, {:.1} bytes/call",
            stats.allocations as f64 / N as f64,
            stats.bytes_allocated as f64 / N as f64
        );
    }

    const ROUNDS: usize = 25;
    const CALLS: u32 = 20_000;
    let mut best = vec![Duration::MAX; cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in cases.iter_mut().enumerate() {
            let start = tokio::time::Instant::now();
            for _ in 0..CALLS {
                f();
            }
            best[i] = best[i].min(start.elapsed() / CALLS);
        }
    }
    for ((name, _), best) in cases.iter().zip(&best) {
        println!("best {name}: {} ns/call", best.as_nanos());
    }

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for (name, f) in &mut cases {
        c.bench_function(name, |b| b.iter(&mut *f));
    }
    c.final_summary();
}
