//! Issue 24's memory figure: a 10 MB gzip body that decodes to 10 GiB is
//! refused by `palisade::Client` at a peak RSS within 2× of a plain small
//! request's.
//!
//! One process, on purpose: the in-process `FlakyServer` holds the 10 MB
//! bomb before either figure is read, so both peaks (`VmHWM` from
//! `/proc/self/status`) include it and their difference is the client's.
//! Results: `bomb` (`wire_mb`, `small_peak_mib`, `bomb_peak_mib`,
//! `peak_ratio`, `decoded_at_refusal_mib`, `kind`, `cmd`).
//!
//! `cargo run --release -p palisade-bench --bin bomb [-- --gib N]`

use std::process::ExitCode;

use bytes::Bytes;
use palisade::{Client, Kind};
use palisade_bench::results::Results;
use palisade_chaos::{Behavior, FlakyServer, Script};

const MIB: u64 = 1024 * 1024;

/// The process's peak resident set size, in MiB.
fn peak_rss_mib() -> Result<f64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("reading /proc/self/status: {e}"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(kib / 1024.0)
}

async fn run(gib: u64) -> Result<(), String> {
    let bomb = Bytes::from(palisade_chaos::bomb::gzip_zeros(gib * 1024));
    let wire = bomb.len() as f64 / 1e6;
    let server = FlakyServer::start()
        .await
        .map_err(|e| format!("starting FlakyServer: {e}"))?;
    server.script("/bomb", Script::always(Behavior::encoded("gzip", bomb)));
    server.script("/small", Script::always(Behavior::ok("[1, 2, 3]")));
    let client = Client::builder()
        .base_url(&server.url("/"))
        // Only the decompression ratio bound can stop it.
        .max_body(u64::MAX)
        .build()
        .map_err(|e| e.to_string())?;

    let small: Vec<u8> = client
        .get("small")
        .send_json()
        .await
        .map_err(|e| e.to_string())?;
    if small != [1, 2, 3] {
        return Err(format!("small request answered {small:?}"));
    }
    let small_peak = peak_rss_mib()?;
    let err = match client.get("bomb").send_json::<serde_json::Value>().await {
        Ok(_) => return Err("the bomb was decoded whole".into()),
        Err(e) => e,
    };
    let bomb_peak = peak_rss_mib()?;
    if err.kind() != Kind::BodyTooLarge {
        return Err(format!("the bomb failed as {:?}: {err}", err.kind()));
    }
    let decoded = err
        .body_too_large()
        .map_or(f64::NAN, |t| t.read() as f64 / MIB as f64);
    let ratio = bomb_peak / small_peak;
    println!(
        "{gib} GiB gzip bomb, {wire:.1} MB on the wire: refused as {} after {decoded:.2} MiB \
         decoded; peak RSS {bomb_peak:.1} MiB against {small_peak:.1} MiB after a small \
         request ({ratio:.2}×)",
        err.kind().as_str()
    );
    let mut r = Results::new("bomb");
    r.number("gib", gib as f64)
        .number("wire_mb", wire)
        .number("small_peak_mib", small_peak)
        .number("bomb_peak_mib", bomb_peak)
        .number("peak_ratio", ratio)
        .number("decoded_at_refusal_mib", decoded)
        .text("kind", err.kind().as_str())
        .text(
            "cmd",
            format!("cargo run --release -p palisade-bench --bin bomb -- --gib {gib}"),
        );
    let path = r.write().map_err(|e| format!("writing results: {e}"))?;
    println!("results: {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut gib = 10;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().map(|v| v.parse::<u64>())) {
            ("--gib", Some(Ok(n))) if n > 0 => gib = n,
            _ => {
                eprintln!("usage: bomb [--gib N]  (N ≥ 1, default 10)");
                return ExitCode::from(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bomb: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(gib)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bomb: {e}");
            ExitCode::FAILURE
        }
    }
}
