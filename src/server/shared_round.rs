//! A fan-out's DELIVER written once per worker round, not once per subscriber.
//!
//! A plain PUBLISH's DELIVER is the same bytes for every native subscriber without TLS. The
//! fast copy (`FastCopy::take` in `deliver/fast.rs`) writes it once into the round's
//! [`SharedRound`] and gives each such subscriber a *run*: the range of that buffer its queue
//! ends with. At the end of the round ([`Slab::seal_runs`], from `Worker::flush_sends`) the
//! buffer is frozen into a [`Bytes`] and each run becomes a slice of it among its
//! connection's segments, sent like a zero-copy payload; the slices keep the buffer alive
//! until the last send that reads it has completed, and the next round reuses its allocation
//! once none is left.
//!
//! Measured (`benches/ab_cpu.sh`, fan-out to 10 at 16 B): the per-subscriber copy into each
//! send buffer, and the kernel reading ten buffers instead of one, were about a tenth of the
//! relay's CPU per delivery.
//!
//! Bounded: the round buffers that sends still read are held by the worker's list, at most
//! [`HELD_BUFFERS_MAX`] of them and `SHARED_ROUND_HELD_BYTES_MAX` bytes of capacity together (a run
//! is counted in its subscriber's queue by its own length, but its slice keeps its whole round's
//! buffer). A round that would go past either bound copies its runs into the subscribers' send
//! buffers instead, as before this buffer existed; so does a subscriber whose send buffer already
//! holds bytes this round (its buffer is reused rather than sealed), and one whose segments already
//! hold [`SLICES_PER_CONNECTION_MAX`] slices (its sends lag by as many rounds).
//!
//! Invariants:
//! - a run is the last of its connection's queued bytes: whatever else is written to the
//!   connection's send buffer settles the run first ([`Slab::settle_run`] copies it in), so
//!   the stream keeps its order;
//! - only a native client connection without TLS holds a run, and only between a fan-out and
//!   the end of that round; a connection holding one does not move to another worker;
//! - a run's bytes count in its connection's pending bytes (and so in the worker's sum) as
//!   if they were copied: each subscriber's bound sees what it was given;
//! - the buffer never holds more than the round's output (each frame in it was queued to a
//!   run), which the completions' `ROUND_OUTPUT_BYTES_MAX` and the handoff queues'
//!   `handoff_bytes_max` bound; a segment sliced from it is a whole number of frames.

use super::conn::Slab;
use crate::memory_budget::SHARED_ROUND_HELD_BYTES_MAX;
use bytes::Bytes;

/// Round buffers held for sends at most, per worker (their capacity is bounded by
/// `SHARED_ROUND_HELD_BYTES_MAX`).
pub const HELD_BUFFERS_MAX: usize = 64;

/// Slices of round buffers one connection's segments may hold: a subscriber whose sends lag
/// by more rounds than this gets its later runs copied into its send buffer, so it holds no
/// more buffers than this and cannot hold sharing off for the rest of the worker's
/// subscribers (at [`HELD_BUFFERS_MAX`]).
pub const SLICES_PER_CONNECTION_MAX: usize = 16;

/// Capacity the round buffer keeps after a round that could not be shared (the held buffers
/// at their bounds, or a round larger than all of them: a drain of handed-over fan-outs has
/// no round bound of its own): more is given back, so such a round neither keeps its memory
/// nor keeps later rounds from being shared.
const FRAMES_RETAIN_BYTES: usize = 1 << 20;

/// The round's shared DELIVER frames, the slots given runs of them, and the earlier rounds'
/// buffers that sends may still read.
#[derive(Default)]
pub struct SharedRound {
    frames: Vec<u8>,
    /// Frozen round buffers with their capacity: some connection's segment, unsent rest or
    /// send in flight may still read them.
    held: Vec<(Bytes, usize)>,
    /// The sum of `held`'s capacities.
    held_bytes: usize,
    /// Slots given a run this round (a slot released and reused within the round may be
    /// listed twice: sealing takes each run once).
    runs: Vec<u32>,
    /// Whether a round used the buffer since the last timer tick ([`Self::trim`]).
    used: bool,
}

/// A range of this round's [`SharedRound`]: the bytes a connection's queue ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    start: u32,
    end: u32,
}

impl Run {
    /// Where the run ends in the round's buffer.
    pub fn end(self) -> usize {
        self.end as usize
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl SharedRound {
    /// Where the next frame written goes: a run ending here may be extended by it.
    #[inline]
    pub fn end(&self) -> usize {
        self.frames.len()
    }

    /// Writes one frame with `write`; returns where it starts.
    #[inline]
    pub fn write(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = self.frames.len();
        write(&mut self.frames);
        assert!(
            self.frames.len() <= u32::MAX as usize,
            "a round's output is bounded far below 4 GiB"
        );
        start
    }

    /// `run` extended by (or, if `None`, opened on) the frame at `start..start + len`, for the
    /// connection in `slot`.
    #[inline]
    pub fn give(&mut self, run: Option<Run>, slot: u32, start: usize, len: usize) -> Run {
        let end = (start + len) as u32;
        match run {
            Some(run) => {
                debug_assert_eq!(run.end as usize, start, "a run grows at its end only");
                Run { end, ..run }
            }
            None => {
                self.runs.push(slot);
                Run {
                    start: start as u32,
                    end,
                }
            }
        }
    }

    /// How many round buffers are held for sends, and their capacity.
    #[cfg(test)]
    pub fn held(&self) -> (usize, usize) {
        (self.held.len(), self.held_bytes)
    }

    /// The round buffer's capacity; reserves `bytes` more first (for a round as large as a
    /// drain of handed-over fan-outs can write).
    #[cfg(test)]
    pub fn capacity_after_reserving(&mut self, bytes: usize) -> usize {
        self.frames.reserve(bytes);
        self.frames.capacity()
    }

    /// The bytes of `run`.
    #[cfg(test)]
    pub fn bytes(&self, run: Run) -> &[u8] {
        &self.frames[run.range()]
    }

    /// Once per timer tick: buffers no send reads any more are freed, and the round buffer
    /// too if no round used it since the last tick (never one holding runs: the tick may
    /// come in the middle of a round).
    pub fn trim(&mut self) {
        let used = std::mem::take(&mut self.used);
        if !used && self.runs.is_empty() {
            self.frames = Vec::new();
        }
        drop(self.reclaim());
    }

    /// Lets go of the held buffers that nothing reads any more; returns one of them, emptied,
    /// to be the next round's buffer.
    fn reclaim(&mut self) -> Option<Vec<u8>> {
        let mut spare = None;
        let mut i = 0;
        while i < self.held.len() {
            if !self.held[i].0.is_unique() {
                i += 1;
                continue;
            }
            let (bytes, capacity) = self.held.swap_remove(i);
            self.held_bytes -= capacity;
            if spare.is_none() {
                spare = bytes.try_into_mut().ok().map(|mut unique| {
                    unique.clear();
                    Vec::from(unique)
                });
            }
        }
        spare
    }

    /// This round's frames as one shared buffer, held until no send reads it, with `spare`
    /// (or a new buffer) for the next round; `None` if holding it would pass the bounds.
    fn freeze(&mut self, spare: Option<Vec<u8>>) -> Option<Bytes> {
        let capacity = self.frames.capacity();
        if self.held.len() >= HELD_BUFFERS_MAX
            || self.held_bytes + capacity > SHARED_ROUND_HELD_BYTES_MAX
        {
            return None;
        }
        let mut next = spare.unwrap_or_default();
        next.reserve(self.frames.len());
        let frozen = Bytes::from(std::mem::replace(&mut self.frames, next));
        self.held.push((frozen.clone(), capacity));
        self.held_bytes += capacity;
        Some(frozen)
    }
}

impl Slab {
    /// Ends the round's runs: each becomes a slice of the frozen round buffer behind its
    /// connection's other queued bytes, to be sent with them; or is copied into the send
    /// buffer: for a connection whose send buffer holds bytes or whose segments hold
    /// [`SLICES_PER_CONNECTION_MAX`] slices, or for every run when the held buffers are at
    /// their bounds. (A copy grows the send buffer without an admission: its bytes were
    /// admitted as the run, and the growth is counted.)
    pub fn seal_runs(&mut self) {
        if self.shared.runs.is_empty() {
            self.shared.frames.clear();
            return;
        }
        self.shared.used = true;
        let spare = self.shared.reclaim();
        let frozen = self.shared.freeze(spare);
        for i in 0..self.shared.runs.len() {
            let slot = self.shared.runs[i];
            let c = &self.conns[slot as usize];
            match (c.run, &frozen) {
                (None, _) => {}
                (Some(run), Some(frozen))
                    if c.out.is_empty() && c.segments.len() < SLICES_PER_CONNECTION_MAX =>
                {
                    let c = &mut self.conns[slot as usize];
                    c.run = None;
                    c.segments.push_back(frozen.slice(run.range()));
                    c.segments_bytes += run.len();
                }
                (Some(_), frozen) => self.settle_run_from(slot, frozen.as_ref()),
            }
        }
        self.shared.runs.clear();
        if frozen.is_none() {
            let frames = &mut self.shared.frames;
            frames.clear();
            if frames.capacity() > FRAMES_RETAIN_BYTES {
                *frames = Vec::new();
            }
        }
    }

    /// Copies the run of the connection in `slot`, if it has one, into its send buffer, before
    /// anything else is written there. Its bytes were counted when given; the buffer's growth
    /// is counted now (admissions count it ahead: see `Conn::out_growth`).
    #[inline]
    pub fn settle_run(&mut self, slot: u32) {
        if self.conns[slot as usize].run.is_some() {
            self.settle_run_from(slot, None);
        }
    }

    /// [`Self::settle_run`] from `frozen`, the round's frames once frozen (`None`: not yet).
    #[cold]
    #[inline(never)]
    fn settle_run_from(&mut self, slot: u32, frozen: Option<&Bytes>) {
        let c = &mut self.conns[slot as usize];
        let before = c.accounted_bytes();
        let Some(run) = c.run.take() else {
            return;
        };
        let frames = frozen.map_or(&self.shared.frames[..], |frozen| &frozen[..]);
        c.out.extend_from_slice(&frames[run.range()]);
        self.repend(slot, before);
    }
}
