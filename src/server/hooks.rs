//! What a host process that embeds a node can plug in (the C API's hooks), and how the node
//! starts there: [`ServerOptions`] for [`super::Server::start_with`].

use crate::core::Authorizer;
use std::sync::Arc;

/// Told on a worker thread when a client id registers on this node (`true`) or its
/// registration ends (`false`). Must be quick: the worker waits for it.
pub type PresenceFn = dyn Fn(&[u8], bool) + Send + Sync;

/// How a node starts. `Default` is what `ringrelay serve` does.
#[derive(Clone)]
pub struct ServerOptions {
    /// Pin each worker to a CPU when `cpus` is not configured (a dedicated relay host: the
    /// default). An embedded node sets false: the host process owns its CPUs, so workers pin
    /// only to the `cpus` configured.
    pub pin_workers_by_default: bool,
    /// Asked at every HELLO after the token check (see [`Authorizer`]).
    pub authorize: Option<Authorizer>,
    /// Told of this node's registrations; see [`PresenceFn`].
    pub presence: Option<Arc<PresenceFn>>,
    /// The `tracing` dispatcher of every thread of the node (workers, metrics, cluster links;
    /// see [`crate::spawn`]) and of `start` itself, instead of the process's global one.
    pub log: Option<tracing::Dispatch>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            pin_workers_by_default: true,
            authorize: None,
            presence: None,
            log: None,
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("pin_workers_by_default", &self.pin_workers_by_default)
            .field("authorize", &self.authorize.is_some())
            .field("presence", &self.presence.is_some())
            .field("log", &self.log.is_some())
            .finish()
    }
}
