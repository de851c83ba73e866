//! Rules for the frames of one client connection.

use super::limits::Limit;
use super::{ClusterEvent, ConnRelay, Counter, Engine, Output};
use crate::core::credentials::{Action, Entry};
use crate::core::location::{Location, Registered};
use crate::core::router::{Fanout, Guards, SendOutcome};
use crate::core::send_memo::SendMemo;
use crate::core::session::{Phase, SessionEvent};
use crate::core::subject::{check_pattern, is_pattern};
use crate::core::topics::TableFull;
use crate::protocol::{
    decode, CloseReason, DecodeError, Decoded, EncodeError, ErrorCode, Frame, FrameKind, Message,
};

/// Whether `frame` is the PROOF a held HELLO's CHALLENGE waits for (every other frame
/// behind a held HELLO is held).
fn answers_challenge(conn: &ConnRelay, frame: &Frame<'_>) -> bool {
    conn.challenge.is_some() && matches!(frame, Frame::Proof { .. })
}

/// The close texts of a connection whose frames held behind its HELLO passed
/// `max_frame_bytes`, by what they were waiting for.
const HELD_PAST_BOUND_BEFORE_PROOF: &str =
    "more frames after HELLO than max_frame_bytes before the PROOF answering CHALLENGE: send \
     PROOF first";
const HELD_PAST_BOUND_WHILE_VERIFYING: &str =
    "more frames after HELLO than max_frame_bytes while its secret was being checked";
const HELD_PAST_BOUND_NOT_READY: &str =
    "node not ready: more frames before WELCOME than max_frame_bytes";
impl Engine<'_> {
    /// Bytes arrived on the connection (any bytes prove the peer alive); call once per
    /// receive, before its frames.
    #[inline]
    pub fn on_receive(&self, conn: &mut ConnRelay, now_ms: u64) {
        conn.session.on_bytes_received(now_ms);
    }

    /// Applies one decoded frame of the connection at `at`. Frames after a close decision are
    /// ignored (the session answers them with nothing); frames after a held HELLO are held
    /// until it is welcomed (they need the sender's id).
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
        if conn.held_hello.is_some() && !answers_challenge(conn, &frame) {
            return self.hold_frame(conn, at, &frame, out);
        }
        match conn
            .session
            .on_frame(frame, &self.config.session, conn.peer.as_deref().copied())
        {
            SessionEvent::Send {
                target,
                reply,
                headers,
                payload,
            } => {
                let memo = &mut SendMemo::default();
                self.client_send(conn, at, guards, memo, target, reply, headers, payload, out)
            }
            SessionEvent::SendAcked {
                target,
                id,
                payload,
            } => {
                if self.permitted(&mut conn.grant, at, Action::Send, target, out) {
                    self.send_acked(conn, at, guards, target, id, payload, out)
                }
            }
            SessionEvent::Ack { to, gap, ack } => self.ack(conn, at, guards, to, gap, &ack, out),
            SessionEvent::Publish {
                topic,
                reply,
                headers,
                payload,
                no_echo,
            } => {
                if !self.permitted(&mut conn.grant, at, Action::Publish, topic, out) {
                    return;
                }
                let message = Message {
                    sender: &conn.client_id,
                    topic,
                    reply,
                    headers,
                    payload,
                };
                let fanout = self.publish(at, guards, &message, no_echo, out);
                if !reply.is_empty() && fanout.is_some_and(|f| f.reached_nobody()) {
                    self.no_responders(at, topic, out);
                }
            }
            SessionEvent::Verify(hello) => self.verify_hello(conn, at, hello, guards, scratch, out),
            SessionEvent::Challenge { client_id, entry } => {
                self.challenge_hello(conn, at, client_id, entry, out)
            }
            SessionEvent::Proof { signature } => {
                self.on_proof(conn, at, signature, guards, scratch, out)
            }
            SessionEvent::Register { client_id, entry } => {
                self.on_register(conn, at, client_id, entry, scratch, out)
            }
            SessionEvent::Subscribe { topic, group } => self.subscribe(conn, at, topic, group, out),
            SessionEvent::Unsubscribe { topic, group } => {
                self.unsubscribe(conn, at, topic, group, out)
            }
            SessionEvent::Watch { client_id } => self.watch(conn, at, client_id, out),
            SessionEvent::Unwatch { client_id } => self.unwatch(conn, at, client_id),
            SessionEvent::Pong { nonce } => out.send_frame_local(at, &Frame::Pong { nonce }),
            SessionEvent::None => {}
            SessionEvent::Close { reason, text } => {
                if reason == CloseReason::AUTH_FAILED {
                    out.count(Counter::AuthFailed);
                }
                if reason != CloseReason::NORMAL {
                    out.count(Counter::ProtocolErrorClose);
                }
                out.close(at, reason, text);
            }
        }
    }

    /// A plain SEND (no flags) of the connection at `at`, from [`crate::protocol::plain_send`]:
    /// the message lane, which skips building a `Frame` and asking the session when the
    /// connection is open; anything else about the connection takes [`Self::on_frame`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn on_plain_send(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        guards: &Guards<'_>,
        memo: &mut SendMemo,
        target: &[u8],
        payload: &[u8],
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        if conn.held_hello.is_some() || conn.phase() != Phase::Open {
            let frame = Frame::Send { target, payload };
            return self.on_frame(conn, at, guards, frame, scratch, out);
        }
        self.client_send(conn, at, guards, memo, target, b"", b"", payload, out);
    }

    /// A plain PUBLISH (no flag but NO_ECHO) of the connection at `at`, from
    /// [`crate::protocol::plain_publish`]: the fan-out's message lane, which skips building a
    /// `Frame` and asking the session when the connection is open, as [`Self::on_plain_send`]
    /// does for a SEND; anything else about the connection takes [`Self::on_frame`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn on_plain_publish(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        guards: &Guards<'_>,
        topic: &[u8],
        payload: &[u8],
        no_echo: bool,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        if conn.held_hello.is_some() || conn.phase() != Phase::Open {
            let frame = Frame::Publish {
                topic,
                payload,
                no_echo,
            };
            return self.on_frame(conn, at, guards, frame, scratch, out);
        }
        if !self.permitted(&mut conn.grant, at, Action::Publish, topic, out) {
            return;
        }
        let message = Message::plain(&conn.client_id, topic, payload);
        // Without a reply topic nobody is told that no one heard it.
        let _ = self.publish(at, guards, &message, no_echo, out);
    }

    /// A SEND of an open connection, from either lane.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn client_send(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        guards: &Guards<'_>,
        memo: &mut SendMemo,
        target: &[u8],
        reply: &[u8],
        headers: &[u8],
        payload: &[u8],
        out: &mut impl Output,
    ) {
        debug_assert!(!conn.client_id.is_empty(), "routed before registration");
        if !self.permitted(&mut conn.grant, at, Action::Send, target, out) {
            return;
        }
        let message = Message {
            sender: &conn.client_id,
            topic: b"",
            reply,
            headers,
            payload,
        };
        self.send(at, guards, memo, target, &message, out);
    }

    /// A HELLO accepted by the session: welcomed and registered if its entry (if any) may
    /// register the id and the node is ready; held until the node is ready otherwise.
    #[inline(never)]
    fn on_register(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        client_id: &[u8],
        entry: Option<std::sync::Arc<Entry>>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        if !self.admit_entry(conn, at, client_id, entry, out) {
            return;
        }
        if out.node_ready() {
            self.register(conn, at, client_id.into(), scratch, out);
        } else {
            conn.held_hello = Some(client_id.into());
            out.hello_held(at);
        }
    }

    /// An UNSUBSCRIBE: out of line, like every rule off the message path, so the message
    /// path's table lookups stay inlined.
    #[cold]
    #[inline(never)]
    fn unsubscribe(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        topic: &[u8],
        group: &[u8],
        out: &mut impl Output,
    ) {
        if conn.subscriptions.remove(topic, group)
            && self.tables.topics.unsubscribe(topic, group, at)
        {
            self.announce_interest(out, topic, group);
        }
    }

    #[cold]
    #[inline(never)]
    fn unwatch(&self, conn: &mut ConnRelay, at: Location, client_id: &[u8]) {
        if conn.watches.remove(client_id) {
            self.tables.presence.unwatch(client_id, at);
        }
    }

    /// Keeps a frame that came after a held HELLO (copied: it borrows the receive buffer)
    /// for [`Self::on_ready`]; past `max_frame_bytes` of them the connection is closed with
    /// NOT_READY rather than buffering without bound.
    #[cold]
    #[inline(never)]
    fn hold_frame(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        frame: &Frame<'_>,
        out: &mut impl Output,
    ) {
        // A decoded frame always encodes (its fields passed the same bounds).
        self.hold_encoded(
            conn,
            at,
            frame.encoded_len(),
            |held| frame.encode(held),
            out,
        );
    }

    /// Keeps the frame of `frame_bytes` bytes that `encode` appends behind a held HELLO (see
    /// [`Self::hold_frame`]).
    #[cold]
    #[inline(never)]
    pub(super) fn hold_encoded(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        frame_bytes: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
        out: &mut impl Output,
    ) {
        let held_bytes_max = self.config.max_frame_bytes as usize;
        if conn.held_frames.len() + frame_bytes > held_bytes_max {
            // Said as it is: what the frames wait for (a PROOF, a secret's check, the node).
            let text = match (&conn.challenge, conn.verifying) {
                (Some(_), _) => HELD_PAST_BOUND_BEFORE_PROOF,
                (None, true) => HELD_PAST_BOUND_WHILE_VERIFYING,
                (None, false) => HELD_PAST_BOUND_NOT_READY,
            };
            conn.held_hello = None;
            conn.held_frames = Vec::new();
            conn.challenge = None;
            conn.session.close();
            out.close_conn(at, CloseReason::NOT_READY, text.into());
            return;
        }
        let encoded = encode(&mut conn.held_frames);
        debug_assert!(encoded.is_ok(), "held frames are valid");
    }

    /// Applies the frames held behind a HELLO that has just been welcomed, in order.
    #[cold]
    #[inline(never)]
    fn replay_held(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        guards: &Guards<'_>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        let held = std::mem::take(&mut conn.held_frames);
        let mut rest = &held[..];
        while !out.driven_closing() {
            let Ok(Decoded::Frame { frame, consumed }) = decode(rest, held.len()) else {
                break;
            };
            self.on_frame(conn, at, guards, frame, scratch, out);
            rest = &rest[consumed..];
        }
        debug_assert!(
            rest.is_empty() || out.driven_closing(),
            "held frames re-decode"
        );
    }

    /// A SUBSCRIBE within the limits is stored on the connection and in the topic table
    /// (a repeat changes nothing); past a limit it is refused (see [`super::limits`]).
    #[inline(never)]
    fn subscribe(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        topic: &[u8],
        group: &[u8],
        out: &mut impl Output,
    ) {
        let limits = &self.config.limits;
        if is_pattern(topic) {
            if let Err(e) = check_pattern(topic) {
                let frame = Frame::Error {
                    code: ErrorCode::INVALID_SUBJECT,
                    subject: topic,
                    text: e.text().as_bytes(),
                };
                out.send_frame_local(at, &frame);
                return;
            }
        }
        if !self.permitted(&mut conn.grant, at, Action::Subscribe, topic, out) {
            return;
        }
        let refused = if topic.len() > limits.topic_bytes_max {
            Some(Limit::TopicBytes)
        } else if group.len() > limits.group_bytes_max {
            Some(Limit::GroupBytes)
        } else if conn.subscriptions.contains(topic, group) {
            return;
        } else if conn.subscriptions.len() >= limits.subscriptions_per_connection_max {
            Some(Limit::SubscriptionsPerConnection)
        } else {
            match self
                .tables
                .topics
                .subscribe_within(topic, group, at, limits.topic_table())
            {
                Err(TableFull::Keys) => Some(Limit::Topics),
                Err(TableFull::Entries) => Some(Limit::Subscriptions),
                Ok(first_here) => {
                    conn.subscriptions.insert(topic, group);
                    if first_here {
                        self.announce_interest(out, topic, group);
                    }
                    None
                }
            }
        };
        if let Some(limit) = refused {
            self.refuse_at_limit(conn, at, limit, topic, out);
        }
    }

    /// A WATCH within the limits is stored on the connection and in the presence table, and
    /// answered at once with the id's present state (a PRESENCE frame, online or offline,
    /// cluster-wide from the location table), so the watcher never has to guess what happened
    /// before it watched; a repeat changes nothing and sends nothing. Past a limit it is
    /// refused.
    #[inline(never)]
    fn watch(&self, conn: &mut ConnRelay, at: Location, client_id: &[u8], out: &mut impl Output) {
        let limits = &self.config.limits;
        if conn.watches.contains(client_id) {
            return;
        }
        if !self.permitted(&mut conn.grant, at, Action::Watch, client_id, out) {
            return;
        }
        let refused = if conn.watches.len() >= limits.watches_per_connection_max {
            Limit::WatchesPerConnection
        } else {
            // The row is read under the same hold as the watch is added (see `core::presence`):
            // a registration racing this WATCH reaches the watcher once, here or by notice.
            let mut held = self.tables.presence.hold();
            match held.watch_within(client_id, at, limits.presence_table()) {
                Err(TableFull::Keys) => Limit::WatchedIds,
                Err(TableFull::Entries) => Limit::Watches,
                Ok(()) => {
                    let online = self.tables.locations.row(client_id).is_some();
                    drop(held);
                    conn.watches.insert(client_id.into());
                    out.presence(at, client_id, online);
                    return;
                }
            }
        };
        self.refuse_at_limit(conn, at, refused, client_id, out);
    }

    /// A SEND of `message` (from the connection at `at`) to the client registered as
    /// `target`; `None` when its payload is refused.
    #[inline]
    pub(super) fn send(
        &self,
        at: Location,
        guards: &Guards<'_>,
        memo: &mut SendMemo,
        target: &[u8],
        message: &Message<'_>,
        out: &mut impl Output,
    ) -> Option<SendOutcome> {
        if message.carried_bytes() > self.config.payload_bytes_max {
            self.refuse_payload(at, target, out);
            return None;
        }
        let outcome = self
            .tables
            .route_send_memo(guards, memo, target, message, out);
        if outcome == SendOutcome::UnknownId {
            out.count(Counter::UnknownId);
        }
        Some(outcome)
    }

    /// A PUBLISH of `message` by the connection at `at`; `None` when its payload is refused.
    #[inline]
    pub(super) fn publish(
        &self,
        at: Location,
        guards: &Guards<'_>,
        message: &Message<'_>,
        no_echo: bool,
        out: &mut impl Output,
    ) -> Option<Fanout> {
        if message.carried_bytes() > self.config.payload_bytes_max {
            self.refuse_payload(at, message.topic, out);
            return None;
        }
        Some(self.tables.route_publish(guards, at, message, no_echo, out))
    }

    /// A version-3 PUBLISH with a reply topic reached no subscriber anywhere: its sender is
    /// told at once rather than waiting for an answer that cannot come.
    #[cold]
    #[inline(never)]
    fn no_responders(&self, at: Location, topic: &[u8], out: &mut impl Output) {
        out.count(Counter::NoResponders);
        let frame = Frame::Error {
            code: ErrorCode::NO_RESPONDERS,
            subject: topic,
            text: b"no responders: no subscriber anywhere",
        };
        out.send_frame_local(at, &frame);
    }

    /// A SEND or PUBLISH whose payload the relay could not deliver within the frame size it
    /// announced: dropped, counted, and the sender told (`subject`: the target or topic).
    #[cold]
    #[inline(never)]
    fn refuse_payload(&self, at: Location, subject: &[u8], out: &mut impl Output) {
        out.count(Counter::PayloadTooLarge);
        let text = format!(
            "payload and headers longer than {} bytes (max_frame_bytes minus {} for the DELIVER header)",
            self.config.payload_bytes_max,
            crate::protocol::DELIVER_OVERHEAD_MAX
        );
        let frame = Frame::Error {
            code: ErrorCode::PAYLOAD_TOO_LARGE,
            subject,
            text: text.as_bytes(),
        };
        out.send_frame_local(at, &frame);
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

    /// The end of one receive of the connection (see [`crate::core::session::Session::on_receive_end`]): starts or
    /// stops the clock of `frame_complete_timeout_ms`.
    #[inline]
    pub fn on_receive_end(
        &self,
        conn: &mut ConnRelay,
        now_ms: u64,
        completed_frames: bool,
        frame_pending: bool,
    ) {
        conn.session
            .on_receive_end(now_ms, completed_frames, frame_pending);
    }

    /// A frame header arrived whose body has not (yet). Before HELLO is accepted anything but a
    /// HELLO header closes the connection at once (BAD_HANDSHAKE) instead of waiting for a
    /// body that cannot be a handshake. Returns whether the connection stays open.
    pub fn on_partial_header(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        kind: u8,
        out: &mut impl Output,
    ) -> bool {
        if conn.session.phase() != Phase::AwaitingHello || kind == FrameKind::Hello as u8 {
            return true;
        }
        conn.session.close();
        out.count(Counter::ProtocolErrorClose);
        out.close_conn(
            at,
            CloseReason::BAD_HANDSHAKE,
            "expected HELLO as the first frame".into(),
        );
        false
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
        guards: &Guards<'_>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        if conn.verifying || conn.challenge.is_some() {
            return;
        }
        let Some(client_id) = conn.held_hello.take() else {
            return;
        };
        if conn.session.phase() == Phase::Open {
            self.register(conn, at, client_id, scratch, out);
            self.replay_held(conn, at, guards, scratch, out);
        } else {
            conn.held_frames = Vec::new();
        }
    }

    /// Sends WELCOME, then registers `client_id` with a fresh epoch (WELCOME first: watchers
    /// and senders may reach the client as soon as it is registered). A registration that
    /// lost to a newer row elsewhere is closed as "replaced" by the router and not announced.
    #[inline(never)]
    fn register(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        client_id: Box<[u8]>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        // WELCOME answers the version the client asked for (the session accepted it).
        let welcome = Frame::Welcome {
            version: conn.session.version(),
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            max_frame_bytes: self.config.max_frame_bytes,
        };
        out.send_frame_local(at, &welcome);
        let epoch = out.next_epoch();
        let outcome = self.tables.register(&client_id, at, epoch, scratch, out);
        if self.config.announces_registrations() && !matches!(outcome, Registered::Lost(_)) {
            out.cluster(ClusterEvent::Registered {
                id: &client_id,
                epoch,
            });
        }
        conn.client_id = client_id;
    }
}
