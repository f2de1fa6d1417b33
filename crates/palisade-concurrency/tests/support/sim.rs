//! A simulated upstream whose latency rises with load, and an open-loop
//! load generator, on tokio's paused clock. Shared by the convergence tests
//! and the `overload` example.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use palisade_concurrency::{ConcurrencyLimitLayer, Limit};
use palisade_core::{BoxError, Key};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// A seeded generator, so every run is the same.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A Poisson draw with mean `mean` (Knuth; fine for small means).
    pub fn poisson(&mut self, mean: f64) -> u64 {
        let l = (-mean).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
}

/// An upstream with `capacity` workers: each request holds a worker for
/// `service` ± up to `jitter` (uniform, whole milliseconds, seeded, so the
/// mean is exactly `service`); beyond `capacity` requests queue at the
/// upstream, so latency rises linearly with load. When `max_backlog`
/// requests already queue there, it answers 503 at once, as an overloaded
/// server that sheds does.
#[derive(Clone)]
pub struct SimUpstream {
    workers: Arc<Semaphore>,
    backlog: Arc<AtomicUsize>,
    max_backlog: usize,
    service: Duration,
    jitter: Duration,
    rng: Arc<Mutex<Rng>>,
    pub served: Arc<AtomicU64>,
    pub shed: Arc<AtomicU64>,
}

impl SimUpstream {
    pub fn new(
        capacity: usize,
        service: Duration,
        jitter: Duration,
        max_backlog: usize,
        seed: u64,
    ) -> Self {
        Self {
            jitter,
            workers: Arc::new(Semaphore::new(capacity)),
            backlog: Arc::new(AtomicUsize::new(0)),
            max_backlog,
            service,
            rng: Arc::new(Mutex::new(Rng::new(seed))),
            served: Arc::default(),
            shed: Arc::default(),
        }
    }
}

impl Service<Request<()>> for SimUpstream {
    type Response = Response<Full<Bytes>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        let this = self.clone();
        let j = this.jitter.as_millis() as u64;
        let draw = this.rng.lock().unwrap().next_u64() % (2 * j + 1);
        let service = (this.service + Duration::from_millis(draw)).saturating_sub(this.jitter);
        Box::pin(async move {
            let _permit = match this.workers.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if this.backlog.load(Ordering::Relaxed) >= this.max_backlog {
                        this.shed.fetch_add(1, Ordering::Relaxed);
                        let res = Response::builder()
                            .status(503)
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        return Ok(res);
                    }
                    this.backlog.fetch_add(1, Ordering::Relaxed);
                    let p = this.workers.clone().acquire_owned().await.unwrap();
                    this.backlog.fetch_sub(1, Ordering::Relaxed);
                    p
                }
            };
            tokio::time::sleep(service).await;
            this.served.fetch_add(1, Ordering::Relaxed);
            Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
        })
    }
}

/// One run of the overload simulation.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Upstream workers.
    pub capacity: usize,
    /// Upstream service time per request.
    pub service: Duration,
    /// Service-time jitter, ± this much.
    pub jitter: Duration,
    /// Requests the upstream queues before it answers 503.
    pub max_backlog: usize,
    /// Offered load as a multiple of the upstream's throughput.
    pub load: f64,
    /// Simulated duration.
    pub duration: Duration,
    /// Measurements start after this much time.
    pub warmup: Duration,
    /// The limiter's queue.
    pub max_queue: usize,
    /// The limiter's maximum wait.
    pub max_wait: Duration,
    /// How often the limit is sampled for the trace.
    pub trace_every: Duration,
    pub seed: u64,
}

impl Scenario {
    /// Upstream throughput, requests per second.
    pub fn throughput(&self) -> f64 {
        self.capacity as f64 / self.service.as_secs_f64()
    }
}

/// What one run measured (after the warm-up).
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub offered: u64,
    pub ok: u64,
    pub upstream_503: u64,
    pub shed_locally: u64,
    /// Successful requests per second over upstream throughput.
    pub goodput: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub mean_limit: f64,
    pub min_limit: usize,
    pub max_limit: usize,
    /// `(seconds since start, limit)`.
    pub trace: Vec<(f64, usize)>,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Runs `limit` against the simulated upstream under open-loop Poisson
/// arrivals. Must run inside a paused-clock runtime.
pub async fn run(name: &str, limit: Limit, s: Scenario) -> Report {
    let upstream = SimUpstream::new(s.capacity, s.service, s.jitter, s.max_backlog, s.seed);
    let layer = ConcurrencyLimitLayer::builder()
        .limit(limit)
        .max_queue(s.max_queue)
        .max_wait(s.max_wait)
        .build()
        .unwrap();
    let diag = layer.diagnostics();
    let svc = layer.layer(upstream.clone());
    let key = Key::origin(&"http://upstream.sim/".parse().unwrap());

    let start = Instant::now();
    let warm = start + s.warmup;
    let end = start + s.duration;
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let counts = Arc::new([(); 4].map(|_| AtomicU64::new(0))); // offered, ok, 503, shed

    // Trace the limit.
    let trace = Arc::new(Mutex::new(Vec::new()));
    let tracer = {
        let trace = trace.clone();
        let diag = diag.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(s.trace_every);
            loop {
                tick.tick().await;
                let now = Instant::now();
                if now > end {
                    break;
                }
                let l = diag.limit(&key).unwrap_or(limit.initial());
                trace.lock().unwrap().push(((now - start).as_secs_f64(), l));
            }
        })
    };

    // Open-loop arrivals, one batch per millisecond.
    let mut rng = Rng::new(s.seed ^ 0xa5a5);
    let per_ms = s.load * s.throughput() / 1000.0;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..rng.poisson(per_ms) {
            let svc = svc.clone();
            let latencies = latencies.clone();
            let counts = counts.clone();
            tasks.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let measured = t0 >= warm;
                let res = svc
                    .oneshot(Request::get("http://upstream.sim/").body(()).unwrap())
                    .await;
                let outcome = match res {
                    Ok(res) if res.status().is_success() => {
                        let _ = res.into_body().collect().await;
                        Some(Instant::now() - t0)
                    }
                    Ok(_) => {
                        if measured {
                            counts[2].fetch_add(1, Ordering::Relaxed);
                        }
                        None
                    }
                    Err(_) => {
                        if measured {
                            counts[3].fetch_add(1, Ordering::Relaxed);
                        }
                        None
                    }
                };
                if measured {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                    if let Some(lat) = outcome {
                        counts[1].fetch_add(1, Ordering::Relaxed);
                        latencies.lock().unwrap().push(lat);
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    tracer.await.unwrap();

    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    let trace = trace.lock().unwrap().clone();
    let measured: Vec<usize> = trace
        .iter()
        .filter(|(t, _)| *t >= s.warmup.as_secs_f64())
        .map(|(_, l)| *l)
        .collect();
    let window = (s.duration - s.warmup).as_secs_f64();
    let ok = counts[1].load(Ordering::Relaxed);
    Report {
        name: name.to_owned(),
        offered: counts[0].load(Ordering::Relaxed),
        ok,
        upstream_503: counts[2].load(Ordering::Relaxed),
        shed_locally: counts[3].load(Ordering::Relaxed),
        goodput: ok as f64 / window / s.throughput(),
        p50: quantile(&lat, 0.5),
        p99: quantile(&lat, 0.99),
        mean_limit: measured.iter().sum::<usize>() as f64 / measured.len().max(1) as f64,
        min_limit: measured.iter().copied().min().unwrap_or(0),
        max_limit: measured.iter().copied().max().unwrap_or(0),
        trace,
    }
}

/// The latency of one request on an idle upstream.
pub async fn unloaded_latency(s: Scenario) -> Duration {
    let mut up = SimUpstream::new(s.capacity, s.service, s.jitter, s.max_backlog, s.seed);
    let t0 = Instant::now();
    let res = up
        .ready()
        .await
        .unwrap()
        .call(Request::get("http://upstream.sim/").body(()).unwrap())
        .await
        .unwrap();
    let _ = res.into_body().collect().await;
    Instant::now() - t0
}
