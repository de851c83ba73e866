//! Remote topic interest: topic -> the other nodes that have subscribers for it.
//!
//! A publish reads it lock-free (like [`super::topics`]) to forward one copy to each node with
//! plain subscribers, and to one node per queue group that has no local member. Written only
//! by the cluster control thread when a peer reports its first subscribe or last unsubscribe
//! of a (topic, group), or replaces its whole interest on link-up, or dies.

use super::pattern_trie::PatternTrie;
use super::subject::is_pattern;
use super::table_hasher::TableHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct RemoteGroup {
    pub name: Box<[u8]>,
    pub nodes: Box<[u16]>,
    /// Round-robin cursor over `nodes`; relaxed: fairness only.
    next: AtomicUsize,
}

impl RemoteGroup {
    /// The next node with members of this group, round-robin.
    pub fn pick(&self) -> Option<u16> {
        let n = self.nodes.len();
        if n == 0 {
            return None;
        }
        Some(self.nodes[self.next.fetch_add(1, Ordering::Relaxed) % n])
    }
}

/// Picks one node among the nodes of `groups` together (one group name under every pattern
/// and topic a subject matched), round-robin on the first group's cursor.
pub fn pick_node_among(groups: &[&RemoteGroup]) -> Option<u16> {
    let [first, rest @ ..] = groups else {
        return None;
    };
    if rest.is_empty() {
        return first.pick();
    }
    let total: usize = groups.iter().map(|g| g.nodes.len()).sum();
    if total == 0 {
        return None;
    }
    let mut i = first.next.fetch_add(1, Ordering::Relaxed) % total;
    for g in groups {
        if i < g.nodes.len() {
            return Some(g.nodes[i]);
        }
        i -= g.nodes.len();
    }
    None
}

#[derive(Debug, Default)]
pub struct RemoteInterest {
    /// Nodes with plain subscribers, sorted.
    pub plain: Box<[u16]>,
    pub groups: Box<[RemoteGroup]>,
}

impl RemoteInterest {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }

    fn with(&self, node: u16, group: &[u8], present: bool) -> RemoteInterest {
        let edit = |nodes: &[u16]| -> Box<[u16]> {
            let mut v: Vec<u16> = nodes.iter().copied().filter(|&n| n != node).collect();
            if present {
                v.push(node);
                v.sort_unstable();
            }
            v.into()
        };
        let mut plain = self.plain.clone();
        let mut groups: Vec<RemoteGroup> = self
            .groups
            .iter()
            .map(|g| RemoteGroup {
                name: g.name.clone(),
                nodes: g.nodes.clone(),
                next: AtomicUsize::new(g.next.load(Ordering::Relaxed)),
            })
            .collect();
        if group.is_empty() {
            plain = edit(&plain);
        } else if let Some(g) = groups.iter_mut().find(|g| &*g.name == group) {
            g.nodes = edit(&g.nodes);
        } else if present {
            groups.push(RemoteGroup {
                name: group.into(),
                nodes: Box::new([node]),
                next: AtomicUsize::new(0),
            });
        }
        groups.retain(|g| !g.nodes.is_empty());
        RemoteInterest {
            plain,
            groups: groups.into(),
        }
    }
}

pub struct InterestTable {
    entries: papaya::HashMap<Box<[u8]>, Arc<RemoteInterest>, TableHasher>,
    /// Interest in patterns (a peer checked them before it announced them).
    patterns: PatternTrie<RemoteInterest>,
    /// Exact topics in `entries`, kept by writers (under `writer`): with none (a standalone
    /// node, or a cluster whose peers subscribe to nothing) `get` skips hashing the topic.
    exact_topics: AtomicUsize,
    writer: Mutex<()>,
}

impl Default for InterestTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InterestTable {
    pub fn new() -> Self {
        InterestTable {
            entries: papaya::HashMap::with_hasher(TableHasher::default()),
            patterns: PatternTrie::default(),
            exact_topics: AtomicUsize::new(0),
            writer: Mutex::new(()),
        }
    }

    pub fn raw_guard(&self) -> papaya::LocalGuard<'_> {
        self.entries.guard()
    }

    /// The guard of the pattern trie (a map of its own).
    pub fn patterns_guard(&self) -> papaya::LocalGuard<'_> {
        self.patterns.guard()
    }

    /// Whether any peer announced interest in a pattern (relaxed, as [`super::topics`]).
    #[inline]
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    /// Calls `matched` with the interest in the exact topic `subject`, then in each pattern
    /// that matches it, each once.
    pub fn for_each_match<'g>(
        &self,
        subject: &[u8],
        guard: &'g impl papaya::Guard,
        patterns_guard: &'g impl papaya::Guard,
        mut matched: impl FnMut(&'g RemoteInterest),
    ) {
        if let Some(e) = self.entries.get(subject, guard) {
            matched(e);
        }
        self.patterns
            .for_each_match(subject, patterns_guard, matched);
    }

    /// Lock-free lookup.
    #[inline]
    pub fn get<'g>(
        &self,
        topic: &[u8],
        guard: &'g impl papaya::Guard,
    ) -> Option<&'g Arc<RemoteInterest>> {
        // Relaxed, as `has_patterns` (the count goes up before an entry is published): a
        // publish racing a peer's first announcement may miss it, as it may miss an
        // announcement still on its way.
        if self.exact_topics.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.entries.get(topic, guard)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `node` has (or no longer has) subscribers of `topic` in `group` (empty:
    /// plain subscribers).
    pub fn set(&self, node: u16, topic: &[u8], group: &[u8], present: bool) {
        let _w = self.lock();
        let (guard, patterns_guard) = (self.entries.guard(), self.patterns.guard());
        let pattern = is_pattern(topic);
        let current = if pattern {
            self.patterns.get(topic, &patterns_guard)
        } else {
            self.entries.get(topic, &guard).map(|e| &**e)
        };
        let next = match current {
            Some(e) => e.with(node, group, present),
            None if present => RemoteInterest::default().with(node, group, true),
            None => return,
        };
        let next = (!next.is_empty()).then_some(next);
        if pattern {
            self.patterns.set(topic, next);
        } else if let Some(next) = next {
            // Counted before the entry is published (papaya's insert releases it), so a
            // thread that sees the entry sees the count too; as `PatternTrie::set` does.
            if current.is_none() {
                self.exact_topics.fetch_add(1, Ordering::Relaxed);
            }
            self.entries.insert(topic.into(), Arc::new(next), &guard);
        } else if self.entries.remove(topic, &guard).is_some() {
            self.exact_topics.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Every topic and pattern with its interest (control path).
    fn each<'g>(
        &self,
        guard: &'g impl papaya::Guard,
        patterns_guard: &'g impl papaya::Guard,
    ) -> Vec<(Box<[u8]>, &'g RemoteInterest)> {
        let mut all: Vec<(Box<[u8]>, &'g RemoteInterest)> = self
            .entries
            .iter(guard)
            .map(|(t, e)| (t.clone(), &**e))
            .collect();
        all.extend(self.patterns.patterns(patterns_guard));
        all
    }

    /// Forgets every interest of `node` (it died, or is about to send its full interest).
    pub fn drop_node(&self, node: u16) {
        // (topic, groups the node is in, whether it has plain subscribers there)
        type NodeEntry = (Box<[u8]>, Vec<Box<[u8]>>, bool);
        let entries: Vec<NodeEntry> = {
            let (guard, patterns_guard) = (self.entries.guard(), self.patterns.guard());
            self.each(&guard, &patterns_guard)
                .into_iter()
                .map(|(t, e)| {
                    let groups = e
                        .groups
                        .iter()
                        .filter(|g| g.nodes.contains(&node))
                        .map(|g| g.name.clone())
                        .collect();
                    (t, groups, e.plain.contains(&node))
                })
                .collect()
        };
        for (topic, groups, plain) in entries {
            if plain {
                self.set(node, &topic, b"", false);
            }
            for g in groups {
                self.set(node, &topic, &g, false);
            }
        }
    }

    /// Every `(topic, group, node)` (status and tests), sorted.
    pub fn all(&self) -> Vec<(super::topics::TopicGroup, u16)> {
        let (guard, patterns_guard) = (self.entries.guard(), self.patterns.guard());
        let mut out = Vec::new();
        for (t, e) in self.each(&guard, &patterns_guard) {
            for &n in e.plain.iter() {
                out.push(((t.clone(), Box::from(&b""[..])), n));
            }
            for g in e.groups.iter() {
                for &n in g.nodes.iter() {
                    out.push(((t.clone(), g.name.clone()), n));
                }
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_drop_node_keep_sorted_sets_and_remove_empty_topics() {
        let t = InterestTable::new();
        t.set(3, b"t", b"", true);
        t.set(2, b"t", b"", true);
        t.set(2, b"t", b"", true);
        t.set(2, b"t", b"g", true);
        t.set(4, b"t", b"g", true);
        {
            let g = t.raw_guard();
            let e = t.get(b"t", &g).unwrap();
            assert_eq!(&*e.plain, &[2, 3]);
            let picks: Vec<_> = (0..4).map(|_| e.groups[0].pick().unwrap()).collect();
            assert_eq!(picks, [2, 4, 2, 4]);
        }
        t.drop_node(2);
        assert_eq!(
            t.all(),
            vec![
                ((Box::from(&b"t"[..]), Box::from(&b""[..])), 3),
                ((Box::from(&b"t"[..]), Box::from(&b"g"[..])), 4)
            ]
        );
        t.set(3, b"t", b"", false);
        t.set(4, b"t", b"g", false);
        assert!(t.all().is_empty());
        assert!(t.get(b"t", &t.raw_guard()).is_none());
        t.set(9, b"none", b"", false);
        assert!(t.all().is_empty());
    }

    #[test]
    fn the_exact_topic_count_follows_every_insert_and_removal() {
        let t = InterestTable::new();
        let count = |t: &InterestTable| t.exact_topics.load(Ordering::Relaxed);
        t.set(1, b"a", b"", true);
        t.set(2, b"a", b"g", true); // the same topic: no new entry
        t.set(1, b"b", b"", true);
        t.set(1, b"p.*", b"", true); // a pattern lives in the trie
        assert_eq!(count(&t), 2);
        t.set(1, b"a", b"", false); // a's group is still there
        assert_eq!(count(&t), 2);
        t.set(2, b"a", b"g", false);
        t.set(7, b"never", b"", false);
        assert_eq!(count(&t), 1);
        assert!(t.get(b"a", &t.raw_guard()).is_none());
        assert!(t.get(b"b", &t.raw_guard()).is_some());
        t.drop_node(1);
        assert_eq!(count(&t), 0);
        assert!(t.get(b"b", &t.raw_guard()).is_none());
        t.set(3, b"b", b"", true);
        assert_eq!(count(&t), 1);
        assert_eq!(&*t.get(b"b", &t.raw_guard()).unwrap().plain, &[3]);
    }
}
