//! Patterns of client ids in a credentials file: `*` stands for any run of bytes (empty too),
//! every other byte for itself. `game-server-*` allows `game-server-7`; `*` allows every id.
//! Ids have no token structure (they are opaque bytes), so these are globs, not subjects.

/// Whether `pattern` matches all of `id`. Linear in `pattern.len() * id.len()` at worst (the
/// classic backtracking over the last `*` only), with no allocation.
pub fn glob_matches(pattern: &[u8], id: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    // Where the last `*` was and the id position it currently stands up to.
    let mut star: Option<(usize, usize)> = None;
    while i < id.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if p < pattern.len() && pattern[p] == id[i] {
            p += 1;
            i += 1;
        } else if let Some((star_p, star_i)) = star {
            // Let the last `*` take one more byte and retry from there.
            p = star_p + 1;
            i = star_i + 1;
            star = Some((star_p, star_i + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn a_star_stands_for_any_run_of_bytes() {
        assert!(glob_matches(b"game-server-*", b"game-server-7"));
        assert!(glob_matches(b"game-server-*", b"game-server-"));
        assert!(!glob_matches(b"game-server-*", b"game-serve"));
        assert!(!glob_matches(b"game-server-*", b"lobby-1"));
        assert!(glob_matches(b"*", b"anything"));
        assert!(glob_matches(b"*-eu-*", b"relay-eu-3"));
        assert!(!glob_matches(b"*-eu-*", b"relay-us-3"));
        assert!(glob_matches(b"a*b*c", b"aXXbYYbc"));
        assert!(!glob_matches(b"a*b*c", b"aXXbYYbd"));
    }

    #[test]
    fn without_a_star_only_the_same_id_matches() {
        assert!(glob_matches(b"alice", b"alice"));
        assert!(!glob_matches(b"alice", b"alice2"));
        assert!(!glob_matches(b"alice", b"alic"));
        assert!(!glob_matches(b"", b"a"));
    }

    #[test]
    fn agrees_with_a_naive_recursive_matcher() {
        fn naive(p: &[u8], s: &[u8]) -> bool {
            match (p.first(), s.first()) {
                (None, None) => true,
                (Some(b'*'), _) => naive(&p[1..], s) || (!s.is_empty() && naive(p, &s[1..])),
                (Some(a), Some(b)) if a == b => naive(&p[1..], &s[1..]),
                _ => false,
            }
        }
        let alphabet = [b'a', b'b', b'*'];
        let mut words: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = words
                .iter()
                .flat_map(|w| {
                    alphabet.iter().map(move |&c| {
                        let mut w = w.clone();
                        w.push(c);
                        w
                    })
                })
                .collect();
            words.extend(longer);
            words.sort();
            words.dedup();
        }
        for p in &words {
            for s in words.iter().filter(|s| !s.contains(&b'*')) {
                assert_eq!(glob_matches(p, s), naive(p, s), "{p:?} {s:?}");
            }
        }
    }
}
