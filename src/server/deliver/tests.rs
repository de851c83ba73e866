//! A fan-out's fast copy (`Deliverer::copy_unhindered`) against the full admission path it
//! stands in for: the same subscribers given the same message through `deliver_each` and
//! through `deliver_copy` one by one end with the same queues, sums and counters, whichever
//! subscribers the fast copy takes and whichever it leaves to the full path.

use super::*;
use crate::cluster::lane::ControlLane;
use crate::core::{ConnRelay, EpochClock};
use crate::server::stats::{new_blocks, StatsBlocks};
use crate::server::verifier::VerifiedSecrets;
use std::sync::atomic::{AtomicU64, Ordering};

const PENDING_BYTES_MAX: usize = 64 << 10;
const WORKER_BYTES_MAX: usize = 1 << 20;
const MAX_FRAME_BYTES: usize = 16 << 10;

/// Everything a one-worker `Deliverer` borrows.
struct Fixture {
    slab: Slab,
    dirty: Vec<u32>,
    outboxes: Vec<Outbox>,
    pending_closes: Vec<PendingClose>,
    stats: StatsBlocks,
    client_flow: FlowLimits,
    link_flow: FlowLimits,
    boards: Vec<CongestionBoard>,
    congested: Vec<(u32, u32)>,
    fanout_frame: Vec<u8>,
    link_backlogs: Backlogs,
    lane: ControlLane,
    epochs: EpochClock,
    held_hellos: Vec<(u32, u32)>,
    verifier: VerifiedSecrets,
}

/// What a delivery leaves behind, to compare.
#[derive(Debug, PartialEq)]
struct Outcome {
    /// Per slot: its queued bytes, its backlog, whether it waits to be sent, its standing on
    /// the worker's congestion board.
    conns: Vec<(Vec<u8>, Backlog, bool, Standing)>,
    client_pending_bytes: usize,
    round_out_bytes: usize,
    dirty: Vec<u32>,
    /// deliveries, DELIVER frames out, stale drops, worker-bound drops.
    counters: [u64; 4],
    congested: Vec<(u32, u32)>,
    closes: usize,
    stall: Option<(StallOn, u64)>,
    overloaded: bool,
}

/// The subscribers, one of each kind, and how each is set up.
#[derive(Clone, Copy)]
enum Subscriber {
    /// Room in its buffer: the fast copy takes it.
    Roomy,
    /// No room in its buffer (it must grow): the full path.
    Full,
    /// Its close requested: dropped as stale either way.
    Closing,
    /// Just below its high watermark: the full path stalls its producer.
    NearWatermark,
    /// A location whose generation is past: dropped as stale.
    Stale,
}

impl Fixture {
    /// A worker holding one connection per subscriber in `subscribers`, with
    /// `worker_bytes` already queued on it; returns their locations.
    fn new(subscribers: &[Subscriber], worker_bytes: usize) -> (Fixture, Vec<Location>) {
        let client_flow = FlowLimits::for_clients(PENDING_BYTES_MAX, MAX_FRAME_BYTES, 250, 1_000);
        let mut slab = Slab::new(subscribers.len());
        let mut to = Vec::new();
        for (i, kind) in subscribers.iter().enumerate() {
            let relay = ConnRelay::registered_for_test(format!("s{i}").as_bytes());
            let slot = slab.insert(-1, relay, MAX_FRAME_BYTES).expect("room");
            let c = &mut slab.conns[slot as usize];
            let mut at = Location {
                node: 0,
                worker: 0,
                slot,
                generation: c.generation,
            };
            match kind {
                Subscriber::Roomy => c.out.reserve(4096),
                Subscriber::Full => c.out.shrink_to_fit(),
                Subscriber::Closing => c.close_requested = true,
                Subscriber::NearWatermark => {
                    c.out = vec![7; client_flow.stall_at_bytes - 20];
                    c.out.reserve(4096);
                }
                Subscriber::Stale => at.generation += 1,
            }
            to.push(at);
        }
        slab.client_pending_bytes = worker_bytes;
        let fixture = Fixture {
            slab,
            dirty: Vec::new(),
            outboxes: vec![Outbox::new(1 << 20)],
            pending_closes: Vec::new(),
            stats: new_blocks(1),
            client_flow,
            link_flow: FlowLimits::for_links(PENDING_BYTES_MAX, MAX_FRAME_BYTES, 250),
            boards: vec![CongestionBoard::new(subscribers.len())],
            congested: Vec::new(),
            fanout_frame: Vec::new(),
            link_backlogs: Backlogs::new(1),
            lane: ControlLane::new(1, false),
            epochs: EpochClock::new(),
            held_hellos: Vec::new(),
            verifier: VerifiedSecrets::new(0, None, None),
        };
        (fixture, to)
    }

    fn deliverer(&mut self) -> Deliverer<'_> {
        Deliverer {
            slab: &mut self.slab,
            dirty: &mut self.dirty,
            outboxes: &mut self.outboxes,
            pending_closes: &mut self.pending_closes,
            stats: &self.stats[0],
            worker: 0,
            origin_slot: u32::MAX,
            origin_generation: 0,
            client_flow: &self.client_flow,
            link_flow: &self.link_flow,
            boards: &self.boards,
            congested: &mut self.congested,
            stall: None,
            pending_bytes_per_worker_max: WORKER_BYTES_MAX,
            handoff_bytes_max: 1 << 20,
            error_interval_ms: 1_000,
            overloaded: false,
            shared_payload: None,
            fanout_frame: &mut self.fanout_frame,
            links_out: &[],
            link_backlogs: &mut self.link_backlogs,
            now_ms: 1_000,
            lane: &self.lane,
            epochs: &self.epochs,
            held_hellos: &mut self.held_hellos,
            clustered: false,
            presence: None,
            verifier: &mut self.verifier,
        }
    }

    fn outcome(&self, stall: Option<(StallOn, u64)>, overloaded: bool) -> Outcome {
        let stats = &self.stats[0];
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut dirty = self.dirty.clone();
        dirty.sort_unstable();
        Outcome {
            conns: self
                .slab
                .conns
                .iter()
                .enumerate()
                .map(|(slot, c)| {
                    let standing = self.boards[0].standing(slot as u32, c.generation);
                    (c.out.clone(), c.backlog, c.dirty, standing)
                })
                .collect(),
            client_pending_bytes: self.slab.client_pending_bytes,
            round_out_bytes: self.slab.round_out_bytes,
            dirty,
            counters: [
                get(&stats.deliveries),
                get(&stats.frames_out_by_kind[DELIVER_KIND]),
                get(&stats.stale_drops),
                get(&stats.worker_pending_drops),
            ],
            congested: self.congested.clone(),
            closes: self.pending_closes.len(),
            stall,
            overloaded,
        }
    }
}

/// The outcome of one message to `subscribers` through `deliver_each` (`fast`) or through
/// the full path for each (`deliver_copy` of the encoded DELIVER), after `worker_bytes`.
fn deliver(subscribers: &[Subscriber], worker_bytes: usize, fast: bool) -> Outcome {
    let (mut f, to) = Fixture::new(subscribers, worker_bytes);
    let message = Message::plain(b"publisher", b"news", b"sixteen bytes..!");
    let (stall, overloaded) = {
        let mut d = f.deliverer();
        if fast {
            assert_eq!(d.deliver_each(&to, None, &message), to.len());
        } else {
            let mut frame = Vec::new();
            encode_deliver(&mut frame, &message);
            for &at in &to {
                d.deliver_copy(at, &frame);
            }
        }
        (d.stall, d.overloaded)
    };
    f.outcome(stall, overloaded)
}

#[test]
fn the_fast_copy_leaves_what_the_full_path_leaves() {
    use Subscriber::*;
    let all = [Roomy, Full, Closing, NearWatermark, Stale, Roomy];
    let reserve_line = WORKER_BYTES_MAX - WORKER_BYTES_MAX / 8;
    // A worker far from its bound, one at the edge of its reserve (the fast copy declines
    // every subscriber), and one past the bound (the full path drops every message).
    for worker_bytes in [0, reserve_line - 10, WORKER_BYTES_MAX] {
        let fast = deliver(&all, worker_bytes, true);
        assert_eq!(fast, deliver(&all, worker_bytes, false), "{worker_bytes}");
        if worker_bytes == 0 {
            let queued = |slot: usize| fast.conns[slot].0.len();
            assert!(queued(0) > 0 && queued(1) > 0 && queued(5) > 0, "{fast:?}");
            assert!(
                fast.stall.is_some(),
                "the queue near its watermark stalls: {fast:?}"
            );
            assert_eq!(fast.counters[2], 2, "two stale drops: {fast:?}");
        }
    }
}
