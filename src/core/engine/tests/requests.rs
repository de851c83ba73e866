//! Reply topics and headers (protocol version 3) through the engine: a request carries its
//! reply topic and headers to every receiver, native or NATS; a request that reaches nobody is
//! answered at once (ERROR NO_RESPONDERS natively, the 503 status message to a NATS client
//! that asked for it); `_RR.ID.<id>` reaches a client by id from NATS.

use super::*;
use crate::protocol::nats::encode::NO_RESPONDERS_HEADERS;
use crate::protocol::{decode, encode_publish_extended, encode_send_extended, Decoded};

impl Harness {
    /// Applies the encoded native frame `wire` of the client in `slot`.
    fn wire(&mut self, slot: u32, wire: &[u8]) {
        let Ok(Decoded::Frame { frame, .. }) = decode(wire, usize::MAX) else {
            panic!("test frame does not decode");
        };
        self.frame(slot, frame);
    }

    /// A version-3 PUBLISH of `message` (its sender unused) from the client in `slot`.
    fn publish_extended(&mut self, slot: u32, message: &Message<'_>) {
        let mut wire = Vec::new();
        encode_publish_extended(&mut wire, message, false).expect("a test request is always valid");
        self.wire(slot, &wire);
    }
}

fn request<'a>(topic: &'a [u8], reply: &'a [u8], headers: &'a [u8]) -> Message<'a> {
    Message {
        sender: b"",
        topic,
        reply,
        headers,
        payload: b"?",
    }
}

#[test]
fn a_native_request_carries_its_reply_topic_and_headers_to_each_subscriber() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.frame(b, sub(b"time.now", b""));
    h.rec.take();
    h.publish_extended(a, &request(b"time.now", b"inbox.a.1", b"k: v"));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Deliver(b, b"a".to_vec(), b"time.now".to_vec(), b"?".to_vec()),
            Out::Extensions(b, b"inbox.a.1".to_vec(), b"k: v".to_vec()),
        ]
    );
}

#[test]
fn a_native_request_that_reaches_nobody_is_answered_no_responders_at_once() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.publish_extended(a, &request(b"time.now", b"inbox.a.1", b""));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::NoResponders),
            Out::LocalError(a, ErrorCode::NO_RESPONDERS)
        ]
    );
    // Headers without a reply topic are not a request: nobody to tell.
    h.publish_extended(a, &request(b"time.now", b"", b"k: v"));
    assert_eq!(h.rec.take(), vec![]);
}

#[test]
fn a_native_send_with_a_reply_topic_reaches_its_target_with_it() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    let mut wire = Vec::new();
    let message = Message {
        topic: b"",
        ..request(b"", b"inbox.a.2", b"")
    };
    encode_send_extended(&mut wire, b"b", &message).expect("a test request is always valid");
    h.wire(a, &wire);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Deliver(b, b"a".to_vec(), vec![], b"?".to_vec()),
            Out::Extensions(b, b"inbox.a.2".to_vec(), vec![]),
        ]
    );
}

#[test]
fn a_version_2_client_that_sends_a_reply_topic_is_closed_with_the_reason() {
    let mut h = Harness::new();
    let a = h.connect();
    h.frame(
        a,
        Frame::Hello {
            version: 2,
            client_id: b"old",
            token: b"",
        },
    );
    h.rec.take();
    h.publish_extended(a, &request(b"t", b"inbox", b""));
    let out = h.rec.take();
    assert!(
        out.contains(&Out::Close(a, CloseReason::PROTOCOL_ERROR)),
        "{out:?}"
    );
}

#[test]
fn a_nats_request_carries_its_reply_subject_and_headers_to_native_and_nats_subscribers() {
    let mut h = Harness::new();
    let native = h.client(b"native");
    h.frame(native, sub(b"svc.time", b""));
    let nats_sub = h.nats_client();
    h.nats_ok(nats_sub, b"SUB svc.* 4\r\n");
    let requester = h.connect();
    h.nats_ok(
        requester,
        b"CONNECT {\"verbose\":false,\"headers\":true}\r\n",
    );
    h.rec.take();
    h.nats_ok(
        requester,
        b"HPUB svc.time _INBOX.r.1 18 19\r\nNATS/1.0\r\nk: v\r\n\r\n?\r\n",
    );
    let out = h.rec.take();
    let headers = b"NATS/1.0\r\nk: v\r\n\r\n".to_vec();
    for to in [native, nats_sub] {
        assert!(
            out.contains(&Out::Extensions(
                to,
                b"_INBOX.r.1".to_vec(),
                headers.clone()
            )),
            "slot {to}: {out:?}"
        );
    }
}

#[test]
fn a_nats_request_that_reaches_nobody_gets_the_503_status_only_when_it_asked() {
    let mut h = Harness::new();
    let asked = h.connect();
    h.nats_ok(
        asked,
        b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n\
          SUB i.a.* 1\r\n",
    );
    h.rec.take();
    h.nats_ok(asked, b"PUB nobody.home i.a.1 1\r\n?\r\n");
    let id = h.conns[asked as usize].client_id().to_vec();
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::NoResponders),
            Out::Deliver(asked, id, b"i.a.1".to_vec(), vec![]),
            Out::Extensions(asked, vec![], NO_RESPONDERS_HEADERS.to_vec()),
        ]
    );
    let mut h = Harness::new();
    let not_asked = h.nats_client();
    h.nats_ok(not_asked, b"SUB i.b.* 1\r\n");
    h.rec.take();
    h.nats_ok(not_asked, b"PUB nobody.home i.b.1 1\r\n?\r\n");
    assert_eq!(
        h.rec.take(),
        vec![Out::Count(Counter::NoResponders)],
        "counted, not answered"
    );
}

#[test]
fn a_nats_publish_to_rr_id_is_a_send_to_that_id_and_an_unknown_id_has_no_responders() {
    let mut h = Harness::new();
    let bob = h.client(b"bob");
    let nats = h.connect();
    h.nats_ok(
        nats,
        b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n\
          SUB i.n.* 1\r\n",
    );
    h.rec.take();
    h.nats_ok(nats, b"PUB _RR.ID.bob i.n.1 2\r\nhi\r\n");
    let id = h.conns[nats as usize].client_id().to_vec();
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Deliver(bob, id.clone(), vec![], b"hi".to_vec()),
            Out::Extensions(bob, b"i.n.1".to_vec(), vec![]),
        ]
    );
    h.nats_ok(nats, b"PUB _RR.ID.nobody i.n.2 2\r\nhi\r\n");
    let out = h.rec.take();
    assert!(out.contains(&Out::Count(Counter::UnknownId)), "{out:?}");
    assert!(out.contains(&Out::Count(Counter::NoResponders)), "{out:?}");
    assert!(
        out.contains(&Out::Deliver(nats, id, b"i.n.2".to_vec(), vec![])),
        "{out:?}"
    );
}
