//! Relay counters. Each worker owns one cache-line-padded block and is its only writer, so an
//! increment is a relaxed load and store with no contention; readers sum the blocks.

use crate::protocol::FrameKind;
use crossbeam::utils::CachePadded;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct WorkerStats {
    /// Client connections open now (cluster data links are in `links_open`).
    pub connections_open: AtomicU64,
    /// Data links to and from other nodes open now.
    pub links_open: AtomicU64,
    pub connections_accepted: AtomicU64,
    pub frames_in: AtomicU64,
    pub deliveries: AtomicU64,
    pub unknown_id: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    /// Client connections moved to this worker from another (see `moves.rs`).
    pub connection_moves: AtomicU64,
    /// Moves this worker opened and abandoned (the node was not quiet in time, a move came
    /// in between, the node began to stop, or the target was full).
    pub connection_move_aborts: AtomicU64,
    /// Of those, moves the target gave back (at its connection limit, or stopping): the
    /// mover took the connection back.
    pub connection_move_returns: AtomicU64,
    /// Time the workers spent at the barrier of this worker's moves, in µs (from opening the
    /// move to its end, moved or abandoned).
    pub connection_move_pause_us: AtomicU64,
    /// Closes whose `close_linger_ms` ran out before the peer had everything (see
    /// `worker_linger.rs`).
    pub close_linger_timeouts: AtomicU64,
    pub protocol_error_closes: AtomicU64,
    pub handoff_drops: AtomicU64,
    /// Messages dropped because this worker's client queues together were at
    /// `pending_bytes_per_worker_max` (or in its last eighth, kept for queues not behind).
    pub worker_pending_drops: AtomicU64,
    /// Messages forwarded to another node over a data link.
    pub forwarded_out: AtomicU64,
    /// Forwards dropped for want of a link: no backlog could be kept for the node, or its
    /// backlog expired, its node was declared dead or the relay stopped before a link came
    /// up.
    pub forward_drops: AtomicU64,
    /// Forwards dropped at `link_pending_bytes_max` (a link's queue or a backlog, full).
    pub forward_link_full_drops: AtomicU64,
    /// Messages received from other nodes over data links.
    pub forwarded_in: AtomicU64,
    /// Forwarded SENDs whose target was no longer a client here (moved or left in flight).
    pub forwarded_in_stale: AtomicU64,
    /// SUBSCRIBEs and WATCHes refused at a configured limit.
    pub limit_refusals: AtomicU64,
    /// Requests that reached no subscriber anywhere (answered "no responders").
    pub no_responders: AtomicU64,
    /// SEND, PUBLISH, SUBSCRIBE and WATCH frames refused outside the client's permissions.
    pub permission_denials: AtomicU64,
    /// HELLOs refused for their token or credentials (closed AUTH_FAILED).
    pub auth_failures: AtomicU64,
    /// SEND and PUBLISH frames dropped: payload longer than the relay delivers.
    pub payload_too_large_drops: AtomicU64,
    /// Forwarded messages dropped because their frame on a data link was malformed (the
    /// link stays up).
    pub link_bad_frame_drops: AtomicU64,
    /// ACKs dropped: the client they acknowledge is not registered (it left).
    pub ack_unroutable_drops: AtomicU64,
    /// Acknowledged messages and RECEIPTs dropped: the destination speaks protocol version 1.
    pub acked_to_version_1_drops: AtomicU64,
    /// Messages queued on an outbound data link when it closed (never handed to the kernel,
    /// or only partly).
    pub link_loss_drops: AtomicU64,
    pub loop_iterations: AtomicU64,
    /// Receives that found the receive buffer ring empty (ENOBUFS; re-armed, the data waits in
    /// the socket): the ring is kept small on purpose, see `uring/recv_fill.rs`.
    pub recv_ring_empty: AtomicU64,
    /// Frames decoded from clients, by kind (index: [`kind_index`]).
    pub frames_in_by_kind: [AtomicU64; KINDS],
    /// Frames queued to local connections, by kind (DELIVER, control frames, CLOSE).
    pub frames_out_by_kind: [AtomicU64; KINDS],
    /// Bytes received (recv completions) and sent (send completions).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Frames dropped because the destination connection was gone or closing (a dropped
    /// ERROR summary as the ERRORs it stood for).
    pub stale_drops: AtomicU64,
    /// DELIVERs dropped because they would have put a connection past its ceiling (twice
    /// `pending_bytes_max`; their senders are told OVERLOADED, the connection stays until its
    /// grace runs out).
    pub slow_consumer_drops: AtomicU64,
    /// Producers whose reads were paused because a queue they feed was full (`core::flow`),
    /// by what they waited for (see [`STALL_ON_LABELS`]).
    pub producer_stalls: [AtomicU64; STALL_ON_LABELS.len()],
    /// Their paused time in all, in milliseconds.
    pub producer_stall_ms: AtomicU64,
    /// Stalls that ran to `stall_ms_max` (the queue did not drain in time).
    pub producer_stall_timeouts: AtomicU64,
    /// ERRORs counted into a later summary instead of being sent (`core::error_ledger`).
    pub errors_coalesced: AtomicU64,
    /// ERRORs dropped: the connection's ledger was full, or its queue at `pending_bytes_max`.
    pub error_drops: AtomicU64,
    /// Reports queued to senders of their messages dropped away from their receive: one
    /// per sender and subject per batch (`core::drop_reports`), as an ERROR here or
    /// FWD_DROPPED to the sender's node.
    pub drop_reports: AtomicU64,
    /// Messages dropped away from their sender's receive that no report told it of.
    pub drops_unreported: AtomicU64,
    /// Completions reaped (sum over loop iterations).
    pub completions: AtomicU64,
    /// Loop iterations by completions reaped: bucket `i` counts batches of
    /// `2^(i-1) ..= 2^i - 1` completions (bucket 0: none; the last bucket is open-ended).
    pub batch_buckets: [AtomicU64; BATCH_BUCKETS],
}

/// Number of frame kinds counted per kind.
pub const KINDS: usize = FrameKind::ALL.len();

/// Histogram buckets of completions per loop iteration (see `batch_buckets`).
pub const BATCH_BUCKETS: usize = 14;

/// Index of `kind` in the per-kind arrays: its position in [`FrameKind::ALL`].
#[inline]
pub const fn kind_index(kind: FrameKind) -> usize {
    match kind {
        FrameKind::Hello => 0,
        FrameKind::Welcome => 1,
        FrameKind::Send => 2,
        FrameKind::Publish => 3,
        FrameKind::Subscribe => 4,
        FrameKind::Unsubscribe => 5,
        FrameKind::Watch => 6,
        FrameKind::Unwatch => 7,
        FrameKind::Deliver => 8,
        FrameKind::Presence => 9,
        FrameKind::Ping => 10,
        FrameKind::Pong => 11,
        FrameKind::Error => 12,
        FrameKind::Close => 13,
        FrameKind::Ack => 14,
        FrameKind::Receipt => 15,
        FrameKind::Challenge => 16,
        FrameKind::Proof => 17,
    }
}

/// Bucket of `batch_buckets` for a batch of `n` completions: its bit length, capped.
#[inline]
pub fn batch_bucket(n: usize) -> usize {
    ((usize::BITS - n.leading_zeros()) as usize).min(BATCH_BUCKETS - 1)
}

/// What a stalled producer waited for, as `ringrelay_producer_stalls_total` labels it: a
/// client's queue (on any worker), a data link's queue, the handoff queue to another worker, a
/// backlog of forwards for a link being dialled.
pub const STALL_ON_LABELS: [&str; 4] = ["client", "link", "handoff", "link_backlog"];

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
        s.links_open += get(&b.links_open);
        s.connections_accepted += get(&b.connections_accepted);
        s.frames_in += get(&b.frames_in);
        s.bytes_in += get(&b.bytes_in);
        s.deliveries += get(&b.deliveries);
        s.unknown_id += get(&b.unknown_id);
        s.slow_consumer_closes += get(&b.slow_consumer_closes);
        s.connection_moves += get(&b.connection_moves);
        s.connection_move_aborts += get(&b.connection_move_aborts);
        s.connection_move_returns += get(&b.connection_move_returns);
        s.close_linger_timeouts += get(&b.close_linger_timeouts);
        s.protocol_error_closes += get(&b.protocol_error_closes);
        s.handoff_drops += get(&b.handoff_drops);
        s.worker_pending_drops += get(&b.worker_pending_drops);
        s.limit_refusals += get(&b.limit_refusals);
        s.payload_too_large_drops += get(&b.payload_too_large_drops);
        s.link_bad_frame_drops += get(&b.link_bad_frame_drops);
        s.link_loss_drops += get(&b.link_loss_drops);
        s.permission_denials += get(&b.permission_denials);
        s.auth_failures += get(&b.auth_failures);
        s.producer_stalls += b.producer_stalls.iter().map(get).sum::<u64>();
        s.producer_stall_ms += get(&b.producer_stall_ms);
        s.producer_stall_timeouts += get(&b.producer_stall_timeouts);
        s.errors_coalesced += get(&b.errors_coalesced);
        s.error_drops += get(&b.error_drops);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_indexes_follow_the_kind_list() {
        for (i, kind) in FrameKind::ALL.iter().enumerate() {
            assert_eq!(kind_index(*kind), i);
        }
    }

    #[test]
    fn batch_buckets_are_bit_lengths() {
        let cases = [(0, 0), (1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (8, 4)];
        for (n, bucket) in cases {
            assert_eq!(batch_bucket(n), bucket, "{n}");
        }
        assert_eq!(batch_bucket(usize::MAX), BATCH_BUCKETS - 1);
    }
}
