//! Provided buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a free receive buffer for
//! each multishot recv completion, so idle connections hold no receive memory.

use io_uring::types::BufRingEntry;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

pub struct BufRing {
    /// Page-aligned ring of `entries` descriptors, shared with the kernel (mmap'd).
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    /// One contiguous allocation holding every buffer.
    buffers: Box<[u8]>,
    buffer_bytes: usize,
    entries: u16,
    /// Our copy of the tail; published to the kernel with a release store.
    tail: u16,
    pub group_id: u16,
}

impl BufRing {
    /// Allocates and fills the ring; the caller registers it with [`BufRing::register`].
    pub fn new(entries: usize, buffer_bytes: usize, group_id: u16) -> io::Result<BufRing> {
        assert!(
            entries.is_power_of_two() && entries <= 32768,
            "config validation bounds entries"
        );
        let ring_bytes = entries * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping with no address hint has no preconditions; the
        // result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut ring = BufRing {
            ring: ptr.cast(),
            ring_bytes,
            buffers: vec![0u8; entries * buffer_bytes].into_boxed_slice(),
            buffer_bytes,
            entries: entries as u16,
            tail: 0,
            group_id,
        };
        for bid in 0..entries as u16 {
            ring.push_entry(bid);
        }
        ring.publish_tail();
        Ok(ring)
    }

    /// Registers the ring with `submitter`'s io_uring instance.
    pub fn register(&self, submitter: &io_uring::Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring memory stays mapped until `self` is dropped, and the worker drops its
        // IoUring (which unregisters everything) before its BufRing (field order in Worker).
        unsafe {
            submitter.register_buf_ring_with_flags(self.ring as u64, self.entries, self.group_id, 0)
        }
    }

    fn push_entry(&mut self, bid: u16) {
        let index = (self.tail & (self.entries - 1)) as usize;
        let addr = self.buffers.as_ptr() as u64 + bid as u64 * self.buffer_bytes as u64;
        // SAFETY: `index < entries`, so the write stays inside the mapping; the kernel only reads
        // entries between its head and our published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.buffer_bytes as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        // SAFETY: the ring base is page aligned and initialised; the tail field overlays the
        // first entry's reserved field, which the kernel reads as an atomic u16.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring).cast::<AtomicU16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The bytes the kernel wrote into buffer `bid`. The slice must not be used after the
    /// buffer is given back with [`BufRing::recycle`].
    ///
    /// # Safety
    /// `bid` and `len` must come from one completion whose buffer was not recycled yet.
    pub unsafe fn received(&self, bid: u16, len: usize) -> &'static [u8] {
        debug_assert!(bid < self.entries && len <= self.buffer_bytes);
        // SAFETY: the caller guarantees the buffer is ours (handed out by a completion) and the
        // kernel does not write into it until it is recycled. The 'static lifetime lets the
        // worker route from it while mutating its own state; the caller keeps the slice no
        // longer than the buffer is held.
        unsafe {
            std::slice::from_raw_parts(
                self.buffers.as_ptr().add(bid as usize * self.buffer_bytes),
                len,
            )
        }
    }

    /// Gives buffer `bid` back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        self.push_entry(bid);
        self.publish_tail();
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping was created in `new` with exactly this length and is unmapped once.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
        }
    }
}
