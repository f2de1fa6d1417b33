//! Every decision is a `tracing` event with a stable name and fields.
//!
//! Its own test binary: `tracing` caches per call site whether anyone
//! listens, and tests running in parallel in one process with and without a
//! thread-local subscriber race on that cache.
#![cfg(feature = "tracing")]

mod support;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use palisade_concurrency::limit::Aimd;
use palisade_concurrency::{ConcurrencyLimitLayer, ResponseBody};
use palisade_core::error::Overloaded;
use palisade_core::{BoxError, Key};
use support::{Upstream, poll_once, req};
use tower::{Layer, Service, ServiceExt};

type Res = Response<ResponseBody<Full<Bytes>>>;
type Fut = Pin<Box<dyn std::future::Future<Output = Result<Res, BoxError>> + Send>>;

const A: &str = "http://a.test/";

fn key() -> Key {
    Key::origin(&A.parse().unwrap())
}

async fn start<S>(svc: &mut S, r: Request<()>) -> Fut
where
    S: Service<Request<()>, Response = Res, Error = BoxError>,
    S::Future: Send + 'static,
{
    svc.ready().await.unwrap();
    Box::pin(svc.call(r))
}

use std::collections::BTreeMap;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Debug, Clone)]
struct Captured {
    target: String,
    fields: BTreeMap<String, String>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut fields = BTreeMap::new();
        e.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(Captured {
            target: e.metadata().target().to_owned(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn named(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.target == palisade_core::events::TARGET)
            .filter(|c| c.fields.get("message").map(String::as_str) == Some(name))
            .map(|c| c.fields.clone())
            .collect()
    }
}

#[tokio::test(start_paused = true)]
async fn decisions_are_events_with_stable_names_and_fields() {
    use palisade_core::events::{LIMIT_CHANGED, QUEUED, SHED};
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let up = Upstream::new();
    let l = ConcurrencyLimitLayer::builder()
        .limit(Aimd::new().initial_limit(1).min_limit(1))
        .max_queue(1)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut svc = l.layer(up.service());
    let first = start(&mut svc, req(A)).await;
    let mut queued = start(&mut svc, req(A)).await;
    assert!(poll_once(&mut queued).await.is_pending());
    let full = start(&mut svc, req(A)).await.await.unwrap_err();
    assert!(full.is::<Overloaded>());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(poll_once(&mut queued).await.is_ready());
    up.next().ok("");
    first.await.unwrap();

    let k = key().to_string();
    let q = capture.named(QUEUED);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["key"], k);
    assert_eq!(q[0]["queued"], "1");
    assert_eq!(q[0]["in_flight"], "1");

    let shed = capture.named(SHED);
    let reasons: Vec<&str> = shed.iter().map(|f| f["reason"].as_str()).collect();
    assert_eq!(reasons, ["queue_full", "queue_timeout"]);
    assert_eq!(shed[1]["wait_ms"], "100");
    assert!(shed.iter().all(|f| f["key"] == k));

    let changed = capture.named(LIMIT_CHANGED);
    assert_eq!(changed.len(), 1);
    assert_eq!(
        (
            changed[0]["key"].as_str(),
            changed[0]["from"].as_str(),
            changed[0]["to"].as_str()
        ),
        (k.as_str(), "1", "2")
    );
}
