//! Rules for the acknowledged-delivery frames of a client connection (protocol version 2):
//! out of line, so the plain message path stays as small as it was.

use super::{ConnRelay, Counter, Engine, Output};
use crate::core::location::Location;
use crate::core::router::{Guards, Origin, SendOutcome};
use crate::protocol::{AckFields, ErrorCode, Frame, MsgId};

impl Engine<'_> {
    /// An acknowledged SEND: routed like a SEND; an ERROR about it names the message.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn send_acked(
        &self,
        conn: &ConnRelay,
        at: Location,
        guards: &Guards<'_>,
        target: &[u8],
        id: MsgId,
        payload: &[u8],
        out: &mut impl Output,
    ) {
        debug_assert!(!conn.client_id.is_empty(), "routed before registration");
        if payload.len() > self.config.payload_bytes_max {
            return self.refuse_acked_payload(at, target, id, out);
        }
        let origin = Origin {
            location: at,
            client_id: &conn.client_id,
        };
        let outcome = self
            .tables
            .route_send_acked(guards, origin, target, id, payload, out);
        if outcome == SendOutcome::UnknownId {
            out.count(Counter::UnknownId);
        }
    }

    /// An ACK: a RECEIPT to the client it acknowledges, wherever it is; dropped and counted
    /// when that id is not registered.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    pub(super) fn ack(
        &self,
        conn: &ConnRelay,
        at: Location,
        guards: &Guards<'_>,
        to: &[u8],
        gap: bool,
        ack: &AckFields<'_>,
        out: &mut impl Output,
    ) {
        let origin = Origin {
            location: at,
            client_id: &conn.client_id,
        };
        if self.tables.route_ack(guards, origin, to, gap, ack, out) == SendOutcome::UnknownId {
            out.count(Counter::AckUnroutable);
        }
    }

    /// An acknowledged SEND whose payload is too large: the ERROR names the message, so the
    /// sender fails it at once (sending it again cannot help).
    #[cold]
    #[inline(never)]
    fn refuse_acked_payload(&self, at: Location, target: &[u8], id: MsgId, out: &mut impl Output) {
        out.count(Counter::PayloadTooLarge);
        let text = format!(
            "payload longer than {} bytes (max_frame_bytes minus {} for the DELIVER header)",
            self.config.payload_bytes_max,
            crate::protocol::DELIVER_OVERHEAD_MAX
        );
        let frame = Frame::ErrorAcked {
            code: ErrorCode::PAYLOAD_TOO_LARGE,
            subject: target,
            id,
            text: text.as_bytes(),
        };
        out.send_frame_local(at, &frame);
    }
}
