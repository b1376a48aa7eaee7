//! Handing memory that crowds of connections freed back to the system.
//!
//! Owns: the periodic `malloc_trim` ([`spawn_trimmer`], [`TRIM_INTERVAL`]). glibc keeps the
//! small blocks that thousands of closed connections freed: they sit between live ones, where
//! its automatic trim (top of the heap only) never looks, so without this the resident size
//! after a crowd stays near its peak and a slow leak could hide behind it.
//! Must never: run the call on a runtime worker (it walks every arena: `spawn_blocking`), or
//! be compiled for another C library (musl and macOS have no `malloc_trim`; there it is a no-op).

#[cfg(all(target_os = "linux", target_env = "gnu"))]
use std::time::Duration;

/// How often freed memory is handed back. The call takes about a millisecond on a
/// few-dozen-MiB heap, off the runtime's threads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Starts the trimmer under `shutdown` (glibc only).
pub fn spawn_trimmer(shutdown: &crate::shutdown::Shutdown) {
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = shutdown;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    shutdown.spawn(async {
        let mut tick = tokio::time::interval(TRIM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // SAFETY: malloc_trim only walks and madvises glibc's own free lists; it takes no
            // pointers from us and is thread-safe (it locks each arena).
            let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
        }
    });
}
