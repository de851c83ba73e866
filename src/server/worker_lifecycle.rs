//! Connection lifecycle: accept, close decisions, the close itself (the engine undoes what the
//! connection added to the shared tables; the final CLOSE frame lingers), shutdown and release
//! of the slot. A child module of `worker`, so it shares the worker's private state.

use super::super::conn::ConnState;
use super::super::deliver::PendingClose;
use super::super::stats::{bump, kind_index, WorkerStats};
use super::super::tls_conn::TlsConn;
use super::super::uring::Outgoing;
use super::nats::NatsStart;
use super::{Worker, LISTENER_NATS};
use crate::core::{ConnRelay, Engine};
use crate::protocol::{CloseReason, Frame, FrameKind};
use std::os::fd::RawFd;
use std::sync::Arc;

impl Worker {
    pub(super) fn on_accept(&mut self, listener: u32, result: i32, more: bool) {
        if !more {
            if listener == LISTENER_NATS {
                self.nats_accept_armed = false;
            } else {
                self.accept_armed = false;
            }
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
        set_nodelay(fd);
        // The peer address costs a syscall: looked up only for a host's authorize hook. A
        // TCP client whose address cannot be read (it already reset) is not served: the hook
        // must never mistake it for a local client (peer `None`).
        let peer = match self.shared.engine.session.authorize {
            Some(_) => match peer_addr(fd) {
                Some(peer) => Some(peer),
                None => {
                    close_fd(fd);
                    return;
                }
            },
            None => None,
        };
        if let Some(slot) = self.adopt_client(fd, peer, None) {
            if listener == LISTENER_NATS {
                let bound = self
                    .listeners
                    .nats
                    .as_ref()
                    .and_then(|l| l.local_addr().ok())
                    .and_then(|a| a.as_socket());
                self.start_nats(slot, NatsStart::Greet { bound, tls: false });
            }
        }
    }

    /// Serves `fd` as a new client connection from `peer` (accepted, or a local client);
    /// `tls`: its session, when a handshake thread completed its TLS handshake (set before
    /// the first receive is armed, so it receives into the TLS ring).
    pub(super) fn adopt_client(
        &mut self,
        fd: RawFd,
        peer: Option<std::net::SocketAddr>,
        tls: Option<Box<TlsConn>>,
    ) -> Option<u32> {
        if self.stopping {
            close_fd(fd);
            return None;
        }
        // `now_ms` is truncated (and read when the loop woke): start the session's clock at
        // the next whole millisecond, so its deadlines never come before the configured
        // timeout has really passed.
        let session_cfg = &self.shared.engine.session;
        let relay = ConnRelay::client_from(self.now_ms + 1, session_cfg, peer);
        let max_frame_bytes = self.shared.config.max_frame_bytes;
        let Some(slot) = self.slab.insert(fd, relay, max_frame_bytes) else {
            refuse_connection(fd);
            return None;
        };
        self.slab.conns[slot as usize].opened_ms = self.now_ms;
        self.slab.conns[slot as usize].tls = tls;
        let stats = &self.shared.stats[self.index as usize];
        bump(&stats.connections_accepted, 1);
        bump(&stats.connections_open, 1);
        self.arm_recv(slot);
        Some(slot)
    }

    pub(super) fn request_close(
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

    pub(super) fn run_pending_closes(&mut self) {
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
    pub(super) fn begin_close(&mut self, pc: PendingClose) {
        let shared = Arc::clone(&self.shared);
        let Some(conn) = self.slab.get_live(pc.slot, pc.generation) else {
            return;
        };
        if conn.state != ConnState::Open {
            return;
        }
        let reassembly_before = conn.reassembly_bytes();
        conn.state = ConnState::Closing;
        let mut relay = std::mem::take(&mut conn.relay);
        let close_text = conn.close_text.take();
        let link = conn.link;
        // A TLS connection's queued records are sealed in sequence: dropping them would leave
        // a gap the peer cannot read past, so a slow TLS consumer is shut down without a
        // final CLOSE (it was not reading anyway).
        let peer_gone =
            pc.peer_gone || (pc.reason == CloseReason::SLOW_CONSUMER && conn.tls.is_some());
        if pc.reason == CloseReason::SLOW_CONSUMER && conn.tls.is_none() {
            // `repend` takes what the connection counted (its buffers' capacity too): given
            // only its queued bytes, each such close left the capacity counted for good.
            // What is queued and not yet handed to the kernel goes: the send buffer, the
            // run, and the segments (a fan-out's runs sealed in earlier rounds; each starts
            // at a frame, a partial send's rest is kept in `unsent`).
            let before = conn.accounted_bytes();
            conn.out.clear();
            conn.run = None;
            conn.segments.clear();
            conn.segments_bytes = 0;
            self.slab.repend(pc.slot, before);
        }
        // A closing connection takes no more frames: what it held of one is freed now, not
        // after the linger (counted once the relay state is back, below).
        let conn = &mut self.slab.conns[pc.slot as usize];
        conn.decoder.clear();
        // A direct receive in flight keeps its frame counted: the ring holds its buffer.
        if conn.large.take().is_some() {
            conn.large_frame_bytes = 0;
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
        self.slab.reheld(pc.slot, reassembly_before);
        // Links carry no client CLOSE frame: the peer learns from the socket closing.
        if peer_gone || link.is_some() {
            self.shutdown_conn(pc.slot);
            return;
        }
        let text = close_text.as_deref().unwrap_or(pc.text);
        let frame = Frame::Close {
            reason: pc.reason,
            text: text.as_bytes(),
        };
        // The CLOSE goes after what the connection's run holds.
        self.slab.settle_run(pc.slot);
        let conn = &mut self.slab.conns[pc.slot as usize];
        let before = conn.accounted_bytes();
        conn.tls_reserve();
        let encoded = match &mut conn.nats {
            // A NATS client gets nats-server's -ERR for the reason, or nothing.
            Some(nats) => {
                nats.write_frame(&mut conn.out, &frame);
                true
            }
            None => frame.encode(&mut conn.out).is_ok(),
        };
        if let Some(tls) = &mut conn.tls {
            tls.seal_close(&mut conn.out);
        }
        self.slab.repend(pc.slot, before);
        let conn = &mut self.slab.conns[pc.slot as usize];
        if encoded {
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
        // What the peer still sends is read and discarded until the socket is closed (paused
        // reads included): see `worker_linger.rs`.
        self.after_recv(pc.slot);
    }

    pub(super) fn shutdown_conn(&mut self, slot: u32) {
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
    /// Counts the messages an outbound data link dies with (see
    /// [`super::super::conn::Conn::queued_link_messages`]): they were accepted for another
    /// node and will never reach it. Those already in the kernel's socket buffer are not
    /// seen here; acknowledged delivery covers them.
    pub(super) fn count_link_loss(&mut self, slot: u32, in_flight: Option<&Outgoing>) {
        let lost = self.slab.conns[slot as usize].queued_link_messages(in_flight);
        if lost > 0 {
            tracing::warn!(
                worker = self.index,
                slot,
                lost,
                "data link closed with messages queued"
            );
            bump(
                &self.shared.stats[self.index as usize].link_loss_drops,
                lost,
            );
        }
    }

    pub(super) fn maybe_release(&mut self, slot: u32) {
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
        let was_link = c.link.is_some();
        self.count_link_loss(slot, None);
        self.slab.release(slot);
        let stats = &self.shared.stats[self.index as usize];
        bump(open_gauge(stats, was_link), u64::MAX);
    }
}

/// The gauge a connection counts in while open: data links apart from client connections.
pub(super) fn open_gauge(stats: &WorkerStats, link: bool) -> &std::sync::atomic::AtomicU64 {
    if link {
        &stats.links_open
    } else {
        &stats.connections_open
    }
}

/// The address at the other end of accepted socket `fd` (`None` when the kernel cannot say).
fn peer_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    // SAFETY: `fd` is an open socket this worker owns for the length of the call; `SockRef`
    // borrows it without taking ownership or closing it.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = socket2::SockRef::from(&borrowed);
    sock.peer_addr().ok().and_then(|a| a.as_socket())
}

pub(super) fn set_nodelay(fd: RawFd) {
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

pub(super) fn close_fd(fd: RawFd) {
    // SAFETY: fd is owned by the caller and closed exactly once.
    unsafe {
        libc::close(fd);
    }
}

/// At the connection limit: tell the client why (best effort, non-blocking) and close.
pub(super) fn refuse_connection(fd: RawFd) {
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
