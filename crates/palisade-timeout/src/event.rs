//! The `timed_out` event, behind the `tracing` feature.

use std::time::Duration;

use palisade_core::{Key, KeyFn};

/// Which timeout fired; the event's `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Attempt,
    Deadline,
    BodyIdle,
    BodyDeadline,
}

impl Kind {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Attempt => "attempt",
            Self::Deadline => "deadline",
            Self::BodyIdle => "body_idle",
            Self::BodyDeadline => "body_deadline",
        }
    }
}

/// The key for a later event, computed only when someone listens: the key
/// clones the request's authority, which would otherwise cost every call.
#[inline]
pub(crate) fn key_for<K: KeyFn<B>, B>(key_fn: &K, req: &http::Request<B>) -> Option<Key> {
    #[cfg(feature = "tracing")]
    {
        if tracing::enabled!(target: palisade_core::events::TARGET, tracing::Level::INFO) {
            return Some(key_fn.key(req));
        }
        None
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (key_fn, req);
        None
    }
}

/// Emits `timed_out` with `kind`, `elapsed_ms` and `key`.
#[inline]
pub(crate) fn timed_out(kind: Kind, elapsed: Duration, key: Option<&Key>) {
    #[cfg(feature = "tracing")]
    {
        use palisade_core::events::{TARGET, TIMED_OUT};
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match key {
            Some(key) => tracing::info!(
                target: TARGET,
                key = %key,
                kind = kind.as_str(),
                elapsed_ms,
                "{}",
                TIMED_OUT
            ),
            None => tracing::info!(
                target: TARGET,
                key = "unknown",
                kind = kind.as_str(),
                elapsed_ms,
                "{}",
                TIMED_OUT
            ),
        }
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = (kind, elapsed, key);
    }
}
