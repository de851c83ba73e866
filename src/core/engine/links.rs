//! Frames another node forwarded over a data link: delivered to local clients only, never
//! forwarded again, so a message crosses at most one link.

use super::{Counter, Engine, Output};
use crate::core::router::Guards;

impl Engine<'_> {
    /// A SEND forwarded by another node; dropped (and counted stale) if the target moved or
    /// left while it was on the link.
    #[inline]
    pub fn on_forwarded_send(
        &self,
        guards: &Guards<'_>,
        sender: &[u8],
        target: &[u8],
        payload: &[u8],
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        if !self
            .tables
            .route_forwarded_send(guards, sender, target, payload, out)
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
        sender: &[u8],
        topic: &[u8],
        group: &[u8],
        payload: &[u8],
        out: &mut impl Output,
    ) {
        out.count(Counter::ForwardedIn);
        self.tables
            .route_forwarded_publish(guards, sender, topic, group, payload, out);
    }
}
