//! io_uring setup with feature fallback, and completion tags.

use super::ServeError;
use io_uring::IoUring;

/// Submission queue entries per worker ring; completions get four times as many slots.
pub const RING_ENTRIES: u32 = 4096;

pub const OP_ACCEPT: u64 = 1;
pub const OP_RECV: u64 = 2;
pub const OP_SEND: u64 = 3;
pub const OP_TIMER: u64 = 4;
pub const OP_WAKE: u64 = 5;
/// Plain recv of the rest of a large frame straight into its own buffer.
pub const OP_RECV_DIRECT: u64 = 6;
/// Cancellation of a multishot recv (its result needs no handling).
pub const OP_CANCEL: u64 = 7;

/// user_data layout: op (8 bits) | slot (24 bits) | generation (32 bits).
#[inline]
pub fn tag(op: u64, slot: u32, generation: u32) -> u64 {
    debug_assert!(slot < (1 << 24));
    (op << 56) | ((slot as u64 & 0xff_ffff) << 32) | generation as u64
}

#[inline]
pub fn untag(user_data: u64) -> (u64, u32, u32) {
    (
        user_data >> 56,
        ((user_data >> 32) & 0xff_ffff) as u32,
        user_data as u32,
    )
}

/// Builds a ring with SINGLE_ISSUER + DEFER_TASKRUN (completions run only when this worker
/// asks, no cross-CPU task work), falling back to COOP_TASKRUN, then to plain, on kernels that
/// lack them. Must be called on the worker thread that will submit.
pub fn build_ring() -> Result<(IoUring, &'static str), ServeError> {
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
        builder.setup_cqsize(RING_ENTRIES * 4);
        configure(&mut builder);
        match builder.build(RING_ENTRIES) {
            Ok(ring) => return Ok((ring, name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last_err = Some(e),
            Err(e) => return Err(unavailable(&e)),
        }
    }
    let e = last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL));
    Err(unavailable(&e))
}

/// The error `serve` exits with when the kernel refuses io_uring, with how to fix it.
pub fn unavailable(e: &std::io::Error) -> ServeError {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    ServeError(format!(
        "io_uring is unavailable: io_uring_setup failed ({e}); kernel.io_uring_disabled = {disabled}. \
         ringrelay needs io_uring (Linux 6.0 or newer). Fix: `sysctl -w kernel.io_uring_disabled=0` \
         (or `tuning/ringrelay-tune apply`), and if running in a container or under systemd, allow the \
         io_uring_setup, io_uring_enter and io_uring_register system calls in its seccomp filter"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_roundtrip() {
        assert_eq!(
            untag(tag(OP_SEND, 0xab_cdef, u32::MAX)),
            (OP_SEND, 0xab_cdef, u32::MAX)
        );
        assert_eq!(untag(tag(OP_ACCEPT, 0, 0)), (OP_ACCEPT, 0, 0));
    }
}
