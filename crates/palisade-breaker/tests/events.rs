//! The `tracing` events: target, name and fields as palisade-core's events
//! module specifies them.
#![cfg(feature = "tracing")]

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use palisade_core::events;
use tower::Layer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Captured = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

struct Capture(Captured);

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
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
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((event.metadata().target().to_owned(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn transitions_and_rejections_are_traced_with_their_fields() {
    let captured = Captured::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    tracing::subscriber::with_default(Capture(captured.clone()), || {
        rt.block_on(async {
            let layer = base()
                .without_failure_ratio()
                .consecutive_failures(1)
                .build()
                .unwrap();
            let (up, _) = upstream();
            let mut svc = layer.layer(up);
            send(&mut svc, req_with("a", 500)).await.unwrap();
            assert!(open_error(&send(&mut svc, req("a")).await).is_some());
            tokio::time::advance(Duration::from_secs(5)).await;
            send(&mut svc, req("a")).await.unwrap();
        });
    });

    let got = captured.lock().unwrap();
    assert!(got.iter().all(|(target, _)| target == events::TARGET));
    let named = |name: &str| -> Vec<&BTreeMap<String, String>> {
        got.iter()
            .map(|(_, f)| f)
            .filter(|f| f.get("message").map(String::as_str) == Some(name))
            .collect()
    };
    let changes = named(events::BREAKER_STATE_CHANGED);
    let edges: Vec<(&str, &str)> = changes
        .iter()
        .map(|f| (f["from"].as_str(), f["to"].as_str()))
        .collect();
    assert_eq!(
        edges,
        [
            ("closed", "open"),
            ("open", "half_open"),
            ("half_open", "closed")
        ]
    );
    assert_eq!(changes[0]["key"], "http://a:80");
    assert_eq!(changes[0]["break_ms"], "5000");
    assert_eq!(changes[0]["reason"], "consecutive_failures");

    let rejected = named(events::BREAKER_REJECTED);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["key"], "http://a:80");
    assert_eq!(rejected[0]["retry_after_ms"], "5000");
}
