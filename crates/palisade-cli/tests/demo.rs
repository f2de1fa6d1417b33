//! `palisade demo` runs offline, exits 0 and prints its summary.

use std::process::Command;

fn palisade(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .expect("run the palisade binary")
}

#[test]
fn demo_exits_zero_and_prints_the_summary() {
    let out = palisade(&["demo", "--requests", "10", "--seed", "3"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("10 requests"), "{stdout}");
    assert!(stdout.contains("outcome summary"), "{stdout}");
    assert!(stdout.contains("upstream counters"), "{stdout}");
    // Ten requests round-robin over five routes: two attempts on each.
    for route in ["/stable", "/flaky", "/throttled", "/resetting", "/slow"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(route))
            .unwrap_or_else(|| panic!("no counter line for {route}:\n{stdout}"));
        let attempts: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(attempts, 2, "{line}");
    }
    // The first request to /flaky is a 503 and the first to /resetting a reset.
    assert!(
        stdout.contains("server_error (503), retry after 1 s"),
        "{stdout}"
    );
    assert!(stdout.contains("transport (reset)"), "{stdout}");
    assert!(stdout.contains("success"), "{stdout}");
}

#[test]
fn demo_rejects_zero_requests() {
    let out = palisade(&["demo", "--requests", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--requests"));
}
