//! `palisade demo` runs offline, exits 0 and shows each scenario's table.

use std::process::{Command, Output};

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .expect("run the palisade binary")
}

#[track_caller]
fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The numbers of the table row starting with `label`:
/// requests, success, attempts at the upstream.
#[track_caller]
fn row(stdout: &str, label: &str) -> [u64; 3] {
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{stdout}"));
    let numbers: Vec<u64> = line[line.find(label).unwrap() + label.len()..]
        .split_whitespace()
        .take(3)
        .map(|n| n.parse().unwrap_or_else(|_| panic!("bad row: {line}")))
        .collect();
    [numbers[0], numbers[1], numbers[2]]
}

#[test]
fn demo_runs_every_scenario_and_exits_zero() {
    let out = palisade(&["demo", "--seed", "3"]);
    let stdout = succeeded(&out);
    for (i, name) in ["flaky", "outage", "rate-limited", "overload", "download"]
        .iter()
        .enumerate()
    {
        assert!(
            stdout.contains(&format!("[{}/5] {name}:", i + 1)),
            "{name} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("summary"), "{stdout}");

    // Retries recover every flaky request; the scripts make it 2 attempts
    // per request on average.
    assert_eq!(row(&stdout, "flaky  "), [30, 30, 60]);
    // The breaker keeps the upstream's attempts during the outage far below
    // what retries alone would send (4 per request), and lets traffic back.
    let [requests, success, attempts] = row(&stdout, "outage (down)");
    assert_eq!((requests, success), (40, 0));
    assert!(attempts < 40, "{attempts} attempts during the outage");
    assert_eq!(row(&stdout, "outage (back up)"), [10, 10, 10]);
    // The 429 is retried once after its Retry-After; everything succeeds.
    assert_eq!(row(&stdout, "rate-limited"), [30, 30, 31]);
    // The adaptive limit does better than a fixed limit above capacity.
    let fixed = row(&stdout, "overload (fixed 64)");
    let adaptive = row(&stdout, "overload (adaptive)");
    assert!(
        adaptive[1] > fixed[1],
        "fixed {fixed:?}, adaptive {adaptive:?}"
    );
    assert!(stdout.contains("peak RSS"), "{stdout}");
    assert_eq!(row(&stdout, "download  "), [1, 1, 1]);
    // No progress bar when stderr is not a terminal.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_runs_one_scenario_at_a_time() {
    for name in ["flaky", "outage", "rate-limited", "overload", "download"] {
        let out = palisade(&["demo", "--scenario", name, "--no-progress"]);
        let stdout = succeeded(&out);
        assert!(stdout.contains(&format!("[1/1] {name}:")), "{stdout}");
        assert!(stdout.contains("attempts upstream"), "{stdout}");
        // Only that scenario ran.
        assert!(!stdout.contains("[2/"), "{stdout}");
        assert!(!stdout.contains("\nsummary"), "{stdout}");
    }
}

#[test]
fn an_unknown_scenario_is_a_usage_error() {
    let out = palisade(&["demo", "--scenario", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--scenario"), "{stderr}");
    assert!(
        stderr.contains("rate-limited"),
        "lists the scenarios: {stderr}"
    );
}
