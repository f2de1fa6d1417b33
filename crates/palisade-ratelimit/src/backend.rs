//! Where the limit lives: [`RateLimitBackend`], and the in-process default,
//! [`LocalBackend`].
//!
//! The layer keeps, per key, what only this process can know (requests
//! waiting here, a pause the server asked for) and asks the backend for the
//! one decision that may be shared: may one request go now, and if not, how
//! long until it may. `palisade-redis` implements the trait on Redis so that
//! a fleet shares one quota.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::time::Duration;

use governor::RateLimiter;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use palisade_core::Key;

use crate::clock::TokioClock;
use crate::config::Quota;

/// A backend's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Send now. The slot has been spent.
    Allow,
    /// No slot now; one frees after this long. Nothing was spent.
    Wait(Duration),
    /// The upstream asked this key to pause (a 429 or an exhausted
    /// `RateLimit-Remaining` seen by this or another instance) for this
    /// long. Nothing was spent.
    Paused(Duration),
    /// Refuse without a known time, for example a shared backend that is
    /// unreachable and fails closed. Nothing was spent.
    Refuse,
}

/// Where a rate limit's state lives and where decisions are made.
///
/// The layer calls [`key_state`](Self::key_state) the first time it sees a
/// key and keeps the result for as long as the key is in use (idle keys are
/// evicted, and their state dropped). It calls [`check`](Self::check) at the
/// moment a request would be sent, so a slot is spent only by a request that
/// goes out: a request that waits calls it again after its wait, and one
/// dropped while waiting never calls it.
///
/// A backend is shared by every clone of the layer's services. Its future
/// should be cheap: [`LocalBackend`]'s is [`std::future::Ready`].
pub trait RateLimitBackend: fmt::Debug + Send + Sync + 'static {
    /// What the backend keeps for one key.
    type KeyState: Send + Sync + 'static;
    /// The future of one decision.
    type Future: Future<Output = Decision> + Send + 'static;

    /// Creates the state for `key`, limited by `quota`.
    fn key_state(&self, key: &Key, quota: &Quota) -> Self::KeyState;

    /// Decides whether one request for `key` may go now, spending a slot if so.
    fn check(&self, key: &Key, state: &Self::KeyState) -> Self::Future;

    /// The upstream asked `key` to pause for `pause`. The layer already
    /// holds this key's requests back in this process; a shared backend can
    /// tell the other instances. Does nothing by default.
    fn pause(&self, key: &Key, state: &Self::KeyState, pause: Duration) {
        let _ = (key, state, pause);
    }
}

/// The default backend: an in-process governor GCRA limiter per key, on
/// tokio's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalBackend {
    _priv: (),
}

impl LocalBackend {
    /// Creates the backend.
    pub const fn new() -> Self {
        Self { _priv: () }
    }
}

type Governor = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Nanos>>;

/// One key's GCRA state in this process: a governor direct limiter on
/// [`TokioClock`]. Other backends use it as their local fallback.
pub struct LocalLimiter {
    limiter: Governor,
    quota: Quota,
}

impl fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl LocalLimiter {
    /// A limiter for `quota` whose burst is full.
    pub fn new(quota: &Quota) -> Self {
        Self {
            limiter: RateLimiter::direct_with_clock(quota.to_governor(), TokioClock::new()),
            quota: *quota,
        }
    }

    /// The limiter's quota.
    pub const fn quota(&self) -> &Quota {
        &self.quota
    }

    /// Spends a slot if one is free now; otherwise says how long until one
    /// is, spending nothing.
    pub fn check(&self) -> Decision {
        match self.limiter.check() {
            Ok(()) => Decision::Allow,
            Err(not_until) => {
                let now = governor::clock::Clock::now(self.limiter.clock());
                Decision::Wait(not_until.wait_time_from(now))
            }
        }
    }
}

impl RateLimitBackend for LocalBackend {
    type KeyState = LocalLimiter;
    type Future = Ready<Decision>;

    fn key_state(&self, _key: &Key, quota: &Quota) -> LocalLimiter {
        LocalLimiter::new(quota)
    }

    fn check(&self, _key: &Key, state: &LocalLimiter) -> Ready<Decision> {
        ready(state.check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn local_limiter_spends_only_when_allowed() {
        let q = Quota::per_second(2).unwrap().with_burst(2).unwrap();
        let l = LocalLimiter::new(&q);
        assert_eq!(l.check(), Decision::Allow);
        assert_eq!(l.check(), Decision::Allow);
        assert_eq!(l.check(), Decision::Wait(Duration::from_millis(500)));
        // A denied check spends nothing: the wait does not grow.
        assert_eq!(l.check(), Decision::Wait(Duration::from_millis(500)));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(l.check(), Decision::Wait(Duration::from_millis(300)));
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(l.check(), Decision::Allow);
        assert_eq!(l.check(), Decision::Wait(Duration::from_millis(500)));
    }
}
