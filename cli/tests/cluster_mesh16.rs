//! Sixteen real `ringrelay serve` processes (one worker each) on 127.0.60.1 to .16: the full
//! mesh forms from one seed, a client on every node reaches a client on every other node, and
//! a SIGKILLed node is declared dead by all the others within the documented bound.
//!
//! Bounded: every wait has a deadline; the whole test takes about 20 s on a 2-core machine.

mod cluster_common;

use cluster_common::*;
use ringrelay::client::{Client, Event};
use ringrelay::protocol::ErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const BLOCK: u8 = 60;
const NODES: u16 = 16;
/// Sixteen processes start and link up on two shared cores: more than the default wait.
const MESH_WAIT: Duration = Duration::from_secs(60);
/// README failure table: dead at most `cluster_peer_dead_after_ms` (3 s) after the last
/// heartbeat (which came at most one interval, 0.5 s, before the kill), plus polling.
const DEATH_BOUND: Duration = Duration::from_secs(5);

fn client_id(node: u16) -> String {
    format!("mesh-{node}")
}

/// Starts the nodes (node 1 is everyone's only seed) and waits for the full mesh.
fn start_mesh() -> Vec<Node> {
    let first = Node::start(NodeSpec::new(BLOCK, 1).workers(1));
    let seed = first.cluster;
    let mut nodes = vec![first];
    for k in 2..=NODES {
        nodes.push(Node::start(
            NodeSpec::new(BLOCK, k).peers(&[seed]).workers(1),
        ));
    }
    for node in &nodes {
        node.wait_ready(MESH_WAIT);
    }
    for node in &nodes {
        let others: Vec<u16> = (1..=NODES).filter(|&k| k != node.id).collect();
        node.wait_cluster(false, "the full mesh up", MESH_WAIT, |v| v.all_up(&others));
    }
    nodes
}

/// Every client sends one message to every other client; each must get exactly one from each.
/// A send that finds its data link not dialed yet gets UNREACHABLE and is sent again.
fn all_pairs_exchange(clients: &mut [Client]) {
    let n = clients.len();
    let deadline = Instant::now() + MESH_WAIT;
    let mut pending: BTreeSet<(usize, usize)> = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .collect();
    let mut got: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut round_no = 0;
    while !pending.is_empty() {
        round_no += 1;
        assert!(
            Instant::now() < deadline,
            "undelivered (from, to): {pending:?}"
        );
        let round: Vec<(usize, usize)> = pending.iter().copied().collect();
        for (a, b) in round {
            let to = client_id(b as u16 + 1);
            // Unique per round: a resent pair may arrive twice, a payload never may.
            let payload = format!("{a}->{b}#{round_no}");
            clients[a]
                .send(to.as_bytes(), payload.as_bytes())
                .expect("send");
        }
        let settle = Instant::now() + Duration::from_secs(2);
        for (i, c) in clients.iter_mut().enumerate() {
            // Wait for the round's messages until `settle`, then take what is left quickly.
            loop {
                let wait = settle
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100));
                let Some(event) = c.recv(wait).expect("recv") else {
                    break;
                };
                match event {
                    Event::Message {
                        sender, payload, ..
                    } => {
                        let text = lossy(&payload);
                        assert!(
                            got.entry(i).or_default().insert(text.clone()),
                            "{text} twice"
                        );
                        let from: usize = text
                            .split("->")
                            .next()
                            .and_then(|s| s.parse().ok())
                            .expect("payload names its sender");
                        assert_eq!(lossy(&sender), client_id(from as u16 + 1), "sender stamped");
                        pending.remove(&(from, i));
                    }
                    Event::Error { code, .. } if code == ErrorCode::UNREACHABLE => {}
                    other => panic!("{}: unexpected {other:?}", client_id(i as u16 + 1)),
                }
            }
        }
    }
    for i in 0..n {
        let senders: BTreeSet<&str> = got
            .get(&i)
            .map(|g| g.iter().filter_map(|t| t.split("->").next()).collect())
            .unwrap_or_default();
        assert_eq!(senders.len(), n - 1, "client {i} heard from {senders:?}");
    }
}

#[test]
fn sixteen_nodes_form_a_mesh_route_every_pair_and_detect_a_kill() {
    let _claim = claim_block(BLOCK);
    let started = Instant::now();
    let nodes = start_mesh();
    eprintln!("16-node mesh up after {:?}", started.elapsed());
    let mut clients: Vec<Client> = nodes.iter().map(|n| n.connect(&client_id(n.id))).collect();
    for node in &nodes {
        node.wait_cluster(true, "every client's row", MESH_WAIT, |v| {
            (1..=NODES).all(|k| v.rows_for(&client_id(k)).iter().any(|r| r.node == k))
        });
    }
    all_pairs_exchange(&mut clients);
    eprintln!("all 240 pairs delivered after {:?}", started.elapsed());

    let victim = &nodes[NODES as usize - 1];
    let killed_at = Instant::now();
    victim.kill();
    for node in &nodes[..NODES as usize - 1] {
        let left = DEATH_BOUND.saturating_sub(killed_at.elapsed());
        node.wait_cluster(true, "node 16 dead and its rows purged", left, |v| {
            v.state_of(NODES) == Some("dead") && v.rows_of_node(NODES).is_empty()
        });
    }
    eprintln!(
        "node 16 dead on all 15 others after {:?}",
        killed_at.elapsed()
    );
}
