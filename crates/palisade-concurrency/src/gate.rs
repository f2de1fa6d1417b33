//! A FIFO semaphore whose limit can change while permits are out.
//!
//! tokio's `Semaphore` is FIFO too, but shrinking it while permits are held
//! needs a debt ledger, and it cannot say how many tasks wait. Here the limit,
//! the count in flight, the queue and the adaptive algorithm share one small
//! mutex, so a sample, a limit change and the grants it allows happen
//! together. The uncontended path is one lock and one unlock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use crate::limit::{Algorithm, Sample};

/// What an attempt to take a permit came to.
#[derive(Debug)]
pub(crate) enum Acquire {
    /// A permit was taken; `in_flight` counts it.
    Acquired { in_flight: usize },
    /// No permit now; the waiter is queued at position `queued`.
    Queued {
        waiter: Arc<Waiter>,
        queued: usize,
        in_flight: usize,
    },
    /// No permit now and the queue is full.
    QueueFull,
    /// No permit now and the caller may not wait.
    WouldWait,
}

/// One queued request.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    slot: Mutex<WaiterSlot>,
}

#[derive(Debug, Default)]
struct WaiterSlot {
    /// `Some(in_flight)` once a permit was handed to this waiter.
    granted: Option<usize>,
    waker: Option<Waker>,
}

impl Waiter {
    fn slot(&self) -> MutexGuard<'_, WaiterSlot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State {
    limit: usize,
    in_flight: usize,
    peak: usize,
    waiters: VecDeque<Arc<Waiter>>,
    algorithm: Algorithm,
}

/// A point-in-time view of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateView {
    pub(crate) limit: usize,
    pub(crate) in_flight: usize,
    pub(crate) queued: usize,
    pub(crate) peak: usize,
}

pub(crate) struct Gate {
    state: Mutex<State>,
    adaptive: bool,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate").field("view", &self.view()).finish()
    }
}

/// Wakers collected under the lock and woken after it is released, so a
/// woken task does not immediately contend for the lock we hold. One waker,
/// the common case, needs no allocation.
#[derive(Default)]
struct Wakeups {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakeups {
    fn push(&mut self, w: Waker) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    fn wake(self) {
        if let Some(w) = self.first {
            w.wake();
        }
        for w in self.rest {
            w.wake();
        }
    }
}

impl Gate {
    pub(crate) fn new(algorithm: Algorithm) -> Self {
        Self {
            adaptive: algorithm.is_adaptive(),
            state: Mutex::new(State {
                limit: algorithm.limit(),
                in_flight: 0,
                peak: 0,
                waiters: VecDeque::new(),
                algorithm,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) const fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// Takes a permit if one is free and nobody waits; never queues.
    pub(crate) fn try_acquire(&self) -> Option<usize> {
        let mut st = self.lock();
        Self::take_free(&mut st)
    }

    fn take_free(st: &mut State) -> Option<usize> {
        // Waiters first: a newcomer must not overtake the queue (FIFO).
        if st.waiters.is_empty() && st.in_flight < st.limit {
            st.in_flight += 1;
            st.peak = st.peak.max(st.in_flight);
            Some(st.in_flight)
        } else {
            None
        }
    }

    /// Takes a permit, or queues for one when `may_wait` and the queue has
    /// room.
    pub(crate) fn acquire(&self, max_queue: usize, may_wait: bool) -> Acquire {
        let mut st = self.lock();
        if let Some(in_flight) = Self::take_free(&mut st) {
            return Acquire::Acquired { in_flight };
        }
        if st.waiters.len() >= max_queue {
            return Acquire::QueueFull;
        }
        if !may_wait {
            return Acquire::WouldWait;
        }
        let waiter = Arc::new(Waiter::default());
        st.waiters.push_back(waiter.clone());
        Acquire::Queued {
            waiter,
            queued: st.waiters.len(),
            in_flight: st.in_flight,
        }
    }

    /// Whether `waiter` has been handed a permit; registers the waker if not.
    pub(crate) fn poll_granted(waiter: &Waiter, cx: &mut Context<'_>) -> Poll<usize> {
        let mut slot = waiter.slot();
        match slot.granted {
            Some(in_flight) => Poll::Ready(in_flight),
            None => {
                match &mut slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    /// A queued request gave up (timed out or was dropped). If a permit had
    /// already been handed to it, the permit passes to the next waiter.
    pub(crate) fn cancel(&self, waiter: &Arc<Waiter>) {
        let mut wake = Wakeups::default();
        {
            let mut st = self.lock();
            let granted = waiter.slot().granted.is_some();
            if granted {
                st.in_flight -= 1;
                Self::grant(&mut st, &mut wake);
            } else if let Some(pos) = st.waiters.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                st.waiters.remove(pos);
            }
        }
        wake.wake();
    }

    /// Returns a permit.
    pub(crate) fn release(&self) {
        let mut wake = Wakeups::default();
        {
            let mut st = self.lock();
            st.in_flight -= 1;
            Self::grant(&mut st, &mut wake);
        }
        wake.wake();
    }

    fn grant(st: &mut State, wake: &mut Wakeups) {
        while st.in_flight < st.limit {
            let Some(waiter) = st.waiters.pop_front() else {
                break;
            };
            st.in_flight += 1;
            st.peak = st.peak.max(st.in_flight);
            let mut slot = waiter.slot();
            slot.granted = Some(st.in_flight);
            if let Some(w) = slot.waker.take() {
                wake.push(w);
            }
        }
    }

    /// Feeds one sample to the adaptive algorithm. Returns `(from, to)` when
    /// the limit changed; a raise hands permits to waiters at once.
    pub(crate) fn sample(&self, sample: &Sample) -> Option<(usize, usize)> {
        let mut wake = Wakeups::default();
        let change = {
            let mut st = self.lock();
            let from = st.limit;
            let to = st.algorithm.update(sample);
            if to == from {
                None
            } else {
                st.limit = to;
                Self::grant(&mut st, &mut wake);
                Some((from, to))
            }
        };
        wake.wake();
        change
    }

    pub(crate) fn view(&self) -> GateView {
        let st = self.lock();
        GateView {
            limit: st.limit,
            in_flight: st.in_flight,
            queued: st.waiters.len(),
            peak: st.peak,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.lock().limit
    }

    /// Starts a new peak measurement from what is in flight now.
    pub(crate) fn reset_peak(&self) {
        let mut st = self.lock();
        st.peak = st.in_flight;
    }

    /// Whether nothing is in flight or queued.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        let st = self.lock();
        st.in_flight == 0 && st.waiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Limit;
    use std::task::Waker;

    fn gate(n: usize) -> Gate {
        Gate::new(Algorithm::new(&Limit::fixed(n)))
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn grants_in_fifo_order() {
        let g = gate(1);
        assert!(g.try_acquire().is_some());
        let mut ws = Vec::new();
        for _ in 0..3 {
            match g.acquire(10, true) {
                Acquire::Queued { waiter, .. } => ws.push(waiter),
                other => panic!("{other:?}"),
            }
        }
        // A newcomer may not overtake the queue even when a permit frees up.
        g.release();
        assert!(g.try_acquire().is_none());
        for (i, w) in ws.iter().enumerate() {
            assert!(Gate::poll_granted(w, &mut cx()).is_ready(), "waiter {i}");
            for later in &ws[i + 1..] {
                assert!(Gate::poll_granted(later, &mut cx()).is_pending());
            }
            g.release();
        }
        assert!(g.is_idle());
    }

    #[test]
    fn cancelling_a_granted_waiter_passes_the_permit_on() {
        let g = gate(1);
        assert!(g.try_acquire().is_some());
        let Acquire::Queued { waiter: a, .. } = g.acquire(10, true) else {
            panic!()
        };
        let Acquire::Queued { waiter: b, .. } = g.acquire(10, true) else {
            panic!()
        };
        g.release(); // granted to a
        g.cancel(&a); // a gives up without using it
        assert!(Gate::poll_granted(&b, &mut cx()).is_ready());
        g.release();
        assert!(g.is_idle());
    }

    #[test]
    fn queue_bound_and_no_wait() {
        let g = gate(1);
        assert!(g.try_acquire().is_some());
        assert!(matches!(g.acquire(0, true), Acquire::QueueFull));
        assert!(matches!(g.acquire(1, false), Acquire::WouldWait));
        assert!(matches!(
            g.acquire(1, true),
            Acquire::Queued { queued: 1, .. }
        ));
        assert!(matches!(g.acquire(1, true), Acquire::QueueFull));
    }
}
