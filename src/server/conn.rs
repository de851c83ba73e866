//! Per-connection I/O state owned by one worker: socket, send buffers, reassembly; the relay's
//! own per-connection state (session, id, subscriptions) is one field, owned by the engine.

use super::shared_round::{Run, SharedRound};
use super::tls_conn::TlsConn;
use super::uring::Outgoing;
use crate::core::engine::nats::NatsConn;
use crate::core::error_ledger::ErrorLedger;
use crate::core::flow::Backlog;
use crate::core::steer::Tally;
use crate::core::ConnRelay;
use crate::protocol::{FrameWalk, StreamDecoder};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::os::fd::RawFd;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    Free,
    Open,
    /// A close was decided: a final CLOSE frame is flushing until `close_deadline_ms`. What
    /// the peer still sends is read and discarded (see `Lingering`).
    Closing,
    /// The final frames are all with the kernel and the write side is shut (its FIN follows
    /// them). The socket stays open, reading and discarding, until the peer has acknowledged
    /// every byte, the peer's own FIN arrives, or `close_deadline_ms` passes. Closing at once
    /// would, with the peer's bytes unread, make the kernel answer with a reset that discards
    /// whatever the peer has not yet received, the CLOSE frame that says why among it.
    Lingering,
    /// shutdown(2) was called; waiting for in-flight operations before close(2).
    ShutDown,
}

/// One connection's slot. `repr(C)` keeps the fields in this order: the ones read for every
/// message queued to it (`out` to `run`, the first 76 bytes) come first, so a delivery
/// touches two cache lines of a slot (three when the slot starts late in a line: slots are
/// 8-byte aligned) rather than fields spread over its 560 bytes; the rest follow by
/// alignment, largest first, so the order pads no more than Rust's own (`size_of`
/// unchanged). Measured:
/// `benches/ab_cpu.sh`, 1->1 16 B, paired -4.7 % (8 pairs) and -1.9 % (10); fan-out to 10,
/// +2.9 % (8) and -1.8 % (8): small, within this host's noise.
#[repr(C)]
pub struct Conn {
    /// Frames queued for the next send. Wire order: `unsent`, then `segments`, then `out`.
    pub out: Vec<u8>,
    /// Bytes handed to the ring and not yet confirmed sent (in flight or in `unsent`).
    pub sending_bytes: usize,
    pub segments_bytes: usize,
    /// Set when the client speaks the NATS protocol (accepted on `nats_listen`): its
    /// operations are parsed by its reader and what the engine sends it is written as NATS.
    pub nats: Option<Box<NatsConn>>,
    /// Set when the connection came in on a TLS listener: what is received is opened and what
    /// is sent sealed by its record layer (see `tls_conn.rs`).
    pub tls: Option<Box<TlsConn>>,
    pub generation: u32,
    pub state: ConnState,
    /// A close was requested for this batch; no more frames are queued for it.
    pub close_requested: bool,
    /// Queued in the worker's dirty list (has `out` bytes to send).
    pub dirty: bool,
    /// The round's fan-out frames this connection's queue ends with, kept in the worker's
    /// shared buffer until the round ends (see `shared_round.rs`).
    pub run: Option<Run>,
    pub fd: RawFd,
    /// Session, registered id, subscriptions and watches (see `core::engine`).
    pub relay: ConnRelay,
    /// Reassembles frames that straddle receive buffers (bounded by its `max_frame_bytes`).
    pub decoder: StreamDecoder,
    /// Large payloads queued without a copy (shared with the buffer they were received into),
    /// in stream order before `out`: wire order is inflight, then `segments`, then `out`.
    pub segments: VecDeque<Bytes>,
    /// A large frame being received straight into its own buffer (see
    /// `zero_copy_threshold_bytes`); while a direct receive is in flight the ring owns it.
    pub large: Option<BytesMut>,
    /// Whole size of the frame `large` is receiving (0: none; reset when it is dispatched).
    pub large_frame_bytes: usize,
    /// An emptied send buffer kept for reuse (no allocation per send).
    pub spare: Vec<u8>,
    /// What a partial send left over, sent before anything else.
    pub unsent: Option<Outgoing>,
    /// Capacity beyond [`SEND_BUFFER_RETAIN_BYTES`] of the send buffer the ring holds (in
    /// flight, or left in `unsent` by a partial send).
    pub in_flight_extra: usize,
    /// The largest send handed to the ring since the last timer tick (0: none), which sizes
    /// the send buffers kept (see [`Conn::shrink_send_buffers`]).
    pub sent_peak_bytes: usize,
    /// Text for the final CLOSE frame when it is not a static string (decode errors).
    pub close_text: Option<String>,
    pub close_deadline_ms: u64,
    /// When the connection was accepted (the worker's clock, ms), for `/connections`.
    pub opened_ms: u64,
    /// Outbound links: where the bytes handed to the kernel so far end in the frame stream
    /// (mid-frame after a partial send), so the messages a dying link takes can be counted.
    pub link_walk: FrameWalk,
    /// Flow control of this connection's outbound queue (see `core::flow`).
    pub backlog: Backlog,
    /// ERRORs sent to it recently, for coalescing (see `core::error_ledger`); allocated at
    /// its first ERROR and given back once a quiet interval passes.
    pub errors: Option<Box<ErrorLedger>>,
    /// Not chosen to move before this time (the worker's clock, ms; see `STEER_SETTLE_MS`),
    /// except to follow its feeder again when `followed`.
    pub settled_until_ms: u64,
    /// What it was sent this steering interval and by which workers (see `core::steer`).
    pub tally: Tally,
    /// Set when this socket is a data link to or from another node, not a client.
    pub link: Option<LinkRole>,
    pub send_in_flight: bool,
    pub recv_armed: bool,
    /// The peer's FIN (or TLS close_notify) arrived while closing, or ended a stream inside a
    /// frame while open: nothing more to read and discard.
    pub peer_eof: bool,
    /// Its producer side: reads are paused (the worker's stall list says until when); the
    /// receive is not re-armed meanwhile.
    pub reads_paused: bool,
    /// Chosen to move to another worker: its receive is cancelled and not re-armed, so that
    /// nothing of it is in the kernel's hands between two sends, when it moves.
    pub moving: bool,
    /// Its last move followed its feeder: should the feeder move on (the balance rule may
    /// move a sender its receiver just joined), it may follow again while settled.
    pub followed: bool,
}

/// A client connection on its way from one worker to another (see `moves.rs`): its socket
/// and every piece of its state that outlives a round. Taken only from a connection with
/// nothing in the kernel's hands, no partial send, no zero-copy segment or large frame, and
/// no TLS, NATS or data-link role.
pub struct MovedConn {
    pub fd: RawFd,
    /// Its place on the worker it leaves, which the id's row names until the target takes it.
    pub from: (u16, u32, u32),
    pub relay: ConnRelay,
    pub decoder: StreamDecoder,
    pub out: Vec<u8>,
    pub opened_ms: u64,
    pub errors: Option<Box<ErrorLedger>>,
    /// Its congestion episode, which goes on where it lands (its stall budget and its grace
    /// above `pending_bytes_max` keep counting).
    pub backlog: Backlog,
    /// It moves to follow its feeder (see `Conn::followed`).
    pub followed: bool,
}

/// A data link's peer and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkRole {
    pub node: u16,
    /// Outbound links carry this worker's forwards; inbound ones bring the peer's.
    pub outbound: bool,
}

pub use crate::memory_budget::SEND_BUFFER_RETAIN_BYTES;

/// More than one write to a TLS connection's buffer adds besides its bytes: the seal of the
/// record before it and the header of a new one (22 and 13 bytes at most).
const TLS_WRITE_MARGIN_BYTES: usize = 64;

/// A TLS write also seals one record per 16 KiB of what it holds, 22 bytes each: one byte per
/// 512 is more than that.
const TLS_WRITE_MARGIN_PER_BYTES: usize = 512;

/// Capacity of a send buffer beyond what every connection may keep (counted per worker).
#[inline]
pub fn extra_capacity(capacity: usize) -> usize {
    capacity.saturating_sub(SEND_BUFFER_RETAIN_BYTES)
}

impl Conn {
    /// The capacity beyond the retained size that appending `len` bytes to `out` adds (what a
    /// `Vec` that must grow takes: twice its capacity, or what it needs if that is more), so a
    /// bound can count a buffer's growth before it happens. On a TLS connection the write
    /// also adds record headers and seals: counted with a margin above what they can take.
    #[inline]
    pub fn out_growth(&self, len: usize) -> usize {
        // A run is copied into `out` before anything else is written there.
        let (used, capacity) = (self.out.len() + self.run_bytes(), self.out.capacity());
        let sealing = match self.tls {
            Some(_) => TLS_WRITE_MARGIN_BYTES + len / TLS_WRITE_MARGIN_PER_BYTES,
            None => 0,
        };
        let needed = used + len + sealing;
        if needed <= capacity {
            return 0;
        }
        let grown = capacity.saturating_mul(2).max(needed);
        extra_capacity(grown) - extra_capacity(capacity)
    }

    /// The bytes of this connection's run of the round's shared buffer (0 without one).
    #[inline]
    pub fn run_bytes(&self) -> usize {
        self.run.map_or(0, Run::len)
    }

    pub fn pending_bytes(&self) -> usize {
        self.out.len() + self.sending_bytes + self.segments_bytes + self.run_bytes()
    }

    /// What this connection's output holds against `pending_bytes_per_worker_max`: its queued
    /// bytes and its send buffers' capacity beyond the retained size (a buffer grown by a
    /// burst is kept while the connection is busy, so there is no allocation per send, and
    /// shrunk once it is idle).
    pub fn accounted_bytes(&self) -> usize {
        self.pending_bytes()
            + extra_capacity(self.out.capacity())
            + extra_capacity(self.spare.capacity())
            + self.in_flight_extra
    }

    /// Called once per timer tick: gives back send buffer capacity the connection no longer
    /// needs, from buffers that hold nothing. Idle (no send since the last tick, nothing queued
    /// or in flight): everything beyond [`SEND_BUFFER_RETAIN_BYTES`]. Busy: what is beyond
    /// twice its largest send of the tick, once a buffer is over four times that, so a
    /// buffer that doubled to fit the connection's rounds is kept and a trickle after a burst
    /// does not keep the burst's buffers. (Shrinking every connection found without bytes
    /// queued at the tick made busy ones grow again right after, from pages the kernel
    /// zeroes: measured, 6% of the relay's CPU in a steady fan-out.) Returns whether any
    /// capacity was given back.
    pub fn shrink_send_buffers(&mut self) -> bool {
        let peak = std::mem::take(&mut self.sent_peak_bytes);
        let idle = peak == 0 && !self.send_in_flight && self.unsent.is_none();
        let (keep, shrink_above) = if idle {
            (SEND_BUFFER_RETAIN_BYTES, SEND_BUFFER_RETAIN_BYTES)
        } else {
            let keep = SEND_BUFFER_RETAIN_BYTES.max(peak.saturating_mul(2));
            (keep, keep.saturating_mul(2))
        };
        let mut shrunk = false;
        for buf in [&mut self.out, &mut self.spare] {
            if buf.is_empty() && buf.capacity() > shrink_above {
                buf.shrink_to(keep);
                shrunk = true;
            }
        }
        shrunk
    }

    /// Why a native client's stream, were it to end now, would leave bytes it sent unrouted:
    /// inside a frame (the decoder holds part of one, or a large frame is being received), or
    /// over TLS inside a record (its first bytes are held, see `TlsSession::record_cut`);
    /// `None` at a boundary. Links and NATS connections are never asked: they carry no client
    /// CLOSE, or speak another protocol.
    pub fn stream_cut(&self) -> Option<&'static str> {
        if self.link.is_some() || self.nats.is_some() {
            None
        } else if self.decoder.buffered() > 0 || self.large_frame_bytes > 0 {
            Some("stream ended inside a frame")
        } else if self.tls.as_ref().is_some_and(|t| t.session.record_cut()) {
            Some("stream ended inside a TLS record")
        } else {
            None
        }
    }

    /// Memory held for this connection's unfinished frames: the decoder's buffer, a large
    /// frame's own buffer, and frames held behind a HELLO that waits for the node to be ready.
    pub fn reassembly_bytes(&self) -> usize {
        self.decoder.held_bytes()
            + self.large_frame_bytes
            + self.relay.held_bytes()
            + self.nats.as_ref().map_or(0, |n| n.reader.held_bytes())
            + self.tls.as_ref().map_or(0, |t| t.session.partial_bytes())
    }

    /// Makes `out` ready for plaintext: on a TLS connection, an open record with room (a
    /// no-op otherwise). Every writer of `out` calls it first.
    #[inline]
    pub fn tls_reserve(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.reserve(&mut self.out);
        }
    }

    /// Takes back what was appended to `out` from `start` (a message refused after it was
    /// written); a TLS record opened there is forgotten with it.
    pub fn truncate_out(&mut self, start: usize) {
        self.out.truncate(start);
        if let Some(tls) = &mut self.tls {
            tls.forget_open_from(start);
        }
    }

    /// Seals what `out` holds (before it goes to the ring).
    #[inline]
    pub fn tls_seal(&mut self) {
        if let Some(tls) = &mut self.tls {
            tls.seal(&mut self.out);
        }
    }

    /// Queues a link's backlog (whole frames routed while it was dialed) as the first bytes.
    pub fn take_backlog(&mut self, bytes: Vec<u8>) {
        match &mut self.tls {
            Some(tls) => tls.append_chunked(&mut self.out, &bytes),
            None => self.out = bytes,
        }
    }

    pub fn accepts_frames(&self) -> bool {
        self.state == ConnState::Open && !self.close_requested
    }

    /// Takes `sent` bytes off the front of `outgoing` (a send completed). An outbound link
    /// follows the frame stream through a partial send; a whole batch always ends between
    /// frames, so a complete send needs no walk.
    pub fn consume_sent(&mut self, outgoing: &mut Outgoing, sent: usize) {
        let is_link = self.link.is_some_and(|l| l.outbound);
        if let Some(tls) = self.tls.as_mut().filter(|_| is_link) {
            // Ciphertext: the link's ledger follows the stream instead of a frame walk.
            tls.link_sent(sent);
            outgoing.advance(sent);
        } else if !is_link {
            outgoing.advance(sent);
        } else if sent >= outgoing.remaining_bytes() {
            outgoing.advance(sent);
            self.link_walk = FrameWalk::default();
        } else {
            let walk = &mut self.link_walk;
            outgoing.consume(sent, |bytes| {
                walk.feed(bytes);
            });
        }
    }

    /// Messages queued on this outbound link and not wholly handed to the kernel: the frame a
    /// partial send left unfinished, and every frame in `in_flight` (a send that came back
    /// failed), `unsent`, `segments` and `out`, in wire order. 0 for other connections.
    pub fn queued_link_messages(&self, in_flight: Option<&Outgoing>) -> u64 {
        if !self.link.is_some_and(|l| l.outbound) {
            return 0;
        }
        if let Some(tls) = &self.tls {
            return tls.link_messages_lost(&self.out);
        }
        let mut walk = self.link_walk;
        let mut lost = u64::from(!walk.at_boundary());
        for pending in in_flight.into_iter().chain(self.unsent.as_ref()) {
            lost += pending.chunks().map(|b| walk.feed(b)).sum::<u64>();
        }
        lost += self.segments.iter().map(|b| walk.feed(b)).sum::<u64>();
        lost + walk.feed(&self.out)
    }
}

/// Slots reserved up front (at most 65,536 x ~0.5 KiB = 32 MiB of address space); past it
/// the slab grows by doubling.
const SLOTS_RESERVED_MAX: usize = 65_536;

/// Slab of connections with a free list; slot numbers are stable for a connection's life and
/// generations tell successive users of one slot apart.
pub struct Slab {
    pub conns: Vec<Conn>,
    free: Vec<u32>,
    pub open_count: usize,
    limit: usize,
    /// Sum of [`Conn::accounted_bytes`] over client connections (data links have their own
    /// bound), held against `pending_bytes_per_worker_max`.
    pub client_pending_bytes: usize,
    /// Sum of [`Conn::reassembly_bytes`] over client connections, held against
    /// `reassembly_bytes_per_worker_max`.
    pub client_reassembly_bytes: usize,
    /// Bytes written into send buffers (clients, NATS clients and data links) in this loop
    /// round (see `ROUND_OUTPUT_BYTES_MAX`).
    pub round_out_bytes: usize,
    /// The round's DELIVER frames shared by fan-out subscribers (see `shared_round.rs`).
    pub(super) shared: SharedRound,
}

impl Slab {
    pub fn new(limit: usize) -> Slab {
        Slab {
            // Reserved (address space only; pages are touched as slots are first used): growing
            // by doubling copied every connection into freshly faulted memory in the middle of
            // an accept burst, stalling the worker for milliseconds each time.
            conns: Vec::with_capacity(limit.min(SLOTS_RESERVED_MAX)),
            free: Vec::new(),
            open_count: 0,
            limit,
            client_pending_bytes: 0,
            round_out_bytes: 0,
            client_reassembly_bytes: 0,
            shared: SharedRound::default(),
        }
    }

    /// Takes a slot for `fd`, or None at the connection limit. Frames above
    /// `max_frame_bytes` (header included) close the connection.
    pub fn insert(&mut self, fd: RawFd, relay: ConnRelay, max_frame_bytes: usize) -> Option<u32> {
        if self.open_count >= self.limit {
            return None;
        }
        self.open_count += 1;
        if let Some(slot) = self.free.pop() {
            let c = &mut self.conns[slot as usize];
            debug_assert_eq!(c.state, ConnState::Free);
            c.fd = fd;
            c.generation = c.generation.wrapping_add(1);
            c.state = ConnState::Open;
            c.relay = relay;
            c.decoder.set_max_frame_bytes(max_frame_bytes);
            c.close_requested = false;
            c.peer_eof = false;
            debug_assert!(!c.reads_paused && !c.backlog.congested() && c.errors.is_none());
            return Some(slot);
        }
        let slot = self.conns.len() as u32;
        self.conns.push(Conn {
            fd,
            generation: 1,
            state: ConnState::Open,
            relay,
            decoder: StreamDecoder::new(max_frame_bytes),
            segments: VecDeque::new(),
            segments_bytes: 0,
            run: None,
            large: None,
            large_frame_bytes: 0,
            out: Vec::new(),
            spare: Vec::new(),
            unsent: None,
            sending_bytes: 0,
            in_flight_extra: 0,
            send_in_flight: false,
            sent_peak_bytes: 0,
            recv_armed: false,
            peer_eof: false,
            dirty: false,
            close_requested: false,
            close_text: None,
            close_deadline_ms: 0,
            opened_ms: 0,
            link: None,
            nats: None,
            link_walk: FrameWalk::default(),
            tls: None,
            backlog: Backlog::default(),
            reads_paused: false,
            errors: None,
            tally: Tally::default(),
            moving: false,
            settled_until_ms: 0,
            followed: false,
        });
        Some(slot)
    }

    /// Brings [`Self::client_pending_bytes`] in step after the accounted bytes of the
    /// connection in `slot` changed from `before` (nothing for a data link).
    #[inline]
    pub fn repend(&mut self, slot: u32, before: usize) {
        let c = &self.conns[slot as usize];
        if c.link.is_none() {
            let now = c.accounted_bytes();
            let sum = self.client_pending_bytes + now;
            debug_assert!(sum >= before, "invariant: the sum covers this connection");
            self.client_pending_bytes = sum.saturating_sub(before);
        }
    }

    /// Brings [`Self::client_reassembly_bytes`] in step after the reassembly bytes of the
    /// connection in `slot` changed from `before` (nothing for a data link).
    pub fn reheld(&mut self, slot: u32, before: usize) {
        let c = &self.conns[slot as usize];
        if c.link.is_none() {
            let now = c.reassembly_bytes();
            let sum = self.client_reassembly_bytes + now;
            debug_assert!(sum >= before, "invariant: the sum covers this connection");
            self.client_reassembly_bytes = sum.saturating_sub(before);
        }
    }

    /// Returns a slot to the free list; buffers keep their capacity only up to a small bound so
    /// a burst on one connection does not pin memory forever.
    pub fn release(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        debug_assert!(!c.send_in_flight && !c.recv_armed);
        if c.link.is_none() {
            debug_assert!(self.client_pending_bytes >= c.accounted_bytes());
            debug_assert!(self.client_reassembly_bytes >= c.reassembly_bytes());
            self.client_pending_bytes = self
                .client_pending_bytes
                .saturating_sub(c.accounted_bytes());
            self.client_reassembly_bytes = self
                .client_reassembly_bytes
                .saturating_sub(c.reassembly_bytes());
        }
        c.state = ConnState::Free;
        c.fd = -1;
        c.relay = ConnRelay::default();
        c.decoder.clear();
        for buf in [&mut c.out, &mut c.spare] {
            buf.clear();
            buf.shrink_to(SEND_BUFFER_RETAIN_BYTES);
        }
        c.unsent = None;
        c.sending_bytes = 0;
        c.in_flight_extra = 0;
        c.sent_peak_bytes = 0;
        c.segments.clear();
        c.segments_bytes = 0;
        c.run = None;
        c.large = None;
        c.large_frame_bytes = 0;
        c.dirty = false;
        c.close_text = None;
        c.link = None;
        c.nats = None;
        c.link_walk = FrameWalk::default();
        c.tls = None;
        c.backlog = Backlog::default();
        c.reads_paused = false;
        c.errors = None;
        c.tally = Tally::default();
        c.moving = false;
        c.settled_until_ms = 0;
        c.followed = false;
        self.free.push(slot);
        self.open_count -= 1;
        debug_assert!(
            self.open_count > 0
                || (self.client_pending_bytes == 0 && self.client_reassembly_bytes == 0),
            "invariant: with no connection left the running sums are 0 (pending {}, reassembly {})",
            self.client_pending_bytes,
            self.client_reassembly_bytes
        );
    }

    /// Whether the connection in `slot` is one that may move to another worker: an open
    /// native client connection (no TLS, NATS or data-link role, no close decided), not in
    /// the middle of a large frame, registered with no subscription, watch or held frame
    /// (those name its place in tables of their own).
    pub fn may_move(&self, slot: u32) -> bool {
        let c = &self.conns[slot as usize];
        c.state == ConnState::Open
            && !c.close_requested
            && c.link.is_none()
            && c.nats.is_none()
            && c.tls.is_none()
            && c.large.is_none()
            && c.large_frame_bytes == 0
            && c.relay.movable()
    }

    /// Whether the connection in `slot` can leave this worker now: it may move
    /// ([`Self::may_move`]), and nothing of it is in the kernel's hands (no receive armed, no
    /// send in flight), with no partial send, zero-copy segment or run of the round's shared
    /// buffer queued and its reads not paused.
    pub fn can_move(&self, slot: u32) -> bool {
        let c = &self.conns[slot as usize];
        self.may_move(slot)
            && !c.recv_armed
            && !c.send_in_flight
            && c.unsent.is_none()
            && c.segments.is_empty()
            && c.run.is_none()
            && !c.reads_paused
    }

    /// Takes the connection in `slot` out to move it to another worker (see [`Self::can_move`],
    /// which must hold): its slot is freed, its socket is not closed.
    pub fn take_moved(&mut self, slot: u32, worker: u16, followed: bool) -> Box<MovedConn> {
        debug_assert!(self.can_move(slot));
        let c = &mut self.conns[slot as usize];
        let max_frame_bytes = c.decoder.max_frame_bytes();
        let moved = Box::new(MovedConn {
            fd: c.fd,
            from: (worker, slot, c.generation),
            relay: std::mem::take(&mut c.relay),
            decoder: std::mem::replace(&mut c.decoder, StreamDecoder::new(max_frame_bytes)),
            out: std::mem::take(&mut c.out),
            opened_ms: c.opened_ms,
            errors: c.errors.take(),
            backlog: c.backlog,
            followed,
        });
        // What the running sums count for it leaves with it: `release` subtracts what is
        // left (its spare buffer), so the taken parts are subtracted here.
        let taken = moved.out.len() + extra_capacity(moved.out.capacity());
        self.client_pending_bytes = self.client_pending_bytes.saturating_sub(taken);
        self.client_reassembly_bytes = self
            .client_reassembly_bytes
            .saturating_sub(moved.decoder.held_bytes() + moved.relay.held_bytes());
        self.release(slot);
        moved
    }

    /// Installs a connection another worker moved here, or gives it back at the connection
    /// limit. Returns its slot and generation.
    pub fn insert_moved(
        &mut self,
        mut moved: Box<MovedConn>,
        max_frame_bytes: usize,
        now_ms: u64,
        settle_ms: u64,
    ) -> Result<(u32, u32), Box<MovedConn>> {
        if self.open_count >= self.limit {
            return Err(moved);
        }
        let relay = std::mem::take(&mut moved.relay);
        let slot = self
            .insert(moved.fd, relay, max_frame_bytes)
            .expect("invariant: under the limit, insert takes a slot");
        let moved = *moved;
        let c = &mut self.conns[slot as usize];
        c.decoder = moved.decoder;
        c.out = moved.out;
        c.opened_ms = moved.opened_ms;
        c.errors = moved.errors;
        c.backlog = moved.backlog;
        c.settled_until_ms = now_ms + settle_ms;
        c.followed = moved.followed;
        let (pending, held) = (c.accounted_bytes(), c.reassembly_bytes());
        self.client_pending_bytes += pending;
        self.client_reassembly_bytes += held;
        Ok((slot, self.conns[slot as usize].generation))
    }

    /// Whether the connection at `slot` still has `generation` and accepts frames (open,
    /// no close requested): what a batch's [`super::deliver::Deliverer::origin_closing`]
    /// starts from and must keep equal to.
    #[inline]
    pub fn accepts_frames_of(&self, slot: u32, generation: u32) -> bool {
        self.conns
            .get(slot as usize)
            .is_some_and(|c| c.generation == generation && c.accepts_frames())
    }

    /// The connection at `slot` if it still has `generation` (else it was closed and reused).
    #[inline]
    pub fn get_live(&mut self, slot: u32, generation: u32) -> Option<&mut Conn> {
        match self.conns.get_mut(slot as usize) {
            Some(c) if c.generation == generation && c.state != ConnState::Free => Some(c),
            _ => None,
        }
    }
}

/// Test frames for this module's and `tls_conn`'s tests: `n` SEND frames of growing size
/// (the first `k` of `n` are always `send_frames(k)`), and the offset where each ends.
#[cfg(test)]
pub(super) fn send_frames(n: usize) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for i in 0..n {
        let payload = vec![1u8; 3 + i * 7];
        crate::protocol::Frame::Send {
            target: b"x",
            payload: &payload,
        }
        .encode(&mut out)
        .expect("a small SEND frame always encodes");
        ends.push(out.len());
    }
    (out, ends)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_slot_fits_the_state_the_memory_budget_counts() {
        // CONNECTION_STATE_BYTES counts the slot with room for its list entries and the
        // allocator's rounding: the slot itself must stay within half of it.
        let slot = std::mem::size_of::<Conn>();
        assert!(
            slot <= crate::memory_budget::CONNECTION_STATE_BYTES / 2,
            "Conn is {slot} bytes"
        );
    }

    #[test]
    fn the_fields_every_delivery_reads_come_first_in_a_slot() {
        use std::mem::{offset_of, size_of};
        let ends = [
            offset_of!(Conn, out) + size_of::<Vec<u8>>(),
            offset_of!(Conn, sending_bytes) + size_of::<usize>(),
            offset_of!(Conn, segments_bytes) + size_of::<usize>(),
            offset_of!(Conn, nats) + size_of::<Option<Box<NatsConn>>>(),
            offset_of!(Conn, tls) + size_of::<Option<Box<TlsConn>>>(),
            offset_of!(Conn, generation) + size_of::<u32>(),
            offset_of!(Conn, state) + size_of::<ConnState>(),
            offset_of!(Conn, close_requested) + size_of::<bool>(),
            offset_of!(Conn, dirty) + size_of::<bool>(),
            offset_of!(Conn, run) + size_of::<Option<Run>>(),
        ];
        assert!(ends.iter().all(|&end| end <= 80), "{ends:?}");
    }

    use super::send_frames as frames;

    /// A named change to a connection's state.
    type Making = (&'static str, fn(&mut Conn));

    /// A slab holding one open, registered plain client.
    fn one_registered() -> (Slab, u32) {
        let mut slab = Slab::new(1);
        let slot = slab
            .insert(-1, ConnRelay::registered_for_test(b"alice"), 1 << 20)
            .unwrap();
        (slab, slot)
    }

    #[test]
    fn only_a_registered_plain_client_may_move() {
        let (slab, slot) = one_registered();
        assert!(slab.may_move(slot), "a registered native client");
        let mut slab = Slab::new(1);
        let unregistered = slab.insert(-1, ConnRelay::default(), 1 << 20).unwrap();
        assert!(!slab.may_move(unregistered), "before its HELLO");
        let kinds: [Making; 5] = [
            ("a NATS client", |c| c.nats = Some(Box::default())),
            ("a data link", |c| {
                c.link = Some(LinkRole {
                    node: 1,
                    outbound: true,
                })
            }),
            ("a large frame under way", |c| {
                c.large_frame_bytes = 100 << 10
            }),
            ("a close requested", |c| c.close_requested = true),
            ("closing", |c| c.state = ConnState::Closing),
        ];
        for (what, make) in kinds {
            let (mut slab, slot) = one_registered();
            make(&mut slab.conns[slot as usize]);
            assert!(!slab.may_move(slot), "{what} may not move");
            assert!(!slab.can_move(slot), "{what} cannot move");
        }
    }

    #[test]
    fn a_movable_client_leaves_only_with_nothing_in_the_kernels_hands() {
        let (mut slab, slot) = one_registered();
        assert!(slab.can_move(slot));
        let busy: [Making; 4] = [
            ("a receive armed", |c| c.recv_armed = true),
            ("a send in flight", |c| c.send_in_flight = true),
            ("its reads paused", |c| c.reads_paused = true),
            ("a zero-copy segment queued", |c| {
                c.segments.push_back(Bytes::from_static(b"payload"))
            }),
        ];
        for (what, make) in busy {
            make(&mut slab.conns[slot as usize]);
            assert!(slab.may_move(slot), "{what}: still a client that may move");
            assert!(!slab.can_move(slot), "{what}: not now");
            (slab, _) = one_registered();
        }
    }

    #[test]
    fn out_growth_is_what_an_append_adds_to_the_capacity_counted() {
        let mut slab = Slab::new(1);
        let slot = slab.insert(-1, ConnRelay::default(), 1 << 20).unwrap();
        let c = &mut slab.conns[slot as usize];
        for len in [1, 100, 16 << 10, 40 << 10, 1 << 20, 3 << 20] {
            for _ in 0..3 {
                let before = extra_capacity(c.out.capacity());
                let predicted = c.out_growth(len);
                c.out.extend_from_slice(&vec![0; len]);
                assert_eq!(
                    extra_capacity(c.out.capacity()) - before,
                    predicted,
                    "{len} bytes onto {}",
                    c.out.len() - len
                );
            }
        }
    }

    #[test]
    fn out_growth_is_what_a_small_deliver_adds_at_every_spare_capacity() {
        // The small DELIVER's encoder writes over 64 appended bytes: it must not grow a
        // buffer that has room for the frame but not for those 64 (it leaves such a buffer
        // to the general encoder).
        use crate::protocol::{encode_deliver, frame_len_for_deliver, Message};
        let message = Message::plain(b"sender-id", b"", b"sixteen-byte-pay");
        let len = frame_len_for_deliver(&message);
        let capacity = 2 * SEND_BUFFER_RETAIN_BYTES;
        for spare in 0..=128 {
            let mut slab = Slab::new(1);
            let slot = slab.insert(-1, ConnRelay::default(), 1 << 20).unwrap();
            let c = &mut slab.conns[slot as usize];
            c.out = Vec::with_capacity(capacity);
            c.out.resize(capacity - spare, 7);
            let before = extra_capacity(c.out.capacity());
            let predicted = c.out_growth(len);
            encode_deliver(&mut c.out, &message);
            assert_eq!(
                extra_capacity(c.out.capacity()) - before,
                predicted,
                "{len} bytes onto {spare} spare"
            );
        }
    }

    fn outbound_link() -> Slab {
        let mut slab = Slab::new(1);
        let slot = slab.insert(-1, ConnRelay::default(), 1 << 20).unwrap();
        slab.conns[slot as usize].link = Some(LinkRole {
            node: 2,
            outbound: true,
        });
        slab
    }

    #[test]
    fn a_dying_link_counts_every_message_not_wholly_sent_whatever_the_partial_sends() {
        let (batch, ends) = frames(6);
        let (later, _) = frames(3);
        for cut in 0..=batch.len() {
            let mut slab = outbound_link();
            let c = &mut slab.conns[0];
            let mut outgoing = Outgoing::Plain {
                bytes: batch.clone(),
                offset: 0,
            };
            // Two partial sends ending at `cut`, then the rest waits; more frames queued.
            let first = cut / 2;
            c.consume_sent(&mut outgoing, first);
            c.consume_sent(&mut outgoing, cut - first);
            c.out = later.clone();
            let wholly_sent = ends.iter().filter(|&&e| e <= cut).count() as u64;
            let want = 6 - wholly_sent + 3;
            if cut < batch.len() {
                c.unsent = Some(outgoing);
                assert_eq!(c.queued_link_messages(None), want, "cut at {cut}");
            } else {
                assert_eq!(c.queued_link_messages(Some(&outgoing)), want);
            }
        }
    }

    #[test]
    fn a_failed_send_in_flight_counts_with_the_segments_and_out() {
        let (batch, _) = frames(4);
        let mut slab = outbound_link();
        let c = &mut slab.conns[0];
        let in_flight = Outgoing::Gathered(vec![
            Bytes::copy_from_slice(&batch[..10]),
            Bytes::copy_from_slice(&batch[10..]),
        ]);
        c.segments.push_back(Bytes::from(frames(2).0));
        c.out = frames(1).0;
        assert_eq!(c.queued_link_messages(Some(&in_flight)), 4 + 2 + 1);
        c.link = Some(LinkRole {
            node: 2,
            outbound: false,
        });
        assert_eq!(
            c.queued_link_messages(Some(&in_flight)),
            0,
            "inbound: nothing"
        );
    }

    #[test]
    fn busy_connections_keep_buffers_that_fit_their_sends_and_idle_ones_give_them_back() {
        let mut slab = Slab::new(1);
        let slot = slab.insert(-1, ConnRelay::default(), 1 << 20).unwrap();
        let c = &mut slab.conns[slot as usize];
        let round = 3 * SEND_BUFFER_RETAIN_BYTES;
        c.out.reserve(2 * round);
        c.spare.reserve(2 * round);
        let grown = c.out.capacity().min(c.spare.capacity());
        // Busy: sends of `round` bytes this tick, though nothing is queued at the tick.
        c.sent_peak_bytes = round;
        assert!(!c.shrink_send_buffers(), "buffers that fit the sends");
        assert!(c.out.capacity() >= grown && c.spare.capacity() >= grown);
        // A trickle after the burst: beyond twice its sends is given back.
        c.sent_peak_bytes = 100;
        c.out.push(0);
        assert!(c.shrink_send_buffers(), "the empty spare");
        assert!(
            c.out.capacity() >= grown,
            "a buffer holding bytes is left alone"
        );
        assert_eq!(extra_capacity(c.spare.capacity()), 0);
        c.out.clear();
        // No send this tick but one still in flight: busy, shrunk only past 2 x 16 KiB.
        c.send_in_flight = true;
        c.spare
            .reserve(SEND_BUFFER_RETAIN_BYTES + SEND_BUFFER_RETAIN_BYTES / 2);
        assert!(c.shrink_send_buffers(), "the grown out");
        assert!(
            extra_capacity(c.spare.capacity()) > 0,
            "below the busy threshold"
        );
        c.send_in_flight = false;
        // A whole tick without a send, nothing queued or in flight: all given back, once.
        assert!(c.shrink_send_buffers());
        assert_eq!(extra_capacity(c.out.capacity()), 0);
        assert_eq!(extra_capacity(c.spare.capacity()), 0);
        assert!(!c.shrink_send_buffers(), "nothing left to give back");
    }
}
