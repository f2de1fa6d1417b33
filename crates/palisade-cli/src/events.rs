//! Counts the layers' events, to say what each layer did.
//!
//! Every decision a palisade layer makes is a `tracing` event under
//! [`TARGET`](palisade::core::events::TARGET) whose message is the event's
//! name. The command installs [`Counter`] as the process's subscriber and
//! reads the tallies at the end. It enables events of that target only, so
//! every span and every other event is switched off at its call site and
//! costs nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use palisade::core::events as ev;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A derived count: transitions of a breaker to open.
pub(crate) const BREAKER_OPENED: &str = "breaker_opened";

/// Event counts by name, shared between the subscriber and its readers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

/// A copy of the counts at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts(BTreeMap<&'static str, u64>);

impl Counts {
    /// How many events named `name` were seen.
    pub(crate) fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// The counts since `earlier`.
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, v)| (*k, v.saturating_sub(earlier.get(k))))
                .collect(),
        )
    }
}

impl Tally {
    /// A copy of the counts now.
    pub(crate) fn snapshot(&self) -> Counts {
        Counts(self.lock().clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, name: &'static str) {
        *self.lock().entry(name).or_default() += 1;
    }
}

/// Installs a [`Counter`] as the global subscriber and returns its tally.
/// If another subscriber is already installed, the tally stays empty.
pub(crate) fn install() -> Tally {
    let tally = Tally::default();
    let _ = tracing::subscriber::set_global_default(Counter {
        tally: tally.clone(),
    });
    tally
}

/// The event names counted; anything else under the target is ignored.
const NAMES: [&str; 13] = [
    ev::RETRY_SCHEDULED,
    ev::RETRY_GIVEN_UP,
    ev::BUDGET_EXHAUSTED,
    ev::HEDGE_SENT,
    ev::BREAKER_STATE_CHANGED,
    ev::BREAKER_REJECTED,
    ev::RATE_LIMITED,
    ev::RATE_LIMIT_WAITED,
    ev::QUEUED,
    ev::SHED,
    ev::LIMIT_CHANGED,
    ev::TIMED_OUT,
    ev::BACKEND_FALLBACK,
];

/// A subscriber that only counts palisade's events.
struct Counter {
    tally: Tally,
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    to: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            "to" => self.to = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "to" => self.to = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl Subscriber for Counter {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && metadata.target() == ev::TARGET
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        // Spans are disabled by `enabled`; an id is still required.
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(message) = fields.message else {
            return;
        };
        let Some(name) = NAMES.iter().find(|n| **n == message) else {
            return;
        };
        self.tally.add(name);
        if *name == ev::BREAKER_STATE_CHANGED && fields.to.as_deref() == Some("open") {
            self.tally.add(BREAKER_OPENED);
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_palisade_events_by_name_and_breaker_openings() {
        let tally = Tally::default();
        let subscriber = Counter {
            tally: tally.clone(),
        };
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "palisade", key = "a", "{}", ev::RETRY_SCHEDULED);
            tracing::debug!(target: "palisade", key = "a", "{}", ev::RETRY_SCHEDULED);
            tracing::info!(target: "palisade", from = "closed", to = "open", "{}", ev::BREAKER_STATE_CHANGED);
            tracing::info!(target: "palisade", from = "open", to = "half_open", "{}", ev::BREAKER_STATE_CHANGED);
            // Another target, or an unknown name, is not counted.
            tracing::info!(target: "elsewhere", "{}", ev::RETRY_SCHEDULED);
            tracing::info!(target: "palisade", "something else");
        });
        let counts = tally.snapshot();
        assert_eq!(counts.get(ev::RETRY_SCHEDULED), 2);
        assert_eq!(counts.get(ev::BREAKER_STATE_CHANGED), 2);
        assert_eq!(counts.get(BREAKER_OPENED), 1);
        assert_eq!(counts.get(ev::QUEUED), 0);
        let later = tally.snapshot();
        assert_eq!(later.since(&counts).get(ev::RETRY_SCHEDULED), 0);
    }
}
