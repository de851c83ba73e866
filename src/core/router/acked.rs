//! Routing of acknowledged delivery (protocol version 2): acknowledged SENDs go by id like
//! SENDs, and an ACK goes by id back to the sender it acknowledges, as a RECEIPT. The relay
//! keeps no per-message state: what it cannot deliver it drops or answers with an ERROR that
//! names the message, and the sender's library sends again or reports the failure.

use super::{Guards, Origin, SendOutcome, Sink, Tables};
use crate::core::location::Location;
use crate::protocol::{AckFields, ErrorCode, MsgId};

/// What became of one acknowledged delivery handed to a local connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckedDelivery {
    /// Queued, or handed over to the worker that owns the connection.
    Queued,
    /// Dropped at a bound (counted by the sink; the sender's timer sends it again).
    Dropped,
    /// The connection speaks protocol version 1 and cannot acknowledge: dropped.
    Unsupported,
}

/// Where acknowledged frames go; the [`Sink`] of the message path, extended.
pub trait AckSink: Sink {
    /// Deliver an acknowledged DELIVER to the connection at `to`.
    fn deliver_acked(
        &mut self,
        to: Location,
        sender: &[u8],
        id: MsgId,
        payload: &[u8],
    ) -> AckedDelivery;
    /// Deliver a RECEIPT to the connection at `to`: `from` acknowledges its messages.
    fn receipt(&mut self, to: Location, from: &[u8], gap: bool, ack: &AckFields<'_>);
    /// Answer the requesting connection with an ERROR about its message `id`.
    fn error_to_origin_acked(
        &mut self,
        code: ErrorCode,
        subject: &[u8],
        id: MsgId,
        text: &'static str,
    );
    /// Forward an acknowledged SEND to `node`, which owns the row of `target`.
    fn forward_send_acked(
        &mut self,
        node: u16,
        sender: &[u8],
        target: &[u8],
        id: MsgId,
        payload: &[u8],
    );
    /// Forward an ACK of `from` to `node`, which owns the row of `to`.
    fn forward_ack(&mut self, node: u16, from: &[u8], to: &[u8], gap: bool, ack: &AckFields<'_>);
}

impl Tables {
    /// An acknowledged SEND: delivered here, forwarded to the node that owns the target's
    /// row, or answered with an ERROR naming the message (unknown id; a version-1 target).
    #[inline]
    pub fn route_send_acked(
        &self,
        guards: &Guards<'_>,
        origin: Origin<'_>,
        target: &[u8],
        id: MsgId,
        payload: &[u8],
        sink: &mut impl AckSink,
    ) -> SendOutcome {
        match self.locations.get(target, &guards.locations) {
            Some(to) if to.node == self.node_id => {
                match sink.deliver_acked(to, origin.client_id, id, payload) {
                    AckedDelivery::Queued => {}
                    AckedDelivery::Dropped => sink.error_to_origin_acked(
                        ErrorCode::OVERLOADED,
                        target,
                        id,
                        "dropped: the target's connection is closing or at a bound",
                    ),
                    AckedDelivery::Unsupported => sink.error_to_origin_acked(
                        ErrorCode::ACK_UNSUPPORTED,
                        target,
                        id,
                        "target speaks protocol version 1 (no acknowledged delivery)",
                    ),
                }
                SendOutcome::Routed
            }
            Some(to) => {
                sink.forward_send_acked(to.node, origin.client_id, target, id, payload);
                SendOutcome::Forwarded
            }
            None => {
                sink.error_to_origin_acked(ErrorCode::UNKNOWN_ID, target, id, "unknown id");
                SendOutcome::UnknownId
            }
        }
    }

    /// An acknowledged SEND another node forwarded: delivered if the target is still a
    /// client of this node, else dropped (the sender's timer or the target's presence sends
    /// it again). Returns false when it is stale: no longer a client here, or dropped at a
    /// bound.
    #[inline]
    pub fn route_forwarded_send_acked(
        &self,
        guards: &Guards<'_>,
        sender: &[u8],
        target: &[u8],
        id: MsgId,
        payload: &[u8],
        sink: &mut impl AckSink,
    ) -> bool {
        match self.locations.get(target, &guards.locations) {
            // A version-1 target is a drop the sink counted already, not a stale forward.
            Some(to) if to.node == self.node_id => {
                sink.deliver_acked(to, sender, id, payload) != AckedDelivery::Dropped
            }
            _ => false,
        }
    }

    /// An ACK from `origin` for the client `to`: a RECEIPT to it, here or on its node. An
    /// ACK for an id nobody holds is dropped without an answer (the sender is gone; a new
    /// session of it numbers its messages in a new epoch).
    #[inline]
    pub fn route_ack(
        &self,
        guards: &Guards<'_>,
        origin: Origin<'_>,
        to: &[u8],
        gap: bool,
        ack: &AckFields<'_>,
        sink: &mut impl AckSink,
    ) -> SendOutcome {
        match self.locations.get(to, &guards.locations) {
            Some(at) if at.node == self.node_id => {
                sink.receipt(at, origin.client_id, gap, ack);
                SendOutcome::Routed
            }
            Some(at) => {
                sink.forward_ack(at.node, origin.client_id, to, gap, ack);
                SendOutcome::Forwarded
            }
            None => SendOutcome::UnknownId,
        }
    }

    /// An ACK another node forwarded: a RECEIPT if `to` is still a client of this node.
    /// Returns whether it was.
    #[inline]
    pub fn route_forwarded_ack(
        &self,
        guards: &Guards<'_>,
        from: &[u8],
        to: &[u8],
        gap: bool,
        ack: &AckFields<'_>,
        sink: &mut impl AckSink,
    ) -> bool {
        match self.locations.get(to, &guards.locations) {
            Some(at) if at.node == self.node_id => {
                sink.receipt(at, from, gap, ack);
                true
            }
            _ => false,
        }
    }
}
