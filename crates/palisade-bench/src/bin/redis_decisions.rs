//! Rate-limit decisions per second of palisade-redis's shared limiter over
//! loopback, from 1, 16 and 64 concurrent callers.
//!
//! Each decision is one `RedisBackend::check`: one `EVALSHA` of the Lua GCRA,
//! a round trip to Redis. The callers are tasks on a 2-worker tokio runtime
//! sharing one backend (one multiplexed connection), each on its own key (as
//! many API keys would be), with a quota so high that every decision is an
//! `Allow` and runs the whole script, writes included.
//!
//! Redis: with `--url redis://host:port/`, that server (keys go under a
//! namespace of their own, `palisade-bench-<pid>`); otherwise a
//! `redis-server` from PATH, started on a free 127.0.0.1 port with
//! persistence off and killed at the end. With neither, the program exits
//! with status 2 and a one-line message.
//!
//! Method: `--rounds` rounds (default 3), each running every caller count for
//! `--secs` seconds (default 1), the order rotated each round; the figure is
//! the median round. Bounded: about `rounds × 3 × secs` seconds plus start-up.
//!
//! Run: `cargo run --release -p palisade-bench --bin redis_decisions`
//! (`-- --url redis://127.0.0.1:6379/`, `--rounds 1 --secs 0.5` for a quick run).
//!
//! Writes `redis.json` in the results directory (`palisade_bench::results`):
//! `decisions_per_s_1`, `decisions_per_s_16`, `decisions_per_s_64`
//! (decisions per second, median round), `latency_us_1`, `latency_us_16`,
//! `latency_us_64` (mean µs per decision as one caller sees it),
//! `redis_version` (text), `redis_source` (text: started or `--url`),
//! `rounds`, `secs_per_round`, `cmd`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade::core::Key;
use palisade::ratelimit::{Decision, Quota, RateLimitBackend};
use palisade_bench::results::{Results, median};
use palisade_redis::RedisBackend;
use tokio::time::Instant;

const CALLERS: [usize; 3] = [1, 16, 64];

struct Args {
    url: Option<String>,
    rounds: usize,
    secs: f64,
}

fn usage(msg: &str) -> ! {
    eprintln!(
        "redis_decisions: {msg} (usage: redis_decisions [--url redis://host:port/] [--rounds N] [--secs S])"
    );
    std::process::exit(2);
}

fn args() -> Args {
    let mut a = Args {
        url: None,
        rounds: 3,
        secs: 1.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--url" => a.url = Some(value()),
            "--rounds" => {
                a.rounds = value()
                    .parse()
                    .ok()
                    .filter(|n| (1..=20).contains(n))
                    .unwrap_or_else(|| usage("--rounds takes 1 to 20"))
            }
            "--secs" => {
                a.secs = value()
                    .parse()
                    .ok()
                    .filter(|s: &f64| (0.1..=30.0).contains(s))
                    .unwrap_or_else(|| usage("--secs takes 0.1 to 30"))
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    a
}

/// A `redis-server` started on a free loopback port, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// `None` when `redis-server` is not on PATH.
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .args(["--dbfilename", &format!("palisade-bench-{port}.rdb")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { child, port })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `callers` tasks for `run`; returns decisions per second and how many
/// decisions were not `Allow`.
async fn measure(
    backend: &RedisBackend,
    quota: &Quota,
    callers: usize,
    run: Duration,
) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let backend = backend.clone();
            let (done, refused) = (done.clone(), refused.clone());
            let key = Key::from(format!("caller-{i}"));
            let state = backend.key_state(&key, quota);
            tokio::spawn(async move {
                while start.elapsed() < run {
                    if backend.check(&key, &state).await != Decision::Allow {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a caller task panicked");
    }
    let secs = start.elapsed().as_secs_f64();
    (
        done.load(Ordering::Relaxed) as f64 / secs,
        refused.load(Ordering::Relaxed),
    )
}

/// `redis_version` from `INFO server`.
async fn version(client: &redis::Client) -> redis::RedisResult<String> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await?;
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned())
}

fn main() -> std::io::Result<()> {
    let args = args();
    let (server, url, source) = match &args.url {
        Some(url) => (None, url.clone(), "--url"),
        None => match Server::start() {
            Some(s) => {
                let url = format!("redis://127.0.0.1:{}/", s.port);
                (Some(s), url, "redis-server started by the benchmark")
            }
            None => {
                eprintln!(
                    "redis_decisions: no redis-server on PATH and no --url given (apt-get install -y redis-server)"
                );
                std::process::exit(2);
            }
        },
    };
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| usage(&format!("{url:?} is not a Redis URL: {e}")));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        let backend = RedisBackend::builder(client.clone())
            .namespace(format!("palisade-bench-{}", std::process::id()))
            .call_timeout(Duration::from_secs(1))
            .fail_closed()
            .build()
            .map_err(|e| format!("backend: {e}"))?;
        // A started server takes a moment to listen: up to 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut ready = false;
        while !ready && Instant::now() < deadline {
            ready = backend.ping().await.is_ok();
            if !ready {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if !ready {
            return Err(format!("Redis at {url} did not answer PING within 5 s"));
        }
        let version = version(&client)
            .await
            .map_err(|e| format!("INFO server: {e}"))?;

        // Every decision runs the whole script and writes; none is refused.
        let quota = Quota::per_period(1_000_000_000, Duration::from_secs(1)).unwrap();
        // Warm-up: the script loaded, the connection busy.
        measure(&backend, &quota, 16, Duration::from_millis(300)).await;

        let run = Duration::from_secs_f64(args.secs);
        let mut rates = vec![Vec::with_capacity(args.rounds); CALLERS.len()];
        for r in 0..args.rounds {
            for k in 0..CALLERS.len() {
                let i = (r + k) % CALLERS.len();
                let (rate, refused) = measure(&backend, &quota, CALLERS[i], run).await;
                if refused > 0 {
                    return Err(format!(
                        "{refused} decisions were not Allow with {} callers: Redis was too slow (> 1 s) or unreachable",
                        CALLERS[i]
                    ));
                }
                rates[i].push(rate);
            }
        }
        if backend.stats().fallbacks > 0 {
            return Err("some decisions fell back to the failure policy".to_owned());
        }
        Ok((version, rates))
    });
    drop(server);
    let (version, rates) = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("redis_decisions: {e}");
            std::process::exit(1);
        }
    };

    let mut r = Results::new("redis");
    println!(
        "Redis {version} ({source}), median of {} rounds of {} s per case",
        args.rounds, args.secs
    );
    println!("| callers | decisions/s | mean latency (µs) |");
    println!("|---:|---:|---:|");
    for (i, callers) in CALLERS.iter().enumerate() {
        let rate = median(&rates[i]);
        let latency = 1e6 * *callers as f64 / rate;
        println!("| {callers} | {rate:.0} | {latency:.1} |");
        r.number(&format!("decisions_per_s_{callers}"), rate);
        r.number(&format!("latency_us_{callers}"), latency);
    }
    r.text("redis_version", version);
    r.text("redis_source", source);
    r.number("rounds", args.rounds as f64);
    r.number("secs_per_round", args.secs);
    let mut cmd = "cargo run --release -p palisade-bench --bin redis_decisions".to_owned();
    let extra: Vec<String> = std::env::args().skip(1).collect();
    if !extra.is_empty() {
        cmd.push_str(" -- ");
        cmd.push_str(&extra.join(" "));
    }
    r.text("cmd", cmd);
    let path = r.write()?;
    println!("wrote {}", path.display());
    Ok(())
}
