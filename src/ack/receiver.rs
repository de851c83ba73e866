//! The receiving side of acknowledged delivery: de-duplication by (sender id, sender epoch,
//! seq), and the acknowledgements to send back, coalesced.
//!
//! One [`SeqWindow`] per (sender, epoch) it has heard from, at most
//! [`ReceiverConfig::senders_max`] of them: when a new sender arrives at the bound, the
//! eighth of the entries idle the longest is forgotten (counted in `evictions`). A sender
//! forgotten that way and then retransmitting old messages could see them delivered twice;
//! that needs more than `senders_max` senders active within one sender's retransmission
//! time, and the bound is sized well above that (65,536 by default: about 13 MiB, and 512
//! bytes more for each sender while a gap in its numbers lasts: 45 MiB if every one of them
//! held a gap at once).
//!
//! Acknowledgements are cumulative (`upto`) with the runs above it, sent once
//! [`ReceiverConfig::ack_every_msgs`] messages of a sender are unacknowledged or
//! [`ReceiverConfig::ack_delay_ms`] after the first of them, whichever comes first, and at
//! once for a duplicate (its sender evidently missed the acknowledgement). A gap (a number
//! missing below ones taken) that lasts [`ReceiverConfig::nak_delay_ms`] is reported as an
//! acknowledgement with `gap` set, which the sender answers by sending what is missing.

use super::seq_window::{Accept, SeqWindow};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Deliver each sender's messages in sequence order: a message above a gap is dropped
    /// (and the gap reported) instead of delivered, so the sender sends again from the gap.
    /// Off: delivered as they come, each exactly once.
    pub ordered: bool,
    /// Acknowledge after this many unacknowledged messages of one sender. 32: acks cost
    /// about 1/32 of a frame per message.
    pub ack_every_msgs: u32,
    /// ...or this long after the first unacknowledged one. 1 ms: well under any RTO, so a
    /// slow trickle is not retransmitted for want of an ack.
    pub ack_delay_ms: u64,
    /// Report a gap that has lasted this long. 2 ms: a change of path (a reconnect) may
    /// reorder for a moment, and a gap filled meanwhile needs no report.
    pub nak_delay_ms: u64,
    /// Senders (id, epoch) remembered at once; see the module docs.
    pub senders_max: usize,
    /// Runs reported above `upto` in one acknowledgement. 8: enough for the few gaps a
    /// path change makes; the sender retransmits what lies between them.
    pub runs_max: usize,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            ordered: false,
            ack_every_msgs: 32,
            ack_delay_ms: 1,
            nak_delay_ms: 2,
            senders_max: 65_536,
            runs_max: 8,
        }
    }
}

/// What to do with an arriving acked message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Give it to the application.
    Deliver,
    /// Taken before: drop it (an acknowledgement goes back at once).
    Duplicate,
    /// Above a gap with `ordered` on, or beyond the window: dropped unseen, to be sent again.
    Held,
}

/// An acknowledgement to send to `sender` for its `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckOut {
    pub sender: Vec<u8>,
    pub epoch: u64,
    /// Every sequence number up to this one was taken.
    pub upto: u64,
    /// Taken runs above `upto`, inclusive, lowest first.
    pub runs: Vec<(u64, u64)>,
    /// A gap has lasted `nak_delay_ms`: send what is missing now.
    pub gap: bool,
}

impl AckOut {
    /// Adds `newer` to `held`, acknowledgements waiting to be written: an acknowledgement is
    /// cumulative, so a newer one for the same sender and epoch takes the older one's place
    /// (keeping its gap report while the newer one still shows a gap, runs above `upto`). `held` thus never holds more than one per sender: it stays
    /// bounded by `senders_max` however long it waits.
    pub fn coalesce_into(held: &mut Vec<AckOut>, newer: AckOut) {
        match held
            .iter_mut()
            .find(|old| old.epoch == newer.epoch && old.sender == newer.sender)
        {
            Some(old) => {
                // A gap reported earlier stands while the newer one still shows one.
                let gap = newer.gap || (old.gap && !newer.runs.is_empty());
                *old = newer;
                old.gap = gap;
            }
            None => held.push(newer),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub delivered: u64,
    pub duplicates_suppressed: u64,
    pub held: u64,
    pub acks_sent: u64,
    pub gap_reports_sent: u64,
    pub evictions: u64,
}

#[derive(Debug)]
struct Peer {
    key: Key,
    window: SeqWindow,
    unacked_msgs: u32,
    /// When the coalesced acknowledgement is due.
    ack_due_us: Option<u64>,
    /// When the current gap is to be reported.
    gap_due_us: Option<u64>,
    /// Reports of the current gap so far: each waits twice as long as the one before (a gap
    /// its sender gave up on, having failed that message, is not reported forever).
    gap_reports: u32,
    last_active_us: u64,
}

/// A peer's key: its epoch (8 bytes, little endian), then its sender id. One byte string, so
/// a lookup borrows it as `[u8]` from a reused buffer instead of allocating a key per message.
type Key = Box<[u8]>;

fn key_parts(key: &[u8]) -> (&[u8], u64) {
    let (epoch, sender) = key.split_at(8);
    let epoch = u64::from_le_bytes(
        epoch
            .try_into()
            .expect("invariant: a peer key always starts with its 8-byte epoch"),
    );
    (sender, epoch)
}

#[derive(Debug)]
pub struct AckReceiver {
    cfg: ReceiverConfig,
    /// The senders heard from, in no order.
    peers: Vec<Peer>,
    /// Where each peer is in `peers`, by key; foldhash (seeded per process), as the sender's
    /// flows.
    index: HashMap<Key, usize, foldhash::fast::RandomState>,
    /// The peer of the last message: messages come in runs from one sender, and a run needs
    /// no hashing.
    last: usize,
    /// Peers (indexes into `peers`) with a deadline armed (acknowledgement or gap report),
    /// checked by the timer.
    armed: Vec<usize>,
    out: std::collections::VecDeque<AckOut>,
    stats: ReceiverStats,
    /// The key of the message being taken, rebuilt in place for each.
    lookup: Vec<u8>,
}

impl AckReceiver {
    pub fn new(cfg: ReceiverConfig) -> AckReceiver {
        assert!(cfg.senders_max > 0 && cfg.ack_every_msgs > 0 && cfg.runs_max > 0);
        assert!(
            cfg.runs_max <= crate::protocol::ACK_RUNS_MAX,
            "an ACK carries at most ACK_RUNS_MAX runs"
        );
        AckReceiver {
            cfg,
            peers: Vec::new(),
            index: HashMap::default(),
            last: 0,
            armed: Vec::new(),
            out: Default::default(),
            stats: ReceiverStats::default(),
            lookup: Vec::new(),
        }
    }

    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Senders currently remembered.
    pub fn senders(&self) -> usize {
        self.peers.len()
    }

    /// An acked message `seq` of `sender`'s `epoch` arrived at `now_us`.
    pub fn on_message(&mut self, sender: &[u8], epoch: u64, seq: u64, now_us: u64) -> Verdict {
        let index = match self.peers.get(self.last) {
            Some(peer) if key_is(&peer.key, sender, epoch) => self.last,
            _ => self.find_or_add(sender, epoch, now_us),
        };
        self.last = index;
        let peer = &mut self.peers[index];
        take(
            peer,
            index,
            &self.cfg,
            &mut self.stats,
            &mut self.armed,
            seq,
            now_us,
        )
    }

    /// The index of the peer `(sender, epoch)`, added if new (forgetting idle ones at the
    /// bound).
    fn find_or_add(&mut self, sender: &[u8], epoch: u64, now_us: u64) -> usize {
        self.lookup.clear();
        self.lookup.extend_from_slice(&epoch.to_le_bytes());
        self.lookup.extend_from_slice(sender);
        if let Some(&index) = self.index.get(self.lookup.as_slice()) {
            return index;
        }
        if self.peers.len() >= self.cfg.senders_max {
            self.evict_idle();
        }
        let key: Key = self.lookup.as_slice().into();
        self.index.insert(key.clone(), self.peers.len());
        self.peers.push(Peer {
            key,
            window: SeqWindow::default(),
            unacked_msgs: 0,
            ack_due_us: None,
            gap_due_us: None,
            gap_reports: 0,
            last_active_us: now_us,
        });
        self.peers.len() - 1
    }

    /// The earliest deadline armed, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.armed
            .iter()
            .filter_map(|&i| min_opt(self.peers[i].ack_due_us, self.peers[i].gap_due_us))
            .min()
    }

    /// Sends the acknowledgements and gap reports due by `now_us`.
    pub fn handle_timeout(&mut self, now_us: u64) {
        let mut still_armed = Vec::with_capacity(self.armed.len());
        for index in std::mem::take(&mut self.armed) {
            let peer = &mut self.peers[index];
            let gap_due = peer.gap_due_us.is_some_and(|d| d <= now_us);
            let ack_due = peer.ack_due_us.is_some_and(|d| d <= now_us);
            if gap_due || ack_due {
                let runs = peer.window.runs(self.cfg.runs_max);
                let (sender, epoch) = key_parts(&peer.key);
                self.out.push_back(AckOut {
                    sender: sender.to_vec(),
                    epoch,
                    upto: peer.window.upto(),
                    runs,
                    gap: gap_due,
                });
                self.stats.acks_sent += 1;
                peer.unacked_msgs = 0;
                peer.ack_due_us = None;
                if gap_due {
                    self.stats.gap_reports_sent += 1;
                    // Report a lasting gap again only after another delay, doubled each time
                    // (16 ms, 32 ms, ... up to about 16 s with the defaults).
                    let backoff = 1u64 << peer.gap_reports.min(10);
                    peer.gap_reports += 1;
                    let delay_us = self.cfg.nak_delay_ms.max(1) * 8 * 1000 * backoff;
                    peer.gap_due_us = Some(now_us + delay_us);
                }
            }
            if peer.ack_due_us.is_some() || peer.gap_due_us.is_some() {
                still_armed.push(index);
            }
        }
        self.armed = still_armed;
    }

    /// The next acknowledgement to send.
    pub fn poll_ack(&mut self) -> Option<AckOut> {
        self.out.pop_front()
    }

    /// Forgets the eighth of the senders idle the longest (at least one). Indexes change:
    /// the index, the armed list and the last peer are made again.
    fn evict_idle(&mut self) {
        let mut ages: Vec<u64> = self.peers.iter().map(|p| p.last_active_us).collect();
        let count = (ages.len() / 8).max(1);
        let (_, cutoff, _) = ages.select_nth_unstable(count - 1);
        let cutoff = *cutoff;
        let mut left = count;
        self.peers.retain(|p| {
            if left > 0 && p.last_active_us <= cutoff {
                left -= 1;
                false
            } else {
                true
            }
        });
        self.stats.evictions += (count - left) as u64;
        self.index.clear();
        self.armed.clear();
        for (i, peer) in self.peers.iter().enumerate() {
            self.index.insert(peer.key.clone(), i);
            if peer.ack_due_us.is_some() || peer.gap_due_us.is_some() {
                self.armed.push(i);
            }
        }
        self.last = usize::MAX;
    }
}

/// Whether `key` is the peer `(sender, epoch)`'s.
fn key_is(key: &[u8], sender: &[u8], epoch: u64) -> bool {
    key.len() == 8 + sender.len() && key[..8] == epoch.to_le_bytes() && &key[8..] == sender
}

/// Records the arrival of message `seq` at `now_us` at `peer` (at `index`) and arms its
/// deadlines.
fn take(
    peer: &mut Peer,
    index: usize,
    cfg: &ReceiverConfig,
    stats: &mut ReceiverStats,
    armed: &mut Vec<usize>,
    seq: u64,
    now_us: u64,
) -> Verdict {
    peer.last_active_us = now_us;
    let next = peer.window.upto() + 1;
    let accept = if cfg.ordered && seq > next && !peer.window.contains(seq) {
        Accept::BeyondWindow
    } else {
        peer.window.accept(seq)
    };
    let was_armed = peer.ack_due_us.is_some() || peer.gap_due_us.is_some();
    let verdict = match accept {
        Accept::New => {
            stats.delivered += 1;
            peer.unacked_msgs += 1;
            if peer.unacked_msgs >= cfg.ack_every_msgs {
                peer.ack_due_us = Some(now_us);
            } else if peer.ack_due_us.is_none() {
                peer.ack_due_us = Some(now_us + cfg.ack_delay_ms * 1000);
            }
            Verdict::Deliver
        }
        Accept::Duplicate => {
            stats.duplicates_suppressed += 1;
            peer.ack_due_us = Some(now_us);
            Verdict::Duplicate
        }
        Accept::BeyondWindow => {
            stats.held += 1;
            Verdict::Held
        }
    };
    let gap = peer.window.has_gap() || accept == Accept::BeyondWindow;
    match (gap, peer.gap_due_us) {
        (true, None) => peer.gap_due_us = Some(now_us + cfg.nak_delay_ms * 1000),
        (false, Some(_)) => {
            peer.gap_due_us = None;
            peer.gap_reports = 0;
        }
        _ => {}
    }
    let now_armed = peer.ack_due_us.is_some() || peer.gap_due_us.is_some();
    if now_armed && !was_armed {
        armed.push(index);
    }
    verdict
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microseconds in a millisecond: the tests speak in milliseconds.
    const MS: u64 = 1000;

    fn drain(r: &mut AckReceiver) -> Vec<AckOut> {
        std::iter::from_fn(|| r.poll_ack()).collect()
    }

    #[test]
    fn acks_are_coalesced_every_32_messages_or_after_the_delay() {
        let mut r = AckReceiver::new(ReceiverConfig::default());
        for seq in 1..=31 {
            assert_eq!(r.on_message(b"a", 7, seq, 100 * MS), Verdict::Deliver);
        }
        assert_eq!(r.poll_timeout(), Some(101 * MS));
        r.handle_timeout(100 * MS);
        assert!(drain(&mut r).is_empty(), "not due before the delay");
        assert_eq!(r.on_message(b"a", 7, 32, 100 * MS), Verdict::Deliver);
        assert_eq!(r.poll_timeout(), Some(100 * MS));
        r.handle_timeout(100 * MS);
        let acks = drain(&mut r);
        assert_eq!(acks.len(), 1);
        assert_eq!((acks[0].upto, acks[0].gap), (32, false));
        assert_eq!(r.poll_timeout(), None);
        r.on_message(b"a", 7, 33, 200 * MS);
        r.handle_timeout(201 * MS);
        assert_eq!(drain(&mut r)[0].upto, 33);
        assert_eq!(r.stats().acks_sent, 2);
    }

    #[test]
    fn duplicates_are_suppressed_and_acknowledged_at_once() {
        let mut r = AckReceiver::new(ReceiverConfig::default());
        r.on_message(b"a", 7, 1, 0);
        r.handle_timeout(MS);
        drain(&mut r);
        assert_eq!(r.on_message(b"a", 7, 1, 5 * MS), Verdict::Duplicate);
        assert_eq!(r.poll_timeout(), Some(5 * MS));
        r.handle_timeout(5 * MS);
        assert_eq!(drain(&mut r)[0].upto, 1);
        // Another epoch of the same sender is another stream.
        assert_eq!(r.on_message(b"a", 8, 1, 5 * MS), Verdict::Deliver);
        assert_eq!(r.stats().duplicates_suppressed, 1);
        assert_eq!(r.senders(), 2);
    }

    #[test]
    fn a_gap_that_lasts_is_reported_with_the_runs_above_it() {
        let mut r = AckReceiver::new(ReceiverConfig::default());
        r.on_message(b"a", 1, 1, 0);
        r.on_message(b"a", 1, 3, 0);
        r.on_message(b"a", 1, 4, 0);
        r.handle_timeout(MS);
        let acks = drain(&mut r);
        assert_eq!((acks[0].upto, acks[0].gap), (1, false));
        assert_eq!(acks[0].runs, vec![(3, 4)]);
        r.handle_timeout(2 * MS);
        let acks = drain(&mut r);
        assert_eq!((acks[0].upto, acks[0].gap), (1, true));
        assert_eq!(r.stats().gap_reports_sent, 1);
        // Filled before the next report: nothing more is reported.
        r.on_message(b"a", 1, 2, 3 * MS);
        r.handle_timeout(50 * MS);
        let acks = drain(&mut r);
        assert_eq!((acks[0].upto, acks[0].gap), (4, false));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn ordered_mode_holds_messages_above_a_gap() {
        let mut r = AckReceiver::new(ReceiverConfig {
            ordered: true,
            ..ReceiverConfig::default()
        });
        assert_eq!(r.on_message(b"a", 1, 1, 0), Verdict::Deliver);
        assert_eq!(r.on_message(b"a", 1, 3, 0), Verdict::Held);
        assert_eq!(r.on_message(b"a", 1, 2, 0), Verdict::Deliver);
        assert_eq!(r.on_message(b"a", 1, 3, 0), Verdict::Deliver);
        assert_eq!(r.stats().held, 1);
    }

    #[test]
    fn at_the_sender_bound_the_longest_idle_are_forgotten() {
        let mut r = AckReceiver::new(ReceiverConfig {
            senders_max: 16,
            ..ReceiverConfig::default()
        });
        for k in 0..16u64 {
            r.on_message(format!("s{k}").as_bytes(), 1, 1, k * MS);
        }
        assert_eq!(r.senders(), 16);
        r.on_message(b"new", 1, 1, 100 * MS);
        assert_eq!(r.senders(), 15, "two forgotten (16 / 8), one added");
        assert_eq!(r.stats().evictions, 2);
        // The two oldest went: s0 and s1 are new again, s2 still a duplicate.
        assert_eq!(r.on_message(b"s2", 1, 1, 101 * MS), Verdict::Duplicate);
        assert_eq!(r.on_message(b"s0", 1, 1, 101 * MS), Verdict::Deliver);
        // Deadlines armed before the eviction still fire for the senders kept (their places
        // moved), and a forgotten one owes nothing.
        assert!(r.poll_timeout().is_some());
        r.handle_timeout(1000 * MS);
        let acked: std::collections::BTreeSet<Vec<u8>> =
            drain(&mut r).into_iter().map(|a| a.sender).collect();
        for kept in [&b"new"[..], b"s0", b"s2", b"s15"] {
            assert!(acked.contains(kept), "{:?} in {acked:?}", kept);
        }
        assert!(!acked.contains(&b"s1"[..]), "{acked:?}");
        assert_eq!(r.poll_timeout(), None);
    }
}
