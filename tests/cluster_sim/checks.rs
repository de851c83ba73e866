//! The invariants, checked after every fault and client operation and every few
//! simulated milliseconds, and the convergence predicate of a quiet phase.

use super::world::{lossy, World};
use super::*;
use ringrelay::core::Row;

/// A row of a registration that is gone (or of an older epoch) may survive at most this long
/// on a node, counting only time when neither the holder nor the owner is paused: the death
/// bound (`cluster_peer_dead_after_ms`), a tick, and the slow network path.
pub const STALE_ROW_MS: u64 = 3_000 + 2 * TICK_MS + 300 + 200;
/// The same when the incarnation that registered the row has died or restarted since: its
/// late bytes (held back by a partition) or its successor's link-up (whose snapshot a new
/// partition holds back) count as hearing from the node, so the failure detector may start
/// once more: two death bounds.
pub const STALE_ROW_RESTARTED_MS: u64 = 2 * 3_000 + 2 * TICK_MS + 300 + 200;
/// A watcher of a client of a node that dies hears `offline` within this (death bound plus
/// slack), plus any time its own node was paused.
pub const OFFLINE_MS: u64 = 3_000 + 2 * TICK_MS + 300 + 200;

/// Watchers owed an `offline`.
struct Owed {
    watcher: usize,
    id: Box<[u8]>,
    dead_node: u16,
    since_ms: u64,
}

/// A remote row as (holder, id, owner, epoch).
type RowKey = (u16, Box<[u8]>, u16, u64);

#[derive(Default)]
pub struct CheckState {
    /// (holder, id, owner, epoch) -> unpaused milliseconds it has been stale.
    stale: BTreeMap<RowKey, u64>,
    last_check_ms: u64,
    owed: Vec<Owed>,
    /// (receiver, sender) -> when the receiver last read a message from a dead incarnation
    /// of the sender (late bytes a partition held back).
    pub last_heard_ms: BTreeMap<(u16, u16), u64>,
}

impl CheckState {
    /// `dead` just died: every watcher (elsewhere) of one of its clients is owed `offline`.
    pub fn on_kill(&mut self, w: &World, dead: &Node) {
        for (c, client) in w.clients.iter().enumerate() {
            if !client.open || client.node == dead.id {
                continue;
            }
            let Some(holder) = w.alive(client.node) else {
                continue;
            };
            for id in &client.watches {
                let owner = holder.tables.locations.row(id).map(|r| r.location.node);
                if owner == Some(dead.id) {
                    self.owed.push(Owed {
                        watcher: c,
                        id: id.clone(),
                        dead_node: dead.id,
                        since_ms: w.now,
                    });
                }
            }
        }
    }
}

impl World {
    pub fn check_invariants(&mut self) -> Result<(), String> {
        let elapsed = self.now - self.checks.last_check_ms;
        self.checks.last_check_ms = self.now;
        for id in 1..=self.n {
            self.check_local_rows(id)?;
        }
        self.check_stale_rows(elapsed)?;
        self.check_offline_owed()
    }

    /// Every local row is an open client of this node, and every open client holds its row:
    /// so at most one local owner per id.
    fn check_local_rows(&self, id: u16) -> Result<(), String> {
        let Some(n) = self.alive(id) else {
            return Ok(());
        };
        let mut open: BTreeMap<&[u8], &Client> = BTreeMap::new();
        for c in self.clients.iter().filter(|c| c.open && c.node == id) {
            if let Some(other) = open.insert(&c.id, c) {
                return Err(format!(
                    "n{id} has two open connections for {}: slots {} and {}",
                    lossy(&c.id),
                    other.at.slot,
                    c.at.slot
                ));
            }
            let want = Row {
                location: c.at,
                epoch: c.epoch,
            };
            if n.tables.locations.row(&c.id) != Some(want) {
                return Err(format!(
                    "open client {} on n{id} (slot {}, epoch {}) does not hold its row: {:?}",
                    lossy(&c.id),
                    c.at.slot,
                    c.epoch,
                    n.tables.locations.row(&c.id)
                ));
            }
        }
        for (rid, row) in n.tables.locations.all_rows() {
            if row.location.node == id && !open.contains_key(&rid[..]) {
                return Err(format!(
                    "n{id} holds a local row for {} and no open client",
                    lossy(&rid)
                ));
            }
        }
        Ok(())
    }

    /// Whether `owner` (alive) has an open client `id` registered at `epoch`.
    fn justified(&self, owner: u16, id: &[u8], epoch: u64) -> bool {
        self.alive(owner).is_some()
            && self
                .clients
                .iter()
                .any(|c| c.open && c.node == owner && c.epoch == epoch && *c.id == *id)
    }

    /// Whether the row (owner, id, epoch) was registered by the incarnation of `owner` that
    /// runs now.
    fn registered_by_running(&self, owner: u16, id: &[u8], epoch: u64) -> bool {
        let running = self.alive(owner).map(|n| n.incarnation);
        self.clients
            .iter()
            .find(|c| c.node == owner && c.epoch == epoch && *c.id == *id)
            .is_some_and(|c| Some(c.incarnation) == running)
    }

    fn paused(&self, id: u16) -> bool {
        self.alive(id).is_some_and(|n| n.paused(self.now))
    }

    /// A remote row whose registration is gone disappears within [`STALE_ROW_MS`].
    fn check_stale_rows(&mut self, elapsed: u64) -> Result<(), String> {
        let mut seen = BTreeMap::new();
        for holder in 1..=self.n {
            let Some(n) = self.alive(holder) else {
                continue;
            };
            for (id, row) in n.tables.locations.all_rows() {
                let owner = row.location.node;
                if owner == holder || self.justified(owner, &id, row.epoch) {
                    continue;
                }
                let key = (holder, id, owner, row.epoch);
                let mut age = self.checks.stale.get(&key).copied().unwrap_or(0);
                // The death bound counts from the last message heard: a dead incarnation's
                // bytes that a partition held back in its host's kernel arrive on the heal
                // and count as hearing from it (README: "3 s after its last heartbeat"),
                // even if the node has restarted meanwhile.
                let heard = self.checks.last_heard_ms.get(&(holder, owner)).copied();
                if heard.is_some_and(|t| t + elapsed >= self.now) {
                    age = 0;
                }
                if !self.paused(holder) && !self.paused(owner) {
                    age += elapsed;
                }
                let bound = if self.registered_by_running(owner, &key.1, key.3) {
                    STALE_ROW_MS
                } else {
                    STALE_ROW_RESTARTED_MS
                };
                if age > bound {
                    return Err(format!(
                        "ghost row on n{holder}: {} owned by n{owner} at epoch {} has had no live registration for {age} ms (bound {bound} ms)",
                        lossy(&key.1),
                        key.3
                    ));
                }
                seen.insert(key, age);
            }
        }
        self.checks.stale = seen;
        Ok(())
    }

    /// Watchers of a dead node's clients hear `offline` in time.
    fn check_offline_owed(&mut self) -> Result<(), String> {
        let mut still = Vec::new();
        for owed in std::mem::take(&mut self.checks.owed) {
            let w = &self.clients[owed.watcher];
            let heard = w
                .presence
                .iter()
                .any(|(t, id, online)| *t >= owed.since_ms && *id == owed.id && !online);
            let holder = self
                .alive(w.node)
                .filter(|n| n.incarnation == w.incarnation);
            let moved = holder.is_some_and(|n| {
                n.tables
                    .locations
                    .row(&owed.id)
                    .is_some_and(|r| r.location.node != owed.dead_node)
            });
            if heard || moved || !w.open || holder.is_none() {
                continue;
            }
            // The bound counts from the later of the death and the end of a pause of the
            // watcher's node (a paused node reads nothing).
            let paused_until = holder.map_or(0, |n| n.paused_until_ms);
            let due = owed.since_ms.max(paused_until) + OFFLINE_MS;
            if self.now > due {
                return Err(format!(
                    "watcher {} on n{} never heard {} (on dead n{}) go offline within {OFFLINE_MS} ms",
                    lossy(&w.id),
                    w.node,
                    lossy(&owed.id),
                    owed.dead_node
                ));
            }
            still.push(owed);
        }
        self.checks.owed = still;
        Ok(())
    }

    /// The quiet phase's goal: every live node ready, linked to every other, holding exactly
    /// the live registrations (one per id cluster-wide), with its data links up; peers dead
    /// in the simulation are not up anywhere.
    pub fn converged(&self) -> Result<(), String> {
        let live: Vec<u16> = (1..=self.n).filter(|&i| self.alive(i).is_some()).collect();
        let mut expected = BTreeSet::new();
        let mut ids = BTreeSet::new();
        for c in self.clients.iter().filter(|c| c.open) {
            if !ids.insert(c.id.clone()) {
                return Err(format!("{} is open on two nodes", lossy(&c.id)));
            }
            expected.insert((c.id.clone(), c.node, c.epoch));
        }
        for &x in &live {
            let Some(n) = self.alive(x) else { continue };
            if !n.ready {
                return Err(format!("n{x} not ready"));
            }
            for y in 1..=self.n {
                let state = n.peer_state(y);
                if y != x && live.contains(&y) && state != Some(PeerState::Up) {
                    return Err(format!("n{x} sees n{y} as {state:?}"));
                }
                if !live.contains(&y) && state == Some(PeerState::Up) {
                    return Err(format!("n{x} sees dead n{y} as up"));
                }
                let current = self.alive(y).map(|p| p.incarnation);
                for w in 0..WORKERS {
                    if y != x && live.contains(&y) && n.data_out.get(&(y, w)).copied() != current {
                        return Err(format!(
                            "n{x} worker {w} has no data link to the running n{y}"
                        ));
                    }
                }
            }
            let got: BTreeSet<(Box<[u8]>, u16, u64)> = n
                .tables
                .locations
                .all_rows()
                .into_iter()
                .map(|(id, r)| (id, r.location.node, r.epoch))
                .collect();
            if got != expected {
                let extra: Vec<_> = got
                    .difference(&expected)
                    .map(|(i, n, e)| (lossy(i), *n, *e))
                    .collect();
                let missing: Vec<_> = expected
                    .difference(&got)
                    .map(|(i, n, e)| (lossy(i), *n, *e))
                    .collect();
                return Err(format!(
                    "n{x}'s table differs: extra {extra:?}, missing {missing:?}"
                ));
            }
        }
        Ok(())
    }
}
