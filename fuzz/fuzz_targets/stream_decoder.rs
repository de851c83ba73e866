//! `StreamDecoder` over arbitrary bytes cut into arbitrary chunks, against decoding the
//! concatenation from the start. Input layout: `[max selector][n][n chunk-length bytes][stream]`
//! (see README.md).

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use ringrelay::cluster::wire::{decode_link, LinkDecodeError, LinkMsg};
use ringrelay::protocol::{decode, DecodeError, Decoded, FrameTooLarge, StreamDecoder, HEADER_LEN};
use ringrelay_fuzz::{split, MAXES};

fuzz_target!(|data: &[u8]| {
    let [sel, n, rest @ ..] = data else {
        return;
    };
    let max = MAXES[usize::from(*sel) % MAXES.len()];
    let (spec, stream) = rest.split_at(usize::from(*n).min(rest.len()));
    let chunks = split(&mut Unstructured::new(spec), stream);
    assert_eq!(chunks.concat(), stream);
    check_framing(&chunks, stream, max);
    check_as_client_reader(&chunks, stream, max);
    check_as_link_reader(&chunks, stream, max);
});

/// What a reassembler must give for `stream`: its whole frames, then the first error or the
/// unfinished tail.
fn reference(stream: &[u8], max: usize) -> (Vec<&[u8]>, Result<&[u8], FrameTooLarge>) {
    if max < HEADER_LEN {
        // No frame fits; the first byte of a frame is refused (documented on FrameTooLarge).
        let end = if stream.is_empty() {
            Ok(stream)
        } else {
            Err(FrameTooLarge {
                frame_bytes: HEADER_LEN as u64,
                max,
            })
        };
        return (Vec::new(), end);
    }
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        let [l0, l1, l2, l3, _, _, ..] = *rest else {
            return (frames, Ok(rest));
        };
        let frame_bytes = u64::from(u32::from_le_bytes([l0, l1, l2, l3])) + HEADER_LEN as u64;
        if frame_bytes > max as u64 {
            return (frames, Err(FrameTooLarge { frame_bytes, max }));
        }
        match rest.split_at_checked(frame_bytes as usize) {
            Some((frame, tail)) => {
                frames.push(frame);
                rest = tail;
            }
            None => return (frames, Ok(rest)),
        }
    }
}

/// Runs `dec` over `chunks`, handing each frame to `on_frame` (which may stop the stream with
/// an error, as a caller closing the connection) and, after each `Ok(None)`, the unfinished
/// frame to `on_pending`. Returns the first error.
fn run<E>(
    dec: &mut StreamDecoder,
    chunks: &[&[u8]],
    mut on_frame: impl FnMut(&[u8]) -> Result<(), E>,
    mut on_pending: impl FnMut(&[u8]) -> Result<(), E>,
    too_large: impl Fn(FrameTooLarge) -> E,
) -> Result<(), E> {
    let max = dec.max_frame_bytes();
    for chunk in chunks {
        let mut data = *chunk;
        loop {
            let before = data.len();
            let result = dec.next(&mut data);
            assert!(data.len() <= before);
            match result {
                Ok(Some(frame)) => {
                    on_frame(frame)?;
                    assert!(dec.buffered() <= max);
                }
                Ok(None) => {
                    assert!(data.is_empty(), "Ok(None) leaves no data behind");
                    assert!(dec.buffered() <= max);
                    assert_eq!(dec.buffered(), dec.pending().len());
                    on_pending(dec.pending())?;
                    break;
                }
                Err(e) => {
                    assert!(dec.buffered() <= max.max(HEADER_LEN));
                    // The error sticks until clear().
                    assert_eq!(dec.next(&mut data), Err(e));
                    return Err(too_large(e));
                }
            }
        }
    }
    Ok(())
}

/// Frames, error and tail equal those found on the concatenation; frames are never above the
/// bound and `take_buffered` hands the tail out.
fn check_framing(chunks: &[&[u8]], stream: &[u8], max: usize) {
    let (want_frames, want_end) = reference(stream, max);
    let mut dec = StreamDecoder::new(max);
    let mut frames = Vec::new();
    let end = run(
        &mut dec,
        chunks,
        |f| {
            assert!(f.len() >= HEADER_LEN && f.len() <= max);
            frames.push(f.to_vec());
            Ok(())
        },
        |_| Ok(()),
        |e| e,
    );
    assert_eq!(frames, want_frames);
    match (end, want_end) {
        (Err(got), Err(want)) => assert_eq!(got, want),
        (Ok(()), Ok(tail)) => {
            assert_eq!(dec.pending(), tail);
            let pending = dec.pending_frame_bytes();
            let taken = dec.take_buffered();
            assert_eq!(taken, tail);
            if let Some(frame_bytes) = pending {
                assert!(tail.len() >= HEADER_LEN && frame_bytes > tail.len());
            } else {
                assert!(tail.len() < HEADER_LEN);
            }
            assert_eq!((dec.buffered(), dec.pending_frame_bytes()), (0, None));
        }
        (got, want) => panic!("stream decoder ended with {got:?}, reference with {want:?}"),
    }
}

/// A client connection's reader (StreamDecoder + `decode` on each frame, and on the unfinished
/// frame after `Ok(None)` to keep the decode order of PROTOCOL.md 1.2) sees the same frames and
/// the same first error as `decode` looping over the concatenation.
fn check_as_client_reader(chunks: &[&[u8]], stream: &[u8], max: usize) {
    if max < HEADER_LEN {
        return; // Both refuse everything, with different sizes (see `reference`).
    }
    let mut want = Vec::new();
    let mut rest = stream;
    let want_end = loop {
        match decode(rest, max) {
            Ok(Decoded::Frame { frame, consumed }) => {
                want.push(format!("{frame:?}"));
                rest = &rest[consumed..];
            }
            Ok(Decoded::NeedMore { .. }) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let mut got = Vec::new();
    let end = run(
        &mut StreamDecoder::new(max),
        chunks,
        |f| match decode(f, max)? {
            Decoded::Frame { frame, consumed } => {
                assert_eq!(consumed, f.len());
                got.push(format!("{frame:?}"));
                Ok(())
            }
            Decoded::NeedMore { .. } => panic!("a whole frame needs more"),
        },
        |pending| decode(pending, max).map(|_| ()),
        DecodeError::from,
    );
    assert_eq!(got, want);
    assert_eq!(end, want_end);
}

/// The same for a control link's reader (`decode_link`).
fn check_as_link_reader(chunks: &[&[u8]], stream: &[u8], max: usize) {
    if max < HEADER_LEN {
        return;
    }
    let mut want: Vec<LinkMsg> = Vec::new();
    let mut rest = stream;
    let want_end = loop {
        match decode_link(rest, max) {
            Ok(Some((msg, consumed))) => {
                want.push(msg);
                rest = &rest[consumed..];
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    let mut got = Vec::new();
    let end = run(
        &mut StreamDecoder::new(max),
        chunks,
        |f| match decode_link(f, max)? {
            Some((msg, consumed)) => {
                assert_eq!(consumed, f.len());
                got.push(msg);
                Ok(())
            }
            None => panic!("a whole frame needs more"),
        },
        |pending| decode_link(pending, max).map(|_| ()),
        |e| LinkDecodeError::FrameTooLarge {
            frame_bytes: e.frame_bytes,
            max: e.max,
        },
    );
    assert_eq!(got, want);
    assert_eq!(end, want_end);
}
