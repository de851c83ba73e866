//! Coalescing of the ERRORs one connection is sent (sans-IO): a sender that floods an unknown
//! id gets one ERROR per (code, subject) per interval, carrying how many it stands for, not
//! one per message. So errors it does not read can never grow its queue, and a sender is never
//! closed for them.
//!
//! - The first ERROR for a (code, subject) goes out at once: the sender hears at the speed it
//!   would without coalescing.
//! - Repeats within `error_interval_ms` of it are counted, not sent. When the interval ends,
//!   or before the relay answers the connection's PING (a PONG promises that every ERROR about
//!   the frames before the PING has been sent), one ERROR with the same code and subject says
//!   how many there were: its text is the usual text followed by `; N more`.
//! - A connection's ledger holds at most [`ERROR_KEYS_MAX`] (code, subject) pairs; an ERROR
//!   for another pair while it is full is dropped and counted.

use crate::protocol::ErrorCode;

/// Distinct (code, subject) pairs one connection's ledger holds. 32: a sender meets that many
/// distinct failures per interval only when it is misbehaving, and the ledger of one
/// connection stays under 10 KB.
pub const ERROR_KEYS_MAX: usize = 32;

/// What to do with an ERROR about to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorVerdict {
    /// Send it now.
    Send,
    /// Counted; a later summary ERROR reports it.
    Coalesced,
    /// The ledger is full: dropped (count it).
    Dropped,
}

#[derive(Debug)]
struct Entry {
    code: ErrorCode,
    /// The subject, then the text of the first ERROR.
    subject_text: Box<[u8]>,
    subject_len: usize,
    /// When the ERROR that opened this interval was sent.
    sent_ms: u64,
    /// ERRORs counted since then, not yet reported.
    repeats: u64,
}

/// One connection's recent ERRORs.
#[derive(Debug, Default)]
pub struct ErrorLedger {
    entries: Vec<Entry>,
}

/// A summary to send: `repeats` ERRORs of this code and subject were coalesced.
#[derive(Debug, PartialEq, Eq)]
pub struct Summary<'a> {
    pub code: ErrorCode,
    pub subject: &'a [u8],
    pub text: &'a [u8],
    pub repeats: u64,
}

impl ErrorLedger {
    /// An ERROR (`code`, `subject`, `text`) is to be sent at `now_ms`.
    pub fn admit(
        &mut self,
        code: ErrorCode,
        subject: &[u8],
        text: &[u8],
        now_ms: u64,
    ) -> ErrorVerdict {
        if let Some(e) = self
            .entries
            .iter_mut()
            .find(|e| e.code == code && e.subject_text[..e.subject_len] == *subject)
        {
            e.repeats += 1;
            return ErrorVerdict::Coalesced;
        }
        if self.entries.len() >= ERROR_KEYS_MAX {
            return ErrorVerdict::Dropped;
        }
        self.entries.push(Entry {
            code,
            subject_text: [subject, text].concat().into(),
            subject_len: subject.len(),
            sent_ms: now_ms,
            repeats: 0,
        });
        ErrorVerdict::Send
    }

    /// Reports the counts of every pair whose interval ended by `now_ms` (all of them when
    /// `all`, before a PONG) through `send`; a pair with nothing to report is forgotten, one
    /// with a report starts a new interval. Returns whether the ledger is empty.
    pub fn flush(
        &mut self,
        now_ms: u64,
        interval_ms: u64,
        all: bool,
        mut send: impl FnMut(Summary<'_>),
    ) -> bool {
        self.entries.retain_mut(|e| {
            if !all && now_ms.saturating_sub(e.sent_ms) < interval_ms {
                return true;
            }
            if e.repeats == 0 {
                return false;
            }
            let (subject, text) = e.subject_text.split_at(e.subject_len);
            send(Summary {
                code: e.code,
                subject,
                text,
                repeats: std::mem::take(&mut e.repeats),
            });
            e.sent_ms = now_ms;
            true
        });
        self.entries.is_empty()
    }

    /// Whether any count waits to be reported.
    pub fn has_repeats(&self) -> bool {
        self.entries.iter().any(|e| e.repeats > 0)
    }
}

/// The text of a summary ERROR: `text; N more`.
pub fn summary_text(out: &mut Vec<u8>, text: &[u8], repeats: u64) {
    use std::io::Write;
    out.clear();
    out.extend_from_slice(text);
    // Writing to a Vec cannot fail.
    let _ = write!(out, "; {repeats} more");
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNKNOWN: ErrorCode = ErrorCode::UNKNOWN_ID;

    #[test]
    fn the_first_error_of_a_pair_is_sent_and_repeats_are_counted() {
        let mut l = ErrorLedger::default();
        assert_eq!(
            l.admit(UNKNOWN, b"zed", b"unknown id", 0),
            ErrorVerdict::Send
        );
        for _ in 0..450_000 {
            assert_eq!(
                l.admit(UNKNOWN, b"zed", b"unknown id", 10),
                ErrorVerdict::Coalesced
            );
        }
        // Another subject or code is a pair of its own.
        assert_eq!(
            l.admit(UNKNOWN, b"amy", b"unknown id", 10),
            ErrorVerdict::Send
        );
        assert_eq!(
            l.admit(ErrorCode::OVERLOADED, b"zed", b"overloaded", 10),
            ErrorVerdict::Send
        );
        let mut got = Vec::new();
        assert!(!l.flush(999, 1_000, false, |s| got.push(s.repeats)));
        assert!(got.is_empty(), "the interval has not ended");
        l.flush(1_000, 1_000, false, |s| {
            got.push(s.repeats);
            assert_eq!(
                (s.code, s.subject, s.text),
                (UNKNOWN, &b"zed"[..], &b"unknown id"[..])
            );
        });
        assert_eq!(got, [450_000]);
    }

    #[test]
    fn a_reported_pair_starts_a_new_interval_and_a_quiet_one_is_forgotten() {
        let mut l = ErrorLedger::default();
        l.admit(UNKNOWN, b"zed", b"unknown id", 0);
        l.admit(UNKNOWN, b"zed", b"unknown id", 1);
        let mut n = 0;
        l.flush(1_000, 1_000, false, |_| n += 1);
        assert_eq!(n, 1);
        // Still coalescing in the new interval.
        assert_eq!(
            l.admit(UNKNOWN, b"zed", b"unknown id", 1_500),
            ErrorVerdict::Coalesced
        );
        l.flush(2_000, 1_000, false, |_| n += 1);
        assert_eq!(n, 2);
        // A quiet interval forgets the pair: the next ERROR is sent at once.
        assert!(l.flush(3_000, 1_000, false, |_| n += 1));
        assert_eq!(n, 2);
        assert_eq!(
            l.admit(UNKNOWN, b"zed", b"unknown id", 3_001),
            ErrorVerdict::Send
        );
    }

    #[test]
    fn flushing_all_before_a_pong_reports_every_count_at_once() {
        let mut l = ErrorLedger::default();
        l.admit(UNKNOWN, b"zed", b"unknown id", 0);
        l.admit(UNKNOWN, b"zed", b"unknown id", 0);
        l.admit(UNKNOWN, b"amy", b"unknown id", 0);
        assert!(l.has_repeats());
        let mut got = Vec::new();
        l.flush(1, 1_000, true, |s| {
            got.push((s.subject.to_vec(), s.repeats))
        });
        assert_eq!(got, [(b"zed".to_vec(), 1)]);
        assert!(!l.has_repeats());
    }

    #[test]
    fn past_its_bound_the_ledger_drops_new_pairs_but_still_counts_known_ones() {
        let mut l = ErrorLedger::default();
        for i in 0..ERROR_KEYS_MAX {
            let id = format!("id{i}");
            assert_eq!(
                l.admit(UNKNOWN, id.as_bytes(), b"unknown id", 0),
                ErrorVerdict::Send
            );
        }
        assert_eq!(
            l.admit(UNKNOWN, b"one-more", b"unknown id", 0),
            ErrorVerdict::Dropped
        );
        assert_eq!(
            l.admit(UNKNOWN, b"id0", b"unknown id", 0),
            ErrorVerdict::Coalesced
        );
    }

    #[test]
    fn the_summary_text_carries_the_count() {
        let mut out = b"stale".to_vec();
        summary_text(&mut out, b"unknown id", 4_511);
        assert_eq!(out, b"unknown id; 4511 more");
    }
}
