//! The sending side of acknowledged delivery: sequence numbers per target, a bounded window
//! of unacknowledged messages kept for retransmission, the retransmission triggers, and the
//! end of every message as confirmed or failed.
//!
//! Retransmission is driven by events first: the sender's own reconnection
//! ([`AckSender::on_reconnected`]: the whole window again, through whichever relay it is now
//! on), the target coming online ([`AckSender::on_presence_online`]), and a gap the receiver
//! reports (an acknowledgement with `gap` set). A timer per message is the backstop: its RTO
//! is four smoothed round trips (bounded by `rto_min_ms` and `rto_max_ms`), doubled at each
//! attempt, with ±20 % jitter so that many senders do not retransmit in step.
//!
//! Every message ends in exactly one [`AckEvent`]: a `Confirmed` range holding its number
//! (one per run of consecutive numbers an acknowledgement confirms), or `Failed` with its reason
//! once `ack_timeout_ms` has passed since it was first sent or `attempts_max` sends went
//! unanswered. Invariant, checked after every operation: `sent == confirmed + failed +
//! in_flight`.

use super::rtt::RttEstimator;
use crate::protocol::ErrorCode;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// Unacknowledged messages per target before `send` refuses with `WindowFull`. 4,096,
    /// [`super::WINDOW_SEQS`], the receiver's de-duplication window: a sender sends at most a
    /// window per acknowledgement round trip, and with 1,024 a fast one was held to a third
    /// of the path's rate on loopback (JetStream's MaxAckPending is 1,000).
    pub window_msgs_max: u32,
    /// Bytes kept for retransmission, over every target, before `send` refuses with
    /// `BytesFull`: each message's payload plus [`KEPT_MSG_OVERHEAD_BYTES`] of bookkeeping.
    /// 64 MiB: the sender's memory bound for acked traffic (about 760,000 empty messages).
    pub window_bytes_max: usize,
    /// Targets with a sequence number in this session. 65,536; each costs about 150 bytes
    /// plus twice the target's length (the flow and its index both hold it).
    /// Past it `send` to a new target refuses with `TargetsFull` (numbers cannot be reused
    /// within an epoch; a new session starts a new epoch).
    pub targets_max: usize,
    /// A message not confirmed this long after it was first sent fails. 30 s.
    pub ack_timeout_ms: u64,
    /// ...and so does one sent this many times without confirmation. 12: with the RTO
    /// doubling from 50 ms to its 5 s cap, about 30 s too.
    pub attempts_max: u32,
    /// RTO bounds. 50 ms: above a loopback or LAN round trip with the receiver's 1 ms ack
    /// delay. 5 s: a message is tried at least every 5 s while it may still succeed.
    pub rto_min_ms: u64,
    pub rto_max_ms: u64,
    /// RTO before any round trip was measured. 200 ms.
    pub rto_initial_ms: u64,
    /// Fail a message at once when the relay answers it with an ERROR (unknown id,
    /// unreachable, overloaded) instead of trying again until the timeout. Off by default:
    /// the target may come online or become reachable.
    pub fail_on_error: bool,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            window_msgs_max: 4096,
            window_bytes_max: 64 << 20,
            targets_max: 65_536,
            ack_timeout_ms: 30_000,
            attempts_max: 12,
            rto_min_ms: 50,
            rto_max_ms: 5_000,
            rto_initial_ms: 200,
            fail_on_error: false,
        }
    }
}

/// Why `send` refused; each is backpressure: try again once messages are confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefused {
    WindowFull,
    BytesFull,
    TargetsFull,
}

/// What made a message go out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trigger {
    Reconnect,
    Presence,
    Gap,
    Timer,
}

impl Trigger {
    pub const ALL: [Trigger; 4] = [
        Trigger::Reconnect,
        Trigger::Presence,
        Trigger::Gap,
        Trigger::Timer,
    ];
}

/// Why a message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailReason {
    /// Not confirmed within `ack_timeout_ms`; `last_error` is the relay's last ERROR for it.
    Timeout { last_error: Option<ErrorCode> },
    /// `attempts_max` sends went unconfirmed.
    AttemptsExhausted { last_error: Option<ErrorCode> },
    /// The relay answered with this ERROR and `fail_on_error` is set, or the ERROR says
    /// that sending again cannot help (the payload is too large for the relay).
    Refused(ErrorCode),
    /// The application closed the session with the message still unacknowledged.
    Closed,
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = |f: &mut std::fmt::Formatter<'_>, e: &Option<ErrorCode>| match e {
            Some(code) => write!(f, " (the relay's last error: {})", error_name(*code)),
            None => Ok(()),
        };
        match self {
            FailReason::Timeout { last_error } => {
                f.write_str("not acknowledged within ack_timeout_ms")?;
                last(f, last_error)
            }
            FailReason::AttemptsExhausted { last_error } => {
                f.write_str("not acknowledged after ack_attempts_max sends")?;
                last(f, last_error)
            }
            FailReason::Refused(code) => write!(f, "refused by the relay: {}", error_name(*code)),
            FailReason::Closed => f.write_str("session closed before acknowledgement"),
        }
    }
}

/// A short name for a relay error code, for failure reasons.
pub fn error_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::UNKNOWN_ID => "unknown id",
        ErrorCode::OVERLOADED => "overloaded",
        ErrorCode::INVALID_REQUEST => "invalid request",
        ErrorCode::UNREACHABLE => "unreachable",
        ErrorCode::LIMIT_EXCEEDED => "limit exceeded",
        ErrorCode::PAYLOAD_TOO_LARGE => "payload too large",
        ErrorCode::ACK_UNSUPPORTED => "target cannot acknowledge (protocol version 1)",
        ErrorCode::INVALID_SUBJECT => "invalid subject",
        ErrorCode::NO_RESPONDERS => "no responders",
        _ => "unknown error code",
    }
}

/// How a message ended. Confirmations come as ranges: one acknowledgement confirms many
/// messages, and an event per message would cost more than the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckEvent {
    /// Messages `first_seq..=last_seq` to `target`, every one of them, were delivered.
    Confirmed {
        target: Vec<u8>,
        first_seq: u64,
        last_seq: u64,
    },
    Failed {
        target: Vec<u8>,
        seq: u64,
        reason: FailReason,
    },
}

/// A message to write: SEND with the ACKED flag, `(epoch, seq)` and `payload`. These are the
/// wire's numbers: the session's epoch and the application's number until a message to the
/// target fails, then a fresh epoch numbered from 1 (see `Flow`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Shared with the sender's flow (no copy per message).
    pub target: Bytes,
    pub epoch: u64,
    pub seq: u64,
    pub payload: Bytes,
    /// `None` for the first send.
    pub retransmit: Option<Trigger>,
}

/// A message [`AckSender::number`] took: write it now as SEND with the ACKED flag,
/// `(epoch, wire_seq)`, to `target`, with `payload`.
#[derive(Debug)]
pub struct Numbered<'a> {
    /// The number the application knows (dense per target from 1).
    pub seq: u64,
    pub epoch: u64,
    pub wire_seq: u64,
    pub target: &'a Bytes,
    pub payload: &'a Bytes,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub sent: u64,
    pub confirmed: u64,
    pub failed_timeout: u64,
    pub failed_attempts: u64,
    pub failed_refused: u64,
    pub failed_closed: u64,
    pub in_flight: u64,
    pub retransmitted: [u64; 4],
    pub acks_stale: u64,
}

impl SenderStats {
    pub fn failed(&self) -> u64 {
        self.failed_timeout + self.failed_attempts + self.failed_refused + self.failed_closed
    }

    pub fn retransmitted_by(&self, trigger: Trigger) -> u64 {
        self.retransmitted[trigger as usize]
    }
}

/// What keeping one message costs besides its payload, counted against
/// [`SenderConfig::window_bytes_max`] so that the bound holds for tiny payloads too.
pub const KEPT_MSG_OVERHEAD_BYTES: usize = std::mem::size_of::<InFlight>();

#[derive(Debug)]
struct InFlight {
    /// The number the application knows (dense per target from 1, across epochs).
    seq: u64,
    /// The numbering stream it went out in, and that stream's first number minus one: on the
    /// wire it is `(epoch, seq - base)`.
    epoch: u64,
    base: u64,
    payload: Bytes,
    first_sent_us: u64,
    last_sent_us: u64,
    /// When the timer sends it again (or fails it).
    due_us: u64,
    attempts: u32,
    last_error: Option<ErrorCode>,
}

/// What is sent to one target. Numbering restarts in a fresh epoch after a message fails:
/// the receiver's window cannot move past a number that will never come, and would in the
/// end hold back everything [`super::WINDOW_SEQS`] numbers above it.
#[derive(Debug)]
struct Flow {
    /// The target, for the transmits (a reference count per message, not a copy).
    target: Bytes,
    /// The last sequence number given out (numbers start at 1).
    last_seq: u64,
    /// The epoch new messages go out in (the session's until a message fails) and its base.
    epoch: u64,
    base: u64,
    /// In sequence order (older epochs first).
    unacked: VecDeque<InFlight>,
}

impl Flow {
    /// Whether messages of `epoch` may still be acknowledged here.
    fn knows(&self, epoch: u64) -> bool {
        epoch == self.epoch || self.unacked.iter().any(|m| m.epoch == epoch)
    }
}

impl InFlight {
    /// Its number on the wire.
    fn wire_seq(&self) -> u64 {
        self.seq - self.base
    }
}

#[derive(Debug)]
pub struct AckSender {
    cfg: SenderConfig,
    epoch: u64,
    /// One per target, never removed (numbers cannot be reused within an epoch), found by
    /// `flow_index` (foldhash, seeded per process: SipHash was a visible part of each send)
    /// or, for a run of messages to one target, by `last_flow` without hashing.
    flows: Vec<Flow>,
    flow_index: HashMap<Vec<u8>, usize, foldhash::fast::RandomState>,
    /// The flow found last (0 when there is none: `flows` is then empty).
    last_flow: usize,
    bytes_in_flight: usize,
    rtt: RttEstimator,
    jitter_state: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<AckEvent>,
    stats: SenderStats,
    /// At most the earliest due time of any message in flight (exact after a timer pass;
    /// lowered as messages are sent and sent again, never raised in between), so polling the
    /// timer costs nothing per message.
    timer_floor_us: u64,
}

impl AckSender {
    /// `epoch` must be random per session (the receiver keys its de-duplication by it);
    /// `jitter_seed` seeds the RTO jitter.
    pub fn new(cfg: SenderConfig, epoch: u64, jitter_seed: u64) -> AckSender {
        assert!(cfg.window_msgs_max >= 1 && u64::from(cfg.window_msgs_max) <= super::WINDOW_SEQS);
        assert!(cfg.rto_min_ms >= 1 && cfg.rto_min_ms <= cfg.rto_max_ms);
        AckSender {
            rtt: RttEstimator::new(cfg.rto_initial_ms * 1000),
            cfg,
            epoch,
            flows: Vec::new(),
            flow_index: HashMap::default(),
            last_flow: 0,
            bytes_in_flight: 0,
            jitter_state: jitter_seed | 1,
            out: VecDeque::new(),
            events: VecDeque::new(),
            stats: SenderStats::default(),
            timer_floor_us: u64::MAX,
        }
    }

    /// The session's epoch: the first numbering stream of every target.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// Gives `payload` to `target` a sequence number and queues it for
    /// [`Self::poll_transmit`]; refuses when a bound is reached (nothing queued then).
    pub fn send(&mut self, target: &[u8], payload: Bytes, now_us: u64) -> Result<u64, SendRefused> {
        let numbered = self.number(target, payload, now_us)?;
        let transmit = Transmit {
            target: numbered.target.clone(),
            epoch: numbered.epoch,
            seq: numbered.wire_seq,
            payload: numbered.payload.clone(),
            retransmit: None,
        };
        let seq = numbered.seq;
        self.out.push_back(transmit);
        self.check_invariant();
        Ok(seq)
    }

    /// As [`Self::send`], but queues nothing: the caller writes the message now, from the
    /// [`Numbered`] it gets back (no copy of the target or payload per message). Refuses when
    /// a bound is reached (nothing kept then).
    pub fn number(
        &mut self,
        target: &[u8],
        payload: Bytes,
        now_us: u64,
    ) -> Result<Numbered<'_>, SendRefused> {
        if self.bytes_in_flight + kept_bytes(&payload) > self.cfg.window_bytes_max {
            return Err(SendRefused::BytesFull);
        }
        let index = match self.find(target) {
            Some(index) => index,
            None => {
                if self.flows.len() >= self.cfg.targets_max {
                    return Err(SendRefused::TargetsFull);
                }
                self.flows.push(Flow {
                    target: Bytes::copy_from_slice(target),
                    last_seq: 0,
                    epoch: self.epoch,
                    base: 0,
                    unacked: VecDeque::new(),
                });
                self.flow_index
                    .insert(target.to_vec(), self.flows.len() - 1);
                self.flows.len() - 1
            }
        };
        let flow = &mut self.flows[index];
        if flow.unacked.len() >= self.cfg.window_msgs_max as usize {
            return Err(SendRefused::WindowFull);
        }
        flow.last_seq += 1;
        let seq = flow.last_seq;
        self.bytes_in_flight += kept_bytes(&payload);
        let rto = rto_us(&self.cfg, &self.rtt, &mut self.jitter_state, 1);
        let due_us = now_us + rto.min(self.cfg.ack_timeout_ms * 1000);
        self.timer_floor_us = self.timer_floor_us.min(due_us);
        let (epoch, base) = (flow.epoch, flow.base);
        flow.unacked.push_back(InFlight {
            seq,
            epoch,
            base,
            payload,
            first_sent_us: now_us,
            last_sent_us: now_us,
            due_us,
            attempts: 1,
            last_error: None,
        });
        self.stats.sent += 1;
        self.stats.in_flight += 1;
        let s = &self.stats;
        debug_assert_eq!(s.sent, s.confirmed + s.failed() + s.in_flight);
        let kept = flow
            .unacked
            .back()
            .expect("invariant: the message was always pushed just above");
        Ok(Numbered {
            seq,
            epoch,
            wire_seq: seq - base,
            target: &flow.target,
            payload: &kept.payload,
        })
    }

    /// An acknowledgement from `from` (the target of the messages) for `epoch`.
    pub fn on_ack(
        &mut self,
        from: &[u8],
        epoch: u64,
        upto: u64,
        runs: &[(u64, u64)],
        gap: bool,
        now_us: u64,
    ) {
        let Some(index) = self.find(from).filter(|&i| self.flows[i].knows(epoch)) else {
            self.stats.acks_stale += 1;
            return;
        };
        let flow = &mut self.flows[index];
        let mut confirming = Confirming {
            rtt: &mut self.rtt,
            stats: &mut self.stats,
            bytes_in_flight: &mut self.bytes_in_flight,
            events: &mut self.events,
            target: from,
            now_us,
            range: None,
        };
        // The window is in sequence order: the cumulative part comes off the front, and only
        // selective runs (or messages of another epoch in front) need a pass over the rest.
        let cumulative = flow
            .unacked
            .iter()
            .take_while(|m| m.epoch == epoch && m.wire_seq() <= upto)
            .count();
        for m in flow.unacked.drain(..cumulative) {
            confirming.take(m);
        }
        let mixed = flow.unacked.front().is_some_and(|m| m.epoch != epoch);
        if !runs.is_empty() || mixed {
            let taken = |m: &InFlight| {
                let seq = m.wire_seq();
                m.epoch == epoch && (seq <= upto || runs.iter().any(|&(a, b)| a <= seq && seq <= b))
            };
            let mut kept = VecDeque::with_capacity(flow.unacked.len());
            for m in flow.unacked.drain(..) {
                if taken(&m) {
                    confirming.take(m);
                } else {
                    kept.push_back(m);
                }
            }
            flow.unacked = kept;
        }
        confirming.finish();
        if gap {
            // Everything still unacknowledged below the highest taken number is missing; with
            // no runs (an ordered receiver), everything from `upto + 1` is.
            let highest = runs.iter().map(|&(_, b)| b).max().unwrap_or(u64::MAX);
            let holdoff = self
                .rtt
                .smoothed_us()
                .map_or(self.cfg.rto_min_ms * 1000, |us| us.max(1000));
            self.resend(index, Trigger::Gap, now_us, |m| {
                m.epoch == epoch
                    && m.wire_seq() < highest
                    && now_us.saturating_sub(m.last_sent_us) >= holdoff
            });
        }
        self.check_invariant();
    }

    /// The relay answered message `(epoch, seq)` to `target` with ERROR `code`.
    pub fn on_error(&mut self, target: &[u8], epoch: u64, seq: u64, code: ErrorCode) {
        // A payload the relay cannot carry, or a target that cannot acknowledge, fails at
        // once: sending it again cannot help.
        let fail = self.cfg.fail_on_error
            || matches!(
                code,
                ErrorCode::PAYLOAD_TOO_LARGE | ErrorCode::ACK_UNSUPPORTED
            );
        let Some(flow_index) = self.find(target) else {
            self.stats.acks_stale += 1;
            return;
        };
        let flow = &mut self.flows[flow_index];
        let Some(index) = flow
            .unacked
            .iter()
            .position(|m| m.epoch == epoch && m.wire_seq() == seq)
        else {
            self.stats.acks_stale += 1;
            return;
        };
        if !fail {
            // Tried again by the timer (or sooner, when the target comes online).
            flow.unacked[index].last_error = Some(code);
        } else if let Some(m) = flow.unacked.remove(index) {
            self.finish_failed(flow_index, m, FailReason::Refused(code));
            self.renumber(flow_index);
        }
        self.check_invariant();
    }

    /// Messages to `target` not yet confirmed or failed.
    pub fn in_flight_to(&self, target: &[u8]) -> usize {
        self.flow_index
            .get(target)
            .map_or(0, |&i| self.flows[i].unacked.len())
    }

    /// The session ends: every message still in flight fails with [`FailReason::Closed`].
    pub fn abandon_all(&mut self) {
        for index in 0..self.flows.len() {
            let left = std::mem::take(&mut self.flows[index].unacked);
            for m in left {
                self.finish_failed(index, m, FailReason::Closed);
            }
        }
        self.out.clear();
        self.check_invariant();
    }

    /// This session has a new connection: everything unacknowledged goes again.
    pub fn on_reconnected(&mut self, now_us: u64) {
        for index in 0..self.flows.len() {
            self.resend(index, Trigger::Reconnect, now_us, |_| true);
        }
    }

    /// `target` came online: what it has not acknowledged goes again.
    pub fn on_presence_online(&mut self, target: &[u8], now_us: u64) {
        if let Some(index) = self.find(target) {
            self.resend(index, Trigger::Presence, now_us, |_| true);
        }
    }

    /// When to call [`Self::handle_timeout`], if any message is in flight: at most the
    /// earliest due time (a call that finds nothing due makes it exact).
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.stats.in_flight > 0).then_some(self.timer_floor_us)
    }

    /// Sends again, or fails, every message whose timer has expired by `now_us`.
    pub fn handle_timeout(&mut self, now_us: u64) {
        if now_us < self.timer_floor_us {
            return;
        }
        for index in 0..self.flows.len() {
            if self.flows[index].unacked.iter().any(|m| m.due_us <= now_us) {
                self.expire(index, now_us);
                self.resend(index, Trigger::Timer, now_us, |m| m.due_us <= now_us);
            }
        }
        self.timer_floor_us = self
            .flows
            .iter()
            .flat_map(|f| f.unacked.iter().map(|m| m.due_us))
            .min()
            .unwrap_or(u64::MAX);
        self.check_invariant();
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<AckEvent> {
        self.events.pop_front()
    }

    /// Fails the messages of flow `index` past their timeout or attempts.
    fn expire(&mut self, index: usize, now_us: u64) {
        let flow = &mut self.flows[index];
        let (timeout_us, attempts_max) = (self.cfg.ack_timeout_ms * 1000, self.cfg.attempts_max);
        let mut kept = VecDeque::with_capacity(flow.unacked.len());
        let mut failed = Vec::new();
        for m in flow.unacked.drain(..) {
            let reason = if now_us.saturating_sub(m.first_sent_us) >= timeout_us {
                Some(FailReason::Timeout {
                    last_error: m.last_error,
                })
            } else if m.attempts >= attempts_max && m.due_us <= now_us {
                Some(FailReason::AttemptsExhausted {
                    last_error: m.last_error,
                })
            } else {
                None
            };
            match reason {
                Some(reason) => failed.push((m, reason)),
                None => kept.push_back(m),
            }
        }
        flow.unacked = kept;
        let any_failed = !failed.is_empty();
        for (m, reason) in failed {
            self.finish_failed(index, m, reason);
        }
        if any_failed {
            self.renumber(index);
        }
    }

    /// A message of flow `index` failed: new messages to it are numbered from 1 in a fresh epoch,
    /// so the receiver's window is not held back by the number that will never come. Those
    /// still in flight keep their epoch and numbers.
    fn renumber(&mut self, index: usize) {
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let flow = &mut self.flows[index];
        // Any value but the current one; the receiver keys its windows by (sender, epoch).
        flow.epoch = if x == flow.epoch { x ^ 1 } else { x };
        flow.base = flow.last_seq;
    }

    /// The index of `target`'s flow: the last one found if it is the same target (a run of
    /// messages to one target costs no hashing), else through the index.
    fn find(&mut self, target: &[u8]) -> Option<usize> {
        if self
            .flows
            .get(self.last_flow)
            .is_some_and(|f| f.target[..] == *target)
        {
            return Some(self.last_flow);
        }
        let index = *self.flow_index.get(target)?;
        self.last_flow = index;
        Some(index)
    }

    fn finish_failed(&mut self, index: usize, m: InFlight, reason: FailReason) {
        self.bytes_in_flight -= kept_bytes(&m.payload);
        self.stats.in_flight -= 1;
        match reason {
            FailReason::Timeout { .. } => self.stats.failed_timeout += 1,
            FailReason::AttemptsExhausted { .. } => self.stats.failed_attempts += 1,
            FailReason::Refused(_) => self.stats.failed_refused += 1,
            FailReason::Closed => self.stats.failed_closed += 1,
        }
        self.events.push_back(AckEvent::Failed {
            target: self.flows[index].target.to_vec(),
            seq: m.seq,
            reason,
        });
    }

    /// Queues again the messages of flow `index` that `pick` selects.
    fn resend(
        &mut self,
        index: usize,
        trigger: Trigger,
        now_us: u64,
        pick: impl Fn(&InFlight) -> bool,
    ) {
        let flow = &mut self.flows[index];
        for m in flow.unacked.iter_mut().filter(|m| pick(m)) {
            m.attempts += 1;
            m.last_sent_us = now_us;
            let rto = rto_us(&self.cfg, &self.rtt, &mut self.jitter_state, m.attempts);
            m.due_us = (now_us + rto).min(m.first_sent_us + self.cfg.ack_timeout_ms * 1000);
            self.timer_floor_us = self.timer_floor_us.min(m.due_us);
            self.stats.retransmitted[trigger as usize] += 1;
            self.out.push_back(Transmit {
                target: flow.target.clone(),
                epoch: m.epoch,
                seq: m.wire_seq(),
                payload: m.payload.clone(),
                retransmit: Some(trigger),
            });
        }
    }

    fn check_invariant(&self) {
        let s = &self.stats;
        debug_assert_eq!(s.sent, s.confirmed + s.failed() + s.in_flight);
        debug_assert_eq!(
            s.in_flight as usize,
            self.flows.iter().map(|f| f.unacked.len()).sum::<usize>()
        );
    }
}

/// Confirms messages of one acknowledgement as they come off the window, in sequence order:
/// consecutive numbers make one event.
struct Confirming<'a> {
    rtt: &'a mut RttEstimator,
    stats: &'a mut SenderStats,
    bytes_in_flight: &'a mut usize,
    events: &'a mut VecDeque<AckEvent>,
    target: &'a [u8],
    now_us: u64,
    /// The range of numbers confirmed and not yet given out as an event.
    range: Option<(u64, u64)>,
}

/// What keeping a message with `payload` counts against the byte bound.
fn kept_bytes(payload: &Bytes) -> usize {
    payload.len() + KEPT_MSG_OVERHEAD_BYTES
}

impl Confirming<'_> {
    fn take(&mut self, m: InFlight) {
        // Karn: only a message sent once gives a round-trip sample.
        if m.attempts == 1 {
            self.rtt.sample(self.now_us.saturating_sub(m.first_sent_us));
        }
        *self.bytes_in_flight -= kept_bytes(&m.payload);
        self.stats.confirmed += 1;
        self.stats.in_flight -= 1;
        self.range = match self.range {
            Some((first, last)) if last + 1 == m.seq => Some((first, m.seq)),
            Some(done) => {
                self.push(done);
                Some((m.seq, m.seq))
            }
            None => Some((m.seq, m.seq)),
        };
    }

    fn push(&mut self, (first_seq, last_seq): (u64, u64)) {
        self.events.push_back(AckEvent::Confirmed {
            target: self.target.to_vec(),
            first_seq,
            last_seq,
        });
    }

    fn finish(mut self) {
        if let Some(done) = self.range.take() {
            self.push(done);
        }
    }
}

/// The RTO for a message on its `attempts`-th send: 4 × smoothed RTT, bounded, doubled per
/// earlier attempt, ±20 % jitter (`jitter_state` is a xorshift64 state: jitter needs no
/// strong generator).
fn rto_us(cfg: &SenderConfig, rtt: &RttEstimator, jitter_state: &mut u64, attempts: u32) -> u64 {
    let (min_us, max_us) = (cfg.rto_min_ms * 1000, cfg.rto_max_ms * 1000);
    let base = rtt.rto_us().clamp(min_us, max_us);
    let backed_off = base
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(16))
        .min(max_us);
    let mut x = *jitter_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *jitter_state = x;
    let spread = backed_off / 5;
    // `x` scaled into 0..=2 * spread by a multiply, not a division (a division per message
    // was a fifth of numbering one).
    let offset = ((u128::from(x) * u128::from(2 * spread + 1)) >> 64) as u64;
    (backed_off - spread + offset).max(1)
}
