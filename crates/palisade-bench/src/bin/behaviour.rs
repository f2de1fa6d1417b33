//! Behaviour under faults, measured in real time over loopback HTTP: what
//! palisade does to an upstream in an outage, under overload, with a slow
//! tail, and how exactly it holds a rate.
//!
//! Four scenarios, each bounded in time, all seeded:
//!
//! - **`outage`**: a full outage (every request answered 503, and
//!   separately every connection reset) on a
//!   [`FlakyServer`]. `--outage-requests`
//!   logical GETs (default 400) arrive at a steady rate over 10 s, and the
//!   upstream counts every attempt. Three clients, run side by side on
//!   separate routes: a hand-written loop of 4 attempts over bare reqwest
//!   (100, 200, 400 ms apart), `palisade::Client` with its default stack
//!   (retry seeded), and the same stack without its circuit breaker, so that
//!   only the retry budget holds retries back. The outage lasts until every
//!   logical request has ended (at most the default 30 s deadline after the
//!   last one started).
//! - **`overload`**: a hyper upstream, written here, with `C` workers (20)
//!   and a service time of 20 ms ± 2 ms, that queues what it cannot serve
//!   at once, so latency grows with load and nothing is refused. Open-loop
//!   Poisson arrivals at twice its capacity for 10 s (the first 4 s not
//!   measured) through `palisade::Client` with only a concurrency limit,
//!   which sheds what it cannot admit at once (`max_queue(0)`): a fixed
//!   limit of 4 × C against AIMD, Gradient2 and Vegas bounded to
//!   `[1, 4 × C]`.
//! - **`hedging`**: an upstream (`FlakyServer`, a cycled script of 1 000
//!   steps) where a seeded 1 % of requests take 1 s and the rest 2–5 ms.
//!   4 000 GETs at 800 per second through `palisade::Client`'s default stack
//!   without hedging, with a `HedgeLayer` after a fixed 10 ms and with one
//!   after the observed p95 (its default); both hedge layers cap extra load
//!   at 5 % (their default). Each client first sends 100 fast warm-up GETs,
//!   which open its connections and give the p95 hedge its samples. Exactly
//!   1 % of upstream requests are slow, so without hedging the p99 is the
//!   slowest fast request and the tail shows from p99.5 on.
//! - **`ratelimit`**: palisade-ratelimit's layer at 1 000/s (burst 10) and
//!   10 000/s (burst 100: at least one millisecond of tokens, see the
//!   `accuracy` bench of palisade-ratelimit) over an in-memory upstream, for
//!   3 s, offered twice the quota at a steady rate, in wait mode (100 ms)
//!   and reject mode, after an unmeasured 300 ms run. The rate is what
//!   reached the upstream in the window, minus the initial burst, over the
//!   window.
//!
//! Run everything (about a minute and a half):
//!
//! ```text
//! cargo run --release -p palisade-bench --bin behaviour
//! ```
//!
//! or name scenarios (`-- outage hedging`); `--quick` shrinks every
//! workload for a smoke run and then writes no results; `--seed N` changes
//! every seed (default 42). A full run writes
//! `<results dir>/behaviour.json` (see `palisade_bench::results`); a run of
//! some scenarios only updates their keys in that file. The summary tables
//! go to stdout, progress to stderr.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::concurrency::limit::{Aimd, Gradient2, Vegas};
use palisade::concurrency::{Diagnostics, Limit};
use palisade::ratelimit::{Mode, Quota, RateLimitLayer};
use palisade::retry::{HedgeLayer, RetryLayer};
use palisade::{PoolConfig, StackConfig};
use palisade_bench::results::{Results, quantile};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_core::Global;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The command of a full run.
const CMD: &str = "cargo run --release -p palisade-bench --bin behaviour";

const USAGE: &str = "usage: behaviour [outage|overload|hedging|ratelimit]... \
    [--quick] [--seed N] [--outage-requests N]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Outage,
    Overload,
    Hedging,
    RateLimit,
}

impl Scenario {
    const ALL: [Self; 4] = [Self::Outage, Self::Overload, Self::Hedging, Self::RateLimit];

    const fn name(self) -> &'static str {
        match self {
            Self::Outage => "outage",
            Self::Overload => "overload",
            Self::Hedging => "hedging",
            Self::RateLimit => "ratelimit",
        }
    }

    /// The longest the scenario may take before the run fails.
    const fn bound(self) -> Duration {
        Duration::from_secs(match self {
            Self::Outage => 90,
            Self::Overload => 90,
            Self::Hedging => 60,
            Self::RateLimit => 40,
        })
    }
}

#[derive(Debug, Clone)]
struct Args {
    scenarios: Vec<Scenario>,
    quick: bool,
    seed: u64,
    outage_requests: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        scenarios: Vec::new(),
        quick: false,
        seed: 42,
        outage_requests: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |flag: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{flag} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{flag} needs a non-negative integer, got {v:?}"))
        };
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--seed" => args.seed = number("--seed")?,
            "--outage-requests" => {
                let n = number("--outage-requests")?;
                if n == 0 {
                    return Err("--outage-requests must be positive".to_owned());
                }
                args.outage_requests = Some(n);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            name => {
                let s = Scenario::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .ok_or(format!("unknown argument {name:?}\n{USAGE}"))?;
                if !args.scenarios.contains(&s) {
                    args.scenarios.push(s);
                }
            }
        }
    }
    Ok(args)
}

/// A summary table, printed as markdown.
struct Table {
    title: String,
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(title: impl Into<String>, header: Vec<&'static str>) -> Self {
        Self {
            title: title.into(),
            header,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn print(&self) {
        println!("\n{}\n", self.title);
        println!("| {} |", self.header.join(" | "));
        println!("|{}", "---|".repeat(self.header.len()));
        for r in &self.rows {
            println!("| {} |", r.join(" | "));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Calls `start(i)` for `i = 0, 1, ...` at `rate` per second for `duration`:
/// evenly spaced, or as a Poisson process drawn from `poisson`. A late tick
/// catches up, so the count is right even on a loaded machine. Returns how
/// many were started.
async fn open_loop(
    rate: f64,
    duration: Duration,
    mut poisson: Option<SmallRng>,
    mut start: impl FnMut(u64),
) -> u64 {
    let t0 = Instant::now();
    let end = t0 + duration;
    let mut next = t0;
    let mut n = 0u64;
    while next < end {
        tokio::time::sleep_until(next).await;
        let now = Instant::now();
        while next <= now && next < end {
            start(n);
            n += 1;
            next = match &mut poisson {
                Some(rng) => {
                    let u: f64 = rng.random();
                    next + Duration::from_secs_f64(-(1.0 - u).ln() / rate)
                }
                None => t0 + Duration::from_secs_f64(n as f64 / rate),
            };
        }
    }
    n
}

/// Reads a response to its end; whether it was a success.
async fn finish(res: Result<reqwest::Response, palisade::Error>) -> Result<bool, palisade::Error> {
    let res = res?;
    let ok = res.status().is_success();
    let _ = res.bytes().await;
    Ok(ok)
}

/// `(t, arrivals up to t)` every `step` seconds from 0 to `end`, for a plot
/// of cumulative attempts.
fn cumulative(times: &[f64], step: f64, end: f64) -> Vec<(f64, f64)> {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let steps = (end / step).ceil() as usize;
    (0..=steps)
        .map(|k| {
            let t = k as f64 * step;
            (t, sorted.partition_point(|&x| x <= t) as f64)
        })
        .collect()
}

/// The empirical CDF of `values` (milliseconds) as `(value, fraction ≤)`:
/// about 200 points over the body and every point of the top 2 %.
fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let step = (n / 200).max(1);
    let tail = n - n / 50;
    v.iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i >= tail)
        .map(|(i, &x)| (x, (i + 1) as f64 / n as f64))
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Outage amplification

#[derive(Clone)]
enum OutageClient {
    /// reqwest in a hand-written loop of 4 attempts.
    Naive(reqwest::Client),
    Palisade(palisade::Client),
}

impl OutageClient {
    async fn logical(&self, url: &str) {
        match self {
            Self::Naive(c) => {
                for attempt in 0..4u32 {
                    if let Ok(res) = c.get(url).send().await {
                        let ok = res.status().is_success();
                        let _ = res.bytes().await;
                        if ok {
                            return;
                        }
                    }
                    if attempt < 3 {
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                }
            }
            Self::Palisade(c) => {
                let _ = finish(c.get(url).send().await).await;
            }
        }
    }
}

fn outage_clients(seed: u64) -> Result<Vec<(&'static str, OutageClient)>, BoxError> {
    // The default stack, its retry jitter seeded.
    let retry = || RetryLayer::builder().seed(seed).build_layer();
    let naive = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (r1, r2) = (retry()?, retry()?);
    let palisade = palisade::Client::builder()
        .stack(|s| s.retry(Some(r1)))
        .build()?;
    let budget_only = palisade::Client::builder()
        .stack(|s| s.retry(Some(r2)).breaker(None))
        .build()?;
    Ok(vec![
        ("naive", OutageClient::Naive(naive)),
        ("palisade", OutageClient::Palisade(palisade)),
        ("budget_only", OutageClient::Palisade(budget_only)),
    ])
}

async fn outage(r: &mut Results, args: &Args) -> Result<Table, BoxError> {
    let requests = args
        .outage_requests
        .unwrap_or(if args.quick { 100 } else { 400 });
    let spread = Duration::from_secs(if args.quick { 3 } else { 10 });
    let rate = requests as f64 / spread.as_secs_f64();
    let server = Arc::new(FlakyServer::builder().seed(args.seed).start().await?);
    let faults = [("503", Behavior::status(503)), ("reset", Behavior::reset())];
    eprintln!(
        "outage: {requests} logical requests over {spread:?} per client, 6 runs side by side"
    );

    let start = Instant::now();
    let mut runs = JoinSet::new();
    for (fault, behavior) in &faults {
        for (client_name, client) in outage_clients(args.seed)? {
            let path = format!("/outage/{fault}/{client_name}");
            server.script(&path, Script::always(behavior.clone()));
            let url: Arc<str> = server.url(&path).into();
            let fault = *fault;
            runs.spawn(async move {
                let mut tasks = JoinSet::new();
                open_loop(rate, spread, None, |_| {
                    let (client, url) = (client.clone(), url.clone());
                    tasks.spawn(async move {
                        let t0 = Instant::now();
                        client.logical(&url).await;
                        t0.elapsed()
                    });
                })
                .await;
                let mut waits = Vec::new();
                while let Some(w) = tasks.join_next().await {
                    waits.push(ms(w.expect("a logical request panicked")));
                }
                (fault, client_name, path, waits)
            });
        }
    }
    let mut done = Vec::new();
    while let Some(run) = runs.join_next().await {
        done.push(run?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Report in a fixed order.
    done.sort_by_key(|(f, c, ..)| {
        let fi = faults.iter().position(|(n, _)| n == f);
        let ci = ["naive", "palisade", "budget_only"]
            .iter()
            .position(|n| n == c);
        (fi, ci)
    });

    let mut table = Table::new(
        format!(
            "Outage amplification: {requests} logical GETs over {spread:?}, every attempt failing"
        ),
        vec![
            "fault",
            "client",
            "upstream attempts",
            "attempts per logical request",
            "caller's wait p50",
            "caller's wait p99",
        ],
    );
    r.number("outage_requests", requests as f64);
    r.number("outage_spread_s", spread.as_secs_f64());
    r.number("outage_elapsed_s", elapsed);
    for (fault, client, path, waits) in done {
        let stats = server.stats(&path);
        let per = stats.attempts as f64 / requests as f64;
        let times: Vec<f64> = stats
            .timestamps
            .iter()
            .map(|t| t.saturating_duration_since(start).as_secs_f64())
            .collect();
        let (p50, p99) = (quantile(&waits, 0.5), quantile(&waits, 0.99));
        let prefix = format!("outage_{fault}_{client}");
        r.number(&format!("{prefix}_attempts_per_request"), per);
        r.number(&format!("{prefix}_wait_p50_ms"), p50);
        r.number(&format!("{prefix}_wait_p99_ms"), p99);
        r.series(
            &format!("{prefix}_attempts"),
            "seconds since the outage began",
            "cumulative upstream attempts",
            cumulative(&times, 0.25, elapsed),
        );
        table.row(vec![
            fault.to_owned(),
            client.to_owned(),
            stats.attempts.to_string(),
            format!("{per:.2}"),
            format!("{p50:.1} ms"),
            format!("{p99:.1} ms"),
        ]);
    }
    Ok(table)
}

// ---------------------------------------------------------------------------
// 2. Overload: adaptive against fixed concurrency

/// An upstream with `capacity` workers: each request holds one for the
/// service time; beyond `capacity` requests wait in its queue (unbounded),
/// so latency grows with load and nothing is refused.
struct CapacityServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for CapacityServer {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it closes
        // them all.
        self.accept.abort();
    }
}

#[derive(Debug, Clone, Copy)]
struct Upstream {
    capacity: usize,
    service: Duration,
    jitter: Duration,
    seed: u64,
}

impl Upstream {
    /// Requests per second the upstream serves at most, nominally.
    fn throughput(&self) -> f64 {
        self.capacity as f64 / self.service.as_secs_f64()
    }
}

impl CapacityServer {
    async fn start(up: Upstream) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let workers = Arc::new(Semaphore::new(up.capacity));
        let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(up.seed)));
        let accept = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // Out of descriptors, say: wait rather than spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (workers, rng) = (workers.clone(), rng.clone());
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    let workers = workers.clone();
                    let jitter = up.jitter.as_micros() as u64;
                    let draw = lock(&rng).random_range(0..=2 * jitter);
                    let service = (up.service + Duration::from_micros(draw)) - up.jitter;
                    async move {
                        // The semaphore is never closed.
                        let _worker = workers.acquire_owned().await;
                        tokio::time::sleep(service).await;
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                conns.spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, accept })
    }

    fn url(&self) -> String {
        format!("http://{}/work", self.addr)
    }
}

/// What one overload run measured, after the warm-up.
struct OverloadRun {
    offered: u64,
    ok: u64,
    shed: u64,
    other: u64,
    latencies_ms: Vec<f64>,
    /// `(seconds since start, limit)` every 100 ms.
    trace: Vec<(f64, f64)>,
}

fn overload_client(
    up: &Upstream,
    limit: Option<ConcurrencyLimitLayer>,
) -> Result<palisade::Client, BoxError> {
    let pool = PoolConfig::default().max_idle_per_host(4 * up.capacity + 64);
    Ok(palisade::Client::builder()
        .stack(|_| StackConfig::bare().pool(pool).concurrency(limit))
        .build()?)
}

async fn overload_run(
    url: &Arc<str>,
    up: Upstream,
    limit: Limit,
    duration: Duration,
    warmup: Duration,
    seed: u64,
) -> Result<OverloadRun, BoxError> {
    let layer = ConcurrencyLimitLayer::builder()
        .limit(limit)
        .max_queue(0)
        .build()?;
    let diag: Diagnostics = layer.diagnostics();
    let client = overload_client(&up, Some(layer))?;

    let start = Instant::now();
    let warm = start + warmup;
    let end = start + duration;
    let tracer = tokio::spawn(async move {
        let mut trace = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let now = Instant::now();
            if now > end {
                break trace;
            }
            let l = diag.keys().first().map_or(limit.initial(), |k| k.limit);
            trace.push(((now - start).as_secs_f64(), l as f64));
        }
    });

    let mut tasks = JoinSet::new();
    let rng = SmallRng::seed_from_u64(seed);
    open_loop(2.0 * up.throughput(), duration, Some(rng), |_| {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let t0 = Instant::now();
            let res = finish(client.get(&url).send().await).await;
            (t0, t0.elapsed(), res)
        });
    })
    .await;
    let mut run = OverloadRun {
        offered: 0,
        ok: 0,
        shed: 0,
        other: 0,
        latencies_ms: Vec::new(),
        trace: Vec::new(),
    };
    while let Some(t) = tasks.join_next().await {
        let (t0, lat, res) = t?;
        if t0 < warm {
            continue;
        }
        run.offered += 1;
        match res {
            Ok(true) => {
                run.ok += 1;
                run.latencies_ms.push(ms(lat));
            }
            Err(e) if e.is_overloaded() => run.shed += 1,
            _ => run.other += 1,
        }
    }
    run.trace = tracer.await?;
    Ok(run)
}

/// The latency of one request to the idle upstream: the median of 50 in a
/// row, after 10 to open the connection.
async fn unloaded_latency(url: &str, up: &Upstream) -> Result<f64, BoxError> {
    let client = overload_client(up, None)?;
    let mut v = Vec::new();
    for i in 0..60 {
        let t0 = Instant::now();
        finish(client.get(url).send().await).await?;
        if i >= 10 {
            v.push(ms(t0.elapsed()));
        }
    }
    Ok(quantile(&v, 0.5))
}

async fn overload(r: &mut Results, args: &Args) -> Result<Table, BoxError> {
    let up = Upstream {
        capacity: 20,
        service: Duration::from_millis(20),
        jitter: Duration::from_millis(2),
        seed: args.seed,
    };
    let (duration, warmup) = if args.quick {
        (Duration::from_secs(4), Duration::from_secs(2))
    } else {
        (Duration::from_secs(10), Duration::from_secs(4))
    };
    let server = CapacityServer::start(up).await?;
    let url: Arc<str> = server.url().into();
    let unloaded = unloaded_latency(&url, &up).await?;
    let c = up.capacity;
    let max = 4 * c;
    eprintln!(
        "overload: C = {c}, service {:?} ± {:?} ({:.0} req/s), offered {:.0} req/s for {duration:?}; unloaded latency {unloaded:.1} ms",
        up.service,
        up.jitter,
        up.throughput(),
        2.0 * up.throughput()
    );
    r.number("overload_capacity", c as f64);
    r.number("overload_capacity_per_s", up.throughput());
    r.number("overload_offered_per_s", 2.0 * up.throughput());
    r.number("overload_unloaded_ms", unloaded);
    r.number("overload_duration_s", duration.as_secs_f64());
    r.number("overload_warmup_s", warmup.as_secs_f64());

    let limits: [(&str, Limit); 4] = [
        ("fixed", Limit::fixed(max)),
        ("aimd", Aimd::new().min_limit(1).max_limit(max).into()),
        (
            "gradient2",
            Gradient2::new().min_limit(1).max_limit(max).into(),
        ),
        ("vegas", Vegas::new().min_limit(1).max_limit(max).into()),
    ];
    let mut table = Table::new(
        format!(
            "Overload: upstream of C = {c} workers ({:.0} req/s, queueing, unloaded latency {unloaded:.1} ms), offered 2 × C, limiter sheds at once",
            up.throughput()
        ),
        vec![
            "limit",
            "goodput (× capacity)",
            "p50",
            "p99",
            "p50 / unloaded",
            "p99 / unloaded",
            "shed locally",
            "mean limit",
        ],
    );
    let window = (duration - warmup).as_secs_f64();
    for (i, (name, limit)) in limits.into_iter().enumerate() {
        let seed = args.seed.wrapping_add(i as u64);
        let run = overload_run(&url, up, limit, duration, warmup, seed).await?;
        let goodput = run.ok as f64 / window / up.throughput();
        let p50 = quantile(&run.latencies_ms, 0.5);
        let p99 = quantile(&run.latencies_ms, 0.99);
        let measured: Vec<f64> = run
            .trace
            .iter()
            .filter(|(t, _)| *t >= warmup.as_secs_f64())
            .map(|(_, l)| *l)
            .collect();
        let mean_limit = measured.iter().sum::<f64>() / measured.len().max(1) as f64;
        let shed = run.shed as f64 / run.offered.max(1) as f64;
        if run.other > 0 {
            eprintln!("overload {name}: {} requests failed otherwise", run.other);
        }
        let p = format!("overload_{name}");
        r.number(&format!("{p}_goodput"), goodput);
        r.number(&format!("{p}_goodput_per_s"), run.ok as f64 / window);
        r.number(&format!("{p}_p50_ms"), p50);
        r.number(&format!("{p}_p99_ms"), p99);
        r.number(&format!("{p}_p50_x_unloaded"), p50 / unloaded);
        r.number(&format!("{p}_p99_x_unloaded"), p99 / unloaded);
        r.number(&format!("{p}_shed_fraction"), shed);
        r.number(&format!("{p}_failed"), run.other as f64);
        r.number(&format!("{p}_mean_limit"), mean_limit);
        r.series(
            &format!("{p}_limit"),
            "seconds since the load began",
            "concurrency limit",
            run.trace,
        );
        table.row(vec![
            name.to_owned(),
            format!("{goodput:.3}"),
            format!("{p50:.1} ms"),
            format!("{p99:.1} ms"),
            format!("{:.2}", p50 / unloaded),
            format!("{:.2}", p99 / unloaded),
            format!("{:.1} %", shed * 100.0),
            format!("{mean_limit:.1}"),
        ]);
    }
    Ok(table)
}

// ---------------------------------------------------------------------------
// 3. Hedging

/// The script: 1 000 steps, a seeded 1 % of them 1 s slow, the rest 2–5 ms.
fn slow_tail_script(seed: u64) -> Script {
    let mut rng = SmallRng::seed_from_u64(seed);
    let slow = rand::seq::index::sample(&mut rng, 1000, 10).into_vec();
    (0..1000)
        .map(|i| {
            let b = Behavior::ok("ok");
            if slow.contains(&i) {
                b.with_latency(Duration::from_secs(1))
            } else {
                b.with_random_latency(Duration::from_millis(2), Duration::from_millis(5))
            }
        })
        .collect::<Script>()
        .cycle()
}

async fn hedging(r: &mut Results, args: &Args) -> Result<Table, BoxError> {
    let (requests, rate) = if args.quick {
        (1000u64, 500.0)
    } else {
        (4000, 800.0)
    };
    let fixed_delay = Duration::from_millis(10);
    let server = FlakyServer::builder().seed(args.seed).start().await?;
    server.script("/hedge/warmup", Script::always(Behavior::ok("ok")));
    let variants: [(&str, Option<HedgeLayer>); 3] = [
        ("none", None),
        (
            "fixed",
            Some(HedgeLayer::builder().delay(fixed_delay).build()?),
        ),
        ("p95", Some(HedgeLayer::builder().build()?)),
    ];
    eprintln!(
        "hedging: {requests} GETs at {rate}/s per variant; 1 % of upstream requests take 1 s"
    );
    r.number("hedging_requests", requests as f64);
    r.number("hedging_rate_per_s", rate);
    r.number("hedging_fixed_delay_ms", ms(fixed_delay));
    let mut table = Table::new(
        format!(
            "Hedging: {requests} GETs at {rate}/s, 1 % of upstream requests take 1 s, the rest 2–5 ms"
        ),
        vec![
            "hedging",
            "p50",
            "p99",
            "p99.5",
            "p99.9",
            "max",
            "extra load",
        ],
    );
    let span = Duration::from_secs_f64(requests as f64 / rate);
    for (name, hedge) in variants {
        let client = palisade::Client::builder()
            .stack(|s| s.hedge(hedge))
            .build()?;
        // Open connections and give the percentile hedge its samples.
        let warm = server.url("/hedge/warmup");
        for _ in 0..100 {
            finish(client.get(&warm).send().await).await?;
        }
        let path = format!("/hedge/{name}");
        server.script(&path, slow_tail_script(args.seed));
        let url: Arc<str> = server.url(&path).into();
        let mut tasks = JoinSet::new();
        let sent = open_loop(rate, span, None, |_| {
            let (client, url) = (client.clone(), url.clone());
            tasks.spawn(async move {
                let t0 = Instant::now();
                let ok = finish(client.get(&url).send().await).await;
                (t0.elapsed(), ok)
            });
        })
        .await;
        let mut lat = Vec::new();
        let mut failed = 0u64;
        while let Some(t) = tasks.join_next().await {
            let (d, ok) = t?;
            match ok {
                Ok(true) => lat.push(ms(d)),
                _ => failed += 1,
            }
        }
        if failed > 0 {
            eprintln!("hedging {name}: {failed} requests failed");
        }
        let extra = server.stats(&path).attempts as f64 / sent as f64 - 1.0;
        let (p50, p99, p995, p999) = (
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            quantile(&lat, 0.995),
            quantile(&lat, 0.999),
        );
        let max = quantile(&lat, 1.0);
        let p = format!("hedging_{name}");
        r.number(&format!("{p}_p50_ms"), p50);
        r.number(&format!("{p}_p99_ms"), p99);
        r.number(&format!("{p}_p995_ms"), p995);
        r.number(&format!("{p}_p999_ms"), p999);
        r.number(&format!("{p}_max_ms"), max);
        r.number(&format!("{p}_extra_load"), extra);
        r.number(&format!("{p}_failed"), failed as f64);
        r.series(
            &format!("{p}_cdf"),
            "latency (ms)",
            "fraction of requests",
            cdf(&lat),
        );
        table.row(vec![
            name.to_owned(),
            format!("{p50:.1} ms"),
            format!("{p99:.1} ms"),
            format!("{p995:.1} ms"),
            format!("{p999:.1} ms"),
            format!("{max:.1} ms"),
            format!("{:.2} %", extra * 100.0),
        ]);
    }
    Ok(table)
}

// ---------------------------------------------------------------------------
// 4. Rate-limit accuracy

struct RateRun {
    offered: u64,
    admitted: u64,
    achieved: f64,
    /// Admitted per 100 ms bucket.
    buckets: Vec<(f64, f64)>,
}

async fn rate_run(
    per_second: u32,
    burst: u32,
    mode: Mode,
    window: Duration,
) -> Result<RateRun, BoxError> {
    let quota = Quota::per_second(per_second)?.with_burst(burst)?;
    let bucket = Duration::from_millis(100);
    let n_buckets = (window.as_millis() / bucket.as_millis()) as usize;
    let counts: Arc<Vec<AtomicU64>> = Arc::new((0..n_buckets).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let end = start + window;
    let upstream = {
        let counts = counts.clone();
        tower::service_fn(move |_req: http::Request<()>| {
            let now = Instant::now();
            if now < end {
                let i = ((now - start).as_micros() / bucket.as_micros()) as usize;
                if let Some(c) = counts.get(i) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
            std::future::ready(Ok::<_, Infallible>(http::Response::new(())))
        })
    };
    let svc = RateLimitLayer::builder(quota)
        .mode(mode)
        .key_fn(Global)
        .build()?
        .layer(upstream);
    let mut tasks = JoinSet::new();
    let offered = open_loop(2.0 * f64::from(per_second), window, None, |_| {
        let svc = svc.clone();
        tasks.spawn(async move {
            let req = http::Request::get("http://upstream.test/")
                .body(())
                .expect("a valid request");
            let _ = svc.oneshot(req).await;
        });
    })
    .await;
    while tasks.join_next().await.is_some() {}
    let admitted: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let achieved = admitted.saturating_sub(u64::from(burst)) as f64 / window.as_secs_f64();
    let buckets = counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                i as f64 * bucket.as_secs_f64(),
                c.load(Ordering::Relaxed) as f64,
            )
        })
        .collect();
    Ok(RateRun {
        offered,
        admitted,
        achieved,
        buckets,
    })
}

async fn ratelimit(r: &mut Results, args: &Args) -> Result<Table, BoxError> {
    let window = Duration::from_secs(if args.quick { 1 } else { 3 });
    let max_wait = Duration::from_millis(100);
    r.number("ratelimit_window_s", window.as_secs_f64());
    let mut table = Table::new(
        format!(
            "Rate-limit accuracy: {window:?}, offered 2 × quota, in-memory upstream; rate = (admitted − burst) / window"
        ),
        vec![
            "quota (req/s)",
            "burst",
            "mode",
            "offered",
            "admitted",
            "rate (req/s)",
            "error",
        ],
    );
    for (rate, burst) in [(1_000u32, 10u32), (10_000, 100)] {
        for (mode_name, mode) in [("wait", Mode::Wait { max_wait }), ("reject", Mode::Reject)] {
            eprintln!("ratelimit: {rate}/s, burst {burst}, {mode_name}");
            // Unmeasured: threads, task slabs and the allocator warmed up.
            rate_run(rate, burst, mode, Duration::from_millis(300)).await?;
            let run = rate_run(rate, burst, mode, window).await?;
            let err = (run.achieved - f64::from(rate)) / f64::from(rate) * 100.0;
            // Wait mode is the default: its keys carry no mode.
            let p = match mode_name {
                "wait" => format!("ratelimit_{rate}"),
                m => format!("ratelimit_{rate}_{m}"),
            };
            r.number(&format!("{p}_achieved_per_s"), run.achieved);
            r.number(&format!("{p}_error_pct"), err);
            r.number(
                &format!("{p}_offered_per_s"),
                run.offered as f64 / window.as_secs_f64(),
            );
            r.series(
                &format!("{p}_admitted"),
                "seconds since start",
                "requests admitted per 100 ms",
                run.buckets,
            );
            table.row(vec![
                rate.to_string(),
                burst.to_string(),
                match mode_name {
                    "wait" => format!("wait ≤ {max_wait:?}"),
                    m => m.to_owned(),
                },
                run.offered.to_string(),
                run.admitted.to_string(),
                format!("{:.1}", run.achieved),
                format!("{err:+.2} %"),
            ]);
        }
    }
    Ok(table)
}

// ---------------------------------------------------------------------------

async fn run_scenario(s: Scenario, r: &mut Results, args: &Args) -> Result<Table, BoxError> {
    let fut: std::pin::Pin<Box<dyn Future<Output = Result<Table, BoxError>> + Send + '_>> = match s
    {
        Scenario::Outage => Box::pin(outage(r, args)),
        Scenario::Overload => Box::pin(overload(r, args)),
        Scenario::Hedging => Box::pin(hedging(r, args)),
        Scenario::RateLimit => Box::pin(ratelimit(r, args)),
    };
    tokio::time::timeout(s.bound(), fut)
        .await
        .map_err(|_| format!("scenario {} took longer than {:?}", s.name(), s.bound()))?
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let all = args.scenarios.is_empty();
    if all {
        args.scenarios = Scenario::ALL.to_vec();
    }
    // A run of some scenarios updates their keys in the last full run's file.
    let mut r = Results::new("behaviour");
    if !all
        && let Some(old) = Results::read_all()?
            .into_iter()
            .find(|o| o.name == "behaviour")
    {
        let fresh = r.values.clone();
        r.values = old.values;
        r.series = old.series;
        r.values.extend(fresh);
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let cmd = if argv.is_empty() {
        CMD.to_owned()
    } else {
        format!("{CMD} -- {}", argv.join(" "))
    };
    r.text("cmd", cmd);
    r.text("seed", args.seed.to_string());

    let mut tables = Vec::new();
    for &s in &args.scenarios {
        let t0 = Instant::now();
        let table = run_scenario(s, &mut r, &args).await?;
        eprintln!("{} done in {:.1} s", s.name(), t0.elapsed().as_secs_f64());
        table.print();
        let mut cmd = format!("{CMD} -- {}", s.name());
        if args.seed != 42 {
            cmd.push_str(&format!(" --seed {}", args.seed));
        }
        if let (Scenario::Outage, Some(n)) = (s, args.outage_requests) {
            cmd.push_str(&format!(" --outage-requests {n}"));
        }
        r.text(&format!("{}_cmd", s.name()), cmd);
        tables.push(table);
    }

    println!("\n# Summary");
    for t in &tables {
        t.print();
    }
    if args.quick {
        eprintln!("\n--quick: results not written");
    } else {
        let path = r.write()?;
        eprintln!("\nresults written to {}", path.display());
    }
    Ok(())
}
