//! Handshake threads: they accept on a TLS listener, run each connection's TLS handshake
//! (the sans-IO [`Handshake`], over a nonblocking socket, many at once under `poll(2)`), and
//! hand the connection with its session to a worker (`Command::AdoptTls`). A handshake costs
//! a signature and a key exchange, about a millisecond of CPU: on a worker it would stall
//! every other connection of that worker, so workers never run one.
//!
//! Bounds: each thread runs at most `tls_handshakes_per_thread_max` handshakes; at that
//! number it stops accepting and the kernel's listen backlog holds the rest. Each handshake
//! must finish within `handshake_timeout_ms` (as HELLO must), so silent sockets cannot hold
//! the places. A failure is logged (debug) with its reason and counted by reason.

use super::nats_info::{info_line, nats_nonce, Greeting};
use super::ClusterHost;
use super::Shared;
use crate::cluster::lane::{Command, TlsGreeting};
use crate::tls::{Established, Failure, Handshake, Progress};
use rustls::ServerConfig;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a thread with nothing to do looks at the shutdown flag.
const IDLE_POLL: Duration = Duration::from_millis(100);

/// The labels of [`crate::tls::Failure`], in the order [`TlsStats::failures`] counts them.
pub const FAILURE_LABELS: [&str; 14] = [
    "no_client_cert",
    "unknown_ca",
    "expired",
    "bad_signature",
    "wrong_name",
    "bad_certificate",
    "rejected_by_peer",
    "incompatible",
    "not_tls",
    "timeout",
    "closed",
    "too_large",
    "protocol",
    "other",
];

/// Handshake counts of a node (every TLS listener together).
#[derive(Debug, Default)]
pub struct TlsStats {
    pub handshakes: AtomicU64,
    /// By [`FAILURE_LABELS`].
    pub failures: [AtomicU64; FAILURE_LABELS.len()],
    /// Completed handshakes whose connection no worker could take (its command queue full).
    pub handover_drops: AtomicU64,
}

impl TlsStats {
    fn failed(&self, failure: &Failure) {
        let index = FAILURE_LABELS
            .iter()
            .position(|&l| l == failure.label)
            .unwrap_or(FAILURE_LABELS.len() - 1);
        self.failures[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// What a TLS listener's connections speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProtocol {
    Native,
    /// NATS: INFO in clear, then the handshake (`handshake_first`: the handshake first, then
    /// INFO over TLS, for clients set up that way).
    Nats {
        handshake_first: bool,
    },
}

/// NATS client ids of INFOs written by handshake threads: the top 16 bits are a worker
/// index no node has, so they never equal a worker's (`start_nats`).
const POOL_CLIENT_ID_BASE: u64 = 0xffff << 48;

/// What one handshake thread serves.
pub struct Acceptor {
    pub listener: TcpListener,
    pub bound: SocketAddr,
    pub protocol: TlsProtocol,
    pub handshakes_max: usize,
    pub timeout: Duration,
}

struct InProgress {
    sock: TcpStream,
    peer: SocketAddr,
    greeting: TlsGreeting,
    handshake: Handshake,
    deadline: Instant,
    /// The handshake is complete; what it still has to send is being sent.
    done: bool,
}

/// Runs one handshake thread until the node stops.
pub fn run(shared: Arc<Shared>, acceptor: Acceptor) {
    let config = || match shared.tls_config.read() {
        Ok(config) => config.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let mut live: Vec<InProgress> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::new();
    let mut chunk = vec![0u8; 16 << 10];
    while !shared.shutdown.load(Ordering::Acquire) {
        let accepting = live.len() < acceptor.handshakes_max;
        fds.clear();
        fds.push(pollfd(acceptor.listener.as_raw_fd(), accepting, false));
        for h in &live {
            let write = !h.handshake.outgoing().is_empty();
            fds.push(pollfd(h.sock.as_raw_fd(), !h.done, write));
        }
        let now = Instant::now();
        let wait = live
            .iter()
            .map(|h| h.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(IDLE_POLL)
            .min(IDLE_POLL);
        // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfd entries, each an
        // fd this thread owns for the call; poll writes only their `revents`.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis().max(1) as libc::c_int,
            )
        };
        if ready < 0 {
            continue;
        }
        let now = Instant::now();
        // Serve the sockets first (their indexes in `fds` are `live`'s plus one).
        let mut i = 0;
        while i < live.len() {
            let events = fds.get(i + 1).map_or(0, |f| f.revents);
            let outcome = step(&mut live[i], events, now, &mut chunk);
            match outcome {
                Step::Wait => i += 1,
                Step::Finished | Step::Failed(_) => {
                    let h = live.swap_remove(i);
                    // Keep `fds` aligned with `live` for the rest of this round.
                    fds.swap_remove(i + 1);
                    match outcome {
                        Step::Finished => hand_over(&shared, h),
                        Step::Failed(failure) => {
                            if failure.label == "not_tls" {
                                tell_not_tls(&acceptor, &h);
                            }
                            shared.tls_stats.failed(&failure);
                            tracing::debug!(peer = %h.peer, reason = failure.label, "TLS handshake failed: {failure}");
                        }
                        Step::Wait => {}
                    }
                }
            }
        }
        if accepting && fds[0].revents != 0 {
            if let Some(config) = config() {
                accept_ready(&shared, &acceptor, &config, &mut live, now);
            }
        }
    }
}

fn pollfd(fd: i32, read: bool, write: bool) -> libc::pollfd {
    let mut events = 0;
    if read {
        events |= libc::POLLIN;
    }
    if write {
        events |= libc::POLLOUT;
    }
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// A NATS client that wrote in clear after the INFO that asked for TLS is told so, as
/// nats-server tells it (best effort: the socket is closed next).
fn tell_not_tls(acceptor: &Acceptor, h: &InProgress) {
    if let TlsProtocol::Nats {
        handshake_first: false,
    } = acceptor.protocol
    {
        let _ = (&h.sock).write(b"-ERR 'Secure Connection - TLS Required'\r\n");
    }
}

/// The greeting of a new connection: for NATS with INFO first, the INFO is written now, in
/// clear (a fresh socket's send buffer always takes its few hundred bytes; if it does not,
/// `None`: the connection is dropped).
fn greet(shared: &Shared, acceptor: &Acceptor, sock: &TcpStream) -> Option<TlsGreeting> {
    static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(0);
    match acceptor.protocol {
        TlsProtocol::Native => Some(TlsGreeting::Native),
        TlsProtocol::Nats {
            handshake_first: true,
        } => Some(TlsGreeting::NatsInfoDue {
            bound: Some(acceptor.bound),
        }),
        TlsProtocol::Nats {
            handshake_first: false,
        } => {
            let nonce = nats_nonce(shared);
            let greeting = Greeting {
                bound: Some(acceptor.bound),
                client_id: POOL_CLIENT_ID_BASE
                    | (NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed) & ((1 << 48) - 1)),
                nonce: nonce.as_deref(),
                tls_required: true,
            };
            let line = info_line(shared, &greeting);
            match (&*sock).write(&line) {
                Ok(n) if n == line.len() => Some(TlsGreeting::NatsInfoSent { nonce }),
                _ => None,
            }
        }
    }
}

/// Accepts what the listener holds, up to the bound.
fn accept_ready(
    shared: &Shared,
    acceptor: &Acceptor,
    config: &Arc<ServerConfig>,
    live: &mut Vec<InProgress>,
    now: Instant,
) {
    while live.len() < acceptor.handshakes_max {
        let (sock, peer) = match acceptor.listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) => {
                tracing::warn!("TLS listener: accept failed: {e}");
                return;
            }
        };
        if sock.set_nonblocking(true).is_err() {
            continue;
        }
        let _ = sock.set_nodelay(true);
        let Some(greeting) = greet(shared, acceptor, &sock) else {
            continue;
        };
        match Handshake::server(Arc::clone(config)) {
            Ok(handshake) => live.push(InProgress {
                sock,
                peer,
                greeting,
                handshake,
                deadline: now + acceptor.timeout,
                done: false,
            }),
            Err(failure) => tracing::warn!("TLS: cannot start a handshake: {failure}"),
        }
    }
}

enum Step {
    Wait,
    Finished,
    Failed(Failure),
}

/// Moves one handshake on as far as its socket allows.
fn step(h: &mut InProgress, events: i16, now: Instant, chunk: &mut [u8]) -> Step {
    // Read and advance in turn, and stop reading once the handshake is done: what the client
    // sends after it stays in the socket for the worker (the handshake buffers at most
    // HANDSHAKE_BYTES_MAX).
    while events & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 && !h.done {
        match h.sock.read(chunk) {
            Ok(0) => {
                return Step::Failed(Failure::new(
                    "closed",
                    "the peer closed during the TLS handshake",
                ))
            }
            Ok(n) => {
                if let Err(failure) = h.handshake.receive(&chunk[..n]) {
                    return fail(h, failure);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Step::Failed(Failure::new("closed", e.to_string())),
        }
        match h.handshake.advance() {
            Ok(Progress::Done) => h.done = true,
            Ok(Progress::NeedBytes) => {}
            Err(failure) => return fail(h, failure),
        }
        // Send each flight as it is made: the peer's next one waits on it.
        if let Err(e) = send_outgoing(h) {
            return Step::Failed(Failure::new("closed", e.to_string()));
        }
    }
    if let Err(e) = send_outgoing(h) {
        return Step::Failed(Failure::new("closed", e.to_string()));
    }
    if h.done && h.handshake.outgoing().is_empty() {
        return Step::Finished;
    }
    if now >= h.deadline {
        return Step::Failed(Failure::new(
            "timeout",
            "no TLS handshake within handshake_timeout_ms",
        ));
    }
    Step::Wait
}

/// A failure: the alert rustls queued is sent if the socket takes it at once.
fn fail(h: &mut InProgress, failure: Failure) -> Step {
    let _ = send_outgoing(h);
    Step::Failed(failure)
}

/// Writes what the handshake has to send, as far as the socket takes it now.
fn send_outgoing(h: &mut InProgress) -> std::io::Result<()> {
    while !h.handshake.outgoing().is_empty() {
        match h.sock.write(h.handshake.outgoing()) {
            Ok(n) => h.handshake.consume_outgoing(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Gives a connection whose handshake finished to a worker (round robin).
fn hand_over(shared: &Shared, h: InProgress) {
    let established: Established = match h.handshake.finish() {
        Ok(established) => established,
        Err(failure) => {
            shared.tls_stats.failed(&failure);
            return;
        }
    };
    shared.tls_stats.handshakes.fetch_add(1, Ordering::Relaxed);
    // The worker's ring serves it as it serves the sockets it accepts itself: blocking.
    if h.sock.set_nonblocking(false).is_err() {
        return;
    }
    let workers = shared.lane.commands.len();
    let worker = shared.next_local_worker.fetch_add(1, Ordering::Relaxed) % workers;
    let command = Command::AdoptTls {
        fd: OwnedFd::from(h.sock),
        peer: Some(h.peer),
        greeting: h.greeting,
        tls: Box::new(established),
    };
    if shared.lane.commands[worker].push(command).is_err() {
        // Dropping the command closes the socket.
        shared
            .tls_stats
            .handover_drops
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("TLS: worker {worker}'s command queue is full; connection dropped");
        return;
    }
    shared.wake_worker(worker);
}

/// A TLS listener and its handshake threads.
pub struct TlsListener {
    listener: TcpListener,
    addr: SocketAddr,
    protocol: TlsProtocol,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl TlsListener {
    /// Reads the TLS files and binds `tls_listen` and `nats_tls_listen` (those set): before
    /// the workers start, so a bad file or a taken port fails the start at once. Returns the
    /// listeners' configuration too (kept in `Shared`, where a reload replaces it).
    pub fn bind_all(
        cfg: &crate::config::Config,
        congestion: &crate::tcp_congestion::TcpCongestion,
    ) -> Result<(Vec<TlsListener>, Option<Arc<ServerConfig>>), super::ServeError> {
        let Some(config) = cfg.tls_server_config()? else {
            return Ok((Vec::new(), None));
        };
        let wanted = [
            ("tls_listen", &cfg.tls_listen, TlsProtocol::Native),
            (
                "nats_tls_listen",
                &cfg.nats_tls_listen,
                TlsProtocol::Nats {
                    handshake_first: cfg.nats_tls_handshake_first,
                },
            ),
        ];
        let mut listeners = Vec::new();
        for (setting, endpoint, protocol) in wanted {
            if let Some(endpoint) = endpoint {
                listeners.push(TlsListener::bind(setting, endpoint, protocol, congestion)?);
            }
        }
        Ok((listeners, Some(config)))
    }

    fn bind(
        setting: &'static str,
        endpoint: &crate::endpoint::Endpoint,
        protocol: TlsProtocol,
        congestion: &crate::tcp_congestion::TcpCongestion,
    ) -> Result<TlsListener, super::ServeError> {
        let addr = super::resolve::resolve(setting, endpoint)?;
        let (mut sockets, addr) = super::listeners::bind_listeners(addr, 1, congestion)?;
        let listener: TcpListener =
            sockets
                .pop()
                .map(Into::into)
                .ok_or(super::ServeError::Config(
                    crate::config::ConfigError::Invalid("a TLS listener bound no socket"),
                ))?;
        listener
            .set_nonblocking(true)
            .map_err(|source| super::ServeError::Listen { addr, source })?;
        Ok(TlsListener {
            listener,
            addr,
            protocol,
            threads: Vec::new(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn protocol(&self) -> TlsProtocol {
        self.protocol
    }

    /// Starts the handshake threads (once the workers accept).
    pub fn spawn(&mut self, shared: &Arc<Shared>) -> Result<(), super::ServeError> {
        use crate::spawn::SpawnLogged;
        let cfg = &shared.config;
        for i in 0..cfg.tls_handshake_threads {
            let spawn_error = |source| super::ServeError::Spawn {
                what: "TLS handshake",
                source,
            };
            let acceptor = Acceptor {
                listener: self.listener.try_clone().map_err(spawn_error)?,
                bound: self.addr,
                protocol: self.protocol,
                handshakes_max: cfg.tls_handshakes_per_thread_max,
                timeout: Duration::from_millis(cfg.handshake_timeout_ms),
            };
            let shared = Arc::clone(shared);
            let name = match self.protocol {
                TlsProtocol::Native => format!("ringrelay-tls-{i}"),
                TlsProtocol::Nats { .. } => format!("ringrelay-nats-tls-{i}"),
            };
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn_logged(move || run(shared, acceptor))
                .map_err(spawn_error)?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// Joins the handshake threads (they see the shutdown flag within 100 ms).
    pub fn join(&mut self) {
        for handle in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::warn!("a TLS handshake thread panicked");
            }
        }
    }
}
