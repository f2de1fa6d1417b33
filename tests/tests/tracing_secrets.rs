//! # Secrets stay out of tracing output and `Debug`
//!
//! Every kind of secret a request can carry (a bearer token, an API key, a
//! secret header, a cookie, a password in the URL's userinfo and an API key
//! in its query) goes through the whole stack while every layer has
//! something to say: retries, a breaker that opens and rejects, a server
//! pause and a local rate refusal, a shed request, attempt and deadline
//! timeouts, a redirect to another origin, and a request over real
//! loopback HTTP. A subscriber captures everything at `TRACE`, span fields
//! included. Then:
//!
//! - none of the secrets appears in the captured output, while the events
//!   and spans that could have carried them did fire (so the check can
//!   fail);
//! - none appears in the `Debug` (or `Display`) of the client, its builder,
//!   a request builder, an error, the stack configuration and its
//!   description, credentials and tokens.
//!
//! This file is its own test binary: the subscriber is process-wide, and
//! tracing caches per call site whether anyone listens.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderValue;
use http::header::LOCATION;
use palisade::breaker::BreakerLayer;
use palisade::concurrency::{ConcurrencyLimitLayer, Limit};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::{BackoffStrategy, RetryPolicy};
use palisade::{Auth, Client, StackConfig, Token};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::events;
use palisade_tests::{MemoryUpstream, Reply};

/// Every secret contains this marker; the output must not.
const MARK: &str = "S3CR3T";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn install() -> Captured {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    captured
}

fn quick_retry() -> palisade::retry::RetryLayer {
    RetryPolicy::builder()
        .max_attempts(3)
        .backoff(BackoffStrategy::Constant)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(10))
        .no_budget()
        .seed(1)
        .build_layer()
        .unwrap()
}

/// What the in-memory upstream does, by path.
fn upstream() -> MemoryUpstream {
    MemoryUpstream::new(|req| match req.uri().path() {
        "/flaky" => Reply::status(503),
        "/busy" => Reply::status(429)
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("30")),
        "/slow" => Reply::ok().with_latency(Duration::from_secs(5)),
        "/away" => Reply::status(302).with_header(
            LOCATION,
            HeaderValue::from_static("http://elsewhere.test/landing?session=S3CR3T-loc"),
        ),
        _ => Reply::ok(),
    })
}

fn stack() -> StackConfig {
    StackConfig::default()
        .retry(Some(quick_retry()))
        .breaker(Some(
            BreakerLayer::builder()
                .consecutive_failures(3)
                .build()
                .unwrap(),
        ))
        .rate_limit(Some(
            RateLimitLayer::builder(Quota::per_second(1000).unwrap())
                .wait(Duration::from_millis(100))
                .build()
                .unwrap(),
        ))
        .concurrency(Some(
            ConcurrencyLimitLayer::builder()
                .limit(Limit::fixed(1))
                .max_queue(0)
                .build()
                .unwrap(),
        ))
        .attempt_timeout(Some(Duration::from_millis(200)))
        .deadline(Some(Duration::from_millis(500)))
}

/// Sends one request carrying every per-request secret.
async fn send(client: &Client, url: &str) -> String {
    let rb = client
        .get(url)
        .query(&[("api_key", "S3CR3T-query")])
        .secret_header("x-signature", "S3CR3T-sig")
        // A cookie set with `header` is printed by `Debug`: see
        // `credential_headers_set_with_header_are_redacted_in_debug` in
        // security.rs.
        .secret_header("cookie", "session=S3CR3T-cookie");
    let debug = format!("{rb:?}");
    match rb.send().await {
        Ok(res) => format!("{debug} {}", res.status()),
        Err(e) => format!("{debug} {e} {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_tracing_output_or_debug() {
    let captured = install();
    let mut debug = Vec::new();

    let builder = Client::builder()
        .base_url("http://api.test/")
        .bearer_token("S3CR3T-bearer")
        .stack(|_| stack())
        .transport(upstream());
    debug.push(format!("{builder:?}"));
    let client = builder.build().unwrap();
    debug.push(format!("{client:?} {} {:?}", client.describe(), stack()));

    // Retries, then an open circuit and its fast failures.
    for _ in 0..3 {
        debug.push(send(&client, "flaky").await);
    }
    // A server pause, then the local refusal it causes.
    debug.push(send(&client, "http://busy.test/busy").await);
    debug.push(send(&client, "http://busy.test/other").await);
    // An attempt timeout and the deadline.
    debug.push(send(&client, "http://slow.test/slow").await);
    // A password in the URL.
    debug.push(send(&client, "http://user:S3CR3T-pw@userinfo.test/x").await);
    // A redirect to another origin.
    debug.push(send(&client, "http://away.test/away").await);
    // Shed: the limit is 1 and nobody may queue.
    let (a, b) = tokio::join!(
        send(&client, "http://shed.test/slow"),
        send(&client, "http://shed.test/slow")
    );
    debug.extend([a, b]);

    // An API key client and a token, for their Debug.
    let keyed = Client::builder()
        .base_url("http://api.test/")
        .api_key("x-api-key", "S3CR3T-apikey")
        .transport(upstream())
        .build()
        .unwrap();
    debug.push(send(&keyed, "fine").await);
    debug.push(format!(
        "{keyed:?} {:?} {:?}",
        Auth::bearer("S3CR3T-auth").unwrap(),
        Token::bearer("S3CR3T-token").unwrap()
    ));

    // Real HTTP through reqwest.
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/real",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("ok")),
    );
    let real = Client::builder()
        .base_url(&server.url("/"))
        .bearer_token("S3CR3T-real")
        .stack(|s| s.retry(Some(quick_retry())))
        .build()
        .unwrap();
    debug.push(send(&real, "real").await);
    debug.push(format!("{real:?}"));

    let out = captured.text();
    let missing: Vec<&str> = [
        events::RETRY_SCHEDULED,
        events::BREAKER_STATE_CHANGED,
        events::BREAKER_REJECTED,
        events::RATE_LIMITED,
        events::SHED,
        events::TIMED_OUT,
        "request",
        "userinfo.test",
        "elsewhere.test",
    ]
    .into_iter()
    .filter(|name| !out.contains(name))
    .collect();
    assert!(missing.is_empty(), "not captured: {missing:?}\n{out}");
    let leaks: Vec<&str> = out.lines().filter(|l| l.contains(MARK)).collect();
    assert!(
        leaks.is_empty(),
        "secrets in tracing output:\n{}",
        leaks.join("\n")
    );
    for d in &debug {
        assert!(
            !d.contains(MARK),
            "a secret in Debug or Display output: {d}"
        );
    }
}
