//! Relay settings: defaults with their reasons, and the TOML config file.
//!
//! Every field can be set in the TOML file (`ringrelay serve --config FILE`); command-line flags
//! override the file. Units are in the names.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;

/// All relay settings. `Default` gives the documented defaults.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Client listen address. Default 127.0.0.1:7400: loopback until the operator opens it up.
    /// Port 0 picks a free port (every worker then shares the one the first worker got).
    pub listen: SocketAddr,
    /// Worker threads (one io_uring loop each). 0 means one per CPU the process may run on.
    pub workers: usize,
    /// CPUs to pin workers to, one worker per entry; overrides `workers` when set.
    pub cpus: Option<Vec<usize>>,
    /// Token that HELLO must carry; `None` accepts any token.
    pub token: Option<String>,
    /// Bound on one frame, header included. 1 MiB: room for bulk payloads while one
    /// connection can never make the relay buffer more than that for an unfinished frame.
    pub max_frame_bytes: usize,
    /// Outbound bytes queued per connection before it is closed as a slow consumer. 8 MiB:
    /// several hundred milliseconds of a fast consumer's traffic, so bursts pass, while 10,000
    /// stuck consumers cannot exhaust memory unnoticed (each is closed at its bound).
    pub pending_bytes_max: usize,
    /// A connection must send a valid HELLO within this time. 5 s: generous for a WAN client,
    /// short enough that idle sockets from scanners do not pile up.
    pub handshake_timeout_ms: u64,
    /// The relay pings a connection that sent nothing for this long. 5 s.
    pub heartbeat_interval_ms: u64,
    /// Missed pings before the connection is closed and its client reported offline. 3, so a
    /// dead client is detected within about (3 + 1) x 5 s = 20 s, while one lost ping or a
    /// short pause never evicts a live client.
    pub heartbeat_misses_max: u32,
    /// Connections per worker; more are refused with reason "connection limit". 65,536.
    pub connections_per_worker_max: usize,
    /// Receive buffers per worker (provided buffer ring entries, a power of two). 1024.
    pub recv_buffer_count: usize,
    /// Size of each receive buffer. 16 KiB: a recv of a busy connection fills a buffer with
    /// hundreds of small frames while 1024 of them cost only 16 MiB per worker.
    pub recv_buffer_bytes: usize,
    /// Frames of at least this many bytes (and at most `zero_copy_max_bytes`) are received
    /// into their own buffer and their payload is sent from it with no copy (gathered send).
    /// 64 KiB: measured here, below it the zero-copy path costs more relay CPU per message than
    /// copying (+18% at 32 KiB, +55% at 16 KiB); from 64 KiB to 256 KiB it breaks even or wins
    /// (up to -19%). See README "Zero-copy threshold".
    pub zero_copy_threshold_bytes: usize,
    /// Upper end of the zero-copy band. 256 KiB: above about half the per-core L2 cache the
    /// payload is no longer hot when it is sent, and copying into the (hot, reused) send buffer
    /// wins: measured +19% CPU per message at 512 KiB and +33% at 1 MiB on the zero-copy path.
    pub zero_copy_max_bytes: usize,
    /// Bytes a worker queues for another worker before further messages are dropped with an
    /// OVERLOADED error to the sender (counted). 16 MiB.
    pub handoff_bytes_max: usize,
    /// How long a closing connection may take to flush its final CLOSE frame. 1 s.
    pub close_linger_ms: u64,
    /// Address of the Prometheus metrics endpoint (`/metrics`, `/healthz`), served over HTTP
    /// by a thread of its own. `None` (the default): no endpoint. Keep it on loopback or a
    /// management network; it has no authentication.
    pub metrics: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7400".parse().expect("literal address"),
            workers: 0,
            cpus: None,
            token: None,
            max_frame_bytes: crate::protocol::MAX_FRAME_BYTES_DEFAULT,
            pending_bytes_max: 8 << 20,
            handshake_timeout_ms: 5_000,
            heartbeat_interval_ms: 5_000,
            heartbeat_misses_max: 3,
            connections_per_worker_max: 65_536,
            recv_buffer_count: 1024,
            recv_buffer_bytes: 16 * 1024,
            zero_copy_threshold_bytes: 64 * 1024,
            zero_copy_max_bytes: 256 * 1024,
            handoff_bytes_max: 16 << 20,
            close_linger_ms: 1_000,
            metrics: None,
        }
    }
}

/// A config that cannot be used, with the reason.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads a TOML file; unknown keys are errors (a typo must not silently use a default).
    pub fn from_toml_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
        Self::from_toml_str(&text)
            .map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
    }

    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the bounds that the relay relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: &str| Err(ConfigError(s.to_string()));
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > (1 << 30) {
            return err("max_frame_bytes must be between 1024 and 1073741824");
        }
        if self.pending_bytes_max < self.max_frame_bytes {
            return err("pending_bytes_max must be at least max_frame_bytes");
        }
        if !self.recv_buffer_count.is_power_of_two()
            || !(16..=32768).contains(&self.recv_buffer_count)
        {
            return err("recv_buffer_count must be a power of two between 16 and 32768");
        }
        if !(4096..=(1 << 20)).contains(&self.recv_buffer_bytes) {
            return err("recv_buffer_bytes must be between 4096 and 1048576");
        }
        if self.zero_copy_max_bytes < self.zero_copy_threshold_bytes {
            return err("zero_copy_max_bytes must be at least zero_copy_threshold_bytes");
        }
        if self.zero_copy_threshold_bytes < 1024 {
            return err("zero_copy_threshold_bytes must be at least 1024 (smaller frames are cheaper to copy)");
        }
        if self.heartbeat_interval_ms == 0 || self.handshake_timeout_ms == 0 {
            return err("heartbeat_interval_ms and handshake_timeout_ms must be positive");
        }
        if self.heartbeat_interval_ms > 3_600_000 || self.handshake_timeout_ms > 3_600_000 {
            return err(
                "heartbeat_interval_ms and handshake_timeout_ms must be at most 3600000 (1 h)",
            );
        }
        if self.heartbeat_misses_max == 0 {
            return err("heartbeat_misses_max must be at least 1");
        }
        if self.connections_per_worker_max == 0 || self.connections_per_worker_max > (1 << 24) {
            return err("connections_per_worker_max must be between 1 and 16777216");
        }
        if let Some(cpus) = &self.cpus {
            if cpus.is_empty() {
                return err("cpus must list at least one CPU");
            }
        }
        Ok(())
    }

    /// The number of workers this config starts.
    pub fn worker_count(&self) -> usize {
        match &self.cpus {
            Some(cpus) => cpus.len(),
            None if self.workers > 0 => self.workers,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_overrides_them() {
        Config::default().validate().unwrap();
        let cfg = Config::from_toml_str(
            "listen = \"127.0.0.1:9000\"\nworkers = 2\npending_bytes_max = 2097152\n",
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.worker_count(), 2);
        assert_eq!(cfg.pending_bytes_max, 2 << 20);
        assert_eq!(
            cfg.heartbeat_interval_ms,
            Config::default().heartbeat_interval_ms
        );
        assert_eq!(cfg.metrics, None);
        let cfg = Config::from_toml_str("metrics = \"127.0.0.1:9400\"\n").unwrap();
        assert_eq!(cfg.metrics, Some("127.0.0.1:9400".parse().unwrap()));
    }

    #[test]
    fn unknown_keys_and_bad_bounds_are_errors() {
        assert!(Config::from_toml_str("listne = \"127.0.0.1:1\"").is_err());
        assert!(Config::from_toml_str("recv_buffer_count = 1000").is_err());
        assert!(Config::from_toml_str("cpus = []").is_err());
    }
}
