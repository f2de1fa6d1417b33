//! Against a real HTTP server (palisade-chaos's FlakyServer) through the
//! reqwest transport. Real clock and sockets, so Reject mode: nothing here
//! waits, and the assertions are about outcomes and attempt counts.

use std::time::{Duration, SystemTime};

use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::error::{RateLimited, find};
use palisade_core::{Body, BoxError};
use palisade_ratelimit::{Quota, RateLimitLayer};
use palisade_reqwest::{PoolConfig, ReqwestService};
use tower::{Layer, ServiceExt};

fn client(quota: Quota) -> palisade_ratelimit::RateLimit<ReqwestService> {
    RateLimitLayer::builder(quota)
        .reject()
        .build()
        .unwrap()
        .layer(ReqwestService::from_pool(&PoolConfig::default()).unwrap())
}

async fn send(
    svc: &palisade_ratelimit::RateLimit<ReqwestService>,
    url: &str,
) -> Result<u16, RateLimited> {
    let req = http::Request::get(url).body(Body::empty()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), svc.clone().oneshot(req))
        .await
        .expect("request hung");
    match res {
        Ok(res) => Ok(res.status().as_u16()),
        Err(e) => Err(rate_limited(&e)),
    }
}

fn rate_limited(e: &BoxError) -> RateLimited {
    *find::<RateLimited>(&**e).unwrap_or_else(|| panic!("expected RateLimited, got {e:?}"))
}

#[tokio::test]
async fn a_real_429_pauses_the_origin() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/a",
        Script::new()
            .then(Behavior::retry_after_secs(429, 60))
            .then(Behavior::status(200)),
    );
    let svc = client(Quota::per_second(100).unwrap());
    assert_eq!(send(&svc, &server.url("/a")).await, Ok(429));
    let refused = send(&svc, &server.url("/a")).await.unwrap_err();
    let wait = refused.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    // The whole origin is paused, other paths included, and the server saw
    // only the first request.
    assert!(send(&svc, &server.url("/other")).await.is_err());
    assert_eq!(server.total_attempts(), 1);
}

#[tokio::test]
async fn a_real_429_with_an_http_date_pauses_the_origin() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/a",
        Script::new().then(Behavior::retry_after_date(
            429,
            SystemTime::now() + Duration::from_secs(45),
        )),
    );
    let svc = client(Quota::per_second(100).unwrap());
    assert_eq!(send(&svc, &server.url("/a")).await, Ok(429));
    let wait = send(&svc, &server.url("/a"))
        .await
        .unwrap_err()
        .retry_after
        .unwrap();
    assert!(
        wait > Duration::from_secs(40) && wait <= Duration::from_secs(45),
        "{wait:?}"
    );
    assert_eq!(server.stats("/a").attempts, 1);
}

#[tokio::test]
async fn a_real_exhausted_ratelimit_remaining_pauses_the_origin() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/b",
        Script::new()
            .then(
                Behavior::status(200)
                    .with_header("ratelimit-remaining", "0")
                    .with_header("ratelimit-reset", "30"),
            )
            .then(Behavior::status(200)),
    );
    let svc = client(Quota::per_second(100).unwrap());
    assert_eq!(send(&svc, &server.url("/b")).await, Ok(200));
    let wait = send(&svc, &server.url("/b"))
        .await
        .unwrap_err()
        .retry_after
        .unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(server.stats("/b").attempts, 1);
}

#[tokio::test]
async fn the_quota_holds_over_real_requests() {
    let server = FlakyServer::start().await.unwrap();
    let svc = client(Quota::per_minute(3).unwrap());
    let mut ok = 0;
    for _ in 0..10 {
        if send(&svc, &server.url("/c")).await.is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(server.stats("/c").attempts, 3);
}
