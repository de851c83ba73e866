//! Registration epochs: a hybrid logical clock shared by the workers and the cluster control
//! thread of one node.
//!
//! An epoch is microseconds of wall time, pushed forward past every epoch this node has seen
//! (its own and its peers'). So a registration made after this node learnt of another node's
//! row for the same id always gets a greater epoch, and wins (see [`super::location::Row`]),
//! even when the two nodes' clocks disagree. Sans-IO: the caller passes the wall time in.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct EpochClock {
    last: AtomicU64,
}

impl EpochClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh epoch, greater than every epoch issued or observed before.
    pub fn next(&self, wall_us: u64) -> u64 {
        let mut current = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall_us.max(current + 1);
            match self.last.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(seen) => current = seen,
            }
        }
    }

    /// Records an epoch seen from a peer, so later local epochs exceed it.
    pub fn observe(&self, epoch: u64) {
        self.last.fetch_max(epoch, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_increase_and_pass_observed_ones_even_with_a_clock_behind() {
        let c = EpochClock::new();
        let a = c.next(1_000);
        let b = c.next(1_000);
        assert!(b > a);
        c.observe(5_000_000);
        assert!(c.next(2_000) > 5_000_000, "a peer ahead of our wall clock");
        assert_eq!(
            c.next(9_000_000),
            9_000_000,
            "wall time leads when it is ahead"
        );
    }

    #[test]
    fn concurrent_epochs_are_unique() {
        let c = std::sync::Arc::new(EpochClock::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..10_000).map(|_| c.next(1)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40_000);
    }
}
