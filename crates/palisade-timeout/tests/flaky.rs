//! Body and attempt timeouts against a real HTTP server (palisade-chaos's
//! `FlakyServer`) through the real transport (palisade-reqwest).
//!
//! Real sockets mean the real clock: the bounds are generous (the faults are
//! many times longer than the timeouts, the healthy streams many times
//! shorter) and the tests assert error kinds and byte counts, never
//! durations.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::error::find;
use palisade_core::{Body, BoxError, Deadline};
use palisade_reqwest::{PoolConfig, ReqwestService};
use palisade_timeout::error::{BodyDeadlineExceeded, BodyIdleTimeout, DeadlineExceeded, Elapsed};
use palisade_timeout::{AttemptTimeoutLayer, BodyTimeoutLayer};
use tower::{ServiceBuilder, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads the body to its end: bytes read, and the error that ended it.
async fn drain<B>(body: B) -> (u64, Option<BoxError>)
where
    B: http_body::Body<Data = Bytes, Error = BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => read += f.into_data().map_or(0, |d| d.len() as u64),
            Err(e) => return (read, Some(e)),
        }
    }
    (read, None)
}

/// GETs `path` through body and attempt timeouts, and reads the body.
async fn fetch(
    server: &FlakyServer,
    path: &str,
    body_timeouts: BodyTimeoutLayer,
    deadline: Option<Duration>,
) -> Result<(u64, Option<BoxError>), BoxError> {
    let client = ServiceBuilder::new()
        .layer(body_timeouts)
        .layer(AttemptTimeoutLayer::new(Duration::from_secs(10))?)
        .service(ReqwestService::from_pool(&PoolConfig::new())?);
    let mut req = Request::get(server.url(path)).body(Body::empty())?;
    if let Some(d) = deadline {
        Deadline::after(d).apply(req.extensions_mut());
    }
    let res = client.oneshot(req).await?;
    Ok(drain(res.into_body()).await)
}

fn idle(d: Duration) -> BodyTimeoutLayer {
    BodyTimeoutLayer::builder().idle(d).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_mid_body_fails_with_the_body_idle_error() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/stall",
        Script::always(Behavior::stall_mid_body(16 * 1024)),
    );
    let (read, err) = fetch(&server, "/stall", idle(ms(300)), None).await.unwrap();
    let err = err.expect("a stalled body must not hang or end cleanly");
    assert!(find::<BodyIdleTimeout>(&*err).is_some(), "{err}");
    assert_eq!(
        read,
        16 * 1024,
        "everything sent before the stall was delivered"
    );

    // With the half-read body gone its connection is closed, and the server
    // sees the request end. Polled with a bounded wait, not timed.
    let mut in_flight = u64::MAX;
    for _ in 0..200 {
        in_flight = server.stats("/stall").in_flight;
        if in_flight == 0 {
            break;
        }
        tokio::time::sleep(ms(25)).await;
    }
    assert_eq!(in_flight, 0, "the stalled connection was left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_trickle_fails_with_the_body_idle_error() {
    let server = FlakyServer::start().await.unwrap();
    // 1 KiB at once, then one every 3 s: ten times the idle timeout.
    server.script(
        "/trickle",
        Script::always(Behavior::trickle(16 * 1024, 1024, Duration::from_secs(3))),
    );
    let (read, err) = fetch(&server, "/trickle", idle(ms(300)), None)
        .await
        .unwrap();
    let err = err.expect("a trickle slower than the idle timeout must fail");
    assert!(find::<BodyIdleTimeout>(&*err).is_some(), "{err}");
    assert!(read < 16 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_stream_of_the_same_length_completes() {
    let server = FlakyServer::start().await.unwrap();
    // The same 16 KiB in the same 1 KiB chunks, 10 ms apart: far inside 3 s.
    server.script(
        "/healthy",
        Script::always(Behavior::trickle(16 * 1024, 1024, ms(10))),
    );
    let (read, err) = fetch(&server, "/healthy", idle(Duration::from_secs(3)), None)
        .await
        .unwrap();
    assert!(err.is_none(), "{err:?}");
    assert_eq!(read, 16 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_deadline_ends_a_body_that_keeps_trickling() {
    let server = FlakyServer::start().await.unwrap();
    // 64 chunks, 100 ms apart: over 6 s, against a 700 ms request deadline.
    server.script(
        "/long",
        Script::always(Behavior::trickle(64 * 1024, 1024, ms(100))),
    );
    let (read, err) = fetch(
        &server,
        "/long",
        idle(Duration::from_secs(5)),
        Some(ms(700)),
    )
    .await
    .unwrap();
    let err = err.expect("the deadline must end the body");
    let dl = find::<BodyDeadlineExceeded>(&*err).expect("body deadline error");
    assert!(dl.is_request_deadline());
    assert!(find::<DeadlineExceeded>(&*err).is_some());
    assert!(read < 64 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_response_head_fails_with_elapsed() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/slow",
        Script::always(Behavior::ok("late").with_latency(Duration::from_secs(10))),
    );
    let client = ServiceBuilder::new()
        .layer(AttemptTimeoutLayer::new(ms(300)).unwrap())
        .service(ReqwestService::from_pool(&PoolConfig::new()).unwrap());
    let req = Request::get(server.url("/slow"))
        .body(Body::empty())
        .unwrap();
    let err = client.oneshot(req).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(server.stats("/slow").attempts, 1);
}
