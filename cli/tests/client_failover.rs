//! The reconnecting client ([`Session`]) against a real three-node cluster: the node a session
//! is connected to is killed (SIGKILL), and the session reconnects to another node, registers
//! its id, subscription and watch there, and receives direct and topic messages again within
//! [`RECEIVING_AGAIN_MAX`] of the kill (the bound the README documents); the same when the
//! node is frozen instead (SIGSTOP), within [`RECEIVING_AGAIN_AFTER_FREEZE_MAX`].

mod cluster_common;
#[path = "shared/set_on_drop.rs"]
mod set_on_drop;

use cluster_common::*;
use ringrelay::client::{Client, Event, Session, SessionOptions};
use set_on_drop::SetOnDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const BLOCK: u8 = 30;

/// From the kill to the first message received through another node. The session sees the
/// connection end at once (the kernel closes a killed process's sockets), tries the next
/// server within its first backoff, and its new registration replaces the dead node's row on
/// every node at once (registration epochs), without waiting for the node to be declared
/// dead.
const RECEIVING_AGAIN_MAX: Duration = Duration::from_secs(5);

#[test]
fn a_session_whose_node_is_killed_receives_again_through_another_node() {
    fails_over(|node| node.kill(), RECEIVING_AGAIN_MAX);
}

/// A frozen node (SIGSTOP: no FIN, no RST, no answer) is given up once it has been silent for
/// two heartbeat intervals of the relay (5 s each by default), then as after a kill.
const RECEIVING_AGAIN_AFTER_FREEZE_MAX: Duration = Duration::from_secs(15);

#[test]
fn a_session_whose_node_freezes_receives_again_through_another_node() {
    fails_over(|node| node.sigstop(), RECEIVING_AGAIN_AFTER_FREEZE_MAX);
}

/// Connects a session to node 2 of three, receiving direct and topic messages from a sender
/// on node 1; `fail`s node 2; checks the session receives both through node 3 within `bound`.
fn fails_over(fail: impl FnOnce(&Node), bound: Duration) {
    let (_claim, nodes) = start_cluster(BLOCK, 3);
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    let servers = [n2.client, n3.client, n1.client].map(|a| a.to_string());
    let mut session = Session::connect(
        b"mobile",
        SessionOptions {
            servers: servers.to_vec(),
            ..SessionOptions::default()
        },
    )
    .expect("the session connects");
    assert_eq!(session.server(), servers[0]);
    session.subscribe(b"news").unwrap();
    session.watch(b"sender").unwrap();

    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The sender on node 1 sends and publishes to the session every 20 ms throughout.
        let sender = s.spawn(|| {
            let mut c = Client::connect(n1.client, b"sender", None).expect("sender connects");
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("m{k}");
                c.send(b"mobile", body.as_bytes()).unwrap();
                c.publish(b"news", body.as_bytes()).unwrap();
                c.flush().unwrap();
                // Errors (unknown id while the row moves) are expected; drain them.
                while let Ok(Some(_)) = c.recv(Duration::from_millis(20)) {}
                k += 1;
            }
        });

        // Stops the sender however this scope ends: a failed assertion below is reported
        // instead of the scope waiting for the sender for ever.
        let stop_sender = SetOnDrop(&stop);

        // Before the kill: both kinds arrive through node 2.
        wait_for_both(&mut session, Instant::now() + WAIT);

        fail(n2);
        let failed_at = Instant::now();
        let mut reconnected = None;
        let deadline = failed_at + bound;
        while reconnected.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no reconnection within {bound:?}");
            if let Some(Event::Reconnected { server }) = session.recv(left).unwrap() {
                reconnected = Some(server);
            }
        }
        let server = reconnected.unwrap();
        assert_eq!(server, servers[1], "the next server in the list");
        assert_eq!(session.server(), servers[1]);
        wait_for_both(&mut session, deadline);
        let again = failed_at.elapsed();
        assert!(again < bound, "receiving again after {again:?}");
        assert_eq!(session.reconnects(), 1);
        drop(stop_sender);
        sender.join().unwrap();
    });
    session.close().unwrap();
    n2.kill();
}

/// Receives until a direct message and a topic message from "sender" have both arrived.
fn wait_for_both(session: &mut Session, deadline: Instant) {
    let (mut direct, mut topic) = (false, false);
    while !(direct && topic) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "direct {direct}, topic {topic} by the deadline"
        );
        match session.recv(left).unwrap() {
            Some(Event::Message {
                sender, topic: t, ..
            }) if sender == b"sender" => match t {
                None => direct = true,
                Some(t) if t == b"news" => topic = true,
                Some(other) => panic!("topic {other:?}"),
            },
            Some(Event::Presence { .. }) | None => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
}
