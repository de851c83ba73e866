//! The cluster control thread (I/O): drives [`Membership`] and [`Replica`] from link sockets
//! and timers, streams this node's rows and interest to its peers, and dials data links for
//! the workers.
//!
//! Threads: one control thread (all decisions, owns every piece of cluster state), one
//! acceptor (accepts and authenticates links; data links go straight to a worker), and per
//! control link one reader and one writer. Readers and dialers only pass messages to the
//! control thread over a bounded channel; the control thread never blocks on a socket (a
//! writer whose bounded queue is full means the peer stopped reading: the link is closed).
//!
//! Control traffic has its own TCP connection per peer and its own thread, so it never waits
//! behind forwarded data, however busy the data links and workers are.

use super::link_io::{accept, dial, Established, LinkIdentity, MessageReader};
use super::membership::{Action, LinkId, Membership, MembershipConfig, NewLink, PeerState};
use super::replica::{digest_of, interest_snapshot, Replica, Reply};
use super::wire::{
    encode_link, snapshot_chunks, ControlMsg, InterestChange, Lane, LinkMsg, Member, RowChange,
};
use crate::core::topics::TopicGroup;
use crate::core::{Location, Sink};
use crate::protocol::{CloseReason, ErrorCode, Frame};
use crate::server::control_lane::{Command, Event};
use crate::server::Shared;
use crossbeam::channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The control thread wakes at least this often (row batches, timers).
const TICK: Duration = Duration::from_millis(5);
/// Inputs queued for the control thread before readers block (backpressure onto TCP).
const INPUTS_MAX: usize = 64 * 1024;
/// Encoded messages queued for one control link's writer before the link is deemed stuck.
const WRITER_QUEUE_MAX: usize = 4096;
/// Rows per SNAPSHOT chunk and per ROWS batch message.
const ROWS_PER_MESSAGE: usize = 4096;
/// Handshakes in progress at once on the acceptor; more connections are closed at once.
const HANDSHAKES_MAX: usize = 64;
/// Pause before re-dialing a data link that failed.
const DATA_REDIAL_MS: u64 = 200;

enum Input {
    Accepted(Established),
    Dialed {
        addr: String,
        seed: bool,
        result: Result<Established, String>,
    },
    DataDialed {
        node: u16,
        worker: u16,
        result: Result<Established, String>,
    },
    Msg {
        link: LinkId,
        msg: ControlMsg,
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum DataLink {
    Dialing,
    Up,
    RetryAt(u64),
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
    /// Starts the acceptor on `listener` and the control thread.
    pub(crate) fn start(
        shared: Arc<Shared>,
        listener: TcpListener,
    ) -> std::io::Result<ClusterNode> {
        let cfg = &shared.config;
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
        };
        let (tx, rx) = bounded(INPUTS_MAX);
        let wake = listener.try_clone()?;
        let acceptor = {
            let (shared, me, tx) = (Arc::clone(&shared), me.clone(), tx.clone());
            std::thread::Builder::new()
                .name("ringrelay-accept".into())
                .spawn(move || accept_loop(listener, shared, me, tx))?
        };
        let control = std::thread::Builder::new()
            .name("ringrelay-cluster".into())
            .spawn(move || Control::new(shared, me, tx, rx).run())?;
        Ok(ClusterNode {
            control: Some(control),
            acceptor: Some(acceptor),
            wake: Some(wake),
        })
    }

    /// Joins the threads; the caller has set `shared.shutdown`.
    pub fn stop(&mut self) {
        // shutdown(2) acts on the socket, not the descriptor, so shutting down the duplicate
        // wakes the accept blocked on the original. Best effort, as before.
        if let Some(wake) = self.wake.take() {
            let _ = socket2::SockRef::from(&wake).shutdown(Shutdown::Both);
        }
        if let Some(t) = self.control.take() {
            let _ = t.join();
        }
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, me: LinkIdentity, tx: Sender<Input>) {
    let in_progress = Arc::new(AtomicUsize::new(0));
    while !shared.shutdown.load(Ordering::Acquire) {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                if shared.shutdown.load(Ordering::Acquire) {
                    break;
                }
                tracing::warn!("cluster accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if in_progress.fetch_add(1, Ordering::AcqRel) >= HANDSHAKES_MAX {
            in_progress.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("too many link handshakes at once: connection dropped");
            continue;
        }
        let (shared, me, tx, in_progress) = (
            Arc::clone(&shared),
            me.clone(),
            tx.clone(),
            Arc::clone(&in_progress),
        );
        let spawned = std::thread::Builder::new()
            .name("ringrelay-handshake".into())
            .spawn(move || {
                let peer = stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                match accept(stream, &me) {
                    Ok(est) if est.peer.lane == Lane::Data => hand_data_link(&shared, est, false),
                    Ok(est) => {
                        let _ = tx.send(Input::Accepted(est));
                    }
                    Err(e) => tracing::warn!(%peer, "refused cluster link: {e}"),
                }
                in_progress.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            tracing::warn!("cannot spawn a handshake thread");
        }
    }
}

/// Gives an authenticated data-link socket to a worker: outbound links to the worker that
/// dialed them, inbound ones spread by the sending worker's index.
fn hand_data_link(shared: &Shared, est: Established, outbound: bool) {
    let workers = shared.lane.commands.len();
    let worker = est.peer.worker as usize % workers;
    let fd = OwnedFd::from(est.stream);
    push_command(
        shared,
        worker,
        Command::AdoptLink {
            fd,
            node: est.peer.node_id,
            outbound,
        },
    );
}

fn push_command(shared: &Shared, worker: usize, command: Command) -> Option<Command> {
    let result = shared.lane.commands[worker].push(command);
    shared.mailboxes[worker].wake();
    result.err()
}

/// The control thread's [`Sink`]: presence frames and closes go to the owning worker.
struct CommandSink<'a> {
    shared: &'a Shared,
    backlog: &'a mut VecDeque<(usize, Command)>,
}

impl CommandSink<'_> {
    fn push(&mut self, worker: usize, command: Command) {
        if !self.backlog.is_empty() {
            self.backlog.push_back((worker, command));
        } else if let Some(command) = push_command(self.shared, worker, command) {
            self.backlog.push_back((worker, command));
        }
    }
}

impl Sink for CommandSink<'_> {
    fn deliver(&mut self, _: Location, _: &[u8], _: &[u8], _: &[u8]) {
        debug_assert!(false, "the control thread routes no messages");
    }
    fn presence(&mut self, to: Location, client_id: &[u8], online: bool) {
        let mut bytes = Vec::new();
        if (Frame::Presence { client_id, online })
            .encode(&mut bytes)
            .is_ok()
        {
            self.push(to.worker as usize, Command::Frame { to, bytes });
        }
    }
    fn close(&mut self, to: Location, reason: CloseReason, _text: &'static str) {
        self.push(to.worker as usize, Command::Close { to, reason });
    }
    fn error_to_origin(&mut self, _: ErrorCode, _: &[u8], _: &'static str) {}
    fn forward_send(&mut self, _: u16, _: &[u8], _: &[u8], _: &[u8]) {}
    fn forward_publish(&mut self, _: u16, _: &[u8], _: &[u8], _: &[u8], _: bool, _: &[u8]) {}
}

struct Control {
    shared: Arc<Shared>,
    me: LinkIdentity,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    membership: Membership,
    replica: Replica,
    links: HashMap<LinkId, Link>,
    next_link: LinkId,
    data_links: HashMap<(u16, u16), DataLink>,
    /// (topic, group) pairs peers were told this node has.
    advertised: HashSet<TopicGroup>,
    backlog: VecDeque<(usize, Command)>,
    clock: Instant,
    next_digest_ms: u64,
}

impl Control {
    fn new(shared: Arc<Shared>, me: LinkIdentity, tx: Sender<Input>, rx: Receiver<Input>) -> Self {
        let cfg = &shared.config;
        let mcfg = MembershipConfig {
            heartbeat_interval_ms: cfg.cluster_heartbeat_interval_ms,
            dead_after_ms: cfg.cluster_peer_dead_after_ms,
            ready_wait_ms: cfg.cluster_ready_wait_ms,
            backoff_min_ms: 100,
            backoff_max_ms: 1000,
        };
        let membership = Membership::new(me.node_id, &cfg.peers, mcfg, 0);
        Control {
            next_digest_ms: cfg.cluster_digest_interval_ms,
            shared,
            me,
            tx,
            rx,
            membership,
            replica: Replica::new(),
            links: HashMap::new(),
            next_link: 1,
            data_links: HashMap::new(),
            advertised: HashSet::new(),
            backlog: VecDeque::new(),
            clock: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn run(mut self) {
        while !self.shared.shutdown.load(Ordering::Acquire) {
            match self.rx.recv_timeout(TICK) {
                Ok(input) => self.on_input(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for _ in 0..1024 {
                match self.rx.try_recv() {
                    Ok(input) => self.on_input(input),
                    Err(_) => break,
                }
            }
            self.on_tick();
        }
        for link in self.links.values() {
            let _ = link.stream.shutdown(Shutdown::Both);
        }
    }

    fn sink(&mut self) -> CommandSink<'_> {
        CommandSink {
            shared: &self.shared,
            backlog: &mut self.backlog,
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now_ms();
        match input {
            Input::Accepted(est) => self.adopt_control(est, false, None),
            Input::Dialed { addr, seed, result } => match result {
                Ok(est) => self.adopt_control(est, true, seed.then_some(addr.as_str())),
                Err(e) => {
                    tracing::debug!(%addr, "cluster dial failed: {e}");
                    if e.contains("secret") {
                        tracing::warn!(%addr, "cluster link refused: {e}");
                    }
                    self.membership.on_dial_failed(&addr, now);
                }
            },
            Input::DataDialed {
                node,
                worker,
                result,
            } => match result {
                Ok(est) if self.membership.is_up(node) && est.peer.node_id == node => {
                    self.data_links.insert((node, worker), DataLink::Up);
                    hand_data_link_to(&self.shared, est, worker);
                }
                Ok(_) => {
                    self.data_links.remove(&(node, worker));
                }
                Err(e) => {
                    tracing::debug!(node, worker, "data link dial failed: {e}");
                    self.data_links
                        .insert((node, worker), DataLink::RetryAt(now + DATA_REDIAL_MS));
                }
            },
            Input::Msg { link, msg } => self.on_message(link, msg, now),
            Input::LinkDown { link, why } => {
                if let Some(l) = self.links.remove(&link) {
                    let _ = l.stream.shutdown(Shutdown::Both);
                    if self.membership.node_of(link).is_some() {
                        tracing::info!(node = l.node, "control link down: {why}");
                        self.replica.forget(l.node);
                    }
                }
                self.membership.on_link_down(link, now);
            }
        }
    }

    fn adopt_control(&mut self, est: Established, dialed: bool, seed: Option<&str>) {
        let now = self.now_ms();
        let link = self.next_link;
        self.next_link += 1;
        let node = est.peer.node_id;
        let Ok(reader_stream) = est.stream.try_clone() else {
            return;
        };
        let Ok(writer_stream) = est.stream.try_clone() else {
            return;
        };
        let (wtx, wrx) = bounded::<Vec<u8>>(WRITER_QUEUE_MAX);
        let tx = self.tx.clone();
        let leftover = est.leftover;
        let spawned_reader = std::thread::Builder::new()
            .name(format!("ringrelay-link{node}-r"))
            .spawn(move || read_loop(link, reader_stream, leftover, tx));
        let spawned_writer = std::thread::Builder::new()
            .name(format!("ringrelay-link{node}-w"))
            .spawn(move || write_loop(writer_stream, wrx));
        if spawned_reader.is_err() || spawned_writer.is_err() {
            let _ = est.stream.shutdown(Shutdown::Both);
            return;
        }
        self.links.insert(
            link,
            Link {
                node,
                stream: est.stream,
                writer: wtx,
            },
        );
        let actions = self.membership.on_link_up(
            NewLink {
                link,
                node,
                addr: &est.peer.advertise,
                incarnation: est.peer.incarnation,
                dialed_by_us: dialed,
                dialed_seed: seed,
            },
            now,
        );
        self.run_actions(actions);
    }

    fn on_message(&mut self, link: LinkId, msg: ControlMsg, now: u64) {
        if let ControlMsg::Members(members) = &msg {
            for m in members {
                self.membership.learn(m.node_id, &m.addr, now);
            }
        }
        // Messages from a link that lost to another one are ignored (the winner carries
        // the same state).
        let Some(node) = self.membership.node_of(link) else {
            return;
        };
        self.membership.on_heard(link, now);
        let shared = Arc::clone(&self.shared);
        let reply = {
            let mut sink = CommandSink {
                shared: &shared,
                backlog: &mut self.backlog,
            };
            self.replica
                .apply(&shared.tables, &shared.epochs, node, msg, &mut sink)
        };
        match reply {
            Reply::None => {}
            Reply::SnapshotComplete => {
                tracing::debug!(node, "snapshot from peer applied");
                self.membership.on_snapshot_received(node);
            }
            Reply::RequestSnapshot => {
                tracing::info!(node, "digest mismatch: asking for the peer's snapshot");
                self.send(link, &ControlMsg::SnapshotRequest);
            }
            Reply::SendSnapshot => self.send_snapshot(link),
            Reply::Violation(why) => {
                tracing::warn!(node, "closing control link: {why}");
                self.close_link(link);
            }
        }
    }

    fn run_actions(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Dial { addr, node } => self.spawn_dial(addr, node.is_none()),
                Action::LinkAdopted { link, node } => {
                    tracing::info!(node, "control link up");
                    self.send(link, &self.members_msg());
                    self.send_snapshot(link);
                    let interest = ControlMsg::Interest {
                        replace: true,
                        entries: self
                            .advertised
                            .iter()
                            .map(|(topic, group)| InterestChange {
                                present: true,
                                topic: topic.clone(),
                                group: group.clone(),
                            })
                            .collect(),
                    };
                    self.send(link, &interest);
                }
                Action::CloseLink { link } => self.close_link(link),
                Action::DeclareDead { node } => self.declare_dead(node),
                Action::Heartbeat => self.broadcast(&ControlMsg::Heartbeat),
                Action::Ready => {
                    tracing::info!(node = self.me.node_id, "cluster node ready");
                    self.shared.lane.ready.store(true, Ordering::Release);
                    for m in self.shared.mailboxes.iter() {
                        m.sleeping.store(true, Ordering::SeqCst);
                        m.wake();
                    }
                }
            }
        }
    }

    fn declare_dead(&mut self, node: u16) {
        let shared = Arc::clone(&self.shared);
        let purged = {
            let mut sink = CommandSink {
                shared: &shared,
                backlog: &mut self.backlog,
            };
            self.replica.purge_node(&shared.tables, node, &mut sink)
        };
        tracing::warn!(node, purged, "peer declared dead: its clients are offline");
        for w in 0..shared.lane.commands.len() {
            let mut sink = self.sink();
            sink.push(w, Command::CloseLinks { node });
        }
        self.data_links.retain(|(n, _), _| *n != node);
    }

    fn members_msg(&self) -> ControlMsg {
        let mut members = vec![Member {
            node_id: self.me.node_id,
            addr: self.me.advertise.clone(),
        }];
        members.extend(
            self.membership
                .peers()
                .iter()
                .filter(|p| p.state != PeerState::Dead)
                .map(|p| Member {
                    node_id: p.node,
                    addr: p.addr.clone(),
                }),
        );
        ControlMsg::Members(members)
    }

    fn send_snapshot(&mut self, link: LinkId) {
        let rows = self.shared.tables.locations.rows_of(self.me.node_id);
        for chunk in snapshot_chunks(&rows, ROWS_PER_MESSAGE) {
            self.send(link, &chunk);
        }
    }

    fn send(&mut self, link: LinkId, msg: &ControlMsg) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let mut out = Vec::new();
        encode_link(&LinkMsg::Control(msg.clone()), &mut out);
        match l.writer.try_send(out) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!(
                    node = l.node,
                    "control link stuck (peer not reading): closing it"
                );
                self.close_link(link);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn broadcast(&mut self, msg: &ControlMsg) {
        for (_, link) in self.membership.current_links() {
            self.send(link, msg);
        }
    }

    fn close_link(&mut self, link: LinkId) {
        if let Some(l) = self.links.get(&link) {
            let _ = l.stream.shutdown(Shutdown::Both);
        }
    }

    fn spawn_dial(&self, addr: String, seed: bool) {
        let (me, tx) = (self.me.clone(), self.tx.clone());
        let _ = std::thread::Builder::new()
            .name("ringrelay-dial".into())
            .spawn(move || {
                let result = dial(&addr, Lane::Control, 0, &me);
                let _ = tx.send(Input::Dialed { addr, seed, result });
            });
    }

    fn on_tick(&mut self) {
        let now = self.now_ms();
        self.stream_local_changes();
        let actions = self.membership.on_tick(now);
        self.run_actions(actions);
        self.maintain_data_links(now);
        if now >= self.next_digest_ms {
            self.next_digest_ms = now + self.shared.config.cluster_digest_interval_ms;
            let (rows, hash) = digest_of(&self.shared.tables, self.me.node_id);
            self.broadcast(&ControlMsg::Digest { rows, hash });
            let members = self.members_msg();
            self.broadcast(&members);
        }
        while let Some((worker, command)) = self.backlog.pop_front() {
            if let Some(command) = push_command(&self.shared, worker, command) {
                self.backlog.push_front((worker, command));
                break;
            }
        }
        self.publish_status();
    }

    /// Drains the workers' events and streams them to every peer in batches.
    fn stream_local_changes(&mut self) {
        let shared = Arc::clone(&self.shared);
        if shared.lane.events_overflowed.swap(false, Ordering::AcqRel) {
            tracing::warn!("control event queue overflowed: re-sending full snapshots");
            while shared.lane.events.pop().is_some() {}
            self.advertised = shared.tables.topics.interest().into_iter().collect();
            for (_, link) in self.membership.current_links() {
                self.send_snapshot(link);
                self.send(link, &interest_snapshot(&shared.tables));
            }
            return;
        }
        let mut rows = Vec::new();
        let mut interest = Vec::new();
        let mut lost = Vec::new();
        while let Some(event) = shared.lane.events.pop() {
            match event {
                Event::Registered { id, epoch } => rows.push(RowChange::Upsert { id, epoch }),
                Event::Unregistered { id, epoch } => rows.push(RowChange::Remove { id, epoch }),
                Event::InterestChanged { topic, group } => {
                    let present = shared.tables.topics.has_subscribers(&topic, &group);
                    let key = (topic, group);
                    let changed = if present {
                        self.advertised.insert(key.clone())
                    } else {
                        self.advertised.remove(&key)
                    };
                    if changed {
                        interest.push(InterestChange {
                            present,
                            topic: key.0,
                            group: key.1,
                        });
                    }
                }
                Event::LinkLost { node, worker } => lost.push((node, worker)),
            }
            if rows.len() >= ROWS_PER_MESSAGE {
                self.broadcast(&ControlMsg::Rows(std::mem::take(&mut rows)));
            }
        }
        if !rows.is_empty() {
            self.broadcast(&ControlMsg::Rows(rows));
        }
        if !interest.is_empty() {
            self.broadcast(&ControlMsg::Interest {
                replace: false,
                entries: interest,
            });
        }
        let now = self.now_ms();
        for key in lost {
            self.data_links
                .insert(key, DataLink::RetryAt(now + DATA_REDIAL_MS));
        }
    }

    /// Every up peer gets one outbound data link per local worker.
    fn maintain_data_links(&mut self, now: u64) {
        let workers = self.shared.lane.commands.len() as u16;
        let up: Vec<(u16, String)> = self
            .membership
            .peers()
            .iter()
            .filter(|p| p.state == PeerState::Up)
            .map(|p| (p.node, p.addr.clone()))
            .collect();
        for (node, addr) in up {
            for worker in 0..workers {
                let due = match self.data_links.get(&(node, worker)) {
                    None => true,
                    Some(DataLink::RetryAt(t)) => now >= *t,
                    Some(_) => false,
                };
                if !due {
                    continue;
                }
                self.data_links.insert((node, worker), DataLink::Dialing);
                let (me, tx, addr) = (self.me.clone(), self.tx.clone(), addr.clone());
                let _ = std::thread::Builder::new()
                    .name("ringrelay-dial".into())
                    .spawn(move || {
                        let result = dial(&addr, Lane::Data, worker, &me);
                        let _ = tx.send(Input::DataDialed {
                            node,
                            worker,
                            result,
                        });
                    });
            }
        }
    }

    fn publish_status(&self) {
        let status: Vec<MemberStatus> = self
            .membership
            .peers()
            .iter()
            .map(|p| MemberStatus {
                node_id: p.node,
                addr: p.addr.clone(),
                state: p.state.name(),
            })
            .collect();
        if let Ok(mut s) = self.shared.cluster_status.lock() {
            if *s != status {
                *s = status;
            }
        }
    }
}

/// One peer as `/cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub node_id: u16,
    pub addr: String,
    pub state: &'static str,
}

fn hand_data_link_to(shared: &Shared, est: Established, worker: u16) {
    let node = est.peer.node_id;
    let fd = OwnedFd::from(est.stream);
    let _ = push_command(
        shared,
        worker as usize,
        Command::AdoptLink {
            fd,
            node,
            outbound: true,
        },
    );
}

fn read_loop(link: LinkId, mut stream: TcpStream, leftover: Vec<u8>, tx: Sender<Input>) {
    let mut reader = MessageReader::new(leftover);
    let why = loop {
        match reader.next(&mut stream) {
            Ok(LinkMsg::Control(msg)) => {
                if tx.send(Input::Msg { link, msg }).is_err() {
                    break "node stopping".to_string();
                }
            }
            Ok(LinkMsg::Refuse(r)) => break format!("peer refused: {}", r.text),
            Ok(other) => break format!("unexpected {other:?} after the handshake"),
            Err(e) => break e,
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let _ = tx.send(Input::LinkDown { link, why });
}

fn write_loop(mut stream: TcpStream, rx: Receiver<Vec<u8>>) {
    use std::io::Write;
    while let Ok(bytes) = rx.recv() {
        if stream.write_all(&bytes).is_err() {
            let _ = stream.shutdown(Shutdown::Both);
            break;
        }
    }
}
