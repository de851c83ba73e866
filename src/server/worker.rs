//! One worker: a thread pinned to a CPU that owns an io_uring loop (through [`Uring`], which
//! owns every buffer the kernel touches), a listener and a shard of the connections. A thin
//! driver: the relay's rules live in the sans-IO [`Engine`] (`core::engine`), which the worker
//! feeds with frames, closes and ticks, and whose decisions it carries out through its
//! [`Deliverer`] (`output.rs`).
//!
//! Files: this one (state, the loop, ticks, stop), `worker_io.rs` (arming receives, sends,
//! their completions), `worker_ingress.rs` (one reassembly for clients and data links, the
//! zero-copy diversion), `worker_lifecycle.rs` (accept, close, release), `worker_handoff.rs`
//! (draining other workers' handoffs), `worker_links.rs` (data links, control commands),
//! `worker_moves.rs` (steering connections to the worker that feeds them).
//!
//! Loop: submit queued sends and handoffs, sleep in `submit_and_wait` (the only syscall per
//! iteration), then process the completions reaped, in order, until the round has written
//! `ROUND_OUTPUT_BYTES_MAX` (the rest open the next round). Receives decode straight from the
//! provided buffer; routed frames are appended to destination send buffers; each connection
//! with bytes queued gets one send at the end of the round (one send in flight per socket).

use super::conn::{ConnState, Slab};
use super::deliver::{Deliverer, LinkOut, PendingClose};
use super::handoff::Outbox;
use super::stats::{batch_bucket, bump};
use super::uring::{Completion, Uring};
use super::{ServeError, Shared};
use crate::core::flow::FlowLimits;
use crate::core::{Engine, Location};
use crate::protocol::CloseReason;
use bytes::Bytes;
use lifecycle::close_fd;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[path = "worker_flow.rs"]
mod flow;
#[path = "worker_handoff.rs"]
mod handoff;
#[path = "worker_ingress.rs"]
mod ingress;
#[path = "worker_io.rs"]
mod io;
#[path = "worker_lifecycle.rs"]
mod lifecycle;
#[path = "worker_linger.rs"]
mod linger;
#[path = "worker_links.rs"]
mod links;
#[path = "worker_listing.rs"]
mod listing;
#[path = "worker_moves.rs"]
mod moves;
#[path = "worker_nats.rs"]
mod nats;
#[path = "worker_tls.rs"]
mod tls;

/// How long shutdown waits for the kernel to finish cancelled operations before it leaks the
/// ring's memory instead of freeing it.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes a loop iteration (a round) writes into send buffers (clients and data links) before
/// it stops handling the completions it reaped and submits the sends: the rest wait for the
/// next round, in order. A sender that keeps a worker busy made rounds of 12 MB (fan-out to 10
/// at 16 B), written and then read back by the kernel's copy from beyond the CPU's caches.
/// Measured with `benches/ab_cpu.sh` against unbounded rounds (paired medians of 6): fan-out
/// 10 x 16 B -5.8%, 1->1 16 B -11.2%, 1->1 1 KiB -4.3%; 128 KiB was 7% slower than 256 KiB
/// on fan-out, 512 KiB and 4 MiB within the noise of it. While completions are left, the
/// worker does not wait for new ones (so timer ticks and new receives come once they are
/// handled, as they did when a round handled everything it reaped).
const ROUND_OUTPUT_BYTES_MAX: usize = 256 * 1024;

/// The `which` of the client listener's accepts.
pub const LISTENER_CLIENT: u32 = 0;
/// The `which` of the NATS listener's accepts.
pub const LISTENER_NATS: u32 = 1;

/// A worker's listening sockets (SO_REUSEPORT: every worker has its own on each address).
pub struct WorkerListeners {
    pub client: socket2::Socket,
    /// On `nats_listen`, when set: its connections speak the NATS protocol.
    pub nats: Option<socket2::Socket>,
}

pub struct Worker {
    /// The ring and every buffer an operation in flight points into.
    uring: Uring,
    slab: Slab,
    listeners: WorkerListeners,
    shared: Arc<Shared>,
    index: u16,
    dirty: Vec<u32>,
    outboxes: Vec<Outbox>,
    /// Batches read from another worker whose return queue was full: pushed again later.
    unreturned: Vec<(usize, super::handoff::Batch)>,
    pending_closes: Vec<PendingClose>,
    scratch_locations: Vec<Location>,
    /// A PUBLISH's DELIVER frame, encoded once for its local subscribers (see `Deliverer`).
    fanout_frame: Vec<u8>,
    /// Senders of messages dropped in the batch being applied (a data link's receive, a
    /// drain of the handoff queues), told when it ends (see `core::drop_reports`).
    drop_reports: crate::core::drop_reports::DropReports,
    /// Completions reaped and not yet handled, in the order they came: a round stops taking
    /// them once it has written `ROUND_OUTPUT_BYTES_MAX`, and the next round starts with the
    /// rest. Bounded: a receive left here holds one of the ring's provided buffers (a receive
    /// that finds none left ends, and is re-armed when handled); any other completion is one
    /// per operation in flight (an accept holds its new socket until handled).
    completions: VecDeque<Completion>,
    tick_ms: u64,
    accept_armed: bool,
    nats_accept_armed: bool,
    /// Set once every worker is up (`shared.accepting`): from then on accept stays armed.
    accept_started: bool,
    clock: Instant,
    now_ms: u64,
    stopping: bool,
    stop_deadline_ms: u64,
    /// Payload of the large frame being routed (zero-copy path), see `Deliverer`.
    shared_payload: Option<Bytes>,
    large_pool: super::large_pool::LargePool,
    /// This worker's outbound data links, one per reachable node (cluster only).
    links_out: Vec<LinkOut>,
    /// Forwards to nodes whose data link from this worker is not up yet.
    link_backlogs: super::link_backlog::Backlogs,
    /// Connections whose HELLO waits for the node to become ready (slot, generation); an
    /// entry whose connection closed meanwhile is skipped when they are welcomed.
    held_hellos: Vec<(u32, u32)>,
    /// Verifications of credentials: the queue to the verifier and the secrets verified.
    verified: super::verifier::VerifiedSecrets,
    /// The credentials' reload generation this worker's connections were last checked at.
    credentials_generation: u64,
    /// Flow control of client queues and of data links (see `core::flow`).
    client_flow: FlowLimits,
    link_flow: FlowLimits,
    /// Producers whose reads are paused.
    stalled: Vec<flow::Stalled>,
    /// This worker's connections whose congestion-board word is set.
    congested: Vec<(u32, u32)>,
    /// Closed connections whose socket lingers (slot, generation), see `worker_linger.rs`;
    /// bounded by the connections.
    lingering: Vec<(u32, u32)>,
    /// When lingering sockets are next asked whether their peer has everything.
    linger_poll_at_ms: u64,
    /// Start of the current steering interval (see `core::steer`), and the thread's CPU time
    /// then (ns).
    steer_from_ms: u64,
    steer_cpu_ns: u64,
    /// Moves opened on the node when the current steering interval began (every barrier
    /// starts a fresh interval): one opened since changes what the tallies describe, and the
    /// interval decides nothing.
    steer_moves_seen: u64,
    /// No connection is chosen to move before this time (after an abandoned move).
    steer_paused_until_ms: u64,
    /// The connection chosen to move to another worker, getting ready (`worker_moves.rs`).
    steering: Option<moves::Steering>,
    /// The epoch of the last move barrier this worker joined.
    move_joined: u64,
    /// Receives that found the ring empty, re-armed before the next submission in turns
    /// (`rearm_starved`); bounded by the connections.
    starved: Vec<(u32, u32)>,
    /// Emptied segment lists of completed gathered sends, reused by the next ones (at most
    /// `SEGMENT_LISTS_KEPT_MAX`), so a gathered send allocates nothing.
    spare_segment_lists: Vec<Vec<Bytes>>,
    starved_turn: usize,
}

/// Milliseconds between timer ticks: a quarter of the shortest session timer, within 10..250.
fn tick_ms_for(cfg: &crate::config::Config) -> u64 {
    let shortest_ms = cfg
        .heartbeat_interval_ms
        .min(cfg.handshake_timeout_ms)
        .min(cfg.frame_complete_timeout_ms);
    (shortest_ms / 4).clamp(10, 250)
}

impl Worker {
    /// Creates the ring (on the calling thread, which must be the worker thread), registers
    /// the buffer ring and arms accept, wake-up and timer.
    pub fn new(
        index: u16,
        listeners: WorkerListeners,
        shared: Arc<Shared>,
    ) -> Result<Worker, ServeError> {
        let cfg = &shared.config;
        let uring = Uring::new(
            (cfg.recv_buffer_count, cfg.recv_buffer_bytes),
            cfg.tls_recv_buffers(),
        )
        .map_err(|e| e.in_worker(index))?;
        tracing::debug!(
            worker = index,
            mode = uring.mode(),
            recv_incremental = uring.recv_incremental(),
            "io_uring ready"
        );
        if index == 0 && !uring.recv_incremental() {
            tracing::info!(
                "this kernel does not consume receive buffers incrementally (Linux 6.12+): each \
                 receive takes a whole recv_buffer_bytes buffer (README \"Receive buffer size\")"
            );
        }
        let tick_ms = tick_ms_for(cfg);
        let workers = shared.mailboxes.len();
        let mut w = Worker {
            uring,
            slab: Slab::new(shared.connections_per_worker),
            listeners,
            index,
            dirty: Vec::with_capacity(1024),
            outboxes: (0..workers)
                .map(|_| Outbox::new(cfg.handoff_bytes_max))
                .collect(),
            unreturned: Vec::new(),
            pending_closes: Vec::new(),
            scratch_locations: Vec::new(),
            fanout_frame: Vec::new(),
            drop_reports: Default::default(),
            completions: VecDeque::with_capacity(4096),
            tick_ms,
            accept_armed: false,
            nats_accept_armed: false,
            accept_started: false,
            clock: shared.started,
            now_ms: 0,
            stopping: false,
            stop_deadline_ms: 0,
            shared_payload: None,
            large_pool: Default::default(),
            links_out: Vec::new(),
            link_backlogs: super::link_backlog::Backlogs::new(cfg.cluster_nodes_max),
            held_hellos: Vec::new(),
            verified: super::verifier::VerifiedSecrets::new(
                index,
                shared.verify_jobs.clone(),
                shared.engine.session.gate.credentials.clone(),
            ),
            credentials_generation: 0,
            client_flow: FlowLimits::for_clients(
                cfg.pending_bytes_max,
                cfg.max_frame_bytes,
                cfg.stall_ms_max,
                cfg.slow_consumer_grace_ms,
            ),
            link_flow: FlowLimits::for_links(
                cfg.link_pending_bytes_max,
                cfg.max_frame_bytes,
                cfg.stall_ms_max,
            ),
            stalled: Vec::new(),
            congested: Vec::new(),
            lingering: Vec::new(),
            linger_poll_at_ms: 0,
            steer_from_ms: 0,
            steer_cpu_ns: 0,
            steer_moves_seen: 0,
            steer_paused_until_ms: 0,
            steering: None,
            move_joined: 0,
            starved: Vec::new(),
            spare_segment_lists: Vec::new(),
            starved_turn: 0,
            shared,
        };
        w.now_ms = w.clock.elapsed().as_millis() as u64;
        // No accept yet: the loop arms it once every worker is up (`shared.accepting`), so no
        // client is served by a relay that is still starting (and a signal during start-up
        // can end the process without leaving anyone's messages behind).
        w.arm_wake();
        w.arm_timer();
        w.uring
            .submit()
            .map_err(|e| ServeError::Enter(e).in_worker(index))?;
        Ok(w)
    }

    /// Runs until shutdown; returns after every connection is closed.
    pub fn run(mut self) -> Result<(), ServeError> {
        let mailbox_index = self.index as usize;
        loop {
            if !self.stopping && self.shared.shutdown.load(Ordering::Acquire) {
                self.begin_stop();
            }
            if !self.accept_started && self.shared.accepting.load(Ordering::Acquire) {
                self.accept_started = true;
                if !self.stopping {
                    self.arm_accept();
                }
            }
            if self.stopping && (self.slab.open_count == 0 || self.now_ms >= self.stop_deadline_ms)
            {
                break;
            }
            self.moves_round();
            self.flush_sends();
            self.flush_handoffs();
            self.rearm_starved();
            let shared = Arc::clone(&self.shared);
            let mailbox = &shared.mailboxes[mailbox_index];
            mailbox.sleeping.store(true, Ordering::SeqCst);
            let commands = &shared.lane.commands[mailbox_index];
            // A move opened after `moves_round` looked may have found this worker awake: it
            // does not sleep past it (the same pairing as the mailbox's `sleeping`).
            let want = if mailbox.has_inbound()
                || shared.moves.active.load(Ordering::SeqCst)
                || !commands.is_empty()
                || !self.pending_closes.is_empty()
                || !self.completions.is_empty()
            {
                0
            } else {
                1
            };
            let wait_ms = match (self.flow_wait_ms(), self.linger_wait_ms()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let result = self.uring.submit_and_wait(want, wait_ms);
            mailbox.sleeping.store(false, Ordering::SeqCst);
            match result {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                    ) => {}
                Err(e) => {
                    self.finish();
                    return Err(ServeError::Enter(e).in_worker(self.index));
                }
            }
            self.now_ms = self.clock.elapsed().as_millis() as u64;
            bump(&shared.stats[mailbox_index].loop_iterations, 1);
            let mut completions = std::mem::take(&mut self.completions);
            let left = completions.len();
            self.uring.reap(&mut completions);
            let reaped = completions.len() - left;
            let stats = &shared.stats[mailbox_index];
            bump(&stats.completions, reaped as u64);
            bump(&stats.batch_buckets[batch_bucket(reaped)], 1);
            self.slab.round_out_bytes = 0;
            while self.slab.round_out_bytes < ROUND_OUTPUT_BYTES_MAX {
                let Some(completion) = completions.pop_front() else {
                    break;
                };
                self.on_completion(completion);
            }
            self.completions = completions;
            self.drain_inbound();
            if !self.stalled.is_empty() || !self.congested.is_empty() {
                self.flow_round();
            }
            if !self.lingering.is_empty() {
                self.linger_round();
            }
            self.drain_commands();
            if let Some(request) = shared.listings[mailbox_index].take() {
                self.answer_listing(request);
            }
            if !self.held_hellos.is_empty() && shared.lane.is_ready() {
                self.welcome_pending();
            }
            self.run_pending_closes();
        }
        self.finish();
        Ok(())
    }

    fn on_completion(&mut self, completion: Completion) {
        match completion {
            Completion::Accept {
                listener,
                result,
                more,
            } => self.on_accept(listener, result, more),
            Completion::Recv {
                slot,
                generation,
                result,
                more,
                data,
            } => self.on_recv(slot, generation, result, more, data),
            Completion::Send {
                slot,
                generation,
                result,
                outgoing,
            } => self.on_send(slot, generation, result, outgoing),
            Completion::RecvExact {
                slot,
                generation,
                result,
                buf,
            } => self.on_recv_exact(slot, generation, result, buf),
            Completion::Timer => self.on_tick(),
            Completion::Wake => {
                if !self.stopping {
                    self.arm_wake();
                }
            }
        }
    }

    fn deliverer(&mut self, origin_slot: u32, origin_generation: u32) -> Deliverer<'_> {
        let cfg = &self.shared.config;
        let origin_closing = !self.slab.accepts_frames_of(origin_slot, origin_generation);
        Deliverer {
            origin_closing,
            slab: &mut self.slab,
            dirty: &mut self.dirty,
            outboxes: &mut self.outboxes,
            pending_closes: &mut self.pending_closes,
            stats: &self.shared.stats[self.index as usize],
            worker: self.index,
            origin_slot,
            origin_generation,
            client_flow: &self.client_flow,
            link_flow: &self.link_flow,
            boards: &self.shared.boards,
            congested: &mut self.congested,
            stall: None,
            error_interval_ms: cfg.error_interval_ms,
            pending_bytes_per_worker_max: cfg.pending_bytes_per_worker_max,
            handoff_bytes_max: cfg.handoff_bytes_max,
            overloaded: false,
            shared_payload: self.shared_payload.clone(),
            fanout_frame: &mut self.fanout_frame,
            links_out: &self.links_out,
            link_backlogs: &mut self.link_backlogs,
            now_ms: self.now_ms,
            lane: &self.shared.lane,
            epochs: &self.shared.epochs,
            held_hellos: &mut self.held_hellos,
            clustered: self.shared.engine.clustered,
            presence: self.shared.presence.as_deref(),
            verifier: &mut self.verified,
        }
    }

    /// Whether the credentials were reloaded since the last tick (then every connection that
    /// came in with an entry is checked against the entries in force now).
    fn credentials_reloaded(&mut self) -> bool {
        let Some(credentials) = &self.shared.engine.session.gate.credentials else {
            return false;
        };
        let generation = credentials.generation();
        generation != std::mem::replace(&mut self.credentials_generation, generation)
    }

    fn on_tick(&mut self) {
        let shared = Arc::clone(&self.shared);
        let reloaded = self.credentials_reloaded();
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &mut self.slab.conns[slot as usize];
            let generation = c.generation;
            match c.state {
                ConnState::Open if !c.close_requested && c.link.is_none() => {
                    let before = c.reassembly_bytes();
                    let mut relay = std::mem::take(&mut c.relay);
                    let at = self.location(slot, generation);
                    let engine = Engine::new(&shared.tables, &shared.engine);
                    let now_ms = self.now_ms;
                    let mut sink = self.deliverer(slot, generation);
                    engine.on_tick(&mut relay, at, now_ms, &mut sink);
                    if reloaded {
                        engine.on_credentials_reloaded(&mut relay, at, &mut sink);
                    }
                    sink.flush_errors(slot, generation, false);
                    let c = &mut self.slab.conns[slot as usize];
                    c.relay = relay;
                    // The buffer of the last TLS record cut across receives is kept for the
                    // next one; each tick gives it back (a connection still receiving makes
                    // one allocation per tick for it), so idle connections hold none.
                    if let Some(tls) = &mut c.tls {
                        tls.session.receiver.shrink();
                    }
                    self.slab.reheld(slot, before);
                    self.close_if_overdue(slot);
                    self.expire_nats_sids(slot);
                    let c = &mut self.slab.conns[slot as usize];
                    let accounted = c.accounted_bytes();
                    if c.shrink_send_buffers() {
                        self.slab.repend(slot, accounted);
                    }
                }
                ConnState::Closing | ConnState::Lingering if self.now_ms >= c.close_deadline_ms => {
                    self.linger_ran_out(slot)
                }
                _ => {}
            }
        }
        if !self.link_backlogs.is_empty() {
            self.expire_link_backlogs();
        }
        self.slab.shared.trim();
        self.steer_round();
        if self.accept_started && !self.accepts_armed() && !self.stopping {
            self.arm_accept();
        }
        self.arm_timer();
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        let grace_ms = match self.shared.stop_grace_ms.load(Ordering::Acquire) {
            u64::MAX => self.shared.config.close_linger_ms + 500,
            ms => ms,
        };
        self.stop_deadline_ms = self.now_ms + grace_ms;
        let nats = self.listeners.nats.as_ref();
        for listener in std::iter::once(&self.listeners.client).chain(nats) {
            // SAFETY: shutting down our own listening socket makes the pending multishot
            // accept complete; it has no memory effects.
            unsafe {
                libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR);
            }
        }
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &self.slab.conns[slot as usize];
            if c.state == ConnState::Open {
                self.request_close(
                    slot,
                    c.generation,
                    CloseReason::SHUTDOWN,
                    "relay shutting down",
                    false,
                );
            }
        }
    }

    /// Shuts every remaining socket down, then has the ring cancel every operation and reap
    /// them all (bounded by `DRAIN_TIMEOUT`; past it the ring leaks its memory rather than free
    /// what the kernel may still write), then closes the sockets.
    fn finish(&mut self) {
        // Completions the last round left are handled like any other (an accepted socket is
        // closed at once while stopping; receive buffers are freed).
        while let Some(completion) = self.completions.pop_front() {
            self.on_completion(completion);
        }
        let backlogged = self.link_backlogs.clear();
        self.drop_backlogged(backlogged, "the relay stopped before the data link was up");
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &mut self.slab.conns[slot as usize];
            if matches!(
                c.state,
                ConnState::Open | ConnState::Closing | ConnState::Lingering
            ) {
                c.state = ConnState::ShutDown;
                // SAFETY: `fd` is an open socket owned by this slot; shutdown has no memory
                // effects.
                unsafe {
                    libc::shutdown(c.fd, libc::SHUT_RDWR);
                }
            }
        }
        // Completions reaped here hand their buffers back by value; dropping them frees what
        // the kernel no longer uses.
        let drained = self.uring.cancel_all_and_drain(DRAIN_TIMEOUT, drop);
        if !drained {
            tracing::error!(
                worker = self.index,
                in_flight = self.uring.in_flight(),
                "operations still in flight at exit: their memory is leaked, not freed"
            );
        }
        let stats = &self.shared.stats[self.index as usize];
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &mut self.slab.conns[slot as usize];
            if c.state != ConnState::Free {
                c.recv_armed = false;
                c.send_in_flight = false;
                close_fd(c.fd);
                let was_link = c.link.is_some();
                self.slab.release(slot);
                bump(lifecycle::open_gauge(stats, was_link), u64::MAX);
            }
        }
    }
}
