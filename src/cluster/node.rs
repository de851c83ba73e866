//! The cluster control thread (I/O driver): feeds the sans-IO [`ControlPlane`] from link
//! sockets and timers and carries out its outputs. Every decision lives in the plane; this
//! file only moves bytes, sockets and threads.
//!
//! Threads: one control thread (owns the plane), one acceptor (accepts and authenticates
//! links; data links go straight to a worker), one short-lived thread per dial, and per
//! control link one reader and one writer. Readers and dialers only pass inputs to the
//! control thread over a bounded channel; the control thread never blocks on a socket (a
//! writer whose bounded queue is full means the peer stopped reading: the link is closed).
//!
//! Control traffic has its own TCP connection per peer and its own thread, so it never waits
//! behind forwarded data, however busy the data links and workers are.
//!
//! The driver sees the rest of the node only through [`ClusterHost`] (tables, epochs, the
//! lane to the workers, wake-ups, the shutdown flag, a status sink), so `cluster` never
//! depends on `server`.

use super::control::{
    ControlConfig, ControlPlane, Input, LinkOrigin, MemberStatus, Output, PeerIdentity,
    WorkerCommand,
};
use super::handshake_slots::HandshakeSlots;
use super::lane::{Command, ControlLane};
use super::link_io::{accept, dial, Established, LinkError, LinkIdentity, MessageReader};
use super::link_stream::{LinkReader, LinkWriter};
use super::membership::LinkId;
use super::wire::{encode_link, Lane, LinkMsg};
use crate::config::Config;
use crate::core::{EpochClock, Tables};
use crate::protocol::Frame;
use crate::spawn::SpawnLogged;
use crate::tcp_congestion::TcpCongestion;
use crate::tls::config::ClusterTls;
use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The control thread wakes at least this often (row batches, timers).
const TICK: Duration = Duration::from_millis(5);
/// Inputs queued for the control thread before readers block (backpressure onto TCP).
const INPUTS_MAX: usize = 64 * 1024;
/// Encoded messages queued for one control link's writer before the link is deemed stuck
/// (full: the link is closed and re-established).
const WRITER_QUEUE_MAX: usize = 4096;
/// Handshakes in progress at once on the acceptor; more connections are closed at once. 256:
/// each is one short-lived thread with a small stack, and every handshake ends within
/// `HANDSHAKE_TIMEOUT`, so sockets that trickle cannot hold slots for long.
pub const HANDSHAKES_MAX: usize = 256;
/// Handshakes in progress from one source address. 32: a joining peer dials its control link
/// and one data link per worker at once, while one host flooding the port leaves 224 slots to
/// everyone else.
pub const HANDSHAKES_PER_SOURCE_MAX: usize = 32;
/// Stack of a handshake thread: HMAC and a 64 KiB read buffer on the heap need little.
const HANDSHAKE_THREAD_STACK_BYTES: usize = 256 * 1024;
/// Inputs the control thread takes per round before it runs its timers again.
const INPUTS_PER_ROUND_MAX: usize = 1024;

/// What the cluster driver needs from the node it runs in. The server implements it; a test
/// can implement it with plain fields.
pub trait ClusterHost: Send + Sync + 'static {
    /// The node's shared routing tables (the plane writes peers' rows and interest).
    fn tables(&self) -> &Tables;
    /// The node's epoch clock (the plane observes peers' epochs).
    fn epochs(&self) -> &EpochClock;
    /// Commands to the workers, their events, and the readiness flag.
    fn lane(&self) -> &ControlLane;
    /// Wakes `worker` if it sleeps (a command is queued for it).
    fn wake_worker(&self, worker: usize);
    /// Wakes every worker even if it is not asleep yet (the node just became ready).
    fn wake_all_workers(&self);
    /// Whether the node is shutting down (the driver's threads then exit).
    fn stopping(&self) -> bool;
    /// The peers' states changed.
    fn publish_members(&self, members: Vec<MemberStatus>);
    /// The control thread died (a panic): the node can no longer keep its table in step
    /// with its peers, so it must stop saying ready and shut down with an error.
    fn control_failed(&self);
}

/// Inputs of the control thread from its helper threads.
enum Incoming {
    Accepted(Established),
    Dialed {
        addr: String,
        seed: bool,
        result: Result<Established, LinkError>,
    },
    DataDialed {
        node: u16,
        worker: u16,
        result: Result<Established, LinkError>,
    },
    Msg {
        link: LinkId,
        msg: super::wire::ControlMsg,
    },
    LinkDown {
        link: LinkId,
        why: String,
    },
}

struct Link {
    node: u16,
    stream: TcpStream,
    writer: Sender<Vec<u8>>,
}

/// A running cluster node; dropping it does not stop it, [`ClusterNode::stop`] does.
pub struct ClusterNode {
    control: Option<JoinHandle<()>>,
    acceptor: Option<JoinHandle<()>>,
    /// A duplicate of the acceptor's listening socket; [`ClusterNode::stop`] shuts it down to
    /// wake the blocked accept, then closes it.
    wake: Option<TcpListener>,
}

impl ClusterNode {
    /// Starts the acceptor on `listener` and the control thread; `tls`: mutual TLS on every
    /// link (`cluster_tls_*`); `congestion`: the TCP congestion control of the links it dials
    /// (`listener` was given it before it listened).
    pub fn start<H: ClusterHost>(
        host: Arc<H>,
        cfg: &Config,
        listener: TcpListener,
        tls: Option<ClusterTls>,
        congestion: TcpCongestion,
    ) -> std::io::Result<ClusterNode> {
        let workers = u16::try_from(host.lane().commands.len()).unwrap_or(u16::MAX);
        let me = LinkIdentity {
            node_id: cfg.node_id,
            incarnation: super::auth::new_incarnation(),
            advertise: cfg.cluster_advertise.clone().unwrap_or_else(|| {
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            }),
            secret: cfg.cluster_secret.clone().unwrap_or_default().into_bytes(),
            tls,
            congestion,
        };
        let plane_cfg = ControlConfig::from_config(cfg, me.advertise.clone(), workers);
        let (tx, rx) = bounded(INPUTS_MAX);
        let wake = listener.try_clone()?;
        let acceptor = {
            let (host, me, tx) = (Arc::clone(&host), me.clone(), tx.clone());
            std::thread::Builder::new()
                .name("ringrelay-accept".into())
                .spawn_logged(move || accept_loop(listener, host, me, tx))?
        };
        let control = std::thread::Builder::new()
            .name("ringrelay-cluster".into())
            .spawn_logged(move || {
                let _report = PanicReport(Arc::clone(&host));
                Driver::new(host, me, plane_cfg, tx, rx).run()
            })?;
        Ok(ClusterNode {
            control: Some(control),
            acceptor: Some(acceptor),
            wake: Some(wake),
        })
    }

    /// Joins the threads; the caller has set the host's shutdown flag. An error names the
    /// thread that panicked (already logged).
    pub fn stop(&mut self) -> Result<(), &'static str> {
        // shutdown(2) acts on the socket, not the descriptor, so shutting down the duplicate
        // wakes the accept blocked on the original. Best effort, as before.
        if let Some(wake) = self.wake.take() {
            let _ = socket2::SockRef::from(&wake).shutdown(Shutdown::Both);
        }
        let mut result = Ok(());
        if let Some(t) = self.control.take() {
            if t.join().is_err() {
                result = Err("cluster control");
            }
        }
        if let Some(t) = self.acceptor.take() {
            if t.join().is_err() {
                tracing::error!("the cluster acceptor thread panicked");
                result = Err("cluster acceptor");
            }
        }
        result
    }
}

/// Lives on the control thread's stack: if the thread unwinds, the node hears of it at once
/// (not only when it is joined at shutdown, which a healthy-looking node may never reach).
struct PanicReport<H: ClusterHost>(Arc<H>);

impl<H: ClusterHost> Drop for PanicReport<H> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!("the cluster control thread panicked: the node is shutting down");
            self.0.control_failed();
        }
    }
}

fn accept_loop<H: ClusterHost>(
    listener: TcpListener,
    host: Arc<H>,
    me: LinkIdentity,
    tx: Sender<Incoming>,
) {
    let slots = HandshakeSlots::new(HANDSHAKES_MAX, HANDSHAKES_PER_SOURCE_MAX);
    while !host.stopping() {
        let (stream, source) = match listener.accept() {
            Ok((s, from)) => (s, from.ip()),
            Err(e) => {
                if host.stopping() {
                    break;
                }
                tracing::warn!("cluster accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(slot) = slots.try_acquire(source) else {
            tracing::debug!(%source, "too many link handshakes at once: connection dropped");
            continue;
        };
        let (host, me, tx) = (Arc::clone(&host), me.clone(), tx.clone());
        let spawned = std::thread::Builder::new()
            .name("ringrelay-handshake".into())
            .stack_size(HANDSHAKE_THREAD_STACK_BYTES)
            .spawn_logged(move || {
                let _slot = slot;
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                match accept(stream, &me) {
                    Ok(est) if est.peer.lane == Lane::Data => hand_inbound_data_link(&*host, est),
                    Ok(est) => {
                        let _ = tx.send(Incoming::Accepted(est));
                    }
                    Err(e) => tracing::warn!(%peer, "refused cluster link: {e}"),
                }
            });
        if let Err(e) = spawned {
            // The closure (with the stream and the slot) was dropped: both are released.
            tracing::warn!("cannot spawn a handshake thread: {e}");
        }
    }
}

/// Gives an inbound data-link socket to a worker, spread by the sending worker's index.
fn hand_inbound_data_link(host: &impl ClusterHost, est: Established) {
    let workers = host.lane().commands.len().max(1);
    let worker = est.peer.worker as usize % workers;
    let node = est.peer.node_id;
    let Some(command) = data_link_command(est, false) else {
        return;
    };
    if push_command(host, worker, command).is_some() {
        tracing::warn!(
            node,
            worker,
            "worker's command queue full: inbound data link dropped"
        );
    }
}

/// The command that hands a data link to a worker (`None`, logged, when a TLS stream cannot
/// be taken apart: it never holds unsent bytes after the handshake).
fn data_link_command(est: Established, outbound: bool) -> Option<Command> {
    let node = est.peer.node_id;
    match est.stream.hand_over(est.leftover) {
        Ok((sock, tls)) => Some(Command::AdoptLink {
            fd: OwnedFd::from(sock),
            node,
            outbound,
            tls,
        }),
        Err(e) => {
            tracing::warn!(node, "cannot hand a data link to a worker: {e}");
            None
        }
    }
}

/// Queues `command` for `worker` and wakes it; gives the command back when the queue is full.
fn push_command(host: &impl ClusterHost, worker: usize, command: Command) -> Option<Command> {
    let Some(queue) = host.lane().commands.get(worker) else {
        tracing::warn!(worker, "command for a worker that does not exist: dropped");
        return None;
    };
    let result = queue.push(command);
    host.wake_worker(worker);
    result.err()
}

struct Driver<H: ClusterHost> {
    host: Arc<H>,
    me: LinkIdentity,
    tx: Sender<Incoming>,
    rx: Receiver<Incoming>,
    plane: ControlPlane,
    links: HashMap<LinkId, Link>,
    next_link: LinkId,
    /// A data link just dialed, until the plane says whether a worker adopts it.
    dialed_data: Option<((u16, u16), Established)>,
    /// Commands a full worker queue refused, retried every tick in order (bounded by the
    /// connections and links they name).
    backlog: VecDeque<(usize, Command)>,
    clock: Instant,
}

impl<H: ClusterHost> Driver<H> {
    fn new(
        host: Arc<H>,
        me: LinkIdentity,
        cfg: ControlConfig,
        tx: Sender<Incoming>,
        rx: Receiver<Incoming>,
    ) -> Self {
        Driver {
            host,
            me,
            tx,
            rx,
            plane: ControlPlane::new(cfg, 0),
            links: HashMap::new(),
            next_link: 1,
            dialed_data: None,
            backlog: VecDeque::new(),
            clock: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn run(mut self) {
        while !self.host.stopping() {
            match self.rx.recv_timeout(TICK) {
                Ok(incoming) => self.on_incoming(incoming),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for _ in 0..INPUTS_PER_ROUND_MAX {
                match self.rx.try_recv() {
                    Ok(incoming) => self.on_incoming(incoming),
                    Err(_) => break,
                }
            }
            self.on_tick();
        }
        for link in self.links.values() {
            let _ = link.stream.shutdown(Shutdown::Both);
        }
    }

    fn feed(&mut self, input: Input) {
        let now = self.now_ms();
        let host = Arc::clone(&self.host);
        self.plane
            .on_input(now, input, host.tables(), host.epochs());
        self.carry_out();
    }

    fn on_incoming(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::Accepted(est) => self.adopt_control(est, LinkOrigin::Accepted),
            Incoming::Dialed { addr, seed, result } => match result {
                Ok(est) => self.adopt_control(est, LinkOrigin::Dialed { addr, seed }),
                Err(e) => {
                    tracing::debug!(%addr, "cluster dial failed: {e}");
                    if e.is_bad_secret() {
                        tracing::warn!(%addr, "cluster link refused: {e}");
                    }
                    self.feed(Input::DialFailed { addr });
                }
            },
            Incoming::DataDialed {
                node,
                worker,
                result,
            } => {
                let result = match result {
                    Ok(est) => {
                        let peer = est.peer.node_id;
                        self.dialed_data = Some(((node, worker), est));
                        Ok(peer)
                    }
                    Err(e) => Err(e.to_string()),
                };
                self.feed(Input::DataLinkDialed {
                    node,
                    worker,
                    result,
                });
                // Not adopted: dropping the socket closes it.
                self.dialed_data = None;
            }
            Incoming::Msg { link, msg } => self.feed(Input::Message { link, msg }),
            Incoming::LinkDown { link, why } => {
                if let Some(l) = self.links.remove(&link) {
                    let _ = l.stream.shutdown(Shutdown::Both);
                    tracing::debug!(node = l.node, link, "control link closed: {why}");
                }
                self.feed(Input::LinkDown { link });
            }
        }
    }

    /// Starts the reader and writer of a new control link, then tells the plane. A link that
    /// cannot be served counts as a failed dial (so the peer is dialed again).
    fn adopt_control(&mut self, est: Established, origin: LinkOrigin) {
        let link = self.next_link;
        self.next_link += 1;
        let node = est.peer.node_id;
        let peer = PeerIdentity {
            node_id: node,
            incarnation: est.peer.incarnation,
            advertise: est.peer.advertise.clone(),
        };
        let stream = est.stream.socket().try_clone();
        match stream.and_then(|stream| Ok((self.spawn_link_threads(link, node, est)?, stream))) {
            Ok((writer, stream)) => {
                self.links.insert(
                    link,
                    Link {
                        node,
                        stream,
                        writer,
                    },
                );
                self.feed(Input::LinkUp { link, peer, origin });
            }
            Err(e) => {
                // The threads that were spawned end with the stream (dropped, so closed).
                tracing::warn!(node, "cannot serve a control link: {e}");
                if let LinkOrigin::Dialed { addr, .. } = origin {
                    self.feed(Input::DialFailed { addr });
                }
            }
        }
    }

    fn spawn_link_threads(
        &self,
        link: LinkId,
        node: u16,
        est: Established,
    ) -> std::io::Result<Sender<Vec<u8>>> {
        let (reader_stream, writer_stream) = est.stream.split()?;
        let (wtx, wrx) = bounded::<Vec<u8>>(WRITER_QUEUE_MAX);
        let tx = self.tx.clone();
        let leftover = est.leftover;
        std::thread::Builder::new()
            .name(format!("ringrelay-link{node}-r"))
            .spawn_logged(move || read_loop(link, reader_stream, leftover, tx))?;
        // If the writer cannot start, the caller shuts the stream down and the reader ends.
        std::thread::Builder::new()
            .name(format!("ringrelay-link{node}-w"))
            .spawn_logged(move || write_loop(writer_stream, wrx))?;
        Ok(wtx)
    }

    fn on_tick(&mut self) {
        let host = Arc::clone(&self.host);
        let lane = host.lane();
        if lane.events_overflowed.swap(false, Ordering::AcqRel) {
            // What is still queued is stale next to the full resync: drop it.
            while lane.events.pop().is_some() {}
            self.feed(Input::EventsOverflowed);
        } else {
            let now = self.now_ms();
            while let Some(event) = lane.events.pop() {
                self.plane
                    .on_input(now, Input::Worker(event), host.tables(), host.epochs());
            }
        }
        self.plane.on_tick(self.now_ms(), host.tables());
        self.carry_out();
        while let Some((worker, command)) = self.backlog.pop_front() {
            if let Some(command) = push_command(&*host, worker, command) {
                self.backlog.push_front((worker, command));
                break;
            }
        }
    }

    /// Carries out every queued output of the plane, in order.
    fn carry_out(&mut self) {
        while let Some(output) = self.plane.poll_output() {
            match output {
                Output::Send { link, msg } => self.send(link, msg),
                Output::CloseLink { link } => {
                    if let Some(l) = self.links.get(&link) {
                        let _ = l.stream.shutdown(Shutdown::Both);
                    }
                }
                Output::DialControl { addr, seed } => self.spawn_control_dial(addr, seed),
                Output::DialData { node, worker, addr } => self.spawn_data_dial(node, worker, addr),
                Output::AdoptDataLink { node, worker } => self.adopt_data_link(node, worker),
                Output::ToWorker { worker, command } => self.command(worker, command),
                Output::Ready => {
                    self.host.lane().ready.store(true, Ordering::Release);
                    self.host.wake_all_workers();
                }
                Output::Members(members) => self.host.publish_members(members),
            }
        }
    }

    fn send(&mut self, link: LinkId, msg: super::wire::ControlMsg) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let mut out = Vec::new();
        encode_link(&LinkMsg::Control(msg), &mut out);
        match l.writer.try_send(out) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    node = l.node,
                    "control link stuck (peer not reading): closing it"
                );
                let _ = l.stream.shutdown(Shutdown::Both);
            }
        }
    }

    fn adopt_data_link(&mut self, node: u16, worker: u16) {
        let Some((key, est)) = self.dialed_data.take() else {
            return;
        };
        if key != (node, worker) {
            return;
        }
        let Some(command) = data_link_command(est, true) else {
            return;
        };
        // Like the other commands: a full queue keeps it in the backlog, never drops it.
        self.push(worker as usize, command);
    }

    fn command(&mut self, worker: u16, command: WorkerCommand) {
        let command = match command {
            WorkerCommand::Presence {
                to,
                client_id,
                online,
            } => {
                let mut bytes = Vec::new();
                let frame = Frame::Presence {
                    client_id: &client_id,
                    online,
                };
                if frame.encode(&mut bytes).is_err() {
                    return;
                }
                Command::Frame { to, bytes }
            }
            WorkerCommand::CloseClient { to, reason } => Command::Close { to, reason },
            WorkerCommand::CloseLinks { node } => Command::CloseLinks { node },
        };
        self.push(worker as usize, command);
    }

    /// Queues a command behind any backlog (commands keep their order).
    fn push(&mut self, worker: usize, command: Command) {
        if !self.backlog.is_empty() {
            self.backlog.push_back((worker, command));
        } else if let Some(command) = push_command(&*self.host, worker, command) {
            self.backlog.push_back((worker, command));
        }
    }

    fn spawn_control_dial(&mut self, addr: String, seed: bool) {
        let (me, tx, dial_addr) = (self.me.clone(), self.tx.clone(), addr.clone());
        let spawned = std::thread::Builder::new()
            .name("ringrelay-dial".into())
            .spawn_logged(move || {
                let result = dial(&dial_addr, Lane::Control, 0, &me);
                let _ = tx.send(Incoming::Dialed {
                    addr: dial_addr,
                    seed,
                    result,
                });
            });
        if let Err(e) = spawned {
            // Without this the plane would wait for the dial's answer forever.
            tracing::warn!(%addr, "cannot spawn a dial thread: {e}");
            self.feed(Input::DialFailed { addr });
        }
    }

    fn spawn_data_dial(&mut self, node: u16, worker: u16, addr: String) {
        let (me, tx) = (self.me.clone(), self.tx.clone());
        let spawned = std::thread::Builder::new()
            .name("ringrelay-dial".into())
            .spawn_logged(move || {
                let result = dial(&addr, Lane::Data, worker, &me);
                let _ = tx.send(Incoming::DataDialed {
                    node,
                    worker,
                    result,
                });
            });
        if let Err(e) = spawned {
            let result = Err(format!("cannot spawn a dial thread: {e}"));
            self.feed(Input::DataLinkDialed {
                node,
                worker,
                result,
            });
        }
    }
}

fn read_loop(link: LinkId, mut stream: LinkReader, leftover: Vec<u8>, tx: Sender<Incoming>) {
    let mut reader = MessageReader::new(leftover);
    let why = loop {
        match reader.next(&mut stream) {
            Ok(LinkMsg::Control(msg)) => {
                if tx.send(Incoming::Msg { link, msg }).is_err() {
                    break "node stopping".to_string();
                }
            }
            Ok(LinkMsg::Refuse(r)) => break format!("peer refused: {}", r.text),
            Ok(other) => break format!("unexpected {other:?} after the handshake"),
            Err(e) => break e.to_string(),
        }
    };
    let _ = stream.socket().shutdown(Shutdown::Both);
    let _ = tx.send(Incoming::LinkDown { link, why });
}

fn write_loop(mut stream: LinkWriter, rx: Receiver<Vec<u8>>) {
    while let Ok(bytes) = rx.recv() {
        if stream.send(&bytes).is_err() {
            let _ = stream.socket().shutdown(Shutdown::Both);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A host of plain fields: only the failure flag matters here.
    struct FakeHost {
        tables: Tables,
        epochs: EpochClock,
        lane: ControlLane,
        failed: AtomicBool,
    }

    impl ClusterHost for FakeHost {
        fn tables(&self) -> &Tables {
            &self.tables
        }
        fn epochs(&self) -> &EpochClock {
            &self.epochs
        }
        fn lane(&self) -> &ControlLane {
            &self.lane
        }
        fn wake_worker(&self, _: usize) {}
        fn wake_all_workers(&self) {}
        fn stopping(&self) -> bool {
            false
        }
        fn publish_members(&self, _: Vec<MemberStatus>) {}
        fn control_failed(&self) {
            self.failed.store(true, Ordering::Release);
        }
    }

    #[test]
    fn a_panicking_control_thread_is_reported_to_the_host_at_once() {
        let host = Arc::new(FakeHost {
            tables: Tables::for_node(1),
            epochs: EpochClock::new(),
            lane: ControlLane::new(1, true),
            failed: AtomicBool::new(false),
        });
        let h = Arc::clone(&host);
        let quiet = std::thread::spawn(move || drop(PanicReport(h)));
        assert!(quiet.join().is_ok());
        assert!(
            !host.failed.load(Ordering::Acquire),
            "a normal exit is no failure"
        );
        let h = Arc::clone(&host);
        let panicking = std::thread::spawn(move || {
            let _report = PanicReport(h);
            panic!("injected");
        });
        assert!(panicking.join().is_err());
        assert!(host.failed.load(Ordering::Acquire));
    }
}
