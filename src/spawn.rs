//! Threads that log where their spawner logs. A node embedded in a host process logs through
//! the host's hook: a `tracing` dispatcher set as the default of the node's threads only (the
//! process's global logger is the host's business). [`SpawnLogged::spawn_logged`] carries the
//! spawner's default into each thread the node starts, and those threads carry it on to the
//! threads they start (cluster links, dials, handshakes), so every line of the node reaches
//! the hook.

use std::io;
use std::thread::{Builder, JoinHandle};
use tracing::subscriber::NoSubscriber;

pub trait SpawnLogged {
    /// As [`Builder::spawn`], with the spawning thread's `tracing` default set in the new
    /// thread. When there is none (no subscriber anywhere yet), nothing is set, so a global
    /// subscriber installed later still reaches the thread.
    fn spawn_logged<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;
}

impl SpawnLogged for Builder {
    fn spawn_logged<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let dispatch = tracing::dispatcher::get_default(|current| {
            (!current.is::<NoSubscriber>()).then(|| current.clone())
        });
        self.spawn(move || match dispatch {
            Some(dispatch) => tracing::dispatcher::with_default(&dispatch, f),
            None => f(),
        })
    }
}
