//! The layer's tracing events, compiled out without the `tracing` feature.
//!
//! Names and fields follow `palisade_core::events`: target
//! [`TARGET`](palisade_core::events::TARGET), message the event name,
//! durations in milliseconds, the key always present.

#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use std::time::Duration;

use palisade_core::Key;

#[cfg(feature = "tracing")]
use palisade_core::events::{
    BUDGET_EXHAUSTED, HEDGE_SENT, RETRY_GIVEN_UP, RETRY_SCHEDULED, TARGET,
};

#[cfg(feature = "tracing")]
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn retry_scheduled(
    key: &Key,
    attempt: u32,
    delay: Duration,
    reason: &'static str,
    status: Option<u16>,
    retry_after: Option<Duration>,
) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: TARGET,
        key = %key,
        attempt,
        delay_ms = ms(delay),
        reason,
        status,
        retry_after_ms = retry_after.map(ms),
        "{}",
        RETRY_SCHEDULED
    );
}

pub(crate) fn retry_given_up(
    key: &Key,
    attempt: u32,
    reason: &'static str,
    detail: Option<&dyn std::fmt::Display>,
    status: Option<u16>,
) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        target: TARGET,
        key = %key,
        attempt,
        reason,
        detail = detail.map(tracing::field::display),
        status,
        "{}",
        RETRY_GIVEN_UP
    );
}

pub(crate) fn budget_exhausted(key: &Key, attempt: u32, hedge: bool) {
    #[cfg(feature = "tracing")]
    tracing::warn!(
        target: TARGET,
        key = %key,
        attempt,
        hedge,
        "{}",
        BUDGET_EXHAUSTED
    );
}

pub(crate) fn hedge_sent(key: &Key, delay: Duration) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: TARGET,
        key = %key,
        delay_ms = ms(delay),
        "{}",
        HEDGE_SENT
    );
}
