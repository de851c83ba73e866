//! Presence watches: watched client id -> the connections that watch it.
//!
//! Control path only (WATCH/UNWATCH, registration, close), so a mutex is fine here; the lock
//! is never taken per message. A watched id's list holds one entry per watching connection;
//! its `contains` scan is bounded by the connections that watch that one id.
//!
//! A WATCH and a change racing it reach the watcher once: a change of an id's location row is
//! made while the table is [`PresenceTable::hold`]-ed, with that id's watchers read under the
//! same hold, and WATCH adds its watcher and reads the row under it too. So a WATCH either
//! comes first (it answers "offline" and the change notifies it) or after (it answers "online"
//! and was not there to be notified); without the hold a registration racing a WATCH told the
//! watcher "online" twice.
//! (A local registration that replaces a local holder of the id still tells watchers "online"
//! again: the id stays online, on a new connection.)

use super::location::Location;
use super::topics::{TableBounds, TableFull};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct PresenceTable {
    watchers: Mutex<Watchers>,
}

/// Watched id -> its watchers, and the number of watches of all ids together.
#[derive(Default)]
struct Watchers {
    by_id: HashMap<Box<[u8]>, Vec<Location>>,
    watches: usize,
}

impl PresenceTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watchers> {
        // Poison only means a panic elsewhere; the map is still consistent (single inserts).
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn watch(&self, watched: &[u8], watcher: Location) {
        let _ = self
            .hold()
            .watch_within(watched, watcher, TableBounds::NONE);
    }

    /// The table, locked until the hold is dropped (see the module's note). Hold it only for
    /// a row change or a row read and the watcher list that goes with it; send nothing under
    /// it.
    pub fn hold(&self) -> Held<'_> {
        Held(self.lock())
    }

    pub fn unwatch(&self, watched: &[u8], watcher: Location) {
        let mut table = self.lock();
        let table = &mut *table;
        if let Some(list) = table.by_id.get_mut(watched) {
            let before = list.len();
            list.retain(|l| *l != watcher);
            table.watches = table.watches.saturating_sub(before - list.len());
            if list.is_empty() {
                table.by_id.remove(watched);
            }
        }
    }

    /// Watches held, all ids together.
    pub fn watches(&self) -> usize {
        self.lock().watches
    }
}

/// The presence table locked (from [`PresenceTable::hold`]).
pub struct Held<'a>(std::sync::MutexGuard<'a, Watchers>);

impl Held<'_> {
    /// Adds `watcher` to `watched`'s list, unless `watched` is new and the table already holds
    /// `bounds.keys_max` ids, or it is a new watch and the table holds `bounds.entries_max`
    /// watches: then nothing changes and `Err(TableFull)` comes back.
    pub fn watch_within(
        &mut self,
        watched: &[u8],
        watcher: Location,
        bounds: TableBounds,
    ) -> Result<(), TableFull> {
        let table = &mut *self.0;
        if !table.by_id.contains_key(watched) && table.by_id.len() >= bounds.keys_max {
            return Err(TableFull::Keys);
        }
        if table.watches >= bounds.entries_max {
            return Err(TableFull::Entries);
        }
        let list = table.by_id.entry(watched.into()).or_default();
        if !list.contains(&watcher) {
            list.push(watcher);
            table.watches += 1;
        }
        Ok(())
    }

    /// Appends the watchers of `watched` to `out` (a reused buffer).
    pub fn watchers_of(&self, watched: &[u8], out: &mut Vec<Location>) {
        if let Some(list) = self.0.by_id.get(watched) {
            out.extend_from_slice(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_unwatch() {
        let p = PresenceTable::new();
        let w = Location {
            node: 0,
            worker: 1,
            slot: 2,
            generation: 3,
        };
        p.watch(b"x", w);
        p.watch(b"x", w);
        let mut out = Vec::new();
        p.hold().watchers_of(b"x", &mut out);
        assert_eq!(out, vec![w]);
        p.unwatch(b"x", w);
        out.clear();
        p.hold().watchers_of(b"x", &mut out);
        assert!(out.is_empty());
    }
}
