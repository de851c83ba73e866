//! Frames another node forwarded over a data link: delivered to local clients only, never
//! forwarded again, so a message crosses at most one link.

use super::{Counter, Engine, Output};
use crate::core::drop_reports::DropReports;
use crate::core::router::Guards;
use crate::protocol::{AckFields, ErrorCode, Message, MsgId};

/// The text of the ERROR OVERLOADED that reports drops away from the sender's receive.
pub const DROPPED_FURTHER_ON: &str =
    "relay overloaded: messages dropped on the way to the receiver";

impl Engine<'_> {
    /// A SEND forwarded by another node; dropped (and counted stale) if the target moved or
    /// left while it was on the link. One dropped here at a bound is noted in `reports` for
    /// its sender's node.
    #[inline]
    pub fn on_forwarded_send(
        &self,
        guards: &Guards<'_>,
        target: &[u8],
        message: &Message<'_>,
        reports: &mut DropReports,
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        if !self
            .tables
            .route_forwarded_send(guards, target, message, out)
        {
            out.count(Counter::ForwardedInStale);
        }
        if out.take_overloaded() {
            reports.note(message.sender, target);
        }
    }

    /// A PUBLISH forwarded by another node: to the local plain subscribers (`group` empty) or
    /// to one local member of `group`. One dropped here at a bound is noted in `reports` for
    /// its sender's node.
    #[inline]
    pub fn on_forwarded_publish(
        &self,
        guards: &Guards<'_>,
        message: &Message<'_>,
        group: &[u8],
        reports: &mut DropReports,
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        self.tables
            .route_forwarded_publish(guards, message, group, out);
        if out.take_overloaded() {
            reports.note(message.sender, message.topic);
        }
    }

    /// Tells the sender of each report in `reports` that messages of its were dropped away
    /// from its receive (see `core::drop_reports`): an ERROR OVERLOADED naming the subject to
    /// a client of this node, a FWD_DROPPED to the node of any other. A sender nobody holds
    /// any more is not told. Leaves `reports` empty.
    #[cold]
    #[inline(never)]
    pub fn report_drops(
        &self,
        guards: &Guards<'_>,
        reports: &mut DropReports,
        out: &mut impl Output,
    ) {
        let unreported = reports.drain(|report| {
            let told = match self.tables.locate(guards, report.sender) {
                Some(at) if at.node == self.tables.node_id => out.send_error(
                    at,
                    ErrorCode::OVERLOADED,
                    report.subject,
                    DROPPED_FURTHER_ON,
                ),
                Some(at) => {
                    out.forward_dropped(at.node, report.sender, report.subject, report.count)
                }
                None => false,
            };
            if told {
                out.count(Counter::DropReported);
            } else {
                out.count_n(Counter::DropsUnreported, u64::from(report.count));
            }
        });
        if unreported > 0 {
            out.count_n(Counter::DropsUnreported, unreported);
        }
    }

    /// Another node dropped `count` messages of `sender` to `subject` at one of its bounds:
    /// the sender is told (ERROR OVERLOADED) if it is still a client of this node; if not, or
    /// it cannot be told, the drops are counted unreported here. Never forwarded again.
    #[cold]
    #[inline(never)]
    pub fn on_forwarded_dropped(
        &self,
        guards: &Guards<'_>,
        sender: &[u8],
        subject: &[u8],
        count: u32,
        out: &mut impl Output,
    ) {
        let told = match self.tables.locate(guards, sender) {
            Some(at) if at.node == self.tables.node_id => {
                out.send_error(at, ErrorCode::OVERLOADED, subject, DROPPED_FURTHER_ON)
            }
            _ => false,
        };
        if !told {
            out.count_n(Counter::DropsUnreported, u64::from(count));
        }
    }

    /// An acknowledged SEND forwarded by another node; dropped (and counted stale) if the
    /// target moved or left, or cannot take it: its sender's library sends it again.
    #[inline(never)]
    pub fn on_forwarded_send_acked(
        &self,
        guards: &Guards<'_>,
        sender: &[u8],
        target: &[u8],
        id: MsgId,
        payload: &[u8],
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        if !self
            .tables
            .route_forwarded_send_acked(guards, sender, target, id, payload, out)
        {
            out.count(Counter::ForwardedInStale);
        }
        // Dropped at a bound, it is sent again by its sender's timer: not reported (and the
        // flag must not be left for the next frame of the receive to take as its own).
        out.take_overloaded();
    }

    /// An ACK forwarded by another node, for a client of this node (dropped and counted stale
    /// if it left).
    #[inline(never)]
    pub fn on_forwarded_ack(
        &self,
        guards: &Guards<'_>,
        from: &[u8],
        to: &[u8],
        gap: bool,
        ack: &AckFields<'_>,
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        if !self
            .tables
            .route_forwarded_ack(guards, from, to, gap, ack, out)
        {
            out.count(Counter::ForwardedInStale);
        }
        // An ACK lost at a bound is covered by the next one: not reported (as above).
        out.take_overloaded();
    }
}
