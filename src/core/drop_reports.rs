//! Drops to report (sans-IO): the senders whose messages were dropped at a bound away from
//! their own receive, collected while a batch is applied and reported once per sender and
//! subject when it ends.
//!
//! A message dropped while its sender's receive is applied is answered on that connection
//! (ERROR OVERLOADED, once per receive: `Engine::end_receive`). One dropped further on, by the
//! worker that owns the receiver (a handed-over DELIVER refused by `pending_bytes_per_worker_max`)
//! or by the node that owns it (a forward it could not hand to that worker), has no such
//! connection at hand: the worker notes its sender here, and at the end of the batch the
//! engine tells each sender by its id, wherever it is (`Engine::report_drops`).
//!
//! Bounded: at most [`DropReports::SENDERS_MAX`] distinct (sender, subject) pairs per batch;
//! drops of further pairs in the same batch are counted in `unreported` only (a batch is one
//! receive or one drain of the handoff queues, so the next one reports again).

/// The (sender, subject) pairs with drops in one batch, with how many each.
#[derive(Debug, Default)]
pub struct DropReports {
    /// Sender and subject bytes of every entry, back to back (reused: no allocation once it
    /// has grown to a batch's needs).
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// Drops of pairs past `SENDERS_MAX` in this batch: counted, not reported.
    unreported: u64,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u32,
    sender_len: u8,
    subject_len: u8,
    count: u32,
}

/// One report: `count` messages of client `sender` to `subject` (the target id of a SEND,
/// the topic of a PUBLISH) were dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropReport<'a> {
    pub sender: &'a [u8],
    pub subject: &'a [u8],
    pub count: u32,
}

impl DropReports {
    /// Distinct (sender, subject) pairs reported per batch. A batch's drops come from a few
    /// floods; 16 covers them, and the linear search stays within a cache line or two.
    pub const SENDERS_MAX: usize = 16;

    /// One message of `sender` to `subject` was dropped. Ids and subjects are at most 255
    /// bytes (validated when decoded); longer ones are cut (debug builds assert).
    pub fn note(&mut self, sender: &[u8], subject: &[u8]) {
        debug_assert!(!sender.is_empty() && sender.len() <= 255 && subject.len() <= 255);
        let sender = &sender[..sender.len().min(255)];
        let subject = &subject[..subject.len().min(255)];
        let bytes = &self.bytes;
        let found = self.entries.iter_mut().find(|e| {
            let (s, t) = e.parts(bytes);
            s == sender && t == subject
        });
        if let Some(entry) = found {
            entry.count = entry.count.saturating_add(1);
            return;
        }
        if self.entries.len() == Self::SENDERS_MAX {
            self.unreported += 1;
            return;
        }
        self.entries.push(Entry {
            start: self.bytes.len() as u32,
            sender_len: sender.len() as u8,
            subject_len: subject.len() as u8,
            count: 1,
        });
        self.bytes.extend_from_slice(sender);
        self.bytes.extend_from_slice(subject);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.unreported == 0
    }

    /// The batch's reports, in the order their first drop came; `report` is called once per
    /// pair. Returns the drops past the bound (not reported). Leaves the set empty.
    pub fn drain(&mut self, mut report: impl FnMut(DropReport<'_>)) -> u64 {
        for entry in &self.entries {
            let (sender, subject) = entry.parts(&self.bytes);
            report(DropReport {
                sender,
                subject,
                count: entry.count,
            });
        }
        self.entries.clear();
        self.bytes.clear();
        std::mem::take(&mut self.unreported)
    }
}

impl Entry {
    fn parts<'a>(&self, bytes: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let start = self.start as usize;
        let middle = start + usize::from(self.sender_len);
        let end = middle + usize::from(self.subject_len);
        (&bytes[start..middle], &bytes[middle..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (sender, subject, count) of each report.
    type Reported = Vec<(Vec<u8>, Vec<u8>, u32)>;

    fn drained(reports: &mut DropReports) -> (Reported, u64) {
        let mut out = Vec::new();
        let unreported =
            reports.drain(|r| out.push((r.sender.to_vec(), r.subject.to_vec(), r.count)));
        (out, unreported)
    }

    #[test]
    fn drops_of_one_sender_to_one_subject_make_one_report_with_their_count() {
        let mut r = DropReports::default();
        assert!(r.is_empty());
        for _ in 0..1000 {
            r.note(b"alice", b"bob");
        }
        r.note(b"alice", b"carol");
        r.note(b"dave", b"bob");
        assert!(!r.is_empty());
        let (reports, unreported) = drained(&mut r);
        assert_eq!(
            reports,
            vec![
                (b"alice".to_vec(), b"bob".to_vec(), 1000),
                (b"alice".to_vec(), b"carol".to_vec(), 1),
                (b"dave".to_vec(), b"bob".to_vec(), 1),
            ]
        );
        assert_eq!(unreported, 0);
        assert!(r.is_empty(), "drained");
        assert_eq!(drained(&mut r), (vec![], 0));
    }

    #[test]
    fn an_id_and_subject_are_told_apart_where_their_bytes_run_together() {
        let mut r = DropReports::default();
        r.note(b"ab", b"c");
        r.note(b"a", b"bc");
        let (reports, _) = drained(&mut r);
        assert_eq!(reports.len(), 2);
    }

    #[test]
    fn pairs_past_the_bound_are_counted_not_reported_and_the_next_batch_reports_again() {
        let mut r = DropReports::default();
        for i in 0..DropReports::SENDERS_MAX + 3 {
            r.note(format!("s{i}").as_bytes(), b"t");
            r.note(format!("s{i}").as_bytes(), b"t");
        }
        let (reports, unreported) = drained(&mut r);
        assert_eq!(reports.len(), DropReports::SENDERS_MAX);
        assert!(reports.iter().all(|(_, _, count)| *count == 2));
        assert_eq!(unreported, 6);
        r.note(b"s18", b"t");
        let (reports, unreported) = drained(&mut r);
        assert_eq!(reports, vec![(b"s18".to_vec(), b"t".to_vec(), 1)]);
        assert_eq!(unreported, 0);
    }
}
