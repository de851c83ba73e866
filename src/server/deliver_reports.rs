//! The worker's side of drop reports (`core::drop_reports`): an ERROR to a client of this node
//! on any worker, and FWD_DROPPED to the node of a client elsewhere. Best effort: a report
//! that finds its handoff queue or link full is lost (the engine counts it unreported), and
//! it never stalls the batch's producer, marks the batch overloaded or counts as a message.

use super::deliver::{Deliverer, Forward, LinkFrame};
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

    /// Queues an ERROR to the client at `to`: on this worker through its error ledger (which
    /// coalesces it), on another through the handoff (that worker's ledger coalesces it).
    /// Returns false when it cannot be told: a NATS connection here (NATS has no such error;
    /// nats-server does not tell a publisher of drops either), or a full handoff queue.
    pub(super) fn send_error_anywhere(
        &mut self,
        to: Location,
        code: ErrorCode,
        subject: &[u8],
        text: &'static str,
    ) -> bool {
        let frame = Frame::Error {
            code,
            subject,
            text: text.as_bytes(),
        };
        if to.worker != self.worker {
            return self.best_effort(|d| d.push_frame_remote(to, &frame));
        }
        if self.is_nats(to.slot, to.generation) {
            return false;
        }
        self.best_effort(|d| d.push_frame_local(to.slot, to.generation, &frame));
        true
    }

    /// Runs `queue` without letting it stall the batch's producer (the sender's own queue may
    /// be congested, or the handoff to its worker half full) or mark the batch overloaded (a
    /// report lost at the handoff is not itself reported).
    fn best_effort<T>(&mut self, queue: impl FnOnce(&mut Self) -> T) -> T {
        let (stall, overloaded) = (self.stall, self.overloaded);
        let result = queue(self);
        (self.stall, self.overloaded) = (stall, overloaded);
        result
    }

    /// Appends FWD_DROPPED for `node`'s client `sender` to this worker's link to it (or the
    /// node's backlog); returns whether it was queued.
    pub(super) fn forward_dropped_report(
        &mut self,
        node: u16,
        sender: &[u8],
        subject: &[u8],
        count: u32,
    ) -> bool {
        let len = data_dropped_len(sender, subject);
        let queued = self.append_link_frame(node, len, LinkFrame::Report, |out| {
            encode_data_dropped(out, sender, subject, count)
        });
        queued == Forward::Queued
    }
}
