//! The provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a free receive buffer
//! for each multishot recv completion, so idle connections hold no receive memory.
//!
//! Ownership: the descriptor ring (mmap'd, shared with the kernel) and the buffers live in one
//! [`RecvPool`] behind an `Rc`. A completion that names buffer `bid` becomes a [`RecvGuard`],
//! the only way to read those bytes; dropping the last guard of a buffer the kernel has let go
//! frees it (the next refill gives it back to the kernel).
//! So a buffer is never read after the kernel may write it again, and the memory cannot be
//! freed while a guard or the ring ([`super::Uring`], which leaks its reference when the kernel
//! has not finished) still refers to it.
//!
//! Incremental consumption (IOU_PBUF_RING_INC, Linux 6.12+), asked for on the plain ring: a
//! receive fills only the bytes it got and leaves the rest of its buffer at the ring's head
//! for the next receive (its completion says IORING_CQE_F_BUF_MORE), so one large buffer takes
//! many small receives one after another and a large read still fits one buffer. The pool
//! tracks how far each buffer is filled (the next completion naming it starts there) and
//! frees a buffer once the kernel has let it go (a completion without BUF_MORE) and no guard
//! of it is alive. That a completion's bytes start where the previous one naming the buffer
//! ended holds because the kernel commits a multishot socket receive's bytes when it posts its
//! completion, in order, under the ring's lock (no bundles, no MSG_WAITALL); a buffer committed
//! when it is selected (a read of a file in io-wq) would break it, and the relay issues none.
//! Where the kernel refuses the flag (before 6.12) the ring works as before the flag: one
//! receive per buffer, and a minimum of [`FILL_MIN`] buffers in the ring.
//!
//! Hot buffers first: a dropped guard's buffer goes onto a stack of free buffers, and
//! [`RecvPool::refill`] (before each submission) moves the most recently freed of them into
//! the ring, only as many as [`FillPolicy`] asks for (see `recv_fill.rs` for why). Every buffer
//! is in exactly one of: the ring (the kernel may write its unfilled bytes; guards may hold its
//! filled ones), guards only, or the stack; so the ring never holds more entries than it has
//! slots, the kernel never reads an entry being written, and no buffer is put back in the ring
//! while a guard or the kernel still has it.

use super::recv_fill::{fill_min_for, FillPolicy, FILL_MIN};
use io_uring::types::BufRingEntry;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

/// Most buffers one ring may have: the kernel's limit for a provided-buffer ring.
pub const RECV_BUFFERS_MAX: usize = 32768;

pub struct RecvPool {
    /// Page-aligned ring of `entries` descriptors, shared with the kernel (mmap'd).
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    /// One contiguous anonymous mapping holding every buffer (unmapped in Drop).
    buffers: *mut u8,
    buffer_bytes: usize,
    entries: u16,
    /// Our copy of the tail; published to the kernel with a release store.
    tail: Cell<u16>,
    group_id: u16,
    /// Free buffers not in the ring, the most recently freed last (capacity `entries`, so a
    /// push never allocates).
    free: RefCell<Vec<u16>>,
    /// Buffers in the ring: pushed and not yet taken by a completion.
    in_ring: Cell<u32>,
    /// Receives that found the ring empty since the last refill.
    starved: Cell<u32>,
    fill: RefCell<FillPolicy>,
    /// Whether the kernel consumes buffers incrementally (set by [`RecvPool::register`]).
    incremental: Cell<bool>,
    /// Per buffer: bytes the kernel has written into it since it was last put in the ring;
    /// the next completion naming it starts there.
    filled: Box<[Cell<u32>]>,
    /// Per buffer: guards alive for it (several while it is consumed incrementally).
    guards: Box<[Cell<u32>]>,
    /// Per buffer: the kernel may still write into it (put in the ring, and no completion
    /// without BUF_MORE has named it since).
    with_kernel: Box<[Cell<bool>]>,
}

// The pool is used on its worker's thread only (`Rc`, `Cell`): it is neither Send nor Sync.

impl RecvPool {
    /// Allocates and fills the ring; the caller registers it with [`RecvPool::register`].
    pub fn new(entries: usize, buffer_bytes: usize, group_id: u16) -> io::Result<Rc<RecvPool>> {
        if !entries.is_power_of_two()
            || entries > RECV_BUFFERS_MAX
            || buffer_bytes == 0
            || buffer_bytes > u32::MAX as usize
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "receive buffers: a power of two up to 32768, each at least one byte",
            ));
        }
        let ring_bytes = entries * std::mem::size_of::<BufRingEntry>();
        let ring = map_anonymous(ring_bytes, 0)?;
        // The buffers are faulted in here, at startup: the kernel takes them in ring order, so
        // left untouched each would first be touched by a receive, and on a host with
        // transparent huge pages every such first touch zeroes 2 MiB on the worker's thread in
        // the middle of a burst of new connections (measured: 30 ms of a 1,000-connection
        // storm on one worker). The budget counts the whole pool as resident anyway.
        let buffers = match map_anonymous(entries * buffer_bytes, libc::MAP_POPULATE) {
            Ok(buffers) => buffers,
            Err(e) => {
                // SAFETY: `ring` was mapped just above with `ring_bytes` and is not used again.
                unsafe { libc::munmap(ring.cast(), ring_bytes) };
                return Err(e);
            }
        };
        let pool = RecvPool {
            ring: ring.cast(),
            ring_bytes,
            buffers,
            buffer_bytes,
            entries: entries as u16,
            tail: Cell::new(0),
            group_id,
            free: RefCell::new(Vec::with_capacity(entries)),
            in_ring: Cell::new(0),
            starved: Cell::new(0),
            fill: RefCell::new(FillPolicy::new(entries as u32, FILL_MIN)),
            incremental: Cell::new(false),
            filled: (0..entries).map(|_| Cell::new(0)).collect(),
            guards: (0..entries).map(|_| Cell::new(0)).collect(),
            with_kernel: (0..entries).map(|_| Cell::new(false)).collect(),
        };
        pool.free.borrow_mut().extend((0..entries as u16).rev());
        pool.refill();
        Ok(Rc::new(pool))
    }

    /// Tops the ring up from the free stack (hottest first) to the fill target, and publishes
    /// the tail once. Called before each submission.
    pub(super) fn refill(&self) {
        let target = self.fill.borrow_mut().next_target(self.starved.replace(0));
        let mut free = self.free.borrow_mut();
        let before = self.in_ring.get();
        while self.in_ring.get() < target {
            let Some(bid) = free.pop() else { break };
            self.push_entry(bid);
        }
        if self.in_ring.get() != before {
            self.publish_tail();
        }
    }

    /// A multishot receive ended because the ring was empty (ENOBUFS).
    pub(super) fn note_starved(&self) {
        self.starved.set(self.starved.get().saturating_add(1));
    }

    /// Buffers in the ring now (for tests).
    #[cfg(test)]
    pub(super) fn in_ring(&self) -> u32 {
        self.in_ring.get()
    }

    /// Registers the ring with `submitter`'s io_uring instance; with `incremental`, asks the
    /// kernel to consume its buffers incrementally, and registers it without when the kernel
    /// does not know the flag (before Linux 6.12). Incremental, the ring's minimum becomes the
    /// buffers that hold `FILL_MIN_BYTES` (its hot bytes, now that small receives share a
    /// buffer); whole-buffer, it stays [`FILL_MIN`] buffers, so as many receives as before
    /// fit a round.
    pub fn register(
        &self,
        submitter: &io_uring::Submitter<'_>,
        incremental: bool,
    ) -> io::Result<()> {
        let register = |flags: u16| {
            // SAFETY: the ring memory stays mapped as long as this pool lives, and the pool
            // outlives the registration: `Uring` drops its ring (which unregisters everything)
            // before its reference to the pool, or leaks both when operations are still in
            // flight.
            unsafe {
                submitter.register_buf_ring_with_flags(
                    self.ring as u64,
                    self.entries,
                    self.group_id,
                    flags,
                )
            }
        };
        if incremental && register(IOU_PBUF_RING_INC).is_ok() {
            self.incremental.set(true);
            self.fill
                .borrow_mut()
                .set_min(fill_min_for(self.buffer_bytes));
            return Ok(());
        }
        register(0)
    }

    /// Whether the kernel consumes this ring's buffers incrementally.
    pub fn is_incremental(&self) -> bool {
        self.incremental.get()
    }

    fn push_entry(&self, bid: u16) {
        debug_assert!(bid < self.entries);
        let tail = self.tail.get();
        let index = (tail & (self.entries - 1)) as usize;
        let addr = self.buffers as u64 + u64::from(bid) * self.buffer_bytes as u64;
        // SAFETY: `index < entries`, so the entry lies inside the mapping; the kernel reads only
        // entries between its head and our published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.buffer_bytes as u32);
        entry.set_bid(bid);
        self.filled[bid as usize].set(0);
        self.with_kernel[bid as usize].set(true);
        self.tail.set(tail.wrapping_add(1));
        self.in_ring.set(self.in_ring.get() + 1);
        debug_assert!(self.in_ring.get() <= u32::from(self.entries));
    }

    fn publish_tail(&self) {
        // SAFETY: the ring base is page aligned and initialised; the tail field overlays the
        // first entry's reserved field, which the kernel reads as an atomic u16.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring).cast::<AtomicU16>()) };
        tail.store(self.tail.get(), Ordering::Release);
    }

    /// Takes the `len` bytes a completion says the kernel wrote into buffer `bid`, after those
    /// of its earlier completions; `more` (IORING_CQE_F_BUF_MORE) says the kernel keeps the
    /// rest of the buffer for later receives. Called only by the completion decoder, once per
    /// buffer-carrying completion.
    pub(super) fn guard(self: &Rc<Self>, bid: u16, len: usize, more: bool) -> RecvGuard {
        let i = bid as usize;
        debug_assert!(bid < self.entries);
        debug_assert!(
            self.with_kernel[i].get(),
            "a completion for a buffer not in the ring"
        );
        debug_assert!(
            !more || self.incremental.get(),
            "BUF_MORE on a whole-buffer ring"
        );
        // A completion of no bytes that names a buffer (a socket receive never makes one: it
        // recycles the buffer) may leave it at the kernel's head: kept as the kernel's, which
        // at worst loses one buffer of the pool, never lets it be handed out twice.
        let more = more || len == 0;
        let start = (self.filled[i].get() as usize).min(self.buffer_bytes);
        debug_assert!(
            start + len <= self.buffer_bytes,
            "the pool and the kernel disagree"
        );
        let len = len.min(self.buffer_bytes - start);
        // Within the buffer: `start + len <= buffer_bytes <= u32::MAX` (checked in `new`).
        self.filled[i].set((start + len) as u32);
        if !more {
            // The kernel moved its head past this buffer: it writes it no more.
            debug_assert!(self.in_ring.get() > 0, "a buffer taken from an empty ring");
            self.in_ring.set(self.in_ring.get().saturating_sub(1));
            self.with_kernel[i].set(false);
        }
        self.guards[i].set(self.guards[i].get() + 1);
        RecvGuard {
            pool: Rc::clone(self),
            bid,
            start: start as u32,
            len: len as u32,
        }
    }
}

impl Drop for RecvPool {
    fn drop(&mut self) {
        // SAFETY: both mappings were created in `new` with exactly these lengths and are
        // unmapped once, here. The pool is dropped only when no operation can write into it
        // (see `Uring`'s drop).
        unsafe {
            libc::munmap(
                self.buffers.cast(),
                self.entries as usize * self.buffer_bytes,
            );
            libc::munmap(self.ring.cast(), self.ring_bytes);
        }
    }
}

/// A private anonymous mapping of `bytes` (zeroed, page aligned), with extra `flags`.
fn map_anonymous(bytes: usize, flags: libc::c_int) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
    // result is checked against MAP_FAILED before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// IOU_PBUF_RING_INC: the kernel consumes the ring's buffers incrementally (Linux 6.12+; the
/// `io-uring` crate does not export the constant).
const IOU_PBUF_RING_INC: u16 = 2;

/// The bytes of one receive completion: `len` bytes from `start` in buffer `bid`. The buffer is
/// freed when its last guard is dropped and the kernel has let it go, and only a freed buffer
/// goes back to the kernel, so the bytes can only be read while the kernel cannot write them
/// (while it consumes a buffer incrementally it writes only past what it has completed).
pub struct RecvGuard {
    pool: Rc<RecvPool>,
    bid: u16,
    start: u32,
    len: u32,
}

impl RecvGuard {
    fn bytes_ptr(&self) -> *mut u8 {
        // SAFETY: `bid < entries` and `start + len <= buffer_bytes` (both checked in
        // `RecvPool::guard`), so the offset stays inside the pool's one mapping.
        unsafe {
            self.pool
                .buffers
                .add(self.bid as usize * self.pool.buffer_bytes + self.start as usize)
        }
    }
}

impl std::ops::Deref for RecvGuard {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the completion said the kernel wrote these `len` bytes of buffer `bid`, from
        // `start`. It does not write them again until the buffer is back in the ring, which only
        // a refill after the last guard's `Drop` does, and `Drop` cannot run while this borrow
        // of the guard lives; meanwhile an incremental receive writes only past them. The pool
        // (and so the memory) outlives the guard, which holds a reference to it.
        unsafe { std::slice::from_raw_parts(self.bytes_ptr(), self.len as usize) }
    }
}

/// Mutable access lets a TLS connection open its records where they were received.
impl std::ops::DerefMut for RecvGuard {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`: the kernel does not write these bytes again until a refill
        // after the last guard's `Drop` gives the buffer back, and another guard of the same
        // buffer (incremental consumption) holds other bytes of it (each completion's start
        // is where the previous one ended), so this exclusive borrow of the one guard is the
        // only access to them.
        unsafe { std::slice::from_raw_parts_mut(self.bytes_ptr(), self.len as usize) }
    }
}

impl Drop for RecvGuard {
    /// The last guard of a buffer the kernel has let go puts it onto the free stack; the next
    /// refill gives it back to the kernel.
    fn drop(&mut self) {
        let i = self.bid as usize;
        let guards = self.pool.guards[i].get() - 1;
        self.pool.guards[i].set(guards);
        if guards == 0 && !self.pool.with_kernel[i].get() {
            self.pool.free.borrow_mut().push(self.bid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_count(pool: &RecvPool, bid: u16) -> usize {
        pool.free.borrow().iter().filter(|&&b| b == bid).count()
    }

    #[test]
    fn an_incremental_buffer_is_freed_once_after_its_last_completion_and_its_last_guard() {
        // Not registered: the test plays the kernel, calling `guard` as completions would.
        let pool = RecvPool::new(16, 4096, 0).unwrap();
        pool.incremental.set(true);
        let in_ring = pool.in_ring();
        // The ring's first entry is buffer 0 (the free stack gives the lowest first).
        let first = pool.guard(0, 100, true);
        let second = pool.guard(0, 50, true);
        assert_eq!(second.as_ptr() as usize, first.as_ptr() as usize + 100);
        assert_eq!(pool.in_ring(), in_ring, "the kernel keeps the rest of it");
        drop(first);
        assert_eq!(free_count(&pool, 0), 0, "the kernel still writes into it");
        let last = pool.guard(0, 3946, false);
        assert_eq!(last.as_ptr() as usize, second.as_ptr() as usize + 50);
        assert_eq!(last.len(), 3946);
        assert_eq!(pool.in_ring(), in_ring - 1, "taken from the ring once");
        drop(last);
        assert_eq!(free_count(&pool, 0), 0, "a guard of it is alive");
        drop(second);
        assert_eq!(free_count(&pool, 0), 1, "freed once, by its last guard");
        // The next refill puts it back at the ring's tail, read from its start again.
        pool.refill();
        assert_eq!(pool.in_ring(), in_ring);
        assert_eq!(free_count(&pool, 0), 0);
        assert_eq!(pool.filled[0].get(), 0);
    }

    #[test]
    fn a_whole_buffer_ring_frees_each_buffer_with_its_one_guard() {
        let pool = RecvPool::new(16, 4096, 0).unwrap();
        let in_ring = pool.in_ring();
        let g = pool.guard(0, 10, false);
        assert_eq!(pool.in_ring(), in_ring - 1);
        drop(g);
        assert_eq!(free_count(&pool, 0), 1);
    }

    #[test]
    fn the_ring_minimum_is_in_bytes_only_where_small_receives_share_a_buffer() {
        let pool = RecvPool::new(256, 64 * 1024, 0).unwrap();
        assert_eq!(
            pool.in_ring(),
            FILL_MIN,
            "whole-buffer: the count of before"
        );
        pool.fill.borrow_mut().set_min(fill_min_for(64 * 1024));
        assert_eq!(pool.fill.borrow_mut().next_target(0), 6);
    }
}
