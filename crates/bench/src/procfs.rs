//! What /proc says about a process (the server's, or the bench's own): CPU ticks and RSS,
//! the share of a core used between two readings, and the filesystem a path lives on.
//!
//! Owns: [`proc_usage`], [`cpu_mark`] / [`cpu_share_between`], [`fs_type`]. Must never:
//! write to /proc, or guess a figure it could not read (`None`, NaN or "unknown" instead).

use std::time::Instant;

/// CPU ticks (user+system) and RSS (KiB) of a process.
pub fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((ticks, rss))
}

/// CPU time in /proc/PID/stat is counted in these ticks per second.
pub fn clock_ticks_per_sec() -> f64 {
    100.0 // Linux USER_HZ
}

/// The filesystem type holding `path` (from /proc/self/mounts), for the report.
pub fn fs_type(path: &std::path::Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[2].to_owned()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, t)| t)
        .unwrap_or_else(|| "unknown".into())
}

/// The share of one core the process `pid` used between two readings of [`proc_usage`]
/// (NaN when /proc could not be read).
pub fn cpu_share_between(pid: u32, start: (Option<u64>, Instant)) -> f64 {
    let now = (proc_usage(pid).map(|u| u.0), Instant::now());
    match (start.0, now.0) {
        (Some(a), Some(b)) => {
            b.saturating_sub(a) as f64
                / clock_ticks_per_sec()
                / (now.1 - start.1).as_secs_f64().max(1e-9)
        }
        _ => f64::NAN,
    }
}

/// CPU ticks of `pid` now, and when, for [`cpu_share_between`].
pub fn cpu_mark(pid: u32) -> (Option<u64>, Instant) {
    (proc_usage(pid).map(|u| u.0), Instant::now())
}
