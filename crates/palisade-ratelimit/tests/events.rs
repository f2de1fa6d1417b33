//! The limiter's decisions are tracing events with the shared names and fields.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::events::{RATE_LIMIT_WAITED, RATE_LIMITED, TARGET};
use palisade_ratelimit::{Quota, RateLimitLayer};
use support::{Upstream, get, response};
use tower::{Layer, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One event's fields, as (name, value).
type Fields = Vec<(String, String)>;

#[derive(Default, Clone)]
struct Recorder {
    events: Arc<Mutex<Vec<Fields>>>,
    next_id: Arc<AtomicU64>,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name().to_owned(), value.to_string()));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if event.metadata().target() == TARGET {
            let mut fields = Vec::new();
            event.record(&mut Visitor(&mut fields));
            self.events.lock().unwrap().push(fields);
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Recorder {
    fn named(&self, name: &str) -> Vec<Fields> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|f| field(f, "message") == Some(name))
            .cloned()
            .collect()
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn refusals_and_waits_are_events_with_key_wait_and_source() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());

    let up = Upstream::new();
    up.then(response(200, &[]))
        .then(response(200, &[]))
        .then(response(429, &[("retry-after", "30")]));
    let quota = Quota::per_second(1).unwrap();
    let svc = RateLimitLayer::builder(quota)
        .wait(Duration::from_secs(5))
        .build()
        .unwrap()
        .layer(up.service());

    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    // Waits one second: a `rate_limit_waited` event.
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    let waited = recorder.named(RATE_LIMIT_WAITED);
    assert_eq!(waited.len(), 1, "{waited:?}");
    assert_eq!(field(&waited[0], "key"), Some("http://a.test:80"));
    assert_eq!(field(&waited[0], "wait_ms"), Some("1000"));

    // Over the maximum wait: refused by the local quota.
    let mut req = get("http://a.test/");
    palisade_core::Deadline::after(Duration::from_millis(10)).apply(req.extensions_mut());
    assert!(svc.clone().oneshot(req).await.is_err());
    // After a 429, refused because of the server.
    tokio::time::advance(Duration::from_secs(1)).await;
    svc.clone().oneshot(get("http://a.test/")).await.unwrap();
    assert!(svc.clone().oneshot(get("http://a.test/")).await.is_err());

    let limited = recorder.named(RATE_LIMITED);
    assert_eq!(limited.len(), 2, "{limited:?}");
    assert_eq!(field(&limited[0], "source"), Some("local"));
    assert_eq!(field(&limited[0], "wait_ms"), Some("1000"));
    assert_eq!(field(&limited[1], "source"), Some("server"));
    assert_eq!(field(&limited[1], "wait_ms"), Some("30000"));
    assert_eq!(field(&limited[1], "key"), Some("http://a.test:80"));
}
