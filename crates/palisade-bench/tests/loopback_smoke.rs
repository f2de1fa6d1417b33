//! The loopback benchmark runs end to end on a tiny workload, prints its
//! table with every client and no error, and writes its results file with
//! every key the report reads, so it cannot rot between the runs that
//! produce the published figures.

use std::path::PathBuf;
use std::process::Command;

use palisade_bench::results::{Results, Value};

/// Every client's results key (see the binary's docs).
const CLIENTS: [&str; 9] = [
    "reqwest",
    "reqwest_default",
    "reqwest_service",
    "stack_palisade",
    "palisade",
    "palisade_bare",
    "middleware",
    "resilience",
    "resilience_count",
];

/// A results directory of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn number(results: &Results, key: &str) -> f64 {
    match results.values.get(key) {
        Some(Value::Number(n)) => *n,
        other => panic!("{key}: expected a number, got {other:?}"),
    }
}

#[test]
fn loopback_prints_a_table_and_writes_results_with_every_client_and_no_error() {
    let dir = TempDir::new("palisade-loopback-smoke");
    let out = Command::new(env!("CARGO_BIN_EXE_loopback"))
        .args(["--requests", "200", "--in-flight", "8", "--rounds", "1"])
        .env("PALISADE_BENCH_RESULTS", &dir.0)
        .output()
        .expect("the loopback binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| client"))
        .collect();
    for client in [
        "bare reqwest (palisade's PoolConfig)",
        "palisade default stack",
        "reqwest-middleware",
        "tower-resilience 0.13 stack over reqwest",
    ] {
        assert!(
            rows.iter().any(|r| r.contains(client)),
            "no row for {client} in:\n{table}"
        );
    }
    assert_eq!(rows.len(), CLIENTS.len(), "{table}");
    for row in &rows {
        let errors = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
        assert_eq!(errors, "0", "errors in row {row}");
    }
    // The baseline's ratio to itself.
    assert!(rows[0].contains("| 1.000 |"), "{}", rows[0]);

    let json = std::fs::read_to_string(dir.0.join("loopback.json")).expect("loopback.json");
    let results: Results = serde_json::from_str(&json).unwrap();
    assert_eq!(results.name, "loopback");
    for client in CLIENTS {
        assert!(number(&results, &format!("{client}_rps")) > 0.0, "{client}");
        assert_eq!(
            number(&results, &format!("{client}_errors")),
            0.0,
            "{client}"
        );
        let ratio = number(&results, &format!("{client}_ratio"));
        let lo = number(&results, &format!("{client}_ratio_min"));
        let hi = number(&results, &format!("{client}_ratio_max"));
        assert!(
            lo > 0.0 && lo <= ratio && ratio <= hi,
            "{client}: {lo} {ratio} {hi}"
        );
        number(&results, &format!("{client}_connections_per_1000"));
    }
    assert_eq!(number(&results, "reqwest_ratio"), 1.0);
    assert_eq!(number(&results, "requests"), 200.0);
    assert_eq!(number(&results, "in_flight"), 8.0);
    assert_eq!(number(&results, "rounds"), 1.0);
    match results.values.get("cmd") {
        Some(Value::Text(cmd)) => assert!(
            cmd.contains("--bin loopback -- --requests 200 --in-flight 8 --rounds 1"),
            "{cmd}"
        ),
        other => panic!("cmd: {other:?}"),
    }
    assert!(matches!(
        results.values.get("resilience_note"),
        Some(Value::Text(_))
    ));
}

#[test]
fn loopback_rejects_a_bad_argument() {
    let dir = TempDir::new("palisade-loopback-smoke-bad-argument");
    let out = Command::new(env!("CARGO_BIN_EXE_loopback"))
        .args(["--requests", "0"])
        .env("PALISADE_BENCH_RESULTS", &dir.0)
        .output()
        .expect("the loopback binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive integer"));
    assert!(!dir.0.join("loopback.json").exists());
}
