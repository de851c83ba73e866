//! The worker's output to NATS connections: what the engine sends a connection accepted on
//! `nats_listen` is written in NATS (see `core::engine::nats`, translate.rs) into its send
//! buffer, under the same flow control and bounds as native frames (`core::flow`;
//! `pending_bytes_per_worker_max`, then dropped and the sender told).

use super::conn::extra_capacity;
use super::deliver::Deliverer;
use super::stats::{bump, kind_index};
use crate::core::engine::nats::{NatsConn, NatsOutput, DIRECT_SUBJECT_PREFIX};
use crate::core::flow::Admit;
use crate::core::Location;
use crate::protocol::{decode, deliver_header_topic, Decoded, Frame, FrameKind, Message};

impl Deliverer<'_> {
    /// Whether the live connection at (`slot`, `generation`) speaks NATS.
    #[inline]
    pub fn is_nats(&self, slot: u32, generation: u32) -> bool {
        self.slab
            .conns
            .get(slot as usize)
            .is_some_and(|c| c.generation == generation && c.nats.is_some())
    }

    /// Appends what `write` writes for a NATS connection (it returns how many messages it
    /// wrote; 0 for a control line). Messages past the ceiling of its queue are taken back and
    /// the connection closed as a slow consumer, nats-server's rule (its subscriptions have
    /// already counted them delivered, for `UNSUB max`, so it could not stay open without
    /// them); a control line gets the in-flight room past the ceiling first
    /// (`FlowLimits::takes_relay_frame`). Messages the worker's bound refuses
    /// (`WorkerRoom`: past `pending_bytes_per_worker_max`, or in its last eighth for a queue
    /// that is behind) are taken back and dropped. Returns whether anything was kept.
    fn append_nats(
        &mut self,
        slot: u32,
        generation: u32,
        kind: FrameKind,
        write: impl FnOnce(&mut NatsConn, &mut Vec<u8>) -> usize,
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
        let pending_before = conn.pending_bytes();
        let (start, capacity) = (conn.out.len(), conn.out.capacity());
        conn.tls_reserve();
        let reserved = conn.out.len();
        let Some(nats) = conn.nats.as_deref_mut() else {
            debug_assert!(false, "append_nats on a native connection");
            return false;
        };
        let messages = write(nats, &mut conn.out);
        if conn.out.len() == reserved {
            conn.truncate_out(start);
            return false;
        }
        let len = conn.out.len() - start;
        if kind == FrameKind::Error && !self.client_flow.takes_error(pending_before, len) {
            conn.truncate_out(start);
            bump(&self.stats.error_drops, 1);
            return false;
        }
        let (limits, now_ms) = (self.client_flow, self.now_ms);
        if messages > 0 {
            // Before `admit`, which would mark the queue for messages it may not get. The
            // growth of the buffer counts, as the worker's bytes count buffers' capacity.
            let grown = extra_capacity(conn.out.capacity()) - extra_capacity(capacity);
            if !bound.admits(&conn.backlog, pending_before, len, grown) {
                conn.truncate_out(start);
                // Taken back with the capacity the write gave it: a queue that fell behind
                // must not keep, and count, the room of messages it did not get.
                conn.out.shrink_to(capacity);
                let kept = extra_capacity(conn.out.capacity()) - extra_capacity(capacity);
                self.slab.client_pending_bytes += kept;
                self.drop_worker_full();
                return false;
            }
        }
        let admit = if messages > 0 {
            conn.backlog.admit(limits, pending_before, len, now_ms)
        } else {
            conn.backlog
                .admit_relay_frame(limits, pending_before, len, now_ms)
        };
        if admit == Admit::Refuse {
            conn.truncate_out(start);
            // The buffer keeps the capacity the write gave it: counted like any growth.
            let grown = extra_capacity(conn.out.capacity()) - extra_capacity(capacity);
            self.slab.client_pending_bytes += grown;
            self.close_slow_consumer(
                slot,
                generation,
                "slow consumer: its queue would pass twice pending_bytes_max",
            );
            return false;
        }
        if admit != Admit::Queue && !self.admit_congested(slot, generation, kind, admit) {
            return false;
        }
        // Live: checked above, and nothing since released a slot.
        let conn = &mut self.slab.conns[slot as usize];
        let grown = extra_capacity(conn.out.capacity()) - extra_capacity(capacity);
        bump(
            &self.stats.frames_out_by_kind[kind_index(kind)],
            messages.max(1) as u64,
        );
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(slot);
        }
        self.slab.client_pending_bytes += len + grown;
        self.slab.round_out_bytes += len;
        true
    }

    /// A message for a local NATS connection: one MSG per sid it goes to (`group`: the queue
    /// group it was picked for, empty for a plain delivery). Returns whether anything was
    /// written; the caller counts the delivery (the worker that routed it, once).
    pub fn deliver_nats(
        &mut self,
        slot: u32,
        generation: u32,
        message: &Message<'_>,
        group: &[u8],
    ) -> bool {
        if message.topic.is_empty() {
            return self.deliver_nats_direct(slot, generation, message);
        }
        self.append_nats(slot, generation, FrameKind::Deliver, |nats, out| {
            nats.write_message(out, message, group)
        })
    }

    /// A direct message (a SEND to the connection's generated id): written on the subject
    /// `_RR.ID.<its id>`, to the sids that match it.
    #[cold]
    #[inline(never)]
    fn deliver_nats_direct(&mut self, slot: u32, generation: u32, message: &Message<'_>) -> bool {
        let Some(conn) = self.slab.get_live(slot, generation) else {
            bump(&self.stats.stale_drops, 1);
            return false;
        };
        let mut subject = DIRECT_SUBJECT_PREFIX.to_vec();
        subject.extend_from_slice(conn.relay.client_id());
        let direct = Message {
            topic: &subject,
            ..*message
        };
        self.append_nats(slot, generation, FrameKind::Deliver, |nats, out| {
            nats.write_message(out, &direct, b"")
        })
    }

    /// A frame the relay produced (PING, ERROR, ...) for a local NATS connection, written
    /// in NATS when it has a NATS form.
    pub fn push_frame_nats(&mut self, slot: u32, generation: u32, frame: &Frame<'_>) {
        if let Some(message) = frame.message() {
            self.deliver_nats(slot, generation, &message, b"");
            return;
        }
        self.append_nats(slot, generation, frame.kind(), |nats, out| {
            nats.write_frame(out, frame);
            0
        });
    }

    /// An encoded frame another worker handed over for a local NATS connection.
    pub fn append_frame_bytes_nats(
        &mut self,
        slot: u32,
        generation: u32,
        group: &[u8],
        bytes: &[u8],
    ) {
        match decode(bytes, usize::MAX) {
            Ok(Decoded::Frame { frame, .. }) => match frame.message() {
                Some(message) => {
                    self.deliver_nats(slot, generation, &message, group);
                }
                None => self.push_frame_nats(slot, generation, &frame),
            },
            // Handed-over frames were encoded by this process.
            _ => debug_assert!(false, "a handed-over frame does not decode"),
        }
    }

    /// A DELIVER handed over with its payload apart (zero-copy) for a local NATS connection:
    /// the header names the topic.
    pub fn append_shared_nats(
        &mut self,
        slot: u32,
        generation: u32,
        group: &[u8],
        header: &[u8],
        payload: &[u8],
    ) {
        match deliver_header_topic(header) {
            Some(topic) => {
                // A NATS connection is not told the sender.
                let message = Message::plain(b"", topic, payload);
                self.deliver_nats(slot, generation, &message, group);
            }
            None => debug_assert!(false, "a handed-over DELIVER header does not parse"),
        }
    }
}

impl NatsOutput for Deliverer<'_> {
    fn nats_conn(&mut self, at: Location) -> Option<&mut NatsConn> {
        self.slab
            .get_live(at.slot, at.generation)?
            .nats
            .as_deref_mut()
    }

    fn send_nats_local(&mut self, to: Location, bytes: &[u8]) {
        // Counted as the native frames they stand for: -ERR as ERROR, +OK and PONG as PONG.
        let kind = if bytes.first() == Some(&b'-') {
            FrameKind::Error
        } else {
            FrameKind::Pong
        };
        self.append_nats(to.slot, to.generation, kind, |_, out| {
            out.extend_from_slice(bytes);
            0
        });
    }
}
