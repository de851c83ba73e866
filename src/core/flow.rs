//! Flow control (sans-IO): a queue of outbound bytes (a client's, or a data link's) tells the
//! worker when to pause the producers that feed it, when they may go on, and when the consumer
//! behind it is closed as slow. The worker keeps one [`Backlog`] per connection and carries
//! out what it answers; the clock is the caller's `now_ms`.
//!
//! The policy (README "Flow control", PROTOCOL.md section 8.7):
//! - A queue at or above its high watermark *stalls* the producers that feed it: the worker
//!   stops reading their connections until the queue drains below the low watermark or the
//!   stall runs out (`stall_ms_max`), whichever comes first.
//! - A client's queue stalls producers for at most `stall_ms_max` per congestion episode (from
//!   reaching the high watermark to draining below the low one): one consumer that stopped
//!   reading costs a producer that much once, and nobody else anything.
//! - A data link's queue has no such budget: a link is the way to a whole node and is never
//!   "slow", so every producer that feeds a full link is stalled, each stall for at most
//!   `stall_ms_max`; only a message that would pass the link's bound is dropped (counted, and
//!   the sender told OVERLOADED).
//! - A client whose queue stays above `pending_bytes_max` for longer than
//!   `slow_consumer_grace_ms` is closed as a slow consumer. A message that would take its
//!   queue past the ceiling (twice `pending_bytes_max`, the connection's memory bound) is
//!   refused: the worker drops it and tells its sender OVERLOADED (a frame the relay produces
//!   closes the consumer instead). While its producers are stalled within the episode's
//!   budget, the ceiling is higher by `in_flight_bytes_max`: messages already on their way
//!   when the stall began (the rest of a producer's receive, a handoff queue from another
//!   worker) are not refused for the relay's own latency.
//! - All of one worker's client queues together hold at most `pending_bytes_per_worker_max`
//!   ([`WorkerRoom`]). Its last eighth is kept for the queues that are not behind (below their
//!   high watermark with the message, or stalling their producers within the episode's budget
//!   and not above `pending_bytes_max`): the consumers that fell behind, which are what fill a
//!   worker, lose messages there first, and those that keep up are served until the bound
//!   itself.

/// Sentinel of a [`Backlog`] instant that is not set.
const UNSET_MS: u64 = u64::MAX;

/// The bounds of one kind of queue (clients, or data links), from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowLimits {
    /// High watermark: a queue at or above it stalls its producers.
    pub stall_at_bytes: usize,
    /// Low watermark: a congestion episode ends once the queue is below it.
    pub resume_below_bytes: usize,
    /// A queue above it for longer than `grace_ms` closes its consumer.
    pub pending_bytes_max: usize,
    /// A message that would take the queue past it is refused (the memory bound).
    pub ceiling_bytes: usize,
    /// While the queue stalls its producers (within the episode's budget), a message may take
    /// it this far past `ceiling_bytes`: it was in flight when the stall began.
    pub in_flight_bytes_max: usize,
    /// Longest stall of a producer.
    pub stall_ms_max: u64,
    /// How long a queue may stay above `pending_bytes_max` (`u64::MAX`: for ever).
    pub grace_ms: u64,
    /// Whether an episode's stalls are limited to `stall_ms_max` in all (clients), or each
    /// stall on its own (data links).
    pub episode_budget: bool,
}

/// The highest a client's or a data link's queue's high watermark goes, whatever
/// `pending_bytes_max` or `link_pending_bytes_max` (unless
/// `max_frame_bytes` is larger: the watermark never goes below one whole frame): a queue
/// deeper than this stalls its producers. A consumer's queue is written when a message is
/// relayed and read when it is sent; deeper than a few MiB, those bytes have left the caches
/// between the two, and the queue's growth faults fresh pages in. 2 MiB is the watermark of
/// the default `pending_bytes_max` (8 MiB). Measured (1->1 1 KiB, relay on CPU 0, load
/// generator on CPU 1, 2,000,000 messages, 2 vCPUs Intel Xeon, `benches/ab_cpu.sh`'s
/// alternating runs): with `pending_bytes_max` 64 MiB and the watermark a quarter of it (16
/// MiB), 440 to 570 ns of relay CPU per message (median 480; other runs of the kind reached
/// 650 to 730 ns, at 1.3 to 1.5 M msgs/s); with the watermark at 2 MiB, 415 to 445 ns (median
/// 430) at 1.7 to 1.95 M msgs/s; 1 MiB and below stalled more often and cost more. A larger
/// `pending_bytes_max` still lets a consumer fall further behind before it is closed; its
/// producers are slowed from the same depth.
pub const STALL_AT_BYTES_MAX: usize = 2 << 20;

/// A queue's high watermark: a quarter of its bound, at most [`STALL_AT_BYTES_MAX`] but never
/// below one whole frame of `max_frame_bytes`.
fn high_watermark(bound_bytes: usize, max_frame_bytes: usize) -> usize {
    (bound_bytes / 4).min(STALL_AT_BYTES_MAX.max(max_frame_bytes))
}

impl FlowLimits {
    /// A client's queue: stalls from a quarter of `pending_bytes_max` (at most
    /// [`STALL_AT_BYTES_MAX`], or `max_frame_bytes` if that is larger), resumes below half
    /// that, refuses past twice `pending_bytes_max` (three times while its producers are
    /// stalled, for messages in flight), closed above it for `grace_ms`.
    pub fn for_clients(
        pending_bytes_max: usize,
        max_frame_bytes: usize,
        stall_ms_max: u64,
        grace_ms: u64,
    ) -> FlowLimits {
        let stall_at_bytes = high_watermark(pending_bytes_max, max_frame_bytes);
        FlowLimits {
            stall_at_bytes,
            resume_below_bytes: stall_at_bytes / 2,
            pending_bytes_max,
            ceiling_bytes: pending_bytes_max.saturating_mul(2),
            in_flight_bytes_max: pending_bytes_max,
            stall_ms_max,
            grace_ms,
            episode_budget: true,
        }
    }

    /// A data link's queue: stalls from a quarter of `link_pending_bytes_max` (at most
    /// [`STALL_AT_BYTES_MAX`], or `max_frame_bytes` if that is larger, as a client's: a deep
    /// link queue is as cold; measured across two nodes, one worker each, `pending_bytes_max`
    /// 64 MiB, 1 KiB one-to-one, five alternating runs: medians 0.68 M msgs/s and 145 ticks of
    /// both nodes' CPU per million messages with the watermark at 16 MiB, 1.05 M and 93 with
    /// it at 2 MiB, README "Flow control"), resumes below half that, refuses past
    /// `link_pending_bytes_max`, never closed for being behind.
    pub fn for_links(
        link_pending_bytes_max: usize,
        max_frame_bytes: usize,
        stall_ms_max: u64,
    ) -> FlowLimits {
        let stall_at_bytes = high_watermark(link_pending_bytes_max, max_frame_bytes);
        FlowLimits {
            stall_at_bytes,
            resume_below_bytes: stall_at_bytes / 2,
            pending_bytes_max: link_pending_bytes_max,
            ceiling_bytes: link_pending_bytes_max,
            // A forward past the bound is dropped and its sender told, never a close.
            in_flight_bytes_max: 0,
            stall_ms_max,
            grace_ms: u64::MAX,
            episode_budget: false,
        }
    }

    /// Whether a message of `len` bytes joins a queue holding `pending_bytes` below the high
    /// watermark: [`Backlog::admit`] queues it without looking at (or changing) the backlog.
    #[inline]
    pub fn queues_freely(&self, pending_bytes: usize, len: usize) -> bool {
        pending_bytes.saturating_add(len) < self.stall_at_bytes
    }

    /// Whether an ERROR of `len` bytes may join a queue holding `pending_bytes`: never past
    /// `pending_bytes_max` (it is dropped and counted instead), so the queue of a sender that
    /// does not read its ERRORs never reaches the grace's bound through them, and a sender is
    /// never closed for errors it did not read (ERRORs of acknowledged sends are not
    /// coalesced: each names its message, and the sender's library resends a message whose
    /// ERROR was dropped).
    pub fn takes_error(&self, pending_bytes: usize, len: usize) -> bool {
        pending_bytes.saturating_add(len) <= self.pending_bytes_max
    }

    /// Whether a frame the relay produces (PING, PONG, PRESENCE, RECEIPT) of `len` bytes,
    /// refused at the ceiling, may still join a queue holding `pending_bytes`: up to the
    /// in-flight room past the ceiling (three times `pending_bytes_max` for a client), so a
    /// consumer whose messages fill its queue to the ceiling is not closed by its next PING
    /// or presence change; it meets its grace instead. Such frames are few per connection.
    pub fn takes_relay_frame(&self, pending_bytes: usize, len: usize) -> bool {
        let bound = self.ceiling_bytes.saturating_add(self.in_flight_bytes_max);
        pending_bytes.saturating_add(len) <= bound
    }
}

/// Where a message would take all of one worker's client queues together, against
/// `pending_bytes_per_worker_max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerRoom {
    /// Below seven eighths of the bound: any queue takes it.
    Free,
    /// In the last eighth: kept for the queues that are not behind.
    Reserve,
    /// Past the bound: no queue takes it.
    Full,
}

impl WorkerRoom {
    /// Where `len` more bytes take a worker whose client queues hold `worker_bytes` (`len`
    /// counts the growth of the buffer they are written to, as `worker_bytes` counts buffers'
    /// capacity: else a queue that fell behind could grow its buffer across the reserve's
    /// line, and the reserve would be gone).
    #[inline]
    pub fn of(worker_bytes_max: usize, worker_bytes: usize, len: usize) -> WorkerRoom {
        let after = worker_bytes.saturating_add(len);
        if after <= worker_bytes_max - worker_bytes_max / 8 {
            WorkerRoom::Free
        } else if after <= worker_bytes_max {
            WorkerRoom::Reserve
        } else {
            WorkerRoom::Full
        }
    }

    /// Whether a message of `len` bytes joins a queue of `limits` that holds `queue_bytes` and
    /// stands as `standing`. In the reserve, only a queue that is not behind takes it: one
    /// that stays below its high watermark with it, or one stalling its producers within its
    /// budget and not above `pending_bytes_max` (a consumer behind for a moment, what stalls
    /// are for). So when many consumers fall behind at once and fill their worker, they lose
    /// messages there (their senders told) while the consumers that keep up still get theirs.
    #[inline]
    pub fn admits(
        self,
        limits: &FlowLimits,
        queue_bytes: usize,
        len: usize,
        standing: impl FnOnce() -> Congestion,
    ) -> bool {
        match self {
            WorkerRoom::Free => true,
            WorkerRoom::Reserve => {
                queue_bytes.saturating_add(len) < limits.stall_at_bytes
                    || standing() == Congestion::Stalling
            }
            WorkerRoom::Full => false,
        }
    }
}

/// What to do with a message offered to a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Queue it.
    Queue,
    /// Queue it, and stall its producer until `until_ms` at the latest.
    Stall { until_ms: u64 },
    /// It would pass the ceiling: refuse it (dropped, its sender told OVERLOADED; a frame the
    /// relay produces closes a client instead).
    Refuse,
}

/// One queue's congestion state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// When the queue reached the high watermark in this episode (`UNSET_MS`: no episode).
    congested_at_ms: u64,
    /// When the queue passed `pending_bytes_max` (`UNSET_MS`: it is not above).
    over_at_ms: u64,
}

impl Default for Backlog {
    fn default() -> Backlog {
        Backlog {
            congested_at_ms: UNSET_MS,
            over_at_ms: UNSET_MS,
        }
    }
}

impl Backlog {
    /// A message of `len` bytes offered to the queue, which holds `pending_bytes`.
    #[inline]
    pub fn admit(
        &mut self,
        limits: &FlowLimits,
        pending_bytes: usize,
        len: usize,
        now_ms: u64,
    ) -> Admit {
        if limits.queues_freely(pending_bytes, len) {
            return Admit::Queue;
        }
        self.admit_congested(limits, pending_bytes.saturating_add(len), now_ms)
    }

    /// [`Self::admit`] for a frame the relay produces (PING, PONG, PRESENCE, RECEIPT): one
    /// refused at the ceiling is still queued within the in-flight room
    /// ([`FlowLimits::takes_relay_frame`]).
    pub fn admit_relay_frame(
        &mut self,
        limits: &FlowLimits,
        pending_bytes: usize,
        len: usize,
        now_ms: u64,
    ) -> Admit {
        match self.admit(limits, pending_bytes, len, now_ms) {
            Admit::Refuse if limits.takes_relay_frame(pending_bytes, len) => Admit::Queue,
            admit => admit,
        }
    }

    #[cold]
    #[inline(never)]
    fn admit_congested(&mut self, limits: &FlowLimits, after: usize, now_ms: u64) -> Admit {
        if after > limits.ceiling_bytes {
            let in_flight = self.congested_at_ms != UNSET_MS
                && self.stalls(limits, now_ms)
                && after - limits.ceiling_bytes <= limits.in_flight_bytes_max;
            if !in_flight {
                return Admit::Refuse;
            }
        }
        if after > limits.pending_bytes_max && self.over_at_ms == UNSET_MS {
            self.over_at_ms = now_ms;
        }
        if self.congested_at_ms == UNSET_MS {
            self.congested_at_ms = now_ms;
        }
        match self.stall_ends_ms(limits, now_ms) {
            Some(until_ms) => Admit::Stall { until_ms },
            None => Admit::Queue,
        }
    }

    /// The queue now holds `pending_bytes` (it was sent from). Returns whether a congestion
    /// episode ended (its producers may go on).
    #[inline]
    pub fn drained(&mut self, limits: &FlowLimits, pending_bytes: usize) -> bool {
        if pending_bytes <= limits.pending_bytes_max {
            self.over_at_ms = UNSET_MS;
        }
        let ended = self.congested_at_ms != UNSET_MS && pending_bytes < limits.resume_below_bytes;
        if ended {
            self.congested_at_ms = UNSET_MS;
        }
        ended
    }

    /// Whether the queue is in a congestion episode.
    pub fn congested(&self) -> bool {
        self.congested_at_ms != UNSET_MS
    }

    /// How the queue stands for a queue group's pick (see [`Congestion`]).
    #[inline]
    pub fn congestion(&self, limits: &FlowLimits, now_ms: u64) -> Congestion {
        if !self.congested() {
            Congestion::Clear
        } else if self.over_at_ms != UNSET_MS {
            Congestion::Over
        } else if self.stalls(limits, now_ms) {
            Congestion::Stalling
        } else {
            Congestion::Behind
        }
    }

    /// Until when a producer that feeds the queue now is stalled; `None` when it is not (no
    /// episode, or the episode's budget is spent).
    pub fn stall_ends_ms(&self, limits: &FlowLimits, now_ms: u64) -> Option<u64> {
        if self.congested_at_ms == UNSET_MS {
            return None;
        }
        if !limits.episode_budget {
            return Some(now_ms.saturating_add(limits.stall_ms_max));
        }
        let until_ms = self.congested_at_ms.saturating_add(limits.stall_ms_max);
        (now_ms < until_ms).then_some(until_ms)
    }

    /// Whether producers stalled on this queue stay stalled.
    pub fn stalls(&self, limits: &FlowLimits, now_ms: u64) -> bool {
        self.stall_ends_ms(limits, now_ms).is_some()
    }

    /// Whether the consumer has stayed above `pending_bytes_max` past its grace.
    pub fn overdue(&self, limits: &FlowLimits, now_ms: u64) -> bool {
        self.over_at_ms != UNSET_MS && now_ms.saturating_sub(self.over_at_ms) > limits.grace_ms
    }
}

/// A queue's state as a queue group's pick sees it, best first: a group message goes to a
/// `Clear` member when there is one; else to a `Stalling` one (a consumer in a congestion
/// episode, still below `pending_bytes_max`, whose stall budget is not spent: the producer
/// waits for it to drain, as for any full queue); else to a `Behind` one (its episode
/// outlasted `stall_ms_max`: a consumer that is not keeping up, but still below
/// `pending_bytes_max`); an `Over` member (above `pending_bytes_max`: on its way to its
/// grace's close, and at its ceiling the message would be dropped) only when every member is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Congestion {
    Clear,
    Stalling,
    Behind,
    Over,
}

/// What a stalled producer waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallOn {
    /// A connection's queue: a client's on any worker, or a data link's on this one.
    Queue {
        worker: u16,
        slot: u32,
        generation: u32,
    },
    /// The handoff queue to another worker.
    Handoff(u16),
    /// This worker's backlog of forwards to a node whose data link is not up yet (see
    /// `server::link_backlog`).
    Backlog(u16),
}

impl StallOn {
    /// The (slot, generation) of the connection queue waited for, when it is on `worker`.
    pub fn local_queue(self, worker: u16) -> Option<(u32, u32)> {
        match self {
            StallOn::Queue {
                worker: w,
                slot,
                generation,
            } if w == worker => Some((slot, generation)),
            _ => None,
        }
    }
}

/// A producer whose reads are paused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub on: StallOn,
    pub since_ms: u64,
    /// The stall ends then at the latest.
    pub until_ms: u64,
}

impl Stall {
    /// Whether the stall is over at `now_ms`, given whether what it waits for still stalls.
    pub fn over(&self, now_ms: u64, still_stalls: bool) -> bool {
        now_ms >= self.until_ms || !still_stalls
    }
}

#[cfg(test)]
mod tests;
