//! The limit itself: fixed, or adaptive with AIMD, Gradient2 or Vegas.
//!
//! Each key gets its own instance of the algorithm, created from the
//! configuration chosen here. Adaptive algorithms are fed one sample per
//! completed attempt: how long the attempt took from the moment it got its
//! permit to the moment its response head (or error) arrived, how many
//! requests were in flight when it started, and whether it was a *drop*.
//! The classifier ([`Classify`](palisade_core::Classify)) decides:
//!
//! | outcome | sample |
//! |---|---|
//! | overload signal ([`Class::is_overload_signal`](palisade_core::Class::is_overload_signal)): a 429, a 503, a timeout, a reset | a drop |
//! | success, or a client error (4xx other than 429) | an ordinary sample |
//! | the limiter's own rejections, and any local refusal ([`Class::Rejected`](palisade_core::Class::Rejected)) | none: the upstream never saw the request |
//! | a caller cancellation (the response future dropped before the head) | none: a caller giving up is not the upstream being slow |
//! | any other failure: a 500, a connect error, another transport error | none: a health signal for the circuit breaker, whose latency (often a fast failure) says nothing about queueing |
//!
//! Ignoring rejections and cancellations follows Netflix concurrency-limits
//! ([PR 146](https://github.com/Netflix/concurrency-limits/pull/146), "stop
//! treating cancelled as timeouts").
//!
//! A drop of a request sent before the limit's last drop-driven cut is not
//! counted again: it belongs to the overload episode the cut answered, as
//! TCP reacts to losses once per window. Without it a burst of 503s would
//! cut an AIMD limit once per response and collapse it.
//!
//! Every algorithm keeps its limit within `[min, max]`.
//!
//! The defaults are those of Netflix's
//! [concurrency-limits](https://github.com/Netflix/concurrency-limits)
//! (`AIMDLimit`, `Gradient2Limit`, `VegasLimit`); where palisade departs from
//! them the option's documentation says so.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ConfigError;

/// How the limit of each key is set.
///
/// ```
/// use palisade_concurrency::limit::{Aimd, Limit, Vegas};
///
/// let fixed = Limit::fixed(32);
/// let aimd: Limit = Aimd::new().min_limit(1).max_limit(64).into();
/// let vegas = Limit::from(Vegas::new());
/// assert!(!fixed.is_adaptive() && aimd.is_adaptive() && vegas.is_adaptive());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Limit {
    /// A fixed number of requests in flight.
    Fixed(usize),
    /// Additive increase, multiplicative decrease on drops.
    Aimd(Aimd),
    /// Netflix's Gradient2: the ratio of a long-term to the current latency.
    Gradient2(Gradient2),
    /// TCP Vegas: the queue estimated from the latency above the no-load latency.
    Vegas(Vegas),
}

impl Limit {
    /// A fixed limit of `n` requests in flight.
    pub const fn fixed(n: usize) -> Self {
        Self::Fixed(n)
    }

    /// Whether the limit adapts to samples.
    pub const fn is_adaptive(&self) -> bool {
        !matches!(self, Self::Fixed(_))
    }

    /// The limit a new key starts with.
    pub const fn initial(&self) -> usize {
        match self {
            Self::Fixed(n) => *n,
            Self::Aimd(a) => a.initial,
            Self::Gradient2(g) => g.initial,
            Self::Vegas(v) => v.initial,
        }
    }

    /// The algorithm's `[min, max]` bounds; a fixed limit is its own bounds.
    pub const fn bounds(&self) -> (usize, usize) {
        match self {
            Self::Fixed(n) => (*n, *n),
            Self::Aimd(a) => (a.min, a.max),
            Self::Gradient2(g) => (g.min, g.max),
            Self::Vegas(v) => (v.min, v.max),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self {
            Self::Fixed(0) => Err(ConfigError::new("the fixed limit must be at least 1")),
            Self::Fixed(_) => Ok(()),
            Self::Aimd(a) => {
                bounds("aimd", a.initial, a.min, a.max)?;
                if !(0.5..1.0).contains(&a.backoff_ratio) {
                    return Err(ConfigError::new(format!(
                        "aimd backoff_ratio must be in [0.5, 1.0), got {}",
                        a.backoff_ratio
                    )));
                }
                if a.timeout.is_zero() {
                    return Err(ConfigError::new("aimd timeout must be greater than zero"));
                }
                Ok(())
            }
            Self::Gradient2(g) => {
                bounds("gradient2", g.initial, g.min, g.max)?;
                if !(g.smoothing > 0.0 && g.smoothing <= 1.0) {
                    return Err(ConfigError::new(format!(
                        "gradient2 smoothing must be in (0, 1], got {}",
                        g.smoothing
                    )));
                }
                if !(g.rtt_tolerance >= 1.0 && g.rtt_tolerance.is_finite()) {
                    return Err(ConfigError::new(format!(
                        "gradient2 rtt_tolerance must be a finite number >= 1.0, got {}",
                        g.rtt_tolerance
                    )));
                }
                if g.long_window == 0 {
                    return Err(ConfigError::new("gradient2 long_window must be at least 1"));
                }
                if !(0.5..1.0).contains(&g.drop_backoff_ratio) {
                    return Err(ConfigError::new(format!(
                        "gradient2 drop_backoff_ratio must be in [0.5, 1.0), got {}",
                        g.drop_backoff_ratio
                    )));
                }
                Ok(())
            }
            Self::Vegas(v) => {
                bounds("vegas", v.initial, v.min, v.max)?;
                if !(v.smoothing > 0.0 && v.smoothing <= 1.0) {
                    return Err(ConfigError::new(format!(
                        "vegas smoothing must be in (0, 1], got {}",
                        v.smoothing
                    )));
                }
                if v.probe_multiplier == 0 {
                    return Err(ConfigError::new(
                        "vegas probe_multiplier must be at least 1",
                    ));
                }
                Ok(())
            }
        }
    }
}

fn bounds(name: &str, initial: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    if min == 0 {
        return Err(ConfigError::new(format!(
            "{name} min_limit must be at least 1"
        )));
    }
    if max < min {
        return Err(ConfigError::new(format!(
            "{name} max_limit ({max}) is below min_limit ({min})"
        )));
    }
    if initial < min || initial > max {
        return Err(ConfigError::new(format!(
            "{name} initial_limit ({initial}) is outside [min_limit, max_limit] = [{min}, {max}]"
        )));
    }
    Ok(())
}

impl Default for Limit {
    /// A fixed limit of 100 per key: the default connection limit of httpx
    /// (`max_connections`) and of aiohttp (`TCPConnector(limit=100)`).
    fn default() -> Self {
        Self::Fixed(100)
    }
}

impl From<Aimd> for Limit {
    fn from(a: Aimd) -> Self {
        Self::Aimd(a)
    }
}

impl From<Gradient2> for Limit {
    fn from(g: Gradient2) -> Self {
        Self::Gradient2(g)
    }
}

impl From<Vegas> for Limit {
    fn from(v: Vegas) -> Self {
        Self::Vegas(v)
    }
}

macro_rules! bounds_setters {
    () => {
        /// The limit a new key starts with.
        pub const fn initial_limit(mut self, n: usize) -> Self {
            self.initial = n;
            self
        }

        /// The lowest the limit may go. At least 1.
        pub const fn min_limit(mut self, n: usize) -> Self {
            self.min = n;
            self
        }

        /// The highest the limit may go.
        pub const fn max_limit(mut self, n: usize) -> Self {
            self.max = n;
            self
        }
    };
}

/// Additive increase, multiplicative decrease, as Netflix's `AIMDLimit`.
///
/// On a drop, or a sample slower than [`timeout`](Self::timeout), the limit
/// is multiplied by [`backoff_ratio`](Self::backoff_ratio) (rounded down).
/// On any other sample it grows by one, but only while at least half of it is
/// in use, so an idle client does not inflate its limit.
///
/// Defaults (Netflix `AIMDLimit`): initial 20, min 20, max 200, backoff ratio
/// 0.9, timeout 5 s. Note that with min = initial = 20 the default can only
/// grow; lower `min_limit` to let it back off below its start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aimd {
    initial: usize,
    min: usize,
    max: usize,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Aimd {
    /// AIMD with Netflix's defaults.
    pub const fn new() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }

    bounds_setters!();

    /// The factor the limit is multiplied by on a drop, in `[0.5, 1.0)`.
    /// Default 0.9 (Netflix); 0.5 halves it, as TCP Reno does.
    pub const fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A sample slower than this counts as a drop. Default 5 s (Netflix).
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl Default for Aimd {
    fn default() -> Self {
        Self::new()
    }
}

/// Netflix's `Gradient2Limit`: compares the latest latency with a long-term
/// exponential average of it.
///
/// `gradient = clamp(rtt_tolerance × long_rtt / rtt, 0.5, 1.0)`, then
/// `limit ← (1 − smoothing) × limit + smoothing × (gradient × limit + queue_size)`.
/// While latency stays within the tolerance the limit grows by about
/// `smoothing × queue_size` per sample; when latency climbs above it, the
/// limit shrinks. It does not grow while less than half of it is in use.
///
/// Defaults (Netflix `Gradient2Limit`): initial 20, min 20, max 200,
/// smoothing 0.2, RTT tolerance 1.5, queue size 4, long window 600 samples.
///
/// **Drops.** Netflix's Gradient2 ignores drops; palisade does not, because a
/// 429 or a 503 is the clearest overload signal an HTTP upstream gives. A drop
/// multiplies the limit by [`drop_backoff_ratio`](Self::drop_backoff_ratio)
/// (default 0.9, the ratio Netflix's `GradientLimit` adopted for drops in
/// PR 146), and its latency, which measures the failure rather than the
/// upstream's queue, is left out of the averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gradient2 {
    initial: usize,
    min: usize,
    max: usize,
    smoothing: f64,
    rtt_tolerance: f64,
    queue_size: usize,
    long_window: usize,
    drop_backoff_ratio: f64,
}

impl Gradient2 {
    /// Gradient2 with Netflix's defaults.
    pub const fn new() -> Self {
        Self {
            initial: 20,
            min: 20,
            max: 200,
            smoothing: 0.2,
            rtt_tolerance: 1.5,
            queue_size: 4,
            long_window: 600,
            drop_backoff_ratio: 0.9,
        }
    }

    bounds_setters!();

    /// How much of each new estimate is taken, in `(0, 1]`. Default 0.2.
    pub const fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// How much latency may rise above the long-term average before the
    /// limit shrinks, at least 1.0. Default 1.5: a 50 % rise is tolerated.
    pub const fn rtt_tolerance(mut self, tolerance: f64) -> Self {
        self.rtt_tolerance = tolerance;
        self
    }

    /// How much headroom is added to the estimate on each sample. Default 4.
    pub const fn queue_size(mut self, n: usize) -> Self {
        self.queue_size = n;
        self
    }

    /// The window, in samples, of the long-term latency average. Default 600.
    pub const fn long_window(mut self, samples: usize) -> Self {
        self.long_window = samples;
        self
    }

    /// The factor the limit is multiplied by on a drop, in `[0.5, 1.0)`.
    /// Default 0.9. A palisade addition; see the type's docs.
    pub const fn drop_backoff_ratio(mut self, ratio: f64) -> Self {
        self.drop_backoff_ratio = ratio;
        self
    }
}

impl Default for Gradient2 {
    fn default() -> Self {
        Self::new()
    }
}

/// Netflix's `VegasLimit`, after TCP Vegas: estimates the upstream's queue as
/// `limit × (1 − rtt_noload / rtt)` and keeps it between α and β.
///
/// With `L = max(1, ⌊log10 limit⌋)`: α = 3L, β = 6L. A queue of at most L
/// grows the limit by β; below α it grows by L; above β it shrinks by L; a
/// drop shrinks it by L. It does not grow while less than half of it is in
/// use. `rtt_noload` is the lowest latency seen, re-probed every
/// `probe_multiplier × limit` samples (with a jitter in `[0.5, 1)`, drawn from
/// a seeded generator so runs are reproducible) so it can follow an upstream
/// that became slower for good.
///
/// Defaults (Netflix `VegasLimit`): initial 20, max 1000, probe multiplier
/// 30. Netflix has no minimum other than 1; palisade's `min_limit` defaults
/// to 1.
///
/// **Smoothing defaults to 0.2, not Netflix's 1.0.** The limit is updated on
/// every response, so with many responses per round trip an unsmoothed Vegas
/// reacts to the same queue dozens of times before its effect is seen: in
/// the simulated overload of `docs/benchmarks/palisade-concurrency.md` (the
/// `overload` example) it swings far below and above the upstream's
/// capacity and wastes part of it, where 0.2 holds it near capacity. Set
/// [`smoothing(1.0)`](Self::smoothing) for Netflix's behaviour.
///
/// **Drops** lower the limit by `L` without touching the no-load latency: a
/// 503 answered at once would otherwise be taken for the upstream's no-load
/// latency and make every later response look queued.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vegas {
    initial: usize,
    min: usize,
    max: usize,
    smoothing: f64,
    probe_multiplier: usize,
    seed: u64,
}

impl Vegas {
    /// Vegas with Netflix's defaults.
    pub const fn new() -> Self {
        Self {
            initial: 20,
            min: 1,
            max: 1000,
            smoothing: 0.2,
            probe_multiplier: 30,
            seed: 0x9e37_79b9_7f4a_7c15,
        }
    }

    bounds_setters!();

    /// How much of each new estimate is taken, in `(0, 1]`. Default 0.2
    /// (Netflix: 1.0; see the type's docs).
    pub const fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// The no-load latency is re-probed every `probe_multiplier × limit`
    /// samples (jittered). Default 30.
    pub const fn probe_multiplier(mut self, n: usize) -> Self {
        self.probe_multiplier = n;
        self
    }

    /// The seed of the probe jitter. Every key uses the same seed, so a run
    /// is reproducible.
    pub const fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

impl Default for Vegas {
    fn default() -> Self {
        Self::new()
    }
}

/// One completed attempt, as the algorithms see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When the attempt got its permit.
    pub(crate) started: Instant,
    /// From permit to response head (or error).
    pub(crate) rtt: Duration,
    /// Requests in flight for the key when this one started, itself included.
    pub(crate) in_flight: usize,
    /// Whether the outcome was an overload signal.
    pub(crate) dropped: bool,
}

/// The running state of one key's algorithm.
pub(crate) struct Algorithm {
    kind: Kind,
    /// When a drop last lowered the limit.
    last_cut: Option<Instant>,
}

enum Kind {
    Fixed(usize),
    Aimd {
        cfg: Aimd,
        limit: usize,
    },
    Gradient2 {
        cfg: Gradient2,
        estimate: f64,
        long_rtt: ExpAvg,
    },
    Vegas {
        cfg: Vegas,
        estimate: f64,
        rtt_noload: f64,
        probe_count: usize,
        probe_jitter: f64,
        rng: SplitMix64,
    },
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &self.kind {
            Kind::Fixed(_) => "fixed",
            Kind::Aimd { .. } => "aimd",
            Kind::Gradient2 { .. } => "gradient2",
            Kind::Vegas { .. } => "vegas",
        };
        f.debug_struct("Algorithm")
            .field("name", &name)
            .field("limit", &self.limit())
            .finish()
    }
}

impl Algorithm {
    pub(crate) fn new(limit: &Limit) -> Self {
        Self {
            kind: Kind::new(limit),
            last_cut: None,
        }
    }

    pub(crate) const fn is_adaptive(&self) -> bool {
        !matches!(self.kind, Kind::Fixed(_))
    }

    /// The limit in force.
    pub(crate) fn limit(&self) -> usize {
        self.kind.limit()
    }

    /// Feeds one sample; returns the limit now in force.
    ///
    /// A drop of a request that was sent before the last drop-driven cut is
    /// not counted: it reports the same overload episode the cut answered.
    /// TCP likewise reacts to losses once per window (RFC 5681, fast
    /// recovery); without it a burst of 503s would multiply AIMD's limit by
    /// 0.9 once per response and collapse it to the minimum.
    pub(crate) fn update(&mut self, s: &Sample) -> usize {
        if s.dropped && self.last_cut.is_some_and(|cut| s.started < cut) {
            return self.kind.limit();
        }
        let before = self.kind.limit();
        let after = self.kind.update(s);
        if s.dropped && after < before {
            self.last_cut = Some(s.started + s.rtt);
        }
        after
    }
}

impl Kind {
    fn new(limit: &Limit) -> Self {
        match *limit {
            Limit::Fixed(n) => Self::Fixed(n),
            Limit::Aimd(cfg) => Self::Aimd {
                cfg,
                limit: cfg.initial,
            },
            Limit::Gradient2(cfg) => Self::Gradient2 {
                cfg,
                estimate: cfg.initial as f64,
                long_rtt: ExpAvg::new(cfg.long_window, 10),
            },
            Limit::Vegas(cfg) => {
                let mut rng = SplitMix64(cfg.seed);
                let probe_jitter = rng.jitter();
                Self::Vegas {
                    cfg,
                    estimate: cfg.initial as f64,
                    rtt_noload: 0.0,
                    probe_count: 0,
                    probe_jitter,
                    rng,
                }
            }
        }
    }

    fn limit(&self) -> usize {
        match self {
            Self::Fixed(n) => *n,
            Self::Aimd { limit, .. } => *limit,
            Self::Gradient2 { cfg, estimate, .. } => to_limit(*estimate, cfg.min, cfg.max),
            Self::Vegas { cfg, estimate, .. } => to_limit(*estimate, cfg.min, cfg.max),
        }
    }

    fn update(&mut self, s: &Sample) -> usize {
        match self {
            Self::Fixed(n) => *n,
            Self::Aimd { cfg, limit } => {
                let cur = *limit;
                let next = if s.dropped || s.rtt > cfg.timeout {
                    (cur as f64 * cfg.backoff_ratio) as usize
                } else if s.in_flight.saturating_mul(2) >= cur {
                    cur.saturating_add(1)
                } else {
                    cur
                };
                *limit = next.clamp(cfg.min, cfg.max);
                *limit
            }
            Self::Gradient2 {
                cfg,
                estimate,
                long_rtt,
            } => {
                if s.dropped {
                    *estimate =
                        (*estimate * cfg.drop_backoff_ratio).clamp(cfg.min as f64, cfg.max as f64);
                    return to_limit(*estimate, cfg.min, cfg.max);
                }
                let short = nanos(s.rtt);
                let long = long_rtt.add(short);
                // After a long overload the average lags far above the
                // recovered latency; pull it down faster than the EMA would.
                if long / short > 2.0 {
                    long_rtt.scale(0.95);
                }
                if (s.in_flight as f64) < *estimate / 2.0 {
                    return to_limit(*estimate, cfg.min, cfg.max);
                }
                let gradient = (cfg.rtt_tolerance * long / short).clamp(0.5, 1.0);
                let target = *estimate * gradient + cfg.queue_size as f64;
                let next = *estimate * (1.0 - cfg.smoothing) + target * cfg.smoothing;
                *estimate = next.clamp(cfg.min as f64, cfg.max as f64);
                to_limit(*estimate, cfg.min, cfg.max)
            }
            Self::Vegas {
                cfg,
                estimate,
                rtt_noload,
                probe_count,
                probe_jitter,
                rng,
            } => {
                let cur = *estimate;
                let log = log10_root(cur);
                if s.dropped {
                    // A fast-failing 503 would otherwise become the no-load
                    // latency and make every later sample look queued.
                    let next = (cur - log).clamp(cfg.min as f64, cfg.max as f64);
                    *estimate = (1.0 - cfg.smoothing) * cur + cfg.smoothing * next;
                    return to_limit(*estimate, cfg.min, cfg.max);
                }
                let rtt = nanos(s.rtt);
                *probe_count += 1;
                if *probe_jitter * cfg.probe_multiplier as f64 * *estimate <= *probe_count as f64 {
                    *probe_jitter = rng.jitter();
                    *probe_count = 0;
                    *rtt_noload = rtt;
                    return to_limit(*estimate, cfg.min, cfg.max);
                }
                if *rtt_noload == 0.0 || rtt < *rtt_noload {
                    *rtt_noload = rtt;
                    return to_limit(*estimate, cfg.min, cfg.max);
                }
                let next = if (s.in_flight as f64) * 2.0 < cur {
                    return to_limit(cur, cfg.min, cfg.max);
                } else {
                    let queue = (cur * (1.0 - *rtt_noload / rtt)).ceil();
                    let (alpha, beta, threshold) = (3.0 * log, 6.0 * log, log);
                    if queue <= threshold {
                        cur + beta
                    } else if queue < alpha {
                        cur + log
                    } else if queue > beta {
                        cur - log
                    } else {
                        return to_limit(cur, cfg.min, cfg.max);
                    }
                };
                let next = next.clamp(cfg.min as f64, cfg.max as f64);
                *estimate = (1.0 - cfg.smoothing) * cur + cfg.smoothing * next;
                to_limit(*estimate, cfg.min, cfg.max)
            }
        }
    }
}

fn to_limit(estimate: f64, min: usize, max: usize) -> usize {
    // `as` saturates and maps NaN to 0; the clamp restores the bounds.
    (estimate as usize).clamp(min, max)
}

fn nanos(d: Duration) -> f64 {
    // A zero latency (possible on a paused clock) would divide by zero.
    (d.as_nanos() as f64).max(1.0)
}

/// `max(1, ⌊log10 x⌋)`, Netflix's `Log10RootFunction`.
fn log10_root(x: f64) -> f64 {
    if x < 1.0 {
        1.0
    } else {
        x.log10().floor().max(1.0)
    }
}

/// An exponential moving average that starts as a plain average over its
/// first `warmup` samples, as Netflix's `ExpAvgMeasurement`.
#[derive(Debug, Clone)]
pub(crate) struct ExpAvg {
    value: f64,
    sum: f64,
    count: usize,
    warmup: usize,
    factor: f64,
}

impl ExpAvg {
    pub(crate) fn new(window: usize, warmup: usize) -> Self {
        Self {
            value: 0.0,
            sum: 0.0,
            count: 0,
            warmup,
            factor: 2.0 / (window as f64 + 1.0),
        }
    }

    pub(crate) fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.sum += sample;
            self.value = self.sum / self.count as f64;
        } else {
            self.value = self.value * (1.0 - self.factor) + sample * self.factor;
        }
        self.value
    }

    fn scale(&mut self, by: f64) {
        self.value *= by;
    }
}

/// A tiny seeded generator for Vegas's probe jitter; no dependency needed.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0.5, 1)`.
    fn jitter(&mut self) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        0.5 + unit * 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

    /// Each sample starts 1 s after the previous one, so none predates a cut.
    fn sample(rtt_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        use std::sync::atomic::{AtomicU64, Ordering};
        static CLOCK: AtomicU64 = AtomicU64::new(0);
        let base = *EPOCH.get_or_init(Instant::now);
        Sample {
            started: base + Duration::from_secs(CLOCK.fetch_add(1, Ordering::Relaxed)),
            rtt: Duration::from_millis(rtt_ms),
            in_flight,
            dropped,
        }
    }

    #[test]
    fn aimd_multiplies_by_backoff_on_drop_and_adds_one_on_success() {
        let cfg = Aimd::new()
            .initial_limit(20)
            .min_limit(1)
            .backoff_ratio(0.5);
        let mut a = Algorithm::new(&Limit::Aimd(cfg));
        assert_eq!(a.update(&sample(10, 20, true)), 10);
        assert_eq!(a.update(&sample(10, 10, false)), 11);
        // App-limited: fewer than half in use, no growth.
        assert_eq!(a.update(&sample(10, 2, false)), 11);
        // Slower than the timeout counts as a drop.
        assert_eq!(a.update(&sample(6_000, 11, false)), 5);
    }

    #[test]
    fn netflix_default_aimd_backs_off_by_ten_percent() {
        let mut a = Algorithm::new(&Limit::Aimd(Aimd::new().initial_limit(100)));
        assert_eq!(a.update(&sample(10, 100, true)), 90);
        assert_eq!(a.update(&sample(10, 100, true)), 81);
    }

    #[test]
    fn gradient2_grows_while_latency_is_flat_and_shrinks_when_it_climbs() {
        let cfg = Gradient2::new().min_limit(1).initial_limit(20);
        let mut g = Algorithm::new(&Limit::Gradient2(cfg));
        for _ in 0..50 {
            g.update(&sample(10, 1000, false));
        }
        let grown = g.limit();
        assert!(grown > 40, "{grown}");
        for _ in 0..20 {
            g.update(&sample(40, 1000, false));
        }
        assert!(g.limit() < grown, "{} !< {grown}", g.limit());
    }

    #[test]
    fn gradient2_drop_backs_off() {
        let cfg = Gradient2::new().min_limit(1).initial_limit(100);
        let mut g = Algorithm::new(&Limit::Gradient2(cfg));
        assert_eq!(g.update(&sample(10, 100, true)), 90);
    }

    #[test]
    fn vegas_grows_without_queue_and_shrinks_with_one() {
        let cfg = Vegas::new()
            .initial_limit(20)
            .probe_multiplier(1000)
            .smoothing(1.0);
        let mut v = Algorithm::new(&Limit::Vegas(cfg));
        v.update(&sample(10, 20, false)); // sets rtt_noload
        assert_eq!(v.update(&sample(10, 20, false)), 26); // queue 0 -> +beta (6)
        // Latency doubled: queue = 26 × 0.5 = 13 > beta = 6 -> -1.
        assert_eq!(v.update(&sample(20, 26, false)), 25);
        assert_eq!(v.update(&sample(20, 25, true)), 24);
    }

    proptest! {
        #[test]
        fn every_algorithm_stays_within_bounds(
            which in 0..3u8,
            min in 1usize..50,
            span in 0usize..200,
            samples in proptest::collection::vec((0u64..10_000, 0usize..500, any::<bool>()), 1..300),
        ) {
            let max = min + span;
            let limit = match which {
                0 => Limit::Aimd(Aimd::new().min_limit(min).max_limit(max).initial_limit(min)),
                1 => Limit::Gradient2(Gradient2::new().min_limit(min).max_limit(max).initial_limit(min)),
                _ => Limit::Vegas(Vegas::new().min_limit(min).max_limit(max).initial_limit(min)),
            };
            prop_assert!(limit.validate().is_ok());
            let mut a = Algorithm::new(&limit);
            for (rtt_us, in_flight, dropped) in samples {
                let s = Sample { rtt: Duration::from_micros(rtt_us), ..sample(0, in_flight, dropped) };
                let l = a.update(&s);
                prop_assert!(l >= min && l <= max, "{l} outside [{min}, {max}]");
                prop_assert_eq!(l, a.limit());
            }
        }
    }

    #[test]
    fn invalid_configurations_are_rejected_with_a_reason() {
        let cases: Vec<(Limit, &str)> = vec![
            (Limit::fixed(0), "at least 1"),
            (Aimd::new().min_limit(0).into(), "min_limit"),
            (Aimd::new().max_limit(10).into(), "below min_limit"),
            (Aimd::new().initial_limit(500).into(), "outside"),
            (Aimd::new().backoff_ratio(1.0).into(), "backoff_ratio"),
            (Aimd::new().backoff_ratio(f64::NAN).into(), "backoff_ratio"),
            (Aimd::new().timeout(Duration::ZERO).into(), "timeout"),
            (Gradient2::new().smoothing(0.0).into(), "smoothing"),
            (Gradient2::new().smoothing(f64::NAN).into(), "smoothing"),
            (Gradient2::new().rtt_tolerance(0.9).into(), "rtt_tolerance"),
            (Gradient2::new().long_window(0).into(), "long_window"),
            (Vegas::new().probe_multiplier(0).into(), "probe_multiplier"),
            (Vegas::new().smoothing(1.5).into(), "smoothing"),
        ];
        for (limit, needle) in cases {
            let err = limit.validate().expect_err("must be rejected").to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
        assert!(Limit::default().validate().is_ok());
        assert!(Limit::from(Aimd::new()).validate().is_ok());
        assert!(Limit::from(Gradient2::new()).validate().is_ok());
        assert!(Limit::from(Vegas::new()).validate().is_ok());
    }

    #[test]
    fn drops_from_before_the_last_cut_count_once() {
        let cfg = Aimd::new().initial_limit(100).min_limit(1);
        let mut a = Algorithm::new(&Limit::Aimd(cfg));
        let t0 = Instant::now();
        let drop_at = |start_ms: u64, rtt_ms: u64| Sample {
            started: t0 + Duration::from_millis(start_ms),
            rtt: Duration::from_millis(rtt_ms),
            in_flight: 100,
            dropped: true,
        };
        // Ten requests sent together all come back 503.
        assert_eq!(a.update(&drop_at(0, 50)), 90);
        for i in 1..10 {
            assert_eq!(a.update(&drop_at(0, 50 + i)), 90, "same episode");
        }
        // A request sent after the cut that still fails cuts again.
        assert_eq!(a.update(&drop_at(60, 10)), 81);
    }

    #[test]
    fn a_fast_503_does_not_become_vegas_no_load_latency() {
        let cfg = Vegas::new().initial_limit(20).probe_multiplier(1000);
        let mut v = Algorithm::new(&Limit::Vegas(cfg));
        v.update(&sample(20, 20, false)); // no-load latency: 20 ms
        let before = v.update(&sample(20, 20, false));
        assert!(before > 20);
        let after_drop = v.update(&sample(0, 20, true));
        assert!(after_drop <= before);
        // The next normal response is not mistaken for a queue.
        assert!(v.update(&sample(20, 40, false)) >= after_drop);
    }

    #[test]
    fn jitter_is_in_range_and_seeded() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        for _ in 0..1000 {
            let x = a.jitter();
            assert!((0.5..1.0).contains(&x));
            assert_eq!(x.to_bits(), b.jitter().to_bits());
        }
    }
}
