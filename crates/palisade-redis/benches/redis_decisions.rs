//! Rate-limit decisions per second on Redis over loopback: one Lua GCRA
//! round trip each, from 1, 16 and 64 concurrent callers sharing one
//! multiplexed connection. Starts its own redis-server on a free port.
//!
//! `cargo bench -p palisade-redis --bench redis_decisions`
#![allow(missing_docs)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::Key;
use palisade_ratelimit::{Decision, Quota, RateLimitBackend};
use palisade_redis::RedisBackend;
use tokio::time::Instant;

const RUN: Duration = Duration::from_secs(3);

fn main() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH (apt-get install -y redis-server)");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let backend = RedisBackend::builder(
            redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap(),
        )
        .call_timeout(Duration::from_secs(1))
        .fail_closed()
        .build()
        .unwrap();
        for _ in 0..100 {
            if backend.ping().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Never refused: every decision runs the whole script and writes.
        let quota = Quota::per_period(1_000_000_000, Duration::from_secs(1)).unwrap();
        println!("| callers | decisions/s | mean latency (µs) |");
        println!("|---|---|---|");
        for callers in [1usize, 16, 64] {
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let tasks: Vec<_> = (0..callers)
                .map(|i| {
                    let backend = backend.clone();
                    let done = done.clone();
                    // A key per caller, as many API keys would be.
                    let key = Key::from(format!("bench-{i}"));
                    let state = backend.key_state(&key, &quota);
                    tokio::spawn(async move {
                        while start.elapsed() < RUN {
                            let d = backend.check(&key, &state).await;
                            assert_eq!(d, Decision::Allow);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            let n = done.load(Ordering::Relaxed) as f64;
            println!(
                "| {callers} | {:.0} | {:.1} |",
                n / secs,
                secs * 1e6 * callers as f64 / n
            );
        }
        assert_eq!(
            backend.stats().fallbacks,
            0,
            "every decision came from redis"
        );
    });
    let _ = child.kill();
    let _ = child.wait();
}
