//! A 10 MB gzip body that decodes to 10 GiB is refused in flat memory: the
//! process's peak RSS after refusing it stays within 2× of its peak after a
//! plain small request (issue 24).
//!
//! Alone in its own test binary, so that no other test's allocations count:
//! the peak (`VmHWM` in `/proc/self/status`) is the whole process's, the
//! in-process FlakyServer holding the 10 MB bomb included.

#![cfg(target_os = "linux")]

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use palisade::{Client, Kind};
use palisade_chaos::{Behavior, FlakyServer, Script};

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

/// A valid gzip member of `mib` MiB of zeros, built without compressing
/// them all: each MiB is compressed after a full flush, which resets the
/// dictionary and byte-aligns the output, so every MiB after the first
/// compresses to the same bytes and is repeated; the CRC is combined, not
/// computed over the whole.
fn gzip_bomb(mib: u64) -> Vec<u8> {
    let zeros = vec![0u8; MIB as usize];
    let mut z = Compress::new(Compression::best(), false);
    let mut chunk = |data: &[u8], flush| deflate(&mut z, data, flush);
    let first = chunk(&zeros, FlushCompress::Full);
    let second = chunk(&zeros, FlushCompress::Full);
    let third = chunk(&zeros, FlushCompress::Full);
    assert_eq!(
        second, third,
        "a flushed MiB of zeros compresses the same each time"
    );
    let end = chunk(&[], FlushCompress::Finish);

    let mut one = Crc::new();
    one.update(&zeros);
    let mut crc = Crc::new();
    for _ in 0..mib {
        crc.combine(&one);
    }
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gz.extend_from_slice(&first);
    for _ in 1..mib {
        gz.extend_from_slice(&second);
    }
    gz.extend_from_slice(&end);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&((mib * MIB) as u32).to_le_bytes());
    gz
}

/// Raw deflate of `data`, flushed with `flush`.
fn deflate(z: &mut Compress, data: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::new();
    let mut consumed = 0;
    loop {
        out.reserve(64 << 10);
        let before = z.total_in();
        let status = z.compress_vec(&data[consumed..], &mut out, flush).unwrap();
        consumed += (z.total_in() - before) as usize;
        // Done once the input is in and the flush left room to spare.
        if status == Status::StreamEnd || (consumed == data.len() && out.len() < out.capacity()) {
            return out;
        }
    }
}

#[test]
fn the_bomb_is_a_valid_gzip_of_zeros() {
    // Decoded into a sink, so this test's peak stays far below the other's.
    let five = gzip_bomb(5);
    let n = std::io::copy(
        &mut flate2::read::GzDecoder::new(&five[..]),
        &mut std::io::sink(),
    )
    .unwrap();
    assert_eq!(n, 5 * MIB);
    let one = gzip_bomb(1);
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&one[..]), &mut decoded).unwrap();
    assert!(decoded.len() as u64 == MIB && decoded.iter().all(|b| *b == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_to_10_gib_gzip_bomb_is_refused_within_2x_the_rss_of_a_small_request() {
    let bomb = Bytes::from(gzip_bomb(10 * 1024));
    let wire = bomb.len() as u64;
    assert!(wire < 12 * MIB, "{wire} bytes on the wire");
    let server = FlakyServer::start().await.unwrap();
    server.script("/bomb", Script::always(Behavior::encoded("gzip", bomb)));
    server.script("/small", Script::always(Behavior::ok("[1, 2, 3]")));
    let client = Client::builder()
        .base_url(&server.url("/"))
        // Only the ratio bound can stop it.
        .max_body(u64::MAX)
        .build()
        .unwrap();

    let small: Vec<u8> = client.get("small").send_json().await.unwrap();
    assert_eq!(small, [1, 2, 3]);
    let baseline = peak_rss();

    let err = client
        .get("bomb")
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    let peak = peak_rss();
    eprintln!(
        "10 GiB gzip bomb ({:.1} MB on the wire): refused at peak RSS {:.1} MiB; \
         after a small request {:.1} MiB",
        wire as f64 / 1e6,
        peak as f64 / MIB as f64,
        baseline as f64 / MIB as f64
    );
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    let too = err.body_too_large().unwrap();
    assert!(too.is_decompression_bomb(), "{too}");
    assert!(too.read() <= 2 * MIB, "{too}");
    assert!(
        peak < 2 * baseline,
        "peak RSS {} MiB is not within 2x of {} MiB",
        peak / MIB,
        baseline / MIB
    );
}
