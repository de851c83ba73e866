//! A local DELIVER's fast paths: [`Deliverer::write_unhindered`] for one connection and
//! [`FastCopy`] (through [`Deliverer::copy_unhindered_from`]) for a fan-out's subscribers.
//!
//! Each takes a message only where the full admission ([`Deliverer::append_local`]) would
//! queue it without a stall, a drop or a change to the queue's congestion state
//! ([`unhindered`], plus what each write needs), and counts and sums what the full path
//! would; anything else goes the full path, out of line. Written apart because the full
//! path's rules, inlined into the receive loop and the fan-out loop, kept their registers
//! spilled to the stack (measured: one-to-one 16 B -10.6 % relay CPU per message, fan-out to
//! 10 -4.8 %; README "Benchmarks"). The tests in `tests.rs` compare the two paths' outcomes.

use super::Deliverer;
use crate::core::flow::{FlowLimits, WorkerRoom};
use crate::core::Location;
use crate::protocol::{encode_deliver, FrameKind, Message};
use crate::server::conn::{Conn, Slab};

impl Deliverer<'_> {
    /// The common case of a DELIVER to a local connection, written without the rest of
    /// [`Self::append_local`]'s rules, which could not change the outcome: an [`unhindered`]
    /// connection here without a run of the round's shared buffer, whose send buffer has room
    /// for the frame's `len` bytes (so it does not grow). Then `write` writes the frame
    /// as the full path does ([`Self::write_local`], which counts it as a frame out; the
    /// caller counts the delivery) and `true` is returned; otherwise nothing happens.
    /// Measured: 1->1 16 B, -10.6 % relay CPU per message, the full path out of line.
    #[inline(always)]
    pub(super) fn write_unhindered(
        &mut self,
        (slot, generation): (u32, u32),
        len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let worker_bytes = self.slab.client_pending_bytes;
        let room = WorkerRoom::of(self.pending_bytes_per_worker_max, worker_bytes, len);
        let free = room == WorkerRoom::Free;
        let takes = self.slab.conns.get(slot as usize).is_some_and(|c| {
            unhindered(c, generation, self.client_flow, len, free)
                && c.run.is_none()
                && c.out.capacity() - c.out.len() >= len
        });
        if takes {
            self.write_local(slot, FrameKind::Deliver, 1, write);
        }
        takes
    }

    /// The common case of a fan-out's copies, written without the rest of
    /// [`Self::append_local`]'s rules, which could not change the outcome (see [`FastCopy`]):
    /// the subscribers of `to` from its start, for as long as they are here and
    /// [`FastCopy::take`] takes them (the limits read once per message, not per subscriber);
    /// `skip` is passed over. Returns how many of `to` it went through and how many of those
    /// it gave the DELIVER of `message`; the caller counts them, and takes the next one (if
    /// any) by the full path.
    #[inline(always)]
    pub(super) fn copy_unhindered_from(
        &mut self,
        to: &[Location],
        skip: Option<Location>,
        frame_len: usize,
        shared_at: &mut Option<usize>,
        message: &Message<'_>,
    ) -> (usize, usize) {
        let fast = FastCopy::new(self, frame_len);
        let (mut through, mut copied) = (0, 0);
        for &at in to {
            if Some(at) != skip {
                // Another worker's subscriber goes into its worker's fan-out record, by the
                // full path.
                if at.worker != self.worker
                    || !fast.take(
                        self.slab,
                        self.dirty,
                        (at.slot, at.generation),
                        shared_at,
                        |out| encode_deliver(out, message),
                    )
                {
                    break;
                }
                copied += 1;
            }
            through += 1;
        }
        (through, copied)
    }
}

/// Whether a DELIVER of `len` bytes to `c` (at `generation`) could meet none of
/// [`Deliverer::append_local`]'s rules but the ones checked here: `c` is a live, open native
/// connection without TLS whose queue stays below the high watermark with it
/// ([`FlowLimits::queues_freely`]), on a worker that stays below its reserve (`worker_free`:
/// [`WorkerRoom::Free`]). The fast paths add what their writes need.
#[inline(always)]
fn unhindered(
    c: &Conn,
    generation: u32,
    client_flow: &FlowLimits,
    len: usize,
    worker_free: bool,
) -> bool {
    c.generation == generation
        && c.accepts_frames()
        && c.nats.is_none()
        && c.tls.is_none()
        && client_flow.queues_freely(c.pending_bytes(), len)
        && worker_free
}

/// The limits a fan-out's fast copy checks each subscriber against, read once per message
/// (the worker's queued bytes, which each copy adds to, are read per subscriber): the
/// subscriber at a location is [`unhindered`] and its queue ends with this round's shared
/// frames or has no run yet (see `shared_round.rs`). Then [`Self::take`] gives it a run of
/// the DELIVER.
pub(super) struct FastCopy<'f> {
    frame_len: usize,
    client_flow: &'f FlowLimits,
    worker_bytes_max: usize,
}

impl<'f> FastCopy<'f> {
    #[inline(always)]
    pub(super) fn new(deliverer: &Deliverer<'f>, frame_len: usize) -> FastCopy<'f> {
        FastCopy {
            frame_len,
            client_flow: deliverer.client_flow,
            worker_bytes_max: deliverer.pending_bytes_per_worker_max,
        }
    }

    /// Gives the connection `(slot, generation)` of `slab` a run of the DELIVER (written into
    /// the round's shared buffer by `write` for the first connection, at `*shared_at`) when it
    /// meets the conditions above, queueing it in `dirty`; returns whether it did.
    #[inline(always)]
    pub(super) fn take(
        &self,
        slab: &mut Slab,
        dirty: &mut Vec<u32>,
        (slot, generation): (u32, u32),
        shared_at: &mut Option<usize>,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let frame_len = self.frame_len;
        let room = WorkerRoom::of(self.worker_bytes_max, slab.client_pending_bytes, frame_len);
        let Some(c) = slab.conns.get_mut(slot as usize) else {
            return false;
        };
        if !unhindered(
            c,
            generation,
            self.client_flow,
            frame_len,
            room == WorkerRoom::Free,
        ) {
            return false;
        }
        debug_assert!(c.link.is_none(), "links are written by append_link");
        let start = shared_at.unwrap_or(slab.shared.end());
        if c.run.is_some_and(|run| run.end() != start) {
            // Its queue ends with an earlier frame than this message's (a subscriber this
            // round's previous fan-outs skipped): the full path settles the run and copies.
            return false;
        }
        let start = *shared_at.get_or_insert_with(|| slab.shared.write(write));
        debug_assert_eq!(slab.shared.end(), start + frame_len);
        c.run = Some(slab.shared.give(c.run, slot, start, frame_len));
        if !c.dirty {
            c.dirty = true;
            dirty.push(slot);
        }
        slab.client_pending_bytes += frame_len;
        slab.round_out_bytes += frame_len;
        true
    }
}
