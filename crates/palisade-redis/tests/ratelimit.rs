//! The shared quota against a real redis-server. These run on the real
//! clock (a paused clock cannot wait on real sockets) and assert outcomes,
//! never durations, except that nothing hangs: every request is bounded by a
//! generous timeout whose expiry fails the test.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use palisade_core::BoxError;
use palisade_core::error::{RateLimited, find};
use palisade_ratelimit::{Quota, RateLimit, RateLimitLayer};
use palisade_redis::{FailurePolicy, RedisBackend};
use support::RedisServer;
use tower::{Layer, ServiceExt};

/// An upstream that counts calls and answers its first call with `first`
/// (a status and a Retry-After), then 200.
#[derive(Clone)]
struct Upstream {
    calls: Arc<AtomicUsize>,
    first: Option<(u16, &'static str)>,
}

impl tower::Service<http::Request<()>> for Upstream {
    type Response = http::Response<()>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<http::Response<()>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<()>) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let res = match self.first {
            Some((status, retry_after)) if n == 0 => http::Response::builder()
                .status(status)
                .header("retry-after", retry_after)
                .body(())
                .unwrap(),
            _ => http::Response::new(()),
        };
        std::future::ready(Ok(res))
    }
}

fn upstream(calls: Arc<AtomicUsize>, first: Option<(u16, &'static str)>) -> Upstream {
    Upstream { calls, first }
}

fn backend(server: &RedisServer, policy: FailurePolicy) -> RedisBackend {
    RedisBackend::builder(server.client())
        .namespace("test")
        .call_timeout(Duration::from_millis(100))
        .retry_interval(Duration::from_millis(100))
        .failure_policy(policy)
        .build()
        .unwrap()
}

fn limiter(
    backend: RedisBackend,
    quota: Quota,
    up: Upstream,
) -> RateLimit<Upstream, palisade_core::ByAuthority, RedisBackend> {
    RateLimitLayer::builder(quota)
        .reject()
        .backend(backend)
        .build()
        .unwrap()
        .layer(up)
}

/// Sends one request; a request that takes 5 s has hung and fails the test.
async fn send(
    svc: &RateLimit<Upstream, palisade_core::ByAuthority, RedisBackend>,
    uri: &str,
) -> Result<http::Response<()>, RateLimited> {
    let req = http::Request::get(uri).body(()).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(5), svc.clone().oneshot(req))
        .await
        .unwrap_or_else(|_| panic!("request to {uri} hung"));
    res.map_err(|e: BoxError| {
        *find::<RateLimited>(&*e).unwrap_or_else(|| panic!("expected RateLimited, got {e:?}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_quota() {
    let server = RedisServer::start().await;
    let quota = Quota::per_minute(10).unwrap();
    let (calls_a, calls_b) = (Arc::default(), Arc::default());
    // Two clients, two connections: as two processes would be.
    let a = limiter(
        backend(&server, FailurePolicy::FailClosed),
        quota,
        upstream(Arc::clone(&calls_a), None),
    );
    let b = limiter(
        backend(&server, FailurePolicy::FailClosed),
        quota,
        upstream(Arc::clone(&calls_b), None),
    );

    let mut allowed = 0;
    let mut refused = Vec::new();
    for i in 0..30 {
        let svc = if i % 2 == 0 { &a } else { &b };
        match send(svc, "https://api.test/").await {
            Ok(_) => allowed += 1,
            Err(e) => refused.push(e),
        }
    }
    assert_eq!(allowed, 10, "the two instances together get the quota once");
    assert_eq!(
        calls_a.load(Ordering::SeqCst) + calls_b.load(Ordering::SeqCst),
        10
    );
    assert!(calls_a.load(Ordering::SeqCst) > 0 && calls_b.load(Ordering::SeqCst) > 0);
    // The next slot frees 6 s after the first request.
    let wait = refused[0]
        .retry_after
        .expect("redis knows when the next slot frees");
    assert!(
        wait > Duration::from_secs(4) && wait <= Duration::from_secs(6),
        "{wait:?}"
    );
    assert_eq!(
        a.backend().stats().fallbacks + b.backend().stats().fallbacks,
        0
    );
    assert_eq!(
        a.backend().stats().decisions + b.backend().stats().decisions,
        30
    );

    // Another key has its own quota.
    send(&a, "https://other.test/").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_namespaced_hash_tagged_and_expire() {
    let server = RedisServer::start().await;
    let a = limiter(
        backend(&server, FailurePolicy::FailClosed),
        Quota::per_second(2).unwrap(),
        upstream(Arc::default(), None),
    );
    send(&a, "http://a.test/").await.unwrap();
    let mut conn = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, vec!["{test:rl:http://a.test:80}:tat".to_owned()]);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 1_001,
        "the key expires once the burst has refilled: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_seen_by_one_instance_pauses_the_key_for_all() {
    let server = RedisServer::start().await;
    let quota = Quota::per_second(100).unwrap();
    let calls_b = Arc::new(AtomicUsize::new(0));
    let a = limiter(
        backend(&server, FailurePolicy::FailClosed),
        quota,
        upstream(Arc::default(), Some((429, "30"))),
    );
    let b = limiter(
        backend(&server, FailurePolicy::FailClosed),
        quota,
        upstream(calls_b.clone(), None),
    );
    assert_eq!(send(&a, "https://api.test/").await.unwrap().status(), 429);
    // The pause reaches Redis in the background; give it a moment.
    let mut refused = None;
    for _ in 0..100 {
        match send(&b, "https://api.test/").await {
            Err(e) => {
                refused = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let refused = refused.expect("instance B learned of A's 429");
    let wait = refused.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    let before = calls_b.load(Ordering::SeqCst);
    assert!(send(&b, "https://api.test/").await.is_err());
    assert_eq!(
        calls_b.load(Ordering::SeqCst),
        before,
        "B no longer hits the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_fails_open_to_the_local_limiter() {
    let mut server = RedisServer::start().await;
    let quota = Quota::per_minute(3).unwrap();
    let a = limiter(
        backend(&server, FailurePolicy::FailOpen),
        quota,
        upstream(Arc::default(), None),
    );
    for _ in 0..3 {
        send(&a, "https://api.test/").await.unwrap();
    }
    assert!(
        send(&a, "https://api.test/").await.is_err(),
        "redis enforces the quota"
    );
    assert_eq!(a.backend().stats().fallbacks, 0);

    server.kill();
    // The local limiter, with the same quota, now decides: a fresh burst of
    // three, then refusals with a known wait. Nothing panics, nothing hangs.
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(send(&a, "https://api.test/").await);
    }
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 3);
    for refused in outcomes.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            refused.retry_after.is_some(),
            "the local limiter knows its wait"
        );
    }
    assert_eq!(
        a.backend().stats().fallbacks,
        6,
        "the policy was applied to each decision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_redis_fails_closed() {
    let mut server = RedisServer::start().await;
    let a = limiter(
        backend(&server, FailurePolicy::FailClosed),
        Quota::per_second(100).unwrap(),
        upstream(Arc::default(), None),
    );
    send(&a, "https://api.test/").await.unwrap();
    server.kill();
    for _ in 0..5 {
        let refused = send(&a, "https://api.test/").await.unwrap_err();
        assert_eq!(refused.retry_after, None, "refused without a known time");
    }
    assert_eq!(a.backend().stats().fallbacks, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_costs_at_most_the_call_timeout() {
    let server = RedisServer::start().await;
    let a = limiter(
        backend(&server, FailurePolicy::FailOpen),
        Quota::per_second(1_000).unwrap(),
        upstream(Arc::default(), None),
    );
    send(&a, "https://api.test/").await.unwrap();
    // The connection stays open but nothing answers: only the call timeout
    // (100 ms here) can end the wait. `send` fails the test after 5 s.
    server.freeze();
    for _ in 0..5 {
        send(&a, "https://api.test/").await.unwrap();
    }
    server.thaw();
    assert_eq!(a.backend().stats().fallbacks, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_used_again() {
    let mut server = RedisServer::start().await;
    let quota = Quota::per_minute(4).unwrap();
    let a = limiter(
        backend(&server, FailurePolicy::FailClosed),
        quota,
        upstream(Arc::default(), None),
    );
    let b = limiter(
        backend(&server, FailurePolicy::FailClosed),
        quota,
        upstream(Arc::default(), None),
    );
    send(&a, "https://before.test/").await.unwrap();
    send(&b, "https://before.test/").await.unwrap();

    server.kill();
    assert!(send(&a, "https://api.test/").await.is_err());
    server.restart().await;

    // Both instances come back on their own, within a few retry intervals.
    for svc in [&a, &b] {
        let before = svc.backend().stats().decisions;
        let mut recovered = false;
        for _ in 0..100 {
            let _ = send(svc, "https://probe.test/").await;
            if svc.backend().stats().decisions > before {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(recovered, "redis answered again after its restart");
    }
    // And they share the quota again.
    let mut allowed = 0;
    for i in 0..10 {
        let svc = if i % 2 == 0 { &a } else { &b };
        if send(svc, "https://after.test/").await.is_ok() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 4);
}
