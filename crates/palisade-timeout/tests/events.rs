//! Each timeout is a `timed_out` event with `kind`, `elapsed_ms` and `key`.

#![cfg(feature = "tracing")]

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use palisade_core::events::{TARGET, TIMED_OUT};
use palisade_core::{BoxError, Deadline, Key};
use palisade_timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer};
use tower::{Layer, ServiceExt, service_fn};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = BTreeMap<String, String>;

/// Records every event's target, level and fields.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, tracing::Level, Fields)>>>);

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.to_string());
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
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let m = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push((m.target().to_owned(), *m.level(), fields));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn timed_out(&self) -> Vec<Fields> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _, f)| {
                t == TARGET && f.get("message").map(String::as_str) == Some(TIMED_OUT)
            })
            .map(|(_, _, f)| f.clone())
            .collect()
    }
}

fn never() -> impl tower::Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone {
    service_fn(|_req: Request<()>| std::future::pending::<Result<Response<()>, BoxError>>())
}

fn get(uri: &str) -> Request<()> {
    Request::get(uri).body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_timeout_is_an_event_with_kind_elapsed_and_key() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let _ = AttemptTimeoutLayer::new(Duration::from_millis(250))
        .unwrap()
        .layer(never())
        .oneshot(get("https://api.example.com/a"))
        .await;
    let _ = DeadlineLayer::new(Duration::from_millis(400))
        .unwrap()
        .layer(never())
        .oneshot(get("http://other.example.com:8080/b"))
        .await;

    let mut req = get("https://api.example.com/c");
    Deadline::after(Duration::from_millis(100)).apply(req.extensions_mut());
    let _ = AttemptTimeoutLayer::new(Duration::from_secs(10))
        .unwrap()
        .layer(never())
        .oneshot(req)
        .await;

    let events = capture.timed_out();
    assert_eq!(events.len(), 3, "{events:?}");
    let expect = [
        ("attempt", "250", "https://api.example.com:443"),
        ("deadline", "400", "http://other.example.com:8080"),
        ("deadline", "100", "https://api.example.com:443"),
    ];
    for (fields, (kind, elapsed, key)) in events.iter().zip(expect) {
        assert_eq!(fields["kind"], kind, "{fields:?}");
        assert_eq!(fields["elapsed_ms"], elapsed, "{fields:?}");
        assert_eq!(fields["key"], key, "{fields:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn body_timeouts_are_events_too_with_a_custom_key() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let layer = BodyTimeoutLayer::builder()
        .idle(Duration::from_millis(300))
        .key_fn(|_req: &Request<()>| Key::from("tenant-a"))
        .build()
        .unwrap();
    let respond = service_fn(|_req: Request<()>| async {
        let (tx, body) = common::ChannelBody::new();
        // Keep the sender alive inside a task that never sends.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        Ok::<_, BoxError>(Response::new(body))
    });
    let res = layer.layer(respond).oneshot(get("/")).await.unwrap();
    let body = std::pin::pin!(res.into_body());
    let err = http_body_util::BodyExt::collect(body).await.unwrap_err();
    assert!(err.is::<palisade_timeout::error::BodyIdleTimeout>());

    let mut req = get("/");
    Deadline::after(Duration::from_millis(700)).apply(req.extensions_mut());
    let layer = BodyTimeoutLayer::builder().no_idle().build().unwrap();
    let respond = service_fn(|_req: Request<()>| async {
        let (tx, body) = common::ChannelBody::new();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        Ok::<_, BoxError>(Response::new(body))
    });
    tokio::time::advance(Duration::from_millis(200)).await;
    let res = layer.layer(respond).oneshot(req).await.unwrap();
    let body = std::pin::pin!(res.into_body());
    let err = http_body_util::BodyExt::collect(body).await.unwrap_err();
    assert!(err.is::<palisade_timeout::error::BodyDeadlineExceeded>());

    let events = capture.timed_out();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["kind"], "body_idle");
    assert_eq!(events[0]["elapsed_ms"], "300");
    assert_eq!(events[0]["key"], "tenant-a");
    assert_eq!(events[1]["kind"], "body_deadline");
    assert_eq!(
        events[1]["elapsed_ms"], "500",
        "measured from the response head"
    );
    assert_eq!(events[1]["key"], "*", "a relative URI keys globally");
}

#[tokio::test(start_paused = true)]
async fn no_event_when_nothing_times_out() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let ok = service_fn(|_req: Request<()>| async { Ok::<_, BoxError>(Response::new(())) });
    DeadlineLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(
            AttemptTimeoutLayer::new(Duration::from_millis(10))
                .unwrap()
                .layer(ok),
        )
        .oneshot(get("/"))
        .await
        .unwrap();
    assert!(capture.timed_out().is_empty());
}
