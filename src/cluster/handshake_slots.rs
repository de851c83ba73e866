//! The acceptor's bound on link handshakes in progress: at most `max` in all and at most
//! `per_source_max` from one source address, so sockets that connect and then trickle (or say
//! nothing) from one host cannot take every slot from real peers. Each handshake also ends
//! within `HANDSHAKE_TIMEOUT`, so a slot is never held for long.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Counts {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Counts the handshakes in progress, in all and by source address.
#[derive(Clone)]
pub struct HandshakeSlots {
    counts: Arc<Mutex<Counts>>,
    max: usize,
    per_source_max: usize,
}

/// One handshake's slot: released when dropped, whether the handshake ran, failed, or its
/// thread never started (a closure that is never run is dropped too).
pub struct HandshakeSlot {
    counts: Arc<Mutex<Counts>>,
    source: IpAddr,
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // Poison only means a panic elsewhere; the counts are updated in single steps.
    counts.lock().unwrap_or_else(|p| p.into_inner())
}

impl HandshakeSlots {
    pub fn new(max: usize, per_source_max: usize) -> HandshakeSlots {
        HandshakeSlots {
            counts: Arc::default(),
            max,
            per_source_max,
        }
    }

    /// A slot for a handshake from `source`, or `None` when `max` are in progress or
    /// `per_source_max` from that address.
    pub fn try_acquire(&self, source: IpAddr) -> Option<HandshakeSlot> {
        let mut counts = lock(&self.counts);
        let from_source = counts.by_source.get(&source).copied().unwrap_or(0);
        if counts.total >= self.max || from_source >= self.per_source_max {
            return None;
        }
        counts.total += 1;
        *counts.by_source.entry(source).or_default() += 1;
        Some(HandshakeSlot {
            counts: Arc::clone(&self.counts),
            source,
        })
    }

    #[cfg(test)]
    pub fn in_progress(&self) -> (usize, usize) {
        let counts = lock(&self.counts);
        (counts.total, counts.by_source.len())
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.counts);
        counts.total -= 1;
        if let Some(n) = counts.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.by_source.remove(&self.source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn bounded_in_all_and_released_even_when_the_thread_never_runs() {
        let slots = HandshakeSlots::new(2, 2);
        let a = slots.try_acquire(ip(1)).expect("first slot");
        let b = slots.try_acquire(ip(2)).expect("second slot");
        assert!(slots.try_acquire(ip(3)).is_none(), "bounded at max");
        assert_eq!(slots.in_progress(), (2, 2));
        drop(a);
        assert_eq!(slots.in_progress(), (1, 1));
        // What a failed spawn does: the closure owning the slot is dropped, never run.
        let never_run = move || drop(b);
        drop(never_run);
        assert_eq!(slots.in_progress(), (0, 0), "no source entry left behind");
        let many: Vec<_> = (0..2).map(|_| slots.try_acquire(ip(1))).collect();
        assert!(
            many.iter().all(Option::is_some),
            "released slots are reusable"
        );
    }

    #[test]
    fn one_source_cannot_take_every_slot() {
        let slots = HandshakeSlots::new(8, 3);
        let flood: Vec<_> = (0..100).filter_map(|_| slots.try_acquire(ip(9))).collect();
        assert_eq!(flood.len(), 3);
        let peers: Vec<_> = (1..=5).filter_map(|i| slots.try_acquire(ip(i))).collect();
        assert_eq!(peers.len(), 5, "other sources still get in");
        assert!(slots.try_acquire(ip(7)).is_none(), "the total bound holds");
    }
}
