//! The failure policy emits a `backend_fallback` event each time it is applied.

mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::events::{BACKEND_FALLBACK, TARGET};
use palisade_ratelimit::{Quota, RateLimitLayer};
use palisade_redis::RedisBackend;
use support::RedisServer;
use tower::{Layer, ServiceExt};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One event's fields, as (name, value).
type Fields = Vec<(String, String)>;

/// Records the message and fields of every palisade event.
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

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "current_thread")]
async fn each_application_of_the_policy_is_an_event() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());

    let mut server = RedisServer::start().await;
    let backend = RedisBackend::builder(server.client())
        .call_timeout(Duration::from_millis(100))
        .fail_open()
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let svc = RateLimitLayer::builder(Quota::per_second(1_000).unwrap())
        .reject()
        .backend(backend)
        .build()
        .unwrap()
        .layer(tower::service_fn(move |_req: http::Request<()>| {
            counted.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
        }));
    let send = || {
        let req = http::Request::get("https://api.test/").body(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), svc.clone().oneshot(req))
    };
    send().await.unwrap().unwrap();
    assert!(
        recorder.events.lock().unwrap().is_empty(),
        "redis answered: no event"
    );

    server.kill();
    for _ in 0..4 {
        send().await.expect("no hang").expect("fails open");
    }
    let events = recorder.events.lock().unwrap();
    let fallbacks: Vec<_> = events
        .iter()
        .filter(|f| field(f, "message") == Some(BACKEND_FALLBACK))
        .collect();
    assert_eq!(fallbacks.len(), 4, "{events:?}");
    for f in fallbacks {
        assert_eq!(field(f, "backend"), Some("redis"));
        assert_eq!(field(f, "policy"), Some("fail_open"));
        assert!(
            field(f, "reason").is_some_and(|r| r.contains("redis")),
            "{f:?}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}
