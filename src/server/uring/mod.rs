//! The io_uring ownership layer: one [`Uring`] per worker owns the ring, the provided-buffer
//! ring, the timer and wake-up buffers and every in-flight operation with the memory it points
//! into. The rest of the server never builds a submission entry.
//!
//! The rule it keeps, by construction: **a buffer handed to the kernel stays alive and unmoved
//! until its completion.**
//! - Send bytes, gathered segments with their iovecs and msghdr, and direct-receive buffers are
//!   moved into the slot's entry of the operation table at submission and handed back by value
//!   in the [`Completion`] ([`ops`]).
//! - Receive-ring bytes are read only through a [`RecvGuard`]; a buffer goes back to the kernel
//!   only once the kernel has let it go and its last guard is dropped ([`recv_pool`]).
//! - The timer and wake-up buffers are boxed fields of the `Uring` itself.
//! - Every submission counts as in flight until its last completion (a multishot operation
//!   until the completion without `IORING_CQE_F_MORE`). [`Uring::cancel_all_and_drain`] stops
//!   new submissions, cancels everything (IORING_OP_ASYNC_CANCEL with
//!   IORING_ASYNC_CANCEL_ANY) and reaps completions until nothing is in flight. If the kernel
//!   has not finished by the deadline, dropping the `Uring` **leaks** the ring and every buffer
//!   (counted in [`leaked_rings`]) instead of freeing memory the kernel may still write.

mod ops;
mod recv_fill;
mod recv_pool;
mod setup;

pub use ops::Outgoing;
pub use recv_pool::RecvGuard;

use super::ServeError;
use bytes::BytesMut;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use ops::{Gather, OpTable, RecvOp, SendOp};
use recv_pool::RecvPool;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Submission queue entries per worker ring; completions get four times as many slots.
pub const RING_ENTRIES: u32 = 4096;
/// Most iovecs one gathered send carries (the rest goes in the next send).
pub const IOV_PER_SEND_MAX: usize = 64;
/// Buffer group id of the provided-buffer ring.
const BUF_GROUP_ID: u16 = 0;
/// Buffer group id of the TLS connections' ring (larger buffers, see [`RecvPools`]).
const TLS_BUF_GROUP_ID: u16 = 1;

const OP_ACCEPT: u64 = 1;
const OP_RECV: u64 = 2;
const OP_SEND: u64 = 3;
const OP_TIMER: u64 = 4;
const OP_WAKE: u64 = 5;
const OP_RECV_EXACT: u64 = 6;
const OP_CANCEL: u64 = 7;
const OP_CANCEL_ALL: u64 = 8;
/// A multishot receive into the TLS ring: the op names the pool its buffers come from.
const OP_RECV_TLS: u64 = 9;

/// Rings dropped with operations still in flight, whose memory was leaked on purpose.
static LEAKED_RINGS: AtomicUsize = AtomicUsize::new(0);

/// How many worker rings were leaked because the kernel did not finish their operations in
/// time at shutdown (0 in a healthy process; tests assert it).
pub fn leaked_rings() -> usize {
    LEAKED_RINGS.load(Ordering::Relaxed)
}

/// user_data layout: op (8 bits) | slot (24 bits) | generation (32 bits).
#[inline]
/// The buffer group and the op of a multishot receive into the TLS ring or the other one.
fn multishot_group(tls: bool) -> (u16, u64) {
    if tls {
        (TLS_BUF_GROUP_ID, OP_RECV_TLS)
    } else {
        (BUF_GROUP_ID, OP_RECV)
    }
}

fn tag(op: u64, slot: u32, generation: u32) -> u64 {
    debug_assert!(slot < (1 << 24));
    (op << 56) | ((u64::from(slot) & 0xff_ffff) << 32) | u64::from(generation)
}

#[inline]
fn untag(user_data: u64) -> (u64, u32, u32) {
    (
        user_data >> 56,
        ((user_data >> 32) & 0xff_ffff) as u32,
        user_data as u32,
    )
}

/// One completion, with whatever memory its operation owned handed back.
pub enum Completion {
    Accept {
        /// Which of the worker's listeners (the value given to `accept_multishot`).
        listener: u32,
        result: i32,
        more: bool,
    },
    /// A multishot receive: `data` holds the bytes when `result > 0`.
    Recv {
        slot: u32,
        generation: u32,
        result: i32,
        more: bool,
        data: Option<RecvGuard>,
    },
    /// A direct receive: `buf` has the received bytes appended.
    RecvExact {
        slot: u32,
        generation: u32,
        result: i32,
        buf: BytesMut,
    },
    /// A send: `outgoing` is what was handed over, as it was; `result` (when not negative)
    /// says how many of its bytes went out, for the caller to [`Outgoing::consume`].
    Send {
        slot: u32,
        generation: u32,
        result: i32,
        outgoing: Outgoing,
    },
    Timer,
    Wake,
}

/// The timer and wake-up buffers the kernel reads and writes (boxed: stable addresses), and
/// whether an operation on each is in flight (then it is not rewritten or re-armed).
struct FixedBufs {
    timer: types::Timespec,
    wake: u64,
    timer_armed: bool,
    wake_armed: bool,
}

pub struct Uring {
    // ManuallyDrop: `Drop` frees these (ring first, so the kernel lets go of the buffer ring
    // before its memory goes) only when nothing is in flight, and leaks them otherwise.
    ring: ManuallyDrop<IoUring>,
    pools: ManuallyDrop<RecvPools>,
    fixed: ManuallyDrop<Box<FixedBufs>>,
    ops: ManuallyDrop<OpTable>,
    /// Reused iovec/msghdr boxes of gathered sends (boxed: the kernel holds the msghdr's
    /// address, which must not move when a send's entry moves).
    #[allow(clippy::vec_box)]
    spare_gathers: Vec<Box<Gather>>,
    /// Submissions whose last completion has not been reaped.
    in_flight: usize,
    /// Shutdown began: nothing new is submitted.
    closing: bool,
    mode: &'static str,
}

/// The receive buffer rings: every connection's, and with TLS a second one of larger buffers
/// for TLS connections (a whole TLS record is 16,406 bytes: in 16 KiB buffers every full record
/// would be cut in two and copied once more to be opened).
struct RecvPools {
    plain: Rc<RecvPool>,
    tls: Option<Rc<RecvPool>>,
}

/// How many receive buffers of what size a ring registers: `(count, bytes)`.
pub type RecvBuffers = (usize, usize);

impl Uring {
    /// Builds the ring on the calling thread (which must be the one that submits) and registers
    /// `recv.0` receive buffers of `recv.1` bytes, and `tls_recv`'s for TLS connections.
    pub fn new(recv: RecvBuffers, tls_recv: Option<RecvBuffers>) -> Result<Uring, ServeError> {
        let (ring, mode) = setup::build_ring(RING_ENTRIES)?;
        // The plain ring is consumed incrementally where the kernel can (see `recv_pool.rs`):
        // its large buffers then take one busy connection's big reads and many connections'
        // small ones alike. The TLS ring is not: a TLS receive opens whole records in place,
        // and its buffers are sized to hold one.
        let pool = |(count, bytes): RecvBuffers, group, incremental| {
            let pool = RecvPool::new(count, bytes, group)
                .map_err(|e| ServeError::Resource("allocate the receive buffers", e))?;
            pool.register(&ring.submitter(), incremental)
                .map_err(|e| ServeError::Resource("register the buffer ring (Linux 5.19+)", e))?;
            Ok::<_, ServeError>(pool)
        };
        let pools = RecvPools {
            plain: pool(recv, BUF_GROUP_ID, true)?,
            tls: tls_recv
                .map(|r| pool(r, TLS_BUF_GROUP_ID, false))
                .transpose()?,
        };
        Ok(Uring {
            ring: ManuallyDrop::new(ring),
            pools: ManuallyDrop::new(pools),
            fixed: ManuallyDrop::new(Box::new(FixedBufs {
                timer: types::Timespec::new(),
                wake: 0,
                timer_armed: false,
                wake_armed: false,
            })),
            ops: ManuallyDrop::new(OpTable::default()),
            spare_gathers: Vec::new(),
            in_flight: 0,
            closing: false,
            mode,
        })
    }

    /// Which ring setup the kernel accepted (for the startup log).
    pub fn mode(&self) -> &'static str {
        self.mode
    }

    /// Whether the kernel consumes the plain receive ring incrementally (Linux 6.12+).
    pub fn recv_incremental(&self) -> bool {
        self.pools.plain.is_incremental()
    }

    /// Operations submitted whose last completion has not been reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether no receive or send of `slot` is in flight (its slot may then be reused; a
    /// cancellation in flight points at no memory and names the old generation).
    pub fn slot_idle(&self, slot: u32) -> bool {
        self.ops.is_idle(slot)
    }

    /// Queues `entry`; the caller has made sure every pointer in it stays valid until its
    /// completion (the memory is owned by `self` or by the operation table).
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry built in this module points only at memory owned by this
            // `Uring` (the fixed buffers, the receive pool, or the operation table entry that
            // holds the buffer until the completion hands it back), which is freed only when
            // nothing is in flight and leaked otherwise.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return;
            }
            // Submission queue full: hand what we have to the kernel and retry (receives among
            // them take buffers at once, so the rings are topped up first).
            self.refill_recv_rings();
            if let Err(e) = self.ring.submit() {
                tracing::warn!("io_uring submit failed while the queue was full: {e}");
            }
        }
    }

    /// Arms a multishot accept on `listener`; its completions carry `which`.
    pub fn accept_multishot(&mut self, listener: RawFd, which: u32) -> bool {
        if self.closing {
            return false;
        }
        let e = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(tag(OP_ACCEPT, which, 0));
        self.push(e);
        true
    }

    /// Arms an 8-byte read of the wake-up eventfd into the ring's own buffer.
    pub fn read_wake(&mut self, eventfd: RawFd) -> bool {
        if self.closing || self.fixed.wake_armed {
            return false;
        }
        self.fixed.wake_armed = true;
        let buf: *mut u64 = &mut self.fixed.wake;
        let e = opcode::Read::new(types::Fd(eventfd), buf.cast(), 8)
            .build()
            .user_data(tag(OP_WAKE, 0, 0));
        self.push(e);
        true
    }

    /// Arms the tick timer (one completion after `interval_ms`).
    pub fn timeout(&mut self, interval_ms: u64) -> bool {
        if self.closing || self.fixed.timer_armed {
            return false;
        }
        self.fixed.timer_armed = true;
        self.fixed.timer = types::Timespec::new()
            .sec(interval_ms / 1000)
            .nsec(((interval_ms % 1000) * 1_000_000) as u32);
        let ts: *const types::Timespec = &self.fixed.timer;
        let e = opcode::Timeout::new(ts)
            .build()
            .user_data(tag(OP_TIMER, 0, 0));
        self.push(e);
        true
    }

    /// Arms a multishot receive into the buffer ring for `slot`: the TLS ring when `tls` and
    /// the ring has one.
    pub fn recv_multishot(&mut self, slot: u32, generation: u32, fd: RawFd, tls: bool) -> bool {
        let ops = self.ops.slot_mut(slot);
        if self.closing || !matches!(ops.recv, RecvOp::Idle) {
            debug_assert!(
                self.closing,
                "a receive is already in flight for slot {slot}"
            );
            return false;
        }
        let tls = tls && self.pools.tls.is_some();
        ops.recv = RecvOp::Multishot { tls };
        ops.generation = generation;
        let (group, op) = multishot_group(tls);
        let e = opcode::RecvMulti::new(types::Fd(fd), group)
            .build()
            .user_data(tag(op, slot, generation));
        self.push(e);
        true
    }

    /// Receives the rest of a frame straight into `buf` until it holds `want_bytes`
    /// (MSG_WAITALL: the kernel retries internally, so a large frame costs one completion).
    /// Gives `buf` back when it cannot be submitted.
    pub fn recv_exact(
        &mut self,
        slot: u32,
        generation: u32,
        fd: RawFd,
        mut buf: BytesMut,
        want_bytes: usize,
    ) -> Result<(), BytesMut> {
        let ops = self.ops.slot_mut(slot);
        if self.closing || !matches!(ops.recv, RecvOp::Idle) || buf.len() >= want_bytes {
            debug_assert!(self.closing, "recv_exact on a busy slot or a full buffer");
            return Err(buf);
        }
        buf.reserve(want_bytes - buf.len());
        let len = (want_bytes - buf.len()).min(u32::MAX as usize) as u32;
        // The buffer's heap memory does not move when its handle is moved into the table.
        let spare = buf.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        ops.recv = RecvOp::Exact { buf, want_bytes };
        ops.generation = generation;
        let e = opcode::Recv::new(types::Fd(fd), spare, len)
            .flags(libc::MSG_WAITALL)
            .build()
            .user_data(tag(OP_RECV_EXACT, slot, generation));
        self.push(e);
        Ok(())
    }

    /// Asks the kernel to stop `slot`'s multishot receive; its final completion follows.
    pub fn cancel_recv(&mut self, slot: u32, generation: u32) {
        let ops = self.ops.slot_mut(slot);
        let RecvOp::Multishot { tls } = ops.recv else {
            return;
        };
        if self.closing {
            return;
        }
        ops.cancels += 1;
        let (_, op) = multishot_group(tls);
        let e = opcode::AsyncCancel::new(tag(op, slot, generation))
            .build()
            .user_data(tag(OP_CANCEL, slot, generation));
        self.push(e);
    }

    /// Sends `outgoing` on `fd` (one send in flight per slot). Gives it back when it cannot be
    /// submitted.
    pub fn send(
        &mut self,
        slot: u32,
        generation: u32,
        fd: RawFd,
        outgoing: Outgoing,
    ) -> Result<(), Outgoing> {
        if self.closing || self.ops.slot_mut(slot).send.is_some() || outgoing.is_empty() {
            debug_assert!(self.closing, "send on a busy slot or with nothing to send");
            return Err(outgoing);
        }
        let gather = match &outgoing {
            Outgoing::Plain { .. } | Outgoing::Slice(_) => None,
            Outgoing::Gathered(segments) => Some(self.gather_for(segments)),
        };
        let ops = self.ops.slot_mut(slot);
        ops.generation = generation;
        let op = ops.send.insert(SendOp { outgoing, gather });
        let user_data = tag(OP_SEND, slot, generation);
        let e = match (&op.outgoing, &op.gather) {
            (Outgoing::Plain { bytes, offset }, _) => {
                let rest = &bytes[*offset..];
                let len = rest.len().min(u32::MAX as usize) as u32;
                opcode::Send::new(types::Fd(fd), rest.as_ptr(), len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(user_data)
            }
            (Outgoing::Slice(rest), _) => {
                let len = rest.len().min(u32::MAX as usize) as u32;
                opcode::Send::new(types::Fd(fd), rest.as_ptr(), len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(user_data)
            }
            (Outgoing::Gathered(_), Some(gather)) => {
                let msg: *const libc::msghdr = &gather.msghdr;
                opcode::SendMsg::new(types::Fd(fd), msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
                    .user_data(user_data)
            }
            (Outgoing::Gathered(_), None) => unreachable!("a gathered send always has its iovecs"),
        };
        self.push(e);
        Ok(())
    }

    /// An iovec array and msghdr over the first non-empty `segments`.
    fn gather_for(&mut self, segments: &[bytes::Bytes]) -> Box<Gather> {
        let mut gather = self.spare_gathers.pop().unwrap_or_else(|| {
            Box::new(Gather {
                iov: Vec::with_capacity(IOV_PER_SEND_MAX),
                // SAFETY: msghdr is a plain C struct for which all-zero bytes is a valid value.
                msghdr: unsafe { std::mem::zeroed() },
            })
        });
        gather.iov.clear();
        for seg in segments
            .iter()
            .filter(|s| !s.is_empty())
            .take(IOV_PER_SEND_MAX)
        {
            gather.iov.push(libc::iovec {
                iov_base: seg.as_ptr() as *mut libc::c_void,
                iov_len: seg.len(),
            });
        }
        gather.msghdr.msg_iov = gather.iov.as_mut_ptr();
        gather.msghdr.msg_iovlen = gather.iov.len();
        gather
    }

    /// Submits queued entries and waits for at least `want` completions, or at most
    /// `timeout_ms` when given (then an expired wait is `Ok(0)`; Linux 5.11's EXT_ARG, which
    /// every kernel with multishot receives has).
    pub fn submit_and_wait(
        &mut self,
        want: usize,
        timeout_ms: Option<u64>,
    ) -> std::io::Result<usize> {
        self.refill_recv_rings();
        let Some(ms) = timeout_ms.filter(|_| want > 0) else {
            return self.ring.submit_and_wait(want);
        };
        let ts = types::Timespec::new()
            .sec(ms / 1000)
            .nsec(((ms % 1000) * 1_000_000) as u32);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(0),
            other => other,
        }
    }

    /// Submits queued entries without waiting.
    pub fn submit(&mut self) -> std::io::Result<usize> {
        self.refill_recv_rings();
        self.ring.submit()
    }

    /// Gives the receive rings the free buffers they need before receives run (with
    /// DEFER_TASKRUN the kernel fills them only inside the next submission).
    fn refill_recv_rings(&mut self) {
        self.pools.plain.refill();
        if let Some(tls) = &self.pools.tls {
            tls.refill();
        }
    }

    /// Moves every available completion into `out`, with the memory of finished operations
    /// handed back.
    pub fn reap(&mut self, out: &mut impl Extend<Completion>) {
        let mut finished = 0;
        for cqe in self.ring.completion() {
            if !cqueue::more(cqe.flags()) {
                finished += 1;
            }
            let done = Done {
                ops: &mut self.ops,
                pools: &self.pools,
                fixed: &mut self.fixed,
                spare_gathers: &mut self.spare_gathers,
            };
            if let Some(c) = done.decode(cqe.user_data(), cqe.result(), cqe.flags()) {
                out.extend(Some(c));
            }
        }
        debug_assert!(
            finished <= self.in_flight,
            "more completions than submissions"
        );
        self.in_flight -= finished.min(self.in_flight);
    }

    /// Shutdown: stops new submissions, cancels every operation in flight and reaps
    /// completions (passing each to `on_completion`, so owners get their memory back) until
    /// nothing is in flight or `timeout` passes. Returns whether everything finished; if not,
    /// dropping this `Uring` leaks its memory rather than free what the kernel may still use.
    pub fn cancel_all_and_drain(
        &mut self,
        timeout: Duration,
        mut on_completion: impl FnMut(Completion),
    ) -> bool {
        const RETRY_CANCEL_EVERY: Duration = Duration::from_millis(200);
        self.closing = true;
        let give_up = Instant::now() + timeout;
        let mut next_cancel = Instant::now();
        let mut reaped = Vec::new();
        while self.in_flight > 0 && Instant::now() < give_up {
            if Instant::now() >= next_cancel {
                // Cancels every request in flight; repeated in case one was not cancellable
                // yet (already running) and re-armed nothing since.
                let e = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                    .build()
                    .user_data(tag(OP_CANCEL_ALL, 0, 0));
                self.push(e);
                next_cancel = Instant::now() + RETRY_CANCEL_EVERY;
            }
            let wait = types::Timespec::new().nsec(20_000_000);
            let args = types::SubmitArgs::new().timespec(&wait);
            if let Err(e) = self.ring.submitter().submit_with_args(1, &args) {
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) {
                    tracing::warn!("io_uring_enter failed while draining: {e}");
                }
            }
            self.reap(&mut reaped);
            reaped.drain(..).for_each(&mut on_completion);
        }
        self.in_flight == 0
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            LEAKED_RINGS.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                in_flight = self.in_flight,
                "io_uring operations still in flight: leaking the ring and its buffers"
            );
            return;
        }
        // SAFETY: nothing is in flight, so the kernel holds no pointer into this memory; each
        // field is dropped exactly once, here, and never used again. The ring goes first so the
        // kernel unregisters the buffer ring before the pool's memory is freed.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.pools);
            ManuallyDrop::drop(&mut self.fixed);
            ManuallyDrop::drop(&mut self.ops);
        }
    }
}

/// Turns raw completions into [`Completion`]s, taking the finished operations' memory out of
/// the table.
struct Done<'a> {
    ops: &'a mut OpTable,
    pools: &'a RecvPools,
    fixed: &'a mut FixedBufs,
    #[allow(clippy::vec_box)]
    spare_gathers: &'a mut Vec<Box<Gather>>,
}

impl Done<'_> {
    fn decode(self, user_data: u64, result: i32, flags: u32) -> Option<Completion> {
        let (op, slot, generation) = untag(user_data);
        let more = cqueue::more(flags);
        match op {
            OP_ACCEPT => Some(Completion::Accept {
                listener: slot,
                result,
                more,
            }),
            OP_RECV | OP_RECV_TLS => {
                // The op, not the connection's state, names the pool: the buffer goes back to
                // the ring it came from even when its connection is gone.
                let pool = match (op, &self.pools.tls) {
                    (OP_RECV_TLS, Some(tls)) => tls,
                    _ => &self.pools.plain,
                };
                debug_assert!(op == OP_RECV || self.pools.tls.is_some());
                if result == -libc::ENOBUFS {
                    pool.note_starved();
                }
                let buffer_more = cqueue::buffer_more(flags);
                let data = cqueue::buffer_select(flags)
                    .map(|bid| pool.guard(bid, usize::try_from(result).unwrap_or(0), buffer_more));
                if !more {
                    if let Some(ops) = self.ops.get_mut(slot) {
                        debug_assert!(matches!(ops.recv, RecvOp::Multishot { .. }));
                        ops.recv = RecvOp::Idle;
                    }
                }
                Some(Completion::Recv {
                    slot,
                    generation,
                    result,
                    more,
                    data,
                })
            }
            OP_RECV_EXACT => {
                let ops = self.ops.get_mut(slot)?;
                let RecvOp::Exact {
                    mut buf,
                    want_bytes,
                } = std::mem::take(&mut ops.recv)
                else {
                    debug_assert!(false, "direct receive completion without its buffer");
                    return None;
                };
                if let Ok(received) = usize::try_from(result) {
                    let new_len = buf.len() + received;
                    assert!(new_len <= want_bytes, "the kernel wrote past the receive");
                    // SAFETY: the kernel wrote `received` bytes into the spare capacity this
                    // receive was given (at most `want_bytes - len`, checked just above), so
                    // they are initialised.
                    unsafe { buf.set_len(new_len) };
                }
                Some(Completion::RecvExact {
                    slot,
                    generation,
                    result,
                    buf,
                })
            }
            OP_SEND => {
                let ops = self.ops.get_mut(slot)?;
                let Some(SendOp { outgoing, gather }) = ops.send.take() else {
                    debug_assert!(false, "send completion without its buffer");
                    return None;
                };
                if let Some(gather) = gather {
                    self.spare_gathers.push(gather);
                }
                Some(Completion::Send {
                    slot,
                    generation,
                    result,
                    outgoing,
                })
            }
            OP_TIMER => {
                self.fixed.timer_armed = false;
                Some(Completion::Timer)
            }
            OP_WAKE => {
                self.fixed.wake_armed = false;
                Some(Completion::Wake)
            }
            OP_CANCEL => {
                if let Some(ops) = self.ops.get_mut(slot) {
                    ops.cancels = ops.cancels.saturating_sub(1);
                }
                None
            }
            OP_CANCEL_ALL => None,
            _ => {
                debug_assert!(false, "unknown completion tag {op}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    /// Longest single wait for a completion in the loops below, which check their give-up
    /// deadline between waits.
    const WAIT_SLICE_MS: u64 = 100;

    /// Tests that drop rings and read the global leak counter run one at a time.
    static RING_DROPS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A socket pair whose first end's send buffer is full, so a send on it stays in flight.
    fn stalled_pair() -> (UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let chunk = [0u8; 4096];
        while (&a).write(&chunk).is_ok() {}
        (a, b)
    }

    #[test]
    fn cancel_all_reaps_every_operation_and_hands_the_memory_back() {
        let _serial = RING_DROPS.lock();
        let leaked_before = leaked_rings();
        let mut u = Uring::new((16, 4096), None).unwrap();
        let (quiet, _quiet_peer) = UnixStream::pair().unwrap();
        let (direct, _direct_peer) = UnixStream::pair().unwrap();
        let (stalled, _stalled_peer) = stalled_pair();
        let (wake, _wake_peer) = UnixStream::pair().unwrap();
        assert!(u.recv_multishot(0, 1, quiet.as_raw_fd(), false));
        u.recv_exact(1, 1, direct.as_raw_fd(), BytesMut::with_capacity(10), 1000)
            .unwrap();
        let outgoing = Outgoing::Plain {
            bytes: vec![5u8; 1 << 20],
            offset: 0,
        };
        u.send(2, 1, stalled.as_raw_fd(), outgoing).unwrap();
        assert!(u.read_wake(wake.as_raw_fd()));
        assert!(!u.read_wake(wake.as_raw_fd()), "one wake-up read at a time");
        assert!(u.timeout(60_000));
        assert!(
            !u.timeout(1),
            "one timer at a time: its timespec is not rewritten"
        );
        u.submit().unwrap();
        assert_eq!(u.in_flight(), 5);
        assert!(!u.slot_idle(0) && !u.slot_idle(1) && !u.slot_idle(2));

        let mut reaped = Vec::new();
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), |c| reaped.push(c)));
        assert_eq!(u.in_flight(), 0);
        assert!(u.slot_idle(0) && u.slot_idle(1) && u.slot_idle(2));
        let send_back = reaped.iter().any(|c| {
            matches!(c, Completion::Send { slot: 2, outgoing, .. } if outgoing.remaining_bytes() == 1 << 20)
        });
        assert!(send_back, "the unsent bytes come back with the completion");
        let recv_back = reaped.iter().any(
            |c| matches!(c, Completion::RecvExact { slot: 1, buf, .. } if buf.capacity() >= 1000),
        );
        assert!(recv_back, "the direct receive's buffer comes back");
        assert!(!u.timeout(1), "nothing is submitted once shutdown began");
        drop(u);
        assert_eq!(
            leaked_rings(),
            leaked_before,
            "a drained ring frees its memory"
        );
    }

    /// Leaks a small ring on purpose: skipped in the AddressSanitizer run, whose leak checker
    /// would rightly report it.
    #[test]
    fn dropped_with_an_operation_in_flight_the_ring_leaks_instead_of_freeing() {
        let _serial = RING_DROPS.lock();
        let leaked_before = leaked_rings();
        let mut u = Uring::new((16, 4096), None).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(u.recv_multishot(0, 1, a.as_raw_fd(), false));
        u.submit().unwrap();
        assert_eq!(u.in_flight(), 1);
        drop(u);
        assert_eq!(leaked_rings(), leaked_before + 1);
    }

    #[test]
    fn a_completed_send_returns_its_buffer_and_a_receive_its_bytes() {
        let mut u = Uring::new((16, 4096), None).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let outgoing = Outgoing::Plain {
            bytes: b"hello".to_vec(),
            offset: 0,
        };
        u.send(0, 7, a.as_raw_fd(), outgoing).unwrap();
        assert!(u.recv_multishot(1, 3, b.as_raw_fd(), false));
        let mut got = Vec::new();
        let mut received = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while received.len() < 5 && Instant::now() < give_up {
            // A bounded wait, so that the give-up deadline is checked even when no
            // completion comes: a lost completion fails the test instead of hanging it.
            u.submit_and_wait(1, Some(WAIT_SLICE_MS)).unwrap();
            u.reap(&mut got);
            for c in got.drain(..) {
                match c {
                    Completion::Send {
                        slot,
                        generation,
                        result,
                        mut outgoing,
                    } => {
                        assert_eq!((slot, generation, result), (0, 7, 5));
                        outgoing.advance(5);
                        assert!(outgoing.is_empty());
                    }
                    Completion::Recv { slot, data, .. } => {
                        assert_eq!(slot, 1);
                        received.extend_from_slice(&data.expect("bytes come in a buffer"));
                    }
                    _ => panic!("unexpected completion"),
                }
            }
        }
        assert_eq!(received, b"hello");
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), drop));
    }

    /// Receives on `fd` (armed as `tls` or not) until `want` bytes came; returns the size of
    /// each buffer the kernel filled.
    fn receive_sizes(u: &mut Uring, fd: RawFd, tls: bool, want: usize) -> Vec<usize> {
        assert!(u.recv_multishot(2, 1, fd, tls));
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while sizes.iter().sum::<usize>() < want && Instant::now() < give_up {
            // A bounded wait, so that the give-up deadline is checked even when no
            // completion comes: a lost completion fails the test instead of hanging it.
            u.submit_and_wait(1, Some(WAIT_SLICE_MS)).unwrap();
            u.reap(&mut got);
            for c in got.drain(..) {
                if let Completion::Recv { data: Some(d), .. } = c {
                    sizes.push(d.len());
                }
            }
        }
        assert_eq!(sizes.iter().sum::<usize>(), want, "every byte arrives");
        sizes
    }

    /// Receives on `fds` (armed as slots 0..) until each has `want` bytes; returns each one's
    /// completions, their guards kept alive.
    fn receive_guards(u: &mut Uring, fds: &[RawFd], want: usize) -> Vec<Vec<RecvGuard>> {
        for (slot, &fd) in fds.iter().enumerate() {
            assert!(u.recv_multishot(slot as u32, 1, fd, false));
        }
        let mut got = Vec::new();
        let mut guards: Vec<Vec<RecvGuard>> = fds.iter().map(|_| Vec::new()).collect();
        let bytes = |g: &Vec<RecvGuard>| g.iter().map(|d| d.len()).sum::<usize>();
        let give_up = Instant::now() + Duration::from_secs(5);
        while guards.iter().any(|g| bytes(g) < want) && Instant::now() < give_up {
            u.submit_and_wait(1, Some(WAIT_SLICE_MS)).unwrap();
            u.reap(&mut got);
            for c in got.drain(..) {
                if let Completion::Recv {
                    slot,
                    data: Some(d),
                    ..
                } = c
                {
                    guards[slot as usize].push(d);
                }
            }
        }
        guards
    }

    #[test]
    fn small_receives_fill_one_buffer_of_the_incremental_ring_one_after_another() {
        let mut u = Uring::new((16, 65536), None).unwrap();
        let in_ring = u.pools.plain.in_ring();
        let pairs: Vec<_> = (0..3).map(|_| UnixStream::pair().unwrap()).collect();
        // Not zero: a receive read at the wrong offset of fresh (zeroed) memory must not pass.
        for (i, (writer, _)) in pairs.iter().enumerate() {
            (&*writer).write_all(&[i as u8 + 1; 100]).unwrap();
        }
        let fds: Vec<RawFd> = pairs.iter().map(|(_, r)| r.as_raw_fd()).collect();
        let guards = receive_guards(&mut u, &fds, 100);
        let mut all: Vec<&RecvGuard> = guards.iter().flatten().collect();
        for (i, g) in guards.iter().enumerate() {
            let got: Vec<u8> = g.iter().flat_map(|d| d.iter().copied()).collect();
            assert_eq!(
                got,
                vec![i as u8 + 1; 100],
                "socket {i} reads its own bytes"
            );
        }
        all.sort_by_key(|d| d.as_ptr() as usize);
        if u.pools.plain.is_incremental() {
            for w in all.windows(2) {
                let end = w[0].as_ptr() as usize + w[0].len();
                assert_eq!(
                    w[1].as_ptr() as usize,
                    end,
                    "each starts where the last ended"
                );
            }
            assert_eq!(
                u.pools.plain.in_ring(),
                in_ring,
                "the buffer is still the kernel's"
            );
        } else {
            // A kernel without IOU_PBUF_RING_INC (before 6.12): one receive per buffer.
            for w in all.windows(2) {
                assert!(w[1].as_ptr() as usize - w[0].as_ptr() as usize >= 65536);
            }
        }
        drop(guards);
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), drop));
    }

    #[test]
    fn an_incremental_ring_recycles_its_buffers_and_every_byte_arrives_in_order() {
        // 16 buffers of 4 KiB carry 1 MiB in writes of 3,000 bytes: each buffer is filled by
        // receives of any size, freed and given back to the kernel many times.
        let mut u = Uring::new((16, 4096), None).unwrap();
        let incremental = u.pools.plain.is_incremental();
        let (writer, reader) = UnixStream::pair().unwrap();
        let sent: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let writing = std::thread::spawn(move || {
            for chunk in sent.chunks(3000) {
                (&writer).write_all(chunk).unwrap();
            }
            sent
        });
        let mut received = Vec::new();
        let mut got = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(10);
        assert!(u.recv_multishot(0, 1, reader.as_raw_fd(), false));
        while received.len() < 1 << 20 && Instant::now() < give_up {
            u.submit_and_wait(1, Some(WAIT_SLICE_MS)).unwrap();
            u.reap(&mut got);
            for c in got.drain(..) {
                let Completion::Recv { more, data, .. } = c else {
                    panic!("unexpected completion");
                };
                if let Some(d) = data {
                    assert!(d.len() <= 4096);
                    received.extend_from_slice(&d);
                }
                if !more {
                    assert!(u.recv_multishot(0, 1, reader.as_raw_fd(), false));
                }
            }
        }
        let sent = writing.join().unwrap();
        assert!(
            received == sent,
            "{} of {} bytes, in order (incremental: {incremental})",
            received.len(),
            sent.len()
        );
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), drop));
    }

    #[test]
    fn tls_connections_receive_into_the_larger_ring_and_others_into_the_plain_one() {
        use std::io::Write;
        let mut u = Uring::new((16, 4096), Some((16, 65536))).unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let bytes = vec![7u8; 48 << 10];
        a.write_all(&bytes).unwrap();
        let tls = receive_sizes(&mut u, b.as_raw_fd(), true, bytes.len());
        assert!(tls.iter().any(|&n| n > 4096), "{tls:?}");
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), drop));
        let mut u = Uring::new((16, 4096), Some((16, 65536))).unwrap();
        a.write_all(&bytes).unwrap();
        let plain = receive_sizes(&mut u, b.as_raw_fd(), false, bytes.len());
        assert!(plain.iter().all(|&n| n <= 4096), "{plain:?}");
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), drop));
        // Without a TLS ring a TLS connection receives into the plain one.
        let mut u = Uring::new((16, 4096), None).unwrap();
        a.write_all(&bytes).unwrap();
        let fallback = receive_sizes(&mut u, b.as_raw_fd(), true, bytes.len());
        assert!(fallback.iter().all(|&n| n <= 4096), "{fallback:?}");
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), drop));
    }

    #[test]
    fn receives_that_find_the_ring_empty_grow_it_and_lose_nothing_once_re_armed() {
        use recv_fill::FILL_MIN;
        const SOCKETS: usize = 64;
        const BYTES_EACH: usize = 3 * 4096;
        let mut u = Uring::new((256, 4096), None).unwrap();
        assert_eq!(
            u.pools.plain.in_ring(),
            FILL_MIN,
            "a new ring holds the minimum"
        );
        let pairs: Vec<_> = (0..SOCKETS).map(|_| UnixStream::pair().unwrap()).collect();
        for (i, (writer, reader)) in pairs.iter().enumerate() {
            (&*writer).write_all(&vec![i as u8; BYTES_EACH]).unwrap();
            assert!(u.recv_multishot(i as u32, 1, reader.as_raw_fd(), false));
        }
        let mut received = vec![Vec::new(); SOCKETS];
        let (mut starved, mut rounds, mut peak_in_ring) = (0, 0, 0);
        let mut got = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while received.iter().any(|r| r.len() < BYTES_EACH) && Instant::now() < give_up {
            u.submit_and_wait(1, Some(WAIT_SLICE_MS)).unwrap();
            peak_in_ring = peak_in_ring.max(u.pools.plain.in_ring());
            rounds += 1;
            u.reap(&mut got);
            for c in got.drain(..) {
                let Completion::Recv {
                    slot,
                    result,
                    more,
                    data,
                    ..
                } = c
                else {
                    panic!("unexpected completion");
                };
                if let Some(data) = data {
                    received[slot as usize].extend_from_slice(&data);
                }
                if !more {
                    // As the worker does: a receive that found the ring empty is re-armed.
                    assert_eq!(result, -libc::ENOBUFS, "only an empty ring ends a receive");
                    starved += 1;
                    assert!(u.recv_multishot(slot, 1, pairs[slot as usize].1.as_raw_fd(), false));
                }
            }
        }
        for (i, r) in received.iter().enumerate() {
            assert!(
                r.len() == BYTES_EACH && r.iter().all(|&b| b == i as u8),
                "socket {i}"
            );
        }
        assert!(
            starved >= SOCKETS / 2,
            "most found the first ring empty: {starved}"
        );
        assert!(
            peak_in_ring > 4 * FILL_MIN,
            "the ring grew: at most {peak_in_ring}"
        );
        assert!(
            rounds <= 6,
            "a round or two of re-arms, not one per buffer: {rounds}"
        );
        assert!(u.cancel_all_and_drain(Duration::from_secs(5), drop));
    }

    #[test]
    fn tags_roundtrip() {
        assert_eq!(
            untag(tag(OP_SEND, 0xab_cdef, u32::MAX)),
            (OP_SEND, 0xab_cdef, u32::MAX)
        );
        assert_eq!(untag(tag(OP_ACCEPT, 0, 0)), (OP_ACCEPT, 0, 0));
    }
}
