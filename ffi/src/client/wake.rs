//! An eventfd used as a level signal: readable while set. The client's driver thread sleeps in
//! `poll` on one (so a send, a flush or a close can wake it); queue mode hands another to the
//! host as `ringrelay_client_fd()`, readable while events wait.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug)]
pub(crate) struct WakeFd {
    fd: OwnedFd,
}

impl WakeFd {
    pub(crate) fn new() -> io::Result<WakeFd> {
        // SAFETY: eventfd has no memory arguments; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(WakeFd { fd })
    }

    /// Makes the descriptor readable (setting it twice is one signal).
    pub(crate) fn set(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. It cannot block
        // (EFD_NONBLOCK) and cannot fail short of a counter at u64::MAX - 1, which `clear`
        // resets long before.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Makes the descriptor unreadable again.
    pub(crate) fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd; EAGAIN
        // (already clear) is the only other outcome and needs nothing.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until `socket` (when given) or `wake` is readable, or `timeout_ms` passes (-1:
/// without end). Returns whether `wake` was readable.
pub(crate) fn poll_two(socket: Option<RawFd>, wake: &WakeFd, timeout_ms: i32) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: wake.raw(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: socket.unwrap_or(-1),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two pollfd for the length of the call; a negative fd
    // is ignored by poll. EINTR or an error just ends this wait: the caller loops.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    n > 0 && fds[0].revents != 0
}
