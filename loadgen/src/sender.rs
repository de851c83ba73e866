//! The sending side: a closed-loop batch sender for throughput and an open-loop scheduled
//! sender for latency. Neither ever waits for deliveries.

use super::latency::{due_count, intended_ns};
use super::receiver::Clock;
use super::wire::{write_locked, Dest, Wire, MARK_DATA, MARK_PROBE};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes of pre-encoded frames written per write_all in throughput mode.
const BATCH_BYTES: usize = 64 * 1024;
/// Messages encoded per write at most in open-loop mode (when catching up after a stall).
const OPEN_LOOP_WRITE_MSGS_MAX: u64 = 4096;
/// Open-loop: sleep when the next message is due later than this; yield below it. Sleeping
/// (with a 1 ns timer slack) rather than spinning leaves the CPU to the relay on small machines.
const SLEEP_THRESHOLD_NS: u64 = 20_000;
/// Open-loop: wake this much before the due time, since sleeps overshoot a little.
const SLEEP_EARLY_NS: u64 = 10_000;

/// Counters the runner reads while senders run.
#[derive(Debug)]
pub struct SendShared {
    pub sent: AtomicU64,
    /// Clock time of the first measured write (u64::MAX until then).
    pub first_send_ns: AtomicU64,
}

impl Default for SendShared {
    fn default() -> Self {
        SendShared {
            sent: AtomicU64::new(0),
            first_send_ns: AtomicU64::new(u64::MAX),
        }
    }
}

/// One sender's job.
pub struct SendJob<'a, W: Wire> {
    pub wire: &'a W,
    pub writer: &'a Mutex<super::transport::WriteHalf>,
    pub dest: &'a Dest,
    pub size_bytes: usize,
    pub count: u64,
    pub shared: &'a SendShared,
    pub clock: Clock,
    pub stop: &'a AtomicBool,
    pub deadline: Instant,
}

/// A payload of `size_bytes` starting with `mark`.
pub fn payload(mark: u8, size_bytes: usize) -> Vec<u8> {
    let mut p = vec![b'x'; size_bytes.max(1)];
    p[0] = mark;
    p
}

/// Sends one probe message.
pub fn send_probe<W: Wire>(
    wire: &W,
    writer: &Mutex<super::transport::WriteHalf>,
    dest: &Dest,
    size_bytes: usize,
) -> Result<(), String> {
    let mut out = Vec::new();
    wire.encode_msg(dest, &payload(MARK_PROBE, size_bytes), &mut out)?;
    write_locked(writer, &out).map_err(|e| format!("probe: {e}"))
}

/// Pre-encodes as many identical messages as fit in `BATCH_BYTES` (at least one); returns the
/// batch and the size of one encoded message.
pub fn encode_batch<W: Wire>(
    wire: &W,
    dest: &Dest,
    size_bytes: usize,
) -> Result<(Vec<u8>, usize), String> {
    let body = payload(MARK_DATA, size_bytes);
    let mut one = Vec::new();
    wire.encode_msg(dest, &body, &mut one)?;
    let per_batch = (BATCH_BYTES / one.len()).max(1);
    Ok((one.repeat(per_batch), one.len()))
}

/// Throughput: writes the pre-encoded batch until `count` messages are out or time is up.
pub fn send_batches<W: Wire>(job: &SendJob<'_, W>) -> Result<u64, String> {
    let (batch, msg_bytes) = encode_batch(job.wire, job.dest, job.size_bytes)?;
    let per_batch = (batch.len() / msg_bytes) as u64;
    let mut sent = 0u64;
    job.shared
        .first_send_ns
        .fetch_min(job.clock.now_ns(), Ordering::AcqRel);
    while sent < job.count && !job.stop.load(Ordering::Relaxed) && Instant::now() < job.deadline {
        let n = per_batch.min(job.count - sent);
        write_locked(job.writer, &batch[..n as usize * msg_bytes])?;
        sent += n;
        job.shared.sent.fetch_add(n, Ordering::Release);
    }
    Ok(sent)
}

/// Latency: message i is due at start + i/rate; it carries that intended time, so latency is
/// measured from when it should have left, even if the sender or the socket fell behind.
pub fn send_open_loop<W: Wire>(job: &SendJob<'_, W>, rate_msgs_per_s: u64) -> Result<u64, String> {
    let mut body = payload(MARK_DATA, job.size_bytes);
    if body.len() < super::args::LATENCY_PAYLOAD_MIN_BYTES {
        return Err(format!(
            "open-loop payloads need {} bytes",
            super::args::LATENCY_PAYLOAD_MIN_BYTES
        ));
    }
    let mut out = Vec::with_capacity(BATCH_BYTES);
    set_precise_timer_slack();
    let start_ns = job.clock.now_ns();
    job.shared
        .first_send_ns
        .fetch_min(start_ns, Ordering::AcqRel);
    let mut next = 0u64;
    while next < job.count && !job.stop.load(Ordering::Relaxed) && Instant::now() < job.deadline {
        let elapsed_ns = job.clock.now_ns().saturating_sub(start_ns);
        let due =
            due_count(elapsed_ns, rate_msgs_per_s, job.count).min(next + OPEN_LOOP_WRITE_MSGS_MAX);
        if due > next {
            out.clear();
            for i in next..due {
                let intended = start_ns.saturating_add(intended_ns(i, rate_msgs_per_s));
                body[1..9].copy_from_slice(&intended.to_le_bytes());
                job.wire.encode_msg(job.dest, &body, &mut out)?;
            }
            write_locked(job.writer, &out)?;
            job.shared.sent.fetch_add(due - next, Ordering::Release);
            next = due;
            continue;
        }
        let wait_ns = intended_ns(next, rate_msgs_per_s).saturating_sub(elapsed_ns);
        if wait_ns > SLEEP_THRESHOLD_NS {
            std::thread::sleep(Duration::from_nanos(wait_ns - SLEEP_EARLY_NS));
        } else {
            std::thread::yield_now();
        }
    }
    Ok(next)
}

/// Asks the kernel to wake this thread's sleeps within 1 ns of the requested time instead of
/// the default 50 us slack, so the open-loop schedule can sleep between messages. Best effort.
fn set_precise_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only the calling thread.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}
