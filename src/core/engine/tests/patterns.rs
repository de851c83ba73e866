//! SUBSCRIBE with patterns (PROTOCOL.md section 8.2): a malformed pattern is refused with
//! ERROR INVALID_SUBJECT and the connection stays open; a pattern is announced to the cluster,
//! takes places in `topics_max` per token it does not share, receives matching publishes once, and is released at close.

use super::*;

fn publish<'a>(topic: &'a [u8], payload: &'a [u8]) -> Frame<'a> {
    Frame::Publish {
        topic,
        payload,
        no_echo: false,
    }
}

#[test]
fn a_malformed_pattern_is_refused_with_invalid_subject_and_the_connection_stays() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    for bad in [&b"a..*"[..], b"a.>.b", b"*.", b".>"] {
        h.frame(a, sub(bad, b""));
        assert_eq!(
            h.rec.take(),
            vec![Out::LocalError(a, ErrorCode::INVALID_SUBJECT)],
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(h.tables.topics.is_empty());
    assert_eq!(h.conns[a as usize].subscriptions().len(), 0);
    assert_ne!(h.conns[a as usize].phase(), Phase::Closed);
    // Not a limit refusal: a later refusal at a limit is still the first one.
    for i in 0..4 {
        h.frame(a, sub(format!("t{i}").as_bytes(), b""));
    }
    assert!(h
        .rec
        .take()
        .contains(&Out::LocalError(a, ErrorCode::LIMIT_EXCEEDED)));
    assert_ne!(h.conns[a as usize].phase(), Phase::Closed);
}

#[test]
fn a_pattern_is_announced_matched_once_and_released_at_close() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    h.frame(b, sub(b"news.*", b""));
    h.frame(b, sub(b"news.>", b""));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Interest(b"news.*".to_vec(), vec![]),
            Out::Interest(b"news.>".to_vec(), vec![])
        ]
    );
    h.frame(a, publish(b"news.eu", b"m"));
    h.frame(a, publish(b"sport.eu", b"n"));
    assert_eq!(
        h.rec.take(),
        vec![Out::Deliver(
            b,
            b"a".to_vec(),
            b"news.eu".to_vec(),
            b"m".to_vec()
        )],
        "one DELIVER for two matching patterns, none for a topic no pattern matches"
    );
    h.close(b);
    assert!(h.tables.topics.is_empty());
    assert!(!h.tables.topics.has_patterns());
}

#[test]
fn a_pattern_takes_a_topic_place_per_token_it_does_not_share() {
    let mut h = Harness::new();
    let a = h.client(b"a");
    let b = h.client(b"b");
    // `p.*` adds two trie nodes (`p`, `*`); `p.>` shares `p` and adds one.
    h.frame(a, sub(b"p.*", b""));
    h.frame(a, sub(b"p.>", b""));
    h.frame(b, sub(b"t0", b""));
    assert_eq!(h.tables.topics.keys(), 4);
    h.rec.take();
    h.frame(b, sub(b"q.*", b""));
    assert_eq!(
        h.rec.take(),
        vec![
            Out::Count(Counter::LimitRefused),
            Out::LocalError(b, ErrorCode::LIMIT_EXCEEDED),
        ],
        "a pattern needing two places is refused with one left of five"
    );
    h.frame(a, sub(b"t1", b""));
    assert_eq!(h.rec.take(), vec![Out::Interest(b"t1".to_vec(), vec![])]);
    assert_eq!(h.tables.topics.keys(), 5);
}
