//! Ingress: received bytes to frames to the engine. One reassembly ([`StreamDecoder`]) serves
//! client connections and data links alike; client frames in the zero-copy band are diverted
//! into a buffer of their own and received there (see `zero_copy_threshold_bytes`).
//!
//! A child module of `worker`, so it shares the worker's private state.

use super::super::deliver::Deliverer;
use super::super::reassemble::{reassemble, Reassembled};
use super::super::stats::{bump, kind_index};
use super::Worker;
use crate::cluster::wire::{decode_data, DataFrame, DecodedData, LinkDecodeError};
use crate::core::session::Phase;
use crate::core::{ConnRelay, Engine, Guards, Location, Output, SendMemo};
use crate::protocol::{
    decode, plain_publish, plain_send, CloseReason, DecodeError, Decoded, FrameKind, StreamDecoder,
    HELLO_FRAME_BYTES_MAX,
};
use bytes::BytesMut;
use std::ops::RangeInclusive;
use std::sync::Arc;

/// Link frames carry a client frame's payload plus ids and topic: this much room on top of
/// `max_frame_bytes`.
pub use crate::memory_budget::LINK_FRAME_OVERHEAD_MAX;

/// The per-kind counters of SEND and PUBLISH frames (the message lanes).
const SEND_KIND: usize = kind_index(FrameKind::Send);
const PUBLISH_KIND: usize = kind_index(FrameKind::Publish);

impl Worker {
    pub(super) fn location(&self, slot: u32, generation: u32) -> Location {
        Location {
            node: self.shared.node_id,
            worker: self.index,
            slot,
            generation,
        }
    }

    /// Runs `apply` on a client connection with its relay state moved out (so the sink can
    /// borrow the slab), epoch guards and the sink for one receive; afterwards closes on a
    /// decode error, tells the sender OVERLOADED once if messages were dropped, and pauses its
    /// reads if a queue it fed is full.
    fn with_client_batch(
        &mut self,
        slot: u32,
        apply: impl FnOnce(
            Engine<'_>,
            &mut ConnRelay,
            &Guards<'_>,
            &mut Vec<Location>,
            &mut Deliverer<'_>,
        ) -> Option<DecodeError>,
    ) {
        let shared = Arc::clone(&self.shared);
        let engine = Engine::new(&shared.tables, &shared.engine);
        let generation = self.slab.conns[slot as usize].generation;
        let at = self.location(slot, generation);
        let mut relay = std::mem::take(&mut self.slab.conns[slot as usize].relay);
        engine.on_receive(&mut relay, self.now_ms);
        let mut scratch = std::mem::take(&mut self.scratch_locations);
        let guards = shared.tables.guards();
        let mut sink = self.deliverer(slot, generation);
        if let Some(e) = apply(engine, &mut relay, &guards, &mut scratch, &mut sink) {
            tracing::debug!(worker = sink.worker, slot, "closing connection: {e}");
            engine.on_decode_error(&mut relay, at, &e, &mut sink);
        }
        engine.end_receive(at, &mut sink);
        let stall = sink.stall.take();
        self.scratch_locations = scratch;
        self.slab.conns[slot as usize].relay = relay;
        self.stall_reads(slot, generation, stall);
    }

    /// Decodes every whole frame of a client's receive (continuing one that straddled the
    /// previous buffer) and applies it; diverts a large unfinished frame (zero-copy path).
    /// Until HELLO is accepted the frame bound is [`HELLO_FRAME_BYTES_MAX`] and nothing is
    /// diverted: an unauthenticated socket can make the relay hold at most one HELLO.
    pub(super) fn on_client_bytes(&mut self, slot: u32, data: &[u8]) {
        let c = &self.slab.conns[slot as usize];
        let (generation, before) = (c.generation, c.reassembly_bytes());
        self.decode_client_bytes(slot, data);
        debug_assert_eq!(self.slab.conns[slot as usize].generation, generation);
        self.slab.reheld(slot, before);
        let held = self.slab.conns[slot as usize].reassembly_bytes();
        let max = self.shared.config.reassembly_bytes_per_worker_max;
        if held > 0 && self.slab.client_reassembly_bytes > max {
            self.refuse_reassembly(slot, generation);
        }
    }

    /// The worker's unfinished frames together passed `reassembly_bytes_per_worker_max`: the
    /// connection whose frame would grow them further is closed (its bytes are released at
    /// once; the others keep theirs).
    #[cold]
    pub(super) fn refuse_reassembly(&mut self, slot: u32, generation: u32) {
        bump(&self.shared.stats[self.index as usize].limit_refusals, 1);
        self.request_close(
            slot,
            generation,
            CloseReason::LIMIT_EXCEEDED,
            "reassembly_bytes_per_worker_max reached: too many unfinished frames on this worker",
            false,
        );
    }

    fn decode_client_bytes(&mut self, slot: u32, data: &[u8]) {
        let cfg = &self.shared.config;
        // Zero-copy receive reads the socket straight into a frame's buffer: not for TLS,
        // whose bytes must be opened first (an empty band diverts nothing).
        #[allow(clippy::reversed_empty_ranges)]
        let band = match self.slab.conns[slot as usize].tls {
            None => cfg.zero_copy_threshold_bytes..=cfg.zero_copy_max_bytes,
            Some(_) => 1..=0,
        };
        let max_frame_bytes = cfg.max_frame_bytes;
        let mut decoder = std::mem::take(&mut self.slab.conns[slot as usize].decoder);
        let mut diverted = None;
        let now_ms = self.now_ms;
        self.with_client_batch(slot, |engine, relay, guards, scratch, sink| {
            let rx = ClientReceive {
                slot,
                max_frame_bytes,
                band: &band,
                now_ms,
            };
            let mut conn = ConnDecode {
                engine,
                relay,
                guards,
                scratch,
                sink,
                decoder: &mut decoder,
            };
            let (failed, divert) = conn.decode_receive(&rx, data);
            diverted = divert;
            failed
        });
        let c = &mut self.slab.conns[slot as usize];
        let open = c.accepts_frames();
        let buffered_band = decoder
            .pending_frame_bytes()
            .filter(|n| open && band.contains(n));
        c.decoder = decoder;
        if !open {
            return;
        }
        if let Some((head, frame_bytes)) = diverted {
            let mut buf = self.large_pool.take(frame_bytes);
            buf.extend_from_slice(head);
            self.start_large(slot, buf, frame_bytes);
        } else if let Some(frame_bytes) = buffered_band {
            // The frame's start straddled receive buffers: move what the decoder holds.
            let head = self.slab.conns[slot as usize].decoder.take_buffered();
            let mut buf = self.large_pool.take(frame_bytes);
            buf.extend_from_slice(&head);
            self.start_large(slot, buf, frame_bytes);
        }
    }

    /// Switches the connection to receiving one large frame straight into `buf` (which holds
    /// its first bytes): the rest is received there by plain recvs, and the payload is then
    /// sent on from that buffer without another copy.
    fn start_large(&mut self, slot: u32, buf: BytesMut, frame_bytes: usize) {
        let c = &mut self.slab.conns[slot as usize];
        c.large = Some(buf);
        c.large_frame_bytes = frame_bytes;
        if c.recv_armed {
            // Stop the multishot recv; bytes it still delivers are appended by `feed_large`,
            // and its final completion re-arms a plain recv into the buffer.
            self.uring.cancel_recv(slot, c.generation);
        }
    }

    /// Appends bytes from a receive buffer to a pending large frame; returns what is left.
    pub(super) fn feed_large<'d>(&mut self, slot: u32, data: &'d [u8]) -> &'d [u8] {
        let engine = Engine::new(&self.shared.tables, &self.shared.engine);
        let c = &mut self.slab.conns[slot as usize];
        let Some(large) = &mut c.large else {
            return data;
        };
        let take = (c.large_frame_bytes - large.len()).min(data.len());
        large.extend_from_slice(&data[..take]);
        let complete = large.len() == c.large_frame_bytes;
        engine.on_receive(&mut c.relay, self.now_ms);
        engine.on_receive_end(&mut c.relay, self.now_ms, complete, !complete);
        if complete {
            if let Some(buf) = c.large.take() {
                self.dispatch_large(slot, buf);
            }
        }
        &data[take..]
    }

    /// Applies a large frame whose payload is then queued by reference (zero-copy).
    pub(super) fn dispatch_large(&mut self, slot: u32, buf: BytesMut) {
        let c = &mut self.slab.conns[slot as usize];
        let before = c.reassembly_bytes();
        c.large_frame_bytes = 0;
        self.apply_large(slot, buf);
        self.slab.reheld(slot, before);
    }

    fn apply_large(&mut self, slot: u32, buf: BytesMut) {
        let bytes = self.large_pool.share(buf);
        let max_frame_bytes = self.shared.config.max_frame_bytes;
        self.with_client_batch(slot, |engine, relay, guards, scratch, sink| {
            match decode(&bytes, max_frame_bytes) {
                Ok(Decoded::Frame { frame, .. }) => {
                    bump(&sink.stats.frames_in, 1);
                    bump(&sink.stats.frames_in_by_kind[kind_index(frame.kind())], 1);
                    sink.shared_payload = match frame {
                        crate::protocol::Frame::Send { payload, .. }
                        | crate::protocol::Frame::Publish { payload, .. } => {
                            Some(bytes.slice_ref(payload))
                        }
                        _ => None,
                    };
                    let at = Location {
                        node: engine.tables.node_id,
                        worker: sink.worker,
                        slot,
                        generation: sink.origin_generation,
                    };
                    engine.on_frame(relay, at, guards, frame, scratch, sink);
                    sink.shared_payload = None;
                    None
                }
                Ok(Decoded::NeedMore { .. }) => {
                    debug_assert!(false, "a complete large frame decoded as incomplete");
                    None
                }
                Err(e) => Some(e),
            }
        });
    }

    /// Decodes the forwarded frames of an inbound data link and delivers them here (never
    /// forwarded again). Bytes on an outbound link (the peer never sends any) are ignored.
    pub(super) fn on_link_bytes(&mut self, slot: u32, data: &[u8]) {
        let c = &mut self.slab.conns[slot as usize];
        if !c.accepts_frames() || c.link.is_some_and(|l| l.outbound) {
            return;
        }
        let generation = c.generation;
        let mut decoder = std::mem::take(&mut c.decoder);
        let shared = Arc::clone(&self.shared);
        let engine = Engine::new(&shared.tables, &shared.engine);
        let max_frame_bytes = decoder.max_frame_bytes();
        let guards = shared.tables.guards();
        let mut reports = std::mem::take(&mut self.drop_reports);
        let mut sink = self.deliverer(slot, generation);
        let mut failed = None;
        let mut bad_frames = 0u64;
        let result = reassemble(&mut decoder, data, None, |bytes| {
            match decode_data(bytes, max_frame_bytes) {
                Ok(DecodedData::Frame { frame, .. }) => match frame {
                    DataFrame::Send { target, message } => {
                        engine.on_forwarded_send(&guards, target, &message, &mut reports, &mut sink)
                    }
                    DataFrame::SendAcked {
                        sender,
                        target,
                        id,
                        payload,
                    } => engine
                        .on_forwarded_send_acked(&guards, sender, target, id, payload, &mut sink),
                    DataFrame::Ack { from, to, gap, ack } => {
                        engine.on_forwarded_ack(&guards, from, to, gap, &ack, &mut sink)
                    }
                    DataFrame::Publish { group, message, .. } => engine.on_forwarded_publish(
                        &guards,
                        &message,
                        group,
                        &mut reports,
                        &mut sink,
                    ),
                    DataFrame::Dropped {
                        sender,
                        subject,
                        count,
                    } => engine.on_forwarded_dropped(&guards, sender, subject, count, &mut sink),
                },
                Ok(DecodedData::NeedMore { .. }) => {
                    debug_assert!(false, "a whole link frame decoded as incomplete");
                }
                Err(LinkDecodeError::Malformed(what)) => {
                    // The frame was cut by its header's length, so the stream is still in
                    // step: drop this one message (counted), keep the link and everyone
                    // else's forwards on it.
                    bad_frames += 1;
                    tracing::debug!(worker = sink.worker, "dropping a malformed forward: {what}");
                }
                Err(e) => {
                    failed = Some(e.to_string());
                    return false;
                }
            }
            true
        });
        if !reports.is_empty() {
            engine.report_drops(&guards, &mut reports, &mut sink);
        }
        let stall = sink.stall.take();
        drop(sink);
        self.drop_reports = reports;
        self.stall_reads(slot, generation, stall);
        bump(
            &self.shared.stats[self.index as usize].link_bad_frame_drops,
            bad_frames,
        );
        let failed = match result {
            Err(e) => Some(e.to_string()),
            Ok(_) => failed.or_else(|| {
                decode_data(decoder.pending(), max_frame_bytes)
                    .err()
                    .filter(|e| !matches!(e, LinkDecodeError::Malformed(_)))
                    .map(|e| e.to_string())
            }),
        };
        if let Some(e) = failed {
            tracing::warn!(worker = self.index, "closing data link: {e}");
            decoder.clear();
            self.request_close(
                slot,
                generation,
                CloseReason::PROTOCOL_ERROR,
                "bad data link frame",
                true,
            );
        }
        self.slab.conns[slot as usize].decoder = decoder;
    }
}

/// The settings of one client receive.
struct ClientReceive<'b> {
    slot: u32,
    max_frame_bytes: usize,
    band: &'b RangeInclusive<usize>,
    now_ms: u64,
}

/// One client connection while a receive of it is decoded and applied.
struct ConnDecode<'e, 'r, 's, 'w> {
    engine: Engine<'e>,
    relay: &'r mut ConnRelay,
    guards: &'r Guards<'e>,
    scratch: &'r mut Vec<Location>,
    sink: &'r mut Deliverer<'w>,
    decoder: &'s mut StreamDecoder,
}

impl ConnDecode<'_, '_, '_, '_> {
    /// Applies every whole frame of `data`; returns the decode error that must close the
    /// connection, if any, and an unfinished large frame to divert (its head, its size).
    fn decode_receive<'d>(
        &mut self,
        rx: &ClientReceive<'_>,
        mut data: &'d [u8],
    ) -> (Option<DecodeError>, Option<(&'d [u8], usize)>) {
        let at = Location {
            node: self.engine.tables.node_id,
            worker: self.sink.worker,
            slot: rx.slot,
            generation: self.sink.origin_generation,
        };
        let mut completed_frames = false;
        let mut failed = None;
        let mut diverted = None;
        // For this receive only (see `SendMemo`).
        let mut memo = SendMemo::default();
        loop {
            let awaiting_hello = self.relay.phase() == Phase::AwaitingHello;
            self.decoder.set_max_frame_bytes(if awaiting_hello {
                HELLO_FRAME_BYTES_MAX.min(rx.max_frame_bytes)
            } else {
                rx.max_frame_bytes
            });
            let divert = (!awaiting_hello).then_some(rx.band);
            let (engine, relay, guards, scratch) = (
                self.engine,
                &mut *self.relay,
                self.guards,
                &mut *self.scratch,
            );
            let sink = &mut *self.sink;
            let result = reassemble(self.decoder, data, divert, |bytes| {
                if sink.driven_closing() {
                    return false;
                }
                if let Some((target, payload)) = plain_send(bytes) {
                    bump(&sink.stats.frames_in, 1);
                    bump(&sink.stats.frames_in_by_kind[SEND_KIND], 1);
                    completed_frames = true;
                    let memo = &mut memo;
                    engine.on_plain_send(relay, at, guards, memo, target, payload, scratch, sink);
                    return !(awaiting_hello && relay.phase() != Phase::AwaitingHello);
                }
                if let Some((topic, payload, no_echo)) = plain_publish(bytes) {
                    bump(&sink.stats.frames_in, 1);
                    bump(&sink.stats.frames_in_by_kind[PUBLISH_KIND], 1);
                    completed_frames = true;
                    engine.on_plain_publish(
                        relay, at, guards, topic, payload, no_echo, scratch, sink,
                    );
                    return !(awaiting_hello && relay.phase() != Phase::AwaitingHello);
                }
                match decode(bytes, rx.max_frame_bytes) {
                    Ok(Decoded::Frame { frame, .. }) => {
                        bump(&sink.stats.frames_in, 1);
                        bump(&sink.stats.frames_in_by_kind[kind_index(frame.kind())], 1);
                        completed_frames = true;
                        engine.on_frame(relay, at, guards, frame, scratch, sink);
                        // HELLO accepted: stop, so the full bound applies to what follows.
                        !(awaiting_hello && relay.phase() != Phase::AwaitingHello)
                    }
                    Ok(Decoded::NeedMore { .. }) => {
                        debug_assert!(false, "a whole frame decoded as incomplete");
                        true
                    }
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                }
            });
            match result {
                Err(too_large) => failed = Some(too_large.into()),
                Ok(Reassembled::Divert { head, frame_bytes }) => {
                    // The header is checked (kind, flags) before the body is waited for.
                    match decode(head, rx.max_frame_bytes) {
                        Err(e) => failed = Some(e),
                        Ok(_) => diverted = Some((head, frame_bytes)),
                    }
                }
                Ok(Reassembled::Drained) => failed = self.check_pending_header(at, rx),
                Ok(Reassembled::Halted { rest }) => {
                    let open = !self.sink.driven_closing()
                        && matches!(self.relay.phase(), Phase::Open | Phase::AwaitingProof);
                    if awaiting_hello && open && failed.is_none() {
                        data = rest;
                        continue;
                    }
                }
            }
            break;
        }
        if failed.is_some() {
            self.decoder.clear();
        }
        let frame_pending = self.decoder.buffered() > 0 || diverted.is_some();
        self.engine
            .on_receive_end(self.relay, rx.now_ms, completed_frames, frame_pending);
        (failed, diverted)
    }

    /// Refuses a bad kind or flags from a buffered header at once, and anything but a HELLO
    /// header before HELLO.
    fn check_pending_header(
        &mut self,
        at: Location,
        rx: &ClientReceive<'_>,
    ) -> Option<DecodeError> {
        let pending = self.decoder.pending();
        if let Err(e) = decode(pending, rx.max_frame_bytes) {
            return Some(e);
        }
        if let Some(&kind) = pending.get(4) {
            self.engine
                .on_partial_header(self.relay, at, kind, &mut *self.sink);
        }
        None
    }
}
