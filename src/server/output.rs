//! The worker's side of the engine's [`Output`]: what the relay engine decides beyond routing
//! (frames the relay produces, own closes, cluster events, counters) carried out on the
//! worker's [`Deliverer`].

use super::control_lane::Event;
use super::deliver::{Deliverer, PendingClose};
use super::stats::bump;
use crate::core::credentials::Verification;
use crate::core::{ClusterEvent, Counter, Location, Output};
use crate::protocol::{CloseReason, ErrorCode, Frame};
use std::borrow::Cow;

impl Output for Deliverer<'_> {
    #[inline]
    fn send_frame_local(&mut self, to: Location, frame: &Frame<'_>) {
        self.push_frame_local(to.slot, to.generation, frame);
    }

    fn close_conn(&mut self, at: Location, reason: CloseReason, text: Cow<'static, str>) {
        // Nothing more is queued to a connection closing for its own failure.
        let text = match text {
            Cow::Borrowed(text) => {
                self.mark_closing(at.slot, at.generation);
                text
            }
            Cow::Owned(text) => {
                if let Some(c) = self.mark_closing(at.slot, at.generation) {
                    c.close_text = Some(text);
                }
                ""
            }
        };
        self.pending_closes.push(PendingClose {
            slot: at.slot,
            generation: at.generation,
            reason,
            text,
            peer_gone: false,
        });
    }

    /// The origin was not open, or its close was requested in this batch: what the decoding
    /// loops ask per frame.
    #[inline(always)]
    fn driven_closing(&self) -> bool {
        debug_assert_eq!(
            self.origin_closing,
            !self
                .slab
                .accepts_frames_of(self.origin_slot, self.origin_generation)
        );
        self.origin_closing
    }

    fn cluster(&mut self, event: ClusterEvent<'_>) {
        if let Some(presence) = self.presence {
            match event {
                ClusterEvent::Registered { id, .. } => presence(id, true),
                ClusterEvent::Unregistered { id, .. } => presence(id, false),
                ClusterEvent::InterestChanged { .. } => {}
            }
        }
        if !self.clustered {
            return;
        }
        // The lane keeps owned copies: these are per connection, not per message.
        self.lane.emit(match event {
            ClusterEvent::Registered { id, epoch } => Event::Registered {
                id: id.into(),
                epoch,
            },
            ClusterEvent::Unregistered { id, epoch } => Event::Unregistered {
                id: id.into(),
                epoch,
            },
            ClusterEvent::InterestChanged { topic, group } => Event::InterestChanged {
                topic: topic.into(),
                group: group.into(),
            },
        });
    }

    #[inline]
    fn count(&mut self, counter: Counter) {
        self.count_n(counter, 1);
    }

    #[inline]
    fn count_n(&mut self, counter: Counter, n: u64) {
        let stats = self.stats;
        let field = match counter {
            Counter::UnknownId => &stats.unknown_id,
            Counter::ProtocolErrorClose => &stats.protocol_error_closes,
            Counter::ForwardedIn => &stats.forwarded_in,
            Counter::ForwardedInStale => &stats.forwarded_in_stale,
            Counter::LimitRefused => &stats.limit_refusals,
            Counter::NoResponders => &stats.no_responders,
            Counter::PermissionDenied => &stats.permission_denials,
            Counter::AuthFailed => &stats.auth_failures,
            Counter::PayloadTooLarge => &stats.payload_too_large_drops,
            Counter::AckUnroutable => &stats.ack_unroutable_drops,
            Counter::DropReported => &stats.drop_reports,
            Counter::DropsUnreported => &stats.drops_unreported,
        };
        bump(field, n);
    }

    fn node_ready(&self) -> bool {
        self.lane.is_ready()
    }

    fn next_epoch(&mut self) -> u64 {
        self.epochs.next(super::wall_us())
    }

    fn hello_held(&mut self, at: Location) {
        self.held_hellos.push((at.slot, at.generation));
    }

    fn verify_secret(&mut self, at: Location, name: &str, secret: &[u8]) -> Verification {
        self.verifier.verify(at, name, secret)
    }

    #[inline]
    fn take_overloaded(&mut self) -> bool {
        std::mem::take(&mut self.overloaded)
    }

    fn send_error(
        &mut self,
        to: Location,
        code: ErrorCode,
        subject: &[u8],
        text: &'static str,
    ) -> bool {
        self.send_error_anywhere(to, code, subject, text)
    }

    fn forward_dropped(&mut self, node: u16, sender: &[u8], subject: &[u8], count: u32) -> bool {
        self.forward_dropped_report(node, sender, subject, count)
    }

    fn challenge_nonce(&mut self) -> Option<[u8; 32]> {
        let mut nonce = [0; 32];
        getrandom::fill(&mut nonce).ok().map(|()| nonce)
    }
}
