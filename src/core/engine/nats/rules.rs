//! The rules for a NATS connection's operations: each becomes what the engine does for the
//! equivalent native frame, plus the NATS answers (+OK in verbose mode, PONG, `-ERR`).

use super::subs::Inserted;
use super::{NatsConn, DIRECT_SUBJECT_PREFIX, NATS_ID_PREFIX};
use crate::core::credentials::Action;
use crate::core::engine::{ConnRelay, Counter, Engine, Output};
use crate::core::location::Location;
use crate::core::router::{Guards, SendOutcome};
use crate::core::send_memo::SendMemo;
use crate::core::session::Phase;
use crate::protocol::nats::encode::{write_err, NO_RESPONDERS_HEADERS, OK, PONG};
use crate::protocol::nats::{subject, ClientOp, ConnectOptions, NatsError};
use crate::protocol::{
    encode_publish_extended, encode_send_extended, publish_extended_len, send_extended_len,
    CloseReason, Frame, Message, CLIENT_ID_LEN_MAX, EXTENDED_VERSION_MIN, TOPIC_LEN_MAX,
};

/// Where the NATS rules' decisions go: the engine's [`Output`], plus NATS lines for the
/// connection being driven.
pub trait NatsOutput: Output {
    /// Queue NATS protocol bytes (+OK, PONG, -ERR) to the local connection at `to`.
    fn send_nats_local(&mut self, to: Location, bytes: &[u8]);
    /// The NATS state of the local connection at `at` (`None`: not a live NATS connection).
    /// It stays where the output keeps it, because writing a message to the connection
    /// (its own publish, with echo) needs its sids while a rule runs.
    fn nats_conn(&mut self, at: Location) -> Option<&mut NatsConn>;
}

/// The id the relay gives the NATS connection at `at` (a NATS client names none).
pub(super) fn nats_client_id(at: Location) -> Vec<u8> {
    let mut client_id = NATS_ID_PREFIX.to_vec();
    client_id.extend_from_slice(
        format!("{}.{}.{}.{}", at.node, at.worker, at.slot, at.generation).as_bytes(),
    );
    client_id
}

/// The `-ERR` texts of nats-server for what these rules refuse without closing.
const INVALID_SUBJECT: &str = "Invalid Subject";
const INVALID_PUBLISH_SUBJECT: &str = "Invalid Publish Subject";
const TOO_MANY_SUBSCRIPTIONS: &str = "Maximum Subscriptions Exceeded";

/// One NATS operation being applied: the connection and where the decisions go.
pub struct NatsCall<'c, 'g, O> {
    pub conn: &'c mut ConnRelay,
    pub at: Location,
    pub guards: &'c Guards<'g>,
    pub scratch: &'c mut Vec<Location>,
    pub out: &'c mut O,
    /// Stands in for missing NATS state (see [`Self::nats`]).
    pub orphan: Option<NatsConn>,
}

impl<O: NatsOutput> NatsCall<'_, '_, O> {
    /// The connection's NATS state. It always exists while a rule runs for it (the worker
    /// drives only live NATS connections); a default stands in otherwise, so a broken
    /// caller loses that operation's effect, never the relay.
    fn nats(&mut self) -> &mut NatsConn {
        let at = self.at;
        match self.out.nats_conn(at) {
            Some(nats) => nats,
            None => {
                debug_assert!(false, "a NATS rule for a connection without NATS state");
                self.orphan.get_or_insert_with(Default::default)
            }
        }
    }

    fn err(&mut self, text: &str) {
        let mut line = Vec::with_capacity(text.len() + 9);
        write_err(&mut line, text);
        self.out.send_nats_local(self.at, &line);
    }

    fn ok_if_verbose(&mut self) {
        if self.nats().verbose() && self.conn.phase() != Phase::Closed {
            self.out.send_nats_local(self.at, OK);
        }
    }

    fn close(&mut self, reason: CloseReason, err_text: &'static str) {
        self.conn.session.close();
        if reason != CloseReason::NORMAL {
            self.out.count(Counter::ProtocolErrorClose);
        }
        self.out.close_conn(self.at, reason, err_text.into());
    }
}

impl Engine<'_> {
    /// Applies one NATS operation. Returns whether the connection goes on (false once a close
    /// was decided: the rest of the receive is dropped).
    pub fn on_nats_op<O: NatsOutput>(
        &self,
        call: &mut NatsCall<'_, '_, O>,
        op: ClientOp<'_>,
    ) -> bool {
        match op {
            ClientOp::Connect { json } => self.nats_connect(call, json),
            ClientOp::Pub {
                subject,
                reply,
                payload,
            } => self.nats_publish(call, subject, reply, b"", payload),
            ClientOp::Hpub {
                subject,
                reply,
                headers,
                payload,
            } => {
                if !call.nats().options.as_ref().is_some_and(|o| o.headers) {
                    // nats-server closes a client that sends HPUB without announcing headers.
                    call.close(CloseReason::PROTOCOL_ERROR, "Parser Error");
                } else {
                    self.nats_publish(call, subject, reply, headers, payload);
                }
            }
            ClientOp::Sub {
                subject,
                queue,
                sid,
            } => self.nats_subscribe(call, subject, queue, sid),
            ClientOp::Unsub { sid, max_msgs } => self.nats_unsubscribe(call, sid, max_msgs),
            // Behind a held HELLO a PING waits its turn: its PONG tells the client that what
            // it sent before was applied (NATS clients flush this way).
            ClientOp::Ping if call.conn.held_hello.is_some() => {
                self.nats_frame(call, Frame::Ping { nonce: 0 })
            }
            ClientOp::Ping => call.out.send_nats_local(call.at, PONG),
            // Any bytes prove the peer alive (the session counts them): nothing else to do.
            ClientOp::Pong | ClientOp::Ignored => {}
            // nats-server closes a client that sends -ERR, without an answer.
            ClientOp::ClientError => call.close(CloseReason::NORMAL, ""),
        }
        call.conn.phase() != Phase::Closed
    }

    /// The first CONNECT registers the connection (a HELLO with a generated id and the
    /// CONNECT's `auth_token`, so the engine's token check and handshake apply); a later one
    /// only changes the options, as in nats-server.
    fn nats_connect<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>, json: &[u8]) {
        let options = match ConnectOptions::parse(json) {
            Ok(options) => options,
            Err(e) => return call.close(CloseReason::PROTOCOL_ERROR, e.err_text()),
        };
        let first = call.nats().options.is_none();
        // An nkey answers the INFO's nonce; without a nonce (no key entries) it is ignored,
        // as nats-server ignores it when it has no nkeys.
        let nonce = first.then(|| call.nats().nonce.take()).flatten();
        if let (Some(nonce), Some(nkey)) = (nonce, options.nkey.clone()) {
            let sig = options.sig.clone().unwrap_or_default();
            call.nats().options = Some(options);
            self.nats_connect_nkey(call, &nkey, &sig, &nonce);
            return call.ok_if_verbose();
        }
        // A user and password name a credentials entry and its secret, as NAME:SECRET does
        // in a native HELLO's token.
        let token = match (&options.user, &options.auth_token) {
            (Some(user), _) => format!("{user}:{}", options.pass.as_deref().unwrap_or_default()),
            (None, token) => token.clone().unwrap_or_default(),
        };
        call.nats().options = Some(options);
        if first {
            self.nats_hello(call, token.as_bytes());
        }
        call.ok_if_verbose();
    }

    /// An operation other than CONNECT, PING or PONG before CONNECT: nats-server applies its
    /// default options (no token: refused by the engine when one is required).
    fn nats_implicit_connect<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>) {
        if call.nats().options.is_none() {
            call.nats().options = Some(ConnectOptions::default());
            self.nats_hello(call, b"");
        }
    }

    fn nats_hello<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>, token: &[u8]) {
        let client_id = nats_client_id(call.at);
        call.conn.id_generated = true;
        let hello = Frame::Hello {
            // Version 3, for reply subjects and headers; not 4: a NATS client cannot answer
            // CHALLENGE (its key proof is CONNECT's nkey and sig). A NATS connection never
            // acknowledges: the output refuses acknowledged messages to it.
            version: EXTENDED_VERSION_MIN,
            client_id: &client_id,
            token,
        };
        self.nats_frame(call, hello);
    }

    /// Applies the native frame an operation stands for.
    fn nats_frame<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>, frame: Frame<'_>) {
        self.on_frame(
            call.conn,
            call.at,
            call.guards,
            frame,
            call.scratch,
            call.out,
        );
    }

    /// PUB and HPUB. A subject that nats-server refuses gets its `-ERR` (the connection
    /// stays); so does a subject or reply subject longer than a topic may be
    /// ([`TOPIC_LEN_MAX`]). A subject under [`DIRECT_SUBJECT_PREFIX`] is a SEND to the id
    /// after it; any other a PUBLISH. A request (a reply subject) that reaches no subscriber
    /// anywhere is answered with the 503 status message when the client asked for that
    /// (CONNECT `no_responders`).
    fn nats_publish<O: NatsOutput>(
        &self,
        call: &mut NatsCall<'_, '_, O>,
        topic: &[u8],
        reply: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) {
        self.nats_implicit_connect(call);
        if !subject::valid_publish(topic)
            || topic.len() > TOPIC_LEN_MAX
            || reply.len() > TOPIC_LEN_MAX
        {
            return call.err(INVALID_PUBLISH_SUBJECT);
        }
        // +OK before the message, as nats-server writes it (the client may be a subscriber).
        call.ok_if_verbose();
        let direct = topic
            .strip_prefix(DIRECT_SUBJECT_PREFIX)
            .filter(|id| id.len() <= CLIENT_ID_LEN_MAX);
        let no_echo = !call.nats().echo();
        let mut message = Message {
            sender: b"",
            topic: if direct.is_some() { b"" } else { topic },
            reply,
            headers,
            payload,
        };
        if call.conn.held_hello.is_some() {
            // Not registered yet: kept until the node is ready, as native frames are.
            return self.hold_nats_publish(call, direct, &message, no_echo);
        }
        if call.conn.phase() != Phase::Open {
            return;
        }
        let (action, subject) = match direct {
            Some(target) => (Action::Send, target),
            None => (Action::Publish, topic),
        };
        if !self.permitted(&mut call.conn.grant, call.at, action, subject, call.out) {
            return;
        }
        message.sender = call.conn.client_id();
        let reached_nobody = match direct {
            Some(target) => {
                let memo = &mut SendMemo::default();
                let sent = self.send(call.at, call.guards, memo, target, &message, call.out);
                sent == Some(SendOutcome::UnknownId)
            }
            None => {
                let fanout = self.publish(call.at, call.guards, &message, no_echo, call.out);
                fanout.is_some_and(|f| f.reached_nobody())
            }
        };
        if !reply.is_empty() && reached_nobody {
            self.nats_no_responders(call, reply);
        }
    }

    /// A request reached no subscriber anywhere: counted, as native ones are, and answered
    /// with nats-server's 503 status message on its reply subject when the client asked for
    /// that (CONNECT `no_responders`).
    #[cold]
    #[inline(never)]
    fn nats_no_responders<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>, reply: &[u8]) {
        call.out.count(Counter::NoResponders);
        if call.nats().no_responders() {
            let status = Message {
                sender: call.conn.client_id(),
                topic: reply,
                reply: b"",
                headers: NO_RESPONDERS_HEADERS,
                payload: b"",
            };
            call.out.deliver(call.at, &status);
        }
    }

    /// A PUB or HPUB behind a held HELLO, kept as the native frame it stands for.
    #[cold]
    #[inline(never)]
    fn hold_nats_publish<O: NatsOutput>(
        &self,
        call: &mut NatsCall<'_, '_, O>,
        direct: Option<&[u8]>,
        message: &Message<'_>,
        no_echo: bool,
    ) {
        let (conn, at) = (&mut *call.conn, call.at);
        match direct {
            _ if !message.is_extended() => {
                let frame = match direct {
                    Some(target) => Frame::Send {
                        target,
                        payload: message.payload,
                    },
                    None => Frame::Publish {
                        topic: message.topic,
                        payload: message.payload,
                        no_echo,
                    },
                };
                self.hold_encoded(conn, at, frame.encoded_len(), |h| frame.encode(h), call.out);
            }
            Some(target) => {
                let len = send_extended_len(target, message);
                let encode = |h: &mut Vec<u8>| encode_send_extended(h, target, message);
                self.hold_encoded(conn, at, len, encode, call.out);
            }
            None => {
                let len = publish_extended_len(message);
                let encode = |h: &mut Vec<u8>| encode_publish_extended(h, message, no_echo);
                self.hold_encoded(conn, at, len, encode, call.out);
            }
        }
    }

    /// SUB: the engine subscribes the first sid of each (subject, queue); its refusals (a
    /// limit) reach the client as `-ERR` through the translation and undo the sid.
    fn nats_subscribe<O: NatsOutput>(
        &self,
        call: &mut NatsCall<'_, '_, O>,
        topic: &[u8],
        queue: &[u8],
        sid: &[u8],
    ) {
        self.nats_implicit_connect(call);
        if !subject::valid_subscribe(topic) {
            return call.err(INVALID_SUBJECT);
        }
        let sids_max = self.config.limits.subscriptions_per_connection_max;
        match call.nats().subs.insert(sid, topic, queue, sids_max) {
            Inserted::Full => return call.err(TOO_MANY_SUBSCRIPTIONS),
            Inserted::Duplicate | Inserted::Shared => {}
            Inserted::First => {
                let frame = Frame::Subscribe {
                    topic,
                    group: queue,
                };
                self.nats_frame(call, frame);
                // Behind a held HELLO the SUBSCRIBE waits with it: the sid stays, and the
                // engine subscribes when the HELLO is welcomed (a refusal then is told with
                // -ERR; the sid stays until UNSUB).
                let held = call.conn.hello_held();
                if !held && !call.conn.subscriptions().contains(topic, queue) {
                    call.nats().subs.remove(sid);
                    return;
                }
            }
        }
        call.ok_if_verbose();
    }

    /// UNSUB: at once, or after `max_msgs` deliveries in all; the engine unsubscribes when
    /// the last sid of a (subject, queue) goes. An unknown sid is not an error.
    fn nats_unsubscribe<O: NatsOutput>(
        &self,
        call: &mut NatsCall<'_, '_, O>,
        sid: &[u8],
        max_msgs: Option<u64>,
    ) {
        self.nats_implicit_connect(call);
        let now = match max_msgs {
            Some(max) => call.nats().subs.limit(sid, max),
            None => true,
        };
        if now {
            self.nats_remove_sid(call, sid);
        }
        call.ok_if_verbose();
    }

    fn nats_remove_sid<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>, sid: &[u8]) {
        if let Some((topic, group)) = call.nats().subs.remove(sid) {
            let frame = Frame::Unsubscribe {
                topic: &topic,
                group: &group,
            };
            self.nats_frame(call, frame);
        }
    }

    /// The connection's bytes are not NATS ([`NatsError`]): it is closed after nats-server's
    /// `-ERR` for the error (an over-long payload as FRAME_TOO_LARGE, the rest as
    /// PROTOCOL_ERROR).
    pub fn on_nats_error<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>, error: &NatsError) {
        let reason = match error {
            NatsError::PayloadTooLarge { .. } => CloseReason::FRAME_TOO_LARGE,
            _ => CloseReason::PROTOCOL_ERROR,
        };
        call.close(reason, error.err_text());
    }

    /// Removes the sids that reached their `UNSUB` maximum while messages were written to
    /// the connection (see [`NatsConn::expired`]).
    pub fn expire_nats_sids<O: NatsOutput>(&self, call: &mut NatsCall<'_, '_, O>) {
        let expired = std::mem::take(&mut call.nats().expired);
        for sid in &expired {
            self.nats_remove_sid(call, sid);
        }
    }
}
