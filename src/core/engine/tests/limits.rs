//! The limits of one client (subscriptions, watches, name lengths, the node's tables, the
//! payload that fits a DELIVER) and the policy past each: ERROR first, CLOSE on a repeat.

use super::*;

fn topic(i: usize) -> Vec<u8> {
    format!("t{i}").into_bytes()
}

#[test]
fn subscription_past_the_per_connection_limit_errors_then_closes() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    for i in 0..3 {
        h.frame(a, sub(&topic(i), b""));
    }
    h.rec.take();
    h.frame(a, sub(b"t3", b""));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(a, ErrorCode::LIMIT_EXCEEDED),
        ]
    );
    assert_eq!(h.conns[a as usize].subscriptions().len(), 3);
    assert!(!h.tables.topics.has_subscribers(b"t3", b""));
    h.frame(a, sub(b"t1", b""));
    assert_eq!(
        h.rec.take(),
        vec![],
        "a repeat of a held subscription is no new one"
    );
    h.frame(a, sub(b"t4", b""));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::CloseConn(a, CloseReason::LIMIT_EXCEEDED),
        ]
    );
    assert_eq!(h.conns[a as usize].phase(), Phase::Closed);
}

#[test]
fn unsubscribe_frees_room_under_the_limit() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    for i in 0..3 {
        h.frame(a, sub(&topic(i), b""));
    }
    h.frame(a, unsub(b"t0", b""));
    h.rec.take();
    h.frame(a, sub(b"t9", b""));
    assert_eq!(h.rec.take(), vec![Out::Interest(b"t9".to_vec(), vec![])]);
}

#[test]
fn unsubscribe_of_what_the_connection_never_subscribed_leaves_others_alone() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.frame(b, sub(b"t", b""));
    h.rec.take();
    h.frame(a, unsub(b"t", b""));
    assert_eq!(h.rec.take(), vec![]);
    assert!(h.tables.topics.has_subscribers(b"t", b""));
}

#[test]
fn topic_and_group_longer_than_their_limits_are_refused() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    h.frame(a, sub(b"123456789", b""));
    h.frame(a, sub(b"t", b"12345"));
    let out = h.rec.take();
    assert_eq!(
        out,
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(a, ErrorCode::LIMIT_EXCEEDED),
            Out::Count(Counter::LimitRefused),
            Out::CloseConn(a, CloseReason::LIMIT_EXCEEDED),
        ]
    );
    assert!(h.tables.topics.is_empty());
}

#[test]
fn topics_max_bounds_the_node_not_the_connection() {
    let mut h = Harness::new();
    let clients: Vec<u32> = (0..3).map(|i| h.client(&topic(100 + i))).collect();
    // 5 distinct topics fill the table; a sixth is refused whoever asks.
    for (n, i) in (0..5).enumerate() {
        h.frame(clients[n % 2], sub(&topic(i), b""));
    }
    h.rec.take();
    h.frame(clients[2], sub(b"t5", b""));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(clients[2], ErrorCode::LIMIT_EXCEEDED),
        ]
    );
    // A topic already in the table takes no new room.
    h.frame(clients[2], sub(b"t0", b""));
    assert_eq!(h.rec.take(), vec![]);
    assert_eq!(h.tables.topics.len(), 5);
}

#[test]
fn watch_past_the_per_connection_limit_errors_then_closes() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    for i in 0..3 {
        h.frame(
            a,
            Frame::Watch {
                client_id: &topic(i),
            },
        );
    }
    assert_eq!(
        h.rec.take(),
        offline_answers(a, 0..3),
        "each new watch is answered"
    );
    h.frame(a, Frame::Watch { client_id: b"t0" });
    assert_eq!(h.rec.take(), vec![], "a repeat is no new watch");
    h.frame(a, Frame::Watch { client_id: b"t3" });
    h.frame(a, Frame::Watch { client_id: b"t4" });
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(a, ErrorCode::LIMIT_EXCEEDED),
            Out::Count(Counter::LimitRefused),
            Out::CloseConn(a, CloseReason::LIMIT_EXCEEDED),
        ]
    );
    assert_eq!(h.conns[a as usize].watches().len(), 3);
}

#[test]
fn watched_ids_max_bounds_the_node() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    for i in 0..3 {
        h.frame(
            a,
            Frame::Watch {
                client_id: &topic(i),
            },
        );
    }
    for i in 3..5 {
        h.frame(
            b,
            Frame::Watch {
                client_id: &topic(i),
            },
        );
    }
    h.rec.take();
    h.frame(b, Frame::Watch { client_id: b"t0" });
    assert_eq!(
        h.rec.take(),
        offline_answers(b, 0..1),
        "an id already watched takes no new room"
    );
    h.frame(b, Frame::Watch { client_id: b"t9" });
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(b, ErrorCode::LIMIT_EXCEEDED),
        ]
    );
}

#[test]
fn a_closed_connection_gives_its_room_back() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    for i in 0..3 {
        h.frame(a, sub(&topic(i), b""));
        h.frame(
            a,
            Frame::Watch {
                client_id: &topic(i),
            },
        );
    }
    h.close(a);
    assert!(h.tables.topics.is_empty());
    let b = h.client(b"b");
    for i in 10..13 {
        h.frame(
            b,
            Frame::Watch {
                client_id: &topic(i),
            },
        );
    }
    h.rec.take();
    let c = h.client(b"c");
    h.frame(c, Frame::Watch { client_id: b"t20" });
    h.frame(c, Frame::Watch { client_id: b"t21" });
    assert_eq!(
        h.rec.take(),
        offline_answers(c, 20..22),
        "a's three watched ids were released"
    );
}

#[test]
fn payload_that_would_not_fit_a_deliver_is_refused_and_counted() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.frame(b, sub(b"t", b""));
    h.rec.take();
    let max = h.config.payload_bytes_max;
    let fits = vec![1u8; max];
    let too_long = vec![1u8; max + 1];
    h.frame(
        a,
        Frame::Send {
            target: b"b",
            payload: &too_long,
        },
    );
    h.frame(
        a,
        Frame::Publish {
            topic: b"t",
            payload: &too_long,
            no_echo: false,
        },
    );
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::PayloadTooLarge),
            Out::LocalError(a, ErrorCode::PAYLOAD_TOO_LARGE),
            Out::Count(Counter::PayloadTooLarge),
            Out::LocalError(a, ErrorCode::PAYLOAD_TOO_LARGE),
        ]
    );
    h.frame(
        a,
        Frame::Send {
            target: b"b",
            payload: &fits,
        },
    );
    assert_eq!(
        h.rec.take(),
        vec![Out::Deliver(b, b"a".to_vec(), vec![], fits.clone())]
    );
    let longest_sender = [b'x'; crate::protocol::CLIENT_ID_LEN_MAX];
    let longest_topic = [b'y'; crate::protocol::TOPIC_LEN_MAX];
    // With the longest reply topic too, and one byte of the payload's bound as headers.
    let largest = crate::protocol::Message {
        sender: &longest_sender,
        topic: &longest_topic,
        reply: &longest_topic,
        headers: b"h",
        payload: &fits[1..],
    };
    let deliver = crate::protocol::frame_len_for_deliver(&largest);
    assert_eq!(
        deliver, h.config.max_frame_bytes as usize,
        "the largest DELIVER fits exactly"
    );
}

#[test]
fn subscriptions_max_bounds_the_node_even_on_topics_it_already_holds() {
    let mut h = Harness::new();
    let clients: Vec<u32> = (0..3).map(|i| h.client(&topic(100 + i))).collect();
    // 3 clients x 3 topics would be 9 subscriptions on 3 topics; the node holds 7.
    for &c in &clients[..2] {
        for i in 0..3 {
            h.frame(c, sub(&topic(i), b""));
        }
    }
    h.frame(clients[2], sub(b"t0", b""));
    h.rec.take();
    assert_eq!(h.tables.topics.subscriptions(), 7);
    h.frame(clients[2], sub(b"t1", b""));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(clients[2], ErrorCode::LIMIT_EXCEEDED),
        ]
    );
    // Unsubscribing and closing give the room back, exactly.
    h.frame(clients[0], unsub(b"t0", b""));
    h.frame(clients[2], sub(b"t1", b""));
    h.rec.take();
    assert_eq!(h.tables.topics.subscriptions(), 7);
    h.close(clients[1]);
    assert_eq!(h.tables.topics.subscriptions(), 4);
    for c in [clients[0], clients[2]] {
        h.close(c);
    }
    assert_eq!(h.tables.topics.subscriptions(), 0);
    assert!(h.tables.topics.is_empty());
}

#[test]
fn watches_max_bounds_the_node_even_on_ids_already_watched() {
    let mut h = Harness::new();
    let clients: Vec<u32> = (0..3).map(|i| h.client(&topic(100 + i))).collect();
    let watch = |h: &mut Harness, c: u32, i: usize| {
        h.frame(
            c,
            Frame::Watch {
                client_id: &topic(i),
            },
        )
    };
    for &c in &clients[..2] {
        for i in 0..3 {
            watch(&mut h, c, i);
        }
    }
    watch(&mut h, clients[2], 0);
    h.rec.take();
    assert_eq!(h.tables.presence.watches(), 7);
    watch(&mut h, clients[2], 1);
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(clients[2], ErrorCode::LIMIT_EXCEEDED),
        ]
    );
    h.close(clients[0]);
    h.rec.take();
    assert_eq!(h.tables.presence.watches(), 4);
    watch(&mut h, clients[2], 1);
    assert_eq!(h.rec.take(), offline_answers(clients[2], 1..2));
    assert_eq!(h.tables.presence.watches(), 5);
}

/// What the WATCHes of `ids` (`topic(i)`, none of them online) from `conn` are answered with.
fn offline_answers(conn: u32, ids: std::ops::Range<usize>) -> Vec<Out> {
    ids.map(|i| Out::Presence(conn, topic(i), false)).collect()
}
