//! Accumulating frame reader for stream transports (used by the client and the load
//! generator; the relay's I/O layer decodes straight from its receive buffers instead).

use super::codec::{decode, Decoded};
use super::frame::{DecodeError, Frame};

/// Buffers stream bytes and yields whole frames. Memory is bounded by `max_frame_bytes` plus
/// whatever the caller appends in one `extend`/`fill_from` call.
///
/// The buffer's bytes past `end` are kept between reads (zeroed once, when it grows), so a
/// read does not clear its room first: a 64 KiB memset per small read was the client's
/// largest cost after the clock.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    /// Bytes in `buf[start..end]` are received and not yet returned as frames.
    end: usize,
    max_frame_bytes: usize,
}

impl FrameReader {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max_frame_bytes,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.make_room(bytes.len());
        self.buf[self.end..self.end + bytes.len()].copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Reads once from `src` into spare room (at least `min_read` bytes of it). Returns the
    /// byte count, 0 at end of stream.
    pub fn fill_from<R: std::io::Read>(
        &mut self,
        src: &mut R,
        min_read: usize,
    ) -> std::io::Result<usize> {
        self.compact();
        self.make_room(min_read.max(4096));
        let n = src.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Grows the buffer (zero-filled, once) so at least `room` bytes follow `end`.
    fn make_room(&mut self, room: usize) {
        if self.buf.len() < self.end + room {
            self.buf.resize(self.end + room, 0);
        }
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        match decode(&self.buf[self.start..self.end], self.max_frame_bytes)? {
            Decoded::Frame { frame, consumed } => {
                self.start += consumed;
                Ok(Some(frame))
            }
            Decoded::NeedMore { .. } => Ok(None),
        }
    }

    /// As [`Self::next_frame`], but the frame is taken only if `wanted` says so; otherwise it
    /// stays for the next call and `Ok(None)` is returned, as when more bytes are needed.
    pub fn next_frame_if(
        &mut self,
        wanted: impl FnOnce(&Frame<'_>) -> bool,
    ) -> Result<Option<Frame<'_>>, DecodeError> {
        match decode(&self.buf[self.start..self.end], self.max_frame_bytes)? {
            Decoded::Frame { frame, consumed } if wanted(&frame) => {
                self.start += consumed;
                Ok(Some(frame))
            }
            Decoded::Frame { .. } | Decoded::NeedMore { .. } => Ok(None),
        }
    }

    /// Moves the unread bytes to the front.
    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}
