//! The transport against httpmock: what goes on the wire, and what comes back.

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use httpmock::prelude::*;
use palisade_core::{Body, BoxError};
use palisade_reqwest::{PoolConfig, ReqwestService, into_reqwest_response};
use serde_json::json;
use tower::ServiceExt;

fn transport() -> ReqwestService {
    ReqwestService::from_pool(&PoolConfig::new()).unwrap()
}

#[tokio::test]
async fn sends_method_path_query_and_headers() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(DELETE)
                .path("/items/7")
                .query_param("force", "true")
                .header("x-request-id", "abc")
                .header("authorization", "Bearer t");
            then.status(204).header("x-served-by", "mock");
        })
        .await;
    let req = http::Request::delete(server.url("/items/7?force=true"))
        .header("x-request-id", "abc")
        .header("authorization", "Bearer t")
        .body(Body::empty())
        .unwrap();
    let res = transport().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(res.headers()["x-served-by"], "mock");
    mock.assert_async().await;
}

#[tokio::test]
async fn sends_a_json_body_with_its_length() {
    let server = MockServer::start_async().await;
    let payload = json!({"name": "widget", "qty": 3});
    let body = serde_json::to_vec(&payload).unwrap();
    let len = body.len().to_string();
    let mock = server
        .mock_async(|when, then| {
            when.method(POST)
                .path("/orders")
                .header("content-type", "application/json")
                .header("content-length", len)
                .json_body(payload.clone());
            then.status(201).json_body(json!({"id": 42}));
        })
        .await;
    let req = http::Request::post(server.url("/orders"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let res = transport().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 201);
    let got = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v, json!({"id": 42}));
    mock.assert_async().await;
}

#[tokio::test]
async fn streams_a_request_body() {
    let server = MockServer::start_async().await;
    let mock = server
        .mock_async(|when, then| {
            when.method(PUT)
                .path("/upload")
                .body("hello streaming world");
            then.status(200);
        })
        .await;
    let chunks: Vec<Result<http_body::Frame<Bytes>, BoxError>> = ["hello ", "streaming ", "world"]
        .into_iter()
        .map(|c| Ok(http_body::Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    let body = Body::wrap(StreamBody::new(futures_util::stream::iter(chunks)));
    assert!(body.is_streaming());
    let req = http::Request::put(server.url("/upload"))
        .body(body)
        .unwrap();
    let res = transport().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    mock.assert_async().await;
}

#[tokio::test]
async fn streams_a_response_body_frame_by_frame() {
    let server = MockServer::start_async().await;
    let big = vec![b'z'; 1 << 20];
    server
        .mock_async(|when, then| {
            when.method(GET).path("/big");
            then.status(200).body(&big);
        })
        .await;
    let req = http::Request::get(server.url("/big"))
        .body(Body::empty())
        .unwrap();
    let res = transport().oneshot(req).await.unwrap();
    assert_eq!(
        http_body::Body::size_hint(res.body()).exact(),
        Some(1 << 20),
        "the length is known before reading"
    );
    let mut body = res.into_body();
    let (mut frames, mut total) = (0, 0);
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert!(data.iter().all(|b| *b == b'z'));
        total += data.len();
        frames += 1;
    }
    assert_eq!(total, 1 << 20);
    assert!(frames > 1, "a 1 MiB body arrives in several frames");
}

#[tokio::test]
async fn converts_back_to_a_reqwest_response() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/doc");
            then.status(404).header("x-why", "gone").body("missing");
        })
        .await;
    let url = server.url("/doc");
    let req = http::Request::get(&url).body(Body::empty()).unwrap();
    let res = transport().oneshot(req).await.unwrap();
    let res = into_reqwest_response(res);
    assert_eq!(res.url().as_str(), url);
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-why"], "gone");
    let err = res.error_for_status_ref().unwrap_err();
    assert_eq!(err.status(), Some(reqwest::StatusCode::NOT_FOUND));
    assert_eq!(res.text().await.unwrap(), "missing");
}
