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
    #[cfg(feature = "metrics")]
    metrics::gauge!(
        palisade_core::events::metrics::CONCURRENCY_QUEUED,
        "server.address" => key.to_string()
    )
    .set(queued as f64);
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
    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
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
    #[cfg(feature = "metrics")]
    metrics::counter!(
        palisade_core::events::metrics::CONCURRENCY_SHED,
        "server.address" => key.to_string(),
        "reason" => reason.as_str()
    )
    .increment(1);
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
    #[cfg(feature = "metrics")]
    metrics::gauge!(
        palisade_core::events::metrics::CONCURRENCY_LIMIT,
        "server.address" => key.to_string()
    )
    .set(to as f64);
    #[cfg(not(feature = "tracing"))]
    let _ = (key, from, to);
}
