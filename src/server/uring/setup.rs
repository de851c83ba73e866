//! Ring construction with feature fallback, and the error that says how to enable io_uring.

use crate::server::ServeError;
use io_uring::IoUring;

/// Builds a ring with SINGLE_ISSUER + DEFER_TASKRUN (completions run only when this worker
/// asks, no cross-CPU task work), falling back to COOP_TASKRUN, then to plain, on kernels that
/// lack them. Must be called on the worker thread that will submit.
pub fn build_ring(entries: u32) -> Result<(IoUring, &'static str), ServeError> {
    type Configure = fn(&mut io_uring::Builder);
    let attempts: [(&'static str, Configure); 3] = [
        ("single_issuer+defer_taskrun", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("coop_taskrun", |b| {
            b.setup_coop_taskrun();
        }),
        ("plain", |_| {}),
    ];
    let mut last_err = None;
    for (name, configure) in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(entries * 4);
        configure(&mut builder);
        match builder.build(entries) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(unavailable(e)),
        }
    }
    let e = last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL));
    Err(unavailable(e))
}

/// The error `serve` exits with when the kernel refuses io_uring, with the fix for the cause
/// the error number names (not a list of guesses).
pub fn unavailable(source: std::io::Error) -> ServeError {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    ServeError::IoUringUnavailable {
        fix: fix_for(source.raw_os_error(), &disabled),
        source,
    }
}

/// What to do about io_uring_setup failing with `errno`, given the value of
/// `kernel.io_uring_disabled` (`unknown`: the file cannot be read).
fn fix_for(errno: Option<i32>, disabled: &str) -> String {
    match errno {
        Some(libc::ENOMEM) => "the kernel could not allocate a ring: raise the locked-memory \
             limit (`ulimit -l`, systemd `LimitMEMLOCK=`, `ringrelay-tune check` shows the \
             need) or free memory; every worker needs one ring"
            .into(),
        Some(libc::EPERM) if disabled != "0" && disabled != "unknown" => format!(
            "kernel.io_uring_disabled is {disabled}: `sysctl -w kernel.io_uring_disabled=0` \
             (or `ringrelay-tune apply --only kernel.io_uring_disabled`)"
        ),
        Some(libc::EPERM) | Some(libc::ENOSYS) if disabled == "0" => "kernel.io_uring_disabled \
             is 0, so a seccomp filter denies the system call: allow io_uring_setup, \
             io_uring_enter and io_uring_register (docker/podman `--security-opt seccomp=...`, \
             systemd `SystemCallFilter=`)"
            .into(),
        Some(libc::ENOSYS) => "this kernel has no io_uring (ringrelay needs Linux 6.0 or \
             newer), or a seccomp filter hides it"
            .into(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => "no file descriptor left for the ring: \
             raise the open-files limit (`ulimit -n`, systemd `LimitNOFILE=`)"
            .into(),
        _ => format!(
            "unexpected error from io_uring_setup (kernel.io_uring_disabled is {disabled}); \
             ringrelay needs Linux 6.0 or newer"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::fix_for;

    #[test]
    fn each_cause_gets_its_own_fix_and_never_a_sysctl_that_is_already_right() {
        assert!(fix_for(Some(libc::ENOMEM), "0").contains("locked-memory"));
        let sysctl = fix_for(Some(libc::EPERM), "2");
        assert!(sysctl.contains("io_uring_disabled=0"), "{sysctl}");
        let seccomp = fix_for(Some(libc::EPERM), "0");
        assert!(seccomp.contains("seccomp"), "{seccomp}");
        assert!(!seccomp.contains("sysctl -w"), "{seccomp}");
        assert!(fix_for(Some(libc::ENOSYS), "unknown").contains("Linux 6.0"));
        assert!(fix_for(Some(libc::EMFILE), "0").contains("open-files"));
    }
}
