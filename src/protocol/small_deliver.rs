//! The DELIVER of a small plain message (the 16 B path's frame), written with copies of fixed
//! sizes.
//!
//! The general encoder appends the header, then the sender and the payload with
//! `extend_from_slice`, which for lengths known only at run time calls `memcpy`: two calls
//! for a few bytes each, the largest copies of a 16-byte one-to-one message. Here the frame
//! is written over [`SMALL_DELIVER_BYTES`] zeros appended at once, each field with one or two
//! copies of a fixed size that the compiler writes as moves, and the buffer is then truncated
//! to the frame. The bytes are the general encoder's (a test compares them for every sender
//! and payload length this path takes).
//!
//! Measured with `benches/ab_cpu.sh` (1->1 16 B, relay on CPU 0, load generator on CPU 1,
//! AMD EPYC, 2 vCPUs): relay CPU per message 54.5 -> 50.0 ns, median of 10 paired ratios
//! -6.4 % (-4.8 % in a first set of 6, -0.6 % in a set of 8 in a noisy hour). In `perf`,
//! the libc copies (5 % of the relay's samples) are gone. Building the frame in a stack array
//! and appending that was slower than before: the appended array was read back with wide
//! loads over the narrower stores that wrote it, which the CPU cannot forward.

use super::frame::FrameKind;
use super::Message;
use super::HEADER_LEN;

/// Bytes appended before the frame is written over them: a sender and a payload of 32 bytes
/// each with the 8 bytes of header around them would need 72, so the whole frame, not each
/// field, is bounded by this.
const SMALL_DELIVER_BYTES: usize = 64;

/// The longest sender and payload [`copy_few`] copies.
const FEW_BYTES_MAX: usize = 32;

/// Appends the DELIVER of `message` and returns `true` when it is plain (no topic, reply
/// topic or headers: a SEND's) with a sender and a payload of at most [`FEW_BYTES_MAX`] bytes,
/// the whole frame fits [`SMALL_DELIVER_BYTES`] and so does `out`'s spare capacity; otherwise
/// appends nothing and returns `false`, and the caller encodes it the general way.
#[inline(always)]
pub(super) fn encode(out: &mut Vec<u8>, message: &Message<'_>) -> bool {
    let Message {
        sender,
        topic,
        payload,
        ..
    } = *message;
    if sender.len() > FEW_BYTES_MAX
        || payload.len() > FEW_BYTES_MAX
        || !topic.is_empty()
        || message.is_extended()
    {
        return false;
    }
    // Header, sender length, sender, topic length (0), payload.
    let len = HEADER_LEN + 1 + sender.len() + 1 + payload.len();
    // The 64 bytes must fit the spare capacity: the send queues' bounds count a buffer's
    // growth from the frame's length (`Conn::out_growth`), and a frame that fits while its
    // 64 bytes would not must not make the buffer grow.
    if len > SMALL_DELIVER_BYTES || out.capacity() - out.len() < SMALL_DELIVER_BYTES {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&[0u8; SMALL_DELIVER_BYTES]);
    let Ok(frame) = <&mut [u8; SMALL_DELIVER_BYTES]>::try_from(&mut out[start..]) else {
        unreachable!("exactly SMALL_DELIVER_BYTES bytes were appended");
    };
    let body_len = (len - HEADER_LEN) as u32;
    frame[..4].copy_from_slice(&body_len.to_le_bytes());
    frame[4] = FrameKind::Deliver as u8;
    // frame[5], the flags, stays 0: a plain message has none.
    frame[HEADER_LEN] = sender.len() as u8;
    copy_few(frame, HEADER_LEN + 1, sender);
    // The topic's length byte after the sender stays 0.
    copy_few(frame, HEADER_LEN + 2 + sender.len(), payload);
    out.truncate(start + len);
    true
}

/// Copies `src` (at most [`FEW_BYTES_MAX`] bytes) to `frame[at..]` with two copies of one
/// fixed size that overlap when `src` is shorter than both, the way `memcpy` copies short
/// runs; under 4 bytes, byte by byte.
#[inline(always)]
fn copy_few(frame: &mut [u8; SMALL_DELIVER_BYTES], at: usize, src: &[u8]) {
    let n = src.len();
    debug_assert!(n <= FEW_BYTES_MAX && at + n <= SMALL_DELIVER_BYTES);
    if n >= 16 {
        frame[at..at + 16].copy_from_slice(&src[..16]);
        frame[at + n - 16..at + n].copy_from_slice(&src[n - 16..]);
    } else if n >= 8 {
        frame[at..at + 8].copy_from_slice(&src[..8]);
        frame[at + n - 8..at + n].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        frame[at..at + 4].copy_from_slice(&src[..4]);
        frame[at + n - 4..at + n].copy_from_slice(&src[n - 4..]);
    } else {
        for (i, &b) in src.iter().enumerate() {
            frame[at + i] = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_deliver_header, frame_len_for_deliver};

    /// The general encoder's bytes for `message`, after `prefix`.
    fn general(prefix: &[u8], message: &Message<'_>) -> Vec<u8> {
        let mut out = prefix.to_vec();
        encode_deliver_header(&mut out, message, message.payload.len());
        out.extend_from_slice(message.payload);
        out
    }

    #[test]
    fn writes_the_general_encoders_bytes_for_every_length_it_takes() {
        // Distinct bytes, so a copy from the wrong offset shows.
        let sender_bytes: Vec<u8> = (1..=40).collect();
        let payload_bytes: Vec<u8> = (100..140).collect();
        let prefix = b"frames queued before";
        let mut taken = 0;
        for s in 1..=40 {
            for p in 0..=40 {
                let message = Message::plain(&sender_bytes[..s], b"", &payload_bytes[..p]);
                let mut out = Vec::with_capacity(prefix.len() + SMALL_DELIVER_BYTES);
                out.extend_from_slice(prefix);
                let took = encode(&mut out, &message);
                let fits = s <= FEW_BYTES_MAX
                    && p <= FEW_BYTES_MAX
                    && frame_len_for_deliver(&message) <= SMALL_DELIVER_BYTES;
                assert_eq!(took, fits, "sender {s} B, payload {p} B");
                if took {
                    taken += 1;
                    assert_eq!(
                        out,
                        general(prefix, &message),
                        "sender {s} B, payload {p} B"
                    );
                } else {
                    assert_eq!(out, prefix, "nothing appended: sender {s} B, payload {p} B");
                }
            }
        }
        assert!(taken > 900, "the path takes the small lengths: {taken}");
    }

    #[test]
    fn leaves_a_buffer_without_room_for_its_64_bytes_to_the_general_encoder() {
        let message = Message::plain(b"snd", b"", b"payload");
        for spare in 0..SMALL_DELIVER_BYTES + 2 {
            let mut out = Vec::with_capacity(100 + spare);
            out.resize(out.capacity() - spare, 7);
            let before = out.clone();
            let took = encode(&mut out, &message);
            assert_eq!(took, spare >= SMALL_DELIVER_BYTES, "{spare} spare");
            if !took {
                assert_eq!(out, before, "{spare} spare: nothing appended");
            }
            let mut whole = before.clone();
            crate::protocol::encode_deliver(&mut whole, &message);
            assert_eq!(whole, general(&before, &message), "{spare} spare");
        }
    }

    #[test]
    fn leaves_topics_reply_topics_and_headers_to_the_general_encoder() {
        let plain = Message::plain(b"snd", b"", b"x");
        let others = [
            Message::plain(b"snd", b"topic", b"x"),
            Message {
                reply: b"_INBOX.1",
                ..plain
            },
            Message {
                headers: b"NATS/1.0\r\n\r\n",
                ..plain
            },
        ];
        for message in others {
            let mut out = Vec::new();
            assert!(!encode(&mut out, &message), "{message:?}");
            assert!(out.is_empty());
        }
    }
}
