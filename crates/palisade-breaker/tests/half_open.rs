//! Half-open: exactly N probes, success closes, failure re-opens longer,
//! stale results change nothing, and a dropped probe frees its slot.

mod common;

use std::time::Duration;

use common::*;
use palisade_breaker::{Breaker, BreakerLayer, CircuitState};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

type Mocked = Breaker<mock::Mock<Req, Res>>;

fn mocked(layer: &BreakerLayer) -> (Mocked, mock::Handle<Req, Res>) {
    let (m, handle) = mock::pair::<Req, Res>();
    (layer.layer(m), handle)
}

fn layer(probes: u32) -> BreakerLayer {
    base()
        .without_failure_ratio()
        .consecutive_failures(1)
        .half_open_probes(probes)
        .break_duration(Duration::from_secs(1))
        .build()
        .unwrap()
}

async fn call(svc: &mut Mocked, r: Req) -> <Mocked as Service<Req>>::Future {
    svc.ready().await.unwrap().call(r)
}

fn ok() -> Res {
    http::Response::new(())
}

fn status(code: u16) -> Res {
    http::Response::builder().status(code).body(()).unwrap()
}

/// Opens host `a` with one failed call.
async fn trip(svc: &mut Mocked, up: &mut mock::Handle<Req, Res>) {
    let f = call(svc, req("a")).await;
    let (_, send) = up.next_request().await.unwrap();
    send.send_response(status(500));
    assert_eq!(f.await.unwrap().status(), 500);
}

#[tokio::test(start_paused = true)]
async fn exactly_n_probes_then_success_closes() {
    let layer = layer(2);
    let h = layer.handle();
    let (mut svc, mut up) = mocked(&layer);
    trip(&mut svc, &mut up).await;
    advance(Duration::from_secs(1)).await;

    let p1 = call(&mut svc, req("a")).await;
    let p2 = call(&mut svc, req("a")).await;
    let third = call(&mut svc, req("a")).await.await;
    assert_eq!(
        open_error(&third)
            .expect("a third caller is refused")
            .retry_after,
        None
    );
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::HalfOpen);
    assert_eq!(s.probes_in_flight, 2);

    let (_, r1) = up.next_request().await.unwrap();
    let (_, r2) = up.next_request().await.unwrap();
    assert!(
        up.poll_request().is_pending(),
        "only two probes reached the upstream"
    );

    r1.send_response(ok());
    p1.await.unwrap();
    assert_eq!(
        h.state(&key("a")).unwrap().state,
        CircuitState::HalfOpen,
        "one success of two does not close"
    );
    // The finished probe's slot is not handed out again: N probes in all.
    assert!(open_error(&call(&mut svc, req("a")).await.await).is_some());
    r2.send_response(ok());
    p2.await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_a_longer_break() {
    let layer = layer(1);
    let h = layer.handle();
    let (mut svc, mut up) = mocked(&layer);
    trip(&mut svc, &mut up).await;
    assert_eq!(
        h.state(&key("a")).unwrap().open_for,
        Some(Duration::from_secs(1))
    );
    advance(Duration::from_millis(999)).await;
    assert!(open_error(&call(&mut svc, req("a")).await.await).is_some());
    advance(Duration::from_millis(1)).await;

    let probe = call(&mut svc, req("a")).await;
    let (_, send) = up.next_request().await.unwrap();
    send.send_response(status(502));
    probe.await.unwrap();
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::Open);
    assert_eq!(s.open_for, Some(Duration::from_secs(2)));

    advance(Duration::from_millis(1999)).await;
    let res = call(&mut svc, req("a")).await.await;
    assert_eq!(
        open_error(&res).unwrap().retry_after,
        Some(Duration::from_millis(1))
    );
}

#[tokio::test(start_paused = true)]
async fn stale_results_from_before_a_transition_change_nothing() {
    let layer = layer(1);
    let h = layer.handle();
    let (mut svc, mut up) = mocked(&layer);

    // Three calls admitted while closed (generation 0) and still in flight.
    let old1 = call(&mut svc, req("a")).await;
    let old2 = call(&mut svc, req("a")).await;
    let (_, old1_tx) = up.next_request().await.unwrap();
    let (_, old2_tx) = up.next_request().await.unwrap();
    trip(&mut svc, &mut up).await; // generation 1: open
    advance(Duration::from_secs(1)).await;
    let probe = call(&mut svc, req("a")).await; // generation 2: half-open
    let (_, probe_tx) = up.next_request().await.unwrap();

    // A late success from generation 0 must not close the circuit.
    old1_tx.send_response(ok());
    old1.await.unwrap();
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::HalfOpen);
    assert_eq!(s.generation, 2);
    assert_eq!(s.probes_in_flight, 1);

    probe_tx.send_response(ok());
    probe.await.unwrap();
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::Closed);
    assert_eq!(s.generation, 3);

    // A late failure from generation 0 must neither re-open nor count, even
    // though one failure trips this breaker.
    old2_tx.send_response(status(500));
    assert_eq!(old2.await.unwrap().status(), 500);
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::Closed);
    assert_eq!(s.generation, 3);
    assert_eq!(s.consecutive_failures, 0);
    assert_eq!(s.window.calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let layer = layer(1);
    let h = layer.handle();
    let (mut svc, mut up) = mocked(&layer);
    trip(&mut svc, &mut up).await;
    advance(Duration::from_secs(1)).await;

    let probe = call(&mut svc, req("a")).await;
    let (_, _probe_tx) = up.next_request().await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().probes_in_flight, 1);
    assert!(open_error(&call(&mut svc, req("a")).await.await).is_some());

    drop(probe);
    assert_eq!(h.state(&key("a")).unwrap().probes_in_flight, 0);
    let next = call(&mut svc, req("a")).await;
    let (_, tx) = up.next_request().await.expect("a new probe goes through");
    tx.send_response(ok());
    next.await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_cancelled_by_a_timeout_frees_its_slot() {
    let layer = layer(1);
    let h = layer.handle();
    let (mut svc, mut up) = mocked(&layer);
    trip(&mut svc, &mut up).await;
    advance(Duration::from_secs(1)).await;

    let probe = call(&mut svc, req("a")).await;
    let (_, _never_answered) = up.next_request().await.unwrap();
    let timed_out = tokio::time::timeout(Duration::from_millis(100), probe).await;
    assert!(timed_out.is_err());
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::HalfOpen);
    assert_eq!(
        s.probes_in_flight, 0,
        "the cancelled probe gave its slot back"
    );

    let next = call(&mut svc, req("a")).await;
    assert!(up.next_request().await.is_some());
    drop(next);
}

#[tokio::test(start_paused = true)]
async fn a_probe_refused_below_says_nothing_and_frees_its_slot() {
    let layer = layer(1);
    let h = layer.handle();
    let (mut svc, mut up) = mocked(&layer);
    trip(&mut svc, &mut up).await;
    advance(Duration::from_secs(1)).await;

    let probe = call(&mut svc, req("a")).await;
    let (_, tx) = up.next_request().await.unwrap();
    tx.send_error(palisade_core::error::RateLimited::new(None));
    assert!(probe.await.is_err());
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::HalfOpen);
    assert_eq!(s.probes_in_flight, 0);
}
