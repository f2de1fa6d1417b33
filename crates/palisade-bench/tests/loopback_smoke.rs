//! The loopback benchmark runs end to end on a tiny workload and prints its
//! table with every client and no error, so it cannot rot between the runs
//! that produce the published figures.

use std::process::Command;

#[test]
fn loopback_prints_a_table_with_every_client_and_no_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_loopback"))
        .args(["--requests", "200", "--in-flight", "8", "--rounds", "1"])
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
    ] {
        assert!(
            rows.iter().any(|r| r.contains(client)),
            "no row for {client} in:\n{table}"
        );
    }
    for row in &rows {
        let errors = row.trim_end_matches('|').rsplit('|').next().unwrap().trim();
        assert_eq!(errors, "0", "errors in row {row}");
    }
    // The baseline's ratio to itself.
    assert!(rows[0].contains("| 1.000 |"), "{}", rows[0]);
}

#[test]
fn loopback_rejects_a_bad_argument() {
    let out = Command::new(env!("CARGO_BIN_EXE_loopback"))
        .args(["--requests", "0"])
        .output()
        .expect("the loopback binary runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("positive integer"));
}
