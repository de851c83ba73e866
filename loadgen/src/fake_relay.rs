//! Test-only stand-in relay on loopback (thread per connection, plain std I/O) so the relay
//! driver and runner can be tested end to end before the real server exists. Several "nodes"
//! can share one routing table; a registration or subscription made on one node becomes
//! visible on the others only after a delay, like a cluster's asynchronous propagation, and a
//! SEND to an id not visible yet gets an "unknown id" error.

use super::runner::{run_target, Target};
use super::scenario::plan;
use super::RelayWire;
use ringrelay::protocol::{encode_deliver, ErrorCode, Frame, FrameReader, Message};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Peer = Arc<Mutex<TcpStream>>;

/// A registration: the node it was made on, when, and the connection.
#[derive(Clone)]
struct Entry {
    node: usize,
    at: Instant,
    peer: Peer,
}

#[derive(Default)]
struct Routes {
    clients: HashMap<Vec<u8>, Entry>,
    /// topic -> (group, members); group "" means every member.
    subs: HashMap<Vec<u8>, Vec<(Vec<u8>, Entry)>>,
    next: usize,
    /// How long an entry takes to become visible on the other nodes.
    remote_delay: Duration,
}

impl Routes {
    fn visible(&self, e: &Entry, from_node: usize) -> bool {
        e.node == from_node || e.at.elapsed() >= self.remote_delay
    }
}

fn start() -> SocketAddr {
    start_nodes(1, Duration::ZERO)[0]
}

/// `n` nodes sharing one routing table, with `remote_delay` of propagation between them.
fn start_nodes(n: usize, remote_delay: Duration) -> Vec<SocketAddr> {
    let routes = Arc::new(Mutex::new(Routes {
        remote_delay,
        ..Routes::default()
    }));
    (0..n)
        .map(|node| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let routes = Arc::clone(&routes);
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let routes = Arc::clone(&routes);
                    std::thread::spawn(move || serve(stream, routes, node));
                }
            });
            addr
        })
        .collect()
}

fn serve(mut stream: TcpStream, routes: Arc<Mutex<Routes>>, node: usize) {
    let peer: Peer = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    let mut reader = FrameReader::new(1 << 20);
    let mut me = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader.fill_from(&mut stream, 64 * 1024) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some(frame)) = reader.next_frame() {
            match frame {
                Frame::Hello { client_id, .. } => {
                    me = client_id.to_vec();
                    let entry = Entry {
                        node,
                        at: Instant::now(),
                        peer: Arc::clone(&peer),
                    };
                    routes.lock().unwrap().clients.insert(me.clone(), entry);
                    let mut w = Vec::new();
                    Frame::Welcome {
                        version: 1,
                        heartbeat_interval_ms: 5000,
                        max_frame_bytes: 1 << 20,
                    }
                    .encode(&mut w)
                    .unwrap();
                    peer.lock().unwrap().write_all(&w).unwrap();
                }
                Frame::Ping { nonce } => {
                    let mut w = Vec::new();
                    Frame::Pong { nonce }.encode(&mut w).unwrap();
                    let _ = peer.lock().unwrap().write_all(&w);
                }
                Frame::Subscribe { topic, group } => {
                    let entry = Entry {
                        node,
                        at: Instant::now(),
                        peer: Arc::clone(&peer),
                    };
                    let mut r = routes.lock().unwrap();
                    r.subs
                        .entry(topic.to_vec())
                        .or_default()
                        .push((group.to_vec(), entry));
                }
                Frame::Send { target, payload } => {
                    let to = {
                        let r = routes.lock().unwrap();
                        r.clients
                            .get(target)
                            .filter(|e| r.visible(e, node))
                            .map(|e| Arc::clone(&e.peer))
                    };
                    out.clear();
                    match &to {
                        Some(_) => encode_deliver(&mut out, &Message::plain(&me, b"", payload)),
                        None => Frame::Error {
                            code: ErrorCode::UNKNOWN_ID,
                            subject: target,
                            text: b"unknown id",
                        }
                        .encode(&mut out)
                        .unwrap(),
                    }
                    let _ = to.as_ref().unwrap_or(&peer).lock().unwrap().write_all(&out);
                }
                Frame::Publish { topic, payload, .. } => {
                    let targets: Vec<Peer> = {
                        let mut r = routes.lock().unwrap();
                        r.next += 1;
                        let next = r.next;
                        let members: Vec<(Vec<u8>, Entry)> = r
                            .subs
                            .get(topic)
                            .into_iter()
                            .flatten()
                            .filter(|m| r.visible(&m.1, node))
                            .cloned()
                            .collect();
                        let mut t: Vec<Peer> = members
                            .iter()
                            .filter(|m| m.0.is_empty())
                            .map(|m| m.1.peer.clone())
                            .collect();
                        let grouped: Vec<&Peer> = members
                            .iter()
                            .filter(|m| !m.0.is_empty())
                            .map(|m| &m.1.peer)
                            .collect();
                        if !grouped.is_empty() {
                            t.push(grouped[next % grouped.len()].clone());
                        }
                        t
                    };
                    out.clear();
                    encode_deliver(&mut out, &Message::plain(&me, topic, payload));
                    for to in targets {
                        let _ = to.lock().unwrap().write_all(&out);
                    }
                }
                _ => {}
            }
        }
    }
}

fn bench(extra: &[&str]) -> (super::scenario::Plan, super::runner::Measured) {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: super::BenchArgs,
    }
    let mut argv = vec!["bench"];
    argv.extend_from_slice(extra);
    if !extra.contains(&"--duration-s") {
        argv.extend_from_slice(&["--duration-s", "10"]);
    }
    let args = Cli::try_parse_from(argv).unwrap().bench;
    args.validate().unwrap();
    let wire = RelayWire {
        addr: start(),
        token: Vec::new(),
        tls: None,
    };
    let p = plan(&args, "fake").unwrap();
    let target = Target {
        send: &wire,
        recv: &wire,
        server_pids: vec![Some(std::process::id())],
    };
    let m = run_target(&target, &p).unwrap();
    (p, m)
}

/// Runs a cross-node scenario against two fake nodes with 300 ms of propagation delay.
fn bench_cross(extra: &[&str]) -> (super::scenario::Plan, super::runner::Measured) {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: super::BenchArgs,
    }
    let nodes = start_nodes(2, Duration::from_millis(300));
    let (a, b) = (nodes[0].to_string(), nodes[1].to_string());
    let mut argv = vec![
        "bench",
        "--server",
        &a,
        "--server-b",
        &b,
        "--duration-s",
        "10",
    ];
    argv.extend_from_slice(extra);
    let args = Cli::try_parse_from(argv).unwrap().bench;
    args.validate().unwrap();
    let wire = |addr| RelayWire {
        addr,
        token: Vec::new(),
        tls: None,
    };
    let (wa, wb) = (wire(nodes[0]), wire(nodes[1]));
    let p = plan(&args, "fake-x").unwrap();
    let pid = Some(std::process::id());
    let target = Target {
        send: &wa,
        recv: &wb,
        server_pids: vec![pid, pid],
    };
    let m = run_target(&target, &p).unwrap();
    (p, m)
}

#[test]
fn cross_node_waits_for_propagation_and_counts_no_probe_errors() {
    let start = Instant::now();
    let (p, m) = bench_cross(&["--scenario", "cross-node", "--count", "20000"]);
    // The receiver's id reached node A only after the delay: probes before then got errors,
    // which are not the measured phase's.
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert!(m.errors_before_measure > 0, "{m:?}");
    assert_eq!(
        (m.sent, m.received, m.errors),
        (20_000, p.deliveries_expected(), 0)
    );
    assert_eq!(m.server_cpu_by_node_s.len(), 2);
    assert!(m.server_cpu_s.is_some());
    let (p, m) = bench_cross(&[
        "--scenario",
        "cross-node-fanout",
        "--subscribers",
        "4",
        "--count",
        "5000",
    ]);
    assert_eq!((m.sent, m.received, m.errors), (5000, 20_000, 0));
    assert_eq!(p.deliveries_per_msg, 4);
}

#[test]
fn unicast_and_pairs_deliver_everything() {
    let (p, m) = bench(&["--count", "20000"]);
    assert_eq!((m.sent, m.received), (20_000, p.deliveries_expected()));
    assert!(m.duration_s > 0.0 && m.server_cpu_s.is_some() && m.latency_us.is_none());
    let (p, m) = bench(&[
        "--scenario",
        "pairs",
        "--pairs",
        "3",
        "--count",
        "9001",
        "--size",
        "100",
    ]);
    assert_eq!((m.sent, m.received), (9001, p.deliveries_expected()));
}

#[test]
fn fanout_and_queue_counts() {
    let (_, m) = bench(&[
        "--scenario",
        "fanout",
        "--subscribers",
        "4",
        "--count",
        "5000",
    ]);
    assert_eq!((m.sent, m.received), (5000, 20_000));
    let (_, m) = bench(&[
        "--scenario",
        "queue",
        "--subscribers",
        "3",
        "--count",
        "6000",
    ]);
    assert_eq!((m.sent, m.received), (6000, 6000));
}

#[test]
fn latency_is_open_loop_and_measured() {
    let (_, m) = bench(&[
        "--scenario",
        "latency",
        "--rate",
        "20000",
        "--duration-s",
        "0.5",
    ]);
    assert_eq!((m.sent, m.received), (10_000, 10_000));
    let [p50, p99, p999] = m.latency_us.unwrap();
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999, "{p50} {p99} {p999}");
    assert!((0.4..2.0).contains(&m.duration_s), "{}", m.duration_s);
}
