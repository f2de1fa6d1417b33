//! `palisade fetch` end to end: the binary against a real flaky upstream,
//! each flag's effect asserted where it shows, at the server (attempts,
//! arrival times, requests in flight, idempotency keys, bodies) and in the
//! rows, plus usage errors and exit codes.
//!
//! The server runs on the test's runtime; the binary runs in a blocking
//! thread. Timing is asserted only as lower bounds seen by the server (a
//! rate limit spaces arrivals at least so far apart), never as durations.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use palisade_chaos::{Behavior, FlakyServer, Script};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

/// Runs `palisade fetch ARGS...` with `stdin` and returns its output.
async fn fetch_with_stdin(args: Vec<String>, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.arg("fetch")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().expect("run the palisade binary");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("wait for palisade")
    })
    .await
    .expect("the blocking task ran")
}

async fn fetch(args: &[&str]) -> Output {
    fetch_with_stdin(args.iter().map(|s| (*s).to_owned()).collect(), None).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rows(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[track_caller]
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

fn kind(row: &Value) -> &str {
    row["error"]["kind"].as_str().unwrap_or("none")
}

async fn server() -> FlakyServer {
    FlakyServer::start().await.expect("start the flaky server")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("palisade-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_per_request_with_the_contract_fields_and_exit_0() {
    let server = server().await;
    server.script("/hello", Script::always(Behavior::ok("hello")));
    let url = server.url("/hello");
    let out = fetch(&[&url]).await;
    assert_exit(&out, 0);
    let rows = rows(&out);
    assert_eq!(rows.len(), 1);
    let row = rows[0].as_object().unwrap();
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "attempts",
            "bytes",
            "elapsed_ms",
            "error",
            "method",
            "status",
            "url"
        ]
    );
    assert_eq!(row["url"], url.as_str());
    assert_eq!(row["method"], "GET");
    assert_eq!(row["status"], 200);
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["bytes"], 5);
    assert!(row["elapsed_ms"].is_u64());
    assert!(row["error"].is_null());
    assert_eq!(server.stats("/hello").attempts, 1);
    let err = stderr(&out);
    assert!(err.contains("1 succeeded"), "{err}");
    assert!(
        err.contains("p50") && err.contains("p95") && err.contains("p99"),
        "{err}"
    );
    assert!(err.contains("attempts: 1 (retries: 0)"), "{err}");
    assert!(err.contains("breaker openings: 0"), "{err}");
    assert!(err.contains("limiter waits"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_recover_and_attempts_are_counted_at_the_server() {
    let server = server().await;
    server.script(
        "/flaky",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::reset())
            .then(Behavior::ok("fine")),
    );
    let out = fetch(&["--backoff", "10ms", &server.url("/flaky")]).await;
    assert_exit(&out, 0);
    let row = &rows(&out)[0];
    assert_eq!(row["status"], 200);
    assert_eq!(row["attempts"], 3);
    assert_eq!(server.stats("/flaky").attempts, 3);
    assert!(stderr(&out).contains("attempts: 3 (retries: 2)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_bound_the_attempts_and_a_final_5xx_fails_with_kind_status() {
    let server = server().await;
    server.script("/down", Script::always(Behavior::status(503)));
    let out = fetch(&["--retries", "1", "--backoff", "10ms", &server.url("/down")]).await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(row["status"], 503);
    assert_eq!(kind(row), "status");
    assert_eq!(row["attempts"], 2);
    assert_eq!(server.stats("/down").attempts, 2);

    let out = fetch(&["--retries", "0", &server.url("/down")]).await;
    assert_exit(&out, 1);
    assert_eq!(rows(&out)[0]["attempts"], 1);
    assert_eq!(server.stats("/down").attempts, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_idempotency_key_is_never_resent() {
    let server = server().await;
    server.script("/orders", Script::always(Behavior::status(503)));
    let out = fetch(&[
        "-X",
        "POST",
        "-d",
        r#"{"item":1}"#,
        "--backoff",
        "10ms",
        &server.url("/orders"),
    ])
    .await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(row["method"], "POST");
    assert_eq!(row["attempts"], 1);
    let stats = server.stats("/orders");
    assert_eq!(stats.attempts, 1, "the POST reached the server once");
    assert!(stats.idempotency_keys.is_empty());
    assert_eq!(stats.bodies[0], r#"{"item":1}"#.as_bytes());

    // PUT is idempotent: the same failure is retried.
    server.script(
        "/put",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("")),
    );
    let out = fetch(&[
        "-X",
        "put",
        "-d",
        "x",
        "--backoff",
        "10ms",
        &server.url("/put"),
    ])
    .await;
    assert_exit(&out, 0);
    assert_eq!(rows(&out)[0]["method"], "PUT");
    assert_eq!(server.stats("/put").attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_makes_a_post_retryable_with_one_key_per_request() {
    let server = server().await;
    for path in ["/pay/1", "/pay/2"] {
        server.script(
            path,
            Script::new()
                .then(Behavior::status(503))
                .then(Behavior::ok("paid")),
        );
    }
    let out = fetch(&[
        "-X",
        "POST",
        "-d",
        "amount=1",
        "--idempotency-key",
        "--backoff",
        "10ms",
        &server.url("/pay/1"),
        &server.url("/pay/2"),
    ])
    .await;
    assert_exit(&out, 0);
    for row in rows(&out) {
        assert_eq!(row["attempts"], 2, "{row}");
    }
    let one = server.stats("/pay/1");
    let two = server.stats("/pay/2");
    assert_eq!(one.attempts, 2);
    assert_eq!(
        one.idempotency_keys.len(),
        2,
        "every attempt carries the key"
    );
    assert_eq!(
        one.distinct_idempotency_keys(),
        1,
        "the same key on the retry"
    );
    assert_eq!(two.distinct_idempotency_keys(), 1);
    assert_ne!(
        one.idempotency_keys[0], two.idempotency_keys[0],
        "one key per request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_sent_and_a_given_idempotency_key_is_kept() {
    let server = server().await;
    server.script(
        "/h",
        Script::new()
            .then(Behavior::status(503))
            .then(Behavior::ok("")),
    );
    let out = fetch(&[
        "-X",
        "POST",
        "-H",
        "Idempotency-Key: mine-42",
        "-H",
        "X-Other: 1",
        "--backoff",
        "10ms",
        &server.url("/h"),
    ])
    .await;
    assert_exit(&out, 0);
    let stats = server.stats("/h");
    assert_eq!(stats.idempotency_keys, ["mine-42", "mine-42"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_holds_at_the_server_and_the_batch_is_queued_not_shed() {
    let server = server().await;
    server.script(
        "/slow",
        Script::always(Behavior::ok("ok").with_latency(Duration::from_millis(150))),
    );
    let url = server.url("/slow");
    let urls: Vec<String> = (0..12).map(|_| url.clone()).collect();
    let mut args = vec!["-c".to_owned(), "3".to_owned()];
    args.extend(urls);
    let out = fetch_with_stdin(args, None).await;
    assert_exit(&out, 0);
    assert_eq!(rows(&out).len(), 12);
    let stats = server.stats("/slow");
    assert_eq!(stats.attempts, 12);
    assert_eq!(stats.max_in_flight, 3, "-c 3 is the most in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_holds_at_the_server() {
    let server = server().await;
    server.script("/paced", Script::always(Behavior::ok("ok")));
    let url = server.url("/paced");
    let mut args: Vec<String> = ["--rate", "10/s", "--burst", "1"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend((0..8).map(|_| url.clone()));
    let out = fetch_with_stdin(args, None).await;
    assert_exit(&out, 0);
    let stats = server.stats("/paced");
    assert_eq!(stats.attempts, 8);
    // 10/s with a burst of 1: arrivals at least ~100 ms apart (GCRA allows
    // a little slack per slot, never more than the burst).
    let span = stats.timestamps[7].duration_since(stats.timestamps[0]);
    assert!(span >= Duration::from_millis(650), "8 arrivals in {span:?}");
    let close = stats
        .gaps()
        .iter()
        .filter(|g| **g < Duration::from_millis(50))
        .count();
    assert!(close <= 1, "gaps: {:?}", stats.gaps());
    // The summary counts the requests that waited for a slot.
    let err = stderr(&out);
    let waited: u64 = err
        .split("rate limit: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rate-limit waits in the summary: {err}"));
    assert!(waited >= 6, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_beyond_c_is_paced_within_the_deadline_not_shed() {
    let server = server().await;
    server.script(
        "/queue",
        Script::always(Behavior::ok("ok").with_latency(Duration::from_millis(200))),
    );
    let url = server.url("/queue");
    // 16 requests, 2 at a time, 200 ms each: 1.6 s, past the 1 s deadline.
    // Handed to the stack all at once, the last would time out in its
    // queue; fed as permits free up, each has its whole deadline.
    let mut args: Vec<String> = ["-c", "2", "--deadline", "1s", "--timeout", "1s"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend((0..16).map(|_| url.clone()));
    let out = fetch_with_stdin(args, None).await;
    assert_exit(&out, 0);
    let rows = rows(&out);
    assert_eq!(rows.len(), 16);
    assert!(rows.iter().all(|r| r["error"].is_null()));
    let stats = server.stats("/queue");
    assert_eq!(stats.attempts, 16);
    assert_eq!(stats.max_in_flight, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_batch_is_paced_within_the_deadline_not_shed() {
    let server = server().await;
    server.script("/many", Script::always(Behavior::ok("ok")));
    let url = server.url("/many");
    // 30 requests at 10/s take 3 s: more than the 2 s deadline. Each must
    // still get its slot, because the batch is fed to the stack in pace.
    let mut args: Vec<String> = [
        "--rate",
        "10/s",
        "--burst",
        "1",
        "--deadline",
        "2s",
        "--timeout",
        "1s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend((0..30).map(|_| url.clone()));
    let out = fetch_with_stdin(args, None).await;
    assert_exit(&out, 0);
    let rows = rows(&out);
    assert_eq!(rows.len(), 30);
    assert!(rows.iter().all(|r| r["error"].is_null()));
    assert_eq!(server.stats("/many").attempts, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_capped_by_the_deadline() {
    let server = server().await;
    server.script(
        "/throttled",
        Script::new()
            .then(Behavior::retry_after_secs(429, 1))
            .then(Behavior::ok("ok")),
    );
    let out = fetch(&["--backoff", "10ms", &server.url("/throttled")]).await;
    assert_exit(&out, 0);
    assert_eq!(rows(&out)[0]["attempts"], 2);
    let stats = server.stats("/throttled");
    assert_eq!(stats.attempts, 2);
    assert!(
        stats.gaps()[0] >= Duration::from_millis(950),
        "the retry came {:?} after the 429",
        stats.gaps()[0]
    );

    // A Retry-After beyond the deadline is not waited for.
    server.script(
        "/later",
        Script::always(Behavior::retry_after_secs(503, 30)),
    );
    let out = fetch(&[
        "--deadline",
        "2s",
        "--timeout",
        "1s",
        "--backoff",
        "10ms",
        &server.url("/later"),
    ])
    .await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(row["status"], 503);
    assert_eq!(kind(row), "status");
    assert_eq!(server.stats("/later").attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_failures_contain_an_outage_and_0_disables_the_breaker() {
    let server = server().await;
    server.script("/outage", Script::always(Behavior::status(500)));
    let url = server.url("/outage");
    let run = |failures: &str| {
        let mut args: Vec<String> = [
            "-c",
            "1",
            "--retries",
            "0",
            "--breaker-failures",
            failures,
            "--breaker-cooldown",
            "30s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend((0..10).map(|_| url.clone()));
        fetch_with_stdin(args, None)
    };

    let out = run("3").await;
    assert_exit(&out, 1);
    let rows = rows(&out);
    assert_eq!(rows.len(), 10);
    assert_eq!(rows.iter().filter(|r| kind(r) == "status").count(), 3);
    let open: Vec<&Value> = rows.iter().filter(|r| kind(r) == "circuit_open").collect();
    assert_eq!(open.len(), 7);
    assert!(
        open.iter()
            .all(|r| r["attempts"] == 0 && r["status"].is_null())
    );
    assert_eq!(server.stats("/outage").attempts, 3);
    assert!(
        stderr(&out).contains("breaker openings: 1"),
        "{}",
        stderr(&out)
    );

    let out = run("0").await;
    assert_exit(&out, 1);
    assert_eq!(server.stats("/outage").attempts, 13);
    assert!(rows_of(&out).iter().all(|r| kind(r) == "status"));
    assert!(stderr(&out).contains("breaker openings: no breaker"));
}

fn rows_of(out: &Output) -> Vec<Value> {
    rows(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_probes_again_once_its_cooldown_is_over() {
    let server = server().await;
    // One failure opens the breaker. Every retry passes through it again,
    // about 200 ms later: past a 1 ms cooldown it goes through as a probe,
    // within a 30 s one it fails fast, and retrying stops there.
    let run = |path: &'static str, cooldown: &'static str| {
        server.script(
            path,
            Script::new()
                .times(2, Behavior::status(500))
                .then(Behavior::ok("back")),
        );
        let url = server.url(path);
        let args: Vec<String> = [
            "--retries",
            "3",
            "--backoff",
            "200ms",
            "--breaker-failures",
            "1",
            "--breaker-cooldown",
            cooldown,
            &url,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        fetch_with_stdin(args, None)
    };

    let out = run("/short", "1ms").await;
    assert_exit(&out, 0);
    let row = &rows(&out)[0];
    assert_eq!(row["status"], 200, "{row}");
    assert_eq!(row["attempts"], 3);
    assert_eq!(server.stats("/short").attempts, 3);
    assert!(
        stderr(&out).contains("breaker openings: 2"),
        "{}",
        stderr(&out)
    );

    let out = run("/long", "30s").await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(kind(row), "circuit_open", "{row}");
    assert_eq!(row["attempts"], 1);
    assert_eq!(server.stats("/long").attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_and_deadline_fail_with_their_kinds() {
    let server = server().await;
    server.script(
        "/hang",
        Script::always(Behavior::ok("late").with_latency(Duration::from_secs(5))),
    );
    let url = server.url("/hang");
    let out = fetch(&["--timeout", "200ms", "--retries", "0", &url]).await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(kind(row), "timeout");
    assert!(row["status"].is_null());
    assert_eq!(row["attempts"], 1);

    let out = fetch(&[
        "--timeout",
        "300ms",
        "--deadline",
        "500ms",
        "--retries",
        "5",
        "--backoff",
        "10ms",
        &url,
    ])
    .await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(kind(row), "deadline_exceeded", "{row}");
    assert!(row["attempts"].as_u64().unwrap() <= 2, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_file_and_stdin_with_a_bad_line_failing_only_that_row() {
    let server = server().await;
    server.script("/a", Script::always(Behavior::ok("a")));
    server.script("/b", Script::always(Behavior::ok("bb")));
    let dir = temp_dir("input");
    let file = dir.join("urls.txt");
    std::fs::write(
        &file,
        format!(
            "# a comment\n{}\n\nnot a url\n  {}  \n",
            server.url("/a"),
            server.url("/b")
        ),
    )
    .unwrap();
    let out = fetch(&["-i", file.to_str().unwrap()]).await;
    assert_exit(&out, 1);
    let rows = rows(&out);
    assert_eq!(rows.len(), 3);
    let bad: Vec<&Value> = rows
        .iter()
        .filter(|r| kind(r) == "invalid_request")
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["url"], "not a url");
    assert_eq!(bad[0]["attempts"], 0);
    assert_eq!(rows.iter().filter(|r| r["status"] == 200).count(), 2);
    assert_eq!(server.stats("/a").attempts, 1);
    assert_eq!(server.stats("/b").attempts, 1);

    // stdin, in addition to a URL argument.
    let out = fetch_with_stdin(
        vec!["-i".into(), "-".into(), server.url("/a")],
        Some(format!("{}\n", server.url("/b"))),
    )
    .await;
    assert_exit(&out, 0);
    assert_eq!(rows_of(&out).len(), 2);
    assert_eq!(server.stats("/a").attempts, 2);
    assert_eq!(server.stats("/b").attempts, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_streams_each_body_to_a_new_file_never_overwriting() {
    const SIZE: u64 = 3 * 1024 * 1024 + 17;
    let server = server().await;
    server.script("/files/data.bin", Script::always(Behavior::large(SIZE)));
    let dir = temp_dir("save");
    std::fs::write(dir.join("data.bin"), b"keep me").unwrap();
    let url = server.url("/files/data.bin");
    let out = fetch(&["-o", dir.to_str().unwrap(), &url, &url]).await;
    assert_exit(&out, 0);
    let rows = rows(&out);
    let mut files: Vec<String> = rows
        .iter()
        .map(|r| {
            assert_eq!(r["bytes"], SIZE, "{r}");
            r["file"].as_str().expect("a file per row").to_owned()
        })
        .collect();
    files.sort();
    let expected: Vec<String> = ["data.1.bin", "data.2.bin"]
        .iter()
        .map(|n| dir.join(n).display().to_string())
        .collect();
    assert_eq!(files, expected);
    for f in &files {
        assert_eq!(std::fs::metadata(f).unwrap().len(), SIZE);
    }
    assert_eq!(std::fs::read(dir.join("data.bin")).unwrap(), b"keep me");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_body_fails_with_kind_body_and_leaves_no_file() {
    let server = server().await;
    server.script("/cut", Script::always(Behavior::truncated(100_000, 1_000)));
    let dir = temp_dir("cut");
    let out = fetch(&[
        "--retries",
        "0",
        "-o",
        dir.to_str().unwrap(),
        &server.url("/cut"),
    ])
    .await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(row["status"], 200);
    assert_eq!(kind(row), "body");
    assert!(row["file"].is_null());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_stops_an_endless_body_and_a_gzip_bomb_as_body_too_large() {
    let server = server().await;
    server.script("/endless", Script::always(Behavior::endless()));
    let out = fetch(&[
        "--max-body",
        "1MiB",
        "--retries",
        "0",
        &server.url("/endless"),
    ])
    .await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(row["status"], 200);
    assert_eq!(kind(row), "body_too_large", "{row}");
    assert!(row["bytes"].as_u64().unwrap() <= 1 << 20, "{row}");
    assert_eq!(server.stats("/endless").attempts, 1, "not retried");

    // A body within the cap is fetched whole.
    server.script("/small", Script::always(Behavior::large(1000)));
    let out = fetch(&["--max-body", "1kB", &server.url("/small")]).await;
    assert_exit(&out, 0);
    assert_eq!(rows(&out)[0]["bytes"], 1000);

    let out = fetch(&["--max-body", "lots", &server.url("/small")]).await;
    assert_exit(&out, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3xx_is_success_and_table_output_is_one_table() {
    let server = server().await;
    server.script("/same", Script::always(Behavior::status(304)));
    server.script("/ok", Script::always(Behavior::ok("ok")));
    let out = fetch(&[
        "--output",
        "table",
        &server.url("/same"),
        &server.url("/ok"),
    ])
    .await;
    assert_exit(&out, 0);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("STATUS"));
    assert!(text.contains("304") && text.contains("200"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_rows_of_kind_connect() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/x");
    let out = fetch(&["--retries", "1", "--backoff", "10ms", &url]).await;
    assert_exit(&out, 1);
    let row = &rows(&out)[0];
    assert_eq!(kind(row), "connect");
    assert_eq!(row["attempts"], 2, "a connect failure is safe to retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_are_one_line_naming_the_argument_and_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["http://x/", "--rate", "0/s"], "--rate"),
        (&["http://x/", "--rate", "ten"], "--rate"),
        (&["http://x/", "--timeout", "soon"], "--timeout"),
        (&["http://x/", "--deadline", "0s"], "--deadline"),
        (
            &["http://x/", "--breaker-cooldown", "5"],
            "--breaker-cooldown",
        ),
        (&["http://x/", "-H", "no colon"], "--header"),
        (&["http://x/", "-H", "bad name: v"], "--header"),
        (&["http://x/", "-c", "0"], "--concurrency"),
        (&["http://x/", "--retries", "-1"], "--retries"),
        (&["http://x/", "-X", "GE T"], "--method"),
        (&["http://x/", "--output", "xml"], "--output"),
        (&["http://x/", "--burst", "2"], "--rate"),
        (&["http://x/", "--timeout", "40s"], "--timeout"),
        (&["not-a-url"], "URL"),
        (&["ftp://x/"], "URL"),
        (&["-i", "/definitely/not/here"], "--input"),
        (&[], "URL"),
        (&["http://x/", "--no-such-flag"], "--no-such-flag"),
    ];
    for (args, names) in cases {
        let out = fetch(args).await;
        assert_exit(&out, 2);
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(err.contains(names), "{args:?} should name {names}: {err}");
        assert!(stdout(&out).is_empty(), "{args:?}");
    }
}

#[tokio::test]
async fn help_and_version_exit_0() {
    let out = fetch(&["--help"]).await;
    assert_exit(&out, 0);
    let help = stdout(&out);
    assert!(help.contains("[default: none]"), "{help}");
    for flag in [
        "--input",
        "--method",
        "--data",
        "--header",
        "--concurrency",
        "--rate",
        "--burst",
        "--retries",
        "--timeout",
        "--deadline",
        "--breaker-failures",
        "--breaker-cooldown",
        "--idempotency-key",
        "--no-progress",
        "--output",
        "--save",
        "--max-body",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}
