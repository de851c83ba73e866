//! A set that allocates on its first insert, for what a connection may hold many of but
//! usually holds none: its subscriptions and the ids it watches. An empty `HashSet` with its
//! hasher is 40 bytes in every connection's state (README "Memory per idle connection"); this
//! is 8, and the set's memory is given back when it is drained at close.

use foldhash::fast::RandomState;
use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;

#[derive(Debug)]
// The box is the point: 8 bytes in the connection instead of the set's 40.
#[allow(clippy::box_collection)]
pub struct LazySet<T>(Option<Box<HashSet<T, RandomState>>>);

impl<T> Default for LazySet<T> {
    fn default() -> Self {
        LazySet(None)
    }
}

impl<T: Eq + Hash> LazySet<T> {
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.as_ref().is_some_and(|set| set.contains(key))
    }

    /// Adds `value`; returns whether it was new.
    pub fn insert(&mut self, value: T) -> bool {
        self.0.get_or_insert_with(Default::default).insert(value)
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove<Q>(&mut self, key: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.0.as_mut().is_some_and(|set| set.remove(key))
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |set| set.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|set| set.iter())
    }

    /// Takes every element out, freeing the set.
    pub fn drain(&mut self) -> impl Iterator<Item = T> {
        self.0.take().into_iter().flat_map(|set| set.into_iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_set_holds_no_allocation_and_a_drained_one_gives_its_memory_back() {
        assert_eq!(
            std::mem::size_of::<LazySet<Box<[u8]>>>(),
            std::mem::size_of::<usize>()
        );
        let mut set = LazySet::<Box<[u8]>>::default();
        assert!(set.0.is_none() && set.is_empty() && !set.contains(&b"a"[..]));
        assert!(
            !set.remove(&b"a"[..]),
            "nothing to remove, nothing allocated"
        );
        assert!(set.0.is_none());
        assert!(set.insert(b"a"[..].into()));
        assert!(!set.insert(b"a"[..].into()), "already there");
        assert!(set.insert(b"b"[..].into()));
        assert!(set.contains(&b"a"[..]) && set.len() == 2);
        assert!(set.remove(&b"a"[..]) && !set.contains(&b"a"[..]));
        assert_eq!(set.iter().count(), 1);
        let drained: Vec<_> = set.drain().collect();
        assert_eq!(drained, vec![Box::<[u8]>::from(&b"b"[..])]);
        assert!(set.0.is_none() && set.is_empty());
    }
}
