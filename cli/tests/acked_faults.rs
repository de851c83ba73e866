//! Acknowledged delivery under faults, checked in the style of Jepsen's checkers: three node
//! processes, each behind a fault proxy on its cluster port; senders on node 1 send numbered
//! acknowledged messages to receivers on nodes 2 and 3 while the test kills and restarts
//! nodes (the senders', the receivers', the third), pauses one for 2 s (SIGSTOP), and cuts and
//! heals a node's links, several times. Every client lists all three nodes and moves to
//! another when its node goes.
//!
//! The checker counts, per message: **lost** (confirmed to its sender, never delivered to the
//! receiving application), **duplicated** (delivered to the application twice),
//! **unexpected** (delivered, never sent) and **failed** (reported to the sender with a
//! reason). It asserts lost = duplicated = unexpected = 0 and, for every sender,
//! `sent == confirmed + failed + in_flight` with nothing in flight at the end.
//!
//! CI runs at least `ACKED_FAULTS_MESSAGES` (default 1,000,000) messages and at least one full
//! round of faults; a long run: `ACKED_FAULTS_SECS=1200 cargo test --profile test-release
//! -p ringrelay-cli --test acked_faults -- --nocapture` keeps faulting and sending for that
//! long.

mod cluster_common;
mod common;

use cluster_common::*;
use ringrelay::ack::SenderConfig;
use ringrelay::client::{
    AckedSendError, AckedSession, AckedSessionOptions, AckedStats, ClientOptions, Event,
    SessionOptions,
};
use ringrelay::protocol::ErrorCode;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const BLOCK: u8 = 32;
const SENDERS: usize = 3;
/// Receivers 0 and 1 live on node 2, receiver 2 on node 3.
const RECEIVER_HOMES: [usize; 3] = [1, 1, 2];
/// Bound on the whole run beyond its planned length (draining, restarts).
const RUN_SLACK: Duration = Duration::from_secs(180);
/// How long the senders wait, at the end, for their last messages to end.
const DRAIN: Duration = Duration::from_secs(60);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A growable bitmap of message numbers.
#[derive(Default, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    /// Sets bit `n`; returns whether it was set before.
    fn set(&mut self, n: u64) -> bool {
        let (word, bit) = ((n / 64) as usize, n % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let was = self.0[word] & (1 << bit) != 0;
        self.0[word] |= 1 << bit;
        was
    }

    fn get(&self, n: u64) -> bool {
        self.0
            .get((n / 64) as usize)
            .is_some_and(|w| w & (1 << (n % 64)) != 0)
    }
}

/// What one sender knows at the end.
struct SenderReport {
    sent: u64,
    confirmed: Bits,
    failed: u64,
    failure_reasons: Vec<String>,
    stats: AckedStats,
}

/// What one receiver's application got, per sender.
struct ReceiverReport {
    delivered: Vec<Bits>,
    duplicated: u64,
    unexpected: u64,
    count: u64,
    /// OVERLOADED notices: the relay dropped frames of this receiver's (acknowledgements) at a
    /// bound while a link was cut; the next acknowledgement or a retransmission makes good.
    overloaded: u64,
}

fn session_options(servers: &[SocketAddr]) -> AckedSessionOptions {
    AckedSessionOptions {
        session: SessionOptions {
            servers: servers.iter().map(|a| a.to_string()).collect(),
            // Longer than a node takes to die and come back.
            reconnect_timeout: Duration::from_secs(60),
            client: ClientOptions {
                write_timeout: Some(Duration::from_secs(10)),
                ..ClientOptions::default()
            },
            ..SessionOptions::default()
        },
        sender: SenderConfig {
            // Faults last seconds; a message may wait out several before it fails.
            ack_timeout_ms: 60_000,
            attempts_max: 40,
            ..SenderConfig::default()
        },
        ..AckedSessionOptions::default()
    }
}

/// The client list of a client at home on node `home`: its own node first.
fn servers_from(nodes: &[Node], home: usize) -> Vec<SocketAddr> {
    (0..nodes.len())
        .map(|k| nodes[(home + k) % nodes.len()].client)
        .collect()
}

/// Message `n` of sender `s`: 16 bytes, (s, n) little-endian.
fn payload(s: usize, n: u64) -> Vec<u8> {
    let mut p = (s as u64).to_le_bytes().to_vec();
    p.extend_from_slice(&n.to_le_bytes());
    p
}

fn parse(payload: &[u8]) -> Option<(usize, u64)> {
    let s = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let n = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    (payload.len() == 16 && (s as usize) < SENDERS).then_some((s as usize, n))
}

/// Sends to the receivers in turn until `keep_going` says stop, then drains.
fn run_sender(
    s: usize,
    servers: Vec<SocketAddr>,
    keep_going: impl Fn(u64) -> bool,
    sent_total: Arc<AtomicU64>,
) -> SenderReport {
    let mut session =
        AckedSession::connect(format!("sender-{s}").as_bytes(), session_options(&servers))
            .unwrap_or_else(|e| panic!("sender {s} cannot connect: {e}"));
    // Message n goes to receiver n % R as its sequence number n / R + 1 (numbers are dense
    // per target, from 1), so a confirmation names its message without a table.
    let receivers = RECEIVER_HOMES.len() as u64;
    let number = |r: usize, seq: u64| (seq - 1) * receivers + r as u64;
    let mut confirmed = Bits::default();
    let mut failed = 0;
    let mut failure_reasons = Vec::new();
    let mut next: u64 = 0;
    let mut on_event = |event: Event| match event {
        Event::Confirmed {
            target,
            first_seq,
            last_seq,
        } => {
            let r = receiver_index(&target);
            for seq in first_seq..=last_seq {
                confirmed.set(number(r, seq));
            }
        }
        Event::Failed { reason, .. } => {
            failed += 1;
            if failure_reasons.len() < 5 {
                failure_reasons.push(reason.to_string());
            }
        }
        Event::Reconnected { .. } | Event::Presence { .. } | Event::Error { .. } => {}
        other => panic!("sender {s}: unexpected {other:?}"),
    };
    while keep_going(next) {
        let r = (next % receivers) as usize;
        match session.send(format!("receiver-{r}").as_bytes(), payload(s, next)) {
            Ok(seq) => {
                assert_eq!(number(r, seq), next, "dense sequence numbers");
                next += 1;
                sent_total.fetch_add(1, Ordering::Relaxed);
            }
            Err(AckedSendError::WouldBlock(_)) => {
                if let Some(event) = session
                    .recv(Duration::from_millis(2))
                    .expect("sender session")
                {
                    on_event(event);
                }
            }
            Err(AckedSendError::Client(e)) => panic!("sender {s}: {e}"),
        }
        if next % 256 == 0 {
            while let Some(event) = session.recv(Duration::ZERO).expect("sender session") {
                on_event(event);
            }
        }
    }
    let deadline = Instant::now() + DRAIN;
    while session.stats().sender.in_flight > 0 && Instant::now() < deadline {
        if let Some(event) = session
            .recv(Duration::from_millis(50))
            .expect("sender session")
        {
            on_event(event);
        }
    }
    while let Some(event) = session.recv(Duration::ZERO).expect("sender session") {
        on_event(event);
    }
    let stats = session.stats();
    let stats_at_close = session.close().expect("close the sender");
    assert_eq!(stats_at_close.sender.in_flight, 0);
    SenderReport {
        sent: next,
        confirmed,
        failed,
        failure_reasons,
        stats,
    }
}

fn receiver_index(target: &[u8]) -> usize {
    std::str::from_utf8(target)
        .ok()
        .and_then(|t| t.strip_prefix("receiver-"))
        .and_then(|r| r.parse().ok())
        .expect("targets are receiver-N")
}

fn run_receiver(r: usize, servers: Vec<SocketAddr>, stop: Arc<AtomicBool>) -> ReceiverReport {
    let mut session = AckedSession::connect(
        format!("receiver-{r}").as_bytes(),
        session_options(&servers),
    )
    .unwrap_or_else(|e| panic!("receiver {r} cannot connect: {e}"));
    let mut report = ReceiverReport {
        delivered: vec![Bits::default(); SENDERS],
        duplicated: 0,
        unexpected: 0,
        count: 0,
        overloaded: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        match session
            .recv(Duration::from_millis(20))
            .expect("receiver session")
        {
            Some(Event::AckedMessage {
                payload, sender, ..
            }) => match parse(&payload) {
                Some((s, n)) if sender == format!("sender-{s}").as_bytes() => {
                    report.count += 1;
                    if report.delivered[s].set(n) {
                        report.duplicated += 1;
                    }
                }
                _ => report.unexpected += 1,
            },
            Some(Event::Error { code, .. }) if code == ErrorCode::OVERLOADED => {
                report.overloaded += 1;
            }
            Some(Event::Reconnected { .. }) | None => {}
            Some(other) => panic!("receiver {r}: unexpected {other:?}"),
        }
    }
    session.close().expect("close the receiver");
    report
}

/// Index of the node where `id` is registered now, as the first node that answers sees it.
fn home_of(nodes: &[Node], id: &str) -> usize {
    wait_for(&format!("the node of {id}"), WAIT, || {
        nodes.iter().find_map(|node| {
            let view = node.try_cluster(true).ok()?;
            let row = view.rows_for(id).first().map(|r| r.node)?;
            nodes.iter().position(|n| n.id == row)
        })
    })
}

fn kill_and_restart(node: &Node) {
    node.kill();
    thread::sleep(Duration::from_millis(500));
    node.restart();
}

fn cut_and_heal(proxy: &Proxy) {
    proxy.partition();
    thread::sleep(Duration::from_millis(1500));
    proxy.heal();
}

/// One fault, aimed at the node the senders use now (sender-0's), the node a receiver uses
/// now (receiver-0's), or a third; then the cluster recovers and traffic flows for a while.
fn inject(fault: usize, nodes: &[Node], proxies: &[Proxy]) -> String {
    let senders = home_of(nodes, "sender-0");
    let receivers = home_of(nodes, "receiver-0");
    let third = (0..nodes.len())
        .find(|&k| k != senders && k != receivers)
        .unwrap_or((senders + 1) % nodes.len());
    let what = match fault % 6 {
        0 => {
            kill_and_restart(&nodes[senders]);
            format!("killed and restarted node {} (the senders')", senders + 1)
        }
        1 => {
            nodes[receivers].sigstop();
            thread::sleep(Duration::from_secs(2));
            nodes[receivers].sigcont();
            format!("paused node {} (a receiver's) for 2 s", receivers + 1)
        }
        2 => {
            cut_and_heal(&proxies[third]);
            format!(
                "cut node {}'s links (the third) for 1.5 s, then healed them",
                third + 1
            )
        }
        3 => {
            kill_and_restart(&nodes[receivers]);
            format!("killed and restarted node {} (a receiver's)", receivers + 1)
        }
        4 => {
            cut_and_heal(&proxies[senders]);
            format!(
                "cut node {}'s links (the senders') for 1.5 s, then healed them",
                senders + 1
            )
        }
        _ => {
            kill_and_restart(&nodes[third]);
            format!("killed and restarted node {} (the third)", third + 1)
        }
    };
    wait_all_up(nodes);
    // Traffic between faults.
    thread::sleep(Duration::from_millis(1500));
    what
}

fn wait_all_up(nodes: &[Node]) {
    for node in nodes {
        node.wait_ready(WAIT);
    }
    for node in nodes {
        let others: Vec<u16> = nodes
            .iter()
            .map(|n| n.id)
            .filter(|&k| k != node.id)
            .collect();
        node.wait_up(&others);
    }
}

#[test]
fn acked_messages_survive_node_kills_pauses_and_cut_links_without_loss_or_duplicates() {
    let messages_min = env_u64("ACKED_FAULTS_MESSAGES", 1_000_000);
    let run_secs_min = env_u64("ACKED_FAULTS_SECS", 0);
    let _claim = claim_block(BLOCK);
    let proxies: Vec<Proxy> = (1..=3)
        .map(|k| Proxy::start(proxy_addr(BLOCK, k), addr(BLOCK, k, CLUSTER_PORT)))
        .collect();
    let nodes: Vec<Node> = (1..=3u16)
        .map(|k| {
            let spec = NodeSpec::new(BLOCK, k).advertise(proxies[k as usize - 1].addr);
            Node::start(if k == 1 {
                spec
            } else {
                spec.peers(&[proxies[0].addr])
            })
        })
        .collect();
    wait_all_up(&nodes);
    let started = Instant::now();
    let faults_done = Arc::new(AtomicBool::new(false));
    let stop_receivers = Arc::new(AtomicBool::new(false));
    let sent_total = Arc::new(AtomicU64::new(0));
    let receivers: Vec<_> = RECEIVER_HOMES
        .iter()
        .enumerate()
        .map(|(r, &home)| {
            let servers = servers_from(&nodes, home);
            let stop = Arc::clone(&stop_receivers);
            thread::spawn(move || run_receiver(r, servers, stop))
        })
        .collect();
    let per_sender = messages_min.div_ceil(SENDERS as u64);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let servers = servers_from(&nodes, 0);
            let done = Arc::clone(&faults_done);
            let total = Arc::clone(&sent_total);
            thread::spawn(move || {
                run_sender(
                    s,
                    servers,
                    move |n| n < per_sender || !done.load(Ordering::Relaxed),
                    total,
                )
            })
        })
        .collect();
    // Faults until one full round has passed, the planned time is over and the messages are
    // out; bounded.
    let mut fault = 0;
    while fault < 6
        || started.elapsed() < Duration::from_secs(run_secs_min)
        || sent_total.load(Ordering::Relaxed) < messages_min
    {
        assert!(
            started.elapsed() < Duration::from_secs(run_secs_min) + RUN_SLACK,
            "the run did not finish in time: {} messages sent after {fault} faults",
            sent_total.load(Ordering::Relaxed)
        );
        let what = inject(fault, &nodes, &proxies);
        eprintln!(
            "[{:6.1} s] fault {fault}: {what}; {} messages sent so far",
            started.elapsed().as_secs_f64(),
            sent_total.load(Ordering::Relaxed)
        );
        fault += 1;
    }
    faults_done.store(true, Ordering::Relaxed);
    let senders: Vec<SenderReport> = senders
        .into_iter()
        .map(|h| h.join().expect("sender"))
        .collect();
    stop_receivers.store(true, Ordering::Relaxed);
    let receivers: Vec<ReceiverReport> = receivers
        .into_iter()
        .map(|h| h.join().expect("receiver"))
        .collect();

    // The checker.
    let mut delivered = vec![Bits::default(); SENDERS];
    let mut duplicated = 0;
    let mut unexpected = 0;
    let mut delivered_count = 0;
    let overloaded: u64 = receivers.iter().map(|r| r.overloaded).sum();
    for r in &receivers {
        duplicated += r.duplicated;
        unexpected += r.unexpected;
        delivered_count += r.count;
        for (s, bits) in r.delivered.iter().enumerate() {
            for (w, word) in bits.0.iter().enumerate() {
                for b in 0..64 {
                    if word & (1 << b) != 0 && delivered[s].set((w * 64 + b) as u64) {
                        duplicated += 1;
                    }
                }
            }
        }
    }
    let (mut sent, mut confirmed, mut failed, mut lost) = (0, 0, 0, 0);
    for (s, report) in senders.iter().enumerate() {
        let st = &report.stats.sender;
        assert_eq!(st.sent, report.sent, "sender {s}");
        assert_eq!(
            st.sent,
            st.confirmed + st.failed() + st.in_flight,
            "sender {s}: {st:?}"
        );
        assert_eq!(
            st.in_flight, 0,
            "sender {s} still has messages in flight: {st:?}"
        );
        assert_eq!(st.failed(), report.failed, "sender {s}");
        sent += report.sent;
        confirmed += st.confirmed;
        failed += report.failed;
        for n in 0..report.sent {
            if report.confirmed.get(n) && !delivered[s].get(n) {
                lost += 1;
            }
            // Delivered beyond what was sent is unexpected.
        }
        let beyond = delivered[s].0.len() as u64 * 64;
        for n in report.sent..beyond {
            if delivered[s].get(n) {
                unexpected += 1;
            }
        }
        if !report.failure_reasons.is_empty() {
            eprintln!(
                "sender {s} failures, first ones: {:?}",
                report.failure_reasons
            );
        }
        eprintln!("sender {s}: {:?}", st);
    }
    eprintln!(
        "checker: {fault} faults in {:.1} s; sent {sent}, confirmed {confirmed}, failed {failed}, \
         delivered {delivered_count}; lost {lost}, duplicated {duplicated}, unexpected {unexpected}; \
         receivers told OVERLOADED {overloaded} times",
        started.elapsed().as_secs_f64()
    );
    assert!(sent >= messages_min, "only {sent} messages were sent");
    assert_eq!(lost, 0, "confirmed but never delivered");
    assert_eq!(duplicated, 0, "delivered twice");
    assert_eq!(unexpected, 0, "delivered but never sent");
}
