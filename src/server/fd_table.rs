//! The process's descriptor table, grown to its working size at startup.
//!
//! The kernel grows a process's descriptor table by doubling when a new descriptor does not
//! fit, and in a process with more than one thread every growth waits for an RCU grace period
//! (`expand_fdtable` calls `synchronize_rcu`). A worker accepting a burst of connections
//! crossed 128, 256, 512, 1024, ... descriptors and slept that long each time, in the middle of
//! the burst, with every client on it waiting (measured on a 2-vCPU VM: 17 to 23 ms per growth,
//! good clients' round trips of 60 to 140 ms during a storm of 1,000 connections). The table
//! never shrinks, so growing it once at startup, to the descriptors the relay may hold, takes
//! the wait out of the accept path. It costs the kernel 8 bytes per descriptor (counted in
//! [`crate::memory_budget::CONNECTION_STATE_BYTES`]).

use std::os::fd::RawFd;

/// Grows the descriptor table so that descriptors below `fds` fit without growing it again.
/// `open` is any descriptor the process holds (it is duplicated to the top slot and the copy
/// closed at once). Best effort: a failure (the open-files limit is lower, say) is logged and
/// leaves the table to grow on demand as before.
pub fn reserve(fds: u64, open: RawFd) {
    // Tables up to 64 descriptors are built into the process; nothing to grow.
    if fds <= 64 {
        return;
    }
    let top = libc::c_int::try_from(fds - 1).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_DUPFD only creates a new descriptor (the lowest free one >= `top`) for an open
    // file; it touches no memory of ours.
    let copy = unsafe { libc::fcntl(open, libc::F_DUPFD_CLOEXEC, top) };
    if copy < 0 {
        tracing::debug!(
            fds,
            "descriptor table not grown at startup: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: `copy` was created just above, is owned by nobody else and is closed once.
    unsafe {
        libc::close(copy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FDSize` of /proc/self/status: the descriptors the table holds now.
    fn table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("FDSize in /proc/self/status")
    }

    #[test]
    fn reserve_grows_the_table_to_the_count_asked_and_leaves_no_descriptor_open() {
        let soft = super::super::host_probe::ProcessLimits::current()
            .nofile
            .map_or(1024, |l| l.soft);
        let fds = soft.min(1000);
        let file = std::fs::File::open("/proc/self/status").unwrap();
        reserve(fds, std::os::fd::AsRawFd::as_raw_fd(&file));
        assert!(table_size() >= fds, "table of {} for {fds}", table_size());
        // The copy made at the top of the table is closed again (descriptors are handed out
        // lowest first, so nothing else of this process's sits up there).
        let top = std::path::PathBuf::from(format!("/proc/self/fd/{}", fds - 1));
        assert!(!top.exists(), "{} left open", top.display());
    }
}
