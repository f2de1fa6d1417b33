//! Adaptive limits through the layer: what counts as a drop, what is not a
//! sample at all, the visible limit and its change events, and convergence
//! against a simulated upstream. All on the paused clock.

mod support;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use palisade_concurrency::limit::{Aimd, Gradient2, Vegas};
use palisade_concurrency::{ConcurrencyLimitLayer, Limit, LimitChange, ResponseBody};
use palisade_core::error::{CircuitOpen, Elapsed, Overloaded};
use palisade_core::{BoxError, Key, TransportError, TransportErrorKind};
use support::sim::{self, Scenario};
use support::{Call, Upstream, poll_once, req};
use tower::{Layer, Service, ServiceExt};

type Res = Response<ResponseBody<Full<Bytes>>>;
type Fut = Pin<Box<dyn std::future::Future<Output = Result<Res, BoxError>> + Send>>;

const A: &str = "http://a.test/";

fn key() -> Key {
    Key::origin(&A.parse().unwrap())
}

async fn start<S>(svc: &mut S, r: Request<()>) -> Fut
where
    S: Service<Request<()>, Response = Res, Error = BoxError>,
    S::Future: Send + 'static,
{
    svc.ready().await.unwrap();
    Box::pin(svc.call(r))
}

/// Sends one request, lets `answer` reply, and waits for the outcome.
async fn one<S>(svc: &mut S, up: &Upstream, answer: impl FnOnce(Call)) -> Result<Res, BoxError>
where
    S: Service<Request<()>, Response = Res, Error = BoxError>,
    S::Future: Send + 'static,
{
    let mut f = start(svc, req(A)).await;
    assert!(poll_once(&mut f).await.is_pending());
    tokio::time::advance(Duration::from_millis(10)).await;
    answer(up.next());
    f.await
}

fn aimd_layer(initial: usize) -> ConcurrencyLimitLayer {
    ConcurrencyLimitLayer::builder()
        .limit(
            Aimd::new()
                .initial_limit(initial)
                .min_limit(1)
                .max_limit(100)
                .backoff_ratio(0.5),
        )
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn aimd_multiplies_by_backoff_on_a_drop_and_grows_on_success() {
    let up = Upstream::new();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let seen = changes.clone();
    let l = ConcurrencyLimitLayer::builder()
        .limit(
            Aimd::new()
                .initial_limit(4)
                .min_limit(1)
                .max_limit(100)
                .backoff_ratio(0.5),
        )
        .on_limit_change(move |k: &Key, c: LimitChange| seen.lock().unwrap().push((k.clone(), c)))
        .build()
        .unwrap();
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());

    one(&mut svc, &up, |c| c.status(503)).await.unwrap();
    assert_eq!(diag.limit(&key()), Some(2), "halved on a 503");
    one(&mut svc, &up, |c| c.ok("")).await.unwrap();
    assert_eq!(diag.limit(&key()), Some(3), "one more on a success");
    // Only one of three in use: an idle client does not inflate its limit.
    one(&mut svc, &up, |c| c.ok("")).await.unwrap();
    assert_eq!(diag.limit(&key()), Some(3));

    // Grows again when at least half of it is in use.
    let mut a = start(&mut svc, req(A)).await;
    let mut b = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut a).await.is_pending());
    assert!(poll_once(&mut b).await.is_pending());
    up.next().ok("");
    up.next().ok("");
    // `b` started with 2 of 3 in flight: it grows the limit; `a` started
    // with 1 of 4 and does not.
    b.await.unwrap();
    assert_eq!(diag.limit(&key()), Some(4));
    a.await.unwrap();
    assert_eq!(diag.limit(&key()), Some(4));

    let got: Vec<(String, usize, usize)> = changes
        .lock()
        .unwrap()
        .iter()
        .map(|(k, c)| (k.to_string(), c.from, c.to))
        .collect();
    let k = key().to_string();
    assert_eq!(
        got,
        [(k.clone(), 4, 2), (k.clone(), 2, 3), (k.clone(), 3, 4)]
    );
    assert_eq!(diag.key(&key()).unwrap().overload_signals, 1);
}

#[tokio::test(start_paused = true)]
async fn overload_signals_are_429_503_timeouts_and_resets() {
    type Answer = Box<dyn FnOnce(Call)>;
    let drops: Vec<(&str, Answer)> = vec![
        ("429", Box::new(|c: Call| c.status(429))),
        ("503", Box::new(|c: Call| c.status(503))),
        ("attempt timeout", Box::new(|c: Call| c.err(Elapsed::new()))),
        (
            "transport timeout",
            Box::new(|c: Call| c.err(TransportError::new(TransportErrorKind::Timeout, "t"))),
        ),
        (
            "reset",
            Box::new(|c: Call| c.err(TransportError::new(TransportErrorKind::Reset, "r"))),
        ),
        (
            "io reset",
            Box::new(|c: Call| c.err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))),
        ),
    ];
    for (name, answer) in drops {
        let up = Upstream::new();
        let l = aimd_layer(20);
        let diag = l.diagnostics();
        let mut svc = l.layer(up.service());
        let _ = one(&mut svc, &up, answer).await;
        assert_eq!(diag.limit(&key()), Some(10), "{name} is a drop");
    }
}

#[tokio::test(start_paused = true)]
async fn other_outcomes_are_not_drops() {
    type Answer = Box<dyn FnOnce(Call)>;
    // Each would be a drop (halving 2 to 1) or a success (growing 2 to 3).
    let cases: Vec<(&str, Answer, usize)> = vec![
        ("200", Box::new(|c: Call| c.ok("")), 3),
        ("404", Box::new(|c: Call| c.status(404)), 3),
        // Health failures, not capacity signals: no sample at all.
        ("500", Box::new(|c: Call| c.status(500)), 2),
        (
            "connect error",
            Box::new(|c: Call| c.err(TransportError::new(TransportErrorKind::Connect, "refused"))),
            2,
        ),
    ];
    for (name, answer, expected) in cases {
        let up = Upstream::new();
        let l = aimd_layer(2);
        let diag = l.diagnostics();
        let mut svc = l.layer(up.service());
        let _ = one(&mut svc, &up, answer).await;
        assert_eq!(diag.limit(&key()), Some(expected), "{name}");
        assert_eq!(diag.key(&key()).unwrap().overload_signals, 0, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn local_rejections_are_not_samples() {
    // An inner layer refusing locally (an open circuit, a shed queue) says
    // nothing about the upstream: neither a drop nor a success.
    for refusal in [
        Box::new(CircuitOpen::new(None)) as BoxError,
        Box::new(Overloaded::new()),
    ] {
        let up = Upstream::new();
        let l = aimd_layer(2);
        let diag = l.diagnostics();
        let mut svc = l.layer(up.service());
        let err = one(&mut svc, &up, |c| c.err(refusal)).await.unwrap_err();
        assert!(err.is::<CircuitOpen>() || err.is::<Overloaded>());
        assert_eq!(diag.limit(&key()), Some(2));
    }

    // This layer's own rejections are not samples either.
    let up = Upstream::new();
    let l = ConcurrencyLimitLayer::builder()
        .limit(Aimd::new().initial_limit(2).min_limit(1).backoff_ratio(0.5))
        .max_queue(0)
        .build()
        .unwrap();
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let mut a = start(&mut svc, req(A)).await;
    let mut b = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut a).await.is_pending());
    assert!(poll_once(&mut b).await.is_pending());
    for _ in 0..10 {
        let e = start(&mut svc, req(A)).await.await.unwrap_err();
        assert!(e.is::<Overloaded>());
    }
    assert_eq!(diag.limit(&key()), Some(2));
    assert_eq!(diag.key(&key()).unwrap().rejected_queue_full, 10);
    drop((a, b));
}

#[tokio::test(start_paused = true)]
async fn caller_cancellations_are_not_samples() {
    let up = Upstream::new();
    let l = aimd_layer(2);
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    for _ in 0..5 {
        let mut f = start(&mut svc, req(A)).await;
        assert!(poll_once(&mut f).await.is_pending());
        tokio::time::advance(Duration::from_secs(30)).await;
        // The caller gives up: not a timeout of the upstream, nor a success.
        drop(f);
    }
    let s = diag.key(&key()).unwrap();
    assert_eq!(s.limit, 2);
    assert_eq!(s.overload_signals, 0);
    assert_eq!(s.in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_raised_limit_admits_waiters_at_once() {
    let up = Upstream::new();
    let l = ConcurrencyLimitLayer::builder()
        .limit(Aimd::new().initial_limit(1).min_limit(1))
        .build()
        .unwrap();
    let diag = l.diagnostics();
    let mut svc = l.layer(up.service());
    let first = start(&mut svc, req(A)).await;
    let mut w1 = start(&mut svc, req(A)).await;
    let mut w2 = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut w1).await.is_pending());
    assert!(poll_once(&mut w2).await.is_pending());
    // The success raises the limit to 2 before its permit is returned (the
    // empty body returns it at the head): both waiters get in.
    up.next().ok("");
    first.await.unwrap();
    assert_eq!(diag.limit(&key()), Some(2));
    assert!(poll_once(&mut w1).await.is_pending());
    assert!(poll_once(&mut w2).await.is_pending());
    assert_eq!(up.pending(), 2);
}

// Convergence against a simulated upstream whose latency rises with load.

fn scenario(capacity: usize, max_backlog: usize) -> Scenario {
    Scenario {
        capacity,
        service: Duration::from_millis(20),
        jitter: Duration::from_millis(2),
        max_backlog,
        load: 2.0,
        duration: Duration::from_secs(12),
        warmup: Duration::from_secs(4),
        max_queue: 0,
        max_wait: Duration::from_secs(1),
        trace_every: Duration::from_millis(50),
        seed: 7,
    }
}

fn run(limit: Limit, s: Scenario) -> sim::Report {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(sim::run("test", limit, s))
}

#[test]
fn vegas_converges_near_capacity_from_latency_alone() {
    // The upstream queues up to 4 × C before it would shed, so latency is
    // the only signal the limit gets.
    let c = 20;
    let s = scenario(c, 4 * c);
    let r = run(Vegas::new().min_limit(1).max_limit(8 * c).into(), s);
    assert_eq!(r.upstream_503, 0, "{r:?}");
    let cap = c as f64;
    assert!(
        r.mean_limit >= 0.9 * cap && r.mean_limit <= 1.5 * cap,
        "mean limit {} not near C = {c}",
        r.mean_limit
    );
    assert!(r.goodput >= 0.9, "goodput {}", r.goodput);
    assert!(r.p99 <= 2 * s.service, "p99 {:?}", r.p99);
    // A fixed limit far above capacity queues at the upstream instead.
    let fixed = run(Limit::fixed(8 * c), s);
    assert!(fixed.p99 >= 3 * s.service, "{fixed:?}");
}

#[test]
fn gradient2_converges_near_capacity_of_an_upstream_that_sheds() {
    // Gradient2 compares the latest latency with a long-term average that
    // follows a slow rise, so it is the upstream's 503s, beyond a short
    // backlog of C/4, that hold it near capacity.
    let c = 20;
    let s = scenario(c, c / 4);
    let r = run(Gradient2::new().min_limit(1).max_limit(8 * c).into(), s);
    let cap = c as f64;
    assert!(
        r.mean_limit >= cap && r.mean_limit <= 1.6 * cap,
        "mean limit {} not near C = {c}",
        r.mean_limit
    );
    assert!(r.goodput >= 0.9, "goodput {}", r.goodput);
    assert!(r.p99 <= 2 * s.service, "p99 {:?}", r.p99);
    // Most of the excess is shed locally instead of costing the upstream a 503.
    let fixed = run(Limit::fixed(8 * c), s);
    assert!(
        r.upstream_503 * 3 < fixed.upstream_503,
        "{} vs {}",
        r.upstream_503,
        fixed.upstream_503
    );
}

#[test]
fn aimd_converges_near_capacity_of_an_upstream_that_sheds() {
    let c = 20;
    let s = scenario(c, c / 4);
    let r = run(Aimd::new().min_limit(1).max_limit(8 * c).into(), s);
    let cap = c as f64;
    assert!(
        r.mean_limit >= cap && r.mean_limit <= 1.6 * cap,
        "mean limit {} not near C = {c}",
        r.mean_limit
    );
    assert!(r.goodput >= 0.9, "goodput {}", r.goodput);
    assert!(r.min_limit >= c / 2, "never collapses: {}", r.min_limit);
}
