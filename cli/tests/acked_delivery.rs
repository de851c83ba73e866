//! Acknowledged delivery end to end over real relays: every message sent with an
//! [`AckedSession`] reaches the target's application exactly once and is confirmed, or fails
//! with its reason; the counters prove it (`sent == confirmed + failed + in_flight`, in flight
//! 0 at the end). Relays run in-process on loopback with two workers, except where a test needs
//! both clients on one worker; the cluster test runs two node processes.

mod cluster_common;
mod common;

use common::*;
use ringrelay::ack::{FailReason, Trigger};
use ringrelay::client::{
    AckedSession, AckedSessionOptions, AckedStats, Event, SessionOptions, RECV_MANY_EVENTS_MAX,
};
use ringrelay::config::Config;
use ringrelay::protocol::ErrorCode;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bound on a whole exchange in these tests.
const EXCHANGE: Duration = Duration::from_secs(20);

fn options(server: SocketAddr) -> AckedSessionOptions {
    AckedSessionOptions {
        session: SessionOptions {
            servers: vec![server.to_string()],
            client: client_options(),
            ..SessionOptions::default()
        },
        ..AckedSessionOptions::default()
    }
}

fn acked(server: SocketAddr, id: &str) -> AckedSession {
    AckedSession::connect(id.as_bytes(), options(server))
        .unwrap_or_else(|e| panic!("{id} cannot connect: {e}"))
}

fn assert_balanced(stats: &AckedStats) {
    let s = &stats.sender;
    assert_eq!(s.sent, s.confirmed + s.failed() + s.in_flight, "{s:?}");
}

/// Sends `count` numbered messages from `from` to `to` (taking backpressure by receiving on
/// both), and receives until every one is delivered and confirmed. Returns the payloads `to`
/// delivered, in order.
fn exchange(from: &mut AckedSession, to: &mut AckedSession, target: &str, count: u64) -> Vec<u64> {
    let deadline = Instant::now() + EXCHANGE;
    let mut next = 0u64;
    let mut delivered = Vec::new();
    let mut confirmed = 0u64;
    while confirmed < count || (delivered.len() as u64) < count {
        assert!(Instant::now() < deadline, "exchange of {count} not done in {EXCHANGE:?}: {next} sent, {} delivered, {confirmed} confirmed", delivered.len());
        while next < count {
            match from.send(target.as_bytes(), next.to_le_bytes().to_vec()) {
                Ok(_) => next += 1,
                Err(ringrelay::client::AckedSendError::WouldBlock(_)) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        from.flush().unwrap();
        while let Some(event) = to.recv(Duration::ZERO).unwrap() {
            match event {
                Event::AckedMessage { payload, .. } => {
                    delivered.push(u64::from_le_bytes(payload.try_into().unwrap()))
                }
                other => panic!("receiver: unexpected {other:?}"),
            }
        }
        to.flush().unwrap();
        while let Some(event) = from.recv(Duration::from_millis(1)).unwrap() {
            match event {
                Event::Confirmed {
                    first_seq,
                    last_seq,
                    ..
                } => confirmed += last_seq - first_seq + 1,
                other => panic!("sender: unexpected {other:?}"),
            }
        }
    }
    delivered
}

#[test]
fn acked_messages_are_delivered_once_and_confirmed_on_one_worker_and_across_workers() {
    let relay = start_default();
    let addr = relay.local_addr();
    // Four pairs: with two workers, some pairs share one and some cross.
    for pair in 0..4 {
        let mut a = acked(addr, &format!("a{pair}"));
        let mut b = acked(addr, &format!("b{pair}"));
        let delivered = exchange(&mut a, &mut b, &format!("b{pair}"), 5_000);
        let unique: HashSet<u64> = delivered.iter().copied().collect();
        assert_eq!(unique.len(), 5_000, "each delivered once");
        assert!(unique.iter().all(|&n| n < 5_000), "nothing unexpected");
        let (sa, sb) = (a.close().unwrap(), b.close().unwrap());
        assert_balanced(&sa);
        assert_eq!(sa.sender.confirmed, 5_000);
        assert_eq!(sa.sender.failed(), 0);
        assert_eq!(sa.sender.in_flight, 0);
        assert_eq!(sb.receiver.delivered, 5_000);
        assert!(sa.rtt.smoothed_us().is_some(), "round trips were measured");
    }
}

#[test]
fn batches_deliver_each_message_once_and_confirm_every_number_once_in_ranges() {
    let relay = start_default();
    let addr = relay.local_addr();
    let (mut a, mut b) = (acked(addr, "batch-a"), acked(addr, "batch-b"));
    const COUNT: usize = 20_000;
    let payloads: Vec<bytes::Bytes> = (0..COUNT as u64)
        .map(|n| bytes::Bytes::copy_from_slice(&n.to_le_bytes()))
        .collect();
    let deadline = Instant::now() + EXCHANGE;
    let (mut next, mut confirmed) = (0usize, 0usize);
    let mut confirmed_seqs = vec![false; COUNT + 1];
    let mut delivered = Vec::with_capacity(COUNT);
    let mut events = Vec::new();
    while confirmed < COUNT || delivered.len() < COUNT {
        assert!(
            Instant::now() < deadline,
            "not done in {EXCHANGE:?}: {next} sent"
        );
        if next < COUNT {
            match a.send_many(b"batch-b", &payloads[next..]) {
                Ok((first, taken)) => {
                    assert_eq!(first, next as u64 + 1, "numbers follow on across batches");
                    assert!(taken >= 1);
                    next += taken;
                }
                Err(ringrelay::client::AckedSendError::WouldBlock(_)) => {}
                Err(e) => panic!("send_many: {e}"),
            }
        }
        events.clear();
        let got = b.recv_many(Duration::from_millis(1), &mut events).unwrap();
        assert_eq!(got, events.len());
        assert!(got <= RECV_MANY_EVENTS_MAX, "{got} events in one batch");
        for event in events.drain(..) {
            match event {
                Event::AckedMessage { payload, .. } => {
                    delivered.push(u64::from_le_bytes(payload.try_into().unwrap()))
                }
                other => panic!("receiver: unexpected {other:?}"),
            }
        }
        a.recv_many(Duration::from_millis(1), &mut events).unwrap();
        for event in events.drain(..) {
            match event {
                Event::Confirmed {
                    first_seq,
                    last_seq,
                    ..
                } => {
                    assert!(1 <= first_seq && first_seq <= last_seq && last_seq <= next as u64);
                    for seq in first_seq..=last_seq {
                        let seen = std::mem::replace(&mut confirmed_seqs[seq as usize], true);
                        assert!(!seen, "{seq} confirmed twice");
                        confirmed += 1;
                    }
                }
                other => panic!("sender: unexpected {other:?}"),
            }
        }
    }
    delivered.sort_unstable();
    assert_eq!(
        delivered,
        (0..COUNT as u64).collect::<Vec<_>>(),
        "once each"
    );
    let (sa, sb) = (a.close().unwrap(), b.close().unwrap());
    assert_balanced(&sa);
    assert_eq!(
        (sa.sender.confirmed, sa.sender.in_flight),
        (COUNT as u64, 0)
    );
    assert_eq!(sb.receiver.delivered, COUNT as u64);
}

#[test]
fn a_message_to_an_absent_target_is_sent_again_when_the_target_comes_online() {
    let relay = start_default();
    let addr = relay.local_addr();
    let mut a = acked(addr, "early");
    let seq = a.send(b"late", b"waiting for you".to_vec()).unwrap();
    assert_eq!(seq, 1);
    // The relay answers UNKNOWN_ID; the session watches the target instead of failing.
    let deadline = Instant::now() + WAIT;
    while relay.stats().unknown_id == 0 {
        assert!(Instant::now() < deadline, "no UNKNOWN_ID");
        assert_eq!(a.recv(Duration::from_millis(5)).unwrap(), None);
    }
    let mut late = acked(addr, "late");
    let deadline = Instant::now() + WAIT;
    let mut got = None;
    let mut confirmed = false;
    while got.is_none() || !confirmed {
        assert!(Instant::now() < deadline, "not delivered on presence");
        if let Some(Event::AckedMessage { payload, .. }) =
            late.recv(Duration::from_millis(5)).unwrap()
        {
            got = Some(payload);
        }
        if let Some(event) = a.recv(Duration::from_millis(5)).unwrap() {
            assert_eq!(
                event,
                Event::Confirmed {
                    target: b"late".to_vec(),
                    first_seq: 1,
                    last_seq: 1,
                }
            );
            confirmed = true;
        }
    }
    assert_eq!(got.unwrap(), b"waiting for you");
    let stats = a.close().unwrap();
    assert_balanced(&stats);
    assert!(
        stats.sender.retransmitted_by(Trigger::Presence) >= 1,
        "{:?}",
        stats.sender
    );
}

#[test]
fn a_message_read_but_never_handed_out_is_not_confirmed_and_reaches_the_ids_next_session() {
    let relay = start_default();
    let addr = relay.local_addr();
    let mut sender = acked(addr, "sender");
    let mut first = acked(addr, "receiver");
    // A message of the receiver's own in flight to nobody keeps its `drain` reading: what it
    // reads for the application is kept, not handed out.
    first.send(b"nobody", b"x".to_vec()).unwrap();
    for i in 0..5u8 {
        sender.send(b"receiver", vec![i]).unwrap();
    }
    sender.flush().unwrap();
    let deadline = Instant::now() + WAIT;
    while first.stats().receiver.delivered < 5 {
        assert!(
            Instant::now() < deadline,
            "the receiver did not read the five"
        );
        assert!(!first.drain(Duration::from_millis(5)).unwrap());
    }
    // Read, never handed out: never acknowledged (the sender's retransmissions meet the
    // receiver's de-duplication, and its acknowledgements wait too).
    assert!(!sender.drain(Duration::from_millis(300)).unwrap());
    assert_eq!(sender.stats().sender.confirmed, 0);
    first.close().unwrap();

    let mut next = acked(addr, "receiver");
    let deadline = Instant::now() + EXCHANGE;
    let mut got = HashSet::new();
    while got.len() < 5 {
        assert!(Instant::now() < deadline, "the next session got {got:?}");
        if let Some(Event::AckedMessage { payload, .. }) =
            next.recv(Duration::from_millis(5)).unwrap()
        {
            got.insert(payload);
        }
        sender.recv(Duration::ZERO).unwrap();
    }
    // Handed out now: acknowledged as the receiver goes on receiving, so all five are
    // confirmed.
    let deadline = Instant::now() + EXCHANGE;
    while !sender.drain(Duration::from_millis(5)).unwrap() {
        assert!(
            Instant::now() < deadline,
            "not confirmed: {:?}",
            sender.stats()
        );
        assert_eq!(next.recv(Duration::from_millis(1)).unwrap(), None);
    }
    let stats = sender.close().unwrap();
    assert_balanced(&stats);
    assert_eq!((stats.sender.confirmed, stats.sender.failed()), (5, 0));
}

#[test]
fn a_message_to_a_version_1_client_fails_at_once_with_its_reason() {
    // One worker: the refusal is immediate when the target's connection is on the sender's
    // worker (on another worker the relay drops and counts it, and the sender's timeout ends it).
    let relay = start(Config {
        workers: 1,
        ..config()
    });
    let mut old = Raw::connect(relay.local_addr());
    old.handshake_v1("old");
    let mut a = acked(relay.local_addr(), "new");
    a.send(b"old", b"hi".to_vec()).unwrap();
    let event = a.recv(WAIT).unwrap();
    assert_eq!(
        event,
        Some(Event::Failed {
            target: b"old".to_vec(),
            seq: 1,
            reason: FailReason::Refused(ErrorCode::ACK_UNSUPPORTED)
        })
    );
    let stats = a.close().unwrap();
    assert_balanced(&stats);
    assert_eq!(stats.sender.failed_refused, 1);
}

#[test]
fn closing_with_messages_in_flight_fails_them_as_closed_and_keeps_the_counts_balanced() {
    let relay = start_default();
    let mut a = acked(relay.local_addr(), "leaver");
    for _ in 0..3 {
        a.send(b"nobody", b"x".to_vec()).unwrap();
    }
    let stats = a.close().unwrap();
    assert_balanced(&stats);
    assert_eq!(stats.sender.failed_closed, 3);
    assert_eq!(stats.sender.in_flight, 0);
}

#[test]
fn acked_messages_cross_a_cluster_and_acks_come_back_over_the_link() {
    let (_claim, nodes) = cluster_common::start_cluster(31, 2);
    let mut a = acked(nodes[0].client, "west");
    let mut b = acked(nodes[1].client, "east");
    // Both rows replicated before the first send: a cluster converging, so the cluster
    // tests' bound, not `common::WAIT` (5 s).
    for node in &nodes {
        cluster_common::wait_for("rows replicated", cluster_common::WAIT, || {
            let (_, body) = cluster_common::http_get(node.metrics, "/cluster?rows=1").ok()?;
            let view = cluster_common::ClusterView::parse(&body).ok()?;
            (view.has_row("west") && view.has_row("east")).then_some(())
        });
    }
    let delivered = exchange(&mut a, &mut b, "east", 3_000);
    let unique: HashSet<u64> = delivered.iter().copied().collect();
    assert_eq!(unique.len(), 3_000);
    let stats = a.close().unwrap();
    assert_balanced(&stats);
    assert_eq!(stats.sender.confirmed, 3_000);
    b.close().unwrap();
}
