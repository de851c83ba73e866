//! The subject index for patterns: a trie of tokens, stored flat in one papaya map keyed by
//! `(parent node id, token)`, so readers walk it lock-free and the core needs no `unsafe`.
//!
//! A lookup walks the subject's tokens once; at each node it looks up at most three children
//! (the literal token, `*`, `>`), and only those that exist (each node records whether it has a
//! `*` and a `>` child). Its cost grows with the subject's depth and the patterns that share
//! its prefixes, never with patterns that cannot match.
//!
//! Writers are serialised by the owning table's lock. They change a node copy-on-write (a new
//! `Arc<Node>` under the same key) and keep the trie valid for readers at every step: a new
//! child is inserted before its parent records it, and a node is removed only once it has no
//! entry and no children, after which its parent forgets it. Node ids are never reused, so a
//! reader holding a stale node finds no children of a removed one.

use super::subject::{tokens, ONE_TOKEN, REST_TOKENS};
use super::table_hasher::TableHasher;
use smallvec::SmallVec;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// The root's id; children of the root are keyed by it.
const ROOT_ID: u64 = 0;
/// The root's own key: no parent id can be `u64::MAX` (ids count up from 1).
const ROOT_KEY: [u8; 8] = u64::MAX.to_le_bytes();
/// Longest key: a parent id and a token of up to 255 bytes (a topic's length bound).
const KEY_BYTES_MAX: usize = 8 + 255;

struct Node<V> {
    id: u64,
    /// Children in the trie (the node is removed when this and `entry` are both empty).
    children: u32,
    /// Whether a `*` child exists (one more lookup per step).
    one_token_child: bool,
    /// Whether a `>` child exists.
    rest_child: bool,
    entry: Option<Arc<V>>,
}

impl<V> Node<V> {
    fn copy(&self) -> Node<V> {
        Node {
            id: self.id,
            children: self.children,
            one_token_child: self.one_token_child,
            rest_child: self.rest_child,
            entry: self.entry.clone(),
        }
    }
}

/// A key built on the stack (no allocation on a lookup).
struct Key {
    bytes: [u8; KEY_BYTES_MAX],
    len: usize,
}

impl Key {
    #[inline]
    fn child(parent: u64, token: &[u8]) -> Option<Key> {
        if token.len() > KEY_BYTES_MAX - 8 {
            return None;
        }
        let mut bytes = [0u8; KEY_BYTES_MAX];
        bytes[..8].copy_from_slice(&parent.to_le_bytes());
        bytes[8..8 + token.len()].copy_from_slice(token);
        Some(Key {
            bytes,
            len: 8 + token.len(),
        })
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Where a walk stands: a node's id and which wildcard children it has.
#[derive(Clone, Copy)]
struct Step {
    id: u64,
    one_token_child: bool,
    rest_child: bool,
}

pub struct PatternTrie<V> {
    nodes: papaya::HashMap<Box<[u8]>, Arc<Node<V>>, TableHasher>,
    /// The next node id (written under the owner's lock only).
    next_id: AtomicU64,
    /// Patterns with an entry; read relaxed on every publish to skip the walk when zero.
    patterns: AtomicUsize,
}

impl<V> Default for PatternTrie<V> {
    fn default() -> Self {
        let nodes = papaya::HashMap::with_hasher(TableHasher::default());
        nodes.pin().insert(
            Box::from(&ROOT_KEY[..]),
            Arc::new(Node {
                id: ROOT_ID,
                children: 0,
                one_token_child: false,
                rest_child: false,
                entry: None,
            }),
        );
        PatternTrie {
            nodes,
            next_id: AtomicU64::new(ROOT_ID + 1),
            patterns: AtomicUsize::new(0),
        }
    }
}

impl<V: Send + Sync + 'static> PatternTrie<V> {
    pub fn guard(&self) -> papaya::LocalGuard<'_> {
        self.nodes.guard()
    }

    /// Patterns with an entry.
    #[inline]
    pub fn len(&self) -> usize {
        self.patterns.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Nodes in the trie, the root included (a trie with no patterns has only the root). Each
    /// costs its token, a key and a map slot: the owner bounds them with its topics.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn node<'g>(&self, key: &[u8], guard: &'g impl papaya::Guard) -> Option<&'g Arc<Node<V>>> {
        self.nodes.get(key, guard)
    }

    fn root<'g>(&self, guard: &'g impl papaya::Guard) -> &'g Arc<Node<V>> {
        self.node(&ROOT_KEY, guard)
            .expect("invariant: the root is never removed")
    }

    /// The entry of exactly `pattern` (control path).
    pub fn get<'g>(&self, pattern: &[u8], guard: &'g impl papaya::Guard) -> Option<&'g V> {
        let mut node = self.root(guard);
        for token in tokens(pattern) {
            node = self.node(Key::child(node.id, token)?.as_slice(), guard)?;
        }
        node.entry.as_deref()
    }

    /// Calls `matched` with the entry of every pattern that matches `subject` (each once).
    /// Allocates nothing unless more than 16 trie nodes match one prefix of the subject.
    pub fn for_each_match<'g>(
        &self,
        subject: &[u8],
        guard: &'g impl papaya::Guard,
        mut matched: impl FnMut(&'g V),
    ) {
        if self.is_empty() {
            return;
        }
        let root = self.root(guard);
        let mut frontier: SmallVec<[Step; 16]> = SmallVec::new();
        let mut next: SmallVec<[Step; 16]> = SmallVec::new();
        frontier.push(Step {
            id: root.id,
            one_token_child: root.one_token_child,
            rest_child: root.rest_child,
        });
        let mut tokens = tokens(subject).peekable();
        while let Some(token) = tokens.next() {
            let last = tokens.peek().is_none();
            for step in frontier.drain(..) {
                if step.rest_child {
                    if let Some(e) = self.child(step.id, REST_TOKENS, guard).and_then(entry) {
                        matched(e);
                    }
                }
                let mut visit = |child: Option<&'g Arc<Node<V>>>| {
                    let Some(child) = child else { return };
                    if last {
                        if let Some(e) = child.entry.as_deref() {
                            matched(e);
                        }
                    } else if child.children > 0 {
                        next.push(Step {
                            id: child.id,
                            one_token_child: child.one_token_child,
                            rest_child: child.rest_child,
                        });
                    }
                };
                // A subject token `>` is literal; the `>` child matched above already.
                if token != REST_TOKENS {
                    visit(self.child(step.id, token, guard));
                }
                if step.one_token_child && token != ONE_TOKEN {
                    visit(self.child(step.id, ONE_TOKEN, guard));
                }
            }
            if next.is_empty() {
                return;
            }
            std::mem::swap(&mut frontier, &mut next);
        }
    }

    #[inline]
    fn child<'g>(
        &self,
        parent: u64,
        token: &[u8],
        guard: &'g impl papaya::Guard,
    ) -> Option<&'g Arc<Node<V>>> {
        self.node(Key::child(parent, token)?.as_slice(), guard)
    }

    /// Every pattern with its entry (operator views, cluster snapshots), in no order. Nodes do
    /// not store their patterns (a node costs its token, not its whole prefix): they are
    /// rebuilt from the keys, one pass over the trie (control path only).
    pub fn patterns<'g>(&self, guard: &'g impl papaya::Guard) -> Vec<(Box<[u8]>, &'g V)> {
        // node id -> (parent id, token)
        let mut up: std::collections::HashMap<u64, (u64, &'g [u8])> =
            std::collections::HashMap::new();
        let mut ends = Vec::new();
        for (key, node) in self.nodes.iter(guard) {
            if node.id == ROOT_ID {
                continue;
            }
            let (parent, token) = key.split_at(8);
            let parent = u64::from_le_bytes(
                parent
                    .try_into()
                    .expect("invariant: a key always starts with an 8-byte id"),
            );
            up.insert(node.id, (parent, token));
            if let Some(entry) = node.entry.as_deref() {
                ends.push((node.id, entry));
            }
        }
        let mut out = Vec::with_capacity(ends.len());
        let mut path: Vec<&[u8]> = Vec::new();
        for (mut id, entry) in ends {
            path.clear();
            // A concurrent writer may have removed a node since the pass: skip such a pattern.
            let complete = loop {
                match up.get(&id) {
                    Some(&(parent, token)) => {
                        path.push(token);
                        id = parent;
                        if id == ROOT_ID {
                            break true;
                        }
                    }
                    None => break false,
                }
            };
            if complete {
                path.reverse();
                out.push((path.join(&b"."[..]).into_boxed_slice(), entry));
            }
        }
        out
    }

    /// Nodes that `pattern` would add to the trie (its tokens past the longest prefix already
    /// in it): what a new pattern costs, for the owner's bound on keys.
    pub fn nodes_to_add(&self, pattern: &[u8]) -> usize {
        let guard = self.nodes.guard();
        let mut node = self.root(&guard);
        let mut tokens = tokens(pattern);
        for token in tokens.by_ref() {
            match Key::child(node.id, token).and_then(|k| self.node(k.as_slice(), &guard)) {
                Some(child) => node = child,
                None => return 1 + tokens.count(),
            }
        }
        0
    }

    /// Sets (`Some`) or clears (`None`) the entry of `pattern`. The caller serialises writers
    /// (the owning table's lock) and has checked the pattern (`subject::check_pattern`).
    pub fn set(&self, pattern: &[u8], entry: Option<V>) {
        let guard = self.nodes.guard();
        match entry {
            Some(entry) => self.insert(pattern, Arc::new(entry), &guard),
            None => self.remove(pattern, &guard),
        }
    }

    fn insert(&self, pattern: &[u8], entry: Arc<V>, guard: &impl papaya::Guard) {
        let mut key: Box<[u8]> = Box::from(&ROOT_KEY[..]);
        let mut node = self.root(guard).clone();
        for token in tokens(pattern) {
            let child_key: Box<[u8]> = Key::child(node.id, token)
                .expect("invariant: a topic's token fits a key")
                .as_slice()
                .into();
            let child = match self.node(&child_key, guard) {
                Some(child) => child.clone(),
                None => {
                    let child = Arc::new(Node {
                        id: self.next_id.fetch_add(1, Ordering::Relaxed),
                        children: 0,
                        one_token_child: false,
                        rest_child: false,
                        entry: None,
                    });
                    // The child first, then the parent that leads to it.
                    self.nodes.insert(child_key.clone(), child.clone(), guard);
                    let mut parent = node.copy();
                    parent.children += 1;
                    parent.one_token_child |= token == ONE_TOKEN;
                    parent.rest_child |= token == REST_TOKENS;
                    self.nodes.insert(key, Arc::new(parent), guard);
                    child
                }
            };
            key = child_key;
            node = child;
        }
        let mut end = node.copy();
        if end.entry.is_none() {
            self.patterns.fetch_add(1, Ordering::Relaxed);
        }
        end.entry = Some(entry);
        self.nodes.insert(key, Arc::new(end), guard);
    }

    fn remove(&self, pattern: &[u8], guard: &impl papaya::Guard) {
        let mut path: Vec<PathStep<'_, V>> =
            vec![(Box::from(&ROOT_KEY[..]), self.root(guard).clone(), &[][..])];
        for token in tokens(pattern) {
            let parent = path
                .last()
                .expect("invariant: the root is always on the path")
                .1
                .id;
            let Some(key) = Key::child(parent, token) else {
                return;
            };
            let Some(node) = self.node(key.as_slice(), guard) else {
                return;
            };
            path.push((key.as_slice().into(), node.clone(), token));
        }
        let (key, node, mut token) = path
            .pop()
            .expect("invariant: the path always ends at the pattern's node");
        if node.entry.is_none() {
            return;
        }
        self.patterns.fetch_sub(1, Ordering::Relaxed);
        let mut end = node.copy();
        end.entry = None;
        if end.children > 0 {
            self.nodes.insert(key, Arc::new(end), guard);
            return;
        }
        self.nodes.remove(&key, guard);
        // Prune upwards: each parent forgets the child just removed.
        while let Some((key, node, parent_token)) = path.pop() {
            let mut parent = node.copy();
            parent.children -= 1;
            if token == ONE_TOKEN {
                parent.one_token_child = false;
            }
            if token == REST_TOKENS {
                parent.rest_child = false;
            }
            let keep = parent.id == ROOT_ID || parent.children > 0 || parent.entry.is_some();
            if keep {
                self.nodes.insert(key, Arc::new(parent), guard);
                return;
            }
            self.nodes.remove(&key, guard);
            token = parent_token;
        }
    }
}

/// One node on the path from the root: its key, the node, and the token leading to it.
type PathStep<'p, V> = (Box<[u8]>, Arc<Node<V>>, &'p [u8]);

fn entry<V>(node: &Arc<Node<V>>) -> Option<&V> {
    node.entry.as_deref()
}
