//! The worker's [`Sink`]: routed frames go into a local connection's send buffer (the one copy
//! of the payload) or into the handoff batch for the worker that owns the destination.

use super::congestion::{CongestionBoard, Standing};
use super::conn::{extra_capacity, Conn, Slab};
use super::handoff::{
    handoff_stall_at_bytes, run_frames, split_run, Outbox, TAG_CLOSE, TAG_FRAME, TAG_GROUP_FRAME,
    TAG_GROUP_SHARED, TAG_SHARED,
};
use super::link_backlog::{Backlogs, Refused};
use super::stats::{bump, kind_index, WorkerStats};
use crate::cluster::wire::{
    data_ack_len, data_publish_len, data_send_acked_len, data_send_len, encode_data_ack,
    encode_data_publish, encode_data_send, encode_data_send_acked,
};
use crate::core::drop_reports::DropReports;
use crate::core::error_ledger::{summary_text, ErrorVerdict};
use crate::core::flow::{Admit, Backlog, Congestion, FlowLimits, StallOn, WorkerRoom};
use crate::core::{AckSink, AckedDelivery, Location, Sink};
use crate::protocol::{
    decode, deliver_header_len, encode_deliver, encode_deliver_acked, encode_deliver_acked_header,
    encode_deliver_header, frame_len_for_deliver, frame_len_for_deliver_acked, AckFields,
    CloseReason, Decoded, ErrorCode, Frame, FrameKind, Message, MsgId, FLAG_ACKED, FLAG_HEADERS,
    FLAG_REPLY,
};
use bytes::Bytes;
use fast::FastCopy;

mod fast;

/// This worker's outbound data link to one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkOut {
    pub node: u16,
    pub slot: u32,
    pub generation: u32,
}

/// What became of a message forwarded to another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Forward {
    /// On the node's link, or in its backlog until the link is up.
    Queued,
    /// Dropped and counted: the link or its backlog is full.
    Dropped,
    /// No link and no room for another backlog: the sender should hear of it.
    NoRoute,
}

/// What a frame appended to a data link is: a forwarded message (counted, and it stalls or
/// marks the batch overloaded), or a drop report (best effort: neither).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LinkFrame {
    Message,
    Report,
}

/// A close decided while frames are being processed; carried out after the batch.
#[derive(Clone, Copy, Debug)]
pub struct PendingClose {
    pub slot: u32,
    pub generation: u32,
    pub reason: CloseReason,
    pub text: &'static str,
    /// The peer is gone (reset, EOF): skip the final CLOSE frame.
    pub peer_gone: bool,
}

/// The worker's bound (`pending_bytes_per_worker_max`) as the message at hand meets it: taken
/// before a connection is borrowed, so the native, handed-over and NATS paths ask it alike.
#[derive(Clone, Copy)]
pub(super) struct WorkerBound<'w> {
    limits: &'w FlowLimits,
    bytes_max: usize,
    /// What the worker's client queues hold now, buffers' capacity included.
    worker_bytes: usize,
    now_ms: u64,
}

impl WorkerBound<'_> {
    /// Whether `len` bytes may join a client queue holding `queue_bytes`, with backlog
    /// `backlog`, whose buffer they grow by `growth` ([`WorkerRoom`]: the last eighth of the
    /// bound is for queues that are not behind).
    #[inline]
    pub(super) fn admits(
        self,
        backlog: &Backlog,
        queue_bytes: usize,
        len: usize,
        growth: usize,
    ) -> bool {
        let room = WorkerRoom::of(self.bytes_max, self.worker_bytes, len + growth);
        room.admits(self.limits, queue_bytes, len, || {
            backlog.congestion(self.limits, self.now_ms)
        })
    }
}

/// The per-kind counter of DELIVER frames.
const DELIVER_KIND: usize = kind_index(FrameKind::Deliver);

pub struct Deliverer<'w> {
    pub slab: &'w mut Slab,
    pub dirty: &'w mut Vec<u32>,
    pub outboxes: &'w mut [Outbox],
    pub pending_closes: &'w mut Vec<PendingClose>,
    pub stats: &'w WorkerStats,
    pub worker: u16,
    pub origin_slot: u32,
    pub origin_generation: u32,
    /// The origin is not open, or its close was requested in this batch (only
    /// [`Self::mark_closing`] sets `close_requested` here, and a close the engine decides for
    /// the origin through `Sink::close` goes through it too): the frames after the current
    /// one are not decoded. A flag the decoding loops read per frame (through
    /// `Output::driven_closing`) instead of the origin's slot.
    pub origin_closing: bool,
    /// Flow control of client queues and of data links (see `core::flow`).
    pub client_flow: &'w FlowLimits,
    pub link_flow: &'w FlowLimits,
    /// Every worker's congestion board: whether a connection stalls its producers, and
    /// whether it is behind.
    pub boards: &'w [CongestionBoard],
    /// This worker's connections whose board word is set (cleared when their episode ends or
    /// they close; past the stall budget the word says only "behind").
    pub congested: &'w mut Vec<(u32, u32)>,
    /// A queue fed by this origin's messages is full: the origin's reads are to be paused
    /// until the given time at the latest (the first such queue of the batch). Carried out by
    /// the worker after the batch, for a connection that reads (not for handoff records).
    pub stall: Option<(StallOn, u64)>,
    /// Bound on the bytes queued to all of this worker's clients together.
    pub pending_bytes_per_worker_max: usize,
    pub handoff_bytes_max: usize,
    /// Interval of the ERROR coalescing (`error_interval_ms`).
    pub error_interval_ms: u64,
    /// A handoff bound was hit while routing this origin's frames.
    pub overloaded: bool,
    /// The payload of the frame being routed, when it was received into its own buffer: it
    /// is then queued by reference instead of copied (zero-copy path).
    pub shared_payload: Option<Bytes>,
    /// The DELIVER frame of the PUBLISH being fanned out, encoded once and copied to each
    /// local subscriber (kept by the worker, so its capacity is reused).
    pub fanout_frame: &'w mut Vec<u8>,
    /// Outbound data links of this worker, one per reachable node.
    pub links_out: &'w [LinkOut],
    /// Forwards to nodes whose link from this worker is not up yet.
    pub link_backlogs: &'w mut Backlogs,
    pub now_ms: u64,
    /// Where the engine's cluster events go (see `output.rs`).
    pub lane: &'w super::control_lane::ControlLane,
    pub epochs: &'w crate::core::EpochClock,
    /// Connections whose HELLO waits for the node to become ready (slot, generation).
    pub held_hellos: &'w mut Vec<(u32, u32)>,
    /// The lane takes cluster events only when clustered.
    pub clustered: bool,
    /// The embedding host's presence hook.
    pub presence: Option<&'w super::PresenceFn>,
    /// Where HELLOs that name a credentials entry are verified.
    pub verifier: &'w mut super::verifier::VerifiedSecrets,
}

impl<'w> Deliverer<'w> {
    /// The worker's bound as it stands now.
    #[inline]
    pub(super) fn worker_bound(&self) -> WorkerBound<'w> {
        WorkerBound {
            limits: self.client_flow,
            bytes_max: self.pending_bytes_per_worker_max,
            worker_bytes: self.slab.client_pending_bytes,
            now_ms: self.now_ms,
        }
    }
}

impl Deliverer<'_> {
    /// Appends `len` bytes written by `write` to a local connection's send buffer, enforcing
    /// the slow-consumer bound. Returns whether it was appended.
    #[inline]
    fn append_local(
        &mut self,
        slot: u32,
        generation: u32,
        len: usize,
        kind: FrameKind,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        self.append_local_writing(slot, generation, len, len, kind, write)
    }

    /// [`Self::append_local`] for a message of `len` bytes of which `write` puts `written_len`
    /// into the send buffer (the header of a zero-copy DELIVER, whose payload is sent from
    /// its own buffer): the bounds count `len`, the buffer's growth `written_len`.
    #[inline]
    fn append_local_writing(
        &mut self,
        slot: u32,
        generation: u32,
        len: usize,
        written_len: usize,
        kind: FrameKind,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let bound = self.worker_bound();
        let Some(conn) = self
            .slab
            .get_live(slot, generation)
            .filter(|c| c.accepts_frames())
        else {
            bump(&self.stats.stale_drops, 1);
            return false;
        };
        debug_assert!(conn.link.is_none(), "links are written by append_link");
        if kind == FrameKind::Error && !self.client_flow.takes_error(conn.pending_bytes(), len) {
            // A summary is checked by `flush_errors`, which counts the ERRORs it stands for.
            bump(&self.stats.error_drops, 1);
            return false;
        }
        let (pending, limits) = (conn.pending_bytes(), self.client_flow);
        if kind == FrameKind::Deliver {
            // Before `admit`, which would mark the queue for a message it may not get.
            let growth = conn.out_growth(written_len);
            if !bound.admits(&conn.backlog, pending, len, growth) {
                self.drop_worker_full();
                return false;
            }
        }
        let admit = if kind == FrameKind::Deliver {
            conn.backlog.admit(limits, pending, len, self.now_ms)
        } else {
            conn.backlog
                .admit_relay_frame(limits, pending, len, self.now_ms)
        };
        if admit != Admit::Queue && !self.admit_congested(slot, generation, kind, admit) {
            return false;
        }
        self.write_local(slot, kind, 1, write);
        true
    }

    /// Writes `frames` frames of `kind` (written by `write`) to the send buffer of the live
    /// local connection in `slot`, whose bounds the caller checked, and counts them.
    #[inline(always)]
    fn write_local(
        &mut self,
        slot: u32,
        kind: FrameKind,
        frames: u64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        // Live: checked by the caller, and nothing since released a slot.
        self.slab.settle_run(slot);
        let conn = &mut self.slab.conns[slot as usize];
        let (start, capacity) = (conn.out.len(), conn.out.capacity());
        conn.tls_reserve();
        write(&mut conn.out);
        // The bytes `out` grew by: `len`, plus a TLS record's header and the sealing of a full
        // record before it.
        let added = conn.out.len() - start;
        // A buffer that grew counts its capacity beyond the retained size.
        let grown = extra_capacity(conn.out.capacity()) - extra_capacity(capacity);
        bump(&self.stats.frames_out_by_kind[kind_index(kind)], frames);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
        self.slab.client_pending_bytes += added + grown;
        self.slab.round_out_bytes += added;
    }

    /// Carries out a verdict other than `Queue` for a local connection; returns whether the
    /// message is still queued.
    #[cold]
    #[inline(never)]
    pub(super) fn admit_congested(
        &mut self,
        slot: u32,
        generation: u32,
        kind: FrameKind,
        admit: Admit,
    ) -> bool {
        match admit {
            Admit::Queue => true,
            Admit::Stall { until_ms } => {
                self.congested_here(slot, generation, until_ms);
                true
            }
            Admit::Refuse => {
                self.refuse_at_ceiling(slot, generation, kind);
                false
            }
        }
    }

    /// A frame of `kind` would take the native connection in `slot` past its ceiling (twice
    /// `pending_bytes_max`, its memory bound). A DELIVER is dropped, counted, and its sender
    /// told OVERLOADED (the batch is marked overloaded); the consumer stays until it has been
    /// above `pending_bytes_max` for `slow_consumer_grace_ms`, so a consumer that was only
    /// descheduled loses messages its senders hear of, not its connection. A frame the relay
    /// produces (PING, PONG, PRESENCE, RECEIPT) gets the in-flight room past the ceiling
    /// (`FlowLimits::takes_relay_frame`); one that would pass even that cannot be dropped
    /// without leaving the client wrong about its state: the consumer is closed as slow. (An
    /// ERROR never gets here: it stops at `pending_bytes_max`, see `FlowLimits::takes_error`.)
    #[cold]
    #[inline(never)]
    pub(super) fn refuse_at_ceiling(&mut self, slot: u32, generation: u32, kind: FrameKind) {
        debug_assert_ne!(kind, FrameKind::Error, "ERRORs stop at pending_bytes_max");
        if kind == FrameKind::Deliver {
            bump(&self.stats.slow_consumer_drops, 1);
            self.overloaded = true;
            return;
        }
        self.close_slow_consumer(
            slot,
            generation,
            "slow consumer: a relay frame would take its queue past three times \
             pending_bytes_max",
        );
    }

    /// The local connection at (`slot`, `generation`) reached its high watermark: its
    /// producers stall until `until_ms` at the latest. This batch's origin is one; producers
    /// on other workers see it on this worker's board.
    fn congested_here(&mut self, slot: u32, generation: u32, until_ms: u64) {
        self.want_stall(
            StallOn::Queue {
                worker: self.worker,
                slot,
                generation,
            },
            until_ms,
        );
        let board = &self.boards[self.worker as usize];
        let was = board.standing(slot, generation);
        if !was.stalls {
            let stalls = Standing {
                stalls: true,
                ..was
            };
            board.set(slot, generation, stalls);
            if was == Standing::CLEAR {
                self.congested.push((slot, generation));
            }
        }
    }

    /// The origin of this batch is to stall on `on` until `until_ms` at the latest (the first
    /// queue it filled is the one it waits for).
    #[inline]
    fn want_stall(&mut self, on: StallOn, until_ms: u64) {
        if self.stall.is_none() {
            self.stall = Some((on, until_ms));
        }
    }

    /// After a handoff to `to`: the origin stalls when `to` stalls its producers (its board
    /// word) or the handoff queue to its worker reaches `handoff_stall_at_bytes`.
    #[inline]
    fn after_handoff(&mut self, to: Location) {
        let worker = to.worker as usize;
        if self.boards[worker].stalls(to.slot, to.generation) {
            let on = StallOn::Queue {
                worker: to.worker,
                slot: to.slot,
                generation: to.generation,
            };
            self.want_stall(on, self.now_ms + self.client_flow.stall_ms_max);
        } else if self.outboxes[worker].held_bytes()
            >= handoff_stall_at_bytes(self.handoff_bytes_max, self.client_flow.pending_bytes_max)
        {
            self.want_stall(
                StallOn::Handoff(to.worker),
                self.now_ms + self.client_flow.stall_ms_max,
            );
        }
    }

    /// Requests the close of the live connection at `slot` (nothing more is queued to it, nor
    /// decoded from it) and returns it; `None` when the slot holds another connection now.
    /// The one place a batch sets `close_requested`, so [`Self::origin_closing`] follows it.
    pub(super) fn mark_closing(&mut self, slot: u32, generation: u32) -> Option<&mut Conn> {
        let conn = self.slab.get_live(slot, generation)?;
        conn.close_requested = true;
        if (slot, generation) == (self.origin_slot, self.origin_generation) {
            self.origin_closing = true;
        }
        Some(conn)
    }

    /// The connection in `slot` is closed as a slow consumer (`text` says which bound) and
    /// the message dropped.
    #[cold]
    #[inline(never)]
    pub(super) fn close_slow_consumer(&mut self, slot: u32, generation: u32, text: &'static str) {
        self.mark_closing(slot, generation);
        bump(&self.stats.slow_consumer_closes, 1);
        bump(&self.stats.slow_consumer_drops, 1);
        self.pending_closes.push(PendingClose {
            slot,
            generation,
            reason: CloseReason::SLOW_CONSUMER,
            text,
            peer_gone: false,
        });
    }

    /// The worker's queues together are at `pending_bytes_per_worker_max` (or in its last
    /// eighth, and this message's queue is behind): this message is dropped and its sender told
    /// OVERLOADED; the consumers that hold the bytes meet their own bound if they do not drain.
    /// Control frames (that ERROR among them) are small and bounded per connection, so they
    /// still pass.
    #[cold]
    #[inline(never)]
    pub(super) fn drop_worker_full(&mut self) {
        bump(&self.stats.worker_pending_drops, 1);
        self.overloaded = true;
    }

    /// Queues a DELIVER whose payload is sent straight from `payload` (no copy): the header
    /// goes into `out`, which is sealed into a segment so stream order is kept.
    pub fn append_local_shared(
        &mut self,
        slot: u32,
        generation: u32,
        header_len: usize,
        header: impl FnOnce(&mut Vec<u8>),
        payload: Bytes,
    ) -> bool {
        let total = header_len + payload.len();
        if self.is_tls(slot, generation) {
            // Sealed with this connection's keys: the payload is copied behind the header,
            // the one copy it takes on a TLS connection; room for both at once, so the buffer
            // grows once, as the worker's bound counted.
            return self.append_local(slot, generation, total, FrameKind::Deliver, |out| {
                out.reserve(total);
                header(out);
                out.extend_from_slice(&payload);
            });
        }
        let deliver = FrameKind::Deliver;
        if !self.append_local_writing(slot, generation, total, header_len, deliver, header) {
            return false;
        }
        if let Some(conn) = self.slab.get_live(slot, generation) {
            let before = conn.accounted_bytes();
            // `out` holds at least the header just written, so the sealed segment is never
            // empty; an empty segment would make a zero-length send.
            let sealed = Bytes::from(std::mem::take(&mut conn.out));
            debug_assert!(!sealed.is_empty());
            // `append_local` counted header and payload in `client_pending_bytes`.
            conn.segments_bytes += sealed.len() + payload.len();
            conn.segments.push_back(sealed);
            if !payload.is_empty() {
                conn.segments.push_back(payload);
            }
            self.slab.repend(slot, before);
        }
        true
    }

    fn deliver_shared(
        &mut self,
        to: Location,
        message: &Message<'_>,
        group: &[u8],
        payload: Bytes,
    ) {
        let payload_len = payload.len();
        let header_len = deliver_header_len(message);
        self.deliver_shared_with(to, group, payload, header_len, |out| {
            encode_deliver_header(out, message, payload_len)
        });
    }

    /// Queues a DELIVER (plain or acknowledged: `header` writes it) whose payload goes out
    /// from the buffer it was received into, here or through the owner's handoff (with the
    /// queue `group` it was picked for, if any). Returns whether it was queued.
    fn deliver_shared_with(
        &mut self,
        to: Location,
        group: &[u8],
        payload: Bytes,
        header_len: usize,
        header: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let ok = if to.worker == self.worker {
            self.append_local_shared(to.slot, to.generation, header_len, header, payload)
        } else {
            let (tag, group_len) = match group.len() {
                0 => (TAG_SHARED, 0),
                n => (TAG_GROUP_SHARED, 1 + n),
            };
            let ok = self.outboxes[to.worker as usize].append_shared(
                self.handoff_bytes_max,
                tag,
                (to.slot, to.generation),
                payload,
                group_len + header_len,
                |out| {
                    if group_len > 0 {
                        out.push(group.len() as u8);
                        out.extend_from_slice(group);
                    }
                    header(out)
                },
            );
            self.handed(to, ok)
        };
        if ok {
            bump(&self.stats.deliveries, 1);
        }
        ok
    }

    /// Whether the local connection at (`slot`, `generation`) speaks TLS.
    #[inline]
    fn is_tls(&mut self, slot: u32, generation: u32) -> bool {
        self.slab
            .get_live(slot, generation)
            .is_some_and(|c| c.tls.is_some())
    }

    /// The payload of the frame being routed, when it was received into its own buffer.
    #[inline]
    fn shared(&self, payload: &[u8]) -> Option<Bytes> {
        let shared = self.shared_payload.as_ref()?;
        (shared.as_ptr() == payload.as_ptr() && shared.len() == payload.len())
            .then(|| shared.clone())
    }

    /// Whether the local connection at (`slot`, `generation`) must not receive `frame` (an
    /// encoded frame, or its head): an acknowledged DELIVER or a RECEIPT for a connection that
    /// speaks protocol version 1. Such a frame is dropped and counted.
    pub fn refuses_acked(&mut self, slot: u32, generation: u32, frame: &[u8]) -> bool {
        let acked = match (frame.get(4), frame.get(5)) {
            (Some(&kind), Some(&flags)) if kind == FrameKind::Deliver as u8 => {
                flags & FLAG_ACKED != 0
            }
            (Some(&kind), _) => kind == FrameKind::Receipt as u8,
            _ => false,
        };
        if !acked || self.conn_acks(slot, generation) != Some(false) {
            return false;
        }
        bump(&self.stats.acked_to_version_1_drops, 1);
        true
    }

    /// Whether the live connection at (`slot`, `generation`) speaks acknowledged delivery
    /// (`None`: it is gone). A NATS connection does not.
    fn conn_acks(&mut self, slot: u32, generation: u32) -> Option<bool> {
        let conn = self.slab.get_live(slot, generation)?;
        Some(conn.nats.is_none() && conn.relay.acks())
    }

    /// Whether the live native connection at (`slot`, `generation`) takes version 3's DELIVER
    /// with a reply topic and headers.
    fn conn_extended(&mut self, slot: u32, generation: u32) -> bool {
        self.slab
            .get_live(slot, generation)
            .is_some_and(|c| c.relay.extended())
    }

    /// Appends a record for the worker that owns `to`; past `handoff_bytes_max` the message is
    /// dropped, counted, and the sender is told OVERLOADED once per receive.
    fn hand_over(
        &mut self,
        to: Location,
        tag: u8,
        body_len: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let outbox = &mut self.outboxes[to.worker as usize];
        let ok = outbox.append(
            self.handoff_bytes_max,
            tag,
            to.slot,
            to.generation,
            body_len,
            write,
        );
        self.handed(to, ok)
    }

    /// Appends a control frame (WELCOME, PONG, PING, ERROR, PRESENCE) to a local connection.
    /// A native connection's ERRORs are coalesced (see `core::error_ledger`), and the counts
    /// it is owed are sent before a PONG.
    pub fn push_frame_local(&mut self, slot: u32, generation: u32, frame: &Frame<'_>) {
        if self.is_nats(slot, generation) {
            return self.push_frame_nats(slot, generation, frame);
        }
        match frame {
            Frame::Error {
                code,
                subject,
                text,
            } if !self.admit_error(slot, generation, *code, subject, text) => return,
            Frame::Pong { .. } => self.flush_errors(slot, generation, true),
            _ => {}
        }
        self.append_control(slot, generation, frame);
    }

    /// Whether an ERROR to a native connection is sent now (else it was counted for a later
    /// summary, or dropped at the ledger's bound).
    fn admit_error(
        &mut self,
        slot: u32,
        generation: u32,
        code: ErrorCode,
        subject: &[u8],
        text: &[u8],
    ) -> bool {
        let now_ms = self.now_ms;
        let Some(conn) = self.slab.get_live(slot, generation) else {
            return false;
        };
        let ledger = conn.errors.get_or_insert_with(Default::default);
        match ledger.admit(code, subject, text, now_ms) {
            ErrorVerdict::Send => true,
            ErrorVerdict::Coalesced => {
                bump(&self.stats.errors_coalesced, 1);
                false
            }
            ErrorVerdict::Dropped => {
                bump(&self.stats.error_drops, 1);
                false
            }
        }
    }

    /// Sends the summaries a native connection is owed: those whose interval ended, or all of
    /// them (`all`, before a PONG). Gives the ledger back once it is empty.
    pub fn flush_errors(&mut self, slot: u32, generation: u32, all: bool) {
        let (now_ms, interval_ms) = (self.now_ms, self.error_interval_ms);
        let Some(mut ledger) = self
            .slab
            .get_live(slot, generation)
            .and_then(|c| c.errors.take())
        else {
            return;
        };
        let mut text = Vec::new();
        let empty = ledger.flush(now_ms, interval_ms, all, |summary| {
            summary_text(&mut text, summary.text, summary.repeats);
            let frame = Frame::Error {
                code: summary.code,
                subject: summary.subject,
                text: &text,
            };
            // Dropped here (as `append_local` would drop it), it stands for `repeats` ERRORs.
            let len = frame.encoded_len();
            match self
                .slab
                .get_live(slot, generation)
                .filter(|c| c.accepts_frames())
            {
                None => bump(&self.stats.stale_drops, summary.repeats),
                Some(c) if !self.client_flow.takes_error(c.pending_bytes(), len) => {
                    bump(&self.stats.error_drops, summary.repeats)
                }
                Some(_) => self.append_control(slot, generation, &frame),
            }
        });
        if let Some(c) = self.slab.get_live(slot, generation).filter(|_| !empty) {
            c.errors = Some(ledger);
        }
    }

    /// Appends a control frame to a native connection, past the ERROR ledger.
    fn append_control(&mut self, slot: u32, generation: u32, frame: &Frame<'_>) {
        let len = frame.encoded_len();
        self.append_local(slot, generation, len, frame.kind(), |out| {
            // Control frames are built from validated fields; an encode error would be a bug
            // and is dropped rather than corrupting the stream.
            let ok = frame.encode(out).is_ok();
            debug_assert!(ok, "control frame failed to encode: {frame:?}");
        });
    }

    /// Appends an already encoded frame handed over by another worker (`group`: the queue
    /// group a DELIVER was picked for, empty otherwise).
    pub fn append_frame_bytes(&mut self, slot: u32, generation: u32, group: &[u8], frame: &[u8]) {
        if self.refuses_acked(slot, generation, frame) {
            return;
        }
        if frame.get(4) == Some(&(FrameKind::Error as u8)) {
            return self.append_error_bytes(slot, generation, frame);
        }
        if self.is_nats(slot, generation) {
            return self.append_frame_bytes_nats(slot, generation, group, frame);
        }
        let extended = frame.get(4) == Some(&(FrameKind::Deliver as u8))
            && frame
                .get(5)
                .is_some_and(|&f| f & (FLAG_REPLY | FLAG_HEADERS) != 0);
        if extended && !self.conn_extended(slot, generation) {
            return self.append_stripped(slot, generation, frame);
        }
        // Handed-over frames were encoded by this process: the kind byte is valid.
        let kind = frame
            .get(4)
            .and_then(|&b| FrameKind::from_u8(b))
            .unwrap_or(FrameKind::Deliver);
        self.append_local(slot, generation, frame.len(), kind, |out| {
            out.extend_from_slice(frame)
        });
    }

    /// A run of plain DELIVERs handed over by another worker (see `TAG_DELIVERS`). A native
    /// connection whose queue stays below its high watermark with the whole run takes it with
    /// one copy; otherwise (a NATS connection, a queue the run would congest, a run the
    /// worker's bound refuses, a connection gone) each frame gets the verdict it would get
    /// alone.
    /// A frame a bound dropped is noted in `reports` for its sender.
    pub fn append_delivers(
        &mut self,
        slot: u32,
        generation: u32,
        body: &[u8],
        reports: &mut DropReports,
    ) {
        let (count, frames) = split_run(body);
        if !self.append_run(slot, generation, count, frames) {
            for frame in run_frames(frames) {
                self.append_frame_bytes(slot, generation, b"", frame);
                self.note_if_dropped(slot, frame, reports);
            }
        }
    }

    /// A fan-out record another worker handed over: its DELIVER `frame` for each of
    /// `destinations` here. A plain DELIVER takes the round's shared buffer as a local
    /// fan-out's does ([`FastCopy`], counted here: the sending worker counted the
    /// deliveries); any other frame, or a subscriber the fast copy declines, the full path.
    pub fn append_fanout_record(
        &mut self,
        frame: &[u8],
        destinations: impl Iterator<Item = (u32, u32)>,
        reports: &mut DropReports,
    ) {
        let plain = frame.get(4) == Some(&(FrameKind::Deliver as u8)) && frame.get(5) == Some(&0);
        let (mut shared_at, mut unhindered) = (None, 0);
        let fast = FastCopy::new(self, frame.len());
        for (slot, generation) in destinations {
            let write = |out: &mut Vec<u8>| out.extend_from_slice(frame);
            if plain
                && fast.take(
                    self.slab,
                    self.dirty,
                    (slot, generation),
                    &mut shared_at,
                    write,
                )
            {
                unhindered += 1;
                continue;
            }
            self.append_frame_bytes(slot, generation, b"", frame);
            self.note_if_dropped(slot, frame, reports);
        }
        if unhindered > 0 {
            bump(&self.stats.frames_out_by_kind[DELIVER_KIND], unhindered);
        }
    }

    /// The one-copy case of [`Self::append_delivers`]; returns false, writing nothing, when
    /// the run must go frame by frame.
    #[inline]
    fn append_run(&mut self, slot: u32, generation: u32, count: u32, frames: &[u8]) -> bool {
        let (stall_at_bytes, bound) = (self.client_flow.stall_at_bytes, self.worker_bound());
        let fits = self.slab.get_live(slot, generation).is_some_and(|c| {
            let (queue_bytes, len) = (c.pending_bytes(), frames.len());
            c.accepts_frames()
                && c.nats.is_none()
                && queue_bytes + len < stall_at_bytes
                && bound.admits(&c.backlog, queue_bytes, len, c.out_growth(len))
        });
        if fits {
            debug_assert!(self.slab.conns[slot as usize].link.is_none());
            self.write_local(slot, FrameKind::Deliver, u64::from(count), |out| {
                out.extend_from_slice(frames)
            });
        }
        fits
    }

    /// An ERROR another worker handed over (a drop report): coalesced by the connection's
    /// error ledger, as one produced here. A NATS connection cannot be told (NATS has no such
    /// error): counted unreported, as one drop (the report does not carry its count).
    #[cold]
    #[inline(never)]
    fn append_error_bytes(&mut self, slot: u32, generation: u32, frame: &[u8]) {
        if self.is_nats(slot, generation) {
            bump(&self.stats.drops_unreported, 1);
            return;
        }
        match decode(frame, usize::MAX) {
            Ok(Decoded::Frame { frame, .. }) => self.push_frame_local(slot, generation, &frame),
            // Handed-over frames were encoded by this process.
            _ => debug_assert!(false, "a handed-over ERROR does not decode"),
        }
    }

    /// A version-3 DELIVER handed over for a connection of an older version: it goes without
    /// its reply topic and headers.
    #[cold]
    #[inline(never)]
    fn append_stripped(&mut self, slot: u32, generation: u32, frame: &[u8]) {
        let Ok(Decoded::Frame { frame, .. }) = decode(frame, usize::MAX) else {
            // Handed-over frames were encoded by this process.
            debug_assert!(false, "a handed-over DELIVER does not decode");
            return;
        };
        let Some(message) = frame.message() else {
            debug_assert!(false, "a handed-over DELIVER is not one");
            return;
        };
        let message = message.without_extensions();
        self.append_local(
            slot,
            generation,
            frame_len_for_deliver(&message),
            FrameKind::Deliver,
            |out| encode_deliver(out, &message),
        );
    }

    /// Appends an encoded data-link frame to this worker's link to `node`, or to the node's
    /// backlog while it has no link or its link is closing (see `link_backlog.rs`). From a
    /// quarter of `link_pending_bytes_max` (at most 2 MiB) the sender stalls; past it the
    /// message is dropped and counted (a link is never closed for being slow: the control
    /// lane decides whether the peer is alive).
    #[inline]
    fn append_link(&mut self, node: u16, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> Forward {
        self.append_link_frame(node, len, LinkFrame::Message, write)
    }

    /// [`Self::append_link`] for a message or a report (see [`LinkFrame`]).
    #[inline]
    pub(super) fn append_link_frame(
        &mut self,
        node: u16,
        len: usize,
        frame: LinkFrame,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Forward {
        let Some(link) = self.links_out.iter().find(|l| l.node == node).copied() else {
            return self.append_backlog(node, len, frame, write);
        };
        let Some(conn) = self
            .slab
            .get_live(link.slot, link.generation)
            .filter(|c| c.accepts_frames())
        else {
            // The link is closing: the forward waits for the next one, as before the first.
            return self.append_backlog(node, len, frame, write);
        };
        let admit = conn
            .backlog
            .admit(self.link_flow, conn.pending_bytes(), len, self.now_ms);
        if admit == Admit::Refuse {
            if frame == LinkFrame::Message {
                bump(&self.stats.forward_link_full_drops, 1);
                self.overloaded = true;
            }
            return Forward::Dropped;
        }
        conn.tls_reserve();
        let start = conn.out.len();
        write(&mut conn.out);
        let written = conn.out.len() - start;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(link.slot);
        }
        self.slab.round_out_bytes += written;
        if frame == LinkFrame::Report {
            return Forward::Queued;
        }
        bump(&self.stats.forwarded_out, 1);
        if let Admit::Stall { until_ms } = admit {
            // A link stalls this worker's producers only: no board word.
            let on = StallOn::Queue {
                worker: self.worker,
                slot: link.slot,
                generation: link.generation,
            };
            self.want_stall(on, until_ms);
        }
        Forward::Queued
    }

    #[cold]
    #[inline(never)]
    fn append_backlog(
        &mut self,
        node: u16,
        len: usize,
        frame: LinkFrame,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Forward {
        let bytes_max = self.link_flow.ceiling_bytes;
        match self
            .link_backlogs
            .append(node, self.now_ms, len, bytes_max, write)
        {
            Ok(()) if frame == LinkFrame::Report => Forward::Queued,
            Ok(()) => {
                bump(&self.stats.forwarded_out, 1);
                if self.link_backlogs.bytes_of(node) >= self.link_flow.stall_at_bytes {
                    let until_ms = self.now_ms + self.link_flow.stall_ms_max;
                    self.want_stall(StallOn::Backlog(node), until_ms);
                }
                Forward::Queued
            }
            Err(_) if frame == LinkFrame::Report => Forward::Dropped,
            Err(Refused::Full) => {
                bump(&self.stats.forward_link_full_drops, 1);
                self.overloaded = true;
                Forward::Dropped
            }
            Err(Refused::TooManyNodes) => {
                bump(&self.stats.forward_drops, 1);
                Forward::NoRoute
            }
        }
    }

    /// Hands a frame the relay produced to the worker of `to`; returns whether the handoff
    /// took it.
    pub(super) fn push_frame_remote(&mut self, to: Location, frame: &Frame<'_>) -> bool {
        self.hand_over(to, TAG_FRAME, frame.encoded_len(), |out| {
            let ok = frame.encode(out).is_ok();
            debug_assert!(ok);
        })
    }
}

impl Deliverer<'_> {
    /// A DELIVER of `message` to `to`, here or through its worker's handoff; `group` is the
    /// queue group it was picked for (empty: a plain delivery), which only a NATS connection
    /// uses.
    #[inline]
    fn deliver_in(&mut self, to: Location, message: &Message<'_>, group: &[u8]) {
        let here = to.worker == self.worker;
        // Out of line (measured: inlining the NATS writer here slowed both paths).
        if message.is_extended() || (here && self.is_nats(to.slot, to.generation)) {
            return self.deliver_in_its_protocol(to, message, group);
        }
        if let Some(shared) = self.shared(message.payload) {
            return self.deliver_shared(to, message, group, shared);
        }
        let ok = if here {
            let len = frame_len_for_deliver(message);
            let write = |out: &mut Vec<u8>| encode_deliver(out, message);
            self.write_unhindered((to.slot, to.generation), len, write)
                || self.append_local_deliver(to, message, len)
        } else if group.is_empty() {
            self.hand_over_plain(to, message)
        } else {
            self.hand_over_deliver(to, message, group)
        };
        if ok {
            bump(&self.stats.deliveries, 1);
        }
    }

    /// The full path of a plain DELIVER to a local connection (see [`Self::write_unhindered`]).
    #[inline(never)]
    fn append_local_deliver(&mut self, to: Location, message: &Message<'_>, len: usize) -> bool {
        self.append_local(to.slot, to.generation, len, FrameKind::Deliver, |out| {
            encode_deliver(out, message)
        })
    }

    /// Hands a plain DELIVER (no acknowledgement, reply topic or headers) to another worker,
    /// in a run with the ones before it for the same connection (see `TAG_DELIVERS`).
    #[inline]
    fn hand_over_plain(&mut self, to: Location, message: &Message<'_>) -> bool {
        debug_assert!(!message.is_extended());
        let len = frame_len_for_deliver(message);
        let outbox = &mut self.outboxes[to.worker as usize];
        let ok = outbox.append_deliver(
            self.handoff_bytes_max,
            (to.slot, to.generation),
            len,
            |out| encode_deliver(out, message),
        );
        self.handed(to, ok)
    }

    /// After an append to another worker's outbox: when it took the message, the origin may
    /// have to stall on `to`; when not, the message is dropped, counted, and the sender told
    /// OVERLOADED. Returns `ok`.
    #[inline]
    fn handed(&mut self, to: Location, ok: bool) -> bool {
        if ok {
            self.after_handoff(to);
        } else {
            bump(&self.stats.handoff_drops, 1);
            self.overloaded = true;
        }
        ok
    }

    /// Appends an encoded DELIVER (a plain message's, see `deliver_each`) to the native local
    /// connection at `to`.
    #[inline]
    fn deliver_copy(&mut self, to: Location, frame: &[u8]) {
        let ok = self.append_local(
            to.slot,
            to.generation,
            frame.len(),
            FrameKind::Deliver,
            |out| out.extend_from_slice(frame),
        );
        if ok {
            bump(&self.stats.deliveries, 1);
        }
    }

    /// Adds `to` to the fan-out record of `message` for its worker (opening it with the
    /// DELIVER frame for the first subscriber there).
    #[inline]
    fn fan_out(&mut self, to: Location, message: &Message<'_>) {
        let len = frame_len_for_deliver(message);
        let ok = self.outboxes[to.worker as usize].append_fanout(
            self.handoff_bytes_max,
            (to.slot, to.generation),
            len,
            |out| encode_deliver(out, message),
        );
        if self.handed(to, ok) {
            bump(&self.stats.deliveries, 1);
        }
    }

    /// Hands the DELIVER of `message` to the worker that owns `to` (with the queue `group` it
    /// was picked for, if any).
    #[inline]
    fn hand_over_deliver(&mut self, to: Location, message: &Message<'_>, group: &[u8]) -> bool {
        let len = frame_len_for_deliver(message);
        if group.is_empty() {
            self.hand_over(to, TAG_FRAME, len, |out| encode_deliver(out, message))
        } else {
            self.hand_over(to, TAG_GROUP_FRAME, 1 + group.len() + len, |out| {
                out.push(group.len() as u8);
                out.extend_from_slice(group);
                encode_deliver(out, message)
            })
        }
    }

    /// A message that not every destination writes alike: to a local NATS connection (MSG or
    /// HMSG), or with a reply topic or headers (a version-3 DELIVER, without them for an older
    /// connection). Another worker's connection is handed the whole version-3 DELIVER, and
    /// its worker writes it so (see [`Self::append_frame_bytes`]). Copied, never zero-copy.
    #[cold]
    #[inline(never)]
    fn deliver_in_its_protocol(&mut self, to: Location, message: &Message<'_>, group: &[u8]) {
        let ok = if to.worker != self.worker {
            self.hand_over_deliver(to, message, group)
        } else if self.is_nats(to.slot, to.generation) {
            self.deliver_nats(to.slot, to.generation, message, group)
        } else {
            let message = if self.conn_extended(to.slot, to.generation) {
                *message
            } else {
                message.without_extensions()
            };
            let len = frame_len_for_deliver(&message);
            self.append_local(to.slot, to.generation, len, FrameKind::Deliver, |out| {
                encode_deliver(out, &message)
            })
        };
        if ok {
            bump(&self.stats.deliveries, 1);
        }
    }
}

impl Sink for Deliverer<'_> {
    #[inline]
    fn deliver(&mut self, to: Location, message: &Message<'_>) {
        self.deliver_in(to, message, b"");
    }

    #[inline]
    fn deliver_group(&mut self, to: Location, message: &Message<'_>, group: &[u8]) {
        self.deliver_in(to, message, group);
    }

    /// A PUBLISH's plain subscribers: those on another worker share one fan-out record per
    /// worker (the payload crosses once per worker, not once per subscriber), unless the
    /// payload goes out by reference anyway (zero-copy).
    fn deliver_each(
        &mut self,
        to: &[Location],
        skip: Option<Location>,
        message: &Message<'_>,
    ) -> usize {
        let by_reference = self.shared(message.payload).is_some();
        // Native local subscribers of a plain message all get the same DELIVER: encoded once.
        let mut frame = std::mem::take(self.fanout_frame);
        frame.clear();
        let copies = !by_reference && !message.is_extended();
        let frame_len = if copies {
            frame_len_for_deliver(message)
        } else {
            0
        };
        let (mut delivered, mut fanned_out, mut unhindered) = (0, false, 0);
        let mut shared_at = None;
        let mut rest = to;
        loop {
            if copies {
                let (through, copied) =
                    self.copy_unhindered_from(rest, skip, frame_len, &mut shared_at, message);
                rest = &rest[through..];
                delivered += copied;
                unhindered += copied;
            }
            // The next one, if any, is one the fast copy did not take.
            let Some((&to, after)) = rest.split_first() else {
                break;
            };
            rest = after;
            if Some(to) == skip {
                continue;
            }
            delivered += 1;
            if to.worker != self.worker && !by_reference {
                fanned_out = true;
                self.fan_out(to, message);
            } else if copies && !self.is_nats(to.slot, to.generation) {
                if frame.is_empty() {
                    encode_deliver(&mut frame, message);
                }
                self.deliver_copy(to, &frame);
            } else {
                self.deliver_in(to, message, b"");
            }
        }
        *self.fanout_frame = frame;
        if unhindered > 0 {
            bump(
                &self.stats.frames_out_by_kind[DELIVER_KIND],
                unhindered as u64,
            );
            bump(&self.stats.deliveries, unhindered as u64);
        }
        if fanned_out {
            self.outboxes.iter_mut().for_each(Outbox::end_fanout);
        }
        delivered
    }

    /// A connection here is judged by its backlog (see `Backlog::congestion`); one on
    /// another worker by its worker's board, which that worker updates each loop iteration:
    /// `Over` while marked over, `Behind` while marked behind, else `Stalling` while it stalls
    /// producers, else `Clear`.
    #[inline]
    fn congestion(&self, to: Location) -> Congestion {
        if to.worker != self.worker {
            return self
                .boards
                .get(to.worker as usize)
                .map_or(Congestion::Clear, |b| {
                    b.standing(to.slot, to.generation).congestion()
                });
        }
        match self.slab.conns.get(to.slot as usize) {
            Some(c) if c.generation == to.generation => {
                c.backlog.congestion(self.client_flow, self.now_ms)
            }
            _ => Congestion::Clear,
        }
    }

    fn presence(&mut self, to: Location, client_id: &[u8], online: bool) {
        let frame = Frame::Presence { client_id, online };
        if to.worker == self.worker {
            self.push_frame_local(to.slot, to.generation, &frame);
        } else {
            // Dropped (and counted) with the handoff full.
            let _ = self.push_frame_remote(to, &frame);
        }
    }

    fn close(&mut self, to: Location, reason: CloseReason, text: &'static str) {
        if to.worker == self.worker {
            if (to.slot, to.generation) == (self.origin_slot, self.origin_generation) {
                // Nothing after the frame that decided it is decoded (another connection
                // closed this way still gets what this batch queues to it before its CLOSE).
                self.mark_closing(to.slot, to.generation);
            }
            self.pending_closes.push(PendingClose {
                slot: to.slot,
                generation: to.generation,
                reason,
                text,
                peer_gone: false,
            });
            return;
        }
        let ok = self.outboxes[to.worker as usize].append(
            usize::MAX,
            TAG_CLOSE,
            to.slot,
            to.generation,
            2,
            |out| out.extend_from_slice(&reason.0.to_le_bytes()),
        );
        debug_assert!(ok, "close records are never bounded");
    }

    #[inline]
    fn forward_send(&mut self, node: u16, target: &[u8], message: &Message<'_>) {
        let len = data_send_len(target, message);
        let forward = self.append_link(node, len, |out| encode_data_send(out, target, message));
        if forward == Forward::NoRoute {
            self.error_to_origin(ErrorCode::UNREACHABLE, target, "node unreachable");
        }
    }

    #[inline]
    fn forward_publish(&mut self, node: u16, message: &Message<'_>, group: &[u8], no_echo: bool) {
        let len = data_publish_len(message, group);
        let _ = self.append_link(node, len, |out| {
            encode_data_publish(out, message, group, no_echo)
        });
    }

    fn error_to_origin(&mut self, code: ErrorCode, subject: &[u8], text: &'static str) {
        let frame = Frame::Error {
            code,
            subject,
            text: text.as_bytes(),
        };
        self.push_frame_local(self.origin_slot, self.origin_generation, &frame);
    }
}

impl AckSink for Deliverer<'_> {
    fn deliver_acked(
        &mut self,
        to: Location,
        sender: &[u8],
        id: MsgId,
        payload: &[u8],
    ) -> AckedDelivery {
        let here = to.worker == self.worker;
        if here && self.conn_acks(to.slot, to.generation) == Some(false) {
            bump(&self.stats.acked_to_version_1_drops, 1);
            return AckedDelivery::Unsupported;
        }
        let header_len = frame_len_for_deliver_acked(sender, 0);
        // A drop here is answered by the caller with an ERROR naming the message: the plain
        // OVERLOADED of the receive is not for it.
        let overloaded = self.overloaded;
        let ok = if let Some(shared) = self.shared(payload) {
            let payload_len = shared.len();
            self.deliver_shared_with(to, b"", shared, header_len, |out| {
                encode_deliver_acked_header(out, sender, id, payload_len)
            })
        } else {
            let len = header_len + payload.len();
            let write = |out: &mut Vec<u8>| encode_deliver_acked(out, sender, id, payload);
            let ok = if here {
                self.append_local(to.slot, to.generation, len, FrameKind::Deliver, write)
            } else {
                self.hand_over(to, TAG_FRAME, len, write)
            };
            if ok {
                bump(&self.stats.deliveries, 1);
            }
            ok
        };
        if ok {
            AckedDelivery::Queued
        } else {
            self.overloaded = overloaded;
            AckedDelivery::Dropped
        }
    }

    fn receipt(&mut self, to: Location, from: &[u8], gap: bool, ack: &AckFields<'_>) {
        let frame = Frame::Receipt {
            from,
            gap,
            ack: *ack,
        };
        if to.worker != self.worker {
            // Dropped (and counted) with the handoff full; the sender's timer covers it.
            let _ = self.push_frame_remote(to, &frame);
            return;
        }
        if self.conn_acks(to.slot, to.generation) == Some(false) {
            bump(&self.stats.acked_to_version_1_drops, 1);
            return;
        }
        self.push_frame_local(to.slot, to.generation, &frame);
    }

    fn error_to_origin_acked(
        &mut self,
        code: ErrorCode,
        subject: &[u8],
        id: MsgId,
        text: &'static str,
    ) {
        let frame = Frame::ErrorAcked {
            code,
            subject,
            id,
            text: text.as_bytes(),
        };
        self.push_frame_local(self.origin_slot, self.origin_generation, &frame);
    }

    fn forward_send_acked(
        &mut self,
        node: u16,
        sender: &[u8],
        target: &[u8],
        id: MsgId,
        payload: &[u8],
    ) {
        let len = data_send_acked_len(sender, target, payload);
        // A drop is answered below with an ERROR naming the message, not the receive's
        // plain OVERLOADED.
        let overloaded = self.overloaded;
        let forward = self.append_link(node, len, |out| {
            encode_data_send_acked(out, sender, target, id, payload)
        });
        self.overloaded = overloaded;
        match forward {
            Forward::Queued => {}
            Forward::Dropped => self.error_to_origin_acked(
                ErrorCode::OVERLOADED,
                target,
                id,
                "dropped at a relay bound",
            ),
            Forward::NoRoute => {
                self.error_to_origin_acked(ErrorCode::UNREACHABLE, target, id, "node unreachable")
            }
        }
    }

    fn forward_ack(&mut self, node: u16, from: &[u8], to: &[u8], gap: bool, ack: &AckFields<'_>) {
        let len = data_ack_len(from, to, ack);
        let _ = self.append_link(node, len, |out| encode_data_ack(out, from, to, gap, ack));
    }
}

#[cfg(test)]
mod tests;
