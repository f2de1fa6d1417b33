//! ChaosLayer on tokio's paused clock over in-memory services.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response};
use palisade_chaos::{ChaosLayer, ConfigError, Fault, InjectedFault};
use palisade_core::{
    BoxError, Class, Classify, HttpClassifier, TransportError, TransportErrorKind,
};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

type Svc = tower::util::BoxCloneService<Request<String>, Response<String>, BoxError>;

/// An upstream that counts its calls and answers 200 "up".
fn upstream(calls: Arc<AtomicUsize>) -> Svc {
    tower::util::BoxCloneService::new(service_fn(move |_req: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, BoxError>(Response::new("up".to_owned())) }
    }))
}

fn req() -> Request<String> {
    Request::new(String::new())
}

fn only(fault: Fault) -> ChaosLayer {
    ChaosLayer::builder()
        .injection_rate(1.0)
        .fault(fault)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_call_by_exactly_the_fault() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(only(Fault::latency(Duration::from_millis(250))))
        .service(upstream(calls.clone()));
    let started = Instant::now();
    let res = svc.oneshot(req()).await.unwrap();
    assert_eq!(res.body(), "up");
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn latency_does_not_call_inner_before_the_delay() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(only(Fault::latency(Duration::from_secs(1))))
        .service(upstream(calls.clone()));
    let fut = svc.ready().await.unwrap().call(req());
    let task = tokio::spawn(fut);
    tokio::time::advance(Duration::from_millis(999)).await;
    tokio::task::yield_now().await;
    assert!(!task.is_finished());
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not sent during the delay");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(task.await.unwrap().is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn random_latency_stays_within_bounds() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(20));
    let layer = only(Fault::latency_between(min, max));
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(upstream(calls.clone()));
    let mut seen = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        svc.ready().await.unwrap().call(req()).await.unwrap();
        seen.push(started.elapsed());
    }
    assert!(seen.iter().all(|d| (min..=max).contains(d)), "{seen:?}");
    assert!(
        seen.iter().any(|d| *d != seen[0]),
        "latencies vary: {seen:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn error_fault_fails_without_calling_inner() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(only(Fault::error(TransportErrorKind::Connect)))
        .service(upstream(calls.clone()));
    let err = svc.oneshot(req()).await.unwrap_err();
    let t = err
        .downcast_ref::<TransportError>()
        .expect("a TransportError");
    assert_eq!(t.kind(), TransportErrorKind::Connect);
    assert!(palisade_core::error::find::<InjectedFault>(&*err).is_some());
    assert_eq!(HttpClassifier::new().classify_error(&*err), Class::Connect);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn status_fault_answers_without_calling_inner() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(only(Fault::status(503)))
        .service(upstream(calls.clone()));
    let res = svc.oneshot(req()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.body(), "");
    assert!(HttpClassifier::new().classify_response(&res).is_failure());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn abort_sends_the_request_then_fails_with_a_reset() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(only(Fault::abort()))
        .service(upstream(calls.clone()));
    let err = svc.oneshot(req()).await.unwrap_err();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the upstream did the work");
    let class = HttpClassifier::new().classify_error(&*err);
    assert_eq!(class, Class::Transport(TransportErrorKind::Reset));
    assert!(
        !class.never_sent(),
        "an abort is not safe to resend blindly"
    );
    assert_eq!(
        palisade_core::error::find::<InjectedFault>(&*err),
        Some(&InjectedFault::Abort)
    );
}

#[tokio::test(start_paused = true)]
async fn zero_rate_is_a_pass_through() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = ChaosLayer::builder()
        .injection_rate(0.0)
        .fault(Fault::status(500))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));
    for _ in 0..200 {
        let res = svc.ready().await.unwrap().call(req()).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(layer.injected(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 200);
}

/// The statuses a fresh stack returns for `n` calls.
async fn run(layer: ChaosLayer, n: usize) -> Vec<u16> {
    let mut svc = ServiceBuilder::new()
        .layer(layer)
        .service(upstream(Arc::new(AtomicUsize::new(0))));
    let mut out = Vec::new();
    for _ in 0..n {
        let res = svc.ready().await.unwrap().call(req()).await;
        out.push(match res {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        });
    }
    out
}

fn mixed(seed: u64, rate: f64) -> ChaosLayer {
    ChaosLayer::builder()
        .injection_rate(rate)
        .seed(seed)
        .fault(Fault::status(503))
        .weighted_fault(Fault::error(TransportErrorKind::Reset), 3)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn same_seed_same_faults() {
    let a = run(mixed(42, 0.3), 500).await;
    assert_eq!(a, run(mixed(42, 0.3), 500).await);
    assert_ne!(a, run(mixed(43, 0.3), 500).await);
}

#[tokio::test(start_paused = true)]
async fn rate_and_weights_are_honoured() {
    let layer = mixed(7, 0.25);
    let out = run(layer.clone(), 4000).await;
    let injected = out.iter().filter(|s| **s != 200).count();
    assert_eq!(injected as u64, layer.injected());
    // 4000 draws at 0.25: 1000 expected, and a deviation of 100 is over 5 sigma.
    assert!((900..=1100).contains(&injected), "{injected}");
    let resets = out.iter().filter(|s| **s == 0).count();
    let statuses = out.iter().filter(|s| **s == 503).count();
    // Weights 3:1.
    assert!(resets > 2 * statuses, "{resets} resets vs {statuses} 503s");
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_generator_and_counter() {
    let layer = only(Fault::status(500));
    let calls = Arc::new(AtomicUsize::new(0));
    let a = ServiceBuilder::new()
        .layer(layer.clone())
        .service(upstream(calls.clone()));
    let b = a.clone();
    a.oneshot(req()).await.unwrap();
    b.oneshot(req()).await.unwrap();
    assert_eq!(layer.injected(), 2);
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_readiness() {
    let (mut svc, mut handle) = tower_test::mock::spawn_layer::<Request<String>, Response<String>, _>(
        only(Fault::status(500)),
    );
    handle.allow(0);
    assert!(
        svc.poll_ready().is_pending(),
        "not ready while the inner is not"
    );
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), std::task::Poll::Ready(Ok(()))));
}

#[test]
fn builder_rejects_bad_configuration() {
    let b = || ChaosLayer::builder().fault(Fault::status(500));
    assert_eq!(
        b().injection_rate(f64::NAN)
            .build()
            .unwrap_err()
            .to_string(),
        "invalid chaos injection rate NaN: expected a number in 0.0..=1.0"
    );
    assert!(matches!(
        b().injection_rate(1.5).build(),
        Err(ConfigError::InvalidRate(_))
    ));
    assert!(matches!(
        b().injection_rate(-0.1).build(),
        Err(ConfigError::InvalidRate(_))
    ));
    assert_eq!(
        ChaosLayer::builder()
            .injection_rate(0.5)
            .build()
            .unwrap_err(),
        ConfigError::NoFaults
    );
    assert_eq!(
        ChaosLayer::builder()
            .fault(Fault::status(42))
            .build()
            .unwrap_err(),
        ConfigError::InvalidStatus(42)
    );
    assert_eq!(
        ChaosLayer::builder()
            .fault(Fault::latency(Duration::ZERO))
            .build()
            .unwrap_err(),
        ConfigError::ZeroLatency
    );
    assert_eq!(
        ChaosLayer::builder()
            .fault(Fault::latency_between(
                Duration::from_secs(2),
                Duration::from_secs(1)
            ))
            .build()
            .unwrap_err(),
        ConfigError::InvertedLatency
    );
    assert_eq!(
        ChaosLayer::builder()
            .weighted_fault(Fault::abort(), 0)
            .build()
            .unwrap_err(),
        ConfigError::ZeroWeight
    );
    assert!(ChaosLayer::builder().injection_rate(0.0).build().is_ok());
}
