//! In-flight operations and the memory they point into.
//!
//! Every buffer the kernel reads or writes for a connection is owned by that connection's entry
//! here from submission until the completion, which hands it back by value: a send's bytes (or
//! its gathered segments with their iovec array and msghdr), a direct receive's buffer. Nothing
//! else holds them meanwhile, so nothing can free, move or reuse them early. (A direct
//! receive's `BytesMut` may share its allocation with earlier frames frozen from it, which are
//! only read, and never the region it receives into; its reference keeps the allocation
//! alive.) An entry's memory is stable while the table grows: buffers are heap allocations
//! owned through `Vec`/`BytesMut`/`Bytes`/`Box`, never stored inline in the table.

use bytes::{Buf, Bytes, BytesMut};

/// What a connection has to send, handed to the ring by value and given back by the completion
/// with the sent bytes consumed.
#[derive(Debug)]
pub enum Outgoing {
    /// Encoded frames; bytes before `offset` are already sent.
    Plain { bytes: Vec<u8>, offset: usize },
    /// Segments sent with one sendmsg (zero-copy payloads and the frames around them).
    Gathered(Vec<Bytes>),
    /// One segment sent alone (a run of a round's shared buffer, usually): a plain send,
    /// with no iovec array.
    Slice(Bytes),
}

impl Outgoing {
    pub fn is_empty(&self) -> bool {
        match self {
            Outgoing::Plain { bytes, offset } => *offset >= bytes.len(),
            Outgoing::Gathered(segments) => segments.iter().all(|s| s.is_empty()),
            Outgoing::Slice(b) => b.is_empty(),
        }
    }

    pub fn remaining_bytes(&self) -> usize {
        match self {
            Outgoing::Plain { bytes, offset } => bytes.len().saturating_sub(*offset),
            Outgoing::Gathered(segments) => segments.iter().map(Bytes::len).sum(),
            Outgoing::Slice(b) => b.len(),
        }
    }

    /// Consumes `sent` bytes from the front.
    pub fn advance(&mut self, sent: usize) {
        self.consume(sent, |_| {});
    }

    /// The bytes not yet sent, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        let (plain, gathered): (Option<&[u8]>, &[Bytes]) = match self {
            Outgoing::Plain { bytes, offset } => (bytes.get(*offset..), &[]),
            Outgoing::Gathered(segments) => (None, segments),
            Outgoing::Slice(b) => (Some(&b[..]), &[]),
        };
        plain.into_iter().chain(gathered.iter().map(|s| &s[..]))
    }

    /// Consumes `sent` bytes from the front, showing each consumed piece to `seen` first.
    pub fn consume(&mut self, mut sent: usize, mut seen: impl FnMut(&[u8])) {
        match self {
            Outgoing::Plain { bytes, offset } => {
                let end = (*offset + sent).min(bytes.len());
                seen(&bytes[*offset..end]);
                *offset = end;
            }
            Outgoing::Gathered(segments) => {
                let mut done = 0;
                for seg in segments.iter_mut() {
                    if sent == 0 {
                        break;
                    }
                    let take = seg.len().min(sent);
                    seen(&seg[..take]);
                    seg.advance(take);
                    sent -= take;
                    if seg.is_empty() {
                        done += 1;
                    }
                }
                segments.drain(..done);
                debug_assert_eq!(sent, 0, "sent more bytes than were queued");
            }
            Outgoing::Slice(b) => {
                let take = b.len().min(sent);
                seen(&b[..take]);
                b.advance(take);
            }
        }
    }
}

/// A send in flight: the outgoing bytes and, for a gathered send, the iovec array and the
/// msghdr the kernel reads (boxed, so their addresses never move).
pub struct SendOp {
    pub outgoing: Outgoing,
    pub gather: Option<Box<Gather>>,
}

pub struct Gather {
    pub iov: Vec<libc::iovec>,
    pub msghdr: libc::msghdr,
}

/// The receive state of one connection.
#[derive(Default)]
pub enum RecvOp {
    #[default]
    Idle,
    /// A multishot recv into a provided-buffer ring (memory owned by the pool): the TLS
    /// connections' ring when `tls`.
    Multishot { tls: bool },
    /// A plain recv of the rest of a frame straight into this buffer (`len()` bytes are in;
    /// the kernel writes into the spare capacity up to `want_bytes`).
    Exact { buf: BytesMut, want_bytes: usize },
}

/// The operations of one slot.
#[derive(Default)]
pub struct SlotOps {
    pub generation: u32,
    pub recv: RecvOp,
    pub send: Option<SendOp>,
    /// Cancellations in flight that target this slot (they point at no memory).
    pub cancels: u32,
}

impl SlotOps {
    pub fn is_idle(&self) -> bool {
        matches!(self.recv, RecvOp::Idle) && self.send.is_none()
    }
}

/// Per-slot operations, indexed by slot; grows with the worker's connection slab.
#[derive(Default)]
pub struct OpTable {
    slots: Vec<SlotOps>,
}

impl OpTable {
    pub fn slot_mut(&mut self, slot: u32) -> &mut SlotOps {
        let index = slot as usize;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, SlotOps::default);
        }
        &mut self.slots[index]
    }

    pub fn get_mut(&mut self, slot: u32) -> Option<&mut SlotOps> {
        self.slots.get_mut(slot as usize)
    }

    pub fn is_idle(&self, slot: u32) -> bool {
        self.slots.get(slot as usize).map_or(true, SlotOps::is_idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_advance_tracks_the_offset() {
        let mut out = Outgoing::Plain {
            bytes: b"hello".to_vec(),
            offset: 0,
        };
        out.advance(2);
        assert_eq!(out.remaining_bytes(), 3);
        assert!(!out.is_empty());
        out.advance(3);
        assert!(out.is_empty());
    }

    #[test]
    fn gathered_advance_drops_whole_segments_and_splits_the_last() {
        let mut out = Outgoing::Gathered(vec![
            Bytes::from_static(b"ab"),
            Bytes::from_static(b"cde"),
            Bytes::from_static(b"f"),
        ]);
        out.advance(3);
        match &out {
            Outgoing::Gathered(segs) => {
                assert_eq!(segs.len(), 2);
                assert_eq!(&segs[0][..], b"de");
            }
            _ => unreachable!(),
        }
        assert_eq!(out.remaining_bytes(), 3);
        out.advance(3);
        assert!(out.is_empty());
    }

    #[test]
    fn a_slice_advances_and_shows_what_went() {
        let shared = Bytes::from_static(b"abcdef");
        let mut out = Outgoing::Slice(shared.slice(1..5));
        let mut seen = Vec::new();
        out.consume(3, |piece| seen.extend_from_slice(piece));
        assert_eq!(seen, b"bcd");
        assert_eq!(out.chunks().collect::<Vec<_>>(), [b"e"]);
        assert_eq!(out.remaining_bytes(), 1);
        out.advance(1);
        assert!(out.is_empty());
    }

    #[test]
    fn a_slot_is_idle_only_without_operations() {
        let mut table = OpTable::default();
        assert!(table.is_idle(7), "unknown slots are idle");
        table.slot_mut(7).recv = RecvOp::Multishot { tls: false };
        assert!(!table.is_idle(7));
        table.slot_mut(7).recv = RecvOp::Idle;
        table.slot_mut(7).cancels = 1;
        assert!(table.is_idle(7), "a cancellation points at no memory");
    }
}
