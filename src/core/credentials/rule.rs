//! One permission of a credentials entry: an allow list and a deny list of patterns. A
//! subject (or id) is permitted when the allow list permits it (no allow list: everything)
//! and no deny pattern reaches it: deny wins, as in nats-server.

use super::id_glob::glob_matches;
use crate::core::subject::{tokens, ONE_TOKEN, REST_TOKENS};

/// Patterns one list holds at most (a bound on the file and on the time of a check).
pub const PATTERNS_PER_LIST_MAX: usize = 1024;

/// An allow list and a deny list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// `None`: every subject is allowed (the list was not given); `Some([])`: none is.
    allow: Option<Box<[Box<[u8]>]>>,
    deny: Box<[Box<[u8]>]>,
}

impl Rule {
    pub fn new(allow: Option<Vec<Box<[u8]>>>, deny: Vec<Box<[u8]>>) -> Rule {
        Rule {
            allow: allow.map(Vec::into_boxed_slice),
            deny: deny.into_boxed_slice(),
        }
    }

    /// Everything is permitted (no allow list and an empty deny list): checks can be skipped.
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_empty()
    }

    /// Whether a client id (a SEND target, a WATCH target) is permitted; the patterns are
    /// globs ([`glob_matches`]).
    pub fn permits_id(&self, id: &[u8]) -> bool {
        let allowed = match &self.allow {
            None => true,
            Some(allow) => allow.iter().any(|p| glob_matches(p, id)),
        };
        allowed && !self.deny.iter().any(|p| glob_matches(p, id))
    }

    /// Whether a subject is permitted; the patterns are NATS subject patterns. `subject` may
    /// itself be a pattern (a SUBSCRIBE): it is permitted when every subject it matches is
    /// allowed (it is a subset of an allow pattern) and it cannot match any denied subject
    /// (it overlaps no deny pattern). For a literal subject both come down to matching.
    pub fn permits_subject(&self, subject: &[u8]) -> bool {
        let allowed = match &self.allow {
            None => true,
            Some(allow) => allow.iter().any(|p| is_subset(subject, p)),
        };
        allowed && !self.deny.iter().any(|p| overlaps(subject, p))
    }
}

/// Whether every subject that pattern `a` matches is matched by pattern `b` too.
pub fn is_subset(a: &[u8], b: &[u8]) -> bool {
    let (mut a, mut b) = (tokens(a), tokens(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            // `b`'s rest takes one or more tokens, and `a` has at least one left here.
            (Some(_), Some(y)) if y == REST_TOKENS => return true,
            // `a`'s rest takes any number of tokens; only a rest in `b` covers that.
            (Some(x), Some(_)) if x == REST_TOKENS => return false,
            (Some(_), Some(y)) if y == ONE_TOKEN => {}
            (Some(x), Some(y)) if x == y && x != ONE_TOKEN => {}
            _ => return false,
        }
    }
}

/// Whether some subject is matched by both patterns.
pub fn overlaps(a: &[u8], b: &[u8]) -> bool {
    let (mut a, mut b) = (tokens(a), tokens(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == REST_TOKENS || y == REST_TOKENS => return true,
            (Some(x), Some(y)) if x == ONE_TOKEN || y == ONE_TOKEN || x == y => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::subject::matches;

    fn rule(allow: Option<&[&str]>, deny: &[&str]) -> Rule {
        let list = |l: &[&str]| l.iter().map(|p| p.as_bytes().into()).collect();
        Rule::new(allow.map(list), list(deny))
    }

    #[test]
    fn no_allow_list_permits_everything_but_what_is_denied() {
        let r = rule(None, &["secret.>"]);
        assert!(r.permits_subject(b"game.move"));
        assert!(!r.permits_subject(b"secret.plans"));
        assert!(r.permits_subject(b"secret"));
        assert!(rule(None, &[]).is_open());
        assert!(!r.is_open());
    }

    #[test]
    fn an_empty_allow_list_permits_nothing() {
        let r = rule(Some(&[]), &[]);
        assert!(!r.permits_subject(b"a"));
        assert!(!r.permits_id(b"a"));
        assert!(!r.is_open());
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = rule(Some(&["game.>"]), &["game.admin.*"]);
        assert!(r.permits_subject(b"game.move"));
        assert!(!r.permits_subject(b"game.admin.kick"));
        assert!(r.permits_subject(b"game.admin.kick.now"));
        let ids = rule(Some(&["game-*"]), &["game-admin"]);
        assert!(ids.permits_id(b"game-7"));
        assert!(!ids.permits_id(b"game-admin"));
        assert!(!ids.permits_id(b"lobby-1"));
    }

    #[test]
    fn a_subscription_pattern_must_lie_inside_an_allow_pattern() {
        let r = rule(Some(&["game.>", "chat.*"]), &[]);
        assert!(r.permits_subject(b"game.*"));
        assert!(r.permits_subject(b"game.>"));
        assert!(r.permits_subject(b"game.a.*.c"));
        assert!(r.permits_subject(b"chat.*"));
        assert!(r.permits_subject(b"chat.x"));
        assert!(!r.permits_subject(b"chat.>"));
        assert!(!r.permits_subject(b"*.x"));
        assert!(!r.permits_subject(b">"));
        assert!(!r.permits_subject(b"game"));
    }

    #[test]
    fn a_subscription_pattern_that_could_match_a_denied_subject_is_refused() {
        let r = rule(None, &["secret.>"]);
        assert!(!r.permits_subject(b">"));
        assert!(!r.permits_subject(b"*.plans"));
        assert!(r.permits_subject(b"*"));
        assert!(r.permits_subject(b"public.>"));
    }

    /// Subset and overlap agree with the reference matcher on every subject of a small
    /// alphabet: `a ⊆ b` iff no subject matches `a` but not `b`; they overlap iff some
    /// subject matches both.
    #[test]
    fn subset_and_overlap_agree_with_matching_on_a_small_universe() {
        let literals = ["a", "b"];
        let mut subjects: Vec<String> = Vec::new();
        for n in 1..=4 {
            let mut layer = vec![String::new()];
            for _ in 0..n {
                layer = layer
                    .iter()
                    .flat_map(|s| literals.iter().map(move |l| format!("{s}.{l}")))
                    .collect();
            }
            subjects.extend(layer.into_iter().map(|s| s[1..].to_string()));
        }
        let mut patterns: Vec<String> = Vec::new();
        for n in 1..=3 {
            let mut layer = vec![String::new()];
            for i in 0..n {
                let choices: &[&str] = if i == n - 1 {
                    &["a", "b", "*", ">"]
                } else {
                    &["a", "b", "*"]
                };
                layer = layer
                    .iter()
                    .flat_map(|s| choices.iter().map(move |l| format!("{s}.{l}")))
                    .collect();
            }
            patterns.extend(layer.into_iter().map(|s| s[1..].to_string()));
        }
        // Subjects up to 4 tokens decide subsets and overlaps of patterns up to 3 tokens.
        for a in &patterns {
            for b in &patterns {
                let (a, b) = (a.as_bytes(), b.as_bytes());
                let expect_subset = subjects
                    .iter()
                    .all(|s| !matches(a, s.as_bytes()) || matches(b, s.as_bytes()));
                let expect_overlap = subjects
                    .iter()
                    .any(|s| matches(a, s.as_bytes()) && matches(b, s.as_bytes()));
                let shown = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
                assert_eq!(is_subset(a, b), expect_subset, "subset {shown:?}");
                assert_eq!(overlaps(a, b), expect_overlap, "overlap {shown:?}");
            }
        }
    }
}
