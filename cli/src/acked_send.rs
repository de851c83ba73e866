//! `ringrelay send --ack`: acknowledged delivery from the command line. Every message ends
//! acknowledged by the target's client (exit 0) or failed with its reason (exit 5); the
//! counters that show nothing was lost are printed on stderr at the end.

use super::client_verbs::{connect_acked, no_relay, report, SendArgs, EXIT_ACK_FAILED};
use super::payload::{payloads, stdin, PayloadSource};
use super::CliFailure;
use ringrelay::ack::{FailReason, SenderConfig, Trigger};
use ringrelay::client::{AckedSendError, AckedSession, AckedSessionOptions, AckedStats, Event};
use ringrelay::protocol::payload_bytes_max;
use std::time::{Duration, Instant};

/// Slack past `--ack-timeout-ms` before the verb gives up on the session itself (the sender
/// fails every message by then; this only bounds a session that stopped answering).
const FINISH_SLACK: Duration = Duration::from_secs(5);

/// `ringrelay send --ack`.
pub fn send_acked(args: &SendArgs) -> Result<(), CliFailure> {
    let source = PayloadSource::parse(&args.payload);
    let opts = AckedSessionOptions {
        sender: SenderConfig {
            ack_timeout_ms: args.ack_timeout_ms,
            ..SenderConfig::default()
        },
        ..AckedSessionOptions::default()
    };
    let mut session = connect_acked(&args.conn, &args.id, opts)?;
    let max = payload_bytes_max(session.session().relay_max_frame_bytes());
    let messages = payloads(&source, args.count, max, &mut stdin())?;
    let mut outcome = Outcome::default();
    for payload in messages {
        let mut payload = Some(payload);
        while let Some(p) = payload.take() {
            match session.send(args.to.as_bytes(), p.clone()) {
                Ok(_) => {}
                // The window is full: take acknowledgements, then try again.
                Err(AckedSendError::WouldBlock(_)) => {
                    payload = Some(p);
                    outcome.take_one(&mut session, Duration::from_millis(10))?;
                }
                Err(AckedSendError::Client(e)) => return Err(no_relay(e)),
            }
        }
    }
    session.flush().map_err(no_relay)?;
    // Every message has its own timeout from when it was sent; the last one was sent now.
    let wait = Duration::from_millis(args.ack_timeout_ms).saturating_add(FINISH_SLACK);
    let deadline = Instant::now().checked_add(wait);
    while session.stats().sender.in_flight > 0 {
        let Some(deadline) = deadline else {
            outcome.take_one(&mut session, FINISH_SLACK)?;
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        outcome.take_one(&mut session, left)?;
    }
    let stats = session.close().map_err(no_relay)?;
    eprintln!("{}", sender_summary(&stats));
    outcome.result(&stats, &args.to)
}

/// What became of the messages so far.
#[derive(Default)]
struct Outcome {
    failed: u64,
    first_failure: Option<FailReason>,
}

impl Outcome {
    /// Receives one event (up to `wait`) and counts it.
    fn take_one(&mut self, session: &mut AckedSession, wait: Duration) -> Result<(), CliFailure> {
        match session.recv(wait).map_err(no_relay)? {
            Some(Event::Failed { reason, .. }) => {
                self.failed += 1;
                self.first_failure.get_or_insert(reason);
            }
            Some(Event::Confirmed { .. }) | None => {}
            Some(other) => report(other)?,
        }
        Ok(())
    }

    fn result(&self, stats: &AckedStats, target: &str) -> Result<(), CliFailure> {
        let failed = stats.sender.failed();
        let Some(reason) = self
            .first_failure
            .or((failed > 0).then_some(FailReason::Closed))
        else {
            return Ok(());
        };
        Err(CliFailure {
            message: format!(
                "{failed} of {} messages to {target} failed; the first: {reason}",
                stats.sender.sent
            ),
            exit_code: EXIT_ACK_FAILED,
        })
    }
}

/// The sending side's counters, one line: sent = confirmed + failed + in flight.
pub fn sender_summary(stats: &AckedStats) -> String {
    let s = &stats.sender;
    let retransmitted: Vec<String> = Trigger::ALL
        .iter()
        .map(|t| format!("{t:?} {}", s.retransmitted_by(*t)).to_lowercase())
        .collect();
    let rtt = |q: f64| {
        stats
            .rtt
            .quantile_upper_us(q)
            .map_or_else(|| "-".to_string(), |us| format!("{us} us"))
    };
    format!(
        "acked: sent {}, confirmed {}, failed {} (timeout {}, attempts {}, refused {}, closed {}), \
         in flight {}, retransmitted {} ({}), ack round trip p50 <= {}, p99 <= {}",
        s.sent,
        s.confirmed,
        s.failed(),
        s.failed_timeout,
        s.failed_attempts,
        s.failed_refused,
        s.failed_closed,
        s.in_flight,
        s.retransmitted.iter().sum::<u64>(),
        retransmitted.join(", "),
        rtt(0.5),
        rtt(0.99),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringrelay::ack::AckSender;

    #[test]
    fn the_summary_shows_the_balance_and_every_trigger() {
        let sender = AckSender::new(SenderConfig::default(), 1, 1);
        let stats = AckedStats {
            sender: sender.stats().clone(),
            receiver: Default::default(),
            rtt: sender.rtt().clone(),
        };
        let line = sender_summary(&stats);
        for part in [
            "sent 0",
            "confirmed 0",
            "failed 0",
            "in flight 0",
            "reconnect 0",
            "presence 0",
            "gap 0",
            "timer 0",
            "p99 <= -",
        ] {
            assert!(line.contains(part), "{line}");
        }
    }
}
