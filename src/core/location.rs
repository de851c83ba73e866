//! Client-location table: client id -> where its connection lives.
//!
//! Read lock-free on every SEND (papaya: epoch-based, readers never block and never write
//! shared cache lines). Written on registration and close by the workers, and by the cluster
//! control thread for rows owned by other nodes.
//!
//! Cluster merge rule: every row carries the owning node and an `epoch` (a hybrid logical
//! clock value, see [`super::epoch`]). Of two rows for one id, the one with the greater
//! `(epoch, node)` wins, on every node, whatever order the rows arrive in; so all nodes end
//! with the same winner. Only the owner of a row removes it, and a removal names the exact
//! `(node, epoch)` it removes, so a late removal never deletes a newer registration.

use super::table_hasher::TableHasher;
use papaya::{Compute, Operation};

/// Where a client's connection lives. `generation` tells a reused connection slot apart from
/// the connection that held it before, so a stale row or queued message never reaches a new
/// client. For a row owned by another node only `node` is meaningful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub node: u16,
    pub worker: u16,
    pub slot: u32,
    pub generation: u32,
}

impl Location {
    /// The location recorded for a client of another node.
    pub fn remote(node: u16) -> Location {
        Location {
            node,
            worker: 0,
            slot: 0,
            generation: 0,
        }
    }
}

/// One row: where the id lives and the epoch of its registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub location: Location,
    pub epoch: u64,
}

impl Row {
    /// Whether this row wins over `other` (newest registration wins, ties by node id).
    pub fn beats(&self, other: &Row) -> bool {
        (self.epoch, self.location.node) > (other.epoch, other.location.node)
    }
}

/// Result of a registration or of applying a remote row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// The id was free.
    New,
    /// The very same row was already there (a snapshot repeating a streamed row).
    Unchanged,
    /// The id was held by an older row, which must now be closed (if local) as "replaced".
    Replaced(Row),
    /// A newer row already holds the id: the new registration lost and is not stored.
    Lost(Row),
}

pub struct LocationTable {
    rows: papaya::HashMap<Box<[u8]>, Row, TableHasher>,
}

impl Default for LocationTable {
    fn default() -> Self {
        Self::new()
    }
}

impl LocationTable {
    pub fn new() -> Self {
        LocationTable {
            rows: papaya::HashMap::with_capacity_and_hasher(1024, TableHasher::default()),
        }
    }

    /// A guard for a batch of lookups; hold it only for a batch (it delays reclamation).
    pub fn raw_guard(&self) -> papaya::LocalGuard<'_> {
        self.rows.guard()
    }

    /// Lock-free lookup.
    #[inline]
    pub fn get(&self, client_id: &[u8], guard: &impl papaya::Guard) -> Option<Location> {
        self.rows.get(client_id, guard).map(|r| r.location)
    }

    /// Lock-free lookup of the whole row.
    pub fn row(&self, client_id: &[u8]) -> Option<Row> {
        self.rows.pin().get(client_id).copied()
    }

    /// Stores `row` for `client_id` unless a row that beats it is there (atomic against
    /// concurrent writers of the same id).
    pub fn register(&self, client_id: &[u8], row: Row) -> Registered {
        let guard = self.rows.guard();
        let result = self.rows.compute(
            client_id.into(),
            |existing| match existing {
                Some((_, old)) if *old == row => Operation::Abort(Registered::Unchanged),
                Some((_, old)) if !row.beats(old) => Operation::Abort(Registered::Lost(*old)),
                _ => Operation::Insert(row),
            },
            &guard,
        );
        match result {
            Compute::Inserted(..) => Registered::New,
            Compute::Updated { old: (_, old), .. } => Registered::Replaced(*old),
            Compute::Aborted(r) => r,
            Compute::Removed(..) => unreachable!("the compute closure never removes"),
        }
    }

    /// Removes the row only if it still points at `location` (a newer registration of the same
    /// id must survive the old connection's close). Returns the removed row.
    pub fn remove_if_at(&self, client_id: &[u8], location: Location) -> Option<Row> {
        let guard = self.rows.guard();
        match self
            .rows
            .remove_if(client_id, |_, r| r.location == location, &guard)
        {
            Ok(Some((_, r))) => Some(*r),
            _ => None,
        }
    }

    /// Points the row of `client_id` at `to` if it still points at `from` (a connection moved
    /// between workers of this node), keeping its epoch: to other nodes nothing changed.
    /// Returns whether it did.
    pub fn relocate(&self, client_id: &[u8], from: Location, to: Location) -> bool {
        debug_assert_eq!(from.node, to.node, "a move stays on its node");
        let guard = self.rows.guard();
        let result = self.rows.compute(
            client_id.into(),
            |existing| match existing {
                Some((_, old)) if old.location == from => Operation::Insert(Row {
                    location: to,
                    epoch: old.epoch,
                }),
                _ => Operation::Abort(()),
            },
            &guard,
        );
        matches!(result, Compute::Updated { .. })
    }

    /// Removes the row of `node` registered at `epoch`, if that exact row is there.
    pub fn remove_exact(&self, client_id: &[u8], node: u16, epoch: u64) -> bool {
        let guard = self.rows.guard();
        matches!(
            self.rows.remove_if(
                client_id,
                |_, r| r.location.node == node && r.epoch == epoch,
                &guard
            ),
            Ok(Some(_))
        )
    }

    /// Every row owned by `node`, as `(id, epoch)`.
    pub fn rows_of(&self, node: u16) -> Vec<(Box<[u8]>, u64)> {
        let guard = self.rows.guard();
        self.rows
            .iter(&guard)
            .filter(|(_, r)| r.location.node == node)
            .map(|(id, r)| (id.clone(), r.epoch))
            .collect()
    }

    /// Every row, as `(id, row)` (status pages and tests).
    pub fn all_rows(&self) -> Vec<(Box<[u8]>, Row)> {
        let guard = self.rows.guard();
        self.rows
            .iter(&guard)
            .map(|(id, r)| (id.clone(), *r))
            .collect()
    }

    /// The `(id, epoch)` of every row of `node` that `keep` rejects, read lock-free (a row
    /// may change after it is listed: remove them with [`Self::remove_exact`]).
    pub fn node_rows_not_kept(
        &self,
        node: u16,
        mut keep: impl FnMut(&[u8], u64) -> bool,
    ) -> Vec<(Box<[u8]>, u64)> {
        let guard = self.rows.guard();
        self.rows
            .iter(&guard)
            .filter(|(id, r)| r.location.node == node && !keep(id, r.epoch))
            .map(|(id, r)| (id.clone(), r.epoch))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: u16, slot: u32, epoch: u64) -> Row {
        Row {
            location: Location {
                node,
                worker: 0,
                slot,
                generation: 1,
            },
            epoch,
        }
    }

    #[test]
    fn newest_registration_wins_and_old_close_keeps_new_row() {
        let t = LocationTable::new();
        assert_eq!(t.register(b"a", row(0, 1, 1)), Registered::New);
        assert_eq!(
            t.register(b"a", row(0, 2, 2)),
            Registered::Replaced(row(0, 1, 1))
        );
        assert!(
            t.remove_if_at(b"a", row(0, 1, 1).location).is_none(),
            "stale close must not remove the new row"
        );
        assert_eq!(t.get(b"a", &t.raw_guard()), Some(row(0, 2, 2).location));
        assert_eq!(
            t.remove_if_at(b"a", row(0, 2, 2).location),
            Some(row(0, 2, 2))
        );
        assert_eq!(t.get(b"a", &t.raw_guard()), None);
        assert!(t.is_empty());
    }

    #[test]
    fn merge_is_order_independent_and_ties_break_by_node() {
        let rows = [row(1, 0, 5), row(2, 0, 7), row(3, 0, 7), row(1, 0, 6)];
        // Every order of applying the rows ends with the same winner: (7, node 3).
        let orders = [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]];
        for order in orders {
            let t = LocationTable::new();
            for i in order {
                t.register(b"x", rows[i]);
            }
            assert_eq!(t.row(b"x"), Some(row(3, 0, 7)), "order {order:?}");
        }
        let t = LocationTable::new();
        t.register(b"x", row(2, 0, 7));
        assert_eq!(
            t.register(b"x", row(1, 0, 7)),
            Registered::Lost(row(2, 0, 7))
        );
    }

    #[test]
    fn remove_exact_and_the_rows_not_kept_touch_only_the_named_rows() {
        let t = LocationTable::new();
        t.register(b"a", row(1, 0, 1));
        t.register(b"b", row(2, 0, 1));
        t.register(b"c", row(2, 0, 2));
        assert!(!t.remove_exact(b"a", 1, 9), "wrong epoch");
        assert!(!t.remove_exact(b"a", 2, 1), "wrong node");
        let doomed = t.node_rows_not_kept(2, |id, _| id == b"c");
        assert_eq!(doomed, vec![(Box::from(&b"b"[..]), 1)]);
        assert_eq!(t.len(), 3, "listing removes nothing");
        assert!(t.remove_exact(b"b", 2, 1));
        assert_eq!(t.rows_of(2), vec![(Box::from(&b"c"[..]), 2)]);
        assert!(t.remove_exact(b"a", 1, 1));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn relocate_moves_a_row_that_is_where_it_was_and_keeps_its_epoch() {
        let t = LocationTable::new();
        let at = |worker, slot| Location {
            node: 1,
            worker,
            slot,
            generation: 1,
        };
        assert_eq!(
            t.register(
                b"a",
                Row {
                    location: at(0, 3),
                    epoch: 7
                }
            ),
            Registered::New
        );
        assert!(t.relocate(b"a", at(0, 3), at(1, 9)));
        assert_eq!(
            t.row(b"a"),
            Some(Row {
                location: at(1, 9),
                epoch: 7
            })
        );
        assert!(
            !t.relocate(b"a", at(0, 3), at(1, 4)),
            "no longer where the move began"
        );
        assert!(!t.relocate(b"b", at(0, 3), at(1, 4)), "no row");
        assert_eq!(t.row(b"b"), None);
    }
}
