//! Acceptance tests with real third-party NATS clients: nats-py 2.16.0 (the script
//! `nats_clients/client.py`), async-nats (in this file) and nats.c (Debian's libnats-dev, the
//! program `nats_clients/client.c`, compiled here with `cc`). Each client runs the same
//! scenarios, written from the client libraries' documentation and the NATS protocol:
//!
//! - `pubsub`: messages published on one connection reach a subscriber on another, in order;
//! - `queue`: two members of a queue group, each message to exactly one of them;
//! - `wildcards`: `*` (one token, also in the middle) and `>` (the rest);
//! - `flush`: a flush after many publishes returns, and everything published arrived;
//! - `request`: a request with a timeout is answered by a subscribed responder;
//! - `headers`: a message published with headers arrives with them (and one without, without);
//! - `no_responders`: a request nobody subscribes to fails at once with the client's "no
//!   responders" error, not with a timeout;
//! - `reconnect`: given both nodes of a two-node ringrelay cluster, the client is moved to the
//!   other node when the one it is on is killed, and pub/sub works there.
//!
//! Every scenario but `reconnect` runs against nats-server (Debian's 2.9, the oracle, as in
//! `nats_oracle.rs`) and against a `ringrelay serve` process with the same expectations: one
//! test per client and server runs them all and names each scenario that failed, with the
//! client's reason. `reconnect` runs against real `ringrelay serve` nodes
//! (`cluster_common`). Every wait is bounded; a client process is killed after
//! [`CHILD_BOUND`].
//!
//! A subscription is known to be in place on the server once a message its connection
//! publishes to a fresh inbox subscribed after it comes back (a round trip in that
//! connection's order). nats.c's flush (PING/PONG in the same write buffer) is such a barrier;
//! async-nats's flush only writes out its buffer, and nats-py's writes its PING ahead of
//! commands still queued for its flusher task, so those two use the round trip.

mod cluster_common;

use async_nats::{ConnectOptions, HeaderMap, Message, Subscriber};
use cluster_common::{start_cluster, Node};
use futures_util::StreamExt;
use std::fmt::Display;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bound on one wait for something a server does promptly.
const WAIT: Duration = Duration::from_secs(5);
/// Bound on a server process starting to listen.
const START_BOUND: Duration = Duration::from_secs(20);
/// A request's timeout: a request that is answered is answered well within it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// After the last expected message, how long a subscription must stay quiet (no extra copy).
const QUIET: Duration = Duration::from_millis(100);
/// Bound on one scenario of one client, process start included.
const CHILD_BOUND: Duration = Duration::from_secs(45);
/// Bound on a client being moved to the other node after its node is killed.
const RECONNECT_BOUND: Duration = Duration::from_secs(20);

/// The scenarios run against one server, in this order.
const SCENARIOS: [&str; 7] = [
    "pubsub",
    "queue",
    "wildcards",
    "flush",
    "request",
    "headers",
    "no_responders",
];

/// The nats-py release these tests are written against (`.ci/run` installs it).
const NATS_PY_VERSION: &str = "2.16.0";

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum ServerKind {
    NatsServer,
    Ringrelay,
}

/// A server process with its NATS port on loopback; killed and reaped when dropped.
struct TestServer {
    kind: ServerKind,
    child: Child,
    url: String,
    /// What it printed on the pipe the test reads (nats-server's log, ringrelay's stdout).
    log: Arc<Mutex<String>>,
    /// ringrelay's stderr (its log), removed when dropped.
    log_file: Option<PathBuf>,
}

/// Makes a spawned process die with the thread that spawned it (the test's own), so an
/// aborted run leaves no server behind.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Reads `from` line by line on a thread: each line goes to the returned channel and is
/// appended to `log`. The channel closes when `from` does.
fn read_lines(from: impl Read + Send + 'static, log: Arc<Mutex<String>>) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            log.lock().unwrap().push_str(&format!("{line}\n"));
            // The receiver may be gone; the lines still go to the log.
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (bounded by `bound`) for a line of `lines` holding `prefix`; returns what follows it.
fn line_after(lines: &Receiver<String>, prefix: &str, bound: Duration) -> Result<String, String> {
    let deadline = Instant::now() + bound;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(at) = line.find(prefix) {
                    return Ok(line[at + prefix.len()..].trim().to_string());
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!("no line with {prefix:?} within {bound:?}"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("the output ended without a line with {prefix:?}"))
            }
        }
    }
}

impl TestServer {
    fn start(kind: ServerKind) -> TestServer {
        let log = Arc::new(Mutex::new(String::new()));
        let mut log_file = None;
        let (child, addr) = match kind {
            ServerKind::NatsServer => {
                // -p -1: a random free port, which nats-server logs.
                let mut cmd = Command::new("nats-server");
                cmd.args(["-a", "127.0.0.1", "-p", "-1"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                die_with_parent(&mut cmd);
                let mut child = cmd.spawn().unwrap_or_else(|e| {
                    panic!(
                        "nats-server is the oracle of these tests: install it (apt-get install \
                         nats-server; .ci/run does): {e}"
                    )
                });
                let lines = read_lines(child.stderr.take().unwrap(), log.clone());
                let addr = line_after(&lines, "Listening for client connections on ", START_BOUND);
                (child, addr)
            }
            ServerKind::Ringrelay => {
                let path = std::env::temp_dir().join(format!(
                    "ringrelay-nats-clients-{}-{:?}.log",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let stderr = File::create(&path).expect("create the relay's log");
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringrelay"));
                cmd.args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--nats-listen",
                    "127.0.0.1:0",
                    "--workers",
                    "2",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(stderr));
                die_with_parent(&mut cmd);
                let mut child = cmd.spawn().expect("run ringrelay serve");
                let lines = read_lines(child.stdout.take().unwrap(), log.clone());
                // `nats listening ADDR` comes first, then `listening ADDR` once every worker
                // accepts.
                let addr = line_after(&lines, "nats listening ", START_BOUND).and_then(|a| {
                    line_after(&lines, "listening ", START_BOUND)?;
                    Ok(a)
                });
                log_file = Some(path);
                (child, addr)
            }
        };
        match addr {
            Ok(addr) => TestServer {
                kind,
                child,
                url: format!("nats://{addr}"),
                log,
                log_file,
            },
            Err(e) => {
                let server = TestServer {
                    kind,
                    child,
                    url: String::new(),
                    log,
                    log_file,
                };
                panic!(
                    "{kind:?} did not start: {e}; its output:\n{}",
                    server.output()
                );
            }
        }
    }

    /// Everything the server printed so far.
    fn output(&self) -> String {
        let mut text = self.log.lock().unwrap().clone();
        if let Some(path) = &self.log_file {
            text.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        text
    }

    /// Err with the exit status if the process is gone.
    fn still_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{:?} exited ({status})", self.kind)),
            Err(e) => Err(format!("{:?}: {e}", self.kind)),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.log_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum ClientKind {
    /// nats-py, `nats_clients/client.py`.
    NatsPy,
    /// async-nats, the scenarios below.
    AsyncNats,
    /// nats.c, `nats_clients/client.c`.
    NatsC,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            ClientKind::NatsPy => "nats-py",
            ClientKind::AsyncNats => "async-nats",
            ClientKind::NatsC => "nats.c",
        }
    }

    /// Runs `scenario` against `urls`: Ok with the client's detail, Err with its reason.
    /// `on_connected` is called with a `reconnect` client's "HOST:PORT" once it is connected
    /// (it kills that node).
    fn run(
        self,
        scenario: &str,
        urls: &[String],
        on_connected: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<String, String> {
        match self {
            ClientKind::NatsPy => {
                let mut cmd = Command::new("python3");
                cmd.arg(helper("client.py"));
                run_process(cmd, scenario, urls, on_connected)
            }
            ClientKind::NatsC => {
                let program = nats_c_program()?;
                run_process(Command::new(program), scenario, urls, on_connected)
            }
            ClientKind::AsyncNats => with_async_nats::run(scenario, urls, on_connected),
        }
    }

    /// Panics with how to install the client when it is missing.
    fn check_installed(self) {
        match self {
            ClientKind::NatsPy => {
                let out = Command::new("python3")
                    .args(["-c", "import nats.aio.client as c; print(c.__version__)"])
                    .output()
                    .expect("python3 runs");
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                assert!(
                    out.status.success() && version == NATS_PY_VERSION,
                    "nats-py {NATS_PY_VERSION} is needed (pip install nats-py=={NATS_PY_VERSION}; \
                     .ci/run does): python3 says {version:?} {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            ClientKind::NatsC => {
                if let Err(e) = nats_c_program() {
                    panic!("{e}");
                }
            }
            ClientKind::AsyncNats => {}
        }
    }
}

fn helper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nats_clients")
        .join(name)
}

/// `client.c` built once per test process, with the flags pkg-config gives for libnats.
fn nats_c_program() -> Result<PathBuf, String> {
    static PROGRAM: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let flags = Command::new("pkg-config")
                .args(["--cflags", "--libs", "libnats"])
                .output()
                .map_err(|e| format!("pkg-config: {e}"))?;
            if !flags.status.success() {
                return Err(format!(
                    "nats.c is needed: install libnats-dev (apt-get install libnats-dev; \
                     .ci/run does); pkg-config says: {}",
                    String::from_utf8_lossy(&flags.stderr).trim()
                ));
            }
            let flags = String::from_utf8_lossy(&flags.stdout).into_owned();
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("nats_clients");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            // Built under a name of this process and renamed: two test runs at once each get
            // a complete program.
            let out = dir.join("client-c");
            let building = dir.join(format!("client-c.{}", std::process::id()));
            let cc = Command::new("cc")
                .args(["-O1", "-Wall", "-Wextra", "-Werror", "-o"])
                .arg(&building)
                .arg(helper("client.c"))
                .args(flags.split_whitespace())
                .arg("-lpthread")
                .output()
                .map_err(|e| format!("cc: {e}"))?;
            if !cc.status.success() {
                return Err(format!(
                    "cc could not build client.c:\n{}",
                    String::from_utf8_lossy(&cc.stderr)
                ));
            }
            std::fs::rename(&building, &out).map_err(|e| format!("rename: {e}"))?;
            Ok(out)
        })
        .clone()
}

/// Runs a client program (`SCENARIO URL...`), bounded by [`CHILD_BOUND`]: Ok with the detail
/// of its `PASS` line if it exits 0, Err with its `FAIL` line (or its output) otherwise.
fn run_process(
    mut cmd: Command,
    scenario: &str,
    urls: &[String],
    on_connected: &mut dyn FnMut(&str) -> Result<(), String>,
) -> Result<String, String> {
    cmd.arg(scenario)
        .args(urls)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let lines = read_lines(child.stdout.take().unwrap(), out.clone());
    let err_lines = read_lines(child.stderr.take().unwrap(), err.clone());
    let deadline = Instant::now() + CHILD_BOUND;
    let mut problem = None;
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                if let Some(node) = line.strip_prefix("CONNECTED ") {
                    if let Err(e) = on_connected(node.trim()) {
                        problem = Some(e);
                        break;
                    }
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                problem = Some(format!("still running after {CHILD_BOUND:?}, killed"));
                break;
            }
        }
    }
    if problem.is_some() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    // The output is complete once both pipes are closed (the process has exited).
    while err_lines.recv_timeout(WAIT).is_ok() {}
    let out = out.lock().unwrap().clone();
    let err = err.lock().unwrap().clone();
    let pass = format!("PASS {scenario}: ");
    let fail = format!("FAIL {scenario}: ");
    if let Some(problem) = problem {
        return Err(format!("{problem}; output:\n{out}{err}"));
    }
    if status.success() {
        if let Some(detail) = out.lines().find_map(|l| l.strip_prefix(&pass)) {
            return Ok(detail.to_string());
        }
    }
    match out.lines().find_map(|l| l.strip_prefix(&fail)) {
        Some(reason) => Err(reason.to_string()),
        None => Err(format!(
            "exited {status} without a PASS line; output:\n{out}{err}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// The scenarios with async-nats
// ---------------------------------------------------------------------------------------------

mod with_async_nats {
    use super::*;
    use async_nats::{Client, Event, RequestErrorKind};
    use bytes::Bytes;

    type Outcome = Result<String, String>;

    /// Adds what was being done to an error.
    trait Ctx<T> {
        fn ctx(self, what: &str) -> Result<T, String>;
    }

    impl<T, E: Display> Ctx<T> for Result<T, E> {
        fn ctx(self, what: &str) -> Result<T, String> {
            self.map_err(|e| format!("{what}: {e}"))
        }
    }

    fn check(cond: bool, reason: impl FnOnce() -> String) -> Result<(), String> {
        if cond {
            Ok(())
        } else {
            Err(reason())
        }
    }

    pub fn run(
        scenario: &str,
        urls: &[String],
        on_connected: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Outcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ctx("tokio runtime")?;
        rt.block_on(async {
            let run = async {
                match scenario {
                    "pubsub" => pubsub(urls).await,
                    "queue" => queue(urls).await,
                    "wildcards" => wildcards(urls).await,
                    "flush" => flush_scenario(urls).await,
                    "request" => request(urls).await,
                    "headers" => headers(urls).await,
                    "no_responders" => no_responders(urls).await,
                    "reconnect" => reconnect(urls, on_connected).await,
                    other => Err(format!("no scenario {other}")),
                }
            };
            match tokio::time::timeout(CHILD_BOUND, run).await {
                Ok(outcome) => outcome,
                Err(_) => Err(format!("not done within {CHILD_BOUND:?}")),
            }
        })
    }

    fn options() -> ConnectOptions {
        ConnectOptions::new()
            .connection_timeout(WAIT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .retain_servers_order()
    }

    async fn connect(urls: &[String]) -> Result<Client, String> {
        options().connect(urls).await.ctx("connect")
    }

    async fn flush(client: &Client) -> Result<(), String> {
        match tokio::time::timeout(WAIT, client.flush()).await {
            Ok(r) => r.ctx("flush"),
            Err(_) => Err(format!("flush got no PONG within {WAIT:?}")),
        }
    }

    /// A round trip through the server on `client`'s connection: a message to a fresh inbox
    /// subscribed on the same connection comes back, so the server has taken every operation
    /// sent before it (the SUBs above all). async-nats's `flush` only writes out its buffer
    /// and does not wait for the server (no PING), unlike nats-py's and nats.c's.
    async fn round_trip(client: &Client) -> Result<(), String> {
        let inbox = client.new_inbox();
        let mut sub = subscribe(client, &inbox).await?;
        publish(client, &inbox, "sync").await?;
        flush(client).await?;
        next_msg(&mut sub, "the round trip through the server").await?;
        sub.unsubscribe().await.ctx("unsubscribe")
    }

    async fn publish(
        client: &Client,
        subject: &str,
        payload: impl Into<Bytes>,
    ) -> Result<(), String> {
        client
            .publish(subject.to_string(), payload.into())
            .await
            .ctx("publish")
    }

    async fn subscribe(client: &Client, subject: &str) -> Result<Subscriber, String> {
        client
            .subscribe(subject.to_string())
            .await
            .ctx(&format!("subscribe {subject}"))
    }

    async fn next_msg(sub: &mut Subscriber, what: &str) -> Result<Message, String> {
        match tokio::time::timeout(WAIT, sub.next()).await {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(format!("{what}: the subscription ended")),
            Err(_) => Err(format!("no message for {what} within {WAIT:?}")),
        }
    }

    /// Fails if a message comes to `sub` within [`QUIET`].
    async fn no_more(sub: &mut Subscriber, what: &str) -> Result<(), String> {
        match tokio::time::timeout(QUIET, sub.next()).await {
            Ok(Some(msg)) => Err(format!(
                "{what}: unexpected extra message {} {:?}",
                msg.subject, msg.payload
            )),
            Ok(None) | Err(_) => Ok(()),
        }
    }

    fn text(msg: &Message) -> String {
        String::from_utf8_lossy(&msg.payload).into_owned()
    }

    async fn pubsub(urls: &[String]) -> Outcome {
        let a = connect(urls).await?;
        let b = connect(urls).await?;
        let mut sub = subscribe(&a, "ps.greet").await?;
        let mut other = subscribe(&a, "ps.other").await?;
        round_trip(&a).await?;
        for i in 0..3 {
            publish(&b, "ps.greet", format!("m{i}")).await?;
        }
        flush(&b).await?;
        for i in 0..3 {
            let msg = next_msg(&mut sub, "ps.greet").await?;
            check(msg.subject.as_str() == "ps.greet", || {
                format!("subject {}", msg.subject)
            })?;
            check(text(&msg) == format!("m{i}"), || {
                format!("message {i}: payload {:?}", msg.payload)
            })?;
        }
        no_more(&mut sub, "ps.greet").await?;
        no_more(&mut other, "ps.other (nothing published there)").await?;
        Ok("3 messages in order".into())
    }

    async fn queue(urls: &[String]) -> Outcome {
        const TOTAL: usize = 20;
        let mut members = Vec::new();
        for _ in 0..2 {
            let conn = connect(urls).await?;
            let work = conn
                .queue_subscribe("q.work", "workers".to_string())
                .await
                .ctx("queue subscribe")?;
            let done = subscribe(&conn, "q.done").await?;
            round_trip(&conn).await?;
            members.push((conn, work, done));
        }
        let publisher = connect(urls).await?;
        for i in 0..TOTAL {
            publish(&publisher, "q.work", i.to_string()).await?;
        }
        // Not in the group: every member gets it, after the work (one publisher's order).
        publish(&publisher, "q.done", "end").await?;
        flush(&publisher).await?;
        let mut got = Vec::new();
        let mut counts = Vec::new();
        for (n, (_conn, work, done)) in members.iter_mut().enumerate() {
            next_msg(done, &format!("q.done on member {n}")).await?;
            let mut mine = 0;
            while let Ok(Some(msg)) = tokio::time::timeout(QUIET, work.next()).await {
                got.push(text(&msg).parse::<usize>().ctx("payload")?);
                mine += 1;
            }
            counts.push(mine);
        }
        got.sort_unstable();
        check(got == (0..TOTAL).collect::<Vec<_>>(), || {
            format!(
                "each of {TOTAL} messages to exactly one member; got {got:?} (per member {counts:?})"
            )
        })?;
        Ok(format!(
            "{TOTAL} messages split {}+{}",
            counts[0], counts[1]
        ))
    }

    /// Published in this order; what each pattern must receive, in order.
    const WILDCARD_PUBLISHES: [&str; 5] = ["wc", "other.a", "wc.a.y", "wc.b", "wc.a.z"];
    const WILDCARD_EXPECT: [(&str, &[&str]); 3] = [
        ("wc.*", &["wc.b"]),
        ("wc.>", &["wc.a.y", "wc.b", "wc.a.z"]),
        ("wc.*.z", &["wc.a.z"]),
    ];

    async fn wildcards(urls: &[String]) -> Outcome {
        let s = connect(urls).await?;
        let p = connect(urls).await?;
        let mut subs = Vec::new();
        for (pattern, _) in WILDCARD_EXPECT {
            subs.push(subscribe(&s, pattern).await?);
        }
        round_trip(&s).await?;
        for subject in WILDCARD_PUBLISHES {
            publish(&p, subject, subject).await?;
        }
        flush(&p).await?;
        for ((pattern, want), sub) in WILDCARD_EXPECT.iter().zip(subs.iter_mut()) {
            let mut got = Vec::new();
            for _ in want.iter() {
                let msg = next_msg(sub, pattern).await?;
                check(text(&msg) == msg.subject.as_str(), || {
                    format!("{pattern}: {} with {:?}", msg.subject, msg.payload)
                })?;
                got.push(msg.subject.to_string());
            }
            check(got == *want, || {
                format!("{pattern}: want {want:?}, got {got:?}")
            })?;
            no_more(sub, pattern).await?;
        }
        Ok("wc.* wc.> wc.*.z as expected".into())
    }

    async fn flush_scenario(urls: &[String]) -> Outcome {
        const COUNT: usize = 100;
        let s = connect(urls).await?;
        let p = connect(urls).await?;
        let mut sub = subscribe(&s, "fl.data").await?;
        round_trip(&s).await?;
        for i in 0..COUNT {
            publish(&p, "fl.data", i.to_string()).await?;
        }
        let started = Instant::now();
        flush(&p).await?;
        let took = started.elapsed();
        for i in 0..COUNT {
            let msg = next_msg(&mut sub, &format!("fl.data message {i}")).await?;
            check(text(&msg) == i.to_string(), || {
                format!("message {i}: payload {:?}", msg.payload)
            })?;
        }
        Ok(format!(
            "flush after {COUNT} publishes took {took:?}; all arrived in order"
        ))
    }

    async fn request(urls: &[String]) -> Outcome {
        let responder = connect(urls).await?;
        let requester = connect(urls).await?;
        let mut sub = subscribe(&responder, "svc.echo").await?;
        round_trip(&responder).await?;
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let answering = {
            let (responder, seen) = (responder.clone(), seen.clone());
            tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    let reply = msg.reply.as_ref().map(|r| r.to_string());
                    seen.lock().unwrap().push(reply.clone().unwrap_or_default());
                    if let Some(reply) = reply {
                        let mut body = b"echo:".to_vec();
                        body.extend_from_slice(&msg.payload);
                        // A lost answer shows as the requester's timeout.
                        let _ = responder.publish(reply, body.into()).await;
                    }
                }
            })
        };
        let mut outcome = Ok(());
        for i in 0..3 {
            let body = format!("ping-{i}");
            outcome = match requester.request("svc.echo", body.clone().into()).await {
                Ok(reply) => check(text(&reply) == format!("echo:{body}"), || {
                    format!("request {i}: reply {:?}", reply.payload)
                }),
                Err(e) => Err(match e.kind() {
                    RequestErrorKind::TimedOut => format!(
                        "request {i} timed out after {REQUEST_TIMEOUT:?} (reply subjects the \
                         responder saw: {:?})",
                        seen.lock().unwrap()
                    ),
                    RequestErrorKind::NoResponders => {
                        format!("request {i}: no responders, but one is subscribed")
                    }
                    RequestErrorKind::Other => format!("request {i}: {e}"),
                }),
            };
            if outcome.is_err() {
                break;
            }
        }
        answering.abort();
        outcome?;
        let first = seen.lock().unwrap().first().cloned().unwrap_or_default();
        Ok(format!("3 requests answered (reply subject {first})"))
    }

    async fn headers(urls: &[String]) -> Outcome {
        let s = connect(urls).await?;
        let p = connect(urls).await?;
        let mut sub = subscribe(&s, "hdr.a").await?;
        round_trip(&s).await?;
        let sent = [("X-Test", "v1"), ("X-Other", "two words")];
        let mut map = HeaderMap::new();
        for (k, v) in sent {
            map.insert(k, v);
        }
        p.publish_with_headers("hdr.a", map, "body".into())
            .await
            .ctx("publish with headers")?;
        publish(&p, "hdr.a", "plain").await?;
        flush(&p).await?;
        let msg = next_msg(&mut sub, "hdr.a with headers").await?;
        check(text(&msg) == "body", || {
            format!("payload {:?}", msg.payload)
        })?;
        for (k, v) in sent {
            let got = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_string());
            check(got.as_deref() == Some(v), || {
                format!("header {k}: want {v:?}, got headers {:?}", msg.headers)
            })?;
        }
        let plain = next_msg(&mut sub, "hdr.a without headers").await?;
        check(text(&plain) == "plain", || {
            format!("second payload {:?}", plain.payload)
        })?;
        check(
            plain.headers.as_ref().map_or(true, |h| h.is_empty()),
            || {
                format!(
                    "a message published without headers has {:?}",
                    plain.headers
                )
            },
        )?;
        Ok("2 headers carried, none on the plain message".into())
    }

    async fn no_responders(urls: &[String]) -> Outcome {
        let requester = connect(urls).await?;
        let started = Instant::now();
        match requester.request("nobody.home", "x".into()).await {
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                Ok(format!("no responders error after {:?}", started.elapsed()))
            }
            Err(e) if e.kind() == RequestErrorKind::TimedOut => Err(format!(
                "timed out after {REQUEST_TIMEOUT:?} instead of a no responders error"
            )),
            Err(e) => Err(format!("want a no responders error, got {e}")),
            Ok(reply) => Err(format!("got a reply {:?} from nobody", reply.payload)),
        }
    }

    fn host_port(client: &Client) -> String {
        let info = client.server_info();
        format!("{}:{}", info.host, info.port)
    }

    async fn next_event(
        events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
        want: fn(&Event) -> bool,
        what: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), String> {
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) if want(&event) => return Ok(()),
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("{what}: the events ended")),
                Err(_) => return Err(format!("not {what} within {RECONNECT_BOUND:?}")),
            }
        }
    }

    async fn reconnect(
        urls: &[String],
        on_connected: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Outcome {
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let client = options()
            .max_reconnects(50)
            .reconnect_delay_callback(|_| Duration::from_millis(100))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(urls)
            .await
            .ctx("connect")?;
        let mut before = subscribe(&client, "rc.before").await?;
        round_trip(&client).await?;
        publish(&client, "rc.before", "one").await?;
        let msg = next_msg(&mut before, "rc.before on the first node").await?;
        check(text(&msg) == "one", || format!("payload {:?}", msg.payload))?;
        let first = host_port(&client);
        on_connected(&first)?;
        let deadline = tokio::time::Instant::now() + RECONNECT_BOUND;
        let disconnected = |e: &Event| matches!(e, Event::Disconnected);
        let connected = |e: &Event| matches!(e, Event::Connected);
        next_event(&mut events, disconnected, "disconnected", deadline).await?;
        next_event(&mut events, connected, "reconnected", deadline).await?;
        let second = host_port(&client);
        check(second != first, || {
            format!("reconnected to the killed node {first}")
        })?;
        // The subscription made before is made again on the new node by the client.
        publish(&client, "rc.before", "two").await?;
        let msg = next_msg(&mut before, "rc.before after the reconnect").await?;
        check(text(&msg) == "two", || format!("payload {:?}", msg.payload))?;
        let mut after = subscribe(&client, "rc.after").await?;
        round_trip(&client).await?;
        publish(&client, "rc.after", "three").await?;
        let msg = next_msg(&mut after, "rc.after on the second node").await?;
        check(text(&msg) == "three", || {
            format!("payload {:?}", msg.payload)
        })?;
        Ok(format!(
            "moved from {first} to {second}; pub/sub works there"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Every scenario of [`SCENARIOS`] with `client` against a fresh server of `kind`; fails
/// naming each scenario that failed and why.
fn all_scenarios(client: ClientKind, kind: ServerKind) {
    client.check_installed();
    let mut server = TestServer::start(kind);
    let urls = vec![server.url.clone()];
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for scenario in SCENARIOS {
        let started = Instant::now();
        let line = match client.run(scenario, &urls, &mut |_| Ok(())) {
            Ok(detail) => format!("PASS {scenario}: {detail}"),
            Err(reason) => {
                failed.push(scenario);
                format!("FAIL {scenario}: {reason}")
            }
        };
        println!(
            "{} on {kind:?}: {line} ({:.1} s)",
            client.name(),
            started.elapsed().as_secs_f64()
        );
        report.push(line);
    }
    if let Err(e) = server.still_running() {
        report.push(format!("the server died: {e}"));
        failed.push("(server)");
    }
    assert!(
        failed.is_empty(),
        "{} against {kind:?} ({}): {} of {} scenarios failed: {}\n{}\n----- server output -----\n{}",
        client.name(),
        server.url,
        failed.len(),
        SCENARIOS.len(),
        failed.join(", "),
        report.join("\n"),
        server.output()
    );
}

/// `reconnect` with `client` on a two-node cluster in address block `block`: the client is
/// given both nodes, the node it says it is on is killed, and it must go on on the other.
fn reconnect_across_the_cluster(client: ClientKind, block: u8) {
    client.check_installed();
    let (_claim, nodes) = start_cluster(block, 2);
    let urls: Vec<String> = nodes.iter().map(|n| format!("nats://{}", n.nats)).collect();
    let mut killed = None;
    let mut kill = |on: &str| -> Result<(), String> {
        let node: &Node = nodes
            .iter()
            .find(|n| n.nats.to_string() == on)
            .ok_or_else(|| format!("the client is on {on}, which is none of {urls:?}"))?;
        node.kill();
        killed = Some(node.id);
        Ok(())
    };
    let outcome = client.run("reconnect", &urls, &mut kill);
    let detail = outcome.unwrap_or_else(|reason| {
        panic!(
            "{}: reconnect failed (node killed: {killed:?}): {reason}",
            client.name()
        )
    });
    assert!(
        killed.is_some(),
        "the client never said which node it is on"
    );
    println!("{}: PASS reconnect: {detail}", client.name());
}

#[test]
fn nats_py_against_nats_server() {
    all_scenarios(ClientKind::NatsPy, ServerKind::NatsServer);
}

#[test]
fn nats_py_against_ringrelay() {
    all_scenarios(ClientKind::NatsPy, ServerKind::Ringrelay);
}

#[test]
fn async_nats_against_nats_server() {
    all_scenarios(ClientKind::AsyncNats, ServerKind::NatsServer);
}

#[test]
fn async_nats_against_ringrelay() {
    all_scenarios(ClientKind::AsyncNats, ServerKind::Ringrelay);
}

#[test]
fn nats_c_against_nats_server() {
    all_scenarios(ClientKind::NatsC, ServerKind::NatsServer);
}

#[test]
fn nats_c_against_ringrelay() {
    all_scenarios(ClientKind::NatsC, ServerKind::Ringrelay);
}

// Address blocks of their own (cluster_common: one block per test).
#[test]
fn nats_py_reconnects_to_the_other_ringrelay_node() {
    reconnect_across_the_cluster(ClientKind::NatsPy, 36);
}

#[test]
fn async_nats_reconnects_to_the_other_ringrelay_node() {
    reconnect_across_the_cluster(ClientKind::AsyncNats, 37);
}

#[test]
fn nats_c_reconnects_to_the_other_ringrelay_node() {
    reconnect_across_the_cluster(ClientKind::NatsC, 38);
}
