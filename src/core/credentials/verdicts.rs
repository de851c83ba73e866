//! A connection's cache of permission decisions for the message path: a SEND target or a
//! PUBLISH topic is checked against the entry's patterns once, then found here. Direct-mapped
//! with [`VERDICT_SLOTS`] slots, each keeping the subject it decided (so a hash collision can
//! never borrow another subject's verdict); a slot's bytes are reused, so after warm-up a
//! check allocates nothing. Built on the first check of a restricted connection only.

use foldhash::fast::FixedState;
use std::hash::BuildHasher;

/// Slots of one connection's cache: at most this many subjects' verdicts are remembered; a
/// subject that maps to a taken slot replaces its verdict (the check is then repeated). Memory
/// at most `VERDICT_SLOTS * (TOPIC_LEN_MAX + 32)` bytes, about 9 KiB, per restricted
/// connection that sends or publishes.
pub const VERDICT_SLOTS: usize = 32;

/// What a permission check is about: the same bytes may be an allowed topic and a refused
/// target. Only SEND and PUBLISH verdicts are cached (the message path); SUBSCRIBE and WATCH
/// are control frames, decided each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Send,
    Publish,
    Subscribe,
    Watch,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Send,
        Action::Publish,
        Action::Subscribe,
        Action::Watch,
    ];

    /// The text of the ERROR PERMISSION_DENIED that refuses it (the subject follows), worded
    /// as nats-server's `-ERR`, which the NATS front writes as is.
    pub fn denied_text(self) -> &'static str {
        match self {
            Action::Send => "Permissions Violation for Send to",
            Action::Publish => "Permissions Violation for Publish to",
            Action::Subscribe => "Permissions Violation for Subscription to",
            Action::Watch => "Permissions Violation for Watch of",
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    action: Option<Action>,
    subject: Vec<u8>,
    permitted: bool,
}

#[derive(Debug)]
pub struct Verdicts {
    slots: Box<[Slot]>,
    hasher: FixedState,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            slots: (0..VERDICT_SLOTS).map(|_| Slot::default()).collect(),
            hasher: FixedState::with_seed(0x5eed_cafe),
        }
    }
}

impl Verdicts {
    /// The cached verdict on `subject` for `action`, or `decide(subject)`'s, remembered.
    #[inline]
    pub fn get_or_decide(
        &mut self,
        action: Action,
        subject: &[u8],
        decide: impl FnOnce(&[u8]) -> bool,
    ) -> bool {
        let hash = self.hasher.hash_one((action as u8, subject));
        let slot = &mut self.slots[hash as usize % VERDICT_SLOTS];
        if slot.action == Some(action) && slot.subject == subject {
            return slot.permitted;
        }
        let permitted = decide(subject);
        slot.action = Some(action);
        slot.subject.clear();
        slot.subject.extend_from_slice(subject);
        slot.permitted = permitted;
        permitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_decided_once_while_its_slot_holds_it() {
        let mut verdicts = Verdicts::default();
        let mut calls = 0;
        for _ in 0..3 {
            assert!(verdicts.get_or_decide(Action::Publish, b"game.move", |_| {
                calls += 1;
                true
            }));
        }
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_action_is_part_of_the_key() {
        let mut verdicts = Verdicts::default();
        assert!(verdicts.get_or_decide(Action::Publish, b"x", |_| true));
        // A cached "publish x: yes" must not answer "send x".
        assert!(!verdicts.get_or_decide(Action::Send, b"x", |_| false));
    }

    #[test]
    fn more_subjects_than_slots_are_decided_right_every_time() {
        let mut verdicts = Verdicts::default();
        for round in 0..3 {
            for i in 0..(4 * VERDICT_SLOTS) {
                let subject = format!("s.{i}");
                let expected = i % 3 == 0;
                let got = verdicts.get_or_decide(Action::Send, subject.as_bytes(), |_| expected);
                assert_eq!(got, expected, "round {round} subject {subject}");
            }
        }
    }
}
