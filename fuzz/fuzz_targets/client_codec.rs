//! Client wire codec (`ringrelay::protocol`): `decode` on arbitrary bytes under several bounds,
//! and encode -> decode of structured frames. See README.md for the properties checked.

#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ringrelay::protocol::{
    decode, plain_send, DecodeError, Decoded, Frame, FrameKind, HEADER_LEN,
};
use ringrelay_fuzz::{assert_client_bounds, client_frame_is_valid, ArbExtended, ArbFrame, MAXES};

fuzz_target!(|data: &[u8]| {
    for max in MAXES {
        decode_stream(data, max);
    }
    structured(data);
    structured_extended(data);
});

/// Decodes frame after frame from the front of `data` until an error or "need more".
fn decode_stream(data: &[u8], max: usize) {
    let mut buf = data;
    loop {
        match decode(buf, max) {
            Ok(Decoded::Frame { frame, consumed }) => {
                assert!(consumed >= HEADER_LEN && consumed <= buf.len() && consumed <= max);
                // The receive loop's message lane finds exactly the plain SENDs.
                let lane = match frame {
                    Frame::Send { target, payload } if buf[5] == 0 => Some((target, payload)),
                    _ => None,
                };
                assert_eq!(plain_send(&buf[..consumed]), lane);
                assert_client_bounds(&frame);
                // The codec is canonical (flags, booleans and lengths each have one encoding,
                // every body is consumed exactly), so re-encoding gives back the same bytes.
                let mut out = Vec::new();
                frame.encode(&mut out).expect("a decoded frame encodes");
                assert_eq!(out.len(), frame.encoded_len());
                assert_eq!(out, &buf[..consumed], "re-encoding differs");
                // Every proper prefix of a frame only asks for more.
                let short = &buf[..consumed - 1];
                let want = if short.len() < HEADER_LEN {
                    HEADER_LEN
                } else {
                    consumed
                };
                assert_eq!(
                    decode(short, max),
                    Ok(Decoded::NeedMore { frame_bytes: want })
                );
                buf = &buf[consumed..];
            }
            Ok(Decoded::NeedMore { frame_bytes }) => {
                assert!(frame_bytes > buf.len());
                if buf.len() < HEADER_LEN {
                    assert_eq!(frame_bytes, HEADER_LEN);
                } else {
                    assert!(frame_bytes <= max);
                }
                return;
            }
            Err(e) => {
                let _ = e.to_string();
                // A frame `decode` refuses is never taken by the message lane (but for its
                // size: the lane sees only frames the StreamDecoder bounded already).
                let too_large = matches!(e, DecodeError::FrameTooLarge { .. });
                if let Some(head) = buf.get(..HEADER_LEN).filter(|_| !too_large) {
                    let said = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                    if let Some(whole) = buf.get(..HEADER_LEN + said) {
                        assert_eq!(plain_send(whole), None);
                    }
                }
                if let DecodeError::FrameTooLarge {
                    frame_bytes,
                    max_frame_bytes,
                } = e
                {
                    assert_eq!(max_frame_bytes, max);
                    assert!(frame_bytes > max as u64);
                }
                return;
            }
        }
    }
}

/// A structured frame: the encoder refuses exactly the invalid ones, and what it encodes
/// decodes to the same frame, consuming all of it.
fn structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(owned) = ArbFrame::arbitrary(&mut u) else {
        return;
    };
    let frame = owned.as_frame();
    let mut out = vec![0xEE];
    match frame.encode(&mut out) {
        Err(e) => {
            assert!(!client_frame_is_valid(&frame), "valid frame refused: {e}");
            assert_eq!(out, [0xEE], "a refused frame appends nothing");
        }
        Ok(()) => {
            assert!(client_frame_is_valid(&frame), "invalid frame encoded");
            let wire = &out[1..];
            assert_eq!(wire.len(), frame.encoded_len());
            assert_eq!(
                decode(wire, usize::MAX),
                Ok(Decoded::Frame {
                    frame,
                    consumed: wire.len()
                })
            );
        }
    }
}

/// A structured version-3 SEND, PUBLISH or DELIVER: its encoder refuses exactly the invalid
/// ones, and what it encodes decodes to an extended frame with the same fields.
fn structured_extended(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(arb) = ArbExtended::arbitrary(&mut u) else {
        return;
    };
    let mut out = vec![0xEE];
    match arb.encode(&mut out) {
        Err(e) => {
            assert!(!arb.is_valid(), "valid extended frame refused: {e}");
            assert_eq!(out, [0xEE], "a refused frame appends nothing");
        }
        Ok(()) => {
            assert!(arb.is_valid(), "invalid extended frame encoded");
            let wire = &out[1..];
            let Ok(Decoded::Frame {
                frame: Frame::Extended(extended),
                consumed,
            }) = decode(wire, usize::MAX)
            else {
                panic!("an encoded extended frame does not decode as one");
            };
            assert_eq!(consumed, wire.len());
            assert_eq!(extended.kind(), arb.kind());
            let fields = extended.fields();
            assert_eq!(fields.message, arb.message());
            if arb.kind() == FrameKind::Send {
                assert_eq!(fields.target, &arb.head[..]);
            }
            assert_eq!(
                fields.no_echo,
                arb.no_echo && arb.kind() == FrameKind::Publish
            );
        }
    }
}
