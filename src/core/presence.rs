//! Presence watches: watched client id -> the connections that watch it.
//!
//! Control path only (WATCH/UNWATCH, registration, close), so a mutex is fine here; the lock
//! is never taken per message. A watched id's list holds one entry per watching connection;
//! its `contains` scan is bounded by the connections that watch that one id.

use super::location::Location;
use super::topics::TableFull;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct PresenceTable {
    watchers: Mutex<HashMap<Box<[u8]>, Vec<Location>>>,
}

impl PresenceTable {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Vec<Location>>> {
        // Poison only means a panic elsewhere; the map is still consistent (single inserts).
        self.watchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn watch(&self, watched: &[u8], watcher: Location) {
        let _ = self.watch_within(watched, watcher, usize::MAX);
    }

    /// [`Self::watch`], unless `watched` is new and the table already holds `watched_ids_max`
    /// ids: then nothing changes and `Err(TableFull)` comes back.
    pub fn watch_within(
        &self,
        watched: &[u8],
        watcher: Location,
        watched_ids_max: usize,
    ) -> Result<(), TableFull> {
        let mut map = self.lock();
        if !map.contains_key(watched) && map.len() >= watched_ids_max {
            return Err(TableFull);
        }
        let list = map.entry(watched.into()).or_default();
        if !list.contains(&watcher) {
            list.push(watcher);
        }
        Ok(())
    }

    pub fn unwatch(&self, watched: &[u8], watcher: Location) {
        let mut map = self.lock();
        if let Some(list) = map.get_mut(watched) {
            list.retain(|l| *l != watcher);
            if list.is_empty() {
                map.remove(watched);
            }
        }
    }

    /// Appends the watchers of `watched` to `out` (a reused buffer).
    pub fn watchers_of(&self, watched: &[u8], out: &mut Vec<Location>) {
        if let Some(list) = self.lock().get(watched) {
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
        p.watchers_of(b"x", &mut out);
        assert_eq!(out, vec![w]);
        p.unwatch(b"x", w);
        out.clear();
        p.watchers_of(b"x", &mut out);
        assert!(out.is_empty());
    }
}
