//! Which sequence numbers of one (sender, epoch) a receiver has taken: the highest contiguous
//! one, `upto`, and a bitmap of the [`WINDOW_SEQS`] numbers above it. Sequence numbers start
//! at 1, so a fresh window has `upto = 0`. The bitmap exists only while a gap does (numbers
//! taken above one missing): 16 bytes per window in order, the common case, and 528 while a
//! gap lasts.

/// How far above the highest contiguous sequence number a receiver records arrivals. The
/// sender never has more than its window (`window_msgs_max`, at most this) unacknowledged, so
/// a live sender's numbers always fall inside. 4,096: a window of 1,024 held a fast sender
/// to about 1,024 messages per acknowledgement round trip (half a millisecond on loopback
/// under load), a third of what the path carries (see the README's acked figures).
pub const WINDOW_SEQS: u64 = 4096;
const WORDS: usize = (WINDOW_SEQS / 64) as usize;

/// What [`SeqWindow::accept`] made of a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// Not seen before: deliver it.
    New,
    /// Seen before (or 0, which no sender uses): drop it, and acknowledge again.
    Duplicate,
    /// More than [`WINDOW_SEQS`] above `upto`: not recorded; the sender will send it again.
    BeyondWindow,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeqWindow {
    upto: u64,
    /// Bit `i` (word `i / 64`, bit `i % 64`) set: `upto + 1 + i` was taken. `None` when no
    /// bit would be set (invariant: never `Some` with every bit clear).
    above: Option<Box<[u64; WORDS]>>,
}

impl SeqWindow {
    /// The highest sequence number below which every one was taken.
    pub fn upto(&self) -> u64 {
        self.upto
    }

    pub fn contains(&self, seq: u64) -> bool {
        if seq <= self.upto {
            return true;
        }
        let offset = seq - self.upto - 1;
        offset < WINDOW_SEQS && self.bit(offset as usize)
    }

    /// True when something above `upto + 1` was taken while `upto + 1` was not: a gap.
    pub fn has_gap(&self) -> bool {
        self.above.is_some()
    }

    /// Records `seq` unless it was taken before or lies beyond the window.
    pub fn accept(&mut self, seq: u64) -> Accept {
        if seq <= self.upto {
            return Accept::Duplicate;
        }
        // The common case, in order with no gap: no bitmap to look at.
        if seq == self.upto + 1 && self.above.is_none() {
            self.upto = seq;
            return Accept::New;
        }
        let offset = seq - self.upto - 1;
        if offset >= WINDOW_SEQS {
            return Accept::BeyondWindow;
        }
        let offset = offset as usize;
        if self.bit(offset) {
            return Accept::Duplicate;
        }
        let above = self.above.get_or_insert_with(|| Box::new([0; WORDS]));
        above[offset / 64] |= 1 << (offset % 64);
        self.advance();
        Accept::New
    }

    /// The runs of taken numbers above `upto`, lowest first, as inclusive `(first, last)`
    /// pairs; at most `runs_max` of them.
    pub fn runs(&self, runs_max: usize) -> Vec<(u64, u64)> {
        let mut runs = Vec::new();
        let mut offset = 0usize;
        while runs.len() < runs_max {
            // Whole words at a time: the first taken bit at or after `offset`, then the first
            // free one after it (an empty window costs WORDS steps, not WINDOW_SEQS).
            let Some(first) = self.next_with(offset, true) else {
                break;
            };
            let end = self.next_with(first, false).unwrap_or(WINDOW_SEQS as usize);
            let seq = |o: usize| self.upto + 1 + o as u64;
            runs.push((seq(first), seq(end - 1)));
            offset = end;
        }
        runs
    }

    /// The first offset at or after `from` whose bit is `taken`, if any below WINDOW_SEQS.
    fn next_with(&self, from: usize, taken: bool) -> Option<usize> {
        let Some(above) = &self.above else {
            return (!taken && from < WINDOW_SEQS as usize).then_some(from);
        };
        let mut word_index = from / 64;
        // Bits below `from` in its word are masked out of the search.
        let mut mask = u64::MAX << (from % 64);
        while word_index < WORDS {
            let word = above[word_index];
            let wanted = if taken { word } else { !word } & mask;
            if wanted != 0 {
                return Some(word_index * 64 + wanted.trailing_zeros() as usize);
            }
            word_index += 1;
            mask = u64::MAX;
        }
        None
    }

    fn bit(&self, offset: usize) -> bool {
        self.above
            .as_ref()
            .is_some_and(|above| above[offset / 64] & (1 << (offset % 64)) != 0)
    }

    /// Moves `upto` over the taken numbers just above it, shifting the bitmap down; drops the
    /// bitmap once no bit is left (the gap is closed).
    fn advance(&mut self) {
        let Some(above) = self.above.as_mut() else {
            return;
        };
        let mut shift = 0usize;
        for &word in above.iter() {
            let ones = word.trailing_ones() as usize;
            shift += ones;
            if ones < 64 {
                break;
            }
        }
        if shift == 0 {
            return;
        }
        self.upto += shift as u64;
        let (words, bits) = (shift / 64, shift % 64);
        for i in 0..WORDS {
            let low = above.get(i + words).copied().unwrap_or(0);
            let high = above.get(i + words + 1).copied().unwrap_or(0);
            above[i] = if bits == 0 {
                low
            } else {
                (low >> bits) | (high << (64 - bits))
            };
        }
        if above.iter().all(|&word| word == 0) {
            self.above = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The naive model: the set of taken numbers.
    fn model_upto(taken: &BTreeSet<u64>) -> u64 {
        let mut upto = 0;
        while taken.contains(&(upto + 1)) {
            upto += 1;
        }
        upto
    }

    /// The naive model of `runs`: maximal stretches of taken numbers above `upto`.
    fn model_runs(taken: &BTreeSet<u64>, upto: u64) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &seq in taken.range(upto + 1..) {
            match runs.last_mut() {
                Some((_, last)) if *last + 1 == seq => *last = seq,
                _ => runs.push((seq, seq)),
            }
        }
        runs
    }

    #[test]
    fn runs_reach_the_top_of_the_window_and_stop_at_runs_max() {
        let mut w = SeqWindow::default();
        for seq in (WINDOW_SEQS - 70)..=WINDOW_SEQS {
            assert_eq!(w.accept(seq), Accept::New);
        }
        assert_eq!(w.accept(WINDOW_SEQS + 1), Accept::BeyondWindow);
        w.accept(65);
        assert_eq!(w.runs(8), vec![(65, 65), (WINDOW_SEQS - 70, WINDOW_SEQS)]);
        assert_eq!(w.runs(1), vec![(65, 65)]);
        assert!(SeqWindow::default().runs(8).is_empty());
    }

    #[test]
    fn in_order_numbers_advance_upto_and_repeats_are_duplicates() {
        let mut w = SeqWindow::default();
        assert_eq!(w.accept(0), Accept::Duplicate);
        for seq in 1..=3000 {
            assert_eq!(w.accept(seq), Accept::New);
            assert_eq!(w.upto(), seq);
            assert!(!w.has_gap());
        }
        assert_eq!(w.accept(2999), Accept::Duplicate);
        assert_eq!(w.accept(3000 + WINDOW_SEQS + 1), Accept::BeyondWindow);
        assert_eq!(w.accept(3000 + WINDOW_SEQS), Accept::New);
        assert_eq!(w.runs(8), vec![(3000 + WINDOW_SEQS, 3000 + WINDOW_SEQS)]);
        assert!(w.has_gap());
    }

    #[test]
    fn gaps_are_runs_until_filled_then_upto_jumps() {
        let mut w = SeqWindow::default();
        for seq in [2, 3, 5, 70, 71, 200] {
            assert_eq!(w.accept(seq), Accept::New);
        }
        assert_eq!(w.upto(), 0);
        assert!(w.has_gap());
        assert_eq!(w.runs(8), vec![(2, 3), (5, 5), (70, 71), (200, 200)]);
        assert_eq!(w.runs(2), vec![(2, 3), (5, 5)]);
        assert_eq!(w.accept(1), Accept::New);
        assert_eq!(w.upto(), 3);
        assert_eq!(w.accept(4), Accept::New);
        assert_eq!(w.upto(), 5);
        for seq in 6..70 {
            w.accept(seq);
        }
        assert_eq!(w.upto(), 71);
        assert_eq!(w.runs(8), vec![(200, 200)]);
        for seq in 72..200 {
            w.accept(seq);
        }
        assert_eq!(w.upto(), 200);
        assert!(!w.has_gap(), "the gap closed: the bitmap is gone");
        assert!(w.runs(8).is_empty());
    }

    #[test]
    fn any_arrival_order_agrees_with_the_set_model() {
        // A deterministic shuffle of 1..=N with repeats, checked step by step.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        // Small ranges, probed often; then ranges past the window, probed now and then.
        let rounds = (0..60)
            .map(|round| (50 + round * 23, 16))
            .chain([(5_000, 512), (9_000, 512)]);
        for (n, probe_every) in rounds {
            let mut w = SeqWindow::default();
            let mut taken = BTreeSet::new();
            for step in 0..n * 3 {
                let seq = 1 + next() % n;
                let upto = model_upto(&taken);
                let want = if taken.contains(&seq) {
                    Accept::Duplicate
                } else if seq - upto > WINDOW_SEQS {
                    Accept::BeyondWindow
                } else {
                    taken.insert(seq);
                    Accept::New
                };
                assert_eq!(w.accept(seq), want, "seq {seq}");
                assert_eq!(w.upto(), model_upto(&taken));
                if step % probe_every != 0 {
                    continue;
                }
                assert_eq!(w.has_gap(), !w.runs(usize::MAX).is_empty());
                for probe in 1..=n {
                    assert_eq!(w.contains(probe), taken.contains(&probe));
                }
                assert_eq!(w.runs(usize::MAX), model_runs(&taken, w.upto()));
            }
        }
    }
}
