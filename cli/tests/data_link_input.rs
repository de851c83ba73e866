//! What a peer sends on a data link, against a real node: a forward that is framed but
//! malformed loses that one message (counted as `link_malformed_forward`), never the link; the
//! forwards before and after it, from any sender, are delivered in order. The peer is a real
//! link handshake (`link_io::dial` with the cluster secret) followed by hand-made frames.

mod common;

use common::*;
use ringrelay::client::Event;
use ringrelay::cluster::link_io::{dial, LinkIdentity};
use ringrelay::cluster::wire::{encode_data_publish, encode_data_send, Lane, HEADER_LEN};
use ringrelay::config::Config;
use ringrelay::protocol::Message;
use ringrelay::tcp_congestion::TcpCongestion;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

const SECRET: &str = "data-link-input";

fn free_port() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A FWD_SEND from `sender` to `target` whose sender length byte says 0: framed correctly (the
/// header's length covers the body) but malformed (a sender is required).
fn malformed_send(target: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_data_send(&mut frame, target, &Message::plain(b"x", b"", payload));
    // Body: sender (len 1, "x"), target, payload. A zero length leaves one stray byte that the
    // decoder reads as the target's length: still inside the frame, and refused.
    frame[HEADER_LEN] = 0;
    frame
}

#[test]
fn a_malformed_forward_is_dropped_and_counted_and_the_data_link_keeps_delivering() {
    let cluster_listen = free_port();
    let cfg = Config {
        node_id: 1,
        cluster_listen: Some(cluster_listen.into()),
        cluster_secret: Some(SECRET.into()),
        workers: 1,
        ..config()
    };
    let relay = start(cfg.clone());
    wait_until("the node is ready", || relay.cluster_ready());
    let mut target = connect(relay.local_addr(), "target");
    target.subscribe(b"news").unwrap();
    sync(&mut target);

    let me = LinkIdentity {
        node_id: 2,
        incarnation: 1,
        advertise: free_port().to_string(),
        secret: SECRET.as_bytes().to_vec(),
        tls: None,
        congestion: TcpCongestion::Host,
    };
    let mut link = dial(&cluster_listen.to_string(), Lane::Data, 0, &me)
        .expect("the data link handshake succeeds")
        .stream;
    let mut bytes = Vec::new();
    encode_data_send(
        &mut bytes,
        b"target",
        &Message::plain(b"remote-a", b"", b"first"),
    );
    bytes.extend(malformed_send(b"target", b"lost"));
    encode_data_publish(
        &mut bytes,
        &Message::plain(b"remote-b", b"news", b"second"),
        b"",
        false,
    );
    // A publish with a flag bit its kind does not define is framed but malformed too.
    let mut bad_publish = Vec::new();
    encode_data_publish(
        &mut bad_publish,
        &Message::plain(b"remote-b", b"news", b"lost"),
        b"",
        false,
    );
    bad_publish[HEADER_LEN - 1] |= 0x80;
    bytes.extend(bad_publish);
    encode_data_send(
        &mut bytes,
        b"target",
        &Message::plain(b"remote-a", b"", b"third"),
    );
    link.write_all(&bytes).unwrap();

    let mut got = Vec::new();
    while got.len() < 3 {
        match next_event(&mut target) {
            Event::Message {
                sender,
                topic,
                payload,
                reply: None,
                headers: None,
            } => got.push((sender, topic, payload)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        got,
        vec![
            (b"remote-a".to_vec(), None, b"first".to_vec()),
            (
                b"remote-b".to_vec(),
                Some(b"news".to_vec()),
                b"second".to_vec()
            ),
            (b"remote-a".to_vec(), None, b"third".to_vec()),
        ]
    );
    wait_until("the malformed forward is counted", || {
        relay.stats().link_bad_frame_drops == 2
    });

    // The link is still up: a forward written now is delivered, and the node has not closed
    // its end.
    let mut more = Vec::new();
    encode_data_send(
        &mut more,
        b"target",
        &Message::plain(b"remote-a", b"", b"after"),
    );
    link.write_all(&more).unwrap();
    let (sender, _, payload) = next_message(&mut target);
    assert_eq!((sender, payload), (b"remote-a".to_vec(), b"after".to_vec()));
    link.socket()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    match link.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("the node ended the data link: {other:?}"),
    }
    assert_eq!(relay.stats().protocol_error_closes, 0);
    // The data link counts as a link, not as a client connection.
    assert_eq!(
        (relay.stats().links_open, relay.stats().connections_open),
        (1, 1)
    );
    assert_process_within_budget(&cfg);
}
