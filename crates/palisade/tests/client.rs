//! The facade end to end against httpmock: credentials scoping, redirects,
//! token refresh, validation, error kinds, shutdown and the mock transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use httpmock::prelude::*;
use palisade::{Auth, Client, Kind, Token, TokenFuture, TokenProvider};

struct Sequence {
    calls: Arc<AtomicU32>,
}

impl TokenProvider for Sequence {
    fn fetch(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            // Slow enough that concurrent requests pile up on the refresh.
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Token::bearer(&format!("t{n}"))?.expires_in(Duration::from_secs(3600)))
        })
    }
}

#[tokio::test]
async fn credentials_are_sent_only_to_their_origin() {
    let home = MockServer::start_async().await;
    let other = MockServer::start_async().await;
    let authed = home
        .mock_async(|when, then| {
            when.path("/me").header("authorization", "Bearer s3cret");
            then.status(200);
        })
        .await;
    let bare = other
        .mock_async(|when, then| {
            when.path("/elsewhere").header_missing("authorization");
            then.status(200);
        })
        .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .bearer_token("s3cret")
        .build()
        .unwrap();
    assert_eq!(client.get("me").send().await.unwrap().status(), 200);
    let res = client.get(&other.url("/elsewhere")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the other origin got no credentials");
    authed.assert_async().await;
    bare.assert_async().await;
}

#[tokio::test]
async fn a_redirect_to_another_origin_drops_every_credential() {
    let home = MockServer::start_async().await;
    let other = MockServer::start_async().await;
    let target = other.url("/landing");
    home.mock_async(|when, then| {
        when.path("/go").header("x-api-key", "k3y");
        then.status(302).header("location", target.as_str());
    })
    .await;
    let landing = other
        .mock_async(|when, then| {
            when.path("/landing")
                .header_missing("x-api-key")
                .header_missing("authorization");
            then.status(200).body("landed");
        })
        .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .api_key("x-api-key", "k3y")
        .build()
        .unwrap();
    let res = client.get("go").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.url().as_str(),
        target,
        "the response says where it came from"
    );
    assert_eq!(res.text().await.unwrap(), "landed");
    landing.assert_async().await;
}

#[tokio::test]
async fn a_same_origin_redirect_keeps_credentials_and_303_becomes_get() {
    let home = MockServer::start_async().await;
    home.mock_async(|when, then| {
        when.method(POST).path("/submit");
        then.status(303).header("location", "/result");
    })
    .await;
    let result = home
        .mock_async(|when, then| {
            when.method(GET)
                .path("/result")
                .header("authorization", "Bearer s3cret");
            then.status(200);
        })
        .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .bearer_token("s3cret")
        .build()
        .unwrap();
    let res = client.post("submit").body("x=1").send().await.unwrap();
    assert_eq!(res.status(), 200);
    result.assert_async().await;
}

#[tokio::test]
async fn max_redirects_zero_returns_the_redirect() {
    let home = MockServer::start_async().await;
    home.mock_async(|when, then| {
        when.path("/go");
        then.status(302).header("location", "/elsewhere");
    })
    .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .max_redirects(0)
        .build()
        .unwrap();
    assert_eq!(client.get("go").send().await.unwrap().status(), 302);
}

#[tokio::test]
async fn a_redirect_loop_is_a_clear_error() {
    let home = MockServer::start_async().await;
    home.mock_async(|when, then| {
        when.path("/loop");
        then.status(302).header("location", "/loop");
    })
    .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .max_redirects(3)
        .build()
        .unwrap();
    let err = client.get("loop").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::Transport);
    assert!(err.to_string().contains("too many redirects"), "{err}");
}

#[tokio::test]
async fn a_401_refreshes_once_and_replays_the_request() {
    let home = MockServer::start_async().await;
    let stale = home
        .mock_async(|when, then| {
            when.method(PUT)
                .path("/doc")
                .header("authorization", "Bearer t1")
                .body("v2");
            then.status(401);
        })
        .await;
    let fresh = home
        .mock_async(|when, then| {
            when.method(PUT)
                .path("/doc")
                .header("authorization", "Bearer t2")
                .body("v2");
            then.status(204);
        })
        .await;
    let calls = Arc::new(AtomicU32::new(0));
    let auth = Auth::provider(
        Sequence {
            calls: calls.clone(),
        },
        Duration::from_secs(30),
    );
    let client = Client::builder()
        .base_url(&home.base_url())
        .auth(auth)
        .build()
        .unwrap();
    let res = client.put("doc").body("v2").send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    stale.assert_async().await;
    fresh.assert_async().await;
}

#[tokio::test]
async fn fifty_concurrent_requests_cause_exactly_one_token_fetch() {
    let home = MockServer::start_async().await;
    let ok = home
        .mock_async(|when, then| {
            when.path("/x").header("authorization", "Bearer t1");
            then.status(200);
        })
        .await;
    let calls = Arc::new(AtomicU32::new(0));
    let client = Client::builder()
        .base_url(&home.base_url())
        .auth(Auth::provider(
            Sequence {
                calls: calls.clone(),
            },
            Duration::from_secs(30),
        ))
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get("x").send().await.map(|r| r.status()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(ok.calls_async().await, 50);
}

#[test]
fn invalid_configuration_is_a_config_error() {
    let cases: Vec<(palisade::ClientBuilder, &str)> = vec![
        (Client::builder().base_url("api/v1"), "base_url"),
        (Client::builder().base_url("ftp://example.com/"), "base_url"),
        (Client::builder().bearer_token("x"), "base_url"),
        (
            Client::builder().default_header("bad header", "x"),
            "header",
        ),
        (
            Client::builder().stack(|s| s.attempt_timeout(Some(Duration::from_secs(60)))),
            "attempt_timeout",
        ),
        (
            Client::builder().stack(|s| s.deadline(Some(Duration::ZERO))),
            "deadline",
        ),
        (
            Client::builder().mount("not a url", palisade::StackConfig::default()),
            "mount",
        ),
    ];
    for (builder, mentions) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.kind(), Kind::Config, "{err}");
        assert!(
            err.to_string().contains(mentions),
            "{err} should mention {mentions}"
        );
    }
}

#[tokio::test]
async fn bad_requests_are_invalid_request_errors_not_panics() {
    let client = Client::builder()
        .base_url("http://127.0.0.1:9/")
        .build()
        .unwrap();
    for (rb, what) in [
        (client.get("http://[::1"), "malformed URL"),
        (client.get("mailto:someone@example.com"), "unsupported URL"),
        (client.get("x").header("bad name", "v"), "header name"),
        (client.get("x").header("ok", "bad\nvalue"), "header"),
    ] {
        let err = rb.send().await.unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidRequest, "{err}");
        assert!(err.to_string().contains(what), "{err} should say {what}");
    }
    let no_base = Client::new().unwrap();
    let err = no_base.get("relative/path").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidRequest);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_connect_error_with_the_reqwest_error_kept() {
    // Bind then drop a listener so the port is closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::new().unwrap();
    let err = client
        .get(&format!("http://127.0.0.1:{port}/"))
        .retries(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Connect, "{err:?}");
    assert!(err.is_connect());
    let reqwest_err = err.reqwest_error().expect("the reqwest::Error is kept");
    assert!(reqwest_err.is_connect());
    assert!(err.url().is_some());
}

#[tokio::test]
async fn error_for_status_and_send_json() {
    let home = MockServer::start_async().await;
    home.mock_async(|when, then| {
        when.path("/item");
        then.status(200).json_body(serde_json::json!({"id": 7}));
    })
    .await;
    home.mock_async(|when, then| {
        when.path("/gone");
        then.status(404);
    })
    .await;
    home.mock_async(|when, then| {
        when.path("/not-json");
        then.status(200).body("<html>");
    })
    .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .build()
        .unwrap();
    let v: serde_json::Value = client.get("item").send_json().await.unwrap();
    assert_eq!(v["id"], 7);
    let err = client
        .get("gone")
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Status);
    assert_eq!(err.status(), Some(http::StatusCode::NOT_FOUND));
    let err = client
        .get("not-json")
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Decode);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_refuses_new_ones() {
    let home = MockServer::start_async().await;
    home.mock_async(|when, then| {
        when.path("/slow");
        then.status(200).delay(Duration::from_millis(300));
    })
    .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .build()
        .unwrap();
    let c = client.clone();
    let pending = tokio::spawn(async move { c.get("slow").send().await.map(|r| r.status()) });
    while client.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let cancelled = client.shutdown(Duration::from_secs(30)).await;
    assert_eq!(
        cancelled, 0,
        "the in-flight request was drained, not cancelled"
    );
    assert_eq!(pending.await.unwrap().unwrap(), 200);
    let err = client.get("slow").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::Shutdown);
}

#[tokio::test]
async fn shutdown_cancels_what_outlives_the_grace_period() {
    let home = MockServer::start_async().await;
    home.mock_async(|when, then| {
        when.path("/stuck");
        then.status(200).delay(Duration::from_secs(20));
    })
    .await;
    let client = Client::builder()
        .base_url(&home.base_url())
        .build()
        .unwrap();
    let c = client.clone();
    let pending = tokio::spawn(async move { c.get("stuck").send().await });
    while client.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    assert_eq!(client.shutdown(Duration::from_millis(50)).await, 1);
    let err = pending.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), Kind::Shutdown);
    assert_eq!(
        client.in_flight(),
        0,
        "the cancelled request released its slot"
    );
}

#[tokio::test]
async fn a_mock_transport_replaces_reqwest() {
    let client = Client::builder()
        .base_url("https://api.example.com/")
        .transport(tower::service_fn(
            |req: http::Request<palisade::Body>| async move {
                let body = format!("{} {}", req.method(), req.uri().path());
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(body),
                )))
            },
        ))
        .build()
        .unwrap();
    let res = client.delete("things/1").send().await.unwrap();
    assert_eq!(res.text().await.unwrap(), "DELETE /things/1");
}

#[tokio::test]
async fn mounts_get_their_own_stack() {
    let client = Client::builder()
        .mount(
            "https://slow-partner.example/",
            palisade::StackConfig::default().attempt_timeout(Some(Duration::from_secs(2))),
        )
        .build()
        .unwrap();
    let d = client.describe();
    assert_eq!(d.mounts.len(), 1);
    assert_eq!(d.mounts[0].0, "https://slow-partner.example/");
    assert!(
        d.to_string()
            .contains("mount https://slow-partner.example/")
    );
}

#[tokio::test]
async fn shutdown_waits_for_a_streaming_body_then_cancels_it() {
    use palisade_chaos::{Behavior, FlakyServer, Script};
    let up = FlakyServer::start().await.unwrap();
    // 64 KiB in 1 KiB chunks, one every 100 ms: about 6 s of body.
    up.script(
        "/trickle",
        Script::always(Behavior::trickle(
            64 * 1024,
            1024,
            Duration::from_millis(100),
        )),
    );
    let client = Client::builder()
        .stack(|s| s.deadline(Some(Duration::from_secs(60))))
        .build()
        .unwrap();
    let res = client.get(&up.url("/trickle")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(client.in_flight(), 1, "the body still streams");
    let reader = tokio::spawn(async move { res.bytes().await });
    assert_eq!(
        client.shutdown(Duration::from_millis(200)).await,
        1,
        "the body outlived the grace period and was cancelled"
    );
    assert!(reader.await.unwrap().is_err(), "its read failed");
    assert_eq!(client.in_flight(), 0, "and released its count");
}

/// A token endpoint that accepts and never answers, the first time only.
struct HangsOnce(Arc<AtomicU32>);

impl TokenProvider for HangsOnce {
    fn fetch(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                std::future::pending::<()>().await;
            }
            Ok(Token::bearer("fresh")?)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_fetch_that_never_answers_fails_within_the_deadline_and_frees_the_refresh() {
    let fetches = Arc::new(AtomicU32::new(0));
    let client = Client::builder()
        .base_url("https://api.example.com/")
        .auth(Auth::provider(HangsOnce(fetches.clone()), Duration::ZERO))
        .stack(|s| s.deadline(Some(Duration::from_secs(3))))
        .transport(tower::service_fn(
            |req: http::Request<palisade::Body>| async move {
                let auth = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(auth),
                )))
            },
        ))
        .build()
        .unwrap();
    let err = client.get("items").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded, "{err}");
    assert!(err.to_string().contains("token"), "{err}");
    // The single refresh slot was freed: the next request fetches again.
    let res = client.get("items").send().await.unwrap();
    assert!(res.text().await.unwrap().contains("Bearer fresh"));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}
