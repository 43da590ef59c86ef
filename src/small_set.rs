//! A small, sorted, shared set: what the live model keeps for each subject
//! (the flags naming it, the organizations of a user). Most hold one to a
//! few items, so a sorted slice behind an `Arc` is far smaller than a tree
//! node, and a snapshot that copies the map shares it; a change builds a new
//! slice, which costs in proportion to the set.

use std::sync::Arc;

#[derive(Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SmallSet<T>(Arc<[T]>);

impl<T> Clone for SmallSet<T> {
    fn clone(&self) -> Self {
        SmallSet(self.0.clone())
    }
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        SmallSet(Arc::from(Vec::new()))
    }
}

impl<T: Ord + Clone> SmallSet<T> {
    /// The set of `items`, sorted and each once.
    pub fn from_items(items: impl IntoIterator<Item = T>) -> Self {
        let mut items: Vec<T> = items.into_iter().collect();
        items.sort();
        items.dedup();
        SmallSet(Arc::from(items))
    }

    pub fn contains(&self, item: &T) -> bool {
        self.0.binary_search(item).is_ok()
    }

    /// This set with `item` (the same set when it is there already).
    pub fn with(&self, item: T) -> Self {
        match self.0.binary_search(&item) {
            Ok(_) => self.clone(),
            Err(at) => {
                let mut items = Vec::with_capacity(self.0.len() + 1);
                items.extend_from_slice(&self.0[..at]);
                items.push(item);
                items.extend_from_slice(&self.0[at..]);
                SmallSet(Arc::from(items))
            }
        }
    }

    /// This set without `item`.
    pub fn without(&self, item: &T) -> Self {
        match self.0.binary_search(item) {
            Err(_) => self.clone(),
            Ok(at) => {
                let mut items = Vec::with_capacity(self.0.len().saturating_sub(1));
                items.extend_from_slice(&self.0[..at]);
                items.extend_from_slice(&self.0[at + 1..]);
                SmallSet(Arc::from(items))
            }
        }
    }
}

impl<T> SmallSet<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a, T> IntoIterator for &'a SmallSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::SmallSet;

    #[test]
    fn stays_sorted_and_unique() {
        let set = SmallSet::from_items([3, 1, 3, 2]);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        let set = set.with(0).with(2).with(5);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 1, 2, 3, 5]);
        let set = set.without(&2).without(&9);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 1, 3, 5]);
        assert!(set.contains(&3) && !set.contains(&2));
    }
}
