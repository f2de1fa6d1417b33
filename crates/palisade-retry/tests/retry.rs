//! The retry layer's behaviour, on a paused clock with seeded jitter.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::StreamBody;
use palisade_core::events::{BUDGET_EXHAUSTED, RETRY_GIVEN_UP, RETRY_SCHEDULED, TARGET};
use palisade_core::{Body, BoxError, Class, Deadline, TransportErrorKind};
use palisade_retry::{
    AdaptiveFloor, Attempts, BackoffStrategy, BudgetConfig, Idempotent, RetryBudget, RetryLayer,
    RetryPolicy, RetryPolicyBuilder,
};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// Constant 10 ms backoff, no budget: each test adds what it is about.
fn quick() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .backoff(BackoffStrategy::Constant)
        .base_delay(ms(10))
        .max_delay(ms(10))
        .no_budget()
        .seed(1)
}

fn with(policy: RetryPolicyBuilder, upstream: &Scripted) -> palisade_retry::Retry<Scripted> {
    policy.build_layer().unwrap().layer(upstream.clone())
}

async fn send(
    svc: &mut palisade_retry::Retry<Scripted>,
    req: Request<Body>,
) -> Result<http::Response<String>, BoxError> {
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn connect_failure_is_retried_for_any_method() {
    for method in ["GET", "POST", "PATCH"] {
        let up = Scripted::new([Step::Fail(TransportErrorKind::Connect), status(200)]);
        let mut svc = with(quick(), &up);
        let req = Request::builder()
            .method(method)
            .uri("http://a.test/x")
            .body(Body::from("payload"))
            .unwrap();
        let res = send(&mut svc, req).await.unwrap();
        assert_eq!(res.status(), 200, "{method}");
        assert_eq!(up.calls(), 2, "{method}");
        assert_eq!(Attempts::of(&res), 2);
        assert_eq!(up.seen()[1].body.as_deref().unwrap(), b"payload");
    }
}

#[tokio::test(start_paused = true)]
async fn idempotent_requests_retry_the_default_statuses() {
    for code in [408, 429, 500, 502, 503, 504] {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            let up = Scripted::new([status(code), status(200)]);
            let mut svc = with(quick(), &up);
            let req = Request::builder()
                .method(method)
                .uri("http://a.test/")
                .body(Body::empty())
                .unwrap();
            let res = send(&mut svc, req).await.unwrap();
            assert_eq!(res.status(), 200, "{method} {code}");
            assert_eq!(up.calls(), 2, "{method} {code}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn other_statuses_are_not_retried() {
    for code in [200, 201, 304, 400, 401, 404, 409, 501, 505] {
        let up = Scripted::new([status(code), status(200)]);
        let mut svc = with(quick(), &up);
        let res = send(&mut svc, get("http://a.test/")).await.unwrap();
        assert_eq!(res.status(), code);
        assert_eq!(up.calls(), 1, "{code}");
        assert_eq!(res.extensions().get::<Attempts>(), None);
    }
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_resets_and_truncation_are_retried_for_idempotent_methods() {
    for failure in [
        Step::AttemptTimeout,
        Step::Fail(TransportErrorKind::Timeout),
        Step::Fail(TransportErrorKind::Reset),
        Step::Fail(TransportErrorKind::Truncated),
    ] {
        let up = Scripted::new([failure.clone(), status(200)]);
        let mut svc = with(quick(), &up);
        let res = send(&mut svc, get("http://a.test/")).await.unwrap();
        assert_eq!(res.status(), 200, "{failure:?}");
        assert_eq!(up.calls(), 2, "{failure:?}");
    }
    // An unclassified transport failure is not retried by default.
    let up = Scripted::new([Step::Fail(TransportErrorKind::Other), status(200)]);
    let mut svc = with(quick(), &up);
    assert!(send(&mut svc, get("http://a.test/")).await.is_err());
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn post_without_key_is_never_sent_again_once_it_may_have_arrived() {
    let rec = Recorder::default();
    let _g = rec.install();
    for failure in [
        status(503),
        status(429),
        Step::AttemptTimeout,
        Step::Fail(TransportErrorKind::Reset),
        Step::Fail(TransportErrorKind::Truncated),
    ] {
        for method in ["POST", "PATCH"] {
            let up = Scripted::new([failure.clone(), status(200)]);
            let mut svc = with(quick().max_attempts(5), &up);
            let req = Request::builder()
                .method(method)
                .uri("http://a.test/orders")
                .body(Body::from("{}"))
                .unwrap();
            let out = send(&mut svc, req).await;
            assert!(
                !matches!(out, Ok(ref r) if r.status() == 200),
                "{method} {failure:?} must return the first outcome"
            );
            assert_eq!(up.calls(), 1, "{method} {failure:?}");
        }
    }
    let given_up = rec.named(RETRY_GIVEN_UP);
    assert_eq!(given_up.len(), 10);
    assert!(
        given_up
            .iter()
            .all(|e| e.field("reason") == Some("not_idempotent"))
    );
}

#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_or_marker_is_retried() {
    let up = Scripted::new([status(503), Step::AttemptTimeout, status(201)]);
    let mut svc = with(quick(), &up);
    let mut req = post("http://a.test/orders", "{}");
    req.headers_mut()
        .insert("idempotency-key", "caller-key-1".parse().unwrap());
    let res = send(&mut svc, req).await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(up.calls(), 3);

    let up = Scripted::new([status(503), status(200)]);
    let mut svc = with(quick(), &up);
    let mut req = post("http://a.test/search", "{\"q\":1}");
    req.extensions_mut().insert(Idempotent);
    assert_eq!(send(&mut svc, req).await.unwrap().status(), 200);
    assert_eq!(up.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn custom_predicate_adds_and_removes_rules_but_not_safety() {
    let policy = || {
        quick().retry_if(|req: &Request<Body>, class: &Class| match class {
            Class::ClientError(s) if *s == StatusCode::CONFLICT => Some(true),
            Class::ServerError { status, .. } if *status == StatusCode::BAD_GATEWAY => {
                Some(req.uri().path() != "/no-502")
            }
            Class::ServerError { .. } => Some(true),
            _ => None,
        })
    };
    // Added: 409 on GET.
    let up = Scripted::new([status(409), status(200)]);
    assert_eq!(
        send(&mut with(policy(), &up), get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.calls(), 2);
    // Removed: 502 on one path.
    let up = Scripted::new([status(502), status(200)]);
    assert_eq!(
        send(&mut with(policy(), &up), get("http://a.test/no-502"))
            .await
            .unwrap()
            .status(),
        502
    );
    assert_eq!(up.calls(), 1);
    // Fallback to defaults: a reset on GET.
    let up = Scripted::new([Step::Fail(TransportErrorKind::Reset), status(200)]);
    assert_eq!(
        send(&mut with(policy(), &up), get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
    // Safety holds whatever the predicate says: a POST 500 is not resent.
    let up = Scripted::new([status(500), status(200)]);
    assert_eq!(
        send(&mut with(policy(), &up), post("http://a.test/", "x"))
            .await
            .unwrap()
            .status(),
        500
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_wins_over_a_shorter_backoff() {
    let up = Scripted::new([status_with(503, "retry-after", "3"), status(200)]);
    let mut svc = with(quick(), &up);
    let res = send(&mut svc, get("http://a.test/")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.gaps(), [Duration::from_secs(3)]);

    // 429 too, and with a rate-limit reset header in place of Retry-After.
    let up = Scripted::new([status_with(429, "ratelimit-reset", "2"), status(200)]);
    send(&mut with(quick(), &up), get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(up.gaps(), [Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_is_honoured() {
    let at = SystemTime::now() + Duration::from_secs(5);
    let up = Scripted::new([
        status_with(429, "retry-after", httpdate::fmt_http_date(at)),
        status(200),
    ]);
    let mut svc = with(quick(), &up);
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
    // HTTP dates have whole seconds, so the wait is in (4 s, 5 s].
    let gap = up.gaps()[0];
    assert!(
        gap > Duration::from_secs(4) && gap <= Duration::from_secs(5),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_longer_backoff_wins_over_retry_after() {
    let up = Scripted::new([status_with(503, "retry-after", "1"), status(200)]);
    let policy = quick()
        .base_delay(Duration::from_secs(2))
        .max_delay(Duration::from_secs(2));
    send(&mut with(policy, &up), get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(up.gaps(), [Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_only_honoured_on_configured_statuses() {
    let up = Scripted::new([status_with(500, "retry-after", "30"), status(200)]);
    send(&mut with(quick(), &up), get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(up.gaps(), [ms(10)]);

    let up = Scripted::new([status_with(500, "retry-after", "3"), status(200)]);
    let policy = quick().retry_after_statuses([500, 503]);
    send(&mut with(policy, &up), get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(up.gaps(), [Duration::from_secs(3)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_of_u64_max_seconds_with_no_cap_waits_without_panicking() {
    // `Instant + Duration` panics on overflow; a server-given wait of
    // u64::MAX seconds, allowed by max_retry_after(Duration::MAX), must be a
    // very long wait (about 30 years on the paused clock), not a panic.
    let up = Scripted::new([
        status_with(503, "retry-after", u64::MAX.to_string()),
        status(200),
    ]);
    let policy = quick().max_retry_after(Duration::MAX);
    let res = send(&mut with(policy, &up), get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let gap = up.gaps()[0];
    assert!(gap >= Duration::from_secs(29 * 365 * 24 * 3600), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_max_is_returned_at_once() {
    let rec = Recorder::default();
    let _g = rec.install();
    let up = Scripted::new([status_with(503, "retry-after", "61"), status(200)]);
    let start = Instant::now();
    let res = send(&mut with(quick(), &up), get("http://a.test/"))
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "61", "visible to the caller");
    assert_eq!(start.elapsed(), Duration::ZERO, "no wait at all");
    assert_eq!(up.calls(), 1);
    assert_eq!(
        rec.named(RETRY_GIVEN_UP)[0].field("reason"),
        Some("retry_after_too_long")
    );

    // Exactly the cap is honoured.
    let up = Scripted::new([status_with(503, "retry-after", "5"), status(200)]);
    let policy = quick().max_retry_after(Duration::from_secs(5));
    assert_eq!(
        send(&mut with(policy, &up), get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_deadline_is_returned_at_once() {
    let up = Scripted::new([status_with(429, "retry-after", "10"), status(200)]);
    let mut req = get("http://a.test/");
    Deadline::after(Duration::from_secs(5)).apply(req.extensions_mut());
    let start = Instant::now();
    let res = send(&mut with(quick(), &up), req).await.unwrap();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "10");
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_never_sleeps_past_the_deadline() {
    let rec = Recorder::default();
    let _g = rec.install();
    let up = Scripted::new([status(503)]);
    let policy = quick()
        .max_attempts(100)
        .base_delay(ms(300))
        .max_delay(ms(300));
    let mut req = get("http://a.test/");
    let deadline = Deadline::after(Duration::from_secs(1)).apply(req.extensions_mut());
    let res = send(&mut with(policy, &up), req).await.unwrap();
    assert_eq!(res.status(), 503);
    // Attempts at 0, 300, 600 and 900 ms; a fifth would start at 1200 ms.
    assert_eq!(up.calls(), 4);
    assert!(up.seen().iter().all(|s| s.at < deadline.instant()));
    assert!(
        Instant::now() < deadline.instant(),
        "returned before the deadline"
    );
    assert_eq!(Attempts::of(&res), 4);
    assert_eq!(
        rec.named(RETRY_GIVEN_UP).last().unwrap().field("reason"),
        Some("deadline")
    );
}

#[tokio::test(start_paused = true)]
async fn no_attempt_starts_after_the_deadline() {
    let up = Scripted::new([status(200)]);
    let mut req = get("http://a.test/");
    Deadline::after(ms(100)).apply(req.extensions_mut());
    tokio::time::advance(ms(100)).await;
    let err = send(&mut with(quick(), &up), req).await.unwrap_err();
    assert!(err.is::<palisade_core::error::DeadlineExceeded>(), "{err}");
    assert_eq!(up.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn max_attempts_bounds_the_attempts() {
    let up = Scripted::new([status(503)]);
    let res = send(
        &mut with(quick().max_attempts(3), &up),
        get("http://a.test/"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(up.calls(), 3);
    assert_eq!(res.extensions().get::<Attempts>(), Some(&Attempts(3)));

    let up = Scripted::new([status(503)]);
    send(
        &mut with(quick().max_attempts(1), &up),
        get("http://a.test/"),
    )
    .await
    .unwrap();
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn exhausted_budget_returns_the_last_outcome_and_says_so() {
    let rec = Recorder::default();
    let _g = rec.install();
    // A reserve of one retry per second, nothing earned per request.
    let budget = RetryBudget::new(BudgetConfig::new(Duration::from_secs(1), 1, 0.0).unwrap());
    let up = Scripted::new([status(503), status(502), status(200)]);
    let mut svc = with(quick().budget(budget.clone()), &up);
    let res = send(&mut svc, get("http://a.test/")).await.unwrap();
    assert_eq!(res.status(), 502, "the last outcome");
    assert_eq!(up.calls(), 2);
    assert_eq!(Attempts::of(&res), 2);
    let ev = rec.named(BUDGET_EXHAUSTED);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].target, TARGET);
    assert_eq!(ev[0].field("key"), Some("http://a.test:80"));
    assert_eq!(ev[0].field("attempt"), Some("2"));

    // The budget refills after its ttl.
    tokio::time::advance(Duration::from_secs(1)).await;
    let up = Scripted::new([status(503), status(200)]);
    let mut svc = with(quick().budget(budget), &up);
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(start_paused = true)]
async fn budget_is_shared_by_clones_of_the_service() {
    let budget = RetryBudget::new(BudgetConfig::new(Duration::from_secs(1), 1, 0.0).unwrap());
    let up = Scripted::new([status(503)]);
    let mut a = with(quick().budget(budget), &up);
    let mut b = a.clone();
    send(&mut a, get("http://a.test/")).await.unwrap();
    assert_eq!(up.calls(), 2, "a spent the only retry");
    send(&mut b, get("http://a.test/")).await.unwrap();
    assert_eq!(up.calls(), 3, "b had none left");
}

#[tokio::test(start_paused = true)]
async fn keyed_budgets_keep_origins_apart() {
    let config = BudgetConfig::new(Duration::from_secs(1), 1, 0.0).unwrap();
    let up = Scripted::new([status(503)]);
    let mut svc = with(quick().keyed_budget(config), &up);
    send(&mut svc, get("http://a.test/")).await.unwrap();
    send(&mut svc, get("http://a.test/")).await.unwrap();
    assert_eq!(up.calls(), 3, "a.test: one retry, then none");
    send(&mut svc, get("http://b.test/")).await.unwrap();
    assert_eq!(up.calls(), 5, "b.test has its own budget");
}

#[tokio::test(start_paused = true)]
async fn default_budget_caps_retries_during_an_outage() {
    // Finagle's defaults: 100 reserved retries per 10 s plus 20 % of requests.
    let up = Scripted::new([status(503)]);
    let mut svc = with(quick().budget(RetryBudget::default()), &up);
    for _ in 0..500 {
        send(&mut svc, get("http://a.test/")).await.unwrap();
    }
    // Retries take 10 ms each; everything happens inside one ttl.
    let retries = up.calls() - 500;
    assert_eq!(retries, 100 + 100, "reserve + 20 % of 500");
}

#[tokio::test(start_paused = true)]
async fn idempotency_key_is_made_once_and_sent_on_every_attempt() {
    let up = Scripted::new([
        status(503),
        Step::Fail(TransportErrorKind::Reset),
        status(201),
    ]);
    let mut svc = with(quick().inject_idempotency_key(true), &up);
    let res = send(&mut svc, post("http://a.test/orders", "{}"))
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let keys: Vec<_> = up
        .seen()
        .iter()
        .map(|s| s.headers["idempotency-key"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    let id = uuid::Uuid::parse_str(&keys[0]).unwrap();
    assert_eq!(id.get_version_num(), 4);

    // Another logical request gets another key.
    let up2 = Scripted::new([status(201)]);
    send(
        &mut with(quick().inject_idempotency_key(true), &up2),
        post("http://a.test/orders", "{}"),
    )
    .await
    .unwrap();
    assert_ne!(up2.seen()[0].headers["idempotency-key"], keys[0].as_str());
}

#[tokio::test(start_paused = true)]
async fn callers_key_is_kept_and_idempotent_methods_get_none() {
    let up = Scripted::new([status(503), status(200)]);
    let policy = quick()
        .inject_idempotency_key(true)
        .idempotency_header(http::HeaderName::from_static("x-request-key"));
    let mut svc = with(policy, &up);
    let mut req = post("http://a.test/", "x");
    req.headers_mut()
        .insert("x-request-key", "mine".parse().unwrap());
    send(&mut svc, req).await.unwrap();
    assert!(
        up.seen()
            .iter()
            .all(|s| s.headers["x-request-key"] == "mine")
    );
    assert_eq!(up.calls(), 2);

    let up = Scripted::new([status(200)]);
    send(
        &mut with(quick().inject_idempotency_key(true), &up),
        get("http://a.test/"),
    )
    .await
    .unwrap();
    assert!(!up.seen()[0].headers.contains_key("idempotency-key"));

    let up = Scripted::new([status(200)]);
    send(&mut with(quick(), &up), post("http://a.test/", "x"))
        .await
        .unwrap();
    assert!(
        !up.seen()[0].headers.contains_key("idempotency-key"),
        "off by default"
    );
}

fn streaming(chunks: usize, size: usize, cap: usize) -> Body {
    let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = (0..chunks)
        .map(|i| {
            Ok(http_body::Frame::data(Bytes::from(vec![
                b'a' + i as u8;
                size
            ])))
        })
        .collect();
    Body::wrap_with_cap(StreamBody::new(futures_util::stream::iter(frames)), cap)
}

#[tokio::test(start_paused = true)]
async fn streaming_body_past_the_cap_is_sent_once_and_not_retried() {
    let rec = Recorder::default();
    let _g = rec.install();
    let up = Scripted::new([status(503), status(200)]);
    let req = Request::put("http://a.test/upload")
        .body(streaming(4, 10, 25))
        .unwrap();
    let res = send(&mut with(quick(), &up), req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(up.calls(), 1);
    assert_eq!(
        up.seen()[0].body.as_ref().unwrap().len(),
        40,
        "sent whole, once"
    );
    let ev = rec.named(RETRY_GIVEN_UP);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].field("reason"), Some("body_not_replayable"));
    assert!(
        ev[0].field("detail").unwrap().contains("25 bytes"),
        "{:?}",
        ev[0]
    );
}

#[tokio::test(start_paused = true)]
async fn streaming_body_within_the_cap_is_replayed_whole() {
    let up = Scripted::new([status(503), status(502), status(200)]);
    let req = Request::put("http://a.test/upload")
        .body(streaming(3, 10, 64))
        .unwrap();
    let res = send(&mut with(quick(), &up), req).await.unwrap();
    assert_eq!(res.status(), 200);
    let bodies: Vec<_> = up.seen().into_iter().map(|s| s.body.unwrap()).collect();
    assert_eq!(bodies.len(), 3);
    assert!(bodies.iter().all(|b| b.len() == 30 && *b == bodies[0]));
}

#[tokio::test(start_paused = true)]
async fn events_carry_attempt_delay_reason_and_key() {
    let rec = Recorder::default();
    let _g = rec.install();
    let up = Scripted::new([
        status_with(503, "retry-after", "2"),
        status(500),
        status(200),
    ]);
    send(&mut with(quick(), &up), get("http://API.a.test:8080/x"))
        .await
        .unwrap();
    let ev = rec.named(RETRY_SCHEDULED);
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.target == TARGET));
    assert_eq!(ev[0].field("key"), Some("http://api.a.test:8080"));
    assert_eq!(ev[0].field("attempt"), Some("1"));
    assert_eq!(ev[0].field("delay_ms"), Some("2000"));
    assert_eq!(ev[0].field("retry_after_ms"), Some("2000"));
    assert_eq!(ev[0].field("reason"), Some("server_error"));
    assert_eq!(ev[0].field("status"), Some("503"));
    assert_eq!(ev[1].field("attempt"), Some("2"));
    assert_eq!(ev[1].field("delay_ms"), Some("10"));
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_gives_reproducible_schedules() {
    async fn schedule(seed: u64) -> Vec<Duration> {
        let up = Scripted::new([status(503)]);
        let policy = RetryPolicy::builder()
            .backoff(BackoffStrategy::ExponentialFullJitter)
            .base_delay(ms(100))
            .max_delay(Duration::from_secs(10))
            .max_attempts(6)
            .no_budget()
            .seed(seed);
        send(&mut with(policy, &up), get("http://a.test/"))
            .await
            .unwrap();
        up.gaps()
    }
    let a = schedule(7).await;
    assert_eq!(a.len(), 5);
    assert_eq!(a, schedule(7).await);
    assert_ne!(a, schedule(8).await);
    for (i, gap) in a.iter().enumerate() {
        assert!(
            *gap <= ms(100) * 2u32.pow(i as u32),
            "retry {} waited {gap:?}",
            i + 1
        );
    }
}

#[tokio::test(start_paused = true)]
async fn adaptive_floor_scales_backoff_with_the_keys_latency() {
    let latency = ms(500);
    let slow = |code| after(latency, status(code));
    // Three slow successes teach the floor, then one failure is retried.
    let steps = [slow(200), slow(200), slow(200), slow(503), slow(200)];
    let up = Scripted::new(steps.clone());
    let policy = quick()
        .max_delay(Duration::from_secs(2))
        .adaptive_floor(AdaptiveFloor::new().min_samples(3));
    let mut svc = with(policy, &up);
    for _ in 0..4 {
        send(&mut svc, get("http://slow.test/")).await.unwrap();
    }
    let backoff = *up.gaps().last().unwrap() - latency;
    // p95 of 500 ms, reported as its histogram bucket's upper bound.
    assert!(backoff >= latency && backoff <= ms(600), "{backoff:?}");

    // Off by default: the same traffic backs off 10 ms.
    let up = Scripted::new(steps);
    let mut svc = with(quick(), &up);
    for _ in 0..4 {
        send(&mut svc, get("http://slow.test/")).await.unwrap();
    }
    assert_eq!(*up.gaps().last().unwrap() - latency, ms(10));
}

#[tokio::test(start_paused = true)]
async fn adaptive_floor_with_extreme_settings_never_panics() {
    // A window of Duration::MAX: its rotation check doubled it.
    let latency = ms(500);
    let slow = |code| after(latency, status(code));
    let up = Scripted::new([slow(200), slow(200), slow(200), slow(503), slow(200)]);
    let policy = quick()
        .max_delay(Duration::from_secs(2))
        .adaptive_floor(AdaptiveFloor::new().min_samples(3).window(Duration::MAX));
    let mut svc = with(policy, &up);
    for _ in 0..4 {
        assert_eq!(
            send(&mut svc, get("http://slow.test/"))
                .await
                .unwrap()
                .status(),
            200
        );
    }
    // The floor still learned the key's latency (p95 of 500 ms).
    let backoff = *up.gaps().last().unwrap() - latency;
    assert!(backoff >= latency && backoff <= ms(600), "{backoff:?}");
}

#[tokio::test(start_paused = true)]
async fn layer_default_is_usable() {
    let up = Scripted::new([status(503), status(200)]);
    let mut svc = RetryLayer::builder()
        .seed(3)
        .base_delay(ms(1))
        .max_delay(ms(5))
        .build_layer()
        .unwrap()
        .layer(up.clone());
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The real default too (2 s median first retry) on the paused clock.
    let up = Scripted::new([status(503), status(200)]);
    let mut svc = RetryLayer::default().layer(up.clone());
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(up.gaps()[0] <= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn local_refusals_are_not_retried() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        tower::service_fn(move |_req: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err::<http::Response<String>, BoxError>(
                    palisade_core::error::CircuitOpen::new(Some(Duration::from_secs(5))).into(),
                )
            }
        })
    };
    let svc = quick().build_layer().unwrap().layer(inner);
    let err = svc.oneshot(get("http://a.test/")).await.unwrap_err();
    assert!(err.is::<palisade_core::error::CircuitOpen>());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_per_request_max_retries_override_replaces_the_policy() {
    let up = Scripted::new([status(503), status(503), status(503), status(200)]);
    let mut svc = with(quick().max_attempts(4), &up);
    let mut req = Request::get("http://a.test/x").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(palisade_core::overrides::MaxRetries(0));
    let res = send(&mut svc, req).await.unwrap();
    assert_eq!(res.status(), 503, "no retry for this request");
    assert_eq!(up.calls(), 1);

    let up = Scripted::new([status(503), status(503), status(200)]);
    let mut svc = with(quick().max_attempts(2), &up);
    let mut req = Request::get("http://a.test/x").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(palisade_core::overrides::MaxRetries(2));
    let res = send(&mut svc, req).await.unwrap();
    assert_eq!(res.status(), 200, "two retries allowed for this one");
    assert_eq!(up.calls(), 3);
}
