//! palisade against the Python clients the seeds are about (aiohttp and
//! httpx, plain and with the seeds' resilience stack), on the same workload
//! against the same loopback server, in one run.
//!
//! The server is `palisade_chaos::FlakyServer` answering `200 ok`, started
//! in this process on a multi-thread tokio runtime. The Python clients run
//! `crates/palisade-bench/python/bench.py` in subprocesses, from a
//! virtualenv at `target/palisade-bench/venv` that this binary creates with
//! `python3 -m venv` and `pip install -r requirements.txt` when it is
//! missing or its requirements changed. The Rust clients run in-process:
//! bare reqwest (palisade's pool settings, no layer) and `palisade::Client`
//! with its default stack and `base_url` set to the server.
//!
//! Each round runs, for every client in turn (the order rotates from round
//! to round):
//! - steady: `--requests` GETs (default 20 000), each body read to its end,
//!   `--in-flight` (default 64) at once: that many tasks taking the next
//!   request from a shared counter;
//! - burst: `--burst` GETs (default 1 000) launched at once (Python:
//!   `asyncio.gather`; Rust: one spawned task each), the seeds' "1 000
//!   requests at once", from a freshly built client that has sent one
//!   request. Every client is limited to 100 connections or requests in
//!   flight (aiohttp's and httpx's default pools, palisade's concurrency
//!   limit) except bare reqwest, which has no such limit and opens as many
//!   connections as the burst asks for.
//!
//! The median of `--rounds` (default 5) rounds is reported: steady
//! requests per second as a ratio to palisade and to bare reqwest, and the
//! burst's total time, errors and p99 latency. A Python client's time
//! excludes its interpreter's start and its warm-up (see `bench.py`).
//! Python runs on one core; the Rust clients and the server share this
//! process's runtime.
//!
//! Run: `cargo run --release -p palisade-bench --bin pycompare`
//! (`-- --rounds 1 --requests 2000 --burst 1000` for a short run,
//! `--python PATH` for another interpreter, `--no-resilient` to skip the
//! resilience-stack variants). It prints a markdown table on stdout, each
//! run's figures on stderr, and writes `python.json` with
//! `palisade_bench::results::Results`. Without a usable Python 3.11+ (or
//! pip) it exits with status 1 and a one-line message.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use palisade_bench::results::{Results, load_average, median, quantile, workspace_root};
use palisade_chaos::{Behavior, FlakyServer, Script};
use palisade_reqwest::PoolConfig;
use tokio::task::JoinSet;
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: pycompare [--rounds N] [--requests N] [--in-flight N] [--burst N] \
                     [--python PATH] [--venv DIR] [--no-resilient]";

struct Args {
    rounds: usize,
    requests: usize,
    in_flight: usize,
    burst: usize,
    python: String,
    venv: PathBuf,
    resilient: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rounds: 5,
        requests: 20_000,
        in_flight: 64,
        burst: 1_000,
        python: "python3".to_owned(),
        venv: std::fs::canonicalize(workspace_root())
            .unwrap_or_else(|_| workspace_root())
            .join("target/palisade-bench/venv"),
        resilient: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--rounds" => &mut args.rounds,
            "--requests" => &mut args.requests,
            "--in-flight" => &mut args.in_flight,
            "--burst" => &mut args.burst,
            "--python" => {
                args.python = it.next().ok_or("--python needs a value")?;
                continue;
            }
            "--venv" => {
                args.venv = it.next().ok_or("--venv needs a value")?.into();
                continue;
            }
            "--no-resilient" => {
                args.resilient = false;
                continue;
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        };
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        *slot = value
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(format!("{flag} needs a positive integer, got {value:?}"))?;
    }
    Ok(args)
}

// ---------------------------------------------------------------- Python

/// The `python/` directory beside this crate's manifest.
fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Runs `cmd`, turning a failure to start it or a non-zero exit into a
/// one-line message that names `what`.
fn run(cmd: &mut Command, what: &str) -> Result<Output, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output");
        return Err(format!("{what} failed ({}): {}", out.status, last.trim()));
    }
    Ok(out)
}

/// Checks that `python` is a Python 3.11+ and returns the virtualenv's
/// interpreter, creating the virtualenv and installing the requirements
/// when it is missing or `requirements.txt` changed since.
fn ensure_venv(python: &str, venv: &Path) -> Result<PathBuf, String> {
    let out = run(
        Command::new(python).args([
            "-c",
            "import sys; print(sys.version_info[0], sys.version_info[1])",
        ]),
        &format!("`{python}`"),
    )
    .map_err(|e| format!("{e}; install Python 3.11 or later, or pass --python PATH"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version.split_whitespace().map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(3)), Some(Ok(minor))) if minor >= 11 => {}
        _ => {
            return Err(format!(
                "`{python}` is Python {}; bench.py needs 3.11 or later (pass --python PATH)",
                version.trim().replace(' ', ".")
            ));
        }
    }

    let requirements = python_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let marker = venv.join("palisade-requirements.txt");
    let py = venv_python(venv);
    if py.exists() && std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(py);
    }
    if !py.exists() {
        eprintln!("creating a virtualenv at {}", venv.display());
        run(
            Command::new(python).args(["-m", "venv"]).arg(venv),
            &format!("`{python} -m venv {}`", venv.display()),
        )?;
    }
    eprintln!("installing {} into it", requirements.display());
    run(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                "-r",
            ])
            .arg(&requirements),
        "`pip install -r requirements.txt`",
    )?;
    std::fs::write(&marker, wanted)
        .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    Ok(py)
}

/// The interpreter's and libraries' versions, from `bench.py --versions`.
fn python_versions(py: &Path) -> Result<serde_json::Value, String> {
    let out = run(
        Command::new(py)
            .arg(python_dir().join("bench.py"))
            .arg("--versions"),
        "`bench.py --versions`",
    )?;
    serde_json::from_slice(&out.stdout).map_err(|e| format!("`bench.py --versions`: {e}"))
}

// --------------------------------------------------------------- clients

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Steady,
    Burst,
}

impl Mode {
    const fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Burst => "burst",
        }
    }
}

/// A Rust client under test. Each sends a GET and reads the body to its end.
#[derive(Clone)]
enum Rust {
    Reqwest(reqwest::Client),
    Palisade(palisade::Client),
}

impl Rust {
    /// A new client of the same kind, with an empty pool.
    fn fresh(&self, server: &FlakyServer) -> Result<Self, BoxError> {
        Ok(match self {
            Self::Reqwest(_) => Self::Reqwest(bare_reqwest()?),
            Self::Palisade(_) => Self::Palisade(palisade_client(server)?),
        })
    }

    async fn get(&self, server: &FlakyServer, path: &str) -> Result<(), BoxError> {
        let res = match self {
            Self::Reqwest(c) => c.get(server.url(path)).send().await?,
            // Relative to the base URL (the server's root).
            Self::Palisade(c) => c.get(path.trim_start_matches('/')).send().await?,
        };
        let status = res.status();
        std::hint::black_box(res.bytes().await?);
        if !status.is_success() {
            return Err(format!("status {status}").into());
        }
        Ok(())
    }
}

/// reqwest with the pool palisade's default stack uses (100 idle
/// connections kept per host), following no redirects, like palisade's
/// transport; no layer, and no limit on connections.
fn bare_reqwest() -> Result<reqwest::Client, BoxError> {
    Ok(PoolConfig::default()
        .max_idle_per_host(100)
        .client_builder()?
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

fn palisade_client(server: &FlakyServer) -> Result<palisade::Client, BoxError> {
    Ok(palisade::Client::builder()
        .base_url(&server.url("/"))
        .build()?)
}

enum Kind {
    Python {
        client: &'static str,
        stack: &'static str,
    },
    Rust(Rust),
}

struct Client {
    /// The key in the results file.
    key: &'static str,
    /// The name in the table.
    label: String,
    kind: Kind,
}

/// What one run measured.
#[derive(Clone, Copy)]
struct Run {
    seconds: f64,
    rps: f64,
    errors: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn json_f64(v: &serde_json::Value, key: &str) -> Result<f64, String> {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .ok_or(format!("bench.py printed no number {key:?}: {v}"))
}

/// Runs `bench.py` once in a subprocess (off the runtime's threads, which
/// serve its requests).
async fn run_python(
    py: &Path,
    url: String,
    client: &str,
    stack: &str,
    mode: Mode,
    requests: usize,
    in_flight: usize,
) -> Result<Run, String> {
    let mut cmd = Command::new(py);
    cmd.arg(python_dir().join("bench.py")).args([
        "--url",
        &url,
        "--client",
        client,
        "--stack",
        stack,
        "--mode",
        mode.name(),
        "--requests",
        &requests.to_string(),
        "--in-flight",
        &in_flight.to_string(),
    ]);
    let what = format!(
        "bench.py --client {client} --stack {stack} --mode {}",
        mode.name()
    );
    let out = tokio::task::spawn_blocking(move || run(&mut cmd, &what))
        .await
        .map_err(|e| format!("bench.py: {e}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bench.py printed {line:?}: {e}"))?;
    Ok(Run {
        seconds: json_f64(&v, "seconds")?,
        rps: json_f64(&v, "rps")?,
        errors: json_f64(&v, "errors")?,
        p50_ms: json_f64(&v, "p50_ms")?,
        p99_ms: json_f64(&v, "p99_ms")?,
    })
}

/// `requests` GETs with `in_flight` tasks taking the next from a counter;
/// per-request latencies in milliseconds, and the error count.
async fn steady(
    client: &Rust,
    server: &Arc<FlakyServer>,
    path: &str,
    requests: usize,
    in_flight: usize,
) -> (Vec<f64>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let path: Arc<str> = path.into();
    let mut tasks = JoinSet::new();
    for _ in 0..in_flight.min(requests) {
        let (client, server, next, path) =
            (client.clone(), server.clone(), next.clone(), path.clone());
        tasks.spawn(async move {
            let mut ms = Vec::with_capacity(requests / in_flight + 1);
            let mut errors = 0;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let t0 = Instant::now();
                match client.get(&server, &path).await {
                    Ok(()) => ms.push(t0.elapsed().as_secs_f64() * 1e3),
                    Err(_) => errors += 1,
                }
            }
            (ms, errors)
        });
    }
    let mut all = Vec::with_capacity(requests);
    let mut errors = 0;
    while let Some(res) = tasks.join_next().await {
        let (ms, e) = res.expect("a load task panicked");
        all.extend(ms);
        errors += e;
    }
    (all, errors)
}

/// `requests` GETs launched at once, one task each.
async fn burst(
    client: &Rust,
    server: &Arc<FlakyServer>,
    path: &str,
    requests: usize,
) -> (Vec<f64>, usize) {
    let path: Arc<str> = path.into();
    let mut tasks = JoinSet::new();
    for _ in 0..requests {
        let (client, server, path) = (client.clone(), server.clone(), path.clone());
        tasks.spawn(async move {
            let t0 = Instant::now();
            client
                .get(&server, &path)
                .await
                .map(|()| t0.elapsed().as_secs_f64() * 1e3)
        });
    }
    let mut ms = Vec::with_capacity(requests);
    let mut errors = 0;
    while let Some(res) = tasks.join_next().await {
        match res.expect("a burst task panicked") {
            Ok(t) => ms.push(t),
            Err(_) => errors += 1,
        }
    }
    (ms, errors)
}

async fn run_rust(
    client: &Rust,
    server: &Arc<FlakyServer>,
    path: &str,
    mode: Mode,
    requests: usize,
    in_flight: usize,
) -> Result<Run, BoxError> {
    let (seconds, (ms, errors)) = match mode {
        Mode::Steady => {
            let start = Instant::now();
            let r = steady(client, server, path, requests, in_flight).await;
            (start.elapsed().as_secs_f64(), r)
        }
        Mode::Burst => {
            // A fresh client that has sent one request, as bench.py's.
            let fresh = client.fresh(server)?;
            fresh.get(server, path).await?;
            let start = Instant::now();
            let r = burst(&fresh, server, path, requests).await;
            (start.elapsed().as_secs_f64(), r)
        }
    };
    Ok(Run {
        seconds,
        rps: requests as f64 / seconds,
        errors: errors as f64,
        p50_ms: quantile(&ms, 0.50),
        p99_ms: quantile(&ms, 0.99),
    })
}

// ------------------------------------------------------------------ main

fn clients(
    args: &Args,
    server: &FlakyServer,
    v: &serde_json::Value,
) -> Result<Vec<Client>, BoxError> {
    let ver = |lib: &str| {
        v.get(lib)
            .and_then(|s| s.as_str())
            .unwrap_or("?")
            .to_owned()
    };
    let mut out = vec![
        Client {
            key: "palisade",
            label: "palisade::Client (default stack)".to_owned(),
            kind: Kind::Rust(Rust::Palisade(palisade_client(server)?)),
        },
        Client {
            key: "reqwest",
            label: "bare reqwest (no layer, no connection limit)".to_owned(),
            kind: Kind::Rust(Rust::Reqwest(bare_reqwest()?)),
        },
        Client {
            key: "aiohttp",
            label: format!("aiohttp {}", ver("aiohttp")),
            kind: Kind::Python {
                client: "aiohttp",
                stack: "plain",
            },
        },
        Client {
            key: "httpx",
            label: format!("httpx {}", ver("httpx")),
            kind: Kind::Python {
                client: "httpx",
                stack: "plain",
            },
        },
    ];
    if args.resilient {
        for (key, client) in [
            ("aiohttp_resilient", "aiohttp"),
            ("httpx_resilient", "httpx"),
        ] {
            out.push(Client {
                key,
                label: format!(
                    "{client} {} + stamina {} + aiobreaker {} + semaphore",
                    ver(client),
                    ver("stamina"),
                    ver("aiobreaker")
                ),
                kind: Kind::Python {
                    client,
                    stack: "resilient",
                },
            });
        }
    }
    Ok(out)
}

async fn bench(args: Args) -> Result<(), BoxError> {
    let py = ensure_venv(&args.python, &args.venv)?;
    let versions = python_versions(&py)?;
    // Created first, so that it records the load average before the run.
    let mut res = Results::new("python");
    let load_before = load_average();
    let server = Arc::new(FlakyServer::start().await?);
    let peers = clients(&args, &server, &versions)?;
    let n = peers.len();

    // Warm-up of the in-process clients, which persist across rounds (each
    // bench.py warms its own client up).
    for peer in &peers {
        if let Kind::Rust(c) = &peer.kind {
            let path = format!("/warm/{}", peer.key);
            server.script(&path, Script::always(Behavior::ok("ok")));
            let warm = (args.requests / 10).max(args.in_flight);
            steady(c, &server, &path, warm, args.in_flight).await;
        }
    }

    // runs[mode][client] = one Run per round.
    let mut runs = vec![vec![Vec::<Run>::new(); n]; 2];
    for round in 0..args.rounds {
        for (m, mode) in [Mode::Steady, Mode::Burst].into_iter().enumerate() {
            let requests = match mode {
                Mode::Steady => args.requests,
                Mode::Burst => args.burst,
            };
            for k in 0..n {
                let i = (round + k) % n;
                let peer = &peers[i];
                let path = format!("/{}/r{round}/{}", mode.name(), peer.key);
                server.script(&path, Script::always(Behavior::ok("ok")));
                let conns = server.connections_accepted();
                let r = match &peer.kind {
                    Kind::Python { client, stack } => {
                        run_python(
                            &py,
                            server.url(&path),
                            client,
                            stack,
                            mode,
                            requests,
                            args.in_flight,
                        )
                        .await?
                    }
                    Kind::Rust(c) => {
                        run_rust(c, &server, &path, mode, requests, args.in_flight).await?
                    }
                };
                let attempts = server.stats(&path).attempts as f64;
                if attempts < requests as f64 - r.errors {
                    return Err(format!(
                        "{}: the server saw {attempts} requests for {requests} sent",
                        peer.key
                    )
                    .into());
                }
                eprintln!(
                    "round {round} {:<6} {:<18} {:>8.0} req/s {:>8.3} s  p50 {:>7.2} ms  p99 {:>7.2} ms  \
                     errors {:>4}  new connections {}",
                    mode.name(),
                    peer.key,
                    r.rps,
                    r.seconds,
                    r.p50_ms,
                    r.p99_ms,
                    r.errors,
                    server.connections_accepted() - conns,
                );
                runs[m][i].push(r);
            }
        }
    }

    let med = |m: usize, i: usize, f: fn(&Run) -> f64| {
        median(&runs[m][i].iter().map(f).collect::<Vec<_>>())
    };
    let total = |m: usize, i: usize| runs[m][i].iter().map(|r| r.errors).sum::<f64>();
    let find = |key: &str| peers.iter().position(|p| p.key == key).expect("client");
    let (pal, req) = (find("palisade"), find("reqwest"));
    let steady_pal = med(0, pal, |r| r.rps);
    let steady_req = med(0, req, |r| r.rps);
    let burst_pal = med(1, pal, |r| r.seconds);

    let text = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|s| s.as_str()).unwrap_or("?").to_owned()
    };
    for lib in ["python", "aiohttp", "httpx", "stamina", "aiobreaker"] {
        res.text(&format!("{lib}_version"), text(&versions, lib));
    }
    res.number("requests", args.requests as f64)
        .number("in_flight", args.in_flight as f64)
        .number("burst", args.burst as f64)
        .number("rounds", args.rounds as f64);
    let flags: Vec<String> = std::env::args().skip(1).collect();
    let mut cmd = "cargo run --release -p palisade-bench --bin pycompare".to_owned();
    if !flags.is_empty() {
        cmd = format!("{cmd} -- {}", flags.join(" "));
    }
    res.text("cmd", cmd);

    println!(
        "Loopback HTTP/1.1 against one FlakyServer, median of {} rounds; steady: {} requests, {} in flight; \
         burst: {} requests at once. Python {} (one core); {} CPU(s), load average {} before and {} after.\n",
        args.rounds,
        args.requests,
        args.in_flight,
        args.burst,
        text(&versions, "python"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before,
        load_average(),
    );
    println!(
        "| client | steady req/s | ÷ palisade | ÷ bare reqwest | steady p50 / p99 ms | errors | \
         burst s | burst ÷ palisade | burst p99 ms | burst errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, peer) in peers.iter().enumerate() {
        let k = peer.key;
        let rps = med(0, i, |r| r.rps);
        let secs = med(1, i, |r| r.seconds);
        let rows = [
            (format!("steady_{k}_rps"), rps),
            (format!("steady_{k}_ratio_to_palisade"), rps / steady_pal),
            (format!("steady_{k}_ratio_to_reqwest"), rps / steady_req),
            (format!("steady_{k}_p50_ms"), med(0, i, |r| r.p50_ms)),
            (format!("steady_{k}_p99_ms"), med(0, i, |r| r.p99_ms)),
            (format!("steady_{k}_errors"), total(0, i)),
            (format!("burst_{k}_seconds"), secs),
            (format!("burst_{k}_ratio_to_palisade"), secs / burst_pal),
            (format!("burst_{k}_p50_ms"), med(1, i, |r| r.p50_ms)),
            (format!("burst_{k}_p99_ms"), med(1, i, |r| r.p99_ms)),
            (format!("burst_{k}_errors"), total(1, i)),
        ];
        for (key, v) in &rows {
            res.number(key, *v);
        }
        println!(
            "| {} | {rps:.0} | {:.3} | {:.3} | {:.2} / {:.2} | {} | {secs:.3} | {:.2} | {:.1} | {} |",
            peer.label,
            rps / steady_pal,
            rps / steady_req,
            rows[3].1,
            rows[4].1,
            rows[5].1,
            secs / burst_pal,
            rows[9].1,
            rows[10].1,
        );
    }
    let path = res.write()?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("pycompare: {msg}");
            return ExitCode::from(2);
        }
    };
    match bench(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pycompare: {e}");
            ExitCode::FAILURE
        }
    }
}
