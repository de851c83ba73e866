//! Multi-process cluster tests: real `ringrelay serve` nodes on loopback, talking over their
//! cluster links (directly or through the fault-injecting proxy of `cluster_common`), checked
//! with real clients and the `/cluster` JSON of each node's metrics endpoint.
//!
//! Each test owns the address block 127.0.N.0/24 (N distinct per test), so the tests of this
//! binary run in parallel without port clashes. Every wait is bounded; nodes are SIGKILLed and
//! reaped when a test ends, also when it panics (their logs are printed then).

mod cluster_common;

use cluster_common::*;
use ringrelay::client::{Client, ClientError, Event};
use ringrelay::protocol::CloseReason;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn presence(id: &str, online: bool) -> Event {
    Event::Presence {
        client_id: id.as_bytes().to_vec(),
        online,
    }
}

/// Answers pending relay pings of idle clients (a client that never calls `recv` is evicted
/// after ~20 s); none of them may have received anything.
fn keepalive(clients: &mut [&mut Client]) {
    for c in clients.iter_mut() {
        match c.recv(Duration::ZERO) {
            Ok(None) => {}
            other => panic!("{}: unexpected {other:?}", lossy(c.client_id())),
        }
    }
}

/// Waits until `topic` interest of every client in `subs` (subscribed on any node) has reached
/// the publisher's node: publishes numbered probes (bounded) until each of `subs` received at
/// least one, then publishes a fence and drains every sub (and the publisher itself if it is a
/// subscriber too) up to the fence. Relies on the order of messages from one publisher to one
/// subscriber being kept.
fn await_interest(publisher: &mut Client, topic: &str, subs: &mut [&mut Client], echo: bool) {
    let deadline = Instant::now() + WAIT;
    let mut seen = vec![false; subs.len()];
    let mut probe = 0u64;
    while !seen.iter().all(|&s| s) {
        assert!(
            Instant::now() < deadline,
            "interest in {topic:?} did not reach the publisher's node within {WAIT:?}; \
             subscribers that got a probe: {seen:?}"
        );
        publisher
            .publish(topic.as_bytes(), format!("probe-{probe}").as_bytes())
            .unwrap();
        publisher.flush().unwrap();
        probe += 1;
        for (i, s) in subs.iter_mut().enumerate() {
            loop {
                match s.recv(Duration::from_millis(10)) {
                    Ok(Some(Event::Message { payload, .. })) if payload.starts_with(b"probe-") => {
                        seen[i] = true;
                    }
                    Ok(Some(other)) => {
                        panic!("{}: unexpected {other:?}", lossy(s.client_id()))
                    }
                    Ok(None) => break,
                    Err(e) => panic!("{}: recv failed: {e}", lossy(s.client_id())),
                }
            }
        }
        if echo {
            // The publisher's own probes (it subscribes too); drained by the fence below.
            let _ = publisher.recv(Duration::ZERO).unwrap();
        }
    }
    let fence = format!("fence-{topic}");
    publisher
        .publish(topic.as_bytes(), fence.as_bytes())
        .unwrap();
    publisher.flush().unwrap();
    for s in subs.iter_mut() {
        let before = drain_until_payload(s, &fence, WAIT);
        assert!(
            before.iter().all(|p| p.starts_with("probe-")),
            "{}: non-probe before the fence: {before:?}",
            lossy(s.client_id())
        );
    }
    if echo {
        drain_until_payload(publisher, &fence, WAIT);
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy on its own
// ---------------------------------------------------------------------------------------------

/// An echo server on `listen`; stops when the returned flag is set and a connection wakes it.
fn echo_server(listen: SocketAddr) -> Arc<AtomicBool> {
    let listener = TcpListener::bind(listen).expect("echo server binds");
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                return;
            }
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut back = conn.try_clone().expect("clone");
                let _ = std::io::copy(&mut conn, &mut back);
            });
        }
    });
    stop
}

fn echo_round_trip(addr: SocketAddr, msg: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).expect("echo comes back");
    assert_eq!(got, msg);
    s
}

/// The connection must end (EOF or reset) within 5 s, with nothing more to read.
fn assert_cut(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        other => panic!("expected the connection to be cut, got {other:?}"),
    }
}

#[test]
fn proxy_forwards_partitions_and_heals() {
    let block = 20;
    let _block = claim_block(block);
    let target = addr(block, 1, CLIENT_PORT);
    let stop_echo = echo_server(target);
    let proxy = Proxy::start(proxy_addr(block, 1), target);

    // Forwards, both ways, several connections at once.
    let mut a = echo_round_trip(proxy.addr, b"hello");
    let mut b = echo_round_trip(proxy.addr, b"world");
    wait_for("two live forwarded connections", WAIT, || {
        (proxy.stats().live == 2).then_some(())
    });

    // Partition: current connections are cut, new ones accepted and closed at once.
    proxy.partition();
    assert_cut(&mut a);
    assert_cut(&mut b);
    assert_eq!(proxy.stats().live, 0);
    let mut c = TcpStream::connect_timeout(&proxy.addr, Duration::from_secs(2))
        .expect("the partitioned proxy still accepts");
    let _ = c.write_all(b"lost");
    assert_cut(&mut c);
    assert!(proxy.stats().refused >= 1, "{:?}", proxy.stats());

    // Heal: forwarding again.
    proxy.heal();
    let _d = echo_round_trip(proxy.addr, b"again");
    assert_eq!(proxy.stats().accepted, 3, "{:?}", proxy.stats());

    // Dropping the proxy stops its listener.
    let paddr = proxy.addr;
    drop(proxy);
    assert!(
        TcpStream::connect_timeout(&paddr, Duration::from_secs(1)).is_err(),
        "the dropped proxy still accepts"
    );
    stop_echo.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect_timeout(&target, Duration::from_secs(1));
}

#[test]
fn cluster_json_parses_the_design_example() {
    let raw = r#"{"node_id":1,"ready":true,"members":[{"node_id":2,"addr":"127.0.0.2:7401","state":"up"}],
        "row_count":3,"rows":[{"id":"c1","node":1,"epoch":1732460000000123}]}"#;
    let v = ClusterView::parse(raw).unwrap();
    assert_eq!(v.node_id, 1);
    assert!(v.ready);
    assert!(v.is_up(2));
    assert_eq!(v.state_of(3), None);
    assert_eq!(v.row_count, 3);
    assert_eq!(
        v.rows(),
        &[Row {
            id: "c1".into(),
            node: 1,
            epoch: 1_732_460_000_000_123
        }]
    );
    let no_rows =
        ClusterView::parse(r#"{"node_id":7,"ready":false,"members":[],"row_count":0}"#).unwrap();
    assert!(no_rows.rows.is_none() && !no_rows.ready);
}

// ---------------------------------------------------------------------------------------------
// 1. Routing semantics across three nodes
// ---------------------------------------------------------------------------------------------

#[test]
fn three_nodes_send_fanout_queue_broadcast_presence() {
    let (_block, nodes) = start_cluster(21, 3);
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);

    // Send to an id on another node: delivered once, with the sender's id.
    {
        let mut a = n1.connect("s-a");
        let mut b = n3.connect("s-b");
        n1.wait_row("s-b", 3);
        a.send(b"s-b", b"hello across").unwrap();
        a.flush().unwrap();
        assert_eq!(
            next_message(&mut b),
            ("s-a".to_string(), None, "hello across".to_string())
        );
        assert!(sync(&mut a).is_empty(), "the sender got an event");
        assert!(sync(&mut b).is_empty(), "the receiver got a second event");
        a.close().unwrap();
        b.close().unwrap();
    }

    // Order: 2,000 numbered messages from one sender on node 1 to a receiver on node 2.
    {
        let mut s = n1.connect("o-s");
        let mut r = n2.connect("o-r");
        n1.wait_row("o-r", 2);
        for i in 0..2_000 {
            s.send(b"o-r", format!("m{i:05}").as_bytes()).unwrap();
        }
        s.flush().unwrap();
        for i in 0..2_000 {
            let (sender, topic, payload) = next_message(&mut r);
            assert_eq!(
                (sender.as_str(), topic, payload),
                ("o-s", None, format!("m{i:05}")),
                "message {i}"
            );
        }
        assert!(sync(&mut s).is_empty(), "the sender got an event");
        s.close().unwrap();
        r.close().unwrap();
    }

    // Topic fan-out: subscribers on all three nodes, publisher on node 2: each gets it once.
    {
        let mut s1 = n1.connect("f-1");
        let mut s2 = n2.connect("f-2");
        let mut s3 = n3.connect("f-3");
        let mut p = n2.connect("f-pub");
        for s in [&mut s1, &mut s2, &mut s3] {
            s.subscribe(b"fan").unwrap();
            assert!(sync(s).is_empty());
        }
        await_interest(&mut p, "fan", &mut [&mut s1, &mut s2, &mut s3], false);
        p.publish(b"fan", b"fan-1").unwrap();
        p.publish(b"fan", b"fan-end").unwrap();
        p.flush().unwrap();
        for s in [&mut s1, &mut s2, &mut s3] {
            for expected in ["fan-1", "fan-end"] {
                assert_eq!(
                    next_message(s),
                    (
                        "f-pub".to_string(),
                        Some("fan".to_string()),
                        expected.to_string()
                    ),
                    "{}",
                    lossy(s.client_id())
                );
            }
        }
        for c in [s1, s2, s3, p] {
            c.close().unwrap();
        }
    }

    // Queue group: members on nodes 2 and 3 only, 100 publishes from node 1: each delivered to
    // exactly one member in total. Then a local member on node 1 gets the next ones.
    {
        let mut q2 = n2.connect("q-2");
        let mut q3 = n3.connect("q-3");
        let mut qp = n1.connect("q-pub");
        for q in [&mut q2, &mut q3] {
            q.subscribe_group(b"jobs", b"workers").unwrap();
            // A plain subscription made after the group one: once node 1 routes to it, the
            // group interest (sent earlier on the same control link) has arrived too.
            q.subscribe(b"jobs-sentinel").unwrap();
            assert!(sync(q).is_empty());
        }
        await_interest(&mut qp, "jobs-sentinel", &mut [&mut q2, &mut q3], false);
        for i in 0..100 {
            qp.publish(b"jobs", format!("job-{i:03}").as_bytes())
                .unwrap();
        }
        for target in ["q-2", "q-3"] {
            qp.send(target.as_bytes(), b"q-fence").unwrap();
        }
        qp.flush().unwrap();
        let mut got: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut fences = [false, false];
        let deadline = Instant::now() + WAIT;
        let total = |got: &BTreeMap<String, Vec<&str>>| got.values().map(Vec::len).sum::<usize>();
        while !(fences[0] && fences[1] && total(&got) >= 100) {
            assert!(
                Instant::now() < deadline,
                "queue messages missing after {WAIT:?}: got {} of 100, fences {fences:?}",
                total(&got)
            );
            for (i, (q, name)) in [(&mut q2, "q-2"), (&mut q3, "q-3")].into_iter().enumerate() {
                match q.recv(Duration::from_millis(20)).unwrap() {
                    None => {}
                    Some(Event::Message {
                        sender,
                        topic,
                        payload,
                        reply: None,
                        headers: None,
                    }) => {
                        let payload = lossy(&payload);
                        if payload == "q-fence" {
                            fences[i] = true;
                        } else if payload.starts_with("job-") {
                            assert_eq!(lossy(&sender), "q-pub");
                            assert_eq!(topic.as_deref(), Some(&b"jobs"[..]));
                            got.entry(payload).or_default().push(name);
                        } else {
                            assert!(payload.starts_with("probe-"), "{name}: {payload}");
                        }
                    }
                    Some(other) => panic!("{name}: unexpected {other:?}"),
                }
            }
        }
        // Late duplicates would show up now.
        for q in [&mut q2, &mut q3] {
            if let Some(e) = q.recv(Duration::from_millis(200)).unwrap() {
                panic!("{}: late event {e:?}", lossy(q.client_id()));
            }
        }
        assert_eq!(got.len(), 100, "distinct jobs delivered");
        for (job, to) in &got {
            assert_eq!(to.len(), 1, "{job} delivered to {to:?}");
        }
        let on2 = got.values().filter(|to| to[0] == "q-2").count();
        eprintln!("queue group split: q-2 {on2}, q-3 {}", 100 - on2);

        // A local member on node 1 is preferred.
        let mut q1 = n1.connect("q-1");
        q1.subscribe_group(b"jobs", b"workers").unwrap();
        assert!(sync(&mut q1).is_empty());
        for i in 0..20 {
            qp.publish(b"jobs", format!("local-{i:02}").as_bytes())
                .unwrap();
        }
        for target in ["q-1", "q-2", "q-3"] {
            qp.send(target.as_bytes(), b"lq-fence").unwrap();
        }
        qp.flush().unwrap();
        let mut local = Vec::new();
        let deadline = Instant::now() + WAIT;
        let mut fenced = false;
        while !(fenced && local.len() >= 20) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "q-1 got only {local:?}");
            match q1.recv(left).unwrap() {
                None => {}
                Some(Event::Message { payload, .. }) if payload == b"lq-fence" => fenced = true,
                Some(Event::Message { payload, .. }) => local.push(lossy(&payload)),
                Some(other) => panic!("q-1: unexpected {other:?}"),
            }
        }
        let expected: Vec<String> = (0..20).map(|i| format!("local-{i:02}")).collect();
        assert_eq!(
            local, expected,
            "the local member gets every message, in order"
        );
        for q in [&mut q2, &mut q3] {
            let before = drain_until_payload(q, "lq-fence", WAIT);
            assert!(
                before.is_empty(),
                "{}: remote member got {before:?} while a local member exists",
                lossy(q.client_id())
            );
        }
        for c in [q1, q2, q3, qp] {
            c.close().unwrap();
        }
    }

    // Broadcast: a no-echo publish reaches the other subscribers but not the publisher.
    {
        let mut b1 = n1.connect("b-1");
        let mut b2 = n2.connect("b-2");
        let mut b3 = n3.connect("b-3");
        for b in [&mut b1, &mut b2, &mut b3] {
            b.subscribe(b"bcast").unwrap();
            assert!(sync(b).is_empty());
        }
        await_interest(&mut b1, "bcast", &mut [&mut b2, &mut b3], true);
        b1.publish_no_echo(b"bcast", b"bc-1").unwrap();
        b1.publish(b"bcast", b"bc-end").unwrap();
        b1.flush().unwrap();
        for b in [&mut b2, &mut b3] {
            for expected in ["bc-1", "bc-end"] {
                assert_eq!(
                    next_message(b),
                    (
                        "b-1".to_string(),
                        Some("bcast".to_string()),
                        expected.to_string()
                    ),
                    "{}",
                    lossy(b.client_id())
                );
            }
        }
        assert_eq!(
            next_message(&mut b1),
            (
                "b-1".to_string(),
                Some("bcast".to_string()),
                "bc-end".to_string()
            ),
            "the publisher must not get its own no-echo message"
        );
        for c in [b1, b2, b3] {
            c.close().unwrap();
        }
    }

    // Presence: a watcher on node 1 sees an id come online on node 3 and go offline.
    {
        let mut w = n1.connect("watcher");
        w.watch(b"w-x").unwrap();
        assert_eq!(
            sync(&mut w),
            [presence("w-x", false)],
            "the present state first"
        );
        let x = n3.connect("w-x");
        assert_eq!(next_event(&mut w), presence("w-x", true));
        x.close().unwrap();
        assert_eq!(next_event(&mut w), presence("w-x", false));
        w.close().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// 2. A killed node is declared dead and its rows are purged everywhere
// ---------------------------------------------------------------------------------------------

#[test]
fn node_kill_is_detected_and_rows_purged() {
    let (_block, nodes) = start_cluster(22, 3);
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut w = n1.connect("k-watcher");
    w.watch(b"k3-a").unwrap();
    assert_eq!(
        sync(&mut w),
        [presence("k3-a", false)],
        "the present state first"
    );
    let mut k1 = n1.connect("k1-a");
    let _k3a = n3.connect("k3-a");
    let _k3b = n3.connect("k3-b");
    assert_eq!(next_event(&mut w), presence("k3-a", true));
    for n in [n1, n2] {
        n.wait_row("k3-a", 3);
        n.wait_row("k3-b", 3);
    }
    n2.wait_row("k1-a", 1);

    let killed_at = Instant::now();
    n3.kill();
    let bound = Duration::from_secs(6); // 5 s from the design, + 1 s for polling
    for n in [n1, n2] {
        let left = bound.saturating_sub(killed_at.elapsed());
        let view = n.wait_cluster(true, "node 3 dead and its rows purged", left, |v| {
            v.state_of(3) == Some("dead") && v.rows_of_node(3).is_empty()
        });
        assert!(
            view.has_row("k1-a"),
            "node {}: a live node's row was purged too: {}",
            n.id,
            view.raw
        );
        assert!(view.is_up(if n.id == 1 { 2 } else { 1 }), "{}", view.raw);
    }
    eprintln!("node 3 dead and purged after {:?}", killed_at.elapsed());
    let left = bound
        .saturating_sub(killed_at.elapsed())
        .max(Duration::from_secs(1));
    assert_eq!(next_event_within(&mut w, left), presence("k3-a", false));
    assert!(sync(&mut w).is_empty());
    assert!(sync(&mut k1).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 3. A 2 s stall (SIGSTOP) is not death
// ---------------------------------------------------------------------------------------------

#[test]
fn pause_of_two_seconds_is_not_death() {
    let (_block, nodes) = start_cluster(23, 2);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut c = n2.connect("p2-a");
    n1.wait_row("p2-a", 2);

    let pause = Duration::from_secs(2);
    let after = Duration::from_secs(1);
    n2.sigstop();
    let stopped_at = Instant::now();
    let mut resumed_at: Option<Instant> = None;
    let mut samples = 0;
    let mut failed_polls = Vec::new();
    loop {
        let now = Instant::now();
        match resumed_at {
            None if now >= stopped_at + pause => {
                n2.sigcont();
                resumed_at = Some(Instant::now());
            }
            Some(t) if now >= t + after => break,
            _ => {}
        }
        match n1.try_cluster(true) {
            Ok(v) => {
                samples += 1;
                assert_ne!(
                    v.state_of(2),
                    Some("dead"),
                    "node 1 declared the paused node dead {:?} after SIGSTOP: {}",
                    stopped_at.elapsed(),
                    v.raw
                );
                assert!(
                    v.has_row("p2-a"),
                    "node 1 dropped the paused node's row {:?} after SIGSTOP: {}",
                    stopped_at.elapsed(),
                    v.raw
                );
            }
            Err(e) => failed_polls.push(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        samples >= 20,
        "only {samples} /cluster samples from node 1; failures: {failed_polls:?}"
    );
    let view = n1.wait_up(&[2]);
    assert!(!view.members.is_empty());
    assert!(n1.cluster(true).has_row("p2-a"));
    // The paused node works again.
    assert!(sync(&mut c).is_empty());
    let mut s = n1.connect("p1-s");
    s.send(b"p2-a", b"after the pause").unwrap();
    s.flush().unwrap();
    assert_eq!(
        next_message(&mut c),
        ("p1-s".to_string(), None, "after the pause".to_string())
    );
}

// ---------------------------------------------------------------------------------------------
// 4. The same id registered on three nodes at once ends with exactly one owner
// ---------------------------------------------------------------------------------------------

#[test]
fn duplicate_id_race_has_one_owner() {
    let (_block, nodes) = start_cluster(24, 3);
    let total_bound = Duration::from_secs(60);
    let started = Instant::now();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.client).collect();
    let mut winners_by_node = [0u32; 3];
    for round in 0..20 {
        let id = format!("dup-{round}");
        let barrier = Arc::new(Barrier::new(addrs.len()));
        let handles: Vec<_> = addrs
            .iter()
            .map(|&a| {
                let barrier = Arc::clone(&barrier);
                let id = id.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    try_connect(a, &id)
                })
            })
            .collect();
        let mut results: Vec<Result<Client, ClientError>> = handles
            .into_iter()
            .map(|h| h.join().expect("connect thread"))
            .collect();

        let left = total_bound.saturating_sub(started.elapsed());
        assert!(!left.is_zero(), "round {round}: total bound passed");
        let wait = left.min(WAIT);
        let row = wait_for_detail(
            &format!("round {round}: all nodes agree on one row for {id}"),
            wait,
            || {
                let mut seen = Vec::new();
                for n in &nodes {
                    let v = n.try_cluster(true)?;
                    let rows: Vec<Row> = v.rows_for(&id).into_iter().cloned().collect();
                    seen.push(rows);
                }
                let first = &seen[0];
                if first.len() == 1 && seen.iter().all(|r| r == first) {
                    Ok(first[0].clone())
                } else {
                    Err(format!("rows for {id} on nodes 1..=3: {seen:?}"))
                }
            },
        );
        assert!(
            (1..=3).contains(&row.node),
            "round {round}: row on unknown node {row:?}"
        );
        let winner = usize::from(row.node - 1);
        winners_by_node[winner] += 1;

        // The winner is open and owns the id; the others were closed with REPLACED.
        for (i, result) in results.iter_mut().enumerate() {
            let node = i + 1;
            if i == winner {
                let c = result.as_mut().unwrap_or_else(|e| {
                    panic!("round {round}: the winner on node {node} failed to connect: {e}")
                });
                let before = sync(c);
                assert!(
                    before.is_empty(),
                    "round {round}: winner on node {node} got {before:?}"
                );
                continue;
            }
            match result {
                Err(ClientError::Closed { reason, .. }) if *reason == CloseReason::REPLACED => {}
                Err(e) => panic!("round {round}: client on node {node} failed: {e}"),
                Ok(c) => match c.recv(wait) {
                    Ok(Some(Event::Closed { reason, .. })) if reason == CloseReason::REPLACED => {}
                    other => panic!(
                        "round {round}: loser on node {node} (row {row:?}): expected \
                         Closed(REPLACED), got {other:?}"
                    ),
                },
            }
        }
        // Closing the losers did not disturb the row anywhere.
        for n in &nodes {
            let v = n.cluster(true);
            let rows: Vec<&Row> = v.rows_for(&id);
            assert_eq!(
                rows,
                vec![&row],
                "round {round}: node {} after the losers closed",
                n.id
            );
        }
        if let Ok(c) = results.swap_remove(winner) {
            c.close().unwrap();
        }
    }
    eprintln!(
        "duplicate race winners by node: {winners_by_node:?} in {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Partition and heal through proxies
// ---------------------------------------------------------------------------------------------

#[test]
fn partition_then_heal_converges_without_ghosts() {
    let block = 25;
    let _block = claim_block(block);
    let proxy_a = Proxy::start(proxy_addr(block, 1), addr(block, 1, CLUSTER_PORT));
    let proxy_b = Proxy::start(proxy_addr(block, 2), addr(block, 2, CLUSTER_PORT));
    let node_b = Node::start(NodeSpec::new(block, 2).advertise(proxy_b.addr));
    let node_a = Node::start(
        NodeSpec::new(block, 1)
            .advertise(proxy_a.addr)
            .peers(&[proxy_b.addr]),
    );
    node_a.wait_ready(WAIT);
    node_b.wait_ready(WAIT);
    let va = node_a.wait_up(&[2]);
    let vb = node_b.wait_up(&[1]);
    // Both know the other only by its proxy, so cutting the proxies is a clean partition.
    let addr_of = |v: &ClusterView, n: u16| {
        v.members
            .iter()
            .find(|m| m.node_id == n)
            .map(|m| m.addr.clone())
    };
    assert_eq!(
        addr_of(&va, 2),
        Some(proxy_b.addr.to_string()),
        "{}",
        va.raw
    );
    assert_eq!(
        addr_of(&vb, 1),
        Some(proxy_a.addr.to_string()),
        "{}",
        vb.raw
    );

    let mut pa1 = node_a.connect("pa-1");
    let pa2 = node_a.connect("pa-2");
    let mut pa3 = node_a.connect("pa-3");
    let mut pb1 = node_b.connect("pb-1");
    let mut pb2 = node_b.connect("pb-2");
    let expected_before: BTreeSet<(String, u16)> = [
        ("pa-1", 1),
        ("pa-2", 1),
        ("pa-3", 1),
        ("pb-1", 2),
        ("pb-2", 2),
    ]
    .into_iter()
    .map(|(id, n)| (id.to_string(), n))
    .collect();
    for n in [&node_a, &node_b] {
        n.wait_cluster(true, "all five rows", WAIT, |v| {
            v.placement() == expected_before
        });
    }
    let stats = (proxy_a.stats(), proxy_b.stats());
    assert!(
        stats.0.accepted + stats.1.accepted > 0,
        "no link went through the proxies: {stats:?}"
    );

    // Partition: each side declares the other dead and drops its rows.
    proxy_a.partition();
    proxy_b.partition();
    let partitioned_at = Instant::now();
    node_a.wait_cluster(true, "node 2 dead, its rows purged", WAIT, |v| {
        v.state_of(2) == Some("dead") && v.rows_of_node(2).is_empty()
    });
    node_b.wait_cluster(true, "node 1 dead, its rows purged", WAIT, |v| {
        v.state_of(1) == Some("dead") && v.rows_of_node(1).is_empty()
    });
    eprintln!(
        "both sides declared the other dead after {:?}",
        partitioned_at.elapsed()
    );
    keepalive(&mut [&mut pa1, &mut pa3, &mut pb1, &mut pb2]);

    // Changes on both sides while partitioned.
    pa1.close().unwrap();
    pa2.close().unwrap();
    let mut pa4 = node_a.connect("pa-4");
    let mut pb3 = node_b.connect("pb-3");
    let rows = |pairs: &[(&str, u16)]| -> BTreeSet<(String, u16)> {
        pairs.iter().map(|&(id, n)| (id.to_string(), n)).collect()
    };
    let side_a = rows(&[("pa-3", 1), ("pa-4", 1)]);
    let side_b = rows(&[("pb-1", 2), ("pb-2", 2), ("pb-3", 2)]);
    node_a.wait_cluster(true, "A's own rows during the partition", WAIT, |v| {
        v.placement() == side_a
    });
    node_b.wait_cluster(true, "B's own rows during the partition", WAIT, |v| {
        v.placement() == side_b
    });
    keepalive(&mut [&mut pa3, &mut pa4, &mut pb1, &mut pb2, &mut pb3]);

    // Heal: within 10 s both tables are identical and hold exactly the connected clients.
    proxy_a.heal();
    proxy_b.heal();
    let expected_after: BTreeSet<(String, u16)> = side_a.union(&side_b).cloned().collect();
    let healed = wait_for_detail(
        "identical tables holding exactly the connected clients after the heal",
        Duration::from_secs(10),
        || {
            let a = node_a.try_cluster(true)?;
            let b = node_b.try_cluster(true)?;
            if a.row_set() == b.row_set() && a.placement() == expected_after {
                Ok(a)
            } else {
                Err(format!(
                    "expected {expected_after:?}\nA: {}\nB: {}",
                    a.raw, b.raw
                ))
            }
        },
    );
    assert_eq!(
        healed.row_count,
        expected_after.len() as u64,
        "{}",
        healed.raw
    );
    node_a.wait_up(&[2]);
    node_b.wait_up(&[1]);

    // Cross-node sends work again, both ways.
    pa3.send(b"pb-3", b"a to b").unwrap();
    pa3.flush().unwrap();
    assert_eq!(
        next_message(&mut pb3),
        ("pa-3".to_string(), None, "a to b".to_string())
    );
    pb1.send(b"pa-4", b"b to a").unwrap();
    pb1.flush().unwrap();
    assert_eq!(
        next_message(&mut pa4),
        ("pb-1".to_string(), None, "b to a".to_string())
    );
    assert!(sync(&mut pa3).is_empty());
    assert!(sync(&mut pb1).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 6. A node with the wrong secret is refused
// ---------------------------------------------------------------------------------------------

#[test]
fn wrong_secret_is_refused() {
    let block = 26;
    let _block = claim_block(block);
    let wrong = "not-the-secret";
    let n1 = Node::start(NodeSpec::new(block, 1));
    n1.wait_ready(WAIT);
    let n2 = Node::start(NodeSpec::new(block, 2).peers(&[n1.cluster]).secret(wrong));
    // Node 2 runs (its metrics endpoint answers, whatever its readiness).
    wait_for("node 2's metrics endpoint to answer", WAIT, || {
        n2.assert_running();
        n2.healthz()
    });

    let window = Duration::from_secs(3);
    let from = Instant::now();
    let mut samples = 0;
    while from.elapsed() < window {
        n2.assert_running();
        let v = n1.cluster(false);
        samples += 1;
        assert!(
            !v.is_up(2),
            "node 1 lists the wrong-secret node as up: {}",
            v.raw
        );
        if let Ok(v2) = n2.try_cluster(false) {
            assert!(
                !v2.is_up(1),
                "the wrong-secret node lists node 1 as up: {}",
                v2.raw
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(samples >= 10, "only {samples} samples");

    // The refusal is logged (a line mentioning the secret, not one echoing a secret value).
    let mentions = |text: &str| {
        text.lines().any(|l| {
            l.to_ascii_lowercase().contains("secret")
                && !l.contains(SECRET)
                && !l.contains(wrong)
                && !l.starts_with("===== start:")
        })
    };
    wait_for(
        "a log line of either node mentioning the secret refusal",
        Duration::from_secs(10),
        || (mentions(&n1.log_text()) || mentions(&n2.log_text())).then_some(()),
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A restarted node is ready only once it has its peers' snapshots
// ---------------------------------------------------------------------------------------------

#[test]
fn restarted_node_is_ready_only_after_snapshots() {
    let (_block, nodes) = start_cluster(27, 2);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut c = n1.connect("r1-a");
    n2.wait_row("r1-a", 1);

    n2.kill();
    n2.restart();
    n2.wait_ready(WAIT);
    // Checked at once, at the first 200: the snapshot must already be in.
    let view = n2.cluster(true);
    assert!(
        view.ready,
        "/healthz 200 but /cluster says not ready: {}",
        view.raw
    );
    assert!(
        view.rows_for("r1-a").iter().any(|r| r.node == 1),
        "restarted node 2 answered /healthz 200 without node 1's rows: {}",
        view.raw
    );
    // And it routes to them.
    let mut s = n2.connect("r2-s");
    s.send(b"r1-a", b"after restart").unwrap();
    s.flush().unwrap();
    let errors = sync(&mut s);
    assert!(
        errors.is_empty(),
        "the sender on the restarted node got {errors:?}"
    );
    assert_eq!(
        next_message(&mut c),
        ("r2-s".to_string(), None, "after restart".to_string())
    );
}

/// Control traffic has its own link and thread: while a client floods messages from node 1 to
/// node 2 for longer than `cluster_peer_dead_after_ms`, neither node is ever declared dead and
/// a registration made on node 2 mid-flood still reaches node 1's table promptly.
#[test]
fn control_lane_keeps_flowing_under_a_data_flood() {
    let (_block, nodes) = start_cluster(28, 2);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut receiver = n2.connect("flood-rx");
    n1.wait_row("flood-rx", 2);
    let flood_for = Duration::from_secs(4);
    let stop = Arc::new(AtomicBool::new(false));
    // The sender publishes how many it sent when it stops; the reader drains until it has
    // them all (or 20 s pass after the stop, which fails below with the counts).
    let sent_total = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    // Received so far: the sender keeps at most `IN_FLIGHT_MAX` messages (4 MiB) ahead of the
    // reader, so a reader slowed by a loaded machine is never a slow consumer (8 MiB bound),
    // while the link still carries all the pipeline can move.
    const IN_FLIGHT_MAX: u64 = 8_000;
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (stop, sent_total) = (Arc::clone(&stop), Arc::clone(&sent_total));
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut got = 0u64;
            let mut stopped_at = None;
            loop {
                if got == sent_total.load(Ordering::Acquire) {
                    return got;
                }
                if stop.load(Ordering::Acquire) {
                    let t = *stopped_at.get_or_insert_with(Instant::now);
                    if t.elapsed() > Duration::from_secs(20) {
                        return got;
                    }
                }
                match receiver.recv(Duration::from_millis(100)) {
                    Ok(Some(Event::Message { .. })) => {
                        got += 1;
                        received.store(got, Ordering::Release);
                    }
                    Ok(Some(other)) => panic!("receiver got {other:?} during the flood"),
                    Ok(None) => {}
                    Err(e) => panic!("receiver failed during the flood: {e}"),
                }
            }
        })
    };
    let sender = {
        let mut s = n1.connect("flood-tx");
        let (stop, sent_total) = (Arc::clone(&stop), Arc::clone(&sent_total));
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            let payload = [7u8; 512];
            let mut sent = 0u64;
            let started = Instant::now();
            let mut outcome = Ok(());
            while started.elapsed() < flood_for && outcome.is_ok() {
                if sent - received.load(Ordering::Acquire) > IN_FLIGHT_MAX {
                    std::thread::yield_now();
                    continue;
                }
                outcome = (0..64)
                    .try_for_each(|_| s.send(b"flood-rx", &payload))
                    .and_then(|()| s.flush());
                sent += 64;
            }
            // Always tell the others, even on failure, so nothing waits for a dead sender.
            sent_total.store(sent, Ordering::Release);
            stop.store(true, Ordering::Release);
            outcome.map(|()| sent)
        })
    };
    // Mid-flood: a registration on node 2 must reach node 1 (control lane), and no node may
    // be declared dead.
    std::thread::sleep(Duration::from_millis(500)); // let the flood build up: the workload
    let registered_at = Instant::now();
    let _late = n2.connect("flood-late");
    let mut row_seen_after = None;
    let give_up = Instant::now() + flood_for + Duration::from_secs(30);
    while !stop.load(Ordering::Acquire) {
        assert!(Instant::now() < give_up, "the flood never ended");
        for (me, other) in [(n1, 2u16), (n2, 1u16)] {
            if let Ok(v) = me.try_cluster(row_seen_after.is_none() && other == 2) {
                assert_ne!(
                    v.state_of(other),
                    Some("dead"),
                    "declared dead during the flood: {}",
                    v.raw
                );
                if row_seen_after.is_none() && other == 2 && v.has_row("flood-late") {
                    row_seen_after = Some(registered_at.elapsed());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = sender
        .join()
        .expect("sender thread")
        .unwrap_or_else(|e| panic!("the flood's sender failed: {e}"));
    let got = reader.join().expect("reader thread");
    let seen = row_seen_after.expect("node 1 never saw the row registered mid-flood");
    assert!(
        seen < Duration::from_secs(2),
        "a row registered mid-flood took {seen:?} to reach node 1"
    );
    if got != sent {
        let drops = |host| {
            http_get(addr(28, host, 7402), "/metrics")
                .map(|(_, body)| {
                    body.lines()
                        .filter(|l| l.contains("drops") || l.contains("forwarded"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default()
        };
        panic!(
            "sent {sent}, received {got}\nnode 1:\n{}\nnode 2:\n{}",
            drops(1),
            drops(2)
        );
    }
    assert!(sent > 10_000, "the flood was a flood: {sent} messages");
}
