//! Patterns across a cluster (PROTOCOL.md sections 8.2 and 11.3), with real `ringrelay serve`
//! nodes on loopback: a publish on one node reaches a pattern subscriber on another once (with
//! the published topic), and only when a pattern matches; a queue group under two patterns
//! gets each message once; and a node whose full interest is larger than one control frame
//! (9,000 subscriptions of the longest topic and group, 4.6 MB of INTEREST) hands all of it
//! over to a node that joins later, in chunks, without losing the link.

mod cluster_common;

use cluster_common::*;
use ringrelay::client::{Client, Event};
use std::time::{Duration, Instant};

/// Publishes numbered probes to `topic` from `publisher` until `subscriber` receives one
/// (bounded by [`WAIT`]), then a fence, and drains the subscriber up to the fence: the
/// subscriber's interest has reached the publisher's node, and nothing else is queued.
fn await_route(publisher: &mut Client, topic: &[u8], subscriber: &mut Client) {
    let deadline = Instant::now() + WAIT;
    let mut probe = 0u64;
    loop {
        assert!(
            Instant::now() < deadline,
            "interest matching {} did not reach the publisher's node within {WAIT:?}",
            lossy(topic)
        );
        publisher
            .publish(topic, format!("probe-{probe}").as_bytes())
            .unwrap();
        publisher.flush().unwrap();
        probe += 1;
        match subscriber.recv(Duration::from_millis(20)).unwrap() {
            Some(Event::Message { payload, .. }) if payload.starts_with(b"probe-") => break,
            Some(other) => panic!("{}: unexpected {other:?}", lossy(subscriber.client_id())),
            None => {}
        }
    }
    publisher.publish(topic, b"fence").unwrap();
    publisher.flush().unwrap();
    drain_until_payload(subscriber, "fence", WAIT);
}

#[test]
fn a_pattern_subscriber_on_another_node_gets_each_matching_publish_once() {
    let (_block, nodes) = start_cluster(33, 2);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut sub = n1.connect("p-sub");
    sub.subscribe(b"orders.*").unwrap();
    sub.subscribe(b"orders.>").unwrap();
    sub.subscribe(b"orders.eu").unwrap();
    assert!(sync(&mut sub).is_empty());
    let mut publisher = n2.connect("p-pub");
    await_route(&mut publisher, b"orders.probe", &mut sub);

    for topic in ["orders.eu", "other.eu", "orders.eu.paris", "orders"] {
        publisher
            .publish(topic.as_bytes(), topic.as_bytes())
            .unwrap();
    }
    publisher.publish(b"orders.end", b"end").unwrap();
    publisher.flush().unwrap();
    let mut got = Vec::new();
    loop {
        let (sender, topic, payload) = next_message(&mut sub);
        assert_eq!(sender, "p-pub");
        if payload == "end" {
            break;
        }
        got.push((topic.expect("a topic message"), payload));
    }
    assert_eq!(
        got,
        [
            ("orders.eu".to_string(), "orders.eu".to_string()),
            ("orders.eu.paris".to_string(), "orders.eu.paris".to_string()),
        ],
        "once per message however many subscriptions match; none for topics no pattern matches"
    );

    // A queue group under two patterns, members on both nodes: each message once in total.
    let mut w1 = n1.connect("w-1");
    let mut w2 = n2.connect("w-2");
    w1.subscribe_group(b"jobs.*", b"workers").unwrap();
    w2.subscribe_group(b"jobs.>", b"workers").unwrap();
    w1.subscribe(b"jobs-sentinel.*").unwrap();
    assert!(sync(&mut w1).is_empty());
    assert!(sync(&mut w2).is_empty());
    let mut jp = n2.connect("j-pub");
    // The group interest was sent before the sentinel's on the same control link.
    await_route(&mut jp, b"jobs-sentinel.x", &mut w1);
    for i in 0..100 {
        jp.publish(b"jobs.run", format!("j{i}").as_bytes()).unwrap();
    }
    jp.flush().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 100 {
        assert!(
            Instant::now() < deadline,
            "jobs missing: got {}",
            seen.len()
        );
        for w in [&mut w1, &mut w2] {
            while let Some(event) = w.recv(Duration::from_millis(10)).unwrap() {
                let Event::Message { payload, .. } = event else {
                    panic!("unexpected {event:?}")
                };
                assert!(seen.insert(payload.clone()), "{} twice", lossy(&payload));
            }
        }
    }
    for w in [&mut w1, &mut w2] {
        assert!(sync(w).is_empty(), "a job delivered twice");
    }
}

#[test]
fn a_full_interest_larger_than_a_control_frame_reaches_a_node_that_joins_later() {
    let _block = claim_block(34);
    let n1 = Node::start(NodeSpec::new(34, 1));
    n1.wait_ready(WAIT);
    let mut sub = n1.connect("big-sub");
    let group = vec![b'g'; 255];
    let topic = |i: usize| format!("{i:0>255}").into_bytes();
    const SUBSCRIPTIONS: usize = 9_000;
    for i in 0..SUBSCRIPTIONS {
        sub.subscribe_group(&topic(i), &group).unwrap();
    }
    assert!(sync(&mut sub).is_empty(), "every subscription accepted");

    let n2 = Node::start(NodeSpec::new(34, 2).peers(&[n1.cluster]));
    n2.wait_ready(WAIT);
    n2.wait_up(&[1]);
    let mut publisher = n2.connect("big-pub");
    n2.wait_row("big-sub", 1);
    // Rounds of one publish to every topic, each followed by a SEND to the subscriber as a
    // fence (one sender to one receiver keeps order), until one round reaches every
    // subscription: all the chunks of node 1's full interest arrived (in any order).
    let deadline = Instant::now() + WAIT;
    for round in 0.. {
        assert!(
            Instant::now() < deadline,
            "node 2 did not learn all {SUBSCRIPTIONS} subscriptions within {WAIT:?}"
        );
        for i in 0..SUBSCRIPTIONS {
            publisher
                .publish(&topic(i), format!("r{round}-{i}").as_bytes())
                .unwrap();
        }
        let fence = format!("fence-{round}");
        publisher.send(b"big-sub", fence.as_bytes()).unwrap();
        publisher.flush().unwrap();
        let got = drain_until_payload(&mut sub, &fence, WAIT);
        let prefix = format!("r{round}-");
        assert!(got.iter().all(|p| p.starts_with(&prefix)), "stale messages");
        if got.len() == SUBSCRIPTIONS {
            break;
        }
        assert!(got.len() < SUBSCRIPTIONS, "a message delivered twice");
    }
    assert!(n1.cluster(false).is_up(2), "the link stayed up");
    assert!(n2.cluster(false).is_up(1), "the link stayed up");
}
