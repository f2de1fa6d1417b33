//! What telemetry prints, in its own test binary: tracing caches callsite
//! interest process-wide, so a test that installs a subscriber must not share
//! its process with tests that run without one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade::Client;
use palisade::retry::{BackoffStrategy, RetryPolicy};
use palisade_chaos::{Behavior, FlakyServer, Script};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_tracing_output() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/data",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("x")),
    );
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let client = Client::builder()
        .base_url(&server.url("/"))
        .bearer_token("tok-s3cret")
        .stack(|s| {
            s.retry(Some(
                RetryPolicy::builder()
                    .backoff(BackoffStrategy::Constant)
                    .base_delay(Duration::from_millis(10))
                    .max_delay(Duration::from_millis(10))
                    .no_budget()
                    .build_layer()
                    .unwrap(),
            ))
        })
        .build()
        .unwrap();
    let res = client
        .get("data")
        .query(&[("api_key", "key-s3cret")])
        .secret_header("x-signature", "sig-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        out.contains("retry_scheduled"),
        "events were captured:\n{out}"
    );
    assert!(
        out.contains("request"),
        "the request span was captured:\n{out}"
    );
    assert!(!out.contains("s3cret"), "a secret leaked:\n{out}");
}
