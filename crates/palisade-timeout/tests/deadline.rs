//! The total deadline, on a paused clock.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use common::poll_once;
use http::{Request, Response};
use palisade_core::{BoxError, Deadline};
use palisade_timeout::error::DeadlineExceeded;
use palisade_timeout::{DeadlineHeader, DeadlineLayer, inherit};
use tokio::time::{Instant, advance, sleep};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::mock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Replies with the deadline the request carried, as time remaining.
fn remaining_echo() -> impl Service<
    Request<()>,
    Response = Response<Option<Duration>>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Option<Duration>>, BoxError>>,
> + Clone {
    service_fn(|req: Request<()>| async move {
        Ok::<_, BoxError>(Response::new(Deadline::of(&req).map(|d| d.remaining())))
    })
}

fn never() -> impl Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone {
    service_fn(|_req: Request<()>| std::future::pending::<Result<Response<()>, BoxError>>())
}

#[tokio::test(start_paused = true)]
async fn fires_at_its_budget_and_not_before() {
    let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = DeadlineLayer::new(secs(2)).unwrap().layer(inner);
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(Request::new(())));
    assert!(poll_once(&mut fut).is_pending());
    let (_req, _send) = handle.next_request().await.unwrap();
    advance(ms(1999)).await;
    assert!(poll_once(&mut fut).is_pending(), "fired before its budget");
    advance(ms(1)).await;
    let Poll::Ready(Err(err)) = poll_once(&mut fut) else {
        panic!("did not fire at its budget");
    };
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn covers_retries_and_waits_and_cancels_what_is_in_flight() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let guard = Arc::new(());
    let (a, g) = (attempts.clone(), guard.clone());
    // Three attempts of 4 s with a 1 s backoff between them: 14 s in all.
    let retrying = service_fn(move |_req: Request<()>| {
        let (a, g) = (a.clone(), g.clone());
        async move {
            let _in_flight = g;
            for i in 0..3 {
                if i > 0 {
                    sleep(secs(1)).await;
                }
                a.fetch_add(1, Ordering::SeqCst);
                sleep(secs(4)).await;
            }
            Ok::<_, BoxError>(Response::new(()))
        }
    });
    // Attempts start at 0 s, 5 s and 10 s; the budget ends during the second.
    let svc = DeadlineLayer::new(secs(9)).unwrap().layer(retrying);
    let start = Instant::now();
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(start.elapsed(), secs(9));
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(Arc::strong_count(&guard), 1, "in-flight work was dropped");
}

#[tokio::test(start_paused = true)]
async fn sets_the_deadline_extension_for_inner_layers() {
    let svc = DeadlineLayer::new(secs(30))
        .unwrap()
        .layer(remaining_echo());
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(*res.body(), Some(secs(30)));
}

#[tokio::test(start_paused = true)]
async fn keeps_an_existing_tighter_deadline() {
    let svc = DeadlineLayer::new(secs(30))
        .unwrap()
        .layer(remaining_echo());
    let mut req = Request::new(());
    Deadline::after(secs(2)).apply(req.extensions_mut());
    assert_eq!(
        *svc.clone().oneshot(req).await.unwrap().body(),
        Some(secs(2))
    );

    let mut req = Request::new(());
    Deadline::after(secs(60)).apply(req.extensions_mut());
    assert_eq!(*svc.oneshot(req).await.unwrap().body(), Some(secs(30)));
}

#[tokio::test(start_paused = true)]
async fn an_inner_deadline_is_clamped_by_an_outer_one() {
    // Outer 1 s, inner 30 s: the inner layer sees, and enforces, 1 s.
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(secs(1)).unwrap())
        .layer(DeadlineLayer::new(secs(30)).unwrap())
        .service(remaining_echo());
    assert_eq!(
        *svc.oneshot(Request::new(())).await.unwrap().body(),
        Some(secs(1))
    );

    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(secs(1)).unwrap())
        .layer(DeadlineLayer::new(secs(30)).unwrap())
        .service(never());
    let start = Instant::now();
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(start.elapsed(), secs(1));
    assert!(err.is::<DeadlineExceeded>());

    // Outer 30 s, inner 1 s: the tighter inner one wins.
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(secs(30)).unwrap())
        .layer(DeadlineLayer::new(secs(1)).unwrap())
        .service(never());
    let start = Instant::now();
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(start.elapsed(), secs(1));
    assert!(err.is::<DeadlineExceeded>());
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_fails_fast_without_calling_inner() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let svc = DeadlineLayer::new(secs(30))
        .unwrap()
        .layer(service_fn(move |_req: Request<()>| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(Response::new(())) }
        }));
    let mut req = Request::new(());
    Deadline::after(ms(10)).apply(req.extensions_mut());
    advance(ms(10)).await;
    let mut fut = Box::pin(svc.oneshot(req));
    assert!(matches!(poll_once(&mut fut), Poll::Ready(Err(e)) if e.is::<DeadlineExceeded>()));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_it_enforces_only_a_deadline_it_is_given() {
    let layer = DeadlineLayer::builder().no_budget().build().unwrap();
    let mut fut = Box::pin(layer.layer(never()).oneshot(Request::new(())));
    assert!(poll_once(&mut fut).is_pending());
    advance(secs(3600)).await;
    assert!(poll_once(&mut fut).is_pending(), "no deadline, no timeout");

    let mut req = Request::new(());
    Deadline::after(ms(500)).apply(req.extensions_mut());
    let start = Instant::now();
    let err = layer.layer(never()).oneshot(req).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(500));
    assert!(err.is::<DeadlineExceeded>());
}

#[tokio::test(start_paused = true)]
async fn inherits_the_deadline_of_the_request_being_served() {
    let inherited = Deadline::after(ms(800));
    let svc = DeadlineLayer::new(secs(30))
        .unwrap()
        .layer(remaining_echo());
    let seen = inherit::scope(inherited, svc.clone().oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(*seen.body(), Some(ms(800)));

    let opted_out = DeadlineLayer::builder()
        .budget(secs(30))
        .inherit(false)
        .build()
        .unwrap()
        .layer(remaining_echo());
    let seen = inherit::scope(inherited, opted_out.oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(*seen.body(), Some(secs(30)));

    // Outside any scope nothing is inherited.
    assert_eq!(
        *svc.oneshot(Request::new(())).await.unwrap().body(),
        Some(secs(30))
    );
}

#[tokio::test(start_paused = true)]
async fn sends_the_remaining_budget_in_the_configured_header() {
    let header_echo = service_fn(|req: Request<()>| async move {
        let v = req
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap()));
        Ok::<_, BoxError>(Response::new(v.collect::<Vec<_>>().join(",")))
    });
    let millis = DeadlineLayer::builder()
        .budget(secs(30))
        .send_header(DeadlineHeader::default())
        .build()
        .unwrap()
        .layer(header_echo);
    let res = millis.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.body(), "x-request-timeout-ms=30000");

    let mut req = Request::new(());
    Deadline::after(ms(2500)).apply(req.extensions_mut());
    advance(ms(500)).await;
    let res = millis.oneshot(req).await.unwrap();
    assert_eq!(res.body(), "x-request-timeout-ms=2000");

    let grpc = DeadlineLayer::builder()
        .budget(ms(1500))
        .send_header(DeadlineHeader::grpc())
        .build()
        .unwrap()
        .layer(header_echo);
    let res = grpc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.body(), "grpc-timeout=1500000u");
}

#[tokio::test(start_paused = true)]
async fn a_per_request_total_timeout_replaces_the_budget_even_when_longer() {
    let layer = DeadlineLayer::builder().budget(secs(30)).build().unwrap();
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(palisade_core::overrides::TotalTimeout(secs(90)));
    let res = layer.layer(remaining_echo()).oneshot(req).await.unwrap();
    assert_eq!(*res.body(), Some(secs(90)));

    let mut req = Request::new(());
    req.extensions_mut()
        .insert(palisade_core::overrides::TotalTimeout(secs(2)));
    let res = layer.layer(remaining_echo()).oneshot(req).await.unwrap();
    assert_eq!(*res.body(), Some(secs(2)));
}
