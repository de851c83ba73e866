//! A TLS connection's state on its worker: the session (keys, a record cut across receives)
//! and the record being filled in the send buffer.
//!
//! Send: every writer of a TLS connection's `out` calls [`TlsConn::reserve`] first, so `out`
//! is always sealed records followed by at most one open record (its prefix reserved: the
//! header, and in TLS 1.2 AES-GCM the explicit nonce; its plaintext the frames encoded since). A record is sealed when it has reached 16 KiB (at the
//! next reserve) or when the buffer is handed to the ring, in place: the frame's one copy
//! into `out` is the only copy, and the ciphertext that a partial send leaves is resent,
//! never resealed.

use crate::protocol::FrameWalk;
use crate::tls::record::RECORD_PLAINTEXT_MAX;
use crate::tls::{SessionError, TlsSession};
use std::collections::VecDeque;

pub struct TlsConn {
    pub session: TlsSession,
    /// Where the open record's reserved header is in `out`.
    open_at: Option<usize>,
    /// Sealing failed (a KeyUpdate the key schedule refused): the connection must close.
    pub failed: Option<SessionError>,
    /// Outbound data links only.
    ledger: Option<Box<LinkLedger>>,
}

impl TlsConn {
    pub fn new(session: TlsSession) -> TlsConn {
        TlsConn {
            session,
            open_at: None,
            failed: None,
            ledger: None,
        }
    }

    /// Makes `out` end in an open record with room, before a writer appends plaintext: a
    /// record already holding 16 KiB is sealed and a new one opened.
    #[inline]
    pub fn reserve(&mut self, out: &mut Vec<u8>) {
        match self.open_at {
            Some(at) if out.len() - at < RECORD_PLAINTEXT_MAX => {}
            Some(_) => {
                self.seal(out);
                self.open_at = Some(self.session.reserve_record(out));
            }
            None => self.open_at = Some(self.session.reserve_record(out)),
        }
    }

    /// Seals the open record (before `out` goes to the ring).
    #[inline]
    pub fn seal(&mut self, out: &mut Vec<u8>) {
        if let Some(at) = self.open_at.take() {
            debug_assert!(at < out.len(), "invariant: the open record is in out");
            let prefix = self.session.record_prefix_len();
            let messages = match &mut self.ledger {
                Some(ledger) => ledger.sealing(&out[at + prefix..]),
                None => 0,
            };
            if let Err(e) = self.session.seal(out, at) {
                self.failed.get_or_insert(e);
            }
            if let Some(ledger) = &mut self.ledger {
                ledger.sealed(out.len() - at, messages);
            }
        }
    }

    /// `out` was cut back to `start`: a record opened at or after it is gone. (A record
    /// sealed after `start` cannot be cut: sealing happens only in `reserve`, before what a
    /// writer appends, and at the hand-over to the ring.)
    pub fn forget_open_from(&mut self, start: usize) {
        if self.open_at.is_some_and(|at| at >= start) {
            self.open_at = None;
        }
    }

    /// Seals the open record, then close_notify: the last bytes this side sends.
    pub fn seal_close(&mut self, out: &mut Vec<u8>) {
        self.seal(out);
        if let Err(e) = self.session.seal_close_notify(out) {
            self.failed.get_or_insert(e);
        }
    }
}

/// Sealed stretches of ciphertext an outbound TLS link can hold before the oldest are
/// merged (a merged stretch counts its messages lost until its end is sent: an over-count
/// in the rare case of a link dying with more than this many sends unfinished).
const LEDGER_STRETCHES_MAX: usize = 4096;

/// An outbound TLS link's account of its messages, so a dying link counts those it takes
/// with it. The send buffer holds ciphertext, which cannot be walked for frames: each
/// stretch is counted as it is sealed (its whole frames; a frame cut across records belongs
/// to the one it ends in), and a stretch is done once its last byte is sent (a record cut by
/// a partial send is useless to the peer, so its messages are lost whole).
#[derive(Debug, Default)]
pub struct LinkLedger {
    /// Frame boundaries in the plaintext sealed so far.
    walk: FrameWalk,
    /// (end of the stretch in the ciphertext stream, messages it completes), oldest first.
    stretches: VecDeque<(u64, u64)>,
    sealed_bytes: u64,
    sent_bytes: u64,
}

impl LinkLedger {
    /// The frames `plaintext` completes (a walk counts the frames that begin).
    fn sealing(&mut self, plaintext: &[u8]) -> u64 {
        let mid_frame_before = !self.walk.at_boundary();
        let began = self.walk.feed(plaintext);
        let mid_frame_after = !self.walk.at_boundary();
        began + u64::from(mid_frame_before) - u64::from(mid_frame_after)
    }

    fn sealed(&mut self, ciphertext_bytes: usize, messages: u64) {
        self.sealed_bytes += ciphertext_bytes as u64;
        let full = self.stretches.len() >= LEDGER_STRETCHES_MAX;
        match self.stretches.back_mut() {
            Some(last) if full => *last = (self.sealed_bytes, last.1 + messages),
            _ => self.stretches.push_back((self.sealed_bytes, messages)),
        }
    }

    /// `bytes` more of the ciphertext stream reached the kernel.
    pub fn sent(&mut self, bytes: usize) {
        self.sent_bytes += bytes as u64;
        while self
            .stretches
            .front()
            .is_some_and(|&(end, _)| end <= self.sent_bytes)
        {
            self.stretches.pop_front();
        }
    }

    /// Messages not wholly sent: in sealed stretches not sent to their end, and in the open
    /// record's plaintext (`open`), a frame cut at its end included.
    fn lost(&self, open: &[u8]) -> u64 {
        let mut walk = self.walk;
        let sealed: u64 = self.stretches.iter().map(|&(_, messages)| messages).sum();
        // A frame begun in the sealed stretches and not finished there is in none of them.
        sealed + u64::from(!walk.at_boundary()) + walk.feed(open)
    }
}

impl TlsConn {
    /// Keeps a [`LinkLedger`] (an outbound data link).
    pub fn count_link_messages(&mut self) {
        self.ledger = Some(Box::default());
    }

    pub fn link_sent(&mut self, bytes: usize) {
        if let Some(ledger) = &mut self.ledger {
            ledger.sent(bytes);
        }
    }

    /// Messages an outbound link dies with (see [`LinkLedger`]); `out` is the send buffer.
    pub fn link_messages_lost(&self, out: &[u8]) -> u64 {
        let open = match self.open_at {
            Some(at) => out
                .get(at + self.session.record_prefix_len()..)
                .unwrap_or_default(),
            None => &[],
        };
        self.ledger.as_ref().map_or(0, |ledger| ledger.lost(open))
    }

    /// Appends `bytes` (a backlog of whole frames, any length) as records' plaintext.
    pub fn append_chunked(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        for chunk in bytes.chunks(RECORD_PLAINTEXT_MAX) {
            self.reserve(out);
            out.extend_from_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` whole frames of growing size.
    fn frames(n: usize) -> Vec<u8> {
        super::super::conn::send_frames(n).0
    }

    /// Seals `plaintext` as one stretch of `ciphertext` bytes.
    fn seal(ledger: &mut LinkLedger, plaintext: &[u8], ciphertext: usize) {
        let messages = ledger.sealing(plaintext);
        ledger.sealed(ciphertext, messages);
    }

    #[test]
    fn a_stretch_counts_until_its_last_byte_is_sent_and_a_cut_frame_belongs_where_it_ends() {
        let bytes = frames(5);
        let mut ledger = LinkLedger::default();
        // Records cut the stream mid-frame: 3 frames end in the first, 2 in the second.
        let first_frame_end = frames(3).len();
        let cut = first_frame_end + 4;
        seal(&mut ledger, &bytes[..cut], 100);
        assert_eq!(ledger.lost(&[]), 3 + 1, "3 whole and one begun");
        seal(&mut ledger, &bytes[cut..], 80);
        assert_eq!(ledger.lost(&[]), 5);
        ledger.sent(99);
        assert_eq!(ledger.lost(&[]), 5, "a record one byte short is lost whole");
        ledger.sent(1);
        assert_eq!(ledger.lost(&[]), 2);
        ledger.sent(80);
        assert_eq!(ledger.lost(&[]), 0);
    }

    #[test]
    fn the_open_record_counts_its_frames_and_a_frame_it_cuts() {
        let mut ledger = LinkLedger::default();
        let bytes = frames(4);
        seal(&mut ledger, &bytes[..frames(1).len()], 50);
        ledger.sent(50);
        let open = &bytes[frames(1).len()..bytes.len() - 3];
        assert_eq!(ledger.lost(open), 3, "two whole frames and the cut one");
    }

    #[test]
    fn past_the_bound_stretches_merge_and_still_count_every_message() {
        let mut ledger = LinkLedger::default();
        let one = frames(1);
        for _ in 0..LEDGER_STRETCHES_MAX + 10 {
            seal(&mut ledger, &one, 10);
        }
        assert_eq!(ledger.stretches.len(), LEDGER_STRETCHES_MAX);
        let total = (LEDGER_STRETCHES_MAX + 10) as u64;
        assert_eq!(ledger.lost(&[]), total);
        ledger.sent(10 * (LEDGER_STRETCHES_MAX - 1));
        assert_eq!(
            ledger.lost(&[]),
            11,
            "the merged last stretch waits for its end"
        );
        ledger.sent(10 * 11);
        assert_eq!(ledger.lost(&[]), 0);
    }

    #[test]
    fn a_tls_connection_adds_at_most_64_bytes_to_its_session() {
        // tests/tls_memory.rs measures the session and counts 64 bytes for these fields.
        let own = std::mem::size_of::<TlsConn>() - std::mem::size_of::<TlsSession>();
        assert!(own <= 64, "{own}");
    }
}
