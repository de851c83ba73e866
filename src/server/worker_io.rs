//! I/O operations of the worker: arming receives, accept, wake-up and timer; submitting sends
//! (one in flight per socket); and the completions of receives and sends. A child module of
//! `worker`, so it shares the worker's private state.

use super::super::conn::{extra_capacity, ConnState};
use super::super::stats::bump;
use super::super::uring::{Outgoing, RecvGuard};
use super::{Worker, LISTENER_CLIENT, LISTENER_NATS};
use crate::core::Engine;
use crate::protocol::CloseReason;
use bytes::{Bytes, BytesMut};
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// Segment lists of completed gathered sends kept for reuse, per worker: as many as sends
/// commonly gather at once; a burst past it allocates.
const SEGMENT_LISTS_KEPT_MAX: usize = 256;

/// The longest segment list kept (a longer one, from a long backlog, is freed): a gathered
/// send's iovecs are at most `IOV_PER_SEND_MAX`, and the rest rides along for the next one.
const SEGMENT_LIST_KEPT_LEN_MAX: usize = 256;

impl Worker {
    /// Arms the multishot accept of each listener that has none armed.
    pub(super) fn arm_accept(&mut self) {
        if !self.accept_armed {
            let fd = self.listeners.client.as_raw_fd();
            self.accept_armed = self.uring.accept_multishot(fd, LISTENER_CLIENT);
        }
        if let (Some(nats), false) = (&self.listeners.nats, self.nats_accept_armed) {
            let fd = nats.as_raw_fd();
            self.nats_accept_armed = self.uring.accept_multishot(fd, LISTENER_NATS);
        }
    }

    /// Whether every listener has its accept armed.
    pub(super) fn accepts_armed(&self) -> bool {
        self.accept_armed && (self.listeners.nats.is_none() || self.nats_accept_armed)
    }

    pub(super) fn arm_wake(&mut self) {
        let fd = self.shared.mailboxes[self.index as usize].wake_fd;
        self.uring.read_wake(fd);
    }

    pub(super) fn arm_timer(&mut self) {
        self.uring.timeout(self.tick_ms);
    }

    pub(super) fn arm_recv(&mut self, slot: u32) {
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
            None => self
                .uring
                .recv_multishot(slot, c.generation, c.fd, c.tls.is_some()),
        };
    }

    /// Hands the connection's queued bytes to the ring (one send in flight per socket): what a
    /// partial send left first, else the segments (zero-copy payloads and runs of a round's
    /// shared buffer, see `shared_round.rs`) with the frames around them, a lone one sent as
    /// a plain [`Outgoing::Slice`], else the send buffer (swapped with the spare one, so
    /// nothing is allocated).
    pub(super) fn submit_send(&mut self, slot: u32) {
        let c = &mut self.slab.conns[slot as usize];
        debug_assert!(!c.send_in_flight);
        let before = c.accounted_bytes();
        c.tls_seal();
        if let Some(failed) = c.tls.as_mut().and_then(|t| t.failed.take()) {
            tracing::warn!(
                worker = self.index,
                slot,
                "TLS: {failed}; connection dropped"
            );
            // Nothing more can be sealed for it: what it holds is dropped.
            let c = &mut self.slab.conns[slot as usize];
            c.out.clear();
            c.segments.clear();
            c.segments_bytes = 0;
            let (open, generation) = (c.state == ConnState::Open, c.generation);
            self.slab.repend(slot, before);
            if open {
                // Closed as any connection is, with no final frame: a link is forgotten (and
                // dialled again), a client's row, subscriptions and watches are undone.
                let text = "TLS failure";
                return self.request_close(slot, generation, CloseReason::NORMAL, text, true);
            }
            return self.shutdown_conn(slot);
        }
        let c = &mut self.slab.conns[slot as usize];
        let outgoing = if let Some(unsent) = c.unsent.take() {
            unsent
        } else if c.segments.len() == 1 && c.out.is_empty() {
            c.segments_bytes = 0;
            Outgoing::Slice(
                c.segments
                    .pop_front()
                    .expect("invariant: checked to hold one segment"),
            )
        } else if !c.segments.is_empty() {
            if !c.out.is_empty() {
                let sealed = Bytes::from(std::mem::take(&mut c.out));
                c.segments_bytes += sealed.len();
                c.segments.push_back(sealed);
            }
            c.segments_bytes = 0;
            let mut list = self.spare_segment_lists.pop().unwrap_or_default();
            list.extend(c.segments.drain(..));
            Outgoing::Gathered(list)
        } else if !c.out.is_empty() {
            let bytes = std::mem::replace(&mut c.out, std::mem::take(&mut c.spare));
            c.in_flight_extra = extra_capacity(bytes.capacity());
            Outgoing::Plain { bytes, offset: 0 }
        } else {
            return;
        };
        c.sending_bytes = outgoing.remaining_bytes();
        match self.uring.send(slot, c.generation, c.fd, outgoing) {
            Ok(()) => {
                c.send_in_flight = true;
                c.sent_peak_bytes = c.sent_peak_bytes.max(c.sending_bytes);
            }
            // Only while shutting down: the bytes will never be sent.
            Err(_) => {
                c.sending_bytes = 0;
                c.in_flight_extra = 0;
            }
        }
        self.slab.repend(slot, before);
    }

    /// A multishot receive completion; `data`'s bytes are given up when it is dropped at the
    /// end of this function, after their last use (the buffer is freed for the next refill of
    /// the ring once the kernel has let it go and no other guard holds it).
    pub(super) fn on_recv(
        &mut self,
        slot: u32,
        generation: u32,
        result: i32,
        more: bool,
        mut data: Option<RecvGuard>,
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
            self.slab.conns[slot as usize].tally.read(result as u64);
            let c = &self.slab.conns[slot as usize];
            match &mut data {
                // A closed connection's bytes are read only to be discarded (a lingering
                // close, see `worker_linger.rs`).
                Some(_) if c.state != ConnState::Open => {}
                Some(data) => {
                    if c.tls.is_some() {
                        self.on_tls_bytes(slot, generation, data);
                    } else if c.link.is_some() {
                        self.on_link_bytes(slot, data);
                    } else if c.nats.is_some() {
                        if c.accepts_frames() {
                            self.on_nats_bytes(slot, data);
                        }
                    } else {
                        let data = self.feed_large(slot, data);
                        if !data.is_empty() && self.slab.conns[slot as usize].accepts_frames() {
                            self.on_client_bytes(slot, data);
                        }
                    }
                }
                None => debug_assert!(false, "multishot recv completed without a buffer"),
            }
        } else if result == -libc::ENOBUFS {
            // The receive ring was empty: re-armed before the next submission, the data
            // waits in the socket (see `rearm_starved`).
            bump(&self.shared.stats[self.index as usize].recv_ring_empty, 1);
            self.starved.push((slot, generation));
            return self.maybe_release(slot);
        } else if result != -libc::ECANCELED {
            // EOF (0) or a socket error: the peer is gone. (ECANCELED: stopped by
            // `start_large`, re-armed below as a plain recv.)
            self.peer_gone(slot, generation, result == 0);
        }
        self.after_recv(slot);
    }

    pub(super) fn on_send(&mut self, slot: u32, generation: u32, result: i32, sent: Outgoing) {
        let Some(c) = self.slab.get_live(slot, generation) else {
            debug_assert!(false, "send completion for a released slot");
            return;
        };
        let before = c.accounted_bytes();
        c.send_in_flight = false;
        c.sending_bytes = 0;
        let mut rest = sent;
        if let Ok(sent_bytes) = usize::try_from(result) {
            c.consume_sent(&mut rest, sent_bytes);
        }
        if result < 0 {
            self.count_link_loss(slot, Some(&rest));
            let c = &mut self.slab.conns[slot as usize];
            c.out.clear();
            c.segments.clear();
            c.segments_bytes = 0;
            c.run = None;
            c.in_flight_extra = 0;
            self.slab.repend(slot, before);
            if self.slab.conns[slot as usize].state == ConnState::Open {
                let text = "send failed: peer gone";
                self.request_close(slot, generation, CloseReason::NORMAL, text, true);
            } else {
                // Its final frames cannot reach the peer: nothing to linger for.
                self.shutdown_conn(slot);
            }
        } else {
            bump(
                &self.shared.stats[self.index as usize].bytes_out,
                result as u64,
            );
            c.tally.sent(result as u64);
            if !rest.is_empty() {
                // A partial send: the rest goes out before anything queued since.
                c.sending_bytes = rest.remaining_bytes();
                c.unsent = Some(rest);
            } else {
                c.in_flight_extra = 0;
                match rest {
                    Outgoing::Plain { mut bytes, .. } => {
                        bytes.clear();
                        if bytes.capacity() > c.spare.capacity() {
                            c.spare = bytes;
                        }
                    }
                    Outgoing::Gathered(mut list) => {
                        if self.spare_segment_lists.len() < SEGMENT_LISTS_KEPT_MAX
                            && list.capacity() <= SEGMENT_LIST_KEPT_LEN_MAX
                        {
                            list.clear();
                            self.spare_segment_lists.push(list);
                        }
                    }
                    Outgoing::Slice(_) => {}
                }
            }
            self.slab.repend(slot, before);
            let c = &mut self.slab.conns[slot as usize];
            let limits = match c.link {
                Some(_) => &self.link_flow,
                None => &self.client_flow,
            };
            c.backlog.drained(limits, c.pending_bytes());
            if c.unsent.is_some() || !c.out.is_empty() || !c.segments.is_empty() {
                if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(slot);
                }
            } else if c.state == ConnState::Closing {
                self.begin_linger(slot);
            }
        }
        self.maybe_release(slot);
    }

    /// A direct receive of a large frame completed; the ring hands its buffer back.
    pub(super) fn on_recv_exact(&mut self, slot: u32, generation: u32, result: i32, buf: BytesMut) {
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
            let complete = buf.len() == c.large_frame_bytes;
            engine.on_receive_end(&mut c.relay, now_ms, complete, !complete);
            if complete {
                self.dispatch_large(slot, buf);
            } else {
                // MSG_WAITALL returned early (a signal, or the peer paused): receive the rest.
                c.large = Some(buf);
            }
        } else if result == 0 || (result < 0 && result != -libc::ECANCELED) {
            self.peer_gone(slot, generation, result == 0);
        }
        self.after_recv(slot);
    }

    /// The peer's end of stream (`eof`: its FIN, or a TLS close_notify) or a socket error: an
    /// open connection is closed without a final frame (unless its stream ended inside a
    /// frame or a TLS record, see below); a closing one reads no more, and one lingering is
    /// closed now.
    pub(super) fn peer_gone(&mut self, slot: u32, generation: u32, eof: bool) {
        let Some(c) = self.slab.get_live(slot, generation) else {
            return;
        };
        match c.state {
            ConnState::Open => match c.stream_cut().filter(|_| eof && !c.close_requested) {
                Some(text) => {
                    // A client that only shut its sending side still reads: it is told why
                    // its last bytes went nowhere (PROTOCOL.md section 6), as for a frame
                    // that does not decode; before HELLO, as a bad handshake. Not after a
                    // socket error (a reset peer reads nothing), nor when a close was decided
                    // already this round (that close, and its count, stand).
                    c.peer_eof = true;
                    let reason = match c.relay.phase() {
                        crate::core::Phase::AwaitingHello => CloseReason::BAD_HANDSHAKE,
                        _ => CloseReason::PROTOCOL_ERROR,
                    };
                    bump(
                        &self.shared.stats[self.index as usize].protocol_error_closes,
                        1,
                    );
                    self.request_close(slot, generation, reason, text, false);
                }
                None => {
                    let text = "peer closed the connection";
                    self.request_close(slot, generation, CloseReason::NORMAL, text, true);
                }
            },
            ConnState::Closing => c.peer_eof = true,
            ConnState::Lingering => {
                c.peer_eof = true;
                self.shutdown_conn(slot);
            }
            ConnState::ShutDown | ConnState::Free => {}
        }
    }

    /// Re-arms the receives that found the ring empty since the last submission, each time
    /// starting from the next one in the list: the receive submitted first takes the buffers
    /// of the refilled ring, and with the same order every round, one busy connection would
    /// take them all every time while another starved for as long as the first had data.
    pub(super) fn rearm_starved(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        let mut starved = std::mem::take(&mut self.starved);
        self.starved_turn = self.starved_turn.wrapping_add(1);
        let first = self.starved_turn % starved.len();
        starved.rotate_left(first);
        for &(slot, generation) in &starved {
            if self.slab.get_live(slot, generation).is_some() {
                self.after_recv(slot);
            }
        }
        starved.clear();
        self.starved = starved;
    }

    /// Re-arms the receive of an open connection whose recv ended (unless its reads are
    /// paused, see `worker_flow.rs`) and of a closed one until the peer's FIN (its bytes are
    /// discarded); frees a shut-down slot.
    pub(super) fn after_recv(&mut self, slot: u32) {
        let c = &self.slab.conns[slot as usize];
        let wanted = match c.state {
            // A connection getting ready to move reads no more, but finishes a large frame
            // it is in the middle of.
            ConnState::Open => {
                !c.close_requested && !c.reads_paused && (!c.moving || c.large.is_some())
            }
            ConnState::Closing | ConnState::Lingering => !c.peer_eof,
            ConnState::ShutDown | ConnState::Free => false,
        };
        if wanted && !c.recv_armed {
            self.arm_recv(slot);
        }
        self.maybe_release(slot);
    }

    pub(super) fn flush_sends(&mut self) {
        // Before the sends: a run's bytes go out with its connection's.
        self.slab.seal_runs();
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let c = &mut self.slab.conns[slot as usize];
            c.dirty = false;
            if !c.send_in_flight && matches!(c.state, ConnState::Open | ConnState::Closing) {
                self.submit_send(slot);
                let c = &self.slab.conns[slot as usize];
                // A close with no final frame (a NATS client may get none) lingers at once.
                if c.state == ConnState::Closing && !c.send_in_flight {
                    self.begin_linger(slot);
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    pub(super) fn flush_handoffs(&mut self) {
        let shared = Arc::clone(&self.shared);
        let me = self.index as usize;
        for (dest, outbox) in self.outboxes.iter_mut().enumerate() {
            if dest == me || outbox.is_idle() {
                continue;
            }
            let target = &shared.mailboxes[dest];
            if outbox.flush(&target.inbound[me], &shared.mailboxes[me].returns[dest]) {
                // Counted after the push, for the move barrier's quiet check (`moves.rs`).
                shared
                    .moves
                    .pushes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                target.wake();
            }
        }
    }
}
