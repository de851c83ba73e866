//! The `\r`-updated progress line on stderr.

use std::io::Write;
use std::time::{Duration, Instant};

pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

pub struct Progress {
    label: String,
    start: Instant,
    last_at: Instant,
    last_received: u64,
}

impl Progress {
    pub fn new(label: String) -> Progress {
        let now = Instant::now();
        Progress {
            label,
            start: now,
            last_at: now,
            last_received: 0,
        }
    }

    /// Prints a line when `PROGRESS_INTERVAL` has passed since the last one.
    pub fn tick(&mut self, sent: u64, received: u64) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at);
        if dt < PROGRESS_INTERVAL {
            return;
        }
        let rate = received.saturating_sub(self.last_received) as f64 / dt.as_secs_f64();
        eprint!(
            "\r{}",
            line(
                &self.label,
                now.duration_since(self.start),
                sent,
                received,
                rate
            )
        );
        let _ = std::io::stderr().flush();
        self.last_at = now;
        self.last_received = received;
    }

    /// Ends the progress line so the report starts on a fresh line.
    pub fn finish(&self) {
        if self.last_at != self.start {
            eprintln!();
        }
    }
}

pub fn line(label: &str, elapsed: Duration, sent: u64, received: u64, rate_per_s: f64) -> String {
    format!(
        "{label}: {:6.1} s  sent {sent:>11}  received {received:>11}  {:>12.0} deliveries/s   ",
        elapsed.as_secs_f64(),
        rate_per_s
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_line_shows_counts() {
        let l = super::line(
            "nats unicast",
            std::time::Duration::from_millis(1500),
            10,
            7,
            1234.4,
        );
        assert!(l.starts_with("nats unicast:    1.5 s"), "{l}");
        assert!(
            l.contains("sent          10") && l.contains("1234 deliveries/s"),
            "{l}"
        );
    }
}
