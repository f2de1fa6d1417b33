//! One deadline for the whole logical request, shared by every layer.
//!
//! [`Deadline`] lives in the request's extensions. The deadline layer sets it;
//! every layer that waits clamps its wait to what is left:
//! retry does not start an attempt that cannot finish and clamps its backoff,
//! the rate limiter and the concurrency queue clamp their maximum wait, and the
//! attempt timeout is the smaller of its own value and the remainder.
//!
//! An inner deadline may only tighten an outer one: [`Deadline::apply`] keeps
//! whichever is earlier.
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::Deadline;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let mut req = http::Request::new(());
//! Deadline::after(Duration::from_secs(30)).apply(req.extensions_mut());
//! Deadline::after(Duration::from_secs(60)).apply(req.extensions_mut()); // looser: ignored
//! let d = Deadline::of(&req).unwrap();
//! assert!(d.remaining() <= Duration::from_secs(30));
//! assert_eq!(d.clamp(Duration::from_secs(90)), d.remaining());
//! # }
//! ```

use std::time::Duration;

use http::Extensions;
use tokio::time::Instant;

/// About 30 years: "never" for a timer.
const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, or about 30 years from `now` when that cannot be represented.
///
/// Every duration a user or a server gives (a `Retry-After` of `u64::MAX`
/// seconds, a setting of `Duration::MAX`) goes through this instead of `+`,
/// which panics on overflow.
///
/// ```
/// # use std::time::Duration;
/// # use tokio::time::Instant;
/// let now = Instant::now();
/// let later = palisade_core::deadline::saturating_after(now, Duration::MAX);
/// assert!(later > now);
/// ```
pub fn saturating_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// The instant by which the whole logical request must finish.
///
/// Time is [`tokio::time::Instant`], so tests can pause the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    /// A deadline at `at`.
    pub const fn at(at: Instant) -> Self {
        Self { at }
    }

    /// A deadline `budget` from now. A budget too large to represent is
    /// treated as about 30 years, which is never in practice.
    pub fn after(budget: Duration) -> Self {
        Self {
            at: saturating_after(Instant::now(), budget),
        }
    }

    /// The instant itself.
    pub const fn instant(&self) -> Instant {
        self.at
    }

    /// What is left, zero once the deadline has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.at
    }

    /// `wait` clamped to what is left.
    pub fn clamp(&self, wait: Duration) -> Duration {
        wait.min(self.remaining())
    }

    /// The earlier of two deadlines.
    pub fn tighten(self, other: Deadline) -> Deadline {
        if other.at < self.at { other } else { self }
    }

    /// The deadline in a request, if one is set.
    pub fn of<B>(req: &http::Request<B>) -> Option<Deadline> {
        req.extensions().get::<Deadline>().copied()
    }

    /// Stores this deadline in `ext`, unless an earlier one is already there.
    /// Returns the deadline now in force.
    pub fn apply(self, ext: &mut Extensions) -> Deadline {
        let effective = match ext.get::<Deadline>() {
            Some(existing) => existing.tighten(self),
            None => self,
        };
        ext.insert(effective);
        effective
    }

    /// `wait` clamped by the deadline in `req`, if any.
    pub fn clamp_for<B>(req: &http::Request<B>, wait: Duration) -> Duration {
        match Self::of(req) {
            Some(d) => d.clamp(wait),
            None => wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_on_the_paused_clock() {
        let d = Deadline::after(Duration::from_secs(10));
        assert_eq!(d.remaining(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(d.remaining(), Duration::from_secs(6));
        assert_eq!(d.clamp(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(d.clamp(Duration::from_secs(100)), Duration::from_secs(6));
        tokio::time::advance(Duration::from_secs(7)).await;
        assert!(d.is_expired());
        assert_eq!(d.remaining(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn inner_deadline_only_tightens() {
        let mut req = http::Request::new(());
        let outer = Deadline::after(Duration::from_secs(5)).apply(req.extensions_mut());
        let looser = Deadline::after(Duration::from_secs(50)).apply(req.extensions_mut());
        assert_eq!(looser, outer);
        let tighter = Deadline::after(Duration::from_secs(1)).apply(req.extensions_mut());
        assert_eq!(Deadline::of(&req), Some(tighter));
        assert_eq!(tighter.remaining(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_budget_does_not_panic() {
        let d = Deadline::after(Duration::MAX);
        assert!(d.remaining() > Duration::from_secs(365 * 24 * 3600));
    }
}
