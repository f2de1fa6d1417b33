//! Batches: order and partial failures (httpmock), all-or-nothing
//! cancellation seen from the server (FlakyServer), completion order and
//! bounded concurrency (an in-memory transport).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use httpmock::prelude::*;
use palisade::{Body, Client, Kind};
use palisade_chaos::{Behavior, FlakyServer, Script};

#[tokio::test]
async fn get_many_keeps_input_order_and_fails_only_the_failed_entries() {
    let server = MockServer::start_async().await;
    for i in 0..20 {
        let status = match i {
            3 => 404,
            7 => 410,
            _ => 200,
        };
        server
            .mock_async(|when, then| {
                when.path(format!("/b/{i}"));
                then.status(status).body(format!("item {i}"));
            })
            .await;
    }
    let client = Client::builder()
        .base_url(&server.base_url())
        .build()
        .unwrap();
    let paths = (0..20).map(|i| format!("b/{i}"));
    let results = client.batch().concurrency(4).unwrap().get_many(paths).await;
    assert_eq!(results.len(), 20);
    for (i, r) in results.iter().enumerate() {
        match i {
            3 | 7 => {
                let e = r.as_ref().unwrap_err();
                assert_eq!(e.kind(), Kind::Status);
                assert_eq!(
                    e.status().map(|s| s.as_u16()),
                    Some(if i == 3 { 404 } else { 410 })
                );
                assert!(e.url().unwrap().path().ends_with(&format!("/b/{i}")));
            }
            _ => {
                let f = r.as_ref().unwrap();
                assert_eq!(f.status(), 200);
                assert_eq!(f.text().unwrap(), format!("item {i}"));
            }
        }
    }
}

#[tokio::test]
async fn error_for_status_can_be_turned_off() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/gone");
            then.status(404).body("{\"why\":\"gone\"}");
        })
        .await;
    let client = Client::new().unwrap();
    let results = client
        .batch()
        .error_for_status(false)
        .get_many([server.url("/gone")])
        .await;
    let f = results[0].as_ref().unwrap();
    assert_eq!(f.status(), 404);
    let v: serde_json::Value = f.json().unwrap();
    assert_eq!(v["why"], "gone");
}

#[tokio::test]
async fn try_get_all_returns_every_body_in_input_order() {
    let server = FlakyServer::start().await.unwrap();
    for (i, latency) in [(0, 300), (1, 0), (2, 150)] {
        server.script(
            &format!("/all/{i}"),
            Script::always(
                Behavior::ok(format!("body {i}")).with_latency(Duration::from_millis(latency)),
            ),
        );
    }
    let client = Client::new().unwrap();
    let all = client
        .try_get_all((0..3).map(|i| server.url(&format!("/all/{i}"))))
        .await
        .unwrap();
    let bodies: Vec<_> = all.iter().map(|f| f.text().unwrap().to_owned()).collect();
    assert_eq!(bodies, ["body 0", "body 1", "body 2"]);
}

#[tokio::test]
async fn try_get_all_cancels_its_siblings_on_the_first_failure() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/slow",
        Script::always(Behavior::ok("late").with_latency(Duration::from_secs(60))),
    );
    // Late enough that the slow siblings have reached the server.
    server.script(
        "/fail",
        Script::always(Behavior::status(404).with_latency(Duration::from_millis(500))),
    );
    let never = server.url("/never");
    let client = Client::new().unwrap();
    let mut paths: Vec<String> = (0..3).map(|_| server.url("/slow")).collect();
    paths.push(server.url("/fail"));
    paths.push(never);

    let err = client
        .batch()
        .concurrency(4)
        .unwrap()
        .try_get_all(paths)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Status);
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));

    let slow = server.stats("/slow");
    assert_eq!(slow.max_in_flight, 3, "the siblings were in flight");
    assert_eq!(client.in_flight(), 0, "the client holds nothing any more");
    // The server sees the cancellation when the connections close.
    let mut waited = Duration::ZERO;
    while server.stats("/slow").in_flight > 0 {
        assert!(
            waited < Duration::from_secs(10),
            "siblings still in flight at the server: {:?}",
            server.stats("/slow")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert_eq!(server.stats("/slow").attempts, 3, "cancelled, not retried");
    assert_eq!(
        server.stats("/never").attempts,
        0,
        "nothing after the failure"
    );
}

/// An in-memory transport that answers after a per-path delay and counts
/// how many calls are in flight at once.
#[derive(Clone, Default)]
struct Counting {
    delays: Arc<HashMap<String, Duration>>,
    current: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
}

impl Counting {
    fn client(&self) -> Client {
        let this = self.clone();
        let service = tower::service_fn(move |req: http::Request<Body>| {
            let this = this.clone();
            async move {
                let now = this.current.fetch_add(1, Ordering::SeqCst) + 1;
                this.max.fetch_max(now, Ordering::SeqCst);
                match this.delays.get(req.uri().path()) {
                    Some(d) => tokio::time::sleep(*d).await,
                    None => tokio::task::yield_now().await,
                }
                this.current.fetch_sub(1, Ordering::SeqCst);
                this.completed.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                    req.uri().path().to_owned(),
                ))))
            }
        });
        Client::builder()
            .base_url("http://upstream.test/")
            .transport(service)
            .build()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_100_000_keeps_at_most_its_concurrency_in_flight() {
    const N: usize = 100_000;
    const LIMIT: usize = 32;
    let t = Counting::default();
    let client = t.client();
    let pulled = Arc::new(AtomicUsize::new(0));
    let ahead = Arc::new(AtomicUsize::new(0));
    let paths = {
        let (pulled, ahead, completed) = (pulled.clone(), ahead.clone(), t.completed.clone());
        (0..N).map(move |i| {
            let p = pulled.fetch_add(1, Ordering::SeqCst) + 1;
            // Requests taken from the iterator whose call has not finished.
            ahead.fetch_max(p - completed.load(Ordering::SeqCst), Ordering::SeqCst);
            format!("n/{i}")
        })
    };
    let results = client.get_many(paths).await;
    assert_eq!(results.len(), N);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        results[N - 1].as_ref().unwrap().text().unwrap(),
        format!("/n/{}", N - 1)
    );
    assert_eq!(pulled.load(Ordering::SeqCst), N);
    let max = t.max.load(Ordering::SeqCst);
    assert!(max <= LIMIT, "{max} calls in flight at once");
    assert!(max > 1, "the batch ran concurrently ({max})");
    let ahead = ahead.load(Ordering::SeqCst);
    assert!(
        ahead <= LIMIT,
        "{ahead} requests were built ahead of completion"
    );
}

#[tokio::test(start_paused = true)]
async fn fetch_unordered_yields_in_completion_order_with_indices() {
    let delays: HashMap<String, Duration> = [("/a", 3), ("/b", 1), ("/c", 2)]
        .into_iter()
        .map(|(p, s)| (p.to_owned(), Duration::from_secs(s)))
        .collect();
    let t = Counting {
        delays: Arc::new(delays),
        ..Counting::default()
    };
    let client = t.client();
    let requests: Vec<_> = ["a", "b", "c"].iter().map(|p| client.get(p)).collect();
    let order: Vec<(usize, String)> = client
        .fetch_unordered(requests)
        .map(|(i, r)| (i, r.unwrap().text().unwrap().to_owned()))
        .collect()
        .await;
    assert_eq!(
        order,
        [
            (1, "/b".to_owned()),
            (2, "/c".to_owned()),
            (0, "/a".to_owned())
        ]
    );
    assert_eq!(t.max.load(Ordering::SeqCst), 3, "all three ran at once");
}

#[tokio::test(start_paused = true)]
async fn fetch_unordered_respects_the_batch_concurrency() {
    let t = Counting {
        delays: Arc::new(
            (0..10)
                .map(|i| (format!("/s/{i}"), Duration::from_secs(1)))
                .collect(),
        ),
        ..Counting::default()
    };
    let client = t.client();
    let requests: Vec<_> = (0..10).map(|i| client.get(&format!("s/{i}"))).collect();
    let n = client
        .batch()
        .concurrency(3)
        .unwrap()
        .fetch_unordered(requests)
        .count()
        .await;
    assert_eq!(n, 10);
    assert_eq!(t.max.load(Ordering::SeqCst), 3);
}

#[test]
fn zero_concurrency_is_a_config_error() {
    let client = Client::new().unwrap();
    let err = client.batch().concurrency(0).unwrap_err();
    assert_eq!(err.kind(), Kind::Config);
    assert!(err.to_string().contains("at least 1"), "{err}");
}
