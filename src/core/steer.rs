//! Connection steering: which worker a client connection should live on.
//!
//! SO_REUSEPORT spreads accepted connections over the workers by a hash of their ports, so a
//! sender and the receiver it streams to land on different workers half the time. Every
//! message of such a flow then crosses between cores (a handoff queue, a second copy, the
//! cache lines of both), measured at 1.6x the relay CPU per message of a flow whose two ends
//! share a worker (README "Connection steering"). Two rules:
//!
//! - **Follow the feeder** ([`Tally::wants_worker`]): a connection fed mostly by one other
//!   worker's connections moves to that worker, so a flow's two ends share a core; unless
//!   the split is a pipeline over two cores ([`follow_worth_it`]): a flow alone on two
//!   otherwise idle workers, or one sender streaming to several receivers by id (more busy
//!   receivers here fed by that worker than it has busy senders), which would all pile onto
//!   the sender's worker while this one idles.
//! - **Balance** ([`balance`]): a worker busier than another by [`STEER_IMBALANCE_PERMILLE_MIN`]
//!   moves one of its heavy senders there when that narrows the gap (the sender's receivers
//!   then follow it by the first rule), so two flows that hashing put on one worker end on one
//!   each. A move that would only swap which worker is busy is not made, so a single flow
//!   never moves back and forth.
//!
//! Plain code: the worker tallies what each connection is sent and which other worker handed
//! it over, and asks [`Tally::wants_worker`] once per interval; moving the connection is the
//! I/O layer's job.

/// How often a worker looks at its connections' tallies, in ms: long enough that a flow's
/// shape is real (a busy flow of 1 KiB messages is a few hundred thousand of them), short
/// enough that two flows split across the workers are joined within a second (two moves, an
/// interval each, see [`STEER_INTERVAL_MIN_MS`]). A moved connection stays for
/// [`STEER_SETTLE_MS`] whatever the intervals after say.
pub const STEER_INTERVAL_MS: u64 = 250;

/// The shortest interval a worker decides on, in ms. Intervals end at timer ticks; one that
/// began at a move (every worker starts its tallies over when a connection moves, since they
/// described a placement that no longer holds) began between two ticks, and ends at the
/// first tick at least this long after it rather than waiting one tick more.
pub const STEER_INTERVAL_MIN_MS: u64 = STEER_INTERVAL_MS - STEER_INTERVAL_MS / 5;

/// A connection is moved only when it was sent at least this many bytes per second over the
/// interval: a quiet connection costs nothing where it is, and moving one stops every worker
/// for a moment (see the I/O layer's move barrier).
pub const STEER_BYTES_PER_S_MIN: u64 = 8 << 20;

/// Share of a connection's traffic, in percent, that one other worker must have fed it.
pub const STEER_SHARE_PERCENT_MIN: u64 = 75;

/// After a move, a connection stays where it is for this long, whatever its tallies say: a
/// flow whose shape keeps changing does not move the connection at every interval. One that
/// moved to follow its feeder may still follow it again: the balance rule may move the
/// sender a receiver just joined, and the flow would stay split this long otherwise (the I/O
/// layer's `Conn::followed`).
pub const STEER_SETTLE_MS: u64 = 5_000;

/// What one connection was sent in the current interval, and which other worker fed it most
/// (a single-counter heavy-hitter summary over the other workers: exact when one of them
/// feeds it more than all the others together, which is all the rule needs).
///
/// Counts are `u32`, saturating: 4 GiB in one interval is far past every threshold, and the
/// tally is in every connection's slot (16 bytes less than `u64`s).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Bytes sent to the client, whoever fed them.
    pub sent_bytes: u32,
    /// The candidate heaviest feeder among the other workers and its surplus over them.
    pub top_worker: u16,
    pub top_surplus_bytes: u32,
    /// Bytes the top feeder handed over since it became the candidate.
    pub top_bytes: u32,
    /// Bytes received from the client (what it sends through the relay).
    pub read_bytes: u32,
}

impl Tally {
    /// `bytes` were sent to the client.
    #[inline]
    pub fn sent(&mut self, bytes: u64) {
        self.sent_bytes = self.sent_bytes.saturating_add(clamp(bytes));
    }

    /// `bytes` were received from the client.
    #[inline]
    pub fn read(&mut self, bytes: u64) {
        self.read_bytes = self.read_bytes.saturating_add(clamp(bytes));
    }

    /// Another worker, `worker`, handed over `bytes` for the connection.
    #[inline]
    pub fn fed_by(&mut self, worker: u16, bytes: u64) {
        let bytes = clamp(bytes);
        if worker == self.top_worker && self.top_bytes > 0 {
            self.top_surplus_bytes = self.top_surplus_bytes.saturating_add(bytes);
            self.top_bytes = self.top_bytes.saturating_add(bytes);
        } else if bytes >= self.top_surplus_bytes {
            self.top_worker = worker;
            self.top_surplus_bytes = bytes - self.top_surplus_bytes;
            self.top_bytes = bytes;
        } else {
            self.top_surplus_bytes -= bytes;
        }
    }

    /// The worker this connection should move to at the end of an interval of `interval_ms`,
    /// if any: it was sent at least [`STEER_BYTES_PER_S_MIN`], and one other worker fed at
    /// least [`STEER_SHARE_PERCENT_MIN`] percent of it.
    pub fn wants_worker(&self, interval_ms: u64) -> Option<u16> {
        let min_bytes = STEER_BYTES_PER_S_MIN.saturating_mul(interval_ms.max(1)) / 1000;
        let (top, sent) = (u64::from(self.top_bytes), u64::from(self.sent_bytes));
        let share_ok = top * 100 >= sent * STEER_SHARE_PERCENT_MIN;
        (sent >= min_bytes && top > 0 && share_ok).then_some(self.top_worker)
    }
}

/// What [`follow_worth_it`] weighs: the worker a connection is on ("here") and the worker of
/// its feeder (the target), over the last steering interval. A busy connection was sent or
/// read at least [`STEER_BYTES_PER_S_MIN`] ([`is_busy`]); a busy sender read that much
/// ([`is_busy_sender`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowView {
    /// Busy connections here fed mostly by the target ([`Tally::wants_worker`]), the
    /// connection weighed among them.
    pub busy_here_fed_by_target: u32,
    /// Every busy connection here.
    pub busy_conns_here: u32,
    pub busy_conns_target: u32,
    pub busy_senders_target: u32,
}

/// Whether a connection that wants the worker of its feeder ([`Tally::wants_worker`]) should
/// go there: the flow is cheaper on one worker (no handoff, one copy) unless the split is a
/// pipeline whose two halves each get a core.
/// - A lone flow on two otherwise idle workers (nothing busy here but what the target feeds,
///   and nothing busy there but the sender) is such a pipeline: measured 21 to 24 M msgs/s
///   at 16 B against 18 to 20 M on one worker, when the load generator leaves the CPUs free.
///   Any other busy connection on either worker means the cores are shared anyway.
/// - More busy receivers here fed by the target than it has busy senders means a sender
///   there streams to several of them by id: they would all follow it, one per interval,
///   and leave its worker doing everything while this one idles (the balance rule cannot
///   undo that: the sender's share is all of its worker's work). Two senders on the target
///   feeding one receiver each here join their receivers, one move at a time.
pub fn follow_worth_it(view: &FollowView) -> bool {
    let others_here = view.busy_conns_here > view.busy_here_fed_by_target;
    let lone_pipeline = !others_here && view.busy_conns_target < 2;
    let fan_in = view.busy_here_fed_by_target > view.busy_senders_target;
    !lone_pipeline && !fan_in
}

/// Whether a tally counts as a busy connection for [`follow_worth_it`].
pub fn is_busy(tally: &Tally, interval_ms: u64) -> bool {
    let min_bytes = busy_bytes_min(interval_ms);
    u64::from(tally.sent_bytes) >= min_bytes || u64::from(tally.read_bytes) >= min_bytes
}

/// Whether a tally counts as a busy sender (what it sent the relay) for [`follow_worth_it`].
pub fn is_busy_sender(tally: &Tally, interval_ms: u64) -> bool {
    u64::from(tally.read_bytes) >= busy_bytes_min(interval_ms)
}

/// [`STEER_BYTES_PER_S_MIN`] over an interval of `interval_ms`.
fn busy_bytes_min(interval_ms: u64) -> u64 {
    STEER_BYTES_PER_S_MIN.saturating_mul(interval_ms.max(1)) / 1000
}

/// A count of bytes as a tally keeps it.
#[inline]
fn clamp(bytes: u64) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// The least gap, in permille of a CPU, between the busiest and the least busy worker that
/// the balance rule acts on: smaller gaps are noise (and a move stops every worker for a
/// moment).
pub const STEER_IMBALANCE_PERMILLE_MIN: u32 = 200;

/// The balance rule, on worker `here`: `busy_permille[w]` is the CPU each worker used over its
/// last interval (permille of one CPU), `senders` this worker's movable connections as
/// `(key, bytes received from it)` over an interval of `interval_ms`. Picks the sender to move
/// and where: to the least busy worker, the sender whose share of this worker's work (its part
/// of the bytes received here) leaves the smallest gap, if that gap is smaller than the one
/// now by at least [`STEER_IMBALANCE_PERMILLE_MIN`]. Only senders of at least
/// [`STEER_BYTES_PER_S_MIN`] count: they are the flows that load a worker.
pub fn balance<K: Copy>(
    here: u16,
    busy_permille: &[u32],
    senders: &[(K, u64)],
    interval_ms: u64,
) -> Option<(K, u16)> {
    let &here_busy = busy_permille.get(here as usize)?;
    let (target, &target_busy) = busy_permille
        .iter()
        .enumerate()
        .filter(|&(w, _)| w != here as usize)
        .min_by_key(|&(_, b)| *b)?;
    let gap = here_busy.checked_sub(target_busy)?;
    if gap < STEER_IMBALANCE_PERMILLE_MIN {
        return None;
    }
    let read_total: u64 = senders.iter().map(|&(_, r)| r).sum();
    let min_bytes = STEER_BYTES_PER_S_MIN.saturating_mul(interval_ms.max(1)) / 1000;
    senders
        .iter()
        .filter(|&&(_, read)| read >= min_bytes)
        .map(|&(key, read)| {
            // Its share of this worker's CPU, moved: the gap changes by twice that.
            let share = (u64::from(here_busy) * read / read_total.max(1)) as i64;
            let gap_after = (i64::from(gap) - 2 * share).unsigned_abs();
            (key, gap_after)
        })
        .filter(|&(_, gap_after)| {
            gap_after + u64::from(STEER_IMBALANCE_PERMILLE_MIN) <= u64::from(gap)
        })
        .min_by_key(|&(_, gap_after)| gap_after)
        .map(|(key, _)| (key, target as u16))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    /// A connection sent `local` bytes fed by its own worker and `feeds` by others.
    fn tally(local: u64, feeds: &[(u16, u64)]) -> Tally {
        let mut t = Tally::default();
        t.sent(local);
        for &(w, b) in feeds {
            t.fed_by(w, b);
            t.sent(b);
        }
        t
    }

    #[test]
    fn a_connection_fed_by_one_other_worker_wants_that_worker() {
        assert_eq!(tally(0, &[(1, 10 * MB)]).wants_worker(1000), Some(1));
        assert_eq!(tally(0, &[(0, 10 * MB)]).wants_worker(1000), Some(0));
    }

    #[test]
    fn a_connection_fed_mostly_by_its_own_worker_stays() {
        assert_eq!(tally(10 * MB, &[(1, MB)]).wants_worker(1000), None);
        assert_eq!(tally(10 * MB, &[]).wants_worker(1000), None);
    }

    #[test]
    fn a_quiet_connection_stays_however_its_traffic_is_shaped() {
        let t = tally(0, &[(1, STEER_BYTES_PER_S_MIN / 2 - 1)]);
        assert_eq!(t.wants_worker(500), None);
        let t = tally(0, &[(1, STEER_BYTES_PER_S_MIN / 2)]);
        assert_eq!(t.wants_worker(500), Some(1));
    }

    #[test]
    fn a_connection_fed_evenly_by_two_other_workers_stays() {
        let mut t = Tally::default();
        for _ in 0..100 {
            for w in [1, 2] {
                t.fed_by(w, MB);
                t.sent(MB);
            }
        }
        assert_eq!(t.wants_worker(1000), None);
    }

    #[test]
    fn the_share_threshold_is_three_quarters_of_what_the_connection_was_sent() {
        let t = tally(25 * MB, &[(1, 75 * MB)]);
        assert_eq!(t.wants_worker(1000), Some(1));
        let t = tally(25 * MB + 1, &[(1, 75 * MB)]);
        assert_eq!(t.wants_worker(1000), None, "just under 75%");
    }

    /// Two heavy senders (and a light one) on worker 0.
    const TWO_FLOWS: &[(u32, u64)] = &[(7, 100 * MB), (8, 90 * MB), (9, MB)];

    #[test]
    fn a_busy_worker_with_two_flows_moves_one_sender_to_the_idle_worker() {
        assert_eq!(balance(0, &[1000, 50], TWO_FLOWS, 1000), Some((8, 1)));
        assert_eq!(balance(1, &[50, 1000], TWO_FLOWS, 1000), Some((8, 0)));
    }

    #[test]
    fn one_flow_never_moves_to_an_idle_worker_it_would_only_keep_busy() {
        assert_eq!(balance(0, &[1000, 0], &[(7, 100 * MB)], 1000), None);
        assert_eq!(
            balance(0, &[1000, 0], &[(7, 100 * MB), (8, MB)], 1000),
            None
        );
    }

    #[test]
    fn small_gaps_and_the_less_busy_side_move_nothing() {
        assert_eq!(
            balance(0, &[900, 750], TWO_FLOWS, 1000),
            None,
            "gap under the minimum"
        );
        assert_eq!(
            balance(0, &[50, 1000], TWO_FLOWS, 1000),
            None,
            "this worker is the idle one"
        );
        assert_eq!(
            balance(0, &[1000], TWO_FLOWS, 1000),
            None,
            "a single worker"
        );
    }

    #[test]
    fn three_flows_on_two_workers_settle_instead_of_swapping_back_and_forth() {
        // Two flows on 0 (busy), one on 1 (half busy): moving one would make 1 the busy one.
        assert_eq!(
            balance(0, &[1000, 500], &[(7, 100 * MB), (8, 100 * MB)], 1000),
            None
        );
    }

    #[test]
    fn light_senders_do_not_count_as_flows() {
        let light = STEER_BYTES_PER_S_MIN - 1;
        assert_eq!(
            balance(0, &[1000, 0], &[(7, light), (8, light)], 1000),
            None
        );
    }

    #[test]
    fn the_least_busy_of_several_workers_is_the_target() {
        assert_eq!(
            balance(1, &[600, 1000, 100, 300], TWO_FLOWS, 1000),
            Some((8, 2))
        );
    }

    #[test]
    fn a_lone_flow_across_two_idle_workers_stays_a_pipeline_and_any_other_busy_connection_joins_it()
    {
        // (receivers here fed by the target, busy here, busy there, senders there)
        let view = |fed, here, there, senders| FollowView {
            busy_here_fed_by_target: fed,
            busy_conns_here: here,
            busy_conns_target: there,
            busy_senders_target: senders,
        };
        assert!(
            !follow_worth_it(&view(1, 1, 1, 1)),
            "one flow, one end on each worker"
        );
        assert!(
            follow_worth_it(&view(1, 3, 1, 1)),
            "another flow's ends beside the receiver"
        );
        assert!(
            follow_worth_it(&view(1, 1, 3, 2)),
            "the sender's worker carries another flow"
        );
        let busy = tally(STEER_BYTES_PER_S_MIN, &[]);
        assert!(is_busy(&busy, 1000));
        let mut reader = Tally::default();
        reader.read(STEER_BYTES_PER_S_MIN / 2);
        assert!(is_busy(&reader, 500));
        assert!(!is_busy(&tally(STEER_BYTES_PER_S_MIN - 1, &[]), 1000));
    }

    #[test]
    fn receivers_of_one_sender_by_id_do_not_pile_onto_its_worker() {
        // One sender streaming to three receivers here: alone, or beside another flow on
        // either worker.
        let hub = FollowView {
            busy_here_fed_by_target: 3,
            busy_conns_here: 3,
            busy_conns_target: 1,
            busy_senders_target: 1,
        };
        assert!(!follow_worth_it(&hub));
        assert!(!follow_worth_it(&FollowView {
            busy_conns_here: 5,
            ..hub
        }));
        assert!(!follow_worth_it(&FollowView {
            busy_conns_target: 3,
            busy_senders_target: 2,
            ..hub
        }));
        // Two senders there, one receiver each here: they join their receivers.
        assert!(follow_worth_it(&FollowView {
            busy_here_fed_by_target: 2,
            busy_conns_here: 2,
            busy_conns_target: 2,
            busy_senders_target: 2,
        }));
        // Several senders there streaming to one receiver here: it joins them.
        assert!(follow_worth_it(&FollowView {
            busy_here_fed_by_target: 1,
            busy_conns_here: 1,
            busy_conns_target: 3,
            busy_senders_target: 3,
        }));
    }

    #[test]
    fn the_heaviest_feeder_is_found_whatever_order_the_bytes_come_in() {
        // 80% from 2, the rest from 1 and 3, in every rotation of the order.
        for rotation in 0..3 {
            let mut feeds = vec![(1u16, 2 * MB), (2, 16 * MB), (3, 2 * MB)];
            feeds.rotate_left(rotation);
            let t = tally(0, &feeds);
            assert_eq!(t.top_worker, 2, "rotation {rotation}");
            assert_eq!(u64::from(t.sent_bytes), 20 * MB);
        }
    }
}
