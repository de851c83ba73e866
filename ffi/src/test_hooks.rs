//! Exports that exist only for the tests (feature `test-hooks`, never in a release build or
//! the package, and not in the header: the C tests declare them).

use crate::boundary::guard;
use crate::status::ringrelay_status;

/// Panics inside the library on purpose: the C tests check that the panic comes back as
/// `RINGRELAY_STATUS_PANIC` with its words in the last error, and that the process lives on.
#[no_mangle]
pub extern "C" fn ringrelay_test_panic() -> ringrelay_status {
    guard(|| panic!("ringrelay_test_panic was called"))
}
