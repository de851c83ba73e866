//! Payloads inside the zero-copy band (32..512 KiB here) are received into their own buffer
//! and sent on by reference, larger ones are copied; this checks they arrive intact and in order with small frames around them, to
//! local and cross-worker destinations, for direct sends and fan-out.

#[path = "shared/stop_bound.rs"]
mod stop_bound;

use ringrelay::client::{Client, ClientOptions, Event};
use ringrelay::config::Config;
use ringrelay::server::Server;
use std::time::Duration;
use stop_bound::stopped_within_bound;

const WAIT: Duration = Duration::from_secs(10);

/// Connects `id` with every blocking write bounded by [`WAIT`]: megabytes are queued before
/// anything reads them, so a relay that stops reading fails the test at the write instead of
/// hanging it.
fn connect(addr: std::net::SocketAddr, id: &[u8]) -> Client {
    let options = ClientOptions {
        write_timeout: Some(WAIT),
        ..ClientOptions::default()
    };
    Client::connect_with(addr, id, None, options).unwrap()
}

fn relay() -> Server {
    Server::start(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        zero_copy_threshold_bytes: 32 * 1024,
        zero_copy_max_bytes: 512 * 1024,
        ..Config::default()
    })
    .expect("relay starts")
}

/// A payload whose every byte depends on its index and a seed, so corruption is detected.
fn payload(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn next_message(c: &mut Client) -> (Vec<u8>, Option<Vec<u8>>, Vec<u8>) {
    loop {
        match c
            .recv(WAIT)
            .expect("recv")
            .expect("a message within the timeout")
        {
            Event::Message {
                sender,
                topic,
                payload,
                reply: None,
                headers: None,
            } => return (sender, topic, payload),
            Event::Presence { .. } => continue,
            other => panic!("unexpected event {other:?}"),
        }
    }
}

#[test]
fn large_and_small_payloads_arrive_intact_and_in_order() {
    let server = relay();
    let addr = server.local_addr();
    // Enough receivers that both workers own some (SO_REUSEPORT spreads by 4-tuple hash).
    let mut receivers: Vec<Client> = (0..6)
        .map(|i| connect(addr, format!("rx{i}").as_bytes()))
        .collect();
    let mut sender = connect(addr, b"tx");
    let sizes = [10, 40_000, 7, 300_000, 1_000_000 - 64, 33, 65_536];
    for i in 0..receivers.len() {
        let target = format!("rx{i}");
        for (k, &len) in sizes.iter().enumerate() {
            sender
                .send(target.as_bytes(), &payload(k as u8, len))
                .unwrap();
        }
    }
    sender.flush().unwrap();
    for rx in receivers.iter_mut() {
        for (k, &len) in sizes.iter().enumerate() {
            let (from, topic, body) = next_message(rx);
            assert_eq!(from, b"tx");
            assert_eq!(topic, None);
            assert_eq!(body.len(), len, "message {k} has the right length");
            assert!(
                body == payload(k as u8, len),
                "message {k} of {len} bytes is intact"
            );
        }
    }
    stopped_within_bound("server.shutdown()", move || server.shutdown());
}

#[test]
fn large_publish_fans_out_by_reference_to_every_subscriber() {
    let server = relay();
    let addr = server.local_addr();
    let mut subs: Vec<Client> = (0..5)
        .map(|i| connect(addr, format!("s{i}").as_bytes()))
        .collect();
    for s in subs.iter_mut() {
        s.subscribe(b"big").unwrap();
        // A marker sent to oneself after SUBSCRIBE comes back only after the subscription is
        // in the table (frames of one connection are handled in order).
        let me = s.client_id().to_vec();
        s.send(&me, b"marker").unwrap();
        s.flush().unwrap();
        assert_eq!(next_message(s).2, b"marker");
    }
    let mut publisher = connect(addr, b"pub");
    for k in 0..4u8 {
        publisher
            .publish(b"big", &payload(k, 200_000 + k as usize))
            .unwrap();
    }
    publisher.flush().unwrap();
    for s in subs.iter_mut() {
        for k in 0..4u8 {
            let (from, topic, body) = next_message(s);
            assert_eq!(from, b"pub");
            assert_eq!(topic.as_deref(), Some(&b"big"[..]));
            assert!(
                body == payload(k, 200_000 + k as usize),
                "publish {k} intact"
            );
        }
    }
    stopped_within_bound("server.shutdown()", move || server.shutdown());
}
