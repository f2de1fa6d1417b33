//! The blocking client's flows, from plain threads: requests, bodies as
//! `io::Read`, batches, pagination, downloads with resume; and a clear error,
//! not a deadlock, when it is called inside an async runtime.

use std::io::Read;
use std::sync::mpsc;
use std::time::Duration;

use httpmock::prelude::*;
use palisade::blocking::Client;
use palisade::{Kind, Pagination};
use palisade_chaos::{Behavior, FlakyServer, Script};
use serde_json::json;

/// A FlakyServer on a runtime of its own, so the test thread stays outside
/// any runtime.
fn flaky() -> (tokio::runtime::Runtime, FlakyServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(FlakyServer::start()).unwrap();
    (rt, server)
}

#[test]
fn requests_bodies_and_json() {
    let server = MockServer::start();
    server.mock(|when, then| {
        when.method(GET).path("/v1/items/1");
        then.status(200).json_body(json!({"id": 1, "name": "one"}));
    });
    let created = server.mock(|when, then| {
        when.method(POST)
            .path("/v1/items")
            .header("content-type", "application/json")
            .json_body(json!({"name": "two"}));
        then.status(201).body("created");
    });
    server.mock(|when, then| {
        when.path("/v1/missing");
        then.status(404);
    });
    let client = Client::builder()
        .base_url(&server.url("/v1"))
        .build()
        .unwrap();

    let res = client.get("items/1").send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.url().path(), "/v1/items/1");
    let v: serde_json::Value = res.json().unwrap();
    assert_eq!(v["name"], "one");

    let v: serde_json::Value = client.get("items/1").send_json().unwrap();
    assert_eq!(v["id"], 1);

    let res = client
        .post("items")
        .json(&json!({"name": "two"}))
        .send()
        .unwrap();
    assert_eq!(
        (res.status().as_u16(), res.text().unwrap()),
        (201, "created".to_owned())
    );
    created.assert();

    let err = client
        .get("missing")
        .send()
        .unwrap()
        .error_for_status()
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    let err = client
        .get("missing")
        .send_json::<serde_json::Value>()
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Status);
}

#[test]
fn a_response_body_reads_through_io_read_and_copy_to() {
    const N: u64 = 3 * 1024 * 1024 + 17;
    let (_rt, server) = flaky();
    server.script("/big", Script::always(Behavior::large(N)));
    let client = Client::new().unwrap();

    let mut res = client.get(&server.url("/big")).send().unwrap();
    assert_eq!(res.content_length(), Some(N));
    let mut head = [0u8; 10];
    res.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"..........");
    let rest = std::io::copy(&mut res, &mut std::io::sink()).unwrap();
    assert_eq!(rest + 10, N);

    let mut res = client.get(&server.url("/big")).send().unwrap();
    let mut out = Vec::new();
    assert_eq!(res.copy_to(&mut out).unwrap(), N);
    assert_eq!(out.len() as u64, N);
}

#[test]
fn batches_keep_order_and_report_failures() {
    let server = MockServer::start();
    for i in 0..6 {
        server.mock(|when, then| {
            when.path(format!("/n/{i}"));
            then.status(if i == 4 { 404 } else { 200 })
                .body(i.to_string());
        });
    }
    let client = Client::builder()
        .base_url(&server.base_url())
        .build()
        .unwrap();
    let results = client.get_many((0..6).map(|i| format!("n/{i}"))).unwrap();
    let summary: Vec<_> = results
        .iter()
        .map(|r| match r {
            Ok(f) => f.text().unwrap().to_owned(),
            Err(e) => format!("error {}", e.status().unwrap().as_u16()),
        })
        .collect();
    assert_eq!(summary, ["0", "1", "2", "3", "error 404", "5"]);

    let all = client
        .batch()
        .concurrency(2)
        .unwrap()
        .try_get_all(["n/0", "n/1"])
        .unwrap();
    assert_eq!(all.len(), 2);
    let err = client.try_get_all(["n/3", "n/4", "n/5"]).unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));

    let requests = (0..3)
        .map(|i| client.get(&format!("n/{i}")))
        .collect::<Vec<_>>();
    let mut indices: Vec<usize> = client.fetch_unordered(requests).map(|(i, _)| i).collect();
    indices.sort_unstable();
    assert_eq!(indices, [0, 1, 2]);
}

#[test]
fn pagination_is_an_iterator() {
    let server = MockServer::start();
    let next = server.url("/list?page=2");
    server.mock(|when, then| {
        when.path("/list").query_param_missing("page");
        then.status(200)
            .header("link", format!("<{next}>; rel=\"next\""))
            .json_body(json!([1, 2]));
    });
    let second = server.mock(|when, then| {
        when.path("/list").query_param("page", "2");
        then.status(200).json_body(json!([3]));
    });
    let client = Client::new().unwrap();
    let mut items = client.paginate::<u32>(client.get(&server.url("/list")), Pagination::link());
    assert_eq!(items.next().unwrap().unwrap(), 1);
    assert_eq!(second.calls(), 0, "the next page waits for the iterator");
    let rest: Vec<u32> = items.map(Result::unwrap).collect();
    assert_eq!(rest, [2, 3]);
    assert_eq!(second.calls(), 1);
}

#[test]
fn downloads_resume_to_a_writer_and_write_files() {
    const N: u64 = 200 * 1024;
    const K: u64 = 50 * 1024;
    let (_rt, server) = flaky();
    server.script(
        "/resumable",
        Script::new()
            .then(
                Behavior::truncated(N, K)
                    .with_header("accept-ranges", "bytes")
                    .with_header("last-modified", "Tue, 15 Nov 1994 08:12:31 GMT"),
            )
            .then(
                Behavior::status(206)
                    .with_body(vec![b'.'; (N - K) as usize])
                    .with_header("content-range", format!("bytes {K}-{}/{N}", N - 1)),
            ),
    );
    server.script("/plain", Script::always(Behavior::large(N)));
    let client = Client::new().unwrap();

    let mut out = Vec::new();
    let done = client
        .download(&server.url("/resumable"))
        .to_writer(&mut out)
        .unwrap();
    assert_eq!((out.len() as u64, done.resumes()), (N, 1));
    assert!(out.iter().all(|b| *b == b'.'));

    let path = std::env::temp_dir().join(format!("palisade-blocking-{}.bin", std::process::id()));
    let done = client
        .download(&server.url("/plain"))
        .to_file(&path)
        .unwrap();
    assert_eq!(done.bytes(), N);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), N);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn many_threads_share_one_client() {
    let (_rt, server) = flaky();
    let client = Client::new().unwrap();
    let url = server.url("/shared");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..5 {
                    assert_eq!(client.get(&url).send().unwrap().status(), 200);
                }
            });
        }
    });
    assert_eq!(server.stats("/shared").attempts, 40);
}

/// Runs `f` on its own thread and fails the test if it does not return in
/// time: a deadlock must show up as a failure, not a hung suite.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("returned instead of blocking forever")
}

#[test]
fn inside_an_async_runtime_it_is_a_clear_error_not_a_deadlock() {
    bounded(|| {
        // The server lives on the same single-threaded runtime the call is
        // made from: blocking there would deadlock.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = Client::new().unwrap();
        let c = client.clone();
        rt.block_on(async move {
            let server = FlakyServer::start().await.unwrap();
            let url = server.url("/inside");
            let err = c.get(&url).send().unwrap_err();
            assert_eq!(err.kind(), Kind::InvalidRequest);
            assert!(err.to_string().contains("async runtime"), "{err}");
            assert!(c.get_many([url.as_str()]).is_err());
            let mut pages = c.paginate::<u32>(c.get(&url), Pagination::link());
            assert!(pages.next().unwrap().is_err());
            assert!(pages.next().is_none(), "the iterator ends after the error");
            let unordered: Vec<_> = c.fetch_unordered(vec![c.get(&url)]).collect();
            assert_eq!(unordered.len(), 1, "one error, then the end");
            assert!(unordered[0].1.is_err());
            assert_eq!(server.stats("/inside").attempts, 0, "nothing was sent");
            // Dropping the last handle inside a runtime must not panic.
            drop(pages);
            drop(c);
        });
        drop(client);
        // Also inside spawn_blocking, which carries the runtime's context.
        let client = Client::new().unwrap();
        let multi = tokio::runtime::Runtime::new().unwrap();
        let err = multi
            .block_on(async move {
                tokio::task::spawn_blocking(move || {
                    client.get("http://127.0.0.1:9/").send().map(|_| ())
                })
                .await
            })
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), Kind::InvalidRequest);
    });
}

#[test]
fn the_last_handle_may_drop_inside_a_runtime() {
    bounded(|| {
        let client = Client::new().unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move { drop(client) });
    });
}

#[test]
fn zero_worker_threads_is_a_config_error() {
    let err = Client::builder().worker_threads(0).build().unwrap_err();
    assert_eq!(err.kind(), Kind::Config);
}
