//! The circuit breaker's shared state on Redis.
//!
//! One key per palisade key, `{<namespace>:br:<key>}:open`, present while
//! some instance holds the circuit open, with the break as its TTL: the
//! other instances read the remaining break from `PTTL`, so they need not
//! agree on the time. Closing deletes it.

use std::time::Duration;

use palisade_breaker::backend::BackendFuture;
use palisade_breaker::{BreakerStateBackend, SharedState};
use palisade_core::{BoxError, Key};

use crate::backend::{CallError, RedisBackend};
use crate::keys;

impl RedisBackend {
    fn breaker_key(&self, key: &Key) -> String {
        format!("{}:open", keys::tag(&self.inner.namespace, "br", key))
    }
}

/// The breaker's own rule applies when Redis cannot answer: its local
/// decision stays in force, and it emits the fallback event. The
/// [`FailurePolicy`](crate::FailurePolicy) governs rate-limit decisions only.
impl BreakerStateBackend for RedisBackend {
    fn publish(&self, key: &Key, state: SharedState) -> BackendFuture<()> {
        let inner = self.inner.clone();
        let redis_key = self.breaker_key(key);
        Box::pin(async move {
            inner
                .call(|mut conn| async move {
                    match state {
                        SharedState::Open { remaining } => {
                            let ms = u64::try_from(remaining.as_millis())
                                .unwrap_or(u64::MAX)
                                .max(1);
                            redis::cmd("SET")
                                .arg(&redis_key)
                                .arg(1)
                                .arg("PX")
                                .arg(ms)
                                .query_async::<()>(&mut conn)
                                .await
                        }
                        SharedState::Closed => {
                            redis::cmd("DEL")
                                .arg(&redis_key)
                                .query_async::<()>(&mut conn)
                                .await
                        }
                    }
                })
                .await
                .map_err(boxed)
        })
    }

    fn fetch(&self, key: &Key) -> BackendFuture<SharedState> {
        let inner = self.inner.clone();
        let redis_key = self.breaker_key(key);
        Box::pin(async move {
            let ttl = inner
                .call(|mut conn| async move {
                    redis::cmd("PTTL")
                        .arg(&redis_key)
                        .query_async::<i64>(&mut conn)
                        .await
                })
                .await
                .map_err(boxed)?;
            // -2: no key; -1: no TTL, which we never write.
            Ok(match u64::try_from(ttl) {
                Ok(ms) if ms > 0 => SharedState::Open {
                    remaining: Duration::from_millis(ms),
                },
                _ => SharedState::Closed,
            })
        })
    }
}

fn boxed(e: CallError) -> BoxError {
    match e {
        CallError::Redis(e) => Box::new(e),
        other => other.to_string().into(),
    }
}
