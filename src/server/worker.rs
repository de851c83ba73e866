//! One worker: a thread pinned to a CPU that owns an io_uring loop (through [`Uring`], which
//! owns every buffer the kernel touches), a listener and a shard of the connections. It drives
//! the sans-IO core (session + router).
//!
//! Loop: submit queued sends and handoffs, sleep in `submit_and_wait` (the only syscall per
//! iteration), then process every completion of the round. Receives decode straight from the
//! provided buffer; routed frames are appended to destination send buffers; each connection
//! with bytes queued gets one send at the end of the round (one send in flight per socket).

use super::conn::{ConnState, Slab};
use super::deliver::{Deliverer, LinkOut, PendingClose};
use super::handoff::{records, Outbox, SHARED_INDEX_LEN, TAG_CLOSE, TAG_FRAME, TAG_SHARED};
use super::stats::{batch_bucket, bump, kind_index};
use super::uring::{Completion, Outgoing, RecvGuard, Uring};
use super::{ServeError, Shared};
use crate::core::{ConnRelay, Engine, Location};
use crate::protocol::{CloseReason, Frame, FrameKind};
use bytes::Bytes;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

#[path = "worker_ingress.rs"]
mod ingress;
#[path = "worker_links.rs"]
mod links;

/// How long shutdown waits for the kernel to finish cancelled operations before it leaks the
/// ring's memory instead of freeing it.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub struct Worker {
    /// The ring and every buffer an operation in flight points into.
    uring: Uring,
    slab: Slab,
    listener: socket2::Socket,
    shared: Arc<Shared>,
    index: u16,
    dirty: Vec<u32>,
    outboxes: Vec<Outbox>,
    pending_closes: Vec<PendingClose>,
    scratch_locations: Vec<Location>,
    completions: Vec<Completion>,
    tick_ms: u64,
    accept_armed: bool,
    clock: Instant,
    now_ms: u64,
    stopping: bool,
    stop_deadline_ms: u64,
    /// Payload of the large frame being routed (zero-copy path), see `Deliverer`.
    shared_payload: Option<Bytes>,
    large_pool: super::large_pool::LargePool,
    /// This worker's outbound data links, one per reachable node (cluster only).
    links_out: Vec<LinkOut>,
    /// Connections whose HELLO waits for the node to become ready (slot, generation); an
    /// entry whose connection closed meanwhile is skipped when they are welcomed.
    held_hellos: Vec<(u32, u32)>,
}

/// Milliseconds between timer ticks: a quarter of the shortest session timer, within 10..250.
fn tick_ms_for(cfg: &crate::config::Config) -> u64 {
    (cfg.heartbeat_interval_ms.min(cfg.handshake_timeout_ms) / 4).clamp(10, 250)
}

impl Worker {
    /// Creates the ring (on the calling thread, which must be the worker thread), registers
    /// the buffer ring and arms accept, wake-up and timer.
    pub fn new(
        index: u16,
        listener: socket2::Socket,
        shared: Arc<Shared>,
    ) -> Result<Worker, ServeError> {
        let cfg = &shared.config;
        let uring = Uring::new(cfg.recv_buffer_count, cfg.recv_buffer_bytes)
            .map_err(|e| e.in_worker(index))?;
        tracing::debug!(worker = index, mode = uring.mode(), "io_uring ready");
        let tick_ms = tick_ms_for(cfg);
        let workers = shared.mailboxes.len();
        let mut w = Worker {
            uring,
            slab: Slab::new(cfg.connections_per_worker_max),
            listener,
            index,
            dirty: Vec::with_capacity(1024),
            outboxes: (0..workers).map(|_| Outbox::default()).collect(),
            pending_closes: Vec::new(),
            scratch_locations: Vec::new(),
            completions: Vec::with_capacity(4096),
            tick_ms,
            accept_armed: false,
            clock: shared.started,
            now_ms: 0,
            stopping: false,
            stop_deadline_ms: 0,
            shared_payload: None,
            large_pool: Default::default(),
            links_out: Vec::new(),
            held_hellos: Vec::new(),
            shared,
        };
        w.now_ms = w.clock.elapsed().as_millis() as u64;
        w.arm_accept();
        w.arm_wake();
        w.arm_timer();
        w.uring
            .submit()
            .map_err(|e| ServeError::Enter(e).in_worker(index))?;
        Ok(w)
    }

    fn arm_accept(&mut self) {
        self.accept_armed = self.uring.accept_multishot(self.listener.as_raw_fd());
    }

    fn arm_wake(&mut self) {
        let fd = self.shared.mailboxes[self.index as usize].wake_fd;
        self.uring.read_wake(fd);
    }

    fn arm_timer(&mut self) {
        self.uring.timeout(self.tick_ms);
    }

    fn arm_recv(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        c.recv_armed = match c.large.take() {
            // A large frame is pending: receive the rest of it straight into its buffer.
            Some(large) => {
                match self
                    .uring
                    .recv_exact(slot, c.generation, c.fd, large, c.large_frame_bytes)
                {
                    Ok(()) => true,
                    Err(large) => {
                        c.large = Some(large);
                        false
                    }
                }
            }
            None => self.uring.recv_multishot(slot, c.generation, c.fd),
        };
    }

    /// Hands the connection's queued bytes to the ring (one send in flight per socket): what a
    /// partial send left first, else the zero-copy segments with the frames around them, else
    /// the send buffer (swapped with the spare one, so nothing is allocated).
    fn submit_send(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        debug_assert!(!c.send_in_flight);
        let outgoing = if let Some(unsent) = c.unsent.take() {
            unsent
        } else if !c.segments.is_empty() {
            if !c.out.is_empty() {
                let sealed = Bytes::from(std::mem::take(&mut c.out));
                c.segments_bytes += sealed.len();
                c.segments.push_back(sealed);
            }
            c.segments_bytes = 0;
            Outgoing::Gathered(c.segments.drain(..).collect())
        } else if !c.out.is_empty() {
            let bytes = std::mem::replace(&mut c.out, std::mem::take(&mut c.spare));
            Outgoing::Plain { bytes, offset: 0 }
        } else {
            return;
        };
        c.sending_bytes = outgoing.remaining_bytes();
        match self.uring.send(slot, c.generation, c.fd, outgoing) {
            Ok(()) => c.send_in_flight = true,
            // Only while shutting down: the bytes will never be sent.
            Err(_) => c.sending_bytes = 0,
        }
    }

    /// Runs until shutdown; returns after every connection is closed.
    pub fn run(mut self) -> Result<(), ServeError> {
        let mailbox_index = self.index as usize;
        loop {
            if !self.stopping && self.shared.shutdown.load(Ordering::Acquire) {
                self.begin_stop();
            }
            if self.stopping && (self.slab.open_count == 0 || self.now_ms >= self.stop_deadline_ms)
            {
                break;
            }
            self.flush_sends();
            self.flush_handoffs();
            let shared = Arc::clone(&self.shared);
            let mailbox = &shared.mailboxes[mailbox_index];
            mailbox.sleeping.store(true, Ordering::SeqCst);
            let commands = &shared.lane.commands[mailbox_index];
            let want =
                if mailbox.has_inbound() || !commands.is_empty() || !self.pending_closes.is_empty()
                {
                    0
                } else {
                    1
                };
            let result = self.uring.submit_and_wait(want);
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
            self.uring.reap(&mut completions);
            let stats = &shared.stats[mailbox_index];
            bump(&stats.completions, completions.len() as u64);
            bump(&stats.batch_buckets[batch_bucket(completions.len())], 1);
            for completion in completions.drain(..) {
                self.on_completion(completion);
            }
            self.completions = completions;
            self.drain_inbound();
            self.drain_commands();
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
            Completion::Accept { result, more } => self.on_accept(result, more),
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
                rest,
            } => self.on_send(slot, generation, result, rest),
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

    fn on_accept(&mut self, result: i32, more: bool) {
        if !more {
            self.accept_armed = false;
            // EMFILE/ENFILE would fail again at once: retry on the next tick instead.
            let starved = result == -libc::EMFILE || result == -libc::ENFILE;
            if !self.stopping && !starved {
                self.arm_accept();
            }
        }
        if result < 0 {
            if result != -libc::ECANCELED && result != -libc::EINVAL {
                tracing::warn!(
                    worker = self.index,
                    "accept failed: {}",
                    std::io::Error::from_raw_os_error(-result)
                );
            }
            return;
        }
        let fd: RawFd = result;
        if self.stopping {
            close_fd(fd);
            return;
        }
        set_nodelay(fd);
        // `now_ms` is truncated (and read when the loop woke): start the session's clock at
        // the next whole millisecond, so its deadlines never come before the configured
        // timeout has really passed.
        let relay = ConnRelay::client(self.now_ms + 1, &self.shared.engine.session);
        let max_frame_bytes = self.shared.config.max_frame_bytes;
        let Some(slot) = self.slab.insert(fd, relay, max_frame_bytes) else {
            refuse_connection(fd);
            return;
        };
        let stats = &self.shared.stats[self.index as usize];
        bump(&stats.connections_accepted, 1);
        bump(&stats.connections_open, 1);
        self.arm_recv(slot);
    }

    /// A multishot receive completion; `data` goes back to the kernel when it is dropped at the
    /// end of this function, after the last use of its bytes.
    fn on_recv(
        &mut self,
        slot: u32,
        generation: u32,
        result: i32,
        more: bool,
        data: Option<RecvGuard>,
    ) {
        if self.slab.get_live(slot, generation).is_none() {
            debug_assert!(false, "recv completion for a released slot");
            return;
        }
        if !more {
            self.slab.conns[slot as usize].recv_armed = false;
        }
        if result > 0 {
            bump(
                &self.shared.stats[self.index as usize].bytes_in,
                result as u64,
            );
            match &data {
                Some(data) => {
                    if self.slab.conns[slot as usize].link.is_some() {
                        self.on_link_bytes(slot, data);
                    } else {
                        let data = self.feed_large(slot, data);
                        if !data.is_empty() && self.slab.conns[slot as usize].accepts_frames() {
                            self.on_client_bytes(slot, data);
                        }
                    }
                }
                None => debug_assert!(false, "multishot recv completed without a buffer"),
            }
        } else if result == 0 || (result != -libc::ENOBUFS && result != -libc::ECANCELED) {
            // EOF or a socket error: the peer is gone. (ENOBUFS: ring empty, re-armed below;
            // ECANCELED: stopped by `start_large`, re-armed below as a plain recv.)
            self.peer_gone(slot, generation);
        }
        self.after_recv(slot);
    }

    fn on_send(&mut self, slot: u32, generation: u32, result: i32, rest: Outgoing) {
        let Some(c) = self.slab.get_live(slot, generation) else {
            debug_assert!(false, "send completion for a released slot");
            return;
        };
        c.send_in_flight = false;
        c.sending_bytes = 0;
        if result < 0 {
            c.out.clear();
            c.segments.clear();
            c.segments_bytes = 0;
            self.request_close(
                slot,
                generation,
                CloseReason::NORMAL,
                "send failed: peer gone",
                true,
            );
        } else {
            bump(
                &self.shared.stats[self.index as usize].bytes_out,
                result as u64,
            );
            if !rest.is_empty() {
                // A partial send: the rest goes out before anything queued since.
                c.sending_bytes = rest.remaining_bytes();
                c.unsent = Some(rest);
            } else if let Outgoing::Plain { mut bytes, .. } = rest {
                bytes.clear();
                if bytes.capacity() > c.spare.capacity() {
                    c.spare = bytes;
                }
            }
            if c.unsent.is_some() || !c.out.is_empty() || !c.segments.is_empty() {
                if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(slot);
                }
            } else if c.state == ConnState::Closing {
                self.shutdown_conn(slot);
            }
        }
        self.maybe_release(slot);
    }

    /// A direct receive of a large frame completed; the ring hands its buffer back.
    fn on_recv_exact(&mut self, slot: u32, generation: u32, result: i32, buf: Vec<u8>) {
        let now_ms = self.now_ms;
        let engine = Engine::new(&self.shared.tables, &self.shared.engine);
        let Some(c) = self.slab.get_live(slot, generation) else {
            debug_assert!(false, "direct recv completion for a released slot");
            return;
        };
        c.recv_armed = false;
        if result > 0 {
            bump(
                &self.shared.stats[self.index as usize].bytes_in,
                result as u64,
            );
        }
        if result > 0 && c.accepts_frames() {
            engine.on_receive(&mut c.relay, now_ms);
            if buf.len() == c.large_frame_bytes {
                self.dispatch_large(slot, buf);
            } else {
                // MSG_WAITALL returned early (a signal, or the peer paused): receive the rest.
                c.large = Some(buf);
            }
        } else if result == 0 || (result < 0 && result != -libc::ECANCELED) {
            self.peer_gone(slot, generation);
        }
        self.after_recv(slot);
    }

    fn peer_gone(&mut self, slot: u32, generation: u32) {
        let text = "peer closed the connection";
        self.request_close(slot, generation, CloseReason::NORMAL, text, true);
    }

    /// Re-arms the receive of an open connection whose recv ended; frees a shut-down slot.
    fn after_recv(&mut self, slot: u32) {
        let c = &self.slab.conns[slot as usize];
        if !c.recv_armed && c.state == ConnState::Open && !c.close_requested {
            self.arm_recv(slot);
        }
        self.maybe_release(slot);
    }

    fn deliverer(&mut self, origin_slot: u32, origin_generation: u32) -> Deliverer<'_> {
        let cfg = &self.shared.config;
        Deliverer {
            slab: &mut self.slab,
            dirty: &mut self.dirty,
            outboxes: &mut self.outboxes,
            pending_closes: &mut self.pending_closes,
            stats: &self.shared.stats[self.index as usize],
            worker: self.index,
            origin_slot,
            origin_generation,
            pending_bytes_max: cfg.pending_bytes_max,
            handoff_bytes_max: cfg.handoff_bytes_max,
            overloaded: false,
            shared_payload: self.shared_payload.clone(),
            links_out: &self.links_out,
            link_pending_bytes_max: cfg.link_pending_bytes_max,
            lane: &self.shared.lane,
            epochs: &self.shared.epochs,
            held_hellos: &mut self.held_hellos,
        }
    }

    fn request_close(
        &mut self,
        slot: u32,
        generation: u32,
        reason: CloseReason,
        text: &'static str,
        peer_gone: bool,
    ) {
        if let Some(c) = self.slab.get_live(slot, generation) {
            c.close_requested = true;
        }
        self.pending_closes.push(PendingClose {
            slot,
            generation,
            reason,
            text,
            peer_gone,
        });
    }

    fn run_pending_closes(&mut self) {
        // Closing may queue more closes (a replaced id's presence, ...); bounded by the number
        // of connections, since each connection closes at most once.
        // In the order decided (FIFO): the first close decided for a connection is the one
        // carried out; later ones find it no longer open. Popping from the back let a later
        // "peer closed" (EOF in the same round, with no final CLOSE frame) override an earlier
        // protocol-error, replaced or slow-consumer close, and its CLOSE frame was never sent.
        let mut next = 0;
        while let Some(&pc) = self.pending_closes.get(next) {
            self.begin_close(pc);
            next += 1;
        }
        self.pending_closes.clear();
    }

    /// Removes the connection from every table, queues a final CLOSE frame and starts the
    /// linger timer (or shuts the socket down at once when the peer is gone).
    fn begin_close(&mut self, pc: PendingClose) {
        let shared = Arc::clone(&self.shared);
        let Some(conn) = self.slab.get_live(pc.slot, pc.generation) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        conn.state = ConnState::Closing;
        let mut relay = std::mem::take(&mut conn.relay);
        let close_text = conn.close_text.take();
        let link = conn.link;
        if pc.reason == CloseReason::SLOW_CONSUMER {
            conn.out.clear();
        }
        tracing::debug!(worker = self.index, slot = pc.slot, id = %String::from_utf8_lossy(relay.client_id()), reason = %pc.reason, "closing connection");
        if let Some(role) = link {
            self.forget_link(pc.slot, role);
        }
        let at = self.location(pc.slot, pc.generation);
        let engine = Engine::new(&shared.tables, &shared.engine);
        let mut scratch = std::mem::take(&mut self.scratch_locations);
        engine.on_close(
            &mut relay,
            at,
            &mut scratch,
            &mut self.deliverer(pc.slot, pc.generation),
        );
        self.scratch_locations = scratch;
        self.slab.conns[pc.slot as usize].relay = relay;
        let conn = &mut self.slab.conns[pc.slot as usize];
        // Links carry no client CLOSE frame: the peer learns from the socket closing.
        if pc.peer_gone || link.is_some() {
            self.shutdown_conn(pc.slot);
            return;
        }
        let text = close_text.as_deref().unwrap_or(pc.text);
        let frame = Frame::Close {
            reason: pc.reason,
            text: text.as_bytes(),
        };
        if frame.encode(&mut conn.out).is_ok() {
            bump(
                &shared.stats[self.index as usize].frames_out_by_kind[kind_index(FrameKind::Close)],
                1,
            );
        }
        conn.close_deadline_ms = self.now_ms + shared.config.close_linger_ms;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(pc.slot);
        }
    }

    fn shutdown_conn(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        if matches!(c.state, ConnState::ShutDown | ConnState::Free) {
            return;
        }
        c.state = ConnState::ShutDown;
        // SAFETY: `fd` is an open socket owned by this slot; shutdown has no memory effects.
        unsafe {
            libc::shutdown(c.fd, libc::SHUT_RDWR);
        }
        self.maybe_release(slot);
    }

    /// Closes the socket and frees the slot once no operation references it.
    fn maybe_release(&mut self, slot: u32) {
        let c = &self.slab.conns[slot as usize];
        if c.state != ConnState::ShutDown || c.recv_armed || c.send_in_flight {
            return;
        }
        // The ring owns the memory of a slot's operations until their completions: a slot is
        // reused only when the ring agrees nothing of it is in flight.
        if !self.uring.slot_idle(slot) {
            debug_assert!(false, "slot {slot} released with an operation in flight");
            return;
        }
        close_fd(c.fd);
        self.slab.release(slot);
        bump(
            &self.shared.stats[self.index as usize].connections_open,
            u64::MAX,
        );
    }

    fn flush_sends(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let c = &mut self.slab.conns[slot as usize];
            c.dirty = false;
            if !c.send_in_flight && matches!(c.state, ConnState::Open | ConnState::Closing) {
                self.submit_send(slot);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn flush_handoffs(&mut self) {
        let shared = Arc::clone(&self.shared);
        let me = self.index as usize;
        for (dest, outbox) in self.outboxes.iter_mut().enumerate() {
            if dest == me || outbox.is_idle() {
                continue;
            }
            let target = &shared.mailboxes[dest];
            if outbox.flush(&target.inbound[me], &shared.mailboxes[me].returns[dest]) {
                target.wake();
            }
        }
    }

    /// Applies batches other workers handed to this one.
    fn drain_inbound(&mut self) {
        let shared = Arc::clone(&self.shared);
        let me = self.index as usize;
        for (src, queue) in shared.mailboxes[me].inbound.iter().enumerate() {
            while let Some(mut batch) = queue.pop() {
                let (bytes, payloads) = batch.parts();
                for record in records(bytes) {
                    match record.tag {
                        TAG_FRAME => {
                            self.deliverer(record.slot, record.generation)
                                .append_frame_bytes(record.slot, record.generation, record.body);
                        }
                        TAG_SHARED => {
                            let (index, header) = record.body.split_at(SHARED_INDEX_LEN);
                            let index =
                                u32::from_le_bytes([index[0], index[1], index[2], index[3]]);
                            let payload = payloads
                                .get_mut(index as usize)
                                .map(std::mem::take)
                                .unwrap_or_default();
                            self.deliverer(record.slot, record.generation)
                                .append_local_shared(
                                    record.slot,
                                    record.generation,
                                    header.len(),
                                    |out| out.extend_from_slice(header),
                                    payload,
                                );
                        }
                        TAG_CLOSE => {
                            let reason =
                                CloseReason(u16::from_le_bytes([record.body[0], record.body[1]]));
                            self.pending_closes.push(PendingClose {
                                slot: record.slot,
                                generation: record.generation,
                                reason,
                                text: reason.name(),
                                peer_gone: false,
                            });
                        }
                        other => debug_assert!(false, "unknown handoff tag {other}"),
                    }
                }
                batch.clear();
                // The producer's return queue full means it has spares enough: drop this one.
                let _ = shared.mailboxes[src].returns[me].push(batch);
            }
        }
    }

    fn on_tick(&mut self) {
        let shared = Arc::clone(&self.shared);
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &mut self.slab.conns[slot as usize];
            let generation = c.generation;
            match c.state {
                ConnState::Open if !c.close_requested && c.link.is_none() => {
                    let mut relay = std::mem::take(&mut c.relay);
                    let at = self.location(slot, generation);
                    let engine = Engine::new(&shared.tables, &shared.engine);
                    engine.on_tick(
                        &mut relay,
                        at,
                        self.now_ms,
                        &mut self.deliverer(slot, generation),
                    );
                    self.slab.conns[slot as usize].relay = relay;
                }
                ConnState::Closing if self.now_ms >= c.close_deadline_ms => {
                    self.shutdown_conn(slot)
                }
                _ => {}
            }
        }
        if !self.accept_armed && !self.stopping {
            self.arm_accept();
        }
        self.arm_timer();
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        self.stop_deadline_ms = self.now_ms + self.shared.config.close_linger_ms + 500;
        // SAFETY: shutting down our own listening socket makes the pending multishot accept
        // complete; it has no memory effects.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
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
        for slot in 0..self.slab.conns.len() as u32 {
            let c = &mut self.slab.conns[slot as usize];
            if matches!(c.state, ConnState::Open | ConnState::Closing) {
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
                self.slab.release(slot);
                bump(&stats.connections_open, u64::MAX);
            }
        }
    }
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: passes a pointer to a live c_int of the size given; fd is a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            4,
        );
    }
}

fn close_fd(fd: RawFd) {
    // SAFETY: fd is owned by the caller and closed exactly once.
    unsafe {
        libc::close(fd);
    }
}

/// At the connection limit: tell the client why (best effort, non-blocking) and close.
fn refuse_connection(fd: RawFd) {
    let mut out = Vec::new();
    let frame = Frame::Close {
        reason: CloseReason::CONNECTION_LIMIT,
        text: b"connection limit reached",
    };
    if frame.encode(&mut out).is_ok() {
        // SAFETY: sends from a live buffer of the given length; MSG_DONTWAIT never blocks.
        unsafe {
            libc::send(
                fd,
                out.as_ptr().cast(),
                out.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            );
        }
    }
    close_fd(fd);
}
