//! A value every core reads and a writer replaces whole: the serving table, the client keys.
//!
//! Readers take an `Arc` snapshot under a short lock; each replacement bumps a generation
//! counter, so a core that caches a snapshot notices a new one with one atomic load per
//! request and takes the lock only then. A writer that must decide against the current
//! value (is this table newer? was my change computed on the value still serving?) decides
//! and replaces under the same lock ([`Published::replace_if`]), so two writers can never
//! interleave a check with the other's replacement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The current value and its generation.
#[derive(Debug, Default)]
pub struct Published<T> {
    current: Mutex<Arc<T>>,
    generation: AtomicU64,
}

impl<T> Published<T> {
    #[must_use]
    pub fn new(first: T) -> Self {
        Self {
            current: Mutex::new(Arc::new(first)),
            generation: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Arc<T>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Increments on every replacement; cores compare it with the generation they hold.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current value and its generation.
    #[must_use]
    pub fn load(&self) -> (u64, Arc<T>) {
        let guard = self.lock();
        (self.generation(), Arc::clone(&guard))
    }

    /// Makes `next` the current value; readers holding the old one keep it.
    pub fn replace(&self, next: T) {
        let mut guard = self.lock();
        *guard = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Replaces the value with `next` if `accept(current, next)` agrees, deciding under the
    /// lock that replacing takes (so no other writer can replace in between). `accept` may
    /// also do what must happen before `next` serves (persist it); its error leaves the
    /// current value in place.
    pub fn replace_if<E>(
        &self,
        next: T,
        accept: impl FnOnce(&T, &T) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut guard = self.lock();
        accept(&guard, &next)?;
        *guard = Arc::new(next);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test")]
    use super::*;

    /// Writers that each decide "only newer" and replace race freely; readers must never
    /// see the value go back. (The end-to-end form of this, with the real watcher and admin
    /// API, is `router/tests/hardening.rs`.)
    #[test]
    fn decisions_and_replacements_do_not_interleave() {
        let cell = Arc::new(Published::new(0u64));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (cell, stop) = (Arc::clone(&cell), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (_, v) = cell.load();
                    assert!(*v >= seen, "went back from {seen} to {v}");
                    seen = *v;
                }
            })
        };
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let cell = Arc::clone(&cell);
                std::thread::spawn(move || {
                    for i in 0..2_000u64 {
                        let candidate = i * 4 + w;
                        let _ = cell.replace_if(candidate, |current, next| {
                            if next > current { Ok(()) } else { Err(()) }
                        });
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        assert_eq!(*cell.load().1, 7_999);
    }
}
