//! A gzip bomb for tests and benchmarks: a small, valid gzip body that
//! decodes to a huge run of zeros.
//!
//! ```
//! let bomb = palisade_chaos::bomb::gzip_zeros(64);
//! assert!(bomb.len() < 1 << 20, "64 MiB of zeros in {} bytes", bomb.len());
//! ```

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

const MIB: u64 = 1024 * 1024;

/// A valid gzip member of `mib` MiB of zeros, built without compressing
/// them all: each MiB is compressed after a full flush, which resets the
/// dictionary and byte-aligns the output, so every MiB after the first
/// compresses to the same bytes and is repeated; the CRC is combined, not
/// computed over the whole.
pub fn gzip_zeros(mib: u64) -> Vec<u8> {
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
