//! Event and metric names, and the fields they carry, in one place.
//!
//! Every decision a palisade layer makes is a `tracing` event whose target is
//! [`TARGET`] and whose message is one of the names below. Fields use the
//! names in [`fields`]: durations are in milliseconds (`*_ms`), and keyed
//! layers always include `key`. Layers emit them behind their `tracing`
//! feature (on by default), so they cost nothing when it is off, and next to
//! nothing when no subscriber listens.
//!
//! Metric names, under the [`metrics`](https://docs.rs/metrics) facade, follow
//! the OpenTelemetry HTTP client conventions (`http.client.*`) and Polly's
//! resilience instrument names (`resilience.*`) where they fit.
//!
//! | event | emitted by | fields |
//! |---|---|---|
//! | [`RETRY_SCHEDULED`] | retry | `key`, `attempt`, `delay_ms`, `reason` |
//! | [`RETRY_GIVEN_UP`] | retry | `key`, `attempt`, `reason` |
//! | [`BUDGET_EXHAUSTED`] | retry | `key`, `attempt` |
//! | [`HEDGE_SENT`] | hedge | `key`, `delay_ms` |
//! | [`BREAKER_STATE_CHANGED`] | breaker | `key`, `from`, `to`, `break_ms` |
//! | [`BREAKER_REJECTED`] | breaker | `key`, `retry_after_ms` |
//! | [`RATE_LIMITED`] | rate limit | `key`, `wait_ms`, `source` (`local`, `server`) |
//! | [`RATE_LIMIT_WAITED`] | rate limit | `key`, `wait_ms` |
//! | [`QUEUED`] | concurrency | `key`, `queued`, `in_flight` |
//! | [`SHED`] | concurrency | `key`, `reason` (`queue_full`, `queue_timeout`) |
//! | [`LIMIT_CHANGED`] | adaptive concurrency | `key`, `from`, `to` |
//! | [`TIMED_OUT`] | timeout | `key`, `elapsed_ms`, `kind` (`attempt`, `deadline`, `body_idle`, `body_deadline`) |
//! | [`BACKEND_FALLBACK`] | distributed backends | `backend`, `policy`, `reason` |

/// The `tracing` target of every palisade event.
pub const TARGET: &str = "palisade";

/// A retry was scheduled after a failed attempt.
pub const RETRY_SCHEDULED: &str = "retry_scheduled";
/// Retrying stopped: attempts, deadline, an unsafe method, an unreplayable body.
pub const RETRY_GIVEN_UP: &str = "retry_given_up";
/// The retry budget had no retry left.
pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";
/// A hedged attempt was sent.
pub const HEDGE_SENT: &str = "hedge_sent";
/// A circuit breaker changed state.
pub const BREAKER_STATE_CHANGED: &str = "breaker_state_changed";
/// A call failed fast because its circuit was open.
pub const BREAKER_REJECTED: &str = "breaker_rejected";
/// A request was refused by a rate limiter.
pub const RATE_LIMITED: &str = "rate_limited";
/// A request waited for a rate-limit slot.
pub const RATE_LIMIT_WAITED: &str = "rate_limit_waited";
/// A request queued for a concurrency permit.
pub const QUEUED: &str = "queued";
/// A request was shed by a concurrency limit.
pub const SHED: &str = "shed";
/// An adaptive concurrency limit changed.
pub const LIMIT_CHANGED: &str = "limit_changed";
/// A timeout fired.
pub const TIMED_OUT: &str = "timed_out";
/// A distributed backend was unreachable and its failure policy was applied.
pub const BACKEND_FALLBACK: &str = "backend_fallback";

/// Field names shared by the events.
pub mod fields {
    /// The request's [`Key`](crate::Key), displayed.
    pub const KEY: &str = "key";
    /// The 1-based attempt number.
    pub const ATTEMPT: &str = "attempt";
    /// A delay before the next attempt, in milliseconds.
    pub const DELAY_MS: &str = "delay_ms";
    /// Why a decision was made.
    pub const REASON: &str = "reason";
    /// Time spent so far, in milliseconds.
    pub const ELAPSED_MS: &str = "elapsed_ms";
    /// Time waited, in milliseconds.
    pub const WAIT_MS: &str = "wait_ms";
}

/// Metric names.
pub mod metrics {
    /// Histogram: duration of each attempt sent, seconds (OpenTelemetry).
    pub const REQUEST_DURATION: &str = "http.client.request.duration";
    /// Gauge: requests in flight per key (OpenTelemetry).
    pub const ACTIVE_REQUESTS: &str = "http.client.active_requests";
    /// Counter: one per resilience event, labelled with `event.name` (Polly).
    pub const RESILIENCE_EVENTS: &str = "resilience.polly.strategy.events";
    /// Histogram: attempts per logical request.
    pub const ATTEMPTS: &str = "resilience.attempts";
    /// Counter: retries sent (attempts after the first).
    pub const RETRIES: &str = "resilience.retries";
    /// Gauge: a breaker's state per key: 0 closed, 1 open, 2 half-open, 3 isolated.
    pub const BREAKER_STATE: &str = "resilience.breaker.state";
    /// Counter: calls failed fast by an open breaker.
    pub const BREAKER_REJECTED: &str = "resilience.breaker.rejected";
    /// Histogram: seconds a request waited for a rate-limit slot.
    pub const RATE_LIMIT_WAIT: &str = "resilience.rate_limiter.wait";
    /// Counter: requests refused by a rate limiter, labelled `source` (`local`, `server`).
    pub const RATE_LIMIT_REJECTED: &str = "resilience.rate_limiter.rejected";
    /// Gauge: requests queued for a concurrency permit per key, when one queues.
    pub const CONCURRENCY_QUEUED: &str = "resilience.concurrency.queued";
    /// Counter: requests shed by a concurrency limit, labelled `reason`.
    pub const CONCURRENCY_SHED: &str = "resilience.concurrency.shed";
    /// Gauge: an adaptive concurrency limit per key.
    pub const CONCURRENCY_LIMIT: &str = "resilience.concurrency.limit";
}
