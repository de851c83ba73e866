//! A cluster node that is still joining holds a client's HELLO and the frames pipelined after
//! it until it is ready (PROTOCOL.md section 5.1): nothing is routed before WELCOME, and what
//! follows WELCOME carries the client's id as sender.

mod common;

use common::*;
use ringrelay::config::Config;
use ringrelay::protocol::Frame;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const READY_WAIT_MS: u64 = 1_500;

/// A node whose only seed never answers: it stays not ready for `cluster_ready_wait_ms`.
fn joining_node() -> ringrelay::server::Server {
    start(joining_config())
}

fn joining_config() -> Config {
    // A port that was free a moment ago and has no listener now.
    let silent_seed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    Config {
        node_id: 1,
        cluster_listen: Some("127.0.0.1:0".parse().unwrap()),
        cluster_secret: Some("s".into()),
        peers: vec![silent_seed.to_string()],
        cluster_ready_wait_ms: READY_WAIT_MS,
        ..config()
    }
}

#[test]
fn frames_pipelined_after_hello_wait_for_welcome_and_carry_the_sender() {
    let relay = joining_node();
    let started = Instant::now();
    assert!(!relay.cluster_ready(), "the node must still be joining");
    let mut raw = Raw::connect(relay.local_addr());
    let mut pipelined = encoded(ringrelay::protocol::hello(b"early", b""));
    pipelined.extend(encoded(Frame::Subscribe {
        topic: b"news",
        group: b"",
    }));
    pipelined.extend(encoded(Frame::Send {
        target: b"early",
        payload: b"to myself",
    }));
    pipelined.extend(encoded(Frame::Publish {
        topic: b"news",
        payload: b"to my topic",
        no_echo: false,
    }));
    raw.write(&pipelined);
    let deadline = Instant::now() + Duration::from_millis(READY_WAIT_MS) + WAIT;
    match raw.next_frame_by(deadline) {
        Ok(Owned::Welcome { .. }) => {}
        other => panic!("the first frame must be WELCOME, got {other:?}"),
    }
    assert!(relay.cluster_ready(), "WELCOME only once the node is ready");
    assert!(started.elapsed() >= Duration::from_millis(READY_WAIT_MS / 2));
    for (topic, payload) in [(&b""[..], &b"to myself"[..]), (b"news", b"to my topic")] {
        match raw.next_frame() {
            Ok(Owned::Deliver {
                sender,
                topic: t,
                payload: p,
            }) => {
                assert_eq!(sender, b"early", "never an empty sender");
                assert_eq!((t.as_slice(), p.as_slice()), (topic, payload));
            }
            other => panic!("expected DELIVER, got {other:?}"),
        }
    }
    assert_process_within_budget(&joining_config());
}
