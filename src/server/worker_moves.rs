//! Steering on the worker: choosing a connection to move (`core::steer`), getting it ready
//! (nothing of it in the kernel's hands), and the move barrier (`moves.rs`) every worker
//! joins. A child module of `worker`, so it shares the worker's private state.

use super::super::congestion::Standing;
use super::super::conn::MovedConn;
use super::super::moves::{Phase, MOVE_BARRIER_MS_MAX};
use super::super::stats::bump;
use super::Worker;
use crate::core::steer::{
    balance, follow_worth_it, is_busy, is_busy_sender, FollowView, STEER_INTERVAL_MIN_MS,
    STEER_SETTLE_MS,
};
use crate::core::Location;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How long a connection chosen to move may take to get ready (its receive cancelled, its
/// send in flight completed, its reads no longer paused by flow control) beyond
/// `stall_ms_max`, the longest its reads stay paused, before the move is given up, in ms. A
/// send that long in flight is to a client that does not read, which has better places to
/// go than another worker. Waiting costs the connection nothing but the reads it does not
/// make meanwhile: its sends go on.
const MOVE_READY_MARGIN_MS: u64 = 100;

/// How long a worker whose move was abandoned waits before it chooses another, in ms.
const MOVE_ABANDONED_BACKOFF_MS: u64 = 10_000;

/// A connection chosen to move, getting ready: its receive is cancelled (and not re-armed
/// while `Conn::moving`); its sends go on, and it is ready between two of them.
#[derive(Clone, Copy, Debug)]
pub(super) struct Steering {
    slot: u32,
    generation: u32,
    target: u16,
    /// Chosen by the follow rule (else by balance).
    follows: bool,
    since_ms: u64,
    /// Moves opened on the node when it was chosen: one opened since may have changed the
    /// traffic its tally measured (the other end of its flow moved), so it stays.
    moves_seen: u64,
}

impl Worker {
    /// Whether this worker moves connections at all: two workers or more, a standalone
    /// node, and `steer_connections`.
    fn steers(&self) -> bool {
        let shared = &self.shared;
        shared.config.steer_connections
            && shared.mailboxes.len() > 1
            && !shared.engine.clustered
            && !self.stopping
    }

    /// Bytes another worker handed over for the connection in `slot` (its tally).
    #[inline]
    pub(super) fn tally_handover(&mut self, src: usize, slot: u32, generation: u32, bytes: usize) {
        if let Some(c) = self.slab.get_live(slot, generation) {
            c.tally.fed_by(src as u16, bytes as u64);
        }
    }

    /// Once per steering interval (from the timer tick): publishes how busy this worker was,
    /// picks a connection to move (one that follows its feeder first, else a sender that
    /// balances the workers, see `core::steer`) and starts getting it ready; every tally
    /// starts over.
    pub(super) fn steer_round(&mut self) {
        if self.now_ms < self.steer_from_ms + STEER_INTERVAL_MIN_MS {
            return;
        }
        let interval_ms = self.now_ms - self.steer_from_ms;
        self.steer_from_ms = self.now_ms;
        let cpu_ns = thread_cpu_ns();
        let busy = (cpu_ns.saturating_sub(self.steer_cpu_ns) / 1000 / interval_ms.max(1)) as u32;
        self.steer_cpu_ns = cpu_ns;
        let board = &self.shared.moves;
        board.busy_permille[self.index as usize].store(busy, Ordering::Relaxed);
        // Every barrier starts the tallies over (`restart_steer_interval`); a move opened
        // since this worker's last barrier (it joins at the top of its next loop) changes
        // what they describe, so it decides nothing on them.
        let opened = board.opened();
        let placement_held = opened == self.steer_moves_seen;
        self.steer_moves_seen = opened;
        let steers = self.steers()
            && placement_held
            && self.steering.is_none()
            && self.now_ms >= self.steer_paused_until_ms;
        let workers = self.shared.mailboxes.len();
        let mut follow: Option<(u64, u32, u16)> = None;
        let mut senders: Vec<(u32, u64)> = Vec::new();
        let (mut busy_conns, mut busy_senders) = (0u32, 0u32);
        // Busy connections here fed mostly by each other worker (one round an interval: the
        // allocation is not on the message path).
        let mut busy_fed_by = vec![0u32; workers];
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &mut self.slab.conns[slot as usize];
            let tally = std::mem::take(&mut c.tally);
            let wants = tally.wants_worker(interval_ms);
            busy_senders += u32::from(is_busy_sender(&tally, interval_ms));
            if is_busy(&tally, interval_ms) {
                busy_conns += 1;
                if let Some(fed_by) = wants.and_then(|w| busy_fed_by.get_mut(w as usize)) {
                    *fed_by += 1;
                }
            }
            let active = tally.sent_bytes > 0 || tally.read_bytes > 0;
            // A settled connection stays, unless it followed its feeder here and the feeder
            // has moved on since (balance may move the sender its receiver just joined).
            let settled = self.now_ms < c.settled_until_ms;
            if !steers || !active || (settled && !c.followed) || !self.slab.may_move(slot) {
                continue;
            }
            if !settled {
                senders.push((slot, u64::from(tally.read_bytes)));
            }
            match wants {
                Some(target)
                    if target != self.index
                        && (target as usize) < workers
                        && follow.map_or(true, |(sent, ..)| u64::from(tally.sent_bytes) > sent) =>
                {
                    follow = Some((u64::from(tally.sent_bytes), slot, target));
                }
                _ => {}
            }
        }
        board.busy_conns[self.index as usize].store(busy_conns, Ordering::Relaxed);
        board.busy_senders[self.index as usize].store(busy_senders, Ordering::Relaxed);
        let follow = follow.filter(|&(_, _, target)| {
            let t = target as usize;
            follow_worth_it(&FollowView {
                busy_here_fed_by_target: busy_fed_by[t],
                busy_conns_here: busy_conns,
                busy_conns_target: board.busy_conns[t].load(Ordering::Relaxed),
                busy_senders_target: board.busy_senders[t].load(Ordering::Relaxed),
            })
        });
        let pick = match follow {
            Some((_, slot, target)) => Some((slot, target)),
            None if steers => balance(self.index, &board.busy_snapshot(), &senders, interval_ms),
            None => None,
        };
        if let Some((slot, target)) = pick {
            self.choose(slot, target, follow.is_some());
        }
    }

    /// Starts getting the connection in `slot` ready to move to `target` (`follows`: chosen
    /// by the follow rule, else by balance): its receive is cancelled.
    fn choose(&mut self, slot: u32, target: u16, follows: bool) {
        let rule = if follows { "follow" } else { "balance" };
        tracing::debug!(
            worker = self.index,
            slot,
            target,
            rule,
            "steering: moving a connection"
        );
        let c = &mut self.slab.conns[slot as usize];
        c.moving = true;
        let generation = c.generation;
        if c.recv_armed {
            self.uring.cancel_recv(slot, generation);
        }
        self.steering = Some(Steering {
            slot,
            generation,
            target,
            follows,
            since_ms: self.now_ms,
            moves_seen: self.shared.moves.opened(),
        });
    }

    /// At the top of the loop: joins a move another worker opened, or opens this worker's
    /// once its connection is ready.
    pub(super) fn moves_round(&mut self) {
        if self.shared.moves.active.load(Ordering::Acquire) {
            self.take_part_in_move();
        }
        let Some(s) = self.steering else {
            return;
        };
        let live = self.slab.get_live(s.slot, s.generation).is_some();
        if !live || !self.steers() {
            self.steering = None;
            if live {
                self.stay(s.slot);
            }
            return;
        }
        if !self.slab.can_move(s.slot) || !self.uring.slot_idle(s.slot) {
            let ready_ms_max = self.shared.config.stall_ms_max + MOVE_READY_MARGIN_MS;
            if self.now_ms >= s.since_ms + ready_ms_max {
                tracing::debug!(
                    worker = self.index,
                    slot = s.slot,
                    "steering: not ready in time, stays"
                );
                self.steering = None;
                self.stay(s.slot);
            }
            return;
        }
        if self.shared.moves.opened() != s.moves_seen {
            // Another move came first and may have changed what this one was for: the
            // connection is chosen again, or not, from the next interval's tallies (not held
            // for the settling time, which is for connections that moved or could not).
            self.steering = None;
            self.unchoose(s.slot);
            return;
        }
        if self.shared.moves.open(self.index, s.target, self.now_ms) {
            let opened = std::time::Instant::now();
            self.wake_all();
            self.take_part_in_move();
            let pause_us = opened.elapsed().as_micros() as u64;
            bump(
                &self.shared.stats[self.index as usize].connection_move_pause_us,
                pause_us,
            );
        }
    }

    /// A connection that was to move stays, and is not chosen again for `STEER_SETTLE_MS`.
    fn stay(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        c.settled_until_ms = self.now_ms + STEER_SETTLE_MS;
        c.followed = false;
        self.unchoose(slot);
    }

    /// A connection chosen to move goes on where it is: its queued bytes are sent and its
    /// receive is armed again.
    fn unchoose(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        c.moving = false;
        if !c.out.is_empty() && !c.dirty {
            c.dirty = true;
            self.dirty.push(slot);
        }
        self.after_recv(slot);
    }

    fn wake_all(&self) {
        for (i, mailbox) in self.shared.mailboxes.iter().enumerate() {
            if i != self.index as usize {
                mailbox.wake();
            }
        }
    }

    /// The move barrier (see `moves.rs`): takes no completion, drains what other workers
    /// hand over and pushes what that produces until the move is over; the mover hands the
    /// connection over once every worker is quiet, the target installs it.
    fn take_part_in_move(&mut self) {
        let shared = Arc::clone(&self.shared);
        let board = &shared.moves;
        if !board.join(&mut self.move_joined) {
            return;
        }
        let me = self.index;
        loop {
            self.drain_inbound();
            self.flush_handoffs();
            let seen = board.pushes.load(Ordering::SeqCst);
            let quiet = !shared.mailboxes[me as usize].has_inbound()
                && self.outboxes.iter().all(|o| o.is_flushed());
            board.set_quiet(me, quiet.then_some(seen));
            let now_ms = shared.started.elapsed().as_millis() as u64;
            let over = board.with(|current| {
                let Some(m) = current.as_mut() else {
                    return true;
                };
                match m.phase {
                    Phase::Gather if m.mover == me => {
                        let stopping = self.stopping || shared.shutdown.load(Ordering::Acquire);
                        if board.node_quiet() && !stopping {
                            match self.hand_over_moving() {
                                Some(moved) => {
                                    m.handover = Some(moved);
                                    m.phase = Phase::Adopt;
                                }
                                None => m.phase = Phase::Over,
                            }
                        } else if now_ms >= m.opened_ms + MOVE_BARRIER_MS_MAX || stopping {
                            m.phase = Phase::Over;
                            self.abandon_move();
                        }
                    }
                    Phase::Adopt if m.target == me => {
                        if let Some(moved) = m.handover.take() {
                            // A stopping worker takes no connection: it would not be told
                            // the relay is shutting down.
                            let adopted = match self.stopping {
                                true => Err(moved),
                                false => self.adopt_moved(moved),
                            };
                            match adopted {
                                Ok(()) => m.phase = Phase::Over,
                                Err(moved) => {
                                    m.handover = Some(moved);
                                    m.phase = Phase::Returned;
                                }
                            }
                        }
                    }
                    Phase::Returned if m.mover == me => {
                        if let Some(moved) = m.handover.take() {
                            self.take_back(moved);
                        }
                        m.phase = Phase::Over;
                    }
                    _ => {}
                }
                m.phase == Phase::Over
            });
            if over {
                break;
            }
            // The others are draining or on their way: give them the CPU.
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
        board.leave();
        self.now_ms = self.clock.elapsed().as_millis() as u64;
        self.restart_steer_interval();
    }

    /// After a move barrier: the tallies so far describe a placement that may no longer hold
    /// (deciding on them moved the other end of a flow that had just joined, splitting it the
    /// other way round), so a fresh interval starts now, on every worker alike.
    fn restart_steer_interval(&mut self) {
        for c in self.slab.conns.iter_mut() {
            c.tally = Default::default();
        }
        self.steer_from_ms = self.now_ms;
        self.steer_cpu_ns = thread_cpu_ns();
        self.steer_moves_seen = self.shared.moves.opened();
    }

    /// The mover, every worker quiet: takes its connection out (or keeps it if it can no
    /// longer move: it closed, or a drain just queued a close for it).
    fn hand_over_moving(&mut self) -> Option<Box<MovedConn>> {
        let s = self.steering.take()?;
        let movable = self.slab.get_live(s.slot, s.generation).is_some()
            && self.slab.can_move(s.slot)
            && self.uring.slot_idle(s.slot)
            && !self.pending_closes.iter().any(|p| p.slot == s.slot);
        if !movable {
            if self.slab.get_live(s.slot, s.generation).is_some() {
                self.stay(s.slot);
            }
            bump(
                &self.shared.stats[self.index as usize].connection_move_aborts,
                1,
            );
            return None;
        }
        self.dirty.retain(|&d| d != s.slot);
        let moved = self.slab.take_moved(s.slot, self.index, s.follows);
        bump(
            &self.shared.stats[self.index as usize].connections_open,
            u64::MAX,
        );
        Some(moved)
    }

    /// The mover gave up waiting for the node to be quiet: its connection stays, and this
    /// worker chooses no connection for [`MOVE_ABANDONED_BACKOFF_MS`] (a worker that does not
    /// come to barriers would otherwise stop the others for 20 ms at every interval).
    fn abandon_move(&mut self) {
        bump(
            &self.shared.stats[self.index as usize].connection_move_aborts,
            1,
        );
        self.steer_paused_until_ms = self.now_ms + MOVE_ABANDONED_BACKOFF_MS;
        if let Some(s) = self.steering.take() {
            if self.slab.get_live(s.slot, s.generation).is_some() {
                self.stay(s.slot);
            }
        }
    }

    /// The target: installs a moved connection and points its id's row here.
    fn adopt_moved(&mut self, moved: Box<MovedConn>) -> Result<(), Box<MovedConn>> {
        let (slot, generation, relocated) = self.install_moved(moved)?;
        bump(&self.shared.stats[self.index as usize].connection_moves, 1);
        if !relocated {
            // Its row changed hands meanwhile: as if replaced by a newer registration.
            let text = "replaced by a newer registration of its id";
            let reason = crate::protocol::CloseReason::REPLACED;
            self.request_close(slot, generation, reason, text, false);
        }
        Ok(())
    }

    /// The mover: its connection came back from a full or stopping target. If this worker
    /// is stopping too, the connection is told so, like every other.
    fn take_back(&mut self, mut moved: Box<MovedConn>) {
        // It did not move: settled where it is, as a connection that could not.
        moved.followed = false;
        let stats = &self.shared.stats[self.index as usize];
        bump(&stats.connection_move_aborts, 1);
        bump(&stats.connection_move_returns, 1);
        match self.install_moved(moved) {
            Ok((slot, generation, _)) if self.stopping => {
                let reason = crate::protocol::CloseReason::SHUTDOWN;
                self.request_close(slot, generation, reason, "relay shutting down", false);
            }
            Ok(_) => {}
            Err(moved) => {
                // Cannot happen: its own slot was freed a moment ago and nothing was accepted
                // since. If it did, the client is closed rather than leaked.
                debug_assert!(false, "the mover could not take its connection back");
                super::lifecycle::close_fd(moved.fd);
            }
        }
    }

    /// Installs a moved connection in this worker's slab (or gives it back at the connection
    /// limit), points its id's row here if it still names the place it left (else returns
    /// `relocated` false), and has it send what it holds and read again.
    fn install_moved(&mut self, moved: Box<MovedConn>) -> Result<(u32, u32, bool), Box<MovedConn>> {
        let (from_worker, from_slot, from_generation) = moved.from;
        let id: Box<[u8]> = moved.relay.client_id().into();
        let max_frame_bytes = self.shared.config.max_frame_bytes;
        let (slot, generation) =
            self.slab
                .insert_moved(moved, max_frame_bytes, self.now_ms, STEER_SETTLE_MS)?;
        bump(&self.shared.stats[self.index as usize].connections_open, 1);
        let from = Location {
            node: self.shared.node_id,
            worker: from_worker,
            slot: from_slot,
            generation: from_generation,
        };
        let to = self.location(slot, generation);
        let relocated = self.shared.tables.locations.relocate(&id, from, to);
        let c = &mut self.slab.conns[slot as usize];
        if c.backlog.congested() {
            // Its episode goes on here: producers see it on this worker's board.
            let standing = Standing::of_backlog(&c.backlog, &self.client_flow, self.now_ms);
            self.shared.boards[self.index as usize].set(slot, generation, standing);
            self.congested.push((slot, generation));
        }
        let c = &mut self.slab.conns[slot as usize];
        if !c.out.is_empty() {
            c.dirty = true;
            self.dirty.push(slot);
        }
        self.arm_recv(slot);
        Ok((slot, generation, relocated))
    }
}

/// CPU time the calling thread has used, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which lives across the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}
