//! Why the relay could not start, or stopped.

use std::io;
use std::net::SocketAddr;

/// Why the relay could not start, or stopped. Each variant names what failed and carries the
/// underlying error, so `serve` can print the cause and a caller can match on the kind.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("credentials file {path}: {reason}")]
    Credentials { path: String, reason: String },
    #[error("{0}")]
    OverBudget(Box<crate::memory_budget::OverBudget>),
    /// A secret file setting (`token_file`, ...) that was not read into its value: started
    /// anyway, the relay would run without that secret.
    #[error(
        "invalid config: {0} is set but was not read: call Config::read_secret_files before \
         Server::start (ringrelay serve does)"
    )]
    UnreadSecretFile(&'static str),
    #[error("too many workers: {0} (at most 65535)")]
    TooManyWorkers(usize),
    #[error(
        "too many workers: {workers} for {cpus} CPUs (at most {max}, {per_cpu} per CPU): the \
         relay runs one worker per core, and more only contend for the CPUs and slow the start"
    )]
    WorkersPastCpus {
        workers: usize,
        cpus: usize,
        max: usize,
        per_cpu: usize,
    },
    #[error("CPU {cpu} does not exist or is outside this process's cpuset (possible: {possible})")]
    NoSuchCpu { cpu: usize, possible: String },
    #[error("cannot resolve {setting} = {endpoint}: {source}")]
    Resolve {
        setting: &'static str,
        endpoint: String,
        source: io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    /// A `tcp_congestion` the kernel does not give the relay, or no socket to try it on.
    #[error(transparent)]
    TcpCongestion(#[from] crate::tcp_congestion::TcpCongestionError),
    /// Another process (another relay?) listens on the client address. The workers share
    /// their port with SO_REUSEPORT, so without this check a second relay would start and
    /// the kernel would split clients between two relays that do not know each other.
    #[error("cannot listen on {addr}: address in use: another relay (or another program) is listening there")]
    AddressInUse { addr: SocketAddr },
    #[error("cannot listen for cluster links on {addr}: {source}")]
    ClusterListen { addr: SocketAddr, source: io::Error },
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsListen { addr: SocketAddr, source: io::Error },
    #[error("io_uring is unavailable: io_uring_setup failed ({source}). Fix: {fix}")]
    IoUringUnavailable { source: io::Error, fix: String },
    #[error("cannot {0}: {1}")]
    Resource(&'static str, #[source] io::Error),
    #[error("worker {worker}: {source}")]
    Worker {
        worker: u16,
        #[source]
        source: Box<ServeError>,
    },
    #[error("io_uring_enter failed: {0}")]
    Enter(#[source] io::Error),
    #[error("cannot spawn the {what} thread: {source}")]
    Spawn {
        what: &'static str,
        source: io::Error,
    },
    #[error("workers did not start within {0} s")]
    StartTimeout(u64),
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
}

impl ServeError {
    /// This error, as seen from worker `worker`.
    pub fn in_worker(self, worker: u16) -> ServeError {
        ServeError::Worker {
            worker,
            source: Box::new(self),
        }
    }
}
