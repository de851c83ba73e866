//! Drop reports across nodes (README "Flow control"): a forward the receiver's node drops at
//! one of its bounds is reported to its sender on the other node. Its own test binary, so its
//! flood does not run beside the timing-sensitive floods of `flow_control_cluster.rs`. Real
//! `ringrelay serve` processes in the address block 127.0.43.0/24 (see `cluster_common`).

mod cluster_common;
#[path = "shared/overloaded.rs"]
mod overloaded;

use cluster_common::*;
use overloaded::overloaded_about;

/// Node 2's bounds, tight enough for one receiver that reads nothing to reach them: its one
/// worker's queues together are capped at its `pending_bytes_max`, so past the stall budget
/// (20 ms) node 2 drops forwards to it (and never closes it: its queue cannot pass the bound).
const TIGHT_FAR_NODE: &str = "pending_bytes_max = 2097152\n\
                              pending_bytes_per_worker_max = 2097152\n\
                              stall_ms_max = 20\n\
                              slow_consumer_grace_ms = 60000\n";

/// A forward dropped at a bound of the receiver's node is reported to its sender on the
/// other node: node 2 sends FWD_DROPPED back over its link, node 1 tells the sender ERROR
/// OVERLOADED naming the receiver. The sender is not closed, and both nodes count it.
#[test]
fn a_drop_on_the_receivers_node_is_reported_to_the_sender_on_the_other_node() {
    let _block = claim_block(43);
    let n1 = Node::start(NodeSpec::new(43, 1));
    let n2 = Node::start(
        NodeSpec::new(43, 2)
            .peers(&[n1.cluster])
            .workers(1)
            .config_toml(TIGHT_FAR_NODE),
    );
    for node in [&n1, &n2] {
        node.wait_ready(WAIT);
    }
    n1.wait_up(&[2]);
    n2.wait_up(&[1]);
    // Never reads: node 2's queue for it fills to the worker's bound.
    let _stuck = n2.connect("stuck");
    n1.wait_row("stuck", 2);
    let mut sender = n1.connect("near-sender");
    // Node 2 reports by the sender's row: a sender it does not know yet is not told.
    n2.wait_row("near-sender", 1);
    let payload = vec![0x42; 1024];
    // 24 MiB: past the stuck client's socket buffers and node 2's 2 MiB.
    for i in 0..24_000u32 {
        sender.send(b"stuck", &payload).expect("send");
        if i % 64 == 63 {
            sender.flush().expect("flush");
        }
    }
    sender.flush().expect("flush");
    // The report crosses the link after the drops: round-trip until it is here (bounded).
    let mut heard = Vec::new();
    let report = wait_for("ERROR OVERLOADED about stuck", WAIT, || {
        let events = sender.round_trip(WAIT).expect("the sender is not closed");
        heard.extend(events);
        overloaded_about(&heard, b"stuck")
    });
    assert!(
        report.starts_with("relay overloaded: messages dropped on the way"),
        "{report}"
    );
    let dropped = sample(&n2, "ringrelay_drops_total{reason=\"worker_queues_full\"}");
    assert!(dropped > 0.0, "node 2 dropped at its bound");
    assert!(sample(&n2, "ringrelay_drop_reports_total") >= 1.0);
    assert_eq!(sample(&n2, "ringrelay_drops_unreported_total"), 0.0);
    assert_eq!(sample(&n1, "ringrelay_slow_consumer_closes_total"), 0.0);
}
