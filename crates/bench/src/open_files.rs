//! This process's limit on open files, raised before a phase opens thousands of sockets
//! (`--fanout`, the soak); the server, started afterwards, inherits it.
//!
//! Owns: [`raise_open_files`]. Must never: raise the hard limit (that needs privileges), or
//! lower a limit.

/// The soft and hard limits on open files of this process; the soft one is first raised to
/// the hard one when it is below `need` (the server, started later, inherits it).
pub fn raise_open_files(need: u64) -> Option<(u64, u64)> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `l` is a valid `struct rlimit`, writable for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 {
        return None;
    }
    if l.rlim_cur < need && l.rlim_cur < l.rlim_max {
        // An unlimited hard limit cannot be the soft one (the kernel caps it at nr_open).
        for cur in [l.rlim_max, need] {
            let raised = libc::rlimit {
                rlim_cur: cur,
                rlim_max: l.rlim_max,
            };
            // SAFETY: `raised` is a valid `struct rlimit`, read for the whole call.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                l.rlim_cur = cur;
                break;
            }
        }
    }
    Some((l.rlim_cur, l.rlim_max))
}
