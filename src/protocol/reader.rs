//! Accumulating frame reader for stream transports (used by the client and the load
//! generator; the relay's I/O layer decodes straight from its receive buffers instead).

use super::codec::{decode, Decoded};
use super::frame::{DecodeError, Frame};

/// Buffers stream bytes and yields whole frames. Memory is bounded by `max_frame_bytes` plus
/// whatever the caller appends in one `extend`/`fill_from` call.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    max_frame_bytes: usize,
}

impl FrameReader {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameReader {
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            max_frame_bytes,
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Reads once from `src` into spare capacity (at least `min_read` bytes of room). Returns the
    /// byte count, 0 at end of stream.
    pub fn fill_from<R: std::io::Read>(
        &mut self,
        src: &mut R,
        min_read: usize,
    ) -> std::io::Result<usize> {
        self.compact();
        let len = self.buf.len();
        let room = min_read.max(4096);
        self.buf.resize(len + room, 0);
        let result = src.read(&mut self.buf[len..]);
        let n = *result.as_ref().unwrap_or(&0);
        self.buf.truncate(len + n);
        result
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DecodeError> {
        match decode(&self.buf[self.start..], self.max_frame_bytes)? {
            Decoded::Frame { frame, consumed } => {
                self.start += consumed;
                Ok(Some(frame))
            }
            Decoded::NeedMore { .. } => Ok(None),
        }
    }

    fn compact(&mut self) {
        if self.start == 0 {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
        } else {
            self.buf.drain(..self.start);
        }
        self.start = 0;
    }
}
