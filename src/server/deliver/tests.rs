//! A fan-out's fast copy (`FastCopy`, through `Deliverer::copy_unhindered_from`) against the
//! full admission path it stands in for: the same subscribers given the same message through
//! `deliver_each` and through `deliver_copy` one by one end with the same queues, sums and
//! counters, whichever subscribers the fast copy takes and whichever it leaves to the full
//! path.
//! The same fixture checks how a coalesced ERROR summary is queued or dropped.

use super::*;
use crate::cluster::lane::ControlLane;
use crate::core::{ConnRelay, EpochClock};
use crate::server::conn::Conn;
use crate::server::stats::{new_blocks, StatsBlocks};
use crate::server::verifier::VerifiedSecrets;
use std::sync::atomic::{AtomicU64, Ordering};

const PENDING_BYTES_MAX: usize = 64 << 10;
const WORKER_BYTES_MAX: usize = 1 << 20;
const MAX_FRAME_BYTES: usize = 16 << 10;

/// Everything a `Deliverer` of worker 0 borrows (with worker 1's outbox and board, for
/// subscribers there).
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
    /// No room in its buffer: the full path grows it, the fast copy needs none.
    Full,
    /// Its close requested: dropped as stale either way.
    Closing,
    /// Just below its high watermark: the full path stalls its producer.
    NearWatermark,
    /// A location whose generation is past: dropped as stale.
    Stale,
    /// In a congestion episode (it passed its high watermark), its queue since drained
    /// below it: it takes the message, the episode goes on.
    Drained,
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
                Subscriber::Drained => {
                    let over = client_flow.stall_at_bytes + 1;
                    let admit = c.backlog.admit(&client_flow, over, 1, 0);
                    assert!(matches!(admit, Admit::Stall { .. }), "{admit:?}");
                    c.out.reserve(4096);
                }
            }
            to.push(at);
        }
        slab.client_pending_bytes = worker_bytes;
        let fixture = Fixture {
            slab,
            dirty: Vec::new(),
            // A second worker's, for subscribers there (see `fan_out`).
            outboxes: vec![Outbox::new(1 << 20), Outbox::new(1 << 20)],
            pending_closes: Vec::new(),
            stats: new_blocks(1),
            client_flow,
            link_flow: FlowLimits::for_links(PENDING_BYTES_MAX, MAX_FRAME_BYTES, 250),
            boards: (0..2)
                .map(|_| CongestionBoard::new(subscribers.len()))
                .collect(),
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
        self.deliverer_from(u32::MAX, 0)
    }

    /// A batch of the connection at `origin_slot` (none at `u32::MAX`).
    fn deliverer_from(&mut self, origin_slot: u32, origin_generation: u32) -> Deliverer<'_> {
        // As `Worker::deliverer` computes it.
        let origin_closing = !self.slab.accepts_frames_of(origin_slot, origin_generation);
        Deliverer {
            slab: &mut self.slab,
            dirty: &mut self.dirty,
            outboxes: &mut self.outboxes,
            pending_closes: &mut self.pending_closes,
            stats: &self.stats[0],
            worker: 0,
            origin_slot,
            origin_generation,
            origin_closing,
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

    /// The bytes queued to the connection in `slot` this round: its send buffer, then its
    /// run of the round's shared buffer.
    fn queued(&self, slot: usize) -> Vec<u8> {
        let c = &self.slab.conns[slot];
        let mut queued = c.out.clone();
        if let Some(run) = c.run {
            queued.extend_from_slice(self.slab.shared.bytes(run));
        }
        queued
    }

    /// Every connection's queued bytes in wire order once the round's runs are sealed: its
    /// segments, then its send buffer.
    fn sealed(&mut self) -> Vec<Vec<u8>> {
        self.slab.seal_runs();
        let conns = self.slab.conns.iter();
        conns
            .map(|c| {
                assert!(c.run.is_none(), "sealing ends every run");
                let mut wire: Vec<u8> = c.segments.iter().flat_map(|s| s.to_vec()).collect();
                assert_eq!(wire.len(), c.segments_bytes);
                wire.extend_from_slice(&c.out);
                wire
            })
            .collect()
    }

    /// Whether the worker's running sum is what its connections count.
    fn sums_agree(&self) -> bool {
        let conns = self.slab.conns.iter();
        self.slab.client_pending_bytes == conns.map(Conn::accounted_bytes).sum::<usize>()
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
                    (self.queued(slot), c.backlog, c.dirty, standing)
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

/// One subscriber of each kind (two with room).
const EVERY_KIND: [Subscriber; 7] = [
    Subscriber::Roomy,
    Subscriber::Full,
    Subscriber::Closing,
    Subscriber::NearWatermark,
    Subscriber::Stale,
    Subscriber::Roomy,
    Subscriber::Drained,
];

/// Bytes already queued on the worker: far from its bound, at the edge of its reserve (the
/// fast copy declines every subscriber), and past the bound (the full path drops every
/// message).
const WORKER_LOADS: [usize; 3] = [
    0,
    WORKER_BYTES_MAX - WORKER_BYTES_MAX / 8 - 10,
    WORKER_BYTES_MAX,
];

/// What `act` leaves on a worker holding `subscribers` after `worker_bytes`, with the drop
/// reports it noted.
fn outcome_of(
    subscribers: &[Subscriber],
    worker_bytes: usize,
    act: impl FnOnce(&mut Deliverer<'_>, &[Location], &mut DropReports),
) -> (Outcome, String) {
    let (mut f, to) = Fixture::new(subscribers, worker_bytes);
    let mut reports = DropReports::default();
    let (stall, overloaded) = {
        let mut d = f.deliverer();
        act(&mut d, &to, &mut reports);
        (d.stall, d.overloaded)
    };
    (f.outcome(stall, overloaded), format!("{reports:?}"))
}

/// The encoded DELIVER of `message`.
fn deliver_frame(message: &Message<'_>) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_deliver(&mut frame, message);
    frame
}

/// The outcome of one message to `subscribers` through `deliver_each` (`fast`) or through
/// the full path for each (`deliver_copy` of the encoded DELIVER), after `worker_bytes`.
fn deliver(subscribers: &[Subscriber], worker_bytes: usize, fast: bool) -> Outcome {
    let message = Message::plain(b"publisher", b"news", b"sixteen bytes..!");
    let (outcome, _) = outcome_of(subscribers, worker_bytes, |d, to, _| {
        if fast {
            assert_eq!(d.deliver_each(to, None, &message), to.len());
        } else {
            let frame = deliver_frame(&message);
            for &at in to {
                d.deliver_copy(at, &frame);
            }
        }
    });
    outcome
}

/// The outcome of a fan-out record handed over by another worker, carrying one message for
/// `subscribers`, through `append_fanout_record` (`fast`) or through `append_frame_bytes` for
/// each (what the worker did before), after `worker_bytes`.
fn hand_over(subscribers: &[Subscriber], worker_bytes: usize, fast: bool) -> (Outcome, String) {
    let frame = deliver_frame(&Message::plain(b"elsewhere", b"news", b"handed over"));
    outcome_of(subscribers, worker_bytes, |d, to, reports| {
        let destinations = to.iter().map(|at| (at.slot, at.generation));
        if fast {
            d.append_fanout_record(&frame, destinations, reports);
        } else {
            for (slot, generation) in destinations {
                d.append_frame_bytes(slot, generation, b"", &frame);
                d.note_if_dropped(slot, &frame, reports);
            }
        }
    })
}

#[test]
fn a_handed_over_fan_out_takes_the_shared_round_and_leaves_what_the_full_path_leaves() {
    use Subscriber::*;
    for worker_bytes in WORKER_LOADS {
        let fast = hand_over(&EVERY_KIND, worker_bytes, true);
        assert_eq!(
            fast,
            hand_over(&EVERY_KIND, worker_bytes, false),
            "{worker_bytes}"
        );
        if worker_bytes == WORKER_BYTES_MAX {
            assert!(
                fast.1.contains("count: 5"),
                "the five live subscribers' drops reported: {}",
                fast.1
            );
        }
    }
    // Far from the bound, the clear subscribers' copies are runs of the shared buffer.
    let (mut f, to) = Fixture::new(&[Roomy, Roomy], 0);
    let frame = deliver_frame(&Message::plain(b"elsewhere", b"news", b"shared"));
    let destinations = to.iter().map(|at| (at.slot, at.generation));
    let mut reports = DropReports::default();
    f.deliverer()
        .append_fanout_record(&frame, destinations, &mut reports);
    assert!(f
        .slab
        .conns
        .iter()
        .all(|c| c.run.is_some() && c.out.is_empty()));
    assert_eq!(f.sealed(), [frame.clone(), frame]);
}

#[test]
fn the_fast_copy_leaves_what_the_full_path_leaves() {
    for worker_bytes in WORKER_LOADS {
        let fast = deliver(&EVERY_KIND, worker_bytes, true);
        assert_eq!(
            fast,
            deliver(&EVERY_KIND, worker_bytes, false),
            "{worker_bytes}"
        );
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

/// A DELIVER to one local connection (`Sink::deliver`, whose common case `write_unhindered`
/// writes without the rest of the admission rules) leaves what the full path
/// (`deliver_copy`, through `append_local`) leaves: for every kind of subscriber and worker
/// load, with a topic (a PUBLISH's) and without (a SEND's), and behind a run of a fan-out
/// earlier in the round.
#[test]
fn a_deliver_to_one_connection_leaves_what_the_full_path_leaves() {
    let messages = [
        Message::plain(b"sender", b"", b"sixteen bytes..!"),
        Message::plain(b"publisher", b"news", b"sixteen bytes..!"),
    ];
    for message in messages {
        for worker_bytes in WORKER_LOADS {
            for behind_a_run in [false, true] {
                let outcome = |fast: bool| {
                    let (outcome, _) = outcome_of(&EVERY_KIND, worker_bytes, |d, to, _| {
                        if behind_a_run {
                            d.deliver_each(to, None, &messages[1]);
                        }
                        let frame = deliver_frame(&message);
                        for &at in to {
                            if fast {
                                d.deliver(at, &message);
                            } else {
                                d.deliver_copy(at, &frame);
                            }
                        }
                    });
                    outcome
                };
                assert_eq!(
                    outcome(true),
                    outcome(false),
                    "{message:?} after {worker_bytes} bytes, behind a run: {behind_a_run}"
                );
            }
        }
    }
}

/// `write_unhindered` takes a DELIVER only for an open connection with room in its buffer,
/// below its high watermark, without a run, on a worker below its reserve; the rest is the
/// full path's.
#[test]
fn the_unhindered_write_takes_only_a_roomy_open_connection_on_a_worker_with_room() {
    let message = Message::plain(b"sender", b"", b"sixteen bytes..!");
    let len = frame_len_for_deliver(&message);
    let taken = |kinds: &[Subscriber], worker_bytes: usize, behind_a_run: bool| {
        let (mut f, to) = Fixture::new(kinds, worker_bytes);
        let mut d = f.deliverer();
        if behind_a_run {
            d.deliver_each(&to, None, &message);
        }
        to.iter()
            .map(|at| {
                d.write_unhindered((at.slot, at.generation), len, |out| {
                    encode_deliver(out, &message)
                })
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        taken(&EVERY_KIND, 0, false),
        [true, false, false, false, false, true, true],
        "Roomy, Full, Closing, NearWatermark, Stale, Roomy, Drained"
    );
    assert_eq!(taken(&EVERY_KIND, WORKER_LOADS[1], false), [false; 7]);
    assert_eq!(
        taken(&[Subscriber::Roomy], 0, true),
        [false],
        "behind a run"
    );
}

/// The fast copy goes through a fan-out's subscribers in runs: it passes over the sender
/// (`skip`), stops at a subscriber on another worker (whose worker's fan-out record takes it)
/// and at one it declines (the full path takes it), and takes the ones after them again; each
/// subscriber but the sender gets the message once, and the worker's sum counts each here.
#[test]
fn the_fast_copy_resumes_after_the_sender_another_workers_subscriber_and_a_declined_one() {
    use Subscriber::*;
    let (mut f, here) = Fixture::new(&[Roomy, Roomy, Roomy, NearWatermark, Roomy], 0);
    let elsewhere = Location {
        node: 0,
        worker: 1,
        slot: 0,
        generation: 0,
    };
    let to = [here[0], here[1], elsewhere, here[2], here[3], here[4]];
    let message = Message::plain(b"publisher", b"news", b"sixteen bytes..!");
    let frame = deliver_frame(&message);
    let (before, worker_bytes) = (f.queued(3), f.slab.client_pending_bytes);
    let stall = {
        let mut d = f.deliverer();
        assert_eq!(d.deliver_each(&to, Some(here[1]), &message), 5);
        d.stall
    };
    for (slot, expected) in [(0, &frame[..]), (1, &[]), (2, &frame), (4, &frame)] {
        assert_eq!(f.queued(slot), expected, "slot {slot}");
    }
    let runs: Vec<_> = [0, 2, 4].map(|slot| f.slab.conns[slot].run).into();
    assert!(
        runs.iter()
            .all(|run| run.is_some_and(|r| (r.len(), r.end()) == (frame.len(), frame.len()))),
        "the three it took share the round's one copy: {runs:?}"
    );
    assert_eq!(f.slab.shared.end(), frame.len(), "written once");
    assert_eq!(
        f.queued(3),
        [&before[..], &frame].concat(),
        "the declined one"
    );
    assert!(f.slab.conns[3].run.is_none(), "the declined one is copied");
    let (on, _) = stall.expect("the full path stalls the sender at the watermark");
    assert_eq!(
        on,
        StallOn::Queue {
            worker: 0,
            slot: here[3].slot,
            generation: here[3].generation
        }
    );
    assert!(f.outboxes[1].held_bytes() > 0, "the other worker's record");
    let added = f.slab.client_pending_bytes - worker_bytes;
    assert_eq!(
        added,
        4 * frame.len(),
        "the worker's sum counts the four here"
    );
    let counters = f.outcome(stall, false).counters;
    assert_eq!(counters[..2], [5, 4], "deliveries, DELIVER frames out here");
}

/// Frames queued to a subscriber between two fan-outs in one round go out between them: the
/// subscriber's run of the first is settled into its send buffer before the direct frame,
/// and sealing puts the second's run behind it; a subscriber given only the fan-outs gets
/// both from the shared buffer, as one run, and no copy in its own buffer.
#[test]
fn a_run_keeps_the_stream_in_order_around_other_frames() {
    use Subscriber::*;
    let (mut f, to) = Fixture::new(&[Roomy, Roomy], 0);
    let first = Message::plain(b"publisher", b"news", b"first");
    let second = Message::plain(b"publisher", b"news", b"second");
    let direct = Message::plain(b"friend", b"s0", b"direct");
    let frames: Vec<Vec<u8>> = [&first, &direct, &second]
        .iter()
        .map(|m| deliver_frame(m))
        .collect();
    {
        let mut d = f.deliverer();
        assert_eq!(d.deliver_each(&to, None, &first), 2);
        d.deliver_copy(to[0], &frames[1]);
        assert_eq!(d.deliver_each(&to, None, &second), 2);
    }
    assert!(f.sums_agree());
    assert_eq!(
        f.slab.conns[0].out,
        [&frames[0][..], &frames[1][..]].concat()
    );
    let run = f.slab.conns[1].run.expect("the fan-outs' run");
    assert_eq!(run.len(), frames[0].len() + frames[2].len());
    assert!(f.slab.conns[1].out.is_empty(), "no copy of its own");
    let wire = f.sealed();
    assert_eq!(wire[0], frames.concat());
    assert_eq!(wire[1], [&frames[0][..], &frames[2][..]].concat());
    assert_eq!(
        f.slab.conns[1].segments.len(),
        1,
        "one slice of the shared buffer"
    );
    assert!(f.sums_agree(), "sealing moves bytes, it does not add any");
}

/// A subscriber skipped by a fan-out (here, the publisher itself) cannot extend its run past
/// the frame it did not get: the next fan-out it is given is copied behind its settled run.
#[test]
fn a_subscriber_skipped_by_a_fan_out_gets_the_next_one_behind_its_run() {
    use Subscriber::*;
    let (mut f, to) = Fixture::new(&[Roomy, Roomy], 0);
    let messages = [b"one".as_slice(), b"two", b"three"].map(|p| Message::plain(b"p", b"t", p));
    {
        let mut d = f.deliverer();
        d.deliver_each(&to, None, &messages[0]);
        d.deliver_each(&to, Some(to[0]), &messages[1]);
        d.deliver_each(&to, None, &messages[2]);
    }
    assert!(f.sums_agree());
    let wire = f.sealed();
    let [one, two, three] = [0, 1, 2].map(|i| deliver_frame(&messages[i]));
    assert_eq!(wire[0], [&one[..], &three[..]].concat());
    assert_eq!(wire[1], [&one[..], &two[..], &three[..]].concat());
}

/// A subscriber whose send buffer holds bytes from this round (a direct frame before the
/// fan-out) has its run copied in behind them at the end of the round, not its buffer sealed
/// away: the buffer, grown past what a connection retains, keeps its capacity, and the
/// worker's sum still matches what its connections count.
#[test]
fn a_run_behind_a_grown_send_buffer_is_copied_into_it_and_the_sums_agree() {
    use Subscriber::*;
    let (mut f, to) = Fixture::new(&[Roomy], 0);
    f.slab.conns[0].out.reserve(64 << 10);
    f.slab.client_pending_bytes = f.slab.conns[0].accounted_bytes();
    let capacity = f.slab.conns[0].out.capacity();
    let direct = Message::plain(b"friend", b"s0", b"direct");
    let fanned = Message::plain(b"publisher", b"news", b"fanned");
    let [direct_frame, fanned_frame] = [&direct, &fanned].map(|m| deliver_frame(m));
    {
        let mut d = f.deliverer();
        d.deliver_copy(to[0], &direct_frame);
        assert_eq!(d.deliver_each(&to, None, &fanned), 1);
    }
    assert!(
        f.slab.conns[0].run.is_some(),
        "the fan-out took the shared path"
    );
    assert!(f.sums_agree());
    let wire = f.sealed();
    assert_eq!(wire[0], [&direct_frame[..], &fanned_frame[..]].concat());
    let c = &f.slab.conns[0];
    assert!(c.segments.is_empty(), "copied, not sealed");
    assert_eq!(c.out.capacity(), capacity);
    assert!(f.sums_agree());
}

/// A subscriber whose sends lag holds at most `SLICES_PER_CONNECTION_MAX` slices of round
/// buffers: while it does, its next run is copied into its send buffer; once they are sent,
/// its runs are shared again.
#[test]
fn a_lagging_subscriber_holds_a_bounded_number_of_slices() {
    use crate::server::shared_round::SLICES_PER_CONNECTION_MAX;
    use Subscriber::*;
    let (mut f, to) = Fixture::new(&[Roomy], 0);
    let message = Message::plain(b"publisher", b"news", b"held");
    let frame = deliver_frame(&message);
    let round = |f: &mut Fixture| {
        assert_eq!(f.deliverer().deliver_each(&to, None, &message), 1);
        f.slab.seal_runs();
        assert!(f.sums_agree());
    };
    for held in 1..=SLICES_PER_CONNECTION_MAX {
        round(&mut f);
        assert_eq!(f.slab.conns[0].segments.len(), held, "one slice per round");
    }
    round(&mut f);
    let c = &f.slab.conns[0];
    assert_eq!(
        c.segments.len(),
        SLICES_PER_CONNECTION_MAX,
        "no slice past the bound"
    );
    assert_eq!(c.out, frame, "the run was copied");
    sent_everything(&mut f, 0);
    round(&mut f);
    assert_eq!(f.slab.conns[0].segments.len(), 1, "shared again");
    assert!(f.slab.conns[0].out.is_empty());
}

/// The round buffers that sends still read are bounded in number per worker: while
/// `HELD_BUFFERS_MAX` rounds each have a subscriber whose segments hold a slice of them, the
/// next round's run is copied into its subscriber's send buffer; once those segments are
/// sent, the buffers are let go and rounds are shared again; a tick frees what no send reads.
#[test]
fn past_the_held_round_buffers_bound_a_round_is_copied_until_sends_let_go() {
    use crate::server::shared_round::HELD_BUFFERS_MAX;
    let (mut f, to) = Fixture::new(&[Subscriber::Roomy; HELD_BUFFERS_MAX + 1], 0);
    let message = Message::plain(b"publisher", b"news", b"held");
    let frame = deliver_frame(&message);
    // Round k's only subscriber is k.
    let round = |f: &mut Fixture, k: usize| {
        let one = &to[k..=k];
        assert_eq!(f.deliverer().deliver_each(one, None, &message), 1);
        f.slab.seal_runs();
        assert!(f.sums_agree());
    };
    for k in 0..HELD_BUFFERS_MAX {
        round(&mut f, k);
        assert_eq!(f.slab.shared.held().0, k + 1);
        assert_eq!(f.slab.conns[k].segments.len(), 1);
    }
    round(&mut f, HELD_BUFFERS_MAX);
    let last = &f.slab.conns[HELD_BUFFERS_MAX];
    assert_eq!(f.slab.shared.held().0, HELD_BUFFERS_MAX);
    assert!(last.segments.is_empty(), "no slice past the bound");
    assert_eq!(last.out, frame, "the run was copied");
    for k in 0..=HELD_BUFFERS_MAX {
        sent_everything(&mut f, k);
    }
    round(&mut f, 0);
    assert_eq!(f.slab.shared.held().0, 1, "the unread buffers were let go");
    assert_eq!(f.slab.conns[0].segments.len(), 1);
    sent_everything(&mut f, 0);
    f.slab.shared.trim();
    assert_eq!(
        f.slab.shared.held(),
        (0, 0),
        "a tick frees what no send reads"
    );
}

/// A round larger than the held buffers' bound (a drain of handed-over fan-outs has no round
/// bound of its own) is copied, and its buffer's capacity given back, so the next round is
/// shared again instead of being refused for the capacity the large one left.
#[test]
fn a_round_too_large_to_hold_is_copied_and_gives_its_capacity_back() {
    use crate::memory_budget::SHARED_ROUND_HELD_BYTES_MAX;
    let (mut f, to) = Fixture::new(&[Subscriber::Roomy], 0);
    let message = Message::plain(b"publisher", b"news", b"large");
    assert_eq!(f.deliverer().deliver_each(&to, None, &message), 1);
    assert!(
        f.slab
            .shared
            .capacity_after_reserving(SHARED_ROUND_HELD_BYTES_MAX)
            > SHARED_ROUND_HELD_BYTES_MAX
    );
    f.slab.seal_runs();
    assert!(f.sums_agree());
    assert!(f.slab.conns[0].segments.is_empty(), "copied, not held");
    assert_eq!(f.slab.shared.held().0, 0);
    assert!(f.slab.shared.capacity_after_reserving(0) <= SHARED_ROUND_HELD_BYTES_MAX / 8);
    sent_everything(&mut f, 0);
    assert_eq!(f.deliverer().deliver_each(&to, None, &message), 1);
    f.slab.seal_runs();
    assert_eq!(
        f.slab.conns[0].segments.len(),
        1,
        "the next round is shared"
    );
}

/// As a send completion leaves the connection in `slot`: everything it queued went out.
fn sent_everything(f: &mut Fixture, slot: usize) {
    let c = &mut f.slab.conns[slot];
    let before = c.accounted_bytes();
    c.segments.clear();
    c.segments_bytes = 0;
    c.out.clear();
    f.slab.repend(slot as u32, before);
}

/// A coalesced ERROR summary that a full queue cannot take is dropped and counted as every
/// ERROR it stood for, as is one to a connection closing (as stale); with room it is queued
/// and nothing is counted as dropped.
#[test]
fn a_dropped_error_summary_counts_every_error_it_stood_for() {
    const REPEATS: u64 = 5;
    for (full, closing) in [(false, false), (true, false), (false, true)] {
        let (mut f, to) = Fixture::new(&[Subscriber::Roomy], 0);
        let (slot, generation) = (to[0].slot, to[0].generation);
        let mut d = f.deliverer();
        let admit = |d: &mut Deliverer<'_>| {
            d.admit_error(slot, generation, ErrorCode::UNKNOWN_ID, b"x", b"unknown id")
        };
        assert!(admit(&mut d), "the first ERROR is sent");
        for _ in 0..REPEATS {
            assert!(!admit(&mut d), "its repeats are coalesced");
        }
        if full {
            d.slab.conns[slot as usize].out = vec![7; PENDING_BYTES_MAX];
        }
        d.slab.conns[slot as usize].close_requested = closing;
        let before = d.slab.conns[slot as usize].out.len();
        d.now_ms += d.error_interval_ms;
        d.flush_errors(slot, generation, false);
        let queued = d.slab.conns[slot as usize].out.len() - before;
        let stats = &f.stats[0];
        let drops = [&stats.error_drops, &stats.stale_drops].map(|c| c.load(Ordering::Relaxed));
        let expected = match (full, closing) {
            (true, _) => [REPEATS, 0],
            (_, true) => [0, REPEATS],
            _ => [0, 0],
        };
        assert_eq!(drops, expected, "full {full}, closing {closing}");
        assert_eq!(
            queued > 0,
            expected == [0, 0],
            "queued only when not dropped"
        );
        let ledger = f.slab.conns[slot as usize].errors.as_ref();
        assert!(!ledger.is_some_and(|l| l.has_repeats()), "nothing is owed");
    }
}

#[test]
fn only_a_close_of_the_origin_in_its_batch_stops_the_decoding_of_its_frames() {
    use crate::core::router::Sink;
    use crate::core::Output;
    use Subscriber::*;
    let (mut f, to) = Fixture::new(&[Roomy, Roomy, Roomy, Roomy], 0);
    let mut d = f.deliverer_from(to[0].slot, to[0].generation);
    assert!(!d.driven_closing(), "an open origin");
    d.close_slow_consumer(to[1].slot, to[1].generation, "another connection");
    d.close_conn(to[2], CloseReason::LIMIT_EXCEEDED, "another one".into());
    d.close(
        to[3],
        CloseReason::REPLACED,
        "a third, closed by the session",
    );
    assert!(!d.driven_closing(), "other connections' closes");
    d.close_conn(to[0], CloseReason::LIMIT_EXCEEDED, "the origin".into());
    assert!(d.driven_closing(), "the origin's close, through the engine");
    assert!(f.slab.conns[..3].iter().all(|c| c.close_requested));
    assert!(
        !f.slab.conns[3].close_requested,
        "a connection the session closes still gets what the batch queues before its CLOSE"
    );

    let (mut f, to) = Fixture::new(&[Roomy], 0);
    let mut d = f.deliverer_from(to[0].slot, to[0].generation);
    d.close_slow_consumer(to[0].slot, to[0].generation, "the origin");
    assert!(d.driven_closing(), "the origin's close as a slow consumer");

    let (mut f, to) = Fixture::new(&[Roomy], 0);
    let mut d = f.deliverer_from(to[0].slot, to[0].generation);
    d.close(to[0], CloseReason::REPLACED, "the origin, by the session");
    assert!(
        d.driven_closing(),
        "the origin's close decided by its session"
    );

    let (mut f, to) = Fixture::new(&[Closing], 0);
    let d = f.deliverer_from(to[0].slot, to[0].generation);
    assert!(
        d.driven_closing(),
        "an origin already closing when the batch starts"
    );
}
