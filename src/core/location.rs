//! Client-location table: client id -> where its connection lives.
//!
//! Read lock-free on every SEND (papaya: epoch-based, readers never block and never write
//! shared cache lines). Written only on registration and close. Rows carry the owning `node`
//! so the cluster can add remote rows without changing readers.

use foldhash::fast::RandomState;

/// Where a client's connection lives. `generation` tells a reused connection slot apart from
/// the connection that held it before, so a stale row or queued message never reaches a new
/// client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    pub node: u16,
    pub worker: u16,
    pub slot: u32,
    pub generation: u32,
}

/// Result of a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registered {
    /// The id was free.
    New,
    /// The id was held by another live connection, which must now be closed as "replaced".
    Replaced(Location),
}

pub struct LocationTable {
    rows: papaya::HashMap<Box<[u8]>, Location, RandomState>,
}

impl Default for LocationTable {
    fn default() -> Self {
        Self::new()
    }
}

impl LocationTable {
    pub fn new() -> Self {
        LocationTable {
            rows: papaya::HashMap::with_capacity_and_hasher(1024, RandomState::default()),
        }
    }

    /// A guard for a batch of lookups; hold it only for a batch (it delays reclamation).
    pub fn raw_guard(&self) -> papaya::LocalGuard<'_> {
        self.rows.guard()
    }

    /// Lock-free lookup.
    #[inline]
    pub fn get(&self, client_id: &[u8], guard: &impl papaya::Guard) -> Option<Location> {
        self.rows.get(client_id, guard).copied()
    }

    /// Registers `client_id` at `location`; the newest registration wins.
    pub fn register(&self, client_id: &[u8], location: Location) -> Registered {
        let guard = self.rows.guard();
        match self.rows.insert(client_id.into(), location, &guard) {
            Some(old) if *old != location => Registered::Replaced(*old),
            _ => Registered::New,
        }
    }

    /// Removes the row only if it still points at `location` (a newer registration of the same
    /// id must survive the old connection's close). Returns whether it removed it.
    pub fn remove_if_at(&self, client_id: &[u8], location: Location) -> bool {
        let guard = self.rows.guard();
        matches!(
            self.rows
                .remove_if(client_id, |_, loc| *loc == location, &guard),
            Ok(Some(_))
        )
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

    fn loc(slot: u32, generation: u32) -> Location {
        Location {
            node: 0,
            worker: 0,
            slot,
            generation,
        }
    }

    #[test]
    fn newest_registration_wins_and_old_close_keeps_new_row() {
        let t = LocationTable::new();
        assert_eq!(t.register(b"a", loc(1, 1)), Registered::New);
        assert_eq!(t.register(b"a", loc(2, 1)), Registered::Replaced(loc(1, 1)));
        assert!(
            !t.remove_if_at(b"a", loc(1, 1)),
            "stale close must not remove the new row"
        );
        assert_eq!(t.get(b"a", &t.raw_guard()), Some(loc(2, 1)));
        assert!(t.remove_if_at(b"a", loc(2, 1)));
        assert_eq!(t.get(b"a", &t.raw_guard()), None);
        assert!(t.is_empty());
    }
}
