use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;
use tower_layer::Layer;

use crate::config::{ChaosBuilder, Fault, FaultKind};
use crate::service::Chaos;

/// Client-side fault injection: wraps a service in [`Chaos`].
///
/// Built with [`ChaosLayer::builder`]. The layer holds its generator and its
/// counter behind an `Arc`: every service it produces, and every clone of
/// those, draws from the same seeded sequence, so the faults of a run depend
/// only on the seed and the order of calls.
#[derive(Clone)]
pub struct ChaosLayer {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) rate: f64,
    pub(crate) faults: Vec<(Fault, u32)>,
    pub(crate) total_weight: u64,
    pub(crate) rng: Mutex<SmallRng>,
    pub(crate) injected: AtomicU64,
}

/// The fault drawn for one call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Draw {
    Latency(Duration),
    Other(FaultKind),
}

impl Shared {
    /// Draws whether this call gets a fault, and which.
    pub(crate) fn draw(&self) -> Option<Draw> {
        if self.rate <= 0.0 {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        if rng.random::<f64>() >= self.rate {
            return None;
        }
        let mut pick = rng.random_range(0..self.total_weight);
        let fault = self.faults.iter().find_map(|(f, w)| {
            let w = u64::from(*w);
            if pick < w {
                Some(f.kind)
            } else {
                pick -= w;
                None
            }
        })?;
        let draw = match fault {
            FaultKind::Latency { min, max } => {
                let (lo, hi) = (nanos(min), nanos(max));
                Draw::Latency(Duration::from_nanos(rng.random_range(lo..=hi)))
            }
            other => Draw::Other(other),
        };
        drop(rng);
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some(draw)
    }

    pub(crate) fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl ChaosLayer {
    /// A builder; see [`ChaosBuilder`].
    pub fn builder() -> ChaosBuilder {
        ChaosBuilder::default()
    }

    /// How many faults the layer's services have injected so far.
    pub fn injected(&self) -> u64 {
        self.shared.injected()
    }
}

impl fmt::Debug for ChaosLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("injection_rate", &self.shared.rate)
            .field("faults", &self.shared.faults)
            .field("injected", &self.shared.injected())
            .finish()
    }
}

impl<S> Layer<S> for ChaosLayer {
    type Service = Chaos<S>;

    fn layer(&self, inner: S) -> Chaos<S> {
        Chaos::from_parts(inner, self.shared.clone())
    }
}
