//! The operator's list of client connections (`/connections` on the metrics listener): the
//! metrics thread asks every worker for a page of its connections and merges the answers.
//!
//! Each worker has one request slot. The metrics thread answers one HTTP request at a time,
//! so a slot holds at most one request; a worker checks an atomic flag once per loop
//! iteration (no lock on the message path) and answers by a channel. A worker that does not
//! answer within [`ANSWER_WAIT`] is named in the reply instead of stalling the endpoint.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Mutex;
use std::time::Duration;

/// How long the metrics thread waits for each worker's page.
pub const ANSWER_WAIT: Duration = Duration::from_millis(500);

/// Connections one page lists by default, and at most.
pub const PAGE_DEFAULT: usize = 100;
pub const PAGE_MAX: usize = 1000;

/// One client connection, as a worker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub worker: u16,
    pub slot: u32,
    /// The registered id (empty before HELLO is accepted).
    pub client_id: Vec<u8>,
    pub peer: Option<SocketAddr>,
    /// Bytes queued for the client (and buffer capacity held beyond the retained size).
    pub pending_bytes: usize,
    /// Bytes queued for the client alone: what flow control compares with its watermarks
    /// and `pending_bytes_max`.
    pub queued_bytes: usize,
    pub subscriptions: usize,
    pub watches: usize,
    pub age_ms: u64,
}

/// A worker's page: its client connections with a slot after `after_slot`, at most `limit`.
pub struct ListingRequest {
    pub after_slot: Option<u32>,
    pub limit: usize,
    pub reply: SyncSender<Vec<ConnectionInfo>>,
}

/// One worker's request slot.
#[derive(Default)]
pub struct ListingSlot {
    pending: AtomicBool,
    request: Mutex<Option<ListingRequest>>,
}

impl ListingSlot {
    /// Leaves `request` for the worker (replacing one it never took).
    pub fn put(&self, request: ListingRequest) {
        *self.request.lock().unwrap_or_else(|p| p.into_inner()) = Some(request);
        self.pending.store(true, Ordering::Release);
    }

    /// The request waiting for this worker, if any: one atomic load when there is none.
    #[inline]
    pub fn take(&self) -> Option<ListingRequest> {
        if !self.pending.load(Ordering::Acquire) {
            return None;
        }
        self.pending.store(false, Ordering::Relaxed);
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Position after which a page starts: `(worker, slot)`, parsed from `W:S`.
pub fn parse_cursor(text: &[u8]) -> Option<(u16, u32)> {
    let text = std::str::from_utf8(text).ok()?;
    let (w, s) = text.split_once(':')?;
    Some((w.parse().ok()?, s.parse().ok()?))
}

/// Merges the workers' pages (each sorted by slot) into one page of `limit` in
/// `(worker, slot)` order.
pub fn merge(pages: Vec<Vec<ConnectionInfo>>, limit: usize) -> Vec<ConnectionInfo> {
    let mut all: Vec<ConnectionInfo> = pages.into_iter().flatten().collect();
    all.sort_unstable_by_key(|c| (c.worker, c.slot));
    all.truncate(limit);
    all
}

/// Waits for one worker's answer (bounded by [`ANSWER_WAIT`]).
pub fn await_page(rx: &Receiver<Vec<ConnectionInfo>>) -> Option<Vec<ConnectionInfo>> {
    rx.recv_timeout(ANSWER_WAIT).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(worker: u16, slot: u32) -> ConnectionInfo {
        ConnectionInfo {
            worker,
            slot,
            client_id: Vec::new(),
            peer: None,
            pending_bytes: 0,
            queued_bytes: 0,
            subscriptions: 0,
            watches: 0,
            age_ms: 0,
        }
    }

    #[test]
    fn cursors_parse_and_pages_merge_in_worker_then_slot_order() {
        assert_eq!(parse_cursor(b"1:42"), Some((1, 42)));
        assert_eq!(parse_cursor(b"1"), None);
        assert_eq!(parse_cursor(b"x:1"), None);
        let merged = merge(
            vec![vec![info(1, 3), info(1, 9)], vec![info(0, 7)], vec![]],
            2,
        );
        assert_eq!(merged, vec![info(0, 7), info(1, 3)]);
    }

    #[test]
    fn a_slot_hands_over_one_request_once() {
        let slot = ListingSlot::default();
        assert!(slot.take().is_none());
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        slot.put(ListingRequest {
            after_slot: Some(3),
            limit: 5,
            reply: tx,
        });
        let got = slot.take().expect("the request");
        assert_eq!((got.after_slot, got.limit), (Some(3), 5));
        assert!(slot.take().is_none());
    }
}
