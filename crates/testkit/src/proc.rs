//! Processes as /proc shows them, and signals to them: whether one lives, its children and
//! descendants, the CPU time it used; `kill` by pid.
//!
//! Owns: those probes and signals. Must never: signal a process the test (or a server the
//! test started) did not start, or write to /proc.

use std::time::{Duration, Instant};

/// One entry of /proc: pid, parent pid, command name, state letter (`R`, `S`, `Z`, ...).
struct Stat {
    pid: u32,
    ppid: u32,
    comm: String,
    state: char,
}

/// `/proc/PID/stat`, parsed (the command name may hold spaces and parentheses: the fields
/// after it start after its last `)`).
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let mut rest = text.get(close + 2..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(Stat {
        pid,
        ppid,
        comm: text[open + 1..close].to_string(),
        state,
    })
}

/// Every process /proc lists now.
fn processes() -> Vec<Stat> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .filter_map(stat)
        .collect()
}

/// Whether process `pid` exists and is not a zombie (nor dead).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// Waits until `pid` is gone (its files, and so its locks, released), polling every 20 ms;
/// how long that took. Panics after `within`.
pub async fn wait_gone(pid: u32, within: Duration) -> Duration {
    let start = Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < within, "{pid} lives on after {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Pids of the children of `parent` whose command name is `name`.
pub fn child_pids(parent: u32, name: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == parent && p.comm == name)
        .map(|p| p.pid)
        .collect()
}

/// Pids of `root` and everything below it, deepest first (so that killing them in order
/// leaves no orphan to be adopted).
pub fn descendants(root: u32) -> Vec<u32> {
    let all = processes();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(all.iter().filter(|s| s.ppid == p).map(|s| s.pid));
        i += 1;
    }
    out.reverse();
    out
}

/// Sends `signal` (e.g. "STOP", "KILL") to `pid`; panics if `kill` fails.
pub fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{signal} {pid}");
}

/// `kill -9 PID`, whatever comes of it (the process may be gone already).
pub fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

/// CPU time (user + system) the process `pid` has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name (which may hold spaces, so split after its ')'):
    // state is field 3, utime 14 and stime 15 (1-based), in clock ticks.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_sec() as f64)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless told).
fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The share of one core the process `pid` used over the next `window` (1.0 = a whole core).
pub async fn cpu_share(pid: u32, window: Duration) -> f64 {
    let (cpu0, t0) = (cpu_time(pid), Instant::now());
    tokio::time::sleep(window).await;
    let (cpu1, t1) = (cpu_time(pid), Instant::now());
    (cpu1 - cpu0).as_secs_f64() / (t1 - t0).as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_is_found_alive_then_gone() {
        let me = std::process::id();
        assert!(alive(me));
        assert_eq!(descendants(me).last(), Some(&me));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(child_pids(me, "sleep").contains(&child.id()));
        assert!(descendants(me).contains(&child.id()));
        assert!(alive(child.id()));
        kill(child.id());
        let _ = child.wait();
        assert!(!alive(child.id()));
        let _ = cpu_time(me);
    }
}
