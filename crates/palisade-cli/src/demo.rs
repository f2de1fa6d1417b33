//! `palisade demo`: scenarios against an in-process flaky upstream, each
//! through palisade's standard stack, with what each layer did.
//!
//! The upstream is [`FlakyServer`] on 127.0.0.1: no network, no service.
//! Every scenario builds its own [`Client`] (so layer state starts fresh)
//! with the standard stack's layers in the standard order, and timings
//! scaled down (backoffs of tens of milliseconds, breaks of a few hundred)
//! so that the whole demo runs in seconds.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use palisade::breaker::{BreakerLayer, CircuitState};
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::concurrency::limit::{Limit, Vegas};
use palisade::core::Key;
use palisade::core::events as ev;
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::{BackoffStrategy, RetryLayer, RetryPolicy};
use palisade::{Client, StackConfig};
use palisade_chaos::{Behavior, FlakyServer, Script};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::Service;

use crate::events::{BREAKER_OPENED, Counts, Tally};
use crate::fetch::{ms, percentile};
use crate::progress;
use crate::transport::{Intercept, Transport, TransportFuture};

/// Options of `palisade demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Run one scenario only.
    #[arg(long, value_enum, value_name = "NAME")]
    scenario: Option<Scenario>,
    /// Seed of the upstream's random latency and of the layers' jitter, to
    /// replay a run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No progress bars (they are drawn on stderr only when stderr is a
    /// terminal).
    #[arg(long)]
    no_progress: bool,
}

/// The scenarios, in the order the demo runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// A flaky upstream that retries recover.
    Flaky,
    /// An outage that the circuit breaker contains.
    Outage,
    /// A rate-limited upstream (429 + Retry-After) that the limiter and
    /// retries respect.
    RateLimited,
    /// Overload that the adaptive concurrency limit settles.
    Overload,
    /// A large streaming download with flat memory.
    Download,
}

impl Scenario {
    const ALL: [Self; 5] = [
        Self::Flaky,
        Self::Outage,
        Self::RateLimited,
        Self::Overload,
        Self::Download,
    ];

    const fn name(self) -> &'static str {
        match self {
            Self::Flaky => "flaky",
            Self::Outage => "outage",
            Self::RateLimited => "rate-limited",
            Self::Overload => "overload",
            Self::Download => "download",
        }
    }

    const fn title(self) -> &'static str {
        match self {
            Self::Flaky => "a flaky upstream that retries recover",
            Self::Outage => "an outage that the circuit breaker contains",
            Self::RateLimited => "a rate-limited upstream (429 + Retry-After), respected",
            Self::Overload => "overload that the adaptive concurrency limit settles",
            Self::Download => "a large streaming download with flat memory",
        }
    }
}

/// One row of a scenario's table.
#[derive(Debug, Clone)]
struct Row {
    label: String,
    requests: usize,
    success: usize,
    upstream_attempts: u64,
    p99: Duration,
}

/// What a scenario shows: its table and what each layer did.
#[derive(Debug, Default)]
struct Report {
    setup: Vec<String>,
    rows: Vec<Row>,
    layers: Vec<(&'static str, String)>,
    notes: Vec<String>,
}

/// The outcome of one logical request, body included.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    ok: bool,
    elapsed: Duration,
}

struct Demo {
    server: FlakyServer,
    seed: u64,
    show: bool,
    tally: Tally,
}

/// Runs the demo and prints each scenario's table.
pub(crate) async fn run(args: DemoArgs, tally: Tally) -> anyhow::Result<()> {
    let server = FlakyServer::builder()
        .seed(args.seed)
        .start()
        .await
        .context("cannot start the flaky upstream on 127.0.0.1")?;
    let demo = Demo {
        show: !args.no_progress && std::io::stderr().is_terminal(),
        seed: args.seed,
        server,
        tally,
    };
    let scenarios: Vec<Scenario> = match args.scenario {
        Some(s) => vec![s],
        None => Scenario::ALL.to_vec(),
    };
    println!(
        "palisade demo: {} scenario(s) against a flaky upstream at http://{} (seed {})",
        scenarios.len(),
        demo.server.addr(),
        args.seed
    );
    println!(
        "Every request goes through the standard stack: deadline, retry, circuit breaker, \
         concurrency limit, attempt timeout and body timeout over reqwest, plus a rate limit \
         where a scenario sets one."
    );
    let started = Instant::now();
    let mut summary = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        println!();
        println!(
            "[{}/{}] {}: {}",
            i + 1,
            scenarios.len(),
            scenario.name(),
            scenario.title()
        );
        let t = Instant::now();
        let report = match scenario {
            Scenario::Flaky => demo.flaky().await?,
            Scenario::Outage => demo.outage().await?,
            Scenario::RateLimited => demo.rate_limited().await?,
            Scenario::Overload => demo.overload().await?,
            Scenario::Download => demo.download().await?,
        };
        print_report(&report);
        println!("  ({:.1} s)", t.elapsed().as_secs_f64());
        summary.extend(report.rows.into_iter().map(|mut r| {
            r.label = if r.label.is_empty() {
                scenario.name().to_owned()
            } else {
                format!("{} ({})", scenario.name(), r.label)
            };
            r
        }));
    }
    if scenarios.len() > 1 {
        println!();
        println!("summary");
        print_rows(&summary, true);
    }
    println!();
    println!(
        "finished in {:.1} s, with no network and no service but the in-process upstream.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_rows(rows: &[Row], labelled: bool) {
    let width = rows.iter().map(|r| r.label.len()).max().unwrap_or(0).max(8);
    if labelled {
        println!(
            "  {:<width$}  {:>8}  {:>7}  {:>18}  {:>8}",
            "scenario", "requests", "success", "attempts upstream", "p99"
        );
    } else {
        println!(
            "  {:<width$}  {:>8}  {:>7}  {:>18}  {:>8}",
            "", "requests", "success", "attempts upstream", "p99"
        );
    }
    for r in rows {
        println!(
            "  {:<width$}  {:>8}  {:>7}  {:>18}  {:>8}",
            r.label,
            r.requests,
            r.success,
            r.upstream_attempts,
            ms(r.p99)
        );
    }
}

fn print_report(report: &Report) {
    for line in &report.setup {
        println!("  {line}");
    }
    print_rows(&report.rows, false);
    for (layer, what) in &report.layers {
        println!("  {layer:<12} {what}");
    }
    for note in &report.notes {
        println!("  {note}");
    }
}

/// Retries scaled down for the demo: exponential backoff with full jitter
/// from 20 ms, Finagle's budget.
fn quick_retry(seed: u64) -> anyhow::Result<RetryLayer> {
    Ok(RetryPolicy::builder()
        .backoff(BackoffStrategy::ExponentialFullJitter)
        .base_delay(Duration::from_millis(20))
        .max_delay(Duration::from_millis(200))
        .seed(seed)
        .build_layer()?)
}

/// The standard stack with demo timings: a 5 s deadline, a 1 s attempt
/// timeout, quick retries, a fixed concurrency limit of 16 per host.
fn stack(seed: u64) -> anyhow::Result<StackConfig> {
    Ok(StackConfig::default()
        .deadline(Some(Duration::from_secs(5)))
        .attempt_timeout(Some(Duration::from_secs(1)))
        .retry(Some(quick_retry(seed)?))
        .concurrency(Some(
            ConcurrencyLimitLayer::builder()
                .limit(Limit::Fixed(16))
                .build()?,
        )))
}

fn client(stack: StackConfig, transport: Transport) -> anyhow::Result<Client> {
    Ok(Client::builder()
        .stack(|_| stack)
        .transport(transport)
        .build()?)
}

fn retry_line(c: &Counts) -> String {
    let mut s = format!("{} retries scheduled", c.get(ev::RETRY_SCHEDULED));
    if c.get(ev::RETRY_GIVEN_UP) > 0 {
        s.push_str(&format!(", {} given up", c.get(ev::RETRY_GIVEN_UP)));
    }
    if c.get(ev::BUDGET_EXHAUSTED) > 0 {
        s.push_str(&format!(
            ", {} refused by the retry budget",
            c.get(ev::BUDGET_EXHAUSTED)
        ));
    }
    s
}

fn breaker_line(c: &Counts) -> String {
    let opened = c.get(BREAKER_OPENED);
    if opened == 0 {
        "stayed closed".to_owned()
    } else {
        format!(
            "opened {opened} time(s); {} calls failed fast without reaching the upstream",
            c.get(ev::BREAKER_REJECTED)
        )
    }
}

fn outcomes_p99(outcomes: &[Outcome]) -> Duration {
    let mut d: Vec<Duration> = outcomes.iter().map(|o| o.elapsed).collect();
    d.sort_unstable();
    percentile(&d, 0.99)
}

fn row(label: &str, outcomes: &[Outcome], upstream_attempts: u64) -> Row {
    Row {
        label: label.to_owned(),
        requests: outcomes.len(),
        success: outcomes.iter().filter(|o| o.ok).count(),
        upstream_attempts,
        p99: outcomes_p99(outcomes),
    }
}

/// Sends one GET and reads its body to the end, chunk by chunk.
async fn get(client: &Client, url: &str, bar: Option<&ProgressBar>) -> Outcome {
    let start = Instant::now();
    let ok = match client.get(url).send().await {
        Err(_) => false,
        Ok(mut res) => {
            let mut ok = res.status().is_success();
            loop {
                match res.chunk().await {
                    Ok(Some(chunk)) => {
                        if let Some(bar) = bar {
                            bar.inc(chunk.len() as u64);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            ok
        }
    };
    Outcome {
        ok,
        elapsed: start.elapsed(),
    }
}

/// Sends a GET to each URL, `parallel` at a time, as a caller's worker pool
/// would, and returns the outcomes in completion order.
async fn batch(client: &Client, urls: Vec<String>, parallel: usize, show: bool) -> Vec<Outcome> {
    let bar = progress::bar(urls.len() as u64, show);
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = JoinSet::new();
    let mut outcomes = Vec::with_capacity(urls.len());
    for url in urls {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            break;
        };
        let client = client.clone();
        tasks.spawn(async move {
            let outcome = get(&client, &url, None).await;
            drop(permit);
            outcome
        });
        // Reap as we go, so the bar moves while requests are dispatched.
        while let Some(done) = tasks.try_join_next() {
            if let Ok(o) = done {
                outcomes.push(o);
                bar.inc(1);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(o) = done {
            outcomes.push(o);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    outcomes
}

impl Demo {
    fn counts_since(&self, before: &Counts) -> Counts {
        self.tally.snapshot().since(before)
    }

    async fn flaky(&self) -> anyhow::Result<Report> {
        const N: usize = 30;
        let jitter = |b: Behavior| {
            b.with_random_latency(Duration::from_millis(2), Duration::from_millis(20))
        };
        let mut urls = Vec::new();
        for i in 0..N {
            let path = format!("/flaky/{i}");
            let script = match i % 3 {
                0 => Script::new()
                    .then(Behavior::status(503))
                    .then(Behavior::reset())
                    .then(jitter(Behavior::ok("ok"))),
                1 => Script::new()
                    .then(Behavior::status(502))
                    .then(jitter(Behavior::ok("ok"))),
                _ => Script::always(jitter(Behavior::ok("ok"))),
            };
            self.server.script(&path, script);
            urls.push(self.server.url(&path));
        }
        let client = client(
            stack(self.seed)?,
            Transport::new(&palisade::PoolConfig::default())?,
        )?;
        let before = self.tally.snapshot();
        let outcomes = batch(&client, urls, 8, self.show).await;
        let c = self.counts_since(&before);
        let attempts: u64 = (0..N)
            .map(|i| self.server.stats(&format!("/flaky/{i}")).attempts)
            .sum();
        let success = outcomes.iter().filter(|o| o.ok).count();
        Ok(Report {
            setup: vec![
                format!(
                    "{N} GETs, 8 at a time; of every 3 requests one fails twice (503, then a \
                     connection reset), one fails once (502), one succeeds at once"
                ),
                "without retries 20 of the 30 would fail".to_owned(),
            ],
            rows: vec![row("", &outcomes, attempts)],
            layers: vec![("retry", retry_line(&c)), ("breaker", breaker_line(&c))],
            notes: vec![format!(
                "{success} of {N} recovered; each failure was retried after a jittered backoff \
                 of tens of milliseconds, and a reset GET is safe to resend"
            )],
        })
    }

    async fn outage(&self) -> anyhow::Result<Report> {
        const DOWN: usize = 40;
        const UP: usize = 10;
        let path = "/outage";
        self.server
            .script(path, Script::always(Behavior::status(503)));
        let break_for = Duration::from_millis(400);
        let breaker = BreakerLayer::builder()
            .consecutive_failures(5)
            .without_failure_ratio()
            .break_duration(break_for)
            .break_multiplier(1.0)
            .jitter(0.0)
            .build()?;
        let handle = breaker.handle();
        let client = client(
            stack(self.seed)?.breaker(Some(breaker)),
            Transport::new(&palisade::PoolConfig::default())?,
        )?;
        let url = self.server.url(path);
        let before = self.tally.snapshot();
        let down = batch(&client, vec![url.clone(); DOWN], 4, self.show).await;
        let during = self.server.stats(path).attempts;
        // The upstream recovers; after the break a probe goes through.
        self.server.script(path, Script::always(Behavior::ok("ok")));
        tokio::time::sleep(break_for + Duration::from_millis(50)).await;
        // One request first: it is the half-open probe. Sent alongside it,
        // the others would fail fast while it is in flight.
        let mut up = batch(&client, vec![url.clone()], 1, self.show).await;
        up.extend(batch(&client, vec![url.clone(); UP - 1], 4, self.show).await);
        let c = self.counts_since(&before);
        let after = self.server.stats(path).attempts - during;
        let closed = handle
            .snapshot()
            .iter()
            .all(|(_, s)| s.state == CircuitState::Closed);
        Ok(Report {
            setup: vec![
                format!(
                    "{DOWN} GETs, 4 at a time, to an upstream answering 503 to everything, then \
                     {UP} more once it is back"
                ),
                "breaker: opens after 5 failures in a row, stays open 400 ms, then lets one \
                 probe through"
                    .to_owned(),
            ],
            rows: vec![row("down", &down, during), row("back up", &up, after)],
            layers: vec![("breaker", breaker_line(&c)), ("retry", retry_line(&c))],
            notes: vec![
                format!(
                    "during the outage the upstream saw {during} attempts for {DOWN} requests \
                     ({:.2} per request); retrying without a breaker would have sent {} \
                     (4 attempts each)",
                    during as f64 / DOWN as f64,
                    DOWN * 4
                ),
                if closed {
                    "once the upstream was back, the probe succeeded and the circuit closed"
                        .to_owned()
                } else {
                    "the circuit had not closed again by the end".to_owned()
                },
            ],
        })
    }

    async fn rate_limited(&self) -> anyhow::Result<Report> {
        const N: usize = 30;
        const RATE: u32 = 20;
        const BURST: u32 = 5;
        let path = "/limited";
        let ok = || Behavior::ok("ok").with_latency(Duration::from_millis(2));
        self.server.script(
            path,
            Script::new()
                .times(8, ok())
                .then(Behavior::retry_after_secs(429, 1))
                .then(ok()),
        );
        let limiter = RateLimitLayer::builder(Quota::per_second(RATE)?.with_burst(BURST)?)
            .wait(Duration::from_secs(5))
            .build()?;
        let client = client(
            stack(self.seed)?.rate_limit(Some(limiter)),
            Transport::new(&palisade::PoolConfig::default())?,
        )?;
        let before = self.tally.snapshot();
        let outcomes = batch(&client, vec![self.server.url(path); N], 8, self.show).await;
        let c = self.counts_since(&before);
        let stats = self.server.stats(path);
        // The most attempts the upstream saw in any 1 s.
        let ts = &stats.timestamps;
        let mut peak = 0;
        for (i, t) in ts.iter().enumerate() {
            let n = ts[i..]
                .iter()
                .take_while(|u| u.saturating_duration_since(*t) < Duration::from_secs(1))
                .count();
            peak = peak.max(n);
        }
        // The 429 was the 9th attempt: what came next, and when.
        let pause = ts
            .get(8)
            .zip(ts.get(9))
            .map(|(a, b)| b.saturating_duration_since(*a));
        let mut notes = vec![format!(
            "the upstream saw at most {peak} attempts in any 1 s (limit {RATE}/s, burst {BURST})"
        )];
        if let Some(p) = pause {
            notes.push(format!(
                "after the 429 with Retry-After: 1, the next attempt came {:.2} s later: \
                 the limiter paused the host and the retry waited",
                p.as_secs_f64()
            ));
        }
        Ok(Report {
            setup: vec![format!(
                "{N} GETs, 8 at a time, limited to {RATE}/s per host (burst {BURST}); the \
                     upstream's 9th request gets 429 with Retry-After: 1"
            )],
            rows: vec![row("", &outcomes, stats.attempts)],
            layers: vec![
                (
                    "rate limit",
                    format!(
                        "{} requests waited for a slot, {} refused",
                        c.get(ev::RATE_LIMIT_WAITED),
                        c.get(ev::RATE_LIMITED)
                    ),
                ),
                ("retry", retry_line(&c)),
            ],
            notes,
        })
    }

    async fn overload(&self) -> anyhow::Result<Report> {
        const N: usize = 300;
        const CALLERS: usize = 64;
        const WORKERS: usize = 8;
        const QUEUE: usize = 16;
        let service = Duration::from_millis(20);
        let mut rows = Vec::new();
        let mut notes = vec![format!(
            "the upstream serves {WORKERS} requests at a time ({} ms each) and queues {QUEUE} \
             more; beyond {} it answers 503 at once",
            service.as_millis(),
            WORKERS + QUEUE
        )];
        let mut layers = Vec::new();
        let vegas = Vegas::new().seed(self.seed);
        for (label, limit) in [
            ("fixed 64", Limit::Fixed(CALLERS)),
            ("adaptive", Limit::from(vegas)),
        ] {
            let path = format!("/busy-{}", label.replace(' ', "-"));
            let shed_path = format!("{path}-shed");
            self.server.script(
                &path,
                Script::always(Behavior::ok("ok").with_latency(service)),
            );
            self.server
                .script(&shed_path, Script::always(Behavior::status(503)));
            let model = Arc::new(Busy {
                path: path.clone(),
                shed_path: shed_path.clone(),
                workers: Semaphore::new(WORKERS),
                capacity: WORKERS + QUEUE,
                at_server: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            });
            let concurrency = ConcurrencyLimitLayer::builder()
                .limit(limit)
                .max_wait(Duration::from_secs(10))
                .build()?;
            let diagnostics = concurrency.diagnostics();
            let stack = stack(self.seed)?
                .deadline(Some(Duration::from_secs(20)))
                .concurrency(Some(concurrency));
            let transport = Transport::new(&palisade::PoolConfig::default())?
                .with_intercept(Busy::intercept(model.clone()));
            let client = client(stack, transport)?;
            let before = self.tally.snapshot();
            let outcomes =
                batch(&client, vec![self.server.url(&path); N], CALLERS, self.show).await;
            let c = self.counts_since(&before);
            let served = self.server.stats(&path).attempts;
            let shed = self.server.stats(&shed_path).attempts;
            rows.push(row(label, &outcomes, served + shed));
            let key = Key::origin(&self.server.url("/").parse()?);
            let peak_in_flight = diagnostics.key(&key).map_or(0, |k| k.peak_in_flight);
            notes.push(format!(
                "{label}: up to {} requests at the upstream at once, {shed} shed with 503",
                model.peak.load(Ordering::Relaxed)
            ));
            let what = match limit {
                Limit::Fixed(n) => format!(
                    "{label}: up to {peak_in_flight} in flight (limit {n}), {} queued in the client",
                    c.get(ev::QUEUED)
                ),
                _ => format!(
                    "{label} (Vegas): the limit started at {} and ended at {} after {} changes; \
                     {} requests queued in the client",
                    limit.initial(),
                    diagnostics.limit(&key).unwrap_or(0),
                    c.get(ev::LIMIT_CHANGED),
                    c.get(ev::QUEUED)
                ),
            };
            layers.push(("concurrency", what));
            layers.push(("retry", format!("{label}: {}", retry_line(&c))));
            layers.push(("breaker", format!("{label}: {}", breaker_line(&c))));
        }
        notes.push(
            "a fixed limit above what the upstream takes turns the excess into 503s, retries \
             and an open breaker; the adaptive limit reads the upstream's queueing from its \
             latency and keeps the excess waiting in the client, where it costs the upstream \
             nothing"
                .to_owned(),
        );
        Ok(Report {
            setup: vec![format!(
                "{N} GETs from {CALLERS} callers at once: first with a fixed limit of {CALLERS} \
                 in flight, then with an adaptive limit (Vegas, Netflix's defaults)"
            )],
            rows,
            layers,
            notes,
        })
    }

    async fn download(&self) -> anyhow::Result<Report> {
        const SIZE: u64 = 256 * 1024 * 1024;
        let path = "/large";
        self.server
            .script(path, Script::always(Behavior::large(SIZE)));
        let stack = stack(self.seed)?
            // The deadline covers the body too: give a large one time.
            .deadline(Some(Duration::from_secs(50)))
            .attempt_timeout(Some(Duration::from_secs(5)));
        let client = client(stack, Transport::new(&palisade::PoolConfig::default())?)?;
        let rss_before = memory("VmRSS");
        // Restart the peak (VmHWM) from the current RSS, so it measures this
        // download alone (Linux >= 4.0; elsewhere the peak is the process's).
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let bar = progress::bytes(SIZE, self.show);
        let outcome = get(&client, &self.server.url(path), Some(&bar)).await;
        bar.finish_and_clear();
        let peak = memory("VmHWM");
        let secs = outcome.elapsed.as_secs_f64().max(1e-9);
        let mib = |kib: u64| kib as f64 / 1024.0;
        let mut notes = vec![format!(
            "{} MiB streamed chunk by chunk in {secs:.2} s ({:.0} MiB/s), never held whole",
            SIZE >> 20,
            (SIZE >> 20) as f64 / secs
        )];
        match (rss_before, peak) {
            (Some(before), Some(peak)) => notes.push(format!(
                "peak RSS {} the download: {:.1} MiB (RSS before: {:.1} MiB) for a {} MiB body",
                if reset {
                    "during"
                } else {
                    "of the process, up to the end of"
                },
                mib(peak),
                mib(before),
                SIZE >> 20
            )),
            _ => notes.push("peak RSS: not available on this system (/proc)".to_owned()),
        }
        Ok(Report {
            setup: vec![format!(
                "one GET of a {} MiB body generated by the upstream 64 KiB at a time",
                SIZE >> 20
            )],
            rows: vec![row("", &[outcome], self.server.stats(path).attempts)],
            layers: vec![(
                "concurrency",
                "the permit was held until the body ended (body-aware), then released".to_owned(),
            )],
            notes,
        })
    }
}

/// A field of /proc/self/status, in KiB.
fn memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// A model of an overloaded upstream's front end: `capacity` requests at
/// most at the server, of which as many as it has workers are served at a
/// time and the rest queue; beyond capacity it sheds with 503 at once. It
/// sits in the transport, in front of the real server, because the flaky
/// server's latency does not grow with load.
struct Busy {
    path: String,
    shed_path: String,
    workers: Semaphore,
    capacity: usize,
    at_server: AtomicUsize,
    peak: AtomicUsize,
}

struct Leave(Arc<Busy>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.at_server.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Busy {
    fn intercept(model: Arc<Self>) -> Intercept {
        Arc::new(move |mut svc, mut req| -> TransportFuture {
            if req.uri().path() != model.path {
                return Box::pin(svc.call(req));
            }
            let model = model.clone();
            Box::pin(async move {
                let now = model.at_server.fetch_add(1, Ordering::Relaxed) + 1;
                model.peak.fetch_max(now, Ordering::Relaxed);
                let _leave = Leave(model.clone());
                if now > model.capacity {
                    let mut parts = req.uri().clone().into_parts();
                    parts.path_and_query = model.shed_path.parse().ok();
                    if let Ok(uri) = http::Uri::from_parts(parts) {
                        *req.uri_mut() = uri;
                    }
                    return svc.call(req).await;
                }
                let _worker = model.workers.acquire().await;
                svc.call(req).await
            })
        })
    }
}
