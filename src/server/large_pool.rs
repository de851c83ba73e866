//! Reusable receive buffers for large frames (the zero-copy path).
//!
//! A large frame is received straight into one of these buffers and its payload is then sent
//! on by reference, to every destination, from that same memory. When the last reference is
//! sent, the buffer goes back to the pool of the worker that received it (from whichever worker
//! sent it last), so steady large-message traffic reuses memory that is already faulted in
//! instead of allocating and touching fresh pages for every frame.
//!
//! Bound: at most `BUFFERS_MAX` buffers wait in a pool, so a pool holds at most
//! `BUFFERS_MAX x max_frame_bytes` (16 MiB per worker with the defaults); a buffer returned to
//! a full pool is freed.

use bytes::Bytes;
use crossbeam::queue::ArrayQueue;
use std::sync::Arc;

/// Buffers kept per worker (the memory budget counts them).
pub const BUFFERS_MAX: usize = crate::memory_budget::LARGE_BUFFERS_PER_WORKER;

pub struct LargePool {
    /// Buffers given back by whichever worker dropped the last reference.
    free: Arc<ArrayQueue<Vec<u8>>>,
    /// The owning worker's stack: the most recently returned buffer is reused first, since its
    /// memory is the most likely to still be in cache.
    stack: Vec<Vec<u8>>,
}

impl Default for LargePool {
    fn default() -> Self {
        LargePool {
            free: Arc::new(ArrayQueue::new(BUFFERS_MAX)),
            stack: Vec::new(),
        }
    }
}

impl LargePool {
    /// An empty buffer with room for `frame_bytes`.
    pub fn take(&mut self, frame_bytes: usize) -> Vec<u8> {
        while let Some(buf) = self.free.pop() {
            self.stack.push(buf);
        }
        self.stack.truncate(BUFFERS_MAX);
        match self.stack.pop() {
            Some(mut buf) => {
                buf.clear();
                buf.reserve_exact(frame_bytes);
                buf
            }
            None => Vec::with_capacity(frame_bytes),
        }
    }

    /// Shares a filled buffer; it comes back to this pool when the last reference drops.
    pub fn share(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            home: Arc::clone(&self.free),
        })
    }
}

struct Pooled {
    buf: Vec<u8>,
    home: Arc<ArrayQueue<Vec<u8>>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // A full pool frees the buffer instead (the bound above).
        let _ = self.home.push(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_return_when_the_last_reference_drops() {
        let mut pool = LargePool::default();
        let mut buf = pool.take(1000);
        buf.extend_from_slice(&[7; 1000]);
        let ptr = buf.as_ptr();
        let shared = pool.share(buf);
        let slice = shared.slice(10..20);
        drop(shared);
        assert_eq!(&slice[..], &[7; 10]);
        assert!(pool.free.is_empty(), "still referenced");
        drop(slice);
        let again = pool.take(500);
        assert_eq!(again.as_ptr(), ptr, "the same memory is reused");
        assert!(again.is_empty());
    }
}
