//! Flow control on the worker (the policy is `core::flow`): pausing a producer's reads when a
//! queue it feeds is full, resuming them, keeping the congestion board true to consumers
//! whose episode ended or whose budget is spent, and closing consumers that stayed above
//! `pending_bytes_max` past their grace. A child module of `worker`, so it shares the
//! worker's private state.

use super::super::congestion::Standing;
use super::super::conn::ConnState;
use super::super::deliver::PendingClose;
use super::super::handoff::handoff_stall_at_bytes;
use super::super::stats::bump;
use super::Worker;
use crate::core::flow::{Stall, StallOn};
use crate::protocol::CloseReason;

/// A producer whose reads are paused.
#[derive(Clone, Copy, Debug)]
pub struct Stalled {
    pub slot: u32,
    pub generation: u32,
    pub stall: Stall,
}

/// While anything is stalled, the loop looks again this often: a queue on another worker, or
/// the handoff to it, drains there and nothing wakes this worker for it.
pub const STALL_POLL_MS: u64 = 1;

impl Worker {
    /// Pauses the reads of the producer at (`slot`, `generation`) as its batch asked (see
    /// `Deliverer::stall`): its multishot receive is cancelled and not re-armed until the stall
    /// ends. Bytes the kernel already delivered are still handled.
    pub(super) fn stall_reads(
        &mut self,
        slot: u32,
        generation: u32,
        stall: Option<(StallOn, u64)>,
    ) {
        let Some((on, until_ms)) = stall else {
            return;
        };
        let now_ms = self.now_ms;
        let label = self.stall_label(on);
        let Some(c) = self.slab.get_live(slot, generation) else {
            return;
        };
        if c.reads_paused || !c.accepts_frames() {
            return;
        }
        c.reads_paused = true;
        if c.recv_armed {
            self.uring.cancel_recv(slot, generation);
        }
        self.stalled.push(Stalled {
            slot,
            generation,
            stall: Stall {
                on,
                since_ms: now_ms,
                until_ms,
            },
        });
        bump(
            &self.shared.stats[self.index as usize].producer_stalls[label],
            1,
        );
    }

    /// How long the loop may sleep: `None` (until a completion) unless something is stalled
    /// (a producer here, or a consumer here that stalls producers). A consumer that is only
    /// behind is looked at again by the completions that drain it.
    pub(super) fn flow_wait_ms(&self) -> Option<u64> {
        let board = &self.shared.boards[self.index as usize];
        let stalling = || {
            self.congested
                .iter()
                .any(|&(slot, generation)| board.stalls(slot, generation))
        };
        (!self.stalled.is_empty() || stalling()).then_some(STALL_POLL_MS)
    }

    /// Once per loop iteration while anything is stalled: consumers that no longer stall
    /// their producers leave the board, and producers whose stall is over read again.
    pub(super) fn flow_round(&mut self) {
        if !self.congested.is_empty() {
            self.end_congestion();
        }
        let mut i = 0;
        while i < self.stalled.len() {
            let Stalled {
                slot,
                generation,
                stall,
            } = self.stalled[i];
            let live = self
                .slab
                .get_live(slot, generation)
                .is_some_and(|c| c.state == ConnState::Open);
            if live && !stall.over(self.now_ms, self.still_stalls(stall.on)) {
                i += 1;
                continue;
            }
            self.stalled.swap_remove(i);
            self.resume_reads(slot, generation, stall);
        }
    }

    /// The index in `STALL_ON_LABELS` of what a stall waits for.
    fn stall_label(&self, on: StallOn) -> usize {
        if let Some((slot, generation)) = on.local_queue(self.index) {
            // A queue on this worker: a client's, or a data link's (`append_link`).
            let link = self
                .slab
                .conns
                .get(slot as usize)
                .is_some_and(|c| c.generation == generation && c.link.is_some());
            return usize::from(link);
        }
        match on {
            // Producers wait on a queue of another worker through its board: a client's.
            StallOn::Queue { .. } => 0,
            StallOn::Handoff(_) => 2,
            StallOn::Backlog(_) => 3,
        }
    }

    /// Whether what a stall waits for still stalls its producers.
    fn still_stalls(&mut self, on: StallOn) -> bool {
        let now_ms = self.now_ms;
        if let Some((slot, generation)) = on.local_queue(self.index) {
            let (client_flow, link_flow) = (&self.client_flow, &self.link_flow);
            return self.slab.get_live(slot, generation).is_some_and(|c| {
                let limits = if c.link.is_some() {
                    link_flow
                } else {
                    client_flow
                };
                c.backlog.stalls(limits, now_ms)
            });
        }
        match on {
            StallOn::Queue {
                worker,
                slot,
                generation,
            } => self.shared.boards[worker as usize].stalls(slot, generation),
            StallOn::Handoff(worker) => {
                let held = self.outboxes[worker as usize].held_bytes();
                let cfg = &self.shared.config;
                held >= handoff_stall_at_bytes(cfg.handoff_bytes_max, cfg.pending_bytes_max) / 2
            }
            // A backlog does not drain: it is taken whole when the link is adopted.
            StallOn::Backlog(node) => {
                self.link_backlogs.bytes_of(node) >= self.link_flow.resume_below_bytes
            }
        }
    }

    fn resume_reads(&mut self, slot: u32, generation: u32, stall: Stall) {
        let stats = &self.shared.stats[self.index as usize];
        bump(
            &stats.producer_stall_ms,
            self.now_ms.saturating_sub(stall.since_ms),
        );
        if self.now_ms >= stall.until_ms {
            bump(&stats.producer_stall_timeouts, 1);
        }
        let Some(c) = self.slab.get_live(slot, generation) else {
            return;
        };
        c.reads_paused = false;
        if c.state == ConnState::Open {
            self.after_recv(slot);
        }
    }

    /// The board follows this worker's congested consumers: one whose stall budget is spent
    /// no longer stalls producers but stays marked behind while its episode lasts (queue
    /// groups on other workers pass over it); one whose episode ended, or that closed, leaves
    /// the board.
    fn end_congestion(&mut self) {
        let now_ms = self.now_ms;
        let board = &self.shared.boards[self.index as usize];
        let (slab, limits) = (&self.slab, &self.client_flow);
        self.congested.retain(|&(slot, generation)| {
            let now = slab
                .conns
                .get(slot as usize)
                .filter(|c| c.generation == generation && c.state == ConnState::Open)
                .map_or(Standing::CLEAR, |c| {
                    Standing::of_backlog(&c.backlog, limits, now_ms)
                });
            if now != board.standing(slot, generation) {
                board.set(slot, generation, now);
            }
            now != Standing::CLEAR
        });
    }

    /// At a tick: a client that stayed above `pending_bytes_max` for longer than
    /// `slow_consumer_grace_ms` is closed as a slow consumer.
    pub(super) fn close_if_overdue(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        if c.link.is_some() || !c.backlog.overdue(&self.client_flow, self.now_ms) {
            return;
        }
        c.close_requested = true;
        bump(
            &self.shared.stats[self.index as usize].slow_consumer_closes,
            1,
        );
        self.pending_closes.push(PendingClose {
            slot,
            generation: c.generation,
            reason: CloseReason::SLOW_CONSUMER,
            text: "slow consumer: above pending_bytes_max for longer than slow_consumer_grace_ms",
            peer_gone: false,
        });
    }
}
