//! Helpers shared by the socket-level integration tests: relays started in-process on port 0,
//! blocking [`Client`]s with bounded waits, raw TCP connections speaking the codec by hand, and
//! child processes of the real binary.
//!
//! Every wait here is bounded (by [`WAIT`] unless told otherwise) and panics with context when
//! the bound passes, so a broken relay fails a test instead of hanging it.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

pub mod nats_wire;
#[path = "../shared/set_on_drop.rs"]
pub mod set_on_drop;
pub mod tls_pki;

use ringrelay::client::{Client, ClientOptions, Event};
use ringrelay::config::Config;
use ringrelay::protocol::{
    hello, CloseReason, ErrorCode, Frame, FrameKind, FrameReader, HEADER_LEN,
    HELLO_FRAME_BYTES_MAX, PROTOCOL_VERSION,
};
use ringrelay::server::Server;
use set_on_drop::SetOnDrop;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on any single wait for something the relay should do promptly.
pub const WAIT: Duration = Duration::from_secs(5);

/// Bound on a wait that includes starting a process of the real binary (its first line, its
/// exit) or a cluster converging (links, replicated rows): on a loaded two-core machine, with
/// a release build running beside the tests, these take far longer than [`WAIT`] at times.
pub const SLOW_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// In-process relays and clients
// ---------------------------------------------------------------------------------------------

/// `N` distinct free loopback ports: every listener is held until all are chosen (one dropped
/// at once lets the kernel hand the same port out again, which made two of a test's nodes
/// share one).
pub fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap())
}

/// Two workers on an ephemeral loopback port, every other setting at its default.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..Config::default()
    }
}

pub fn start(cfg: Config) -> Server {
    Server::start(cfg).expect("relay starts")
}

pub fn start_default() -> Server {
    start(config())
}

/// Client options for tests: a blocked write fails after [`WAIT`] instead of hanging.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        write_timeout: Some(WAIT),
        ..ClientOptions::default()
    }
}

/// Connects and registers `id`; once this returns the id is in the location table (the relay
/// registers the id in the same step that queues WELCOME).
pub fn connect(addr: SocketAddr, id: &str) -> Client {
    Client::connect_with(addr, id.as_bytes(), None, client_options())
        .unwrap_or_else(|e| panic!("client {id} cannot connect: {e}"))
}

/// The next event within [`WAIT`]; panics on timeout.
pub fn next_event(c: &mut Client) -> Event {
    next_event_within(c, WAIT)
}

pub fn next_event_within(c: &mut Client, wait: Duration) -> Event {
    let who = String::from_utf8_lossy(c.client_id()).into_owned();
    match c.recv(wait) {
        Ok(Some(e)) => e,
        Ok(None) => panic!("{who}: no event within {wait:?}"),
        Err(e) => panic!("{who}: recv failed: {e}"),
    }
}

/// A delivered message as `(sender, topic, payload)`; panics on any other event.
pub fn next_message(c: &mut Client) -> (Vec<u8>, Option<Vec<u8>>, Vec<u8>) {
    match next_event(c) {
        Event::Message {
            sender,
            topic,
            payload,
            reply: None,
            headers: None,
        } => (sender, topic, payload),
        other => panic!(
            "{}: expected a message, got {other:?}",
            String::from_utf8_lossy(c.client_id())
        ),
    }
}

static ALONE: Mutex<()> = Mutex::new(());

/// Held by a test that measures time (a good client's round trip during an attack): such
/// tests of one binary run one at a time, so they do not measure each other's CPU use on a
/// two-core machine.
pub fn alone() -> std::sync::MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bound on a good client's slowest round trip while another client attacks the same worker,
/// in a test: a liveness bound (the good pair is never starved, say by a worker stuck on the
/// attacker's frames), twenty times the design figure so that a loaded CI host does not fail
/// it. The design figure, 50 ms, is a speed target and lives in the benchmark
/// `cargo bench -p ringrelay-cli --bench attack_round_trip`.
pub const GOOD_ROUND_TRIP_STALL_MAX: Duration = Duration::from_secs(1);

/// The good pair's slowest round trip during an attack stayed under
/// [`GOOD_ROUND_TRIP_STALL_MAX`].
pub fn assert_good_pair_not_starved(worst: Duration) {
    assert!(
        worst < GOOD_ROUND_TRIP_STALL_MAX,
        "good round trip took {worst:?}"
    );
}

/// Runs `attack` while the good pair `a`, `b` round-trips without pause (at least 10 trips);
/// returns the slowest round trip.
pub fn worst_round_trip_during(a: &mut Client, b: &mut Client, attack: impl FnOnce()) -> Duration {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let watchdog = s.spawn(|| {
            let mut worst = Duration::ZERO;
            let mut trips = 0u32;
            while !done.load(Ordering::Relaxed) || trips < 10 {
                let t = Instant::now();
                assert_round_trip(a, b);
                worst = worst.max(t.elapsed());
                trips += 1;
            }
            worst
        });
        {
            // Set even when the attack panics, so that the watchdog stops and the panic is
            // reported instead of the scope waiting for the watchdog for ever.
            let _stop_watchdog = SetOnDrop(&done);
            attack();
        }
        watchdog.join().expect("good pair thread")
    })
}

/// [`worst_round_trip_during`] with a fresh good pair on the relay at `addr`.
pub fn worst_round_trip_at(addr: SocketAddr, attack: impl FnOnce()) -> Duration {
    let mut a = connect(addr, "good-a");
    let mut b = connect(addr, "good-b");
    worst_round_trip_during(&mut a, &mut b, attack)
}

// ---------------------------------------------------------------------------------------------
// Floods: one client exceeding a per-connection limit (cli/tests/limits.rs, the attack benchmark)
// ---------------------------------------------------------------------------------------------

/// Requests in one flood: four times the default per-connection limit.
pub const FLOOD_FRAMES: usize = 40_000;

/// Writes `frames` on a thread of its own, without stopping at an error (the relay may close
/// the connection, and reset it with our bytes unread, before all of them are written), while
/// `read` takes the relay's answers: the relay answers each WATCH, and stops reading a
/// connection that does not read its answers.
fn flood_while(raw: &mut Raw, frames: &[u8], read: impl FnOnce(&mut Raw)) {
    let mut writer = raw.stream.try_clone().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = writer.write_all(frames);
        });
        read(raw);
    });
}

fn flood(frame_of: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    (0..FLOOD_FRAMES)
        .flat_map(|i| frame_of(format!("name-{i}").as_bytes()))
        .collect()
}

/// SUBSCRIBE to [`FLOOD_FRAMES`] distinct topics, encoded back to back.
pub fn subscribe_flood_frames() -> Vec<u8> {
    flood(|t| {
        encoded(Frame::Subscribe {
            topic: t,
            group: b"",
        })
    })
}

/// WATCH of [`FLOOD_FRAMES`] distinct ids, encoded back to back.
pub fn watch_flood_frames() -> Vec<u8> {
    flood(|id| encoded(Frame::Watch { client_id: id }))
}

/// A flooder registered at `addr` writes `frames` and is refused at the limit named `setting`
/// (one ERROR, then CLOSE), while a fresh good pair round-trips; returns the pair's slowest
/// round trip.
pub fn worst_round_trip_during_flood(addr: SocketAddr, frames: &[u8], setting: &str) -> Duration {
    let mut raw = Raw::connect(addr);
    raw.handshake("flooder");
    worst_round_trip_at(addr, || {
        flood_while(&mut raw, frames, |raw| {
            expect_refused_then_closed(raw, setting);
        });
    })
}

/// The attacker gets one ERROR LIMIT_EXCEEDED naming `setting`, then CLOSE LIMIT_EXCEEDED;
/// returns how many answers (PRESENCE) came before them. Bounded by [`SLOW_WAIT`] overall
/// (thousands of answers may come first), so that a relay that keeps answering without ever
/// refusing fails the test instead of hanging it.
pub fn expect_refused_then_closed(raw: &mut Raw, setting: &str) -> usize {
    let deadline = Instant::now() + SLOW_WAIT;
    let mut errors = 0;
    let mut answers = 0;
    loop {
        match raw.next_frame_by(deadline) {
            Ok(Owned::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::LIMIT_EXCEEDED);
                errors += 1;
            }
            Ok(Owned::Close { reason, text }) => {
                assert_eq!(reason, CloseReason::LIMIT_EXCEEDED);
                assert!(
                    text.contains(setting),
                    "close text {text:?} names {setting}"
                );
                break;
            }
            // The present state each accepted WATCH is answered with.
            Ok(Owned::Presence { .. }) => answers += 1,
            Ok(Owned::Ping(_)) => {}
            other => panic!("expected ERROR then CLOSE after {answers} answers, got {other:?}"),
        }
    }
    assert_eq!(errors, 1, "one ERROR before the CLOSE");
    answers
}

/// A thousand unauthenticated sockets at `addr` each announce a 1 MiB first frame (a HELLO
/// header and 1 KiB of its body); each is closed FRAME_TOO_LARGE from the header, with a text
/// naming the bound before HELLO.
pub fn huge_first_frames_are_closed_from_the_header(addr: SocketAddr) {
    let announced: u32 = 1 << 20;
    let mut first = header(announced - 6, FrameKind::Hello as u8, 0);
    first.extend_from_slice(&[0u8; 1024]);
    let mut socks: Vec<Raw> = (0..1000).map(|_| Raw::connect(addr)).collect();
    for s in &mut socks {
        let _ = s.stream.write_all(&first);
    }
    for s in &mut socks {
        let (reason, text) = s.expect_close();
        assert_eq!(reason, CloseReason::FRAME_TOO_LARGE, "{text}");
        assert!(
            text.contains(&HELLO_FRAME_BYTES_MAX.to_string()),
            "the text names the bound before HELLO: {text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Memory: the relay's resident memory against its memory budget
// ---------------------------------------------------------------------------------------------

/// A `kB` field of /proc/`pid`/status (`VmRSS:`, `VmHWM:` for the peak), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

/// The memory budget, in KiB (rounded up from its printed figure), of the relay that
/// `ringrelay serve <args>` starts: its `--print-budget` line.
pub fn printed_budget_kib(args: &[&str]) -> u64 {
    let mut p = Proc::spawn(&[&["serve"], args, &["--print-budget"]].concat());
    let (status, out) = p.wait_exit();
    assert!(status.success(), "{}", p.stderr());
    let first = out.first().expect("a budget line");
    let figure = first
        .strip_prefix("memory budget: ")
        .and_then(|rest| rest.split(" with ").next())
        .unwrap_or_else(|| panic!("unexpected budget line {first:?}"));
    let (value, unit) = figure.split_once(' ').expect("value and unit");
    let value: f64 = value.parse().expect("a number");
    let kib = match unit {
        "KiB" => 1.0,
        "MiB" => 1024.0,
        "GiB" => 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0,
        other => panic!("unit {other}"),
    };
    ((value + 0.1) * kib) as u64
}

/// The peak resident memory of the relay process `pid`, started as `serve <args>`, is within
/// the budget `serve <args> --print-budget` states.
pub fn assert_peak_within_printed_budget(pid: u32, args: &[&str]) {
    let peak = status_kib(pid, "VmHWM:");
    let budget = printed_budget_kib(args);
    assert!(
        peak <= budget,
        "peak {peak} KiB over the budget {budget} KiB"
    );
}

/// For a relay running inside this test process (`Server::start(cfg)`): the whole process's
/// peak resident memory (the relay's and the test's own) is within the budget the relay plans
/// for `cfg` on this host, the figure `serve` logs and enforces.
pub fn assert_process_within_budget(cfg: &Config) {
    let plan = ringrelay::server::MemoryPlan::for_host(cfg).expect("the settings fit");
    let budget_kib = plan.budget().total_bytes() / 1024;
    let peak = status_kib(std::process::id(), "VmHWM:");
    assert!(
        peak <= budget_kib,
        "peak {peak} KiB over the budget {budget_kib} KiB"
    );
}

static MARKERS: AtomicU64 = AtomicU64::new(0);

/// Sends a unique marker to the client's own id and waits for it to come back. Frames from one
/// connection are handled in order, so every request this client made before (SUBSCRIBE, WATCH,
/// UNSUBSCRIBE, PUBLISH, ...) has been applied to the relay's tables once the marker returns.
/// Returns the events that arrived before the marker.
pub fn sync(c: &mut Client) -> Vec<Event> {
    let marker = format!("__marker-{}", MARKERS.fetch_add(1, Ordering::Relaxed));
    let me = c.client_id().to_vec();
    c.send(&me, marker.as_bytes()).unwrap();
    c.flush().unwrap();
    // One deadline for the whole wait, not one per event: a stream of other events (PINGs,
    // errors) would otherwise keep it going for ever instead of failing the test.
    let deadline = Instant::now() + WAIT;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{}: sync marker did not come back within {WAIT:?} ({} events before it)",
            String::from_utf8_lossy(&me),
            before.len()
        );
        match next_event_within(c, left) {
            Event::Message {
                sender,
                topic: None,
                payload,
                reply: None,
                headers: None,
            } if sender == me && payload == marker.as_bytes() => return before,
            other => before.push(other),
        }
    }
}

/// Polls `cond` (a counter read, for example) until it holds; panics after [`WAIT`].
/// Used only for relay counters, which have no event to wait on.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    wait_until_within(what, WAIT, cond)
}

/// [`wait_until`] with its own bound (for example [`SLOW_WAIT`] for a cluster converging).
pub fn wait_until_within(what: &str, bound: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Round trip through the relay between two clients, both ways; panics if it fails.
pub fn assert_round_trip(a: &mut Client, b: &mut Client) {
    one_way(a, b);
    one_way(b, a);
}

/// `from` sends a unique payload to `to`, which must receive it next.
pub fn one_way(from: &mut Client, to: &mut Client) {
    let payload = format!("rt-{}", MARKERS.fetch_add(1, Ordering::Relaxed));
    let to_id = to.client_id().to_vec();
    from.send(&to_id, payload.as_bytes()).unwrap();
    from.flush().unwrap();
    let (sender, topic, got) = next_message(to);
    assert_eq!(sender, from.client_id());
    assert_eq!(topic, None);
    assert_eq!(got, payload.as_bytes());
}

/// `GET path` over HTTP/1.0 (a relay's metrics endpoint); returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with_auth(addr, path, None);
    (status, body)
}

/// `GET path` with an `Authorization` header when given; returns (status, head, body).
pub fn http_get_with_auth(
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, WAIT).expect("metrics endpoint connects");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("response read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    (status, head.to_string(), body.to_string())
}

// ---------------------------------------------------------------------------------------------
// Raw connections
// ---------------------------------------------------------------------------------------------

/// A frame received on a raw connection, copied out of the read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owned {
    Welcome {
        version: u16,
        heartbeat_interval_ms: u32,
        max_frame_bytes: u32,
    },
    Deliver {
        sender: Vec<u8>,
        topic: Vec<u8>,
        payload: Vec<u8>,
    },
    Presence {
        client_id: Vec<u8>,
        online: bool,
    },
    Ping(u64),
    Pong(u64),
    Error {
        code: ErrorCode,
        subject: Vec<u8>,
    },
    Close {
        reason: CloseReason,
        text: String,
    },
    /// A client-to-relay kind (never sent by the relay).
    Other(FrameKind),
}

impl Owned {
    fn from_frame(f: Frame<'_>) -> Owned {
        match f {
            Frame::Welcome {
                version,
                heartbeat_interval_ms,
                max_frame_bytes,
            } => Owned::Welcome {
                version,
                heartbeat_interval_ms,
                max_frame_bytes,
            },
            Frame::Deliver {
                sender,
                topic,
                payload,
            } => Owned::Deliver {
                sender: sender.to_vec(),
                topic: topic.to_vec(),
                payload: payload.to_vec(),
            },
            Frame::Presence { client_id, online } => Owned::Presence {
                client_id: client_id.to_vec(),
                online,
            },
            Frame::Ping { nonce } => Owned::Ping(nonce),
            Frame::Pong { nonce } => Owned::Pong(nonce),
            Frame::Error { code, subject, .. } => Owned::Error {
                code,
                subject: subject.to_vec(),
            },
            Frame::Close { reason, text } => Owned::Close {
                reason,
                text: String::from_utf8_lossy(text).into_owned(),
            },
            other => Owned::Other(other.kind()),
        }
    }
}

/// What ended a raw connection's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Orderly end of stream (FIN).
    Eof,
    /// The relay reset the connection (it closed with our bytes unread).
    Reset,
    /// The stream ended inside a frame: the relay gave up on a consumer that did not read
    /// within `close_linger_ms`, with part of a frame in the kernel's buffers (only
    /// [`Raw::next_frame_or_cut`] returns it).
    Cut,
}

/// A TCP connection to the relay driven frame by frame with the crate's codec.
pub struct Raw {
    pub stream: TcpStream,
    reader: FrameReader,
}

/// Encodes one frame to bytes.
pub fn encoded(frame: Frame<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out).expect("test frame encodes");
    out
}

/// A frame header: `body_len`, `kind`, `flags`.
pub fn header(body_len: u32, kind: u8, flags: u8) -> Vec<u8> {
    let mut h = body_len.to_le_bytes().to_vec();
    h.push(kind);
    h.push(flags);
    debug_assert_eq!(h.len(), HEADER_LEN);
    h
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("raw connect");
        Raw::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        Raw {
            stream,
            reader: FrameReader::new(2 << 20),
        }
    }

    /// Decodes what the relay sends with this frame bound (a client enforcing WELCOME's
    /// `max_frame_bytes`): a larger frame fails the test as bytes that do not decode.
    pub fn enforce_max_frame_bytes(&mut self, max_frame_bytes: usize) {
        assert_eq!(self.reader.buffered(), 0, "set the bound between frames");
        self.reader = FrameReader::new(max_frame_bytes);
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    pub fn write_frame(&mut self, frame: Frame<'_>) {
        let bytes = encoded(frame);
        self.write(&bytes);
    }

    /// Sends HELLO for `id` (no token) without waiting.
    pub fn send_hello(&mut self, id: &str) {
        self.write_frame(hello(id.as_bytes(), b""));
    }

    /// HELLO, then waits for WELCOME (PINGs are skipped unanswered). One deadline for the
    /// whole wait, so that PINGs without a WELCOME fail the test instead of hanging it.
    pub fn handshake(&mut self, id: &str) {
        self.send_hello(id);
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_frame_by(deadline) {
                Ok(Owned::Welcome { version, .. }) => {
                    assert_eq!(version, PROTOCOL_VERSION);
                    return;
                }
                Ok(Owned::Ping(_)) => {}
                other => panic!("raw {id}: expected WELCOME, got {other:?}"),
            }
        }
    }

    /// HELLO of protocol version 1 (a client that predates acknowledged delivery), then waits
    /// for its WELCOME, which must answer version 1; bounded like [`Self::handshake`].
    pub fn handshake_v1(&mut self, id: &str) {
        self.write_frame(Frame::Hello {
            version: 1,
            client_id: id.as_bytes(),
            token: b"",
        });
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_frame_by(deadline) {
                Ok(Owned::Welcome { version, .. }) => {
                    assert_eq!(version, 1);
                    return;
                }
                Ok(Owned::Ping(_)) => {}
                other => panic!("raw {id}: expected WELCOME, got {other:?}"),
            }
        }
    }

    /// The next frame within [`WAIT`]; `Err` when the stream ended first. Panics on timeout or
    /// on bytes that do not decode.
    pub fn next_frame(&mut self) -> Result<Owned, End> {
        self.next_frame_by(Instant::now() + WAIT)
    }

    pub fn next_frame_by(&mut self, deadline: Instant) -> Result<Owned, End> {
        let next = self.next_frame_or_cut(deadline);
        assert_ne!(next, Err(End::Cut), "stream ended inside a frame");
        next
    }

    /// [`Self::next_frame_by`] for a consumer the relay may have given up on: a stream that
    /// ends inside a frame is [`End::Cut`].
    pub fn next_frame_or_cut(&mut self, deadline: Instant) -> Result<Owned, End> {
        let next = self.frame_until(deadline);
        next.map(|f| f.expect("raw connection: no frame before the deadline"))
    }

    /// The next frame if one arrives before `deadline` (`Ok(None)`: none did); panics when
    /// the stream ends inside a frame.
    pub fn frame_if_any_by(&mut self, deadline: Instant) -> Result<Option<Owned>, End> {
        let next = self.frame_until(deadline);
        assert_ne!(next, Err(End::Cut), "stream ended inside a frame");
        next
    }

    fn frame_until(&mut self, deadline: Instant) -> Result<Option<Owned>, End> {
        loop {
            match self.reader.next_frame() {
                Ok(Some(f)) => return Ok(Some(Owned::from_frame(f))),
                Ok(None) => {}
                Err(e) => panic!("relay sent bytes that do not decode: {e}"),
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(wait)).unwrap();
            match self.reader.fill_from(&mut self.stream, 64 * 1024) {
                Ok(0) if self.reader.buffered() > 0 => return Err(End::Cut),
                Ok(0) => return Err(End::Eof),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Err(End::Reset)
                }
                Err(e) => panic!("raw read failed: {e}"),
            }
        }
    }

    /// Reads frames (skipping PING, DELIVER, ERROR and the like) until CLOSE; returns its reason
    /// and text. Panics if the stream ends first or nothing arrives within `WAIT`.
    pub fn expect_close(&mut self) -> (CloseReason, String) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_frame_by(deadline) {
                Ok(Owned::Close { reason, text }) => return (reason, text),
                Ok(_) => {}
                Err(end) => panic!("stream ended ({end:?}) without a CLOSE frame"),
            }
        }
    }

    /// After a CLOSE: the relay must end the connection (FIN, or a reset because it discarded
    /// our unread bytes) within [`WAIT`] and send nothing more.
    pub fn expect_end(&mut self) -> End {
        match self.next_frame() {
            Err(end) => end,
            Ok(f) => panic!("frame after CLOSE: {f:?}"),
        }
    }

    pub fn shutdown_write(&self) {
        self.stream
            .shutdown(Shutdown::Write)
            .expect("shutdown(Write)");
    }
}

/// Small deterministic generator (xorshift64*) for seeded garbage.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes of the real binary
// ---------------------------------------------------------------------------------------------

/// A running `ringrelay` process with its stdout lines on a channel and its stderr collected.
/// Dropping it kills the process (SIGTERM, then SIGKILL if it lingers) and reaps it.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    stdout_open: bool,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringrelay")
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        Proc::spawn_command(Command::new(bin()), args, None)
    }

    /// As [`Proc::spawn`], with the environment variables `env` set and the relay's secret
    /// variables (`RINGRELAY_TOKEN`, ...) of the test's own environment removed.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command = Command::new(bin());
        for secret in [
            "RINGRELAY_TOKEN",
            "RINGRELAY_CLUSTER_SECRET",
            "RINGRELAY_METRICS_TOKEN",
        ] {
            command.env_remove(secret);
        }
        command.envs(env.iter().copied());
        Proc::spawn_command(command, args, None)
    }

    /// As [`Proc::spawn`], with `input` as standard input (then closed).
    pub fn spawn_with_stdin(args: &[&str], input: &[u8]) -> Proc {
        Proc::spawn_command(Command::new(bin()), args, Some(input))
    }

    /// `program ARGS...` with `{bin}` in `args` standing for the binary: for running it under
    /// a wrapper such as `prlimit --nofile=300:300 -- {bin} serve ...`.
    pub fn spawn_under(program: &str, args: &[&str]) -> Proc {
        let args: Vec<&str> = args
            .iter()
            .map(|&a| if a == "{bin}" { bin() } else { a })
            .collect();
        Proc::spawn_command(Command::new(program), &args, None)
    }

    fn spawn_command(mut command: Command, args: &[&str], input: Option<&[u8]>) -> Proc {
        let stdin = if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = command
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ringrelay {args:?}: {e}"));
        if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
            // Small inputs: the pipe buffer holds them, so this never waits on the child.
            pipe.write_all(input).expect("write the child's stdin");
        }
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut pipe = stderr_pipe;
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Proc {
            name: args.join(" "),
            child,
            lines,
            stdout_open: true,
            stderr,
            stderr_thread: Some(stderr_thread),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line within `wait`; `None` if stdout closed or the time passed.
    pub fn next_line_within(&mut self, wait: Duration) -> Option<String> {
        if !self.stdout_open {
            return None;
        }
        match self.lines.recv_timeout(wait) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.stdout_open = false;
                None
            }
        }
    }

    /// The next stdout line; panics (with stderr) if none comes within [`SLOW_WAIT`] (the
    /// first line of a process comes after its start-up).
    pub fn next_line(&mut self) -> String {
        match self.next_line_within(SLOW_WAIT) {
            Some(l) => l,
            None => panic!(
                "`ringrelay {}`: no stdout line within {SLOW_WAIT:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Waits (bounded by `wait`) for the process to exit; returns its status and every stdout
    /// line it printed that was not read yet. Exit is observed as the end of its stdout.
    pub fn wait_exit_within(&mut self, wait: Duration) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + wait;
        let mut rest = Vec::new();
        while self.stdout_open {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => rest.push(l),
                Err(RecvTimeoutError::Disconnected) => self.stdout_open = false,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`ringrelay {}` did not exit within {wait:?}; stdout so far {rest:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
        // Stdout is closed: the process has exited (or is about to); reap it, still bounded.
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(t) = self.stderr_thread.take() {
                    let _ = t.join();
                }
                return (status, rest);
            }
            assert!(
                Instant::now() < deadline,
                "`ringrelay {}` closed stdout but did not exit",
                self.name
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// [`Proc::wait_exit_within`] [`SLOW_WAIT`]: the process may still be starting up.
    pub fn wait_exit(&mut self) -> (ExitStatus, Vec<String>) {
        self.wait_exit_within(SLOW_WAIT)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child; no memory effects.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `ringrelay serve --listen 127.0.0.1:0 ...extra`, returning the process and the address from
/// its `listening ADDR` line.
pub fn serve(extra: &[&str]) -> (Proc, SocketAddr) {
    serve_with_env(extra, &[])
}

/// As [`serve`], with the environment variables `env` ([`Proc::spawn_with_env`]).
pub fn serve_with_env(extra: &[&str], env: &[(&str, &str)]) -> (Proc, SocketAddr) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut p = Proc::spawn_with_env(&args, env);
    let line = p.next_line();
    let addr = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line from serve: {line:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
    (p, addr)
}
