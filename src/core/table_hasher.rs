//! The hasher of the shared tables (location, topics, remote interest): foldhash, with the
//! hashing of a key kept out of line.
//!
//! Why: the message path inlines the tables' `get` (measured: an out-of-line `get` cost the
//! 16-byte SEND path about 10% of its CPU). Whether the compiler inlines it depends on how
//! large `get` is, and it sits at the limit (inline cost 320 against a threshold of 325 before
//! this type; 525 once an unrelated change let the hashing be inlined into it). A call to the
//! hash (whose long-key part is out of line anyway) keeps `get` small and inlined whatever
//! else changes in the crate; the call itself costs about 2% of that path (`perf`).

use foldhash::fast::{FoldHasher, RandomState};
use std::hash::{BuildHasher, Hash};

#[derive(Clone, Debug, Default)]
pub struct TableHasher(RandomState);

impl BuildHasher for TableHasher {
    type Hasher = FoldHasher<'static>;

    #[inline]
    fn build_hasher(&self) -> FoldHasher<'static> {
        self.0.build_hasher()
    }

    #[inline(never)]
    fn hash_one<T: Hash>(&self, x: T) -> u64 {
        self.0.hash_one(x)
    }
}
