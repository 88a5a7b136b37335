//! Per-core free lists of buffers, so a request borrows its scratch space instead of
//! allocating (and zeroing) it. Single-threaded by construction: each core owns its lists.
//!
//! A list keeps what comes back up to a byte budget, so that a burst of concurrent
//! requests (each holding several buffers) leaves the core with a bounded amount of spare
//! memory, and steady traffic at any concurrency within the budget allocates nothing.

use std::cell::{Cell, RefCell};

/// Free lists keep at most this many items.
const MAX_KEPT: usize = 1024;

/// Free lists keep items whose sizes add up to at most this many bytes.
const MAX_KEPT_BYTES: usize = 8 * 1024 * 1024;

/// What a free list may hold: how many bytes an item holds on to, and which items are too
/// big to keep.
pub trait Recyclable: Default {
    fn worth_keeping(&self) -> bool;
    fn bytes(&self) -> usize;
}

impl Recyclable for Vec<u8> {
    fn worth_keeping(&self) -> bool {
        self.capacity() <= 256 * 1024
    }
    fn bytes(&self) -> usize {
        self.capacity()
    }
}

impl Recyclable for Vec<crate::http::HeaderIdx> {
    fn worth_keeping(&self) -> bool {
        self.capacity() <= 1024
    }
    fn bytes(&self) -> usize {
        self.capacity() * size_of::<crate::http::HeaderIdx>()
    }
}

impl Recyclable for crate::dialect::de::Parser {
    fn worth_keeping(&self) -> bool {
        // Its buffers are as large as the largest input it parsed.
        self.largest <= 1024 * 1024 && self.spare.capacity() <= 1024 * 1024
    }
    fn bytes(&self) -> usize {
        // The input buffers, the string buffer and the structural indexes (4 bytes each,
        // about one per 8 input bytes), the tape; a rough upper bound is enough here.
        self.largest * 3 + self.spare.capacity()
    }
}

/// A free list of `T`.
#[derive(Debug, Default)]
pub struct FreeList<T> {
    items: RefCell<Vec<T>>,
    /// What the kept items hold, by [`Recyclable::bytes`].
    kept_bytes: Cell<usize>,
}

impl<T: Recyclable> FreeList<T> {
    /// An item from the list (contents unspecified: callers clear or overwrite what they
    /// use), or a new one.
    pub fn take(&self) -> Recycled<'_, T> {
        let item = match self.items.borrow_mut().pop() {
            Some(item) => {
                self.kept_bytes
                    .set(self.kept_bytes.get().saturating_sub(item.bytes()));
                item
            }
            None => T::default(),
        };
        Recycled { list: self, item }
    }

    fn give_back(&self, item: T) {
        let bytes = item.bytes();
        let mut items = self.items.borrow_mut();
        if items.len() < MAX_KEPT
            && item.worth_keeping()
            && self.kept_bytes.get() + bytes <= MAX_KEPT_BYTES
        {
            self.kept_bytes.set(self.kept_bytes.get() + bytes);
            items.push(item);
        }
    }

    /// How many items the list holds now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.items.borrow().len()
    }

    /// Whether the list is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An item borrowed from a [`FreeList`], returned to it on drop.
#[derive(Debug)]
pub struct Recycled<'a, T: Recyclable> {
    list: &'a FreeList<T>,
    item: T,
}

impl<T: Recyclable> std::ops::Deref for Recycled<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T: Recyclable> std::ops::DerefMut for Recycled<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.item
    }
}

impl<T: Recyclable> Drop for Recycled<'_, T> {
    fn drop(&mut self) {
        // `T::default()` must not allocate (it is made here on every return).
        let item = std::mem::take(&mut self.item);
        self.list.give_back(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_items_up_to_its_byte_budget() {
        let list = FreeList::<Vec<u8>>::default();
        let held: Vec<_> = (0..100)
            .map(|_| {
                let mut b = list.take();
                b.reserve_exact(200 * 1024);
                b
            })
            .collect();
        drop(held);
        // 200 KiB each: 40 fit in 8 MiB.
        assert_eq!(list.len(), MAX_KEPT_BYTES / (200 * 1024));
        // Taking one gives its bytes back to the budget, so the next return is kept.
        let b = list.take();
        assert!(b.capacity() >= 200 * 1024);
        drop(b);
        assert_eq!(list.len(), MAX_KEPT_BYTES / (200 * 1024));
    }

    #[test]
    fn many_small_items_are_kept_for_a_burst() {
        let list = FreeList::<Vec<u8>>::default();
        let held: Vec<_> = (0..600)
            .map(|_| {
                let mut b = list.take();
                b.reserve_exact(2048);
                b
            })
            .collect();
        drop(held);
        assert_eq!(list.len(), 600);
        let too_big = {
            let mut b = list.take();
            b.reserve_exact(1024 * 1024);
            b
        };
        drop(too_big);
        assert_eq!(list.len(), 599, "an item over 256 KiB is not kept");
    }
}
