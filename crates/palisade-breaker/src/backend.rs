//! Sharing each key's open state across instances.
//!
//! A breaker decides locally, from its own calls. With a
//! [`BreakerStateBackend`], it also tells the other instances when a key
//! opens (and for how long) and when it closes again, and reads what they
//! told it. `palisade-redis` implements the trait on Redis; [`MemoryBackend`]
//! is the in-memory implementation, which shares state between breaker
//! layers of one process and serves as the reference for the protocol.
//!
//! The backend is off the hot path. It is called:
//! - [`publish`](BreakerStateBackend::publish) by the call whose outcome
//!   opened or closed the circuit, which waits for it before returning;
//! - [`fetch`](BreakerStateBackend::fetch) at most once per key per
//!   [`sync_interval`](crate::Builder::sync_interval), by the first call
//!   admitted after it is due; the read runs alongside that call's own request
//!   and applies to the calls after it.
//!
//! A shared open state only ever opens a key (or lengthens its break); a key
//! closes through its own probes. A backend error leaves the local decision
//! in force (fail open to the local breaker) and emits
//! [`BACKEND_FALLBACK`](palisade_core::events::BACKEND_FALLBACK).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use palisade_core::{BoxError, Key};
use tokio::time::Instant;

/// The future a backend returns: boxed, because backends are trait objects
/// and are only called when a state changes or a sync is due.
pub type BackendFuture<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'static>>;

/// A key's state as the instances share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedState {
    /// No instance holds the key open.
    Closed,
    /// Some instance opened the key; it stays open for `remaining`.
    Open {
        /// How much of the break is left. A relative duration, so that
        /// instances need not agree on the time (Redis stores it as a TTL).
        remaining: Duration,
    },
}

/// Where breakers share each key's open state. See the [module docs](self).
///
/// Object-safe: the breaker holds it as `Arc<dyn BreakerStateBackend>`.
/// Implementations clone what their futures need (a connection handle), so
/// the futures are `'static`.
pub trait BreakerStateBackend: fmt::Debug + Send + Sync + 'static {
    /// Records that `key` is now `state`.
    fn publish(&self, key: &Key, state: SharedState) -> BackendFuture<()>;

    /// Reads `key`'s shared state; an unknown key is
    /// [`Closed`](SharedState::Closed).
    fn fetch(&self, key: &Key) -> BackendFuture<SharedState>;
}

/// The in-memory backend: every breaker given the same `Arc<MemoryBackend>`
/// shares open states, as separate instances would through Redis.
///
/// Time is [`tokio::time`], so it works on a paused clock.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    open_until: Mutex<HashMap<Key, Instant>>,
}

impl MemoryBackend {
    /// Creates an empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared state of `key` now.
    pub fn state(&self, key: &Key) -> SharedState {
        let now = Instant::now();
        let mut map = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(until) if *until > now => SharedState::Open {
                remaining: *until - now,
            },
            Some(_) => {
                map.remove(key);
                SharedState::Closed
            }
            None => SharedState::Closed,
        }
    }

    fn set(&self, key: &Key, state: SharedState) {
        let mut map = self.open_until.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            SharedState::Open { remaining } => {
                map.insert(
                    key.clone(),
                    palisade_core::deadline::saturating_after(Instant::now(), remaining),
                );
            }
            SharedState::Closed => {
                map.remove(key);
            }
        }
    }
}

impl BreakerStateBackend for MemoryBackend {
    fn publish(&self, key: &Key, state: SharedState) -> BackendFuture<()> {
        self.set(key, state);
        Box::pin(std::future::ready(Ok(())))
    }

    fn fetch(&self, key: &Key) -> BackendFuture<SharedState> {
        let state = self.state(key);
        Box::pin(std::future::ready(Ok(state)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_open_state_of_duration_max_is_stored_without_panicking() {
        let b = MemoryBackend::new();
        let k = Key::from("a");
        b.publish(
            &k,
            SharedState::Open {
                remaining: Duration::MAX,
            },
        )
        .await
        .unwrap();
        match b.fetch(&k).await.unwrap() {
            SharedState::Open { remaining } => {
                assert!(
                    remaining > Duration::from_secs(29 * 365 * 24 * 3600),
                    "{remaining:?}"
                )
            }
            other => panic!("expected open, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn open_state_expires_with_its_break() {
        let b = MemoryBackend::new();
        let k = Key::from("a");
        assert_eq!(b.fetch(&k).await.unwrap(), SharedState::Closed);
        b.publish(
            &k,
            SharedState::Open {
                remaining: Duration::from_secs(5),
            },
        )
        .await
        .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            b.fetch(&k).await.unwrap(),
            SharedState::Open {
                remaining: Duration::from_secs(3)
            }
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(b.fetch(&k).await.unwrap(), SharedState::Closed);
        b.publish(
            &k,
            SharedState::Open {
                remaining: Duration::from_secs(5),
            },
        )
        .await
        .unwrap();
        b.publish(&k, SharedState::Closed).await.unwrap();
        assert_eq!(b.state(&k), SharedState::Closed);
    }
}
