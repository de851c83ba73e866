//! Draining what other workers handed to this one (frames, shared payloads, closes). A child
//! module of `worker`, so it shares the worker's private state.

use super::super::deliver::PendingClose;
use super::super::handoff::{
    records, split_fanout, split_group, SHARED_INDEX_LEN, TAG_CLOSE, TAG_DELIVERS, TAG_FANOUT,
    TAG_FRAME, TAG_GROUP_FRAME, TAG_GROUP_SHARED, TAG_SHARED,
};
use super::Worker;
use crate::protocol::CloseReason;
use bytes::Bytes;
use std::sync::Arc;

impl Worker {
    /// Applies batches other workers handed to this one.
    pub(super) fn drain_inbound(&mut self) {
        let shared = Arc::clone(&self.shared);
        let me = self.index as usize;
        for (src, queue) in shared.mailboxes[me].inbound.iter().enumerate() {
            while let Some(mut batch) = queue.pop() {
                let (bytes, payloads) = batch.parts();
                for record in records(bytes) {
                    match record.tag {
                        TAG_FRAME => {
                            self.deliverer(record.slot, record.generation)
                                .append_frame_bytes(
                                    record.slot,
                                    record.generation,
                                    b"",
                                    record.body,
                                );
                        }
                        TAG_DELIVERS => {
                            self.deliverer(record.slot, record.generation)
                                .append_delivers(record.slot, record.generation, record.body);
                        }
                        TAG_FANOUT => {
                            let (frame, destinations) = split_fanout(&record);
                            for (slot, generation) in destinations {
                                self.deliverer(slot, generation)
                                    .append_frame_bytes(slot, generation, b"", frame);
                            }
                        }
                        TAG_GROUP_FRAME => {
                            let (group, frame) = split_group(record.body);
                            self.deliverer(record.slot, record.generation)
                                .append_frame_bytes(record.slot, record.generation, group, frame);
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
                            self.append_shared_record(
                                record.slot,
                                record.generation,
                                group,
                                header,
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
                batch.release_payloads();
                // Back to its producer as read (it counts the bytes it held, then clears it).
                if let Err(batch) = shared.mailboxes[src].returns[me].push(batch) {
                    self.unreturned.push((src, batch));
                }
            }
        }
        self.retry_returns();
    }

    /// A DELIVER whose payload another worker handed over apart (zero-copy): queued by
    /// reference to a native connection, written as NATS (a copy) to a NATS one.
    fn append_shared_record(
        &mut self,
        slot: u32,
        generation: u32,
        group: &[u8],
        header: &[u8],
        payload: Bytes,
    ) {
        let mut sink = self.deliverer(slot, generation);
        if sink.refuses_acked(slot, generation, header) {
            return;
        }
        if sink.is_nats(slot, generation) {
            sink.append_shared_nats(slot, generation, group, header, &payload);
            return;
        }
        sink.append_local_shared(
            slot,
            generation,
            header.len(),
            |out| out.extend_from_slice(header),
            payload,
        );
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
