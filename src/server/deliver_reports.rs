//! The worker's side of drop reports (`core::drop_reports`): an ERROR to a client of this node
//! on any worker, and FWD_DROPPED to the node of a client elsewhere. Best effort: a report
//! that finds its handoff queue or link full is dropped and counted, and never stalls the
//! batch's producer nor marks the batch as overloaded (a report is not itself reported).

use super::deliver::{Deliverer, Forward};
use super::stats::bump;
use crate::cluster::wire::{data_dropped_len, encode_data_dropped};
use crate::core::drop_reports::DropReports;
use crate::core::Location;
use crate::protocol::{deliver_sender_and_topic, ErrorCode, Frame};

impl Deliverer<'_> {
    /// A frame handed over by another worker (or a zero-copy DELIVER's header) was just
    /// applied for the connection in `slot`: if a bound dropped it, its sender is noted in
    /// `reports`, with its topic or, for a SEND, the receiver's id as the subject. Only plain
    /// DELIVERs are noted: an acknowledged one is sent again by its sender's timer.
    pub(super) fn note_if_dropped(&mut self, slot: u32, frame: &[u8], reports: &mut DropReports) {
        if !std::mem::take(&mut self.overloaded) {
            return;
        }
        let Some((sender, topic)) = deliver_sender_and_topic(frame) else {
            return;
        };
        let subject = match self.slab.conns.get(slot as usize) {
            Some(c) if topic.is_empty() => c.relay.client_id(),
            _ => topic,
        };
        reports.note(sender, subject);
    }

    /// Queues an ERROR to the client at `to`, on this worker (coalesced by its error ledger)
    /// or through the handoff to its own.
    pub(super) fn send_error_anywhere(
        &mut self,
        to: Location,
        code: ErrorCode,
        subject: &[u8],
        text: &'static str,
    ) {
        let frame = Frame::Error {
            code,
            subject,
            text: text.as_bytes(),
        };
        self.best_effort(|d| {
            if to.worker == d.worker {
                d.push_frame_local(to.slot, to.generation, &frame);
            } else {
                d.push_frame_remote(to, &frame);
            }
        });
    }

    /// Appends FWD_DROPPED for `node`'s client `sender` to this worker's link to it.
    pub(super) fn forward_dropped_report(
        &mut self,
        node: u16,
        sender: &[u8],
        subject: &[u8],
        count: u32,
    ) {
        let len = data_dropped_len(sender, subject);
        let forward = self.best_effort(|d| {
            d.append_link(node, len, |out| {
                encode_data_dropped(out, sender, subject, count)
            })
        });
        if forward != Forward::Queued {
            bump(&self.stats.drops_unreported, u64::from(count));
        }
    }

    /// Runs `queue` without letting it stall the batch's producer or mark it overloaded.
    fn best_effort<T>(&mut self, queue: impl FnOnce(&mut Self) -> T) -> T {
        let (stall, overloaded) = (self.stall, self.overloaded);
        let result = queue(self);
        (self.stall, self.overloaded) = (stall, overloaded);
        result
    }
}
