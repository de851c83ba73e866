//! End-to-end convergence of a 100,000-row location table after a cluster link comes up.
//!
//! Run: `cargo bench --bench cluster_convergence` (env `RUNS`, default 3).
//!
//! Each run starts an in-process node 1 (`Server::start`, 1 worker, loopback only) and plays a
//! fake peer node 2 over real sockets: it dials the node's control lane with the cluster secret
//! (full HMAC handshake), accepts the data links the node dials back (so the node sees a
//! healthy peer), discards everything the node sends, and heartbeats every 200 ms.
//!
//! Two measurements per run, both timed from the fake peer's side:
//!
//! * **link-up**: the clock starts when `dial` returns (the link is up) and the fake peer then
//!   encodes and writes its 100,000-row snapshot (chunks of 4096 rows, as a real node does),
//!   followed by a one-row ROWS message that upserts a marker id. The control thread handles
//!   a link's messages in order, so the marker appears only once the snapshot has been fully
//!   applied, purge pass included. Reported: `sent` (last byte written), `visible` (the
//!   table first holds all 100,000 rows) and `converged` (marker seen: 100,001 rows).
//! * **replace**: on the same link, a second snapshot of 100,001 rows: ids 50,000..99,999 kept
//!   (same epochs), 50,000 new ids, and the marker (kept), then a ROWS removal of the marker.
//!   While the snapshot is applied the table goes 100,001 -> 150,001 (upserts) -> 100,001
//!   (purge of the 50,000 ids that are gone), so it holds exactly 100,000 rows only after the
//!   marker removal, i.e. after the whole replacement: that is the stop condition.
//!
//! The table size is read with `Server::registered_clients()` (polled every 1 ms). After each
//! measurement (outside the timed region) the full table is fetched from `GET /cluster?rows=1`
//! and compared row by row (id, owner node, epoch) with the expected set, so a fast but wrong
//! result fails the bench. Every wait is bounded (30 s) and fails loudly.

use ringrelay::cluster::auth::new_incarnation;
use ringrelay::cluster::link_io::{accept, dial, Established, LinkIdentity};
use ringrelay::cluster::link_stream::LinkStream;
use ringrelay::cluster::wire::{encode_link, snapshot_chunks, ControlMsg, Lane, RowChange};
use ringrelay::config::Config;
use ringrelay::server::Server;
use ringrelay::tcp_congestion::TcpCongestion;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROWS: usize = 100_000;
const CHUNK_ROWS: usize = 4096;
const FAKE_NODE: u16 = 2;
const SECRET: &str = "cluster-convergence-bench";
const MARKER: &str = "zz-bench-marker";
const DEADLINE: Duration = Duration::from_secs(30);
const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);
const POLL_EVERY: Duration = Duration::from_millis(1);

type Rows = Vec<(Box<[u8]>, u64)>;

fn client_id(i: usize) -> Box<[u8]> {
    format!("client-{i:06}").into_bytes().into_boxed_slice()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    l.local_addr().expect("probe address").port()
}

fn encode(msg: ControlMsg, out: &mut Vec<u8>) {
    encode_link(&msg.into(), out);
}

/// The fake node 2: control link, data-link acceptor, reader, heartbeats.
struct FakePeer {
    writer: Arc<Mutex<TcpStream>>,
    control: TcpStream,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakePeer {
    /// The data-link listener must exist before the dial: the node learns our advertised
    /// address from our HELLO and dials data links to it right after the link is up.
    fn data_acceptor(me: LinkIdentity, stop: Arc<AtomicBool>) -> (String, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the data-link listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("data address").to_string();
        let handle = std::thread::spawn(move || {
            let mut held: Vec<Established> = Vec::new();
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((s, _)) => {
                        if s.set_nonblocking(false).is_ok() {
                            // Bounded by the handshake timeout (2 s); a failure only means the
                            // node re-dials later.
                            if let Ok(est) = accept(s, &me) {
                                held.push(est);
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for est in held {
                est.stream.shutdown();
            }
        });
        (addr, handle)
    }

    /// Dials the node's control lane; returns once the link is authenticated and up.
    fn connect(cluster_addr: &str) -> (FakePeer, Instant) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut me = LinkIdentity {
            node_id: FAKE_NODE,
            incarnation: new_incarnation(),
            advertise: String::new(),
            secret: SECRET.as_bytes().to_vec(),
            tls: None,
            congestion: TcpCongestion::Host,
        };
        let (advertise, acceptor) = Self::data_acceptor(me.clone(), Arc::clone(&stop));
        // The acceptor thread got a copy without the address; only the HELLO needs it.
        me.advertise = advertise;
        let est = dial(cluster_addr, Lane::Control, 0, &me)
            .unwrap_or_else(|e| panic!("control dial to {cluster_addr} failed: {e}"));
        let link_up = Instant::now();
        let LinkStream::Plain(control) = est.stream else {
            panic!("a link without cluster TLS is plaintext");
        };
        let _ = control.set_write_timeout(Some(DEADLINE));
        let mut reader = control.try_clone().expect("clone control stream");
        let writer = Arc::new(Mutex::new(
            control.try_clone().expect("clone control stream"),
        ));
        // Reader: discard everything the node sends (MEMBERS, its SNAPSHOT, INTEREST,
        // heartbeats, digests) so its writer never stalls. Ends on EOF/shutdown.
        let read_thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
        let heartbeat_thread = {
            let (writer, stop) = (Arc::clone(&writer), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut frame = Vec::new();
                encode(ControlMsg::Heartbeat, &mut frame);
                let mut next = Instant::now();
                while !stop.load(Ordering::Acquire) {
                    if Instant::now() >= next {
                        next += HEARTBEAT_EVERY;
                        let mut w = writer.lock().expect("writer lock");
                        if w.write_all(&frame).is_err() {
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let peer = FakePeer {
            writer,
            control,
            stop,
            threads: vec![acceptor, read_thread, heartbeat_thread],
        };
        (peer, link_up)
    }

    /// Encodes and writes `rows` as SNAPSHOT chunks (one write per chunk, so heartbeats can
    /// slip in between), then `after` (a ROWS message).
    fn send_snapshot(&self, rows: &[(Box<[u8]>, u64)], after: ControlMsg) {
        let mut buf = Vec::with_capacity(CHUNK_ROWS * 32);
        for chunk in snapshot_chunks(rows, CHUNK_ROWS) {
            buf.clear();
            encode(chunk, &mut buf);
            self.write(&buf);
        }
        buf.clear();
        encode(after, &mut buf);
        self.write(&buf);
    }

    fn write(&self, bytes: &[u8]) {
        let mut w = self.writer.lock().expect("writer lock");
        w.write_all(bytes)
            .unwrap_or_else(|e| panic!("writing to the control link failed: {e}"));
    }

    fn close(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.control.shutdown(Shutdown::Both);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Polls the table size until `done(count)`; also reports when `visible(count)` first held.
fn wait_rows(
    server: &Server,
    start: Instant,
    what: &str,
    visible: impl Fn(usize) -> bool,
    done: impl Fn(usize) -> bool,
) -> (Option<Duration>, Duration) {
    let mut seen = None;
    loop {
        let n = server.registered_clients();
        let now = Instant::now();
        if seen.is_none() && visible(n) {
            seen = Some(now - start);
        }
        if done(n) {
            return (seen, now - start);
        }
        if now - start > DEADLINE {
            panic!("{what}: table did not converge within {DEADLINE:?} (rows now: {n})");
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// GET /cluster?rows=1 and compare the rows with `expected` (id -> epoch, all owned by node 2).
fn verify_table(metrics: SocketAddr, expected: &BTreeMap<String, u64>, what: &str) {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{what}: cannot reach /cluster: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /cluster?rows=1 HTTP/1.0\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{what}: reading /cluster failed: {e}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: /cluster answer has no header end"));
    let head = String::from_utf8_lossy(&raw[..split]);
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{what}: /cluster answered {head}"
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&raw[split + 4..]).expect("/cluster is JSON");
    let rows = doc["rows"].as_array().expect("/cluster rows array");
    let mut got = BTreeMap::new();
    for r in rows {
        let id = r["id"].as_str().expect("row id").to_string();
        let node = r["node"].as_u64().expect("row node");
        let epoch = r["epoch"].as_u64().expect("row epoch");
        assert_eq!(
            node,
            u64::from(FAKE_NODE),
            "{what}: row {id} owned by {node}"
        );
        assert!(got.insert(id, epoch).is_none(), "{what}: duplicate row");
    }
    assert_eq!(doc["row_count"].as_u64(), Some(expected.len() as u64));
    if &got != expected {
        let missing = expected.keys().find(|k| !got.contains_key(*k));
        let extra = got.keys().find(|k| !expected.contains_key(*k));
        panic!(
            "{what}: table differs from the expected set ({} rows vs {} expected; first \
             missing {missing:?}, first extra {extra:?})",
            got.len(),
            expected.len()
        );
    }
}

fn expected_set(rows: &[(Box<[u8]>, u64)], skip: Option<&str>) -> BTreeMap<String, u64> {
    rows.iter()
        .map(|(id, e)| (String::from_utf8_lossy(id).into_owned(), *e))
        .filter(|(id, _)| Some(id.as_str()) != skip)
        .collect()
}

struct RunResult {
    sent: Duration,
    visible: Duration,
    converged: Duration,
    replace: Duration,
}

fn one_run(run: usize) -> RunResult {
    let cluster_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        node_id: 1,
        cluster_listen: Some(cluster_addr.into()),
        cluster_secret: Some(SECRET.into()),
        ..Config::default()
    };
    let server = Server::start(cfg).unwrap_or_else(|e| panic!("run {run}: server start: {e}"));
    let metrics = server.metrics_addr().expect("metrics address");
    assert_eq!(server.registered_clients(), 0);

    // Epochs: hybrid-clock-like microseconds, increasing with the row index.
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let marker_epoch = base + 10 * ROWS as u64;
    let first: Rows = (0..ROWS).map(|i| (client_id(i), base + i as u64)).collect();
    let mut second: Rows = (ROWS / 2..ROWS + ROWS / 2)
        .map(|i| (client_id(i), base + i as u64))
        .collect();
    second.push((MARKER.as_bytes().into(), marker_epoch));

    // --- link-up: dial, then snapshot of 100,000 rows + marker upsert.
    let (peer, link_up) = FakePeer::connect(&cluster_addr.to_string());
    peer.send_snapshot(
        &first,
        ControlMsg::Rows(vec![RowChange::Upsert {
            id: MARKER.as_bytes().into(),
            epoch: marker_epoch,
        }]),
    );
    let sent = link_up.elapsed();
    let (visible, converged) = wait_rows(
        &server,
        link_up,
        "link-up",
        |n| n >= ROWS,
        |n| n == ROWS + 1,
    );
    let visible = visible.expect("visible is set at the latest with converged");
    let mut expected = expected_set(&first, None);
    expected.insert(MARKER.into(), marker_epoch);
    verify_table(metrics, &expected, "link-up");

    // --- replace: half the ids gone, 50,000 new ones; then remove the marker.
    let start = Instant::now();
    peer.send_snapshot(
        &second,
        ControlMsg::Rows(vec![RowChange::Remove {
            id: MARKER.as_bytes().into(),
            epoch: marker_epoch,
        }]),
    );
    let (_, replace) = wait_rows(&server, start, "replace", |_| false, |n| n == ROWS);
    verify_table(metrics, &expected_set(&second, Some(MARKER)), "replace");

    peer.close();
    server.shutdown();
    RunResult {
        sent,
        visible,
        converged,
        replace,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "n/a".into())
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let runs: usize = std::env::var("RUNS")
        .ok()
        .map(|s| s.parse().expect("RUNS must be a positive integer"))
        .unwrap_or(3)
        .max(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cluster_convergence: {ROWS} rows, chunks of {CHUNK_ROWS}, {runs} runs, {cpus} CPUs, \
         loadavg before: {}",
        loadavg()
    );
    let mut results = Vec::with_capacity(runs);
    for run in 1..=runs {
        let r = one_run(run);
        println!(
            "run {run}: link-up: sent {:.1} ms, all rows visible {:.1} ms, converged {:.1} ms | \
             replace (50k gone, 50k new): converged {:.1} ms",
            ms(r.sent),
            ms(r.visible),
            ms(r.converged),
            ms(r.replace)
        );
        results.push(r);
    }
    let med = |f: fn(&RunResult) -> Duration| median(results.iter().map(|r| ms(f(r))).collect());
    let (sent, visible, converged, replace) = (
        med(|r| r.sent),
        med(|r| r.visible),
        med(|r| r.converged),
        med(|r| r.replace),
    );
    let rate = |m: f64| ROWS as f64 / (m / 1e3);
    println!(
        "median link-up: sent {sent:.1} ms, visible {visible:.1} ms, converged {converged:.1} ms \
         ({:.0} rows/s)",
        rate(converged)
    );
    println!(
        "median replace: converged {replace:.1} ms ({:.0} rows/s of snapshot)",
        rate(replace)
    );
    println!("loadavg after: {}", loadavg());
    let target = 1000.0;
    println!(
        "target: link-up convergence < {target:.0} ms: {}",
        if converged < target { "met" } else { "MISSED" }
    );
}
