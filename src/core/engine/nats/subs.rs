//! A NATS connection's subscriptions by sid. The engine keeps one subscription per distinct
//! (subject, queue group) of the connection and delivers to the connection; this table turns
//! a delivery back into one MSG per matching sid, as nats-server writes them: every matching
//! plain sid, in the order they were made, or one sid of the queue group the delivery was
//! picked for.

use crate::core::subject::{is_pattern, matches};
use foldhash::fast::RandomState;
use smallvec::SmallVec;
use std::cell::Cell;
use std::collections::HashMap;

/// A sid, a subject or a queue group name, owned.
type Bytes = Box<[u8]>;
/// A (subject, queue group) pair, owned.
pub type SubjectQueue = (Bytes, Bytes);

/// One `SUB`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSub {
    pub sid: Bytes,
    pub subject: Bytes,
    /// Empty for a plain subscription.
    pub queue: Bytes,
    /// When set, the sid ends after this many deliveries in all (`UNSUB <sid> <max>`).
    pub max_msgs: Option<u64>,
    pub delivered: Cell<u64>,
    /// Creation order: MSGs for one message go out in the order the sids were made.
    order: u64,
}

impl NatsSub {
    /// Whether it still takes messages (a sid at its maximum waits for its removal).
    fn open(&self) -> bool {
        !matches!(self.max_msgs, Some(max) if self.delivered.get() >= max)
    }

    /// Whether it belongs to queue `group` (empty: plain). Empty names are told apart
    /// without a call to `memcmp`, which cost a quarter of a NATS fan-out's CPU (`perf`).
    #[inline]
    fn in_group(&self, group: &[u8]) -> bool {
        self.queue.len() == group.len() && (group.is_empty() || *self.queue == *group)
    }
}

/// What [`NatsSubs::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// The first sid of its (subject, queue): the engine must subscribe.
    First,
    /// Another sid of a (subject, queue) the engine already has.
    Shared,
    /// The sid exists already: ignored, as nats-server ignores it.
    Duplicate,
    /// The connection holds its maximum of sids.
    Full,
}

type Map<K, V> = HashMap<K, V, RandomState>;

/// The subscriptions of one NATS connection, bounded by `sids_max`. The subscriptions live in
/// a slab; a delivery finds the sids of a literal subject with one lookup and reads them by
/// index (no hashing of sids on the message path).
#[derive(Debug, Default)]
pub struct NatsSubs {
    slab: Vec<Option<NatsSub>>,
    free: Vec<u32>,
    by_sid: Map<Bytes, u32>,
    /// Slab indexes of literal subjects' sids, by subject.
    literal: Map<Bytes, SmallVec<[u32; 2]>>,
    /// Slab indexes of patterns' sids: a delivery checks each (a connection holds few).
    patterns: Vec<u32>,
    /// Sids per (subject, queue): the engine's subscription lives while this is above 0.
    per_pair: Map<SubjectQueue, u32>,
    next_order: u64,
    /// Rotates the choice among one connection's sids of one queue group.
    queue_turn: Cell<u64>,
}

impl NatsSubs {
    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sid.is_empty()
    }

    fn at(&self, index: u32) -> Option<&NatsSub> {
        self.slab.get(index as usize).and_then(Option::as_ref)
    }

    pub fn insert(
        &mut self,
        sid: &[u8],
        subject: &[u8],
        queue: &[u8],
        sids_max: usize,
    ) -> Inserted {
        if self.by_sid.contains_key(sid) {
            return Inserted::Duplicate;
        }
        if self.by_sid.len() >= sids_max {
            return Inserted::Full;
        }
        let sub = NatsSub {
            sid: sid.into(),
            subject: subject.into(),
            queue: queue.into(),
            max_msgs: None,
            delivered: Cell::new(0),
            order: self.next_order,
        };
        self.next_order += 1;
        let index = match self.free.pop() {
            Some(index) => {
                self.slab[index as usize] = Some(sub);
                index
            }
            None => {
                self.slab.push(Some(sub));
                (self.slab.len() - 1) as u32
            }
        };
        if is_pattern(subject) {
            self.patterns.push(index);
        } else {
            self.literal.entry(subject.into()).or_default().push(index);
        }
        self.by_sid.insert(sid.into(), index);
        let count = self
            .per_pair
            .entry((subject.into(), queue.into()))
            .or_insert(0);
        *count += 1;
        if *count == 1 {
            Inserted::First
        } else {
            Inserted::Shared
        }
    }

    /// Removes `sid`; returns its (subject, queue) when it was the pair's last sid (the engine
    /// must unsubscribe), `None` otherwise or when the sid is unknown.
    pub fn remove(&mut self, sid: &[u8]) -> Option<SubjectQueue> {
        let index = self.by_sid.remove(sid)?;
        let sub = self.slab.get_mut(index as usize)?.take()?;
        self.free.push(index);
        if is_pattern(&sub.subject) {
            self.patterns.retain(|&i| i != index);
        } else if let Some(indexes) = self.literal.get_mut(&sub.subject) {
            indexes.retain(|&mut i| i != index);
            if indexes.is_empty() {
                self.literal.remove(&sub.subject);
            }
        }
        let key = (sub.subject, sub.queue);
        let count = self.per_pair.get_mut(&key)?;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        self.per_pair.remove(&key);
        Some(key)
    }

    /// `UNSUB <sid> <max>`: the sid ends once it has `max` deliveries in all. Returns
    /// whether it has them already (the caller removes it now).
    pub fn limit(&mut self, sid: &[u8], max: u64) -> bool {
        let Some(&index) = self.by_sid.get(sid) else {
            return false;
        };
        match self.slab.get_mut(index as usize).and_then(Option::as_mut) {
            Some(sub) => {
                sub.max_msgs = Some(max);
                sub.delivered.get() >= max
            }
            None => false,
        }
    }

    /// Calls `write` with each sid a message on `subject` goes to: with `group` empty, every
    /// matching plain sid in creation order; else one matching sid of that queue group
    /// (taking turns). Each one counts a delivery; a sid that reaches its maximum is pushed to
    /// `expired` (the caller removes it). Returns how many sids were written. Allocates
    /// nothing unless more than 4 sids match or a sid expires.
    /// Whether any sid is a pattern (`*`, `>`): only a pattern can match a topic that is not
    /// a valid NATS subject (a native topic with a blank in a token).
    #[inline]
    pub fn has_patterns(&self) -> bool {
        !self.patterns.is_empty()
    }

    #[inline]
    pub fn for_each_target(
        &self,
        subject: &[u8],
        group: &[u8],
        expired: &mut Vec<Box<[u8]>>,
        mut write: impl FnMut(&[u8]),
    ) -> usize {
        let mut found: SmallVec<[&NatsSub; 4]> = SmallVec::new();
        let literal = self.literal.get(subject).map_or(&[][..], |v| &v[..]);
        for &index in literal {
            if let Some(sub) = self.at(index).filter(|s| s.open() && s.in_group(group)) {
                found.push(sub);
            }
        }
        for &index in &self.patterns {
            let matching = self
                .at(index)
                .filter(|s| s.open() && s.in_group(group) && matches(&s.subject, subject));
            if let Some(sub) = matching {
                found.push(sub);
            }
        }
        if found.len() > 1 {
            found.sort_unstable_by_key(|sub| sub.order);
            if !group.is_empty() {
                let turn = self.queue_turn.get();
                self.queue_turn.set(turn.wrapping_add(1));
                let one = found[(turn % found.len() as u64) as usize];
                found.clear();
                found.push(one);
            }
        }
        for sub in found.iter() {
            write(&sub.sid);
            let delivered = sub.delivered.get() + 1;
            sub.delivered.set(delivered);
            if sub.max_msgs.is_some_and(|max| delivered >= max) {
                expired.push(sub.sid.clone());
            }
        }
        found.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(subs: &mut NatsSubs, subject: &[u8], group: &[u8]) -> (Vec<String>, Vec<String>) {
        let text = |s: &[u8]| String::from_utf8_lossy(s).into_owned();
        let mut written = Vec::new();
        let mut expired = Vec::new();
        let n = subs.for_each_target(subject, group, &mut expired, |sid| written.push(text(sid)));
        assert_eq!(n, written.len());
        (written, expired.iter().map(|s| text(s)).collect())
    }

    #[test]
    fn plain_sids_in_creation_order_literal_and_patterns_alike() {
        let mut subs = NatsSubs::default();
        assert_eq!(subs.insert(b"1", b"foo", b"", 10), Inserted::First);
        assert_eq!(subs.insert(b"2", b"foo", b"", 10), Inserted::Shared);
        assert_eq!(subs.insert(b"3", b"*", b"", 10), Inserted::First);
        assert_eq!(subs.insert(b"4", b"bar", b"", 10), Inserted::First);
        assert_eq!(subs.insert(b"1", b"zzz", b"", 10), Inserted::Duplicate);
        assert_eq!(targets(&mut subs, b"foo", b"").0, ["1", "2", "3"]);
        assert_eq!(targets(&mut subs, b"bar", b"").0, ["3", "4"]);
        assert!(targets(&mut subs, b"foo.x", b"").0.is_empty());
    }

    #[test]
    fn a_queue_delivery_goes_to_one_sid_of_its_group_only() {
        let mut subs = NatsSubs::default();
        subs.insert(b"1", b"foo", b"q", 10);
        subs.insert(b"2", b"foo", b"q", 10);
        subs.insert(b"3", b"foo", b"", 10);
        subs.insert(b"4", b"foo.*", b"r", 10);
        let first = targets(&mut subs, b"foo", b"q").0;
        let second = targets(&mut subs, b"foo", b"q").0;
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_ne!(first, second, "members take turns");
        assert_eq!(targets(&mut subs, b"foo", b"").0, ["3"]);
        assert_eq!(targets(&mut subs, b"foo.x", b"r").0, ["4"]);
        assert!(targets(&mut subs, b"foo", b"other").0.is_empty());
    }

    #[test]
    fn max_msgs_expires_a_sid_and_the_last_sid_of_a_pair_releases_it() {
        let mut subs = NatsSubs::default();
        subs.insert(b"1", b"foo", b"", 10);
        subs.insert(b"2", b"foo", b"", 10);
        assert!(!subs.limit(b"1", 2));
        assert_eq!(
            targets(&mut subs, b"foo", b""),
            (vec!["1".into(), "2".into()], vec![])
        );
        assert_eq!(targets(&mut subs, b"foo", b"").1, ["1"]);
        assert_eq!(subs.remove(b"1"), None, "sid 2 still holds foo");
        assert_eq!(targets(&mut subs, b"foo", b"").0, ["2"]);
        assert!(subs.limit(b"2", 1), "already past its maximum");
        assert_eq!(subs.remove(b"2"), Some((b"foo"[..].into(), b""[..].into())));
        assert_eq!(subs.remove(b"2"), None);
        assert!(subs.is_empty() && subs.per_pair.is_empty());
    }

    #[test]
    fn the_sid_bound_holds() {
        let mut subs = NatsSubs::default();
        assert_eq!(subs.insert(b"1", b"a", b"", 2), Inserted::First);
        assert_eq!(subs.insert(b"2", b"b", b"", 2), Inserted::First);
        assert_eq!(subs.insert(b"3", b"c", b"", 2), Inserted::Full);
        subs.remove(b"1");
        assert_eq!(subs.insert(b"3", b"c", b"", 2), Inserted::First);
    }
}
