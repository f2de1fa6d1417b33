//! Attempt timeout, on a paused clock.

mod common;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::poll_once;
use http::{Request, Response};
use palisade_core::error::find;
use palisade_core::{BoxError, Deadline};
use palisade_timeout::error::{DeadlineExceeded, Elapsed};
use palisade_timeout::{AttemptTimeoutLayer, DeadlineHeader};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn fires_at_its_bound_and_not_before() {
    let layer = AttemptTimeoutLayer::new(ms(100)).unwrap();
    let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
    let mut svc = layer.layer(inner);
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(Request::new(())));
    assert!(poll_once(&mut fut).is_pending());
    let (_req, _send) = handle.next_request().await.unwrap();

    advance(ms(99)).await;
    assert!(poll_once(&mut fut).is_pending(), "fired before its bound");
    advance(ms(1)).await;
    let Poll::Ready(Err(err)) = poll_once(&mut fut) else {
        panic!("did not fire at its bound");
    };
    assert!(err.is::<Elapsed>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_response_in_time_passes_through() {
    let svc =
        AttemptTimeoutLayer::new(ms(100))
            .unwrap()
            .layer(service_fn(|_req: Request<()>| async {
                tokio::time::sleep(ms(99)).await;
                Ok::<_, BoxError>(Response::new("ok"))
            }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(*res.body(), "ok");
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged() {
    let svc =
        AttemptTimeoutLayer::new(ms(100))
            .unwrap()
            .layer(service_fn(|_req: Request<()>| async {
                Err::<Response<()>, _>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "reset",
                ))
            }));
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    let io = find::<std::io::Error>(&*err).expect("io error kept");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(find::<Elapsed>(&*err).is_none());
}

#[tokio::test(start_paused = true)]
async fn is_clamped_by_the_remaining_deadline_and_reports_it() {
    let svc = AttemptTimeoutLayer::new(Duration::from_secs(10))
        .unwrap()
        .layer(service_fn(|_req: Request<()>| {
            std::future::pending::<Result<Response<()>, BoxError>>()
        }));
    let mut req = Request::new(());
    Deadline::after(ms(300)).apply(req.extensions_mut());
    let start = Instant::now();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        ms(300),
        "fired at the deadline, not the attempt timeout"
    );
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_looser_deadline_leaves_its_own_timeout_in_force() {
    let svc = AttemptTimeoutLayer::new(ms(200))
        .unwrap()
        .layer(service_fn(|_req: Request<()>| {
            std::future::pending::<Result<Response<()>, BoxError>>()
        }));
    let mut req = Request::new(());
    Deadline::after(Duration::from_secs(5)).apply(req.extensions_mut());
    let start = Instant::now();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(start.elapsed(), ms(200));
    assert!(err.is::<Elapsed>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_fails_fast_without_sending() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let svc =
        AttemptTimeoutLayer::new(ms(200))
            .unwrap()
            .layer(service_fn(move |_req: Request<()>| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Ok::<_, BoxError>(Response::new(())) }
            }));
    let mut req = Request::new(());
    Deadline::after(ms(50)).apply(req.extensions_mut());
    advance(ms(50)).await;
    let mut fut = Box::pin(svc.oneshot(req));
    let Poll::Ready(Err(err)) = poll_once(&mut fut) else {
        panic!("should fail at once");
    };
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn the_attempt_is_dropped_when_it_times_out() {
    let guard = Arc::new(());
    let held = guard.clone();
    let mut svc =
        AttemptTimeoutLayer::new(ms(100))
            .unwrap()
            .layer(service_fn(move |_req: Request<()>| {
                let held = held.clone();
                async move {
                    let _held = held;
                    std::future::pending::<Result<Response<()>, BoxError>>().await
                }
            }));
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(Request::new(())));
    assert!(poll_once(&mut fut).is_pending());
    assert_eq!(
        Arc::strong_count(&guard),
        3,
        "test, service and attempt hold it"
    );
    advance(ms(100)).await;
    assert!(matches!(poll_once(&mut fut), Poll::Ready(Err(_))));
    // The attempt is gone even though the response future is still alive.
    assert_eq!(Arc::strong_count(&guard), 2);
    drop(fut);
    drop(svc);
    assert_eq!(Arc::strong_count(&guard), 1);
}

#[tokio::test(start_paused = true)]
async fn sends_each_attempt_its_effective_timeout() {
    let layer = AttemptTimeoutLayer::builder()
        .timeout(Duration::from_secs(2))
        .send_header(DeadlineHeader::default())
        .build()
        .unwrap();
    let echo = service_fn(|req: Request<()>| async move {
        Ok::<_, BoxError>(Response::new(
            req.headers()["x-request-timeout-ms"]
                .to_str()
                .unwrap()
                .to_owned(),
        ))
    });
    let mut svc = layer.layer(echo);

    // No deadline: the attempt timeout itself.
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.body(), "2000");

    // A deadline with 1.5 s left: what is left.
    let mut req = Request::new(());
    Deadline::after(Duration::from_secs(3)).apply(req.extensions_mut());
    advance(Duration::from_millis(1500)).await;
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.body(), "1500");
}

#[tokio::test(start_paused = true)]
async fn a_per_request_override_replaces_the_layers_timeout() {
    let layer = AttemptTimeoutLayer::new(ms(100)).unwrap();
    let slow = service_fn(|_req: Request<()>| async {
        tokio::time::sleep(ms(150)).await;
        Ok::<_, BoxError>(Response::new("late"))
    });
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(palisade_core::overrides::AttemptTimeout(ms(200)));
    let res = layer.layer(slow).oneshot(req).await.unwrap();
    assert_eq!(*res.body(), "late", "the longer override let it finish");

    let mut req = Request::new(());
    req.extensions_mut()
        .insert(palisade_core::overrides::AttemptTimeout(ms(10)));
    let start = Instant::now();
    let err = layer
        .layer(service_fn(|_req: Request<()>| async {
            tokio::time::sleep(ms(50)).await;
            Ok::<_, BoxError>(Response::new("late"))
        }))
        .oneshot(req)
        .await
        .unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(start.elapsed(), ms(10));
}
