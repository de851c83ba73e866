//! Counting frames in a byte stream that arrives in pieces, without keeping the bytes: the
//! relay uses it to tell how many messages a dead data link took with it (the queue is a run
//! of frames, partly handed to the kernel). Client and link frames share the 6-byte header
//! (`body_len: u32 LE`, kind, flags), so one walk serves both.

#![forbid(unsafe_code)]

use super::HEADER_LEN;

/// Where a walk stands in a stream of frames: inside a header (some of its bytes seen) or
/// inside a body (so many bytes left). The default stands at a frame boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameWalk {
    /// Body bytes left of the current frame.
    body_left: u64,
    /// Header bytes of the next frame seen so far (0 ..< HEADER_LEN).
    header: [u8; HEADER_LEN],
    header_seen: usize,
}

impl FrameWalk {
    /// Whether the walk stands exactly between two frames.
    pub fn at_boundary(&self) -> bool {
        self.body_left == 0 && self.header_seen == 0
    }

    /// Moves past `bytes`; returns how many frames began in them (their first header byte).
    pub fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut began = 0;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = usize::try_from(self.body_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[take..];
                self.body_left -= take as u64;
                continue;
            }
            if self.header_seen == 0 {
                began += 1;
            }
            let take = (HEADER_LEN - self.header_seen).min(bytes.len());
            self.header[self.header_seen..self.header_seen + take].copy_from_slice(&bytes[..take]);
            self.header_seen += take;
            bytes = &bytes[take..];
            if self.header_seen == HEADER_LEN {
                let [l0, l1, l2, l3, ..] = self.header;
                self.body_left = u64::from(u32::from_le_bytes([l0, l1, l2, l3]));
                self.header_seen = 0;
            }
        }
        began
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;

    fn frames(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let payload = vec![7u8; i * 13];
            Frame::Send {
                target: b"t",
                payload: &payload,
            }
            .encode(&mut out)
            .unwrap();
        }
        out
    }

    #[test]
    fn counts_every_frame_however_the_stream_is_cut() {
        let bytes = frames(20);
        for piece in [1, 2, 5, 6, 7, 64, bytes.len()] {
            let mut walk = FrameWalk::default();
            let began: u64 = bytes.chunks(piece).map(|c| walk.feed(c)).sum();
            assert_eq!(began, 20, "pieces of {piece}");
            assert!(walk.at_boundary());
        }
    }

    #[test]
    fn after_a_cut_the_rest_holds_every_frame_not_wholly_before_it() {
        let bytes = frames(5);
        let mut ends = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let body = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            at += HEADER_LEN + body;
            ends.push(at);
        }
        for cut in 0..=bytes.len() {
            let mut walk = FrameWalk::default();
            walk.feed(&bytes[..cut]);
            let mid_frame = !walk.at_boundary();
            let later = walk.feed(&bytes[cut..]);
            let wholly_before = ends.iter().filter(|&&end| end <= cut).count() as u64;
            assert_eq!(
                later + u64::from(mid_frame),
                5 - wholly_before,
                "cut at {cut}"
            );
        }
    }
}
