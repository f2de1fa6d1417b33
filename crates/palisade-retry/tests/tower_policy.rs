//! `RetryPolicy` driving tower's own `Retry`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::StreamBody;
use palisade_core::events::{BUDGET_EXHAUSTED, RETRY_GIVEN_UP};
use palisade_core::{Body, BoxError};
use palisade_retry::{BackoffStrategy, BudgetConfig, RetryBudget, RetryPolicy, RetryPolicyBuilder};
use tower::retry::Retry;
use tower::{Service, ServiceExt};

fn quick() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .backoff(BackoffStrategy::Constant)
        .base_delay(ms(10))
        .max_delay(ms(10))
        .no_budget()
        .seed(1)
}

async fn send(
    svc: &mut Retry<RetryPolicy, Scripted>,
    req: Request<Body>,
) -> Result<http::Response<String>, BoxError> {
    svc.ready().await?.call(req).await
}

#[tokio::test(start_paused = true)]
async fn tower_retry_with_our_policy_retries_idempotent_failures() {
    let up = Scripted::new([status(503), status(502), status(200)]);
    let mut svc = Retry::new(quick().build().unwrap(), up.clone());
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.gaps(), [ms(10), ms(10)]);
}

#[tokio::test(start_paused = true)]
async fn tower_retry_never_repeats_a_post() {
    let up = Scripted::new([status(503), status(200)]);
    let mut svc = Retry::new(quick().build().unwrap(), up.clone());
    assert_eq!(
        send(&mut svc, post("http://a.test/", "x"))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(up.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn tower_retry_honours_retry_after_and_max_attempts() {
    let up = Scripted::new([status_with(503, "retry-after", "1")]);
    let mut svc = Retry::new(quick().max_attempts(3).build().unwrap(), up.clone());
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(up.gaps(), [Duration::from_secs(1), Duration::from_secs(1)]);
}

#[tokio::test(start_paused = true)]
async fn per_request_state_starts_fresh_for_every_request() {
    let up = Scripted::new([status(503), status(503), status(503), status(200)]);
    let mut svc = Retry::new(quick().max_attempts(2).build().unwrap(), up.clone());
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(up.calls(), 2);
    // Had the first request's count leaked into the service's policy, this
    // one would not be retried.
    assert_eq!(
        send(&mut svc, get("http://a.test/"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(up.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn tower_retry_spends_the_budget() {
    let rec = Recorder::default();
    let _g = rec.install();
    let budget = RetryBudget::new(BudgetConfig::new(Duration::from_secs(1), 1, 0.0).unwrap());
    let up = Scripted::new([status(503)]);
    let mut svc = Retry::new(quick().budget(budget).build().unwrap(), up.clone());
    send(&mut svc, get("http://a.test/")).await.unwrap();
    send(&mut svc, get("http://a.test/")).await.unwrap();
    assert_eq!(up.calls(), 3, "one retry in the whole budget");
    assert_eq!(rec.named(BUDGET_EXHAUSTED).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn tower_retry_does_not_resend_a_body_streamed_past_its_cap() {
    let rec = Recorder::default();
    let _g = rec.install();
    let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = (0..4)
        .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![1u8; 10]))))
        .collect();
    let body = Body::wrap_with_cap(StreamBody::new(futures_util::stream::iter(frames)), 25);
    let up = Scripted::new([status(503), status(200)]);
    let mut svc = Retry::new(quick().build().unwrap(), up.clone());
    let req = Request::put("http://a.test/").body(body).unwrap();
    assert_eq!(send(&mut svc, req).await.unwrap().status(), 503);
    assert_eq!(up.calls(), 1);
    assert_eq!(
        rec.named(RETRY_GIVEN_UP)[0].field("reason"),
        Some("body_not_replayable")
    );
}
