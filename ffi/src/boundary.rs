//! The API boundary: every export runs inside [`guard`] (a panic becomes
//! `RINGRELAY_STATUS_PANIC`, never an unwind into C), failures leave their words in the
//! thread-local last error, and arguments from C are checked here before Rust sees them.

use crate::status::{ringrelay_status, Failure};
use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Longest last-error text kept (a longer one is cut at a character boundary).
const LAST_ERROR_BYTES_MAX: usize = 1024;

thread_local! {
    /// The words of the last failure on this thread (`ringrelay_last_error`).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
    /// The object whose callback this thread is running (NULL: none), so a call that would
    /// deadlock or free it under its own feet is refused with `RINGRELAY_STATUS_IN_CALLBACK`.
    static IN_CALLBACK_OF: Cell<*const c_void> = const { Cell::new(std::ptr::null()) };
    /// This thread runs a node's hook (on a worker): every call but the status, error and
    /// version ones is refused, since most could wait on the worker that waits for the hook.
    static IN_NODE_HOOK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `body` (a call into a host's node hook) marked as such on this thread.
pub(crate) fn in_node_hook<T>(body: impl FnOnce() -> T) -> T {
    let outer = IN_NODE_HOOK.with(|h| h.replace(true));
    let result = body();
    IN_NODE_HOOK.with(|h| h.set(outer));
    result
}

/// Runs an export's body: `Ok` gives `RINGRELAY_STATUS_OK`; a failure or a panic gives its
/// status and leaves its words in the last error.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> ringrelay_status {
    if IN_NODE_HOOK.with(Cell::get) {
        set_last_error("ringrelay calls are not allowed inside a node hook");
        return ringrelay_status::InCallback;
    }
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ringrelay_status::Ok,
        Ok(Err(failure)) => {
            set_last_error(&failure.text);
            failure.status
        }
        Err(panic) => {
            set_last_error(&format!("panic in ringrelay: {}", panic_text(&*panic)));
            ringrelay_status::Panic
        }
    }
}

/// As [`guard`] for an export that returns a value: `fallback` on a panic.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(panic) => {
            set_last_error(&format!("panic in ringrelay: {}", panic_text(&*panic)));
            fallback
        }
    }
}

/// The message a panic carried.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

pub(crate) fn set_last_error(text: &str) {
    let mut end = text.len().min(LAST_ERROR_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // Interior NULs would cut the C string short; the words stay readable without them.
    let clean = text[..end].replace('\0', " ");
    LAST_ERROR.with(|last| *last.borrow_mut() = clean);
}

/// Runs `body` marked as a callback of `object` on this thread (nesting restores the outer
/// mark).
pub(crate) fn in_callback_of<T>(object: *const c_void, body: impl FnOnce() -> T) -> T {
    struct Restore(*const c_void);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_CALLBACK_OF.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(IN_CALLBACK_OF.with(|c| c.replace(object)));
    body()
}

/// Fails with `RINGRELAY_STATUS_IN_CALLBACK` when this thread runs a callback of `object`.
pub(crate) fn refuse_in_callback_of(object: *const c_void, call: &str) -> Result<(), Failure> {
    if IN_CALLBACK_OF.with(Cell::get) == object {
        return Err(Failure::new(
            ringrelay_status::InCallback,
            format!("{call} is not allowed inside a callback of the same object"),
        ));
    }
    Ok(())
}

/// The bytes `(ptr, len)` names: empty when `len` is 0 (then `ptr` may be NULL).
///
/// # Safety
/// Unless `len` is 0 or `ptr` is NULL, `ptr` points to `len` readable bytes that stay valid
/// and unchanged for `'a` (the caller's promise, stated in the header for every such pair).
pub(crate) unsafe fn bytes_arg<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::invalid(format!(
            "{what} is NULL with length {len}"
        )));
    }
    // SAFETY: `ptr` is not NULL and the caller promises `len` readable bytes for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The NUL-terminated string `ptr` names, as UTF-8.
///
/// # Safety
/// Unless NULL, `ptr` points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: not NULL, and the caller promises a NUL-terminated string valid for `'a`.
    let c = unsafe { std::ffi::CStr::from_ptr(ptr) };
    c.to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// Writes `value` through `out`, the last step of a call that succeeded.
///
/// # Safety
/// Unless NULL, `out` points to writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, value: T, what: &str) -> Result<(), Failure> {
    if out.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: not NULL, and the caller promises it points to writable memory for a `T`.
    unsafe { out.write(value) };
    Ok(())
}

/// Copies the last error of this thread into `buf` (at most `len` bytes, NUL included, always
/// NUL-terminated when `len` > 0) and returns the full length of the text without its NUL,
/// so a return value >= `len` means it was cut. Empty when no call on this thread has failed.
/// `buf` may be NULL when `len` is 0 (to ask for the length). Callable from any thread and
/// inside callbacks.
///
/// # Safety
/// Unless `len` is 0, `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_last_error(buf: *mut c_char, len: usize) -> usize {
    guard_value(0, || {
        LAST_ERROR.with(|last| {
            let text = last.borrow();
            if len > 0 && !buf.is_null() {
                let n = text.len().min(len - 1);
                // SAFETY: the caller promises `len` writable bytes at `buf`; `n + 1 <= len`.
                unsafe {
                    std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
                    buf.add(n).write(0);
                }
            }
            text.len()
        })
    })
}
