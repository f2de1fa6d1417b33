//! The layer contract: readiness, clones, draining, and cancellation that
//! leaks nothing.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{get, ms};
use http::{Request, Response};
use http_body::Frame;
use palisade_core::{Body, BoxError};
use palisade_retry::{Attempts, BackoffStrategy, RetryLayer, RetryPolicy};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock;

/// A response body that counts what is read of it and whether it was
/// dropped; it can stall (stay pending) after some bytes.
struct CountingBody {
    remaining: usize,
    chunk: usize,
    stall_after: Option<usize>,
    sent: usize,
    read: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

#[derive(Clone, Default)]
struct BodyProbe {
    read: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
}

impl BodyProbe {
    fn body(&self, total: usize, chunk: usize, stall_after: Option<usize>) -> CountingBody {
        CountingBody {
            remaining: total,
            chunk,
            stall_after,
            sent: 0,
            read: self.read.clone(),
            dropped: self.dropped.clone(),
        }
    }
    fn read(&self) -> usize {
        self.read.load(Ordering::SeqCst)
    }
    fn dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        if self.stall_after.is_some_and(|n| self.sent >= n) {
            // Never wakes: only the retry's own timer ends the wait.
            return Poll::Pending;
        }
        let n = self.chunk.min(self.remaining);
        self.remaining -= n;
        self.sent += n;
        self.read.fetch_add(n, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0u8; n])))))
    }
}

fn one_second_constant() -> palisade_retry::RetryPolicyBuilder {
    RetryPolicy::builder()
        .backoff(BackoffStrategy::Constant)
        .base_delay(Duration::from_secs(1))
        .max_delay(Duration::from_secs(1))
        .no_budget()
}

/// Answers 503 with `first`'s body once, then 200; records whether the first
/// body had been dropped when the second attempt arrived.
async fn drain_case(
    policy: palisade_retry::RetryPolicyBuilder,
    total: usize,
    chunk: usize,
    stall_after: Option<usize>,
) -> (BodyProbe, bool, Duration) {
    let probe = BodyProbe::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let dropped_before_retry = Arc::new(AtomicBool::new(false));
    let svc = {
        let (probe, calls, seen) = (probe.clone(), calls.clone(), dropped_before_retry.clone());
        service_fn(move |_req: Request<Body>| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let (probe, seen) = (probe.clone(), seen.clone());
            async move {
                if n == 0 {
                    let body = probe.body(total, chunk, stall_after);
                    Ok::<_, BoxError>(Response::builder().status(503).body(body).unwrap())
                } else {
                    seen.store(probe.dropped(), Ordering::SeqCst);
                    Ok(Response::new(BodyProbe::default().body(0, 1, None)))
                }
            }
        })
    };
    let mut svc = policy.build_layer().unwrap().layer(svc);
    let start = Instant::now();
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(Attempts::of(&res), 2);
    (
        probe,
        dropped_before_retry.load(Ordering::SeqCst),
        start.elapsed(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_small_retried_body_is_drained_whole_before_the_retry() {
    let (probe, dropped_first, elapsed) = drain_case(one_second_constant(), 1024, 256, None).await;
    assert_eq!(probe.read(), 1024);
    assert!(dropped_first);
    assert_eq!(elapsed, Duration::from_secs(1), "draining adds no delay");
}

#[tokio::test(start_paused = true)]
async fn a_large_retried_body_is_read_only_up_to_the_cap() {
    let (probe, dropped_first, _) = drain_case(one_second_constant(), 1 << 20, 4096, None).await;
    let read = probe.read();
    assert!((16 * 1024..=20 * 1024).contains(&read), "read {read} bytes");
    assert!(dropped_first);

    let (probe, _, _) = drain_case(one_second_constant().drain_cap(0), 1024, 256, None).await;
    assert_eq!(probe.read(), 0, "a zero cap drops bodies unread");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_retried_body_is_dropped_when_the_backoff_ends() {
    let (probe, dropped_first, elapsed) =
        drain_case(one_second_constant(), 10_000, 100, Some(500)).await;
    assert_eq!(probe.read(), 500);
    assert!(dropped_first);
    assert_eq!(
        elapsed,
        Duration::from_secs(1),
        "the stall did not hold up the retry"
    );
}

#[derive(Clone)]
struct Tracker(#[allow(dead_code)] Arc<()>);

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_backoff_leaks_nothing() {
    let token = Arc::new(());
    let tracker = Arc::new(());
    let probe = BodyProbe::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = {
        let (token, probe, calls) = (token.clone(), probe.clone(), calls.clone());
        service_fn(move |_req: Request<Body>| {
            let _held = token.clone();
            calls.fetch_add(1, Ordering::SeqCst);
            let body = probe.body(1 << 20, 1024, Some(2048));
            async move { Ok::<_, BoxError>(Response::builder().status(503).body(body).unwrap()) }
        })
    };
    let mut svc = one_second_constant().build_layer().unwrap().layer(svc);
    let baseline = Arc::strong_count(&token);

    let mut req = get("http://a.test/");
    req.extensions_mut().insert(Tracker(tracker.clone()));
    svc.ready().await.unwrap();
    let fut = svc.call(req);
    assert!(
        Arc::strong_count(&token) > baseline,
        "the future holds a service clone"
    );
    assert_eq!(Arc::strong_count(&tracker), 2, "ours and the template's");
    let mut fut = Box::pin(fut);
    // The first attempt fails and the layer sleeps, draining the body.
    assert!(poll_once(fut.as_mut()).is_pending());
    assert_eq!(
        Arc::strong_count(&tracker),
        2,
        "the next attempt is copied when sent"
    );
    tokio::time::advance(ms(500)).await;
    assert!(poll_once(fut.as_mut()).is_pending());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!probe.dropped(), "still draining");

    drop(fut);
    assert_eq!(
        Arc::strong_count(&token),
        baseline,
        "service clone released"
    );
    assert_eq!(Arc::strong_count(&tracker), 1, "the template was released");
    assert!(probe.dropped(), "the body being drained was dropped");
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry after the drop");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_attempt_cancels_the_attempt() {
    let guard = Arc::new(());
    let svc = {
        let guard = guard.clone();
        service_fn(move |_req: Request<Body>| {
            let held = guard.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(held);
                Ok::<_, BoxError>(Response::new(String::new()))
            }
        })
    };
    let mut svc = RetryLayer::default().layer(svc);
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(get("http://a.test/")));
    assert!(poll_once(fut.as_mut()).is_pending());
    assert_eq!(
        Arc::strong_count(&guard),
        4,
        "ours, the service, its clone, the attempt"
    );
    drop(fut);
    assert_eq!(
        Arc::strong_count(&guard),
        2,
        "the attempt and the clone were dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_follows_the_inner_service_and_retries_wait_for_it() {
    let layer = one_second_constant().build_layer().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Request<Body>, Response<String>, _>(layer);
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(svc.poll_ready().is_ready());

    let mut fut = tokio_test_spawn(svc.call(get("http://a.test/r")));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req.uri(), "http://a.test/r");
    send.send_response(Response::builder().status(503).body(String::new()).unwrap());
    assert!(fut.poll().is_pending());
    // After the backoff the retry needs readiness, which is withheld.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(fut.poll().is_pending());
    assert!(handle.poll_request().is_pending());
    handle.allow(1);
    assert!(fut.poll().is_pending());
    let (second, send) = handle.next_request().await.unwrap();
    assert_eq!(second.uri(), "http://a.test/r");
    send.send_response(Response::new("ok".to_string()));
    match fut.poll() {
        Poll::Ready(Ok(res)) => assert_eq!(Attempts::of(&res), 2),
        other => panic!("expected the retried response, got {other:?}"),
    }
}

fn poll_once<F: std::future::Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(std::task::Waker::noop()))
}

fn tokio_test_spawn<F: std::future::Future>(f: F) -> Spawned<F> {
    Spawned(Box::pin(f))
}

/// Polls a future by hand with a no-op waker: the paused clock and the mock
/// handle drive progress, not wake-ups.
struct Spawned<F>(Pin<Box<F>>);

impl<F: std::future::Future> Spawned<F> {
    fn poll(&mut self) -> Poll<F::Output> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.0.as_mut().poll(&mut cx)
    }
}

#[tokio::test(start_paused = true)]
async fn accessors_reach_the_inner_service() {
    let mut svc = RetryLayer::default().layer(7u8);
    assert_eq!(*svc.get_ref(), 7);
    *svc.get_mut() = 8;
    assert_eq!(svc.policy().max_attempts(), 4);
    assert_eq!(svc.into_inner(), 8);
}

#[test]
fn futures_and_services_are_send_and_layers_are_sync() {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Send + Sync>(_: &T) {}
    let inner =
        service_fn(|_req: Request<Body>| async { Ok::<_, BoxError>(Response::new(String::new())) });
    let layer = RetryLayer::default();
    sync(&layer);
    let mut svc = layer.layer(inner);
    send(&svc);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _g = rt.enter();
    send(&svc.call(get("http://a.test/")));
    let hedge = palisade_retry::HedgeLayer::builder().build().unwrap();
    sync(&hedge);
    let mut h = hedge.layer(inner);
    send(&h.call(get("http://a.test/")));
}
