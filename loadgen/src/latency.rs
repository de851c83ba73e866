//! Latency histograms and the open-loop send schedule.
//!
//! Coordinated-omission correction: message `i` is *intended* to leave at `t0 + i / rate`; the
//! sender writes that intended time into the payload and never waits for replies, and the
//! receiver records `now - intended`. A stall in the relay therefore shows up as latency for
//! every message that should have been sent during the stall, not just the one that was late.

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks exactly: 60 s (larger values saturate).
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).map_err(|e| format!("latency histogram: {e}"))
}

/// p50, p99 and p99.9 in microseconds; `None` for an empty histogram.
pub fn percentiles_us(hist: &Histogram<u64>) -> Option<[f64; 3]> {
    if hist.is_empty() {
        return None;
    }
    let at = |q: f64| hist.value_at_quantile(q) as f64 / 1_000.0;
    Some([at(0.50), at(0.99), at(0.999)])
}

/// The intended send time of message `index` (ns after the schedule start).
pub fn intended_ns(index: u64, rate_msgs_per_s: u64) -> u64 {
    let ns = u128::from(index) * 1_000_000_000 / u128::from(rate_msgs_per_s.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// How many messages are due `elapsed_ns` after the schedule start (those with an intended
/// time at or before it), capped at `total`.
pub fn due_count(elapsed_ns: u64, rate_msgs_per_s: u64, total: u64) -> u64 {
    // intended_ns(i) = floor(i * 1e9 / rate) <= elapsed  <=>  i < (elapsed + 1) * rate / 1e9,
    // so the count is ceil((elapsed + 1) * rate / 1e9).
    let due = ((u128::from(elapsed_ns) + 1) * u128::from(rate_msgs_per_s)).div_ceil(1_000_000_000);
    u64::try_from(due).unwrap_or(u64::MAX).min(total)
}

/// Messages the latency scenario sends: `rate x duration`, at most `count`.
pub fn scheduled_total(rate_msgs_per_s: u64, duration_s: f64, count: u64) -> u64 {
    let total = (rate_msgs_per_s as f64 * duration_s).floor();
    if total < 1.0 {
        return 1;
    }
    (total as u64).min(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_math_is_exact_and_monotone() {
        assert_eq!(intended_ns(0, 100_000), 0);
        assert_eq!(intended_ns(1, 100_000), 10_000);
        assert_eq!(intended_ns(100_000, 100_000), 1_000_000_000);
        assert_eq!(intended_ns(3, 3), 1_000_000_000);
        assert_eq!(intended_ns(u64::MAX, 1), u64::MAX); // saturates, no overflow
                                                        // message 0 is due at once; message 1 is due exactly at its intended time
        assert_eq!(due_count(0, 100_000, 10), 1);
        assert_eq!(due_count(9_999, 100_000, 10), 1);
        assert_eq!(due_count(10_000, 100_000, 10), 2);
        assert_eq!(due_count(u64::MAX, 100_000, 10), 10);
        for i in 0..1000 {
            let t = intended_ns(i, 7_919);
            assert_eq!(due_count(t, 7_919, u64::MAX), i + 1, "message {i}");
            if t > 0 {
                assert_eq!(
                    due_count(t - 1, 7_919, u64::MAX),
                    i,
                    "just before message {i}"
                );
            }
        }
        assert_eq!(scheduled_total(100_000, 5.0, 2_000_000), 500_000);
        assert_eq!(scheduled_total(100_000, 5.0, 1_000), 1_000);
        assert_eq!(scheduled_total(1, 0.1, 10), 1);
    }

    #[test]
    fn percentiles_in_microseconds() {
        let mut h = new_histogram().unwrap();
        assert!(percentiles_us(&h).is_none());
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap();
        }
        let [p50, p99, p999] = percentiles_us(&h).unwrap();
        assert!((p50 - 500.0).abs() < 1.0, "{p50}");
        assert!((p99 - 990.0).abs() < 1.0, "{p99}");
        assert!((p999 - 999.0).abs() < 1.0, "{p999}");
    }
}
