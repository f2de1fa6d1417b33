//! A governor clock that reads [`tokio::time`].
//!
//! governor's own clocks read the operating system's monotonic clock, which a
//! paused tokio runtime cannot stop. [`TokioClock`] reads
//! [`tokio::time::Instant`] instead, so limits, waits and tests all agree on
//! one clock and `#[tokio::test(start_paused = true)]` controls all of them.
//!
//! ```
//! use governor::clock::Clock;
//! use palisade_ratelimit::clock::TokioClock;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let clock = TokioClock::new();
//! let before = clock.now();
//! tokio::time::advance(std::time::Duration::from_millis(5)).await;
//! assert_eq!(Into::<u64>::into(clock.now()) - Into::<u64>::into(before), 5_000_000);
//! # }
//! ```

use std::time::Duration;

use governor::clock::Clock;
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A [`governor::clock::Clock`] backed by [`tokio::time::Instant`].
///
/// Readings are [`Nanos`] since the clock's epoch (the moment it was
/// created). Copies share the epoch, so their readings agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokioClock {
    epoch: Instant,
}

impl TokioClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    /// A clock whose epoch is `epoch`.
    pub const fn with_epoch(epoch: Instant) -> Self {
        Self { epoch }
    }

    /// The clock's epoch.
    pub const fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The reading for `at`: nanoseconds since the epoch, zero before it.
    pub fn reading(&self, at: Instant) -> Nanos {
        let d = at.saturating_duration_since(self.epoch);
        // u64 nanoseconds cover 584 years past the epoch.
        Nanos::new(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    /// The instant of a reading.
    pub fn instant(&self, reading: Nanos) -> Instant {
        let d = Duration::from_nanos(reading.as_u64());
        self.epoch.checked_add(d).unwrap_or(self.epoch + FAR)
    }
}

/// About 30 years: an instant that is never reached in practice.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        self.reading(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_the_paused_clock() {
        let clock = TokioClock::new();
        assert_eq!(clock.now().as_u64(), 0);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.now().as_u64(), 1_500_000_000);
        let copy = clock;
        assert_eq!(copy.now(), clock.now());
        assert_eq!(clock.instant(clock.now()), Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn readings_before_the_epoch_are_zero() {
        let past = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        let clock = TokioClock::new();
        assert_eq!(clock.reading(past).as_u64(), 0);
    }
}
