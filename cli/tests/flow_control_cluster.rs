//! Flow control across two nodes (README "Flow control"): a sender on node 1 floods messages
//! (1 KiB by id, 1 KiB by topic, 16 KiB by id) to a receiver on node 2 whose reading thread
//! stops for 20 ms now and then, and once for 200 ms.
//! Node 2 stops reading the data link while the receiver's queue is full, node 1's link queue
//! fills and node 1 then slows the sender at its source: every message arrives, none is
//! dropped at the link, nobody is closed. Real `ringrelay serve` processes in the address
//! block 127.0.40.0/24 (see `cluster_common`).

mod cluster_common;
#[path = "shared/paced_reader.rs"]
mod paced_reader;

use cluster_common::*;
use paced_reader::{numbered_payload, spawn_paced_reader, Pauses};
use std::time::{Duration, Instant};

/// How the flood addresses the far receiver.
#[derive(Clone, Copy, Debug)]
enum Route {
    ById,
    /// A topic the receiver alone subscribes to.
    ByTopic,
}

const TOPIC: &str = "far-feed";

/// Held by the flood running now (see `flood_across_two_nodes`).
static FLOODS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_flood_across_nodes_to_a_paused_receiver_is_slowed_at_its_source_and_nothing_is_lost() {
    flood_across_two_nodes(40, Route::ById, 1024, 1_000_000);
}

/// Issue 15 lost messages by topic too (4 runs of 5).
#[test]
fn a_flood_by_topic_across_nodes_to_a_paused_subscriber_loses_nothing() {
    flood_across_two_nodes(41, Route::ByTopic, 1024, 300_000);
}

/// And at 16 KiB (5 runs of 5): 40,000 messages, 640 MiB, ten times the link's bound.
#[test]
fn a_flood_of_16_kib_messages_across_nodes_to_a_paused_receiver_loses_nothing() {
    flood_across_two_nodes(42, Route::ById, 16 * 1024, 40_000);
}

/// A sender on node 1 floods `n` messages of `payload_len` bytes to a receiver on node 2 (by
/// its id, or by a topic only it subscribes to) whose reading thread pauses now and then:
/// every message arrives in order, nothing is dropped at the link, nobody is closed, and node
/// 1 held the sender back on its link.
fn flood_across_two_nodes(block: u8, route: Route, payload_len: usize, n: u64) {
    // One flood at a time: two side by side (four relay processes, two senders and two
    // readers on two CPUs) starve each other's readers, which only adds noise here.
    let _one_at_a_time = FLOODS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_block, nodes) = start_cluster(block, 2);
    let (n1, n2) = (&nodes[0], &nodes[1]);
    let mut sender = n1.connect("near-sender");
    let probe = matches!(route, Route::ByTopic).then(|| await_interest(&mut sender, n2));
    // Issue 15's pauses of 20 ms, then one of 200 ms: whether a 20 ms pause backs the flood
    // up to node 1 depends on the machine's speed (first the receiver's queue, both kernels'
    // socket buffers and node 1's 16 MiB stall watermark fill; one CI run got through without
    // a stall); 200 ms does on any machine this runs on, and is still shorter than
    // `stall_ms_max`.
    let pauses = Pauses {
        every: n / 8,
        count: 6,
        pause: Duration::from_millis(20),
        last_pause: Duration::from_millis(200),
    };
    let topic = matches!(route, Route::ByTopic).then_some(TOPIC);
    let reader = spawn_paced_reader(
        n2.client,
        "far-receiver",
        topic,
        n,
        pauses,
        Duration::from_secs(180),
    );
    n1.wait_row("far-receiver", 2);
    // The receiver's subscription holds node 2's interest now; the probe may go.
    drop(probe);
    let started = Instant::now();
    let mut payload = vec![0x42; payload_len];
    for i in 0..n {
        numbered_payload(&mut payload, i);
        match route {
            Route::ById => sender.send(b"far-receiver", &payload),
            Route::ByTopic => sender.publish(TOPIC.as_bytes(), &payload),
        }
        .expect("send");
        if i % 64 == 63 {
            sender.flush().expect("flush");
        }
    }
    sender.flush().expect("flush");
    let got = reader.join().expect("the reader thread");
    eprintln!(
        "{n} messages of {payload_len} B {route:?} across two nodes in {:?}: {got:?}",
        started.elapsed()
    );
    assert_eq!(got, Ok(n));
    let errors = sender
        .round_trip(WAIT)
        .expect("the sender round-trips after the flood");
    assert!(
        errors.is_empty(),
        "the sender heard {} events, first {:?}",
        errors.len(),
        errors.first()
    );
    for reason in ["forward_no_link", "forward_link_full"] {
        let dropped = format!("ringrelay_drops_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(n1, &dropped), 0.0, "{reason}");
    }
    for node in [n1, n2] {
        assert_eq!(sample(node, "ringrelay_slow_consumer_closes_total"), 0.0);
    }
    assert!(
        sample(n1, "ringrelay_producer_stalls_total{on=\"link\"}") > 0.0,
        "node 1 never held the sender back"
    );
}

/// Waits until node 2's interest in [`TOPIC`] has reached node 1: a probe subscriber there
/// gets a probe published by `sender`. Every probe has then arrived (one sender's messages
/// keep their order), so none reaches the receiver, which subscribes next; the probe is
/// returned, to be closed once the receiver's subscription holds node 2's interest (interest
/// is per node, so node 1 never loses it).
fn await_interest(sender: &mut ringrelay::client::Client, n2: &Node) -> ringrelay::client::Client {
    let mut probe = n2.connect("far-probe");
    probe.subscribe(TOPIC.as_bytes()).expect("subscribe");
    assert!(sync(&mut probe).is_empty());
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "node 2's interest in {TOPIC} did not reach node 1 within {WAIT:?}"
        );
        sender.publish(TOPIC.as_bytes(), b"probe").expect("probe");
        sender.flush().expect("flush");
        if let Some(event) = probe
            .recv(Duration::from_millis(20))
            .expect("the probe reads")
        {
            assert!(
                matches!(&event, ringrelay::client::Event::Message { payload, .. } if payload == b"probe"),
                "the probe got {event:?}"
            );
            return probe;
        }
    }
}
