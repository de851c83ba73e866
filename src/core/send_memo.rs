//! The location of the last SEND target of one receive. A client streaming to one peer
//! (the common case) sends hundreds of SENDs to the same id in one receive buffer; with the
//! memo the client-location table is looked up once per receive instead of once per message
//! (the lookup, its hash and its key compare were a third of the relay's CPU per message on
//! 1->1 16 B).
//!
//! A memo lives for one receive and no longer (the receive loop makes a fresh one each time),
//! so it never outlives what a lookup at the start of the receive could have returned: every
//! SEND of a receive is routed as if the table had been read once, when the receive began.
//! A row that changes in that window (the target closes or moves) is the same race as one
//! that changes just after a lookup: a local delivery to a closed connection is dropped by
//! its generation, as any delivery in flight is.

use super::location::Location;

/// Ids up to this many bytes are remembered; longer ones are looked up every time. 64 covers
/// every id the project's tools generate and UUIDs in text, and keeps the memo on the stack
/// of the receive loop.
pub const SEND_MEMO_ID_BYTES_MAX: usize = 64;

/// One remembered target id and its location.
pub struct SendMemo {
    /// Bytes of `id` in use; 0 when nothing is remembered (an id is never empty).
    id_len: usize,
    id: [u8; SEND_MEMO_ID_BYTES_MAX],
    to: Location,
}

impl Default for SendMemo {
    fn default() -> Self {
        SendMemo {
            id_len: 0,
            id: [0; SEND_MEMO_ID_BYTES_MAX],
            to: Location::remote(0),
        }
    }
}

impl SendMemo {
    /// Where `target` is, if it is the remembered id.
    #[inline(always)]
    pub fn get(&self, target: &[u8]) -> Option<Location> {
        let n = target.len();
        if n != self.id_len || n == 0 {
            return None;
        }
        same_bytes(&self.id[..n], target).then_some(self.to)
    }

    /// Remembers that `target` is at `to` (ids too long for the memo are not remembered).
    #[inline]
    pub fn put(&mut self, target: &[u8], to: Location) {
        let n = target.len();
        if n == 0 || n > SEND_MEMO_ID_BYTES_MAX {
            return;
        }
        self.id[..n].copy_from_slice(target);
        self.id_len = n;
        self.to = to;
    }
}

/// `a == b` for two slices of one length, inline: eight bytes at a time (the last word may
/// overlap the one before it), so short ids cost a few compares rather than a call to the C
/// library's memcmp, which the slice comparison would make.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| -> u64 {
        u64::from_ne_bytes(
            s[at..at + 8]
                .try_into()
                .expect("an 8-byte range always converts to [u8; 8]"),
        )
    };
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(slot: u32) -> Location {
        Location {
            node: 1,
            worker: 0,
            slot,
            generation: 1,
        }
    }

    #[test]
    fn an_empty_memo_knows_nothing() {
        assert_eq!(SendMemo::default().get(b"a"), None);
        assert_eq!(SendMemo::default().get(b""), None);
    }

    #[test]
    fn the_memo_returns_the_last_id_put_and_only_it() {
        let mut memo = SendMemo::default();
        memo.put(b"receiver-1", at(1));
        assert_eq!(memo.get(b"receiver-1"), Some(at(1)));
        assert_eq!(memo.get(b"receiver-2"), None);
        assert_eq!(memo.get(b"receiver-"), None);
        memo.put(b"receiver-2", at(2));
        assert_eq!(memo.get(b"receiver-1"), None);
        assert_eq!(memo.get(b"receiver-2"), Some(at(2)));
    }

    #[test]
    fn ids_too_long_for_the_memo_are_not_remembered() {
        let mut memo = SendMemo::default();
        memo.put(b"short", at(1));
        let long = [b'x'; SEND_MEMO_ID_BYTES_MAX + 1];
        memo.put(&long, at(2));
        assert_eq!(memo.get(&long), None);
        assert_eq!(
            memo.get(b"short"),
            Some(at(1)),
            "a refused put keeps the memo"
        );
        let longest = [b'y'; SEND_MEMO_ID_BYTES_MAX];
        memo.put(&longest, at(3));
        assert_eq!(memo.get(&longest), Some(at(3)));
    }

    #[test]
    fn the_inline_compare_agrees_with_slice_equality_at_every_length_and_position() {
        for n in 1..=SEND_MEMO_ID_BYTES_MAX {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same_bytes(&a, &a.clone()));
            for differs_at in 0..n {
                let mut b = a.clone();
                b[differs_at] ^= 0x80;
                assert!(!same_bytes(&a, &b), "length {n}, byte {differs_at}");
            }
        }
    }
}
