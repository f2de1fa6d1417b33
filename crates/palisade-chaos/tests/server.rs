//! FlakyServer against a real HTTP client (reqwest). Real sockets, so the
//! real clock: assertions are on outcomes and counters, never on durations,
//! except lower bounds that the server guarantees.

use std::time::{Duration, SystemTime};

use palisade_chaos::{Behavior, FlakyServer, Script};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn chain_has_io_kind(err: &reqwest::Error, kind: std::io::ErrorKind) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == kind
        {
            return true;
        }
        cur = e.source();
    }
    false
}

#[tokio::test]
async fn unscripted_routes_answer_200_ok() {
    let server = FlakyServer::start().await.unwrap();
    let res = client().get(server.url("/anything")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    assert_eq!(server.stats("/anything").attempts, 1);
    assert_eq!(server.stats("/never").attempts, 0);
}

#[tokio::test]
async fn status_sequence_then_last_repeats() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/seq",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::status(503))
            .then(Behavior::ok("done")),
    );
    let c = client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            c.get(server.url("/seq"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [503, 503, 200, 200, 200]);
    let stats = server.stats("/seq");
    assert_eq!(stats.attempts, 5);
    assert_eq!(stats.timestamps.len(), 5);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test]
async fn retry_after_in_both_forms() {
    let server = FlakyServer::start().await.unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
    server.script(
        "/r",
        Script::new()
            .then(Behavior::retry_after_secs(429, 7))
            .then(Behavior::retry_after_date(503, at)),
    );
    let c = client();
    let a = c.get(server.url("/r")).send().await.unwrap();
    assert_eq!(a.status(), 429);
    assert_eq!(a.headers()["retry-after"], "7");
    let b = c.get(server.url("/r")).send().await.unwrap();
    assert_eq!(b.status(), 503);
    let date = b.headers()["retry-after"].to_str().unwrap();
    assert_eq!(httpdate::parse_http_date(date).unwrap(), at);
}

#[tokio::test]
async fn reset_surfaces_as_connection_reset() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/reset", Script::always(Behavior::reset()));
    let err = client().get(server.url("/reset")).send().await.unwrap_err();
    assert!(
        chain_has_io_kind(&err, std::io::ErrorKind::ConnectionReset),
        "expected a connection reset, got {err:?}"
    );
    assert_eq!(server.stats("/reset").attempts, 1);
    assert_eq!(server.stats("/reset").in_flight, 0);
}

#[tokio::test]
async fn truncated_body_fails_after_the_head() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/t", Script::always(Behavior::truncated(1000, 100)));
    let res = client().get(server.url("/t")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.content_length(), Some(1000));
    let err = res.bytes().await.unwrap_err();
    assert!(err.is_body() || err.is_decode(), "{err:?}");
}

#[tokio::test]
async fn stall_mid_body_hangs_after_the_bytes_sent() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/stall", Script::always(Behavior::stall_mid_body(10)));
    let mut res = client().get(server.url("/stall")).send().await.unwrap();
    let first = res.chunk().await.unwrap().unwrap();
    assert_eq!(first.len(), 10);
    // Nothing more arrives: a short wait for the next chunk times out.
    let next = tokio::time::timeout(Duration::from_millis(200), res.chunk()).await;
    assert!(next.is_err(), "the body should stall, got {next:?}");
    assert_eq!(server.stats("/stall").in_flight, 1);
    drop(res);
}

#[tokio::test]
async fn trickle_sends_all_bytes_in_small_chunks() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/slow",
        Script::always(Behavior::trickle(30, 10, Duration::from_millis(20))),
    );
    let started = tokio::time::Instant::now();
    let mut res = client().get(server.url("/slow")).send().await.unwrap();
    let mut chunks = Vec::new();
    while let Some(c) = res.chunk().await.unwrap() {
        chunks.push(c.len());
    }
    assert_eq!(chunks.iter().sum::<usize>(), 30);
    assert!(chunks.iter().all(|&n| n <= 10), "{chunks:?}");
    // A lower bound the server guarantees: two intervals between three chunks.
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[tokio::test]
async fn large_body_streams_without_buffering() {
    let server = FlakyServer::start().await.unwrap();
    let total: u64 = 64 * 1024 * 1024 + 7;
    server.script("/big", Script::always(Behavior::large(total)));
    let mut res = client().get(server.url("/big")).send().await.unwrap();
    assert_eq!(res.content_length(), Some(total));
    let mut got = 0u64;
    while let Some(c) = res.chunk().await.unwrap() {
        got += c.len() as u64;
    }
    assert_eq!(got, total);
}

#[tokio::test]
async fn latency_delays_the_head_at_least_that_long() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/late",
        Script::always(Behavior::ok("x").with_latency(Duration::from_millis(50))),
    );
    let started = tokio::time::Instant::now();
    let res = client().get(server.url("/late")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn headers_and_bodies_are_recorded() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/h",
        Script::always(
            Behavior::status(201)
                .with_header("x-chaos", "yes")
                .with_body("made"),
        ),
    );
    let c = client();
    for key in ["k1", "k1", "k2"] {
        let res = c
            .post(server.url("/h"))
            .header("idempotency-key", key)
            .body(format!("payload-{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers()["x-chaos"], "yes");
        assert_eq!(res.text().await.unwrap(), "made");
    }
    c.post(server.url("/h")).send().await.unwrap();
    let stats = server.stats("/h");
    assert_eq!(stats.attempts, 4);
    assert_eq!(stats.idempotency_keys, ["k1", "k1", "k2"]);
    assert_eq!(stats.distinct_idempotency_keys(), 2);
    assert_eq!(stats.bodies[0], "payload-k1");
    assert_eq!(stats.bodies[3], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_in_flight_counts_concurrent_requests() {
    let server = FlakyServer::start().await.unwrap();
    // Latency long enough that all requests overlap on the server.
    server.script(
        "/slow",
        Script::always(Behavior::ok("x").with_latency(Duration::from_millis(300))),
    );
    let c = client();
    let url = server.url("/slow");
    let calls = (0..4).map(|_| {
        let c = c.clone();
        let url = url.clone();
        tokio::spawn(async move { c.get(url).send().await.unwrap().status() })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }
    let stats = server.stats("/slow");
    assert_eq!(stats.attempts, 4);
    assert_eq!(stats.max_in_flight, 4);
    assert_eq!(stats.in_flight, 0);
}

#[tokio::test]
async fn connections_are_counted_and_reused() {
    let server = FlakyServer::start().await.unwrap();
    let c = client();
    for _ in 0..10 {
        let res = c.get(server.url("/")).send().await.unwrap();
        res.bytes().await.unwrap();
    }
    assert_eq!(server.total_attempts(), 10);
    assert_eq!(
        server.connections_accepted(),
        1,
        "a pooled client reuses one connection"
    );
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        fresh
            .get(server.url("/"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    assert_eq!(server.connections_accepted(), 4);
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/h2", Script::always(Behavior::status(503)));
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = c.get(server.url("/h2")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn dropping_the_server_closes_the_port_and_connections() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/stall", Script::always(Behavior::stall_mid_body(5)));
    let url = server.url("/stall");
    let mut res = client().get(&url).send().await.unwrap();
    assert_eq!(res.chunk().await.unwrap().unwrap().len(), 5);
    drop(server);
    // The stalled body now ends in an error instead of hanging forever.
    let rest = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("connection closed on drop");
    assert!(rest.is_err(), "{rest:?}");
    let err = client().get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
}
