//! sans-IO: the query string of a metrics-endpoint request (`after=a%20b&limit=5&rows=1`),
//! read as `key=value` pairs split on `&`. A key matches only when it is the whole key: a
//! substring test would let `?norows=1` or `?xlimit=5` act as `rows=1` or `limit=5`. Keys are
//! compared as written (not percent-decoded); values are percent-decoded, `+` as a space.

#![forbid(unsafe_code)]

/// The `key=value` pairs of `query` in order, each as written; a pair without `=` has an
/// empty value, and empty pairs (`a=1&&b=2`) are skipped.
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// The percent-decoded value of the first pair whose key is exactly `key`, if any.
pub fn value(query: &str, key: &str) -> Option<Vec<u8>> {
    let raw = pairs(query).find(|(k, _)| *k == key)?.1;
    Some(percent_decode(raw))
}

/// Whether the query turns the switch `key` on: its first pair with exactly that key has the
/// value `1` or `true`.
pub fn flag(query: &str, key: &str) -> bool {
    value(query, key).is_some_and(|v| v == b"1" || v == b"true")
}

/// `%XX` as the byte XX and `+` as a space; a `%` not followed by two hex digits stays as it is.
fn percent_decode(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_by_key_and_percent_decoded() {
        let q = "limit=5&after=a%20b%2Fc+d&x=%zz%4";
        assert_eq!(value(q, "limit").as_deref(), Some(&b"5"[..]));
        assert_eq!(value(q, "after").as_deref(), Some(&b"a b/c d"[..]));
        assert_eq!(value(q, "x").as_deref(), Some(&b"%zz%4"[..]));
        assert_eq!(value(q, "missing"), None);
        assert_eq!(value("", "after"), None);
        assert_eq!(value("a=%41%4", "a").as_deref(), Some(&b"A%4"[..]));
    }

    #[test]
    fn keys_match_whole_never_as_a_substring() {
        for q in [
            "norows=1", "rows_=1", "xrows=1", "a=rows=1", "rows1=1", "Rows=1",
        ] {
            assert!(!flag(q, "rows"), "{q:?} must not turn rows on");
        }
        assert_eq!(value("xlimit=5&limitx=6", "limit"), None);
        assert_eq!(value("a=1&limit=7", "limit").as_deref(), Some(&b"7"[..]));
    }

    #[test]
    fn flags_are_on_only_for_one_or_true() {
        assert!(flag("rows=1", "rows"));
        assert!(flag("a=b&rows=true", "rows"));
        assert!(flag("rows=%31", "rows"), "a decoded value counts");
        for q in [
            "rows=0",
            "rows=",
            "rows",
            "rows=yes",
            "rows=11",
            "rows=TRUE",
            "",
        ] {
            assert!(!flag(q, "rows"), "{q:?}");
        }
        assert!(
            !flag("rows=0&rows=1", "rows"),
            "the first pair with the key decides"
        );
    }

    #[test]
    fn pairs_split_on_ampersands_and_the_first_equals_sign() {
        let got: Vec<_> = pairs("a=1&&b&c=x=y&=z").collect();
        assert_eq!(got, [("a", "1"), ("b", ""), ("c", "x=y"), ("", "z")]);
        assert_eq!(pairs("").count(), 0);
    }
}
