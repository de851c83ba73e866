//! Round-trip time of acknowledgements: the smoothed estimate behind the RTO (RFC 6298's
//! SRTT and RTTVAR, in microseconds) and a histogram of the samples.

/// Histogram buckets: bucket `i` counts samples below `2^i` µs (the last one everything
/// from about 18 minutes up).
pub const RTT_BUCKETS: usize = 31;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RttEstimator {
    initial_rto_us: u64,
    smoothed_us: Option<u64>,
    variation_us: u64,
    buckets: [u64; RTT_BUCKETS],
}

impl RttEstimator {
    pub fn new(initial_rto_us: u64) -> RttEstimator {
        RttEstimator {
            initial_rto_us,
            smoothed_us: None,
            variation_us: 0,
            buckets: [0; RTT_BUCKETS],
        }
    }

    /// One measured round trip (of a message sent once).
    pub fn sample(&mut self, rtt_us: u64) {
        let bucket = (64 - rtt_us.leading_zeros() as usize).min(RTT_BUCKETS - 1);
        self.buckets[bucket] += 1;
        match self.smoothed_us {
            None => {
                self.smoothed_us = Some(rtt_us);
                self.variation_us = rtt_us / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt_us);
                self.variation_us = (3 * self.variation_us + delta) / 4;
                self.smoothed_us = Some((7 * srtt + rtt_us) / 8);
            }
        }
    }

    pub fn smoothed_us(&self) -> Option<u64> {
        self.smoothed_us
    }

    /// SRTT + 4 × RTTVAR once measured; the initial RTO before.
    pub fn rto_us(&self) -> u64 {
        match self.smoothed_us {
            Some(srtt) => srtt + 4 * self.variation_us.max(250),
            None => self.initial_rto_us,
        }
    }

    /// Samples per bucket (bucket `i`: below `2^i` µs, at least `2^(i-1)`).
    pub fn histogram(&self) -> &[u64; RTT_BUCKETS] {
        &self.buckets
    }

    /// The upper bound (µs) of the bucket holding the `quantile` (0..=1) of the samples.
    pub fn quantile_upper_us(&self, quantile: f64) -> Option<u64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * quantile.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(1u64 << i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_samples_and_the_rto_covers_them() {
        let mut r = RttEstimator::new(200_000);
        assert_eq!(r.rto_us(), 200_000);
        r.sample(1_000);
        assert_eq!(r.smoothed_us(), Some(1_000));
        for _ in 0..50 {
            r.sample(2_000);
        }
        let srtt = r.smoothed_us().unwrap();
        assert!((1_900..=2_000).contains(&srtt), "{srtt}");
        assert!(r.rto_us() >= srtt + 1_000, "RTTVAR is floored at 250 µs");
        assert_eq!(r.histogram()[10], 1); // 1,000 µs: below 1,024
        assert_eq!(r.histogram()[11], 50); // 2,000 µs: below 2,048
        assert_eq!(r.quantile_upper_us(0.5), Some(2_048));
        assert_eq!(r.quantile_upper_us(0.01), Some(1_024));
    }
}
