//! Run: `cargo run --release -p palisade --example download_progress`
//!
//! A 512 MiB streaming download with a progress callback, written chunk by
//! chunk to a sink, so memory stays flat whatever the size. Peak RSS is read
//! from /proc/self/status at the end.

use palisade::Client;
use palisade_chaos::{Behavior, FlakyServer, Script};

const SIZE: u64 = 512 * 1024 * 1024;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = FlakyServer::start().await?;
    upstream.script("/big.bin", Script::always(Behavior::large(SIZE)));
    let client = Client::new()?;
    let mut next_report = 0;
    let done = client
        .download(&upstream.url("/big.bin"))
        .progress(move |p| {
            if p.done >= next_report {
                let total = p.total.map_or("?".to_owned(), |t| (t >> 20).to_string());
                println!("{:>4} / {total} MiB", p.done >> 20);
                next_report += 64 << 20;
            }
        })
        .to_writer(&mut tokio::io::sink())
        .await?;
    let peak = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "VmHWM: unknown".to_owned());
    println!("downloaded {} MiB; peak memory {peak}", done.bytes() >> 20);
    Ok(())
}
