//! The simulated network and the seeded PRNG.
//!
//! A connection is two FIFO byte streams (one per direction). A chunk written at `now` arrives
//! at `max(last arrival on that stream, now + delay)`, so bytes keep their order within a
//! connection while connections reorder freely against each other. Nothing is ever lost
//! inside a live connection: a break ends the connection (both ends see it closed), exactly
//! as TCP does. A partition stalls delivery (TCP retransmits) until it heals or an end
//! gives up and closes.

use ringrelay::cluster::membership::LinkId;
use std::collections::{BTreeSet, VecDeque};

/// splitmix64 seeding + xorshift64*: tiny, fast, and the seed alone determines the stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

/// What travels on one direction of a connection.
pub enum Chunk {
    Bytes(Vec<u8>),
    /// The writer closed its end (FIN after every byte written before).
    Fin,
}

/// One direction of a connection.
#[derive(Default)]
pub struct Stream {
    pub chunks: VecDeque<(u64, Chunk)>,
    /// Arrival time of the last chunk queued (FIFO: later chunks never arrive earlier).
    pub last_at_ms: u64,
    /// Bytes received and not yet decoded.
    pub rx_buf: Vec<u8>,
}

/// One end of a connection: which node incarnation holds it under which link id.
pub struct End {
    pub node: u16,
    pub incarnation: u64,
    pub link: LinkId,
    /// This end has not been closed (by its node, a break, or EOF).
    pub open: bool,
}

/// A control connection. `streams[s]` carries bytes written by `ends[s]`.
pub struct Conn {
    pub ends: [End; 2],
    pub streams: [Stream; 2],
    /// Broken (reset): nothing more is delivered either way.
    pub broken: bool,
}

/// Which node pairs cannot currently reach each other (unordered pairs, stored low first).
#[derive(Default)]
pub struct Cuts(BTreeSet<(u16, u16)>);

impl Cuts {
    fn key(a: u16, b: u16) -> (u16, u16) {
        (a.min(b), a.max(b))
    }

    pub fn blocked(&self, a: u16, b: u16) -> bool {
        self.0.contains(&Self::key(a, b))
    }

    pub fn cut(&mut self, a: u16, b: u16) {
        self.0.insert(Self::key(a, b));
    }

    pub fn heal_all(&mut self) {
        self.0.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
