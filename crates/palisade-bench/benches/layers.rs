//! Each palisade layer's own aim, measured side by side in one run against
//! the same bare call: nanoseconds per call over an in-memory service, the
//! cost over the bare call, and heap allocations and bytes per call.
//!
//! Every case is one layer with its defaults around an in-memory upstream,
//! driven on one current-thread tokio runtime (timers enabled): `ready()`,
//! `call` with a GET whose URI is cloned from a parsed one, await the head,
//! read the body (one `Full<Bytes>` frame) to its end.
//!
//! | case | layer | aim over bare |
//! |---|---|---|
//! | `retry` | `RetryLayer::default()` | < 150 ns, no allocation |
//! | `breaker_closed` | `BreakerLayer::new()` (Polly's defaults) | < 100 ns, no allocation |
//! | `breaker_open` | the same, its key isolated: fast fail | < 100 ns, no allocation |
//! | `ratelimit_unkeyed` | `RateLimitLayer`, `Global` key, quota never reached | < 100 ns |
//! | `ratelimit_keyed` | `RateLimitLayer::new`, by origin, over 100 origins | < 100 ns |
//! | `concurrency` | `ConcurrencyLimitLayer::default()`, by origin, uncontended | < 150 ns |
//! | `attempt_timeout` | `AttemptTimeoutLayer::default()` | < 100 ns, no allocation |
//! | `deadline` | `DeadlineLayer::default()` | < 100 ns, no allocation |
//! | `body_timeout` | `BodyTimeoutLayer::default()` | < 100 ns, no allocation |
//!
//! Two upstreams, each with its own bare baseline:
//!
//! - `ready`: the response is ready at the first poll, so the figure is the
//!   layer's own code. The headline keys and the verdicts use this one, as
//!   the per-crate benches do;
//! - `pending`: the response future yields once, as a real transport waits
//!   on I/O, so a timeout layer really registers its timer in tokio's wheel
//!   and removes it. `timer_entry` (pending only) is a bare call that also
//!   creates, registers and drops one tokio `Sleep`: the price of one timer
//!   entry, for the timeout layers' "beyond tokio's timer entry".
//!
//! Method: rounds of `PALISADE_BENCH_CALLS` calls per case (default 10 000),
//! every case once per round, the order rotated each round so that all
//! cases share the machine's load. A case's time is the median over rounds
//! of its ns per call; its cost over bare is the median over rounds of
//! (case − bare of the same round). Allocations and bytes per call are
//! counted with `stats_alloc` over 10 000 calls after a warm-up: absolute,
//! the bare call's own (zero here) included.
//!
//! Run: `cargo bench -p palisade-bench --bench layers`
//! (`PALISADE_BENCH_ROUNDS=3 PALISADE_BENCH_CALLS=2000` for a quick run).
//! It prints a table and writes `layers.json` in the results directory
//! (see `palisade_bench::results`), keys:
//!
//! - `bare_ns`, `bare_allocs`, `bare_bytes`: the bare call (ready);
//! - per case: `<case>_ns`, `<case>_over_bare_ns`, `<case>_allocs`,
//!   `<case>_bytes` (ready), `<case>_aim_ns`, `<case>_verdict` (text: `met`
//!   or `missed by …`), `<case>_pending_ns`, `<case>_pending_over_bare_ns`,
//!   `<case>_pending_allocs`;
//! - `pending_bare_ns`, `timer_entry_over_bare_ns`;
//! - `rounds`, `calls_per_round`, `runtime`, `features`, `cmd`.
//!
//! The layers come through the `palisade` facade with its default features,
//! so their `metrics` and `tracing` instrumentation is compiled in (no
//! recorder or subscriber installed), as in an application using `palisade`.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use http::{Request, Response, Uri};
use palisade::Body;
use palisade::breaker::BreakerLayer;
use palisade::concurrency::ConcurrencyLimitLayer;
use palisade::core::{Global, Key};
use palisade::ratelimit::{Quota, RateLimitLayer};
use palisade::retry::RetryLayer;
use palisade::timeout::{AttemptTimeoutLayer, BodyTimeoutLayer, DeadlineLayer};
use palisade_bench::results::{Results, median};
use palisade_bench::upstream::{Res, ok, pending, ready};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const URL: &str = "http://upstream.bench/items";
const ALLOC_CALLS: u64 = 10_000;
const ORIGINS: usize = 100;

/// The pending upstream plus one tokio timer entry, created, registered
/// (polled once) and dropped, as a timeout layer's timer is.
fn pending_with_timer() -> impl Service<Request<Body>, Response = Res, Error = Infallible> + Clone {
    service_fn(|_req: Request<Body>| async {
        let mut sleep = pin!(tokio::time::sleep(Duration::from_secs(10)));
        poll_fn(|cx| {
            let _ = sleep.as_mut().poll(cx);
            Poll::Ready(())
        })
        .await;
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(ok())
    })
}

/// One call: ready, call, await the head, read the body to its end.
/// Whether it produced a whole response (the open breaker fails fast).
async fn one_call<S, B>(svc: &mut S, uri: &Uri) -> bool
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body,
{
    let mut req = Request::new(Body::empty());
    *req.uri_mut() = uri.clone();
    let Ok(svc) = svc.ready().await else {
        return false;
    };
    let Ok(res) = svc.call(req).await else {
        return false;
    };
    let mut body = pin!(res.into_body());
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if black_box(frame).is_err() {
            return false;
        }
    }
    true
}

/// Runs `n` calls on the runtime, cycling over its URIs; returns the time
/// they took and how many produced a whole response.
type Run = Box<dyn FnMut(&Runtime, u64) -> (Duration, u64)>;

fn run<S, B>(mut svc: S, uris: Vec<Uri>) -> Run
where
    S: Service<Request<Body>, Response = Response<B>> + 'static,
    B: http_body::Body,
{
    Box::new(move |rt, n| {
        rt.block_on(async {
            let mut oks = 0;
            let mut i = 0;
            let start = Instant::now();
            for _ in 0..n {
                oks += u64::from(one_call(&mut svc, &uris[i]).await);
                i += 1;
                if i == uris.len() {
                    i = 0;
                }
            }
            (start.elapsed(), oks)
        })
    })
}

struct Case {
    name: &'static str,
    upstream: &'static str,
    /// Whether every call should produce a response (false: every call
    /// should fail fast).
    succeeds: bool,
    run: Run,
}

/// A quota no run reaches: the cost of the decision alone, never a wait.
fn unlimited() -> Quota {
    Quota::per_second(1_000_000_000)
        .unwrap()
        .with_burst(1_000_000)
        .unwrap()
}

fn one_uri() -> Vec<Uri> {
    // Parsed, not static, as a real request's URI is.
    vec![URL.parse().unwrap()]
}

fn origins() -> Vec<Uri> {
    (0..ORIGINS)
        .map(|i| format!("http://api-{i}.bench/items").parse().unwrap())
        .collect()
}

macro_rules! cases {
    ($cases:expr, $variant:literal, $upstream:expr) => {{
        let mut push = |name: &'static str, succeeds: bool, run: Run| {
            $cases.push(Case {
                name,
                upstream: $variant,
                succeeds,
                run,
            })
        };
        push("bare", true, run($upstream, one_uri()));
        push(
            "retry",
            true,
            run(RetryLayer::default().layer($upstream), one_uri()),
        );
        push(
            "breaker_closed",
            true,
            run(BreakerLayer::new().layer($upstream), one_uri()),
        );
        let open = BreakerLayer::new();
        open.handle().isolate(&Key::origin(&one_uri()[0]));
        push("breaker_open", false, run(open.layer($upstream), one_uri()));
        push(
            "ratelimit_unkeyed",
            true,
            run(
                RateLimitLayer::builder(unlimited())
                    .key_fn(Global)
                    .build()
                    .unwrap()
                    .layer($upstream),
                one_uri(),
            ),
        );
        push(
            "ratelimit_keyed",
            true,
            run(RateLimitLayer::new(unlimited()).layer($upstream), origins()),
        );
        push(
            "concurrency",
            true,
            run(ConcurrencyLimitLayer::default().layer($upstream), one_uri()),
        );
        push(
            "attempt_timeout",
            true,
            run(AttemptTimeoutLayer::default().layer($upstream), one_uri()),
        );
        push(
            "deadline",
            true,
            run(DeadlineLayer::default().layer($upstream), one_uri()),
        );
        push(
            "body_timeout",
            true,
            run(BodyTimeoutLayer::default().layer($upstream), one_uri()),
        );
    }};
}

/// Each case's aim over bare, in ns, and whether it also aims at no
/// allocation (beyond what the bare call allocates).
const AIMS: [(&str, f64, bool); 9] = [
    ("retry", 150.0, true),
    ("breaker_closed", 100.0, true),
    ("breaker_open", 100.0, true),
    ("ratelimit_unkeyed", 100.0, false),
    ("ratelimit_keyed", 100.0, false),
    ("concurrency", 150.0, false),
    ("attempt_timeout", 100.0, true),
    ("deadline", 100.0, true),
    ("body_timeout", 100.0, true),
];

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: expected a positive integer")),
        Err(_) => default,
    }
    .max(1)
}

struct Measured {
    ns: f64,
    over_bare_ns: f64,
    allocs: f64,
    bytes: f64,
}

fn main() -> std::io::Result<()> {
    // `cargo bench` passes `--bench`; any filter argument is ignored: the
    // point of this bench is every case in one run. Without `--bench`
    // (`cargo test --benches`, a debug build) every case runs its check
    // once and nothing is measured or written, so a test run never
    // replaces the results with a debug build's figures.
    let measuring = std::env::args().any(|a| a == "--bench");
    let rounds = env_number("PALISADE_BENCH_ROUNDS", 15) as usize;
    let calls = env_number("PALISADE_BENCH_CALLS", 10_000);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut cases: Vec<Case> = Vec::new();
    {
        // Layers with keyed state or timers read tokio's clock when built.
        let _guard = rt.enter();
        cases!(cases, "ready", ready());
        cases!(cases, "pending", pending());
        cases.push(Case {
            name: "timer_entry",
            upstream: "pending",
            succeeds: true,
            run: run(pending_with_timer(), one_uri()),
        });
    }

    // Warm-up, and a check that every case does what it says.
    for case in &mut cases {
        let (_, oks) = (case.run)(&rt, 1_000);
        let want = if case.succeeds { 1_000 } else { 0 };
        assert_eq!(
            oks, want,
            "{}/{}: {oks} of 1000 calls succeeded",
            case.upstream, case.name
        );
    }
    if !measuring {
        println!(
            "layers: {} cases checked; run `cargo bench` to measure",
            cases.len()
        );
        return Ok(());
    }

    // Interleaved rounds, the starting case rotated each round.
    let n = cases.len();
    let mut times = vec![Vec::with_capacity(rounds); n];
    for r in 0..rounds {
        for k in 0..n {
            let i = (r + k) % n;
            let (d, _) = (cases[i].run)(&rt, calls);
            times[i].push(d.as_nanos() as f64 / calls as f64);
        }
    }

    let bares: Vec<usize> = cases
        .iter()
        .map(|c| {
            cases
                .iter()
                .position(|b| b.name == "bare" && b.upstream == c.upstream)
                .unwrap()
        })
        .collect();
    let mut measured = Vec::with_capacity(n);
    for (i, case) in cases.iter_mut().enumerate() {
        let b = bares[i];
        let diffs: Vec<f64> = times[i].iter().zip(&times[b]).map(|(c, b)| c - b).collect();
        (case.run)(&rt, 100);
        let region = Region::new(GLOBAL);
        (case.run)(&rt, ALLOC_CALLS);
        let stats = region.change();
        measured.push(Measured {
            ns: median(&times[i]),
            over_bare_ns: median(&diffs),
            allocs: stats.allocations as f64 / ALLOC_CALLS as f64,
            bytes: stats.bytes_allocated as f64 / ALLOC_CALLS as f64,
        });
    }

    let find = |upstream: &str, name: &str| {
        let i = cases
            .iter()
            .position(|c| c.name == name && c.upstream == upstream)
            .unwrap();
        &measured[i]
    };

    let mut r = Results::new("layers");
    let bare = find("ready", "bare");
    r.number("bare_ns", bare.ns);
    r.number("bare_allocs", bare.allocs);
    r.number("bare_bytes", bare.bytes);
    r.number("pending_bare_ns", find("pending", "bare").ns);
    r.number(
        "timer_entry_over_bare_ns",
        find("pending", "timer_entry").over_bare_ns,
    );

    println!(
        "palisade layers, current-thread tokio runtime, median of {rounds} interleaved rounds of {calls} calls"
    );
    println!(
        "{:<18} {:>8} {:>9} {:>7} {:>7} {:>9} {:>9} {:>7}  {:>5}  verdict",
        "case", "ns", "over bare", "allocs", "bytes", "pending", "pend over", "allocs", "aim"
    );
    let bare_pending = find("pending", "bare");
    println!(
        "{:<18} {:>8.0} {:>9} {:>7.2} {:>7.1} {:>9.0} {:>9} {:>7.2}",
        "bare", bare.ns, "", bare.allocs, bare.bytes, bare_pending.ns, "", bare_pending.allocs
    );
    for (name, aim, no_alloc) in AIMS {
        let m = find("ready", name);
        let p = find("pending", name);
        let extra_allocs = m.allocs - bare.allocs;
        let mut misses = Vec::new();
        if m.over_bare_ns >= aim {
            misses.push(format!("{:.0} ns", m.over_bare_ns - aim));
        }
        if no_alloc && extra_allocs > 0.0 {
            misses.push(format!("{extra_allocs:.2} allocations per call"));
        }
        let verdict = if misses.is_empty() {
            "met".to_owned()
        } else {
            format!("missed by {}", misses.join(" and "))
        };
        r.number(&format!("{name}_ns"), m.ns);
        r.number(&format!("{name}_over_bare_ns"), m.over_bare_ns);
        r.number(&format!("{name}_allocs"), m.allocs);
        r.number(&format!("{name}_bytes"), m.bytes);
        r.number(&format!("{name}_aim_ns"), aim);
        r.text(&format!("{name}_verdict"), verdict.clone());
        r.number(&format!("{name}_pending_ns"), p.ns);
        r.number(&format!("{name}_pending_over_bare_ns"), p.over_bare_ns);
        r.number(&format!("{name}_pending_allocs"), p.allocs);
        println!(
            "{:<18} {:>8.0} {:>+9.0} {:>7.2} {:>7.1} {:>9.0} {:>+9.0} {:>7.2}  <{:>4.0}  {verdict}",
            name, m.ns, m.over_bare_ns, m.allocs, m.bytes, p.ns, p.over_bare_ns, p.allocs, aim
        );
    }
    let timer = find("pending", "timer_entry");
    println!(
        "{:<18} {:>8} {:>9} {:>7} {:>7} {:>9.0} {:>+9.0} {:>7.2}  (one tokio timer entry)",
        "timer_entry", "", "", "", "", timer.ns, timer.over_bare_ns, timer.allocs
    );

    r.number("rounds", rounds as f64);
    r.number("calls_per_round", calls as f64);
    r.text("runtime", "tokio current_thread");
    // The facade's defaults turn on the layers' `metrics` and `tracing`
    // features; the per-crate benches measure without them.
    r.text("features", "palisade default features (metrics, tracing)");
    let mut cmd = String::new();
    for var in ["PALISADE_BENCH_ROUNDS", "PALISADE_BENCH_CALLS"] {
        if let Ok(v) = std::env::var(var) {
            cmd.push_str(&format!("{var}={v} "));
        }
    }
    cmd.push_str("cargo bench -p palisade-bench --bench layers");
    r.text("cmd", cmd);
    let path = r.write()?;
    println!("wrote {}", path.display());
    Ok(())
}
