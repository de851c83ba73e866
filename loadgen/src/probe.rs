//! Readiness before measuring: a sender sends probe messages until every receiver it must
//! reach has seen one, so no sleep is needed to let registrations and subscriptions settle.
//! Probes carry their own mark and are never counted.

use super::receiver::RecvShared;
use super::sender::send_probe;
use super::wire::{Dest, Wire};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Time allowed for one sender's receivers to become ready.
const PROBE_TIME_MAX: Duration = Duration::from_secs(10);
/// Wait after each probe before sending the next.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// How a probe round ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeResult {
    AllReady,
    /// Only some receivers saw a probe (acceptable for queue groups).
    SomeReady {
        ready: usize,
        of: usize,
    },
}

pub struct ProbeJob<'a, W: Wire> {
    pub wire: &'a W,
    pub writer: &'a Mutex<super::transport::WriteHalf>,
    pub dest: &'a Dest,
    pub size_bytes: usize,
    pub receivers: Vec<&'a RecvShared>,
    /// Error replies seen by the sender's connection (e.g. "unknown id" before registration).
    pub sender_errors: &'a RecvShared,
}

pub fn probe<W: Wire>(job: &ProbeJob<'_, W>, any_ok: bool) -> Result<ProbeResult, String> {
    let start = Instant::now();
    let ready = || {
        job.receivers
            .iter()
            .filter(|r| r.probe_seen.load(Ordering::Acquire))
            .count()
    };
    let mut probes = 0u64;
    while start.elapsed() < PROBE_TIME_MAX {
        send_probe(job.wire, job.writer, job.dest, job.size_bytes)?;
        probes += 1;
        let round_end = Instant::now() + PROBE_INTERVAL;
        while Instant::now() < round_end {
            if ready() == job.receivers.len() {
                return Ok(ProbeResult::AllReady);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let n = ready();
    if any_ok && n > 0 {
        return Ok(ProbeResult::SomeReady {
            ready: n,
            of: job.receivers.len(),
        });
    }
    Err(format!(
        "{} receivers of {:?} saw none of {probes} probes within {} s ({} error replies to the sender)",
        job.receivers.len() - n,
        job.dest,
        PROBE_TIME_MAX.as_secs(),
        job.sender_errors.errors.load(Ordering::Acquire)
    ))
}

/// Time allowed for a sender's connection to answer the PING after probing.
const SYNC_TIME_MAX: Duration = Duration::from_secs(5);
/// Probes in flight (e.g. on a link between nodes) have landed once none arrived for this long.
const PROBE_QUIET: Duration = Duration::from_millis(50);
/// Bound on waiting for probes in flight to stop arriving.
const PROBE_DRAIN_MAX: Duration = Duration::from_secs(2);

/// After probing: PINGs every sender's connection and waits for the PONGs, so the error
/// replies to probes (e.g. "unknown id" while a registration travelled to the sender's node)
/// are all counted before the measured phase; then waits until probes in flight stopped
/// arriving at the receivers. Returns notes for what did not settle in time.
pub fn settle<W: Wire>(
    wire: &W,
    senders: &[(&Mutex<super::transport::WriteHalf>, &RecvShared)],
    receivers: &[RecvShared],
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let mut ping = Vec::new();
    wire.encode_ping(&mut ping)?;
    let before: Vec<u64> = senders
        .iter()
        .map(|(_, rs)| rs.pongs.load(Ordering::Acquire))
        .collect();
    for (writer, _) in senders {
        super::wire::write_locked(writer, &ping).map_err(|e| format!("sync PING: {e}"))?;
    }
    let deadline = Instant::now() + SYNC_TIME_MAX;
    let synced = || {
        senders
            .iter()
            .zip(&before)
            .all(|((_, rs), &b)| rs.pongs.load(Ordering::Acquire) > b)
    };
    while !synced() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if !synced() {
        notes.push(format!(
            "a sender's connection did not answer PING within {} s; probe error replies may count as measured",
            SYNC_TIME_MAX.as_secs()
        ));
    }
    let probes = || -> u64 {
        receivers
            .iter()
            .map(|r| r.probes.load(Ordering::Acquire))
            .sum()
    };
    let start = Instant::now();
    let (mut last, mut last_change) = (probes(), Instant::now());
    while last_change.elapsed() < PROBE_QUIET {
        if start.elapsed() >= PROBE_DRAIN_MAX {
            notes.push(format!(
                "probes were still arriving after {} s",
                PROBE_DRAIN_MAX.as_secs()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        let now = probes();
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
    Ok(notes)
}
