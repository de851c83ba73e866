//! The NATS front over real sockets (`nats_listen`): INFO, CONNECT, PUB/SUB/UNSUB with one MSG
//! per matching sid, wildcards and queue groups across workers, NATS and native clients
//! reaching each other, nats-server's -ERR texts, and the heartbeat as NATS PING.
//!
//! Each test waits for events, never sleeps: a subscriber knows it has everything when a
//! marker published last by the same sender arrives (order from one sender to one receiver
//! holds on any mix of workers).

mod common;

use common::nats_wire::{other, Line, Nats};
use common::{config, connect, next_message, start, sync, WAIT};
use ringrelay::config::Config;
use ringrelay::server::Server;
use std::net::SocketAddr;
use std::time::Instant;

fn nats_config() -> Config {
    Config {
        nats_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config()
    }
}

fn nats_addr(server: &Server) -> SocketAddr {
    server.nats_addr().expect("nats_listen is set")
}

#[test]
fn info_announces_headers_and_max_payload_and_pub_sub_round_trips() {
    let server = start(nats_config());
    let (mut nats, info) = Nats::open(nats_addr(&server));
    assert_eq!(info["proto"], 1);
    assert_eq!(info["headers"], true);
    assert_eq!(info["port"], nats_addr(&server).port());
    assert_eq!(
        info["max_payload"].as_u64(),
        Some(ringrelay::protocol::payload_bytes_max(Config::default().max_frame_bytes) as u64)
    );
    assert!(info.get("auth_required").is_none());
    nats.send(b"CONNECT {\"verbose\":true}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\nPING\r\n");
    for want in ["+OK", "+OK", "+OK"] {
        nats.expect(want);
    }
    assert_eq!(
        nats.next(),
        Line::Msg {
            subject: "foo".into(),
            sid: "1".into(),
            reply: None,
            payload: b"hello".to_vec()
        }
    );
    nats.expect("PONG");
}

#[test]
fn every_matching_sid_gets_a_msg_and_a_queue_group_gets_each_message_once_across_workers() {
    let server = start(nats_config());
    let addr = nats_addr(&server);
    let mut a = Nats::connected(addr);
    a.send(b"SUB orders.* 1\r\nSUB orders.eu 2\r\nSUB orders.> q 3\r\nSUB done 9\r\nPING\r\n");
    a.expect("PONG");
    // Members of the same queue group on several connections (two workers serve them).
    let mut members: Vec<Nats> = (0..3).map(|_| Nats::connected(addr)).collect();
    for m in &mut members {
        m.send(b"SUB orders.eu q 7\r\nSUB done 9\r\nPING\r\n");
        m.expect("PONG");
    }
    let mut publisher = Nats::connected(addr);
    let messages = 60;
    for i in 0..messages {
        publisher.send(format!("PUB orders.eu 2\r\n{:02}\r\n", i % 100).as_bytes());
    }
    publisher.send(b"PUB done 0\r\n\r\nPING\r\n");
    publisher.expect("PONG");

    let counts = a.count_until_marker("9");
    assert_eq!(counts.get("1"), Some(&messages), "orders.* matches");
    assert_eq!(counts.get("2"), Some(&messages), "orders.eu matches");
    let mut queue_total = counts.get("3").copied().unwrap_or(0);
    for m in &mut members {
        let c = m.count_until_marker("9");
        queue_total += c.get("7").copied().unwrap_or(0);
    }
    assert_eq!(
        queue_total, messages,
        "each message once in the queue group"
    );
}

#[test]
fn unsub_with_a_maximum_and_echo_off() {
    let server = start(nats_config());
    let addr = nats_addr(&server);
    let mut quiet = Nats::connected(addr);
    quiet
        .send(b"CONNECT {\"verbose\":false,\"echo\":false}\r\nSUB t 1\r\nPUB t 1\r\nx\r\nPING\r\n");
    quiet.expect("PONG");
    let mut n = Nats::connected(addr);
    n.send(b"SUB t 1\r\nUNSUB 1 2\r\nSUB done 9\r\nPING\r\n");
    n.expect("PONG");
    let mut p = Nats::connected(addr);
    p.send(b"PUB t 1\r\na\r\nPUB t 1\r\nb\r\nPUB t 1\r\nc\r\nPUB done 0\r\n\r\n");
    assert_eq!(n.count_until_marker("9").get("1"), Some(&2));
    // The echo-less client got the others' messages, never its own.
    let got = quiet.count_until_marker_or_payloads();
    assert_eq!(got, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
}

impl Nats {
    /// Payloads on sid 1 until a PONG (after a PING sent now).
    fn count_until_marker_or_payloads(&mut self) -> Vec<Vec<u8>> {
        // The publisher's messages may still be crossing workers: wait for all three.
        let mut payloads = Vec::new();
        while payloads.len() < 3 {
            match self.next() {
                Line::Msg { payload, .. } => payloads.push(payload),
                other => panic!("unexpected {other:?}"),
            }
        }
        self.send(b"PING\r\n");
        self.expect("PONG");
        payloads
    }
}

#[test]
fn nats_and_native_clients_reach_each_other() {
    let server = start(nats_config());
    let mut native = connect(server.local_addr(), "native-1");
    native.subscribe(b"news.eu").unwrap();
    sync(&mut native);
    let mut nats = Nats::connected(nats_addr(&server));
    nats.send(b"SUB news.* 4\r\nPING\r\n");
    nats.expect("PONG");
    nats.send(b"PUB news.eu 4\r\nfrom\r\n");
    let (sender, topic, payload) = next_message(&mut native);
    assert!(sender.starts_with(b"nats."), "sender {sender:?}");
    assert_eq!(topic.as_deref(), Some(&b"news.eu"[..]));
    assert_eq!(payload, b"from");
    assert_eq!(
        nats.next(),
        Line::Msg {
            subject: "news.eu".into(),
            sid: "4".into(),
            reply: None,
            payload: b"from".to_vec()
        },
        "its own message, echo on"
    );
    native.publish(b"news.us", b"native").unwrap();
    native.flush().unwrap();
    assert_eq!(
        nats.next(),
        Line::Msg {
            subject: "news.us".into(),
            sid: "4".into(),
            reply: None,
            payload: b"native".to_vec()
        }
    );
}

#[test]
fn one_publish_reaches_native_and_nats_subscribers_of_one_worker_each_in_its_protocol() {
    // One worker: the publisher's fan-out copies one encoded DELIVER to each native
    // subscriber and writes a MSG for the NATS one.
    let server = start(Config {
        workers: 1,
        ..nats_config()
    });
    let mut natives: Vec<_> = ["native-a", "native-b"]
        .into_iter()
        .map(|id| {
            let mut c = connect(server.local_addr(), id);
            c.subscribe(b"fan").unwrap();
            sync(&mut c);
            c
        })
        .collect();
    let mut nats = Nats::connected(nats_addr(&server));
    nats.send(b"SUB fan 7\r\nPING\r\n");
    nats.expect("PONG");
    let mut publisher = connect(server.local_addr(), "publisher");
    for payload in [&b"one"[..], b"two", b"three"] {
        publisher.publish(b"fan", payload).unwrap();
    }
    publisher.flush().unwrap();
    for native in &mut natives {
        for payload in [&b"one"[..], b"two", b"three"] {
            let (sender, topic, got) = next_message(native);
            assert_eq!(sender, b"publisher");
            assert_eq!(topic.as_deref(), Some(&b"fan"[..]));
            assert_eq!(got, payload);
        }
    }
    for payload in [&b"one"[..], b"two", b"three"] {
        assert_eq!(
            nats.next(),
            Line::Msg {
                subject: "fan".into(),
                sid: "7".into(),
                reply: None,
                payload: payload.to_vec()
            }
        );
    }
}

#[test]
fn refusals_keep_the_connection_and_breaches_close_it_with_nats_server_texts() {
    let server = start(nats_config());
    let addr = nats_addr(&server);
    let mut n = Nats::connected(addr);
    n.send(b"SUB a..b 1\r\nPUB a.* 1\r\nx\r\nPING\r\n");
    n.expect("-ERR 'Invalid Subject'");
    n.expect("-ERR 'Invalid Publish Subject'");
    n.expect("PONG");

    let cases: [(&[u8], &str); 4] = [
        (b"FOO\r\n", "-ERR 'Unknown Protocol Operation'"),
        (
            b"PUB foo 3\r\nabcd\r\n",
            "-ERR 'Unknown Protocol Operation'",
        ),
        (b"PUB foo 99999999\r\n", "-ERR 'Maximum Payload Violation'"),
        (b"SUB foo\r\n", "-ERR 'Parser Error'"),
    ];
    for (bytes, err) in cases {
        let mut n = Nats::connected(addr);
        n.send(bytes);
        assert_eq!(n.until_closed(), vec![other(err)], "{bytes:?}");
    }
    let mut endless = Nats::connected(addr);
    let mut line = b"PUB ".to_vec();
    line.resize(5000, b'a');
    endless.send(&line);
    assert_eq!(
        endless.until_closed(),
        vec![other("-ERR 'maximum control line exceeded'")]
    );
}

#[test]
fn a_required_token_is_the_connect_auth_token() {
    let server = start(Config {
        token: Some("sesame".into()),
        ..nats_config()
    });
    let addr = nats_addr(&server);
    let (mut n, info) = Nats::open(addr);
    assert_eq!(info["auth_required"], true);
    n.send(b"CONNECT {\"verbose\":false,\"auth_token\":\"wrong\"}\r\nPING\r\n");
    assert_eq!(
        n.until_closed(),
        vec![other("-ERR 'Authorization Violation'")]
    );
    let (mut n, _) = Nats::open(addr);
    n.send(b"SUB foo 1\r\n");
    assert_eq!(
        n.until_closed(),
        vec![other("-ERR 'Authorization Violation'")],
        "an operation before CONNECT has no token"
    );
    let (mut n, _) = Nats::open(addr);
    n.send(b"CONNECT {\"verbose\":false,\"auth_token\":\"sesame\"}\r\nPING\r\n");
    n.expect("PONG");
}

#[test]
fn the_heartbeat_is_a_nats_ping_and_a_silent_client_is_stale() {
    let server = start(Config {
        heartbeat_interval_ms: 100,
        heartbeat_misses_max: 2,
        ..nats_config()
    });
    let addr = nats_addr(&server);
    let mut alive = Nats::connected(addr);
    for _ in 0..3 {
        alive.expect("PING");
        alive.send(b"PONG\r\n");
    }
    // Still open after three heartbeats (past the stale bound): its PING is answered. The
    // relay PINGs every 100 ms meanwhile, so this loop is bounded by a deadline (far past the
    // PONG's expected milliseconds) for a missing PONG to fail the test instead of hanging it.
    alive.send(b"PING\r\n");
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "no PONG to the client's PING within {WAIT:?}"
        );
        match alive.next() {
            Line::Other(l) if l == "PING" => alive.send(b"PONG\r\n"),
            Line::Other(l) if l == "PONG" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(alive);
    let mut silent = Nats::connected(addr);
    // Stale after about three heartbeats (300 ms); bounded by WAIT, over ten times that, so
    // that a relay that keeps PINGing a silent client fails the test instead of hanging it.
    let lines = silent.until_closed_by(Instant::now() + WAIT);
    assert_eq!(lines.last(), Some(&other("-ERR 'Stale Connection'")));
    assert!(lines[..lines.len() - 1].iter().all(|l| *l == other("PING")));
}

#[test]
fn before_connect_a_payload_is_bounded_like_a_hello_and_after_it_by_max_payload() {
    let server = start(Config {
        token: Some("sesame".into()),
        ..nats_config()
    });
    let addr = nats_addr(&server);
    let (mut n, _) = Nats::open(addr);
    // An unauthenticated socket cannot make the relay hold a large payload.
    n.send(b"PUB x 5000\r\n");
    assert_eq!(
        n.until_closed(),
        vec![other("-ERR 'Maximum Payload Violation'")]
    );
    // CONNECT and a large PUB in one write: the bound grows as soon as CONNECT is accepted.
    let (mut n, _) = Nats::open(addr);
    let payload = vec![b'p'; 100_000];
    let mut bytes =
        b"CONNECT {\"verbose\":false,\"auth_token\":\"sesame\"}\r\nSUB big 1\r\n".to_vec();
    bytes.extend_from_slice(format!("PUB big {}\r\n", payload.len()).as_bytes());
    bytes.extend_from_slice(&payload);
    bytes.extend_from_slice(b"\r\nPING\r\n");
    n.send(&bytes);
    assert_eq!(
        n.next(),
        Line::Msg {
            subject: "big".into(),
            sid: "1".into(),
            reply: None,
            payload
        }
    );
    n.expect("PONG");
}
