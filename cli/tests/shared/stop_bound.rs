//! A relay's shutdown (or a wait for its workers to exit) with a bound: joining the workers
//! has no bound of its own, so a relay that never stops fails the test instead of hanging the
//! CI run (the stuck thread is left behind).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// How long a relay in a test may take to stop: far above the second or so it takes, so only
/// a relay that does not stop at all reaches it.
pub const STOP_BOUND: Duration = Duration::from_secs(30);

/// Runs `stop` on a helper thread and returns its result; panics naming `what` if it takes
/// longer than [`STOP_BOUND`].
pub fn stopped_within_bound<T: Send + 'static>(
    what: &str,
    stop: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (done_tx, done_rx) = mpsc::channel();
    let stopper = std::thread::spawn(move || {
        let _ = done_tx.send(stop());
    });
    match done_rx.recv_timeout(STOP_BOUND) {
        Ok(result) => {
            stopper.join().expect("the stopping thread never panics");
            result
        }
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not return within {STOP_BOUND:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}
