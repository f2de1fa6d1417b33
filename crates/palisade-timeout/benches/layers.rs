//! Nanoseconds and heap allocations per call of each palisade-timeout layer,
//! over two in-memory services:
//!
//! - `pending`: the response future yields once, as a real transport waits on
//!   I/O, so each layer's timer is really registered in tokio's timer wheel
//!   and removed again;
//! - `ready`: the response is ready at the first poll, so no timer is ever
//!   registered: this is the layer's own overhead.
//!
//! `tokio sleep` is the reference: a bare service that creates, polls once and
//! drops a tokio `Sleep`, i.e. the cost of one timer entry.
//!
//! Run: `cargo bench -p palisade-timeout --bench layers -- --warm-up-time 1 --measurement-time 3`.
//! After criterion's own report, `summary <case>: ...` lines give each case's
//! best time per call over interleaved rounds and its allocations per call.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use palisade_timeout::{
    AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineHeader, DeadlineLayer, InheritDeadlineLayer,
};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

type Res = Response<Full<Bytes>>;

fn pending() -> impl Service<Request<()>, Response = Res, Error = Infallible> + Clone {
    service_fn(|_req: Request<()>| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn ready() -> impl Service<Request<()>, Response = Res, Error = Infallible> + Clone {
    service_fn(|_req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
            Bytes::from_static(b"ok"),
        ))))
    })
}

/// The reference: one tokio timer entry created, registered and dropped.
fn tokio_sleep() -> impl Service<Request<()>, Response = Res, Error = Infallible> + Clone {
    service_fn(|_req: Request<()>| async {
        let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(10)));
        // Registers the entry, as a pending timeout future does.
        poll_fn(|cx| {
            let _ = sleep.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

/// One call: ready, call, await the head, read the body to its end.
async fn one_call<S, B>(svc: &mut S)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
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
    S: Service<Request<()>, Response = Response<B>> + 'static,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    Box::new(move |rt, n| {
        rt.block_on(async {
            let start = tokio::time::Instant::now();
            for _ in 0..n {
                one_call(&mut svc).await;
            }
            start.elapsed()
        })
    })
}

macro_rules! layered {
    ($cases:expr, $variant:literal, $upstream:expr) => {{
        let secs = Duration::from_secs;
        $cases.push((concat!($variant, "/baseline (no layer)"), run($upstream)));
        $cases.push((
            concat!($variant, "/attempt timeout"),
            run(AttemptTimeoutLayer::new(secs(10)).unwrap().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/deadline"),
            run(DeadlineLayer::new(secs(30)).unwrap().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/deadline + header"),
            run(DeadlineLayer::builder()
                .send_header(DeadlineHeader::default())
                .build()
                .unwrap()
                .layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/body timeout"),
            run(BodyTimeoutLayer::default().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/inherit (server, no header)"),
            run(InheritDeadlineLayer::default().layer($upstream)),
        ));
        $cases.push((
            concat!($variant, "/deadline + body + attempt"),
            run(ServiceBuilder::new()
                .layer(DeadlineLayer::new(secs(30)).unwrap())
                .layer(BodyTimeoutLayer::default())
                .layer(AttemptTimeoutLayer::new(secs(10)).unwrap())
                .service($upstream)),
        ));
    }};
}

const ALLOC_CALLS: u64 = 10_000;
const ROUNDS: usize = 25;
const ROUND_CALLS: u64 = 20_000;

fn layers(c: &mut Criterion) {
    let rt = runtime();
    let mut all: Vec<(&'static str, Run)> =
        vec![("pending/tokio sleep (reference)", run(tokio_sleep()))];
    layered!(all, "pending", pending());
    layered!(all, "ready", ready());

    for (name, run) in &mut all {
        c.bench_function(name, |b| b.iter_custom(|iters| run(&rt, iters)));
    }

    // The machine is shared, so criterion's means carry other processes'
    // load. Interleaved rounds, keeping each case's fastest, are the figure
    // least disturbed by it.
    let mut best = vec![Duration::MAX; all.len()];
    for _ in 0..ROUNDS {
        for (i, (_, run)) in all.iter_mut().enumerate() {
            best[i] = best[i].min(run(&rt, ROUND_CALLS));
        }
    }
    for (i, (name, run)) in all.iter_mut().enumerate() {
        run(&rt, 100); // warm
        let region = Region::new(GLOBAL);
        run(&rt, ALLOC_CALLS);
        let stats = region.change();
        println!(
            "summary {name}: {:.0} ns/call (best of {ROUNDS} interleaved rounds), {:.2} allocations/call, {:.1} bytes/call",
            best[i].as_nanos() as f64 / ROUND_CALLS as f64,
            stats.allocations as f64 / ALLOC_CALLS as f64,
            stats.bytes_allocated as f64 / ALLOC_CALLS as f64,
        );
    }
}

criterion_group!(benches, layers);
criterion_main!(benches);
