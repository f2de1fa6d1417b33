//! Against a real HTTP server (palisade-chaos's `FlakyServer`) through the
//! real transport (palisade-reqwest). Real clock: the assertions are on
//! outcomes and the server's counters, never on durations.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::error::Elapsed;
use palisade_core::{Body, BoxError, Class, Classify, HttpClassifier};
use palisade_reqwest::{PoolConfig, ReqwestService};
use palisade_retry::{Attempts, BackoffStrategy, RetryPolicy, RetryPolicyBuilder};
use tower::{Layer, Service, ServiceExt};

/// palisade-timeout's job, reduced to what this test needs: an attempt
/// timeout that fails with palisade's `Elapsed`.
#[derive(Clone)]
struct AttemptTimeout<S> {
    inner: S,
    after: Duration,
}

impl<S> Service<Request<Body>> for AttemptTimeout<S>
where
    S: Service<Request<Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let fut = self.inner.call(req);
        let after = self.after;
        Box::pin(async move {
            match tokio::time::timeout(after, fut).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(Elapsed.into()),
            }
        })
    }
}

fn quick() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .backoff(BackoffStrategy::Constant)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(10))
        .max_attempts(5)
        .no_budget()
        .seed(5)
}

fn transport() -> AttemptTimeout<ReqwestService> {
    AttemptTimeout {
        inner: ReqwestService::from_pool(&PoolConfig::new()).unwrap(),
        after: Duration::from_millis(300),
    }
}

fn post(url: String) -> Request<Body> {
    Request::post(url)
        .header("content-type", "application/json")
        .body(Body::from("{\"order\":1}"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_server_counters_show_a_get_is_retried() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/get",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::reset())
            .then(Behavior::ok("fine")),
    );
    let svc = quick().build_layer().unwrap().layer(transport());
    let res = svc
        .oneshot(
            Request::get(server.url("/get"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(Attempts::of(&res), 3);
    assert_eq!(server.stats("/get").attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_server_counters_show_keyed_post_retries_share_one_key() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/orders",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::reset())
            .then(Behavior::status(201)),
    );
    let svc = quick()
        .inject_idempotency_key(true)
        .build_layer()
        .unwrap()
        .layer(transport());
    let res = svc.oneshot(post(server.url("/orders"))).await.unwrap();
    assert_eq!(res.status(), 201);
    let stats = server.stats("/orders");
    assert_eq!(stats.attempts, 3);
    assert_eq!(
        stats.idempotency_keys.len(),
        3,
        "every attempt carried the key"
    );
    assert_eq!(stats.distinct_idempotency_keys(), 1, "one logical request");
    // The reset attempt was cut before its body was read; the others carried it whole.
    assert_eq!(stats.bodies[0].as_ref(), b"{\"order\":1}");
    assert_eq!(stats.bodies[2].as_ref(), b"{\"order\":1}");
}

// Written last, against the real server and transport: a POST without an
// idempotency key reaches the upstream exactly once, whatever goes wrong
// after it may have arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_is_never_duplicated() {
    let server = FlakyServer::start().await.unwrap();
    let cases = [
        ("/status-503", Behavior::status(503)),
        ("/status-502", Behavior::status(502)),
        ("/status-429", Behavior::retry_after_secs(429, 1)),
        ("/reset", Behavior::reset()),
        (
            "/slow",
            Behavior::ok("late").with_latency(Duration::from_secs(3)),
        ),
    ];
    for (path, first) in &cases {
        server.script(
            path,
            Script::new().then(first.clone()).then(Behavior::ok("ok")),
        );
    }
    let svc = quick().build_layer().unwrap().layer(transport());
    for (path, _) in &cases {
        let out = svc.clone().oneshot(post(server.url(path))).await;
        let class = HttpClassifier::new().classify(out.as_ref());
        assert!(
            !class.is_success(),
            "{path}: the first outcome is returned, got {class:?}"
        );
        if let Ok(res) = &out {
            assert_eq!(Attempts::of(res), 1, "{path}");
        }
        if *path == "/slow" {
            assert_eq!(class, Class::Timeout);
        }
        assert_eq!(
            server.stats(path).attempts,
            1,
            "{path} was sent more than once"
        );
    }
    // The same POST with a key is retried: the layer could have, and chose not to.
    server.script(
        "/keyed",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("ok")),
    );
    let keyed = quick()
        .inject_idempotency_key(true)
        .build_layer()
        .unwrap()
        .layer(transport());
    let res = keyed.oneshot(post(server.url("/keyed"))).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server.stats("/keyed").attempts, 2);
}
