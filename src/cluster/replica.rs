//! The replicated tables (sans-IO): applies a peer's control messages (rows, snapshots,
//! digests, interest) to this node's [`Tables`], and answers with what must be sent back.
//!
//! Merge rules (see `core::location`): a peer only ever sends rows it owns; an upsert is kept
//! if it beats the current row of the id; a removal deletes only the exact (node, epoch) row;
//! a completed snapshot replaces every row of its sender, so rows that the sender no longer
//! has (ghosts left by a partition) disappear. Watchers and replaced local clients are told
//! through the [`Sink`].

#![forbid(unsafe_code)]

use super::wire::{
    interest_chunks, row_hash, ControlMsg, InterestChange, RowChange, INTEREST_ENTRIES_PER_MESSAGE,
};
use crate::core::{EpochClock, Location, Registered, Row, Sink, Tables};
use std::collections::HashMap;

/// One row of a snapshot: (client id, epoch).
pub type SnapshotRow = (Box<[u8]>, u64);

/// Bound on rows buffered for one unfinished snapshot (a peer's whole client population).
pub const SNAPSHOT_ROWS_MAX: usize = 16 << 20;

/// What the control thread must do after applying a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    None,
    /// The peer's snapshot is complete (readiness).
    SnapshotComplete,
    /// Our view of the peer's rows differs from its digest: ask for its snapshot.
    RequestSnapshot,
    /// The peer asked for our snapshot.
    SendSnapshot,
    /// The snapshot grew past `SNAPSHOT_ROWS_MAX`: drop the link.
    Violation(&'static str),
}

#[derive(Default)]
pub struct Replica {
    pending_snapshots: HashMap<u16, Vec<SnapshotRow>>,
    scratch: Vec<Location>,
    /// This node's own rows that a peer's newer row replaced since the last
    /// [`Replica::take_retracted`]: their clients are closed without an unregistration of
    /// their own, so the node must tell its peers to remove them (see `take_retracted`).
    retracted: Vec<SnapshotRow>,
}

impl Replica {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets a half-received snapshot of `node` (its link went down).
    pub fn forget(&mut self, node: u16) {
        self.pending_snapshots.remove(&node);
    }

    /// Applies one control message from `node`.
    pub fn apply(
        &mut self,
        tables: &Tables,
        epochs: &EpochClock,
        node: u16,
        msg: ControlMsg,
        sink: &mut impl Sink,
    ) -> Reply {
        debug_assert_ne!(node, tables.node_id);
        match msg {
            ControlMsg::Rows(changes) => {
                for change in changes {
                    match change {
                        RowChange::Upsert { id, epoch } => {
                            epochs.observe(epoch);
                            let row = Row {
                                location: Location::remote(node),
                                epoch,
                            };
                            let outcome =
                                tables.apply_remote_row(&id, row, &mut self.scratch, sink);
                            self.note_replaced(tables, &id, outcome);
                        }
                        RowChange::Remove { id, epoch } => {
                            tables.remove_remote_row(&id, node, epoch, &mut self.scratch, sink);
                        }
                    }
                }
                Reply::None
            }
            ControlMsg::Snapshot { first, last, rows } => {
                let buffer = self.pending_snapshots.entry(node).or_default();
                if first {
                    buffer.clear();
                }
                if buffer.len() + rows.len() > SNAPSHOT_ROWS_MAX {
                    self.pending_snapshots.remove(&node);
                    return Reply::Violation("snapshot larger than SNAPSHOT_ROWS_MAX rows");
                }
                buffer.extend(rows);
                if !last {
                    return Reply::None;
                }
                let rows = self.pending_snapshots.remove(&node).unwrap_or_default();
                self.replace_rows(tables, epochs, node, rows, sink);
                Reply::SnapshotComplete
            }
            ControlMsg::Digest { rows, hash } => {
                if digest_of(tables, node) == (rows, hash) {
                    Reply::None
                } else {
                    Reply::RequestSnapshot
                }
            }
            ControlMsg::SnapshotRequest => Reply::SendSnapshot,
            ControlMsg::Interest { replace, entries } => {
                if replace {
                    tables.remote_interest.drop_node(node);
                }
                for InterestChange {
                    present,
                    topic,
                    group,
                } in entries
                {
                    tables.remote_interest.set(node, &topic, &group, present);
                }
                Reply::None
            }
            ControlMsg::Heartbeat | ControlMsg::Members(_) => Reply::None,
        }
    }

    /// Makes the rows of `node` exactly `rows`: upserts each, then purges the rest.
    fn replace_rows(
        &mut self,
        tables: &Tables,
        epochs: &EpochClock,
        node: u16,
        rows: Vec<SnapshotRow>,
        sink: &mut impl Sink,
    ) {
        let mut keep: HashMap<&[u8], u64> = HashMap::with_capacity(rows.len());
        for (id, epoch) in &rows {
            epochs.observe(*epoch);
            let row = Row {
                location: Location::remote(node),
                epoch: *epoch,
            };
            let outcome = tables.apply_remote_row(id, row, &mut self.scratch, sink);
            self.note_replaced(tables, id, outcome);
            keep.insert(id, *epoch);
        }
        tables.purge_node_rows(
            node,
            |id, epoch| keep.get(id) == Some(&epoch),
            &mut self.scratch,
            sink,
        );
    }

    fn note_replaced(&mut self, tables: &Tables, id: &[u8], outcome: Registered) {
        if let Registered::Replaced(old) = outcome {
            if old.location.node == tables.node_id {
                self.retracted.push((id.into(), old.epoch));
            }
        }
    }

    /// Own rows replaced by peers' newer rows since the last call. The caller streams them
    /// as removals: a third node may have received our row after the newer row had already
    /// come and gone (its links reorder against ours), and without the removal it would keep
    /// our row, a ghost, until the next digest, or until our death if a partition came first.
    pub fn take_retracted(&mut self) -> Vec<SnapshotRow> {
        std::mem::take(&mut self.retracted)
    }

    /// A peer was declared dead: its rows and interest go; watchers hear offline.
    pub fn purge_node(&mut self, tables: &Tables, node: u16, sink: &mut impl Sink) -> usize {
        self.forget(node);
        tables.remote_interest.drop_node(node);
        tables.purge_node_rows(node, |_, _| false, &mut self.scratch, sink)
    }
}

/// `(rows, xor of row_hash)` over the rows `node` owns in this node's table.
pub fn digest_of(tables: &Tables, node: u16) -> (u64, u64) {
    let rows = tables.locations.rows_of(node);
    let hash = rows
        .iter()
        .fold(0u64, |acc, (id, epoch)| acc ^ row_hash(id, *epoch));
    (rows.len() as u64, hash)
}

/// This node's full interest as INTEREST messages, the first with REPLACE (chunked, so any
/// number of subscriptions fits the control frame cap).
pub fn interest_snapshot(tables: &Tables) -> impl Iterator<Item = ControlMsg> {
    let entries = tables
        .topics
        .interest()
        .into_iter()
        .map(|(topic, group)| InterestChange {
            present: true,
            topic,
            group,
        })
        .collect();
    interest_chunks(entries, true, INTEREST_ENTRIES_PER_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CloseReason, ErrorCode};

    #[derive(Default)]
    struct Effects {
        presence: Vec<(Vec<u8>, bool)>,
        closed: Vec<Location>,
    }

    impl Sink for Effects {
        fn deliver(&mut self, _: Location, _: &crate::protocol::Message<'_>) {
            unreachable!()
        }
        fn presence(&mut self, _to: Location, id: &[u8], online: bool) {
            self.presence.push((id.to_vec(), online));
        }
        fn close(&mut self, to: Location, _: CloseReason, _: &'static str) {
            self.closed.push(to);
        }
        fn error_to_origin(&mut self, _: ErrorCode, _: &[u8], _: &'static str) {
            unreachable!()
        }
        fn forward_send(&mut self, _: u16, _: &[u8], _: &crate::protocol::Message<'_>) {
            unreachable!()
        }
        fn forward_publish(&mut self, _: u16, _: &crate::protocol::Message<'_>, _: &[u8], _: bool) {
            unreachable!()
        }
    }

    fn id(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    fn snapshot(rows: &[(&str, u64)]) -> ControlMsg {
        ControlMsg::Snapshot {
            first: true,
            last: true,
            rows: rows.iter().map(|(i, e)| (id(i), *e)).collect(),
        }
    }

    #[test]
    fn snapshot_replaces_the_peers_rows_and_removes_ghosts() {
        let t = Tables::for_node(1);
        let clock = EpochClock::new();
        let mut r = Replica::new();
        let mut fx = Effects::default();
        t.presence.watch(b"ghost", Location::remote(1));
        let rows = ControlMsg::Rows(vec![
            RowChange::Upsert {
                id: id("ghost"),
                epoch: 5,
            },
            RowChange::Upsert {
                id: id("stays"),
                epoch: 6,
            },
        ]);
        r.apply(&t, &clock, 2, rows, &mut fx);
        assert_eq!(t.locations.len(), 2);
        // Chunked snapshot: nothing changes until LAST.
        let first = ControlMsg::Snapshot {
            first: true,
            last: false,
            rows: vec![(id("stays"), 6)],
        };
        assert_eq!(r.apply(&t, &clock, 2, first, &mut fx), Reply::None);
        assert_eq!(t.locations.len(), 2);
        let last = ControlMsg::Snapshot {
            first: false,
            last: true,
            rows: vec![(id("new"), 9)],
        };
        assert_eq!(
            r.apply(&t, &clock, 2, last, &mut fx),
            Reply::SnapshotComplete
        );
        let mut ids: Vec<_> = t.locations.rows_of(2).into_iter().map(|(i, _)| i).collect();
        ids.sort();
        assert_eq!(ids, vec![id("new"), id("stays")]);
        assert_eq!(
            fx.presence,
            vec![(b"ghost".to_vec(), true), (b"ghost".to_vec(), false)]
        );
        assert!(clock.next(0) > 9, "epochs seen from peers move the clock");
    }

    #[test]
    fn digest_mismatch_asks_for_a_snapshot_and_a_match_does_not() {
        let peer = Tables::for_node(2);
        let here = Tables::for_node(1);
        let clock = EpochClock::new();
        let mut r = Replica::new();
        let mut fx = Effects::default();
        for (i, e) in [("a", 1), ("b", 2)] {
            peer.locations.register(
                i.as_bytes(),
                Row {
                    location: Location::remote(2),
                    epoch: e,
                },
            );
        }
        let (rows, hash) = digest_of(&peer, 2);
        let digest = || ControlMsg::Digest { rows, hash };
        assert_eq!(
            r.apply(&here, &clock, 2, digest(), &mut fx),
            Reply::RequestSnapshot
        );
        r.apply(&here, &clock, 2, snapshot(&[("a", 1), ("b", 2)]), &mut fx);
        assert_eq!(r.apply(&here, &clock, 2, digest(), &mut fx), Reply::None);
    }

    #[test]
    fn newer_remote_row_closes_the_local_holder_and_dead_node_purges_everything() {
        let t = Tables::for_node(1);
        let clock = EpochClock::new();
        let mut r = Replica::new();
        let mut fx = Effects::default();
        let local = Location {
            node: 1,
            worker: 0,
            slot: 3,
            generation: 1,
        };
        t.locations.register(
            b"dup",
            Row {
                location: local,
                epoch: 10,
            },
        );
        r.apply(&t, &clock, 2, snapshot(&[("dup", 11), ("x", 1)]), &mut fx);
        assert_eq!(fx.closed, vec![local]);
        t.remote_interest.set(2, b"t", b"", true);
        let interest = ControlMsg::Interest {
            replace: true,
            entries: vec![InterestChange {
                present: true,
                topic: id("u"),
                group: id("g"),
            }],
        };
        r.apply(&t, &clock, 2, interest, &mut fx);
        assert_eq!(t.remote_interest.all(), vec![((id("u"), id("g")), 2)]);
        assert_eq!(r.purge_node(&t, 2, &mut fx), 2);
        assert!(t.locations.is_empty());
        assert!(t.remote_interest.all().is_empty());
    }
}
