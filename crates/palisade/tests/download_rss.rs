//! A 2 GiB download through the whole stack keeps the process's peak RSS
//! under 64 MiB.
//!
//! Alone in its own test binary, so that no other test's allocations count:
//! the peak (`VmHWM` in `/proc/self/status`) is the whole process's, the
//! in-process FlakyServer that generates the body included.

#![cfg(target_os = "linux")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade::Client;
use palisade_chaos::{Behavior, FlakyServer, Script};

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// The process's peak resident set size, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gib_download_keeps_peak_rss_under_64_mib() {
    const SIZE: u64 = 2 * GIB;
    let server = FlakyServer::start().await.unwrap();
    server.script("/2g", Script::always(Behavior::large(SIZE)));
    let client = Client::new().unwrap();
    let before = peak_rss();

    let progress = Arc::new(AtomicU64::new(0));
    let p = progress.clone();
    let download = client
        .download(&server.url("/2g"))
        .progress(move |x| p.store(x.done, Ordering::Relaxed))
        // A real file, without filling the disk.
        .to_file("/dev/null");
    // Bounded: a hang fails the test instead of stalling the suite.
    let done = tokio::time::timeout(Duration::from_secs(600), download)
        .await
        .expect("2 GiB within 10 minutes")
        .unwrap();

    let peak = peak_rss();
    eprintln!(
        "2 GiB download: peak RSS {:.1} MiB (before: {:.1} MiB)",
        peak as f64 / MIB as f64,
        before as f64 / MIB as f64
    );
    assert_eq!(done.bytes(), SIZE);
    assert_eq!(progress.load(Ordering::Relaxed), SIZE);
    assert_eq!(server.stats("/2g").attempts, 1);
    assert!(
        peak < 64 * MIB,
        "peak RSS {} MiB is over 64 MiB",
        peak / MIB
    );
}
