//! Relay semantics over real sockets: direct messages, unknown ids, topics, queue groups,
//! no-echo broadcast, per-sender ordering, presence, replacement, heartbeats, slow consumers and
//! tokens. Every relay runs in-process with two workers on an ephemeral loopback port; where a
//! path differs between "same worker" and "other worker" (SO_REUSEPORT spreads connections by
//! 4-tuple hash), the test uses enough connections that both occur with near certainty.

mod common;
#[path = "shared/placement.rs"]
mod placement;

use common::*;
use placement::client_where;
use ringrelay::client::{Client, ClientError, Event};
use ringrelay::config::Config;
use ringrelay::protocol::{CloseReason, ErrorCode};
use std::collections::HashSet;
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn msg(sender: &str, topic: Option<&str>, payload: &[u8]) -> Event {
    Event::Message {
        sender: sender.as_bytes().to_vec(),
        topic: topic.map(|t| t.as_bytes().to_vec()),
        payload: payload.to_vec(),
        reply: None,
        headers: None,
    }
}

fn presence(id: &str, online: bool) -> Event {
    Event::Presence {
        client_id: id.as_bytes().to_vec(),
        online,
    }
}

#[test]
fn send_delivers_payload_with_the_sender_stamped_by_the_relay() {
    let relay = start_default();
    let addr = relay.local_addr();
    // Eight pairs, so some pairs share a worker and some cross workers.
    let mut pairs: Vec<(Client, Client)> = (0..8)
        .map(|i| {
            (
                connect(addr, &format!("from-{i}")),
                connect(addr, &format!("to-{i}")),
            )
        })
        .collect();
    for (i, (from, to)) in pairs.iter_mut().enumerate() {
        let payload = format!("hello {i} \u{2603}").into_bytes();
        from.send(format!("to-{i}").as_bytes(), &payload).unwrap();
        from.flush().unwrap();
        assert_eq!(next_event(to), msg(&format!("from-{i}"), None, &payload));
    }
    // Empty and binary payloads pass unchanged too.
    let (from, to) = &mut pairs[0];
    from.send(b"to-0", b"").unwrap();
    from.send(b"to-0", &[0, 255, 1, 254]).unwrap();
    from.flush().unwrap();
    assert_eq!(next_event(to), msg("from-0", None, b""));
    assert_eq!(next_event(to), msg("from-0", None, &[0, 255, 1, 254]));
}

#[test]
fn send_to_an_unknown_id_returns_unknown_id_error_and_is_counted() {
    let relay = start_default();
    let mut a = connect(relay.local_addr(), "asker");
    assert_eq!(relay.stats().unknown_id, 0);
    a.send(b"nobody-home", b"anyone?").unwrap();
    a.flush().unwrap();
    match next_event(&mut a) {
        Event::Error { code, subject, .. } => {
            assert_eq!(code, ErrorCode::UNKNOWN_ID);
            assert_eq!(subject, b"nobody-home");
        }
        other => panic!("expected UNKNOWN_ID, got {other:?}"),
    }
    assert_eq!(relay.stats().unknown_id, 1);
    // The connection stays open and usable.
    let mut b = connect(relay.local_addr(), "other");
    assert_round_trip(&mut a, &mut b);
    assert_eq!(relay.stats().unknown_id, 1);
}

#[test]
fn topic_fans_out_to_every_subscriber_and_unsubscribe_stops_delivery() {
    const K: usize = 5;
    const M: usize = 50;
    let relay = start_default();
    let addr = relay.local_addr();
    let mut publisher = connect(addr, "publisher");
    let mut subs: Vec<Client> = (0..K).map(|i| connect(addr, &format!("sub-{i}"))).collect();
    for s in subs.iter_mut() {
        s.subscribe(b"news").unwrap();
        assert!(sync(s).is_empty());
    }
    for m in 0..M {
        publisher
            .publish(b"news", format!("n{m}").as_bytes())
            .unwrap();
    }
    publisher.flush().unwrap();
    for s in subs.iter_mut() {
        for m in 0..M {
            assert_eq!(
                next_event(s),
                msg("publisher", Some("news"), format!("n{m}").as_bytes())
            );
        }
    }

    // sub-0 unsubscribes; the marker proves the relay applied it.
    subs[0].unsubscribe(b"news", b"").unwrap();
    assert!(sync(&mut subs[0]).is_empty());
    publisher.publish(b"news", b"after").unwrap();
    // Same connection, so the relay routes this SEND after the PUBLISH: if the PUBLISH had
    // reached sub-0, it would arrive before this message.
    publisher.send(b"sub-0", b"direct").unwrap();
    publisher.flush().unwrap();
    assert_eq!(next_event(&mut subs[0]), msg("publisher", None, b"direct"));
    for s in subs.iter_mut().skip(1) {
        assert_eq!(next_event(s), msg("publisher", Some("news"), b"after"));
    }
}

#[test]
fn queue_group_delivers_each_message_to_exactly_one_member_round_robin() {
    const K: usize = 4;
    const N: u32 = 400;
    let relay = start_default();
    let addr = relay.local_addr();
    let mut publisher = connect(addr, "producer");
    let mut members: Vec<Client> = (0..K)
        .map(|i| connect(addr, &format!("worker-{i}")))
        .collect();
    for m in members.iter_mut() {
        m.subscribe_group(b"jobs", b"pool").unwrap();
        assert!(sync(m).is_empty());
    }
    for i in 0..N {
        publisher.publish(b"jobs", &i.to_le_bytes()).unwrap();
    }
    // After the publishes, from the same connection: a direct "done" to each member. A member
    // has seen every job it will ever get once its "done" arrives.
    for k in 0..K {
        publisher
            .send(format!("worker-{k}").as_bytes(), b"done")
            .unwrap();
    }
    publisher.flush().unwrap();

    let mut seen = HashSet::new();
    let mut per_member = Vec::new();
    for m in members.iter_mut() {
        let mut got = 0u32;
        loop {
            let (sender, topic, payload) = next_message(m);
            assert_eq!(sender, b"producer");
            if topic.is_none() {
                assert_eq!(payload, b"done");
                break;
            }
            assert_eq!(topic.as_deref(), Some(&b"jobs"[..]));
            let index = u32::from_le_bytes(payload.try_into().expect("4-byte index"));
            assert!(index < N);
            assert!(seen.insert(index), "job {index} delivered twice");
            got += 1;
        }
        per_member.push(got);
    }
    assert_eq!(
        per_member.iter().sum::<u32>(),
        N,
        "per member: {per_member:?}"
    );
    assert_eq!(seen.len(), N as usize);
    assert!(
        per_member.iter().all(|&n| n > 0),
        "per member: {per_member:?}"
    );
    let (min, max) = (
        per_member.iter().min().unwrap(),
        per_member.iter().max().unwrap(),
    );
    assert!(
        max - min <= 1,
        "round robin should spread evenly: {per_member:?}"
    );
}

#[test]
fn publish_no_echo_reaches_every_subscriber_but_the_publisher() {
    const K: usize = 6;
    let relay = start_default();
    let addr = relay.local_addr();
    let mut clients: Vec<Client> = (0..K)
        .map(|i| connect(addr, &format!("peer-{i}")))
        .collect();
    for c in clients.iter_mut() {
        c.subscribe(b"room").unwrap();
        assert!(sync(c).is_empty());
    }
    let (publisher, others) = clients.split_first_mut().unwrap();
    publisher
        .publish_no_echo(b"room", b"to all but me")
        .unwrap();
    // A normal publish afterwards does come back: had the first one echoed, it would arrive
    // first.
    publisher.publish(b"room", b"to all").unwrap();
    publisher.flush().unwrap();
    assert_eq!(
        next_event(publisher),
        msg("peer-0", Some("room"), b"to all")
    );
    for o in others.iter_mut() {
        assert_eq!(next_event(o), msg("peer-0", Some("room"), b"to all but me"));
        assert_eq!(next_event(o), msg("peer-0", Some("room"), b"to all"));
    }
}

/// `senders` threads each send `per_sender` sequenced messages spread round-robin over the
/// receivers; every receiver checks each sender's sequence arrives complete and in order.
fn ordering_run(senders: usize, receivers: usize, per_sender: u32) {
    let relay = start_default();
    let addr = relay.local_addr();
    let rx_clients: Vec<Client> = (0..receivers)
        .map(|r| connect(addr, &format!("rx-{r}")))
        .collect();
    let per_receiver_from_each = per_sender as usize / receivers;
    let deadline = Instant::now() + Duration::from_secs(30);
    let receiver_threads: Vec<_> = rx_clients
        .into_iter()
        .map(|mut rx| {
            thread::spawn(move || {
                let mut next = vec![0u32; senders];
                let total = senders * per_receiver_from_each;
                for _ in 0..total {
                    assert!(Instant::now() < deadline, "ordering run took over 30 s");
                    let (sender, _, payload) = next_message(&mut rx);
                    let s: usize = std::str::from_utf8(&sender).unwrap()[3..].parse().unwrap();
                    let seq = u32::from_le_bytes(payload[..4].try_into().unwrap());
                    assert_eq!(
                        seq, next[s],
                        "sender {s}: got #{seq}, expected #{} (lost or reordered)",
                        next[s]
                    );
                    next[s] += 1;
                }
                next
            })
        })
        .collect();
    let sender_threads: Vec<_> = (0..senders)
        .map(|s| {
            let mut tx = connect(addr, &format!("tx-{s}"));
            thread::spawn(move || {
                let targets: Vec<Vec<u8>> = (0..receivers)
                    .map(|r| format!("rx-{r}").into_bytes())
                    .collect();
                let mut seq = vec![0u32; receivers];
                for i in 0..per_sender as usize {
                    let r = i % receivers;
                    tx.send(&targets[r], &seq[r].to_le_bytes()).unwrap();
                    seq[r] += 1;
                }
                tx.flush().unwrap();
                tx
            })
        })
        .collect();
    let senders_done: Vec<Client> = sender_threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for t in receiver_threads {
        let next = t.join().unwrap();
        assert!(next.iter().all(|&n| n as usize == per_receiver_from_each));
    }
    let stats = relay.stats();
    assert_eq!(stats.handoff_drops, 0);
    assert_eq!(stats.slow_consumer_closes, 0);
    drop(senders_done);
}

#[test]
fn ordering_four_senders_to_one_receiver_arrive_in_order_without_loss() {
    ordering_run(4, 1, 20_000);
}

#[test]
fn ordering_four_senders_to_eight_receivers_across_workers_arrive_in_order_without_loss() {
    ordering_run(4, 8, 20_000);
}

/// One sender mixing PUBLISHes to a topic with SENDs by id to its subscribers, which sit on
/// both workers: a fan-out's DELIVER is written once per worker round and each subscriber's
/// queue ends in a run of it, while a SEND goes into the subscriber's own buffer. Every
/// subscriber gets every publish and the sends for it, each once, in the order they were sent.
#[test]
fn publishes_and_sends_from_one_sender_interleave_in_its_order_at_every_subscriber() {
    const RECEIVERS: usize = 8;
    const MESSAGES: u32 = 40_000;
    // Message i is a SEND to receiver i % RECEIVERS when i % 3 == 0, else a PUBLISH.
    let is_send = |i: u32| i % 3 == 0;
    let relay = start(Config {
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    });
    let (addr, metrics) = (relay.local_addr(), relay.metrics_addr().expect("metrics"));
    let deadline = Instant::now() + Duration::from_secs(30);
    // Half of the receivers on each worker.
    let (clients, targets): (Vec<Client>, Vec<Vec<u8>>) = (0..RECEIVERS)
        .map(|r| {
            let on = (r % 2) as u64;
            let (rx, id, _) = client_where(addr, metrics, &format!("rx{r}"), |w| w == on);
            (rx, id.into_bytes())
        })
        .unzip();
    let receivers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(r, mut rx)| {
            rx.subscribe(b"mix").unwrap();
            assert!(sync(&mut rx).is_empty());
            thread::spawn(move || {
                let expected =
                    (0..MESSAGES).filter(|&i| !is_send(i) || i as usize % RECEIVERS == r);
                for i in expected {
                    assert!(Instant::now() < deadline, "rx-{r} took over 30 s");
                    let (sender, topic, payload) = next_message(&mut rx);
                    assert_eq!(sender, b"tx");
                    let got = u32::from_le_bytes(payload[..4].try_into().unwrap());
                    assert_eq!(
                        got, i,
                        "rx-{r}: got #{got}, expected #{i} (lost or reordered)"
                    );
                    assert_eq!(
                        topic.is_none(),
                        is_send(i),
                        "rx-{r}: #{i} came the wrong way"
                    );
                }
                assert_eq!(sync(&mut rx), [], "rx-{r}: nothing more");
            })
        })
        .collect();
    let mut tx = connect(addr, "tx");
    for i in 0..MESSAGES {
        let payload = i.to_le_bytes();
        if is_send(i) {
            tx.send(&targets[i as usize % RECEIVERS], &payload).unwrap();
        } else {
            tx.publish(b"mix", &payload).unwrap();
        }
    }
    tx.flush().unwrap();
    for r in receivers {
        r.join().expect("a receiver");
    }
    let stats = relay.stats();
    assert_eq!(stats.handoff_drops, 0, "{stats:?}");
    assert_eq!(stats.slow_consumer_closes, 0, "{stats:?}");
}

/// A watcher (synchronised) watching `id`.
fn watcher(addr: std::net::SocketAddr, name: &str, id: &str) -> Client {
    let mut w = connect(addr, name);
    w.watch(id.as_bytes()).unwrap();
    // The relay answers a WATCH with the id's present state: not registered yet.
    assert_eq!(
        sync(&mut w),
        [Event::Presence {
            client_id: id.as_bytes().to_vec(),
            online: false
        }]
    );
    w
}

#[test]
fn presence_online_on_register_and_offline_on_close() {
    let relay = start_default();
    let addr = relay.local_addr();
    // Several watchers so the watched connection and its watchers land on both workers.
    let mut watchers: Vec<Client> = (0..4)
        .map(|i| watcher(addr, &format!("watcher-{i}"), "node-1"))
        .collect();
    for round in 0..3 {
        let n = connect(addr, "node-1");
        for w in watchers.iter_mut() {
            assert_eq!(next_event(w), presence("node-1", true), "round {round}");
        }
        n.close().unwrap();
        for w in watchers.iter_mut() {
            assert_eq!(next_event(w), presence("node-1", false), "round {round}");
        }
    }
    // Unwatch stops the events.
    watchers[0].unwatch(b"node-1").unwrap();
    assert!(sync(&mut watchers[0]).is_empty());
    let mut n = connect(addr, "node-1");
    assert_eq!(next_event(&mut watchers[1]), presence("node-1", true));
    // The watched client messages the unwatched watcher after registering: had an online
    // event been routed to it, it would come first.
    n.send(b"watcher-0", b"after-online").unwrap();
    n.flush().unwrap();
    assert_eq!(
        next_event(&mut watchers[0]),
        msg("node-1", None, b"after-online")
    );
}

#[test]
fn presence_replacement_keeps_the_id_online_and_closes_the_old_connection() {
    let relay = start_default();
    let addr = relay.local_addr();
    for round in 0..6 {
        let id = format!("node-r{round}");
        let mut w = watcher(addr, &format!("w-r{round}"), &id);
        let mut old = connect(addr, &id);
        assert_eq!(next_event(&mut w), presence(&id, true));
        let mut new = connect(addr, &id);
        match next_event(&mut old) {
            Event::Closed { reason, .. } => assert_eq!(reason, CloseReason::REPLACED),
            other => panic!("old connection: expected Closed(REPLACED), got {other:?}"),
        }
        // The watcher sees the new registration as online, and no offline for the old close.
        assert_eq!(next_event(&mut w), presence(&id, true));
        // The id still routes (to the new connection).
        w.send(id.as_bytes(), b"still there?").unwrap();
        w.flush().unwrap();
        assert_eq!(
            next_event(&mut new),
            msg(&format!("w-r{round}"), None, b"still there?")
        );
        new.close().unwrap();
        assert_eq!(next_event(&mut w), presence(&id, false));
        // Nothing else (no stray offline for the replaced connection) before a fresh marker.
        assert!(sync(&mut w).is_empty());
        drop(w);
        let _ = old.close();
    }
}

#[test]
fn presence_offline_on_heartbeat_timeout() {
    let relay = start(Config {
        heartbeat_interval_ms: 100,
        heartbeat_misses_max: 2,
        ..config()
    });
    let addr = relay.local_addr();
    let mut w = watcher(addr, "hb-watcher", "silent");
    let mut raw = Raw::connect(addr);
    raw.handshake("silent");
    assert_eq!(next_event(&mut w), presence("silent", true));
    // The watcher keeps calling recv, so it answers pings and stays; the silent one does not.
    assert_eq!(next_event(&mut w), presence("silent", false));
    let (reason, _) = raw.expect_close();
    assert_eq!(reason, CloseReason::HEARTBEAT_TIMEOUT);
}

#[test]
fn duplicate_id_second_registration_wins_and_the_old_gets_replaced() {
    let relay = start_default();
    let addr = relay.local_addr();
    let mut sender = connect(addr, "dup-sender");
    let mut winners = Vec::new();
    for round in 0..8 {
        let id = format!("dup-{round}");
        let mut first = connect(addr, &id);
        let mut second = connect(addr, &id);
        match next_event(&mut first) {
            Event::Closed { reason, .. } => assert_eq!(reason, CloseReason::REPLACED),
            other => panic!("round {round}: expected Closed(REPLACED), got {other:?}"),
        }
        assert!(matches!(
            first.send(b"x", b"y"),
            Err(ClientError::Closed {
                reason: CloseReason::REPLACED,
                ..
            })
        ));
        sender.send(id.as_bytes(), b"for the newest").unwrap();
        sender.flush().unwrap();
        assert_eq!(
            next_event(&mut second),
            msg("dup-sender", None, b"for the newest")
        );
        winners.push(second);
        assert_eq!(relay.registered_clients(), 1 + winners.len());
    }
}

#[test]
fn heartbeat_closes_a_silent_client_and_keeps_a_responsive_one() {
    const INTERVAL_MS: u64 = 100;
    let relay = start(Config {
        heartbeat_interval_ms: INTERVAL_MS,
        heartbeat_misses_max: 2,
        ..config()
    });
    let addr = relay.local_addr();
    let started = Instant::now();
    let mut alive = connect(addr, "responsive");
    assert_eq!(alive.heartbeat_interval_ms(), INTERVAL_MS as u32);

    // The silent client reads (to see the CLOSE) but never answers a PING.
    let silent = thread::spawn(move || {
        let mut raw = Raw::connect(addr);
        raw.handshake("silent");
        let mut pings = 0;
        let deadline = Instant::now() + WAIT;
        let reason = loop {
            match raw.next_frame_by(deadline) {
                Ok(Owned::Ping(_)) => pings += 1,
                Ok(Owned::Close { reason, .. }) => break reason,
                other => panic!("silent client: unexpected {other:?}"),
            }
        };
        let end = raw.expect_end();
        (reason, pings, end)
    });

    // Keep the responsive client receiving (answering pings) until the silent one is gone
    // and at least 8 intervals passed.
    let min_alive = Duration::from_millis(8 * INTERVAL_MS);
    while !silent.is_finished() || started.elapsed() < min_alive {
        assert!(
            started.elapsed() < WAIT,
            "silent client was not closed in time"
        );
        if let Some(e) = alive.recv(Duration::from_millis(20)).unwrap() {
            panic!("responsive client got {e:?}");
        }
    }
    let (reason, pings, _end) = silent.join().unwrap();
    assert_eq!(reason, CloseReason::HEARTBEAT_TIMEOUT);
    assert_eq!(
        pings, 2,
        "closed after heartbeat_misses_max unanswered pings"
    );

    // The silent id is gone; the responsive one is still registered and working.
    assert_eq!(relay.registered_clients(), 1);
    alive.send(b"silent", b"hello?").unwrap();
    alive.flush().unwrap();
    match next_event(&mut alive) {
        Event::Error { code, subject, .. } => {
            assert_eq!(code, ErrorCode::UNKNOWN_ID);
            assert_eq!(subject, b"silent");
        }
        other => panic!("expected UNKNOWN_ID for the evicted id, got {other:?}"),
    }
    assert!(sync(&mut alive).is_empty());
    assert!(started.elapsed() >= min_alive);
}

/// Progress of the reading consumer, shared with the producer for pacing.
#[derive(Default)]
struct Progress {
    received: Mutex<u64>,
    changed: Condvar,
}

#[test]
fn slow_consumer_is_closed_while_a_reading_consumer_and_the_producer_carry_on() {
    const PAYLOAD: usize = 1024;
    let relay = start(Config {
        pending_bytes_max: 64 * 1024,
        max_frame_bytes: 16 * 1024,
        slow_consumer_grace_ms: 200,
        ..config()
    });
    let addr = relay.local_addr();

    // The stuck consumer: a small receive buffer, registered, then never reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect_timeout(&addr.into(), WAIT).unwrap();
    let mut stuck = Raw::from_stream(TcpStream::from(socket));
    stuck.handshake("stuck");

    // The reading consumer checks every message arrives, in order, until "end".
    let mut reader = connect(addr, "reader");
    let progress = Arc::new(Progress::default());
    let reader_progress = Arc::clone(&progress);
    let reader_thread = thread::spawn(move || {
        let mut expected = 0u64;
        loop {
            let (sender, _, payload) = next_message(&mut reader);
            assert_eq!(sender, b"producer");
            if payload == b"end" {
                return expected;
            }
            assert_eq!(payload.len(), PAYLOAD);
            let index = u64::from_le_bytes(payload[..8].try_into().unwrap());
            assert_eq!(
                index, expected,
                "reading consumer lost or reordered a message"
            );
            expected += 1;
            *reader_progress.received.lock().unwrap() = expected;
            reader_progress.changed.notify_all();
        }
    });

    let mut producer = connect(addr, "producer");
    let mut payload = vec![0xabu8; PAYLOAD];
    let mut sent_to_reader = 0u64;
    let mut sent_to_stuck = 0u64;
    let mut send_to_reader = |producer: &mut Client, sent: &mut u64| {
        payload[..8].copy_from_slice(&sent.to_le_bytes());
        producer.send(b"reader", &payload).unwrap();
        *sent += 1;
    };
    let mut stuck_closed = false;
    let mut extra_after_close = 0;
    let started = Instant::now();
    while extra_after_close < 256 {
        for _ in 0..16 {
            if !stuck_closed {
                producer.send(b"stuck", &[0x55; PAYLOAD]).unwrap();
                sent_to_stuck += 1;
            }
            send_to_reader(&mut producer, &mut sent_to_reader);
            if stuck_closed {
                extra_after_close += 1;
            }
        }
        // A blocked write would fail after WAIT (write timeout), so this completing is the
        // "producer is never blocked" check.
        producer.flush().unwrap();
        // Drain whatever the relay told the producer: OVERLOADED while the stuck queue is at
        // its bound (about the messages dropped there, before its grace runs out; with no
        // subject when the stuck consumer is on the producer's worker), UNKNOWN_ID once the
        // stuck id is gone.
        while let Some(e) = producer.recv(Duration::ZERO).unwrap() {
            match e {
                Event::Error { code, subject, .. } if code == ErrorCode::OVERLOADED => {
                    assert!(subject.is_empty() || subject == b"stuck", "{subject:?}");
                }
                Event::Error { code, subject, .. } => {
                    assert_eq!(code, ErrorCode::UNKNOWN_ID);
                    assert_eq!(subject, b"stuck");
                }
                other => panic!("producer got {other:?}"),
            }
        }
        stuck_closed = stuck_closed || relay.stats().slow_consumer_closes >= 1;
        // Past twice pending_bytes_max the stuck consumer's messages are dropped, not queued:
        // what bounds the test is its grace (200 ms), not how much the producer sends.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "slow consumer test took too long"
        );
        // Pace on the reading consumer so only the stuck one ever falls behind.
        let guard = progress.received.lock().unwrap();
        let (guard, timeout) = progress
            .changed
            .wait_timeout_while(guard, WAIT, |r| *r + 32 < sent_to_reader)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "reading consumer stalled at {}",
            *guard
        );
    }
    producer.send(b"reader", b"end").unwrap();
    producer.flush().unwrap();
    assert_eq!(reader_thread.join().unwrap(), sent_to_reader);
    eprintln!(
        "slow consumer closed after {sent_to_stuck} KiB sent to it; \
         reading consumer got all {sent_to_reader} messages"
    );
    assert_eq!(relay.stats().slow_consumer_closes, 1);

    // The producer still round-trips a message to itself.
    let leftovers = sync(&mut producer);
    assert!(leftovers.iter().all(|e| matches!(e,
        Event::Error { code, .. } if *code == ErrorCode::UNKNOWN_ID || *code == ErrorCode::OVERLOADED)));

    // The stuck consumer's id is gone (an ERROR about it may be folded into a summary, which
    // a PING's PONG never overtakes), and its connection ends after whatever was already on
    // its way: possibly a CLOSE(SLOW_CONSUMER), or, once `close_linger_ms` passed with it
    // still not reading, wherever the kernel's buffers end.
    producer.send(b"stuck", b"?").unwrap();
    let events = producer.round_trip(WAIT).unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::Error { code, subject, .. } if *code == ErrorCode::UNKNOWN_ID && subject == b"stuck")),
        "{events:?}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        match stuck.next_frame_or_cut(deadline) {
            Ok(Owned::Deliver { .. }) | Ok(Owned::Ping(_)) => {}
            Ok(Owned::Close { reason, text }) => {
                assert_eq!(reason, CloseReason::SLOW_CONSUMER);
                assert!(
                    text.contains("longer than slow_consumer_grace_ms"),
                    "{text}"
                );
                stuck.expect_end();
                break;
            }
            Ok(other) => panic!("stuck consumer got {other:?}"),
            Err(_) => break,
        }
    }
}

#[test]
fn token_right_one_connects_wrong_or_missing_one_is_auth_failed() {
    let relay = start(Config {
        token: Some("s3cret".into()),
        ..config()
    });
    let addr = relay.local_addr();
    let mut a = Client::connect_with(addr, b"with-token-a", Some(b"s3cret"), client_options())
        .expect("right token connects");
    let mut b = Client::connect_with(addr, b"with-token-b", Some(b"s3cret"), client_options())
        .expect("right token connects");
    assert_round_trip(&mut a, &mut b);
    for token in [Some(&b"s3cret!"[..]), Some(b"S3CRET"), Some(b""), None] {
        match Client::connect_with(addr, b"intruder", token, client_options()) {
            Err(ClientError::Closed { reason, .. }) => assert_eq!(reason, CloseReason::AUTH_FAILED),
            Ok(_) => panic!("token {token:?} was accepted"),
            Err(e) => panic!("token {token:?}: expected Closed(AUTH_FAILED), got {e}"),
        }
    }
    assert_eq!(relay.registered_clients(), 2);
    assert_round_trip(&mut a, &mut b);
}
