//! A deterministic cluster simulator: N real [`ControlPlane`]s, each with its own
//! [`Tables`] and [`EpochClock`], on one thread, over a simulated network (see `net`) whose
//! every choice comes from one seeded PRNG. Control messages cross the real link codec
//! (`encode_link`, then `decode_link` on a byte stream cut at random points). The
//! authenticated handshake is modelled as "link established with the peer's identity" (it has
//! its own tests); membership, dials, tie-breaks, replication and failure detection are the
//! real code.
//!
//! A run alternates chaos phases (client churn, duplicate ids, watches, link breaks,
//! partitions, pauses, kills with and without FIN, restarts, event-queue overflows) and quiet
//! phases (network healed, no new faults, no client changes), and checks invariants after
//! every step and convergence at the end of each quiet phase. Determinism: the plane's hash
//! maps only ever change the order of entries inside one message, and the simulator consumes
//! no randomness in an order that depends on them.

pub mod net;

use net::{Conn, End, Stream};
use ringrelay::cluster::control::{
    ControlConfig, ControlPlane, Input, LinkOrigin, Output, PeerIdentity, WorkerCommand,
};
use ringrelay::cluster::lane::Event;
use ringrelay::cluster::link_io::CONTROL_FRAME_BYTES_MAX;
use ringrelay::cluster::membership::{LinkId, PeerState};
use ringrelay::cluster::wire::{decode_link, encode_link, LinkMsg};
use ringrelay::config::Config;
use ringrelay::core::{EpochClock, Location, Sink, Tables};
use ringrelay::protocol::{CloseReason, ErrorCode};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

mod checks;
mod world;

pub use world::Report;

/// The control thread's tick (`node.rs`).
pub const TICK_MS: u64 = 5;
/// Workers per simulated node: two, so per-worker data links and commands are exercised.
pub const WORKERS: u16 = 2;
/// A dial to a host that does not answer (partitioned, powered off, paused process) fails
/// after this long (`link_io::HANDSHAKE_TIMEOUT`).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2000;

/// The plane's settings: the relay's defaults (README failure table), so the bounds checked
/// are the documented ones.
pub fn plane_config(node: u16, seeds: Vec<String>) -> ControlConfig {
    let mut cfg = ControlConfig::from_config(&Config::default(), addr_of(node), WORKERS);
    cfg.node_id = node;
    cfg.seeds = seeds;
    cfg
}

pub fn addr_of(node: u16) -> String {
    format!("n{node}")
}

pub fn node_of_addr(addr: &str) -> Option<u16> {
    addr.strip_prefix('n')?.parse().ok()
}

/// Runs one seed; `Err` carries the failure and the trace tail.
pub fn run_seed(seed: u64) -> Result<Report, String> {
    let mut world = world::World::new(seed);
    world.run()
}

/// One client connection as the worker sees it.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: Box<[u8]>,
    pub node: u16,
    pub incarnation: u64,
    pub at: Location,
    pub epoch: u64,
    pub open: bool,
    pub watches: Vec<Box<[u8]>>,
    /// PRESENCE frames received: (time, id, online).
    pub presence: Vec<(u64, Box<[u8]>, bool)>,
}

/// Effects of the core's table calls on a simulated worker.
#[derive(Default)]
pub struct WorkerSink {
    pub presence: Vec<(Location, Box<[u8]>, bool)>,
    pub closes: Vec<Location>,
}

impl Sink for WorkerSink {
    fn deliver(&mut self, _: Location, _: &ringrelay::protocol::Message<'_>) {}
    fn presence(&mut self, to: Location, client_id: &[u8], online: bool) {
        self.presence.push((to, client_id.into(), online));
    }
    fn close(&mut self, to: Location, _: CloseReason, _: &'static str) {
        self.closes.push(to);
    }
    fn error_to_origin(&mut self, _: ErrorCode, _: &[u8], _: &'static str) {}
    fn forward_send(&mut self, _: u16, _: &[u8], _: &ringrelay::protocol::Message<'_>) {}
    fn forward_publish(&mut self, _: u16, _: &ringrelay::protocol::Message<'_>, _: &[u8], _: bool) {
    }
}

/// One running node incarnation.
pub struct Node {
    pub id: u16,
    pub incarnation: u64,
    pub plane: ControlPlane,
    pub tables: Tables,
    pub epochs: EpochClock,
    /// Offset of this host's wall clock (epochs are wall microseconds, pushed by the HLC).
    pub skew_us: i64,
    /// No ticks, no reads, no dial answers before this time.
    pub paused_until_ms: u64,
    /// The workers' event queue, drained every tick.
    pub lane: Vec<Event>,
    /// Control links: link id -> (connection, this node's side).
    pub links: BTreeMap<LinkId, (usize, usize)>,
    pub next_link: LinkId,
    /// Outbound data links the workers hold: (peer node, local worker) -> the incarnation
    /// of the peer that answered the dial.
    pub data_out: BTreeMap<(u16, u16), u64>,
    pub ready: bool,
    pub next_slot: u32,
}

impl Node {
    pub fn new(id: u16, incarnation: u64, seeds: Vec<String>, skew_us: i64, now_ms: u64) -> Node {
        Node {
            id,
            incarnation,
            plane: ControlPlane::new(plane_config(id, seeds), now_ms),
            tables: Tables::for_node(id),
            epochs: EpochClock::new(),
            skew_us,
            paused_until_ms: 0,
            lane: Vec::new(),
            links: BTreeMap::new(),
            next_link: 1,
            data_out: BTreeMap::new(),
            ready: false,
            next_slot: 1,
        }
    }

    pub fn paused(&self, now_ms: u64) -> bool {
        now_ms < self.paused_until_ms
    }

    pub fn identity(&self) -> PeerIdentity {
        PeerIdentity {
            node_id: self.id,
            incarnation: self.incarnation,
            advertise: addr_of(self.id),
        }
    }

    pub fn feed(&mut self, now_ms: u64, input: Input) -> Vec<Output> {
        self.plane
            .on_input(now_ms, input, &self.tables, &self.epochs);
        std::iter::from_fn(|| self.plane.poll_output()).collect()
    }

    pub fn tick(&mut self, now_ms: u64) -> Vec<Output> {
        self.plane.on_tick(now_ms, &self.tables);
        std::iter::from_fn(|| self.plane.poll_output()).collect()
    }

    pub fn peer_state(&self, node: u16) -> Option<PeerState> {
        self.plane
            .peers()
            .iter()
            .find(|p| p.node == node)
            .map(|p| p.state)
    }
}

/// Things scheduled on the simulated clock.
#[derive(Clone, Debug)]
pub enum Ev {
    Tick {
        node: u16,
        incarnation: u64,
    },
    Arrive {
        conn: usize,
        dir: usize,
    },
    DialDone {
        node: u16,
        incarnation: u64,
        addr: String,
        seed: bool,
    },
    DataDialDone {
        node: u16,
        incarnation: u64,
        peer: u16,
        worker: u16,
        addr: String,
    },
    /// A node's own reader noticed its end closed (after a CloseLink or a break).
    LocalDown {
        node: u16,
        incarnation: u64,
        link: LinkId,
    },
    /// A data link of `node`'s `worker` to incarnation `peer_incarnation` of `peer` failed
    /// (the worker emits LinkLost).
    DataLost {
        node: u16,
        incarnation: u64,
        peer: u16,
        peer_incarnation: u64,
        worker: u16,
    },
    Chaos,
    ClientOp,
    Heal,
    Restart {
        node: u16,
    },
    QuietStart,
    QuietCheck,
    /// Periodic invariant check.
    Check,
}

/// The event queue: ordered by (time, sequence), so equal times keep insertion order.
#[derive(Default)]
pub struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Option<Ev>>,
    free: Vec<usize>,
    seq: u64,
}

impl Queue {
    pub fn push(&mut self, at_ms: u64, ev: Ev) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(ev);
                s
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((at_ms, self.seq, slot)));
    }

    pub fn pop(&mut self) -> Option<(u64, Ev)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let ev = self.slots[slot].take()?;
        self.free.push(slot);
        Some((at, ev))
    }
}

/// Encodes a control message exactly as the driver does.
pub fn encode(msg: ringrelay::cluster::wire::ControlMsg) -> Vec<u8> {
    let mut out = Vec::new();
    encode_link(&LinkMsg::Control(msg), &mut out);
    out
}

/// Decodes every whole message at the front of `buf` (the driver's `MessageReader`).
pub fn decode_all(buf: &mut Vec<u8>) -> Result<Vec<ringrelay::cluster::wire::ControlMsg>, String> {
    let mut msgs = Vec::new();
    let mut used_total = 0;
    loop {
        match decode_link(&buf[used_total..], CONTROL_FRAME_BYTES_MAX) {
            Ok(Some((LinkMsg::Control(msg), used))) => {
                msgs.push(msg);
                used_total += used;
            }
            Ok(Some((other, _))) => return Err(format!("unexpected {other:?} on a control link")),
            Ok(None) => break,
            Err(e) => return Err(format!("a message we encoded does not decode: {e}")),
        }
    }
    buf.drain(..used_total);
    Ok(msgs)
}

pub fn new_conn(a: (&Node, LinkId), b: (&Node, LinkId), now_ms: u64) -> Conn {
    let end = |n: &Node, link| End {
        node: n.id,
        incarnation: n.incarnation,
        link,
        open: true,
    };
    let stream = || Stream {
        chunks: VecDeque::new(),
        last_at_ms: now_ms,
        rx_buf: Vec::new(),
    };
    Conn {
        ends: [end(a.0, a.1), end(b.0, b.1)],
        streams: [stream(), stream()],
        broken: false,
    }
}
