//! How many free receive buffers the provided-buffer ring is given at a time.
//!
//! A multishot receive takes buffers from the ring for as long as its socket has data, within
//! one submission. With every free buffer in the ring (then 1,024 of 16 KiB), one busy
//! connection pulls a megabyte or more per round: the round's input and the send buffers it
//! fills no longer fit the core's caches, and the kernel, taking entries first in first out,
//! cycles the whole 16 MiB pool so each receive lands in the coldest buffer. Measured on 1 KiB
//! one-to-one messages (`benches/ab_cpu.sh`, 2 vCPUs Intel Xeon): 755 ns of relay CPU per
//! message with 1,024 buffers in the ring, 565 ns with a fixed ring of 16. A receive that
//! finds the ring empty ends with ENOBUFS and is re-armed for the next round, its data waiting
//! in the socket: for one busy connection that bounds its intake per round, which is what we
//! want; for many connections with data at once it would cost a re-arm each, so the ring
//! grows for them. Too small a ring costs small messages that re-arm: with 16 buffers 16 B
//! messages took +9.6% relay CPU (twice the loop iterations, half of them with a re-arm).
//! Paired medians against a ring of every buffer, 16 B and 1 KiB: 24 buffers -6.1% and
//! -22.6% (a second set: +1.9% and -19.1%, so 16 B within this VM's noise), 32 buffers -3.4%
//! and -15.6%, 48 buffers -3.5% and -12.4%.
//!
//! So the pool keeps most free buffers aside, the most recently freed (hottest) on top, and
//! tops the ring up before each submission to a fill target:
//! - starts at its minimum: on a plain ring consumed incrementally the buffers that hold
//!   [`FILL_MIN_BYTES`] (24 of 16 KiB, 6 of the default 64 KiB), else [`FILL_MIN`] buffers;
//! - when [`STARVED_MANY`] or more receives found the ring empty since the last refill, it
//!   grows by twice their number (at least doubling), up to every buffer, and is held for
//!   [`STARVED_HOLD_REFILLS`] refills: so a burst of many connections costs a round or two of
//!   re-arms, not one per refill;
//! - otherwise it decays by an eighth per refill, down to the minimum: from 1,024 to 24 in
//!   about 30 refills after the hold, tens of milliseconds on a busy worker (an idle worker
//!   does not refill, and keeps its target until it is busy again).
//!
//! The same policy serves the TLS ring (whose buffers are 64 KiB, so its minimum of 24 holds
//! 1.5 MiB, as measured for TLS) and any `recv_buffer_bytes`.
//!
//! Plain code (no ring, no memory): the pool feeds it counts and applies the target.

/// The fill target never goes below this many buffers on the TLS ring, nor the plain ring's
/// below [`FILL_MIN_BYTES`]: with 16 KiB buffers, 24 of them (384 KiB) stay hot in a core's
/// L2 cache and give one busy connection 384 KiB per round while the target is at its minimum
/// (measured above).
pub const FILL_MIN: u32 = 24;

/// Starved receives in one round from which the ring grows: one or two are a busy
/// connection's intake bound at work, more are many connections wanting buffers at once.
pub const STARVED_MANY: u32 = 4;

/// Refills after a growth during which the target does not decay.
pub const STARVED_HOLD_REFILLS: u32 = 64;

/// The plain ring's minimum in bytes: what 24 buffers of 16 KiB held when the minimum above was
/// measured. It is the ring's hot bytes, not the size of one read, that sets the cost of small
/// messages (see README "Receive buffer size"), so larger buffers get fewer of them: 6 of the
/// default 64 KiB.
pub const FILL_MIN_BYTES: usize = 384 * 1024;

/// The fewest buffers of `buffer_bytes` that hold [`FILL_MIN_BYTES`], at least one and at
/// most [`FILL_MIN`] (buffers under 16 KiB hold less: the count measured bounds it).
pub fn fill_min_for(buffer_bytes: usize) -> u32 {
    (FILL_MIN_BYTES.div_ceil(buffer_bytes.max(1))).clamp(1, FILL_MIN as usize) as u32
}

#[derive(Debug)]
pub struct FillPolicy {
    /// Every buffer of the pool (the ring's size).
    entries: u32,
    /// The target's floor (at most `entries`).
    min: u32,
    target: u32,
    /// Refills left before the target may decay again after a growth.
    hold_refills: u32,
}

impl FillPolicy {
    /// Sets the target's floor (at most `entries`) and the target to it: buffers already in the
    /// ring above it stay until receives take them.
    pub fn set_min(&mut self, min: u32) {
        assert!(min > 0);
        self.min = min.min(self.entries);
        self.target = self.min;
        self.hold_refills = 0;
    }

    pub fn new(entries: u32, min: u32) -> Self {
        assert!(entries > 0 && min > 0);
        let min = min.min(entries);
        FillPolicy {
            entries,
            min,
            target: min,
            hold_refills: 0,
        }
    }

    /// The target for this refill, given how many receives found the ring empty since the
    /// last one.
    pub fn next_target(&mut self, starved: u32) -> u32 {
        if starved >= STARVED_MANY {
            let grown = self
                .target
                .saturating_mul(2)
                .max(self.target.saturating_add(starved.saturating_mul(2)));
            self.target = grown.min(self.entries);
            self.hold_refills = STARVED_HOLD_REFILLS;
        } else if self.hold_refills > 0 {
            self.hold_refills -= 1;
        } else {
            self.target = (self.target - self.target / 8).max(self.min);
        }
        self.target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &mut FillPolicy, refills: u32, starved: u32) -> u32 {
        (0..refills).map(|_| p.next_target(starved)).last().unwrap()
    }

    #[test]
    fn a_busy_connection_alone_keeps_the_ring_at_the_minimum() {
        let mut p = FillPolicy::new(1024, FILL_MIN);
        assert_eq!(run(&mut p, 1000, 1), FILL_MIN);
        assert_eq!(run(&mut p, 1000, STARVED_MANY - 1), FILL_MIN);
    }

    #[test]
    fn many_starved_receives_grow_the_ring_at_once_and_it_is_held() {
        let mut p = FillPolicy::new(1024, FILL_MIN);
        assert_eq!(p.next_target(984), 1024, "every buffer of a smaller ring");
        let mut p = FillPolicy::new(4096, FILL_MIN);
        assert_eq!(p.next_target(984), FILL_MIN + 2 * 984);
        assert_eq!(
            p.next_target(STARVED_MANY),
            2 * (FILL_MIN + 2 * 984),
            "at least doubles"
        );
        assert_eq!(p.next_target(100_000), 4096, "never past the ring");
        assert_eq!(run(&mut p, STARVED_HOLD_REFILLS, 0), 4096, "held");
        assert_eq!(p.next_target(0), 4096 - 512);
        assert_eq!(run(&mut p, 100, 0), FILL_MIN, "then decays to the minimum");
    }

    #[test]
    fn a_ring_smaller_than_the_minimum_keeps_every_buffer_in() {
        let mut p = FillPolicy::new(8, FILL_MIN);
        assert_eq!(run(&mut p, 100, 0), 8);
        assert_eq!(p.next_target(50), 8);
        assert_eq!(run(&mut p, 100, 0), 8);
    }

    #[test]
    fn the_plain_minimum_holds_the_same_bytes_in_fewer_larger_buffers() {
        assert_eq!(fill_min_for(16 * 1024), FILL_MIN);
        assert_eq!(fill_min_for(64 * 1024), 6);
        assert_eq!(fill_min_for(1 << 20), 1);
        assert_eq!(
            fill_min_for(4096),
            FILL_MIN,
            "never more than the count measured"
        );
        let mut p = FillPolicy::new(256, fill_min_for(64 * 1024));
        assert_eq!(run(&mut p, 1000, 0), 6);
    }
}
