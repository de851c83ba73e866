//! NATS operations through the engine (see `engine/nats`): CONNECT registers a generated id,
//! SUB/UNSUB hold one engine subscription per distinct (subject, queue), PUB publishes,
//! refusals answer with nats-server's `-ERR` and keep the connection, protocol breaches close
//! it; what the engine sends back is written as NATS lines.

use super::*;
use crate::core::engine::nats::{NatsCall, NatsConn, NatsOutput};
use crate::protocol::nats::{Fed, NatsError};
use crate::protocol::Message;

impl NatsOutput for Rec {
    fn send_nats_local(&mut self, to: Location, bytes: &[u8]) {
        self.out.push(Out::Nats(to.slot, bytes.into()));
    }
    fn nats_conn(&mut self, at: Location) -> Option<&mut NatsConn> {
        self.nats.get_mut(&at.slot)
    }
}

fn nats_out(slot: u32, text: &str) -> Out {
    Out::Nats(slot, text.as_bytes().to_vec())
}

impl Harness {
    /// Runs `f` with the engine and a [`NatsCall`] for the NATS connection in `slot`.
    fn with_call<R>(
        &mut self,
        slot: u32,
        f: impl FnOnce(Engine<'_>, &mut NatsCall<'_, '_, Rec>) -> R,
    ) -> R {
        self.rec.nats.entry(slot).or_default();
        let engine = Engine::new(&self.tables, &self.config);
        let guards: Guards<'_> = self.tables.guards();
        let mut call = NatsCall {
            conn: &mut self.conns[slot as usize],
            at: loc(slot),
            guards: &guards,
            scratch: &mut self.scratch,
            out: &mut self.rec,
            orphan: None,
        };
        f(engine, &mut call)
    }

    /// The NATS state of the connection in `slot`.
    pub(super) fn state(&mut self, slot: u32) -> &mut NatsConn {
        self.rec.nats.entry(slot).or_default()
    }

    /// Feeds `bytes` to the NATS connection in `slot`.
    pub(super) fn nats(&mut self, slot: u32, bytes: &[u8]) -> Result<Fed, NatsError> {
        let mut reader = std::mem::take(&mut self.state(slot).reader);
        let fed = self.with_call(slot, |engine, call| {
            reader.feed(bytes, 1024, |op| engine.on_nats_op(call, op))
        });
        self.state(slot).reader = reader;
        fed
    }

    /// Feeds `bytes`, every operation of which is whole and applied.
    pub(super) fn nats_ok(&mut self, slot: u32, bytes: &[u8]) {
        assert_eq!(self.nats(slot, bytes), Ok(Fed::Drained));
    }

    fn expire(&mut self, slot: u32) {
        self.with_call(slot, |engine, call| engine.expire_nats_sids(call));
    }

    /// A NATS connection after `CONNECT {"verbose":false}`; outputs discarded.
    pub(super) fn nats_client(&mut self) -> u32 {
        let slot = self.connect();
        self.nats_ok(slot, b"CONNECT {\"verbose\":false}\r\n");
        self.rec.take();
        slot
    }
}

/// The MSG lines `frames` (the deliveries recorded for `slot`) make on `nats`.
pub(super) fn written(nats: &mut NatsConn, outs: &[Out], slot: u32) -> String {
    let mut wire = Vec::new();
    for out in outs {
        if let Out::Deliver(to, sender, topic, payload) = out {
            if *to == slot {
                let frame = Frame::Deliver {
                    sender,
                    topic,
                    payload,
                };
                nats.write_frame(&mut wire, &frame);
            }
        }
    }
    String::from_utf8_lossy(&wire).into_owned()
}

#[test]
fn connect_registers_a_generated_id_once_and_verbose_answers_ok() {
    let mut h = Harness::new();
    let slot = h.connect();
    h.nats_ok(
        slot,
        b"CONNECT {}\r\nPING\r\nCONNECT {\"verbose\":false}\r\nPING\r\n",
    );
    let id = format!("nats.{NODE}.0.{slot}.1").into_bytes();
    assert_eq!(h.conns[slot as usize].client_id(), &id[..]);
    let out = h.rec.take();
    assert!(out.contains(&Out::Registered(id)));
    let nats_lines: Vec<&Out> = out.iter().filter(|o| matches!(o, Out::Nats(..))).collect();
    assert_eq!(
        nats_lines,
        [
            &nats_out(slot, "+OK\r\n"),
            &nats_out(slot, "PONG\r\n"),
            &nats_out(slot, "PONG\r\n")
        ],
        "+OK for the first CONNECT (verbose by default), none once verbose is off"
    );
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Out::Registered(_)))
            .count(),
        1
    );
}

#[test]
fn an_operation_before_connect_takes_the_defaults_unless_a_token_is_required() {
    let mut h = Harness::new();
    let slot = h.connect();
    h.nats_ok(slot, b"SUB foo 1\r\n");
    let out = h.rec.take();
    assert!(out.contains(&nats_out(slot, "+OK\r\n")));
    assert_eq!(h.conns[slot as usize].subscriptions().len(), 1);

    let mut h = Harness::new();
    h.config.session.gate = crate::core::credentials::Gate::new(Some(b"secret"), None);
    let slot = h.connect();
    assert_eq!(h.nats(slot, b"SUB foo 1\r\nPING\r\n"), Ok(Fed::Stopped));
    assert!(h
        .rec
        .take()
        .contains(&Out::Close(slot, CloseReason::AUTH_FAILED)));
    let slot = h.connect();
    h.nats_ok(
        slot,
        b"CONNECT {\"auth_token\":\"secret\",\"verbose\":false}\r\n",
    );
    assert_eq!(h.conns[slot as usize].phase(), Phase::Open);
}

#[test]
fn sids_share_one_engine_subscription_per_subject_and_queue() {
    let mut h = Harness::new();
    let slot = h.nats_client();
    h.nats_ok(slot, b"SUB foo 1\r\nSUB foo 2\r\nSUB foo q 3\r\n");
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Interest(b"foo".to_vec(), vec![]),
            Out::Interest(b"foo".to_vec(), b"q".to_vec())
        ]
    );
    assert_eq!(h.conns[slot as usize].subscriptions().len(), 2);
    h.nats_ok(slot, b"UNSUB 1\r\nUNSUB 99\r\n");
    assert_eq!(h.rec.take(), vec![], "sid 2 still holds foo");
    h.nats_ok(slot, b"UNSUB 2\r\n");
    assert_eq!(h.rec.take(), vec![Out::Interest(b"foo".to_vec(), vec![])]);
    assert_eq!(h.conns[slot as usize].subscriptions().len(), 1);
}

#[test]
fn a_publish_becomes_one_msg_per_matching_sid_and_echo_off_skips_the_publisher() {
    let mut h = Harness::new();
    let sub = h.nats_client();
    h.nats_ok(sub, b"SUB foo.* 1\r\nSUB foo.bar 2\r\nSUB x 3\r\n");
    let publisher = h.nats_client();
    h.nats_ok(publisher, b"PUB foo.bar 2\r\nhi\r\n");
    let out = h.rec.take();
    assert_eq!(
        written(h.state(sub), &out, sub),
        "MSG foo.bar 1 2\r\nhi\r\nMSG foo.bar 2 2\r\nhi\r\n"
    );

    let slot = h.connect();
    h.nats_ok(
        slot,
        b"CONNECT {\"verbose\":false,\"echo\":false}\r\nSUB foo.bar 1\r\nPUB foo.bar 1\r\nx\r\n",
    );
    let out = h.rec.take();
    assert_eq!(written(h.state(slot), &out, slot), "");
    assert!(written(h.state(sub), &out, sub).starts_with("MSG foo.bar 1 1\r\nx\r\n"));
}

#[test]
fn bad_subjects_get_nats_servers_errors_and_the_connection_stays() {
    let mut h = Harness::new();
    let slot = h.nats_client();
    let fed = h.nats(
        slot,
        b"SUB foo..bar 1\r\nSUB foo.>.x 2\r\nPUB foo.* 1\r\nx\r\nPUB a. 1\r\nx\r\nPING\r\n",
    );
    assert_eq!(fed, Ok(Fed::Drained));
    assert_eq!(
        h.rec.take(),
        vec![
            nats_out(slot, "-ERR 'Invalid Subject'\r\n"),
            nats_out(slot, "-ERR 'Invalid Subject'\r\n"),
            nats_out(slot, "-ERR 'Invalid Publish Subject'\r\n"),
            nats_out(slot, "-ERR 'Invalid Publish Subject'\r\n"),
            nats_out(slot, "PONG\r\n"),
        ]
    );
    assert!(h.state(slot).subs.is_empty());
}

#[test]
fn sids_past_the_connection_bound_are_refused_without_closing() {
    let mut h = Harness::new();
    let slot = h.nats_client();
    // subscriptions_per_connection_max is 3 in the test settings.
    h.nats_ok(slot, b"SUB a 1\r\nSUB a 2\r\nSUB a 3\r\nSUB a 4\r\n");
    let out = h.rec.take();
    assert_eq!(
        out.last(),
        Some(&nats_out(slot, "-ERR 'Maximum Subscriptions Exceeded'\r\n"))
    );
    assert_eq!(h.state(slot).subs.len(), 3);
    assert_ne!(h.conns[slot as usize].phase(), Phase::Closed);
}

#[test]
fn unsub_with_a_maximum_ends_the_sid_after_that_many_messages() {
    let mut h = Harness::new();
    let slot = h.nats_client();
    h.nats_ok(slot, b"SUB foo 1\r\nUNSUB 1 2\r\n");
    h.rec.take();
    let message = Message::plain(b"", b"foo", b"m");
    let mut wire = Vec::new();
    assert_eq!(h.state(slot).write_message(&mut wire, &message, b""), 1);
    assert_eq!(h.state(slot).write_message(&mut wire, &message, b""), 1);
    assert_eq!(h.state(slot).expired.len(), 1);
    assert_eq!(
        h.state(slot).write_message(&mut wire, &message, b""),
        0,
        "nothing more before the sid is removed"
    );
    h.expire(slot);
    assert_eq!(h.rec.take(), vec![Out::Interest(b"foo".to_vec(), vec![])]);
    assert_eq!(h.state(slot).write_message(&mut wire, &message, b""), 0);
    assert_eq!(wire, b"MSG foo 1 1\r\nm\r\nMSG foo 1 1\r\nm\r\n");
}

#[test]
fn headers_are_written_only_to_clients_that_announced_them() {
    let mut h = Harness::new();
    let plain = h.nats_client();
    h.nats_ok(plain, b"SUB foo 1\r\n");
    let with_headers = h.connect();
    h.nats_ok(
        with_headers,
        b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB foo 9\r\n",
    );
    let message = Message {
        sender: b"",
        topic: b"foo",
        reply: b"r.1",
        headers: b"NATS/1.0\r\n\r\n",
        payload: b"hi",
    };
    let mut wire = Vec::new();
    h.state(plain).write_message(&mut wire, &message, b"");
    assert_eq!(wire, b"MSG foo 1 r.1 2\r\nhi\r\n");
    wire.clear();
    h.state(with_headers)
        .write_message(&mut wire, &message, b"");
    assert_eq!(wire, b"HMSG foo 9 r.1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
}

#[test]
fn a_topic_or_reply_topic_that_cannot_stand_in_a_control_line_never_reaches_the_wire() {
    let mut h = Harness::new();
    let slot = h.nats_client();
    h.nats_ok(slot, b"SUB > 1\r\n");
    let mut wire = Vec::new();
    // Native topics may hold any byte; `>` matches a token with a blank in it.
    let forged = Message::plain(b"", b"a b\r\n-ERR 'x'", b"m");
    assert_eq!(h.state(slot).write_message(&mut wire, &forged, b""), 0);
    let direct = Message::plain(b"", b"", b"m");
    assert_eq!(h.state(slot).write_message(&mut wire, &direct, b""), 0);
    let reply_forged = Message {
        reply: b"r 1\r\nMSG x",
        ..Message::plain(b"", b"ok", b"m")
    };
    assert_eq!(
        h.state(slot).write_message(&mut wire, &reply_forged, b""),
        1
    );
    assert_eq!(wire, b"MSG ok 1 1\r\nm\r\n", "the reply topic is left out");
}

#[test]
fn protocol_breaches_close_with_nats_servers_texts() {
    let mut h = Harness::new();
    let slot = h.nats_client();
    let fed = h.nats(slot, b"HPUB foo 12 12\r\nNATS/1.0\r\n\r\n\r\nPING\r\n");
    assert_eq!(fed, Ok(Fed::Stopped), "HPUB without headers announced");
    assert!(h
        .rec
        .take()
        .contains(&Out::CloseConn(slot, CloseReason::PROTOCOL_ERROR)));

    let slot = h.connect();
    assert_eq!(h.nats(slot, b"CONNECT {bad\r\n"), Ok(Fed::Stopped));
    assert!(h
        .rec
        .take()
        .contains(&Out::CloseConn(slot, CloseReason::PROTOCOL_ERROR)));

    let slot = h.nats_client();
    assert_eq!(h.nats(slot, b"-ERR 'x'\r\n"), Ok(Fed::Stopped));
    assert_eq!(
        h.rec.take(),
        vec![Out::CloseConn(slot, CloseReason::NORMAL)]
    );
}

#[test]
fn engine_frames_become_nats_lines_or_nothing() {
    use crate::core::engine::nats::close_err_text;
    let mut nats = NatsConn::default();
    let mut wire = Vec::new();
    let frames = [
        Frame::Welcome {
            version: 1,
            heartbeat_interval_ms: 1,
            max_frame_bytes: 1,
        },
        Frame::Ping { nonce: 3 },
        Frame::Presence {
            client_id: b"a",
            online: true,
        },
        Frame::Error {
            code: ErrorCode::OVERLOADED,
            subject: b"",
            text: b"dropped",
        },
        Frame::Error {
            code: ErrorCode::LIMIT_EXCEEDED,
            subject: b"t",
            text: b"x",
        },
        Frame::Close {
            reason: CloseReason::HEARTBEAT_TIMEOUT,
            text: b"",
        },
    ];
    for frame in &frames {
        nats.write_frame(&mut wire, frame);
    }
    assert_eq!(
        String::from_utf8_lossy(&wire).into_owned(),
        "PING\r\n-ERR 'Maximum Subscriptions Exceeded'\r\n-ERR 'Stale Connection'\r\n"
    );
    assert_eq!(
        close_err_text(CloseReason::AUTH_FAILED, "bad token"),
        Some("Authorization Violation")
    );
    assert_eq!(
        close_err_text(CloseReason::PROTOCOL_ERROR, "Unknown Protocol Operation"),
        Some("Unknown Protocol Operation")
    );
    assert_eq!(close_err_text(CloseReason::NORMAL, ""), None);
    assert_eq!(close_err_text(CloseReason::SHUTDOWN, "shutdown"), None);
}
