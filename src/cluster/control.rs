//! The cluster control plane (sans-IO): every decision of a node's control thread, fed with
//! inputs and the current time, answering with outputs that an I/O driver carries out
//! (quinn-proto style). No sockets, threads, clocks or channels: the driver
//! ([`super::node`]) reads sockets and timers, the deterministic simulator
//! (`tests/cluster_sim`) feeds a simulated network.
//!
//! Use: `on_input(now_ms, input)` for each thing that happened, `on_tick(now_ms)` at least
//! every few milliseconds (row batches, heartbeats, death, dials, digests), and after each
//! call drain [`ControlPlane::poll_output`] until it returns `None`. Outputs are queued in
//! order; the queue holds at most what one input or tick produced (for a snapshot, one
//! message per `rows_per_message` rows), so its bound is the driver's to keep by draining.
//!
//! The plane writes to the node's shared [`Tables`] (peers' rows and interest) and observes
//! epochs on the [`EpochClock`]: both are plain lock-free data shared with the workers, not
//! I/O. It never reads the wall clock: epochs of local registrations are made by the workers
//! (or the simulator) from the wall time they are given.

#![forbid(unsafe_code)]

use super::lane::Event;
use super::membership::{Action, LinkId, Membership, MembershipConfig, NewLink, PeerState};
use super::replica::{digest_of, interest_snapshot, Replica, Reply};
use super::wire::{
    interest_chunks, snapshot_chunks, ControlMsg, InterestChange, Member, RowChange,
    INTEREST_ENTRIES_PER_MESSAGE,
};
use crate::config::Config;
use crate::core::topics::TopicGroup;
use crate::core::{EpochClock, Location, Sink, Tables};
use crate::protocol::{CloseReason, ErrorCode, Message};
use std::collections::{HashMap, HashSet, VecDeque};

/// Rows per SNAPSHOT chunk and per ROWS batch message (a 4096-row chunk stays far below the
/// control frame limit at the longest ids).
pub const ROWS_PER_MESSAGE: usize = 4096;
/// Pause before re-dialing a data link that failed (a refused peer is not hammered).
pub const DATA_REDIAL_MS: u64 = 200;
/// Control-link dial backoff: first retry after this long, doubling...
pub const BACKOFF_MIN_MS: u64 = 100;
/// ...up to this (the README's "links come back within about 1 s").
pub const BACKOFF_MAX_MS: u64 = 1000;

/// Settings of one node's control plane.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub node_id: u16,
    /// The address peers dial for this node's control and data links.
    pub advertise: String,
    /// Seed addresses to dial before any member is known.
    pub seeds: Vec<String>,
    /// Local workers: one outbound data link per worker and peer.
    pub workers: u16,
    pub heartbeat_interval_ms: u64,
    pub dead_after_ms: u64,
    pub ready_wait_ms: u64,
    pub digest_interval_ms: u64,
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    pub data_redial_ms: u64,
    pub rows_per_message: usize,
    /// Nodes the cluster may have, this one included (`cluster_nodes_max`).
    pub nodes_max: usize,
}

impl ControlConfig {
    /// The relay's settings, with the built-in backoff, redial pause and batch size.
    pub fn from_config(cfg: &Config, advertise: String, workers: u16) -> ControlConfig {
        ControlConfig {
            node_id: cfg.node_id,
            advertise,
            seeds: cfg.peers.clone(),
            workers,
            heartbeat_interval_ms: cfg.cluster_heartbeat_interval_ms,
            dead_after_ms: cfg.cluster_peer_dead_after_ms,
            ready_wait_ms: cfg.cluster_ready_wait_ms,
            digest_interval_ms: cfg.cluster_digest_interval_ms,
            backoff_min_ms: BACKOFF_MIN_MS,
            backoff_max_ms: BACKOFF_MAX_MS,
            data_redial_ms: DATA_REDIAL_MS,
            rows_per_message: ROWS_PER_MESSAGE,
            nodes_max: cfg.cluster_nodes_max,
        }
    }
}

/// Who is at the other end of an authenticated control link (from its LINK_HELLO).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    pub node_id: u16,
    pub incarnation: u64,
    /// The address the peer advertises.
    pub advertise: String,
}

/// How a control link came to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkOrigin {
    /// The peer dialed us.
    Accepted,
    /// We dialed `addr` (after an [`Output::DialControl`]); `seed` as that output said.
    Dialed { addr: String, seed: bool },
}

/// Something that happened, for [`ControlPlane::on_input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A control link passed its handshake. `link` is chosen by the driver, unique for the
    /// life of the plane.
    LinkUp {
        link: LinkId,
        peer: PeerIdentity,
        origin: LinkOrigin,
    },
    /// A control dial to `addr` failed (refused, timed out, bad secret, or could not start).
    DialFailed { addr: String },
    /// The data-link dial of (node, worker) ended: the peer's node id, or why it failed.
    DataLinkDialed {
        node: u16,
        worker: u16,
        result: Result<u16, String>,
    },
    /// A decoded control message arrived on `link`.
    Message { link: LinkId, msg: ControlMsg },
    /// `link` closed (EOF, error, or closed by us).
    LinkDown { link: LinkId },
    /// A worker's event, in the order the workers emitted them.
    Worker(Event),
    /// The workers' event queue overflowed: events were lost (the driver drops what is
    /// left queued); the plane resends its full state.
    EventsOverflowed,
}

/// What a worker must do (the driver turns these into the lane's commands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerCommand {
    /// Send a PRESENCE frame to the local watcher at `to`.
    Presence {
        to: Location,
        client_id: Box<[u8]>,
        online: bool,
    },
    /// Close the local client at `to` (a newer registration of its id won elsewhere).
    CloseClient { to: Location, reason: CloseReason },
    /// Close every data link to or from `node` (it is dead).
    CloseLinks { node: u16 },
}

/// What the driver must do, from [`ControlPlane::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Encode and write `msg` on `link` (a full writer queue means the peer stopped reading:
    /// close the link).
    Send { link: LinkId, msg: ControlMsg },
    /// Close `link`; its [`Input::LinkDown`] follows once the driver sees it closed.
    CloseLink { link: LinkId },
    /// Dial `addr` for a control link; answer with [`Input::LinkUp`] or [`Input::DialFailed`].
    DialControl { addr: String, seed: bool },
    /// Dial a data link for local `worker` to `node` at `addr`; answer with
    /// [`Input::DataLinkDialed`].
    DialData {
        node: u16,
        worker: u16,
        addr: String,
    },
    /// Hand the data link just dialed for (node, worker) to that worker, as its outbound link.
    /// A dialed link that gets no such output is closed by the driver.
    AdoptDataLink { node: u16, worker: u16 },
    /// A command for local `worker`.
    ToWorker { worker: u16, command: WorkerCommand },
    /// The node holds its peers' snapshots: clients may be welcomed (once).
    Ready,
    /// The peers' states changed (for `/cluster` and metrics).
    Members(Vec<MemberStatus>),
}

/// One peer as `/cluster` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub node_id: u16,
    pub addr: String,
    pub state: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DataLink {
    Dialing,
    Up,
    RetryAt(u64),
}

/// One node's control plane; see the module doc.
pub struct ControlPlane {
    cfg: ControlConfig,
    membership: Membership,
    replica: Replica,
    /// Outbound data link of each (peer node, local worker).
    data_links: HashMap<(u16, u16), DataLink>,
    /// (topic, group) pairs peers were told this node has.
    advertised: HashSet<TopicGroup>,
    /// Local row changes not yet sent (flushed every tick, or at `rows_per_message`).
    pending_rows: Vec<RowChange>,
    /// Local interest flips not yet sent (flushed every tick).
    pending_interest: Vec<InterestChange>,
    next_digest_ms: u64,
    /// Last status given out, so [`Output::Members`] only comes on a change.
    status: Vec<MemberStatus>,
    out: VecDeque<Output>,
    /// When membership became ready (every snapshot in); `None` before.
    membership_ready_ms: Option<u64>,
    /// [`Output::Ready`] was given: the node welcomes clients (for good).
    ready: bool,
}

/// The plane's [`Sink`]: presence and closes become worker commands.
struct OutSink<'a>(&'a mut VecDeque<Output>);

impl Sink for OutSink<'_> {
    fn deliver(&mut self, _: Location, _: &Message<'_>) {
        debug_assert!(false, "the control plane routes no messages");
    }
    fn presence(&mut self, to: Location, client_id: &[u8], online: bool) {
        let command = WorkerCommand::Presence {
            to,
            client_id: client_id.into(),
            online,
        };
        self.0.push_back(Output::ToWorker {
            worker: to.worker,
            command,
        });
    }
    fn close(&mut self, to: Location, reason: CloseReason, _text: &'static str) {
        let command = WorkerCommand::CloseClient { to, reason };
        self.0.push_back(Output::ToWorker {
            worker: to.worker,
            command,
        });
    }
    fn error_to_origin(&mut self, _: ErrorCode, _: &[u8], _: &'static str) {}
    fn forward_send(&mut self, _: u16, _: &[u8], _: &Message<'_>) {}
    fn forward_publish(&mut self, _: u16, _: &Message<'_>, _: &[u8], _: bool) {}
}

impl ControlPlane {
    /// A plane started at `now_ms` (readiness waits count from here).
    pub fn new(cfg: ControlConfig, now_ms: u64) -> ControlPlane {
        let mcfg = MembershipConfig {
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            dead_after_ms: cfg.dead_after_ms,
            ready_wait_ms: cfg.ready_wait_ms,
            backoff_min_ms: cfg.backoff_min_ms,
            backoff_max_ms: cfg.backoff_max_ms,
            nodes_max: cfg.nodes_max,
        };
        ControlPlane {
            membership: Membership::new(cfg.node_id, &cfg.seeds, mcfg, now_ms),
            next_digest_ms: now_ms + cfg.digest_interval_ms,
            cfg,
            replica: Replica::new(),
            data_links: HashMap::new(),
            advertised: HashSet::new(),
            pending_rows: Vec::new(),
            pending_interest: Vec::new(),
            status: Vec::new(),
            out: VecDeque::new(),
            membership_ready_ms: None,
            ready: false,
        }
    }

    pub fn node_id(&self) -> u16 {
        self.cfg.node_id
    }

    /// Whether the node became ready (it stays so).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Ready once membership is (every peer's snapshot is in) and this node's data links to
    /// every peer that is up are adopted, so a client welcomed now reaches every remote id at
    /// once; or `ready_wait_ms` after membership was ready, if some data link will not come.
    fn become_ready_when_linked(&mut self, now_ms: u64) {
        let Some(since_ms) = self.membership_ready_ms else {
            return;
        };
        if self.ready {
            return;
        }
        let linked = self
            .membership
            .peers()
            .iter()
            .filter(|p| p.state == PeerState::Up)
            .all(|p| {
                (0..self.cfg.workers)
                    .all(|w| matches!(self.data_links.get(&(p.node, w)), Some(DataLink::Up)))
            });
        let waited_out = now_ms >= since_ms.saturating_add(self.cfg.ready_wait_ms);
        if linked || waited_out {
            self.ready = true;
            tracing::info!(node = self.cfg.node_id, linked, "cluster node ready");
            self.out.push_back(Output::Ready);
        }
    }

    /// The peers as membership sees them.
    pub fn peers(&self) -> &[super::membership::Peer] {
        self.membership.peers()
    }

    /// The next thing to do, in order; `None` when the queue is empty.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Applies one input at `now_ms`.
    pub fn on_input(&mut self, now_ms: u64, input: Input, tables: &Tables, epochs: &EpochClock) {
        match input {
            Input::LinkUp { link, peer, origin } => {
                self.on_link_up(link, &peer, &origin, tables, now_ms)
            }
            Input::DialFailed { addr } => self.membership.on_dial_failed(&addr, now_ms),
            Input::DataLinkDialed {
                node,
                worker,
                result,
            } => self.on_data_dialed(node, worker, result, now_ms),
            Input::Message { link, msg } => self.on_message(link, msg, tables, epochs, now_ms),
            Input::LinkDown { link } => {
                if let Some(node) = self.membership.node_of(link) {
                    tracing::info!(node, "control link down");
                    self.replica.forget(node);
                }
                self.membership.on_link_down(link, now_ms);
            }
            Input::Worker(event) => self.on_worker_event(event, tables, now_ms),
            Input::EventsOverflowed => self.resync(tables, now_ms),
        }
    }

    /// Timers: streams local changes, heartbeats, death, dials, digests, status.
    pub fn on_tick(&mut self, now_ms: u64, tables: &Tables) {
        self.flush_local_changes();
        let actions = self.membership.on_tick(now_ms);
        if actions.contains(&Action::Ready) {
            self.membership_ready_ms = Some(now_ms);
        }
        self.run_actions(actions, tables);
        self.maintain_data_links(now_ms);
        self.become_ready_when_linked(now_ms);
        if now_ms >= self.next_digest_ms {
            self.next_digest_ms = now_ms + self.cfg.digest_interval_ms;
            let (rows, hash) = digest_of(tables, self.cfg.node_id);
            self.broadcast(&ControlMsg::Digest { rows, hash });
            let members = self.members_msg();
            self.broadcast(&members);
        }
        self.publish_status();
    }

    fn on_link_up(
        &mut self,
        link: LinkId,
        peer: &PeerIdentity,
        origin: &LinkOrigin,
        tables: &Tables,
        now_ms: u64,
    ) {
        let (dialed_by_us, dialed_seed) = match origin {
            LinkOrigin::Accepted => (false, None),
            LinkOrigin::Dialed { addr, seed } => (true, seed.then_some(addr.as_str())),
        };
        let actions = self.membership.on_link_up(
            NewLink {
                link,
                node: peer.node_id,
                addr: &peer.advertise,
                incarnation: peer.incarnation,
                dialed_by_us,
                dialed_seed,
            },
            now_ms,
        );
        self.run_actions(actions, tables);
    }

    fn on_data_dialed(&mut self, node: u16, worker: u16, result: Result<u16, String>, now: u64) {
        match result {
            Ok(peer) if peer == node && self.membership.is_up(node) => {
                self.data_links.insert((node, worker), DataLink::Up);
                self.out.push_back(Output::AdoptDataLink { node, worker });
                self.become_ready_when_linked(now);
            }
            // The peer went down meanwhile, or another node answers at its address: dial
            // again on the next tick if it is (still) up.
            Ok(_) => {
                self.data_links.remove(&(node, worker));
            }
            Err(why) => {
                tracing::debug!(node, worker, "data link dial failed: {why}");
                let retry = DataLink::RetryAt(now + self.cfg.data_redial_ms);
                self.data_links.insert((node, worker), retry);
            }
        }
    }

    fn on_message(
        &mut self,
        link: LinkId,
        msg: ControlMsg,
        tables: &Tables,
        epochs: &EpochClock,
        now_ms: u64,
    ) {
        if let ControlMsg::Members(members) = &msg {
            for m in members {
                self.membership.learn(m.node_id, &m.addr, now_ms);
            }
        }
        // Messages from a link that lost to another one are ignored (the winner carries
        // the same state).
        let Some(node) = self.membership.node_of(link) else {
            return;
        };
        self.membership.on_heard(link, now_ms);
        let reply = self
            .replica
            .apply(tables, epochs, node, msg, &mut OutSink(&mut self.out));
        for (id, epoch) in self.replica.take_retracted() {
            self.pending_rows.push(RowChange::Remove { id, epoch });
        }
        match reply {
            Reply::None => {}
            Reply::SnapshotComplete => {
                tracing::debug!(node, "snapshot from peer applied");
                self.membership.on_snapshot_received(node);
            }
            Reply::RequestSnapshot => {
                tracing::info!(node, "digest mismatch: asking for the peer's snapshot");
                self.send(link, ControlMsg::SnapshotRequest);
            }
            Reply::SendSnapshot => self.send_snapshot(link, tables),
            Reply::Violation(why) => {
                tracing::warn!(node, "closing control link: {why}");
                self.out.push_back(Output::CloseLink { link });
            }
        }
    }

    fn on_worker_event(&mut self, event: Event, tables: &Tables, now_ms: u64) {
        match event {
            Event::Registered { id, epoch } => {
                self.pending_rows.push(RowChange::Upsert { id, epoch })
            }
            Event::Unregistered { id, epoch } => {
                self.pending_rows.push(RowChange::Remove { id, epoch })
            }
            Event::InterestChanged { topic, group } => {
                // The event only says "look": the tables hold the current state, and only a
                // change of what peers were told is sent.
                let present = tables.topics.has_subscribers(&topic, &group);
                let key = (topic, group);
                let changed = if present {
                    self.advertised.insert(key.clone())
                } else {
                    self.advertised.remove(&key)
                };
                if changed {
                    self.pending_interest.push(InterestChange {
                        present,
                        topic: key.0,
                        group: key.1,
                    });
                }
            }
            Event::LinkLost { node, worker } => {
                let retry = DataLink::RetryAt(now_ms + self.cfg.data_redial_ms);
                self.data_links.insert((node, worker), retry);
            }
        }
        if self.pending_rows.len() >= self.cfg.rows_per_message {
            let rows = std::mem::take(&mut self.pending_rows);
            self.broadcast(&ControlMsg::Rows(rows));
        }
    }

    /// Events were lost: every peer gets the full snapshot and interest again, and every
    /// data link is dialed again (a lost `LinkLost` would otherwise leave a worker without
    /// its link for good; the worker replaces an old link by a new one to the same node).
    fn resync(&mut self, tables: &Tables, now_ms: u64) {
        tracing::warn!("control event queue overflowed: re-sending full snapshots");
        // The snapshot below reads the tables, which already hold every pending change.
        self.pending_rows.clear();
        self.pending_interest.clear();
        self.advertised = tables.topics.interest().into_iter().collect();
        for (_, link) in self.membership.current_links() {
            self.send_snapshot(link, tables);
            for msg in interest_snapshot(tables) {
                self.send(link, msg);
            }
        }
        for state in self.data_links.values_mut() {
            if *state == DataLink::Up {
                *state = DataLink::RetryAt(now_ms);
            }
        }
    }

    fn flush_local_changes(&mut self) {
        if !self.pending_rows.is_empty() {
            let rows = std::mem::take(&mut self.pending_rows);
            self.broadcast(&ControlMsg::Rows(rows));
        }
        if !self.pending_interest.is_empty() {
            let entries = std::mem::take(&mut self.pending_interest);
            for msg in interest_chunks(entries, false, INTEREST_ENTRIES_PER_MESSAGE) {
                self.broadcast(&msg);
            }
        }
    }

    fn run_actions(&mut self, actions: Vec<Action>, tables: &Tables) {
        for action in actions {
            match action {
                Action::Dial { addr, node } => self.out.push_back(Output::DialControl {
                    addr,
                    seed: node.is_none(),
                }),
                Action::LinkAdopted { link, node } => {
                    tracing::info!(node, "control link up");
                    self.send(link, self.members_msg());
                    self.send_snapshot(link, tables);
                    let entries = self
                        .advertised
                        .iter()
                        .map(|(topic, group)| InterestChange {
                            present: true,
                            topic: topic.clone(),
                            group: group.clone(),
                        })
                        .collect();
                    for msg in interest_chunks(entries, true, INTEREST_ENTRIES_PER_MESSAGE) {
                        self.send(link, msg);
                    }
                }
                Action::CloseLink { link } => self.out.push_back(Output::CloseLink { link }),
                Action::DeclareDead { node } => self.declare_dead(node, tables),
                Action::Heartbeat => self.broadcast(&ControlMsg::Heartbeat),
                // Output::Ready waits for the data links (`become_ready_when_linked`).
                Action::Ready => {}
                Action::IdClash {
                    node,
                    kept,
                    refused,
                } => tracing::error!(
                    "two nodes claim node id {node}: {kept} (linked, kept) and {refused} \
                     (refused); every node of a cluster needs its own node_id"
                ),
            }
        }
    }

    fn declare_dead(&mut self, node: u16, tables: &Tables) {
        let purged = self
            .replica
            .purge_node(tables, node, &mut OutSink(&mut self.out));
        tracing::warn!(node, purged, "peer declared dead: its clients are offline");
        for worker in 0..self.cfg.workers {
            let command = WorkerCommand::CloseLinks { node };
            self.out.push_back(Output::ToWorker { worker, command });
        }
        self.data_links.retain(|(n, _), _| *n != node);
    }

    fn members_msg(&self) -> ControlMsg {
        let mut members = vec![Member {
            node_id: self.cfg.node_id,
            addr: self.cfg.advertise.clone(),
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

    fn send_snapshot(&mut self, link: LinkId, tables: &Tables) {
        let rows = tables.locations.rows_of(self.cfg.node_id);
        for msg in snapshot_chunks(&rows, self.cfg.rows_per_message) {
            self.out.push_back(Output::Send { link, msg });
        }
    }

    fn send(&mut self, link: LinkId, msg: ControlMsg) {
        self.out.push_back(Output::Send { link, msg });
    }

    fn broadcast(&mut self, msg: &ControlMsg) {
        for (_, link) in self.membership.current_links() {
            self.send(link, msg.clone());
        }
    }

    /// Every up peer gets one outbound data link per local worker.
    fn maintain_data_links(&mut self, now_ms: u64) {
        let up = self
            .membership
            .peers()
            .iter()
            .filter(|p| p.state == PeerState::Up);
        for p in up {
            for worker in 0..self.cfg.workers {
                let due = match self.data_links.get(&(p.node, worker)) {
                    None => true,
                    Some(DataLink::RetryAt(t)) => now_ms >= *t,
                    Some(_) => false,
                };
                if due {
                    self.data_links.insert((p.node, worker), DataLink::Dialing);
                    self.out.push_back(Output::DialData {
                        node: p.node,
                        worker,
                        addr: p.addr.clone(),
                    });
                }
            }
        }
    }

    fn publish_status(&mut self) {
        let peers = self.membership.peers();
        let same =
            self.status.len() == peers.len()
                && self.status.iter().zip(peers).all(|(s, p)| {
                    s.node_id == p.node && s.addr == p.addr && s.state == p.state.name()
                });
        if same {
            return;
        }
        self.status = peers
            .iter()
            .map(|p| MemberStatus {
                node_id: p.node,
                addr: p.addr.clone(),
                state: p.state.name(),
            })
            .collect();
        self.out.push_back(Output::Members(self.status.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Row;

    const HB_MS: u64 = 500;
    const DEAD_MS: u64 = 3000;
    const DIGEST_MS: u64 = 2000;

    fn cfg(node_id: u16, seeds: &[&str]) -> ControlConfig {
        ControlConfig {
            node_id,
            advertise: format!("n{node_id}"),
            seeds: seeds.iter().map(|s| s.to_string()).collect(),
            workers: 2,
            heartbeat_interval_ms: HB_MS,
            dead_after_ms: DEAD_MS,
            ready_wait_ms: 3000,
            digest_interval_ms: DIGEST_MS,
            backoff_min_ms: BACKOFF_MIN_MS,
            backoff_max_ms: BACKOFF_MAX_MS,
            data_redial_ms: DATA_REDIAL_MS,
            rows_per_message: 2,
            nodes_max: 16,
        }
    }

    /// One plane with its own tables, and the outputs it produced.
    struct Node {
        plane: ControlPlane,
        tables: Tables,
        epochs: EpochClock,
    }

    impl Node {
        fn new(node_id: u16, seeds: &[&str]) -> Node {
            Node {
                plane: ControlPlane::new(cfg(node_id, seeds), 0),
                tables: Tables::for_node(node_id),
                epochs: EpochClock::new(),
            }
        }
        fn input(&mut self, now: u64, input: Input) -> Vec<Output> {
            self.plane.on_input(now, input, &self.tables, &self.epochs);
            self.drain()
        }
        fn tick(&mut self, now: u64) -> Vec<Output> {
            self.plane.on_tick(now, &self.tables);
            self.drain()
        }
        fn drain(&mut self) -> Vec<Output> {
            std::iter::from_fn(|| self.plane.poll_output()).collect()
        }
        fn link_up(
            &mut self,
            now: u64,
            link: LinkId,
            node: u16,
            origin: LinkOrigin,
        ) -> Vec<Output> {
            let peer = PeerIdentity {
                node_id: node,
                incarnation: 7,
                advertise: format!("n{node}"),
            };
            self.input(now, Input::LinkUp { link, peer, origin })
        }
        fn msg(&mut self, now: u64, link: LinkId, msg: ControlMsg) -> Vec<Output> {
            self.input(now, Input::Message { link, msg })
        }
        /// A local client registered the way a worker does it.
        fn register(&mut self, id: &str, slot: u32, epoch: u64) -> Location {
            let at = Location {
                node: self.tables.node_id,
                worker: 0,
                slot,
                generation: 1,
            };
            self.tables.locations.register(
                id.as_bytes(),
                Row {
                    location: at,
                    epoch,
                },
            );
            let id = id.as_bytes().into();
            self.input(0, Input::Worker(Event::Registered { id, epoch }));
            at
        }
    }

    fn sent(outputs: &[Output], to: LinkId) -> Vec<ControlMsg> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Output::Send { link, msg } if *link == to => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    fn id(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    fn empty_snapshot() -> ControlMsg {
        ControlMsg::Snapshot {
            first: true,
            last: true,
            rows: vec![],
        }
    }

    #[test]
    fn link_up_exchanges_members_snapshot_and_interest() {
        let mut n = Node::new(1, &[]);
        n.register("a", 1, 10);
        let at = Location {
            node: 1,
            worker: 1,
            slot: 4,
            generation: 1,
        };
        n.tables.topics.subscribe(b"t", b"", at);
        let changed = Event::InterestChanged {
            topic: id("t"),
            group: id(""),
        };
        n.input(0, Input::Worker(changed));
        let out = n.link_up(5, 9, 2, LinkOrigin::Accepted);
        let msgs = sent(&out, 9);
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        let ControlMsg::Members(members) = &msgs[0] else {
            panic!("{msgs:?}")
        };
        assert_eq!((members[0].node_id, members[0].addr.as_str()), (1, "n1"));
        assert!(members.iter().any(|m| m.node_id == 2));
        assert_eq!(
            msgs[1],
            ControlMsg::Snapshot {
                first: true,
                last: true,
                rows: vec![(id("a"), 10)]
            }
        );
        let interest = ControlMsg::Interest {
            replace: true,
            entries: vec![InterestChange {
                present: true,
                topic: id("t"),
                group: id(""),
            }],
        };
        assert_eq!(msgs[2], interest);
        // The pending row batch goes out on the next tick, to the new link too.
        let out = n.tick(6);
        let rows = ControlMsg::Rows(vec![RowChange::Upsert {
            id: id("a"),
            epoch: 10,
        }]);
        assert!(sent(&out, 9).contains(&rows));
    }

    #[test]
    fn heartbeats_follow_the_interval_and_a_silent_peer_is_dead_after_the_bound() {
        let mut n = Node::new(1, &[]);
        n.link_up(0, 9, 2, LinkOrigin::Accepted);
        let mut beats = vec![];
        for now in (0..=2000).step_by(5) {
            if sent(&n.tick(now), 9).contains(&ControlMsg::Heartbeat) {
                beats.push(now);
            }
        }
        assert_eq!(beats, [0, 500, 1000, 1500, 2000]);
        // Heard at 2000: not dead at 4995, dead at 5000.
        n.msg(2000, 9, ControlMsg::Heartbeat);
        assert!(!n.tick(4995).contains(&Output::CloseLink { link: 9 }));
        assert!(n.tick(5000).contains(&Output::CloseLink { link: 9 }));
    }

    #[test]
    fn death_purges_rows_and_tells_watchers_offline() {
        let mut n = Node::new(1, &[]);
        let watcher = Location {
            node: 1,
            worker: 1,
            slot: 3,
            generation: 2,
        };
        n.tables.presence.watch(b"x", watcher);
        n.link_up(0, 9, 2, LinkOrigin::Accepted);
        let rows = ControlMsg::Rows(vec![RowChange::Upsert {
            id: id("x"),
            epoch: 50,
        }]);
        let out = n.msg(10, 9, rows);
        let online = WorkerCommand::Presence {
            to: watcher,
            client_id: id("x"),
            online: true,
        };
        assert_eq!(
            out,
            vec![Output::ToWorker {
                worker: 1,
                command: online
            }]
        );
        assert_eq!(n.tables.locations.len(), 1);
        let out = n.tick(10 + DEAD_MS);
        let offline = WorkerCommand::Presence {
            to: watcher,
            client_id: id("x"),
            online: false,
        };
        assert!(out.contains(&Output::ToWorker {
            worker: 1,
            command: offline
        }));
        for worker in 0..2 {
            let close = WorkerCommand::CloseLinks { node: 2 };
            assert!(out.contains(&Output::ToWorker {
                worker,
                command: close
            }));
        }
        assert!(n.tables.locations.is_empty());
        assert!(n.plane.peers().iter().all(|p| p.state == PeerState::Dead));
    }

    fn data_dials(out: &[Output]) -> Vec<(u16, u16)> {
        out.iter()
            .filter_map(|o| match o {
                Output::DialData { node, worker, .. } => Some((*node, *worker)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn data_links_are_dialed_per_worker_and_redialed_after_a_loss() {
        let mut n = Node::new(1, &[]);
        n.link_up(0, 9, 2, LinkOrigin::Accepted);
        assert_eq!(data_dials(&n.tick(1)), [(2, 0), (2, 1)]);
        assert!(data_dials(&n.tick(2)).is_empty(), "one dial at a time");
        let ok = Input::DataLinkDialed {
            node: 2,
            worker: 0,
            result: Ok(2),
        };
        assert_eq!(
            n.input(3, ok),
            [Output::AdoptDataLink { node: 2, worker: 0 }]
        );
        let failed = Input::DataLinkDialed {
            node: 2,
            worker: 1,
            result: Err("refused".into()),
        };
        assert!(n.input(3, failed).is_empty());
        let wrong = Input::DataLinkDialed {
            node: 2,
            worker: 1,
            result: Ok(3),
        };
        assert!(
            n.input(3, wrong).is_empty(),
            "another node answered: not adopted"
        );
        assert_eq!(data_dials(&n.tick(4)), [(2, 1)]);
        n.input(5, Input::Worker(Event::LinkLost { node: 2, worker: 0 }));
        assert!(
            data_dials(&n.tick(5 + DATA_REDIAL_MS - 1)).is_empty(),
            "pause first"
        );
        assert_eq!(data_dials(&n.tick(5 + DATA_REDIAL_MS)), [(2, 0)]);
    }

    #[test]
    fn ready_only_once_every_peer_sent_its_snapshot() {
        let mut n = Node::new(2, &["seed"]);
        let out = n.tick(0);
        let dial = Output::DialControl {
            addr: "seed".into(),
            seed: true,
        };
        assert!(out.contains(&dial), "{out:?}");
        let origin = LinkOrigin::Dialed {
            addr: "seed".into(),
            seed: true,
        };
        n.link_up(10, 1, 1, origin);
        let members = ControlMsg::Members(vec![
            Member {
                node_id: 1,
                addr: "n1".into(),
            },
            Member {
                node_id: 3,
                addr: "n3".into(),
            },
        ]);
        n.msg(11, 1, members);
        n.msg(12, 1, empty_snapshot());
        let out = n.tick(13);
        assert!(
            !out.contains(&Output::Ready),
            "node 3 was learnt and has not answered"
        );
        let dial3 = Output::DialControl {
            addr: "n3".into(),
            seed: false,
        };
        assert!(out.contains(&dial3), "{out:?}");
        let origin = LinkOrigin::Dialed {
            addr: "n3".into(),
            seed: false,
        };
        n.link_up(20, 2, 3, origin);
        n.msg(21, 2, empty_snapshot());
        // Every snapshot is in; WELCOME still waits for the data links to both peers.
        assert!(
            !n.tick(22).contains(&Output::Ready),
            "data links not up yet"
        );
        let mut outputs = Vec::new();
        for (node, worker) in [(1, 0), (1, 1), (3, 0), (3, 1)] {
            let dialed = Input::DataLinkDialed {
                node,
                worker,
                result: Ok(node),
            };
            outputs = n.input(23, dialed);
        }
        assert!(outputs.contains(&Output::Ready), "{outputs:?}");
        assert!(n.plane.is_ready());
        assert!(!n.tick(24).contains(&Output::Ready), "once");
    }

    #[test]
    fn ready_at_most_ready_wait_ms_after_the_snapshots_when_a_data_link_never_comes() {
        let mut n = Node::new(2, &["seed"]);
        n.tick(0);
        let origin = LinkOrigin::Dialed {
            addr: "seed".into(),
            seed: true,
        };
        n.link_up(10, 1, 1, origin);
        n.msg(12, 1, empty_snapshot());
        assert!(!n.tick(13).contains(&Output::Ready));
        let wait = n.plane.cfg.ready_wait_ms;
        // The peer stays alive (heard from), its data link never comes up.
        for t in (500..wait).step_by(500) {
            n.msg(13 + t, 1, ControlMsg::Heartbeat);
        }
        assert!(!n.tick(13 + wait - 1).contains(&Output::Ready));
        assert!(n.tick(13 + wait).contains(&Output::Ready));
    }

    #[test]
    fn events_overflow_resends_the_full_state_and_redials_data_links() {
        let mut n = Node::new(1, &[]);
        n.link_up(0, 9, 2, LinkOrigin::Accepted);
        n.tick(1);
        n.input(
            2,
            Input::DataLinkDialed {
                node: 2,
                worker: 0,
                result: Ok(2),
            },
        );
        n.input(
            2,
            Input::DataLinkDialed {
                node: 2,
                worker: 1,
                result: Ok(2),
            },
        );
        // Three rows are in the table; only one event made it through the queue.
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let at = Location {
                node: 1,
                worker: 0,
                slot: i as u32,
                generation: 1,
            };
            n.tables.locations.register(
                name.as_bytes(),
                Row {
                    location: at,
                    epoch: 5,
                },
            );
        }
        n.input(
            3,
            Input::Worker(Event::Registered {
                id: id("a"),
                epoch: 5,
            }),
        );
        let out = n.input(4, Input::EventsOverflowed);
        let msgs = sent(&out, 9);
        let mut rows = vec![];
        for m in &msgs {
            if let ControlMsg::Snapshot { rows: r, .. } = m {
                rows.extend(r.iter().map(|(i, _)| i.clone()));
            }
        }
        rows.sort();
        assert_eq!(rows, [id("a"), id("b"), id("c")], "a chunked full snapshot");
        assert!(matches!(
            msgs.last(),
            Some(ControlMsg::Interest { replace: true, .. })
        ));
        let out = n.tick(5);
        assert!(
            sent(&out, 9)
                .iter()
                .all(|m| !matches!(m, ControlMsg::Rows(_))),
            "superseded"
        );
        assert_eq!(data_dials(&out), [(2, 0), (2, 1)]);
    }

    #[test]
    fn digest_mismatch_asks_for_a_snapshot() {
        let mut n = Node::new(1, &[]);
        n.link_up(0, 9, 2, LinkOrigin::Accepted);
        n.msg(1, 9, empty_snapshot());
        assert!(sent(&n.msg(2, 9, ControlMsg::Digest { rows: 0, hash: 0 }), 9).is_empty());
        let out = n.msg(3, 9, ControlMsg::Digest { rows: 1, hash: 42 });
        assert_eq!(sent(&out, 9), [ControlMsg::SnapshotRequest]);
        // And the other way round: our own digest goes out every interval.
        let digests = |out: &[Output]| {
            sent(out, 9)
                .iter()
                .filter(|m| matches!(m, ControlMsg::Digest { .. }))
                .count()
        };
        assert_eq!(digests(&n.tick(DIGEST_MS - 1)), 0);
        assert_eq!(digests(&n.tick(DIGEST_MS)), 1);
        let out = n.msg(DIGEST_MS + 1, 9, ControlMsg::SnapshotRequest);
        assert!(matches!(sent(&out, 9)[..], [ControlMsg::Snapshot { .. }]));
    }

    /// Found by the simulator (seed 99): node 1's client lost its id to node 2's newer
    /// registration, which then left; node 3 got node 1's row after both of node 2's
    /// messages (links reorder) and kept it as a ghost, since node 1 never removed it.
    #[test]
    fn an_own_row_replaced_by_a_peer_is_retracted() {
        let mut n = Node::new(1, &[]);
        let at = n.register("c", 1, 10);
        n.link_up(0, 9, 2, LinkOrigin::Accepted);
        n.link_up(0, 8, 3, LinkOrigin::Accepted);
        n.tick(1);
        let newer = ControlMsg::Rows(vec![RowChange::Upsert {
            id: id("c"),
            epoch: 20,
        }]);
        let out = n.msg(2, 9, newer);
        let close = WorkerCommand::CloseClient {
            to: at,
            reason: CloseReason::REPLACED,
        };
        assert!(out.contains(&Output::ToWorker {
            worker: 0,
            command: close
        }));
        let remove = ControlMsg::Rows(vec![RowChange::Remove {
            id: id("c"),
            epoch: 10,
        }]);
        let out = n.tick(3);
        assert!(sent(&out, 8).contains(&remove), "{out:?}");
        assert!(
            sent(&out, 9).contains(&remove),
            "harmless where the newer row is"
        );
    }

    #[test]
    fn members_status_is_given_out_only_on_a_change() {
        let mut n = Node::new(1, &[]);
        n.link_up(0, 9, 2, LinkOrigin::Accepted);
        let status = |out: &[Output]| {
            out.iter()
                .filter(|o| matches!(o, Output::Members(_)))
                .count()
        };
        assert_eq!(status(&n.tick(1)), 1);
        assert_eq!(status(&n.tick(2)), 0);
        n.input(3, Input::LinkDown { link: 9 });
        assert_eq!(status(&n.tick(4)), 1);
    }
}
