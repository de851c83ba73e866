//! How a worker's congested connections stand, for producers and queue groups on other
//! workers to see (see `core::flow`): a word per slot, written only by the worker that owns the
//! slot and read by any worker that hands a message to it. The words live in chunks allocated
//! the first time a slot in them is congested, so a worker's board costs nothing until then.

use crate::core::flow::{Backlog, Congestion, FlowLimits};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Slots per chunk (32 KiB of words).
const CHUNK_SLOTS: usize = 4096;

type Chunk = Box<[AtomicU64]>;

pub struct CongestionBoard {
    chunks: Box<[OnceLock<Chunk>]>,
}

/// What a slot's word says of its connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// Producers that feed it stall: its episode's stall budget is not spent yet.
    pub stalls: bool,
    /// Its queue is behind (congested with the stall budget spent, or above
    /// `pending_bytes_max`): a queue group passes over it while another member is clear.
    pub behind: bool,
    /// Its queue is above `pending_bytes_max`: a queue group picks it last of all.
    pub over: bool,
}

impl Standing {
    pub const CLEAR: Standing = Standing {
        stalls: false,
        behind: false,
        over: false,
    };

    /// How `congestion` stands on a board.
    pub fn of(stalls: bool, congestion: Congestion) -> Standing {
        Standing {
            stalls,
            behind: congestion >= Congestion::Behind,
            over: congestion == Congestion::Over,
        }
    }

    /// How a queue's `backlog` stands at `now_ms`: whether it stalls its producers, and how
    /// far behind it is.
    pub fn of_backlog(backlog: &Backlog, limits: &FlowLimits, now_ms: u64) -> Standing {
        Standing::of(
            backlog.stalls(limits, now_ms),
            backlog.congestion(limits, now_ms),
        )
    }

    /// The standing for a queue group's pick.
    pub fn congestion(self) -> Congestion {
        if self.over {
            Congestion::Over
        } else if self.behind {
            Congestion::Behind
        } else if self.stalls {
            Congestion::Stalling
        } else {
            Congestion::Clear
        }
    }
}

/// The word's low bits: the generation plus one (0: no connection stands there).
const GENERATION_BITS: u64 = (1 << 33) - 1;
const OVER_BIT: u64 = 1 << 61;
const STALLS_BIT: u64 = 1 << 62;
const BEHIND_BIT: u64 = 1 << 63;

/// A slot's word: 0 when its connection is clear, else its generation plus one with a bit for
/// each of `standing`'s flags.
fn word(generation: u32, standing: Standing) -> u64 {
    if standing == Standing::CLEAR {
        return 0;
    }
    let mut w = u64::from(generation) + 1;
    if standing.stalls {
        w |= STALLS_BIT;
    }
    if standing.behind {
        w |= BEHIND_BIT;
    }
    if standing.over {
        w |= OVER_BIT;
    }
    w
}

impl CongestionBoard {
    /// A board for `slots` connections.
    pub fn new(slots: usize) -> CongestionBoard {
        CongestionBoard {
            chunks: (0..slots.div_ceil(CHUNK_SLOTS))
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    fn at(&self, slot: u32) -> Option<&AtomicU64> {
        let slot = slot as usize;
        self.chunks
            .get(slot / CHUNK_SLOTS)?
            .get()
            .map(|chunk| &chunk[slot % CHUNK_SLOTS])
    }

    /// The owner: how the connection at (`slot`, `generation`) stands now.
    pub fn set(&self, slot: u32, generation: u32, standing: Standing) {
        let index = slot as usize;
        let Some(cell) = self.chunks.get(index / CHUNK_SLOTS) else {
            debug_assert!(false, "slot {slot} beyond the board");
            return;
        };
        let clear = standing == Standing::CLEAR;
        if clear && cell.get().is_none() {
            return;
        }
        let chunk = cell.get_or_init(|| (0..CHUNK_SLOTS).map(|_| AtomicU64::new(0)).collect());
        let at = &chunk[index % CHUNK_SLOTS];
        // Relaxed: a producer that reads a stale word stalls one receive late, or resumes at
        // its next look, and a pick sees a member's standing one look late; nothing else is
        // published through the word. Only the owner writes, so clearing checks the generation
        // without a compare-exchange: a later user of the slot keeps its word.
        if !clear {
            at.store(word(generation, standing), Ordering::Relaxed);
        } else if at.load(Ordering::Relaxed) & GENERATION_BITS == u64::from(generation) + 1 {
            at.store(0, Ordering::Relaxed);
        }
    }

    /// Any worker: how the connection at (`slot`, `generation`) stands.
    #[inline]
    pub fn standing(&self, slot: u32, generation: u32) -> Standing {
        let Some(w) = self.at(slot).map(|w| w.load(Ordering::Relaxed)) else {
            return Standing::CLEAR;
        };
        if w & GENERATION_BITS != u64::from(generation) + 1 {
            return Standing::CLEAR;
        }
        Standing {
            stalls: w & STALLS_BIT != 0,
            behind: w & BEHIND_BIT != 0,
            over: w & OVER_BIT != 0,
        }
    }

    /// Any worker: whether the connection at (`slot`, `generation`) stalls its producers.
    #[inline]
    pub fn stalls(&self, slot: u32, generation: u32) -> bool {
        self.standing(slot, generation).stalls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALLS: Standing = Standing {
        stalls: true,
        behind: false,
        over: false,
    };
    const BEHIND: Standing = Standing {
        stalls: false,
        behind: true,
        over: false,
    };
    const OVER: Standing = Standing {
        stalls: false,
        behind: true,
        over: true,
    };

    #[test]
    fn a_slot_stalls_only_for_the_generation_that_set_it() {
        let board = CongestionBoard::new(10_000);
        assert!(!board.stalls(5_000, 1));
        board.set(5_000, 1, STALLS);
        assert!(board.stalls(5_000, 1));
        assert!(!board.stalls(5_000, 2), "a later user of the slot");
        assert!(!board.stalls(5_001, 1));
        board.set(5_000, 2, Standing::CLEAR);
        assert!(
            board.stalls(5_000, 1),
            "clearing another generation leaves the word"
        );
        board.set(5_000, 1, Standing::CLEAR);
        assert!(!board.stalls(5_000, 1));
        assert!(!board.stalls(u32::MAX, 1), "beyond the board");
    }

    #[test]
    fn a_slot_reads_back_every_standing_for_the_largest_generation() {
        let board = CongestionBoard::new(10);
        for generation in [0, 1, u32::MAX] {
            for standing in [
                STALLS,
                BEHIND,
                OVER,
                Standing {
                    stalls: true,
                    behind: true,
                    over: true,
                },
                Standing::CLEAR,
            ] {
                board.set(3, generation, standing);
                assert_eq!(board.standing(3, generation), standing);
                assert_eq!(
                    board.standing(3, generation.wrapping_add(1)),
                    Standing::CLEAR
                );
            }
        }
    }

    #[test]
    fn a_behind_connection_no_longer_stalls_producers_but_groups_pass_over_it() {
        let board = CongestionBoard::new(10);
        board.set(4, 9, BEHIND);
        assert!(!board.stalls(4, 9));
        assert_eq!(board.standing(4, 9).congestion(), Congestion::Behind);
        board.set(4, 9, STALLS);
        assert_eq!(board.standing(4, 9).congestion(), Congestion::Stalling);
        board.set(4, 9, OVER);
        assert_eq!(board.standing(4, 9).congestion(), Congestion::Over);
        assert_eq!(Standing::of(false, Congestion::Over), OVER);
        assert_eq!(Standing::of(false, Congestion::Behind), BEHIND);
        assert_eq!(Standing::CLEAR.congestion(), Congestion::Clear);
    }

    #[test]
    fn clearing_a_slot_never_allocates_its_chunk() {
        let board = CongestionBoard::new(CHUNK_SLOTS * 3);
        board.set(CHUNK_SLOTS as u32, 7, Standing::CLEAR);
        assert!(board.chunks.iter().all(|c| c.get().is_none()));
        board.set(CHUNK_SLOTS as u32, 7, STALLS);
        assert!(board.chunks[1].get().is_some() && board.chunks[0].get().is_none());
    }
}
