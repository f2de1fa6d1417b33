//! The standard stack end to end against the flaky upstream: each layer's
//! effect as the upstream sees it, per-request overrides, mounts, custom
//! layers and what telemetry prints.

use std::time::Duration;

use palisade::breaker::BreakerLayer;
use palisade::concurrency::{ConcurrencyLimitLayer, limit::Limit};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::{BackoffStrategy, RetryLayer, RetryPolicy};
use palisade::{Client, Kind, StackConfig};
use palisade_chaos::{Behavior, FlakyServer, Script};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Retries with a 10 ms constant backoff, so tests on the real clock are quick.
fn quick_retry() -> RetryLayer {
    RetryPolicy::builder()
        .backoff(BackoffStrategy::Constant)
        .base_delay(ms(10))
        .max_delay(ms(10))
        .no_budget()
        .seed(7)
        .build_layer()
        .unwrap()
}

fn client(server: &FlakyServer, stack: StackConfig) -> Client {
    Client::builder()
        .base_url(&server.url("/"))
        .stack(|_| stack)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_default_stack_has_every_layer_in_order() {
    let client = Client::new().unwrap();
    let names: Vec<&str> = client
        .describe()
        .layers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "deadline",
            "retry",
            "breaker",
            "concurrency",
            "attempt_timeout",
            "body_timeout",
            "transport"
        ]
    );
    let d = client.describe();
    assert_eq!(d.settings("deadline"), Some("30s"));
    assert_eq!(d.settings("attempt_timeout"), Some("10s"));
    assert!(!d.has("rate_limit"), "no rate limit unless configured");
    assert!(!d.has("hedge"));
}

#[tokio::test]
async fn retries_recover_a_flaky_upstream_and_count_attempts() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/flaky",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::status(502))
            .then(Behavior::ok("fine")),
    );
    let client = client(&server, StackConfig::default().retry(Some(quick_retry())));
    let res = client.get("flaky").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(palisade::attempts(&res), 3);
    assert_eq!(res.text().await.unwrap(), "fine");
    assert_eq!(server.stats("/flaky").attempts, 3);
}

#[tokio::test]
async fn a_post_is_never_duplicated_unless_it_carries_an_idempotency_key() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/orders",
        Script::new()
            .then(Behavior::reset())
            .then(Behavior::status(201)),
    );
    let client = client(&server, StackConfig::default().retry(Some(quick_retry())));
    let err = client.post("orders").body("{}").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::Transport, "{err:?}");
    assert_eq!(server.stats("/orders").attempts, 1, "never sent twice");

    server.script(
        "/orders",
        Script::new()
            .then(Behavior::reset())
            .then(Behavior::status(201)),
    );
    let res = client
        .post("orders")
        .body("{}")
        .idempotency_key("order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let stats = server.stats("/orders");
    assert_eq!(stats.attempts, 3);
    // The first POST carried no key; both attempts of the second carried the same one.
    assert_eq!(stats.idempotency_keys, ["order-42", "order-42"]);
}

#[tokio::test]
async fn an_error_says_how_many_attempts_reached_the_transport() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/resets", Script::always(Behavior::reset()));
    let retrying = client(&server, StackConfig::default().retry(Some(quick_retry())));
    let err = retrying.get("resets").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::Transport, "{err:?}");
    assert_eq!(err.attempts(), 4, "the first attempt and three retries");
    assert_eq!(server.stats("/resets").attempts, 4);
    assert!(err.to_string().contains("after 4 attempts"), "{err}");

    // An attempt refused before the transport is not counted.
    let breaker = BreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let guarded = client(
        &server,
        StackConfig::default().retry(None).breaker(Some(breaker)),
    );
    assert_eq!(
        guarded.get("resets").send().await.unwrap_err().attempts(),
        1
    );
    let open = guarded.get("resets").send().await.unwrap_err();
    assert_eq!(open.kind(), Kind::CircuitOpen);
    assert_eq!(open.attempts(), 0);
}

#[tokio::test]
async fn per_request_overrides_apply_to_that_request_only() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/flaky",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("x"))
            .cycle(),
    );
    server.script(
        "/slow",
        Script::always(Behavior::ok("late").with_latency(ms(3000))),
    );
    let client = client(&server, StackConfig::default().retry(Some(quick_retry())));

    let res = client.get("flaky").retries(0).send().await.unwrap();
    assert_eq!(res.status(), 503, "retries(0) returns the first answer");
    assert_eq!(palisade::attempts(&res), 1);

    let err = client
        .get("slow")
        .timeout(ms(50))
        .retries(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Timeout, "{err:?}");

    let err = client
        .get("slow")
        .deadline(ms(80))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded, "{err:?}");
    assert!(err.is_timeout());
}

#[tokio::test]
async fn an_open_breaker_fails_fast_and_the_upstream_sees_no_more() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/down", Script::always(Behavior::status(500)));
    let breaker = BreakerLayer::builder()
        .consecutive_failures(3)
        .break_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let client = client(
        &server,
        StackConfig::default().retry(None).breaker(Some(breaker)),
    );
    let mut open = 0;
    for _ in 0..10 {
        match client.get("down").send().await {
            Ok(res) => assert_eq!(res.status(), 500),
            Err(e) => {
                assert_eq!(e.kind(), Kind::CircuitOpen, "{e:?}");
                assert!(e.retry_after().is_some());
                open += 1;
            }
        }
    }
    assert_eq!(open, 7);
    assert_eq!(server.stats("/down").attempts, 3);
}

#[tokio::test]
async fn a_rate_limit_in_reject_mode_refuses_before_the_upstream() {
    let server = FlakyServer::start().await.unwrap();
    let limit = RateLimitLayer::builder(Quota::per_minute(2).unwrap())
        .reject()
        .build()
        .unwrap();
    let client = client(&server, StackConfig::default().rate_limit(Some(limit)));
    assert!(client.describe().has("rate_limit"));
    for _ in 0..2 {
        assert_eq!(client.get("r").send().await.unwrap().status(), 200);
    }
    let err = client.get("r").retries(0).send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::RateLimited, "{err:?}");
    assert_eq!(server.stats("/r").attempts, 2);
}

#[tokio::test]
async fn a_full_concurrency_queue_sheds_with_overloaded() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/slow",
        Script::always(Behavior::ok("x").with_latency(ms(500))),
    );
    let limit = ConcurrencyLimitLayer::builder()
        .limit(Limit::Fixed(1))
        .max_queue(0)
        .build()
        .unwrap();
    let client = client(
        &server,
        StackConfig::default().retry(None).concurrency(Some(limit)),
    );
    let c = client.clone();
    let first = tokio::spawn(async move { c.get("slow").send().await.map(|r| r.status()) });
    while server.stats("/slow").in_flight == 0 {
        tokio::task::yield_now().await;
    }
    let err = client.get("slow").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::Overloaded, "{err:?}");
    assert_eq!(first.await.unwrap().unwrap(), 200);
    assert_eq!(server.stats("/slow").max_in_flight, 1);
}

#[tokio::test]
async fn a_mount_isolates_a_slow_upstream() {
    let slow = FlakyServer::start().await.unwrap();
    let fast = FlakyServer::start().await.unwrap();
    slow.script(
        "/x",
        Script::always(Behavior::ok("late").with_latency(ms(3000))),
    );
    let client = Client::builder()
        .mount(
            &slow.url("/"),
            StackConfig::default()
                .retry(None)
                .attempt_timeout(Some(ms(100))),
        )
        .build()
        .unwrap();
    let (slow_res, fast_res) = tokio::join!(
        client.get(&slow.url("/x")).send(),
        client.get(&fast.url("/x")).send()
    );
    assert_eq!(
        slow_res.unwrap_err().kind(),
        Kind::Timeout,
        "the mount's timeout applied"
    );
    assert_eq!(
        fast_res.unwrap().status(),
        200,
        "the default stack was untouched"
    );
}

#[tokio::test]
async fn a_custom_tower_layer_sees_every_request() {
    let server = FlakyServer::start().await.unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .layer(tower::util::MapRequestLayer::new(
            |mut req: http::Request<palisade::Body>| {
                req.headers_mut().insert(
                    "idempotency-key",
                    http::HeaderValue::from_static("from-layer"),
                );
                req
            },
        ))
        .build()
        .unwrap();
    assert!(client.describe().has("custom"));
    client.post("c").send().await.unwrap();
    assert_eq!(server.stats("/c").idempotency_keys, ["from-layer"]);
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "current_thread")]
async fn metrics_record_duration_attempts_and_retries() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/m",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("x")),
    );
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let client = client(&server, StackConfig::default().retry(Some(quick_retry())));
    // A thread-local recorder: this current-thread runtime polls the request
    // on this thread.
    let _guard = metrics::set_default_local_recorder(&recorder);
    let res = client.get("m").send().await.unwrap();
    assert_eq!(res.status(), 200);
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str| {
        snapshot
            .iter()
            .find(|(k, ..)| k.key().name() == name)
            .map(|(_, _, _, v)| v)
    };
    match find("http.client.request.duration") {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 1),
        other => panic!("no duration histogram: {other:?}"),
    }
    match find("resilience.attempts") {
        Some(DebugValue::Histogram(v)) => assert_eq!(v[0].into_inner(), 2.0),
        other => panic!("no attempts histogram: {other:?}"),
    }
    assert!(matches!(
        find("resilience.retries"),
        Some(&DebugValue::Counter(1))
    ));
    assert!(
        matches!(find("http.client.active_requests"), Some(&DebugValue::Gauge(g)) if g.into_inner() == 0.0),
        "the request is no longer active"
    );
}

#[cfg(feature = "metrics")]
#[tokio::test(flavor = "current_thread")]
async fn layer_metrics_record_breaker_state_and_rejections() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let server = FlakyServer::start().await.unwrap();
    server.script("/down", Script::always(Behavior::status(500)));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let breaker = BreakerLayer::builder()
        .consecutive_failures(2)
        .build()
        .unwrap();
    let client = client(
        &server,
        StackConfig::default().retry(None).breaker(Some(breaker)),
    );
    for _ in 0..4 {
        let _ = client.get("down").send().await;
    }
    let snapshot = snapshotter.snapshot().into_vec();
    let find = |name: &str| {
        snapshot
            .iter()
            .find(|(k, ..)| k.key().name() == name)
            .map(|(_, _, _, v)| v)
    };
    assert!(
        matches!(find("resilience.breaker.state"), Some(&DebugValue::Gauge(g)) if g.into_inner() == 1.0),
        "the breaker is open"
    );
    assert!(matches!(
        find("resilience.breaker.rejected"),
        Some(&DebugValue::Counter(2))
    ));
    // Both rejections land on one series, labelled with the circuit's key.
    let rejected: Vec<_> = snapshot
        .iter()
        .filter(|(k, ..)| k.key().name() == "resilience.breaker.rejected")
        .collect();
    assert_eq!(rejected.len(), 1, "one series per circuit");
    assert!(
        rejected[0]
            .0
            .key()
            .labels()
            .any(|l| l.key() == "server.address" && l.value().contains("127.0.0.1")),
        "labelled with the circuit's key: {:?}",
        rejected[0].0.key()
    );
}

#[tokio::test]
async fn one_client_reuses_its_connections() {
    // reqwest does not say whether a response came on a reused connection,
    // so reuse is measured at the upstream: connections accepted ÷ requests.
    let server = FlakyServer::start().await.unwrap();
    let client = client(&server, StackConfig::default());
    for _ in 0..50 {
        let res = client.get("reuse").send().await.unwrap();
        assert_eq!(res.text().await.unwrap(), "ok");
    }
    let accepted = server.connections_accepted();
    assert!(accepted >= 1);
    let reuse = 1.0 - accepted as f64 / 50.0;
    assert!(
        reuse >= 0.9,
        "reuse ratio {reuse} ({accepted} connections for 50 requests)"
    );
}
