//! Per-core free lists of buffers, so a request borrows its scratch space instead of
//! allocating (and zeroing) it. Single-threaded by construction: each core owns its lists.

use std::cell::RefCell;

/// Free lists keep at most this many items.
const MAX_KEPT: usize = 64;

/// What a free list may hold, and which items are too big to keep.
pub trait Recyclable: Default {
    fn worth_keeping(&self) -> bool;
}

impl Recyclable for Vec<u8> {
    fn worth_keeping(&self) -> bool {
        self.capacity() <= 256 * 1024
    }
}

impl Recyclable for Vec<crate::http::HeaderIdx> {
    fn worth_keeping(&self) -> bool {
        self.capacity() <= 1024
    }
}

impl Recyclable for crate::dialect::de::Parser {
    fn worth_keeping(&self) -> bool {
        // Its buffers are as large as the largest input it parsed.
        self.largest <= 1024 * 1024
    }
}

/// A free list of `T`.
#[derive(Debug, Default)]
pub struct FreeList<T> {
    items: RefCell<Vec<T>>,
}

impl<T: Recyclable> FreeList<T> {
    /// An item from the list (contents unspecified: callers clear or overwrite what they
    /// use), or a new one.
    pub fn take(&self) -> Recycled<'_, T> {
        let item = self.items.borrow_mut().pop().unwrap_or_default();
        Recycled { list: self, item }
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
        let item = std::mem::take(&mut self.item);
        let mut items = self.list.items.borrow_mut();
        if items.len() < MAX_KEPT && item.worth_keeping() {
            items.push(item);
        }
    }
}
