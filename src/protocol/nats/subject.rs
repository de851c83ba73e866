//! NATS subject rules, as nats-server 2.9 applies them whatever the `pedantic` option says:
//! tokens separated by `.`, none empty; a subscription may use `*` for one token and `>`
//! for the rest (last token only); a publish subject has no wildcard token. A `*` or `>`
//! inside a longer token is an ordinary byte.

fn tokens(subject: &[u8]) -> impl Iterator<Item = &[u8]> {
    subject.split(|&b| b == b'.')
}

/// Whether `subject` may be subscribed to (`-ERR 'Invalid Subject'` otherwise).
pub fn valid_subscribe(subject: &[u8]) -> bool {
    let mut rest_seen = false;
    for token in tokens(subject) {
        if token.is_empty() || rest_seen {
            return false;
        }
        rest_seen = token == b">";
    }
    true
}

/// Whether `subject` may be published to (`-ERR 'Invalid Publish Subject'` otherwise).
pub fn valid_publish(subject: &[u8]) -> bool {
    tokens(subject).all(|t| !t.is_empty() && t != b"*" && t != b">")
}

/// Whether a queue group name is usable (non-empty, no blanks: it came from one argument).
pub fn valid_queue(queue: &[u8]) -> bool {
    !queue.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_subjects() {
        for good in [&b"foo"[..], b"foo.bar", b"foo.*", b"*.>", b">", b"f*o.b>r"] {
            assert!(valid_subscribe(good), "{good:?}");
        }
        for bad in [
            &b""[..],
            b"foo.",
            b".foo",
            b"foo..bar",
            b"foo.>.bar",
            b">.>",
        ] {
            assert!(!valid_subscribe(bad), "{bad:?}");
        }
    }

    #[test]
    fn publish_subjects() {
        for good in [&b"foo"[..], b"foo.bar", b"f*o", b"_INBOX.abc.1"] {
            assert!(valid_publish(good), "{good:?}");
        }
        for bad in [&b""[..], b"foo.", b".foo", b"a..b", b"foo.*", b">"] {
            assert!(!valid_publish(bad), "{bad:?}");
        }
    }
}
