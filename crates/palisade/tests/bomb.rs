//! A 10 MB gzip body that decodes to 10 GiB is refused in flat memory: the
//! read stops within 2 MiB of decoded bytes (issue 24). The process's peak
//! RSS while refusing it is measured in `palisade-bench` (`--bin bomb`),
//! not here: speed and memory are benchmarks, not tests.

use bytes::Bytes;
use palisade::{Client, Kind};
use palisade_chaos::{Behavior, FlakyServer, Script};

const MIB: u64 = 1024 * 1024;

#[test]
fn the_bomb_is_a_valid_gzip_of_zeros() {
    // Decoded into a sink, so this test's peak stays far below the other's.
    let five = palisade_chaos::bomb::gzip_zeros(5);
    let n = std::io::copy(
        &mut flate2::read::GzDecoder::new(&five[..]),
        &mut std::io::sink(),
    )
    .unwrap();
    assert_eq!(n, 5 * MIB);
    let one = palisade_chaos::bomb::gzip_zeros(1);
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&one[..]), &mut decoded).unwrap();
    assert!(decoded.len() as u64 == MIB && decoded.iter().all(|b| *b == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_to_10_gib_gzip_bomb_is_refused_within_2_mib_of_decoded_bytes() {
    let bomb = Bytes::from(palisade_chaos::bomb::gzip_zeros(10 * 1024));
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

    let err = client
        .get("bomb")
        .send_json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::BodyTooLarge, "{err:?}");
    let too = err.body_too_large().unwrap();
    assert!(too.is_decompression_bomb(), "{too}");
    assert!(too.read() <= 2 * MIB, "{too}");
}
