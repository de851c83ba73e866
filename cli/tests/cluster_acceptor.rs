//! The cluster acceptor under sockets that connect and then trickle a LINK_HELLO (or say
//! nothing): a real peer still joins at once, with 64 such sockets from 64 hosts and with
//! 1,000 from one host, and every trickling socket is closed within the handshake deadline.

mod common;

use common::*;
use ringrelay::cluster::link_io::HANDSHAKE_TIMEOUT;
use ringrelay::config::Config;
use ringrelay::server::Server;
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A loopback port free a moment ago (the node binds it next; the advertised address must be
/// a real one, so port 0 cannot be used).
fn free_port(ip: [u8; 4]) -> SocketAddr {
    TcpListener::bind(SocketAddr::from((ip, 0)))
        .unwrap()
        .local_addr()
        .unwrap()
}

fn node(id: u16, listen: SocketAddr, peers: &[SocketAddr]) -> Server {
    start(node_config(id, listen, peers))
}

fn node_config(id: u16, listen: SocketAddr, peers: &[SocketAddr]) -> Config {
    Config {
        workers: 1,
        node_id: id,
        cluster_listen: Some(listen.into()),
        cluster_secret: Some("acceptor-test".into()),
        peers: peers.iter().map(|p| p.to_string()).collect(),
        // Ready must come from the peer's snapshot, not from giving up on it.
        cluster_ready_wait_ms: 30_000,
        ..config()
    }
}

/// A socket from `source` to `target` that sent the first byte of a LINK_HELLO header.
fn trickler(source: IpAddr, target: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect_timeout(&target.into(), WAIT).ok()?;
    let mut stream = TcpStream::from(socket);
    stream.write_all(&[40]).ok()?;
    Some(stream)
}

/// One more byte to each socket still open, every 500 ms, until `until`.
fn trickle(socks: &mut [TcpStream], until: Instant) {
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        for s in socks.iter_mut() {
            let _ = s.write_all(&[0]);
        }
    }
}

/// Every socket ends (refused, reset or closed) within the handshake deadline from `since`
/// (when the last of them had connected).
fn assert_all_closed_by_the_deadline(socks: Vec<TcpStream>, since: Instant) {
    let slack = Duration::from_secs(1);
    for mut s in socks {
        let left = (since + HANDSHAKE_TIMEOUT + slack).saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a trickling socket was still open past the deadline: {e}"),
            }
        }
    }
}

fn real_peer_joins_while(sources: &[IpAddr], per_source: usize) {
    let _alone = alone();
    let a_addr = free_port([127, 0, 0, 1]);
    let a = node(1, a_addr, &[]);
    let since = Instant::now();
    let mut socks: Vec<TcpStream> = sources
        .iter()
        .flat_map(|&ip| (0..per_source).map(move |_| ip))
        .filter_map(|ip| trickler(ip, a_addr))
        .collect();
    assert!(socks.len() >= sources.len(), "the attack connected");
    // Each socket's handshake deadline runs from its own accept; on a loaded machine the
    // last of a thousand connects comes well after the first, so the close deadline is
    // counted from when every one had connected.
    let all_connected = Instant::now();
    let joined = std::thread::scope(|s| {
        let attack = s.spawn(|| trickle(&mut socks, since + HANDSHAKE_TIMEOUT));
        let b_addr = free_port([127, 0, 0, 1]);
        let started = Instant::now();
        let b = node(2, b_addr, &[a_addr]);
        while !b.cluster_ready() {
            assert!(started.elapsed() < WAIT, "node 2 never became ready");
            std::thread::sleep(Duration::from_millis(5));
        }
        let joined = started.elapsed();
        // The mesh carries messages both ways.
        let mut on_a = connect(a.local_addr(), "on-a");
        let mut on_b = connect(b.local_addr(), "on-b");
        // Locations replicate over the control link, each way on its own: wait for both (a
        // cluster converging under the attack: bounded by SLOW_WAIT, not WAIT).
        wait_until_within("node 1 learns on-b", SLOW_WAIT, || {
            a.registered_clients() == 2
        });
        wait_until_within("node 2 learns on-a", SLOW_WAIT, || {
            b.registered_clients() == 2
        });
        assert_round_trip(&mut on_a, &mut on_b);
        attack.join().unwrap();
        joined
    });
    assert!(
        joined < HANDSHAKE_TIMEOUT,
        "the peer waited {joined:?}: it should not wait for the attackers' handshakes to time out"
    );
    assert_all_closed_by_the_deadline(socks, all_connected);
    assert_process_within_budget(&node_config(1, a_addr, &[]));
}

#[test]
fn a_real_peer_joins_at_once_while_64_hosts_trickle_handshakes() {
    let sources: Vec<IpAddr> = (1..=64).map(|i| IpAddr::from([127, 0, 2, i])).collect();
    real_peer_joins_while(&sources, 1);
}

#[test]
fn a_real_peer_joins_at_once_while_one_host_trickles_1000_handshakes() {
    real_peer_joins_while(&[IpAddr::from([127, 0, 3, 1])], 1000);
}
