//! Close (undo everything the connection added to the shared tables) and timer ticks.

use super::{ClusterEvent, ConnRelay, Counter, Engine, Output};
use crate::core::location::Location;
use crate::core::session::TickAction;
use crate::protocol::{CloseReason, Frame};

impl Engine<'_> {
    /// The connection at `at` closes: its subscriptions, watches and registration are removed
    /// (each announced to the cluster), watchers of its id learn it went offline, and a held
    /// HELLO is dropped. The state is left empty, so a second call does nothing.
    pub fn on_close(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        conn.session.close();
        conn.held_hello = None;
        conn.held_frames = Vec::new();
        let tables = self.tables;
        for sub in conn.subscriptions.drain() {
            if tables.topics.unsubscribe(sub.topic(), sub.group(), at) {
                self.announce_interest(out, sub.topic(), sub.group());
            }
        }
        for watched in conn.watches.drain() {
            tables.presence.unwatch(&watched, at);
        }
        let client_id = std::mem::take(&mut conn.client_id);
        if client_id.is_empty() {
            return;
        }
        if let Some(row) = tables.unregister(&client_id, at, scratch, out) {
            if self.config.announces_registrations() {
                out.cluster(ClusterEvent::Unregistered {
                    id: &client_id,
                    epoch: row.epoch,
                });
            }
        }
    }

    /// Timer tick for a client connection: handshake deadline and heartbeat (a PING to an
    /// idle connection, a close after `heartbeat_misses_max` unanswered ones). Links have
    /// no heartbeat here: the control lane decides whether a peer is alive.
    pub fn on_tick(&self, conn: &mut ConnRelay, at: Location, now_ms: u64, out: &mut impl Output) {
        if conn.link {
            return;
        }
        match conn.session.on_tick(now_ms, &self.config.session) {
            TickAction::None => {}
            TickAction::SendPing { nonce } => out.send_frame_local(at, &Frame::Ping { nonce }),
            TickAction::Close { reason, text } => {
                if reason == CloseReason::HANDSHAKE_TIMEOUT || reason == CloseReason::FRAME_TIMEOUT
                {
                    out.count(Counter::ProtocolErrorClose);
                }
                out.close_conn(at, reason, text.into());
            }
        }
    }
}
