//! The layer's `tracing` events, compiled away without the `tracing` feature.

use palisade_core::Key;

/// A request queued for a permit.
#[inline]
pub(crate) fn queued(key: &Key, queued: usize, in_flight: usize) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: palisade_core::events::TARGET,
        key = %key,
        queued,
        in_flight,
        "{}",
        palisade_core::events::QUEUED
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (key, queued, in_flight);
}

/// Why a request was shed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ShedReason {
    QueueFull,
    QueueTimeout,
}

impl ShedReason {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    const fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::QueueTimeout => "queue_timeout",
        }
    }
}

/// A request was shed: its queue was full, or it waited `wait_ms` in vain.
#[inline]
pub(crate) fn shed(key: &Key, reason: ShedReason, wait_ms: u64) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: palisade_core::events::TARGET,
        key = %key,
        reason = reason.as_str(),
        wait_ms,
        "{}",
        palisade_core::events::SHED
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (key, reason, wait_ms);
}

/// An adaptive limit changed.
#[inline]
pub(crate) fn limit_changed(key: &Key, from: usize, to: usize) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: palisade_core::events::TARGET,
        key = %key,
        from,
        to,
        "{}",
        palisade_core::events::LIMIT_CHANGED
    );
    #[cfg(not(feature = "tracing"))]
    let _ = (key, from, to);
}
