//! The tower contract: readiness, clones sharing state, drop releasing what
//! was reserved, cancellation, errors passing through.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use palisade_core::BoxError;
use palisade_ratelimit::{Quota, RateLimitLayer};
use support::{Upstream, get, manual, ms, rate_limited};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

fn quota(per_second: u32, burst: u32) -> Quota {
    Quota::per_second(per_second)
        .unwrap()
        .with_burst(burst)
        .unwrap()
}

type Req = http::Request<()>;
type Res = http::Response<()>;

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services() {
    let layer = RateLimitLayer::new(quota(1, 1));
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), std::task::Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_unchanged() {
    let layer = RateLimitLayer::new(quota(10, 10));
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), std::task::Poll::Ready(Ok(()))));
    // The request reaches the upstream only once the response future runs.
    let fut = svc.call(get("http://a.test/"));
    let answer = async {
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_error(std::io::Error::other("upstream broke"));
    };
    let (res, ()) = tokio::join!(fut, answer);
    let err: BoxError = res.unwrap_err();
    assert_eq!(err.to_string(), "upstream broke");
    assert!(err.downcast_ref::<std::io::Error>().is_some());
}

#[tokio::test(start_paused = true)]
async fn clones_and_sibling_services_share_one_quota() {
    let layer = RateLimitLayer::builder(quota(1, 2))
        .reject()
        .build()
        .unwrap();
    let a = layer.layer(Upstream::new().service());
    let b = layer.clone().layer(Upstream::new().service());
    let a2 = a.clone();
    a.oneshot(get("http://x.test/")).await.unwrap();
    b.clone().oneshot(get("http://x.test/")).await.unwrap();
    let err = a2.oneshot(get("http://x.test/")).await.unwrap_err();
    assert_eq!(rate_limited(&err).retry_after, Some(Duration::from_secs(1)));
    assert_eq!(b.key_count(), 1);

    // A second layer is an independent limit.
    let other = RateLimitLayer::builder(quota(1, 2))
        .reject()
        .build()
        .unwrap();
    other
        .layer(Upstream::new().service())
        .oneshot(get("http://x.test/"))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_future_dropped_before_it_is_polled_spends_nothing() {
    let up = Upstream::new();
    let layer = RateLimitLayer::builder(quota(1, 1))
        .reject()
        .build()
        .unwrap();
    let mut svc = layer.layer(up.service());
    for _ in 0..5 {
        let fut = svc.ready().await.unwrap().call(get("http://a.test/"));
        drop(fut);
    }
    svc.ready()
        .await
        .unwrap()
        .call(get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn served_waiters_leave_the_queue() {
    // Six at once on a burst of five: the sixth waits one interval. Once the
    // burst has refilled, five more go at once: nobody is left queued.
    let svc = RateLimitLayer::new(quota(10, 5)).layer(Upstream::new().service());
    let start = Instant::now();
    let burst = |n: usize| {
        join_all((0..n).map(|_| {
            let svc = svc.clone();
            async move {
                svc.oneshot(get("http://a.test/")).await.unwrap();
                Instant::now()
            }
        }))
    };
    let sent = burst(6).await;
    assert_eq!(sent.iter().max().unwrap().duration_since(start), ms(100));
    tokio::time::advance(Duration::from_secs(10)).await;
    let again = Instant::now();
    let sent = burst(5).await;
    assert!(
        sent.iter().all(|t| *t == again),
        "the refilled burst goes at once"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_sent_request_leaks_nothing() {
    let layer = RateLimitLayer::new(quota(10, 1));
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    handle.allow(10);

    // The first is sent, then cancelled while the upstream holds it.
    assert!(matches!(svc.poll_ready(), std::task::Poll::Ready(Ok(()))));
    let mut first = manual(svc.call(get("http://a.test/")));
    assert!(first.poll().is_pending());
    let (_req, _send) = handle.next_request().await.unwrap();
    drop(first);

    // The second waits its interval, is sent, and answered.
    assert!(matches!(svc.poll_ready(), std::task::Poll::Ready(Ok(()))));
    let second = svc.call(get("http://a.test/"));
    let start = Instant::now();
    let answer = async {
        let (_req, send) = handle.next_request().await.unwrap();
        send.send_response(http::Response::new(()));
    };
    let (res, ()) = tokio::join!(second, answer);
    res.unwrap();
    assert_eq!(Instant::now() - start, ms(100));
}
