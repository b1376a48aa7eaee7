//! The soak, shortened: `bench --soak` runs the real `onionstream` binary (as built for these
//! tests) under the Tor-like mixed load for 90 s with the server's socket timeouts accelerated
//! x10, and must pass its own criteria: every fd, thread and gauge back at its idle level, RSS
//! within its margin, p99 of `GET /` and of a chat post under load within 5x idle (or 50 ms),
//! no honest viewer skipped forward or left behind, no request of a well-behaved client failed,
//! and idle means idle: the server's CPU after the load and after each kind of change (title by
//! file and by `ctl`, source restart) back within a small margin of its idle figure. The
//! test reads the bench's verdict and figures from its one JSON line (`soak json: {...}`).
//!
//! The `onionstream` binary belongs to another package, so `cargo test` does not build it for
//! this test: the test builds it first (same profile, same target folder) with the cargo that
//! runs the test.
//!
//! Owns: running the bench's soak as a test. Must never: reach beyond loopback, or assert a
//! wall-clock figure of its own (the bench's criteria are ratios to the same run's idle).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// `onionstream` of this test's profile, built (or found up to date) by
/// `cargo build -p onionstream --bin onionstream --features test-hooks --locked` in
/// the bench's own target folder: `<target dir>/<profile>/onionstream`, beside `bench`. With the
/// test hooks, as `cargo test` builds it for onionstream's own tests: both write the same file,
/// and a build without them would replace the binary those tests run with one that refuses
/// their flags.
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
            // Not `onionstream/test-hooks`: onionstream's dev-dependency on itself is also named
            // onionstream, and that spelling turns the feature on for it, not for the build.
            "--features",
            "test-hooks",
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
    let output = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("soak json: "))
        .unwrap_or_else(|| panic!("no `soak json:` line\n{output}"));
    let soak: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("the `soak json:` line does not parse ({e})\n{output}"));
    assert_eq!(
        soak["verdict"], "PASS",
        "failures: {}\n{output}",
        soak["failures"]
    );
    assert_eq!(soak["viewers"], 60, "{line}");
    assert!(out.status.success(), "exit status {}\n{output}", out.status);
    if let Some(summary) = stdout.lines().find(|l| l.starts_with("soak summary: ")) {
        println!("{summary}");
    }
    let number = |path: &[&str]| -> f64 {
        path.iter()
            .fold(&soak, |v, key| &v[key])
            .as_f64()
            .unwrap_or_else(|| panic!("no number at {path:?} in {line}"))
    };
    // The load really happened: viewers came and went, the source restarted, the title
    // changed, the server dropped the stalled viewers and served the honest ones.
    assert!(number(&["visits"]) >= 100.0, "{line}");
    assert!(
        number(&["clients", "source_restarts", "ok"]) >= 2.0,
        "{line}"
    );
    let title_changes = number(&["clients", "title_changes", "ok"])
        + number(&["clients", "title_changes", "failed"]);
    assert!(title_changes >= 4.0, "{line}");
    assert!(
        number(&["server", "stalled_connections_dropped"]) >= 1.0,
        "viewers that stop reading are dropped: {line}"
    );
    // Idle means idle, checked after each kind of change (the verdict says each held).
    let checks: Vec<&str> = soak["idle_cpu"]["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no idle checks in {line}"))
        .iter()
        .filter_map(|c| c["after"].as_str())
        .collect();
    for what in [
        "the load",
        "a title written to title.txt",
        "a title set by ctl",
        "a source restart",
    ] {
        assert!(
            checks.iter().any(|c| c.starts_with(what)),
            "no idle check after {what}: {checks:?}"
        );
    }
    let honest = soak["honest"]
        .as_array()
        .unwrap_or_else(|| panic!("no honest viewers in {line}"));
    assert_eq!(honest.len(), 3, "{line}");
    for h in honest {
        assert_eq!(h["skips"], 0, "{h} was skipped forward");
    }
}
