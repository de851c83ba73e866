//! Sans-IO stream reassembly: whole frames out of arbitrarily split received chunks.
//!
//! Client frames and cluster link frames share the 6-byte header whose first four bytes are
//! `body_len: u32 LE` (PROTOCOL.md), so one reassembler serves both. It knows nothing about
//! kinds, flags or bodies: it only cuts `header + body` units out of the byte stream and leaves
//! decoding them to [`decode`](super::decode) or `cluster::wire::{decode_link, decode_data}`.
//!
//! * Zero copy for the common case: a frame lying wholly inside one received chunk is returned
//!   as a slice of that chunk. Only a frame straddling chunks is copied, into the decoder's own
//!   `partial` buffer, and returned as a slice of it once complete.
//! * Bounded by construction: the frame size is checked from the header before any body byte
//!   is buffered, so `buffered() <= max_frame_bytes` after every successful call, and `partial`
//!   never grows beyond the size of the frame it holds.
//! * Never panics on any input.
//!
//! Kind and flags are not its business; a caller keeping the decode order of PROTOCOL.md 1.2
//! (a bad kind or flags refused from the header, before the body is waited for) runs its
//! decoder on [`StreamDecoder::pending`] whenever [`StreamDecoder::next`] returns `Ok(None)`.

use super::frame::DecodeError;
use super::HEADER_LEN;
use std::fmt;

/// A buffer that held a straddling frame of more than this many bytes is released instead of
/// kept for the next one, so an idle connection does not pin the memory of its largest frame.
/// 16 KiB: one receive buffer's worth, so an idle connection pins little.
pub const PARTIAL_RETAIN_MAX: usize = 16 * 1024;

/// A frame header announced more bytes (header included) than the decoder's bound.
///
/// When the bound is below [`HEADER_LEN`] no frame can fit at all: the first byte of any frame
/// is then refused, with `frame_bytes = HEADER_LEN` (the smallest possible frame) whatever its
/// header says, so that nothing is ever buffered beyond the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// Whole size of the announced frame, header included (`body_len + 6`, up to 2^32 + 5).
    pub frame_bytes: u64,
    /// The bound in force when the header was read.
    pub max: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame of {} bytes exceeds the limit of {} bytes",
            self.frame_bytes, self.max
        )
    }
}

impl std::error::Error for FrameTooLarge {}

impl From<FrameTooLarge> for DecodeError {
    fn from(e: FrameTooLarge) -> DecodeError {
        DecodeError::FrameTooLarge {
            frame_bytes: e.frame_bytes,
            max_frame_bytes: e.max,
        }
    }
}

/// Reassembles whole frames (`header + body`) from a byte stream received in chunks.
///
/// ```
/// use ringrelay::protocol::{Frame, StreamDecoder};
/// let mut wire = Vec::new();
/// Frame::Ping { nonce: 1 }.encode(&mut wire).unwrap();
/// Frame::Pong { nonce: 2 }.encode(&mut wire).unwrap();
/// let mut dec = StreamDecoder::new(1 << 20);
/// let mut frames = Vec::new();
/// for chunk in wire.chunks(5) {
///     let mut data = chunk;
///     while let Some(frame) = dec.next(&mut data).unwrap() {
///         frames.push(frame.to_vec());
///     }
/// }
/// assert_eq!(frames.concat(), wire);
/// ```
///
/// After [`next`](Self::next) returns an error the stream is unusable (its framing is lost):
/// the caller closes the connection and calls [`clear`](Self::clear) before any reuse. Until
/// then every further call reports the same error again and consumes nothing.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    /// Bytes of the frame being reassembled (never more than that frame's size).
    partial: Vec<u8>,
    /// `partial` holds a whole frame already returned; it is cleared on the next call.
    returned: bool,
    max_frame_bytes: usize,
}

impl StreamDecoder {
    /// A decoder refusing frames (header included) of more than `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        StreamDecoder {
            partial: Vec::new(),
            returned: false,
            max_frame_bytes,
        }
    }

    /// Lowers or raises the bound (e.g. a small bound before the client's HELLO, the full one
    /// after). It applies to the frame being buffered too: if that frame no longer fits, the
    /// next call of [`next`](Self::next) reports it.
    pub fn set_max_frame_bytes(&mut self, max: usize) {
        self.max_frame_bytes = max;
    }

    /// The bound in force.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// The next whole frame (header included) from the buffered bytes followed by `data`;
    /// advances `data` past the bytes it consumed.
    ///
    /// * `Ok(Some(frame))`: a whole frame, borrowed from `data` when it lay wholly inside it
    ///   (no copy), else from the decoder's buffer until the next call.
    /// * `Ok(None)`: `data` is exhausted and any unfinished tail is now buffered.
    /// * `Err(_)`: a header announced a frame above the bound; nothing of that frame was
    ///   consumed or buffered beyond its header. See the type's doc for what to do next.
    ///
    /// The returned slice borrows the decoder for one iteration only, so a caller loops
    /// `while let Some(frame) = dec.next(&mut data)? { ... }`.
    ///
    /// Inlined into the receive loops with the unbuffered case, the buffered ones kept out of
    /// line: a call through the GOT per frame, 4 % of the relay's `perf` samples at 1->1 16 B
    /// (`benches/ab_cpu.sh`, 1->1 16 B, `PAIRS=10`: 51.5 -> 48.5 ns, paired -6.4 %).
    #[inline]
    pub fn next<'s, 'd: 's>(
        &'s mut self,
        data: &mut &'d [u8],
    ) -> Result<Option<&'s [u8]>, FrameTooLarge> {
        if self.returned {
            self.returned = false;
            if self.partial.capacity() > PARTIAL_RETAIN_MAX {
                self.partial = Vec::new();
            } else {
                self.partial.clear();
            }
        }
        if self.max_frame_bytes < HEADER_LEN && !(self.partial.is_empty() && data.is_empty()) {
            // No frame fits, not even a header: refuse the first byte rather than buffer it.
            return Err(FrameTooLarge {
                frame_bytes: HEADER_LEN as u64,
                max: self.max_frame_bytes,
            });
        }
        if self.partial.is_empty() {
            self.next_from_chunk(data)
        } else {
            self.continue_partial(data)
        }
    }

    /// Nothing buffered: cut the next frame straight out of `data`.
    #[inline]
    fn next_from_chunk<'s, 'd: 's>(
        &'s mut self,
        data: &mut &'d [u8],
    ) -> Result<Option<&'s [u8]>, FrameTooLarge> {
        let chunk: &'d [u8] = data;
        if chunk.is_empty() {
            return Ok(None);
        }
        let Some(frame_bytes) = header_frame_bytes(chunk) else {
            // An incomplete header: buffer it (at most HEADER_LEN - 1 bytes, within the bound).
            self.append(chunk, HEADER_LEN);
            *data = &[];
            return Ok(None);
        };
        let frame_bytes = self.check(frame_bytes)?;
        match (chunk.get(..frame_bytes), chunk.get(frame_bytes..)) {
            (Some(frame), Some(rest)) => {
                *data = rest;
                Ok(Some(frame))
            }
            _ => {
                // The frame goes on in a later chunk: buffer what is here (< frame_bytes).
                self.append(chunk, frame_bytes);
                *data = &[];
                Ok(None)
            }
        }
    }

    /// A frame is partly buffered: complete its header, then its body, from `data`.
    #[inline(never)]
    fn continue_partial<'s, 'd: 's>(
        &'s mut self,
        data: &mut &'d [u8],
    ) -> Result<Option<&'s [u8]>, FrameTooLarge> {
        let frame_bytes = match header_frame_bytes(&self.partial) {
            Some(frame_bytes) => self.check(frame_bytes)?,
            None => {
                let chunk: &'d [u8] = data;
                let missing = HEADER_LEN.saturating_sub(self.partial.len());
                let take = missing.min(chunk.len());
                let (head, rest) = chunk.split_at(take);
                self.append(head, HEADER_LEN);
                *data = rest;
                match header_frame_bytes(&self.partial) {
                    Some(frame_bytes) => self.check(frame_bytes)?,
                    None => return Ok(None), // `data` ran out inside the header.
                }
            }
        };
        let chunk: &'d [u8] = data;
        let missing = frame_bytes.saturating_sub(self.partial.len());
        let take = missing.min(chunk.len());
        let (body, rest) = chunk.split_at(take);
        self.append(body, frame_bytes);
        *data = rest;
        if self.partial.len() < frame_bytes {
            return Ok(None);
        }
        self.returned = true;
        Ok(Some(&self.partial))
    }

    /// Checks a frame size read from a header against the bound; the size fits a `usize` then.
    fn check(&self, frame_bytes: u64) -> Result<usize, FrameTooLarge> {
        let too_large = FrameTooLarge {
            frame_bytes,
            max: self.max_frame_bytes,
        };
        if frame_bytes > self.max_frame_bytes as u64 {
            return Err(too_large);
        }
        usize::try_from(frame_bytes).map_err(|_| too_large)
    }

    /// Appends `bytes` to `partial`, whose frame is `frame_bytes` long (HEADER_LEN while the
    /// header is incomplete): capacity grows geometrically but never past the frame's size.
    #[inline(never)]
    fn append(&mut self, bytes: &[u8], frame_bytes: usize) {
        let len = self.partial.len();
        let needed = len.saturating_add(bytes.len());
        if needed > self.partial.capacity() {
            let target = needed.max(frame_bytes.min(self.partial.capacity().saturating_mul(2)));
            self.partial.reserve_exact(target - len);
        }
        self.partial.extend_from_slice(bytes);
        debug_assert!(self.partial.len() <= frame_bytes);
        debug_assert!(self.partial.len() <= self.max_frame_bytes);
    }

    /// Whole size (header included) of the frame being buffered, once its header is known.
    /// `None` when nothing is buffered or the header is still incomplete.
    pub fn pending_frame_bytes(&self) -> Option<usize> {
        if self.returned {
            return None;
        }
        header_frame_bytes(&self.partial).and_then(|n| usize::try_from(n).ok())
    }

    /// Bytes buffered of the unfinished frame (0 once a frame completed in the buffer has been
    /// returned).
    pub fn buffered(&self) -> usize {
        if self.returned {
            0
        } else {
            self.partial.len()
        }
    }

    /// The buffered bytes of the unfinished frame (empty once a frame completed in the buffer
    /// has been returned). After `Ok(None)` a caller may run its kind-aware decoder on them to
    /// refuse a bad kind or flags from the header, before the body is waited for (the decode
    /// order of PROTOCOL.md 1.2); such a decoder answers "need more" for a good header.
    pub fn pending(&self) -> &[u8] {
        if self.returned {
            &[]
        } else {
            &self.partial
        }
    }

    /// Moves the buffered bytes of the unfinished frame out, leaving the decoder empty (the
    /// server diverts a large frame into a buffer of its own and receives the rest there). It
    /// allocates nothing: the caller reserves room for the rest, [`pending_frame_bytes`] in
    /// all, if it wants it (reserving what a header announces is the caller's decision).
    ///
    /// [`pending_frame_bytes`]: Self::pending_frame_bytes
    /// Memory this decoder holds for an unfinished frame (its buffer's capacity while it
    /// holds bytes; an empty buffer keeps at most [`PARTIAL_RETAIN_MAX`], counted apart).
    pub fn held_bytes(&self) -> usize {
        if self.partial.is_empty() {
            0
        } else {
            self.partial.capacity()
        }
    }

    pub fn take_buffered(&mut self) -> Vec<u8> {
        if self.returned {
            self.clear();
            return Vec::new();
        }
        std::mem::take(&mut self.partial)
    }

    /// Forgets everything buffered (after an error, or to reuse the decoder for a new stream),
    /// keeping at most [`PARTIAL_RETAIN_MAX`] of buffer.
    pub fn clear(&mut self) {
        if self.partial.capacity() > PARTIAL_RETAIN_MAX {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
        }
        self.returned = false;
    }
}

/// Whole frame size announced by the header at the front of `buf`, if the header is all there.
fn header_frame_bytes(buf: &[u8]) -> Option<u64> {
    match *buf {
        [l0, l1, l2, l3, _, _, ..] => {
            Some(u64::from(u32::from_le_bytes([l0, l1, l2, l3])) + HEADER_LEN as u64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_le_bytes().to_vec();
        v.push(kind);
        v.push(0);
        v.extend_from_slice(body);
        v
    }

    /// Feeds `chunks` one after another; returns the frames and the buffered count after each
    /// call, panicking on an error.
    fn feed(dec: &mut StreamDecoder, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut data = *chunk;
            while let Some(frame) = dec.next(&mut data).unwrap() {
                out.push(frame.to_vec());
                assert!(dec.buffered() <= dec.max_frame_bytes());
            }
            assert!(data.is_empty());
            assert!(dec.buffered() <= dec.max_frame_bytes());
        }
        out
    }

    fn stream() -> (Vec<u8>, Vec<Vec<u8>>) {
        let frames = vec![
            raw(0x30, &[1; 8]),
            raw(0x10, b"\x03bobhello"),
            raw(0x90, b""),
            raw(0x11, &[7; 300]),
            raw(0x31, &[2; 8]),
        ];
        (frames.concat(), frames)
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let (wire, frames) = stream();
        for a in 0..=wire.len() {
            let mut dec = StreamDecoder::new(1024);
            assert_eq!(
                feed(&mut dec, &[&wire[..a], &wire[a..]]),
                frames,
                "split {a}"
            );
            assert_eq!(dec.buffered(), 0);
        }
        // Two split points, a sample of them (all pairs would be ~50k decodes: fine but slow
        // in debug builds).
        for a in (0..=wire.len()).step_by(7) {
            for b in (a..=wire.len()).step_by(5) {
                let mut dec = StreamDecoder::new(1024);
                let got = feed(&mut dec, &[&wire[..a], &wire[a..b], &wire[b..]]);
                assert_eq!(got, frames, "splits {a} {b}");
            }
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(feed(&mut StreamDecoder::new(1024), &bytes), frames);
    }

    #[test]
    fn frames_inside_a_chunk_are_not_copied() {
        let (wire, _) = stream();
        let mut dec = StreamDecoder::new(1024);
        let mut data = &wire[..];
        let first = dec.next(&mut data).unwrap().unwrap();
        assert_eq!(first.as_ptr(), wire.as_ptr());
        assert_eq!(dec.partial.capacity(), 0);
    }

    #[test]
    fn header_split_across_three_chunks() {
        let frame = raw(0x10, b"\x01ab");
        let mut dec = StreamDecoder::new(1024);
        assert!(feed(&mut dec, &[&frame[..2]]).is_empty());
        assert_eq!(dec.pending_frame_bytes(), None);
        assert!(feed(&mut dec, &[&frame[2..4]]).is_empty());
        assert_eq!((dec.buffered(), dec.pending_frame_bytes()), (4, None));
        assert_eq!(dec.pending(), &frame[..4]);
        assert!(feed(&mut dec, &[&frame[4..5]]).is_empty());
        let got = feed(&mut dec, &[&frame[5..]]);
        assert_eq!(got, vec![frame.clone()]);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn bound_is_checked_before_any_body_byte() {
        let big = raw(0x10, &[0; 100]);
        let mut dec = StreamDecoder::new(50);
        // The header alone is refused, whether it arrives whole or split.
        let mut data = &big[..HEADER_LEN];
        let err = FrameTooLarge {
            frame_bytes: 106,
            max: 50,
        };
        assert_eq!(dec.next(&mut data), Err(err));
        assert_eq!(
            data.len(),
            HEADER_LEN,
            "nothing of the bad frame is consumed"
        );
        assert_eq!(dec.buffered(), 0);
        let mut data = &big[..3];
        assert_eq!(dec.next(&mut data), Ok(None));
        let mut data = &big[3..];
        assert_eq!(dec.next(&mut data), Err(err));
        assert_eq!(dec.buffered(), HEADER_LEN, "only the header is buffered");
        // The error is sticky until clear().
        assert_eq!(dec.next(&mut &b"more"[..]), Err(err));
        dec.clear();
        assert_eq!(dec.buffered(), 0);
        let ok = raw(0x30, &[0; 8]);
        assert_eq!(feed(&mut dec, &[&ok]), vec![ok.clone()]);
        // Exactly at the bound is fine.
        let exact = raw(0x30, &[0; 44]);
        assert_eq!(feed(&mut dec, &[&exact[..10], &exact[10..]]), vec![exact]);
        // The largest header a u32 can announce does not overflow anything.
        let mut huge = raw(0x10, b"");
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut data = &huge[..];
        assert_eq!(
            StreamDecoder::new(usize::MAX).next(&mut data),
            Ok(None),
            "waits for the body"
        );
        assert_eq!(
            dec.next(&mut &huge[..]),
            Err(FrameTooLarge {
                frame_bytes: u64::from(u32::MAX) + 6,
                max: 50
            })
        );
    }

    #[test]
    fn bound_below_a_header_refuses_everything() {
        let err = FrameTooLarge {
            frame_bytes: HEADER_LEN as u64,
            max: 5,
        };
        let mut dec = StreamDecoder::new(5);
        assert_eq!(dec.next(&mut &[][..]), Ok(None));
        assert_eq!(dec.next(&mut &[0u8][..]), Err(err));
        assert_eq!(dec.next(&mut &[0u8; 20][..]), Err(err));
        assert_eq!(dec.buffered(), 0);
        // Lowered below a header while bytes are buffered: refused even with no new data.
        let mut dec = StreamDecoder::new(1024);
        assert_eq!(dec.next(&mut &[1u8, 0][..]), Ok(None));
        dec.set_max_frame_bytes(0);
        assert_eq!(
            dec.next(&mut &[][..]),
            Err(FrameTooLarge {
                frame_bytes: HEADER_LEN as u64,
                max: 0
            })
        );
    }

    #[test]
    fn take_buffered_moves_the_unfinished_frame_out() {
        let frame = raw(0x10, &[9; 1000]);
        let first = raw(0x30, &[1; 8]);
        let chunk = [&first[..], &frame[..100]].concat();
        let mut dec = StreamDecoder::new(4096);
        assert_eq!(feed(&mut dec, &[&chunk]), vec![first]);
        assert_eq!(dec.pending_frame_bytes(), Some(frame.len()));
        assert_eq!(dec.buffered(), 100);
        let mut taken = dec.take_buffered();
        assert_eq!(taken, &frame[..100]);
        assert!(taken.capacity() < frame.len(), "no hidden reservation");
        assert_eq!((dec.buffered(), dec.pending_frame_bytes()), (0, None));
        taken.extend_from_slice(&frame[100..]);
        assert_eq!(taken, frame);
        // The decoder goes on with the next frame.
        let next = raw(0x31, &[2; 8]);
        assert_eq!(feed(&mut dec, &[&next]), vec![next]);
        // Header not yet complete: the bytes still come out, with no size known.
        assert!(feed(&mut dec, &[&frame[..4]]).is_empty());
        assert_eq!(dec.take_buffered(), &frame[..4]);
    }

    #[test]
    fn set_max_frame_bytes_raises_and_lowers_the_bound() {
        let frame = raw(0x10, &[0; 200]);
        let mut dec = StreamDecoder::new(64);
        assert!(dec.next(&mut &frame[..]).is_err());
        dec.clear();
        dec.set_max_frame_bytes(1024);
        assert_eq!(dec.max_frame_bytes(), 1024);
        assert_eq!(
            feed(&mut dec, &[&frame[..50], &frame[50..]]),
            vec![frame.clone()]
        );
        // Lowered while a frame is buffered: the next call reports that it no longer fits.
        assert!(feed(&mut dec, &[&frame[..50]]).is_empty());
        dec.set_max_frame_bytes(100);
        let mut rest = &frame[50..];
        assert_eq!(
            dec.next(&mut rest),
            Err(FrameTooLarge {
                frame_bytes: 206,
                max: 100
            })
        );
        assert_eq!(rest.len(), frame.len() - 50);
    }

    #[test]
    fn zero_length_bodies() {
        let empty = raw(0x90, b"");
        let wire = [&empty[..], &empty[..], &empty[..]].concat();
        let mut dec = StreamDecoder::new(HEADER_LEN);
        assert_eq!(feed(&mut dec, &[&wire]).len(), 3);
        assert_eq!(feed(&mut dec, &[&wire[..4], &wire[4..14]]).len(), 2);
        assert_eq!(feed(&mut dec, &[&wire[14..]]).len(), 1);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn a_frame_completed_in_the_buffer_is_cleared_lazily() {
        let a = raw(0x30, &[1; 8]);
        let b = raw(0x31, &[2; 8]);
        let mut dec = StreamDecoder::new(1024);
        assert_eq!(dec.next(&mut &a[..5]), Ok(None));
        let wire = [&a[5..], &b[..]].concat();
        let mut data = &wire[..];
        assert_eq!(dec.next(&mut data), Ok(Some(&a[..])));
        // Still held (the slice borrowed it) but no longer counted as buffered.
        assert_eq!(dec.partial.len(), a.len());
        assert_eq!((dec.buffered(), dec.pending_frame_bytes()), (0, None));
        assert!(dec.pending().is_empty());
        assert_eq!(dec.next(&mut data), Ok(Some(&b[..])));
        assert!(dec.partial.is_empty());
        assert_eq!(dec.next(&mut data), Ok(None));
        // take_buffered after a returned frame gives nothing.
        assert_eq!(dec.next(&mut &a[..7]), Ok(None));
        assert_eq!(dec.next(&mut &a[7..]), Ok(Some(&a[..])));
        assert!(dec.take_buffered().is_empty());
    }

    #[test]
    fn partial_grows_only_to_the_frame_size() {
        let frame = raw(0x10, &[5; 3000]);
        let mut dec = StreamDecoder::new(1 << 20);
        for chunk in frame.chunks(7) {
            let mut data = chunk;
            while dec.next(&mut data).unwrap().is_some() {}
            assert!(dec.partial.capacity() <= frame.len());
        }
        // A big straddling frame's buffer is released after it is returned.
        let big = raw(0x10, &vec![5; PARTIAL_RETAIN_MAX + 1]);
        assert_eq!(feed(&mut dec, &[&big[..10], &big[10..]]).len(), 1);
        assert_eq!(dec.next(&mut &b""[..]), Ok(None));
        assert_eq!(dec.partial.capacity(), 0);
    }

    #[test]
    fn errors_display_and_convert() {
        let e = FrameTooLarge {
            frame_bytes: 10,
            max: 8,
        };
        assert_eq!(
            e.to_string(),
            "frame of 10 bytes exceeds the limit of 8 bytes"
        );
        let _: &dyn std::error::Error = &e;
        assert_eq!(
            DecodeError::from(e),
            DecodeError::FrameTooLarge {
                frame_bytes: 10,
                max_frame_bytes: 8
            }
        );
    }
}
