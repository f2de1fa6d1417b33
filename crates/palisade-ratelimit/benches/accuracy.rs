//! Sustained rate against quota over 10 s of simulated time, at 1 000 and
//! 10 000 requests/s, on an in-memory service and tokio's paused clock.
//!
//! Offered load is twice the quota, arriving every millisecond. The figure
//! is the rate the upstream saw once the initial burst is spent:
//! `(sent - burst) / 10 s`, against the quota.
//!
//! `cargo bench -p palisade-ratelimit --bench accuracy`
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core::Global;
use palisade_ratelimit::{Mode, Quota, RateLimitLayer};
use tower::{Layer, ServiceExt};

const SECONDS: u64 = 10;

fn run(per_second: u32, burst: u32, mode: Mode) -> (u64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let quota = Quota::per_second(per_second)
            .unwrap()
            .with_burst(burst)
            .unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let end = tokio::time::Instant::now() + Duration::from_secs(SECONDS);
        let upstream = tower::service_fn(move |_req: http::Request<()>| {
            // Count only what reaches the upstream within the window.
            if tokio::time::Instant::now() <= end {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            std::future::ready(Ok::<_, std::convert::Infallible>(http::Response::new(())))
        });
        let svc = RateLimitLayer::builder(quota)
            .mode(mode)
            .key_fn(Global)
            .build()
            .unwrap()
            .layer(upstream);
        let per_ms = u64::from(per_second) * 2 / 1000;
        let mut tasks = Vec::new();
        for _ in 0..SECONDS * 1000 {
            for _ in 0..per_ms {
                let svc = svc.clone();
                tasks.push(tokio::spawn(async move {
                    let req = http::Request::get("http://upstream.test/")
                        .body(())
                        .unwrap();
                    let _ = svc.oneshot(req).await;
                }));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for t in tasks {
            let _ = t.await;
        }
        let sent = sent.load(Ordering::Relaxed);
        let rate = (sent - u64::from(burst)) as f64 / SECONDS as f64;
        (sent, rate)
    })
}

fn main() {
    println!(
        "| quota (req/s) | burst | mode | offered (req/s) | sent in 10 s | sustained (req/s) | error |"
    );
    println!("|---|---|---|---|---|---|---|");
    let wait = Mode::Wait {
        max_wait: Duration::from_millis(100),
    };
    for (rate, burst) in [(1_000u32, 10u32), (10_000, 100), (10_000, 10), (10_000, 1)] {
        for (name, mode) in [("wait 100 ms", wait), ("reject", Mode::Reject)] {
            let (sent, sustained) = run(rate, burst, mode);
            let err = (sustained - f64::from(rate)) / f64::from(rate) * 100.0;
            println!(
                "| {rate} | {burst} | {name} | {} | {sent} | {sustained:.1} | {err:+.2} % |",
                rate * 2
            );
        }
    }
}
