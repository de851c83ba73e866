//! The simulated world: nodes, connections, clients, faults, and the event loop.

use super::net::{Chunk, Cuts, Rng};
use super::*;

/// Client ids are drawn from this many per node, so ids collide, move and come back.
const IDS_PER_NODE: u64 = 4;
/// Normal one-way latency of a chunk, and the rarer slow path.
const DELAY_MS: (u64, u64) = (1, 15);
const SLOW_DELAY_MS: (u64, u64) = (50, 300);
/// A chaos phase lasts this long, then a quiet phase of `QUIET_MS`.
const CHAOS_MS: (u64, u64) = (6_000, 20_000);
/// How long a quiet phase lasts: the README's bounds (death 3 s; heal about 1 s plus a 2 s
/// digest), plus a dial that hangs for the handshake timeout when a partition heals while
/// it was in flight, plus slack for latency. Convergence must hold at its end; the time it
/// first held is reported.
pub const QUIET_MS: u64 = 3_000 + HANDSHAKE_TIMEOUT_MS + 1_000;
/// Pauses last up to this; a pause longer than the death bound may get a node declared dead.
pub const PAUSE_MAX_MS: u64 = 5_000;
/// Invariants are checked this often (and after every fault).
const CHECK_EVERY_MS: u64 = 20;
/// Lines of trace kept for a failure report (`SIM_TRACE_LINES` overrides it for a replay).
const TRACE_LINES: usize = 400;

fn trace_lines() -> usize {
    std::env::var("SIM_TRACE_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TRACE_LINES)
}

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub nodes: u16,
    pub sim_ms: u64,
    pub events: u64,
    pub rounds: u32,
    pub kills: u32,
    pub partitions: u32,
    pub pauses: u32,
    pub breaks: u32,
    pub registrations: u32,
    pub messages: u64,
    /// Longest time from a quiet phase's start to convergence.
    pub max_converge_ms: u64,
    /// Hash of the trace: equal for two runs of one seed.
    pub trace_hash: u64,
}

pub struct World {
    pub rng: Rng,
    pub now: u64,
    pub n: u16,
    /// Indexed by node id (0 unused); `None` while a node is down.
    pub nodes: Vec<Option<Node>>,
    /// For a down node: whether its host still answers (a killed process: connection
    /// refused at once) or not (power off: dials hang until the timeout).
    pub host_up: Vec<bool>,
    /// The incarnation a down node had when it died.
    dead_incarnation: Vec<u64>,
    next_incarnation: u64,
    pub conns: Vec<Conn>,
    pub cuts: Cuts,
    pub q: Queue,
    pub clients: Vec<Client>,
    pub by_slot: BTreeMap<(u16, u64, u32), usize>,
    pub ids: Vec<Box<[u8]>>,
    trace: VecDeque<String>,
    trace_max: usize,
    trace_hash: u64,
    pub quiet: bool,
    pub quiet_start: u64,
    pub next_quiet: u64,
    pub converged_at: Option<u64>,
    rounds_left: u32,
    pub checks: super::checks::CheckState,
    pub report: Report,
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut rng = Rng::new(seed);
        let n = rng.range(3, 16) as u16;
        let ids = (0..u64::from(n) * IDS_PER_NODE)
            .map(|i| format!("c{i}").into_bytes().into_boxed_slice())
            .collect();
        let rounds_left = rng.range(2, 3) as u32;
        let mut w = World {
            rng,
            now: 0,
            n,
            nodes: (0..=n).map(|_| None).collect(),
            host_up: vec![true; n as usize + 1],
            dead_incarnation: vec![0; n as usize + 1],
            next_incarnation: 1,
            conns: Vec::new(),
            cuts: Cuts::default(),
            q: Queue::default(),
            clients: Vec::new(),
            by_slot: BTreeMap::new(),
            ids,
            trace: VecDeque::new(),
            trace_max: trace_lines(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            quiet: false,
            quiet_start: 0,
            next_quiet: 0,
            converged_at: None,
            rounds_left,
            checks: Default::default(),
            report: Report {
                seed,
                nodes: n,
                ..Report::default()
            },
        };
        for id in 1..=n {
            // Nodes start staggered, like processes started by hand or by a supervisor.
            let at = w.rng.range(0, 500);
            w.q.push(at, Ev::Restart { node: id });
        }
        w.start_chaos(1_000);
        w.q.push(CHECK_EVERY_MS, Ev::Check);
        w
    }

    pub fn log(&mut self, line: String) {
        // FNV-1a of (time, line), summed: the plane's hash maps may order the effects of one
        // message differently from run to run (which client of a snapshot is closed first),
        // so the hash compares the multiset of trace lines, not their order within a step.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in line.bytes().chain(self.now.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        self.trace_hash = self.trace_hash.wrapping_add(h);
        if self.trace.len() >= self.trace_max {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>8} ms  {line}", self.now));
    }

    fn fail(&self, why: String) -> String {
        let tail: Vec<&str> = self.trace.iter().map(String::as_str).collect();
        format!(
            "seed {} ({} nodes) failed at {} ms: {why}\n--- last trace lines ---\n{}",
            self.report.seed,
            self.n,
            self.now,
            tail.join("\n")
        )
    }

    pub fn run(&mut self) -> Result<Report, String> {
        while let Some((at, ev)) = self.q.pop() {
            if self.rounds_left == 0 {
                break;
            }
            self.now = at;
            self.report.events += 1;
            self.step(ev).map_err(|e| self.fail(e))?;
        }
        self.report.sim_ms = self.now;
        self.report.trace_hash = self.trace_hash;
        Ok(self.report.clone())
    }

    fn step(&mut self, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::Tick { node, incarnation } => self.tick(node, incarnation),
            Ev::Arrive { conn, dir } => self.arrive(conn, dir),
            Ev::DialDone {
                node,
                incarnation,
                addr,
                seed,
            } => self.dial_done(node, incarnation, addr, seed),
            Ev::DataDialDone {
                node,
                incarnation,
                peer,
                worker,
                addr,
            } => self.data_dial_done(node, incarnation, peer, worker, addr),
            Ev::LocalDown {
                node,
                incarnation,
                link,
            } => self.local_down(node, incarnation, link),
            ev @ Ev::DataLost { .. } => self.data_lost(ev),
            Ev::Chaos => self.chaos(),
            Ev::ClientOp => self.client_op(),
            Ev::Heal => {
                self.heal();
                Ok(())
            }
            Ev::Restart { node } => {
                self.restart(node);
                Ok(())
            }
            Ev::QuietStart => {
                self.quiet_start();
                Ok(())
            }
            Ev::QuietCheck => self.quiet_check(),
            Ev::Check => {
                self.q.push(self.now + CHECK_EVERY_MS, Ev::Check);
                self.check_invariants()
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Nodes
    // ---------------------------------------------------------------------------------

    /// The running node `id` if it is incarnation `incarnation`.
    pub fn node_mut(&mut self, id: u16, incarnation: u64) -> Option<&mut Node> {
        self.nodes
            .get_mut(id as usize)?
            .as_mut()
            .filter(|n| n.incarnation == incarnation)
    }

    pub fn alive(&self, id: u16) -> Option<&Node> {
        self.nodes.get(id as usize)?.as_ref()
    }

    /// If `id` is paused, `ev` is put back for when it resumes (reads first, then timers).
    fn deferred(&mut self, id: u16, ev: Ev) -> bool {
        let Some(until) = self
            .alive(id)
            .filter(|n| n.paused(self.now))
            .map(|n| n.paused_until_ms)
        else {
            return false;
        };
        let at = if matches!(ev, Ev::Tick { .. }) {
            until + 1
        } else {
            until
        };
        self.q.push(at, ev);
        true
    }

    fn tick(&mut self, id: u16, incarnation: u64) -> Result<(), String> {
        if self.node_mut(id, incarnation).is_none()
            || self.deferred(
                id,
                Ev::Tick {
                    node: id,
                    incarnation,
                },
            )
        {
            return Ok(());
        }
        // A rare overflow of the workers' event queue, during chaos only.
        let overflow = !self.quiet && self.rng.chance(1) && self.rng.chance(20);
        let now = self.now;
        let Some(n) = self.node_mut(id, incarnation) else {
            return Ok(());
        };
        let mut outs = Vec::new();
        if overflow {
            n.lane.clear();
            outs.extend(n.feed(now, Input::EventsOverflowed));
        } else {
            for event in std::mem::take(&mut n.lane) {
                outs.extend(n.feed(now, Input::Worker(event)));
            }
        }
        outs.extend(n.tick(now));
        if overflow {
            self.log(format!("n{id}: events queue overflow"));
        }
        self.carry_out(id, outs);
        self.q.push(
            now + TICK_MS,
            Ev::Tick {
                node: id,
                incarnation,
            },
        );
        Ok(())
    }

    fn restart(&mut self, id: u16) {
        if self.alive(id).is_some() {
            return;
        }
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        // Every node but 1 knows node 1; some also know another lower node.
        let mut seeds = Vec::new();
        if id > 1 {
            seeds.push(addr_of(1));
            if id > 2 && self.rng.chance(300) {
                seeds.push(addr_of(self.rng.range(2, u64::from(id) - 1) as u16));
            }
        }
        if !self.host_up[id as usize] {
            // The host is back: the peers' next writes on data links to the old incarnation
            // are answered with a reset.
            let old = self.dead_incarnation[id as usize];
            self.schedule_data_lost(id, old, (1, 500));
            self.host_up[id as usize] = true;
        }
        let skew_us = self.rng.range(0, 400_000) as i64 - 200_000;
        self.nodes[id as usize] = Some(Node::new(id, incarnation, seeds, skew_us, self.now));
        self.log(format!("n{id}: started, incarnation {incarnation}"));
        self.q.push(
            self.now,
            Ev::Tick {
                node: id,
                incarnation,
            },
        );
    }

    fn kill(&mut self, id: u16, with_fin: bool) {
        let Some(n) = self.nodes[id as usize].take() else {
            return;
        };
        self.report.kills += 1;
        self.host_up[id as usize] = with_fin;
        self.dead_incarnation[id as usize] = n.incarnation;
        self.log(format!(
            "n{id}: killed ({})",
            if with_fin {
                "process, FIN"
            } else {
                "power off"
            }
        ));
        let mut checks = std::mem::take(&mut self.checks);
        checks.on_kill(self, &n);
        self.checks = checks;
        for &(c, side) in n.links.values() {
            if self.conns[c].ends[side].open {
                self.conns[c].ends[side].open = false;
                if with_fin {
                    self.push_chunk(c, side, Chunk::Fin);
                }
            }
            // A powered-off host retransmits nothing: what a partition held back is lost.
            let peer = self.conns[c].ends[1 - side].node;
            if !with_fin && self.cuts.blocked(id, peer) {
                self.conns[c].streams[side].chunks.clear();
            }
        }
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            if c.node == id && c.incarnation == n.incarnation {
                c.open = false;
            }
        }
        if with_fin {
            // The peers' workers read EOF on their data links to it at once.
            self.schedule_data_lost(id, n.incarnation, (1, 20));
        }
    }

    /// Every live node's data links to `incarnation` of `dead` fail within `delay_ms`.
    fn schedule_data_lost(&mut self, dead: u16, incarnation: u64, delay_ms: (u64, u64)) {
        for node in 1..=self.n {
            let Some(p) = self.alive(node) else { continue };
            let lost: Vec<u16> = p
                .data_out
                .iter()
                .filter(|(&(to, _), &inc)| to == dead && inc == incarnation)
                .map(|(&(_, worker), _)| worker)
                .collect();
            let node_incarnation = p.incarnation;
            for worker in lost {
                let at = self.now + self.rng.range(delay_ms.0, delay_ms.1);
                let ev = Ev::DataLost {
                    node,
                    incarnation: node_incarnation,
                    peer: dead,
                    peer_incarnation: incarnation,
                    worker,
                };
                self.q.push(at, ev);
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // The plane's outputs
    // ---------------------------------------------------------------------------------

    fn carry_out(&mut self, id: u16, outs: Vec<Output>) {
        for out in outs {
            let Some(incarnation) = self.alive(id).map(|n| n.incarnation) else {
                return;
            };
            match out {
                Output::Send { link, msg } => {
                    self.report.messages += 1;
                    self.send(id, link, encode(msg));
                }
                Output::CloseLink { link } => self.close_link(id, incarnation, link),
                Output::DialControl { addr, seed } => self.dial(id, incarnation, addr, seed),
                Output::DialData { node, worker, addr } => {
                    let at = self.now + self.dial_ms(id, node);
                    let ev = Ev::DataDialDone {
                        node: id,
                        incarnation,
                        peer: node,
                        worker,
                        addr,
                    };
                    self.q.push(at, ev);
                }
                Output::AdoptDataLink { node, worker } => {
                    let peer_incarnation = self.alive(node).map_or(0, |p| p.incarnation);
                    if let Some(n) = self.node_mut(id, incarnation) {
                        n.data_out.insert((node, worker), peer_incarnation);
                    }
                }
                Output::ToWorker { command, .. } => self.worker_command(id, incarnation, command),
                Output::Ready => {
                    self.log(format!("n{id}: ready"));
                    if let Some(n) = self.node_mut(id, incarnation) {
                        n.ready = true;
                    }
                }
                Output::Members(members) => {
                    let states: Vec<String> = members
                        .iter()
                        .map(|m| format!("{}{}", m.node_id, &m.state[..1]))
                        .collect();
                    self.log(format!("n{id}: members {}", states.join(" ")));
                }
            }
        }
    }

    fn worker_command(&mut self, id: u16, incarnation: u64, command: WorkerCommand) {
        match command {
            WorkerCommand::Presence {
                to,
                client_id,
                online,
            } => {
                if let Some(&c) = self.by_slot.get(&(id, incarnation, to.slot)) {
                    let now = self.now;
                    let client = &mut self.clients[c];
                    if client.open && client.at == to {
                        client.presence.push((now, client_id, online));
                    }
                }
            }
            WorkerCommand::CloseClient { to, .. } => {
                if let Some(&c) = self.by_slot.get(&(id, incarnation, to.slot)) {
                    if self.clients[c].at == to {
                        self.log(format!(
                            "n{id}: client {} replaced",
                            lossy(&self.clients[c].id)
                        ));
                        self.close_client(c);
                    }
                }
            }
            WorkerCommand::CloseLinks { node } => {
                let Some(n) = self.node_mut(id, incarnation) else {
                    return;
                };
                let lost: Vec<(u16, u16)> = n
                    .data_out
                    .keys()
                    .filter(|(p, _)| *p == node)
                    .copied()
                    .collect();
                for key in lost {
                    // The worker's close of an outbound link reports it lost (worker_links.rs).
                    n.data_out.remove(&key);
                    n.lane.push(Event::LinkLost {
                        node: key.0,
                        worker: key.1,
                    });
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Network
    // ---------------------------------------------------------------------------------

    fn delay_ms(&mut self) -> u64 {
        if self.rng.chance(30) {
            self.rng.range(SLOW_DELAY_MS.0, SLOW_DELAY_MS.1)
        } else {
            self.rng.range(DELAY_MS.0, DELAY_MS.1)
        }
    }

    /// How long a dial from `from` to `to` takes to answer, given what it finds now.
    fn dial_ms(&mut self, from: u16, to: u16) -> u64 {
        let reachable = !self.cuts.blocked(from, to);
        match self.alive(to) {
            Some(n) if reachable && !n.paused(self.now) => self.rng.range(1, 40),
            None if reachable && self.host_up[to as usize] => self.rng.range(1, 5),
            _ => HANDSHAKE_TIMEOUT_MS,
        }
    }

    /// Whether a handshake between `a` and `b` can complete now.
    fn can_link(&self, a: u16, b: u16) -> bool {
        a != b && !self.cuts.blocked(a, b) && self.alive(b).is_some_and(|n| !n.paused(self.now))
    }

    fn push_chunk(&mut self, c: usize, side: usize, chunk: Chunk) {
        let at_min = self.now + self.delay_ms();
        let stream = &mut self.conns[c].streams[side];
        let at = stream.last_at_ms.max(at_min);
        stream.last_at_ms = at;
        stream.chunks.push_back((at, chunk));
        self.q.push(at, Ev::Arrive { conn: c, dir: side });
    }

    fn send(&mut self, id: u16, link: LinkId, bytes: Vec<u8>) {
        let Some(&(c, side)) = self.alive(id).and_then(|n| n.links.get(&link)) else {
            return;
        };
        if self.conns[c].broken || !self.conns[c].ends[side].open {
            return;
        }
        // TCP delivers a byte stream, not messages: cut it at random points.
        let mut rest = bytes;
        while rest.len() > 1 && self.rng.chance(300) {
            let cut = self.rng.range(1, rest.len() as u64 - 1) as usize;
            let tail = rest.split_off(cut);
            self.push_chunk(c, side, Chunk::Bytes(rest));
            rest = tail;
        }
        self.push_chunk(c, side, Chunk::Bytes(rest));
    }

    fn close_link(&mut self, id: u16, incarnation: u64, link: LinkId) {
        let Some(&(c, side)) = self.alive(id).and_then(|n| n.links.get(&link)) else {
            return;
        };
        if !self.conns[c].ends[side].open {
            return;
        }
        self.conns[c].ends[side].open = false;
        if !self.conns[c].broken {
            self.push_chunk(c, side, Chunk::Fin);
        }
        self.q.push(
            self.now + 1,
            Ev::LocalDown {
                node: id,
                incarnation,
                link,
            },
        );
    }

    /// The connection is reset: nothing more crosses it, both ends see it fail.
    pub fn break_conn(&mut self, c: usize) {
        if self.conns[c].broken {
            return;
        }
        self.report.breaks += 1;
        self.conns[c].broken = true;
        for side in 0..2 {
            self.conns[c].streams[side].chunks.clear();
            let end = &mut self.conns[c].ends[side];
            if end.open {
                end.open = false;
                let ev = Ev::LocalDown {
                    node: end.node,
                    incarnation: end.incarnation,
                    link: end.link,
                };
                let at = self.now + self.rng.range(1, 20);
                self.q.push(at, ev);
            }
        }
        let (a, b) = (self.conns[c].ends[0].node, self.conns[c].ends[1].node);
        self.log(format!("link n{a}-n{b} (conn {c}) broken"));
    }

    fn local_down(&mut self, id: u16, incarnation: u64, link: LinkId) -> Result<(), String> {
        if self.node_mut(id, incarnation).is_none()
            || self.deferred(
                id,
                Ev::LocalDown {
                    node: id,
                    incarnation,
                    link,
                },
            )
        {
            return Ok(());
        }
        let now = self.now;
        let Some(n) = self.node_mut(id, incarnation) else {
            return Ok(());
        };
        if n.links.remove(&link).is_none() {
            return Ok(());
        }
        let outs = n.feed(now, Input::LinkDown { link });
        self.carry_out(id, outs);
        Ok(())
    }

    fn arrive(&mut self, c: usize, dir: usize) -> Result<(), String> {
        let r = 1 - dir;
        let (sender, recv_node, recv_inc) = {
            let conn = &self.conns[c];
            (
                conn.ends[dir].node,
                conn.ends[r].node,
                conn.ends[r].incarnation,
            )
        };
        if self.conns[c].broken || self.node_mut(recv_node, recv_inc).is_none() {
            return Ok(());
        }
        if self.deferred(recv_node, Ev::Arrive { conn: c, dir }) {
            return Ok(());
        }
        if self.cuts.blocked(sender, recv_node) {
            // The sender's kernel retransmits until the heal reschedules this, unless the
            // sender's host is off: then those bytes are gone.
            let sender_inc = self.conns[c].ends[dir].incarnation;
            if self.node_mut(sender, sender_inc).is_none() && !self.host_up[sender as usize] {
                self.conns[c].streams[dir].chunks.clear();
            }
            return Ok(());
        }
        let now = self.now;
        let mut fin = false;
        let stream = &mut self.conns[c].streams[dir];
        while stream.chunks.front().is_some_and(|(at, _)| *at <= now) {
            match stream.chunks.pop_front() {
                Some((_, Chunk::Bytes(b))) => stream.rx_buf.extend_from_slice(&b),
                Some((_, Chunk::Fin)) => fin = true,
                None => {}
            }
        }
        let msgs = decode_all(&mut stream.rx_buf)?;
        let sender_inc = self.conns[c].ends[dir].incarnation;
        let sender_gone = self.alive(sender).map(|n| n.incarnation) != Some(sender_inc);
        if !msgs.is_empty() && sender_gone {
            self.checks.last_heard_ms.insert((recv_node, sender), now);
        }
        let link = self.conns[c].ends[r].link;
        for msg in msgs {
            if !self.conns[c].ends[r].open {
                return Ok(());
            }
            let Some(n) = self.node_mut(recv_node, recv_inc) else {
                return Ok(());
            };
            let outs = n.feed(now, Input::Message { link, msg });
            self.carry_out(recv_node, outs);
        }
        if fin && self.conns[c].ends[r].open {
            self.log(format!("n{recv_node}: conn {c} closed by n{sender}"));
            self.conns[c].ends[r].open = false;
            if fin && !self.conns[c].streams[dir].rx_buf.is_empty() {
                return Err(format!(
                    "link n{sender}->n{recv_node} closed inside a message"
                ));
            }
            self.local_down(recv_node, recv_inc, link)?;
        }
        Ok(())
    }

    fn dial(&mut self, id: u16, incarnation: u64, addr: String, seed: bool) {
        let Some(to) = node_of_addr(&addr) else {
            return;
        };
        let at = self.now + self.dial_ms(id, to);
        self.q.push(
            at,
            Ev::DialDone {
                node: id,
                incarnation,
                addr,
                seed,
            },
        );
    }

    fn dial_done(
        &mut self,
        id: u16,
        incarnation: u64,
        addr: String,
        seed: bool,
    ) -> Result<(), String> {
        let ev = Ev::DialDone {
            node: id,
            incarnation,
            addr: addr.clone(),
            seed,
        };
        if self.node_mut(id, incarnation).is_none() || self.deferred(id, ev) {
            return Ok(());
        }
        let to = node_of_addr(&addr).unwrap_or(0);
        if !self.can_link(id, to) {
            let now = self.now;
            if let Some(n) = self.node_mut(id, incarnation) {
                let outs = n.feed(now, Input::DialFailed { addr });
                self.carry_out(id, outs);
            }
            return Ok(());
        }
        // Rarely, a second connection of the same dial completes only at the acceptor (the
        // dialer gave up on it): the acceptor sees a link that closes at once.
        if !self.quiet && self.rng.chance(20) {
            let c = self.connect(id, to, None);
            self.close_link(id, incarnation, self.conns[c].ends[0].link);
        }
        self.connect(id, to, Some((addr, seed)));
        Ok(())
    }

    /// A new connection from `from` (the dialer, side 0) to `to` (side 1); both planes hear
    /// of it (the dialer's only when `dialed` says what it dialed).
    fn connect(&mut self, from: u16, to: u16, dialed: Option<(String, bool)>) -> usize {
        let now = self.now;
        let c = self.conns.len();
        let (Some(a), Some(b)) = (self.alive(from), self.alive(to)) else {
            return c;
        };
        let (la, lb) = (a.next_link, b.next_link);
        let conn = new_conn((a, la), (b, lb), now);
        let (ida, idb) = (a.identity(), b.identity());
        self.conns.push(conn);
        self.log(format!(
            "conn {c}: n{from} -> n{to}{}",
            if dialed.is_some() {
                ""
            } else {
                " (abandoned by the dialer)"
            }
        ));
        for (node, link, side) in [(from, la, 0), (to, lb, 1)] {
            if let Some(n) = self.nodes[node as usize].as_mut() {
                n.next_link += 1;
                n.links.insert(link, (c, side));
            }
        }
        if let Some(n) = self.nodes[to as usize].as_mut() {
            let outs = n.feed(
                now,
                Input::LinkUp {
                    link: lb,
                    peer: ida,
                    origin: LinkOrigin::Accepted,
                },
            );
            self.carry_out(to, outs);
        }
        if let Some((addr, seed)) = dialed {
            if let Some(n) = self.nodes[from as usize].as_mut() {
                let origin = LinkOrigin::Dialed { addr, seed };
                let outs = n.feed(
                    now,
                    Input::LinkUp {
                        link: la,
                        peer: idb,
                        origin,
                    },
                );
                self.carry_out(from, outs);
            }
        }
        c
    }

    fn data_dial_done(
        &mut self,
        id: u16,
        incarnation: u64,
        peer: u16,
        worker: u16,
        addr: String,
    ) -> Result<(), String> {
        let ev = Ev::DataDialDone {
            node: id,
            incarnation,
            peer,
            worker,
            addr: addr.clone(),
        };
        if self.node_mut(id, incarnation).is_none() || self.deferred(id, ev) {
            return Ok(());
        }
        let to = node_of_addr(&addr).unwrap_or(0);
        let result = if self.can_link(id, to) {
            Ok(to)
        } else {
            Err("unreachable".to_string())
        };
        let now = self.now;
        if let Some(n) = self.node_mut(id, incarnation) {
            let outs = n.feed(
                now,
                Input::DataLinkDialed {
                    node: peer,
                    worker,
                    result,
                },
            );
            self.carry_out(id, outs);
        }
        Ok(())
    }

    fn data_lost(&mut self, ev: Ev) -> Result<(), String> {
        let Ev::DataLost {
            node: id,
            incarnation,
            peer,
            peer_incarnation,
            worker,
        } = ev
        else {
            return Ok(());
        };
        if self.node_mut(id, incarnation).is_none() || self.deferred(id, ev) {
            return Ok(());
        }
        if let Some(n) = self.node_mut(id, incarnation) {
            // Only the link that failed: a newer one to the same peer stays.
            if n.data_out.get(&(peer, worker)) == Some(&peer_incarnation) {
                n.data_out.remove(&(peer, worker));
                n.lane.push(Event::LinkLost { node: peer, worker });
            }
        }
        Ok(())
    }

    fn heal(&mut self) {
        if self.cuts.is_empty() {
            return;
        }
        self.cuts.heal_all();
        self.log("network healed".into());
        for c in 0..self.conns.len() {
            for dir in 0..2 {
                if !self.conns[c].broken && !self.conns[c].streams[dir].chunks.is_empty() {
                    let at = self.now + self.delay_ms();
                    self.q.push(at, Ev::Arrive { conn: c, dir });
                }
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Clients (driven the way a worker drives the tables)
    // ---------------------------------------------------------------------------------

    fn apply_sink(&mut self, id: u16, incarnation: u64, sink: WorkerSink) {
        for (to, client_id, online) in sink.presence {
            self.worker_command(
                id,
                incarnation,
                WorkerCommand::Presence {
                    to,
                    client_id,
                    online,
                },
            );
        }
        for to in sink.closes {
            let reason = CloseReason::REPLACED;
            self.worker_command(id, incarnation, WorkerCommand::CloseClient { to, reason });
        }
    }

    pub fn register(&mut self, id: u16, client_id: Box<[u8]>) {
        let worker = self.rng.below(u64::from(WORKERS)) as u16;
        let now = self.now;
        let Some(n) = self.nodes[id as usize].as_mut() else {
            return;
        };
        let slot = n.next_slot;
        n.next_slot += 1;
        let at = Location {
            node: id,
            worker,
            slot,
            generation: 1,
        };
        let wall_us = (now * 1000).saturating_add_signed(n.skew_us);
        let epoch = n.epochs.next(wall_us);
        let mut sink = WorkerSink::default();
        let mut scratch = Vec::new();
        let outcome = n
            .tables
            .register(&client_id, at, epoch, &mut scratch, &mut sink);
        let lost = matches!(outcome, ringrelay::core::Registered::Lost(_));
        if !lost {
            n.lane.push(Event::Registered {
                id: client_id.clone(),
                epoch,
            });
        }
        let incarnation = n.incarnation;
        self.report.registrations += 1;
        self.log(format!(
            "n{id}: register {} epoch {epoch}{}",
            lossy(&client_id),
            if lost { " (lost)" } else { "" }
        ));
        self.by_slot
            .insert((id, incarnation, slot), self.clients.len());
        self.clients.push(Client {
            id: client_id,
            node: id,
            incarnation,
            at,
            epoch,
            open: true,
            watches: Vec::new(),
            presence: Vec::new(),
        });
        self.apply_sink(id, incarnation, sink);
    }

    pub fn close_client(&mut self, c: usize) {
        let client = &mut self.clients[c];
        if !client.open {
            return;
        }
        client.open = false;
        let (id, incarnation, at) = (client.node, client.incarnation, client.at);
        let client_id = client.id.clone();
        let watches = client.watches.clone();
        let Some(n) = self.node_mut(id, incarnation) else {
            return;
        };
        for w in &watches {
            n.tables.presence.unwatch(w, at);
        }
        let mut sink = WorkerSink::default();
        let mut scratch = Vec::new();
        if let Some(row) = n.tables.unregister(&client_id, at, &mut scratch, &mut sink) {
            n.lane.push(Event::Unregistered {
                id: client_id,
                epoch: row.epoch,
            });
        }
        self.apply_sink(id, incarnation, sink);
    }

    /// Nodes that can take a client now (a worker holds HELLO until its node is ready).
    fn serving_nodes(&self) -> Vec<u16> {
        (1..=self.n)
            .filter(|&i| {
                self.alive(i)
                    .is_some_and(|n| n.ready && !n.paused(self.now))
            })
            .collect()
    }

    fn open_clients(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|&c| {
                let cl = &self.clients[c];
                cl.open && self.alive(cl.node).is_some_and(|n| !n.paused(self.now))
            })
            .collect()
    }

    fn client_op(&mut self) -> Result<(), String> {
        if self.quiet {
            return Ok(());
        }
        let next = self.now + self.rng.range(5, 60);
        self.q.push(next, Ev::ClientOp);
        let nodes = self.serving_nodes();
        let open = self.open_clients();
        let roll = self.rng.below(100);
        let Some(&node) = self.rng.pick(&nodes) else {
            return Ok(());
        };
        match roll {
            0..=39 => {
                let Some(id) = self.rng.pick(&self.ids).cloned() else {
                    return Ok(());
                };
                self.register(node, id);
            }
            40..=64 => {
                if let Some(&c) = self.rng.pick(&open) {
                    self.log(format!(
                        "n{}: close {}",
                        self.clients[c].node,
                        lossy(&self.clients[c].id)
                    ));
                    self.close_client(c);
                }
            }
            65..=84 => {
                // A move (close, then connect elsewhere) or a duplicate (connect elsewhere
                // while still connected): either way the newest registration must win.
                if let Some(&c) = self.rng.pick(&open) {
                    let id = self.clients[c].id.clone();
                    if roll < 75 {
                        self.close_client(c);
                    }
                    self.register(node, id);
                }
            }
            _ => {
                let target = self.rng.pick(&self.ids).cloned();
                if let (Some(&c), Some(target)) = (self.rng.pick(&open), target) {
                    let cl = &mut self.clients[c];
                    cl.watches.push(target.clone());
                    let (id, incarnation, at) = (cl.node, cl.incarnation, cl.at);
                    if let Some(n) = self.node_mut(id, incarnation) {
                        n.tables.presence.watch(&target, at);
                    }
                }
            }
        }
        self.check_invariants()
    }

    // ---------------------------------------------------------------------------------
    // Faults and phases
    // ---------------------------------------------------------------------------------

    fn start_chaos(&mut self, at: u64) {
        self.quiet = false;
        self.next_quiet = at + self.rng.range(CHAOS_MS.0, CHAOS_MS.1);
        self.q.push(at, Ev::Chaos);
        self.q.push(at, Ev::ClientOp);
        self.q.push(self.next_quiet, Ev::QuietStart);
    }

    fn chaos(&mut self) -> Result<(), String> {
        if self.quiet {
            return Ok(());
        }
        let next = self.now + self.rng.range(50, 500);
        self.q.push(next, Ev::Chaos);
        let alive: Vec<u16> = (1..=self.n).filter(|&i| self.alive(i).is_some()).collect();
        let roll = self.rng.below(100);
        match roll {
            0..=14 => {
                let live: Vec<usize> = (0..self.conns.len())
                    .filter(|&c| !self.conns[c].broken && self.conns[c].ends.iter().all(|e| e.open))
                    .collect();
                if let Some(&c) = self.rng.pick(&live) {
                    self.break_conn(c);
                }
            }
            15..=37 if self.cuts.is_empty() => self.partition(roll < 30),
            38..=52 => {
                if let Some(&id) = self.rng.pick(&alive) {
                    self.pause(id);
                }
            }
            53..=62 if alive.len() > 2 => {
                if let Some(&id) = self.rng.pick(&alive) {
                    let with_fin = self.rng.chance(500);
                    self.kill(id, with_fin);
                    if self.rng.chance(700) {
                        // Before the quiet phase, which must see no new faults.
                        let at = (self.now + self.rng.range(100, 5_000)).min(self.next_quiet - 1);
                        self.q.push(at, Ev::Restart { node: id });
                    }
                }
            }
            63..=69 => {
                if let Some(&id) = self.rng.pick(&alive) {
                    let links: Vec<((u16, u16), u64)> = self
                        .alive(id)
                        .map(|n| n.data_out.iter().map(|(k, v)| (*k, *v)).collect())
                        .unwrap_or_default();
                    if let Some(&((peer, worker), peer_incarnation)) = self.rng.pick(&links) {
                        let incarnation = self.alive(id).map_or(0, |n| n.incarnation);
                        let ev = Ev::DataLost {
                            node: id,
                            incarnation,
                            peer,
                            peer_incarnation,
                            worker,
                        };
                        self.q.push(self.now, ev);
                    }
                }
            }
            _ => {}
        }
        self.check_invariants()
    }

    /// Splits the nodes in two groups (`groups`), or cuts one pair.
    fn partition(&mut self, groups: bool) {
        let n = u64::from(self.n);
        if groups {
            let side: Vec<bool> = (0..=n).map(|_| self.rng.chance(500)).collect();
            for a in 1..=self.n {
                for b in a + 1..=self.n {
                    if side[a as usize] != side[b as usize] {
                        self.cuts.cut(a, b);
                    }
                }
            }
            let group: Vec<u16> = (1..=self.n).filter(|&i| side[i as usize]).collect();
            self.log(format!("partition: {group:?} | the rest"));
        } else {
            let a = self.rng.range(1, n) as u16;
            let b = (a as u64 % n + self.rng.range(0, n - 2)) as u16 % self.n + 1;
            self.cuts.cut(a, b);
            self.log(format!("cut n{a}-n{b}"));
        }
        self.report.partitions += 1;
        let heal_at = (self.now + self.rng.range(300, 6_000)).min(self.next_quiet);
        self.q.push(heal_at, Ev::Heal);
    }

    fn pause(&mut self, id: u16) {
        let now = self.now;
        let long = self.rng.chance(150);
        let ms = if long {
            self.rng.range(2_500, PAUSE_MAX_MS)
        } else {
            self.rng.range(50, 2_500)
        };
        // Pauses end a death bound before the quiet phase starts, so the silence of a long
        // one has played out by then.
        let until = (now + ms).min(self.next_quiet.saturating_sub(3_000));
        if until <= now {
            return;
        }
        let Some(n) = self.nodes[id as usize].as_mut() else {
            return;
        };
        if n.paused(now) {
            return;
        }
        n.paused_until_ms = until;
        self.report.pauses += 1;
        self.log(format!("n{id}: paused for {} ms", until - now));
    }

    fn quiet_start(&mut self) {
        self.quiet = true;
        self.quiet_start = self.now;
        self.converged_at = None;
        self.heal();
        self.log("quiet phase".into());
        for id in 1..=self.n {
            // Node 1 is every other node's seed: a node that starts while no node it knows
            // is up cannot join (a deployment contract, not a fault to tolerate), so the seed
            // always comes back for the quiet phase.
            if self.alive(id).is_none() && (id == 1 || self.rng.chance(500)) {
                self.restart(id);
            }
        }
        self.q.push(self.now + CHECK_EVERY_MS, Ev::QuietCheck);
    }

    fn quiet_check(&mut self) -> Result<(), String> {
        let elapsed = self.now - self.quiet_start;
        let verdict = self.converged();
        match (&verdict, self.converged_at) {
            (Ok(()), None) => {
                self.converged_at = Some(elapsed);
                self.report.max_converge_ms = self.report.max_converge_ms.max(elapsed);
                self.log(format!("converged after {elapsed} ms"));
            }
            // A fault from just before the quiet phase may still play out (a silence that
            // began before it ends in a death, then a recovery): the end of the phase is
            // what must hold, and the last convergence time is what counts.
            (Err(e), Some(_)) => {
                self.converged_at = None;
                self.log(format!("diverged again: {e}"));
            }
            _ => {}
        }
        if elapsed < QUIET_MS {
            self.q.push(self.now + CHECK_EVERY_MS, Ev::QuietCheck);
            return Ok(());
        }
        verdict
            .map_err(|e| format!("not converged {QUIET_MS} ms after the quiet phase began: {e}"))?;
        self.report.rounds += 1;
        self.rounds_left -= 1;
        if self.rounds_left > 0 {
            self.start_chaos(self.now);
        }
        Ok(())
    }
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
