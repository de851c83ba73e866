//! Topic interest: topic -> plain subscribers and queue groups.
//!
//! Readers (every PUBLISH) are lock-free: they load an immutable [`TopicEntry`] from papaya.
//! Writers (SUBSCRIBE/UNSUBSCRIBE, connection close) are serialised by a mutex and replace the
//! entry copy-on-write; they are control traffic, never on the message path.
//!
//! Literal topics live in one exact map (one lookup per publish); patterns (`a.*`, `a.>`,
//! [`super::subject`]) in a [`PatternTrie`], walked only while it holds any.

use super::flow::Congestion;
use super::location::Location;
use super::pattern_trie::PatternTrie;
use super::subject::is_pattern;
use super::table_hasher::TableHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct QueueGroup {
    pub name: Box<[u8]>,
    pub members: Box<[Location]>,
    /// Round-robin cursor, kept below the member count. Stepped with a relaxed load and store,
    /// not a read-modify-write: fairness, not correctness, depends on it, and two workers
    /// picking at once at worst start at the same member (the pick still passes over a
    /// congested one). A locked increment cost more than the rest of the pick.
    next: AtomicUsize,
}

/// Takes one step of a round-robin cursor over `n` members (n > 0) and returns where this
/// pick starts.
#[inline]
fn step(cursor: &AtomicUsize, n: usize) -> usize {
    let start = cursor.load(Ordering::Relaxed);
    // A group rebuilt smaller keeps its cursor (see `with_members`): wrap it here.
    let start = if start < n { start } else { 0 };
    let next = if start + 1 < n { start + 1 } else { 0 };
    cursor.store(next, Ordering::Relaxed);
    start
}

/// The index `k` places after `start` among `n` (both below `n`).
#[inline]
fn after(start: usize, k: usize, n: usize) -> usize {
    let i = start + k;
    if i < n {
        i
    } else {
        i - n
    }
}

/// Picks one member among the members of `groups` together (the groups of one name under
/// every subscription a subject matched, as NATS merges queue subscriptions by name),
/// round-robin on the first group's cursor, skipping `exclude` when another member exists
/// and preferring the least congested member (see [`QueueGroup::pick`]).
pub fn pick_among(
    groups: &[&QueueGroup],
    exclude: Option<Location>,
    congestion: impl Fn(Location) -> Congestion,
) -> Option<Location> {
    let [first, rest @ ..] = groups else {
        return None;
    };
    if rest.is_empty() {
        return first.pick(exclude, congestion);
    }
    let total: usize = groups.iter().map(|g| g.members.len()).sum();
    if total == 0 {
        return None;
    }
    let mut best = Best::default();
    let start = step(&first.next, total);
    for k in 0..total {
        let mut i = after(start, k, total);
        for g in groups {
            if i < g.members.len() {
                let m = g.members[i];
                if Some(m) != exclude && best.offer(m, congestion(m)) {
                    return Some(m);
                }
                break;
            }
            i -= g.members.len();
        }
    }
    best.member
}

/// The least congested member offered so far (the first of equals: round-robin order).
#[derive(Default)]
struct Best {
    member: Option<Location>,
    congestion: Option<Congestion>,
}

impl Best {
    /// Offers `m`; returns whether it is `Clear` (nothing can beat it: take it now).
    #[inline]
    fn offer(&mut self, m: Location, congestion: Congestion) -> bool {
        if congestion == Congestion::Clear {
            return true;
        }
        if !matches!(self.congestion, Some(c) if c <= congestion) {
            self.member = Some(m);
            self.congestion = Some(congestion);
        }
        false
    }
}

impl QueueGroup {
    /// Picks the next member round-robin, skipping `exclude` when another member exists and
    /// passing over congested members while a less congested one exists (the flow control's
    /// view, see [`Congestion`]): a member that stopped reading then neither receives more nor
    /// stalls the producer while the others can take the message. The common case, a clear
    /// member first, costs one cursor step and one look.
    pub fn pick(
        &self,
        exclude: Option<Location>,
        congestion: impl Fn(Location) -> Congestion,
    ) -> Option<Location> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let mut best = Best::default();
        // One step of the cursor per pick, however many members are looked at: round-robin
        // holds among equally congested members too.
        let start = step(&self.next, n);
        for k in 0..n {
            let m = self.members[after(start, k, n)];
            if Some(m) != exclude && best.offer(m, congestion(m)) {
                return Some(m);
            }
        }
        best.member
    }
}

#[derive(Debug, Default)]
pub struct TopicEntry {
    pub plain: Box<[Location]>,
    /// Shared between an entry and the copy that replaces it: a change rebuilds only the
    /// group it touches, so a topic with many groups costs one pointer copy per other group.
    pub groups: Box<[Arc<QueueGroup>]>,
}

impl TopicEntry {
    /// Subscribers of `group` (empty: plain subscribers) in this entry.
    fn members_of(&self, group: &[u8]) -> usize {
        if group.is_empty() {
            self.plain.len()
        } else {
            self.groups
                .iter()
                .find(|g| &*g.name == group)
                .map_or(0, |g| g.members.len())
        }
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    /// Whether this entry has subscribers in `group` (empty: plain subscribers).
    fn serves(&self, group: &[u8]) -> bool {
        if group.is_empty() {
            !self.plain.is_empty()
        } else {
            self.groups.iter().any(|g| &*g.name == group)
        }
    }

    fn with_added(&self, group: &[u8], who: Location) -> TopicEntry {
        let mut plain = self.plain.to_vec();
        let mut groups = self.groups.to_vec();
        if group.is_empty() {
            if !plain.contains(&who) {
                plain.push(who);
            }
        } else if let Some(g) = groups.iter_mut().find(|g| &*g.name == group) {
            if !g.members.contains(&who) {
                let mut members = g.members.to_vec();
                members.push(who);
                *g = Arc::new(g.with_members(members.into()));
            }
        } else {
            groups.push(Arc::new(QueueGroup {
                name: group.into(),
                members: Box::new([who]),
                next: AtomicUsize::new(0),
            }));
        }
        TopicEntry {
            plain: plain.into(),
            groups: groups.into(),
        }
    }

    fn with_removed(&self, group: &[u8], who: Location) -> TopicEntry {
        let plain: Vec<Location> = if group.is_empty() {
            self.plain.iter().copied().filter(|l| *l != who).collect()
        } else {
            self.plain.to_vec()
        };
        let mut groups = self.groups.to_vec();
        if !group.is_empty() {
            for g in groups.iter_mut().filter(|g| &*g.name == group) {
                let members = g.members.iter().copied().filter(|l| *l != who).collect();
                *g = Arc::new(g.with_members(members));
            }
            groups.retain(|g| !g.members.is_empty());
        }
        TopicEntry {
            plain: plain.into(),
            groups: groups.into(),
        }
    }
}

impl QueueGroup {
    /// The same group with other members (the round-robin cursor carries over).
    fn with_members(&self, members: Box<[Location]>) -> QueueGroup {
        QueueGroup {
            name: self.name.clone(),
            members,
            next: AtomicUsize::new(self.next.load(Ordering::Relaxed)),
        }
    }
}

/// A table is at one of its configured size limits; nothing was added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFull {
    /// A new key (topic, watched id) would pass the bound on distinct keys.
    Keys,
    /// A new entry (subscription, watch) would pass the bound on entries of all keys.
    Entries,
}

/// Size limits of a table: distinct keys, and entries under all keys together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableBounds {
    pub keys_max: usize,
    pub entries_max: usize,
}

impl TableBounds {
    pub const NONE: TableBounds = TableBounds {
        keys_max: usize::MAX,
        entries_max: usize::MAX,
    };
}

/// A topic's subscribers on this node, for operator views.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSummary {
    pub topic: Box<[u8]>,
    /// Plain subscribers.
    pub plain: usize,
    /// Queue groups and their members.
    pub groups: Vec<(Box<[u8]>, usize)>,
}

/// A (topic, queue group) pair; the group is empty for plain subscribers.
pub type TopicGroup = (Box<[u8]>, Box<[u8]>);

pub struct TopicTable {
    entries: papaya::HashMap<Box<[u8]>, Arc<TopicEntry>, TableHasher>,
    /// Entries of patterns (checked by the engine before they get here).
    patterns: PatternTrie<TopicEntry>,
    /// Writers' lock, holding the number of subscriptions (all topics and groups).
    writer: Mutex<usize>,
}

impl Default for TopicTable {
    fn default() -> Self {
        Self::new()
    }
}

impl TopicTable {
    pub fn new() -> Self {
        TopicTable {
            entries: papaya::HashMap::with_hasher(TableHasher::default()),
            patterns: PatternTrie::default(),
            writer: Mutex::new(0),
        }
    }

    pub fn raw_guard(&self) -> papaya::LocalGuard<'_> {
        self.entries.guard()
    }

    /// The guard of the pattern trie (a map of its own).
    pub fn patterns_guard(&self) -> papaya::LocalGuard<'_> {
        self.patterns.guard()
    }

    /// Whether any pattern has a subscriber (a relaxed load: a publish racing the first
    /// pattern subscription may miss it, as it may miss any racing subscription).
    #[inline]
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// Calls `matched` with the entry of every subscription that matches `subject`: the exact
    /// topic, then each matching pattern, each once.
    pub fn for_each_match<'g>(
        &self,
        subject: &[u8],
        guard: &'g impl papaya::Guard,
        patterns_guard: &'g impl papaya::Guard,
        mut matched: impl FnMut(&'g TopicEntry),
    ) {
        if let Some(e) = self.entries.get(subject, guard) {
            matched(e);
        }
        self.patterns
            .for_each_match(subject, patterns_guard, matched);
    }

    /// Lock-free lookup for a publish.
    #[inline]
    pub fn get<'g>(&self, topic: &[u8], guard: &'g impl papaya::Guard) -> Option<&'g TopicEntry> {
        self.entries.get(topic, guard).map(|e| &**e)
    }

    /// The lookup of the control path (SUBSCRIBE, UNSUBSCRIBE, checks): one out-of-line call
    /// site, so the message path's lookups ([`Self::get`] and the location table's, which
    /// share the map's code) are the ones the compiler inlines.
    #[inline(never)]
    fn entry_cold<'g>(
        &self,
        topic: &[u8],
        guard: &'g impl papaya::Guard,
    ) -> Option<&'g TopicEntry> {
        self.entries.get(topic, guard).map(|e| &**e)
    }

    /// Adds a subscriber; returns whether it is the first one of (topic, group) on this node
    /// (the cluster then tells peers about the interest).
    pub fn subscribe(&self, topic: &[u8], group: &[u8], who: Location) -> bool {
        self.subscribe_within(topic, group, who, TableBounds::NONE)
            .unwrap_or(false)
    }

    /// [`Self::subscribe`], unless `topic` is new and the table already holds
    /// `bounds.keys_max` topics, or it is a new subscription and the table holds
    /// `bounds.entries_max` of them: then nothing changes and `Err(TableFull)` comes back.
    pub fn subscribe_within(
        &self,
        topic: &[u8],
        group: &[u8],
        who: Location,
        bounds: TableBounds,
    ) -> Result<bool, TableFull> {
        let mut subscriptions = self.lock_writer();
        let keys_added = if is_pattern(topic) {
            self.patterns.nodes_to_add(topic)
        } else {
            usize::from(!self.has_entry(topic))
        };
        if keys_added > 0 && self.keys().saturating_add(keys_added) > bounds.keys_max {
            return Err(TableFull::Keys);
        }
        if *subscriptions >= bounds.entries_max {
            return Err(TableFull::Entries);
        }
        Ok(self.update_locked(&mut subscriptions, topic, group, |e| {
            e.with_added(group, who)
        }))
    }

    /// Removes a subscriber; returns whether it was the last one of (topic, group) here.
    pub fn unsubscribe(&self, topic: &[u8], group: &[u8], who: Location) -> bool {
        let mut subscriptions = self.lock_writer();
        self.update_locked(&mut subscriptions, topic, group, |e| {
            e.with_removed(group, who)
        })
    }

    /// Subscriptions held, all topics and groups together.
    pub fn subscriptions(&self) -> usize {
        *self.lock_writer()
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, usize> {
        // A poisoned lock only means another writer panicked; the map itself is consistent.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` (the writer lock is held, `subscriptions` is its count) and returns
    /// whether (topic, group) went from no subscriber to some or back.
    fn update_locked(
        &self,
        subscriptions: &mut usize,
        topic: &[u8],
        group: &[u8],
        change: impl FnOnce(&TopicEntry) -> TopicEntry,
    ) -> bool {
        let guard = self.entries.guard();
        let patterns_guard = self.patterns.guard();
        let empty = TopicEntry::default();
        let current = self
            .entry_any(topic, &guard, &patterns_guard)
            .unwrap_or(&empty);
        let next = change(current);
        let flipped = current.serves(group) != next.serves(group);
        let sum = *subscriptions + next.members_of(group);
        debug_assert!(
            sum >= current.members_of(group),
            "invariant: the count covers them"
        );
        *subscriptions = sum.saturating_sub(current.members_of(group));
        let next = (!next.is_empty()).then_some(next);
        if is_pattern(topic) {
            self.patterns.set(topic, next);
        } else if let Some(next) = next {
            self.entries.insert(topic.into(), Arc::new(next), &guard);
        } else {
            self.entries.remove(topic, &guard);
        }
        flipped
    }

    /// The entry of exactly `topic`, a literal topic or a pattern (control path).
    fn entry_any<'g>(
        &self,
        topic: &[u8],
        guard: &'g impl papaya::Guard,
        patterns_guard: &'g impl papaya::Guard,
    ) -> Option<&'g TopicEntry> {
        if is_pattern(topic) {
            self.patterns.get(topic, patterns_guard)
        } else {
            self.entry_cold(topic, guard)
        }
    }

    fn has_entry(&self, topic: &[u8]) -> bool {
        let (guard, patterns_guard) = (self.entries.guard(), self.patterns.guard());
        self.entry_any(topic, &guard, &patterns_guard).is_some()
    }

    /// Whether any local connection subscribes to `topic` (a literal topic or a pattern) in
    /// `group` (empty: plain).
    pub fn has_subscribers(&self, topic: &[u8], group: &[u8]) -> bool {
        let (guard, patterns_guard) = (self.entries.guard(), self.patterns.guard());
        self.entry_any(topic, &guard, &patterns_guard)
            .is_some_and(|e| e.serves(group))
    }

    /// Every `(topic, group)` with a local subscriber (group empty: plain), for the cluster's
    /// interest snapshot.
    pub fn interest(&self) -> Vec<TopicGroup> {
        let (guard, patterns_guard) = (self.entries.guard(), self.patterns.guard());
        let patterns = self.patterns.patterns(&patterns_guard);
        let literal = self.entries.iter(&guard).map(|(t, e)| (&**t, &**e));
        let mut out = Vec::new();
        for (topic, e) in literal.chain(patterns.iter().map(|(t, e)| (&**t, *e))) {
            if !e.plain.is_empty() {
                out.push((topic.into(), Box::from(&b""[..])));
            }
            for g in e.groups.iter() {
                out.push((topic.into(), g.name.clone()));
            }
        }
        out
    }

    /// Up to `limit` topics whose names sort after `after` (bytewise), in order, with their
    /// subscriber counts: one page of the operator's `/subscriptions` view. One pass over the
    /// table, keeping at most `limit` names (memory O(limit), time O(topics x log limit)).
    pub fn page(&self, after: &[u8], limit: usize) -> Vec<TopicSummary> {
        let (guard, patterns_guard) = (self.entries.guard(), self.patterns.guard());
        let mut smallest: std::collections::BinaryHeap<&[u8]> =
            std::collections::BinaryHeap::with_capacity(limit + 1);
        let patterns = self.patterns.patterns(&patterns_guard);
        let literal = self.entries.iter(&guard).map(|(t, _)| &**t);
        for name in literal.chain(patterns.iter().map(|(t, _)| &**t)) {
            if name <= after || limit == 0 {
                continue;
            }
            if smallest.len() < limit {
                smallest.push(name);
            } else if smallest.peek().is_some_and(|&largest| name < largest) {
                smallest.pop();
                smallest.push(name);
            }
        }
        let mut names = smallest.into_vec();
        names.sort_unstable();
        names
            .into_iter()
            .filter_map(|name| {
                let e = self.entry_any(name, &guard, &patterns_guard)?;
                Some(TopicSummary {
                    topic: name.into(),
                    plain: e.plain.len(),
                    groups: e
                        .groups
                        .iter()
                        .map(|g| (g.name.clone(), g.members.len()))
                        .collect(),
                })
            })
            .collect()
    }

    /// Number of topics and patterns with at least one subscriber.
    pub fn len(&self) -> usize {
        self.entries.len() + self.patterns.len()
    }

    /// Keys held, what `topics_max` bounds: each topic, and each node of the pattern trie (a
    /// pattern takes one per token it does not share with another pattern), so that the
    /// memory a key costs is bounded by one topic's (`memory_budget::TOPIC_BYTES`).
    pub fn keys(&self) -> usize {
        self.entries.len() + self.patterns.node_count().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(slot: u32) -> Location {
        Location {
            node: 0,
            worker: 0,
            slot,
            generation: 1,
        }
    }

    fn group(slots: &[u32]) -> QueueGroup {
        QueueGroup {
            name: Box::from(&b"g"[..]),
            members: slots.iter().map(|&s| loc(s)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    #[test]
    fn a_pick_passes_over_congested_members_while_a_less_congested_one_exists() {
        let g = group(&[1, 2, 3]);
        let rank = |m: Location| match m.slot {
            1 => Congestion::Behind,
            2 => Congestion::Stalling,
            _ => Congestion::Clear,
        };
        for _ in 0..6 {
            assert_eq!(g.pick(None, rank), Some(loc(3)), "the clear member");
        }
        assert_eq!(
            g.pick(Some(loc(3)), rank),
            Some(loc(2)),
            "a stalling member before one that is behind"
        );
        let all_behind = |_| Congestion::Behind;
        let picks: Vec<u32> = (0..3)
            .map(|_| g.pick(None, all_behind).unwrap().slot)
            .collect();
        let mut sorted = picks.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 3], "round-robin among equals: {picks:?}");
        let only = group(&[4]);
        assert_eq!(only.pick(Some(loc(4)), all_behind), None, "excluded");
        let merged = [&group(&[1, 2]), &group(&[3])];
        for _ in 0..4 {
            assert_eq!(pick_among(&merged, None, rank), Some(loc(3)));
        }
    }

    #[test]
    fn pages_list_topics_in_order_after_a_name_with_their_counts() {
        let t = TopicTable::new();
        for (i, name) in [b"d", b"a", b"c", b"b", b"e"].iter().enumerate() {
            t.subscribe(&name[..], b"", loc(i as u32));
        }
        t.subscribe(b"c", b"workers", loc(9));
        t.subscribe(b"c", b"workers", loc(10));
        let names = |p: Vec<TopicSummary>| -> Vec<Vec<u8>> {
            p.into_iter().map(|s| s.topic.to_vec()).collect()
        };
        assert_eq!(names(t.page(b"", 2)), [b"a".to_vec(), b"b".to_vec()]);
        let page = t.page(b"b", 2);
        assert_eq!(
            page[0],
            TopicSummary {
                topic: Box::from(&b"c"[..]),
                plain: 1,
                groups: vec![(Box::from(&b"workers"[..]), 2)],
            }
        );
        assert_eq!(names(page), [b"c".to_vec(), b"d".to_vec()]);
        assert_eq!(names(t.page(b"d", 10)), [b"e".to_vec()]);
        assert!(t.page(b"e", 10).is_empty());
        assert!(t.page(b"", 0).is_empty());
    }

    #[test]
    fn subscribe_unsubscribe_and_empty_topics_vanish() {
        let t = TopicTable::new();
        assert!(t.subscribe(b"t", b"", loc(1)), "first plain subscriber");
        assert!(!t.subscribe(b"t", b"", loc(1)));
        assert!(t.subscribe(b"t", b"g", loc(2)), "first member of g");
        assert!(!t.subscribe(b"t", b"g", loc(3)));
        assert!(t.has_subscribers(b"t", b"g"));
        assert_eq!(t.interest().len(), 2);
        {
            let g = t.raw_guard();
            let e = t.get(b"t", &g).unwrap();
            assert_eq!(&*e.plain, &[loc(1)], "duplicate subscribe is idempotent");
            assert_eq!(e.groups.len(), 1);
            assert_eq!(&*e.groups[0].members, &[loc(2), loc(3)]);
        }
        assert!(t.unsubscribe(b"t", b"", loc(1)), "last plain subscriber");
        assert!(!t.unsubscribe(b"t", b"g", loc(2)));
        assert!(t.unsubscribe(b"t", b"g", loc(3)), "last member of g");
        assert!(t.is_empty());
    }

    #[test]
    fn queue_group_round_robins_and_skips_the_excluded_member() {
        let t = TopicTable::new();
        for s in 1..=3 {
            t.subscribe(b"t", b"g", loc(s));
        }
        let g = t.raw_guard();
        let group = &t.get(b"t", &g).unwrap().groups[0];
        let picks: Vec<u32> = (0..6)
            .map(|_| group.pick(None, |_| Congestion::Clear).unwrap().slot)
            .collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
        for _ in 0..6 {
            assert_ne!(
                group.pick(Some(loc(2)), |_| Congestion::Clear),
                Some(loc(2))
            );
        }
    }

    #[test]
    fn a_group_rebuilt_smaller_wraps_its_cursor_and_merged_groups_round_robin_together() {
        let big = group(&[1, 2, 3, 4, 5]);
        for _ in 0..4 {
            big.pick(None, |_| Congestion::Clear);
        }
        let small = big.with_members([loc(1), loc(2)].into());
        let picks: Vec<u32> = (0..4)
            .map(|_| small.pick(None, |_| Congestion::Clear).unwrap().slot)
            .collect();
        assert_eq!(picks, [1, 2, 1, 2], "the cursor (4) wrapped to the start");
        let empty = group(&[]);
        assert_eq!(empty.pick(None, |_| Congestion::Clear), None);
        let (a, b) = (group(&[1, 2]), group(&[3]));
        let merged = [&a, &b];
        let picks: Vec<u32> = (0..6)
            .map(|_| {
                pick_among(&merged, None, |_| Congestion::Clear)
                    .unwrap()
                    .slot
            })
            .collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3]);
    }
}
