//! Which of a worker's connections stall their producers, for producers on other workers to
//! see (see `core::flow`): a word per slot, written only by the worker that owns the slot and
//! read by any worker that hands a message to it. The words live in chunks allocated the
//! first time a slot in them is congested, so a worker's board costs nothing until then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Slots per chunk (32 KiB of words).
const CHUNK_SLOTS: usize = 4096;

type Chunk = Box<[AtomicU64]>;

pub struct CongestionBoard {
    chunks: Box<[OnceLock<Chunk>]>,
}

/// A slot's word: 0 when it stalls nobody, else its generation plus one.
fn word(generation: u32) -> u64 {
    u64::from(generation) + 1
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

    /// The owner: the connection at (`slot`, `generation`) stalls its producers (`true`) or
    /// no longer does.
    pub fn set(&self, slot: u32, generation: u32, stalls: bool) {
        let index = slot as usize;
        let Some(cell) = self.chunks.get(index / CHUNK_SLOTS) else {
            debug_assert!(false, "slot {slot} beyond the board");
            return;
        };
        if !stalls && cell.get().is_none() {
            return;
        }
        let chunk = cell.get_or_init(|| (0..CHUNK_SLOTS).map(|_| AtomicU64::new(0)).collect());
        let at = &chunk[index % CHUNK_SLOTS];
        // Relaxed: a producer that reads a stale word stalls one receive late, or resumes at
        // its next look; nothing else is published through the word. Only the owner writes,
        // so clearing checks the generation without a compare-exchange: a later user of the
        // slot keeps its word.
        if stalls {
            at.store(word(generation), Ordering::Relaxed);
        } else if at.load(Ordering::Relaxed) == word(generation) {
            at.store(0, Ordering::Relaxed);
        }
    }

    /// Any worker: whether the connection at (`slot`, `generation`) stalls its producers.
    #[inline]
    pub fn stalls(&self, slot: u32, generation: u32) -> bool {
        self.at(slot)
            .is_some_and(|w| w.load(Ordering::Relaxed) == word(generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_stalls_only_for_the_generation_that_set_it() {
        let board = CongestionBoard::new(10_000);
        assert!(!board.stalls(5_000, 1));
        board.set(5_000, 1, true);
        assert!(board.stalls(5_000, 1));
        assert!(!board.stalls(5_000, 2), "a later user of the slot");
        assert!(!board.stalls(5_001, 1));
        board.set(5_000, 2, false);
        assert!(
            board.stalls(5_000, 1),
            "clearing another generation leaves the word"
        );
        board.set(5_000, 1, false);
        assert!(!board.stalls(5_000, 1));
        assert!(!board.stalls(u32::MAX, 1), "beyond the board");
    }

    #[test]
    fn clearing_a_slot_never_allocates_its_chunk() {
        let board = CongestionBoard::new(CHUNK_SLOTS * 3);
        board.set(CHUNK_SLOTS as u32, 7, false);
        assert!(board.chunks.iter().all(|c| c.get().is_none()));
        board.set(CHUNK_SLOTS as u32, 7, true);
        assert!(board.chunks[1].get().is_some() && board.chunks[0].get().is_none());
    }
}
