//! Bounded bodies (issue 24): the cap on buffered reads, the decompression
//! ratio bound, and streams left uncapped unless asked, against httpmock,
//! `FlakyServer` and stub transports whose lengths lie.

use std::convert::Infallible;
use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http_body_util::StreamBody;
use httpmock::prelude::*;
use palisade::limit::{DEFAULT_RATIO_GRACE, ResponseExt as _};
use palisade::{Client, Kind, Pagination, StackConfig};
use palisade_chaos::{Behavior, FlakyServer, Script};
use serde_json::Value;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// `len` zero bytes, gzipped: about 1000:1.
fn gzip_bomb(len: usize) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len());
        enc.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    enc.finish().unwrap()
}

fn client(base: &str) -> palisade::ClientBuilder {
    Client::builder()
        .base_url(base)
        .stack(|_| StackConfig::bare())
}

/// A client whose transport answers every request with `headers` and a
/// body of `chunks` (possibly endless), whatever its headers claim.
fn stub<S>(headers: &'static [(&'static str, &'static str)], chunks: S) -> palisade::ClientBuilder
where
    S: Fn() -> Box<dyn Iterator<Item = Bytes> + Send + Sync> + Clone + Send + Sync + 'static,
{
    Client::builder()
        .base_url("http://stub.test/")
        .stack(|_| StackConfig::bare())
        .transport(tower::service_fn(
            move |_req: http::Request<palisade::Body>| {
                let chunks = chunks.clone();
                async move {
                    let body = StreamBody::new(stream::iter(
                        chunks().map(|c| Ok::<_, Infallible>(http_body::Frame::data(c))),
                    ));
                    let mut res = http::Response::new(body);
                    for (k, v) in headers {
                        res.headers_mut().insert(*k, v.parse().unwrap());
                    }
                    Ok::<_, Infallible>(res)
                }
            },
        ))
}

#[tokio::test]
async fn a_content_length_over_the_cap_fails_at_once_and_is_not_retried() {
    let server = MockServer::start_async().await;
    let big = server
        .mock_async(|when, then| {
            when.path("/big");
            then.status(200).body(vec![b'x'; 5000]);
        })
        .await;
    let client = Client::builder()
        .base_url(&server.base_url())
        .max_body(1000)
        .build()
        .unwrap();
    let err = client.get("big").send_json::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    assert_eq!(err.kind().as_str(), "body_too_large");
    let too = err.body_too_large().expect("the limit is named");
    assert_eq!(too.limit(), 1000);
    assert_eq!(too.content_length(), Some(5000));
    assert_eq!(too.read(), 0, "refused before any byte was read");
    assert!(err.to_string().contains("1000"), "{err}");
    assert!(err.url().is_some());
    // Refused after the stack had its answer: one attempt, no retry.
    assert_eq!(big.calls_async().await, 1);
}

#[tokio::test]
async fn a_content_length_over_the_cap_from_a_real_server_is_refused_unread() {
    let server = FlakyServer::start().await.unwrap();
    // Announces 1 GiB, would send 10 bytes and close: never read.
    server.script("/huge", Script::always(Behavior::truncated(1 << 30, 10)));
    let client = client(&server.url("/")).build().unwrap();
    let err = client.get("huge").send_json::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    assert_eq!(
        err.body_too_large().unwrap().content_length(),
        Some(1 << 30)
    );
    assert_eq!(server.stats("/huge").attempts, 1);
}

#[tokio::test]
async fn an_endless_body_fails_once_past_the_cap_with_memory_bounded() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/endless", Script::always(Behavior::endless()));
    let cap = 1 << 20;
    let client = client(&server.url("/")).max_body(cap).build().unwrap();
    let err = client
        .get("endless")
        .send_json::<Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    let too = err.body_too_large().unwrap();
    assert_eq!(too.content_length(), None);
    assert!(too.read() > cap, "{too}");
    // Refused on the first chunk past the cap (64 KiB chunks).
    assert!(too.read() <= cap + (64 << 10), "{too}");
    assert_eq!(server.stats("/endless").attempts, 1);
}

#[tokio::test]
async fn a_length_that_lies_is_enforced_while_reading() {
    // Claims 10 bytes, sends 10 000 (a transport that does not frame by
    // Content-Length).
    let client = stub(&[("content-length", "10")], || {
        Box::new(std::iter::repeat_n(Bytes::from(vec![b'1'; 1000]), 10))
    })
    .max_body(100)
    .build()
    .unwrap();
    let err = client.get("x").send_json::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    assert_eq!(err.body_too_large().unwrap().read(), 1000);
}

#[tokio::test]
async fn compression_is_negotiated_and_decoded_and_the_cap_counts_decoded_bytes() {
    let server = MockServer::start_async().await;
    let doc = serde_json::to_vec(&serde_json::json!({"items": vec![1; 2000]})).unwrap();
    let negotiated = server
        .mock_async(|when, then| {
            when.path("/doc")
                .header("accept-encoding", "gzip, br, zstd, deflate");
            then.status(200)
                .header("content-encoding", "gzip")
                .body(gzip(&doc));
        })
        .await;
    let client = client(&server.base_url()).build().unwrap();
    let v: Value = client.get("doc").send_json().await.unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2000);
    negotiated.assert_async().await;

    // The cap is of the decoded bytes: 4 kB on the wire, 4 MB decoded.
    let (wire, decoded) = (gzip(&doc).len() as u64, doc.len() as u64);
    assert!(wire < 500 && decoded > 4000, "{wire} {decoded}");
    let err = client
        .get("doc")
        .max_body(1000)
        .send_json::<Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    let too = err.body_too_large().unwrap();
    assert!(!too.is_decompression_bomb(), "{too}");
    assert!(too.read() > 1000, "{too}");
}

#[tokio::test]
async fn a_callers_accept_encoding_gets_the_body_as_it_came() {
    let server = MockServer::start_async().await;
    let packed = gzip(b"hello");
    let body = packed.clone();
    server
        .mock_async(move |when, then| {
            when.path("/raw").header("accept-encoding", "gzip");
            then.status(200)
                .header("content-encoding", "gzip")
                .body(body);
        })
        .await;
    let client = client(&server.base_url()).build().unwrap();
    let res = client
        .get("raw")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.capped_bytes().await.unwrap(), packed);
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_after_the_grace_in_flat_memory() {
    let server = FlakyServer::start().await.unwrap();
    // 64 MiB of zeros in about 64 kB: well over 100:1.
    let bomb = gzip_bomb(64 << 20);
    let wire = bomb.len() as u64;
    server.script("/bomb", Script::always(Behavior::encoded("gzip", bomb)));
    // A cap far above the bomb: only the ratio can stop it.
    let client = client(&server.url("/")).max_body(u64::MAX).build().unwrap();
    let err = client.get("bomb").send_json::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    let too = err.body_too_large().unwrap();
    assert!(too.is_decompression_bomb(), "{too}");
    assert_eq!(too.max_ratio(), Some(100));
    assert!(err.to_string().contains("decompression bomb"), "{err}");
    // Refused as soon as it passed the 1 MiB grace: at most one decoder
    // buffer (4 KiB) later, having read a fraction of the wire bytes.
    assert!(too.read() > DEFAULT_RATIO_GRACE, "{too}");
    assert!(too.read() <= DEFAULT_RATIO_GRACE + (64 << 10), "{too}");
    assert!(too.wire_bytes().unwrap() < wire, "{too}");
    assert_eq!(server.stats("/bomb").attempts, 1, "never retried");

    // A chunk loop (uncapped streaming) meets the same bound.
    let mut res = client.get("bomb").send().await.unwrap();
    let mut seen = 0u64;
    let err = loop {
        match res.chunk().await {
            Ok(Some(c)) => seen += c.len() as u64,
            Ok(None) => panic!("the bomb was decoded whole ({seen} bytes)"),
            Err(e) => break e,
        }
    };
    assert!(seen <= DEFAULT_RATIO_GRACE + (64 << 10), "{seen}");
    // reqwest's error keeps ours in its source chain.
    let too = palisade::core::error::find::<palisade::BodyTooLarge>(&err).expect("our cause");
    assert!(too.is_decompression_bomb(), "{too}");
}

#[tokio::test]
async fn a_compressible_answer_within_the_grace_is_not_a_bomb() {
    let server = FlakyServer::start().await.unwrap();
    // 512 KiB of zeros at about 1000:1: under the 1 MiB grace.
    let zeros = gzip_bomb(512 << 10);
    server.script("/zeros", Script::always(Behavior::encoded("gzip", zeros)));
    let client = client(&server.url("/")).build().unwrap();
    let body = client
        .get("zeros")
        .send()
        .await
        .unwrap()
        .capped_bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 512 << 10);
}

#[tokio::test]
async fn the_per_request_cap_overrides_the_clients_for_send_json_and_send() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/page");
            then.status(200).body(format!("[{}1]", "1,".repeat(999)));
        })
        .await;
    let client = client(&server.base_url()).max_body(100).build().unwrap();
    let err = client.get("page").send().await.unwrap().capped_text().await;
    assert_eq!(err.unwrap_err().kind(), Kind::BodyTooLarge);
    let v: Vec<u8> = client
        .get("page")
        .max_body(10_000)
        .send_json()
        .await
        .unwrap();
    assert_eq!(v.len(), 1000);
    let res = client.get("page").max_body(10_000).send().await.unwrap();
    assert_eq!(palisade::limit::max_body(&res), 10_000);
    let v: Vec<u8> = res.capped_json().await.unwrap();
    assert_eq!(v.len(), 1000);
}

#[tokio::test]
async fn pages_and_batch_entries_are_capped() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/items");
            then.status(200)
                .body(format!("[{}]", "1,".repeat(999) + "1"));
        })
        .await;
    let client = client(&server.base_url()).max_body(500).build().unwrap();
    use futures_util::StreamExt as _;
    let first = client
        .paginate::<Value>(client.get("items"), Pagination::link())
        .next()
        .await
        .unwrap();
    let err = first.unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    assert!(err.to_string().contains("page 1"), "{err}");

    let results = client.get_many(["items"]).await;
    let err = results.into_iter().next().unwrap().unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
}

#[test]
fn the_blocking_client_is_capped() {
    let server = MockServer::start();
    server.mock(|when, then| {
        when.path("/b");
        then.status(200).body(vec![b'x'; 4000]);
    });
    let client = palisade::blocking::Client::builder()
        .base_url(&server.base_url())
        .max_body(1000)
        .build()
        .unwrap();
    for read in [
        |r: palisade::blocking::Response| r.bytes().map(|_| ()),
        |r: palisade::blocking::Response| r.text().map(|_| ()),
        |r: palisade::blocking::Response| r.json::<Value>().map(|_| ()),
    ] {
        let err = read(client.get("b").send().unwrap()).unwrap_err();
        assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    }
    let body = client
        .get("b")
        .max_body(4000)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(body.len(), 4000);
}

#[tokio::test]
async fn streams_are_uncapped_unless_asked() {
    let server = FlakyServer::start().await.unwrap();
    server.script("/file", Script::always(Behavior::large(3 << 20)));
    let free = client(&server.url("/")).max_body(1 << 20).build().unwrap();
    let mut out = Vec::new();
    let done = free.download("file").to_writer(&mut out).await.unwrap();
    assert_eq!(done.bytes(), 3 << 20);

    let capped = client(&server.url("/"))
        .max_body(1 << 20)
        .cap_streams(true)
        .build()
        .unwrap();
    let mut out = Vec::new();
    let err = capped
        .download("file")
        .resume(false)
        .to_writer(&mut out)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    assert!(out.len() as u64 <= 1 << 20, "{}", out.len());
}

#[tokio::test]
async fn odd_limits_are_config_errors_or_work() {
    let err = Client::builder()
        .max_decompression_ratio(0)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Config, "{err:?}");
    assert!(err.to_string().contains("max_decompression_ratio"), "{err}");

    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/empty");
            then.status(204);
        })
        .await;
    server
        .mock_async(|when, then| {
            when.path("/one");
            then.status(200).body("1");
        })
        .await;
    let zero = client(&server.base_url())
        .max_body(0)
        .max_decompression_ratio(1)
        .decompression_ratio_after(0)
        .build()
        .unwrap();
    let res = zero.get("empty").send().await.unwrap();
    assert!(res.capped_bytes().await.unwrap().is_empty());
    let err = zero.get("one").send_json::<Value>().await.unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge);
    // A ratio of 1 refuses no identity body.
    let v: u8 = zero
        .get("one")
        .max_body(u64::MAX)
        .send_json()
        .await
        .unwrap();
    assert_eq!(v, 1);
}

#[tokio::test(start_paused = true)]
async fn a_stub_that_never_ends_is_refused_on_the_paused_clock() {
    // No Content-Length, no end: the read stops at the cap.
    let client = stub(&[], || {
        Box::new(std::iter::repeat(Bytes::from_static(&[b'7'; 4096])))
    })
    .max_body(10_000)
    .build()
    .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), client.get("x").send_json::<Value>())
        .await
        .expect("refused, not hung")
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    assert_eq!(err.body_too_large().unwrap().read(), 12_288);
}

#[tokio::test]
async fn an_oversized_body_is_neither_retried_nor_a_breaker_failure() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/bomb",
        Script::always(Behavior::encoded("gzip", gzip_bomb(8 << 20))),
    );
    server.script("/endless", Script::always(Behavior::endless()));
    // One failure would open the circuit; retries on anything retryable.
    let breaker = palisade::breaker::BreakerLayer::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let client = Client::builder()
        .base_url(&server.url("/"))
        .max_body(1 << 20)
        .stack(|s| s.breaker(Some(breaker)))
        .build()
        .unwrap();
    for _ in 0..3 {
        for path in ["bomb", "endless"] {
            let err = client.get(path).send_json::<Value>().await.unwrap_err();
            // Were it a breaker failure, the next call would be CircuitOpen.
            assert_eq!(err.kind(), Kind::BodyTooLarge, "{path}: {err:?}");
        }
    }
    assert_eq!(server.stats("/bomb").attempts, 3, "one attempt per call");
    assert_eq!(server.stats("/endless").attempts, 3, "one attempt per call");
}
