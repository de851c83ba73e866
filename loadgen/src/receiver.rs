//! The receiving side of every scenario: reads into a large buffer, lets the protocol scanner
//! find messages in place, counts them (probes apart) and, for latency runs, records
//! `now - intended send time`.

use super::latency::new_histogram;
use super::wire::{Conn, Scanner, MARK_DATA, MARK_PROBE};
use hdrhistogram::Histogram;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Receive buffer size: many small frames per read.
const RECV_BUFFER_BYTES: usize = 256 * 1024;

/// Monotonic nanoseconds since the start of a target's run, shared by all its threads.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub base: Instant,
}

impl Clock {
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Live counters of one receiving connection, read by the runner.
#[derive(Debug, Default)]
pub struct RecvShared {
    /// Data messages received (probes excluded).
    pub received: AtomicU64,
    pub probe_seen: AtomicBool,
    /// Probes received so far (the runner waits for them to stop before measuring).
    pub probes: AtomicU64,
    /// PONGs received so far (answers to the runner's PINGs).
    pub pongs: AtomicU64,
    /// Clock time of the last read that brought data messages.
    pub last_recv_ns: AtomicU64,
    /// Error replies from the server so far.
    pub errors: AtomicU64,
}

#[derive(Debug)]
pub struct RecvOutcome {
    pub received: u64,
    pub latency_ns: Option<Histogram<u64>>,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// Runs until `stop` is set or `hard_deadline` passes. A closed or failing connection is an
/// error unless `stop` was already set.
pub fn receive<S: Scanner>(
    mut conn: Conn,
    mut scanner: S,
    shared: &RecvShared,
    clock: Clock,
    stop: &AtomicBool,
    hard_deadline: Instant,
    record_latency: bool,
) -> Result<RecvOutcome, String> {
    let mut hist = if record_latency {
        Some(new_histogram()?)
    } else {
        None
    };
    let mut buf = vec![
        0u8;
        RECV_BUFFER_BYTES
            .max(conn.max_frame_bytes.saturating_add(1))
            .min(64 << 20)
    ];
    let mut filled = conn.pending.len().min(buf.len());
    buf[..filled].copy_from_slice(&conn.pending[..filled]);
    let mut replies = Vec::new();
    let mut received = 0u64;
    let mut new_data = filled > 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < hard_deadline {
        if new_data {
            let now_ns = clock.now_ns();
            let before = received;
            let mut probes = 0u64;
            let used =
                scanner.scan(
                    &buf[..filled],
                    &mut replies,
                    &mut |payload: &[u8]| match payload.first() {
                        Some(&MARK_PROBE) => probes += 1,
                        first => {
                            received += 1;
                            if let (Some(h), Some(&MARK_DATA), Some(ts)) =
                                (hist.as_mut(), first, payload.get(1..9))
                            {
                                let mut ts_bytes = [0u8; 8];
                                ts_bytes.copy_from_slice(ts);
                                h.saturating_record(
                                    now_ns.saturating_sub(u64::from_le_bytes(ts_bytes)).max(1),
                                );
                            }
                        }
                    },
                )?;
            buf.copy_within(used..filled, 0);
            filled -= used;
            if probes > 0 {
                shared.probes.fetch_add(probes, Ordering::AcqRel);
                shared.probe_seen.store(true, Ordering::Release);
            }
            if received != before {
                shared.received.store(received, Ordering::Release);
                shared.last_recv_ns.fetch_max(now_ns, Ordering::AcqRel);
            }
            shared.errors.store(scanner.errors().0, Ordering::Release);
            shared.pongs.store(scanner.pongs(), Ordering::Release);
            if !replies.is_empty() {
                conn.write_all(&replies)?;
                replies.clear();
            }
            if filled == buf.len() {
                return Err(format!(
                    "{}: a frame does not fit the {}-byte receive buffer",
                    conn.client_id,
                    buf.len()
                ));
            }
        }
        match conn.stream.read(&mut buf[filled..]) {
            Ok(0) if stop.load(Ordering::Relaxed) => break,
            Ok(0) => return Err(closed_error(&conn.client_id, &scanner)),
            Ok(n) => {
                filled += n;
                new_data = true;
            }
            Err(e) if super::wire::is_timeout(&e) => new_data = false,
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(e) => return Err(format!("{}: read: {e}", conn.client_id)),
        }
    }
    let (errors, last_error) = scanner.errors();
    Ok(RecvOutcome {
        received,
        latency_ns: hist,
        errors,
        last_error,
    })
}

fn closed_error<S: Scanner>(client_id: &str, scanner: &S) -> String {
    match scanner.errors() {
        (_, Some(last)) => {
            format!("{client_id}: server closed the connection (last error: {last})")
        }
        _ => format!("{client_id}: server closed the connection"),
    }
}
