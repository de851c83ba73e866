//! Test-only stand-in relay on loopback (thread per connection, plain std I/O) so the relay
//! driver and runner can be tested end to end before the real server exists.

use super::runner::run_target;
use super::scenario::plan;
use super::RelayWire;
use crate::protocol::{encode_deliver, Frame, FrameReader};
use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

type Peer = Arc<Mutex<TcpStream>>;

#[derive(Default)]
struct Routes {
    clients: HashMap<Vec<u8>, Peer>,
    /// topic -> (group, members); group "" means every member.
    subs: HashMap<Vec<u8>, Vec<(Vec<u8>, Peer)>>,
    next: usize,
}

fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Arc::new(Mutex::new(Routes::default()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let routes = Arc::clone(&routes);
            std::thread::spawn(move || serve(stream, routes));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, routes: Arc<Mutex<Routes>>) {
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
                    routes
                        .lock()
                        .unwrap()
                        .clients
                        .insert(me.clone(), Arc::clone(&peer));
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
                Frame::Subscribe { topic, group } => {
                    let mut r = routes.lock().unwrap();
                    r.subs
                        .entry(topic.to_vec())
                        .or_default()
                        .push((group.to_vec(), Arc::clone(&peer)));
                }
                Frame::Send { target, payload } => {
                    let to = routes.lock().unwrap().clients.get(target).cloned();
                    if let Some(to) = to {
                        out.clear();
                        encode_deliver(&mut out, &me, b"", payload);
                        let _ = to.lock().unwrap().write_all(&out);
                    }
                }
                Frame::Publish { topic, payload, .. } => {
                    let targets: Vec<Peer> = {
                        let mut r = routes.lock().unwrap();
                        r.next += 1;
                        let next = r.next;
                        let members = r.subs.get(topic).cloned().unwrap_or_default();
                        let mut t: Vec<Peer> = members
                            .iter()
                            .filter(|m| m.0.is_empty())
                            .map(|m| m.1.clone())
                            .collect();
                        let grouped: Vec<&Peer> = members
                            .iter()
                            .filter(|m| !m.0.is_empty())
                            .map(|m| &m.1)
                            .collect();
                        if !grouped.is_empty() {
                            t.push(grouped[next % grouped.len()].clone());
                        }
                        t
                    };
                    out.clear();
                    encode_deliver(&mut out, &me, topic, payload);
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
    };
    let p = plan(&args, "fake").unwrap();
    let m = run_target(&wire, &p, Some(std::process::id())).unwrap();
    (p, m)
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
