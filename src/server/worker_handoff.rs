//! Draining what other workers handed to this one (frames, shared payloads, closes). A child
//! module of `worker`, so it shares the worker's private state.

use super::super::deliver::PendingClose;
use super::super::handoff::{
    records, split_fanout, split_group, SHARED_INDEX_LEN, TAG_CLOSE, TAG_DELIVERS, TAG_FANOUT,
    TAG_FRAME, TAG_GROUP_FRAME, TAG_GROUP_SHARED, TAG_SHARED,
};
use super::Worker;
use crate::core::drop_reports::DropReports;
use crate::core::Engine;
use crate::protocol::CloseReason;
use bytes::Bytes;
use std::sync::Arc;

impl Worker {
    /// Applies batches other workers handed to this one.
    pub(super) fn drain_inbound(&mut self) {
        let shared = Arc::clone(&self.shared);
        let me = self.index as usize;
        let mut reports = std::mem::take(&mut self.drop_reports);
        for (src, queue) in shared.mailboxes[me].inbound.iter().enumerate() {
            while let Some(mut batch) = queue.pop() {
                let (bytes, payloads) = batch.parts();
                for record in records(bytes) {
                    let (slot, generation) = (record.slot, record.generation);
                    // Steering's tally: only deliveries by id (a fan-out's and a queue group's
                    // receivers are subscribers, which never move: no lookup for them); a
                    // shared payload's record is tallied below, with its payload.
                    if matches!(record.tag, TAG_FRAME | TAG_DELIVERS) {
                        self.tally_handover(src, slot, generation, record.body.len());
                    }
                    match record.tag {
                        TAG_FRAME => {
                            let mut sink = self.deliverer(slot, generation);
                            sink.append_frame_bytes(slot, generation, b"", record.body);
                            sink.note_if_dropped(slot, record.body, &mut reports);
                        }
                        TAG_DELIVERS => {
                            self.deliverer(slot, generation).append_delivers(
                                slot,
                                generation,
                                record.body,
                                &mut reports,
                            );
                        }
                        TAG_FANOUT => {
                            let (frame, destinations) = split_fanout(&record);
                            self.deliverer(u32::MAX, 0).append_fanout_record(
                                frame,
                                destinations,
                                &mut reports,
                            );
                        }
                        TAG_GROUP_FRAME => {
                            let (group, frame) = split_group(record.body);
                            let mut sink = self.deliverer(slot, generation);
                            sink.append_frame_bytes(slot, generation, group, frame);
                            sink.note_if_dropped(slot, frame, &mut reports);
                        }
                        TAG_SHARED | TAG_GROUP_SHARED => {
                            let (index, rest) = record.body.split_at(SHARED_INDEX_LEN);
                            let index =
                                u32::from_le_bytes([index[0], index[1], index[2], index[3]]);
                            let (group, header) = if record.tag == TAG_GROUP_SHARED {
                                split_group(rest)
                            } else {
                                (&b""[..], rest)
                            };
                            let payload = payloads.get(index as usize).cloned().unwrap_or_default();
                            if record.tag == TAG_SHARED {
                                let bytes = record.body.len() + payload.len();
                                self.tally_handover(src, slot, generation, bytes);
                            }
                            self.append_shared_record(
                                (slot, generation),
                                group,
                                header,
                                payload,
                                &mut reports,
                            );
                        }
                        TAG_CLOSE => {
                            let reason =
                                CloseReason(u16::from_le_bytes([record.body[0], record.body[1]]));
                            self.pending_closes.push(PendingClose {
                                slot,
                                generation,
                                reason,
                                text: reason.name(),
                                peer_gone: false,
                            });
                        }
                        other => debug_assert!(false, "unknown handoff tag {other}"),
                    }
                }
                batch.release_payloads();
                // Back to its producer as read (it counts the bytes it held, then clears it).
                if let Err(batch) = shared.mailboxes[src].returns[me].push(batch) {
                    self.unreturned.push((src, batch));
                }
            }
        }
        if !reports.is_empty() {
            self.report_drops(&mut reports);
        }
        self.drop_reports = reports;
        self.retry_returns();
    }

    /// Tells the senders of the DELIVERs this drain dropped at a bound (see
    /// `core::drop_reports`).
    #[cold]
    #[inline(never)]
    fn report_drops(&mut self, reports: &mut DropReports) {
        let shared = Arc::clone(&self.shared);
        let engine = Engine::new(&shared.tables, &shared.engine);
        let guards = shared.tables.guards();
        // Not on behalf of any connection: no origin.
        let mut sink = self.deliverer(u32::MAX, 0);
        engine.report_drops(&guards, reports, &mut sink);
    }

    /// A DELIVER whose payload another worker handed over apart (zero-copy): queued by
    /// reference to a native connection, written as NATS (a copy) to a NATS one. One a bound
    /// dropped is noted in `reports` for its sender.
    fn append_shared_record(
        &mut self,
        (slot, generation): (u32, u32),
        group: &[u8],
        header: &[u8],
        payload: Bytes,
        reports: &mut DropReports,
    ) {
        let mut sink = self.deliverer(slot, generation);
        if sink.refuses_acked(slot, generation, header) {
            return;
        }
        if sink.is_nats(slot, generation) {
            sink.append_shared_nats(slot, generation, group, header, &payload);
        } else {
            sink.append_local_shared(
                slot,
                generation,
                header.len(),
                |out| out.extend_from_slice(header),
                payload,
            );
        }
        sink.note_if_dropped(slot, header, reports);
    }

    /// Pushes again the batches whose return queue was full.
    fn retry_returns(&mut self) {
        if self.unreturned.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let me = self.index as usize;
        let mut kept = Vec::new();
        for (src, batch) in self.unreturned.drain(..) {
            if let Err(batch) = shared.mailboxes[src].returns[me].push(batch) {
                kept.push((src, batch));
            }
        }
        self.unreturned = kept;
    }
}
