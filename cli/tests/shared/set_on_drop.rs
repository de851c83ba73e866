//! A flag set when the guard is dropped, by a return or by a panic: a thread that loops until
//! the flag is set stops even when the code that was to set it fails an assertion, so the
//! failure is reported instead of a scope (or a join) waiting for that thread for ever.

use std::sync::atomic::{AtomicBool, Ordering};

pub struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
