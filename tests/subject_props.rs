//! The subject index against the reference matcher (`subject::matches`): after any sequence of
//! pattern insertions and removals, a lookup finds exactly the patterns that match, each once;
//! exact lookups and iteration agree with the set; removing every pattern leaves only the root.

use proptest::prelude::*;
use ringrelay::core::pattern_trie::PatternTrie;
use ringrelay::core::subject::{check_pattern, is_pattern, matches};
use std::collections::BTreeSet;

/// Tokens of patterns: a few literals that collide often, and both wildcards.
fn pattern_token() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("cc"), Just("*"), Just(">")]
}

/// Tokens of subjects: the literals, the wildcard bytes as literal tokens, an empty token.
fn subject_token() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("cc"),
        Just("d"),
        Just("*"),
        Just(">"),
        Just("")
    ]
}

/// A valid pattern (one wildcard token at least, `>` only last, no empty token).
fn pattern() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(pattern_token(), 1..5)
        .prop_map(|tokens| tokens.join(".").into_bytes())
        .prop_filter("a valid pattern", |p| {
            is_pattern(p) && check_pattern(p).is_ok()
        })
}

fn subject() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(subject_token(), 1..6).prop_map(|tokens| tokens.join(".").into_bytes())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Vec<u8>),
    Remove(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => pattern().prop_map(Op::Insert),
        2 => pattern().prop_map(Op::Remove),
    ]
}

fn matched(trie: &PatternTrie<Vec<u8>>, subject: &[u8]) -> Vec<Vec<u8>> {
    let guard = trie.guard();
    let mut found = Vec::new();
    trie.for_each_match(subject, &guard, |e| found.push(e.clone()));
    found.sort();
    found
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn lookups_find_exactly_the_matching_patterns_once(
        ops in prop::collection::vec(op(), 0..40),
        subjects in prop::collection::vec(subject(), 1..20),
    ) {
        let trie: PatternTrie<Vec<u8>> = PatternTrie::default();
        let mut model: BTreeSet<Vec<u8>> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Insert(p) => {
                    trie.set(&p, Some(p.clone()));
                    model.insert(p);
                }
                Op::Remove(p) => {
                    trie.set(&p, None);
                    model.remove(&p);
                }
            }
        }
        prop_assert_eq!(trie.len(), model.len());
        for s in &subjects {
            let expected: Vec<Vec<u8>> =
                model.iter().filter(|p| matches(p, s)).cloned().collect();
            prop_assert_eq!(matched(&trie, s), expected, "subject {:?}", String::from_utf8_lossy(s));
        }
        let guard = trie.guard();
        for p in &model {
            prop_assert_eq!(trie.get(p, &guard), Some(p));
        }
        let mut listed: Vec<Vec<u8>> = trie.patterns(&guard).into_iter().map(|(k, v)| {
            assert_eq!(&*k, &v[..], "a listed pattern is the one its node holds");
            k.to_vec()
        }).collect();
        listed.sort();
        prop_assert_eq!(listed, model.iter().cloned().collect::<Vec<_>>());
        drop(guard);
        let probe = b"a.b.cc.*";
        let before = trie.node_count();
        let added = trie.nodes_to_add(probe);
        if !model.contains(&probe[..]) {
            trie.set(probe, Some(probe.to_vec()));
            prop_assert_eq!(trie.node_count(), before + added, "nodes_to_add is what set adds");
            trie.set(probe, None);
            prop_assert_eq!(trie.node_count(), before, "removal prunes what it added");
        }
        for p in &model {
            trie.set(p, None);
        }
        prop_assert_eq!(trie.len(), 0);
        prop_assert_eq!(trie.node_count(), 1, "only the root is left");
    }
}

#[test]
fn a_subject_that_no_pattern_can_match_stops_at_the_first_token() {
    let trie: PatternTrie<u32> = PatternTrie::default();
    // Many patterns under one prefix: a subject outside it looks up the root's children only.
    for i in 0..1000 {
        trie.set(format!("orders.{i}.*").as_bytes(), Some(i));
    }
    trie.set(b"metrics.>", Some(7));
    let guard = trie.guard();
    let mut found = Vec::new();
    trie.for_each_match(b"metrics.cpu.0", &guard, |&e| found.push(e));
    assert_eq!(found, [7]);
    found.clear();
    trie.for_each_match(b"orders.17.new", &guard, |&e| found.push(e));
    assert_eq!(found, [17]);
}
