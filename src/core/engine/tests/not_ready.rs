//! A HELLO held while the node is not ready holds the frames behind it too: they need the
//! sender's id, and routing them first would deliver with an empty sender (or make another
//! node drop the data link that carried them).

use super::*;

fn send<'a>(target: &'a [u8], payload: &'a [u8]) -> Frame<'a> {
    Frame::Send { target, payload }
}

#[test]
fn frames_after_a_held_hello_wait_for_welcome_and_carry_the_sender() {
    let mut h = Harness::new();
    let b = h.client(b"b");
    h.frame(b, sub(b"t", b""));
    h.rec.take();
    h.rec.ready = false;
    let a = h.connect();
    h.hello(a, b"a");
    h.frame(a, send(b"b", b"1"));
    h.frame(
        a,
        Frame::Publish {
            topic: b"t",
            payload: b"2",
            no_echo: false,
        },
    );
    h.frame(a, sub(b"mine", b""));
    assert_eq!(
        h.rec.take(),
        vec![Out::Held(a)],
        "nothing routed before WELCOME"
    );
    assert!(!h.tables.topics.has_subscribers(b"mine", b""));
    h.rec.ready = true;
    h.ready(a);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Local(a, FrameKind::Welcome),
            Out::Registered(b"a".to_vec()),
            Out::Deliver(b, b"a".to_vec(), vec![], b"1".to_vec()),
            Out::Deliver(b, b"a".to_vec(), b"t".to_vec(), b"2".to_vec()),
            Out::Interest(b"mine".to_vec(), vec![]),
        ]
    );
    h.frame(a, send(b"b", b"3"));
    assert_eq!(
        h.rec.take(),
        vec![Out::Deliver(b, b"a".to_vec(), vec![], b"3".to_vec())],
        "after WELCOME frames are applied at once"
    );
}

#[test]
fn more_held_frames_than_max_frame_bytes_close_as_not_ready() {
    let mut h = Harness::new();
    h.config.max_frame_bytes = 4096;
    h.rec.ready = false;
    let a = h.connect();
    h.hello(a, b"a");
    h.rec.take();
    let payload = vec![0u8; 1000];
    for _ in 0..4 {
        h.frame(a, send(b"b", &payload));
    }
    assert_eq!(h.rec.take(), vec![], "4 x 1009 bytes fit in 4096");
    h.frame(a, send(b"b", &payload));
    assert_eq!(
        h.rec.take(),
        vec![Out::CloseConn(a, CloseReason::NOT_READY)]
    );
    h.rec.ready = true;
    h.ready(a);
    assert_eq!(
        h.rec.take(),
        vec![],
        "a closed connection is never welcomed"
    );
}

#[test]
fn a_second_hello_behind_a_held_one_is_a_bad_handshake_once_welcomed() {
    let mut h = Harness::new();
    h.rec.ready = false;
    let a = h.connect();
    h.hello(a, b"a");
    h.hello(a, b"a2");
    h.rec.take();
    h.rec.ready = true;
    h.ready(a);
    let out = h.rec.take();
    assert_eq!(out[0], Out::Local(a, FrameKind::Welcome));
    assert!(
        out.contains(&Out::Close(a, CloseReason::BAD_HANDSHAKE))
            || out.contains(&Out::CloseConn(a, CloseReason::BAD_HANDSHAKE)),
        "{out:?}"
    );
}

#[test]
fn held_frames_stop_replaying_where_the_output_closes_the_connection() {
    let mut h = Harness::new();
    let b = h.client(b"b");
    h.rec.take();
    h.rec.ready = false;
    let a = h.connect();
    h.hello(a, b"a");
    for payload in [b"1", b"2", b"3"] {
        h.frame(a, send(b"b", payload));
    }
    h.rec.take();
    // The worker closes `a` (a slow consumer, say) once the first held SEND is delivered.
    h.rec.closing_after_deliveries = Some(1);
    h.rec.ready = true;
    h.ready(a);
    let delivered: Vec<Out> = h
        .rec
        .take()
        .into_iter()
        .filter(|o| matches!(o, Out::Deliver(..)))
        .collect();
    assert_eq!(
        delivered,
        vec![Out::Deliver(b, b"a".to_vec(), vec![], b"1".to_vec())],
        "nothing held after the frame during which the close was requested"
    );
}
