//! `ringrelay_node`: a relay node embedded in the host's process, and its local clients.
//!
//! - **Start** returns once every worker accepts (and, in a cluster, once the node is
//!   ready). Workers pin to CPUs only when `cpus` is set: the host owns its CPUs.
//! - **Stop** closes every connection (SHUTDOWN), lets them drain for at most the time given,
//!   and joins the node's threads. Stopping twice is not an error.
//! - **Local clients** reach the node over a Unix socket pair, with no TCP, through the same
//!   client API.
//! - **Hooks** run on the node's threads (see `config`).

pub mod config;
pub mod hooks;

use crate::boundary::{guard, write_out};
use crate::client::options::ringrelay_client_options;
use crate::client::{identity_args, ringrelay_client, Link};
use crate::status::{ringrelay_status, Failure};
use config::{config_mut, ringrelay_node_config};
use ringrelay::client::{AckedSession, Client, ClientOptions, Session, SessionOptions};
use ringrelay::server::{ServeError, Server};
use std::ffi::c_char;
use std::mem::size_of;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// A node (opaque). Made by `ringrelay_node_start`, freed by `ringrelay_node_free`.
#[allow(non_camel_case_types)]
pub struct ringrelay_node {
    /// `None` once stopped.
    server: Mutex<Option<Server>>,
    /// `"IP:PORT"` the node listens on for clients, NUL-terminated.
    listen_addr: String,
    /// Keeps the hooks (and so their userdata) alive while the node may call them.
    _hooks: hooks::Hooks,
    /// The log hook's dispatcher: stopping logs through it too, on the host's thread.
    log: Option<tracing::Dispatch>,
}

/// Counters of a node. Set `struct_size` to `sizeof(ringrelay_node_stats)` before
/// `ringrelay_node_get_stats`: a later library fills only that many bytes, so a program built
/// against this header keeps working.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ringrelay_node_stats {
    pub struct_size: u32,
    /// Client ids registered on this node now.
    pub registered_clients: u64,
    /// Client connections open now (local clients included).
    pub connections_open: u64,
    /// Cluster data links open now.
    pub links_open: u64,
    pub connections_accepted: u64,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub deliveries: u64,
    /// Sends to an id registered nowhere.
    pub unknown_id: u64,
    pub slow_consumer_closes: u64,
    pub protocol_error_closes: u64,
}

fn serve_failure(e: ServeError) -> Failure {
    Failure::new(start_status(&e), e.to_string())
}

/// The status of a failed start: a worker's failure by what failed in it.
fn start_status(e: &ServeError) -> ringrelay_status {
    use ringrelay::tcp_congestion::TcpCongestionError;
    use ringrelay_status as S;
    match e {
        ServeError::Config(_)
        | ServeError::Credentials { .. }
        | ServeError::OverBudget(_)
        | ServeError::TooManyWorkers(_)
        | ServeError::WorkersPastCpus { .. }
        | ServeError::NoSuchCpu { .. }
        | ServeError::UnreadSecretFile(_)
        | ServeError::TcpCongestion(TcpCongestionError::Refused { .. }) => S::Config,
        ServeError::Resolve { .. }
        | ServeError::Listen { .. }
        | ServeError::AddressInUse { .. }
        | ServeError::ClusterListen { .. }
        | ServeError::MetricsListen { .. } => S::Listen,
        ServeError::IoUringUnavailable { .. } => S::IoUringUnavailable,
        ServeError::Worker { source, .. } => start_status(source),
        ServeError::Panicked(_) => S::NodeFailed,
        // Listed, not matched by `_`: a new failure must be given its status here.
        ServeError::Resource(..)
        | ServeError::TcpCongestion(TcpCongestionError::Probe { .. })
        | ServeError::Enter(_)
        | ServeError::Spawn { .. }
        | ServeError::StartTimeout(_) => S::Resource,
    }
}

impl ringrelay_node {
    /// # Safety
    /// Unless NULL, `node` is a live node from `ringrelay_node_start`.
    unsafe fn from_c<'a>(node: *const ringrelay_node) -> Result<&'a ringrelay_node, Failure> {
        // SAFETY: the caller's promise.
        unsafe { node.as_ref() }.ok_or_else(|| Failure::invalid("node is NULL"))
    }

    fn running(&self) -> Result<MutexGuard<'_, Option<Server>>, Failure> {
        let server = self.server.lock().map_err(|_| {
            Failure::new(
                ringrelay_status::Panic,
                "the node is unusable after a panic",
            )
        })?;
        if server.is_none() {
            return Err(Failure::new(
                ringrelay_status::NodeStopped,
                "the node was stopped",
            ));
        }
        Ok(server)
    }

    fn stop(&self, drain: Duration) {
        let server = self.server.lock().ok().and_then(|mut s| s.take());
        if let Some(server) = server {
            match &self.log {
                Some(log) => {
                    tracing::dispatcher::with_default(log, || server.shutdown_within(drain))
                }
                None => server.shutdown_within(drain),
            }
        }
    }
}

/// Starts a node with `config`'s settings and hooks; returns once it accepts clients. `*out`
/// receives the node. The config is not kept: free or change it afterwards as you like.
/// Fails with `RINGRELAY_STATUS_CONFIG`, `_LISTEN`, `_IO_URING_UNAVAILABLE` or `_RESOURCE`
/// (the reason in the last error; a worker's failure by what failed in it), or
/// `_NODE_FAILED` if a thread of the node panicked while it started. Not allowed inside a
/// hook.
///
/// # Safety
/// `config` is a live config; `out` points to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_start(
    config: *mut ringrelay_node_config,
    out: *mut *mut ringrelay_node,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let config = unsafe { config_mut(config)? };
        if out.is_null() {
            return Err(Failure::invalid("out is NULL"));
        }
        let cfg = config.config()?;
        let hooks = config.hooks.clone();
        let options = hooks.server_options();
        let log = options.log.clone();
        let server = Server::start_with(cfg, options).map_err(serve_failure)?;
        let node = Box::new(ringrelay_node {
            listen_addr: format!("{}\0", server.local_addr()),
            server: Mutex::new(Some(server)),
            _hooks: hooks,
            log,
        });
        // SAFETY: the caller's promise about `out` (checked not NULL above).
        unsafe { write_out(out, Box::into_raw(node), "out") }
    })
}

/// Stops the node: new connections are refused, every connection is closed with SHUTDOWN and
/// given at most `drain_ms` to take what was queued for it, then the node's threads are
/// joined. Local clients see their connection end (a CLOSED event). Stopping a stopped node
/// is not an error. Not allowed inside a hook.
///
/// # Safety
/// Unless NULL, `node` is a live node.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_stop(
    node: *mut ringrelay_node,
    drain_ms: u32,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let node = unsafe { ringrelay_node::from_c(node)? };
        node.stop(Duration::from_millis(u64::from(drain_ms)));
        Ok(())
    })
}

/// Stops the node if it runs (with a drain of 500 ms) and frees it. NULL is ignored. Clients
/// of the node (local or not) stay valid objects, to be freed by their own calls.
///
/// # Safety
/// Unless NULL, `node` is a live node that no other thread uses or will use.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_free(node: *mut ringrelay_node) -> ringrelay_status {
    guard(|| {
        if node.is_null() {
            return Ok(());
        }
        // SAFETY: a live node is a Box from `ringrelay_node_start`, freed once.
        let node = unsafe { Box::from_raw(node) };
        node.stop(Duration::from_millis(500));
        Ok(())
    })
}

/// The address the node listens on for clients, `"IP:PORT"` (the real port when `listen`
/// said port 0), as a NUL-terminated string owned by the node and valid until
/// `ringrelay_node_free`. NULL for NULL.
///
/// # Safety
/// Unless NULL, `node` is a live node.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_listen_addr(node: *const ringrelay_node) -> *const c_char {
    crate::boundary::guard_value(std::ptr::null(), || {
        // SAFETY: the caller's promise.
        match unsafe { ringrelay_node::from_c(node) } {
            Ok(node) => node.listen_addr.as_ptr().cast(),
            Err(_) => std::ptr::null(),
        }
    })
}

/// Fills `*stats` (its first `stats->struct_size` bytes) with the node's counters.
///
/// # Safety
/// `node` is a live node; `stats` points to a writable struct whose `struct_size` is set.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_get_stats(
    node: *const ringrelay_node,
    stats: *mut ringrelay_node_stats,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let node = unsafe { ringrelay_node::from_c(node)? };
        if stats.is_null() {
            return Err(Failure::invalid("stats is NULL"));
        }
        // SAFETY: not NULL; `struct_size` is the first field in every version.
        let given = unsafe { stats.cast::<u32>().read_unaligned() } as usize;
        let server = node.running()?;
        let Some(server) = server.as_ref() else {
            return Err(Failure::new(
                ringrelay_status::NodeStopped,
                "the node was stopped",
            ));
        };
        let s = server.stats();
        let filled = ringrelay_node_stats {
            struct_size: given.min(size_of::<ringrelay_node_stats>()) as u32,
            registered_clients: server.registered_clients() as u64,
            connections_open: s.connections_open,
            links_open: s.links_open,
            connections_accepted: s.connections_accepted,
            frames_in: s.frames_in,
            bytes_in: s.bytes_in,
            deliveries: s.deliveries,
            unknown_id: s.unknown_id,
            slow_consumer_closes: s.slow_consumer_closes,
            protocol_error_closes: s.protocol_error_closes,
        };
        let n = given.min(size_of::<ringrelay_node_stats>());
        // SAFETY: the caller promises `given` writable bytes at `stats`; `n <= given`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&filled as *const ringrelay_node_stats).cast::<u8>(),
                stats.cast::<u8>(),
                n,
            )
        };
        Ok(())
    })
}

/// Attaches a client with id `id` to the node inside this process, with no TCP socket: the same
/// client API as `ringrelay_client_connect` (callback or queue mode from `opts`), and the node
/// serves it as any other client (token check, authorize hook with peer `"local"`, every
/// delivery kind, cluster-wide). It never reconnects: when the node stops, it gets a CLOSED
/// event. The `tls_*` options are not used: the client is in the same process. `*out` receives the client; free it with `ringrelay_client_free`. Not allowed inside
/// a hook.
///
/// # Safety
/// `node` is a live node; `id` points to `id_len` readable bytes; `token` to `token_len` (or
/// NULL with 0); `opts` is NULL or filled by `ringrelay_client_options_init`; `out` points to a
/// writable pointer.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_local_client(
    node: *mut ringrelay_node,
    id: *const u8,
    id_len: usize,
    token: *const u8,
    token_len: usize,
    opts: *const ringrelay_client_options,
    out: *mut *mut ringrelay_client,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises for each argument.
        let node = unsafe { ringrelay_node::from_c(node)? };
        // SAFETY: as above.
        let (id, token, opts) =
            unsafe { identity_args((id, id_len), (token, token_len), opts, out)? };
        let stream = {
            let server = node.running()?;
            let server = server.as_ref().ok_or_else(|| {
                Failure::new(ringrelay_status::NodeStopped, "the node was stopped")
            })?;
            server
                .connect_local()
                .map_err(|e| Failure::new(ringrelay_status::Resource, e.to_string()))?
        };
        let client_opts = ClientOptions {
            connect_timeout: Duration::from_millis(u64::from(opts.connect_timeout_ms.max(1))),
            ..ClientOptions::default()
        };
        let token = (!token.is_empty()).then_some(token);
        let client = Client::connect_local(stream, id, token, client_opts)?;
        let session = Session::over_client(client, "local");
        let link = match opts.acked {
            true => Link::acked(AckedSession::over(
                session,
                opts.acked_session(SessionOptions::default()),
            )),
            false => Link::Plain(Box::new(session)),
        };
        let client = crate::client::start(link, Default::default(), &opts)?;
        // SAFETY: the caller's promise about `out` (checked not NULL above).
        unsafe { write_out(out, client, "out") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringrelay::tcp_congestion::TcpCongestionError;
    use ringrelay_status as S;

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EMFILE)
    }

    #[test]
    fn a_failed_start_has_the_status_of_what_failed_even_inside_a_worker() {
        let in_worker = |source| ServeError::Worker {
            worker: 1,
            source: Box::new(source),
        };
        let refused = || TcpCongestionError::Refused {
            name: "x".into(),
            source: io(),
        };
        let probe = || TcpCongestionError::Probe {
            name: "x".into(),
            source: io(),
        };
        let unavailable = || ServeError::IoUringUnavailable {
            source: io(),
            fix: String::new(),
        };
        for (error, status) in [
            (ServeError::TcpCongestion(refused()), S::Config),
            (ServeError::TcpCongestion(probe()), S::Resource),
            (unavailable(), S::IoUringUnavailable),
            (in_worker(unavailable()), S::IoUringUnavailable),
            (
                in_worker(ServeError::Resource("set up the ring", io())),
                S::Resource,
            ),
            (ServeError::Panicked("worker"), S::NodeFailed),
        ] {
            assert_eq!(start_status(&error), status, "{error}");
        }
    }
}
