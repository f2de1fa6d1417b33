//! Benchmark (not a test): a large download through palisade's whole stack
//! against bare reqwest streaming, in the same run, interleaved.
//!
//! ```text
//! cargo run --release -p palisade --example download_bench -- [MIB] [ROUNDS]
//! ```
//!
//! Defaults: 1024 MiB, 5 rounds. The body comes from an in-process
//! `FlakyServer` on loopback (`Behavior::large`), so every contender pays the
//! same server cost. Each round runs every contender once, in turn:
//!
//! - `reqwest`: a bare `reqwest::Client`, `Response::chunk` until the end;
//! - `palisade send`: `palisade::Client::get(..).send()`, then `chunk`;
//! - `palisade download`: `Client::download(..).to_writer(tokio::io::sink())`.
//!
//! Throughput is the body size over the time from sending the request to the
//! last byte. Peak RSS is the process's `VmHWM`, reset before each run by
//! writing `5` to `/proc/self/clear_refs` (Linux), so each figure is that
//! run's own peak, the server and the runtime included.

use std::time::Duration;

use palisade_chaos::{Behavior, FlakyServer, Script};
use tokio::time::Instant;

const MIB: u64 = 1024 * 1024;

fn reset_peak_rss() {
    // Resets VmHWM to the current RSS (Linux 4.0+); elsewhere a no-op.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

#[derive(Default)]
struct Runs {
    secs: Vec<f64>,
    peak_mib: Vec<f64>,
}

impl Runs {
    fn median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    fn mib_per_s(&self, mib: u64) -> Vec<f64> {
        self.secs.iter().map(|s| mib as f64 / s).collect()
    }
}

async fn bare_reqwest(client: &reqwest::Client, url: &str) -> u64 {
    let mut res = client.get(url).send().await.expect("bare reqwest request");
    let mut n = 0;
    while let Some(chunk) = res.chunk().await.expect("bare reqwest body") {
        n += chunk.len() as u64;
    }
    n
}

async fn palisade_send(client: &palisade::Client, url: &str) -> u64 {
    let mut res = client.get(url).send().await.expect("palisade request");
    let mut n = 0;
    while let Some(chunk) = res.chunk().await.expect("palisade body") {
        n += chunk.len() as u64;
    }
    n
}

async fn palisade_download(client: &palisade::Client, url: &str) -> u64 {
    client
        .download(url)
        .to_writer(&mut tokio::io::sink())
        .await
        .expect("palisade download")
        .bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let size = mib * MIB;

    let server = FlakyServer::start().await.expect("server");
    server.script("/big", Script::always(Behavior::large(size)));
    let url = server.url("/big");
    let bare = reqwest::Client::builder()
        .build()
        .expect("bare reqwest client");
    // A deadline long enough for a slow machine to stream the whole body.
    let client = palisade::Client::builder()
        .stack(|s| s.deadline(Some(Duration::from_secs(600))))
        .build()
        .expect("palisade client");
    println!("palisade stack:\n{}", client.describe());

    // Warm-up: connections, allocator, page cache.
    assert_eq!(bare_reqwest(&bare, &url).await, size);
    assert_eq!(palisade_download(&client, &url).await, size);

    let names = ["reqwest", "palisade send", "palisade download"];
    let mut runs: Vec<Runs> = names.iter().map(|_| Runs::default()).collect();
    for round in 0..rounds {
        // Rotate the order each round so no contender always goes first.
        for k in 0..names.len() {
            let i = (k + round) % names.len();
            reset_peak_rss();
            let start = Instant::now();
            let n = match i {
                0 => bare_reqwest(&bare, &url).await,
                1 => palisade_send(&client, &url).await,
                _ => palisade_download(&client, &url).await,
            };
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(n, size, "{} got the whole body", names[i]);
            runs[i].secs.push(secs);
            if let Some(p) = peak_rss_mib() {
                runs[i].peak_mib.push(p);
            }
        }
    }

    let base = runs[0].mib_per_s(mib);
    println!("\n{mib} MiB x {rounds} rounds\n");
    println!(
        "| contender | throughput MiB/s, median (min..max) | vs reqwest, median of per-round ratios | peak RSS MiB, max |"
    );
    println!("|---|---|---|---|");
    for (name, r) in names.iter().zip(&runs) {
        let t = r.mib_per_s(mib);
        let (lo, hi) = (
            t.iter().copied().fold(f64::INFINITY, f64::min),
            t.iter().copied().fold(0.0, f64::max),
        );
        // Paired within each round, so that load from other processes,
        // which drifts over the run, cancels out.
        let ratios: Vec<f64> = t.iter().zip(&base).map(|(x, b)| x / b).collect();
        let peak = r.peak_mib.iter().copied().fold(0.0, f64::max);
        println!(
            "| {name} | {:.0} ({lo:.0}..{hi:.0}) | {:.2} x | {peak:.1} |",
            Runs::median(&t),
            Runs::median(&ratios)
        );
    }
}
