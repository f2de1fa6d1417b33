//! Instant arithmetic that cannot panic.

use std::time::Duration;

use tokio::time::Instant;

/// About 30 years: "never" for a timer, as palisade-core's `Deadline::after`.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, or about 30 years from now when that overflows.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + FAR)
}
