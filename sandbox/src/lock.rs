//! The lock around a twin's state.
//!
//! Every twin keeps its state behind one [`TwinLock`], shared by all server workers. Two ways
//! of misusing it would block a worker thread for good, and with it every twin that worker
//! serves: taking the lock again while the same request holds it (a helper that locks, called
//! under the caller's guard), and awaiting while holding it (another request on the same
//! worker then blocks on a lock whose holder can never resume). So:
//! - helpers that need the state take the locked `&Inner`/`&mut Inner`, never the twin's state;
//! - `clippy.toml` lists [`TwinGuard`] in `await-holding-invalid-types`, so a guard held across
//!   an `.await` fails the lint;
//! - whatever slips through panics at once with its name instead of deadlocking: the lock
//!   knows which thread holds it, and a thread never waits for a lock it holds itself.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};

thread_local! {
    /// Addresses of the twin locks this thread holds.
    static HELD: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// A mutex that refuses re-entry from the thread holding it (a panic, not a deadlock) and
/// survives a handler that panicked while holding it.
pub(crate) struct TwinLock<T> {
    inner: Mutex<T>,
}

impl<T> TwinLock<T> {
    pub fn new(value: T) -> Self {
        Self {
            inner: Mutex::new(value),
        }
    }

    /// Locks until the guard is dropped.
    ///
    /// # Panics
    /// When this thread already holds this lock: waiting would never end.
    #[track_caller]
    pub fn lock(&self) -> TwinGuard<'_, T> {
        let id = self.id();
        if HELD.with(|held| held.borrow().contains(&id)) {
            panic!(
                "twin state locked twice by one thread: a helper took the lock its caller holds, \
                 or a guard was held across an await"
            );
        }
        // A panicking handler must not take the whole twin down with it.
        let guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        HELD.with(|held| held.borrow_mut().push(id));
        TwinGuard {
            guard,
            id,
            _not_send: PhantomData,
        }
    }

    fn id(&self) -> usize {
        std::ptr::from_ref(&self.inner) as usize
    }
}

impl<T: fmt::Debug> fmt::Debug for TwinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatting must not lock: a Debug print under the guard would deadlock.
        f.debug_struct("TwinLock").finish_non_exhaustive()
    }
}

/// The locked state; unlocks when dropped. Not `Send`: it is dropped on the thread that took
/// it, which is what lets the lock tell re-entry from contention.
pub(crate) struct TwinGuard<'a, T> {
    guard: MutexGuard<'a, T>,
    id: usize,
    _not_send: PhantomData<*const ()>,
}

impl<T> Drop for TwinGuard<'_, T> {
    fn drop(&mut self) {
        let id = self.id;
        HELD.with(|held| {
            let mut held = held.borrow_mut();
            if let Some(i) = held.iter().rposition(|h| *h == id) {
                held.swap_remove(i);
            }
        });
    }
}

impl<T> Deref for TwinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for TwinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_by_the_holding_thread_panics_instead_of_waiting() {
        let lock = TwinLock::new(1);
        let guard = lock.lock();
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _second = lock.lock();
        }));
        assert!(again.is_err());
        drop(guard);
        // Released: the next request locks as usual.
        assert_eq!(*lock.lock(), 1);
    }

    #[test]
    fn other_threads_wait_for_the_holder_and_distinct_locks_nest() {
        let a = std::sync::Arc::new(TwinLock::new(0));
        let b = TwinLock::new(0);
        let mut guard = a.lock();
        let _other = b.lock();
        let waiter = {
            let a = a.clone();
            std::thread::spawn(move || *a.lock() += 1)
        };
        *guard += 1;
        drop(guard);
        waiter.join().unwrap();
        assert_eq!(*a.lock(), 2);
    }

    #[test]
    fn a_panic_under_the_guard_releases_it() {
        let lock = TwinLock::new(vec![1]);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut g = lock.lock();
            g.push(2);
            panic!("handler bug");
        }));
        assert_eq!(*lock.lock(), vec![1, 2]);
    }
}
