//! One reassembly for every stream a worker reads (client connections and data links share
//! the framing): whole frames out of received chunks through a [`StreamDecoder`], with the
//! diversion of an unfinished large frame left to the caller (the zero-copy path) before any
//! of it is copied.

use crate::protocol::{FrameTooLarge, StreamDecoder};
use std::ops::RangeInclusive;

/// Where reassembly of one receive stopped.
pub enum Reassembled<'d> {
    /// Every byte was consumed (an unfinished tail, if any, is buffered in the decoder).
    Drained,
    /// The frame handler asked to stop; `rest` is what it did not see of `data`.
    Halted { rest: &'d [u8] },
    /// An unfinished frame in the diversion band starts at `head`, nothing of it buffered.
    Divert { head: &'d [u8], frame_bytes: usize },
}

/// Whole frame size announced by a complete header at the front of `data`.
fn announced_frame_bytes(data: &[u8]) -> Option<usize> {
    match *data {
        [l0, l1, l2, l3, _, _, ..] => usize::try_from(u32::from_le_bytes([l0, l1, l2, l3]))
            .ok()
            .and_then(|n| n.checked_add(crate::protocol::HEADER_LEN)),
        _ => None,
    }
}

/// Feeds `data` to `decoder` and hands every whole frame to `on_frame` (false stops). With a
/// `divert` band, an unfinished frame in it that starts in `data` (nothing buffered) is left
/// to the caller instead of being copied into the decoder.
pub fn reassemble<'d>(
    decoder: &mut StreamDecoder,
    mut data: &'d [u8],
    divert: Option<&RangeInclusive<usize>>,
    mut on_frame: impl FnMut(&[u8]) -> bool,
) -> Result<Reassembled<'d>, FrameTooLarge> {
    loop {
        if let Some(band) = divert {
            if decoder.buffered() == 0 {
                if let Some(frame_bytes) = announced_frame_bytes(data) {
                    if data.len() < frame_bytes
                        && band.contains(&frame_bytes)
                        && frame_bytes <= decoder.max_frame_bytes()
                    {
                        return Ok(Reassembled::Divert {
                            head: data,
                            frame_bytes,
                        });
                    }
                }
            }
        }
        match decoder.next(&mut data)? {
            Some(frame) => {
                if !on_frame(frame) {
                    return Ok(Reassembled::Halted { rest: data });
                }
            }
            None => return Ok(Reassembled::Drained),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Frame;

    fn wire(frames: &[Frame<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            f.encode(&mut out).unwrap();
        }
        out
    }

    fn pings(n: u64) -> Vec<u8> {
        wire(
            &(0..n)
                .map(|nonce| Frame::Ping { nonce })
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn frames_split_across_receives_come_out_whole_and_in_order() {
        let bytes = pings(5);
        let mut decoder = StreamDecoder::new(1 << 20);
        let mut seen = Vec::new();
        for chunk in bytes.chunks(4) {
            let r = reassemble(&mut decoder, chunk, None, |f| {
                seen.extend_from_slice(f);
                true
            });
            assert!(matches!(r, Ok(Reassembled::Drained)));
        }
        assert_eq!(seen, bytes);
    }

    #[test]
    fn unfinished_frame_in_the_band_is_diverted_without_buffering() {
        let payload = vec![7u8; 1000];
        let mut bytes = pings(1);
        let ping_len = bytes.len();
        bytes.extend(wire(&[Frame::Send {
            target: b"b",
            payload: &payload,
        }]));
        let big = bytes.len() - ping_len;
        let mut decoder = StreamDecoder::new(1 << 20);
        let mut frames = 0;
        let r = reassemble(
            &mut decoder,
            &bytes[..ping_len + 100],
            Some(&(500..=2000)),
            |_| {
                frames += 1;
                true
            },
        );
        match r {
            Ok(Reassembled::Divert { head, frame_bytes }) => {
                assert_eq!(frame_bytes, big);
                assert_eq!(head, &bytes[ping_len..ping_len + 100]);
            }
            _ => panic!("expected a diversion"),
        }
        assert_eq!(frames, 1, "the frame before it is applied");
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn frame_in_the_band_is_not_diverted_when_it_is_whole_or_out_of_band() {
        let payload = vec![7u8; 1000];
        let bytes = wire(&[Frame::Send {
            target: b"b",
            payload: &payload,
        }]);
        let mut decoder = StreamDecoder::new(1 << 20);
        let r = reassemble(&mut decoder, &bytes, Some(&(500..=2000)), |_| true);
        assert!(matches!(r, Ok(Reassembled::Drained)));
        let r = reassemble(&mut decoder, &bytes[..100], Some(&(2000..=4000)), |_| true);
        assert!(matches!(r, Ok(Reassembled::Drained)));
        assert_eq!(decoder.buffered(), 100);
    }

    #[test]
    fn handler_refusing_a_frame_halts_reassembly() {
        let bytes = pings(3);
        let mut decoder = StreamDecoder::new(1 << 20);
        let mut frames = 0;
        let r = reassemble(&mut decoder, &bytes, None, |_| {
            frames += 1;
            false
        });
        assert!(matches!(r, Ok(Reassembled::Halted { .. })));
        assert_eq!(frames, 1);
    }

    #[test]
    fn oversized_frame_is_an_error_and_never_diverted() {
        let payload = vec![7u8; 1000];
        let bytes = wire(&[Frame::Send {
            target: b"b",
            payload: &payload,
        }]);
        let mut decoder = StreamDecoder::new(512);
        let r = reassemble(&mut decoder, &bytes[..100], Some(&(500..=2000)), |_| true);
        assert!(r.is_err());
    }
}
