//! Rules for the frames of one client connection.

use super::{ClusterEvent, ConnRelay, Counter, Engine, Output};
use crate::core::location::{Location, Registered};
use crate::core::router::{Guards, Origin, SendOutcome};
use crate::core::session::{Phase, SessionEvent};
use crate::protocol::{CloseReason, DecodeError, ErrorCode, Frame, PROTOCOL_VERSION};

impl Engine<'_> {
    /// Bytes arrived on the connection (any bytes prove the peer alive); call once per
    /// receive, before its frames.
    #[inline]
    pub fn on_receive(&self, conn: &mut ConnRelay, now_ms: u64) {
        conn.session.on_bytes_received(now_ms);
    }

    /// Applies one decoded frame of the connection at `at`. Frames after a close decision are
    /// ignored (the session answers them with nothing).
    #[inline]
    pub fn on_frame(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        guards: &Guards<'_>,
        frame: Frame<'_>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        let tables = self.tables;
        match conn.session.on_frame(frame, &self.config.session) {
            SessionEvent::Send { target, payload } => {
                let origin = Origin {
                    location: at,
                    client_id: &conn.client_id,
                };
                if tables.route_send(guards, origin, target, payload, out) == SendOutcome::UnknownId
                {
                    out.count(Counter::UnknownId);
                }
            }
            SessionEvent::Publish {
                topic,
                payload,
                no_echo,
            } => {
                let origin = Origin {
                    location: at,
                    client_id: &conn.client_id,
                };
                tables.route_publish(guards, origin, topic, payload, no_echo, out);
            }
            SessionEvent::Register { client_id } => {
                if out.node_ready() {
                    self.register(conn, at, client_id.into(), scratch, out);
                } else {
                    conn.held_hello = Some(client_id.into());
                    out.hello_held(at);
                }
            }
            SessionEvent::Subscribe { topic, group } => self.subscribe(conn, at, topic, group, out),
            SessionEvent::Unsubscribe { topic, group } => {
                if tables.topics.unsubscribe(topic, group, at) {
                    self.announce_interest(out, topic, group);
                }
                conn.subscriptions
                    .retain(|(t, g)| !(&**t == topic && &**g == group));
            }
            SessionEvent::Watch { client_id } => {
                tables.presence.watch(client_id, at);
                if !conn.watches.iter().any(|w| &**w == client_id) {
                    conn.watches.push(client_id.into());
                }
            }
            SessionEvent::Unwatch { client_id } => {
                tables.presence.unwatch(client_id, at);
                conn.watches.retain(|w| &**w != client_id);
            }
            SessionEvent::Pong { nonce } => out.send_frame_local(at, &Frame::Pong { nonce }),
            SessionEvent::None => {}
            SessionEvent::Close { reason, text } => {
                if reason != CloseReason::NORMAL {
                    out.count(Counter::ProtocolErrorClose);
                }
                out.close(at, reason, text);
            }
        }
    }

    fn subscribe(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        topic: &[u8],
        group: &[u8],
        out: &mut impl Output,
    ) {
        if self.tables.topics.subscribe(topic, group, at) {
            self.announce_interest(out, topic, group);
        }
        if !conn
            .subscriptions
            .iter()
            .any(|(t, g)| &**t == topic && &**g == group)
        {
            conn.subscriptions.push((topic.into(), group.into()));
        }
    }

    /// The stream of the connection at `at` does not decode: close it. Bytes that do not
    /// decode before HELLO was accepted are a bad handshake (the peer likely speaks another
    /// protocol), except an oversized frame, which keeps its own reason.
    pub fn on_decode_error(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        error: &DecodeError,
        out: &mut impl Output,
    ) {
        let reason = match error {
            DecodeError::FrameTooLarge { .. } => error.close_reason(),
            _ if conn.session.phase() == Phase::AwaitingHello => CloseReason::BAD_HANDSHAKE,
            _ => error.close_reason(),
        };
        conn.session.close();
        out.count(Counter::ProtocolErrorClose);
        out.close_conn(at, reason, error.to_string().into());
    }

    /// The frames of one receive were applied: a sender whose messages were dropped at a
    /// bound is told OVERLOADED once per receive, not once per dropped message.
    #[inline]
    pub fn end_receive(&self, at: Location, out: &mut impl Output) {
        if out.take_overloaded() {
            let frame = Frame::Error {
                code: ErrorCode::OVERLOADED,
                subject: b"",
                text: b"relay overloaded: messages dropped",
            };
            out.send_frame_local(at, &frame);
        }
    }

    /// The node became ready: WELCOME and register the HELLO held for the connection at `at`,
    /// if it still holds one and is not closing.
    pub fn on_ready(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        let Some(client_id) = conn.held_hello.take() else {
            return;
        };
        if conn.session.phase() == Phase::Open {
            self.register(conn, at, client_id, scratch, out);
        }
    }

    /// Sends WELCOME, then registers `client_id` with a fresh epoch (WELCOME first: watchers
    /// and senders may reach the client as soon as it is registered). A registration that
    /// lost to a newer row elsewhere is closed as "replaced" by the router and not announced.
    fn register(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        client_id: Box<[u8]>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        let welcome = Frame::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            max_frame_bytes: self.config.max_frame_bytes,
        };
        out.send_frame_local(at, &welcome);
        let epoch = out.next_epoch();
        let outcome = self.tables.register(&client_id, at, epoch, scratch, out);
        if self.config.clustered && !matches!(outcome, Registered::Lost(_)) {
            out.cluster(ClusterEvent::Registered {
                id: &client_id,
                epoch,
            });
        }
        conn.client_id = client_id;
    }
}
