//! Frames another node forwarded over a data link: delivered to local clients only, never
//! forwarded again, so a message crosses at most one link.

use super::{Counter, Engine, Output};
use crate::core::router::Guards;
use crate::protocol::{AckFields, Message, MsgId};

impl Engine<'_> {
    /// A SEND forwarded by another node; dropped (and counted stale) if the target moved or
    /// left while it was on the link.
    #[inline]
    pub fn on_forwarded_send(
        &self,
        guards: &Guards<'_>,
        target: &[u8],
        message: &Message<'_>,
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        if !self
            .tables
            .route_forwarded_send(guards, target, message, out)
        {
            out.count(Counter::ForwardedInStale);
        }
    }

    /// A PUBLISH forwarded by another node: to the local plain subscribers (`group` empty) or
    /// to one local member of `group`.
    #[inline]
    pub fn on_forwarded_publish(
        &self,
        guards: &Guards<'_>,
        message: &Message<'_>,
        group: &[u8],
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        self.tables
            .route_forwarded_publish(guards, message, group, out);
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
    }
}
