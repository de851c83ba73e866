//! The sender's bounds, triggers and failures, and the two ends together over a simulated
//! path that loses, duplicates, delays, reorders and cuts: nothing confirmed is lost, nothing
//! is delivered twice, and every message ends confirmed or failed.

use super::*;
use crate::protocol::ErrorCode;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Microseconds in a millisecond: the tests speak in milliseconds.
const MS: u64 = 1000;

/// Bound on the timer expiries a simulated-time loop handles: far more than any test expects
/// (a handful), so that a timer that keeps firing without the awaited outcome fails the test
/// instead of looping for ever.
const TIMER_FIRINGS_MAX: usize = 10_000;

fn sender(cfg: SenderConfig) -> AckSender {
    AckSender::new(cfg, 0xE90C, 7)
}

fn transmits(s: &mut AckSender) -> Vec<Transmit> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut AckSender) -> Vec<AckEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// The events so far, which must all be confirmations, as (first, last) ranges.
fn confirmed_ranges(s: &mut AckSender) -> Vec<(u64, u64)> {
    events(s)
        .into_iter()
        .map(|e| match e {
            AckEvent::Confirmed {
                first_seq,
                last_seq,
                ..
            } => (first_seq, last_seq),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn payload(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

#[test]
fn sequence_numbers_are_dense_per_target_and_start_at_1() {
    let mut s = sender(SenderConfig::default());
    assert_eq!(s.send(b"b", payload(1), 0), Ok(1));
    assert_eq!(s.send(b"b", payload(1), 0), Ok(2));
    assert_eq!(s.send(b"c", payload(1), 0), Ok(1));
    let sent = transmits(&mut s);
    assert_eq!(sent.len(), 3);
    assert!(sent
        .iter()
        .all(|t| t.epoch == 0xE90C && t.retransmit.is_none()));
    assert_eq!(s.stats().in_flight, 3);
}

#[test]
fn number_keeps_the_message_for_retransmission_but_queues_no_transmit() {
    let mut s = sender(SenderConfig::default());
    s.send(b"c", payload(1), 0).unwrap();
    transmits(&mut s);
    for want in 1..=3u64 {
        let n = s.number(b"b", Bytes::from_static(b"hello"), 0).unwrap();
        assert_eq!((n.seq, n.epoch, n.wire_seq), (want, 0xE90C, want));
        assert_eq!((&n.target[..], &n.payload[..]), (&b"b"[..], &b"hello"[..]));
    }
    assert!(
        transmits(&mut s).is_empty(),
        "the caller writes numbered messages"
    );
    assert_eq!(s.stats().in_flight, 4);
    // Kept: a reconnection sends them again, in order, with the one to "c".
    s.on_reconnected(MS);
    let again: Vec<(Vec<u8>, u64)> = transmits(&mut s)
        .into_iter()
        .map(|t| (t.target.to_vec(), t.seq))
        .collect();
    assert_eq!(again.len(), 4);
    assert!(again.contains(&(b"c".to_vec(), 1)));
    let to_b: Vec<u64> = again
        .iter()
        .filter(|(t, _)| t == b"b")
        .map(|(_, seq)| *seq)
        .collect();
    assert_eq!(to_b, vec![1, 2, 3]);
}

#[test]
fn a_full_window_or_byte_budget_or_target_table_refuses_without_queueing() {
    let mut s = sender(SenderConfig {
        window_msgs_max: 2,
        // Four 1-byte messages fit, bookkeeping included.
        window_bytes_max: 4 * (1 + KEPT_MSG_OVERHEAD_BYTES),
        targets_max: 2,
        ..SenderConfig::default()
    });
    s.send(b"b", payload(1), 0).unwrap();
    s.send(b"b", payload(1), 0).unwrap();
    assert_eq!(s.send(b"b", payload(1), 0), Err(SendRefused::WindowFull));
    // Two are kept: a payload the size of the room left does not fit with its bookkeeping.
    let room = 2 * (1 + KEPT_MSG_OVERHEAD_BYTES);
    assert_eq!(s.send(b"c", payload(room), 0), Err(SendRefused::BytesFull));
    s.send(b"c", payload(1), 0).unwrap();
    assert_eq!(s.send(b"d", payload(1), 0), Err(SendRefused::TargetsFull));
    assert_eq!(s.stats().sent, 3);
    // An acknowledgement frees the window: the next number follows on.
    s.on_ack(b"b", 0xE90C, 2, &[], false, MS);
    assert_eq!(s.send(b"b", payload(1), MS), Ok(3));
}

#[test]
fn cumulative_and_selective_acknowledgements_confirm_exactly_what_they_name() {
    let mut s = sender(SenderConfig::default());
    for _ in 0..6 {
        s.send(b"b", payload(4), 0).unwrap();
    }
    s.on_ack(b"b", 0xE90C, 2, &[(4, 5)], false, 3 * MS);
    assert_eq!(
        confirmed_ranges(&mut s),
        vec![(1, 2), (4, 5)],
        "consecutive numbers in one event"
    );
    assert_eq!(s.stats().in_flight, 2);
    assert_eq!(s.rtt().smoothed_us(), Some(3_000));
    // A stale epoch or an unknown target changes nothing.
    s.on_ack(b"b", 1, 6, &[], false, 4 * MS);
    s.on_ack(b"zz", 0xE90C, 6, &[], false, 4 * MS);
    assert_eq!(s.stats().acks_stale, 2);
    assert_eq!(s.stats().in_flight, 2);
}

#[test]
fn a_reported_gap_sends_the_missing_messages_below_the_highest_taken() {
    let mut s = sender(SenderConfig::default());
    for _ in 0..5 {
        s.send(b"b", payload(1), 0).unwrap();
    }
    transmits(&mut s);
    s.on_ack(b"b", 0xE90C, 1, &[(4, 4)], true, 60 * MS);
    let again: Vec<(u64, Option<Trigger>)> = transmits(&mut s)
        .iter()
        .map(|t| (t.seq, t.retransmit))
        .collect();
    assert_eq!(
        again,
        vec![(2, Some(Trigger::Gap)), (3, Some(Trigger::Gap))]
    );
    assert_eq!(s.stats().retransmitted_by(Trigger::Gap), 2);
}

#[test]
fn reconnection_and_presence_send_the_window_again() {
    let mut s = sender(SenderConfig::default());
    s.send(b"b", payload(1), 0).unwrap();
    s.send(b"c", payload(1), 0).unwrap();
    transmits(&mut s);
    s.on_reconnected(5 * MS);
    assert_eq!(transmits(&mut s).len(), 2);
    s.on_presence_online(b"c", 6 * MS);
    let again = transmits(&mut s);
    assert_eq!((again.len(), &again[0].target[..]), (1, &b"c"[..]));
    assert_eq!(s.stats().retransmitted_by(Trigger::Reconnect), 2);
    assert_eq!(s.stats().retransmitted_by(Trigger::Presence), 1);
}

#[test]
fn the_timer_backs_off_then_fails_the_message_with_its_last_error() {
    let mut s = sender(SenderConfig {
        attempts_max: 3,
        ..SenderConfig::default()
    });
    s.send(b"b", payload(1), 0).unwrap();
    transmits(&mut s);
    s.on_error(b"b", 0xE90C, 1, ErrorCode::UNKNOWN_ID);
    let mut fired = Vec::new();
    while let Some(due) = s.poll_timeout() {
        assert!(
            fired.len() < TIMER_FIRINGS_MAX,
            "the message did not fail after {TIMER_FIRINGS_MAX} expiries (the last at {:?})",
            fired.last()
        );
        s.handle_timeout(due);
        fired.push(due);
        transmits(&mut s);
    }
    // Initial RTO 200 ms ±20 %, then doubled ±20 %; the third expiry fails it.
    assert_eq!(fired.len(), 3, "{fired:?}");
    assert!((160 * MS..=240 * MS).contains(&fired[0]), "{fired:?}");
    assert!(fired[1] - fired[0] >= 320 * MS, "{fired:?}");
    assert_eq!(
        events(&mut s),
        vec![AckEvent::Failed {
            target: b"b".to_vec(),
            seq: 1,
            reason: FailReason::AttemptsExhausted {
                last_error: Some(ErrorCode::UNKNOWN_ID)
            }
        }]
    );
    let st = s.stats();
    assert_eq!((st.sent, st.failed(), st.in_flight), (1, 1, 0));
}

#[test]
fn a_message_fails_at_the_ack_timeout_whatever_its_attempts() {
    let mut s = sender(SenderConfig {
        ack_timeout_ms: 1_000,
        ..SenderConfig::default()
    });
    s.send(b"b", payload(1), 0).unwrap();
    let mut last = 0;
    let mut firings = 0;
    while let Some(due) = s.poll_timeout() {
        firings += 1;
        assert!(
            firings <= TIMER_FIRINGS_MAX,
            "the message did not fail at the ack timeout after {TIMER_FIRINGS_MAX} expiries \
             (the last at {due})"
        );
        assert!(due <= 1_000 * MS, "no timer past the timeout: {due}");
        s.handle_timeout(due);
        last = due;
    }
    assert_eq!(last, 1_000 * MS);
    assert!(matches!(
        events(&mut s)[..],
        [AckEvent::Failed {
            reason: FailReason::Timeout { last_error: None },
            ..
        }]
    ));
}

#[test]
fn with_fail_on_error_an_error_fails_the_message_at_once() {
    let mut s = sender(SenderConfig {
        fail_on_error: true,
        ..SenderConfig::default()
    });
    s.send(b"b", payload(1), 0).unwrap();
    s.send(b"b", payload(1), 0).unwrap();
    s.on_error(b"b", 0xE90C, 2, ErrorCode::UNKNOWN_ID);
    assert_eq!(
        events(&mut s),
        vec![AckEvent::Failed {
            target: b"b".to_vec(),
            seq: 2,
            reason: FailReason::Refused(ErrorCode::UNKNOWN_ID)
        }]
    );
    assert_eq!(s.stats().in_flight, 1);
}

/// A deterministic path between one sender and one receiver: each message or ack is lost,
/// duplicated or delayed (so reordered) at the given odds, and during cuts everything is
/// lost; at the end of each cut the sender learns it reconnected.
struct Path {
    state: u64,
    loss_pct: u64,
    dup_pct: u64,
    delay_max_ms: u64,
    /// (from, to) ms.
    cuts: Vec<(u64, u64)>,
}

impl Path {
    fn roll(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below.max(1)
    }

    fn cut_at(&self, now: u64) -> bool {
        self.cuts.iter().any(|&(a, b)| a <= now && now < b)
    }

    /// The arrival times of one thing sent at `now` (none, one or two).
    fn arrivals(&mut self, now: u64) -> Vec<u64> {
        if self.cut_at(now) || self.roll(100) < self.loss_pct {
            return Vec::new();
        }
        let copies = if self.roll(100) < self.dup_pct { 2 } else { 1 };
        (0..copies)
            .map(|_| now + self.roll(self.delay_max_ms + 1))
            .collect()
    }
}

/// What one simulated run ended with.
struct Outcome {
    confirmed: BTreeSet<u64>,
    failed: BTreeSet<u64>,
    delivered: Vec<u64>,
    stats: SenderStats,
    receiver: ReceiverStats,
}

fn simulate(messages: u64, mut path: Path, ordered: bool, ack_timeout_ms: u64) -> Outcome {
    let mut s = sender(SenderConfig {
        window_msgs_max: 64,
        ack_timeout_ms,
        attempts_max: u32::MAX,
        ..SenderConfig::default()
    });
    let mut r = AckReceiver::new(ReceiverConfig {
        ordered,
        ..ReceiverConfig::default()
    });
    let mut to_receiver: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut to_sender: BTreeMap<u64, Vec<AckOut>> = BTreeMap::new();
    let (mut next, mut out) = (
        1u64,
        Outcome {
            confirmed: BTreeSet::new(),
            failed: BTreeSet::new(),
            delivered: Vec::new(),
            stats: SenderStats::default(),
            receiver: ReceiverStats::default(),
        },
    );
    // Bounded: every message has ended by then (sends stop once all are numbered).
    for now in 0..SIMULATED_MS_MAX {
        if path.cuts.iter().any(|&(_, b)| b == now) {
            s.on_reconnected(now * MS);
        }
        while next <= messages && s.send(b"b", payload(8), now * MS).is_ok() {
            next += 1;
        }
        s.handle_timeout(now * MS);
        while let Some(t) = s.poll_transmit() {
            for at in path.arrivals(now) {
                to_receiver.entry(at).or_default().push(t.seq);
            }
        }
        for seq in to_receiver.remove(&now).unwrap_or_default() {
            if r.on_message(b"a", 0xE90C, seq, now * MS) == Verdict::Deliver {
                out.delivered.push(seq);
            }
        }
        r.handle_timeout(now * MS);
        while let Some(ack) = r.poll_ack() {
            for at in path.arrivals(now) {
                to_sender.entry(at).or_default().push(ack.clone());
            }
        }
        for ack in to_sender.remove(&now).unwrap_or_default() {
            s.on_ack(b"b", ack.epoch, ack.upto, &ack.runs, ack.gap, now * MS);
        }
        while let Some(e) = s.poll_event() {
            match e {
                AckEvent::Confirmed {
                    first_seq,
                    last_seq,
                    ..
                } => {
                    for seq in first_seq..=last_seq {
                        assert!(out.confirmed.insert(seq));
                    }
                }
                AckEvent::Failed { seq, .. } => assert!(out.failed.insert(seq)),
            }
        }
        if next > messages && s.stats().in_flight == 0 {
            break;
        }
    }
    out.stats = s.stats().clone();
    out.receiver = r.stats();
    out
}

const SIMULATED_MS_MAX: u64 = 200_000;

fn assert_nothing_lost_or_doubled(o: &Outcome, messages: u64) {
    let delivered: BTreeSet<u64> = o.delivered.iter().copied().collect();
    assert_eq!(
        delivered.len(),
        o.delivered.len(),
        "a message delivered twice"
    );
    assert!(
        o.confirmed.is_subset(&delivered),
        "confirmed but never delivered"
    );
    assert!(
        delivered.iter().all(|&s| (1..=messages).contains(&s)),
        "unexpected"
    );
    let st = &o.stats;
    assert_eq!(st.sent, st.confirmed + st.failed() + st.in_flight);
    assert_eq!(st.in_flight, 0, "every message ended");
    assert_eq!(st.sent, messages);
}

#[test]
fn over_a_lossy_duplicating_reordering_path_every_message_is_delivered_once_and_confirmed() {
    for seed in 1..=20u64 {
        let path = Path {
            state: seed * 0x9E37_79B9,
            loss_pct: 10,
            dup_pct: 10,
            delay_max_ms: 5,
            cuts: vec![(300, 450), (900, 1_000)],
        };
        let o = simulate(2_000, path, false, 60_000);
        assert_nothing_lost_or_doubled(&o, 2_000);
        assert_eq!(o.confirmed.len(), 2_000, "seed {seed}: all confirmed");
        assert!(o.stats.retransmitted_by(Trigger::Reconnect) > 0);
        assert!(o.receiver.duplicates_suppressed > 0);
    }
}

#[test]
fn in_ordered_mode_each_sender_s_messages_arrive_in_sequence() {
    for seed in 1..=10u64 {
        let path = Path {
            state: seed * 0x51_7CC1,
            loss_pct: 5,
            dup_pct: 5,
            delay_max_ms: 4,
            cuts: vec![(200, 260)],
        };
        let o = simulate(1_000, path, true, 60_000);
        assert_nothing_lost_or_doubled(&o, 1_000);
        assert_eq!(o.delivered, (1..=1_000).collect::<Vec<u64>>());
    }
}

#[test]
fn a_path_that_never_heals_fails_every_message_with_a_reason_and_loses_none() {
    let path = Path {
        state: 3,
        loss_pct: 0,
        dup_pct: 0,
        delay_max_ms: 0,
        cuts: vec![(3, u64::MAX)],
    };
    let o = simulate(500, path, false, 2_000);
    assert_nothing_lost_or_doubled(&o, 500);
    assert_eq!(o.confirmed.len() + o.failed.len(), 500);
    assert!(!o.failed.is_empty());
}

#[test]
fn confirmed_ranges_never_span_a_failed_number_or_two_epochs() {
    let mut s = sender(SenderConfig {
        fail_on_error: true,
        ..SenderConfig::default()
    });
    for _ in 1..=3 {
        s.send(b"b", payload(1), 0).unwrap();
    }
    s.on_error(b"b", 0xE90C, 2, ErrorCode::UNKNOWN_ID);
    assert!(matches!(
        events(&mut s)[..],
        [AckEvent::Failed { seq: 2, .. }]
    ));
    transmits(&mut s);
    // 4 and 5 go in a fresh epoch as its 1 and 2, behind 1 and 3 of the first.
    s.send(b"b", payload(1), 0).unwrap();
    s.send(b"b", payload(1), 0).unwrap();
    let fresh = transmits(&mut s);
    let epoch = fresh[0].epoch;
    assert_eq!((fresh[0].seq, fresh[1].seq), (1, 2));
    // The fresh epoch's acknowledgement takes 4 and 5 from behind the first epoch's.
    s.on_ack(b"b", epoch, 2, &[], false, MS);
    assert_eq!(confirmed_ranges(&mut s), vec![(4, 5)]);
    // The first epoch's takes 1 and 3: two ranges, 2 having failed.
    s.on_ack(b"b", 0xE90C, 3, &[], false, MS);
    assert_eq!(confirmed_ranges(&mut s), vec![(1, 1), (3, 3)]);
    let st = s.stats();
    assert_eq!((st.confirmed, st.failed(), st.in_flight), (4, 1, 0));
}

#[test]
fn after_a_failure_new_messages_go_in_a_fresh_epoch_and_the_stream_never_stalls() {
    let mut s = sender(SenderConfig {
        ack_timeout_ms: 100,
        window_msgs_max: 64,
        ..SenderConfig::default()
    });
    let mut r = AckReceiver::new(ReceiverConfig::default());
    // Message 1 is lost every time until it fails.
    s.send(b"b", payload(1), 0).unwrap();
    let mut now = 0;
    let mut firings = 0;
    while s.stats().failed() == 0 {
        firings += 1;
        assert!(
            firings <= TIMER_FIRINGS_MAX,
            "message 1 did not fail after {TIMER_FIRINGS_MAX} expiries (now {now})"
        );
        transmits(&mut s);
        now = s.poll_timeout().expect("a timer while in flight");
        s.handle_timeout(now);
    }
    assert_eq!(events(&mut s).len(), 1);
    // Far more than the receiver's window of numbers follows, all delivered and confirmed.
    let total = 3 * WINDOW_SEQS;
    let (mut next, mut confirmed) = (0u64, Vec::new());
    while (confirmed.len() as u64) < total {
        while next < total && s.send(b"b", payload(1), now).is_ok() {
            next += 1;
        }
        for t in transmits(&mut s) {
            assert_ne!(t.epoch, 0xE90C, "numbered in a fresh epoch");
            assert_eq!(
                r.on_message(b"a", t.epoch, t.seq, now),
                Verdict::Deliver,
                "{t:?}"
            );
        }
        now += MS;
        r.handle_timeout(now);
        while let Some(a) = r.poll_ack() {
            s.on_ack(b"b", a.epoch, a.upto, &a.runs, a.gap, now);
        }
        for e in events(&mut s) {
            match e {
                AckEvent::Confirmed {
                    first_seq,
                    last_seq,
                    ..
                } => confirmed.extend(first_seq..=last_seq),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            now < 60_000 * MS,
            "stalled at {} confirmed",
            confirmed.len()
        );
    }
    // The application's numbers stay dense across epochs: 2 onwards, after the failed 1.
    assert_eq!(confirmed, (2..=total + 1).collect::<Vec<u64>>());
    let st = s.stats();
    assert_eq!(
        (st.sent, st.confirmed, st.failed(), st.in_flight),
        (total + 1, total, 1, 0)
    );
}

#[test]
fn a_gap_its_sender_abandoned_is_reported_less_and_less_often() {
    let mut r = AckReceiver::new(ReceiverConfig::default());
    r.on_message(b"a", 1, 2, 0);
    let mut reports = Vec::new();
    let mut now = 0;
    let mut firings = 0;
    while now < 2_000 * MS {
        firings += 1;
        assert!(
            firings <= TIMER_FIRINGS_MAX,
            "simulated time did not reach 2 s in {TIMER_FIRINGS_MAX} expiries (now {now})"
        );
        now = r.poll_timeout().expect("a gap stays armed");
        r.handle_timeout(now);
        while let Some(a) = r.poll_ack() {
            if a.gap {
                reports.push(now);
            }
        }
    }
    // 16 ms, then doubled each time: a handful in two seconds, not one every 16 ms.
    assert!((5..=9).contains(&reports.len()), "{reports:?}");
    assert!(reports.windows(2).all(|w| w[1] - w[0] >= 16 * MS));
}

#[test]
fn coalescing_keeps_one_acknowledgement_per_sender_and_epoch_the_newest_with_a_standing_gap() {
    let ack = |sender: &[u8], epoch: u64, upto: u64, runs: &[(u64, u64)], gap: bool| AckOut {
        sender: sender.to_vec(),
        epoch,
        upto,
        runs: runs.to_vec(),
        gap,
    };
    let mut held = Vec::new();
    AckOut::coalesce_into(&mut held, ack(b"a", 1, 10, &[(12, 12)], true));
    AckOut::coalesce_into(&mut held, ack(b"b", 1, 5, &[(7, 7)], true));
    AckOut::coalesce_into(&mut held, ack(b"a", 2, 3, &[], false));
    // a's gap is still there (a run above upto): its report stands. b's closed: it goes.
    AckOut::coalesce_into(&mut held, ack(b"a", 1, 20, &[(22, 23)], false));
    AckOut::coalesce_into(&mut held, ack(b"b", 1, 9, &[], false));
    assert_eq!(
        held,
        vec![
            ack(b"a", 1, 20, &[(22, 23)], true),
            ack(b"b", 1, 9, &[], false),
            ack(b"a", 2, 3, &[], false)
        ]
    );
}
