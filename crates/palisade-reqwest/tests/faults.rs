//! Each fault of the flaky upstream surfaces as the right `Class`.
//!
//! Real sockets, so the real clock; the assertions are on classes and
//! counters, never on durations.

use std::time::Duration;

use http_body_util::BodyExt;
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::{Body, Class, Classify, HttpClassifier, TransportErrorKind};
use palisade_reqwest::{
    PoolConfig, ReqwestService, from_reqwest_response, into_reqwest_response, wrap_reqwest_response,
};
use tower::{Service, ServiceExt};

fn classify_err(err: &palisade_core::TransportError) -> Class {
    HttpClassifier::new().classify_error(err)
}

fn get(url: &str) -> http::Request<Body> {
    http::Request::get(url).body(Body::empty()).unwrap()
}

fn transport() -> ReqwestService {
    ReqwestService::from_pool(&PoolConfig::new()).unwrap()
}

#[tokio::test]
async fn connection_refused_is_a_connect_failure() {
    let server = FlakyServer::start().await.unwrap();
    let url = server.url("/gone");
    drop(server); // the port is closed now
    let err = transport().oneshot(get(&url)).await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Connect);
    let class = classify_err(&err);
    assert_eq!(class, Class::Connect);
    assert!(class.never_sent());
    let source = err
        .get_ref()
        .downcast_ref::<reqwest::Error>()
        .expect("reqwest::Error kept");
    assert!(source.is_connect());
}

#[tokio::test]
async fn reset_is_a_transport_reset_that_may_have_been_sent() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/reset", Script::always(Behavior::reset()));
    let err = transport()
        .oneshot(get(&server.url("/reset")))
        .await
        .unwrap_err();
    let class = classify_err(&err);
    assert_eq!(class, Class::Transport(TransportErrorKind::Reset));
    assert!(!class.never_sent());
    assert!(class.is_overload_signal());
    assert_eq!(server.stats("/reset").attempts, 1);
}

#[tokio::test]
async fn truncated_body_is_a_truncated_transport_error() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/t", Script::always(Behavior::truncated(4096, 1000)));
    let res = transport().oneshot(get(&server.url("/t"))).await.unwrap();
    assert_eq!(
        HttpClassifier::new().classify_response(&res),
        Class::Success
    );
    let err = res.into_body().collect().await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Truncated);
    assert_eq!(
        classify_err(&err),
        Class::Transport(TransportErrorKind::Truncated)
    );
    assert!(err.get_ref().is::<reqwest::Error>());
}

#[tokio::test]
async fn stalled_body_with_a_client_timeout_is_a_timeout() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/stall", Script::always(Behavior::stall_mid_body(100)));
    let client = PoolConfig::new()
        .client_builder()
        .unwrap()
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let res = ReqwestService::new(client)
        .oneshot(get(&server.url("/stall")))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let err = res.into_body().collect().await.unwrap_err();
    assert_eq!(classify_err(&err), Class::Timeout);
    let source = err.get_ref().downcast_ref::<reqwest::Error>().unwrap();
    assert!(source.is_timeout());
}

#[tokio::test]
async fn slow_head_with_a_client_timeout_is_a_timeout() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/slow",
        Script::always(Behavior::ok("late").with_latency(Duration::from_secs(30))),
    );
    let client = PoolConfig::new()
        .client_builder()
        .unwrap()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = ReqwestService::new(client)
        .oneshot(get(&server.url("/slow")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Timeout);
    let class = classify_err(&err);
    assert_eq!(class, Class::Timeout);
    assert!(!class.never_sent());
}

#[tokio::test]
async fn statuses_503_and_429_carry_their_retry_after() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/busy",
        Script::new()
            .then(Behavior::retry_after_secs(503, 1))
            .then(Behavior::retry_after_secs(429, 2))
            .then(Behavior::ok("fine")),
    );
    let mut svc = transport();
    let c = HttpClassifier::new();
    let mut classes = Vec::new();
    for _ in 0..3 {
        let res = svc
            .ready()
            .await
            .unwrap()
            .call(get(&server.url("/busy")))
            .await
            .unwrap();
        classes.push(c.classify_response(&res));
    }
    assert_eq!(
        classes,
        [
            Class::ServerError {
                status: http::StatusCode::SERVICE_UNAVAILABLE,
                retry_after: Some(Duration::from_secs(1)),
            },
            Class::RateLimited {
                retry_after: Some(Duration::from_secs(2)),
            },
            Class::Success,
        ]
    );
    assert_eq!(server.stats("/busy").attempts, 3);
}

#[tokio::test]
async fn invalid_uri_is_a_request_error_never_sent() {
    let req = http::Request::get("/no-scheme-or-host")
        .body(Body::empty())
        .unwrap();
    let err = transport().oneshot(req).await.unwrap_err();
    assert_eq!(err.kind(), TransportErrorKind::Request);
    assert!(classify_err(&err).never_sent());
}

#[tokio::test]
async fn streaming_request_body_arrives_whole() {
    let server = FlakyServer::start().await.unwrap();
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, palisade_core::BoxError>> = (0..4)
        .map(|i| {
            Ok(http_body::Frame::data(bytes::Bytes::from(format!(
                "part{i};"
            ))))
        })
        .collect();
    let body = Body::wrap(http_body_util::StreamBody::new(futures_util::stream::iter(
        chunks,
    )));
    let req = http::Request::post(server.url("/up")).body(body).unwrap();
    let res = transport().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server.stats("/up").bodies, ["part0;part1;part2;part3;"]);
}

#[tokio::test]
async fn the_pool_reuses_connections_and_zero_idle_disables_it() {
    let server = FlakyServer::start().await.unwrap();
    let mut pooled = transport();
    for _ in 0..5 {
        let res = pooled
            .ready()
            .await
            .unwrap()
            .call(get(&server.url("/")))
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(server.connections_accepted(), 1);

    let mut unpooled = ReqwestService::from_pool(&PoolConfig::new().max_idle_per_host(0)).unwrap();
    for _ in 0..3 {
        let res = unpooled
            .ready()
            .await
            .unwrap()
            .call(get(&server.url("/")))
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(server.connections_accepted(), 4);
}

#[tokio::test]
async fn http2_prior_knowledge_speaks_h2c() {
    let server = FlakyServer::start().await.unwrap();
    let svc = ReqwestService::from_pool(&PoolConfig::new().http2_prior_knowledge(true)).unwrap();
    let res = svc.oneshot(get(&server.url("/h2"))).await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test]
async fn reqwest_response_round_trip_keeps_url_and_body() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/rt",
        Script::always(Behavior::ok("payload").with_header("x-a", "1")),
    );
    let client = PoolConfig::new().build().unwrap();
    let original = client.get(server.url("/rt")).send().await.unwrap();
    let http_res = from_reqwest_response(original);
    assert_eq!(http_res.headers()["x-a"], "1");
    let back = into_reqwest_response(http_res);
    assert_eq!(back.url().as_str(), server.url("/rt"));
    assert_eq!(back.text().await.unwrap(), "payload");
}

#[tokio::test]
async fn wrapped_body_errors_still_classify_after_conversion() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/t", Script::always(Behavior::truncated(100, 10)));
    let res = transport().oneshot(get(&server.url("/t"))).await.unwrap();
    // A layer wrapped the body; the conversion must keep its error chain.
    let res = res.map(|b| b.map_err(palisade_core::BoxError::from));
    let err = wrap_reqwest_response(res).bytes().await.unwrap_err();
    assert_eq!(
        HttpClassifier::new().classify_error(&err),
        Class::Transport(TransportErrorKind::Truncated)
    );
}
