//! The hedge layer, on a paused clock.

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{BoxFut, Recorder, get, ms, post};
use http::{Request, Response};
use palisade_core::events::{BUDGET_EXHAUSTED, HEDGE_SENT};
use palisade_core::{Body, BoxError, Deadline, TransportError, TransportErrorKind};
use palisade_retry::{Budget, BudgetConfig, HedgeLayer, Idempotent, RetryBudget};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// An upstream whose calls take scripted times (the last repeats), each
/// holding a concurrency permit and a live-call count while it runs.
#[derive(Clone)]
struct Slow {
    script: Arc<Mutex<VecDeque<(Duration, bool)>>>,
    calls: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    permits: Arc<Semaphore>,
}

struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slow {
    fn new(script: impl IntoIterator<Item = (Duration, bool)>) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.into_iter().collect())),
            calls: Arc::default(),
            live: Arc::default(),
            permits: Arc::new(Semaphore::new(8)),
        }
    }

    fn ok(latencies: impl IntoIterator<Item = Duration>) -> Self {
        Self::new(latencies.into_iter().map(|d| (d, true)))
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Request<Body>> for Slow {
    type Response = Response<String>;
    type Error = BoxError;
    type Future = BoxFut<Response<String>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<Body>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let (latency, ok) = {
            let mut s = self.script.lock().unwrap();
            if s.len() > 1 {
                s.pop_front().unwrap()
            } else {
                *s.front().unwrap()
            }
        };
        self.live.fetch_add(1, Ordering::SeqCst);
        let live = Live(self.live.clone());
        let permit = self.permits.clone().try_acquire_owned().expect("a permit");
        Box::pin(async move {
            let _hold = (live, permit);
            tokio::time::sleep(latency).await;
            if ok {
                Ok(Response::builder()
                    .header("x-call", n.to_string())
                    .body(String::new())
                    .unwrap())
            } else {
                Err(TransportError::new(TransportErrorKind::Reset, "scripted").into())
            }
        })
    }
}

fn fixed(delay: Duration) -> palisade_retry::HedgeLayerBuilder {
    HedgeLayer::builder().delay(delay).min_hedges_per_sec(100)
}

async fn send<S>(svc: &mut S, req: Request<Body>) -> Result<Response<String>, BoxError>
where
    S: Service<Request<Body>, Response = Response<String>, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

fn call_no(res: &Response<String>) -> &str {
    res.headers()["x-call"].to_str().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_hedged_and_the_loser_cancelled() {
    let rec = Recorder::default();
    let _g = rec.install();
    let up = Slow::ok([Duration::from_secs(10), ms(20)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    let start = Instant::now();
    let res = send(&mut svc, get("http://a.test/")).await.unwrap();
    assert_eq!(call_no(&res), "1", "the hedge won");
    assert_eq!(start.elapsed(), ms(120));
    assert_eq!(up.calls(), 2);
    assert_eq!(up.live.load(Ordering::SeqCst), 0, "the loser was cancelled");
    assert_eq!(up.permits.available_permits(), 8, "and its permit released");
    let ev = rec.named(HEDGE_SENT);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].field("delay_ms"), Some("100"));
    assert_eq!(ev[0].field("key"), Some("http://a.test:80"));
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_wins_when_it_answers_first() {
    let up = Slow::ok([ms(150), Duration::from_secs(10)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    let start = Instant::now();
    let res = send(&mut svc, get("http://a.test/")).await.unwrap();
    assert_eq!(call_no(&res), "0");
    assert_eq!(start.elapsed(), ms(150));
    assert_eq!(up.calls(), 2, "the hedge had left");
    assert_eq!(up.live.load(Ordering::SeqCst), 0, "and was cancelled");
}

#[tokio::test(start_paused = true)]
async fn a_fast_first_attempt_sends_no_hedge() {
    let up = Slow::ok([ms(20)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    send(&mut svc, get("http://a.test/")).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn only_idempotent_requests_are_hedged() {
    let up = Slow::ok([ms(500)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    send(&mut svc, post("http://a.test/", "x")).await.unwrap();
    assert_eq!(up.calls(), 1, "a POST is not hedged");

    let mut req = post("http://a.test/", "x");
    req.headers_mut()
        .insert("idempotency-key", "k".parse().unwrap());
    send(&mut svc, req).await.unwrap();
    assert_eq!(up.calls(), 2, "a key is not enough: the copies would race");

    let mut req = post("http://a.test/search", "q");
    req.extensions_mut().insert(Idempotent);
    send(&mut svc, req).await.unwrap();
    assert_eq!(up.calls(), 4, "an explicitly idempotent POST is hedged");
}

#[tokio::test(start_paused = true)]
async fn extra_load_is_capped_as_a_fraction_of_requests() {
    let up = Slow::ok([ms(100)]);
    let mut svc = HedgeLayer::builder()
        .delay(ms(50))
        .max_extra_load(0.1)
        .build()
        .unwrap()
        .layer(up.clone());
    for _ in 0..40 {
        send(&mut svc, get("http://a.test/")).await.unwrap();
    }
    // 10 % of 40 requests, all within the 10 s window.
    assert_eq!(up.calls(), 44);
}

#[tokio::test(start_paused = true)]
async fn hedges_spend_the_shared_retry_budget() {
    let rec = Recorder::default();
    let _g = rec.install();
    let budget = RetryBudget::new(BudgetConfig::new(Duration::from_secs(1), 1, 0.0).unwrap());
    let up = Slow::ok([ms(100)]);
    let mut svc = HedgeLayer::builder()
        .delay(ms(50))
        .max_extra_load(1.0)
        .budget(Budget::Shared(budget.clone()))
        .build()
        .unwrap()
        .layer(up.clone());
    for _ in 0..3 {
        send(&mut svc, get("http://a.test/")).await.unwrap();
    }
    assert_eq!(up.calls(), 4, "one hedge: the budget held one retry");
    assert_eq!(budget.available(), 0.0);
    let ev = rec.named(BUDGET_EXHAUSTED);
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.field("hedge") == Some("true")));
}

#[tokio::test(start_paused = true)]
async fn percentile_delay_follows_observed_latency() {
    let mut script: Vec<Duration> = vec![ms(200); 5];
    script.extend([Duration::from_secs(5), ms(10)]);
    let up = Slow::ok(script);
    let mut svc = HedgeLayer::builder()
        .percentile(0.5, ms(1), Duration::from_secs(10))
        .min_samples(5)
        .max_extra_load(1.0)
        .min_hedges_per_sec(100)
        .build()
        .unwrap()
        .layer(up.clone());
    for _ in 0..5 {
        send(&mut svc, get("http://p.test/")).await.unwrap();
    }
    assert_eq!(up.calls(), 5, "no hedging before enough samples");
    let start = Instant::now();
    let res = send(&mut svc, get("http://p.test/")).await.unwrap();
    assert_eq!(call_no(&res), "6");
    // p50 = 200 ms, as its histogram bucket's upper bound (~213 ms), then 10 ms.
    let took = start.elapsed();
    assert!(took >= ms(210) && took <= ms(240), "{took:?}");
    // Another key has no samples: not hedged.
    send(&mut svc, get("http://other.test/")).await.unwrap();
    assert_eq!(up.calls(), 8);
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_waits_for_the_other_one() {
    let up = Slow::new([(ms(200), false), (ms(150), true)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    let start = Instant::now();
    let res = send(&mut svc, get("http://a.test/")).await.unwrap();
    assert_eq!(call_no(&res), "1");
    assert_eq!(start.elapsed(), ms(250));

    // Before any hedge left, an error is returned at once.
    let up = Slow::new([(ms(20), false)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    assert!(send(&mut svc, get("http://a.test/")).await.is_err());
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_both_attempts() {
    let up = Slow::ok([Duration::from_secs(10)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    svc.ready().await.unwrap();
    let fut = svc.call(get("http://a.test/"));
    let timeout = tokio::time::timeout(ms(500), fut).await;
    assert!(timeout.is_err());
    assert_eq!(up.calls(), 2);
    assert_eq!(up.live.load(Ordering::SeqCst), 0);
    assert_eq!(up.permits.available_permits(), 8);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_is_sent_past_the_deadline() {
    let up = Slow::ok([ms(300)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    let mut req = get("http://a.test/");
    Deadline::after(ms(80)).apply(req.extensions_mut());
    send(&mut svc, req).await.unwrap();
    assert_eq!(up.calls(), 1);
}

fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(f).poll(&mut Context::from_waker(std::task::Waker::noop()))
}

#[tokio::test(start_paused = true)]
async fn the_loser_is_cancelled_as_soon_as_the_winner_answers() {
    let up = Slow::ok([Duration::from_secs(10), ms(20)]);
    let mut svc = fixed(ms(100)).build().unwrap().layer(up.clone());
    svc.ready().await.unwrap();
    let mut fut = Box::pin(svc.call(get("http://a.test/")));
    assert!(poll_once(&mut fut).is_pending());
    tokio::time::advance(ms(100)).await;
    assert!(poll_once(&mut fut).is_pending());
    assert_eq!(up.live.load(Ordering::SeqCst), 2, "both attempts in flight");
    tokio::time::advance(ms(20)).await;
    let Poll::Ready(Ok(res)) = poll_once(&mut fut) else {
        panic!("the hedge should have answered");
    };
    assert_eq!(call_no(&res), "1");
    // The future is still alive, yet the first attempt is gone.
    assert_eq!(up.live.load(Ordering::SeqCst), 0);
    assert_eq!(up.permits.available_permits(), 8);
    drop(fut);
}
