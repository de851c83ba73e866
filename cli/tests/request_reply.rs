//! Request/reply (protocol version 3) over real sockets: reply topics and headers reach native
//! and NATS clients in both directions, a request nobody subscribes to is answered at once
//! (ERROR NO_RESPONDERS, NATS's 503), `_RR.ID.<id>` reaches a native client by id from NATS,
//! an older client receives requests without what it cannot decode, and the `req` and `reply`
//! verbs of the binary do request/reply end to end.
//!
//! Every wait is for an event (an answer, an error, a process exit), never a sleep.

mod common;

use common::nats_wire::{Line, Nats};
use common::*;
use ringrelay::client::{Client, Event};
use ringrelay::config::Config;
use ringrelay::protocol::ErrorCode;
use std::net::SocketAddr;
use std::time::Instant;

fn nats_config() -> Config {
    Config {
        nats_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    }
}

/// A NATS client that announced headers and no_responders, subscribed to `inbox.*`.
fn nats_requester(addr: SocketAddr, inbox: &str) -> Nats {
    let (mut nats, _) = Nats::open(addr);
    nats.send(
        format!(
            "CONNECT {{\"verbose\":false,\"headers\":true,\"no_responders\":true}}\r\n\
             SUB {inbox}.* 1\r\nPING\r\n"
        )
        .as_bytes(),
    );
    nats.expect("PONG");
    nats
}

/// The next event of `c`, which must be a message: `(topic, reply, headers, payload)`.
fn next_request(c: &mut Client) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    match next_event(c) {
        Event::Message {
            topic,
            reply,
            headers,
            payload,
            ..
        } => (
            topic.unwrap_or_default(),
            reply.unwrap_or_default(),
            headers.unwrap_or_default(),
            payload,
        ),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn a_nats_request_reaches_a_native_responder_whose_answer_comes_back_with_its_headers() {
    let server = start(nats_config());
    let addr = server.local_addr();
    let mut responder = connect(addr, "responder");
    responder.subscribe(b"svc.time").unwrap();
    sync(&mut responder);
    let mut requester = nats_requester(server.nats_addr().unwrap(), "_INBOX.r");
    let headers = "NATS/1.0\r\nTrace: 7\r\n\r\n";
    requester.send(
        format!(
            "HPUB svc.time _INBOX.r.1 {} {}\r\n{headers}now?\r\n",
            headers.len(),
            headers.len() + 4
        )
        .as_bytes(),
    );
    let (topic, reply, got_headers, payload) = next_request(&mut responder);
    assert_eq!(topic, b"svc.time");
    assert_eq!(reply, b"_INBOX.r.1");
    assert_eq!(got_headers, headers.as_bytes());
    assert_eq!(payload, b"now?");
    let answer_headers = b"NATS/1.0\r\nServed-By: native\r\n\r\n";
    responder
        .publish_with(&reply, b"", answer_headers, b"noon")
        .unwrap();
    responder.flush().unwrap();
    assert_eq!(
        requester.next(),
        Line::Hmsg {
            subject: "_INBOX.r.1".into(),
            sid: "1".into(),
            reply: None,
            headers: answer_headers.to_vec(),
            payload: b"noon".to_vec(),
        }
    );
}

#[test]
fn a_native_request_reaches_a_nats_responder_and_its_answer_comes_back() {
    let server = start(nats_config());
    let mut responder = Nats::connected(server.nats_addr().unwrap());
    responder.send(b"SUB svc.* q 5\r\nPING\r\n");
    responder.expect("PONG");
    let mut requester = connect(server.local_addr(), "requester");
    requester.subscribe(b"inbox.requester").unwrap();
    sync(&mut requester);
    requester
        .publish_with(b"svc.echo", b"inbox.requester", b"", b"ping")
        .unwrap();
    requester.flush().unwrap();
    let reply = match responder.next() {
        Line::Msg {
            subject,
            sid,
            reply: Some(reply),
            payload,
        } if subject == "svc.echo" && sid == "5" && payload == b"ping" => reply,
        other => panic!("expected the request with its reply subject, got {other:?}"),
    };
    responder.send(format!("PUB {reply} 4\r\npong\r\n").as_bytes());
    assert_eq!(
        next_request(&mut requester),
        (
            b"inbox.requester".to_vec(),
            vec![],
            vec![],
            b"pong".to_vec()
        )
    );
}

#[test]
fn a_request_nobody_subscribes_to_is_answered_at_once_in_each_protocol() {
    let server = start(nats_config());
    let mut requester = nats_requester(server.nats_addr().unwrap(), "_INBOX.n");
    requester.send(b"PUB nobody.home _INBOX.n.1 1\r\n?\r\n");
    assert_eq!(
        requester.next(),
        Line::Hmsg {
            subject: "_INBOX.n.1".into(),
            sid: "1".into(),
            reply: None,
            headers: b"NATS/1.0 503\r\n\r\n".to_vec(),
            payload: vec![],
        }
    );
    let mut native = connect(server.local_addr(), "native");
    native
        .publish_with(b"nobody.home", b"inbox.native", b"", b"?")
        .unwrap();
    native.flush().unwrap();
    match next_event(&mut native) {
        Event::Error { code, subject, .. } => {
            assert_eq!(code, ErrorCode::NO_RESPONDERS);
            assert_eq!(subject, b"nobody.home");
        }
        other => panic!("expected ERROR NO_RESPONDERS, got {other:?}"),
    }
    // A plain publish to nobody is not a request: no answer (the marker comes back first).
    native.publish(b"nobody.home", b"not a request").unwrap();
    assert_eq!(sync(&mut native), vec![]);
}

#[test]
fn a_nats_publish_to_rr_id_reaches_the_native_client_by_id_with_its_reply_subject() {
    let server = start(nats_config());
    let mut bob = connect(server.local_addr(), "bob");
    let mut requester = nats_requester(server.nats_addr().unwrap(), "_INBOX.b");
    requester.send(b"PUB _RR.ID.bob _INBOX.b.1 5\r\nhello\r\n");
    let (sender, topic, reply, payload) = match next_event(&mut bob) {
        Event::Message {
            sender,
            topic,
            reply,
            payload,
            ..
        } => (sender, topic, reply, payload),
        other => panic!("expected the direct message, got {other:?}"),
    };
    assert!(sender.starts_with(b"nats."), "a generated id: {sender:?}");
    assert_eq!(topic, None, "a direct message");
    assert_eq!(reply.as_deref(), Some(&b"_INBOX.b.1"[..]));
    assert_eq!(payload, b"hello");
    bob.publish(b"_INBOX.b.1", b"hi back").unwrap();
    bob.flush().unwrap();
    match requester.next() {
        Line::Msg {
            subject, payload, ..
        } => assert_eq!(
            (subject.as_str(), &payload[..]),
            ("_INBOX.b.1", &b"hi back"[..])
        ),
        other => panic!("expected the answer, got {other:?}"),
    }
}

#[test]
fn an_older_client_receives_requests_without_reply_topic_and_headers_from_any_worker() {
    let server = start(nats_config());
    let addr = server.local_addr();
    // Several version-1 subscribers, so that the two workers both serve some.
    let mut olds: Vec<Raw> = (0..4)
        .map(|i| {
            let mut raw = Raw::connect(addr);
            raw.handshake_v1(&format!("old-{i}"));
            raw.write_frame(ringrelay::protocol::Frame::Subscribe {
                topic: b"svc",
                group: b"",
            });
            raw
        })
        .collect();
    // Each old subscriber's SUBSCRIBE is applied once its own PING is answered. One
    // deadline per wait, not one per frame, so that the relay's own PINGs without the PONG
    // fail the test instead of hanging it.
    for raw in &mut olds {
        raw.write_frame(ringrelay::protocol::Frame::Ping { nonce: 1 });
        let deadline = Instant::now() + WAIT;
        loop {
            match raw.next_frame_by(deadline) {
                Ok(Owned::Pong(1)) => break,
                Ok(Owned::Ping(_)) => {}
                other => panic!("expected PONG, got {other:?}"),
            }
        }
    }
    let mut requester = connect(addr, "new");
    requester
        .publish_with(b"svc", b"inbox.new", b"NATS/1.0\r\n\r\n", b"req")
        .unwrap();
    requester.flush().unwrap();
    for raw in &mut olds {
        // Bounded overall like the PONG above: PINGs alone do not keep the wait going.
        let deadline = Instant::now() + WAIT;
        loop {
            match raw.next_frame_by(deadline) {
                Ok(Owned::Deliver {
                    sender,
                    topic,
                    payload,
                }) => {
                    assert_eq!(
                        (&sender[..], &topic[..], &payload[..]),
                        (&b"new"[..], &b"svc"[..], &b"req"[..])
                    );
                    break;
                }
                Ok(Owned::Ping(_)) => {}
                other => panic!("expected a plain DELIVER, got {other:?}"),
            }
        }
    }
}

/// Publishes probe requests to `topic` from `probe` until one is answered (the responder is
/// subscribed); NO_RESPONDERS until then. Bounded by [`SLOW_WAIT`].
fn await_responder(probe: &mut Client, topic: &str) {
    let inbox = format!("inbox.{}", String::from_utf8_lossy(probe.client_id()));
    probe.subscribe(inbox.as_bytes()).unwrap();
    sync(probe);
    let deadline = Instant::now() + SLOW_WAIT;
    loop {
        assert!(Instant::now() < deadline, "no responder on {topic}");
        probe
            .publish_with(topic.as_bytes(), inbox.as_bytes(), b"", b"probe")
            .unwrap();
        probe.flush().unwrap();
        match next_event_within(probe, SLOW_WAIT) {
            Event::Message { .. } => return,
            Event::Error { code, .. } if code == ErrorCode::NO_RESPONDERS => {
                // Not subscribed yet: the verb is still starting. Wait for it to exist, not
                // for time: the next probe goes once this answer came back.
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn the_req_verb_gets_the_answer_of_the_reply_verb_and_the_reply_verb_sees_its_headers() {
    let (_relay, addr) = serve(&[]);
    let server = addr.to_string();
    // Two requests: the probe that finds it subscribed, then the verb's.
    let mut reply = Proc::spawn(&[
        "reply",
        "--server",
        &server,
        "--id",
        "clock",
        "--count",
        "2",
        "--timeout-ms",
        "20000",
        "time.now",
        "it is noon",
    ]);
    let mut probe = connect(addr, "probe");
    await_responder(&mut probe, "time.now");
    let mut req = Proc::spawn(&[
        "req",
        "--server",
        &server,
        "--id",
        "asker",
        "--header",
        "Trace-Id: 7",
        "time.now",
        "what time is it",
    ]);
    let (status, out) = req.wait_exit();
    assert!(status.success(), "req: {status}; stderr:\n{}", req.stderr());
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].starts_with("clock on _INBOX.asker.") && out[0].ends_with(": it is noon"),
        "{out:?}"
    );
    let (status, out) = reply.wait_exit();
    assert!(
        status.success(),
        "reply: {status}; stderr:\n{}",
        reply.stderr()
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out[1].starts_with("asker on time.now reply _INBOX.asker.")
            && out[1].ends_with(" headers NATS/1.0\\r\\nTrace-Id: 7\\r\\n\\r\\n: what time is it"),
        "{out:?}"
    );
}

#[test]
fn the_req_verb_exits_two_at_once_when_nobody_subscribes_and_three_when_nobody_answers() {
    let (_relay, addr) = serve(&[]);
    let server = addr.to_string();
    let mut req = Proc::spawn(&[
        "req",
        "--server",
        &server,
        "--timeout-ms",
        "60000",
        "nobody.home",
        "?",
    ]);
    let (status, out) = req.wait_exit();
    assert_eq!(status.code(), Some(2), "stderr:\n{}", req.stderr());
    assert!(out.is_empty());
    assert!(req.stderr().contains("no responders"), "{}", req.stderr());
    // A subscriber that never answers: the request times out.
    let mut silent = connect(addr, "silent");
    silent.subscribe(b"silent.svc").unwrap();
    sync(&mut silent);
    let mut req = Proc::spawn(&[
        "req",
        "--server",
        &server,
        "--timeout-ms",
        "300",
        "silent.svc",
        "?",
    ]);
    let (status, _) = req.wait_exit();
    assert_eq!(status.code(), Some(3), "stderr:\n{}", req.stderr());
    assert!(req.stderr().contains("no answer"), "{}", req.stderr());
}

#[test]
fn a_native_send_to_a_nats_connections_id_arrives_on_its_rr_id_subject() {
    let server = start(nats_config());
    let mut nats = Nats::connected(server.nats_addr().unwrap());
    nats.send(b"SUB _RR.ID.> 1\r\nPING\r\n");
    nats.expect("PONG");
    // The NATS connection's generated id, as a native client sees it: the sender of its
    // messages.
    let mut native = connect(server.local_addr(), "native");
    native.subscribe(b"who").unwrap();
    sync(&mut native);
    nats.send(b"PUB who 2\r\nme\r\n");
    let id = match next_event(&mut native) {
        Event::Message { sender, .. } => sender,
        other => panic!("expected the NATS client's message, got {other:?}"),
    };
    native
        .send_with(&id, b"answers.here", b"", b"direct")
        .unwrap();
    native.flush().unwrap();
    let subject = format!("_RR.ID.{}", String::from_utf8_lossy(&id));
    assert_eq!(
        nats.next(),
        Line::Msg {
            subject,
            sid: "1".into(),
            reply: Some("answers.here".into()),
            payload: b"direct".to_vec(),
        }
    );
}
