//! The layer contract: readiness, clones share state, an open circuit never
//! reaches the inner service, drop and cancellation release, the shared
//! backend.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use palisade_breaker::backend::BackendFuture;
use palisade_breaker::{
    BreakerLayer, BreakerStateBackend, CircuitState, MemoryBackend, SharedState,
};
use palisade_core::Key;
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

macro_rules! assert_ready_ok {
    ($e:expr) => {
        assert!(matches!($e, std::task::Poll::Ready(Ok(()))))
    };
}

fn one_strike() -> palisade_breaker::Builder {
    base().without_failure_ratio().consecutive_failures(1)
}

#[tokio::test(start_paused = true)]
async fn readiness_is_the_inner_services() {
    let layer = BreakerLayer::new();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(req("a"));
    let (_, tx) = handle.next_request().await.unwrap();
    tx.send_response(http::Response::new(()));
    fut.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_never_calls_the_inner_service() {
    let layer = one_strike().build().unwrap();
    let (mut svc, mut handle) = mock::spawn_layer::<Req, Res, _>(layer);
    assert_ready_ok!(svc.poll_ready());
    let fut = svc.call(req("a"));
    let (_, tx) = handle.next_request().await.unwrap();
    tx.send_response(http::Response::builder().status(500).body(()).unwrap());
    fut.await.unwrap();

    for _ in 0..3 {
        assert_ready_ok!(svc.poll_ready());
        let res = svc.call(req("a")).await;
        assert!(open_error(&res).is_some());
    }
    assert!(
        handle.poll_request().is_pending(),
        "no request reached the inner service"
    );
}

#[tokio::test(start_paused = true)]
async fn clones_and_sibling_services_share_state() {
    let layer = one_strike().build().unwrap();
    let (up, calls) = upstream();
    let mut a = layer.layer(up.clone());
    let mut a_clone = a.clone();
    let mut sibling = layer.layer(up);

    send(&mut a, req_with("x", 500)).await.unwrap();
    assert!(open_error(&send(&mut a_clone, req("x")).await).is_some());
    assert!(open_error(&send(&mut sibling, req("x")).await).is_some());
    assert_eq!(hits(&calls), 1);
    assert_eq!(
        a_clone.handle().state(&key("x")).unwrap().state,
        CircuitState::Open
    );

    // A second layer is independent.
    let other = one_strike().build().unwrap();
    let (up, _) = upstream();
    let mut other = other.layer(up);
    send(&mut other, req("x")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_an_unpolled_future_releases_everything() {
    let layer = one_strike().half_open_probes(1).build().unwrap();
    let h = layer.handle();
    let (up, calls) = upstream();
    let mut svc = layer.layer(up);
    send(&mut svc, req_with("a", 500)).await.unwrap();
    advance(Duration::from_secs(5)).await;

    // Admitted as the only probe, then dropped before it is ever polled.
    let probe = svc.ready().await.unwrap().call(req("a"));
    assert_eq!(h.state(&key("a")).unwrap().probes_in_flight, 1);
    drop(probe);
    assert_eq!(h.state(&key("a")).unwrap().probes_in_flight, 0);
    send(&mut svc, req("a")).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Closed);
    assert_eq!(hits(&calls), 3);
}

#[tokio::test(start_paused = true)]
async fn a_shared_backend_opens_other_instances_and_hears_closes() {
    let backend = Arc::new(MemoryBackend::new());
    let instance = || {
        one_strike()
            .backend(backend.clone())
            .sync_interval(Duration::from_secs(1))
            .build()
            .unwrap()
    };
    let (a, b) = (instance(), instance());
    let (hb, ha) = (b.handle(), a.handle());
    let (up, _) = upstream();
    let (mut a, mut b) = (a.layer(up.clone()), b.layer(up));

    send(&mut a, req_with("x", 500)).await.unwrap();
    assert_eq!(
        backend.state(&key("x")),
        SharedState::Open {
            remaining: Duration::from_secs(5)
        }
    );
    // B's first call reads the backend alongside its own request; from then
    // on B fails fast too.
    send(&mut b, req("x")).await.unwrap();
    assert_eq!(hb.state(&key("x")).unwrap().state, CircuitState::Open);
    assert_eq!(
        hb.state(&key("x")).unwrap().open_for,
        Some(Duration::from_secs(5))
    );
    assert!(open_error(&send(&mut b, req("x")).await).is_some());

    advance(Duration::from_secs(5)).await;
    send(&mut a, req("x")).await.unwrap(); // A's probe closes and says so
    assert_eq!(ha.state(&key("x")).unwrap().state, CircuitState::Closed);
    assert_eq!(backend.state(&key("x")), SharedState::Closed);
}

#[derive(Debug)]
struct Unreachable;

impl BreakerStateBackend for Unreachable {
    fn publish(&self, _key: &Key, _state: SharedState) -> BackendFuture<()> {
        Box::pin(async { Err("connection refused".into()) })
    }
    fn fetch(&self, _key: &Key) -> BackendFuture<SharedState> {
        Box::pin(async { Err("connection refused".into()) })
    }
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_backend_leaves_the_local_breaker_in_charge() {
    let layer = one_strike().backend(Arc::new(Unreachable)).build().unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    send(&mut svc, req("x")).await.unwrap();
    assert_eq!(
        send(&mut svc, req_with("x", 500)).await.unwrap().status(),
        500
    );
    assert_eq!(h.state(&key("x")).unwrap().state, CircuitState::Open);
    assert!(open_error(&send(&mut svc, req("x")).await).is_some());
}

/// Panics in `call` when armed; otherwise answers 500 at once.
#[derive(Clone)]
struct PanicsOnCall(Arc<std::sync::atomic::AtomicBool>);

impl Service<Req> for PanicsOnCall {
    type Response = Res;
    type Error = palisade_core::BoxError;
    type Future = std::future::Ready<Result<Res, palisade_core::BoxError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        assert!(
            !self.0.load(std::sync::atomic::Ordering::SeqCst),
            "inner call panicked"
        );
        std::future::ready(Ok(http::Response::builder().status(500).body(()).unwrap()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_inner_call_panics_gives_its_slot_back() {
    let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let layer = one_strike().half_open_probes(1).build().unwrap();
    let h = layer.handle();
    let mut svc = layer.layer(PanicsOnCall(armed.clone()));
    send(&mut svc, req("a")).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Open);
    advance(Duration::from_secs(5)).await;

    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        drop(svc.call(req("a")));
    }));
    assert!(panicked.is_err());
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::HalfOpen);
    assert_eq!(s.probes_in_flight, 0);

    armed.store(false, std::sync::atomic::Ordering::SeqCst);
    let res = send(&mut svc, req("a")).await;
    assert!(
        open_error(&res).is_none(),
        "the next call is admitted as a probe"
    );
}
