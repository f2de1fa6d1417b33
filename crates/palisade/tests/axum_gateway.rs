//! End to end: the axum gateway of `examples/axum_gateway.rs`, served on
//! loopback, in front of a `FlakyServer` upstream. Real clock, bounded waits,
//! outcomes asserted (statuses, error kinds, the upstream's counters), never
//! durations.

#![allow(missing_docs)]

use std::time::Duration;

use palisade::ratelimit::Quota;
use palisade_chaos::{Behavior, FlakyServer, Script};
use serde_json::Value;

#[allow(dead_code)]
#[path = "../../../examples/axum_gateway.rs"]
mod gateway;

use gateway::{GatewayConfig, TENANT};

/// An upper bound on any one exchange, so a regression fails instead of
/// hanging. Far above what the tests need.
const BOUND: Duration = Duration::from_secs(10);

struct Harness {
    upstream: FlakyServer,
    base: String,
    caller: reqwest::Client,
}

async fn start(config: GatewayConfig) -> Harness {
    let upstream = FlakyServer::start().await.unwrap();
    gateway::script_upstream(&upstream);
    let client = gateway::client(&upstream.url("/")).unwrap();
    let app = gateway::router(client, &config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        upstream,
        base: format!("http://{addr}/api"),
        caller: reqwest::Client::new(),
    }
}

async fn get(h: &Harness, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = h.caller.get(format!("{}{path}", h.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = tokio::time::timeout(BOUND, req.send())
        .await
        .expect("the gateway answers within the bound")
        .unwrap();
    let status = res.status().as_u16();
    let body = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    (status, body)
}

/// Polls `cond` on the real clock until it holds, at most `BOUND`.
async fn eventually(mut cond: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + BOUND;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < give_up,
            "condition not met within {BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_gateway_reaches_the_upstream() {
    let h = start(GatewayConfig::new().unwrap()).await;
    let (status, body) = get(&h, "/items", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["upstream_status"], 200);
    assert_eq!(body["body"], r#"{"items":[1,2,3]}"#);
    assert_eq!(h.upstream.stats("/items").attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_retried_by_the_outbound_client() {
    let h = start(GatewayConfig::new().unwrap()).await;
    let (status, body) = get(&h, "/flaky", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], "recovered");
    assert_eq!(body["attempts"], 2);
    assert_eq!(h.upstream.stats("/flaky").attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_deadline_bounds_the_outbound_call() {
    let h = start(GatewayConfig::new().unwrap()).await;
    // The upstream would answer after 30 s; the client's own deadline is
    // 30 s and its attempt timeout 10 s, so only the inherited 200 ms can
    // make the gateway answer within BOUND.
    h.upstream.script(
        "/stuck",
        Script::always(Behavior::ok("late").with_latency(Duration::from_secs(30))),
    );
    let (status, body) = get(&h, "/stuck", &[("x-request-timeout-ms", "200")]).await;
    assert_eq!(status, 504, "{body}");
    // The deadline and the attempt timeout clamped to it end at the same
    // instant; either may report it.
    let kind = body["error"].as_str().unwrap();
    assert!(
        kind == "deadline_exceeded" || kind == "timeout",
        "unexpected error kind {kind}"
    );
    let stats = h.upstream.stats("/stuck");
    assert_eq!(
        stats.attempts, 1,
        "one attempt, and no retry past the deadline"
    );
    // The outbound call was abandoned, not left waiting on the upstream.
    eventually(|| h.upstream.stats("/stuck").in_flight == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_sheds_a_tenant_beyond_its_concurrency_limit() {
    let mut config = GatewayConfig::new().unwrap();
    config.concurrency_per_tenant = 2;
    config.queue_per_tenant = 0;
    let h = start(config).await;

    let busy: Vec<_> = (0..2)
        .map(|_| {
            let req = h
                .caller
                .get(format!("{}/slow", h.base))
                .header(TENANT, "acme")
                .send();
            tokio::spawn(async move { tokio::time::timeout(BOUND, req).await })
        })
        .collect();
    // Both hold their slot once the upstream has them.
    eventually(|| h.upstream.stats("/slow").in_flight == 2).await;

    let (status, body) = get(&h, "/slow", &[(TENANT, "acme")]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "overloaded");
    // Another tenant has its own limit.
    let (status, body) = get(&h, "/items", &[(TENANT, "globex")]).await;
    assert_eq!(status, 200, "{body}");

    for call in busy {
        let res = call.await.unwrap().expect("within the bound").unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(
        h.upstream.stats("/slow").attempts,
        2,
        "the shed request never reached the upstream"
    );
    // The slots are back: the tenant is served again.
    let (status, _) = get(&h, "/items", &[(TENANT, "acme")]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_rate_limits_each_tenant() {
    let mut config = GatewayConfig::new().unwrap();
    // A burst of 3, then one request a minute: the 4th is refused, however
    // slow the machine.
    config.rate_per_tenant = Quota::per_minute(1).unwrap().with_burst(3).unwrap();
    let h = start(config).await;
    for _ in 0..3 {
        let (status, body) = get(&h, "/items", &[(TENANT, "acme")]).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut req = h.caller.get(format!("{}/items", h.base));
    req = req.header(TENANT, "acme");
    let res = tokio::time::timeout(BOUND, req.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(h.upstream.stats("/items").attempts, 3);
    let (status, _) = get(&h, "/items", &[(TENANT, "globex")]).await;
    assert_eq!(status, 200, "another tenant has its own quota");
}
