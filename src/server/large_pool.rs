//! Reusable receive buffers for large frames (the zero-copy path).
//!
//! A large frame is received straight into one of these buffers and its payload is then sent
//! on by reference, to every destination, from that same memory. The worker that received it
//! keeps a handle on each buffer (an empty `BytesMut` sharing its allocation with the frames
//! frozen from it); once every reference to those frames is gone, from whichever worker sent
//! them last, the handle reclaims the whole buffer in place. So steady large-message traffic
//! reuses memory that is already faulted in, and a frame costs no allocation: only the first
//! frame received into a buffer allocates its shared header (`bytes`' reference count).
//!
//! Bound: the worker keeps at most `BUFFERS_MAX` handles, the most recently used; the buffer of
//! a handle let go is freed when the last reference to its frames is dropped. A frame arriving
//! while no kept buffer has room for it gets a new buffer. A kept buffer with room left beyond
//! the frames still referenced takes the next frame there, so one allocation may hold several
//! frames.

use bytes::{Bytes, BytesMut};

/// Buffers kept per worker (the memory budget counts them).
pub const BUFFERS_MAX: usize = crate::memory_budget::LARGE_BUFFERS_PER_WORKER;

#[derive(Default)]
pub struct LargePool {
    /// Handles on this worker's buffers, the most recently used last.
    kept: Vec<BytesMut>,
}

impl LargePool {
    /// An empty buffer with room for `frame_bytes`: a kept one whose frames are all gone (or
    /// with that much room left beyond them), else a new one.
    pub fn take(&mut self, frame_bytes: usize) -> BytesMut {
        // Most recently used first: its memory is the likeliest to still be in cache. A
        // handle that cannot take the frame is left as it was.
        match self
            .kept
            .iter_mut()
            .rposition(|handle| handle.try_reclaim(frame_bytes))
        {
            Some(i) => self.kept.remove(i),
            None => BytesMut::with_capacity(frame_bytes),
        }
    }

    /// Shares a filled buffer: returns its bytes, frozen, and keeps a handle on the buffer for
    /// the next frame (letting go of the least recently used one when `BUFFERS_MAX` are kept).
    pub fn share(&mut self, mut buf: BytesMut) -> Bytes {
        let frame = buf.split().freeze();
        if self.kept.len() == BUFFERS_MAX {
            self.kept.remove(0);
        }
        self.kept.push(buf);
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_reused_once_the_last_reference_to_its_frame_drops() {
        let mut pool = LargePool::default();
        let mut buf = pool.take(1000);
        buf.extend_from_slice(&[7; 1000]);
        let ptr = buf.as_ptr();
        let shared = pool.share(buf);
        let slice = shared.slice(10..20);
        drop(shared);
        assert_eq!(&slice[..], &[7; 10]);
        let other = pool.take(1000);
        assert_ne!(other.as_ptr(), ptr, "still referenced: a buffer of its own");
        drop(other);
        drop(slice);
        let again = pool.take(500);
        assert_eq!(again.as_ptr(), ptr, "the same memory is reused");
        assert!(again.is_empty());
        assert!(again.capacity() >= 1000);
    }

    #[test]
    fn the_most_recently_used_free_buffer_is_taken_first_and_at_most_the_bound_kept() {
        let mut pool = LargePool::default();
        let (mut ptrs, mut frames) = (Vec::new(), Vec::new());
        for _ in 0..BUFFERS_MAX + 3 {
            // Every frame still referenced: each takes a new buffer.
            let mut buf = pool.take(64);
            buf.extend_from_slice(&[1; 64]);
            ptrs.push(buf.as_ptr());
            frames.push(pool.share(buf));
        }
        assert_eq!(
            pool.kept.len(),
            BUFFERS_MAX,
            "the oldest handles were let go"
        );
        drop(frames);
        let first = pool.take(64);
        assert_eq!(first.as_ptr(), *ptrs.last().unwrap(), "the newest first");
        let second = pool.take(64);
        assert_eq!(second.as_ptr(), ptrs[ptrs.len() - 2]);
    }

    #[test]
    fn a_frame_larger_than_every_free_buffer_gets_a_new_one() {
        let mut pool = LargePool::default();
        let mut buf = pool.take(100);
        buf.extend_from_slice(&[1; 100]);
        drop(pool.share(buf));
        let big = pool.take(10_000);
        assert!(big.capacity() >= 10_000);
        assert_eq!(
            pool.kept.len(),
            1,
            "the small one stays kept for small frames"
        );
    }
}
