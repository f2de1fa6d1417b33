//! Trip policies, what counts, keys, eviction, breaks and manual control, on
//! a paused clock.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use palisade_breaker::{
    BreakerLayer, CircuitState, Transition, TransitionReason, Window, WindowCounts,
};
use palisade_core::Global;
use palisade_core::classify::{Class, ClassifyFn};
use tokio::time::advance;
use tower::Layer;

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_at_threshold_not_before() {
    let layer = base()
        .without_failure_ratio()
        .consecutive_failures(3)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, calls) = upstream();
    let mut svc = layer.layer(up);

    for _ in 0..2 {
        assert_eq!(
            send(&mut svc, req_with("a", 500)).await.unwrap().status(),
            500
        );
    }
    // A success breaks the streak.
    send(&mut svc, req("a")).await.unwrap();
    for _ in 0..2 {
        send(&mut svc, req_with("a", 500)).await.unwrap();
    }
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::Closed, "threshold − 1 must not trip");
    assert_eq!(s.consecutive_failures, 2);

    send(&mut svc, req_with("a", 500)).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Open);

    let before = hits(&calls);
    let res = send(&mut svc, req("a")).await;
    assert_eq!(
        open_error(&res).expect("fails fast").retry_after,
        Some(Duration::from_secs(5))
    );
    assert_eq!(
        hits(&calls),
        before,
        "an open circuit never calls the upstream"
    );
    assert_eq!(h.state(&key("a")).unwrap().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn a_429_or_a_4xx_between_failures_does_not_break_the_streak() {
    // Alternating 503 and 429 (and a 404) with a threshold of 3: the third
    // 503 opens the circuit, although no two 503s were adjacent.
    let layer = base()
        .without_failure_ratio()
        .consecutive_failures(3)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    for status in [503, 429, 503, 404] {
        send(&mut svc, req_with("a", status)).await.unwrap();
    }
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::Closed);
    assert_eq!(
        s.consecutive_failures, 2,
        "the 429 and the 404 neither count nor reset"
    );
    send(&mut svc, req_with("a", 503)).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn failure_ratio_trips_at_ratio_not_below() {
    let layer = base()
        .failure_ratio(0.5)
        .window(Window::count(10))
        .minimum_throughput(10)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);

    for _ in 0..6 {
        send(&mut svc, req("a")).await.unwrap();
    }
    for _ in 0..4 {
        send(&mut svc, req_with("a", 503)).await.unwrap();
    }
    let s = h.state(&key("a")).unwrap();
    assert_eq!(
        s.window,
        WindowCounts {
            calls: 10,
            failures: 4,
            slow: 0
        }
    );
    assert_eq!(s.state, CircuitState::Closed, "4 of 10 is below 0.5");

    // The oldest success slides out: 5 of 10.
    send(&mut svc, req_with("a", 503)).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn minimum_throughput_gates_the_ratio() {
    let layer = base()
        .failure_ratio(0.5)
        .window(Window::count(20))
        .minimum_throughput(10)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);

    for _ in 0..9 {
        send(&mut svc, req_with("a", 500)).await.unwrap();
    }
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.window.failures, 9);
    assert_eq!(
        s.state,
        CircuitState::Closed,
        "9 failures of 9 is below the minimum throughput"
    );
    send(&mut svc, req_with("a", 500)).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_slides_whole_buckets() {
    let layer = base()
        .failure_ratio(0.5)
        .window(Window::time_with_buckets(Duration::from_secs(10), 10))
        .minimum_throughput(4)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);

    // Host a: three failures still in the window 9 s later.
    for _ in 0..3 {
        send(&mut svc, req_with("a", 500)).await.unwrap();
    }
    // Host b: three failures slid out 10 s later.
    for _ in 0..3 {
        send(&mut svc, req_with("b", 500)).await.unwrap();
    }
    advance(Duration::from_secs(9)).await;
    send(&mut svc, req_with("a", 500)).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Open);

    advance(Duration::from_secs(1)).await;
    assert_eq!(h.state(&key("b")).unwrap().window, WindowCounts::default());
    send(&mut svc, req_with("b", 500)).await.unwrap();
    for _ in 0..3 {
        send(&mut svc, req("b")).await.unwrap();
    }
    let s = h.state(&key("b")).unwrap();
    assert_eq!(s.window.calls, 4);
    assert_eq!(s.window.failures, 1);
    assert_eq!(s.state, CircuitState::Closed);
    send(&mut svc, req_with("b", 500)).await.unwrap(); // 2 of 5
    assert_eq!(h.state(&key("b")).unwrap().state, CircuitState::Closed);
    send(&mut svc, req_with("b", 500)).await.unwrap(); // 3 of 6
    assert_eq!(h.state(&key("b")).unwrap().state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_call_ratio_trips_at_its_thresholds() {
    let events = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let log = events.clone();
    let layer = base()
        .without_failure_ratio()
        .slow_calls(Duration::from_millis(1000), 0.5)
        .window(Window::count(4))
        .minimum_throughput(4)
        .on_transition(move |t| log.lock().unwrap().push(t.clone()))
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    let call = |ms: u64| with_header(req("a"), "x-delay-ms", &ms.to_string());

    // 999 ms is not slow; 1000 ms is.
    for ms in [999, 1000, 999, 999] {
        send(&mut svc, call(ms)).await.unwrap();
    }
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.window.slow, 1);
    assert_eq!(s.state, CircuitState::Closed, "1 slow of 4 is below 0.5");
    send(&mut svc, call(1000)).await.unwrap(); // slow: 1000, 999, 999, 1000
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::Open);
    assert_eq!(s.failures, 0, "slow successes are not failures");
    assert_eq!(
        events.lock().unwrap()[0].reason,
        TransitionReason::SlowCallRatio
    );
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_429_are_not_failures() {
    let layer = base()
        .without_failure_ratio()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    for status in [404, 429, 400, 429, 403, 429] {
        send(&mut svc, req_with("a", status)).await.unwrap();
    }
    // A local refusal from a layer below is not counted at all.
    let _ = send(&mut svc, with_header(req("a"), "x-error", "rate_limited")).await;
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.state, CircuitState::Closed);
    assert_eq!((s.successes, s.failures), (6, 0));
    // Connect failures and resets are failures.
    let _ = send(&mut svc, with_header(req("a"), "x-error", "connect")).await;
    let _ = send(&mut svc, with_header(req("a"), "x-error", "reset")).await;
    let s = h.state(&key("a")).unwrap();
    assert_eq!(s.failures, 2);
    assert_eq!(s.state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_user_classifier_decides_what_fails() {
    // A 200 carrying `x-error` is a failure for this API.
    let classify = ClassifyFn::new(|status: http::StatusCode, headers: &http::HeaderMap| {
        headers
            .contains_key("x-error")
            .then_some(Class::ServerError {
                status,
                retry_after: None,
            })
    });
    let layer = base()
        .without_failure_ratio()
        .consecutive_failures(1)
        .classify(classify)
        .build()
        .unwrap();
    let h = layer.handle();
    let up = tower::service_fn(|_req: Req| async {
        Ok::<_, palisade_core::BoxError>(
            http::Response::builder()
                .header("x-error", "1")
                .body(())
                .unwrap(),
        )
    });
    let mut svc = layer.layer(up);
    assert_eq!(send(&mut svc, req("a")).await.unwrap().status(), 200);
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn one_hosts_failures_do_not_open_another_hosts_breaker() {
    let layer = base()
        .without_failure_ratio()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, calls) = upstream();
    let mut svc = layer.layer(up);
    send(&mut svc, req_with("dead.example", 503)).await.unwrap();
    assert!(open_error(&send(&mut svc, req("dead.example")).await).is_some());
    for _ in 0..5 {
        send(&mut svc, req("alive.example")).await.unwrap();
    }
    assert_eq!(
        h.state(&key("alive.example")).unwrap().state,
        CircuitState::Closed
    );
    assert_eq!(hits(&calls), 6);

    // With a Global key every host shares one circuit.
    let layer = base()
        .without_failure_ratio()
        .consecutive_failures(1)
        .key(Global)
        .build()
        .unwrap();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    send(&mut svc, req_with("dead.example", 503)).await.unwrap();
    assert!(open_error(&send(&mut svc, req("alive.example")).await).is_some());
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted_and_the_map_is_bounded() {
    let layer = base()
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    send(&mut svc, req("a")).await.unwrap();
    send(&mut svc, req("b")).await.unwrap();
    assert_eq!(h.len(), 2);
    advance(Duration::from_secs(61)).await;
    send(&mut svc, req("c")).await.unwrap();
    assert_eq!(h.len(), 1, "idle keys are swept on access");
    assert!(h.state(&key("a")).is_none());
    assert!(h.state(&key("c")).is_some());

    let layer = base().max_keys(3).build().unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    for i in 0..50 {
        send(&mut svc, req(&format!("host-{i}"))).await.unwrap();
        advance(Duration::from_millis(1)).await;
        assert!(h.len() <= 3);
    }
    assert!(h.state(&key("host-49")).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_503_retry_after_lengthens_the_break_within_the_maximum() {
    let build = |honor: bool| {
        base()
            .without_failure_ratio()
            .consecutive_failures(1)
            .break_duration(Duration::from_secs(1))
            .max_break_duration(Duration::from_secs(10))
            .honor_retry_after(honor)
            .build()
            .unwrap()
    };
    let layer = build(true);
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    let open_for = |host: &str| h.state(&key(host)).unwrap().open_for.unwrap();

    let trip = |host: &str, status: u16, ra: &str| {
        with_header(req_with(host, status), "x-retry-after", ra)
    };
    send(&mut svc, trip("a", 503, "5")).await.unwrap();
    assert_eq!(open_for("a"), Duration::from_secs(5));
    send(&mut svc, trip("b", 503, "3600")).await.unwrap();
    assert_eq!(
        open_for("b"),
        Duration::from_secs(10),
        "bounded by the maximum"
    );
    send(&mut svc, trip("c", 500, "5")).await.unwrap();
    assert_eq!(
        open_for("c"),
        Duration::from_secs(1),
        "only a 503 lengthens"
    );
    send(&mut svc, trip("d", 503, "0")).await.unwrap();
    assert_eq!(open_for("d"), Duration::from_secs(1), "never shortens");
    // The fast fail reports the lengthened break.
    let res = send(&mut svc, req("a")).await;
    assert_eq!(
        open_error(&res).unwrap().retry_after,
        Some(Duration::from_secs(5))
    );

    let layer = build(false);
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    send(&mut svc, trip("a", 503, "5")).await.unwrap();
    assert_eq!(
        h.state(&key("a")).unwrap().open_for,
        Some(Duration::from_secs(1))
    );
}

/// Trips `host`, then fails `n − 1` probes in a row, returning each break.
async fn break_sequence(seed: u64, n: usize) -> Vec<Duration> {
    let layer = BreakerLayer::builder()
        .without_failure_ratio()
        .consecutive_failures(1)
        .break_duration(Duration::from_secs(1))
        .max_break_duration(Duration::from_secs(8))
        .jitter(0.5)
        .seed(seed)
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);
    let mut breaks = Vec::new();
    for _ in 0..n {
        send(&mut svc, req_with("a", 500)).await.unwrap();
        let s = h.state(&key("a")).unwrap();
        assert_eq!(s.state, CircuitState::Open);
        let b = s.open_for.unwrap();
        breaks.push(b);
        advance(b).await;
    }
    // A probe that succeeds closes, and the next opening starts over.
    send(&mut svc, req("a")).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Closed);
    send(&mut svc, req_with("a", 500)).await.unwrap();
    let again = h.state(&key("a")).unwrap().open_for.unwrap();
    assert!(again <= Duration::from_secs(1), "{again:?}");
    breaks
}

#[tokio::test(start_paused = true)]
async fn breaks_double_up_to_the_maximum_with_seeded_jitter() {
    let breaks = break_sequence(7, 6).await;
    let nominal = [1, 2, 4, 8, 8, 8].map(Duration::from_secs);
    for (b, n) in breaks.iter().zip(nominal) {
        assert!(*b <= n && *b >= n / 2, "{b:?} outside [{:?}, {n:?}]", n / 2);
    }
    assert_eq!(breaks, break_sequence(7, 6).await, "same seed, same breaks");
    assert_ne!(breaks, break_sequence(8, 6).await);
}

#[tokio::test(start_paused = true)]
async fn manual_isolate_close_and_reset() {
    let layer = base()
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, calls) = upstream();
    let mut svc = layer.layer(up);

    h.isolate(&key("a"));
    let res = send(&mut svc, req("a")).await;
    assert_eq!(open_error(&res).unwrap().retry_after, None);
    assert_eq!(hits(&calls), 0);
    // Isolation outlives the idle timeout.
    advance(Duration::from_secs(120)).await;
    send(&mut svc, req("b")).await.unwrap();
    h.evict_idle();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Isolated);
    assert!(open_error(&send(&mut svc, req("a")).await).is_some());

    assert!(h.close(&key("a")));
    send(&mut svc, req("a")).await.unwrap();
    assert_eq!(h.state(&key("a")).unwrap().state, CircuitState::Closed);

    assert!(h.reset(&key("a")));
    assert!(h.state(&key("a")).is_none());
    assert!(!h.close(&key("nobody")));
}

#[tokio::test(start_paused = true)]
async fn every_transition_is_reported_with_a_new_generation() {
    let events = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let log = events.clone();
    let layer = base()
        .without_failure_ratio()
        .consecutive_failures(1)
        .break_duration(Duration::from_secs(1))
        .on_transition(move |t| log.lock().unwrap().push(t.clone()))
        .build()
        .unwrap();
    let h = layer.handle();
    let (up, _) = upstream();
    let mut svc = layer.layer(up);

    send(&mut svc, req_with("a", 500)).await.unwrap(); // closed → open
    advance(Duration::from_secs(1)).await;
    send(&mut svc, req_with("a", 500)).await.unwrap(); // → half-open → open
    advance(Duration::from_secs(2)).await;
    send(&mut svc, req("a")).await.unwrap(); // → half-open → closed
    h.isolate(&key("a"));
    h.close(&key("a"));

    use CircuitState::{Closed, HalfOpen, Open};
    use TransitionReason::{
        BreakElapsed, ConsecutiveFailures, ManualClose, ProbeFailed, ProbesSucceeded,
    };
    let got: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|t| (t.from, t.to, t.reason, t.generation, t.break_duration))
        .collect();
    let s = |n| Some(Duration::from_secs(n));
    assert_eq!(
        got,
        [
            (Closed, Open, ConsecutiveFailures, 1, s(1)),
            (Open, HalfOpen, BreakElapsed, 2, None),
            (HalfOpen, Open, ProbeFailed, 3, s(2)),
            (Open, HalfOpen, BreakElapsed, 4, None),
            (HalfOpen, Closed, ProbesSucceeded, 5, None),
            (
                Closed,
                CircuitState::Isolated,
                TransitionReason::Isolated,
                6,
                None
            ),
            (CircuitState::Isolated, Closed, ManualClose, 7, None),
        ]
    );
    assert!(events.lock().unwrap().iter().all(|t| t.key == key("a")));
    assert_eq!(h.state(&key("a")).unwrap().opened, 2);
}
