//! Against a real loopback server (palisade-chaos's `FlakyServer`) over real
//! sockets, with hyper's client as the transport. The clock is real here, so
//! these tests assert outcomes and counters, never durations.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_concurrency::error::QueueTimeout;
use palisade_concurrency::{ConcurrencyLimitLayer, Limit};
use palisade_core::BoxError;
use tower::{Layer, ServiceExt};

type Transport = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn transport() -> Transport {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: &str) -> Request<Empty<Bytes>> {
    Request::get(url).body(Empty::new()).unwrap()
}

/// Sends `n` requests at once through a limit of 2 and reads every body.
async fn burst(server: &FlakyServer, path: &str, body_aware: bool, n: usize) -> Vec<usize> {
    let layer = ConcurrencyLimitLayer::builder()
        .limit(Limit::fixed(2))
        .body_aware(body_aware)
        .max_wait(Duration::from_secs(60))
        .build()
        .unwrap();
    let svc = layer.layer(transport());
    let mut tasks = Vec::new();
    for _ in 0..n {
        let svc = svc.clone();
        let req = get(&server.url(path));
        tasks.push(tokio::spawn(read(svc, req)));
    }
    let mut sizes = Vec::new();
    for t in tasks {
        sizes.push(t.await.unwrap().expect("request succeeds"));
    }
    sizes
}

fn read<S, B>(
    svc: S,
    req: Request<Empty<Bytes>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize, BoxError>> + Send>>
where
    S: tower::Service<Request<Empty<Bytes>>, Response = http::Response<B>, Error = BoxError>
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Box::pin(async move {
        let res = svc.oneshot(req).await?;
        let body = res.into_body().collect().await.map_err(Into::into)?;
        Ok(body.to_bytes().len())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_body_counts_against_the_limit_until_it_ends() {
    let server = FlakyServer::start().await.unwrap();
    // 8 KiB sent 1 KiB at a time: the body streams well after the head.
    let slow = || Script::always(Behavior::trickle(8 * 1024, 1024, Duration::from_millis(15)));
    server.script("/aware", slow());
    server.script("/head", slow());

    let sizes = burst(&server, "/aware", true, 8).await;
    assert!(sizes.iter().all(|&n| n == 8 * 1024));
    let aware = server.stats("/aware");
    assert_eq!(aware.attempts, 8);
    assert!(
        aware.max_in_flight <= 2,
        "body-aware permits: the server saw {} responses in progress at once",
        aware.max_in_flight
    );

    // Released at the head, the limit no longer bounds what streams.
    let sizes = burst(&server, "/head", false, 8).await;
    assert!(sizes.iter().all(|&n| n == 8 * 1024));
    let head = server.stats("/head");
    assert_eq!(head.attempts, 8);
    assert!(
        head.max_in_flight > 2,
        "released at the head, more than the limit streams at once ({})",
        head.max_in_flight
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_get_a_permit_in_time_never_reaches_the_server() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/slow",
        Script::always(Behavior::ok("done").with_latency(Duration::from_millis(500))),
    );
    let layer = ConcurrencyLimitLayer::builder()
        .limit(Limit::fixed(1))
        .max_wait(Duration::from_millis(50))
        .build()
        .unwrap();
    let diag = layer.diagnostics();
    let svc = layer.layer(transport());

    let first = tokio::spawn(read(svc.clone(), get(&server.url("/slow"))));
    // Let the first request take the only permit.
    while diag.keys().first().is_none_or(|k| k.in_flight == 0) {
        tokio::task::yield_now().await;
    }
    let err = read(svc.clone(), get(&server.url("/slow")))
        .await
        .unwrap_err();
    assert!(err.is::<QueueTimeout>(), "{err}");
    assert_eq!(first.await.unwrap().unwrap(), 4);
    assert_eq!(server.stats("/slow").attempts, 1);
    let stats = &diag.keys()[0];
    assert_eq!(
        (stats.in_flight, stats.queued, stats.rejected_queue_timeout),
        (0, 0, 1)
    );
}
