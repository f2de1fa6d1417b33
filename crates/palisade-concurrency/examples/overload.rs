//! Simulated overload: goodput and p99 latency of each adaptive limit
//! against a fixed limit of 4 × the upstream's capacity, on tokio's paused
//! clock.
//!
//! ```text
//! cargo run --release -p palisade-concurrency --example overload
//! cargo run --release -p palisade-concurrency --example overload -- --csv limit-over-time.csv
//! ```
//!
//! The upstream has `C` workers and a service time `S` (20 ms ± 2 ms);
//! beyond `C` requests queue at the upstream, so latency rises linearly with
//! load, and beyond a backlog it answers 503 at once. Two upstreams:
//!
//! - *queueing*: a backlog of 4 × C, so a fixed limit of 4 × C never sees a
//!   503 and latency is the only signal;
//! - *shedding*: a backlog of C / 4, beyond which it sheds with 503s.
//!
//! Arrivals are open-loop Poisson at twice the upstream's throughput; the
//! limiter sheds what it cannot admit at once (`max_queue(0)`). Everything is
//! simulated time on a paused clock, seeded, so a run is deterministic and
//! takes seconds of real time. With `--csv`, the limit of every run at
//! C = 40 is written every 100 ms.

#[path = "../tests/support/sim.rs"]
mod sim;

use std::fmt::Write as _;
use std::time::Duration;

use palisade_concurrency::Limit;
use palisade_concurrency::limit::{Aimd, Gradient2, Vegas};
use sim::{Report, Scenario};

fn algorithms(c: usize) -> Vec<(&'static str, Limit)> {
    let max = 4 * c;
    vec![
        ("fixed 4×C", Limit::fixed(max)),
        ("aimd", Aimd::new().min_limit(1).max_limit(max).into()),
        (
            "gradient2",
            Gradient2::new().min_limit(1).max_limit(max).into(),
        ),
        ("vegas", Vegas::new().min_limit(1).max_limit(max).into()),
        (
            "vegas, smoothing 1.0 (Netflix)",
            Vegas::new()
                .min_limit(1)
                .max_limit(max)
                .smoothing(1.0)
                .into(),
        ),
    ]
}

fn main() {
    let csv = std::env::args().skip_while(|a| a != "--csv").nth(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let base = Scenario {
            capacity: 40,
            service: Duration::from_millis(20),
            jitter: Duration::from_millis(2),
            max_backlog: 0,
            load: 2.0,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(10),
            max_queue: 0,
            max_wait: Duration::from_secs(1),
            trace_every: Duration::from_millis(100),
            seed: 42,
        };
        let unloaded = sim::unloaded_latency(base).await;
        println!(
            "upstream: C workers, service time {:?} ± {:?}; unloaded latency {:?}",
            base.service, base.jitter, unloaded
        );
        println!(
            "load: open-loop Poisson at {:.0} × the upstream's throughput for {:?}, the first {:?} not measured; limiter max_queue {}",
            base.load, base.duration, base.warmup, base.max_queue
        );
        let mut traces: Vec<(String, Report)> = Vec::new();
        for c in [40, 10, 100] {
            for (profile, backlog) in [("queueing", 4 * c), ("shedding", c / 4)] {
                let s = Scenario {
                    capacity: c,
                    max_backlog: backlog,
                    ..base
                };
                println!();
                println!(
                    "C = {c} ({:.0} req/s), {profile} upstream (503 beyond a backlog of {backlog})",
                    s.throughput()
                );
                println!();
                println!(
                    "| limit | goodput (× capacity) | p50 | p99 | p99 / unloaded | upstream 503s | shed by the limiter | limit: mean [min, max] |"
                );
                println!("|---|---|---|---|---|---|---|---|");
                for (name, limit) in algorithms(c) {
                    let r = sim::run(name, limit, s).await;
                    println!(
                        "| {} | {:.3} | {:?} | {:?} | {:.2} | {} | {} | {:.1} [{}, {}] |",
                        r.name,
                        r.goodput,
                        r.p50,
                        r.p99,
                        r.p99.as_secs_f64() / unloaded.as_secs_f64(),
                        r.upstream_503,
                        r.shed_locally,
                        r.mean_limit,
                        r.min_limit,
                        r.max_limit
                    );
                    if c == 40 {
                        traces.push((format!("{profile}: {name}"), r));
                    }
                }
            }
        }

        if let Some(path) = csv {
            let mut out = String::from("t_s");
            for (name, _) in &traces {
                let _ = write!(out, ",{}", name.replace(',', ";"));
            }
            out.push('\n');
            let rows = traces.iter().map(|(_, r)| r.trace.len()).min().unwrap_or(0);
            for i in 0..rows {
                let _ = write!(out, "{:.1}", traces[0].1.trace[i].0);
                for (_, r) in &traces {
                    let _ = write!(out, ",{}", r.trace[i].1);
                }
                out.push('\n');
            }
            std::fs::write(&path, out).expect("write the CSV");
            println!("\nlimit over time (C = 40) written to {path}");
        }
    });
}
