//! Helpers for the multi-process cluster tests (cli/tests/cluster.rs): relay nodes run as child
//! processes of the real binary, a fault-injecting TCP proxy, a tiny blocking HTTP/1.0 GET and
//! the `/cluster` JSON view, and bounded waits.
//!
//! Addresses: every test owns the block 127.0.N.0/24 (distinct N per test); node K listens on
//! 127.0.N.K with ports [`CLIENT_PORT`], [`CLUSTER_PORT`], [`METRICS_PORT`], [`NATS_PORT`]; a proxy in front of
//! node K listens on 127.0.N.(PROXY_HOST_BASE + K):[`CLUSTER_PORT`].
//!
//! Every wait is bounded and panics with context (the last `/cluster` body, the node logs)
//! when the bound passes. A [`Node`] SIGKILLs and reaps its process when dropped (also during a
//! panic, when it prints its log to stderr first).

// Not every helper is used by every test.
#![allow(dead_code)]

#[path = "../shared/samples.rs"]
mod samples;

use ringrelay::client::{Client, ClientError, ClientOptions, Event};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const CLIENT_PORT: u16 = 7400;
pub const CLUSTER_PORT: u16 = 7401;
pub const METRICS_PORT: u16 = 7402;
/// Every node also serves NATS clients here.
pub const NATS_PORT: u16 = 7403;
/// A proxy in front of node K listens on host `PROXY_HOST_BASE + K` of the test's block.
pub const PROXY_HOST_BASE: u8 = 10;
pub const SECRET: &str = "s3cret";

/// Default bound on one wait for something the cluster should do (a node becoming ready, a row
/// arriving, a message being delivered).
pub const WAIT: Duration = Duration::from_secs(20);
/// Interval between two polls inside a bounded wait.
pub const POLL: Duration = Duration::from_millis(20);
/// Bound on one HTTP request to a node's metrics endpoint.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

pub fn ip(block: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, block, host))
}

pub fn addr(block: u8, host: u8, port: u16) -> SocketAddr {
    SocketAddr::new(ip(block, host), port)
}

/// Address a proxy in front of node `host` of `block` listens on.
pub fn proxy_addr(block: u8, host: u8) -> SocketAddr {
    addr(block, PROXY_HOST_BASE + host, CLUSTER_PORT)
}

// ---------------------------------------------------------------------------------------------
// Address blocks
// ---------------------------------------------------------------------------------------------

/// Exclusive use of an address block across processes: held for a test's whole run (an
/// flock(2) on a file in the temp dir, released when dropped or when the process dies), so two
/// runs of this test binary at once (say, two checkouts) wait for each other instead of
/// sharing the fixed ports.
pub struct BlockClaim {
    _file: File,
}

pub fn claim_block(block: u8) -> BlockClaim {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(format!("ringrelay-cluster-test-block{block}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let bound = Duration::from_secs(90);
    wait_for_detail(
        &format!("exclusive use of 127.0.{block}.0/24 ({})", path.display()),
        bound,
        || {
            // SAFETY: flock(2) on a descriptor we own; no memory is shared with the kernel.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                Ok(())
            } else {
                Err(format!(
                    "another process holds the lock: {}",
                    io::Error::last_os_error()
                ))
            }
        },
    );
    BlockClaim { _file: file }
}

/// Starts `n` nodes in `block`: node 1 with no peers, the others with node 1 as their only
/// seed (so they learn each other by gossip), holding the block's claim. Returns once every
/// node's /healthz is 200 and every node lists all the others as "up".
pub fn start_cluster(block: u8, n: u16) -> (BlockClaim, Vec<Node>) {
    let claim = claim_block(block);
    let first = Node::start(NodeSpec::new(block, 1));
    let seed = first.cluster;
    let mut nodes = vec![first];
    for k in 2..=n {
        nodes.push(Node::start(NodeSpec::new(block, k).peers(&[seed])));
    }
    for node in &nodes {
        node.wait_ready(WAIT);
    }
    for node in &nodes {
        let others: Vec<u16> = (1..=n).filter(|&k| k != node.id).collect();
        node.wait_up(&others);
    }
    (claim, nodes)
}

// ---------------------------------------------------------------------------------------------
// Bounded waits
// ---------------------------------------------------------------------------------------------

/// Polls `probe` every [`POLL`] until it returns `Some`; panics with `what` once `bound` has
/// passed.
pub fn wait_for<T>(what: &str, bound: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_for_detail(what, bound, || probe().ok_or_else(String::new))
}

/// Polls `probe` every [`POLL`] until it returns `Ok`; panics with `what` and the last `Err`
/// (a description of the state seen) once `bound` has passed.
pub fn wait_for_detail<T>(
    what: &str,
    bound: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + bound;
    loop {
        let last = match probe() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {bound:?} waiting for {what}; last seen: {last}"
        );
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP and the /cluster view
// ---------------------------------------------------------------------------------------------

/// The value of the sample `series` (name with labels, exactly as exposed) on a node's
/// `/metrics`; panics when the node does not expose it.
pub fn sample(node: &Node, series: &str) -> f64 {
    let (status, body) = http_get(node.metrics, "/metrics").expect("the metrics endpoint");
    assert_eq!(status, 200, "{body}");
    samples::sample_in(&body, series)
        .unwrap_or_else(|| panic!("no sample {series} on node {}", node.id))
}

/// `GET path` over HTTP/1.0 with [`HTTP_TIMEOUT`] on connect and on each read; returns
/// (status, body). An error means the endpoint is not (yet, or no longer) answering.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no header block: {raw:?}"),
        )
    })?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad status: {head:?}"))
        })?;
    Ok((status, body.to_string()))
}

/// One member as a node's `/cluster` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: u16,
    pub addr: String,
    pub state: String,
}

/// One location row: client `id` is registered on `node` with `epoch`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    pub id: String,
    pub node: u16,
    pub epoch: u64,
}

/// A parsed `/cluster` answer. `rows` is `Some` only for `/cluster?rows=1`.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub node_id: u16,
    pub ready: bool,
    pub members: Vec<Member>,
    pub row_count: u64,
    pub rows: Option<Vec<Row>>,
    pub raw: String,
}

fn field<'a>(v: &'a Value, key: &str, raw: &str) -> Result<&'a Value, String> {
    v.get(key)
        .ok_or_else(|| format!("no field {key:?} in /cluster answer: {raw}"))
}

fn as_u16(v: &Value, what: &str, raw: &str) -> Result<u16, String> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| format!("{what} is not a u16 in /cluster answer: {raw}"))
}

impl ClusterView {
    /// Parses the design's JSON: `{"node_id","ready","members":[{"node_id","addr","state"}],
    /// "row_count", "rows":[{"id","node","epoch"}]}` (`rows` optional).
    pub fn parse(raw: &str) -> Result<ClusterView, String> {
        let v: Value =
            serde_json::from_str(raw).map_err(|e| format!("/cluster is not JSON ({e}): {raw}"))?;
        let node_id = as_u16(field(&v, "node_id", raw)?, "node_id", raw)?;
        let ready = field(&v, "ready", raw)?
            .as_bool()
            .ok_or_else(|| format!("ready is not a bool: {raw}"))?;
        let mut members = Vec::new();
        for m in field(&v, "members", raw)?
            .as_array()
            .ok_or_else(|| format!("members is not an array: {raw}"))?
        {
            members.push(Member {
                node_id: as_u16(field(m, "node_id", raw)?, "members[].node_id", raw)?,
                addr: field(m, "addr", raw)?
                    .as_str()
                    .ok_or_else(|| format!("members[].addr is not a string: {raw}"))?
                    .to_string(),
                state: field(m, "state", raw)?
                    .as_str()
                    .ok_or_else(|| format!("members[].state is not a string: {raw}"))?
                    .to_string(),
            });
        }
        let row_count = field(&v, "row_count", raw)?
            .as_u64()
            .ok_or_else(|| format!("row_count is not a u64: {raw}"))?;
        let rows = match v.get("rows") {
            None | Some(Value::Null) => None,
            Some(list) => {
                let mut rows = Vec::new();
                for r in list
                    .as_array()
                    .ok_or_else(|| format!("rows is not an array: {raw}"))?
                {
                    rows.push(Row {
                        id: field(r, "id", raw)?
                            .as_str()
                            .ok_or_else(|| format!("rows[].id is not a string: {raw}"))?
                            .to_string(),
                        node: as_u16(field(r, "node", raw)?, "rows[].node", raw)?,
                        epoch: field(r, "epoch", raw)?
                            .as_u64()
                            .ok_or_else(|| format!("rows[].epoch is not a u64: {raw}"))?,
                    });
                }
                Some(rows)
            }
        };
        Ok(ClusterView {
            node_id,
            ready,
            members,
            row_count,
            rows,
            raw: raw.to_string(),
        })
    }

    /// The state this node reports for `node`, `None` if it does not list it.
    pub fn state_of(&self, node: u16) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.node_id == node)
            .map(|m| m.state.as_str())
    }

    pub fn is_up(&self, node: u16) -> bool {
        self.state_of(node) == Some("up")
    }

    pub fn all_up(&self, nodes: &[u16]) -> bool {
        nodes.iter().all(|&n| self.is_up(n))
    }

    /// The rows (panics if the view was fetched without `?rows=1`).
    pub fn rows(&self) -> &[Row] {
        self.rows
            .as_deref()
            .unwrap_or_else(|| panic!("/cluster fetched without rows: {}", self.raw))
    }

    pub fn rows_for(&self, id: &str) -> Vec<&Row> {
        self.rows().iter().filter(|r| r.id == id).collect()
    }

    pub fn has_row(&self, id: &str) -> bool {
        self.rows().iter().any(|r| r.id == id)
    }

    pub fn row_set(&self) -> BTreeSet<Row> {
        self.rows().iter().cloned().collect()
    }

    /// The set of (id, node) pairs.
    pub fn placement(&self) -> BTreeSet<(String, u16)> {
        self.rows().iter().map(|r| (r.id.clone(), r.node)).collect()
    }

    pub fn rows_of_node(&self, node: u16) -> Vec<&Row> {
        self.rows().iter().filter(|r| r.node == node).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes (child processes of the real binary)
// ---------------------------------------------------------------------------------------------

/// How to start one node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub block: u8,
    /// Node id, also the host part of its addresses (127.0.block.id).
    pub id: u16,
    pub peers: Vec<SocketAddr>,
    pub secret: String,
    /// `--cluster-advertise` (e.g. a proxy in front of this node); `None`: not given.
    pub advertise: Option<SocketAddr>,
    /// `--workers` (2 unless a test needs many nodes on this 2-core machine).
    pub workers: usize,
    /// The text of a config file passed with `--config` (`None`: the defaults).
    pub config_toml: Option<String>,
}

impl NodeSpec {
    pub fn new(block: u8, id: u16) -> NodeSpec {
        NodeSpec {
            block,
            id,
            peers: Vec::new(),
            secret: SECRET.to_string(),
            advertise: None,
            workers: 2,
            config_toml: None,
        }
    }

    /// Settings for `--config`, as TOML.
    pub fn config_toml(mut self, toml: &str) -> NodeSpec {
        self.config_toml = Some(toml.to_string());
        self
    }

    pub fn workers(mut self, workers: usize) -> NodeSpec {
        self.workers = workers;
        self
    }

    pub fn peers(mut self, peers: &[SocketAddr]) -> NodeSpec {
        self.peers = peers.to_vec();
        self
    }

    pub fn secret(mut self, secret: &str) -> NodeSpec {
        self.secret = secret.to_string();
        self
    }

    pub fn advertise(mut self, advertise: SocketAddr) -> NodeSpec {
        self.advertise = Some(advertise);
        self
    }

    fn host(&self) -> u8 {
        u8::try_from(self.id).expect("node ids in tests are below 256")
    }
}

/// A running node. Dropping it SIGKILLs and reaps the process; during a panic it also prints
/// the node's log (stdout and stderr of every start) to stderr.
pub struct Node {
    pub id: u16,
    pub client: SocketAddr,
    pub cluster: SocketAddr,
    pub metrics: SocketAddr,
    /// The NATS port (`--nats-listen`).
    pub nats: SocketAddr,
    /// Where other nodes reach this one (the proxy in front of it, or `cluster`).
    pub advertise: SocketAddr,
    args: Vec<String>,
    /// The cluster secret, passed in `RINGRELAY_CLUSTER_SECRET` (not on the command line,
    /// where every local user could read it).
    secret: String,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

fn log_path(block: u8, id: u16) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster-tests");
    std::fs::create_dir_all(&dir).expect("create the log directory");
    dir.join(format!("block{block}-node{id}.log"))
}

/// Waits (bounded) until nothing answers on `addr`, then panics if something still does. A
/// killed node's io_uring listeners are released by the kernel asynchronously, shortly after
/// the process is reaped, so a restart waits for that; a stray relay from an aborted run
/// would share the SO_REUSEPORT client port with the new node and steal its connections.
fn wait_free(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "something still listens on {addr}: a stray process from an earlier run? \
             (find it with `ss -ltnp | grep {}`)",
            addr.ip()
        );
        std::thread::sleep(POLL);
    }
}

impl Node {
    /// Starts the node (does not wait for it to be ready; see [`Node::wait_ready`]).
    pub fn start(spec: NodeSpec) -> Node {
        let host = spec.host();
        let client = addr(spec.block, host, CLIENT_PORT);
        let cluster = addr(spec.block, host, CLUSTER_PORT);
        let metrics = addr(spec.block, host, METRICS_PORT);
        let nats = addr(spec.block, host, NATS_PORT);
        let workers = spec.workers.to_string();
        let mut args: Vec<String> = [
            "serve",
            "--listen",
            &client.to_string(),
            "--workers",
            &workers,
            "--node-id",
            &spec.id.to_string(),
            "--cluster-listen",
            &cluster.to_string(),
            "--metrics",
            &metrics.to_string(),
            "--nats-listen",
            &nats.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !spec.peers.is_empty() {
            let peers: Vec<String> = spec.peers.iter().map(|p| p.to_string()).collect();
            args.push("--peers".into());
            args.push(peers.join(","));
        }
        if let Some(adv) = spec.advertise {
            args.push("--cluster-advertise".into());
            args.push(adv.to_string());
        }
        let log = log_path(spec.block, spec.id);
        if let Some(toml) = &spec.config_toml {
            let path = log.with_extension("toml");
            std::fs::write(&path, toml).expect("write the node's config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        // A fresh log per test run; restarts append.
        File::create(&log).expect("create the node log");
        let node = Node {
            id: spec.id,
            client,
            cluster,
            metrics,
            nats,
            advertise: spec.advertise.unwrap_or(cluster),
            args,
            secret: spec.secret,
            log,
            child: Mutex::new(None),
        };
        node.spawn();
        node
    }

    fn spawn(&self) {
        for a in [self.client, self.cluster, self.metrics, self.nats] {
            wait_free(a);
        }
        let mut log = OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("open the node log");
        writeln!(log, "===== start: ringrelay {}", self.args.join(" ")).unwrap();
        let err = log.try_clone().expect("clone the log handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringrelay"));
        cmd.args(&self.args)
            .env("RINGRELAY_CLUSTER_SECRET", &self.secret)
            .env(
                "RINGRELAY_LOG",
                std::env::var("RINGRELAY_CLUSTER_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
        // The node dies with the thread that spawned it (always the test's own thread, which
        // outlives the node's Drop), so an aborted test run leaves no relay holding the ports.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ringrelay {:?}: {e}", self.args));
        *self.child.lock().unwrap() = Some(child);
    }

    /// Starts the process again with the same arguments (after [`Node::kill`]).
    pub fn restart(&self) {
        assert!(
            self.child.lock().unwrap().is_none(),
            "node {} is still running",
            self.id
        );
        self.spawn();
    }

    pub fn pid(&self) -> libc::pid_t {
        let guard = self.child.lock().unwrap();
        let child = guard.as_ref().expect("node is running");
        child.id() as libc::pid_t
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.pid();
        // SAFETY: kill(2) on our own child, not reaped yet (we hold it in `self.child`).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
    }

    /// SIGKILL and reap.
    pub fn kill(&self) {
        let mut guard = self.child.lock().unwrap();
        if let Some(mut child) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn sigstop(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn sigcont(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Panics (with the log) if the process has exited on its own.
    pub fn assert_running(&self) {
        let mut guard = self.child.lock().unwrap();
        let child = guard
            .as_mut()
            .unwrap_or_else(|| panic!("node {} was killed by the test", self.id));
        if let Ok(Some(status)) = child.try_wait() {
            drop(guard);
            panic!(
                "node {} exited on its own ({status}); log:\n{}",
                self.id,
                self.log_text()
            );
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }

    /// `/healthz` status, `None` when the endpoint does not answer.
    pub fn healthz(&self) -> Option<u16> {
        http_get(self.metrics, "/healthz").ok().map(|(s, _)| s)
    }

    /// `/cluster` (with rows if `rows`), `Err` with a description when it does not answer or
    /// does not parse.
    pub fn try_cluster(&self, rows: bool) -> Result<ClusterView, String> {
        let path = if rows { "/cluster?rows=1" } else { "/cluster" };
        let (status, body) =
            http_get(self.metrics, path).map_err(|e| format!("GET {path} failed: {e}"))?;
        if status != 200 {
            return Err(format!("GET {path}: status {status}: {body}"));
        }
        ClusterView::parse(&body)
    }

    pub fn cluster(&self, rows: bool) -> ClusterView {
        self.try_cluster(rows)
            .unwrap_or_else(|e| panic!("node {}: {e}", self.id))
    }

    /// Polls `/cluster` until `cond` holds; panics after `bound` with the last answer.
    pub fn wait_cluster(
        &self,
        rows: bool,
        what: &str,
        bound: Duration,
        cond: impl Fn(&ClusterView) -> bool,
    ) -> ClusterView {
        wait_for_detail(&format!("node {}: {what}", self.id), bound, || {
            self.assert_running();
            let view = self.try_cluster(rows)?;
            if cond(&view) {
                Ok(view)
            } else {
                Err(format!("/cluster: {}", view.raw))
            }
        })
    }

    /// Waits until `/healthz` answers 200.
    pub fn wait_ready(&self, bound: Duration) {
        wait_for_detail(&format!("node {}: /healthz 200", self.id), bound, || {
            self.assert_running();
            match http_get(self.metrics, "/healthz") {
                Ok((200, _)) => Ok(()),
                Ok((s, body)) => Err(format!("{s} {body}")),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    /// Waits until this node lists every one of `peers` as "up".
    pub fn wait_up(&self, peers: &[u16]) -> ClusterView {
        self.wait_cluster(false, &format!("members {peers:?} up"), WAIT, |v| {
            v.all_up(peers)
        })
    }

    /// Waits until this node's rows list `id` on `node`.
    pub fn wait_row(&self, id: &str, node: u16) -> ClusterView {
        self.wait_cluster(true, &format!("row {id} on node {node}"), WAIT, |v| {
            v.rows_for(id).iter().any(|r| r.node == node)
        })
    }

    /// Connects a client with id `id` (HELLO is held until the node is ready, hence the long
    /// connect bound).
    pub fn connect(&self, id: &str) -> Client {
        try_connect(self.client, id)
            .unwrap_or_else(|e| panic!("client {id} cannot connect to node {}: {e}", self.id))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let text = self.log_text();
            // The tail is what matters; keep a failing run's output readable.
            let tail = tail_lines(&text, 300);
            eprintln!(
                "----- node {} log ({}) -----\n{tail}\n----- end of node {} log -----",
                self.id,
                self.log.display(),
                self.id
            );
        }
    }
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    lines[from..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

pub fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: WAIT,
        write_timeout: Some(WAIT),
        ..ClientOptions::default()
    }
}

pub fn try_connect(addr: SocketAddr, id: &str) -> Result<Client, ClientError> {
    Client::connect_with(addr, id.as_bytes(), None, client_options())
}

fn who(c: &Client) -> String {
    String::from_utf8_lossy(c.client_id()).into_owned()
}

/// The next event within `bound`; panics on timeout or error.
pub fn next_event_within(c: &mut Client, bound: Duration) -> Event {
    match c.recv(bound) {
        Ok(Some(e)) => e,
        Ok(None) => panic!("{}: no event within {bound:?}", who(c)),
        Err(e) => panic!("{}: recv failed: {e}", who(c)),
    }
}

pub fn next_event(c: &mut Client) -> Event {
    next_event_within(c, WAIT)
}

/// The next event, which must be a message: (sender, topic, payload) as strings.
pub fn next_message(c: &mut Client) -> (String, Option<String>, String) {
    match next_event(c) {
        Event::Message {
            sender,
            topic,
            payload,
            reply: None,
            headers: None,
        } => (lossy(&sender), topic.map(|t| lossy(&t)), lossy(&payload)),
        other => panic!("{}: expected a message, got {other:?}", who(c)),
    }
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Receives until a message with `payload` arrives (within `bound`); returns the payloads of
/// the messages before it. Panics on any non-message event.
pub fn drain_until_payload(c: &mut Client, payload: &str, bound: Duration) -> Vec<String> {
    let deadline = Instant::now() + bound;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{}: {payload:?} did not arrive within {bound:?}; got before: {before:?}",
            who(c)
        );
        match c.recv(left) {
            Ok(Some(Event::Message { payload: p, .. })) => {
                if p == payload.as_bytes() {
                    return before;
                }
                before.push(lossy(&p));
            }
            Ok(Some(other)) => panic!("{}: unexpected event {other:?}", who(c)),
            Ok(None) => {}
            Err(e) => panic!("{}: recv failed: {e}", who(c)),
        }
    }
}

/// Sends a marker to the client's own id and waits for it: every earlier request of this
/// connection (SUBSCRIBE, WATCH, ...) has then been applied on its node. Returns the events
/// that arrived before the marker.
pub fn sync(c: &mut Client) -> Vec<Event> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let marker = format!("__sync-{}", N.fetch_add(1, Ordering::Relaxed));
    let me = c.client_id().to_vec();
    c.send(&me, marker.as_bytes()).unwrap();
    c.flush().unwrap();
    let deadline = Instant::now() + WAIT;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{}: sync marker did not come back", who(c));
        match c.recv(left) {
            Ok(Some(Event::Message {
                sender,
                topic: None,
                payload,
                reply: None,
                headers: None,
            })) if sender == me && payload == marker.as_bytes() => return before,
            Ok(Some(e)) => before.push(e),
            Ok(None) => {}
            Err(e) => panic!("{}: recv failed during sync: {e}", who(c)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fault-injecting TCP proxy
// ---------------------------------------------------------------------------------------------

struct ProxyState {
    partitioned: bool,
    next_conn: u64,
    /// Live forwarded connections: (downstream, upstream) clones, for `partition` to cut.
    conns: HashMap<u64, (TcpStream, TcpStream)>,
    accepted: u64,
    refused: u64,
}

struct ProxyShared {
    target: SocketAddr,
    stop: AtomicBool,
    state: Mutex<ProxyState>,
}

/// Counters of a proxy, for assertions and diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyStats {
    pub accepted: u64,
    pub refused: u64,
    pub live: usize,
}

/// A TCP forwarder on a loopback address. Each accepted connection is paired with a new
/// connection to the target and bytes are copied both ways by two threads. While partitioned,
/// every current pair is cut (shutdown both ways) and new connections are accepted and closed
/// at once. Dropping the proxy cuts everything and joins the accept thread.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<ProxyShared>,
    accept_thread: Option<JoinHandle<()>>,
}

fn cut(pair: &(TcpStream, TcpStream)) {
    let _ = pair.0.shutdown(Shutdown::Both);
    let _ = pair.1.shutdown(Shutdown::Both);
}

impl Proxy {
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("proxy cannot listen on {listen}: {e}"));
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared {
            target,
            stop: AtomicBool::new(false),
            state: Mutex::new(ProxyState {
                partitioned: false,
                next_conn: 0,
                conns: HashMap::new(),
                accepted: 0,
                refused: 0,
            }),
        });
        let sh = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name(format!("proxy-{addr}"))
            .spawn(move || accept_loop(listener, sh))
            .expect("spawn the proxy thread");
        Proxy {
            addr,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Cuts every forwarded connection and refuses new ones until [`Proxy::heal`].
    pub fn partition(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.partitioned = true;
        for (_, pair) in st.conns.drain() {
            cut(&pair);
        }
    }

    /// Forwards new connections again.
    pub fn heal(&self) {
        self.shared.state.lock().unwrap().partitioned = false;
    }

    pub fn stats(&self) -> ProxyStats {
        let st = self.shared.state.lock().unwrap();
        ProxyStats {
            accepted: st.accepted,
            refused: st.refused,
            live: st.conns.len(),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        {
            let mut st = self.shared.state.lock().unwrap();
            for (_, pair) in st.conns.drain() {
                cut(&pair);
            }
        }
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<ProxyShared>) {
    loop {
        let down = match listener.accept() {
            Ok((s, _)) => s,
            Err(_) => {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
        };
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        {
            let mut st = shared.state.lock().unwrap();
            if st.partitioned {
                st.refused += 1;
                drop(down);
                continue;
            }
        }
        // Connect upstream outside the lock, then register under it: a partition() that ran
        // meanwhile is seen here, so no pair escapes a cut.
        let up = match TcpStream::connect_timeout(&shared.target, Duration::from_secs(2)) {
            Ok(s) => s,
            Err(_) => {
                drop(down);
                continue;
            }
        };
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let clones = (down.try_clone(), up.try_clone());
        let (Ok(down2), Ok(up2)) = clones else {
            continue;
        };
        let (Ok(down3), Ok(up3)) = (down.try_clone(), up.try_clone()) else {
            continue;
        };
        let id = {
            let mut st = shared.state.lock().unwrap();
            if st.partitioned {
                st.refused += 1;
                let _ = down.shutdown(Shutdown::Both);
                let _ = up.shutdown(Shutdown::Both);
                continue;
            }
            st.accepted += 1;
            let id = st.next_conn;
            st.next_conn += 1;
            st.conns.insert(id, (down3, up3));
            id
        };
        spawn_pipe(Arc::clone(&shared), id, down, up);
        spawn_pipe(Arc::clone(&shared), id, up2, down2);
    }
}

/// Copies `from` to `to` until either ends, then cuts the pair and forgets it.
fn spawn_pipe(shared: Arc<ProxyShared>, id: u64, mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
        if let Some(pair) = shared.state.lock().unwrap().conns.remove(&id) {
            cut(&pair);
        }
    });
}
