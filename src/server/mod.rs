//! The relay server: thread-per-core io_uring workers driving the sans-IO core.
//!
//! `Server::start` binds one SO_REUSEPORT listener per worker (the kernel spreads connections
//! across them), starts one pinned thread per worker and returns when every worker's ring is
//! up. Workers share only the routing tables (lock-free reads), the handoff mailboxes and
//! their own counters.

mod congestion;
mod conn;
mod credentials_file;
mod deliver;
mod deliver_nats;
mod deliver_reports;
mod error;
mod fd_table;
mod handoff;
mod hooks;
pub mod host_probe;
mod http;
mod large_pool;
mod link_backlog;
mod listeners;
mod listing;
mod metrics;
mod metrics_auth;
mod moves;
mod nats_info;
mod output;
mod query;
mod reassemble;
mod reload;
mod resolve;
mod shared_round;
mod stats;
mod tls_conn;
mod tls_pool;
mod uring;
mod verifier;
mod worker;

pub use error::ServeError;
pub use hooks::{PresenceFn, ServerOptions};
pub use reload::{Reloaded, Reloader};
pub use uring::leaked_rings;

use crate::cluster::lane::ControlLane;
use crate::cluster::node::{ClusterHost, ClusterNode};
use crate::cluster::MemberStatus;
use crate::config::Config;
use crate::core::credentials::CredentialsInForce;
use crate::core::{EngineConfig, EpochClock, Tables};
use crate::memory_budget;
use crate::spawn::SpawnLogged;
use crate::tcp_congestion::TcpCongestion;
// The lane's types live in `cluster`; this alias keeps the workers' `super::control_lane`
// imports working unchanged.
use crate::cluster::lane as control_lane;
use handoff::Mailbox;
use listeners::{bind_cluster_listener, bind_listeners, bind_nats_listeners};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Counters a running relay exposes (cumulative since start, except `connections_open`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Client connections open now.
    pub connections_open: u64,
    /// Cluster data links open now (to and from other nodes).
    pub links_open: u64,
    pub connections_accepted: u64,
    pub frames_in: u64,
    /// Bytes received from clients and data links.
    pub bytes_in: u64,
    pub deliveries: u64,
    pub unknown_id: u64,
    pub slow_consumer_closes: u64,
    /// Client connections moved to the worker that feeds them, and moves abandoned (see
    /// `steer_connections`).
    pub connection_moves: u64,
    pub connection_move_aborts: u64,
    /// Of the aborts, moves the target gave back (full or stopping).
    pub connection_move_returns: u64,
    /// Closes whose `close_linger_ms` ran out before the peer had every byte or closed its
    /// side (its final frames unsent, or sent and not acknowledged).
    pub close_linger_timeouts: u64,
    pub protocol_error_closes: u64,
    pub handoff_drops: u64,
    /// Messages dropped at `pending_bytes_per_worker_max` (or in its last eighth, kept for
    /// queues not behind).
    pub worker_pending_drops: u64,
    /// SUBSCRIBEs and WATCHes refused at a configured limit.
    pub limit_refusals: u64,
    /// SEND and PUBLISH frames dropped for a payload longer than the relay delivers.
    pub payload_too_large_drops: u64,
    /// Forwarded messages dropped for a malformed frame on a data link.
    pub link_bad_frame_drops: u64,
    /// Messages queued on an outbound data link when it closed.
    pub link_loss_drops: u64,
    /// Frames refused outside the client's permissions (ERROR PERMISSION_DENIED).
    pub permission_denials: u64,
    /// HELLOs refused for their token or credentials (CLOSE AUTH_FAILED).
    pub auth_failures: u64,
    /// Producers paused because a queue they feed was full, and those whose pause ran to
    /// `stall_ms_max`.
    pub producer_stalls: u64,
    pub producer_stall_ms: u64,
    pub producer_stall_timeouts: u64,
    /// ERRORs folded into a summary, and ERRORs dropped (see `core::error_ledger`).
    pub errors_coalesced: u64,
    pub error_drops: u64,
}

/// State shared by every worker of one node.
pub(crate) struct Shared {
    pub config: Config,
    /// The relay engine's settings (session rules, WELCOME fields, clustered).
    pub engine: EngineConfig,
    /// `connections_per_worker_max` as it applies: lowered to fit the open-files limit.
    pub connections_per_worker: usize,
    pub node_id: u16,
    pub tables: Tables,
    /// Epochs of local registrations (hybrid logical clock, see `core::epoch`).
    pub epochs: EpochClock,
    pub lane: ControlLane,
    /// Peers as the cluster control thread last saw them (for `/cluster`).
    pub cluster_status: std::sync::Mutex<Vec<MemberStatus>>,
    pub mailboxes: Box<[Mailbox]>,
    /// The move barrier (see `moves.rs`).
    pub moves: moves::MoveBoard<Box<conn::MovedConn>>,
    /// Each worker's congestion board: which of its connections stall their producers.
    pub boards: Box<[congestion::CongestionBoard]>,
    /// Each worker's slot for the operator's `/connections` request.
    pub listings: Box<[listing::ListingSlot]>,
    pub stats: stats::StatsBlocks,
    pub shutdown: AtomicBool,
    /// Set once every worker has started; with `shutdown` unset the node accepts clients.
    pub accepting: AtomicBool,
    pub started: Instant,
    /// The embedding host's presence hook (`ServerOptions::presence`).
    pub presence: Option<Arc<PresenceFn>>,
    /// Which worker the next local client goes to (round robin).
    pub next_local_worker: std::sync::atomic::AtomicUsize,
    /// How long stopping workers let closing connections drain, in ms; `u64::MAX`: the
    /// default, `close_linger_ms` + 500 ([`Server::shutdown_within`] sets it).
    pub stop_grace_ms: std::sync::atomic::AtomicU64,
    /// The verifier thread's queue, when a credentials file is in force.
    pub verify_jobs: Option<crossbeam::channel::Sender<verifier::VerifyJob>>,
    /// TLS handshakes and their failures, by reason.
    pub tls_stats: tls_pool::TlsStats,
    /// The TLS listeners' configuration (`None` without `tls_listen` or `nats_tls_listen`);
    /// read at each accept, replaced by a reload.
    pub tls_config: std::sync::RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// The metrics endpoint's TLS configuration (`None` without `metrics_tls`); set when the
    /// endpoint starts, read at each accept, replaced by a reload.
    pub metrics_tls_config: std::sync::RwLock<Option<Arc<rustls::ServerConfig>>>,
    /// Cluster links' mutual TLS (`None` without `cluster_tls_*`); shared with the cluster
    /// node's acceptor and dialers, replaced in place by a reload.
    pub cluster_tls: Option<crate::tls::config::ClusterTls>,
}

/// A running relay. Dropping it shuts it down.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<Result<(), ServeError>>>,
    local_addr: SocketAddr,
    /// Where NATS clients connect, when `nats_listen` is set.
    nats_addr: Option<SocketAddr>,
    /// The bound cluster address, on a clustered node.
    cluster_addr: Option<SocketAddr>,
    /// The metrics endpoint, when configured; stopped when the server is dropped.
    metrics: Option<metrics::MetricsServer>,
    /// The cluster control plane, when `node_id` is set.
    cluster: Option<ClusterNode>,
    /// The thread that verifies credentials off the workers, when a credentials file is in
    /// force.
    verifier: Option<JoinHandle<()>>,
    /// The TLS listeners (`tls_listen`, `nats_tls_listen`) and their handshake threads.
    tls: Vec<tls_pool::TlsListener>,
}

/// Microseconds since the Unix epoch (registration epochs); 0 if the clock is before 1970.
pub(crate) fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Send and receive buffer of each end of a local client's socket pair: 4 MiB, what TCP
/// autotuning reaches on loopback by default (`tcp_wmem` max), so a local client is not
/// slower than a TCP one.
const LOCAL_SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// How long `start` waits for every worker to report its ring up.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    /// Binds, starts the workers and returns once every worker is up; only then do they
    /// accept (connections that come earlier wait in the listen backlog).
    pub fn start(cfg: Config) -> Result<Server, ServeError> {
        Self::start_with(cfg, ServerOptions::default())
    }

    /// As [`Self::start`], with the options of a node embedded in a host process.
    pub fn start_with(cfg: Config, opts: ServerOptions) -> Result<Server, ServeError> {
        match opts.log.clone() {
            Some(dispatch) => {
                tracing::dispatcher::with_default(&dispatch, || Self::start_inner(cfg, opts))
            }
            None => Self::start_inner(cfg, opts),
        }
    }

    fn start_inner(cfg: Config, opts: ServerOptions) -> Result<Server, ServeError> {
        let workers = checked_workers(&cfg)?;
        let cfg = fit_to_memory(cfg)?;
        let cpus = worker_cpus(&cfg, workers, opts.pin_workers_by_default);
        let tcp_congestion = TcpCongestion::resolve(&cfg.tcp_congestion)?;
        let listen_addr = resolve::resolve("listen", &cfg.listen)?;
        let (listeners, local_addr) = bind_listeners(listen_addr, workers, &tcp_congestion)?;
        let (nats_listeners, nats_addr) = bind_nats_listeners(&cfg, workers, &tcp_congestion)?;
        let cluster_listener = bind_cluster_listener(&cfg, &tcp_congestion)?;
        let (tls, tls_config) = tls_pool::TlsListener::bind_all(&cfg, &tcp_congestion)?;
        // Read before anything starts, so a bad file stops the start naming the setting.
        let cluster_tls = cfg.cluster_tls()?;
        let mailboxes = mailboxes(workers, cfg.handoff_bytes_max)?;
        let connections_per_worker = connections_per_worker(&cfg, &listeners);
        let (credentials, verify_jobs, verify_queue) = credentials_parts(&cfg)?;
        let shared = new_shared(
            cfg,
            opts,
            NewShared {
                workers,
                mailboxes,
                connections_per_worker,
                credentials,
                verify_jobs,
                tls_config,
                cluster_tls,
            },
        );
        // Bound before the workers start, so a taken port fails the start at once.
        let metrics = match &shared.config.metrics {
            Some(endpoint) => {
                let addr = resolve::resolve("metrics", endpoint)?;
                Some(metrics::MetricsServer::start(addr, Arc::clone(&shared))?)
            }
            None => None,
        };
        let mut server = Server {
            shared,
            threads: Vec::with_capacity(workers),
            local_addr,
            nats_addr,
            cluster_addr: None,
            metrics,
            cluster: None,
            verifier: None,
            tls,
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ServeError>>();
        let worker_listeners = listeners.into_iter().zip(nats_listeners);
        for (index, (client, nats)) in worker_listeners.enumerate() {
            let cpu = cpus.get(index).copied().flatten();
            let spawned = spawn_worker(
                index as u16,
                worker::WorkerListeners { client, nats },
                Arc::clone(&server.shared),
                ready_tx.clone(),
                cpu,
            );
            match spawned {
                Ok(handle) => server.threads.push(handle),
                Err(source) => {
                    server.stop_and_join();
                    return Err(ServeError::Spawn {
                        what: "worker",
                        source,
                    });
                }
            }
        }
        drop(ready_tx);
        if let Err(e) = server.start_verifier(verify_queue) {
            server.stop_and_join();
            return Err(e);
        }
        if let Err(e) = wait_until_started(&ready_rx, workers) {
            server.stop_and_join();
            return Err(e);
        }
        if let Some(listener) = cluster_listener {
            if let Err(e) = server.start_cluster(listener, tcp_congestion) {
                server.stop_and_join();
                return Err(e);
            }
        }
        // Every worker is up: now they accept (each arms its accept when it sees this).
        server.shared.accepting.store(true, Ordering::Release);
        server.shared.wake_all_workers();
        tracing::info!(%local_addr, workers, "relay listening");

        if let Err(e) = server.start_tls() {
            server.stop_and_join();
            return Err(e);
        }
        if let Some(nats_addr) = nats_addr {
            tracing::info!(%nats_addr, "NATS clients served");
        }
        Ok(server)
    }

    /// The bound client address (the real port when the config said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound NATS address (the real port when the config said port 0), if enabled.
    pub fn nats_addr(&self) -> Option<SocketAddr> {
        self.nats_addr
    }

    /// The bound cluster address (the real port when the config said port 0), if clustered.
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster_addr
    }

    /// The bound TLS client address (the real port when the config said port 0), if enabled.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listener_addr(|p| p == tls_pool::TlsProtocol::Native)
    }

    /// The bound NATS TLS address (the real port when the config said port 0), if enabled.
    pub fn nats_tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listener_addr(|p| matches!(p, tls_pool::TlsProtocol::Nats { .. }))
    }

    fn tls_listener_addr(
        &self,
        protocol: impl Fn(tls_pool::TlsProtocol) -> bool,
    ) -> Option<SocketAddr> {
        self.tls
            .iter()
            .find(|t| protocol(t.protocol()))
            .map(|t| t.addr())
    }

    /// TLS handshakes completed, and those failed for `reason` (a label of
    /// `ringrelay_tls_handshake_failures_total`, such as `unknown_ca` or `not_tls`).
    pub fn tls_handshakes(&self, reason: Option<&str>) -> u64 {
        let tls = &self.shared.tls_stats;
        let counter = match reason {
            None => &tls.handshakes,
            Some(label) => match tls_pool::FAILURE_LABELS.iter().position(|&l| l == label) {
                Some(i) => &tls.failures[i],
                None => return 0,
            },
        };
        counter.load(Ordering::Relaxed)
    }

    /// The bound metrics address (the real port when the config said port 0), if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.addr())
    }

    /// Whether the node accepts clients: every worker started and shutdown has not begun
    /// (what `/healthz` reports).
    pub fn is_ready(&self) -> bool {
        metrics::is_ready(&self.shared)
    }

    pub fn stats(&self) -> StatsSnapshot {
        stats::snapshot(&self.shared.stats)
    }

    /// Whether the cluster control plane has the snapshots of its peers (always true for a
    /// standalone relay).
    pub fn cluster_ready(&self) -> bool {
        self.shared.lane.is_ready()
    }

    /// A client connection to this node inside the process, with no TCP: one end of a Unix
    /// socket pair is served by a worker exactly as an accepted connection (HELLO, then the
    /// protocol), the other is returned for a [`crate::client::Client`]. Workers take local
    /// clients in turn. Fails when the node is stopping or a worker's command queue is full.
    pub fn connect_local(&self) -> std::io::Result<std::os::unix::net::UnixStream> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.shared.shutdown.load(Ordering::Acquire) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "the node is stopping",
            ));
        }
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        // Unix sockets do not autotune their buffers as TCP does: give both ends room for
        // bursts (the kernel caps it at net.core.wmem_max / rmem_max).
        for end in [&ours, &theirs] {
            let sock = socket2::SockRef::from(end);
            sock.set_send_buffer_size(LOCAL_SOCKET_BUFFER_BYTES)?;
            sock.set_recv_buffer_size(LOCAL_SOCKET_BUFFER_BYTES)?;
        }
        let workers = self.shared.lane.commands.len();
        let worker = self.shared.next_local_worker.fetch_add(1, Relaxed) % workers;
        let command = control_lane::Command::AdoptClient { fd: theirs.into() };
        if self.shared.lane.commands[worker].push(command).is_err() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "the worker's command queue is full",
            ));
        }
        self.shared.wake_worker(worker);
        Ok(ours)
    }

    /// Number of client ids registered on this node.
    pub fn registered_clients(&self) -> usize {
        self.shared.tables.locations.len()
    }

    /// Blocks until the workers exit (they exit on `shutdown` or a fatal error).
    pub fn wait(mut self) -> Result<(), ServeError> {
        let mut first_err = None;
        for t in self.threads.drain(..) {
            let result = t.join().unwrap_or(Err(ServeError::Panicked("worker")));
            if let Err(e) = result {
                // One worker failing takes the node down: the others would serve a partial
                // shard of the listen port.
                self.shared.shutdown.store(true, Ordering::Release);
                for m in self.shared.mailboxes.iter() {
                    m.wake();
                }
                first_err.get_or_insert(e);
            }
        }
        self.shared.shutdown.store(true, Ordering::Release);
        self.join_verifier();
        if let Some(mut c) = self.cluster.take() {
            if let Err(e) = c.stop() {
                // The process must exit non-zero: the node stopped for this.
                first_err.get_or_insert(ServeError::Panicked(e));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// A handle that reloads this server's credentials from another thread (SIGHUP).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A handle that can stop this server from another thread (a signal handler thread).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Closes every connection with reason "shutdown", stops the workers and joins them.
    pub fn shutdown(self) {
        self.stop_and_join();
    }

    /// As [`Self::shutdown`], giving connections at most `drain` to take what was queued for
    /// them and to see the CLOSE (instead of `close_linger_ms` + 500 ms).
    pub fn shutdown_within(self, drain: Duration) {
        let ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX - 1);
        self.shared.stop_grace_ms.store(ms, Ordering::Release);
        self.stop_and_join();
    }

    fn stop_and_join(mut self) {
        self.stopper().stop();
        self.join_verifier();
        if let Some(mut c) = self.cluster.take() {
            if let Err(e) = c.stop() {
                tracing::warn!("the {e} thread panicked");
            }
        }
        for t in self.threads.drain(..) {
            if let Ok(Err(e)) = t.join() {
                tracing::warn!("worker exited with error: {e}");
            }
        }
    }
}

/// The number of workers of a config that passes every check made before binding.
fn checked_workers(cfg: &Config) -> Result<usize, ServeError> {
    if let Some(setting) = cfg.unread_secret_file() {
        return Err(ServeError::UnreadSecretFile(setting));
    }
    cfg.validate()?;
    let workers = cfg.worker_count();
    if workers > u16::MAX as usize {
        return Err(ServeError::TooManyWorkers(workers));
    }
    check_cpus(cfg, workers)?;
    Ok(workers)
}

/// The credentials in force (read from `credentials_file`) and the verifier's queue.
#[allow(clippy::type_complexity)]
fn credentials_parts(
    cfg: &Config,
) -> Result<
    (
        Option<Arc<CredentialsInForce>>,
        Option<crossbeam::channel::Sender<verifier::VerifyJob>>,
        crossbeam::channel::Receiver<verifier::VerifyJob>,
    ),
    ServeError,
> {
    let credentials = match &cfg.credentials_file {
        Some(path) => Some(Arc::new(CredentialsInForce::new(credentials_file::read(
            path,
        )?))),
        None => None,
    };
    let (jobs, queue) = verifier::queue();
    let jobs = credentials.is_some().then_some(jobs);
    Ok((credentials, jobs, queue))
}

impl Server {
    /// Starts the thread that verifies credentials, when they are in force.
    fn start_verifier(
        &mut self,
        queue: crossbeam::channel::Receiver<verifier::VerifyJob>,
    ) -> Result<(), ServeError> {
        if self.shared.verify_jobs.is_none() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("ringrelay-verify".into())
            .spawn_logged(move || verifier::run(shared, queue))
            .map_err(|source| ServeError::Spawn {
                what: "verifier",
                source,
            })?;
        self.verifier = Some(handle);
        Ok(())
    }

    /// Starts the cluster node (its acceptor on `listener` and its control thread); the links
    /// it dials use `congestion`.
    fn start_cluster(
        &mut self,
        listener: std::net::TcpListener,
        congestion: TcpCongestion,
    ) -> Result<(), ServeError> {
        let shared = Arc::clone(&self.shared);
        let tls = shared.cluster_tls.clone();
        self.cluster_addr = listener.local_addr().ok();
        let node = ClusterNode::start(
            Arc::clone(&shared),
            &shared.config,
            listener,
            tls,
            congestion,
        )
        .map_err(|source| ServeError::Spawn {
            what: "cluster",
            source,
        })?;
        self.cluster = Some(node);
        Ok(())
    }

    /// Starts the TLS listeners' handshake threads (once the workers accept).
    fn start_tls(&mut self) -> Result<(), ServeError> {
        for tls in &mut self.tls {
            tls.spawn(&self.shared)?;
            match tls.protocol() {
                tls_pool::TlsProtocol::Native => {
                    tracing::info!(tls_addr = %tls.addr(), "TLS clients served")
                }
                tls_pool::TlsProtocol::Nats { handshake_first } => {
                    tracing::info!(nats_tls_addr = %tls.addr(), handshake_first, "NATS TLS clients served")
                }
            }
        }
        Ok(())
    }

    /// Joins the verifier and TLS handshake threads (they see the shutdown flag within
    /// 100 ms).
    fn join_verifier(&mut self) {
        for tls in &mut self.tls {
            self.shared.shutdown.store(true, Ordering::Release);
            tls.join();
        }
        if let Some(handle) = self.verifier.take() {
            self.shared.shutdown.store(true, Ordering::Release);
            if handle.join().is_err() {
                tracing::warn!("the credentials verifier thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.join_verifier();
        if let Some(mut c) = self.cluster.take() {
            self.stopper().stop();
            let _ = c.stop();
        }
        if !self.threads.is_empty() {
            self.stopper().stop();
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// The cluster driver's view of the node.
impl ClusterHost for Shared {
    fn tables(&self) -> &Tables {
        &self.tables
    }
    fn epochs(&self) -> &EpochClock {
        &self.epochs
    }
    fn lane(&self) -> &ControlLane {
        &self.lane
    }
    fn wake_worker(&self, worker: usize) {
        if let Some(m) = self.mailboxes.get(worker) {
            m.wake();
        }
    }
    fn wake_all_workers(&self) {
        for m in self.mailboxes.iter() {
            m.sleeping.store(true, Ordering::SeqCst);
            m.wake();
        }
    }
    fn stopping(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }
    fn publish_members(&self, members: Vec<MemberStatus>) {
        if let Ok(mut s) = self.cluster_status.lock() {
            *s = members;
        }
    }
    fn control_failed(&self) {
        // Shutting down makes `/healthz` say "not ready" at once, and `Server::wait` returns
        // the control thread's error once the workers have stopped.
        self.shutdown.store(true, Ordering::Release);
        for m in self.mailboxes.iter() {
            m.sleeping.store(true, Ordering::SeqCst);
            m.wake();
        }
    }
}

/// Stops a running server from any thread.
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    pub fn stop(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for m in self.shared.mailboxes.iter() {
            // Force the wake-up even when the worker is not asleep yet: it checks the flag at
            // the top of every iteration, and a stale eventfd count is harmless.
            m.sleeping.store(true, Ordering::SeqCst);
            m.wake();
        }
    }
}

/// What [`new_shared`] takes beyond the settings and options.
struct NewShared {
    workers: usize,
    mailboxes: Vec<Mailbox>,
    connections_per_worker: usize,
    credentials: Option<Arc<CredentialsInForce>>,
    verify_jobs: Option<crossbeam::channel::Sender<verifier::VerifyJob>>,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    cluster_tls: Option<crate::tls::config::ClusterTls>,
}

/// The state every worker of a new node shares.
fn new_shared(cfg: Config, opts: ServerOptions, parts: NewShared) -> Arc<Shared> {
    let NewShared {
        workers,
        mailboxes,
        connections_per_worker,
        credentials,
        verify_jobs,
        tls_config,
        cluster_tls,
    } = parts;
    let mut engine = EngineConfig::from_config(&cfg);
    engine.session.gate.credentials = credentials;
    engine.session.authorize = opts.authorize;
    engine.local_presence = opts.presence.is_some();
    Arc::new(Shared {
        engine,
        connections_per_worker,
        node_id: cfg.node_id,
        tables: Tables::for_node(cfg.node_id),
        epochs: EpochClock::new(),
        lane: ControlLane::new(workers, cfg.node_id != 0),
        cluster_status: Default::default(),
        config: cfg,
        mailboxes: mailboxes.into(),
        moves: moves::MoveBoard::new(workers),
        boards: (0..workers)
            .map(|_| congestion::CongestionBoard::new(connections_per_worker))
            .collect(),
        listings: (0..workers).map(|_| Default::default()).collect(),
        stats: stats::new_blocks(workers),
        shutdown: AtomicBool::new(false),
        accepting: AtomicBool::new(false),
        started: Instant::now(),
        presence: opts.presence,
        next_local_worker: Default::default(),
        stop_grace_ms: std::sync::atomic::AtomicU64::new(u64::MAX),
        verify_jobs,
        tls_stats: Default::default(),
        tls_config: std::sync::RwLock::new(tls_config),
        metrics_tls_config: std::sync::RwLock::new(None),
        cluster_tls,
    })
}

/// Starts worker `index` on its own thread, pinned to `cpu`; it reports on `ready` once its
/// ring is up (or why it could not start).
fn spawn_worker(
    index: u16,
    listeners: worker::WorkerListeners,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<(), ServeError>>,
    cpu: Option<usize>,
) -> std::io::Result<JoinHandle<Result<(), ServeError>>> {
    std::thread::Builder::new()
        .name(format!("ringrelay-w{index}"))
        // `start` runs under the host's log dispatcher, if any: the worker logs there too.
        .spawn_logged(move || {
            if let Some(cpu) = cpu {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    tracing::warn!(worker = index, cpu, "could not pin worker to CPU");
                }
            }
            match worker::Worker::new(index, listeners, shared) {
                Ok(w) => {
                    let _ = ready.send(Ok(()));
                    w.run()
                }
                // The error goes to `start`, which reports it; the thread's result then only
                // says that this worker failed.
                Err(e) => {
                    let _ = ready.send(Err(e));
                    Err(ServeError::StartTimeout(0).in_worker(index))
                }
            }
        })
}

/// Waits for `workers` start reports; the first failure, or none within
/// `WORKER_START_TIMEOUT`, is the error.
fn wait_until_started(
    ready: &mpsc::Receiver<Result<(), ServeError>>,
    workers: usize,
) -> Result<(), ServeError> {
    for _ in 0..workers {
        match ready.recv_timeout(WORKER_START_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ServeError::StartTimeout(WORKER_START_TIMEOUT.as_secs())),
        }
    }
    Ok(())
}

/// One handoff mailbox per worker (each with its wake-up eventfd).
fn mailboxes(workers: usize, handoff_bytes_max: usize) -> Result<Vec<Mailbox>, ServeError> {
    (0..workers)
        .map(|_| Mailbox::new(workers, handoff_bytes_max))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Resource("create an eventfd", e))
}

/// Workers per CPU `start` accepts. The relay is thread-per-core, so one is right; up to 4 lets
/// a small test machine run a few nodes or workers; far more only contend for the CPUs and
/// make the start slow (every worker builds its ring and buffers).
pub const WORKERS_PER_CPU_MAX: usize = 4;

/// Refuses `cpus` naming a CPU that does not exist or lies outside this process's cpuset,
/// and more than [`WORKERS_PER_CPU_MAX`] workers per CPU.
fn check_cpus(cfg: &Config, workers: usize) -> Result<(), ServeError> {
    let possible = possible_cpus();
    if let (Some(cpus), Some(possible)) = (&cfg.cpus, &possible) {
        if let Some(&cpu) = cpus.iter().find(|c| !possible.contains(c)) {
            let possible = crate::cpu_list::format(possible);
            return Err(ServeError::NoSuchCpu { cpu, possible });
        }
    }
    // Pinned workers may use every CPU of the cpuset; unpinned ones run where this process may.
    let cpus = match (&cfg.cpus, &possible) {
        (Some(_), Some(possible)) => possible.len(),
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let max = cpus.saturating_mul(WORKERS_PER_CPU_MAX);
    if workers > max {
        return Err(ServeError::WorkersPastCpus {
            workers,
            cpus,
            max,
            per_cpu: WORKERS_PER_CPU_MAX,
        });
    }
    Ok(())
}

/// The CPUs this process could be placed on: its cgroup's effective cpuset (cgroup v2), else
/// the online CPUs; `None` when neither can be read. Not the current affinity mask: a relay
/// started under `taskset -c 1` (as `ringrelay bench` starts its own) may still pin a worker
/// to CPU 0; the cpuset, not the inherited mask, is the limit.
fn possible_cpus() -> Option<Vec<usize>> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let cgroup_cpuset = read("/proc/self/cgroup").and_then(|text| {
        let path = text
            .lines()
            .find_map(|l| l.strip_prefix("0::"))?
            .trim()
            .to_string();
        read(&format!("/sys/fs/cgroup{path}/cpuset.cpus.effective"))
    });
    let list = cgroup_cpuset
        .filter(|l| !l.trim().is_empty())
        .or_else(|| read("/sys/devices/system/cpu/online"))?;
    crate::cpu_list::parse(&list).ok()
}

/// CPU for each worker: the configured list, else the CPUs this process may run on, in turn.
fn worker_cpus(cfg: &Config, workers: usize, pin_by_default: bool) -> Vec<Option<usize>> {
    if let Some(cpus) = &cfg.cpus {
        return cpus.iter().map(|&c| Some(c)).collect();
    }
    if !pin_by_default {
        return vec![None; workers];
    }
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    if allowed.is_empty() {
        return vec![None; workers];
    }
    (0..workers)
        .map(|i| Some(allowed[i % allowed.len()].id))
        .collect()
}

/// Listen backlog: large, since a relay host sees connection storms after a restart; the
/// kernel caps it at net.core.somaxconn.
pub(crate) const LISTEN_BACKLOG: i32 = 4096;

/// The settings as they will apply on this host: the bounds left at their defaults lowered to
/// fit `memory_max_bytes` (default: half the host's memory).
#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub config: Config,
    pub workers: usize,
    /// What was lowered.
    pub changes: Vec<memory_budget::Fitted>,
    /// `None`: the host's memory could not be read and no `memory_max_bytes` was set.
    pub memory_max_bytes: Option<u64>,
}

impl MemoryPlan {
    /// Fits `cfg` (validated) to this host; settings that cannot fit are refused.
    pub fn for_host(cfg: &Config) -> Result<MemoryPlan, ServeError> {
        let workers = cfg.worker_count();
        let memory_max_bytes = cfg
            .memory_max_bytes
            .or_else(|| host_probe::memory_available_bytes().map(|m| m / 2));
        let Some(max) = memory_max_bytes else {
            return Ok(MemoryPlan {
                config: cfg.clone(),
                workers,
                changes: Vec::new(),
                memory_max_bytes,
            });
        };
        let (config, changes) = cfg
            .fit_to_memory(workers, max)
            .map_err(|e| ServeError::OverBudget(Box::new(e)))?;
        Ok(MemoryPlan {
            config,
            workers,
            changes,
            memory_max_bytes,
        })
    }

    pub fn budget(&self) -> memory_budget::MemoryBudget {
        self.config.memory_budget_for(self.workers)
    }

    /// The budget, what was lowered to fit and the limit, as `serve --print-budget` shows it.
    pub fn report(&self) -> String {
        let mut text = self.budget().to_string();
        match self.memory_max_bytes {
            Some(max) => text.push_str(&format!(
                "memory_max_bytes: {} ({})\n",
                memory_budget::human(max),
                if self.config.memory_max_bytes.is_some() {
                    "set"
                } else {
                    "half of the host's memory"
                }
            )),
            None => text.push_str("memory_max_bytes: unknown (the host's memory cannot be read)\n"),
        }
        for c in &self.changes {
            text.push_str(&format!(
                "lowered to fit: {} {} -> {}\n",
                c.setting, c.from, c.to
            ));
        }
        text
    }
}

/// [`MemoryPlan::for_host`], logged.
fn fit_to_memory(cfg: Config) -> Result<Config, ServeError> {
    let plan = MemoryPlan::for_host(&cfg)?;
    for change in &plan.changes {
        tracing::info!(
            setting = change.setting,
            from = change.from,
            to = change.to,
            "lowered to fit memory_max_bytes"
        );
    }
    let budget = plan.budget();
    match plan.memory_max_bytes {
        Some(max) => tracing::info!(
            budget = %memory_budget::human(budget.total_bytes()),
            memory_max = %memory_budget::human(max),
            "memory budget: the worst case of the settings (`ringrelay serve --print-budget` \
             lists it)"
        ),
        None => tracing::warn!(
            budget = %memory_budget::human(budget.total_bytes()),
            "cannot read the host's memory size: the memory budget is not enforced; set \
             memory_max_bytes"
        ),
    }
    tracing::debug!("{budget}");
    Ok(plan.config)
}

/// `connections_per_worker_max` lowered to fit the process's open-files limit (logged when
/// it is lowered); the descriptor table is grown to hold them all (see [`fd_table`]).
fn connections_per_worker(cfg: &Config, listeners: &[socket2::Socket]) -> usize {
    let nofile_soft = host_probe::ProcessLimits::current().nofile.map(|l| l.soft);
    let effective = host_probe::connections_per_worker_effective(cfg, nofile_soft);
    if effective < cfg.connections_per_worker_max {
        tracing::info!(
            configured = cfg.connections_per_worker_max,
            effective,
            nofile = nofile_soft,
            "connections_per_worker_max lowered to fit the open-files limit; more connections \
             are closed with CONNECTION_LIMIT"
        );
    }
    if let Some(first) = listeners.first() {
        fd_table::reserve(
            host_probe::descriptors_max(cfg, effective),
            std::os::fd::AsRawFd::as_raw_fd(first),
        );
    }
    effective
}
