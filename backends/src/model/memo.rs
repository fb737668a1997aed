//! A hash kept beside what it summarizes, computed when first asked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A u64 computed at most once per version of the value it summarizes (whoever changes the
/// value resets it), as `OnceLock<u64>` would keep it, for two atomic loads once known: the
/// race search asks for the fingerprint of every state it reaches, and `OnceLock` went
/// through `Once` each time it was set. Threads that race to set it compute the same value.
#[derive(Default)]
pub(super) struct Memo {
    value: AtomicU64,
    known: AtomicBool,
}

impl Memo {
    /// The value, computed by `f` where not yet known.
    pub(super) fn get_or_init(&self, f: impl FnOnce() -> u64) -> u64 {
        if self.known.load(Ordering::Acquire) {
            return self.value.load(Ordering::Relaxed);
        }
        let value = f();
        self.value.store(value, Ordering::Relaxed);
        self.known.store(true, Ordering::Release);
        value
    }
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        let memo = Memo::default();
        if self.known.load(Ordering::Acquire) {
            memo.value.store(self.value.load(Ordering::Relaxed), Ordering::Relaxed);
            memo.known.store(true, Ordering::Relaxed);
        }
        memo
    }
}
