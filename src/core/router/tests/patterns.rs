//! Routing with patterns (PROTOCOL.md section 8.2): one delivery per connection however many
//! of its subscriptions match, queue groups merged by name across matches, one forward per
//! node, and a forwarded publish matched again on the receiving node.

use super::{forwarded_publish, loc, origin, publish, Out, VecSink};
use crate::core::router::Tables;

fn delivered_slots(sink: &VecSink) -> Vec<u32> {
    let mut slots: Vec<u32> = sink
        .0
        .iter()
        .filter_map(|o| match o {
            Out::Deliver(s, ..) => Some(*s),
            _ => None,
        })
        .collect();
    slots.sort_unstable();
    slots
}

#[test]
fn a_connection_matching_a_topic_and_two_patterns_gets_one_delivery() {
    let t = Tables::new();
    t.topics.subscribe(b"a.b", b"", loc(1));
    t.topics.subscribe(b"a.*", b"", loc(1));
    t.topics.subscribe(b"a.>", b"", loc(1));
    t.topics.subscribe(b"*.b", b"", loc(2));
    t.topics.subscribe(b"a.c", b"", loc(3));
    t.topics.subscribe(b"x.>", b"", loc(4));
    let g = t.guards();
    let mut sink = VecSink::default();
    assert_eq!(
        publish(&t, &g, origin(9, b"p"), b"a.b", b"m", false, &mut sink),
        2
    );
    assert_eq!(delivered_slots(&sink), [1, 2]);
    assert!(
        matches!(&sink.0[0], Out::Deliver(_, _, topic, _) if topic == b"a.b"),
        "DELIVER carries the published topic, not the pattern"
    );
    sink.0.clear();
    assert_eq!(
        publish(&t, &g, origin(9, b"p"), b"a.b.c", b"m", false, &mut sink),
        1,
        "only `a.>` matches three tokens"
    );
    assert_eq!(delivered_slots(&sink), [1]);
}

#[test]
fn no_echo_excludes_the_publisher_from_pattern_matches_too() {
    let t = Tables::new();
    t.topics.subscribe(b"chat.*", b"", loc(1));
    t.topics.subscribe(b"chat.>", b"", loc(2));
    let g = t.guards();
    let mut sink = VecSink::default();
    publish(&t, &g, origin(1, b"p"), b"chat.room", b"m", true, &mut sink);
    assert_eq!(delivered_slots(&sink), [2]);
}

#[test]
fn queue_groups_of_one_name_under_several_matches_deliver_once_round_robin() {
    let t = Tables::new();
    t.topics.subscribe(b"jobs.*", b"w", loc(1));
    t.topics.subscribe(b"jobs.>", b"w", loc(2));
    t.topics.subscribe(b"jobs.run", b"w", loc(3));
    t.topics.subscribe(b"jobs.*", b"other", loc(4));
    let g = t.guards();
    let mut sink = VecSink::default();
    let mut picked = Vec::new();
    for _ in 0..6 {
        sink.0.clear();
        assert_eq!(
            publish(&t, &g, origin(9, b"p"), b"jobs.run", b"m", false, &mut sink),
            2,
            "one member of `w`, one of `other`"
        );
        let slots = delivered_slots(&sink);
        assert!(slots.contains(&4));
        picked.extend(slots.into_iter().filter(|&s| s != 4));
    }
    picked.sort_unstable();
    assert_eq!(picked, [1, 1, 2, 2, 3, 3], "the merged group round-robins");
}

#[test]
fn a_publish_is_forwarded_once_to_each_node_with_a_matching_pattern_only() {
    let t = Tables::new();
    t.remote_interest.set(2, b"a.*", b"", true);
    t.remote_interest.set(2, b"a.>", b"", true);
    t.remote_interest.set(3, b"a.b", b"", true);
    t.remote_interest.set(4, b"z.*", b"", true);
    t.remote_interest.set(5, b"a.*", b"g", true);
    t.remote_interest.set(6, b"a.>", b"g", true);
    let g = t.guards();
    let mut sink = VecSink::default();
    publish(&t, &g, origin(9, b"p"), b"a.b", b"m", false, &mut sink);
    let mut plain: Vec<u16> = sink
        .0
        .iter()
        .filter_map(|o| match o {
            Out::FwdPub(n, _, group, _) if group.is_empty() => Some(*n),
            _ => None,
        })
        .collect();
    plain.sort_unstable();
    assert_eq!(plain, [2, 3], "once per node, none to node 4");
    let grouped: Vec<u16> = sink
        .0
        .iter()
        .filter_map(|o| match o {
            Out::FwdPub(n, _, group, _) if group == b"g" => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(grouped.len(), 1, "one node for group g: {grouped:?}");
    assert!(grouped[0] == 5 || grouped[0] == 6);
}

#[test]
fn a_local_member_of_a_group_under_a_pattern_keeps_the_message_here() {
    let t = Tables::new();
    t.topics.subscribe(b"jobs.>", b"w", loc(1));
    t.remote_interest.set(2, b"jobs.*", b"w", true);
    let g = t.guards();
    let mut sink = VecSink::default();
    publish(&t, &g, origin(9, b"p"), b"jobs.x", b"m", false, &mut sink);
    assert_eq!(sink.0.len(), 1);
    assert_eq!(delivered_slots(&sink), [1]);
}

#[test]
fn a_forwarded_publish_is_matched_against_local_patterns() {
    let t = Tables::new();
    t.topics.subscribe(b"a.*", b"", loc(1));
    t.topics.subscribe(b"a.>", b"", loc(1));
    t.topics.subscribe(b"a.b", b"", loc(2));
    t.topics.subscribe(b"a.*", b"g", loc(3));
    t.topics.subscribe(b"a.>", b"g", loc(4));
    let g = t.guards();
    let mut sink = VecSink::default();
    assert_eq!(
        forwarded_publish(&t, &g, b"p", b"a.b", b"", b"m", &mut sink),
        2
    );
    assert_eq!(delivered_slots(&sink), [1, 2]);
    sink.0.clear();
    assert_eq!(
        forwarded_publish(&t, &g, b"p", b"a.b", b"g", b"m", &mut sink),
        1
    );
    let slot = delivered_slots(&sink)[0];
    assert!(slot == 3 || slot == 4);
}

#[test]
fn unsubscribing_the_last_pattern_returns_to_the_exact_path() {
    let t = Tables::new();
    assert!(t.topics.subscribe(b"a.*", b"", loc(1)), "first subscriber");
    assert!(t.topics.has_subscribers(b"a.*", b""));
    assert!(!t.topics.has_subscribers(b"a.b", b""), "no exact topic");
    assert_eq!(t.topics.len(), 1);
    assert_eq!(t.topics.interest().len(), 1);
    assert!(t.topics.unsubscribe(b"a.*", b"", loc(1)), "last subscriber");
    assert!(!t.topics.has_patterns());
    assert!(t.topics.is_empty());
}
