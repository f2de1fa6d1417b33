//! Memory: peak resident set size while streaming a large body through
//! palisade's full default stack against bare reqwest, and resident set size
//! across a million requests through the standard stack on an in-memory
//! upstream.
//!
//! Run: `cargo run --release -p palisade-bench --bin memory`
//! (`-- --mib 1024 --rounds 3 --requests 1000000` to change the workload,
//! `--only stream` or `--only flat` to run one part). It prints a summary on
//! stdout and writes the results file `memory` (see
//! `palisade_bench::results`).
//!
//! Every measurement runs in a child process of its own (this binary
//! re-executed with `--case NAME`), so that each peak RSS (`VmHWM` from
//! `/proc/self/status`) is that case's alone; the child prints one JSON line
//! on stdout, which the parent reads. Linux only: elsewhere RSS reads as NaN.
//!
//! # Streaming
//!
//! The parent serves a `--mib` MiB body (default 1024) from an in-process
//! `palisade_chaos::FlakyServer` on 127.0.0.1 (`Behavior::large`, generated
//! 64 KiB at a time and never held in memory). Each round (default 3) runs
//! every case once, in a rotating order, each in a fresh process with a
//! two-worker tokio runtime:
//!
//! - `reqwest`: a default `reqwest::Client`, `Response::chunk` until the end;
//! - `palisade`: a `palisade::Client` with its default stack,
//!   `client.get(url).deadline(600 s).download().to_writer(tokio::io::sink())`;
//! - `palisade-send`: the same client, `send()` and then `chunk` until the
//!   end, to tell the download path's cost from the stack's.
//!
//! A case's peak is the child process's `VmHWM` after the body ended: the
//! runtime, the client and the streaming itself. Its base is `VmRSS` just
//! before the request, so peak minus base is what streaming added.
//! Throughput is the body size over the time from sending the request to the
//! last byte. Medians over the rounds are reported; the throughput ratio is
//! the median of the per-round ratios palisade / reqwest, so that load from
//! other processes, which drifts, falls on both alike.
//!
//! # Flat
//!
//! `--requests` requests (default 1 000 000), after 20 000 of warm-up,
//! through a `palisade::Client` whose transport is an in-memory
//! `tower::service_fn` answering `200 ok` after one yield to the runtime,
//! 64 in flight, over four origins. The stack is the default one (deadline,
//! retry with its budget, breaker, concurrency limit, attempt and body
//! timeouts) with shorter time constants so that its states turn over within
//! the run: retry backoff 1..10 ms, and a breaker that also trips after 5
//! failures in a row, breaks for 50 ms, at most 400 ms. Seeded faults: 1 % of
//! transport calls answer 503, and origin `d` answers 503 to every call
//! during the first 1 000 of each 50 000 transport calls, which opens its
//! circuit. `VmRSS` is sampled after the warm-up and every 50 000 requests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use palisade::breaker::BreakerLayer;
use palisade::retry::RetryPolicy;
use palisade::{Body, Client, StackConfig};
use palisade_bench::results::{Results, median};
use palisade_chaos::{Behavior, FlakyServer, Script};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

const MIB: u64 = 1024 * 1024;
const SEED: u64 = 0x6d65_6d6f;
const WARM_UP: usize = 20_000;
const SAMPLE_EVERY: usize = 50_000;
const IN_FLIGHT: usize = 64;
const ORIGINS: [&str; 4] = [
    "http://a.memory.test",
    "http://b.memory.test",
    "http://c.memory.test",
    "http://d.memory.test",
];
/// The streaming cases, in the order of the first round.
const CASES: [&str; 3] = ["reqwest", "palisade", "palisade-send"];

const USAGE: &str = "usage: memory [--mib N] [--rounds N] [--requests N] [--only stream|flat]";

struct Args {
    mib: u64,
    rounds: usize,
    requests: usize,
    stream: bool,
    flat: bool,
    /// Set in a child process: the case to measure.
    case: Option<String>,
    /// Set in a streaming child: the URL of the large body.
    url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        mib: 1024,
        rounds: 3,
        requests: 1_000_000,
        stream: true,
        flat: true,
        case: None,
        url: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{flag} needs a positive integer, got {value:?}"))
        };
        match flag.as_str() {
            "--mib" => args.mib = number()?,
            "--rounds" => args.rounds = number()? as usize,
            "--requests" => args.requests = number()? as usize,
            "--only" => match value.as_str() {
                "stream" => args.flat = false,
                "flat" => args.stream = false,
                _ => return Err(format!("--only takes stream or flat, got {value:?}")),
            },
            "--case" => args.case = Some(value),
            "--url" => args.url = Some(value),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`); NaN where it
/// cannot be read.
fn status_mib(field: &str) -> f64 {
    let read = || -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    };
    read().unwrap_or(f64::NAN)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

// ---------------------------------------------------------------- children

/// Streams the body at `url` with `case`'s client and returns its JSON line.
async fn stream_case(case: &str, url: &str) -> Result<Value, String> {
    let (bytes, base, start) = match case {
        "reqwest" => {
            let client = reqwest::Client::builder()
                .build()
                .map_err(|e| e.to_string())?;
            let base = status_mib("VmRSS");
            let start = Instant::now();
            let mut res = client.get(url).send().await.map_err(|e| e.to_string())?;
            let mut n = 0u64;
            while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
                n += chunk.len() as u64;
            }
            (n, base, start)
        }
        "palisade" | "palisade-send" => {
            let client = Client::builder().build().map_err(|e| e.to_string())?;
            let base = status_mib("VmRSS");
            let start = Instant::now();
            // The default 30 s deadline covers the body too; a loaded
            // machine may need longer for a GiB.
            let request = client.get(url).deadline(Duration::from_secs(600));
            let n = if case == "palisade" {
                request
                    .download()
                    .to_writer(&mut tokio::io::sink())
                    .await
                    .map_err(|e| e.to_string())?
                    .bytes()
            } else {
                let mut res = request.send().await.map_err(|e| e.to_string())?;
                let mut n = 0u64;
                while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
                    n += chunk.len() as u64;
                }
                n
            };
            (n, base, start)
        }
        other => return Err(format!("unknown case {other:?}")),
    };
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "case": case,
        "bytes": bytes,
        "secs": secs,
        "base_mib": base,
        "peak_mib": status_mib("VmHWM"),
    }))
}

/// A seeded hash of `n` (SplitMix64's finaliser): the fault draw of the
/// `n`-th transport call, the same on every run.
fn draw(n: u64) -> u64 {
    let mut z = n.wrapping_add(SEED).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The flat-memory client: the standard stack, shorter time constants, over
/// an in-memory upstream with seeded 503s. Returns it with the counter of
/// transport calls.
fn flat_client() -> Result<(Client, Arc<AtomicU64>), String> {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let transport = tower::service_fn(move |req: http::Request<Body>| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let outage = req.uri().host() == Some("d.memory.test") && n % 50_000 < 1_000;
        let status = if outage || draw(n).is_multiple_of(100) {
            503
        } else {
            200
        };
        async move {
            // As a real transport waits on I/O: every timer in the stack is
            // registered and removed again.
            tokio::task::yield_now().await;
            let mut res = http::Response::new(Full::new(Bytes::from_static(b"ok")));
            *res.status_mut() = http::StatusCode::from_u16(status).expect("a valid status");
            Ok::<_, Infallible>(res)
        }
    });
    let retry = RetryPolicy::builder()
        .base_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(10))
        .seed(SEED)
        .build_layer()
        .map_err(|e| e.to_string())?;
    let breaker = BreakerLayer::builder()
        .consecutive_failures(5)
        .break_duration(Duration::from_millis(50))
        .max_break_duration(Duration::from_millis(400))
        .seed(SEED)
        .build()
        .map_err(|e| e.to_string())?;
    let stack = StackConfig::default()
        .retry(Some(retry))
        .breaker(Some(breaker));
    let client = Client::builder()
        .stack(|_| stack)
        .transport(transport)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((client, calls))
}

/// Sends requests `from..from + n`, `IN_FLIGHT` at a time, reading every
/// body, and counts the outcomes: the final status, or the error's kind.
async fn flat_batch(client: &Client, from: usize, n: usize, outcomes: &mut BTreeMap<String, u64>) {
    let next = Arc::new(AtomicUsize::new(from));
    let end = from + n;
    let mut tasks = JoinSet::new();
    for _ in 0..IN_FLIGHT.min(n) {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            let mut outcomes = BTreeMap::<String, u64>::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let url = format!("{}/items/{}", ORIGINS[i % ORIGINS.len()], i % 16);
                let outcome = match client.get(&url).send().await {
                    Ok(res) => {
                        let status = res.status().as_u16();
                        match res.bytes().await {
                            Ok(_) => status.to_string(),
                            Err(_) => "body_error".to_owned(),
                        }
                    }
                    Err(e) => e.kind().as_str().to_owned(),
                };
                *outcomes.entry(outcome).or_insert(0) += 1;
            }
            outcomes
        });
    }
    while let Some(res) = tasks.join_next().await {
        for (k, v) in res.expect("a load task panicked") {
            *outcomes.entry(k).or_insert(0) += v;
        }
    }
}

/// The flat-memory run, as its JSON line.
async fn flat_case(requests: usize) -> Result<Value, String> {
    let (client, calls) = flat_client()?;
    let mut outcomes = BTreeMap::new();
    flat_batch(&client, 0, WARM_UP, &mut outcomes).await;
    outcomes.clear();
    let calls_before = calls.load(Ordering::Relaxed);

    let mut series = vec![(0.0, status_mib("VmRSS"))];
    let start = Instant::now();
    let mut done = 0;
    while done < requests {
        let n = SAMPLE_EVERY.min(requests - done);
        flat_batch(&client, WARM_UP + done, n, &mut outcomes).await;
        done += n;
        let rss = status_mib("VmRSS");
        eprintln!("flat: {done} requests, RSS {rss:.2} MiB");
        series.push((done as f64, rss));
    }
    let secs = start.elapsed().as_secs_f64();
    if client.in_flight() != 0 {
        return Err(format!("{} requests still in flight", client.in_flight()));
    }
    Ok(json!({
        "case": "flat",
        "requests": requests,
        "secs": secs,
        "transport_calls": calls.load(Ordering::Relaxed) - calls_before,
        "outcomes": outcomes,
        "series": series,
        "peak_mib": status_mib("VmHWM"),
    }))
}

fn child(args: &Args, case: &str) -> Result<(), String> {
    let rt = runtime();
    let line = if case == "flat" {
        rt.block_on(flat_case(args.requests))?
    } else {
        let url = args.url.as_deref().ok_or("--case needs --url")?;
        let line = rt.block_on(stream_case(case, url))?;
        let expected = args.mib * MIB;
        if line["bytes"].as_u64() != Some(expected) {
            return Err(format!("{case}: got {} of {expected} bytes", line["bytes"]));
        }
        line
    };
    println!("{line}");
    Ok(())
}

// ------------------------------------------------------------------ parent

/// Runs this binary with `args` and returns the JSON line it printed.
fn run_child(args: &[String]) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("spawning {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or(format!("child {args:?} printed no JSON line"))?;
    serde_json::from_str(line).map_err(|e| format!("child {args:?}: {e}: {line}"))
}

/// Per-case figures over the rounds.
#[derive(Default)]
struct Runs {
    peak_mib: Vec<f64>,
    base_mib: Vec<f64>,
    mib_s: Vec<f64>,
}

fn stream(args: &Args, r: &mut Results) -> Result<(), String> {
    let rt = runtime();
    let server = rt
        .block_on(FlakyServer::start())
        .map_err(|e| format!("server: {e}"))?;
    server.script("/big", Script::always(Behavior::large(args.mib * MIB)));
    let url = server.url("/big");

    let mut runs: Vec<Runs> = CASES.iter().map(|_| Runs::default()).collect();
    for round in 0..args.rounds {
        for k in 0..CASES.len() {
            let i = (k + round) % CASES.len();
            let child_args: Vec<String> = [
                "--case",
                CASES[i],
                "--url",
                &url,
                "--mib",
                &args.mib.to_string(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            // The server runs on `rt`'s workers while this thread waits.
            let line = run_child(&child_args)?;
            let secs = line["secs"].as_f64().ok_or("no secs")?;
            let run = &mut runs[i];
            run.mib_s.push(args.mib as f64 / secs);
            run.peak_mib
                .push(line["peak_mib"].as_f64().unwrap_or(f64::NAN));
            run.base_mib
                .push(line["base_mib"].as_f64().unwrap_or(f64::NAN));
            eprintln!(
                "round {round} {:<13} {:>8.1} MiB/s  peak {:>6.1} MiB  base {:>6.1} MiB",
                CASES[i],
                args.mib as f64 / secs,
                run.peak_mib[round],
                run.base_mib[round]
            );
        }
    }
    drop(server);
    drop(rt);

    let ratio = |i: usize, f: fn(&Runs) -> &Vec<f64>| {
        let per_round: Vec<f64> = f(&runs[i])
            .iter()
            .zip(f(&runs[0]))
            .map(|(p, b)| p / b)
            .collect();
        median(&per_round)
    };
    r.number("stream_mib", args.mib as f64);
    r.number("stream_rounds", args.rounds as f64);
    println!(
        "\nstreaming {} MiB, median of {} rounds, each case in its own process\n",
        args.mib, args.rounds
    );
    println!(
        "| client | peak RSS MiB | RSS before the request MiB | throughput MiB/s | throughput vs reqwest |"
    );
    println!("|---|---|---|---|---|");
    for (i, name) in CASES.iter().enumerate() {
        let key = name.replace('-', "_");
        let (peak, base, mib_s) = (
            median(&runs[i].peak_mib),
            median(&runs[i].base_mib),
            median(&runs[i].mib_s),
        );
        let t_ratio = ratio(i, |r| &r.mib_s);
        r.number(&format!("stream_{key}_peak_mib"), peak);
        r.number(&format!("stream_{key}_base_mib"), base);
        r.number(&format!("stream_{key}_mib_s"), mib_s);
        if i > 0 {
            let p_ratio = ratio(i, |r| &r.peak_mib);
            let suffix = if *name == "palisade" {
                String::new()
            } else {
                format!("_{}", key.trim_start_matches("palisade_"))
            };
            r.number(&format!("stream_throughput_ratio{suffix}"), t_ratio);
            r.number(&format!("stream_peak_ratio{suffix}"), p_ratio);
        }
        println!("| {name} | {peak:.1} | {base:.1} | {mib_s:.0} | {t_ratio:.2} x |");
    }
    Ok(())
}

fn flat(args: &Args, r: &mut Results) -> Result<(), String> {
    let line = run_child(&[
        "--case".to_owned(),
        "flat".to_owned(),
        "--requests".to_owned(),
        args.requests.to_string(),
    ])?;
    let series: Vec<(f64, f64)> =
        serde_json::from_value(line["series"].clone()).map_err(|e| format!("series: {e}"))?;
    let start = series.first().map_or(f64::NAN, |p| p.1);
    let end = series.last().map_or(f64::NAN, |p| p.1);
    let max = series.iter().map(|p| p.1).fold(f64::NAN, f64::max);
    let secs = line["secs"].as_f64().unwrap_or(f64::NAN);
    let calls = line["transport_calls"].as_f64().unwrap_or(f64::NAN);
    let outcomes = line["outcomes"].as_object().cloned().unwrap_or_default();
    let count = |k: &str| outcomes.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let requests = args.requests as f64;

    r.number("flat_requests", requests);
    r.number("flat_warm_up", WARM_UP as f64);
    r.number("flat_rss_start_mib", start);
    r.number("flat_rss_end_mib", end);
    r.number("flat_rss_max_mib", max);
    r.number("flat_growth_kib", (end - start) * 1024.0);
    // A leak grows linearly; an allocator settling does not: the second
    // half of the run tells them apart.
    let mid = series
        .iter()
        .find(|p| p.0 >= requests / 2.0)
        .map_or(f64::NAN, |p| p.1);
    r.number("flat_growth_second_half_kib", (end - mid) * 1024.0);
    r.number(
        "flat_growth_bytes_per_request",
        (end - start) * MIB as f64 / requests,
    );
    r.number("flat_req_s", requests / secs);
    r.number("flat_attempts_per_request", calls / requests);
    r.number("flat_ok_share", count("200") / requests);
    r.number("flat_circuit_open", count("circuit_open"));
    r.text(
        "flat_outcomes",
        outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    r.series("flat_rss", "requests after warm-up", "RSS (MiB)", series);

    println!(
        "\nflat: {} requests ({} warm-up), {IN_FLIGHT} in flight, {} origins, in-memory upstream",
        args.requests,
        WARM_UP,
        ORIGINS.len()
    );
    println!(
        "RSS {start:.2} MiB -> {end:.2} MiB ({:+.0} KiB), max {max:.2} MiB; {:.0} req/s, {:.3} transport calls per request",
        (end - start) * 1024.0,
        requests / secs,
        calls / requests
    );
    println!("second half: {:+.0} KiB", (end - mid) * 1024.0);
    println!("outcomes: {outcomes:?}");
    Ok(())
}

fn parent(args: &Args) -> Result<(), String> {
    let mut r = Results::new("memory");
    let given: Vec<String> = std::env::args().skip(1).collect();
    let cmd = if given.is_empty() {
        "cargo run --release -p palisade-bench --bin memory".to_owned()
    } else {
        format!(
            "cargo run --release -p palisade-bench --bin memory -- {}",
            given.join(" ")
        )
    };
    r.text("cmd", cmd);
    if args.stream {
        stream(args, &mut r)?;
    }
    if args.flat {
        flat(args, &mut r)?;
    }
    let path = r.write().map_err(|e| format!("writing results: {e}"))?;
    println!("\nresults: {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match args.case.clone() {
        Some(case) => child(&args, &case),
        None => parent(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory: {e}");
            ExitCode::FAILURE
        }
    }
}
