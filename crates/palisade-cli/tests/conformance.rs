//! `palisade fetch` against servers nobody here wrote: nginx (Debian) with
//! TLS and HTTP/2, and httpbin (PyPI), on free loopback ports.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use palisade_tests::servers::{Httpbin, Nginx};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

fn fetch(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("fetch")
        .arg("--no-progress")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the palisade binary")
}

fn rows(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn kind(row: &Value) -> &str {
    row["error"]["kind"].as_str().unwrap_or("none")
}

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("palisade-conf-{name}-{}", std::process::id()));
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("a temporary file");
    path
}

#[test]
fn ca_bundle_trusts_a_private_ca_and_without_it_the_certificate_fails_once() {
    let nginx = Nginx::config().http2().start();
    nginx.write_file("/ok.txt", b"ok");
    let url = nginx.tls_url("/ok.txt");

    let out = fetch(&[&url]);
    assert_eq!(out.status.code(), Some(1));
    let r = &rows(&out)[0];
    assert_eq!(kind(r), "certificate", "{r}");
    assert_eq!(
        r["attempts"], 1,
        "a refused certificate is never retried: {r}"
    );

    let ca = temp_file("ca.pem", nginx.ca().unwrap().ca_pem.as_bytes());
    for flag in ["--ca-bundle", "--cacert"] {
        let out = fetch(&[flag, ca.to_str().unwrap(), &url]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(rows(&out)[0]["status"], 200);
    }
    let bad = temp_file("bad.pem", b"not a certificate");
    let out = fetch(&["--ca-bundle", bad.to_str().unwrap(), &url]);
    assert_eq!(out.status.code(), Some(2), "a bad bundle is a usage error");
}

#[test]
fn a_non_utf8_input_line_fails_its_own_row_and_the_batch_goes_on() {
    let nginx = Nginx::config().start();
    nginx.write_file("/a.txt", b"a");
    let mut input = format!("{}\n", nginx.url("/a.txt")).into_bytes();
    input.extend_from_slice(b"http://127.0.0.1/\xff\xfe\n");
    input.extend_from_slice(format!("{}\n", nginx.url("/a.txt")).as_bytes());
    let list = temp_file("list.txt", &input);
    let out = fetch(&["-i", list.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&out);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.iter().filter(|r| r["status"] == 200).count(), 2);
    let bad: Vec<_> = rows
        .iter()
        .filter(|r| kind(r) == "invalid_request")
        .collect();
    assert_eq!(bad.len(), 1, "{rows:?}");
    assert!(
        bad[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
}

#[test]
fn a_deadline_alone_is_not_refused_and_bounds_the_request() {
    let bin = Httpbin::start();
    let out = fetch(&["--deadline", "2s", "--retries", "0", &bin.url("/delay/4")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = &rows(&out)[0];
    assert_eq!(kind(r), "deadline_exceeded", "{r}");
    let out = fetch(&["--deadline", "2s", "--timeout", "5s", &bin.url("/get")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "two explicit settings that contradict"
    );
}
