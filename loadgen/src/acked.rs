//! `bench --ack`: acknowledged one-to-one delivery, measured as users get it. On ringrelay the
//! sender and the receiver are the library's [`AckedSession`]s (end-to-end acknowledgements,
//! retransmission and de-duplication in the clients); the sender keeps its window full and the
//! run ends when every message is confirmed (or failed). Measured: confirmed messages per
//! second from the first send to the last confirmation, the acknowledgement round trip of
//! each message (first send to confirmation), and the relay's CPU.
//!
//! The payload is one static buffer, sent again and again, as the best-effort sender's
//! pre-built frames are: keeping it for retransmission then costs no reference count per
//! message, and the run measures the protocol and the library, not the application's way of
//! making payloads.

use super::cpu::process_cpu_s;
use super::latency::{new_histogram, percentiles_us};
use super::runner::Measured;
use bytes::Bytes;
use ringrelay::client::{
    AckedSendError, AckedSession, AckedSessionOptions, ClientOptions, Event, Incoming,
    SessionOptions, RECV_MANY_EVENTS_MAX,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Bound on connecting and on the receiver coming online.
const SETUP_TIME_MAX: Duration = Duration::from_secs(10);
/// Messages offered per send call, each burst written at once. A quarter of the window: the
/// relay and the receiver start on a burst while the next is made, and confirmations are
/// read between bursts. Measured at 16 B: a whole window per burst ran about 5 % slower
/// (sending turned into stop and go), an eighth of it about 14 % (more writes and wakeups).
const BURST_MSGS: usize = 1024;
/// After the time cap, messages in flight get this long to end before the run stops.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// One acknowledged run's settings.
pub struct AckedJob {
    pub addr: SocketAddr,
    pub token: Vec<u8>,
    /// Dial the relay's `tls_listen` (`--tls-ca-file`).
    pub tls: Option<ringrelay::client::ClientTls>,
    pub size_bytes: usize,
    pub count: u64,
    pub duration: Duration,
    pub server_pid: Option<u32>,
    pub tag: String,
}

fn options(job: &AckedJob) -> AckedSessionOptions {
    AckedSessionOptions {
        session: SessionOptions {
            servers: vec![job.addr.to_string()],
            token: (!job.token.is_empty()).then(|| job.token.clone()),
            reconnect_timeout: SETUP_TIME_MAX,
            client: ClientOptions {
                write_timeout: Some(Duration::from_secs(10)),
                tls: job.tls.clone(),
                ..ClientOptions::default()
            },
            ..SessionOptions::default()
        },
        ..AckedSessionOptions::default()
    }
}

/// Runs `job` against a ringrelay: a receiving session on one thread, the sending session on
/// this one.
pub fn run_relay(job: &AckedJob) -> Result<Measured, String> {
    let rx_id = format!("{}-ack-rx", job.tag);
    let tx_id = format!("{}-ack-tx", job.tag);
    let mut rx = AckedSession::connect(rx_id.as_bytes(), options(job))
        .map_err(|e| format!("{rx_id}: {e}"))?;
    let mut tx = AckedSession::connect(tx_id.as_bytes(), options(job))
        .map_err(|e| format!("{tx_id}: {e}"))?;
    await_online(&mut tx, &rx_id)?;
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let receiver = scope.spawn(|| receive(&mut rx, &stop));
        let sent = send(job, &mut tx, &rx_id);
        stop.store(true, Ordering::Release);
        let delivered = receiver
            .join()
            .map_err(|_| "the receiving thread panicked".to_string())??;
        let mut m = sent?;
        if delivered < m.sent - m.errors {
            m.notes.push(format!(
                "the receiver's application got {delivered} of {} confirmed messages",
                m.sent - m.errors
            ));
        }
        Ok(m)
    })
}

/// Waits until `id` is registered (a WATCH is answered with the present state).
fn await_online(tx: &mut AckedSession, id: &str) -> Result<(), String> {
    tx.watch(id.as_bytes()).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + SETUP_TIME_MAX;
    while Instant::now() < deadline {
        if let Some(Event::Presence { online: true, .. }) = tx
            .recv(Duration::from_millis(50))
            .map_err(|e| e.to_string())?
        {
            return tx.unwatch(id.as_bytes()).map_err(|e| e.to_string());
        }
    }
    Err(format!("{id} did not come online"))
}

/// The receiver: takes messages until told to stop; returns how many its application got.
/// Messages are taken borrowed where the session read them, as a fast application would.
fn receive(rx: &mut AckedSession, stop: &AtomicBool) -> Result<u64, String> {
    let mut delivered = 0u64;
    let mut closed = None;
    while !stop.load(Ordering::Acquire) && closed.is_none() {
        rx.recv_with(Duration::from_millis(5), |incoming| match incoming {
            Incoming::AckedMessage { .. } => delivered += 1,
            Incoming::Event(Event::Closed { text, .. }) => closed = Some(text),
            Incoming::Event(_) => {}
        })
        .map_err(|e| e.to_string())?;
    }
    match closed {
        Some(text) => Err(format!("receiver closed: {text}")),
        None => Ok(delivered),
    }
}

/// The sender: keeps the window full until `count` messages are out, then waits for them.
/// `Measured::sent` counts the messages that ended (confirmed or failed), `errors` the failed.
fn send(job: &AckedJob, tx: &mut AckedSession, target: &str) -> Result<Measured, String> {
    // Leaked once per run (at most a frame's size), so that it is static (see the module docs).
    let payload: &'static [u8] = Vec::leak(super::sender::payload(
        super::wire::MARK_DATA,
        job.size_bytes,
    ));
    let payload = Bytes::from_static(payload);
    let window = ringrelay::ack::SenderConfig::default().window_msgs_max as usize;
    // A burst's worth, offered at once (the session takes what the window has room for).
    let payloads = vec![payload; BURST_MSGS.min(window)];
    let mut round_trips = RoundTrips {
        bursts: VecDeque::with_capacity(window),
        hist: new_histogram()?,
    };
    let cpu_before = job.server_pid.map(process_cpu_s).transpose()?;
    let started = Instant::now();
    let cap = started + job.duration;
    let (mut next, mut confirmed, mut failed) = (0u64, 0u64, 0u64);
    let mut last_end = started;
    let mut events = Vec::with_capacity(RECV_MANY_EVENTS_MAX);
    loop {
        let now = Instant::now();
        let sending = next < job.count && now < cap;
        if confirmed + failed >= next && !sending {
            break;
        }
        if now >= cap + DRAIN_GRACE {
            break;
        }
        // One clock read per burst, not per message (the clock was 7 % of the run).
        let burst_ns = ns_since(started);
        let mut window_full = false;
        if next < job.count && now < cap {
            let want = payloads.len().min((job.count - next) as usize);
            match tx.send_many(target.as_bytes(), &payloads[..want]) {
                Ok((first, taken)) => {
                    round_trips.sent(first, taken as u64, burst_ns);
                    next += taken as u64;
                    window_full = taken < want;
                }
                Err(AckedSendError::WouldBlock(_)) => window_full = true,
                Err(AckedSendError::Client(e)) => return Err(e.to_string()),
            }
        }
        tx.flush().map_err(|e| e.to_string())?;
        // With room in the window, only look at what has arrived; with the window full (or
        // everything sent), block until confirmations come: polling then would take the CPU
        // from the receiver and the relay that must produce them.
        let wait = if !window_full && next < job.count && Instant::now() < cap {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        };
        events.clear();
        if tx.recv_many(wait, &mut events).map_err(|e| e.to_string())? == 0 {
            continue;
        }
        // The confirmations of one batch arrived together: one clock read for them.
        let at_ns = ns_since(started);
        last_end = started + Duration::from_nanos(at_ns);
        let (c, f) = round_trips.ended(&mut events, at_ns);
        confirmed += c;
        failed += f;
    }
    let cpu_after = job.server_pid.map(process_cpu_s).transpose()?;
    let server_cpu_s = cpu_before.zip(cpu_after).map(|(a, b)| b - a);
    let mut notes = Vec::new();
    let stats = tx.stats().sender;
    if stats.in_flight > 0 || failed > 0 {
        notes.push(format!(
            "{} messages still in flight at the end, {failed} failed",
            stats.in_flight
        ));
    }
    let retransmitted: u64 = stats.retransmitted.iter().sum();
    if retransmitted > 0 {
        notes.push(format!("{retransmitted} retransmissions"));
    }
    Ok(Measured {
        sent: confirmed + failed,
        received: confirmed,
        duration_s: last_end.duration_since(started).as_secs_f64(),
        latency_us: percentiles_us(&round_trips.hist),
        server_cpu_s,
        server_cpu_by_node_s: Vec::new(),
        errors: failed,
        errors_before_measure: 0,
        last_error: None,
        notes,
    })
}

/// The bursts in flight, oldest first, and the histogram of round trips. The messages of a
/// burst were sent at one time, so a confirmed range adds one histogram entry per burst it
/// covers (with the count of its messages there), not one per message.
struct RoundTrips {
    bursts: VecDeque<Burst>,
    hist: hdrhistogram::Histogram<u64>,
}

/// Messages `first_seq..=last_seq`, sent at `sent_at_ns`; `left` of them not ended yet.
struct Burst {
    first_seq: u64,
    last_seq: u64,
    sent_at_ns: u64,
    left: u64,
}

impl RoundTrips {
    fn sent(&mut self, first_seq: u64, count: u64, at_ns: u64) {
        if count > 0 {
            self.bursts.push_back(Burst {
                first_seq,
                last_seq: first_seq + count - 1,
                sent_at_ns: at_ns,
                left: count,
            });
        }
    }

    /// Takes the outcomes among `events` (all ended at `at_ns`); returns (confirmed, failed).
    fn ended(&mut self, events: &mut Vec<Event>, at_ns: u64) -> (u64, u64) {
        let (mut confirmed, mut failed) = (0, 0);
        for event in events.drain(..) {
            match event {
                Event::Confirmed {
                    first_seq,
                    last_seq,
                    ..
                } => {
                    confirmed += last_seq - first_seq + 1;
                    self.end(first_seq, last_seq, Some(at_ns));
                }
                Event::Failed { seq, .. } => {
                    failed += 1;
                    self.end(seq, seq, None);
                }
                _ => {}
            }
        }
        while self.bursts.front().is_some_and(|b| b.left == 0) {
            self.bursts.pop_front();
        }
        (confirmed, failed)
    }

    /// Messages `first..=last` ended: confirmed at `at_ns` (a round trip each), or failed.
    fn end(&mut self, first: u64, last: u64, at_ns: Option<u64>) {
        for burst in self.bursts.iter_mut() {
            let (from, to) = (first.max(burst.first_seq), last.min(burst.last_seq));
            if from > to {
                continue;
            }
            let count = to - from + 1;
            burst.left = burst.left.saturating_sub(count);
            if let Some(at_ns) = at_ns {
                let rtt = at_ns.saturating_sub(burst.sent_at_ns).max(1);
                let _ = self.hist.record_n(rtt.min(self.hist.high()), count);
            }
        }
    }
}

fn ns_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringrelay::config::Config;
    use ringrelay::server::Server;

    #[test]
    fn an_acked_run_confirms_every_message_and_measures_the_round_trip() {
        let server = Server::start(Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            workers: 1,
            ..Config::default()
        })
        .unwrap();
        let job = AckedJob {
            addr: server.local_addr(),
            token: Vec::new(),
            tls: None,
            size_bytes: 16,
            count: 20_000,
            duration: Duration::from_secs(20),
            server_pid: Some(std::process::id()),
            tag: "acked-test".into(),
        };
        let m = run_relay(&job).unwrap();
        assert_eq!(
            (m.sent, m.received, m.errors),
            (20_000, 20_000, 0),
            "{:?}",
            m.notes
        );
        assert!(m.duration_s > 0.0);
        let [p50, p99, p999] = m.latency_us.expect("round trips recorded");
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999);
        assert!(m.server_cpu_s.is_some());
    }
}
