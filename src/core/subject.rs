//! Subjects and patterns (PROTOCOL.md section 8.2): a topic is a run of tokens separated by
//! `.`; a subscription topic with a token that is exactly `*` (one token) or `>` (one or more
//! tokens, only last) is a pattern. Topics without such a token are matched exactly, byte for
//! byte, as they always were (any bytes, empty tokens included).

/// The separator between tokens.
pub const SEPARATOR: u8 = b'.';
/// The token matching exactly one token.
pub const ONE_TOKEN: &[u8] = b"*";
/// The token matching every remaining token (one or more); only the last token of a pattern.
pub const REST_TOKENS: &[u8] = b">";

/// The tokens of a subject (or pattern), in order; an empty subject has one empty token.
#[inline]
pub fn tokens(subject: &[u8]) -> std::slice::Split<'_, u8, impl FnMut(&u8) -> bool> {
    subject.split(|&b| b == SEPARATOR)
}

/// Whether a subscription to `topic` is a pattern: one of its tokens is `*` or `>`.
#[inline]
pub fn is_pattern(topic: &[u8]) -> bool {
    // Fast reject: no wildcard byte at all (the common case of a literal topic).
    if !topic.iter().any(|&b| b == b'*' || b == b'>') {
        return false;
    }
    tokens(topic).any(|t| t == ONE_TOKEN || t == REST_TOKENS)
}

/// Why a pattern is refused (the text of an ERROR INVALID_SUBJECT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternError {
    /// An empty token (`a..*`, `.*`, `*.`): a pattern's tokens must not be empty.
    EmptyToken,
    /// `>` before the last token (`a.>.b`).
    RestNotLast,
}

impl PatternError {
    pub fn text(self) -> &'static str {
        match self {
            PatternError::EmptyToken => "invalid subject: a pattern has an empty token",
            PatternError::RestNotLast => "invalid subject: '>' is only allowed as the last token",
        }
    }
}

/// Checks a pattern (a topic for which [`is_pattern`] holds): no empty token, `>` only last.
pub fn check_pattern(pattern: &[u8]) -> Result<(), PatternError> {
    let mut tokens = tokens(pattern).peekable();
    while let Some(t) = tokens.next() {
        if t.is_empty() {
            return Err(PatternError::EmptyToken);
        }
        if t == REST_TOKENS && tokens.peek().is_some() {
            return Err(PatternError::RestNotLast);
        }
    }
    Ok(())
}

/// Whether `pattern` matches `subject`, token by token: the reference definition that the
/// subject index ([`super::pattern_trie`]) is tested against. `*` matches any one token (the
/// empty token too), `>` one or more tokens; any other token matches itself only.
pub fn matches(pattern: &[u8], subject: &[u8]) -> bool {
    let mut p = tokens(pattern);
    let mut s = tokens(subject);
    loop {
        match (p.next(), s.next()) {
            (Some(pt), Some(_)) if pt == REST_TOKENS => return true,
            (Some(pt), Some(st)) => {
                if pt != ONE_TOKEN && pt != st {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_has_a_whole_wildcard_token() {
        assert!(is_pattern(b"*"));
        assert!(is_pattern(b">"));
        assert!(is_pattern(b"a.*.c"));
        assert!(is_pattern(b"a.>"));
        assert!(!is_pattern(b"a.b"));
        assert!(!is_pattern(b"a*.b"));
        assert!(!is_pattern(b"a.b>"));
        assert!(!is_pattern(b"*a"));
        assert!(!is_pattern(b""));
    }

    #[test]
    fn a_pattern_needs_non_empty_tokens_and_rest_last() {
        assert_eq!(check_pattern(b"a.*.c"), Ok(()));
        assert_eq!(check_pattern(b"a.>"), Ok(()));
        assert_eq!(check_pattern(b"a..*"), Err(PatternError::EmptyToken));
        assert_eq!(check_pattern(b"*."), Err(PatternError::EmptyToken));
        assert_eq!(check_pattern(b".>"), Err(PatternError::EmptyToken));
        assert_eq!(check_pattern(b"a.>.b"), Err(PatternError::RestNotLast));
        assert_eq!(check_pattern(b">.>"), Err(PatternError::RestNotLast));
    }

    #[test]
    fn one_token_matches_one_and_rest_matches_one_or_more() {
        assert!(matches(b"a.*", b"a.b"));
        assert!(matches(b"a.*", b"a."));
        assert!(!matches(b"a.*", b"a"));
        assert!(!matches(b"a.*", b"a.b.c"));
        assert!(matches(b"a.>", b"a.b"));
        assert!(matches(b"a.>", b"a.b.c"));
        assert!(!matches(b"a.>", b"a"));
        assert!(matches(b">", b"a"));
        assert!(matches(b"*.b.>", b"x.b.y.z"));
        assert!(!matches(b"*.b.>", b"x.c.y"));
        assert!(matches(b"a.b", b"a.b"));
        assert!(!matches(b"a.b", b"a.bc"));
    }
}
