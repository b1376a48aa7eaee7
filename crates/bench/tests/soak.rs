//! The soak, shortened: `bench --soak` runs the real `onionstream` binary (as built for these
//! tests) under the Tor-like mixed load for 90 s with the server's socket timeouts accelerated
//! x10, and must pass its own criteria: every fd, thread and gauge back at its idle level, RSS
//! within its margin, p99 of `GET /` and of a chat post under load within 5x idle (or 50 ms),
//! no honest viewer skipped forward or left behind, no request of a well-behaved client failed,
//! and idle means idle: the server's CPU after the load and after each kind of change (title by
//! file and by `ctl`, source restart) back within a small margin of its idle figure.
//!
//! The `onionstream` binary belongs to another package, so `cargo test` does not build it for
//! this test: the test builds it first (same profile, same target folder) with the cargo that
//! runs the test.
//!
//! Owns: running the bench's soak as a test. Must never: reach beyond loopback, or assert a
//! wall-clock figure of its own (the bench's criteria are ratios to the same run's idle).

use std::path::{Path, PathBuf};
use std::process::Command;

/// `onionstream` of this test's profile, built (or found up to date) by
/// `cargo build -p onionstream --bin onionstream --locked` in the bench's own target folder:
/// `<target dir>/<profile>/onionstream`, beside `bench`.
fn onionstream_binary() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_bench"));
    let profile_dir = bench
        .parent()
        .expect("bench lives in <target dir>/<profile>/");
    let target_dir = profile_dir
        .parent()
        .expect("bench lives in <target dir>/<profile>/");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "-p",
            "onionstream",
            "--bin",
            "onionstream",
            "--locked",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    let out = cargo.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building onionstream failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let binary = profile_dir.join("onionstream");
    assert!(binary.is_file(), "no {} after the build", binary.display());
    binary
}

#[test]
fn a_server_under_tor_like_churn_returns_to_idle_and_keeps_honest_viewers_live() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--soak")
        .arg("--binary")
        .arg(onionstream_binary())
        .args(["--soak-secs", "90", "--soak-viewers", "60"])
        .args(["--soak-churn-per-sec", "3", "--soak-restart-secs", "30"])
        .args(["--soak-accel", "10", "--soak-idle-secs", "15"])
        .args(["--soak-warmup-secs", "20", "--soak-pages", "10"])
        .args(["--soak-live", "4", "--soak-honest", "3"])
        .output()
        .expect("the bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("soak summary: "))
        .unwrap_or_else(|| panic!("no summary line\n{report}"));
    assert!(
        summary.starts_with("soak summary: PASS: 60 viewers x "),
        "{summary}\n{report}"
    );
    assert!(out.status.success(), "exit status {}\n{report}", out.status);
    println!("{summary}");
    // The load really happened: viewers came and went, the source restarted, the server
    // dropped the stalled viewers and served the honest ones.
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix:?}\n{report}"))
            .to_owned()
    };
    let number_before = |l: &str, what: &str| -> f64 {
        let (head, _) = l
            .split_once(what)
            .unwrap_or_else(|| panic!("no {what:?} in {l}"));
        head.split_whitespace()
            .last()
            .and_then(|n| n.trim_start_matches('(').parse().ok())
            .unwrap_or_else(|| panic!("no number before {what:?} in {l}"))
    };
    let load = line("soak: load ");
    assert!(number_before(&load, "viewer visits") >= 100.0, "{load}");
    assert!(number_before(&load, "source restarts") >= 2.0, "{load}");
    assert!(number_before(&load, "title changes") >= 4.0, "{load}");
    let server = line("soak: server during the load: ");
    let stalled = server
        .split_once("stalled connections dropped ")
        .and_then(|(_, r)| r.split(',').next()?.trim().parse::<f64>().ok())
        .expect("stalled connections dropped");
    assert!(
        stalled >= 1.0,
        "viewers that stop reading are dropped: {server}"
    );
    let honest: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("soak: honest-"))
        .collect();
    // Idle means idle, checked after each kind of change (the summary's PASS says each held).
    let checks: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("soak: idle check after "))
        .collect();
    for what in [
        "the load",
        "a title written to title.txt",
        "a title set by ctl",
        "a source restart",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c.starts_with(&format!("soak: idle check after {what}"))),
            "no idle check after {what}\n{report}"
        );
    }
    assert_eq!(honest.len(), 3, "{report}");
    for h in honest {
        assert!(h.contains("skipped forward 0 times"), "{h}");
    }
}
