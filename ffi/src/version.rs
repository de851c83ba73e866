//! What library this is: `ringrelay_version()` and `ringrelay_version_number()`.

use std::ffi::c_char;

/// `"ringrelay 0.1.0 (commit 0123456789ab)"`, NUL-terminated.
const VERSION_TEXT: &str = concat!(
    "ringrelay ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("RINGRELAY_BUILD_COMMIT"),
    ")\0"
);

/// The library's version and the git commit it was built from, as a static NUL-terminated
/// string such as `"ringrelay 0.1.0 (commit 0123456789ab)"`. Never NULL, never freed. Callable
/// from any thread and inside callbacks.
#[no_mangle]
pub extern "C" fn ringrelay_version() -> *const c_char {
    VERSION_TEXT.as_ptr().cast()
}

/// The library's version as one number, `major * 1000000 + minor * 1000 + patch` (0.1.0 is
/// 1000), to compare with `RINGRELAY_VERSION_NUMBER`, the version of the header a program was
/// built with. Callable from any thread and inside callbacks.
#[no_mangle]
pub extern "C" fn ringrelay_version_number() -> u32 {
    version_number()
}

pub(crate) fn version_number() -> u32 {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0);
    part(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
        + part(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
        + part(env!("CARGO_PKG_VERSION_PATCH"))
}
