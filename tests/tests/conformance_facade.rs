//! The facade against servers nobody here wrote: httpbin (PyPI) and nginx
//! (Debian), started on free loopback ports (`palisade_tests::servers`).
//!
//! Two origins on one server: `127.0.0.1:<port>` and `localhost:<port>` differ
//! by host, so a redirect or a link from one to the other crosses origins
//! while the same server sees, and echoes or logs, what arrived.
//!
//! These run on the real clock against real sockets and assert outcomes
//! (what the server saw, error kinds), never durations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use palisade::{Auth, Client, Kind, Pagination, PoolConfig, Token, TokenFuture, TokenProvider};
use palisade_tests::servers::{Httpbin, Nginx};
use serde_json::Value;

/// The same server under its other host name: another origin.
fn other_origin(url: &str) -> String {
    url.replacen("127.0.0.1", "localhost", 1)
}

fn echoed_headers(v: &Value) -> &serde_json::Map<String, Value> {
    v["headers"].as_object().expect("httpbin echoes headers")
}

fn has_header(v: &Value, name: &str) -> bool {
    echoed_headers(v)
        .keys()
        .any(|k| k.eq_ignore_ascii_case(name))
}

fn client_for(base: &str) -> palisade::ClientBuilder {
    Client::builder().base_url(base)
}

#[tokio::test]
async fn no_credential_follows_a_cross_origin_redirect_and_same_origin_keeps_them() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/"))
        .default_header("Authorization", "Bearer default-secret")
        .default_header("X-Trace-Token", "trace-me")
        .keep_across_origins("x-trace-token")
        .build()
        .unwrap();
    let elsewhere = other_origin(&bin.url("/headers"));
    let res = client
        .get("redirect-to")
        .query(&[("url", elsewhere.as_str())])
        .header("X-Api-Key", "key-secret")
        .header("PRIVATE-TOKEN", "gitlab-secret")
        .header("X-Custom-Session", "session-secret")
        .secret_header("X-Signed", "signed-secret")
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert!(
        res.url().as_str().starts_with("http://localhost:"),
        "{}",
        res.url()
    );
    let v: Value = res.json().await.unwrap();
    for name in [
        "authorization",
        "x-api-key",
        "private-token",
        "x-custom-session",
        "x-signed",
    ] {
        assert!(!has_header(&v, name), "{name} crossed origins: {v}");
    }
    assert!(has_header(&v, "accept"), "plain headers still go: {v}");
    assert!(has_header(&v, "x-trace-token"), "kept by choice: {v}");

    // The same redirect on the same origin keeps every header.
    let res = client
        .get("redirect-to")
        .query(&[("url", "/headers")])
        .header("X-Api-Key", "key-secret")
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert!(has_header(&v, "authorization"), "{v}");
    assert!(has_header(&v, "x-api-key"), "{v}");
}

#[tokio::test]
async fn configured_auth_stays_on_the_base_origin_through_absolute_redirects() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/"))
        .bearer_token("tok-secret")
        .build()
        .unwrap();
    // httpbin's own absolute redirects stay on its origin: auth goes along.
    let v: Value = client
        .get("redirect-to")
        .query(&[("url", bin.url("/bearer").as_str())])
        .send_json()
        .await
        .unwrap();
    assert_eq!(v["authenticated"], true, "{v}");
    // An absolute URL on another origin never gets it.
    let err = client
        .get(&other_origin(&bin.url("/bearer")))
        .send()
        .await
        .unwrap();
    assert_eq!(err.status(), 401, "the bearer token went to another origin");
}

#[tokio::test]
async fn basic_auth_set_as_a_header_is_sent_on_its_origin() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/")).build().unwrap();
    // user:passwd
    let v: Value = client
        .get("basic-auth/user/passwd")
        .header("Authorization", "Basic dXNlcjpwYXNzd2Q=")
        .send_json()
        .await
        .unwrap();
    assert_eq!(v["authenticated"], true);
}

#[tokio::test]
async fn redirects_never_corrupt_a_write() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/")).build().unwrap();
    let send = |method: http::Method, status: u16| {
        client
            .request(method, "redirect-to")
            .query(&[("url", "/anything"), ("status_code", &status.to_string())])
            .header("Content-Type", "text/plain")
            .body("payload")
    };
    // (method, redirect status) -> (method that arrives, body that arrives)
    let cases = [
        (http::Method::PUT, 302, "PUT", "payload"),
        (http::Method::PUT, 301, "PUT", "payload"),
        (http::Method::PATCH, 307, "PATCH", "payload"),
        (http::Method::POST, 307, "POST", "payload"),
        (http::Method::POST, 308, "POST", "payload"),
        (http::Method::POST, 302, "GET", ""),
        (http::Method::POST, 301, "GET", ""),
        (http::Method::PUT, 303, "GET", ""),
    ];
    for (method, status, arrives, body) in cases {
        let v: Value = send(method.clone(), status)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["method"], arrives, "{method} after {status}: {v}");
        assert_eq!(v["data"], body, "{method} after {status}: {v}");
        if arrives == "GET" {
            assert!(
                !has_header(&v, "content-type"),
                "a body header went without its body: {v}"
            );
        }
    }
}

/// A streamed body larger than the 64 KiB replay cap.
fn big_stream() -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::iter((0..10).map(|_| Ok(Bytes::from(vec![b'x'; 16 * 1024]))))
}

#[tokio::test]
async fn a_307_of_a_stream_past_its_cap_goes_back_to_the_caller_not_resent_empty() {
    let nginx = Nginx::config()
        .server(
            "location = /moved { return 307 /target; }\n\
             location = /target { return 200 'ok'; }",
        )
        .start();
    let client = client_for(&nginx.url("/")).build().unwrap();
    let res = client
        .put("moved")
        .body_stream(big_stream())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        307,
        "the redirect is the caller's when the body cannot be replayed"
    );
    let log = nginx.access_log();
    assert!(
        !log.contains("/target"),
        "a PUT reached the new location without its body: {log}"
    );
    // A small stream, under the cap, is replayed whole.
    let res = client
        .put("moved")
        .body_stream(futures_util::stream::iter([Ok::<_, std::io::Error>(
            Bytes::from_static(b"small"),
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.url().path().ends_with("/target"));
}

/// Hands out `t1`, then `t2`, ...: the server accepts only `t2`.
struct Counting(Arc<AtomicU32>);

impl TokenProvider for Counting {
    fn fetch(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Token::bearer(&format!("t{n}"))?)
        })
    }
}

#[tokio::test]
async fn a_401_is_replayed_once_after_a_refresh_only_while_the_body_can_be_replayed() {
    let nginx = Nginx::config()
        .server(
            "location = /upload {\n\
               if ($http_authorization != 'Bearer t2') { return 401; }\n\
               return 200 'stored';\n\
             }",
        )
        .start();
    let fetched = Arc::new(AtomicU32::new(0));
    let client = client_for(&nginx.url("/"))
        .auth(Auth::provider(Counting(fetched.clone()), Duration::ZERO))
        .build()
        .unwrap();
    // A buffered body: refreshed once, replayed, stored.
    let res = client.put("upload").body("hello").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(fetched.load(Ordering::SeqCst), 2);
    let log = nginx.access_log();
    assert!(log.contains("auth=Bearer t2 key=- ae="), "{log}");
    assert!(log.contains("len=5"), "the replay carried the body: {log}");

    // A stream past its cap, with a token the server rejects: the 401 goes
    // back, and nothing is sent a second time, with an empty body or not.
    let fetched = Arc::new(AtomicU32::new(10));
    let client = client_for(&nginx.url("/"))
        .auth(Auth::provider(Counting(fetched.clone()), Duration::ZERO))
        .build()
        .unwrap();
    let before = nginx.access_log().lines().count();
    let res = client
        .put("upload")
        .body_stream(big_stream())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "no replay of a body that is gone");
    let log = nginx.access_log();
    assert_eq!(log.lines().count(), before + 1, "sent once: {log}");
    assert!(!log.contains("Bearer t12"), "{log}");
}

#[tokio::test]
async fn paginate_sends_no_credential_to_a_next_link_on_another_origin() {
    let nginx = Nginx::config()
        .server(
            "location = /page1.json {\n\
               add_header Link '<http://localhost:$server_port/page2.json>; rel=\"next\"';\n\
             }",
        )
        .start();
    nginx.write_file("/page1.json", b"[{\"n\":1}]");
    nginx.write_file("/page2.json", b"[{\"n\":2}]");
    let client = client_for(&nginx.url("/"))
        .default_header("X-Api-Key", "default-key")
        .build()
        .unwrap();
    let request = client
        .get("page1.json")
        .header("Authorization", "Bearer page-secret");
    let items: Vec<Value> = client
        .paginate::<Value>(request, Pagination::link())
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(items.len(), 2, "both pages were read");
    let log = nginx.access_log();
    let (first, next): (Vec<&str>, Vec<&str>) =
        log.lines().partition(|l| l.starts_with("127.0.0.1 "));
    assert!(
        first[0].contains("auth=Bearer page-secret key=default-key"),
        "{log}"
    );
    assert_eq!(next.len(), 1, "{log}");
    assert!(
        next[0].starts_with("localhost ") && next[0].contains("auth=- key=-"),
        "a credential crossed to the next link's origin: {log}"
    );
}

#[tokio::test]
async fn one_deadline_covers_every_redirect_hop() {
    // Every hop takes 1 s and redirects again: a 2.5 s deadline ends during
    // the third hop, instead of being set again on each.
    let nginx = Nginx::config()
        .echo()
        .server(
            "location = /slow {\n\
               echo_sleep 1;\n\
               add_header Location /slow always;\n\
               echo_status 302;\n\
               echo '';\n\
             }",
        )
        .start();
    let client = client_for(&nginx.url("/"))
        .max_redirects(5)
        .stack(|s| s.deadline(Some(Duration::from_millis(2500))).retry(None))
        .build()
        .unwrap();
    let err = client.get("slow").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded, "{err}");
    let hops = nginx.access_log().lines().count();
    assert!(hops <= 3, "{hops} hops ran under a 2.5 s deadline");
}

#[tokio::test]
async fn a_user_agent_is_sent_by_default_and_yields_to_the_users() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/")).build().unwrap();
    let v: Value = client.get("user-agent").send_json().await.unwrap();
    assert_eq!(v["user-agent"], palisade::DEFAULT_USER_AGENT);
    let v: Value = client
        .get("user-agent")
        .header("User-Agent", "mine/1")
        .send_json()
        .await
        .unwrap();
    assert_eq!(v["user-agent"], "mine/1");
    let client = client_for(&bin.url("/"))
        .default_header("User-Agent", "fleet/2")
        .build()
        .unwrap();
    let v: Value = client.get("user-agent").send_json().await.unwrap();
    assert_eq!(v["user-agent"], "fleet/2");
}

#[tokio::test]
async fn compressed_answers_are_negotiated_and_decoded() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/")).build().unwrap();
    for (path, flag) in [
        ("gzip", "gzipped"),
        ("deflate", "deflated"),
        ("brotli", "brotli"),
    ] {
        let v: Value = client.get(path).send_json().await.unwrap();
        assert_eq!(v[flag], true, "{path}: {v}");
    }
}

fn gzip(chunks: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for c in chunks {
        enc.write_all(&c).unwrap();
    }
    enc.finish().unwrap()
}

#[tokio::test]
async fn a_gzip_bomb_from_nginx_is_refused_early_and_real_gzip_is_decoded() {
    use palisade::ResponseExt as _;
    use palisade::limit::DEFAULT_RATIO_GRACE;
    // gzip_static serves `<file>.gz` as it is, with Content-Encoding: gzip,
    // to a client that accepts gzip: the server's framing, not ours.
    let nginx = Nginx::config()
        .server("location /static/ { gzip_static on; default_type application/json; }")
        .start();
    // 256 MiB of zeros in about 250 kB: about 1000:1.
    let bomb = gzip((0..256).map(|_| vec![0u8; 1 << 20]));
    nginx.write_file("/static/bomb.json", b"[]");
    nginx.write_file("/static/bomb.json.gz", &bomb);
    // A real JSON document, 20:1 or so: decoded whole.
    let doc = serde_json::to_vec(&(0..50_000).map(|i| i % 7).collect::<Vec<u32>>()).unwrap();
    nginx.write_file("/static/doc.json", b"[]");
    nginx.write_file("/static/doc.json.gz", &gzip(std::iter::once(doc.clone())));

    let client = client_for(&nginx.url("/")).build().unwrap();
    let v: Vec<u32> = client.get("static/doc.json").send_json().await.unwrap();
    assert_eq!(v.len(), 50_000);

    let err = client
        .get("static/bomb.json")
        .send_json::<Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    let too = err.body_too_large().unwrap();
    assert!(too.is_decompression_bomb(), "{too}");
    // Refused just past the 1 MiB grace, a few kB into the wire bytes.
    assert!(too.read() <= DEFAULT_RATIO_GRACE + (64 << 10), "{too}");
    assert!(too.wire_bytes().unwrap() < bomb.len() as u64 / 10, "{too}");
    let log = nginx.access_log();
    assert!(log.contains("ae=gzip, br, zstd, deflate"), "{log}");

    // A caller that asks for gzip itself gets the file's bytes, capped as
    // they are.
    let res = client
        .get("static/doc.json")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    let raw = res.capped_bytes().await.unwrap();
    assert_eq!(raw, gzip(std::iter::once(doc)));
}

#[tokio::test]
async fn a_download_asks_for_identity_so_its_bytes_are_the_files() {
    let nginx = Nginx::config()
        .http("gzip on; gzip_min_length 1; gzip_types text/plain application/octet-stream;")
        .start();
    let file: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 251).to_le_bytes())
        .collect();
    nginx.write_file("/big.bin", &file);
    let client = client_for(&nginx.url("/")).build().unwrap();
    let mut out = Vec::new();
    let done = client
        .download("big.bin")
        .to_writer(&mut out)
        .await
        .unwrap();
    assert_eq!(done.bytes(), file.len() as u64);
    assert!(out == file, "the download is the file, byte for byte");
    assert!(
        nginx.access_log().contains("ae=identity"),
        "{}",
        nginx.access_log()
    );
    // An ordinary GET of the same file is compressed on the wire and
    // decoded by the client.
    let body = client
        .get("big.bin")
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body == file);
    let log = nginx.access_log();
    assert!(
        log.lines()
            .any(|l| !l.contains("ae=identity") && l.contains("gzip")),
        "{log}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_fails_once_as_certificate_and_a_trusted_one_speaks_h2() {
    let nginx = Nginx::config().http2().start();
    nginx.write_file("/ok.txt", b"ok");
    let client = Client::builder().build().unwrap();
    let err = client
        .get(&nginx.tls_url("/ok.txt"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Certificate, "{err:?}");
    assert!(err.attempts() <= 1, "retried {} times", err.attempts());
    let breaker = client.describe().has("breaker");
    assert!(breaker);

    let ca = nginx.ca().unwrap().ca_pem.clone();
    let client = Client::builder()
        .stack(|s| {
            s.pool(
                PoolConfig::default()
                    .add_root_certificate(ca.as_bytes())
                    .unwrap(),
            )
        })
        .build()
        .unwrap();
    let res = client.get(&nginx.tls_url("/ok.txt")).send().await.unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn a_body_cut_by_the_deadline_is_deadline_exceeded() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/"))
        .stack(|s| s.deadline(Some(Duration::from_secs(2))))
        .build()
        .unwrap();
    // 10 bytes over 8 s: the head comes at once, the body outlives 2 s.
    let err = client
        .get("drip")
        .query(&[("duration", "8"), ("numbytes", "10"), ("delay", "0")])
        .send_json::<Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded, "{err:?}");
    assert!(
        err.to_string().contains("body"),
        "the message names the phase: {err}"
    );
}

#[tokio::test]
async fn a_deadline_alone_clamps_the_default_attempt_timeout() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/"))
        .stack(|s| s.deadline(Some(Duration::from_secs(2))))
        .build()
        .expect("a deadline below the default attempt timeout is not an error");
    let err = client.get("delay/4").send().await.unwrap_err();
    assert_eq!(err.kind(), Kind::DeadlineExceeded, "{err}");
    // Two explicit settings that contradict each other still are.
    let err = client_for(&bin.url("/"))
        .stack(|s| {
            s.deadline(Some(Duration::from_secs(2)))
                .attempt_timeout(Some(Duration::from_secs(5)))
        })
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Config);
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/"))
        .stack(|s| {
            s.retry(Some(
                palisade::retry::RetryLayer::builder()
                    .max_attempts(3)
                    .base_delay(Duration::from_millis(10))
                    .build_layer()
                    .unwrap(),
            ))
        })
        .build()
        .unwrap();
    let res = client.get("status/503").send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(palisade::attempts(&res), 3);
    let res = client.get("status/404").send().await.unwrap();
    assert_eq!(palisade::attempts(&res), 1);
}

#[tokio::test]
async fn httpbins_absolute_redirects_are_followed_on_their_origin_with_credentials() {
    let bin = Httpbin::start();
    let client = client_for(&bin.url("/"))
        .bearer_token("tok-secret")
        .build()
        .unwrap();
    let res = client.get("absolute-redirect/3").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.url().path(), "/get");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["headers"]["Authorization"], "Bearer tok-secret", "{v}");
}

#[tokio::test]
async fn a_range_request_to_nginx_gets_exactly_its_bytes() {
    let nginx = Nginx::config().start();
    let file: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    nginx.write_file("/data.bin", &file);
    let client = client_for(&nginx.url("/")).build().unwrap();
    let res = client
        .get("data.bin")
        .header("Range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(&res.bytes().await.unwrap()[..], &file[100..200]);
}

#[tokio::test]
async fn nginx_limit_req_429s_are_retried_after_their_retry_after() {
    let nginx = Nginx::config()
        .http("limit_req_zone $binary_remote_addr zone=one:1m rate=2r/s;")
        .server(
            "location / {\n\
               limit_req zone=one nodelay;\n\
               limit_req_status 429;\n\
               add_header Retry-After 1 always;\n\
             }",
        )
        .start();
    nginx.write_file("/x.txt", b"x");
    let client = client_for(&nginx.url("/"))
        .stack(|s| s.deadline(Some(Duration::from_secs(20))))
        .build()
        .unwrap();
    let calls = (0..4).map(|_| async {
        let res = client.get("x.txt").send().await.unwrap();
        (res.status().as_u16(), palisade::attempts(&res))
    });
    let done = futures_util::future::join_all(calls).await;
    assert!(done.iter().all(|(s, _)| *s == 200), "{done:?}");
    assert!(
        done.iter().any(|(_, a)| *a > 1),
        "some were refused, waited and retried: {done:?}"
    );
    assert!(
        nginx.access_log().contains(" 429 "),
        "{}",
        nginx.access_log()
    );
    // Without retries the 429 is the caller's, with nginx's Retry-After.
    let client = client_for(&nginx.url("/"))
        .stack(|s| s.retry(None))
        .build()
        .unwrap();
    let mut refused = None;
    for _ in 0..6 {
        if let Err(e) = palisade::error_for_status(client.get("x.txt").send().await.unwrap()) {
            refused = Some(e);
            break;
        }
    }
    let e = refused.expect("nginx refused one of six quick requests");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(429));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
}
