//! NATS clients across a cluster, with real `ringrelay serve` nodes on loopback: a NATS
//! publish on one node reaches NATS subscribers on another (one MSG per matching sid, a queue
//! group spread over two connections getting each message once) and native subscribers there.

mod cluster_common;
mod common;

use cluster_common::{start_cluster, WAIT};
use common::nats_wire::{Line, Nats};
use ringrelay::client::Event;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Publishes to `subject` from `publisher` until `subscriber` receives it (its interest has
/// reached the publisher's node; bounded by [`WAIT`]), then drains the subscriber up to a
/// fence on the same subject.
fn await_route(publisher: &mut Nats, subject: &str, subscriber: &mut Nats) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "interest in {subject} did not reach the publisher's node within {WAIT:?}"
        );
        publisher.send(format!("PUB {subject} 5\r\nprobe\r\n").as_bytes());
        if subscriber.next_within(Duration::from_millis(20)).is_some() {
            break;
        }
    }
    publisher.send(format!("PUB {subject} 5\r\nfence\r\n").as_bytes());
    loop {
        match subscriber.next() {
            Line::Msg { payload, .. } if payload == b"fence" => return,
            Line::Msg { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn a_nats_publish_reaches_nats_and_native_subscribers_on_another_node() {
    let (_block, nodes) = start_cluster(35, 2);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut a = Nats::connected(n1.nats);
    a.send(b"SUB orders.eu q 2\r\nSUB done 9\r\nSUB orders.* 1\r\nSUB probe.a 8\r\nPING\r\n");
    a.expect("PONG");
    let mut b = Nats::connected(n1.nats);
    b.send(b"SUB orders.eu q 2\r\nSUB done 9\r\nSUB probe.b 8\r\nPING\r\n");
    b.expect("PONG");
    let mut native = n1.connect("native-on-1");
    native.subscribe(b"orders.eu").unwrap();
    native.flush().unwrap();

    let mut publisher = Nats::connected(n2.nats);
    await_route(&mut publisher, "probe.a", &mut a);
    await_route(&mut publisher, "probe.b", &mut b);
    let messages = 30;
    for i in 0..messages {
        publisher.send(format!("PUB orders.eu 2\r\n{i:02}\r\n").as_bytes());
    }
    publisher.send(b"PUB done 0\r\n\r\nPING\r\n");
    publisher.expect("PONG");

    let counts_a = a.count_until_marker("9");
    let counts_b = b.count_until_marker("9");
    assert_eq!(counts_a.get("1"), Some(&messages), "orders.* on node 1");
    let queue = |c: &HashMap<String, usize>| c.get("2").copied().unwrap_or(0);
    assert_eq!(
        queue(&counts_a) + queue(&counts_b),
        messages,
        "the queue group gets each message once"
    );
    let mut native_got = 0;
    let deadline = Instant::now() + WAIT;
    while native_got < messages {
        assert!(
            Instant::now() < deadline,
            "native got {native_got} of {messages}"
        );
        match native.recv(WAIT).unwrap() {
            Some(Event::Message {
                sender, payload, ..
            }) if payload.len() == 2 => {
                assert!(sender.starts_with(b"nats.2."), "sender {sender:?}");
                native_got += 1;
            }
            Some(Event::Message { .. }) => {}
            other => panic!("native: unexpected {other:?}"),
        }
    }
}
