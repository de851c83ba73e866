//! Cross-worker handoff: bounded lock-free queues of byte batches between every pair of
//! workers, and the sleep/wake protocol.
//!
//! A worker appends records for worker `d` to its open batch for `d` while it processes a
//! round of completions, and pushes the batch to `d`'s inbound queue once per loop iteration,
//! so one queue operation and at most one wake-up carry a whole batch. Emptied batch buffers
//! go back to their producer over a return queue and are reused: no allocation per message.
//!
//! Bounds, per producer->consumer pair: a fixed pool of [`batches_max`] batch buffers (a batch
//! is allocated only while fewer exist, and returns to its producer after use); and
//! `handoff_bytes_max` bytes held anywhere between the two: in the open batch, in the
//! producer's backlog (a queue full), in the queue, and in the consumer's hands until the
//! batch comes back. Past either bound further messages are dropped (counted, and the sender
//! gets an OVERLOADED error). So one pair holds at most `handoff_bytes_max` bytes of records and
//! payloads in buffers of at most `batches_max x BATCH_BYTES_TARGET` capacity (a buffer grown
//! by one large record is shrunk when it comes back). Order from one producer to one consumer
//! is FIFO, so messages from one connection to another arrive in order.
//!
//! Zero-copy payloads (`TAG_SHARED`) travel beside the bytes, in the batch's `payloads`: the
//! record carries the payload's index there, never a pointer, and a batch dropped unread drops
//! its payloads with it.
//!
//! Wake-up: a consumer sets `sleeping` before it blocks and then re-checks its queues; a
//! producer checks `sleeping` after pushing (both SeqCst, Dekker style), so a wake-up is never
//! lost and an awake worker is never woken with a syscall.

use bytes::Bytes;
use crossbeam::queue::ArrayQueue;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// A batch is closed and pushed once it holds this many bytes, so large bursts are split.
pub const BATCH_BYTES_TARGET: usize = 256 * 1024;
/// Capacity of a batch allocated for a CLOSE record when the pool is spent (closes are never
/// refused; they are bounded by the connections that can close).
const CLOSE_BATCH_BYTES: usize = 256;

/// Batch buffers one producer->consumer pair may have: one per `BATCH_BYTES_TARGET` of
/// `handoff_bytes_max`, and at least 4 (one open, one in the queue, one being read, one coming
/// back), so a small bound still flows.
pub fn batches_max(handoff_bytes_max: usize) -> usize {
    (handoff_bytes_max / BATCH_BYTES_TARGET).max(4)
}

/// Bytes the handoff to one worker may hold before the producers feeding it stall: half of
/// `handoff_bytes_max`, and no more than half of one client's `pending_bytes_max` (but at
/// least four batches, so the queue still flows). The second bound is a consumer's: what a
/// producer hands over before it sees the consumer's board word say "stall" reaches the
/// consumer's queue after its stall began, and must fit its in-flight room
/// (`pending_bytes_max` past its ceiling). A worker that drained slowly let 32 MiB (half the
/// default 64 MiB) through to one 8 MiB consumer, whose messages past its bound were dropped.
/// Producers resume below half of it.
pub fn handoff_stall_at_bytes(handoff_bytes_max: usize, pending_bytes_max: usize) -> usize {
    let consumer_room = (pending_bytes_max / 2).max(4 * BATCH_BYTES_TARGET);
    (handoff_bytes_max / 2).min(consumer_room)
}

/// Record header: tag u8, slot u32, generation u32, len u32.
pub const RECORD_HEADER_LEN: usize = 13;
pub const TAG_FRAME: u8 = 0;
pub const TAG_CLOSE: u8 = 1;
/// Body: the index (u32 LE) of a shared payload in the batch's `payloads`, then the DELIVER
/// header bytes. Several records may name one payload (a fan-out's subscribers on the
/// consumer): the consumer clones the reference for each.
pub const TAG_SHARED: u8 = 2;
/// Bytes before the DELIVER header in a `TAG_SHARED` body.
pub const SHARED_INDEX_LEN: usize = 4;
/// A DELIVER to the member picked in a queue group: the body is `[group_len u8][group]`, then
/// the frame (a NATS connection writes it to one sid of that group).
pub const TAG_GROUP_FRAME: u8 = 3;
/// `TAG_SHARED` for a queue-group pick: `[index u32][group_len u8][group]`, then the header.
pub const TAG_GROUP_SHARED: u8 = 4;
/// One frame for several connections of the consumer (a PUBLISH's subscribers on that
/// worker): the header's `generation` is the frame's length, the body is the frame followed by
/// `(slot u32, generation u32)` per destination. The payload crosses once per worker, not once
/// per subscriber.
pub const TAG_FANOUT: u8 = 5;
/// Bytes one more destination adds to a `TAG_FANOUT` record.
pub const FANOUT_DESTINATION_LEN: usize = 8;
/// A run of plain DELIVER frames (no acknowledgement, reply topic or headers) for one
/// connection: the body is the frame count (u32 LE), then the frames back to back. The
/// producer extends the run while its records for that connection follow each other in the
/// open batch, so the consumer takes a burst of SENDs with one lookup and one copy.
pub const TAG_DELIVERS: u8 = 6;
/// Bytes before the frames in a `TAG_DELIVERS` body.
pub const RUN_COUNT_LEN: usize = 4;

/// The frame count and the frames of a `TAG_DELIVERS` body.
pub fn split_run(body: &[u8]) -> (u32, &[u8]) {
    match body.split_first_chunk::<RUN_COUNT_LEN>() {
        Some((count, frames)) => (u32::from_le_bytes(*count), frames),
        None => {
            debug_assert!(false, "torn run record");
            (0, b"")
        }
    }
}

/// The frames of a run, one by one (each is a whole native frame: its header's length says
/// where the next starts).
pub fn run_frames(mut frames: &[u8]) -> impl Iterator<Item = &[u8]> {
    use crate::protocol::HEADER_LEN;
    std::iter::from_fn(move || {
        let header = frames.get(..HEADER_LEN)?;
        let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let Some((frame, rest)) = frames.split_at_checked(HEADER_LEN + body_len as usize) else {
            debug_assert!(false, "torn frame in a run");
            return None;
        };
        frames = rest;
        Some(frame)
    })
}

/// Sets the length field of the record that starts at `at` and ends `out` (a record being
/// extended in place: a fan-out's destinations, a run's frames).
fn set_record_len(out: &mut [u8], at: usize) {
    let len = (out.len() - at - RECORD_HEADER_LEN) as u32;
    out[at + 9..at + RECORD_HEADER_LEN].copy_from_slice(&len.to_le_bytes());
}

/// The frame and the destinations of a `TAG_FANOUT` record.
pub fn split_fanout<'a>(record: &Record<'a>) -> (&'a [u8], impl Iterator<Item = (u32, u32)> + 'a) {
    let frame_len = (record.generation as usize).min(record.body.len());
    let (frame, destinations) = record.body.split_at(frame_len);
    debug_assert_eq!(
        destinations.len() % FANOUT_DESTINATION_LEN,
        0,
        "torn fan-out record"
    );
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let destinations = destinations
        .chunks_exact(FANOUT_DESTINATION_LEN)
        .map(move |d| (u32_at(&d[..4]), u32_at(&d[4..])));
    (frame, destinations)
}

/// Splits a `TAG_GROUP_*` body (after the shared index, if any) into the group and the rest.
pub fn split_group(body: &[u8]) -> (&[u8], &[u8]) {
    match body.split_first() {
        Some((&len, rest)) if rest.len() >= len as usize => rest.split_at(len as usize),
        _ => {
            debug_assert!(false, "torn group record");
            (b"", b"")
        }
    }
}

/// What one queue operation carries from a producer to a consumer: records, and the
/// zero-copy payloads that `TAG_SHARED` records refer to by index.
#[derive(Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub payloads: Vec<Bytes>,
    /// Bytes of `payloads` (held memory, counted against `handoff_bytes_max` like the records).
    payload_bytes: usize,
}

impl Batch {
    fn with_capacity(bytes: usize) -> Batch {
        Batch {
            bytes: Vec::with_capacity(bytes),
            payloads: Vec::new(),
            payload_bytes: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Its records fill its buffer's target size: it is sealed. Payloads ride beside the
    /// buffer and do not count here, so the records of one fan-out of a large payload share
    /// one batch, and the payload, as long as their own bytes fit.
    fn is_full(&self) -> bool {
        self.bytes.len() >= BATCH_BYTES_TARGET
    }

    /// Bytes this batch holds: its records and its payloads.
    pub fn len(&self) -> usize {
        self.bytes.len() + self.payload_bytes
    }

    /// Empties the batch for reuse, keeping its capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.payloads.clear();
        self.payload_bytes = 0;
    }

    /// The records, and the payloads `TAG_SHARED` records name by index (several records may
    /// name one; the consumer clones it for each, then drops the batch's references with
    /// [`Self::release_payloads`]).
    pub fn parts(&self) -> (&[u8], &[Bytes]) {
        (&self.bytes, &self.payloads)
    }

    /// Drops the batch's references to its payloads once its records are applied (so a
    /// payload's buffer is free for reuse as soon as its last DELIVER is sent), keeping the
    /// count its producer takes back.
    pub fn release_payloads(&mut self) {
        self.payloads.clear();
    }
}

/// One worker's inbound side, shared with every other worker.
pub struct Mailbox {
    /// `inbound[s]`: batches from worker `s`.
    pub inbound: Box<[ArrayQueue<Batch>]>,
    /// `returns[d]`: emptied buffers that worker `d` gives back to this worker.
    pub returns: Box<[ArrayQueue<Batch>]>,
    pub sleeping: AtomicBool,
    /// eventfd the worker has a read armed on while it sleeps.
    pub wake_fd: RawFd,
}

impl Mailbox {
    /// Queues sized for twice a pair's pool (see [`batches_max`]), room for the close batches
    /// beyond it, so a push of a returned batch normally never fails (when it does, the
    /// consumer keeps the batch and pushes it again later, so its producer's count stays
    /// exact).
    pub fn new(workers: usize, handoff_bytes_max: usize) -> std::io::Result<Mailbox> {
        let capacity = batches_max(handoff_bytes_max) * 2;
        // SAFETY: eventfd has no memory preconditions; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mailbox {
            inbound: (0..workers).map(|_| ArrayQueue::new(capacity)).collect(),
            returns: (0..workers).map(|_| ArrayQueue::new(capacity)).collect(),
            sleeping: AtomicBool::new(false),
            wake_fd: fd,
        })
    }

    pub fn has_inbound(&self) -> bool {
        self.inbound.iter().any(|q| !q.is_empty())
    }

    /// Wakes the owner if (and only if) it is asleep.
    pub fn wake(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to an eventfd we own; EAGAIN (counter
            // saturated) still leaves the eventfd readable, which is all a wake-up needs.
            unsafe {
                libc::write(self.wake_fd, (&one as *const u64).cast(), 8);
            }
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        // SAFETY: the fd was opened by `new` and is closed exactly once, here.
        unsafe {
            libc::close(self.wake_fd);
        }
    }
}

/// A producer's outgoing state towards one consumer worker.
pub struct Outbox {
    open: Batch,
    backlog: VecDeque<Batch>,
    backlog_bytes: usize,
    /// Bytes of the batches pushed to the consumer and not yet returned.
    outstanding_bytes: usize,
    spare: Vec<Batch>,
    /// Batches of this pair's pool that exist (open, backlog, queue, consumer, returns, spare).
    batches_live: usize,
    batches_max: usize,
    /// Where the `TAG_FANOUT` record being written starts in the open batch.
    fanout_at: Option<usize>,
    /// The `TAG_DELIVERS` record that ends the open batch: where it starts and for which
    /// (slot, generation). Any other record, or sealing the batch, ends the run.
    run_at: Option<(usize, u32, u32)>,
}

impl Outbox {
    pub fn new(handoff_bytes_max: usize) -> Outbox {
        Outbox {
            open: Batch::default(),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            outstanding_bytes: 0,
            spare: Vec::new(),
            batches_live: 0,
            batches_max: batches_max(handoff_bytes_max),
            fanout_at: None,
            run_at: None,
        }
    }

    /// Bytes held between this producer and its consumer.
    pub fn held_bytes(&self) -> usize {
        self.outstanding_bytes + self.backlog_bytes + self.open.len()
    }

    /// Appends one record whose body is written by `write_body` (exactly `body_len` bytes).
    /// Returns false, writing nothing, when a bound is reached. `handoff_bytes_max` of
    /// `usize::MAX` (CLOSE records) is never refused.
    #[inline]
    pub fn append(
        &mut self,
        handoff_bytes_max: usize,
        tag: u8,
        slot: u32,
        generation: u32,
        body_len: usize,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        debug_assert!(self.fanout_at.is_none(), "a record inside a fan-out record");
        let appended = self.append_unsealed(
            handoff_bytes_max,
            tag,
            (slot, generation),
            body_len,
            write_body,
        );
        if appended && self.open.is_full() {
            self.seal();
        }
        appended
    }

    /// [`Self::append`] without sealing a full batch.
    #[inline]
    fn append_unsealed(
        &mut self,
        handoff_bytes_max: usize,
        tag: u8,
        (slot, generation): (u32, u32),
        body_len: usize,
        write_body: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let record_len = RECORD_HEADER_LEN + body_len;
        if self.held_bytes() + record_len > handoff_bytes_max
            || !self.ensure_open(handoff_bytes_max == usize::MAX)
        {
            return false;
        }
        self.run_at = None;
        let out = &mut self.open.bytes;
        let start = out.len();
        out.push(tag);
        out.extend_from_slice(&slot.to_le_bytes());
        out.extend_from_slice(&generation.to_le_bytes());
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        write_body(out);
        debug_assert_eq!(out.len() - start, record_len);
        true
    }

    /// Adds the destination (`slot`, `generation`) to the fan-out record being written, or
    /// opens one with the frame `write_frame` writes (exactly `frame_len` bytes). Returns
    /// false, writing nothing, when a bound is reached. [`Self::end_fanout`] closes the record.
    pub fn append_fanout(
        &mut self,
        handoff_bytes_max: usize,
        (slot, generation): (u32, u32),
        frame_len: usize,
        write_frame: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let Some(at) = self.fanout_at else {
            let body_len = frame_len + FANOUT_DESTINATION_LEN;
            let opened = self.append_unsealed(
                handoff_bytes_max,
                TAG_FANOUT,
                (0, frame_len as u32),
                body_len,
                |out| {
                    write_frame(out);
                    out.extend_from_slice(&slot.to_le_bytes());
                    out.extend_from_slice(&generation.to_le_bytes());
                },
            );
            if opened {
                self.fanout_at = Some(self.open.bytes.len() - RECORD_HEADER_LEN - body_len);
            }
            return opened;
        };
        if self.held_bytes() + FANOUT_DESTINATION_LEN > handoff_bytes_max {
            return false;
        }
        let out = &mut self.open.bytes;
        out.extend_from_slice(&slot.to_le_bytes());
        out.extend_from_slice(&generation.to_le_bytes());
        set_record_len(out, at);
        true
    }

    /// Appends a plain DELIVER frame (`write_frame` writes exactly `frame_len` bytes) for
    /// (`slot`, `generation`): to the run that ends the open batch when it is that
    /// connection's, else as a new run. Returns false, writing nothing, when a bound is reached.
    #[inline]
    pub fn append_deliver(
        &mut self,
        handoff_bytes_max: usize,
        (slot, generation): (u32, u32),
        frame_len: usize,
        write_frame: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        debug_assert!(self.fanout_at.is_none(), "a record inside a fan-out record");
        match self.run_at {
            Some((at, s, g)) if (s, g) == (slot, generation) => {
                if self.held_bytes() + frame_len > handoff_bytes_max {
                    return false;
                }
                let out = &mut self.open.bytes;
                let start = out.len();
                write_frame(out);
                debug_assert_eq!(out.len() - start, frame_len);
                set_record_len(out, at);
                let body = at + RECORD_HEADER_LEN;
                let count_at = body..body + RUN_COUNT_LEN;
                let (count, _) = split_run(&out[count_at.clone()]);
                out[count_at].copy_from_slice(&(count + 1).to_le_bytes());
            }
            _ => {
                let opened = self.append_unsealed(
                    handoff_bytes_max,
                    TAG_DELIVERS,
                    (slot, generation),
                    RUN_COUNT_LEN + frame_len,
                    |out| {
                        out.extend_from_slice(&1u32.to_le_bytes());
                        write_frame(out);
                    },
                );
                if !opened {
                    return false;
                }
                let at = self.open.bytes.len() - RECORD_HEADER_LEN - RUN_COUNT_LEN - frame_len;
                self.run_at = Some((at, slot, generation));
            }
        }
        if self.open.is_full() {
            self.seal();
        }
        true
    }

    /// Closes the fan-out record being written, if any.
    pub fn end_fanout(&mut self) {
        if self.fanout_at.take().is_some() && self.open.is_full() {
            self.seal();
        }
    }

    /// Gives the open batch its buffer: a spare one, else a new one while the pool has room
    /// (or, for a CLOSE, a small one past it). Returns whether there is an open batch.
    fn ensure_open(&mut self, unbounded: bool) -> bool {
        if self.open.bytes.capacity() != 0 {
            return true;
        }
        debug_assert!(self.open.payloads.is_empty());
        if let Some(batch) = self.spare.pop() {
            self.open = batch;
        } else if self.batches_live < self.batches_max {
            self.open = Batch::with_capacity(BATCH_BYTES_TARGET);
            self.batches_live += 1;
        } else if unbounded {
            self.open = Batch::with_capacity(CLOSE_BATCH_BYTES);
            self.batches_live += 1;
        } else {
            return false;
        }
        true
    }

    fn seal(&mut self) {
        self.run_at = None;
        if !self.open.is_empty() {
            let batch = std::mem::take(&mut self.open);
            self.backlog_bytes += batch.len();
            self.backlog.push_back(batch);
        }
    }

    /// Appends a `TAG_SHARED` (or `TAG_GROUP_SHARED`) record: `payload` rides in the batch,
    /// the body carries its index and then `header_len` bytes written by `write_header`. The
    /// records of one fan-out share one payload: a record whose payload is the one the open
    /// batch took last names that one again, so a payload is carried and counted once per
    /// batch, not once per subscriber.
    pub fn append_shared(
        &mut self,
        handoff_bytes_max: usize,
        tag: u8,
        (slot, generation): (u32, u32),
        payload: Bytes,
        header_len: usize,
        write_header: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let again =
            self.open.payloads.last().is_some_and(|last| {
                last.as_ptr() == payload.as_ptr() && last.len() == payload.len()
            });
        // Counted against the bound with its payload (once): the bytes are held until
        // delivered.
        let payload_bytes = if again { 0 } else { payload.len() };
        let body_len = SHARED_INDEX_LEN + header_len;
        if self.held_bytes() + payload_bytes + RECORD_HEADER_LEN + body_len > handoff_bytes_max
            || !self.ensure_open(false)
        {
            return false;
        }
        // The payload goes into the open batch first, so sealing it (in `append`) counts both.
        if !again {
            self.open.payload_bytes += payload.len();
            self.open.payloads.push(payload);
        }
        let index = self.open.payloads.len() as u32 - 1;
        let appended = self.append(usize::MAX, tag, slot, generation, body_len, |out| {
            out.extend_from_slice(&index.to_le_bytes());
            write_header(out);
        });
        debug_assert!(appended, "unbounded appends always succeed");
        true
    }

    /// Takes back the batches the consumer is done with (they come back as it read them:
    /// their size is still known, so it leaves `outstanding_bytes`).
    fn take_returns(&mut self, returns: &ArrayQueue<Batch>) {
        while let Some(mut batch) = returns.pop() {
            debug_assert!(self.outstanding_bytes >= batch.len());
            self.outstanding_bytes = self.outstanding_bytes.saturating_sub(batch.len());
            batch.clear();
            if batch.bytes.capacity() > BATCH_BYTES_TARGET * 2 {
                batch.bytes = Vec::with_capacity(BATCH_BYTES_TARGET);
            }
            if batch.bytes.capacity() < BATCH_BYTES_TARGET {
                // A CLOSE batch from past the pool: freed, not kept.
                self.batches_live -= 1;
                continue;
            }
            self.spare.push(batch);
        }
    }

    /// Pushes sealed batches (and the open one) into `queue`; returns whether any was pushed.
    pub fn flush(&mut self, queue: &ArrayQueue<Batch>, returns: &ArrayQueue<Batch>) -> bool {
        debug_assert!(self.fanout_at.is_none(), "a fan-out record left open");
        self.take_returns(returns);
        self.seal();
        let mut pushed = false;
        while let Some(batch) = self.backlog.pop_front() {
            let len = batch.len();
            match queue.push(batch) {
                Ok(()) => {
                    self.backlog_bytes -= len;
                    self.outstanding_bytes += len;
                    pushed = true;
                }
                Err(batch) => {
                    self.backlog.push_front(batch);
                    break;
                }
            }
        }
        pushed
    }

    /// Nothing left to push (what was pushed may still be unread or on its way back).
    pub fn is_flushed(&self) -> bool {
        self.open.is_empty() && self.backlog.is_empty()
    }

    /// Nothing to push and nothing to take back.
    pub fn is_idle(&self) -> bool {
        self.open.is_empty() && self.backlog.is_empty() && self.outstanding_bytes == 0
    }
}

/// One decoded record of a batch.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub tag: u8,
    pub slot: u32,
    pub generation: u32,
    pub body: &'a [u8],
}

/// Iterates the records of a batch written by [`Outbox::append`]. Batches are produced by this
/// process only, so a malformed batch is a bug: iteration stops at the first inconsistency.
pub fn records(batch: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut rest = batch;
    std::iter::from_fn(move || {
        if rest.len() < RECORD_HEADER_LEN {
            debug_assert!(rest.is_empty(), "torn handoff record");
            return None;
        }
        let u32_at =
            |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (tag, slot, generation, len) = (rest[0], u32_at(1), u32_at(5), u32_at(9) as usize);
        let body = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)?;
        rest = &rest[RECORD_HEADER_LEN + len..];
        Some(Record {
            tag,
            slot,
            generation,
            body,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_stall_on_a_handoff_before_it_outgrows_a_consumers_in_flight_room() {
        let mib = 1 << 20;
        assert_eq!(
            handoff_stall_at_bytes(64 * mib, 8 * mib),
            4 * mib,
            "the defaults"
        );
        assert_eq!(
            handoff_stall_at_bytes(4 * mib, 64 * mib),
            2 * mib,
            "half the handoff"
        );
        assert_eq!(
            handoff_stall_at_bytes(64 * mib, 64 * 1024),
            4 * BATCH_BYTES_TARGET,
            "four batches at least"
        );
    }

    #[test]
    fn records_roundtrip_in_order_and_bound_is_enforced() {
        let queue = ArrayQueue::new(1);
        let returns = ArrayQueue::new(1);
        let mut out = Outbox::new(1 << 20);
        assert!(out.append(100, TAG_FRAME, 1, 2, 3, |b| b.extend_from_slice(b"abc")));
        assert!(out.append(100, TAG_CLOSE, 4, 5, 2, |b| b.extend_from_slice(&[1, 0])));
        assert!(!out.append(40, TAG_FRAME, 1, 2, 20, |b| b.extend_from_slice(&[0; 20])));
        assert!(out.flush(&queue, &returns));
        let batch = queue.pop().unwrap();
        let got: Vec<Record<'_>> = records(&batch.bytes).collect();
        assert_eq!(
            got[0],
            Record {
                tag: TAG_FRAME,
                slot: 1,
                generation: 2,
                body: b"abc"
            }
        );
        assert_eq!(
            got[1],
            Record {
                tag: TAG_CLOSE,
                slot: 4,
                generation: 5,
                body: &[1, 0]
            }
        );
        assert_eq!(got.len(), 2);
        assert!(out.open.is_empty() && out.backlog.is_empty(), "all pushed");
    }

    #[test]
    fn a_fan_out_record_carries_its_frame_once_and_every_destination() {
        let queue = ArrayQueue::new(1);
        let returns = ArrayQueue::new(1);
        let mut out = Outbox::new(1 << 20);
        let frame = [9u8; 2048];
        for slot in 0..200 {
            assert!(out.append_fanout(1 << 20, (slot, slot + 1), 2048, |b| {
                b.extend_from_slice(&frame)
            }));
        }
        out.end_fanout();
        assert!(out.append(1 << 20, TAG_FRAME, 7, 7, 1, |b| b.push(1)));
        assert_eq!(
            out.held_bytes(),
            2 * RECORD_HEADER_LEN + 2048 + 200 * FANOUT_DESTINATION_LEN + 1,
            "the payload is held once"
        );
        assert!(out.flush(&queue, &returns));
        let batch = queue.pop().unwrap();
        let got: Vec<Record<'_>> = records(&batch.bytes).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].tag, TAG_FANOUT);
        let (body, destinations) = split_fanout(&got[0]);
        assert_eq!(body, frame);
        let destinations: Vec<(u32, u32)> = destinations.collect();
        assert_eq!(
            destinations,
            (0..200).map(|s| (s, s + 1)).collect::<Vec<_>>()
        );
        assert_eq!(
            (got[1].tag, got[1].slot, got[1].body),
            (TAG_FRAME, 7, &[1u8][..])
        );
    }

    #[test]
    fn a_fan_out_stops_taking_destinations_at_the_bound() {
        let mut out = Outbox::new(1 << 20);
        let bound = RECORD_HEADER_LEN + 100 + 3 * FANOUT_DESTINATION_LEN;
        let write = |b: &mut Vec<u8>| b.extend_from_slice(&[1; 100]);
        assert!(out.append_fanout(bound, (1, 1), 100, write));
        assert!(out.append_fanout(bound, (2, 1), 100, write));
        assert!(out.append_fanout(bound, (3, 1), 100, write));
        assert!(!out.append_fanout(bound, (4, 1), 100, write));
        out.end_fanout();
        assert_eq!(out.held_bytes(), bound);
        // A new message opens a new record.
        assert!(
            !out.append_fanout(bound, (4, 1), 100, write),
            "no room for its frame"
        );
        assert!(out.fanout_at.is_none());
    }

    #[test]
    fn full_queue_keeps_a_backlog_and_drains_it_later() {
        let queue = ArrayQueue::new(1);
        let returns = ArrayQueue::new(1);
        let mut out = Outbox::new(1 << 20);
        out.append(1 << 20, TAG_FRAME, 1, 1, 1, |b| b.push(1));
        assert!(out.flush(&queue, &returns));
        out.append(1 << 20, TAG_FRAME, 1, 1, 1, |b| b.push(2));
        assert!(
            !out.flush(&queue, &returns),
            "queue full: batch stays in the backlog"
        );
        assert!(!out.is_idle());
        queue.pop().unwrap();
        assert!(out.flush(&queue, &returns));
        assert_eq!(
            records(&queue.pop().unwrap().bytes).next().unwrap().body,
            &[2]
        );
    }

    /// Appends a `TAG_SHARED` record for `to` (slot, generation) with the 2-byte header `hd`.
    fn append_hd(out: &mut Outbox, bound: usize, to: (u32, u32), payload: &Bytes) -> bool {
        out.append_shared(bound, TAG_SHARED, to, payload.clone(), 2, |b| {
            b.extend_from_slice(b"hd")
        })
    }

    #[test]
    fn shared_payloads_ride_beside_the_records_and_count_against_the_bound() {
        let queue = ArrayQueue::new(4);
        let returns = ArrayQueue::new(4);
        let mut out = Outbox::new(1 << 20);
        let payload = Bytes::from(vec![9u8; 100]);
        assert!(append_hd(&mut out, 1000, (3, 4), &payload));
        let another = Bytes::from(vec![9u8; 100]);
        assert!(
            !append_hd(&mut out, 200, (3, 4), &another),
            "the held payload counts against the bound"
        );
        assert!(out.flush(&queue, &returns));
        let mut batch = queue.pop().unwrap();
        assert_eq!(batch.len(), RECORD_HEADER_LEN + SHARED_INDEX_LEN + 2 + 100);
        let (bytes, payloads) = batch.parts();
        let record = records(bytes).next().unwrap();
        assert_eq!(
            (record.tag, record.slot, record.generation),
            (TAG_SHARED, 3, 4)
        );
        let index = u32::from_le_bytes(record.body[..4].try_into().unwrap());
        assert_eq!(&record.body[4..], b"hd");
        assert_eq!(payloads[index as usize], payload);
        let before = batch.len();
        batch.release_payloads();
        assert!(
            batch.parts().1.is_empty(),
            "the batch's references are dropped"
        );
        assert_eq!(
            batch.len(),
            before,
            "its producer still takes back what it counted"
        );
    }

    #[test]
    fn the_records_of_one_fan_out_carry_and_count_their_payload_once_per_batch() {
        let queue = ArrayQueue::new(4);
        let returns = ArrayQueue::new(4);
        let mut out = Outbox::new(1 << 20);
        let payload = Bytes::from(vec![9u8; 1000]);
        let other = Bytes::from(vec![8u8; 1000]);
        let record_bytes = RECORD_HEADER_LEN + SHARED_INDEX_LEN + 2;
        // Room for one payload and 50 records: 50 subscribers of one publish fit, where
        // counting the payload per subscriber would refuse the second.
        let bound = 1000 + 50 * record_bytes;
        for slot in 0..50 {
            assert!(
                append_hd(&mut out, bound, (slot, 1), &payload),
                "subscriber {slot}"
            );
        }
        assert!(
            !append_hd(&mut out, bound, (50, 1), &other),
            "another payload counts again"
        );
        assert!(out.flush(&queue, &returns));
        let batch = queue.pop().unwrap();
        assert_eq!(batch.len(), bound);
        let (bytes, payloads) = batch.parts();
        assert_eq!(payloads.len(), 1);
        for record in records(bytes) {
            let index = u32::from_le_bytes(record.body[..4].try_into().unwrap());
            assert_eq!(payloads[index as usize], payload);
        }
        assert_eq!(records(bytes).count(), 50);
    }

    #[test]
    fn a_payload_the_size_of_a_batch_is_still_carried_once_by_its_fan_out() {
        let queue = ArrayQueue::new(4);
        let returns = ArrayQueue::new(4);
        let mut out = Outbox::new(1 << 30);
        let payload = Bytes::from(vec![9u8; BATCH_BYTES_TARGET]);
        for slot in 0..3 {
            assert!(append_hd(&mut out, usize::MAX, (slot, 1), &payload));
        }
        assert!(out.flush(&queue, &returns));
        let batch = queue.pop().unwrap();
        assert_eq!(
            batch.parts().1.len(),
            1,
            "one payload for the three records"
        );
        assert_eq!(records(batch.parts().0).count(), 3);
        assert!(queue.pop().is_none(), "one batch");
    }

    #[test]
    fn a_shared_record_that_seals_the_batch_keeps_its_payload_with_it() {
        let queue = ArrayQueue::new(4);
        let returns = ArrayQueue::new(4);
        let mut out = Outbox::new(1 << 20);
        let big_header = BATCH_BYTES_TARGET;
        let payload = Bytes::from_static(b"xyz");
        assert!(
            out.append_shared(usize::MAX, TAG_SHARED, (1, 1), payload, big_header, |b| {
                b.resize(b.len() + big_header, 0)
            })
        );
        assert!(out.open.is_empty(), "the record sealed the batch");
        assert!(out.flush(&queue, &returns));
        let batch = queue.pop().unwrap();
        assert_eq!(&batch.parts().1[0][..], b"xyz");
        assert!(out.open.is_empty() && out.backlog.is_empty(), "all pushed");
        assert_eq!(out.backlog_bytes, 0);
    }

    /// What the consumer does with a batch it read: hands it back as it is.
    fn consume(queue: &ArrayQueue<Batch>, returns: &ArrayQueue<Batch>) {
        let batch = queue.pop().expect("a batch");
        returns.push(batch).map_err(|_| ()).expect("room to return");
    }

    #[test]
    fn bytes_in_the_queue_and_with_the_consumer_count_until_they_come_back() {
        let (queue, returns) = (ArrayQueue::new(8), ArrayQueue::new(8));
        let mut out = Outbox::new(1 << 20);
        let max = 100;
        assert!(out.append(max, TAG_FRAME, 1, 1, 50, |b| b.resize(b.len() + 50, 0)));
        assert!(out.flush(&queue, &returns));
        assert!(
            !out.append(max, TAG_FRAME, 1, 1, 50, |b| b.resize(b.len() + 50, 0)),
            "the pushed batch still holds its bytes"
        );
        consume(&queue, &returns);
        assert!(!out.is_idle(), "a batch is out: flush must take it back");
        out.flush(&queue, &returns);
        assert!(out.is_idle());
        assert!(out.append(max, TAG_FRAME, 1, 1, 50, |b| b.resize(b.len() + 50, 0)));
    }

    #[test]
    fn the_batch_pool_is_fixed_and_refills_from_returns() {
        let (queue, returns) = (ArrayQueue::new(16), ArrayQueue::new(16));
        let pool = batches_max(1 << 20);
        let mut out = Outbox::new(1 << 20);
        let record =
            |out: &mut Outbox| out.append(usize::MAX - 1, TAG_FRAME, 1, 1, 1, |b| b.push(7));
        for _ in 0..pool {
            assert!(record(&mut out));
            out.flush(&queue, &returns);
        }
        assert!(!record(&mut out), "every batch of the pool is out");
        assert!(
            out.append(usize::MAX, TAG_CLOSE, 1, 1, 2, |b| b
                .extend_from_slice(&[1, 0])),
            "a CLOSE is never refused"
        );
        out.flush(&queue, &returns);
        for _ in 0..=pool {
            consume(&queue, &returns);
        }
        out.flush(&queue, &returns);
        assert!(out.is_idle());
        assert_eq!(
            out.batches_live, pool,
            "the close batch was freed, the pool kept"
        );
        assert!(record(&mut out));
    }

    /// A native frame of `body` bytes whose body is `fill`.
    fn frame(fill: u8, body: usize) -> Vec<u8> {
        let mut f = (body as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&[crate::protocol::FrameKind::Deliver as u8, 0]);
        f.extend(std::iter::repeat(fill).take(body));
        f
    }

    fn run_of(record: &Record<'_>) -> (u32, Vec<Vec<u8>>) {
        assert_eq!(record.tag, TAG_DELIVERS);
        let (count, frames) = split_run(record.body);
        (count, run_frames(frames).map(<[u8]>::to_vec).collect())
    }

    #[test]
    fn delivers_for_one_connection_in_a_row_share_one_run_record() {
        let (queue, returns) = (ArrayQueue::new(4), ArrayQueue::new(4));
        let mut out = Outbox::new(1 << 20);
        let deliver = |out: &mut Outbox, to: (u32, u32), f: &[u8]| {
            out.append_deliver(1 << 20, to, f.len(), |b| b.extend_from_slice(f))
        };
        let (a, b, c) = (frame(1, 3), frame(2, 0), frame(3, 9));
        assert!(deliver(&mut out, (1, 1), &a));
        assert!(deliver(&mut out, (1, 1), &b));
        assert!(deliver(&mut out, (1, 1), &c));
        assert!(
            deliver(&mut out, (1, 2), &a),
            "another generation: a new run"
        );
        assert!(out.append(1 << 20, TAG_CLOSE, 9, 9, 2, |b| b
            .extend_from_slice(&[1, 0])));
        assert!(
            deliver(&mut out, (1, 2), &b),
            "after another record: a new run"
        );
        out.flush(&queue, &returns);
        assert!(
            deliver(&mut out, (1, 2), &c),
            "in the next batch: a new run"
        );
        out.flush(&queue, &returns);
        let first = queue.pop().unwrap();
        let got: Vec<Record<'_>> = records(&first.bytes).collect();
        assert_eq!(got.len(), 4);
        assert_eq!((got[0].slot, got[0].generation), (1, 1));
        assert_eq!(run_of(&got[0]), (3, vec![a.clone(), b.clone(), c.clone()]));
        assert_eq!(run_of(&got[1]), (1, vec![a.clone()]));
        assert_eq!(got[2].tag, TAG_CLOSE);
        assert_eq!(run_of(&got[3]), (1, vec![b.clone()]));
        let second = queue.pop().unwrap();
        let got: Vec<Record<'_>> = records(&second.bytes).collect();
        assert_eq!(run_of(&got[0]), (1, vec![c.clone()]));
    }

    #[test]
    fn a_run_stops_growing_at_the_bound_and_seals_at_the_batch_target() {
        let (queue, returns) = (ArrayQueue::new(8), ArrayQueue::new(8));
        let f = frame(7, 1000);
        let mut out = Outbox::new(1 << 20);
        let held_before = out.held_bytes();
        assert!(out.append_deliver(2_100, (3, 3), f.len(), |b| b.extend_from_slice(&f)));
        assert!(out.append_deliver(2_100, (3, 3), f.len(), |b| b.extend_from_slice(&f)));
        assert!(
            !out.append_deliver(2_100, (3, 3), f.len(), |b| b.extend_from_slice(&f)),
            "a third frame would pass the bound"
        );
        assert_eq!(
            out.held_bytes() - held_before,
            RECORD_HEADER_LEN + 4 + 2 * f.len()
        );
        let mut sent = 2;
        while out.backlog.is_empty() {
            assert!(out.append_deliver(1 << 20, (3, 3), f.len(), |b| b.extend_from_slice(&f)));
            sent += 1;
        }
        assert!(out.run_at.is_none(), "sealing ends the run");
        out.flush(&queue, &returns);
        let batch = queue.pop().unwrap();
        let (count, frames) = run_of(&records(&batch.bytes).next().unwrap());
        assert_eq!((count as usize, frames.len()), (sent, sent));
        assert!(frames.iter().all(|x| *x == f));
    }
}
