//! The layer's contract: limits, FIFO, bounded queue and wait, the deadline
//! clamp, body-aware permits, cancellation, key isolation and shared state.
//! Everything runs on tokio's paused clock.

mod support;

use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use palisade_concurrency::error::{Overloaded, QueueTimeout};
use palisade_concurrency::{ConcurrencyLimitLayer, ResponseBody};
use palisade_core::keyed::KeyedConfig;
use palisade_core::{BoxError, Class, Classify, Deadline, Global, HttpClassifier, Key};
use support::{Upstream, poll_once, req, settle};
use tower::{Layer, Service, ServiceExt};

type Res = Response<ResponseBody<Full<Bytes>>>;
type Fut = Pin<Box<dyn std::future::Future<Output = Result<Res, BoxError>> + Send>>;

fn layer(limit: usize, max_queue: usize, max_wait: Duration) -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::builder()
        .limit(palisade_concurrency::Limit::fixed(limit))
        .max_queue(max_queue)
        .max_wait(max_wait)
        .build()
        .unwrap()
}

async fn start<S>(svc: &mut S, r: Request<()>) -> Fut
where
    S: Service<Request<()>, Response = Res, Error = BoxError>,
    S::Future: Send + 'static,
{
    svc.ready().await.unwrap();
    Box::pin(svc.call(r))
}

fn key(uri: &str) -> Key {
    Key::origin(&uri.parse().unwrap())
}

const A: &str = "http://a.test/";
const B: &str = "http://b.test/";

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_fifo_order() {
    let up = Upstream::new();
    let mut svc = layer(1, 100, Duration::from_secs(60)).layer(up.service());
    let mut first = start(&mut svc, req("http://a.test/0")).await;
    let mut queued = Vec::new();
    for i in 1..=5 {
        let mut f = start(&mut svc, req(&format!("http://a.test/{i}"))).await;
        assert!(poll_once(&mut f).await.is_pending());
        queued.push(f);
    }
    assert!(poll_once(&mut first).await.is_pending());
    assert_eq!(up.seen(), ["/0"]);

    up.next().ok("");
    drop(first.await.unwrap());
    let mut queued: Vec<Option<Fut>> = queued.into_iter().map(Some).collect();
    for i in 1..=5usize {
        // Poll the waiters in reverse: the grant order must not depend on it.
        for f in queued.iter_mut().rev().flatten() {
            let _ = poll_once(f).await;
        }
        assert_eq!(up.pending(), 1, "one at a time");
        let call = up.next();
        assert_eq!(call.path(), format!("/{i}"));
        call.ok("");
        let res = queued[i - 1].take().unwrap().await.unwrap();
        drop(res);
    }
    assert_eq!(up.seen(), ["/0", "/1", "/2", "/3", "/4", "/5"]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_sheds_at_once_with_overloaded() {
    let up = Upstream::new();
    let l = layer(1, 2, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let _running = start(&mut svc, req(A)).await;
    let mut q1 = start(&mut svc, req(A)).await;
    let mut q2 = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut q1).await.is_pending());
    assert!(poll_once(&mut q2).await.is_pending());
    // max_queue = 2 are waiting: the third is shed on its first poll,
    // without the clock moving.
    let before = tokio::time::Instant::now();
    let mut shed = start(&mut svc, req(A)).await;
    let Poll::Ready(Err(e)) = poll_once(&mut shed).await else {
        panic!("a full queue must shed at once")
    };
    assert!(e.is::<Overloaded>(), "{e}");
    assert_eq!(tokio::time::Instant::now(), before);
    assert_eq!(
        HttpClassifier::new().classify::<()>(Err(&e)),
        Class::Rejected
    );

    let stats = diag.key(&key(A)).unwrap();
    assert_eq!((stats.in_flight, stats.queued), (1, 2));
    assert_eq!(stats.rejected_queue_full, 1);
}

#[tokio::test(start_paused = true)]
async fn max_queue_zero_never_waits() {
    let up = Upstream::new();
    let mut svc = layer(1, 0, Duration::from_secs(60)).layer(up.service());
    let _running = start(&mut svc, req(A)).await;
    let err = start(&mut svc, req(A)).await.await.unwrap_err();
    assert!(err.is::<Overloaded>());
}

#[tokio::test(start_paused = true)]
async fn max_wait_boundary_then_queue_timeout() {
    let up = Upstream::new();
    let l = layer(1, 10, Duration::from_millis(100));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let _running = start(&mut svc, req(A)).await;
    let mut waiting = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut waiting).await.is_pending());

    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(
        poll_once(&mut waiting).await.is_pending(),
        "99 ms < max_wait"
    );
    tokio::time::advance(Duration::from_millis(1)).await;
    let Poll::Ready(Err(e)) = poll_once(&mut waiting).await else {
        panic!("max_wait elapsed: must fail")
    };
    assert!(e.is::<QueueTimeout>(), "{e}");
    let stats = diag.key(&key(A)).unwrap();
    assert_eq!(stats.queued, 0, "a timed-out waiter leaves the queue");
    assert_eq!(stats.rejected_queue_timeout, 1);
    assert_eq!(up.seen().len(), 1, "it never reached the upstream");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_clamps_the_wait() {
    let up = Upstream::new();
    let mut svc = layer(1, 10, Duration::from_secs(10)).layer(up.service());
    let _running = start(&mut svc, req(A)).await;

    let mut r = req(A);
    Deadline::after(Duration::from_millis(50)).apply(r.extensions_mut());
    let mut waiting = start(&mut svc, r).await;
    assert!(poll_once(&mut waiting).await.is_pending());
    tokio::time::advance(Duration::from_millis(49)).await;
    assert!(poll_once(&mut waiting).await.is_pending());
    tokio::time::advance(Duration::from_millis(1)).await;
    let Poll::Ready(Err(e)) = poll_once(&mut waiting).await else {
        panic!("the deadline, not max_wait, bounds the wait")
    };
    assert!(e.is::<QueueTimeout>());

    // An expired deadline fails at once when the request would have to wait…
    let mut r = req(A);
    Deadline::after(Duration::ZERO).apply(r.extensions_mut());
    let err = start(&mut svc, r).await.await.unwrap_err();
    assert!(err.is::<QueueTimeout>());
    // …but a free permit is still taken: the timeout layers judge the rest.
    let mut r = req(B);
    Deadline::after(Duration::ZERO).apply(r.extensions_mut());
    let mut f = start(&mut svc, r).await;
    assert!(poll_once(&mut f).await.is_pending());
    assert_eq!(up.pending(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_held_until_the_body_ends() {
    let up = Upstream::new();
    let l = layer(1, 10, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let first = start(&mut svc, req(A)).await;
    up.next().ok("a body that takes a while");
    let res = first.await.unwrap();
    assert!(res.body().holds_permit());

    // Head received, body unread: the permit is still held.
    let mut second = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut second).await.is_pending());
    assert_eq!(up.pending(), 0);
    assert_eq!(diag.key(&key(A)).unwrap().in_flight, 1);

    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "a body that takes a while");
    assert!(poll_once(&mut second).await.is_pending());
    settle().await;
    assert!(poll_once(&mut second).await.is_pending());
    assert_eq!(up.pending(), 1, "reading to the end released the permit");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_body_releases_the_permit() {
    let up = Upstream::new();
    let mut svc = layer(1, 10, Duration::from_secs(60)).layer(up.service());
    let first = start(&mut svc, req(A)).await;
    up.next().ok("unread");
    let res = first.await.unwrap();
    let mut second = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut second).await.is_pending());
    drop(res);
    assert!(poll_once(&mut second).await.is_pending());
    assert_eq!(up.pending(), 1);
}

#[tokio::test(start_paused = true)]
async fn body_aware_off_releases_at_the_head() {
    let up = Upstream::new();
    let l = ConcurrencyLimitLayer::builder()
        .limit(palisade_concurrency::Limit::fixed(1))
        .body_aware(false)
        .build()
        .unwrap();
    let mut svc = l.layer(up.service());
    let first = start(&mut svc, req(A)).await;
    up.next().ok("unread");
    let res = first.await.unwrap();
    assert!(!res.body().holds_permit());
    let mut second = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut second).await.is_pending());
    assert_eq!(up.pending(), 1, "the head released the permit");
    drop(res);
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_releases_at_the_head() {
    let up = Upstream::new();
    let mut svc = layer(1, 10, Duration::from_secs(60)).layer(up.service());
    let first = start(&mut svc, req(A)).await;
    up.next().ok("");
    let res = first.await.unwrap();
    assert!(!res.body().holds_permit());
    let mut second = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut second).await.is_pending());
    assert_eq!(up.pending(), 1);
    drop(res);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_frees_its_place() {
    let up = Upstream::new();
    let l = layer(1, 1, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let running = start(&mut svc, req(A)).await;
    let mut waiter = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut waiter).await.is_pending());
    assert_eq!(diag.key(&key(A)).unwrap().queued, 1);
    drop(waiter);
    assert_eq!(diag.key(&key(A)).unwrap().queued, 0);

    // Its place is free: another request may queue instead of being shed.
    let mut next = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut next).await.is_pending());
    drop(running);
    up.next().ok("");
    settle().await;
    assert!(poll_once(&mut next).await.is_pending());
    assert_eq!(up.pending(), 1, "the queued request got the permit");
}

#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_after_its_grant_passes_the_permit_on() {
    let up = Upstream::new();
    let l = layer(1, 10, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let running = start(&mut svc, req(A)).await;
    let mut granted = start(&mut svc, req(A)).await;
    let mut next = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut granted).await.is_pending());
    assert!(poll_once(&mut next).await.is_pending());
    // The running request is cancelled: its permit goes to `granted`, which
    // is dropped before it ever runs.
    drop(running);
    drop(granted);
    assert!(poll_once(&mut next).await.is_pending());
    assert_eq!(up.seen().len(), 2, "the permit reached the next waiter");
    let stats = diag.key(&key(A)).unwrap();
    assert_eq!((stats.in_flight, stats.queued), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_running_request_releases_its_permit() {
    let up = Upstream::new();
    let l = layer(2, 10, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let mut a = start(&mut svc, req(A)).await;
    let mut b = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut a).await.is_pending());
    assert!(poll_once(&mut b).await.is_pending());
    assert_eq!(diag.key(&key(A)).unwrap().in_flight, 2);
    drop(a);
    drop(b);
    assert_eq!(diag.key(&key(A)).unwrap().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn keys_are_isolated() {
    let up = Upstream::new();
    let l = layer(1, 10, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let _a1 = start(&mut svc, req("http://a.test/1")).await;
    let mut a2 = start(&mut svc, req("http://a.test/2")).await;
    assert!(poll_once(&mut a2).await.is_pending());
    // a.test is full; b.test is not affected.
    let mut b1 = start(&mut svc, req("http://b.test/1")).await;
    assert!(poll_once(&mut b1).await.is_pending());
    assert_eq!(up.seen(), ["/1", "/1"]);
    assert_eq!(diag.key(&key(A)).unwrap().queued, 1);
    assert_eq!(diag.key(&key(B)).unwrap().queued, 0);
    assert_eq!(diag.key(&key(B)).unwrap().in_flight, 1);
    // Same origin written differently is the same key.
    let mut a3 = start(&mut svc, req("http://A.TEST:80/3")).await;
    assert!(poll_once(&mut a3).await.is_pending());
    assert_eq!(diag.key(&key(A)).unwrap().queued, 2);
}

#[tokio::test(start_paused = true)]
async fn a_global_key_fn_puts_every_origin_under_one_limit() {
    let up = Upstream::new();
    let l = ConcurrencyLimitLayer::builder()
        .limit(palisade_concurrency::Limit::fixed(1))
        .key_fn(Global)
        .build()
        .unwrap();
    let mut svc = l.layer(up.service());
    let _a = start(&mut svc, req(A)).await;
    let mut b = start(&mut svc, req(B)).await;
    assert!(poll_once(&mut b).await.is_pending());
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_global_limit_caps_all_keys_together() {
    let up = Upstream::new();
    let l = ConcurrencyLimitLayer::builder()
        .limit(palisade_concurrency::Limit::fixed(2))
        .global_limit(3)
        .build()
        .unwrap();
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let mut futs = Vec::new();
    for uri in [
        "http://a.test/",
        "http://a.test/",
        "http://b.test/",
        "http://c.test/",
    ] {
        let mut f = start(&mut svc, req(uri)).await;
        let _ = poll_once(&mut f).await;
        futs.push(f);
    }
    assert_eq!(up.pending(), 3, "three in flight in all");
    let g = diag.global().unwrap();
    assert_eq!((g.in_flight, g.queued, g.limit), (3, 1, 3));
    // c.test holds its key permit while it waits for the global one.
    assert_eq!(diag.key(&key("http://c.test/")).unwrap().in_flight, 1);

    // Freeing one slot of a.test lets c.test through.
    drop(futs.remove(0));
    settle().await;
    let _ = poll_once(&mut futs[2]).await;
    assert_eq!(up.seen().len(), 4, "c.test reached the upstream");
    assert_eq!(diag.global().unwrap().in_flight, 3);
    assert_eq!(diag.global().unwrap().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn clones_and_sibling_services_share_one_limit() {
    let up = Upstream::new();
    let l = layer(1, 10, Duration::from_secs(60));
    let mut one = l.layer(up.service());
    let mut two = one.clone();
    let mut three = l.clone().layer(up.service());
    let _held = start(&mut one, req(A)).await;
    let mut f2 = start(&mut two, req(A)).await;
    let mut f3 = start(&mut three, req(A)).await;
    assert!(poll_once(&mut f2).await.is_pending());
    assert!(poll_once(&mut f3).await.is_pending());
    assert_eq!(up.seen().len(), 1);
    assert_eq!(l.diagnostics().key(&key(A)).unwrap().queued, 2);
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services_and_never_blocks_on_the_limit() {
    let (mock, mut handle) = tower_test::mock::pair::<Request<()>, Response<Full<Bytes>>>();
    let mut svc = layer(1, 10, Duration::from_secs(60)).layer(mock);

    handle.allow(0);
    assert!(poll_once(&mut svc.ready()).await.is_pending());
    handle.allow(3);
    svc.ready().await.unwrap();
    let mut first = Box::pin(svc.call(req(A)));
    // The key is full, yet the service is ready: the wait is in the future.
    svc.ready().await.unwrap();
    let mut second = Box::pin(svc.call(req(A)));
    assert!(poll_once(&mut second).await.is_pending());

    let (_r, send) = handle.next_request().await.unwrap();
    send.send_response(Response::new(Full::new(Bytes::new())));
    assert!(matches!(poll_once(&mut first).await, Poll::Ready(Ok(_))));
    // The waiter calls the service instance that was made ready for it.
    assert!(poll_once(&mut second).await.is_pending());
    let (r, send) = handle.next_request().await.unwrap();
    assert_eq!(r.uri(), A);
    send.send_response(Response::new(Full::new(Bytes::new())));
    assert!(matches!(poll_once(&mut second).await, Poll::Ready(Ok(_))));
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_and_release() {
    let up = Upstream::new();
    let l = layer(1, 10, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let f = start(&mut svc, req(A)).await;
    up.next().err(std::io::Error::other("boom"));
    let e = f.await.unwrap_err();
    assert_eq!(e.to_string(), "boom");
    assert_eq!(diag.key(&key(A)).unwrap().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn diagnostics_report_peak_and_waits() {
    let up = Upstream::new();
    let l = layer(2, 10, Duration::from_secs(60));
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let mut futs = Vec::new();
    for _ in 0..3 {
        let mut f = start(&mut svc, req(A)).await;
        let _ = poll_once(&mut f).await;
        futs.push(f);
    }
    tokio::time::advance(Duration::from_millis(30)).await;
    up.next().ok("");
    drop(futs.remove(0).await.unwrap());
    let _ = poll_once(&mut futs[1]).await;

    let s = diag.key(&key(A)).unwrap();
    assert_eq!(s.limit, 2);
    assert_eq!(s.peak_in_flight, 2);
    assert!(s.gate_is_bottleneck(), "peak pinned at the cap");
    assert_eq!(s.admitted(), 3);
    assert_eq!(s.wait.immediate(), 2);
    let max = s.wait.max();
    assert!(
        max >= Duration::from_millis(30) && max <= Duration::from_millis(60),
        "{max:?}"
    );
    assert_eq!(diag.keys().len(), 1);

    drop(futs);
    diag.reset_peaks();
    assert_eq!(diag.key(&key(A)).unwrap().peak_in_flight, 0);
    assert!(!diag.key(&key(A)).unwrap().gate_is_bottleneck());
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_but_busy_ones_are_kept() {
    let up = Upstream::new();
    let l = ConcurrencyLimitLayer::builder()
        .keyed(KeyedConfig {
            max_keys: 1000,
            idle_timeout: Duration::from_secs(1),
        })
        .build()
        .unwrap();
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let busy = start(&mut svc, req("http://busy.test/")).await;
    for i in 0..20 {
        let f = start(&mut svc, req(&format!("http://h{i}.test/"))).await;
        drop(f);
    }
    assert_eq!(diag.len(), 21);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(diag.evict_idle(), 20);
    assert_eq!(diag.len(), 1);
    assert!(diag.key(&key("http://busy.test/")).is_some());
    drop(busy);
}

#[test]
fn invalid_configuration_is_a_clear_error() {
    let cases: Vec<(Result<ConcurrencyLimitLayer, _>, &str)> = vec![
        (
            ConcurrencyLimitLayer::builder()
                .limit(palisade_concurrency::Limit::fixed(0))
                .build(),
            "fixed limit",
        ),
        (
            ConcurrencyLimitLayer::builder()
                .max_wait(Duration::ZERO)
                .build(),
            "max_wait",
        ),
        (
            ConcurrencyLimitLayer::builder().global_limit(0).build(),
            "global_limit",
        ),
        (
            ConcurrencyLimitLayer::builder()
                .keyed(KeyedConfig {
                    max_keys: 0,
                    idle_timeout: Duration::from_secs(1),
                })
                .build(),
            "max_keys",
        ),
    ];
    for (res, needle) in cases {
        let err = res.expect_err("must be rejected").to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle}");
        assert!(err.starts_with("invalid concurrency limit configuration"));
    }
}

#[tokio::test(start_paused = true)]
async fn the_service_and_its_future_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let up = Upstream::new();
    let mut svc = ConcurrencyLimitLayer::default().layer(up.service());
    is_send(&svc);
    svc.ready().await.unwrap();
    let fut = svc.call(req(A));
    is_send(&fut);
}
