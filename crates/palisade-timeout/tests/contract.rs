//! The contract every palisade layer keeps: readiness passes through, clones
//! behave alike, dropping a future at any point releases what it holds.

mod common;

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use common::poll_once;
use http::{Request, Response};
use palisade_core::{BoxError, Deadline};
use palisade_timeout::{
    AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer, InheritDeadlineLayer, inherit,
};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn poll_ready<S: Service<Request<()>>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    svc.poll_ready(&mut cx)
}

macro_rules! readiness_passes_through {
    ($name:ident, $layer:expr) => {
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
            let mut svc = $layer.layer(inner);
            handle.allow(0);
            assert!(
                poll_ready(&mut svc).is_pending(),
                "inner not ready: neither is the layer"
            );
            handle.allow(1);
            assert!(matches!(poll_ready(&mut svc), Poll::Ready(Ok(()))));
            // An inner readiness error surfaces from poll_ready.
            let (inner, mut handle) = mock::pair::<Request<()>, Response<()>>();
            let mut svc = $layer.layer(inner);
            handle.send_error("inner broke");
            let Poll::Ready(Err(err)) = poll_ready(&mut svc) else {
                panic!("readiness error lost");
            };
            assert_eq!(Into::<BoxError>::into(err).to_string(), "inner broke");
        }
    };
}

readiness_passes_through!(
    attempt_readiness,
    AttemptTimeoutLayer::new(ms(100)).unwrap()
);
readiness_passes_through!(deadline_readiness, DeadlineLayer::new(ms(100)).unwrap());
readiness_passes_through!(body_readiness, BodyTimeoutLayer::default());
readiness_passes_through!(inherit_readiness, InheritDeadlineLayer::default());

/// A service whose in-flight futures hold a clone of `guard` until dropped.
fn holding(
    guard: &Arc<()>,
) -> impl Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone {
    let guard = guard.clone();
    service_fn(move |_req: Request<()>| {
        let g = guard.clone();
        async move {
            let _g = g;
            std::future::pending::<Result<Response<()>, BoxError>>().await
        }
    })
}

macro_rules! dropping_releases {
    ($name:ident, $layer:expr) => {
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let guard = Arc::new(());
            let mut svc = $layer.layer(holding(&guard));
            let baseline = Arc::strong_count(&guard);

            // Dropped before its first poll.
            svc.ready().await.unwrap();
            let fut = svc.call(Request::new(()));
            drop(fut);
            assert_eq!(Arc::strong_count(&guard), baseline);

            // Dropped while waiting, after time has passed.
            svc.ready().await.unwrap();
            let mut fut = Box::pin(svc.call(Request::new(())));
            assert!(poll_once(&mut fut).is_pending());
            assert_eq!(Arc::strong_count(&guard), baseline + 1);
            advance(ms(50)).await;
            assert!(poll_once(&mut fut).is_pending());
            drop(fut);
            assert_eq!(Arc::strong_count(&guard), baseline);

            // Timers of dropped futures are gone: nothing fires later.
            advance(ms(10_000)).await;
            drop(svc);
            assert_eq!(Arc::strong_count(&guard), 1);
        }
    };
}

dropping_releases!(
    attempt_drop_releases,
    AttemptTimeoutLayer::new(ms(100)).unwrap()
);
dropping_releases!(deadline_drop_releases, DeadlineLayer::new(ms(100)).unwrap());
dropping_releases!(body_drop_releases, BodyTimeoutLayer::default());
dropping_releases!(inherit_drop_releases, InheritDeadlineLayer::default());

#[tokio::test(start_paused = true)]
async fn a_dropped_scope_leaves_no_inherited_deadline_behind() {
    let mut fut = Box::pin(inherit::scope(Deadline::after(ms(100)), async {
        assert!(inherit::current().is_some());
        std::future::pending::<()>().await
    }));
    assert!(poll_once(&mut fut).is_pending());
    drop(fut);
    assert_eq!(inherit::current(), None);
}

#[tokio::test(start_paused = true)]
async fn clones_behave_alike_and_independently() {
    let guard = Arc::new(());
    let mut a = AttemptTimeoutLayer::new(ms(100))
        .unwrap()
        .layer(holding(&guard));
    let mut b = a.clone();
    a.ready().await.unwrap();
    b.ready().await.unwrap();
    let fa = a.call(Request::new(()));
    advance(ms(60)).await;
    let fb = b.call(Request::new(()));
    // Each call has its own clock: the clone's started 60 ms later.
    let (ra, rb) = tokio::join!(
        async {
            let r = fa.await;
            (r, tokio::time::Instant::now())
        },
        async {
            let r = fb.await;
            (r, tokio::time::Instant::now())
        }
    );
    assert!(ra.0.is_err() && rb.0.is_err());
    assert_eq!(rb.1 - ra.1, ms(60));
}
