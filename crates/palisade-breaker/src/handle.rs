//! Reading and steering the breaker from outside: per-key snapshots, manual
//! control, and the transitions it reports.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use palisade_core::Key;

use crate::state::Shared;
use crate::window::WindowCounts;

/// The state of one key's circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through and are counted.
    Closed,
    /// Calls fail fast with [`CircuitOpen`](crate::error::CircuitOpen) until the break ends.
    Open,
    /// The break ended: a few probes go through, the rest fail fast.
    HalfOpen,
    /// Held open by hand ([`BreakerHandle::isolate`]) until closed by hand.
    Isolated,
}

impl CircuitState {
    /// A short stable name for events and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::Isolated => "isolated",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a circuit changed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransitionReason {
    /// Closed → open: too many failures in a row.
    ConsecutiveFailures,
    /// Closed → open: the failure ratio over the window reached its threshold.
    FailureRatio,
    /// Closed → open: the slow-call ratio over the window reached its threshold.
    SlowCallRatio,
    /// Half-open → open: a probe failed (or was slow).
    ProbeFailed,
    /// Half-open → closed: every probe succeeded.
    ProbesSucceeded,
    /// Open → half-open: the break ended and a call arrived.
    BreakElapsed,
    /// → isolated: [`BreakerHandle::isolate`].
    Isolated,
    /// → closed: [`BreakerHandle::close`].
    ManualClose,
    /// → open: another instance holds the key open (through the backend).
    Remote,
}

impl TransitionReason {
    /// A short stable name for events and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::FailureRatio => "failure_ratio",
            Self::SlowCallRatio => "slow_call_ratio",
            Self::ProbeFailed => "probe_failed",
            Self::ProbesSucceeded => "probes_succeeded",
            Self::BreakElapsed => "break_elapsed",
            Self::Isolated => "isolated",
            Self::ManualClose => "manual_close",
            Self::Remote => "remote",
        }
    }
}

/// One state change of one key's circuit, as given to
/// [`Builder::on_transition`](crate::Builder::on_transition) and emitted as the
/// [`BREAKER_STATE_CHANGED`](palisade_core::events::BREAKER_STATE_CHANGED) event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The key whose circuit changed.
    pub key: Key,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// Why.
    pub reason: TransitionReason,
    /// How long the circuit stays open, for transitions to open.
    pub break_duration: Option<Duration>,
    /// The generation entered; results of calls admitted under an older
    /// generation are ignored.
    pub generation: u64,
}

/// A point-in-time view of one key's circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeySnapshot {
    /// The state.
    pub state: CircuitState,
    /// The generation: it grows by one at every transition.
    pub generation: u64,
    /// The calls in the ratio window now (cleared when the circuit closes).
    pub window: WindowCounts,
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// Half-open probes in flight.
    pub probes_in_flight: u32,
    /// Calls that did not fail, since the key was created.
    pub successes: u64,
    /// Calls that failed, since the key was created.
    pub failures: u64,
    /// Slow calls, since the key was created.
    pub slow: u64,
    /// Calls refused without reaching the upstream, since the key was created.
    pub rejected: u64,
    /// Times the circuit opened, since the key was created.
    pub opened: u64,
    /// How much of the break is left, while open: zero once the break is
    /// over and no call has arrived yet to probe.
    pub open_for: Option<Duration>,
}

/// Reads and controls a breaker layer's per-key state. Get one from
/// [`BreakerLayer::handle`](crate::BreakerLayer::handle) or
/// [`Breaker::handle`](crate::Breaker::handle); clones share the same state
/// as the layer and every service it made.
#[derive(Clone)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("keys", &self.shared.map.len())
            .finish()
    }
}

impl BreakerHandle {
    pub(crate) const fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The snapshot of `key`, if the breaker holds state for it. Reading a
    /// key counts as a use of it for idle eviction; [`snapshot`](Self::snapshot)
    /// does not.
    pub fn state(&self, key: &Key) -> Option<KeySnapshot> {
        self.shared.find(key).map(|s| s.snapshot())
    }

    /// A snapshot of every key held.
    pub fn snapshot(&self) -> Vec<(Key, KeySnapshot)> {
        self.shared
            .map
            .snapshot()
            .into_iter()
            .map(|(k, s)| (k, s.snapshot()))
            .collect()
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.shared.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.shared.map.is_empty()
    }

    /// Isolates `key` (Polly's `IsolateAsync`, a forced open): every call
    /// fails fast until [`close`](Self::close) or [`reset`](Self::reset). The
    /// key is kept however long it stays idle.
    ///
    /// This instance only: a shared backend is not told.
    pub fn isolate(&self, key: &Key) {
        let state = self.shared.key_state(key);
        self.shared.pin(key, state.clone());
        state.isolate();
    }

    /// Forces `key` closed (Polly's `CloseAsync`), whatever its state: its
    /// window, failure streak and break growth start afresh. Returns whether
    /// the breaker held state for the key.
    ///
    /// This instance only: a shared backend is not told.
    pub fn close(&self, key: &Key) -> bool {
        self.shared.unpin(key);
        match self.shared.find(key) {
            Some(state) => {
                state.close();
                true
            }
            None => false,
        }
    }

    /// Forgets `key` entirely, counters included; its next call starts a
    /// fresh, closed circuit. Returns whether the breaker held state for it.
    pub fn reset(&self, key: &Key) -> bool {
        let pinned = self.shared.unpin(key);
        self.shared.map.remove(key).is_some() || pinned
    }

    /// Evicts every key idle for longer than the idle timeout now, rather
    /// than at the next sweep. Returns how many were evicted.
    pub fn evict_idle(&self) -> usize {
        self.shared.map.evict_idle()
    }
}
