//! [`RedisBackend`]: the connection, the failure policy, and the rate-limit
//! backend on a Lua GCRA.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::Key;
use palisade_ratelimit::{Decision, LocalLimiter, Quota, RateLimitBackend};
use redis::Script;
use redis::aio::ConnectionManager;

use crate::config::{FailurePolicy, RedisBackendBuilder};
use crate::keys;

/// GCRA in one atomic step, on Redis's own clock so that instances with
/// skewed clocks agree. Times are integer microseconds, which Lua's doubles
/// hold exactly for the next few centuries.
///
/// KEYS[1]: the theoretical arrival time (TAT); KEYS[2]: the server's pause.
/// ARGV[1]: the emission interval; ARGV[2]: the burst tolerance, both in µs.
/// Returns {1, 0} (allowed), {0, wait µs} or {2, pause µs}.
const GCRA: &str = r"
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then
  return {2, pause * 1000}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local allow_at = tat - tau
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, 0}
";

/// Extends the key's pause to ARGV[1] ms unless a longer one is in place.
const PAUSE: &str = r"
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 1
";

/// Nanoseconds on tokio's clock since `epoch`.
fn now_nanos(epoch: tokio::time::Instant) -> u64 {
    u64::try_from(
        tokio::time::Instant::now()
            .saturating_duration_since(epoch)
            .as_nanos(),
    )
    .unwrap_or(u64::MAX)
}

/// Counters of what the backend did, for tests, dashboards and alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Decisions Redis answered.
    pub decisions: u64,
    /// Times the failure policy decided instead (each also an event).
    pub fallbacks: u64,
}

pub(crate) struct Inner {
    pub(crate) conn: ConnectionManager,
    pub(crate) namespace: String,
    pub(crate) call_timeout: Duration,
    retry_interval: Duration,
    pub(crate) policy: FailurePolicy,
    fallback_quota: Option<Quota>,
    gcra: Script,
    pause: Script,
    epoch: tokio::time::Instant,
    /// Reading until which decisions skip Redis after a failure; 0: none.
    down_until: AtomicU64,
    decisions: AtomicU64,
    fallbacks: AtomicU64,
}

impl Inner {
    pub(crate) fn new(
        conn: ConnectionManager,
        namespace: String,
        call_timeout: Duration,
        retry_interval: Duration,
        policy: FailurePolicy,
        fallback_quota: Option<Quota>,
    ) -> Self {
        Self {
            conn,
            namespace,
            call_timeout,
            retry_interval,
            policy,
            fallback_quota,
            gcra: Script::new(GCRA),
            pause: Script::new(PAUSE),
            epoch: tokio::time::Instant::now(),
            down_until: AtomicU64::new(0),
            decisions: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        now_nanos(self.epoch)
    }

    /// Whether a recent failure says to skip Redis for now.
    pub(crate) fn cooling_down(&self) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        until != 0 && self.now() < until
    }

    pub(crate) fn mark_down(&self) {
        let until = self
            .now()
            .saturating_add(u64::try_from(self.retry_interval.as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        self.down_until.store(until, Ordering::Release);
    }

    pub(crate) fn mark_up(&self) {
        if self.down_until.load(Ordering::Relaxed) != 0 {
            self.down_until.store(0, Ordering::Release);
        }
    }

    /// Counts and reports one application of the failure policy.
    pub(crate) fn applied_policy(&self, what: &'static str, reason: &dyn fmt::Display) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        tracing::warn!(
            target: palisade_core::events::TARGET,
            backend = "redis",
            policy = self.policy.as_str(),
            reason = %reason,
            what,
            "{}",
            palisade_core::events::BACKEND_FALLBACK
        );
        #[cfg(not(feature = "tracing"))]
        let _ = (what, reason);
    }

    /// Runs `call` on Redis within the call timeout, unless Redis is
    /// cooling down after a failure. `Err` carries why Redis did not answer.
    pub(crate) async fn call<T, F, Fut>(&self, call: F) -> Result<T, CallError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.cooling_down() {
            return Err(CallError::CoolingDown);
        }
        match tokio::time::timeout(self.call_timeout, call(self.conn.clone())).await {
            Ok(Ok(v)) => {
                self.mark_up();
                Ok(v)
            }
            Ok(Err(e)) => {
                self.mark_down();
                Err(CallError::Redis(e))
            }
            Err(_) => {
                self.mark_down();
                Err(CallError::Timeout(self.call_timeout))
            }
        }
    }
}

/// Why Redis did not answer a call.
#[derive(Debug)]
pub(crate) enum CallError {
    CoolingDown,
    Timeout(Duration),
    Redis(redis::RedisError),
    BadReply(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CoolingDown => {
                f.write_str("redis failed recently; retrying after the retry interval")
            }
            Self::Timeout(d) => write!(f, "redis did not answer within {} ms", d.as_millis()),
            Self::Redis(e) => write!(f, "redis error: {e}"),
            Self::BadReply(r) => write!(f, "unexpected reply from redis: {r}"),
        }
    }
}

/// A rate-limit backend (and breaker state backend) on Redis, shared by every
/// instance that points at the same Redis and namespace.
///
/// Each decision is one `EVALSHA` of a Lua GCRA: one round trip, atomic, no
/// race between instances, on Redis's clock. When Redis cannot answer within
/// the call timeout, the [`FailurePolicy`] decides, and a
/// [`BACKEND_FALLBACK`](palisade_core::events::BACKEND_FALLBACK) event is
/// emitted each time.
///
/// Clones share the connection, the counters and the failure state.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("namespace", &self.inner.namespace)
            .field("call_timeout", &self.inner.call_timeout)
            .field("retry_interval", &self.inner.retry_interval)
            .field("policy", &self.inner.policy)
            .field("fallback_quota", &self.inner.fallback_quota)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A builder on `client`.
    pub fn builder(client: redis::Client) -> RedisBackendBuilder {
        RedisBackendBuilder::new(client)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// What the backend has done so far.
    pub fn stats(&self) -> RedisStats {
        RedisStats {
            decisions: self.inner.decisions.load(Ordering::Relaxed),
            fallbacks: self.inner.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }

    /// Checks that Redis answers, within the call timeout. Useful as a
    /// readiness check at start-up; the backend itself never needs it.
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.inner.conn.clone();
        match tokio::time::timeout(
            self.inner.call_timeout.max(Duration::from_secs(1)),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "redis did not answer PING in time",
            ))),
        }
    }
}

/// One key's state: its Redis keys, its GCRA parameters, and the limiter
/// used while failing open.
pub struct RedisKeyState(Arc<KeyState>);

struct KeyState {
    tat: String,
    pause: String,
    interval_us: u64,
    tau_us: u64,
    local: LocalLimiter,
}

impl fmt::Debug for RedisKeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisKeyState")
            .field("tat", &self.0.tat)
            .field("pause", &self.0.pause)
            .field("interval_us", &self.0.interval_us)
            .field("tau_us", &self.0.tau_us)
            .finish()
    }
}

impl RedisKeyState {
    /// The Redis key holding this key's theoretical arrival time.
    pub fn tat_key(&self) -> &str {
        &self.0.tat
    }

    /// The Redis key holding this key's server-imposed pause.
    pub fn pause_key(&self) -> &str {
        &self.0.pause
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The future of one Redis decision.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send + 'static>>;

impl RateLimitBackend for RedisBackend {
    type KeyState = RedisKeyState;
    type Future = DecisionFuture;

    fn key_state(&self, key: &Key, quota: &Quota) -> RedisKeyState {
        let interval = quota.replenish_interval();
        // Microseconds, at least 1: Redis's clock has microsecond resolution.
        let interval_us = micros(interval).max(1);
        let tau_us = interval_us.saturating_mul(u64::from(quota.burst() - 1));
        let tag = keys::tag(&self.inner.namespace, "rl", key);
        RedisKeyState(Arc::new(KeyState {
            tat: format!("{tag}:tat"),
            pause: format!("{tag}:pause"),
            interval_us,
            tau_us,
            local: LocalLimiter::new(self.inner.fallback_quota.as_ref().unwrap_or(quota)),
        }))
    }

    fn check(&self, _key: &Key, state: &RedisKeyState) -> DecisionFuture {
        let inner = self.inner.clone();
        let state = state.0.clone();
        Box::pin(async move {
            let reply = inner
                .call(|mut conn| {
                    let inner = inner.clone();
                    let state = state.clone();
                    async move {
                        inner
                            .gcra
                            .key(&state.tat)
                            .key(&state.pause)
                            .arg(state.interval_us)
                            .arg(state.tau_us)
                            .invoke_async::<(i64, i64)>(&mut conn)
                            .await
                    }
                })
                .await;
            let reply = match reply {
                Ok((1, _)) => Ok(Decision::Allow),
                Ok((0, us)) => Ok(Decision::Wait(Duration::from_micros(us.max(1) as u64))),
                Ok((2, us)) => Ok(Decision::Paused(Duration::from_micros(us.max(1) as u64))),
                Ok(other) => Err(CallError::BadReply(format!("{other:?}"))),
                Err(e) => Err(e),
            };
            match reply {
                Ok(decision) => {
                    inner.decisions.fetch_add(1, Ordering::Relaxed);
                    decision
                }
                Err(e) => {
                    inner.applied_policy("rate_limit", &e);
                    match inner.policy {
                        FailurePolicy::FailOpen => state.local.check(),
                        FailurePolicy::FailClosed => Decision::Refuse,
                    }
                }
            }
        })
    }

    fn pause(&self, _key: &Key, state: &RedisKeyState, pause: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let inner = self.inner.clone();
        let state = state.0.clone();
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX).max(1);
        // Other instances learn of the pause on their next decision; this
        // one already holds its requests back, so nothing waits on this.
        rt.spawn(async move {
            let res = inner
                .call(|mut conn| {
                    let inner = inner.clone();
                    let state = state.clone();
                    async move {
                        inner
                            .pause
                            .key(&state.pause)
                            .arg(ms)
                            .invoke_async::<i64>(&mut conn)
                            .await
                    }
                })
                .await;
            if let Err(e) = res {
                inner.applied_policy("rate_limit_pause", &e);
            }
        });
    }
}
