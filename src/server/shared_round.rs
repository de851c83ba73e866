//! A fan-out's DELIVER written once per worker round, not once per subscriber.
//!
//! A plain PUBLISH's DELIVER is the same bytes for every native subscriber without TLS. The
//! fast copy (`Deliverer::copy_unhindered`) writes it once into the round's [`SharedRound`]
//! and gives each such subscriber a *run*: the range of that buffer its queue ends with. At
//! the end of the round ([`Slab::seal_runs`], from `Worker::flush_sends`) the buffer is frozen
//! into a [`Bytes`] and each run becomes a slice of it among its connection's segments, sent
//! like a zero-copy payload; the slices keep the buffer alive until the last send that reads
//! it has completed, and the next round reuses its allocation once none is left.
//!
//! Measured (`benches/ab_cpu.sh`, fan-out to 10 at 16 B): the per-subscriber copy into each
//! send buffer, and the kernel reading ten buffers instead of one, were about a tenth of the
//! relay's CPU per delivery.
//!
//! Invariants:
//! - a run is the last of its connection's queued bytes: whatever else is written to the
//!   connection's send buffer settles the run first ([`Slab::settle_run`] copies it in), so
//!   the stream keeps its order;
//! - only a native client connection without TLS holds a run, and only between a fan-out and
//!   the end of that round; a connection holding one does not move to another worker;
//! - a run's bytes count in its connection's pending bytes (and so in the worker's sum) as
//!   if they were copied: each subscriber's bound sees what it was given;
//! - the buffer never holds more than the round's output: each frame in it was queued to a
//!   run and counted in `round_out_bytes`.

use super::conn::Slab;
use bytes::Bytes;

/// The round's shared DELIVER frames and the slots given runs of them.
#[derive(Default)]
pub struct SharedRound {
    frames: Vec<u8>,
    /// The last round's buffer, taken back for the next round once no send reads it.
    last: Option<Bytes>,
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

    /// The bytes of `run`.
    pub fn bytes(&self, run: Run) -> &[u8] {
        &self.frames[run.range()]
    }

    /// Once per timer tick: a buffer no round used since the last tick is given back (never
    /// one holding runs: the tick may come in the middle of a round).
    pub fn trim(&mut self) {
        let used = std::mem::take(&mut self.used);
        if !used && self.runs.is_empty() {
            self.frames = Vec::new();
            self.last = None;
        }
    }

    /// This round's frames as one shared buffer (`None` if no run was given), with a fresh
    /// buffer for the next round: the last round's allocation when nothing reads it any more.
    fn freeze(&mut self) -> Option<Bytes> {
        if self.runs.is_empty() {
            self.frames.clear();
            return None;
        }
        self.used = true;
        let capacity = self.frames.capacity();
        let mut next = self
            .last
            .take()
            .and_then(|last| last.try_into_mut().ok())
            .map(Vec::from)
            .unwrap_or_default();
        next.clear();
        next.reserve(capacity);
        let frozen = Bytes::from(std::mem::replace(&mut self.frames, next));
        self.last = Some(frozen.clone());
        Some(frozen)
    }
}

impl Slab {
    /// Ends the round's runs: each becomes a slice of the frozen buffer behind its
    /// connection's other queued bytes (its send buffer sealed into a segment first, as
    /// `Worker::submit_send` does), to be sent with them.
    pub fn seal_runs(&mut self) {
        let Some(frozen) = self.shared.freeze() else {
            return;
        };
        for i in 0..self.shared.runs.len() {
            let c = &mut self.conns[self.shared.runs[i] as usize];
            let Some(run) = c.run.take() else {
                continue;
            };
            // Bytes in `out` were queued before the run opened (see `settle_run`).
            if !c.out.is_empty() {
                let sealed = Bytes::from(std::mem::take(&mut c.out));
                c.segments_bytes += sealed.len();
                c.segments.push_back(sealed);
            }
            c.segments.push_back(frozen.slice(run.range()));
            c.segments_bytes += run.len();
        }
        self.shared.runs.clear();
    }

    /// Copies the run of the connection in `slot`, if it has one, into its send buffer, before
    /// anything else is written there. Its bytes were counted when given; the buffer's growth
    /// is counted now (admissions count it ahead: see `Conn::out_growth`).
    #[inline]
    pub fn settle_run(&mut self, slot: u32) {
        if self.conns[slot as usize].run.is_some() {
            self.settle_run_cold(slot);
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_run_cold(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let before = c.accounted_bytes();
        let Some(run) = c.run.take() else {
            return;
        };
        c.out.extend_from_slice(self.shared.bytes(run));
        self.repend(slot, before);
    }
}
