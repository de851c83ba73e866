use super::*;

const MAX: usize = 8 << 20;
const STALL_MS: u64 = 250;
const GRACE_MS: u64 = 2_000;
/// The default `max_frame_bytes`.
const FRAME_MAX: usize = 1 << 20;

fn clients() -> FlowLimits {
    FlowLimits::for_clients(MAX, FRAME_MAX, STALL_MS, GRACE_MS)
}

fn links() -> FlowLimits {
    FlowLimits::for_links(MAX, FRAME_MAX, STALL_MS)
}

#[test]
fn a_queue_below_its_high_watermark_queues_without_stalling() {
    let mut b = Backlog::default();
    assert_eq!(b.admit(&clients(), 0, MAX / 4 - 1, 5), Admit::Queue);
    assert!(!b.congested());
    assert!(!b.stalls(&clients(), 5));
}

#[test]
fn reaching_the_high_watermark_stalls_the_producer_until_the_episode_budget_ends() {
    let mut b = Backlog::default();
    assert_eq!(
        b.admit(&clients(), MAX / 4 - 10, 10, 100),
        Admit::Stall { until_ms: 350 }
    );
    // Later producers in the same episode get what is left of the budget.
    assert_eq!(
        b.admit(&clients(), MAX / 4, 10, 300),
        Admit::Stall { until_ms: 350 }
    );
    assert!(b.stalls(&clients(), 349));
    // Spent: the consumer no longer stalls anyone, and its messages are still queued.
    assert!(!b.stalls(&clients(), 350));
    assert_eq!(b.admit(&clients(), MAX / 4, 10, 350), Admit::Queue);
    assert!(b.congested());
}

#[test]
fn an_episode_ends_below_the_low_watermark_not_before() {
    let l = clients();
    let mut b = Backlog::default();
    b.admit(&l, MAX / 4, 1, 0);
    assert!(
        !b.drained(&l, MAX / 8),
        "the low watermark itself is not below it"
    );
    assert!(b.congested());
    assert!(b.drained(&l, MAX / 8 - 1));
    assert!(!b.congested());
    assert!(!b.drained(&l, 0), "an episode ends once");
    // A new episode gets a whole budget again.
    assert_eq!(
        b.admit(&l, MAX / 4, 1, 1_000),
        Admit::Stall { until_ms: 1_250 }
    );
}

#[test]
fn a_consumer_is_overdue_only_after_staying_above_pending_bytes_max_past_its_grace() {
    let l = clients();
    let mut b = Backlog::default();
    assert_eq!(
        b.admit(&l, MAX, 1, 1_000),
        Admit::Stall {
            until_ms: 1_000 + STALL_MS
        }
    );
    assert!(!b.overdue(&l, 1_000 + GRACE_MS));
    assert!(b.overdue(&l, 1_001 + GRACE_MS));
    // Draining to the bound forgives it; the episode goes on above the low watermark.
    let mut b2 = Backlog::default();
    b2.admit(&l, MAX, 1, 1_000);
    assert!(!b2.drained(&l, MAX));
    assert!(!b2.overdue(&l, 10_000));
    assert!(b2.congested());
}

#[test]
fn a_message_past_the_ceiling_is_refused() {
    let l = clients();
    let mut b = Backlog::default();
    assert_eq!(b.admit(&l, 2 * MAX, 1, 0), Admit::Refuse, "no episode yet");
    assert_eq!(
        b.admit(&l, 2 * MAX - 10, 10, 0),
        Admit::Stall { until_ms: 250 }
    );
    assert_eq!(b.admit(&l, usize::MAX, 1, 0), Admit::Refuse);
}

/// While the producers are stalled, what was already on its way may pass the ceiling by
/// `in_flight_bytes_max` (`pending_bytes_max` for clients); once the budget is spent, or for a
/// link, the ceiling is the bound.
#[test]
fn messages_in_flight_at_a_stall_may_pass_the_ceiling_until_the_budget_is_spent() {
    let l = clients();
    assert_eq!(l.in_flight_bytes_max, MAX);
    let mut b = Backlog::default();
    assert_eq!(b.admit(&l, MAX / 4, 0, 0), Admit::Stall { until_ms: 250 });
    assert_eq!(b.admit(&l, 2 * MAX, 1, 100), Admit::Stall { until_ms: 250 });
    assert_eq!(
        b.admit(&l, 3 * MAX - 1, 1, 249),
        Admit::Stall { until_ms: 250 }
    );
    assert_eq!(b.admit(&l, 3 * MAX, 1, 249), Admit::Refuse);
    assert_eq!(b.admit(&l, 2 * MAX, 1, 250), Admit::Refuse, "budget spent");
    assert_eq!(b.admit(&l, 2 * MAX - 1, 1, 250), Admit::Queue);
    let (l, mut b) = (links(), Backlog::default());
    assert_eq!(l.in_flight_bytes_max, 0);
    assert_eq!(b.admit(&l, MAX / 4, 0, 0), Admit::Stall { until_ms: 250 });
    assert_eq!(b.admit(&l, MAX, 1, 0), Admit::Refuse);
}

#[test]
fn a_link_stalls_each_producer_anew_and_refuses_past_its_bound_without_closing() {
    let l = links();
    let mut b = Backlog::default();
    assert_eq!(b.admit(&l, MAX / 4, 0, 10), Admit::Stall { until_ms: 260 });
    // No episode budget: a producer arriving much later is stalled again.
    assert_eq!(
        b.admit(&l, MAX / 2, 0, 10_000),
        Admit::Stall { until_ms: 10_250 }
    );
    assert!(b.stalls(&l, 1_000_000));
    assert_eq!(b.admit(&l, MAX, 1, 10_000), Admit::Refuse);
    assert!(!b.overdue(&l, u64::MAX - 1), "a link is never slow");
}

#[test]
fn a_stall_is_over_at_its_deadline_or_when_its_queue_stops_stalling() {
    let s = Stall {
        on: StallOn::Handoff(1),
        since_ms: 0,
        until_ms: 100,
    };
    assert!(!s.over(99, true));
    assert!(s.over(100, true));
    assert!(s.over(5, false));
}

/// Every sequence of offers and drains over a small range keeps the invariants: a stall never
/// outlasts the episode's budget, an episode exists whenever the queue stalled someone and
/// has not drained below the low watermark, nothing past the ceiling is queued but while the
/// producers are stalled, and nothing past the ceiling and the in-flight room at all.
#[test]
fn invariants_hold_over_every_short_sequence_of_offers_and_drains() {
    let l = FlowLimits::for_clients(64, 16, 10, 20);
    // Each step: offer `n` bytes at time t (n > 0) or drain to `-n` (n <= 0).
    let steps: Vec<i64> = (-64..=128).step_by(8).collect();
    for a in &steps {
        for b in &steps {
            for c in &steps {
                let mut backlog = Backlog::default();
                let mut pending: i64 = 0;
                let mut episode_start: Option<u64> = None;
                for (t, &step) in [*a, *b, *c].iter().enumerate() {
                    let now = t as u64 * 7;
                    if step > 0 {
                        match backlog.admit(&l, pending as usize, step as usize, now) {
                            Admit::Refuse => assert!(
                                pending + step > 128 + 64
                                    || (pending + step > 128
                                        && episode_start.map_or(true, |t| now >= t + 10))
                            ),
                            verdict => {
                                pending += step;
                                assert!(pending <= 128 + 64);
                                if pending > 128 {
                                    let start = episode_start.expect("past the ceiling stalls");
                                    assert!(now < start + 10, "past the ceiling after the budget");
                                }
                                if pending >= 16 && episode_start.is_none() {
                                    episode_start = Some(now);
                                }
                                if let Admit::Stall { until_ms } = verdict {
                                    let start = episode_start.expect("a stall has an episode");
                                    assert_eq!(until_ms, start + 10);
                                    assert!(now < until_ms);
                                }
                            }
                        }
                    } else {
                        pending = pending.min(-step);
                        if backlog.drained(&l, pending as usize) {
                            assert!(pending < 8);
                            episode_start = None;
                        }
                    }
                    assert_eq!(backlog.congested(), episode_start.is_some());
                }
            }
        }
    }
}

#[test]
fn a_queue_group_sees_a_queue_clear_then_stalling_then_behind_then_over() {
    let l = clients();
    let mut b = Backlog::default();
    assert_eq!(b.congestion(&l, 0), Congestion::Clear);
    b.admit(&l, MAX / 4, 10, 100);
    assert_eq!(
        b.congestion(&l, 100),
        Congestion::Stalling,
        "in its episode"
    );
    assert_eq!(
        b.congestion(&l, 100 + STALL_MS),
        Congestion::Behind,
        "its stall budget is spent"
    );
    let mut over = Backlog::default();
    over.admit(&l, MAX, 10, 100);
    assert_eq!(
        over.congestion(&l, 100),
        Congestion::Over,
        "above pending_bytes_max, whatever the budget"
    );
    assert!(
        Congestion::Behind < Congestion::Over,
        "a member over is picked last"
    );
    over.drained(&l, MAX / 8 - 1);
    assert_eq!(over.congestion(&l, 100), Congestion::Clear, "drained");
}

#[test]
fn only_a_connection_queue_on_the_asking_worker_is_a_local_queue() {
    let on = StallOn::Queue {
        worker: 1,
        slot: 7,
        generation: 3,
    };
    assert_eq!(on.local_queue(1), Some((7, 3)));
    assert_eq!(
        on.local_queue(0),
        None,
        "another worker's, seen through its board"
    );
    assert_eq!(StallOn::Handoff(1).local_queue(1), None);
    assert_eq!(StallOn::Backlog(1).local_queue(1), None);
}

#[test]
fn an_error_never_takes_a_queue_past_pending_bytes_max() {
    let l = clients();
    assert!(l.takes_error(0, 100));
    assert!(l.takes_error(MAX - 100, 100), "up to the bound");
    assert!(!l.takes_error(MAX - 99, 100), "not past it");
    assert!(!l.takes_error(usize::MAX, 1));
}

#[test]
fn a_relay_frame_refused_at_the_ceiling_still_fits_the_in_flight_room() {
    let l = clients();
    let mut b = Backlog::default();
    b.admit(&l, MAX, 10, 0);
    // Past the stall budget the ceiling is twice the bound: a message is refused there ...
    assert_eq!(b.admit(&l, 2 * MAX, 10, STALL_MS + 1), Admit::Refuse);
    // ... but a PING, PONG, PRESENCE or RECEIPT fits up to three times it: the consumer meets
    // its grace, not a close for the relay's own frame.
    assert!(l.takes_relay_frame(2 * MAX, 10));
    assert!(l.takes_relay_frame(3 * MAX - 10, 10));
    assert!(!l.takes_relay_frame(3 * MAX - 9, 10), "the memory bound");
    assert_eq!(
        b.admit_relay_frame(&l, 2 * MAX, 10, STALL_MS + 1),
        Admit::Queue
    );
    assert_eq!(
        b.admit_relay_frame(&l, 3 * MAX, 10, STALL_MS + 1),
        Admit::Refuse
    );
    assert!(
        !links().takes_relay_frame(MAX, 1),
        "a link has no such room"
    );
}

#[test]
fn the_last_eighth_of_a_workers_bound_is_kept_for_queues_that_are_not_behind() {
    const WORKER_MAX: usize = 64 * MAX;
    const RESERVE_FROM: usize = WORKER_MAX - WORKER_MAX / 8;
    let room = |worker_bytes| WorkerRoom::of(WORKER_MAX, worker_bytes, 10);
    assert_eq!(room(RESERVE_FROM - 10), WorkerRoom::Free);
    assert_eq!(room(RESERVE_FROM - 9), WorkerRoom::Reserve);
    assert_eq!(room(WORKER_MAX - 10), WorkerRoom::Reserve);
    assert_eq!(room(WORKER_MAX - 9), WorkerRoom::Full);
    let l = clients();
    let all = [
        Congestion::Clear,
        Congestion::Stalling,
        Congestion::Behind,
        Congestion::Over,
    ];
    for (queue, standing) in [0, MAX / 4, 2 * MAX].into_iter().zip(all) {
        assert!(WorkerRoom::Free.admits(&l, queue, 10, || standing));
        assert!(!WorkerRoom::Full.admits(&l, queue, 10, || standing));
    }
    // The reserve: for a queue that stays below its high watermark with the message ...
    assert!(WorkerRoom::Reserve.admits(&l, MAX / 4 - 11, 10, || Congestion::Behind));
    assert!(!WorkerRoom::Reserve.admits(&l, MAX / 4 - 10, 10, || Congestion::Behind));
    assert!(!WorkerRoom::Reserve.admits(&l, MAX, 10, || Congestion::Over));
    // ... or one stalling its producers within its budget, behind for a moment only.
    assert!(WorkerRoom::Reserve.admits(&l, MAX, 10, || Congestion::Stalling));
    // A queue's standing as the worker sees it: behind once its stall budget is spent.
    let mut b = Backlog::default();
    b.admit(&l, MAX / 4, 10, 100);
    assert_eq!(b.congestion(&l, 100 + STALL_MS - 1), Congestion::Stalling);
    assert_eq!(b.congestion(&l, 100 + STALL_MS), Congestion::Behind);
}

#[test]
fn a_large_pending_bytes_max_keeps_the_high_watermark_at_its_cap() {
    let big = FlowLimits::for_clients(64 << 20, FRAME_MAX, STALL_MS, GRACE_MS);
    assert_eq!(big.stall_at_bytes, STALL_AT_BYTES_MAX);
    assert_eq!(big.resume_below_bytes, STALL_AT_BYTES_MAX / 2);
    // The close and refusal bounds still follow `pending_bytes_max`.
    assert_eq!(big.pending_bytes_max, 64 << 20);
    assert_eq!(big.ceiling_bytes, 128 << 20);
    // The default (8 MiB) sits exactly at the cap; smaller ones keep their quarter.
    assert_eq!(clients().stall_at_bytes, MAX / 4);
    assert_eq!(clients().stall_at_bytes, STALL_AT_BYTES_MAX);
    let small = FlowLimits::for_clients(1 << 20, FRAME_MAX, STALL_MS, GRACE_MS);
    assert_eq!(
        (small.stall_at_bytes, small.resume_below_bytes),
        (256 << 10, 128 << 10)
    );
}

#[test]
fn the_high_watermark_is_never_below_one_whole_frame_of_the_largest_size() {
    let frames_of_16_mib = FlowLimits::for_clients(256 << 20, 16 << 20, STALL_MS, GRACE_MS);
    assert_eq!(frames_of_16_mib.stall_at_bytes, 16 << 20);
    assert_eq!(frames_of_16_mib.resume_below_bytes, 8 << 20);
    // Still a quarter of pending_bytes_max when that is less.
    let tight = FlowLimits::for_clients(32 << 20, 16 << 20, STALL_MS, GRACE_MS);
    assert_eq!(tight.stall_at_bytes, 8 << 20);
}

#[test]
fn a_data_link_stalls_its_producers_from_the_same_capped_watermark() {
    let link = FlowLimits::for_links(64 << 20, FRAME_MAX, STALL_MS);
    assert_eq!(link.stall_at_bytes, STALL_AT_BYTES_MAX);
    assert_eq!(link.resume_below_bytes, STALL_AT_BYTES_MAX / 2);
    // Its bound is still the whole link_pending_bytes_max, and it is never closed.
    assert_eq!(link.ceiling_bytes, 64 << 20);
    assert_eq!(link.grace_ms, u64::MAX);
    let small = FlowLimits::for_links(4 << 20, FRAME_MAX, STALL_MS);
    assert_eq!(small.stall_at_bytes, 1 << 20);
}
