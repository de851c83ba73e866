//! The end of a close (a lingering close): once a closing connection's final frames are all
//! with the kernel, its write side is shut and the socket stays open, reading and discarding
//! what the peer still sends, until the peer has what was sent. A child module of `worker`.
//!
//! Why: closing a socket whose receive queue holds unread bytes makes the kernel send a reset
//! at once, and a reset discards everything of ours the peer has not yet received. A client
//! refused at a limit while it is still writing (a flood) and reading slowly lost its ERROR
//! and CLOSE that way, with the reason for the close.
//!
//! The socket is closed at the first of: the peer acknowledged every byte and the FIN (the
//! kernel's send queue is empty: it is all in the peer's receive queue, which a reset does not
//! discard on Linux; a peer still writing then gets a reset, having read everything); the
//! peer's own FIN or an error; the first timer tick `close_linger_ms` after the close was
//! decided (as for a close whose final frames are still unsent). Acknowledgements
//! raise no event, so lingering sockets are polled every [`LINGER_POLL_MS`], one `ioctl` each,
//! while there are any. Until then the connection keeps its slot (it counts in
//! `connections_open` and against `connections_per_worker_max`). Closes without a final frame
//! (the peer gone, a slow TLS consumer, data links) and Unix sockets (which lose nothing at
//! close) do not linger. What the peer sends meanwhile is read at its pace and discarded, from
//! the moment the close is decided: no more than a connection that stays open may send.

use super::super::conn::ConnState;
use super::super::stats::bump;
use super::Worker;
use std::os::fd::RawFd;

/// How often lingering sockets are asked whether the peer has acknowledged everything (at
/// most; a round that comes sooner for other work does not ask again). 5 ms: a closed client
/// holds its slot little longer than the round trip that acknowledges its last bytes, and a
/// thousand sockets closing at once cost a thousand `ioctl`s per 5 ms, for at most
/// `close_linger_ms`.
pub(super) const LINGER_POLL_MS: u64 = 5;

impl Worker {
    /// The connection's final frames are all with the kernel: shuts its write side (the FIN
    /// follows them) and closes it once the peer has them.
    pub(super) fn begin_linger(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        debug_assert_eq!(c.state, ConnState::Closing);
        c.state = ConnState::Lingering;
        // SAFETY: `fd` is an open socket owned by this slot; shutdown has no memory effects.
        unsafe {
            libc::shutdown(c.fd, libc::SHUT_WR);
        }
        // A Unix socket (a local client of an embedded node) loses nothing at close: its
        // peer reads what was sent either way.
        if c.peer_eof || is_unix_socket(c.fd) || unacknowledged_bytes(c.fd) == Some(0) {
            return self.shutdown_conn(slot);
        }
        self.lingering.push((slot, c.generation));
    }

    /// Closes the lingering sockets whose peer has everything; at most once per
    /// [`LINGER_POLL_MS`].
    pub(super) fn linger_round(&mut self) {
        if self.now_ms < self.linger_poll_at_ms {
            return;
        }
        self.linger_poll_at_ms = self.now_ms + LINGER_POLL_MS;
        let mut i = 0;
        while i < self.lingering.len() {
            let (slot, generation) = self.lingering[i];
            // The peer's FIN shuts it down at once (`peer_gone`), the tick at its deadline, like
            // any closing connection (`linger_ran_out`).
            let acknowledged = match self.slab.get_live(slot, generation) {
                Some(c) if c.state == ConnState::Lingering => unacknowledged_bytes(c.fd) == Some(0),
                // Already shut down (the peer's FIN, the tick, stopping).
                _ => {
                    self.lingering.swap_remove(i);
                    continue;
                }
            };
            if acknowledged {
                self.lingering.swap_remove(i);
                self.shutdown_conn(slot);
            } else {
                i += 1;
            }
        }
    }

    /// A closing connection's `close_linger_ms` is over before its peer had everything (or
    /// closed): it is shut down now, and counted.
    pub(super) fn linger_ran_out(&mut self, slot: u32) {
        bump(
            &self.shared.stats[self.index as usize].close_linger_timeouts,
            1,
        );
        self.shutdown_conn(slot);
    }

    /// How long the loop may wait for events while sockets linger.
    pub(super) fn linger_wait_ms(&self) -> Option<u64> {
        (!self.lingering.is_empty()).then_some(LINGER_POLL_MS)
    }
}

/// Bytes sent on TCP socket `fd` that its peer has not acknowledged, FIN included (SIOCOUTQ,
/// which is TIOCOUTQ's number); `None` if the kernel cannot say.
fn unacknowledged_bytes(fd: RawFd) -> Option<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one c_int through the pointer, which points to a live c_int;
    // `fd` is an open socket owned by the caller's slot.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    (rc == 0).then_some(queued.max(0) as usize)
}

/// Whether socket `fd` is a Unix socket (SO_DOMAIN); false if the kernel cannot say.
fn is_unix_socket(fd: RawFd) -> bool {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_DOMAIN writes at most `len` bytes (one c_int) through the pointer, which
    // points to a live c_int, and updates `len`, a live socklen_t; `fd` is an open socket
    // owned by the caller's slot.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && domain == libc::AF_UNIX
}
