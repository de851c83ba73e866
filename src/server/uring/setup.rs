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

/// The error `serve` exits with when the kernel refuses io_uring, with how to fix it.
pub fn unavailable(source: std::io::Error) -> ServeError {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let fix = if disabled == "0" || disabled == "unknown" {
        "if running in a container or under systemd, allow the io_uring_setup, io_uring_enter \
         and io_uring_register system calls in its seccomp filter; check the memory-lock limit \
         (ulimit -l) and the number of rings (one per worker)"
    } else {
        "`sysctl -w kernel.io_uring_disabled=0` (or `tuning/ringrelay-tune apply`); in a \
         container or under systemd, also allow the io_uring system calls in its seccomp filter"
    };
    ServeError::IoUringUnavailable {
        source,
        disabled,
        fix,
    }
}
