//! Real HTTP on the real clock: a dead upstream behind the breaker sees only
//! probes while the circuit is open. Asserts counters, never durations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use palisade_breaker::{BreakerLayer, CircuitState, TransitionReason};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::error::{CircuitOpen, find};
use palisade_core::{Body, Key};
use palisade_reqwest::{PoolConfig, ReqwestService};
use tower::{ServiceBuilder, ServiceExt};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Reached(u16),
    Refused,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_sees_only_probes_while_the_breaker_is_open() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/dead",
        Script::always(Behavior::status(503).with_latency(Duration::from_millis(50))),
    );
    let url = server.url("/dead");
    let key = Key::origin(&url.parse().unwrap());

    let probes = Arc::new(AtomicU64::new(0));
    let counted = probes.clone();
    let layer = BreakerLayer::builder()
        .without_failure_ratio()
        .consecutive_failures(5)
        .break_duration(Duration::from_millis(200))
        .max_break_duration(Duration::from_millis(400))
        .half_open_probes(1)
        .on_transition(move |t| {
            if t.reason == TransitionReason::BreakElapsed {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service(ReqwestService::from_pool(&PoolConfig::new()).unwrap());
    let call = || {
        let svc = svc.clone();
        let url = url.clone();
        async move {
            let req = http::Request::get(url).body(Body::empty()).unwrap();
            match svc.oneshot(req).await {
                Ok(res) => Outcome::Reached(res.status().as_u16()),
                Err(e) if find::<CircuitOpen>(&*e).is_some() => Outcome::Refused,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    };
    let attempts = || server.stats("/dead").attempts;

    // Five 503s in a row open the circuit.
    for _ in 0..5 {
        assert_eq!(call().await, Outcome::Reached(503));
    }
    assert_eq!(attempts(), 5);
    assert_eq!(handle.state(&key).unwrap().state, CircuitState::Open);

    // Bursts of 50 concurrent calls: every call of a burst is decided at
    // once, and a half-open circuit admits one probe, so at most one call
    // per burst reaches the upstream.
    let mut refused = 0;
    for _ in 0..4 {
        for outcome in join_all((0..50).map(|_| call())).await {
            match outcome {
                Outcome::Refused => refused += 1,
                Outcome::Reached(status) => assert_eq!(status, 503),
            }
        }
    }
    assert!(
        refused >= 4 * 49,
        "only {refused} of 200 calls were refused"
    );
    assert_eq!(
        attempts(),
        5 + probes.load(Ordering::SeqCst),
        "every attempt after the circuit opened was a probe"
    );

    // The upstream recovers: the next probe closes the circuit.
    server.script("/dead", Script::always(Behavior::status(200)));
    let mut closed = false;
    for _ in 0..400 {
        match call().await {
            Outcome::Reached(200) => {
                closed = true;
                break;
            }
            Outcome::Reached(503) | Outcome::Refused => {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(closed, "a probe should have closed the circuit");
    assert_eq!(handle.state(&key).unwrap().state, CircuitState::Closed);
    assert_eq!(attempts(), 5 + probes.load(Ordering::SeqCst));

    for _ in 0..20 {
        assert_eq!(call().await, Outcome::Reached(200));
    }
    assert_eq!(attempts(), 5 + probes.load(Ordering::SeqCst) + 20);
    assert!(handle.state(&key).unwrap().rejected >= refused);
}
