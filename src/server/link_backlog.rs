//! Forwards to a node this worker has no data link to yet: held briefly instead of failed.
//!
//! A node's rows reach the location and topic tables over the control link, and each worker's
//! data link to that node is dialed after it, so for a moment after a peer joins or heals (or
//! after a data link is lost and redialed) a forward finds the node in the tables but no link.
//! Such forwards are queued here, per node, in wire form, and become the first bytes of the
//! link when it is adopted, so one sender's messages keep their order. A backlog is bounded
//! like a link (`link_pending_bytes_max`) and in time (`cluster_peer_dead_after_ms`: by then
//! the link is up, or the node has been declared dead and its rows purged); what it holds when
//! it expires, or when the node is declared dead, is dropped and counted.
//!
//! A backlog slows its producers as a link's queue does: from a quarter of
//! `link_pending_bytes_max` (at most 2 MiB, see `core::flow`) the forward's sender stalls (its reads paused) until the link is
//! up and takes the backlog, or `stall_ms_max` passes; a forward that would take it past the
//! bound is dropped, counted, and its sender told (ERROR `OVERLOADED`).

/// Forwards queued for one node.
#[derive(Debug)]
pub struct Backlog {
    pub node: u16,
    /// Encoded data-link frames, whole, in the order they were routed.
    pub bytes: Vec<u8>,
    pub messages: u64,
    /// When the first forward was queued; the backlog expires `wait_ms` after it.
    pub since_ms: u64,
}

/// Why a forward was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The node's backlog would pass `link_pending_bytes_max`.
    Full,
    /// Every other node of a cluster of `cluster_nodes_max` already has a backlog (a node
    /// the membership cannot hold): the sender gets UNREACHABLE.
    TooManyNodes,
}

#[derive(Debug)]
pub struct Backlogs {
    entries: Vec<Backlog>,
    /// Backlogs held at once: one per other node of the largest cluster.
    nodes_max: usize,
}

impl Backlogs {
    /// Backlogs for the other nodes of a cluster of at most `cluster_nodes_max`.
    pub fn new(cluster_nodes_max: usize) -> Backlogs {
        Backlogs {
            entries: Vec::new(),
            nodes_max: cluster_nodes_max.saturating_sub(1),
        }
    }

    /// Queues `len` bytes written by `write` for `node`.
    pub fn append(
        &mut self,
        node: u16,
        now_ms: u64,
        len: usize,
        bytes_max: usize,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), Refused> {
        let at = match self.entries.iter().position(|b| b.node == node) {
            Some(at) => at,
            None if self.entries.len() >= self.nodes_max => return Err(Refused::TooManyNodes),
            None => {
                self.entries.push(Backlog {
                    node,
                    bytes: Vec::new(),
                    messages: 0,
                    since_ms: now_ms,
                });
                self.entries.len() - 1
            }
        };
        let backlog = &mut self.entries[at];
        if backlog.bytes.len() + len > bytes_max {
            return Err(Refused::Full);
        }
        let before = backlog.bytes.len();
        write(&mut backlog.bytes);
        debug_assert_eq!(backlog.bytes.len(), before + len, "frame length mismatch");
        backlog.messages += 1;
        Ok(())
    }

    /// The backlog of `node`, removed (its link was adopted).
    pub fn take(&mut self, node: u16) -> Option<Backlog> {
        let at = self.entries.iter().position(|b| b.node == node)?;
        Some(self.entries.swap_remove(at))
    }

    /// Removes the backlogs older than `wait_ms`; returns the messages they held.
    pub fn expire(&mut self, now_ms: u64, wait_ms: u64) -> u64 {
        let mut dropped = 0;
        self.entries.retain(|b| {
            let keep = now_ms.saturating_sub(b.since_ms) < wait_ms;
            if !keep {
                dropped += b.messages;
            }
            keep
        });
        dropped
    }

    /// Removes every backlog (the worker stops); returns the messages they held.
    pub fn clear(&mut self) -> u64 {
        self.entries.drain(..).map(|b| b.messages).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes queued for `node` (0 without a backlog).
    pub fn bytes_of(&self, node: u16) -> usize {
        self.entries
            .iter()
            .find(|b| b.node == node)
            .map_or(0, |b| b.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: usize = 8;

    fn push(b: &mut Backlogs, node: u16, now_ms: u64, bytes: &[u8]) -> Result<(), Refused> {
        b.append(node, now_ms, bytes.len(), 8, |out| {
            out.extend_from_slice(bytes)
        })
    }

    #[test]
    fn forwards_queue_per_node_in_order_and_are_taken_whole() {
        let mut b = Backlogs::new(NODES);
        push(&mut b, 2, 0, b"ab").unwrap();
        push(&mut b, 3, 0, b"x").unwrap();
        push(&mut b, 2, 1, b"cd").unwrap();
        let two = b.take(2).unwrap();
        assert_eq!((two.bytes.as_slice(), two.messages), (&b"abcd"[..], 2));
        assert!(b.take(2).is_none());
        assert_eq!(b.take(3).unwrap().bytes, b"x");
        assert!(b.is_empty());
    }

    #[test]
    fn a_backlog_past_its_byte_bound_refuses_and_keeps_what_it_has() {
        let mut b = Backlogs::new(NODES);
        push(&mut b, 2, 0, b"12345").unwrap();
        assert_eq!(push(&mut b, 2, 0, b"6789"), Err(Refused::Full));
        push(&mut b, 2, 0, b"678").unwrap();
        assert_eq!(b.take(2).unwrap().messages, 2);
    }

    #[test]
    fn each_node_counts_its_own_bytes_until_its_backlog_is_taken() {
        let mut b = Backlogs::new(NODES);
        assert_eq!(b.bytes_of(2), 0);
        push(&mut b, 2, 0, b"abc").unwrap();
        push(&mut b, 3, 0, b"x").unwrap();
        push(&mut b, 2, 0, b"de").unwrap();
        assert_eq!((b.bytes_of(2), b.bytes_of(3)), (5, 1));
        assert_eq!(push(&mut b, 2, 0, b"fghi"), Err(Refused::Full));
        assert_eq!(b.bytes_of(2), 5, "a refused forward adds nothing");
        b.take(2);
        assert_eq!((b.bytes_of(2), b.bytes_of(3)), (0, 1));
    }

    #[test]
    fn nodes_past_the_count_bound_are_refused() {
        let mut b = Backlogs::new(NODES);
        for node in 0..NODES as u16 - 1 {
            push(&mut b, node, 0, b"m").unwrap();
        }
        assert_eq!(
            push(&mut b, NODES as u16, 0, b"m"),
            Err(Refused::TooManyNodes)
        );
        push(&mut b, 0, 0, b"m").unwrap();
    }

    #[test]
    fn backlogs_expire_from_their_first_message_and_report_what_they_held() {
        let mut b = Backlogs::new(NODES);
        push(&mut b, 2, 100, b"a").unwrap();
        push(&mut b, 2, 900, b"b").unwrap();
        push(&mut b, 3, 500, b"c").unwrap();
        assert_eq!(b.expire(1099, 1000), 0);
        assert_eq!(b.expire(1100, 1000), 2);
        assert!(b.take(2).is_none());
        assert_eq!(b.clear(), 1);
        assert!(b.is_empty());
    }
}
