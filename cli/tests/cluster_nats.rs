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

/// Bound on the responder thread of the request test: the test's two waits for the cluster
/// (each [`WAIT`]) and a generous margin.
const RESPONDER_BOUND: Duration = Duration::from_secs(3 * WAIT.as_secs());

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

/// Answers every request the NATS `responder` (subscribed to `svc.time` as sid 3) gets, with
/// headers `Served-By: 1` and payload `noon`, until a request with payload `stop`: it then
/// unsubscribes and returns how many it answered. Each request must carry `Hop: 2`.
///
/// Bounded by [`RESPONDER_BOUND`] overall (heartbeat PINGs would otherwise keep it reading
/// for ever), so that a `stop` that never arrives fails the test at the join instead of
/// hanging it.
fn answer_requests(mut responder: Nats) -> usize {
    let answer = "NATS/1.0\r\nServed-By: 1\r\n\r\n";
    let deadline = Instant::now() + RESPONDER_BOUND;
    let mut answered = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "responder: no stop request within {RESPONDER_BOUND:?} ({answered} answered)"
        );
        match responder.next() {
            Line::Hmsg {
                reply: Some(reply),
                headers,
                payload,
                ..
            } => {
                if payload == b"stop" {
                    responder.send(b"UNSUB 3\r\nPING\r\n");
                    while responder.next() != Line::Other("PONG".into()) {
                        assert!(
                            Instant::now() < deadline,
                            "responder: no PONG after UNSUB within {RESPONDER_BOUND:?}"
                        );
                    }
                    return answered;
                }
                assert!(
                    String::from_utf8_lossy(&headers).contains("Hop: 2"),
                    "the request's headers crossed the link: {headers:?}"
                );
                responder.send(
                    format!(
                        "HPUB {reply} {} {}\r\n{answer}noon\r\n",
                        answer.len(),
                        answer.len() + 4
                    )
                    .as_bytes(),
                );
                answered += 1;
            }
            Line::Other(line) if line == "PING" => responder.send(b"PONG\r\n"),
            other => panic!("responder: unexpected {other:?}"),
        }
    }
}

/// A request from `requester` (subscribed to `_INBOX.c.*`) to `svc.time` with `payload` and
/// the header `Hop: 2`, on the reply subject `_INBOX.c.<n>`.
fn send_request(requester: &mut Nats, n: usize, payload: &str) -> String {
    let headers = "NATS/1.0\r\nHop: 2\r\n\r\n";
    let reply = format!("_INBOX.c.{n}");
    requester.send(
        format!(
            "HPUB svc.time {reply} {} {}\r\n{headers}{payload}\r\n",
            headers.len(),
            headers.len() + payload.len()
        )
        .as_bytes(),
    );
    reply
}

fn is_no_responders(line: &Line, reply: &str) -> bool {
    matches!(line, Line::Hmsg { subject, headers, payload, .. }
        if subject == reply && headers.starts_with(b"NATS/1.0 503") && payload.is_empty())
}

#[test]
fn a_request_crosses_nodes_with_its_headers_and_no_responders_sees_the_whole_cluster() {
    let (_block, nodes) = start_cluster(39, 2);
    let (mut responder, _) = Nats::open(nodes[0].nats);
    responder.send(b"CONNECT {\"verbose\":false,\"headers\":true}\r\nSUB svc.time 3\r\nPING\r\n");
    responder.expect("PONG");
    let responder = std::thread::spawn(move || answer_requests(responder));
    let (mut requester, _) = Nats::open(nodes[1].nats);
    requester.send(
        b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n\
          SUB _INBOX.c.* 1\r\nPING\r\n",
    );
    requester.expect("PONG");
    // The answers are published on node 1: the requester's inbox interest must be there
    // first, or an answer reaches nobody (as any publish before the subscription is known).
    let mut prober = Nats::connected(nodes[0].nats);
    await_route(&mut prober, "_INBOX.c.probe", &mut requester);
    // Until the responder's interest reaches node 2, a request has no responders anywhere
    // node 2 knows of: the 503 comes back at once and the next request goes.
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        assert!(Instant::now() < deadline, "no answer within {WAIT:?}");
        n += 1;
        let reply = send_request(&mut requester, n, "?");
        let line = requester.next();
        if is_no_responders(&line, &reply) {
            continue;
        }
        match line {
            Line::Hmsg {
                subject,
                headers,
                payload,
                ..
            } => {
                assert_eq!(subject, reply);
                assert!(String::from_utf8_lossy(&headers).contains("Served-By: 1"));
                assert_eq!(payload, b"noon");
                break;
            }
            other => panic!("requester: unexpected {other:?}"),
        }
    }
    n += 1;
    send_request(&mut requester, n, "stop");
    assert!(responder.join().unwrap() >= 1);
    // Once the unsubscription reaches node 2, requests have no responders again. Until then a
    // request is forwarded to node 1, which has nobody: no answer comes, and the next one goes
    // after a short wait for it.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no 503 within {WAIT:?}");
        n += 1;
        let reply = send_request(&mut requester, n, "?");
        match requester.next_within(Duration::from_millis(50)) {
            Some(line) if is_no_responders(&line, &reply) => break,
            Some(other) => panic!("requester: unexpected {other:?}"),
            None => {}
        }
    }
}
