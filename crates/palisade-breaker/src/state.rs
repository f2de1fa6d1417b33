//! Per-key circuit state and its transitions.
//!
//! The state and its generation live in one atomic word, so that admission
//! in the closed state and a fast fail in the open state take no lock. Every
//! transition happens under the key's mutex and bumps the generation; a
//! result carries the generation it was admitted under and is ignored when
//! the generation has moved on, so a late result from before a transition
//! can neither close nor re-open the circuit.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;
use palisade_core::error::CircuitOpen;
use palisade_core::keyed::KeyedMap;
use palisade_core::{Class, Key};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::backend::{BackendFuture, BreakerStateBackend, SharedState};
use crate::config::{BreakerConfig, Listener};
use crate::handle::{CircuitState, KeySnapshot, Transition, TransitionReason};
use crate::window::Sliding;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const ISOLATED: u64 = 3;
const STATE_BITS: u32 = 2;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

const fn pack(generation: u64, state: u64) -> u64 {
    (generation << STATE_BITS) | state
}

const fn generation(word: u64) -> u64 {
    word >> STATE_BITS
}

const fn circuit(state: u64) -> CircuitState {
    match state & STATE_MASK {
        CLOSED => CircuitState::Closed,
        OPEN => CircuitState::Open,
        HALF_OPEN => CircuitState::HalfOpen,
        _ => CircuitState::Isolated,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What every key of one layer shares: the configuration, the clock's epoch,
/// the backend and the listener.
pub(crate) struct Runtime {
    pub(crate) cfg: BreakerConfig,
    epoch: Instant,
    seed: u64,
    slow_ns: Option<u64>,
    needs_ratio: bool,
    time_window: bool,
    backend: Option<Arc<dyn BreakerStateBackend>>,
    listener: Option<Listener>,
}

impl Runtime {
    pub(crate) fn new(
        cfg: BreakerConfig,
        backend: Option<Arc<dyn BreakerStateBackend>>,
        listener: Option<Listener>,
    ) -> Self {
        let seed = cfg
            .seed
            .unwrap_or_else(|| std::collections::hash_map::RandomState::new().hash_one(0u8));
        Self {
            slow_ns: cfg.slow_calls.map(|s| nanos(s.threshold)),
            needs_ratio: cfg.failure_ratio.is_some() || cfg.slow_calls.is_some(),
            time_window: matches!(cfg.window, crate::Window::Time { .. }),
            cfg,
            epoch: Instant::now(),
            seed,
            backend,
            listener,
        }
    }

    fn now_ns(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.epoch))
    }
}

/// A layer's state, shared by the layer, its services and their clones.
pub(crate) struct Shared {
    pub(crate) rt: Arc<Runtime>,
    pub(crate) map: KeyedMap<KeyState>,
    /// Isolated keys, held here so that eviction cannot lift an isolation.
    pinned: Mutex<HashMap<Key, Arc<KeyState>>>,
}

impl Shared {
    pub(crate) fn new(rt: Runtime) -> Self {
        Self {
            map: KeyedMap::new(rt.cfg.keyed),
            rt: Arc::new(rt),
            pinned: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn key_state(&self, key: &Key) -> Arc<KeyState> {
        self.map
            .get_or_insert_with(key, || KeyState::new(key.clone(), self.rt.clone()))
    }

    pub(crate) fn find(&self, key: &Key) -> Option<Arc<KeyState>> {
        self.map
            .get(key)
            .or_else(|| self.pinned().get(key).cloned())
    }

    fn pinned(&self) -> MutexGuard<'_, HashMap<Key, Arc<KeyState>>> {
        self.pinned.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn pin(&self, key: &Key, state: Arc<KeyState>) {
        self.pinned().insert(key.clone(), state);
    }

    pub(crate) fn unpin(&self, key: &Key) -> bool {
        self.pinned().remove(key).is_some()
    }
}

/// What a call was admitted as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    generation: u64,
    pub(crate) probe: bool,
    start_ns: u64,
}

struct Core {
    window: Sliding,
    consecutive: u32,
    probes_in_flight: u32,
    probes_succeeded: u32,
    /// Openings in a row, for break growth; reset when the circuit closes.
    openings: u32,
    opened: u64,
    successes: u64,
    failures: u64,
    slow: u64,
    rng: SmallRng,
}

/// A transition decided under the lock, reported after it is released.
struct Pending {
    from: u64,
    to: u64,
    reason: TransitionReason,
    break_duration: Option<Duration>,
    generation: u64,
}

/// One key's circuit.
pub(crate) struct KeyState {
    key: Key,
    rt: Arc<Runtime>,
    /// `generation << 2 | state`.
    word: AtomicU64,
    /// While open: the end of the break, in ns since the runtime's epoch.
    open_until: AtomicU64,
    rejected: AtomicU64,
    /// When the backend may next be read, in ns since the epoch.
    next_sync: AtomicU64,
    core: Mutex<Core>,
    /// This key's metric keys, built on first use: a fast-fail while open
    /// then records its counter without allocating (a label built per call
    /// cost four allocations on the reject path).
    #[cfg(feature = "metrics")]
    metric_keys: std::sync::OnceLock<MetricKeys>,
}

/// The `metrics` keys one circuit records under, labelled with its key.
#[cfg(feature = "metrics")]
struct MetricKeys {
    rejected: metrics::Key,
    state: metrics::Key,
}

#[cfg(feature = "metrics")]
static METADATA: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl KeyState {
    fn new(key: Key, rt: Arc<Runtime>) -> Self {
        // A fixed-key hasher, so a seeded layer gives each key the same
        // jitter sequence on every run.
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        let rng = SmallRng::seed_from_u64(rt.seed ^ h.finish());
        Self {
            core: Mutex::new(Core {
                window: Sliding::new(rt.cfg.window),
                consecutive: 0,
                probes_in_flight: 0,
                probes_succeeded: 0,
                openings: 0,
                opened: 0,
                successes: 0,
                failures: 0,
                slow: 0,
                rng,
            }),
            key,
            rt,
            word: AtomicU64::new(pack(0, CLOSED)),
            open_until: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            next_sync: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metric_keys: std::sync::OnceLock::new(),
        }
    }

    /// Registered through the recorder on every use (not cached as
    /// handles), so a recorder installed after the first call still sees
    /// every later one.
    #[cfg(feature = "metrics")]
    fn metric_keys(&self) -> &MetricKeys {
        self.metric_keys.get_or_init(|| {
            let labels = || vec![metrics::Label::new("server.address", self.key.to_string())];
            MetricKeys {
                rejected: metrics::Key::from_parts(
                    palisade_core::events::metrics::BREAKER_REJECTED,
                    labels(),
                ),
                state: metrics::Key::from_parts(
                    palisade_core::events::metrics::BREAKER_STATE,
                    labels(),
                ),
            }
        })
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ticket(&self, generation: u64, probe: bool, now_ns: Option<u64>) -> Ticket {
        let start_ns = match (self.rt.slow_ns, now_ns) {
            (None, _) => 0,
            (Some(_), Some(now)) => now,
            (Some(_), None) => self.rt.now_ns(),
        };
        Ticket {
            generation,
            probe,
            start_ns,
        }
    }

    /// Admits a call or refuses it. Lock-free while closed, and while open
    /// before the break ends.
    pub(crate) fn admit(&self) -> Result<Ticket, CircuitOpen> {
        let word = self.word.load(Ordering::Acquire);
        match word & STATE_MASK {
            CLOSED => Ok(self.ticket(generation(word), false, None)),
            OPEN => {
                let now = self.rt.now_ns();
                let until = self.open_until.load(Ordering::Acquire);
                if now < until {
                    return Err(self.reject(Some(until - now)));
                }
                self.admit_locked(now)
            }
            HALF_OPEN => self.admit_locked(self.rt.now_ns()),
            _ => Err(self.reject(None)),
        }
    }

    fn admit_locked(&self, now: u64) -> Result<Ticket, CircuitOpen> {
        let mut pending = None;
        let admitted = {
            let mut core = self.lock();
            let word = self.word.load(Ordering::Acquire);
            let generation = generation(word);
            match word & STATE_MASK {
                CLOSED => Ok(self.ticket(generation, false, Some(now))),
                OPEN => {
                    let until = self.open_until.load(Ordering::Acquire);
                    if now < until {
                        Err(Some(until - now))
                    } else {
                        let next = generation + 1;
                        core.probes_in_flight = 1;
                        core.probes_succeeded = 0;
                        self.word.store(pack(next, HALF_OPEN), Ordering::Release);
                        pending = Some(Pending {
                            from: OPEN,
                            to: HALF_OPEN,
                            reason: TransitionReason::BreakElapsed,
                            break_duration: None,
                            generation: next,
                        });
                        Ok(self.ticket(next, true, Some(now)))
                    }
                }
                HALF_OPEN => {
                    if core.probes_in_flight + core.probes_succeeded < self.rt.cfg.half_open_probes
                    {
                        core.probes_in_flight += 1;
                        Ok(self.ticket(generation, true, Some(now)))
                    } else {
                        Err(None)
                    }
                }
                _ => Err(None),
            }
        };
        if let Some(p) = pending {
            self.emit(p);
        }
        admitted.map_err(|retry_after| self.reject(retry_after))
    }

    fn reject(&self, retry_after_ns: Option<u64>) -> CircuitOpen {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let retry_after = retry_after_ns.map(Duration::from_nanos);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            target: palisade_core::events::TARGET,
            key = %self.key,
            retry_after_ms = retry_after.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "{}",
            palisade_core::events::BREAKER_REJECTED,
        );
        #[cfg(feature = "metrics")]
        metrics::with_recorder(|r| r.register_counter(&self.metric_keys().rejected, &METADATA))
            .increment(1);
        CircuitOpen::new(retry_after)
    }

    /// Records a call's outcome. Returns the state to publish to the backend
    /// when the outcome changed the circuit and a backend is set.
    pub(crate) fn record(&self, ticket: &Ticket, class: &Class) -> Option<SharedState> {
        let rt = &*self.rt;
        let refused = class.is_neutral();
        let failed = class.is_failure();
        let now = if rt.slow_ns.is_some() || self.window_needs_time() {
            rt.now_ns()
        } else {
            0
        };
        let slow = rt
            .slow_ns
            .is_some_and(|t| now.saturating_sub(ticket.start_ns) >= t);
        let mut pending = None;
        {
            let mut core = self.lock();
            if !refused {
                if failed {
                    core.failures += 1;
                } else {
                    core.successes += 1;
                }
                core.slow += u64::from(slow);
            }
            let word = self.word.load(Ordering::Acquire);
            if generation(word) != ticket.generation {
                // Admitted before a transition: stale, whatever it says.
                return None;
            }
            match word & STATE_MASK {
                CLOSED if !refused => {
                    core.window.record(now, failed, slow);
                    // Only a success breaks a streak: a 429 or another 4xx
                    // says nothing of the upstream's health, so it neither
                    // counts as a failure nor resets the count.
                    if failed {
                        core.consecutive += 1;
                    } else if class.is_success() {
                        core.consecutive = 0;
                    }
                    if let Some(reason) = self.should_trip(&core, now) {
                        pending = Some(self.open_locked(&mut core, word, reason, class));
                    }
                }
                HALF_OPEN => {
                    core.probes_in_flight = core.probes_in_flight.saturating_sub(1);
                    if refused {
                        // A layer below refused the probe: it never reached
                        // the upstream, so it says nothing either way.
                    } else if failed || slow {
                        pending = Some(self.open_locked(
                            &mut core,
                            word,
                            TransitionReason::ProbeFailed,
                            class,
                        ));
                    } else {
                        core.probes_succeeded += 1;
                        if core.probes_succeeded >= rt.cfg.half_open_probes {
                            pending = Some(self.close_locked(
                                &mut core,
                                word,
                                TransitionReason::ProbesSucceeded,
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        let p = pending?;
        let publish = match p.to {
            OPEN => p
                .break_duration
                .map(|remaining| SharedState::Open { remaining }),
            CLOSED => Some(SharedState::Closed),
            _ => None,
        };
        self.emit(p);
        publish.filter(|_| rt.backend.is_some())
    }

    fn window_needs_time(&self) -> bool {
        self.rt.time_window
    }

    /// Gives back a probe's slot when its call ended without a result
    /// (dropped, cancelled).
    pub(crate) fn release(&self, ticket: &Ticket) {
        if !ticket.probe {
            return;
        }
        let mut core = self.lock();
        let word = self.word.load(Ordering::Acquire);
        if generation(word) == ticket.generation && word & STATE_MASK == HALF_OPEN {
            core.probes_in_flight = core.probes_in_flight.saturating_sub(1);
        }
    }

    fn should_trip(&self, core: &Core, now: u64) -> Option<TransitionReason> {
        let cfg = &self.rt.cfg;
        if cfg
            .consecutive_failures
            .is_some_and(|n| core.consecutive >= n)
        {
            return Some(TransitionReason::ConsecutiveFailures);
        }
        if !self.rt.needs_ratio {
            return None;
        }
        let c = core.window.counts(now);
        if c.calls == 0 || c.calls < u64::from(cfg.minimum_throughput) {
            return None;
        }
        // Both sides are correctly rounded, so a decimal ratio reached
        // exactly (7 of 10 against 0.7) compares equal.
        let calls = c.calls as f64;
        if cfg
            .failure_ratio
            .is_some_and(|r| c.failures as f64 / calls >= r)
        {
            return Some(TransitionReason::FailureRatio);
        }
        if cfg
            .slow_calls
            .is_some_and(|s| c.slow as f64 / calls >= s.ratio)
        {
            return Some(TransitionReason::SlowCallRatio);
        }
        None
    }

    fn open_locked(
        &self,
        core: &mut Core,
        word: u64,
        reason: TransitionReason,
        class: &Class,
    ) -> Pending {
        let cfg = &self.rt.cfg;
        core.openings = core.openings.saturating_add(1);
        core.opened += 1;
        core.consecutive = 0;
        // Probes of the half-open state this replaces end under a stale
        // generation and will not decrement: they no longer count.
        core.probes_in_flight = 0;
        core.probes_succeeded = 0;
        let unit: f64 = core.rng.random();
        let mut brk = cfg.break_for(core.openings, unit);
        if cfg.honor_retry_after
            && let Class::ServerError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                retry_after: Some(ra),
            } = class
        {
            brk = brk.max((*ra).min(cfg.max_break_duration));
        }
        let next = generation(word) + 1;
        let until = self.rt.now_ns().saturating_add(nanos(brk));
        self.open_until.store(until, Ordering::Release);
        self.word.store(pack(next, OPEN), Ordering::Release);
        Pending {
            from: word & STATE_MASK,
            to: OPEN,
            reason,
            break_duration: Some(brk),
            generation: next,
        }
    }

    fn close_locked(&self, core: &mut Core, word: u64, reason: TransitionReason) -> Pending {
        core.window.clear();
        core.consecutive = 0;
        core.openings = 0;
        core.probes_in_flight = 0;
        core.probes_succeeded = 0;
        let next = generation(word) + 1;
        self.word.store(pack(next, CLOSED), Ordering::Release);
        Pending {
            from: word & STATE_MASK,
            to: CLOSED,
            reason,
            break_duration: None,
            generation: next,
        }
    }

    pub(crate) fn isolate(&self) {
        let pending = {
            let _core = self.lock();
            let word = self.word.load(Ordering::Acquire);
            if word & STATE_MASK == ISOLATED {
                return;
            }
            let next = generation(word) + 1;
            self.word.store(pack(next, ISOLATED), Ordering::Release);
            Pending {
                from: word & STATE_MASK,
                to: ISOLATED,
                reason: TransitionReason::Isolated,
                break_duration: None,
                generation: next,
            }
        };
        self.emit(pending);
    }

    pub(crate) fn close(&self) {
        let pending = {
            let mut core = self.lock();
            let word = self.word.load(Ordering::Acquire);
            if word & STATE_MASK == CLOSED {
                return;
            }
            self.close_locked(&mut core, word, TransitionReason::ManualClose)
        };
        self.emit(pending);
    }

    /// Starts a read of the backend if one is set and a sync is due. At most
    /// one call per sync interval wins the race to do it.
    pub(crate) fn claim_sync(&self) -> Option<BackendFuture<SharedState>> {
        let backend = self.rt.backend.as_ref()?;
        let now = self.rt.now_ns();
        let next = self.next_sync.load(Ordering::Relaxed);
        if now < next {
            return None;
        }
        let due = now.saturating_add(nanos(self.rt.cfg.sync_interval));
        self.next_sync
            .compare_exchange(next, due, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(backend.fetch(&self.key))
    }

    pub(crate) fn publish(&self, state: SharedState) -> Option<BackendFuture<()>> {
        Some(self.rt.backend.as_ref()?.publish(&self.key, state))
    }

    /// Applies what the backend says: another instance's open state opens
    /// this key, or lengthens its break.
    pub(crate) fn apply_remote(&self, state: SharedState) {
        let SharedState::Open { remaining } = state else {
            return;
        };
        if remaining.is_zero() {
            return;
        }
        let pending = {
            let mut core = self.lock();
            let until = self.rt.now_ns().saturating_add(nanos(remaining));
            let word = self.word.load(Ordering::Acquire);
            match word & STATE_MASK {
                CLOSED | HALF_OPEN => {
                    let next = generation(word) + 1;
                    core.probes_in_flight = 0;
                    core.probes_succeeded = 0;
                    core.consecutive = 0;
                    self.open_until.store(until, Ordering::Release);
                    self.word.store(pack(next, OPEN), Ordering::Release);
                    Pending {
                        from: word & STATE_MASK,
                        to: OPEN,
                        reason: TransitionReason::Remote,
                        break_duration: Some(remaining),
                        generation: next,
                    }
                }
                OPEN => {
                    self.open_until.fetch_max(until, Ordering::AcqRel);
                    return;
                }
                _ => return,
            }
        };
        self.emit(pending);
    }

    pub(crate) fn backend_failed(&self, op: &'static str, err: &palisade_core::BoxError) {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            target: palisade_core::events::TARGET,
            key = %self.key,
            backend = "breaker",
            policy = "local",
            op,
            reason = %err,
            "{}",
            palisade_core::events::BACKEND_FALLBACK,
        );
        #[cfg(not(feature = "tracing"))]
        let _ = (op, err);
    }

    fn emit(&self, p: Pending) {
        let t = Transition {
            key: self.key.clone(),
            from: circuit(p.from),
            to: circuit(p.to),
            reason: p.reason,
            break_duration: p.break_duration,
            generation: p.generation,
        };
        #[cfg(feature = "tracing")]
        tracing::info!(
            target: palisade_core::events::TARGET,
            key = %t.key,
            from = t.from.as_str(),
            to = t.to.as_str(),
            reason = t.reason.as_str(),
            break_ms = t.break_duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            generation = t.generation,
            "{}",
            palisade_core::events::BREAKER_STATE_CHANGED,
        );
        #[cfg(feature = "metrics")]
        metrics::with_recorder(|r| r.register_gauge(&self.metric_keys().state, &METADATA)).set(
            match t.to {
                CircuitState::Closed => 0.0,
                CircuitState::Open => 1.0,
                CircuitState::HalfOpen => 2.0,
                CircuitState::Isolated => 3.0,
            },
        );
        if let Some(listener) = &self.rt.listener {
            listener(&t);
        }
    }

    pub(crate) fn snapshot(&self) -> KeySnapshot {
        let now = self.rt.now_ns();
        let core = self.lock();
        let word = self.word.load(Ordering::Acquire);
        let state = circuit(word);
        KeySnapshot {
            state,
            generation: generation(word),
            window: core.window.counts(now),
            consecutive_failures: core.consecutive,
            probes_in_flight: core.probes_in_flight,
            successes: core.successes,
            failures: core.failures,
            slow: core.slow,
            rejected: self.rejected.load(Ordering::Relaxed),
            opened: core.opened,
            open_for: (state == CircuitState::Open).then(|| {
                Duration::from_nanos(self.open_until.load(Ordering::Acquire).saturating_sub(now))
            }),
        }
    }
}
