//! Synchronous SIGINT/SIGTERM/SIGHUP handling with `pthread_sigmask` + `sigwait`: no async
//! signal handler runs, so no code is restricted to async-signal-safe calls. SIGINT and
//! SIGTERM stop the relay; SIGHUP reloads its credentials.

use std::io;
use std::mem::MaybeUninit;

/// The signals that stop the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminationSignal {
    Interrupt,
    Terminate,
}

impl TerminationSignal {
    pub fn name(self) -> &'static str {
        match self {
            TerminationSignal::Interrupt => "SIGINT",
            TerminationSignal::Terminate => "SIGTERM",
        }
    }

    /// The signal's number (for the conventional exit status 128 + number).
    pub fn number(self) -> i32 {
        match self {
            TerminationSignal::Interrupt => libc::SIGINT,
            TerminationSignal::Terminate => libc::SIGTERM,
        }
    }
}

/// What [`ServeSignals::wait`] received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT or SIGTERM: stop.
    Stop(TerminationSignal),
    /// SIGHUP: reload.
    Reload,
}

/// SIGINT, SIGTERM and SIGHUP, blocked in the calling thread (and every thread it spawns
/// later).
pub struct ServeSignals {
    set: libc::sigset_t,
}

impl ServeSignals {
    /// Blocks SIGINT and SIGTERM in the calling thread. Call it before spawning threads so they
    /// inherit the mask; otherwise the default action could kill the process from another
    /// thread before [`ServeSignals::wait`] sees the signal.
    pub fn block() -> io::Result<ServeSignals> {
        let set = termination_set()?;
        // SAFETY: `set` is an initialised sigset_t (from sigemptyset/sigaddset) that outlives
        // the call; a null `oldset` is allowed and means "do not report the old mask".
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(ServeSignals { set })
    }

    /// Blocks until SIGINT, SIGTERM or SIGHUP is pending, consumes it and says which.
    pub fn wait(&self) -> io::Result<Signal> {
        loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: `self.set` is an initialised sigset_t and `signal` is a valid, writable
            // c_int; both outlive the call.
            let rc = unsafe { libc::sigwait(&self.set, &mut signal) };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            match signal {
                libc::SIGINT => return Ok(Signal::Stop(TerminationSignal::Interrupt)),
                libc::SIGTERM => return Ok(Signal::Stop(TerminationSignal::Terminate)),
                libc::SIGHUP => return Ok(Signal::Reload),
                _ => continue,
            }
        }
    }
}

fn termination_set() -> io::Result<libc::sigset_t> {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the whole set it is given, so `set` is initialised
    // after a zero return; sigaddset then only writes within that set. Both get a valid
    // pointer to a sigset_t that lives across the calls.
    unsafe {
        if libc::sigemptyset(set.as_mut_ptr()) != 0
            || libc::sigaddset(set.as_mut_ptr(), libc::SIGINT) != 0
            || libc::sigaddset(set.as_mut_ptr(), libc::SIGTERM) != 0
            || libc::sigaddset(set.as_mut_ptr(), libc::SIGHUP) != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(set.assume_init())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_signal_raised_in_this_thread_is_returned_by_wait() {
        // Own thread, so the test harness's other threads keep their signal mask.
        let result = std::thread::spawn(|| {
            let signals = ServeSignals::block()?;
            // SAFETY: raise() has no memory-safety preconditions; SIGTERM is blocked in this
            // thread, so it stays pending for sigwait instead of terminating the process.
            if unsafe { libc::raise(libc::SIGTERM) } != 0 {
                return Err(io::Error::last_os_error());
            }
            signals.wait()
        })
        .join()
        .unwrap();
        assert_eq!(result.unwrap(), Signal::Stop(TerminationSignal::Terminate));
    }
}
