//! The move barrier: how a client connection passes from one worker to another without a
//! message to or from it lost or reordered (see `core::steer` for why it moves).
//!
//! Messages to a connection travel by the worker that owns it: its own senders append to its
//! queue, other workers' hand over through the FIFO queues between workers. Moving the
//! connection while any such message is in flight would let a newer one, routed to the new
//! worker, overtake an older one still on its way to the old worker. So a move stops the
//! node for a moment, as a barrier every worker joins at the top of its loop:
//!
//! 1. The mover (the connection's worker) has stopped reading the connection and waited for
//!    its operations to complete, so nothing of it is in the kernel's hands. It opens a move
//!    and wakes every worker.
//! 2. Every worker, at the top of its loop, stops taking completions (so no client input is
//!    routed: nothing new can be sent to or by anyone) and only drains what other workers
//!    handed it and pushes what that produced, until it is quiet: its queues in are empty and
//!    it has nothing to push. `pushes` counts every push; the node is quiet when every worker
//!    was quiet at the current count, so no handoff is in flight anywhere, and every message
//!    routed to or from the connection before the move is in its send queue or its peers'.
//! 3. The mover takes the connection out of its slab (socket, session, queued bytes) and
//!    hands it over; the target installs it, points the id's row at its new place, and every
//!    worker goes on. Messages routed from now on find the new place.
//!
//! Bounded: a move that is not quiet within [`MOVE_BARRIER_MS_MAX`] is abandoned (every worker
//! goes on, the connection stays), and one move runs at a time.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// Longest a move may hold every worker at its barrier before it is abandoned, in ms. A
/// worker joins at the end of its current round (at most `ROUND_OUTPUT_BYTES_MAX` of output,
/// well under a millisecond) or when woken from its wait; 20 ms leaves room for a worker that
/// the scheduler delays, and bounds what an abandoned move costs.
pub const MOVE_BARRIER_MS_MAX: u64 = 20;

/// `quiet_at` of a worker that is not (yet) quiet in this move.
const NOT_QUIET: u64 = u64::MAX;

/// Where a move stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Workers join and drain until the node is quiet.
    Gather,
    /// The connection is in `handover`; the target installs it.
    Adopt,
    /// The target could not take it (its connection limit): back to the mover.
    Returned,
    /// Over (moved, or abandoned): every worker goes on.
    Over,
}

/// One move.
#[derive(Debug)]
pub struct Move<T> {
    pub epoch: u64,
    pub mover: u16,
    pub target: u16,
    pub phase: Phase,
    /// The connection in transit (during `Adopt` and `Returned`).
    pub handover: Option<T>,
    /// When the move opened (the workers' shared clock, ms).
    pub opened_ms: u64,
}

/// Shared by every worker: the move in progress and the barrier's counters.
pub struct MoveBoard<T> {
    /// Set while a move is open: the one load every worker does per loop iteration.
    pub active: AtomicBool,
    /// Batches pushed between workers, ever (see the module docs).
    pub pushes: AtomicU64,
    /// Workers at the barrier of the open move.
    pub arrived: AtomicU32,
    /// Per worker: the `pushes` count at which it last found itself quiet in this move.
    quiet_at: Box<[AtomicU64]>,
    pub current: Mutex<Option<Move<T>>>,
    next_epoch: AtomicU64,
    /// Per worker: the CPU its thread used over its last steering interval, in permille of
    /// one CPU (for the balance rule, `core::steer::balance`).
    pub busy_permille: Box<[AtomicU32]>,
    /// Per worker: its busy connections over its last steering interval (for
    /// `core::steer::follow_worth_it`).
    pub busy_conns: Box<[AtomicU32]>,
    /// Per worker: those of its busy connections that sent at least `STEER_BYTES_PER_S_MIN`
    /// (for `core::steer::follow_worth_it`).
    pub busy_senders: Box<[AtomicU32]>,
}

impl<T> MoveBoard<T> {
    pub fn new(workers: usize) -> Self {
        MoveBoard {
            active: AtomicBool::new(false),
            pushes: AtomicU64::new(0),
            arrived: AtomicU32::new(0),
            quiet_at: (0..workers).map(|_| AtomicU64::new(NOT_QUIET)).collect(),
            current: Mutex::new(None),
            next_epoch: AtomicU64::new(1),
            busy_permille: (0..workers).map(|_| AtomicU32::new(0)).collect(),
            busy_conns: (0..workers).map(|_| AtomicU32::new(0)).collect(),
            busy_senders: (0..workers).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Move<T>>> {
        // A worker never panics while holding it (nothing in the critical sections can), but
        // a poisoned lock must not stop the others: the state is plain data.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a move of a connection of `mover` to `target`; false if one is open already.
    pub fn open(&self, mover: u16, target: u16, now_ms: u64) -> bool {
        let mut current = self.lock();
        if current.is_some() {
            return false;
        }
        for q in self.quiet_at.iter() {
            q.store(NOT_QUIET, Ordering::SeqCst);
        }
        self.arrived.store(0, Ordering::SeqCst);
        *current = Some(Move {
            epoch: self.next_epoch.fetch_add(1, Ordering::Relaxed),
            mover,
            target,
            phase: Phase::Gather,
            handover: None,
            opened_ms: now_ms,
        });
        self.active.store(true, Ordering::SeqCst);
        true
    }

    /// Runs `f` on the open move (`None`: none is open).
    pub fn with<R>(&self, f: impl FnOnce(&mut Option<Move<T>>) -> R) -> R {
        f(&mut self.lock())
    }

    /// How many moves were ever opened on the node.
    pub fn opened(&self) -> u64 {
        self.next_epoch.load(Ordering::SeqCst) - 1
    }

    /// Every worker's busy permille, as last published.
    pub fn busy_snapshot(&self) -> Vec<u32> {
        self.busy_permille
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// A worker joins the open move's barrier, once per move (`joined` is the epoch it last
    /// joined). Returns false if there is nothing to join.
    pub fn join(&self, joined: &mut u64) -> bool {
        let current = self.lock();
        match current.as_ref() {
            Some(m) if m.epoch != *joined => {
                *joined = m.epoch;
                self.arrived.fetch_add(1, Ordering::SeqCst);
                true
            }
            _ => false,
        }
    }

    /// A worker records that it is quiet at push count `pushes_seen` (read before it looked
    /// at its queues), or not quiet.
    pub fn set_quiet(&self, worker: u16, pushes_seen: Option<u64>) {
        self.quiet_at[worker as usize].store(pushes_seen.unwrap_or(NOT_QUIET), Ordering::SeqCst);
    }

    /// Whether every worker has joined and was quiet at the current push count: no handoff
    /// is in flight anywhere.
    pub fn node_quiet(&self) -> bool {
        let workers = self.quiet_at.len() as u32;
        if self.arrived.load(Ordering::SeqCst) < workers {
            return false;
        }
        let now = self.pushes.load(Ordering::SeqCst);
        self.quiet_at
            .iter()
            .all(|q| q.load(Ordering::SeqCst) == now)
    }

    /// A worker leaves the barrier of a move that is over; the last one out closes it.
    pub fn leave(&self) {
        let mut current = self.lock();
        let left = self.arrived.fetch_sub(1, Ordering::SeqCst) - 1;
        if left == 0 && current.as_ref().is_some_and(|m| m.phase == Phase::Over) {
            *current = None;
            self.active.store(false, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_move_at_a_time() {
        let board = MoveBoard::<u32>::new(2);
        assert!(board.open(0, 1, 0));
        assert!(!board.open(1, 0, 0), "a second move waits for the first");
        assert_eq!(
            board.with(|m| m.as_ref().map(|m| m.phase)),
            Some(Phase::Gather)
        );
    }

    #[test]
    fn the_node_is_quiet_only_when_every_worker_joined_quiet_at_the_current_count() {
        let board = MoveBoard::<u32>::new(2);
        assert!(board.open(0, 1, 0));
        board.arrived.fetch_add(1, Ordering::SeqCst);
        board.set_quiet(0, Some(0));
        assert!(!board.node_quiet(), "worker 1 has not joined");
        board.arrived.fetch_add(1, Ordering::SeqCst);
        assert!(!board.node_quiet(), "worker 1 has not said it is quiet");
        board.set_quiet(1, Some(0));
        assert!(board.node_quiet());
        board.pushes.fetch_add(1, Ordering::SeqCst);
        assert!(!board.node_quiet(), "a push since: its batch may be unread");
        board.set_quiet(0, Some(1));
        board.set_quiet(1, Some(1));
        assert!(board.node_quiet());
        board.set_quiet(1, None);
        assert!(!board.node_quiet());
    }

    #[test]
    fn the_last_worker_to_leave_a_finished_move_closes_it() {
        let board = MoveBoard::<u32>::new(2);
        assert!(board.open(0, 1, 0));
        board.arrived.fetch_add(2, Ordering::SeqCst);
        board.with(|m| m.as_mut().unwrap().phase = Phase::Over);
        board.leave();
        assert!(
            board.active.load(Ordering::SeqCst),
            "one worker is still at the barrier"
        );
        board.leave();
        assert!(!board.active.load(Ordering::SeqCst));
        assert!(board.open(1, 0, 5), "the next move can open");
    }

    /// The quiet rule under concurrency: workers that keep handing items to each other (an
    /// item drained may hand on a follow-up, as a drain's drop report does) join a move and
    /// drain as the worker loop does; whenever the mover finds the node quiet, no item is in
    /// any queue or in any worker's hands.
    #[test]
    fn when_the_node_is_quiet_nothing_is_in_flight() {
        use crossbeam::queue::SegQueue;
        use std::sync::atomic::AtomicI64;
        use std::sync::Arc;
        const WORKERS: usize = 3;
        const MOVES: u64 = 200;
        struct World {
            board: MoveBoard<()>,
            queues: Vec<SegQueue<u32>>,
            /// Items pushed and not yet fully handled (drained and its follow-up pushed).
            in_flight: AtomicI64,
            done: AtomicBool,
        }
        let world = Arc::new(World {
            board: MoveBoard::new(WORKERS),
            queues: (0..WORKERS).map(|_| SegQueue::new()).collect(),
            in_flight: AtomicI64::new(0),
            done: AtomicBool::new(false),
        });
        fn push(w: &World, to: usize, hops: u32) {
            w.in_flight.fetch_add(1, Ordering::SeqCst);
            w.queues[to].push(hops);
            w.board.pushes.fetch_add(1, Ordering::SeqCst);
        }
        fn drain(w: &World, me: usize) {
            while let Some(hops) = w.queues[me].pop() {
                if hops > 0 {
                    push(w, (me + 1) % WORKERS, hops - 1);
                }
                w.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let threads: Vec<_> = (0..WORKERS)
            .map(|me| {
                let w = Arc::clone(&world);
                std::thread::spawn(move || {
                    let mut joined = 0u64;
                    let mut n = 0u32;
                    while !w.done.load(Ordering::SeqCst) {
                        if w.board.active.load(Ordering::SeqCst) && w.board.join(&mut joined) {
                            loop {
                                drain(&w, me);
                                let seen = w.board.pushes.load(Ordering::SeqCst);
                                let quiet = w.queues[me].is_empty();
                                w.board.set_quiet(me as u16, quiet.then_some(seen));
                                let over = w
                                    .board
                                    .with(|m| m.as_ref().map_or(true, |m| m.phase == Phase::Over));
                                if over {
                                    break;
                                }
                                std::thread::yield_now();
                            }
                            w.board.leave();
                        }
                        // Normal work: hand items on, some with follow-ups (a few thousand
                        // at most in a queue, whatever the scheduler does).
                        n = n.wrapping_add(1);
                        let to = (me + 1 + n as usize % (WORKERS - 1)) % WORKERS;
                        if w.queues[to].len() < 4096 {
                            push(&w, to, n % 3);
                        }
                        drain(&w, me);
                    }
                })
            })
            .collect();
        for epoch in 0..MOVES {
            while !world.board.open(0, 1, epoch) {
                std::thread::yield_now();
            }
            while !world.board.node_quiet() {
                std::thread::yield_now();
            }
            assert_eq!(world.in_flight.load(Ordering::SeqCst), 0, "move {epoch}");
            assert!(world.queues.iter().all(|q| q.is_empty()), "move {epoch}");
            world
                .board
                .with(|m| m.as_mut().expect("open").phase = Phase::Over);
            // The mover is not a thread of its own here: the last worker out closes it.
            while world.board.active.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
        }
        world.done.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("a worker thread");
        }
    }
}
