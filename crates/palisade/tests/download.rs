//! Downloads and streaming uploads: chunked writes with progress, resume
//! with Range and If-Range after a truncated or reset body (bytes checked by
//! checksum), starting over when the resource changed, and the cases that
//! must not resume.
//!
//! FlakyServer and httpmock cannot honour `Range`, so the resume tests also
//! use `RangeServer`, a small HTTP/1.1 server below that serves one resource
//! of pseudo-random bytes with byte ranges and cuts its responses on cue.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use httpmock::prelude::*;
use palisade::{Client, Kind, Progress};
use palisade_chaos::{Behavior, FlakyServer, Script};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// FNV-1a, 64 bits: enough to tell two byte sequences apart in a test.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Deterministic, non-repeating content, so a byte written twice or at the
/// wrong offset changes the checksum.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Send the whole response.
    None,
    /// Send this many body bytes, then close normally (FIN): a truncated body.
    Fin(usize),
    /// Send this many body bytes, then reset the connection (RST).
    Reset(usize),
}

#[derive(Debug, Clone, Default)]
struct Seen {
    range: Option<String>,
    if_range: Option<String>,
}

struct RangeState {
    versions: Vec<(String, Arc<Vec<u8>>)>,
    /// Which version is served to the n-th request.
    version_of: Box<dyn Fn(usize) -> usize + Send>,
    /// How the n-th response is cut; the last entry repeats.
    cuts: Vec<Cut>,
    seen: Vec<Seen>,
    body_bytes_sent: u64,
}

#[derive(Clone)]
struct RangeServer {
    url: String,
    state: Arc<Mutex<RangeState>>,
}

impl RangeServer {
    async fn start(
        versions: Vec<(&str, Vec<u8>)>,
        version_of: impl Fn(usize) -> usize + Send + 'static,
        cuts: Vec<Cut>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/file", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(RangeState {
            versions: versions
                .into_iter()
                .map(|(etag, data)| (format!("\"{etag}\""), Arc::new(data)))
                .collect(),
            version_of: Box::new(version_of),
            cuts,
            seen: Vec::new(),
            body_bytes_sent: 0,
        }));
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, s.clone()));
            }
        });
        Self { url, state }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn body_bytes_sent(&self) -> u64 {
        self.state.lock().unwrap().body_bytes_sent
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<RangeState>>) {
    let mut reader = BufReader::new(stream);
    let mut seen = Seen::default();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => seen.range = Some(value.trim().to_owned()),
                "if-range" => seen.if_range = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    let (etag, data, cut) = {
        let mut st = state.lock().unwrap();
        let n = st.seen.len();
        st.seen.push(seen.clone());
        let v = (st.version_of)(n).min(st.versions.len() - 1);
        let cut = *st.cuts.get(n).or(st.cuts.last()).unwrap_or(&Cut::None);
        let (etag, data) = st.versions[v].clone();
        (etag, data, cut)
    };
    let len = data.len();
    let validator_ok = seen.if_range.as_ref().is_none_or(|v| *v == etag);
    let start = seen
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|s| validator_ok && *s < len);
    let head = match start {
        Some(s) => format!(
            "HTTP/1.1 206 Partial Content\r\ncontent-range: bytes {s}-{}/{len}\r\ncontent-length: {}\r\n",
            len - 1,
            len - s
        ),
        None => format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n"),
    };
    let head = format!("{head}accept-ranges: bytes\r\netag: {etag}\r\nconnection: close\r\n\r\n");
    let body = &data[start.unwrap_or(0)..];
    let send = match cut {
        Cut::None => body.len(),
        Cut::Fin(n) | Cut::Reset(n) => n.min(body.len()),
    };
    let mut stream = reader.into_inner();
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for chunk in body[..send].chunks(16 * 1024) {
        if stream.write_all(chunk).await.is_err() {
            return;
        }
        state.lock().unwrap().body_bytes_sent += chunk.len() as u64;
    }
    let _ = stream.flush().await;
    match cut {
        Cut::Reset(_) => {
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            drop(stream);
        }
        Cut::Fin(_) | Cut::None => {
            let _ = stream.shutdown().await;
        }
    }
}

const LEN: usize = 1024 * 1024;

#[tokio::test]
async fn a_truncated_body_resumes_with_range_and_if_range_exactly_once() {
    let data = content(LEN, 7);
    let server = RangeServer::start(
        vec![("v1", data.clone())],
        |_| 0,
        vec![Cut::Fin(300_000), Cut::None],
    )
    .await;
    let progress = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let client = Client::new().unwrap();
    let mut out = Vec::new();
    let p = progress.clone();
    let done = client
        .download(&server.url)
        .progress(move |x| p.lock().unwrap().push(x))
        .to_writer(&mut out)
        .await
        .unwrap();

    assert_eq!(out.len(), LEN);
    assert_eq!(checksum(&out), checksum(&data), "every byte exactly once");
    assert_eq!((done.bytes(), done.total()), (LEN as u64, Some(LEN as u64)));
    assert_eq!((done.resumes(), done.restarts()), (1, 0));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        (seen[0].range.as_deref(), seen[0].if_range.as_deref()),
        (None, None)
    );
    assert_eq!(seen[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(seen[1].if_range.as_deref(), Some("\"v1\""));
    assert_eq!(server.body_bytes_sent(), LEN as u64, "nothing sent twice");

    let progress = progress.lock().unwrap();
    assert!(progress.windows(2).all(|w| w[0].done <= w[1].done));
    let last = progress.last().unwrap();
    assert_eq!((last.done, last.total), (LEN as u64, Some(LEN as u64)));
}

#[tokio::test]
async fn a_reset_mid_body_resumes_and_the_file_matches_by_checksum() {
    let data = content(LEN, 11);
    let server = RangeServer::start(
        vec![("abc", data.clone())],
        |_| 0,
        vec![Cut::Reset(500_000), Cut::Reset(200_000), Cut::None],
    )
    .await;
    let dir = std::env::temp_dir().join(format!("palisade-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reset.bin");
    let client = Client::new().unwrap();
    let done = client.download(&server.url).to_file(&path).await.unwrap();
    let file = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    assert_eq!(file.len(), LEN);
    assert_eq!(checksum(&file), checksum(&data));
    assert_eq!(done.resumes(), 2);
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    // A reset may drop bytes still in flight, so the second request starts
    // at or before byte 500 000; the range makes up the difference.
    let first_resume: usize = seen[1].range.as_deref().unwrap()["bytes=".len()..]
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        first_resume > 0 && first_resume <= 500_000,
        "{first_resume}"
    );
    assert!(
        seen[1..]
            .iter()
            .all(|s| s.if_range.as_deref() == Some("\"abc\""))
    );
}

#[tokio::test]
async fn a_changed_etag_starts_the_file_over() {
    let v1 = content(LEN, 1);
    let v2 = content(LEN / 2, 2);
    let server = RangeServer::start(
        vec![("v1", v1), ("v2", v2.clone())],
        // The resource changes after the first response.
        |n| usize::from(n > 0),
        vec![Cut::Fin(400_000), Cut::None],
    )
    .await;
    let dir = std::env::temp_dir().join(format!("palisade-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("changed.bin");
    let client = Client::new().unwrap();
    let done = client.download(&server.url).to_file(&path).await.unwrap();
    let file = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    assert_eq!(file.len(), v2.len(), "no byte of the old version is left");
    assert_eq!(checksum(&file), checksum(&v2));
    assert_eq!((done.resumes(), done.restarts()), (1, 1));
    assert_eq!(done.total(), Some(v2.len() as u64));
    let seen = server.seen();
    assert_eq!(
        seen[1].if_range.as_deref(),
        Some("\"v1\""),
        "asked to resume"
    );
}

#[tokio::test]
async fn a_changed_etag_cannot_restart_a_writer_and_says_so() {
    let server = RangeServer::start(
        vec![("v1", content(LEN, 1)), ("v2", content(LEN, 2))],
        |n| usize::from(n > 0),
        vec![Cut::Fin(100_000), Cut::None],
    )
    .await;
    let client = Client::new().unwrap();
    let mut out = Vec::new();
    let err = client
        .download(&server.url)
        .to_writer(&mut out)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Body);
    assert!(err.to_string().contains("cannot be rewound"), "{err}");
    assert_eq!(out.len(), 100_000, "the writer got only the first part");
}

#[tokio::test]
async fn resumes_are_capped() {
    let server =
        RangeServer::start(vec![("v1", content(LEN, 3))], |_| 0, vec![Cut::Fin(1000)]).await;
    let client = Client::new().unwrap();
    let err = client
        .download(&server.url)
        .max_resumes(2)
        .to_writer(&mut tokio::io::sink())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Body);
    assert_eq!(server.seen().len(), 3, "the first request and two resumes");
}

#[tokio::test]
async fn resume_continues_against_the_chaos_server() {
    const N: u64 = 256 * 1024;
    const K: u64 = 100 * 1024;
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/big",
        Script::new()
            .then(
                Behavior::truncated(N, K)
                    .with_header("accept-ranges", "bytes")
                    .with_header("etag", "\"e1\""),
            )
            .then(
                Behavior::status(206)
                    .with_body(vec![b'.'; (N - K) as usize])
                    .with_header("content-range", format!("bytes {K}-{}/{N}", N - 1))
                    .with_header("etag", "\"e1\""),
            ),
    );
    let client = Client::new().unwrap();
    let mut out = Vec::new();
    let done = client
        .download(&server.url("/big"))
        .to_writer(&mut out)
        .await
        .unwrap();
    assert_eq!(out.len() as u64, N);
    assert!(out.iter().all(|b| *b == b'.'));
    assert_eq!(done.resumes(), 1);
    assert_eq!(server.stats("/big").attempts, 2);
}

#[tokio::test]
async fn no_validator_or_no_ranges_means_no_resume() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/no-etag",
        Script::always(Behavior::truncated(200_000, 50_000).with_header("accept-ranges", "bytes")),
    );
    server.script(
        "/no-ranges",
        Script::always(Behavior::truncated(200_000, 50_000).with_header("etag", "\"x\"")),
    );
    server.script(
        "/weak",
        Script::always(
            Behavior::truncated(200_000, 50_000)
                .with_header("accept-ranges", "bytes")
                .with_header("etag", "W/\"x\""),
        ),
    );
    let client = Client::new().unwrap();
    for path in ["/no-etag", "/no-ranges", "/weak"] {
        let err = client
            .download(&server.url(path))
            .to_writer(&mut tokio::io::sink())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), Kind::Body, "{path}: {err:?}");
        assert_eq!(server.stats(path).attempts, 1, "{path} was not resumed");
    }
}

#[tokio::test]
async fn resume_can_be_turned_off() {
    let server = RangeServer::start(
        vec![("v1", content(LEN, 5))],
        |_| 0,
        vec![Cut::Fin(10_000), Cut::None],
    )
    .await;
    let client = Client::new().unwrap();
    let err = client
        .download(&server.url)
        .resume(false)
        .to_writer(&mut tokio::io::sink())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), Kind::Body);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn a_large_body_is_written_in_chunks_with_progress() {
    const N: u64 = 16 * 1024 * 1024;
    let server = FlakyServer::start().await.unwrap();
    server.script("/large", Script::always(Behavior::large(N)));
    let calls = Arc::new(Mutex::new((0usize, None::<Progress>)));
    let c = calls.clone();
    let client = Client::new().unwrap();
    let dir = std::env::temp_dir().join(format!("palisade-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("large.bin");
    let done = client
        .download(&server.url("/large"))
        .progress(move |p| {
            let mut c = c.lock().unwrap();
            c.0 += 1;
            c.1 = Some(p);
        })
        .to_file(&path)
        .await
        .unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(meta.len(), N);
    assert_eq!(done.bytes(), N);
    let (calls, last) = *calls.lock().unwrap();
    assert!(calls > 16, "progress after every chunk, not once ({calls})");
    let last = last.unwrap();
    assert_eq!((last.done, last.total), (N, Some(N)));
}

#[tokio::test]
async fn a_failed_request_creates_no_file() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/missing");
            then.status(404);
        })
        .await;
    let path = std::env::temp_dir().join(format!("palisade-404-{}.bin", std::process::id()));
    let client = Client::new().unwrap();
    let err = client
        .download(&server.url("/missing"))
        .to_file(&path)
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    assert!(!path.exists());
}

#[tokio::test]
async fn an_empty_body_makes_an_empty_file() {
    let server = MockServer::start_async().await;
    server
        .mock_async(|when, then| {
            when.path("/empty");
            then.status(200);
        })
        .await;
    let path = std::env::temp_dir().join(format!("palisade-empty-{}.bin", std::process::id()));
    let client = Client::new().unwrap();
    let done = client
        .download(&server.url("/empty"))
        .to_file(&path)
        .await
        .unwrap();
    assert_eq!(done.bytes(), 0);
    assert_eq!(std::fs::read(&path).unwrap(), b"");
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn uploads_stream_from_a_stream_and_from_a_reader() {
    let server = FlakyServer::start().await.unwrap();
    let client = Client::new().unwrap();

    let chunks = vec![
        Ok::<_, std::io::Error>(Bytes::from_static(b"hello ")),
        Ok(Bytes::from_static(b"streaming ")),
        Ok(Bytes::from_static(b"world")),
    ];
    let res = client
        .post(&server.url("/up-stream"))
        .body_stream(stream::iter(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        server.stats("/up-stream").bodies[0],
        "hello streaming world"
    );

    let data = content(40_000, 9);
    let res = client
        .put(&server.url("/up-reader"))
        .body_reader(std::io::Cursor::new(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        checksum(&server.stats("/up-reader").bodies[0]),
        checksum(&data)
    );
}

#[tokio::test]
async fn a_failing_upload_stream_fails_the_request() {
    let server = FlakyServer::start().await.unwrap();
    let client = Client::new().unwrap();
    let chunks = vec![
        Ok(Bytes::from_static(b"part")),
        Err(std::io::Error::other("disk gone")),
    ];
    let err = client
        .put(&server.url("/up-broken"))
        .body_stream(stream::iter(chunks))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind(),
            Kind::Transport | Kind::InvalidRequest | Kind::Body
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_streaming_upload_within_the_replay_cap_is_retried() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/put-small",
        Script::new()
            .then(Behavior::retry_after_secs(503, 0))
            .then(Behavior::status(200)),
    );
    let client = Client::new().unwrap();
    let data = content(16 * 1024, 8);
    let res = client
        .put(&server.url("/put-small"))
        .body_reader(std::io::Cursor::new(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "replayed after the 503");
    let stats = server.stats("/put-small");
    assert_eq!(stats.attempts, 2);
    assert!(
        stats.bodies.iter().all(|b| b[..] == data[..]),
        "same body twice"
    );
}

#[tokio::test]
async fn an_upload_beyond_the_replay_cap_is_sent_once() {
    let server = FlakyServer::start().await.unwrap();
    server.script(
        "/put-big",
        Script::new()
            .then(Behavior::retry_after_secs(503, 0))
            .then(Behavior::status(200)),
    );
    let client = Client::new().unwrap();
    let data = content(256 * 1024, 4);
    let res = client
        .put(&server.url("/put-big"))
        .body_reader(std::io::Cursor::new(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503, "handed back, not retried");
    let stats = server.stats("/put-big");
    assert_eq!(stats.attempts, 1);
    assert_eq!(stats.bodies[0][..], data[..64 * 1024], "the body was sent");
}

#[tokio::test]
async fn a_stalled_body_is_cut_by_the_body_timeout_and_resumed() {
    const N: u64 = 300 * 1024;
    const K: u64 = 128 * 1024;
    let server = FlakyServer::start().await.unwrap();
    let stall = || {
        Behavior::stall_mid_body(K)
            .with_header("accept-ranges", "bytes")
            .with_header("etag", "\"s1\"")
    };
    server.script(
        "/stall",
        Script::new().then(stall()).then(
            Behavior::status(206)
                .with_body(vec![b'.'; (N - K) as usize])
                .with_header("content-range", format!("bytes {K}-{}/{N}", N - 1)),
        ),
    );
    server.script("/stall-only", Script::always(stall()));
    let idle = palisade::timeout::BodyTimeoutLayer::builder()
        .idle(Duration::from_millis(300))
        .build()
        .unwrap();
    let client = Client::builder()
        .stack(|s| s.body_timeout(Some(idle)))
        .build()
        .unwrap();

    let mut out = Vec::new();
    let download = client.download(&server.url("/stall")).to_writer(&mut out);
    // Bounded: without the body timeout this would wait forever.
    let done = tokio::time::timeout(Duration::from_secs(20), download)
        .await
        .expect("the idle timeout cut the stalled body")
        .unwrap();
    assert_eq!((out.len() as u64, done.resumes()), (N, 1));
    assert_eq!(server.stats("/stall").attempts, 2);

    let err = tokio::time::timeout(
        Duration::from_secs(20),
        client
            .download(&server.url("/stall-only"))
            .resume(false)
            .to_writer(&mut tokio::io::sink()),
    )
    .await
    .expect("the idle timeout cut the stalled body")
    .unwrap_err();
    assert_eq!(err.kind(), Kind::Timeout, "{err:?}");
}
