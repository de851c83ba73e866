//! Relay counters. Each worker owns one cache-line-padded block and is its only writer, so an
//! increment is a relaxed load and store with no contention; readers sum the blocks.

use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct WorkerStats {
    pub connections_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub frames_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub unknown_id: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub protocol_error_closes: AtomicU64,
    pub handoff_drops: AtomicU64,
    pub loop_iterations: AtomicU64,
}

/// Single-writer increment.
#[inline]
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

pub type StatsBlocks = Box<[CachePadded<WorkerStats>]>;

pub fn new_blocks(workers: usize) -> StatsBlocks {
    (0..workers)
        .map(|_| CachePadded::new(WorkerStats::default()))
        .collect()
}

/// Sums every worker's block.
pub fn snapshot(blocks: &StatsBlocks) -> super::StatsSnapshot {
    let mut s = super::StatsSnapshot::default();
    for b in blocks.iter() {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.connections_open += get(&b.connections_open);
        s.connections_accepted += get(&b.connections_accepted);
        s.frames_in += get(&b.frames_in);
        s.deliveries += get(&b.deliveries);
        s.unknown_id += get(&b.unknown_id);
        s.slow_consumer_closes += get(&b.slow_consumer_closes);
        s.protocol_error_closes += get(&b.protocol_error_closes);
        s.handoff_drops += get(&b.handoff_drops);
    }
    s
}
