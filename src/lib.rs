//! ringrelay: a thread-per-core io_uring message relay for server clusters.
//!
//! Module map (see README "Architecture"):
//! - [`protocol`]: wire frames and codec (sans-IO, never panics on input).
//! - [`config`]: settings, defaults and the TOML file ([`byte_size`]: sizes with units;
//!   [`secret_files`]: secrets read from files).
//! - [`server`]: the relay: io_uring workers driving the sans-IO core.
//! - [`client`]: blocking Rust client sharing the codec.
//! - [`tls`]: TLS handshakes (rustls, off the workers) and the in-place record layer.

pub mod ack;
pub mod byte_size;
pub mod client;
pub mod cluster;
pub mod config;
pub mod core;
pub mod cpu_list;
pub mod endpoint;
pub mod memory_budget;
pub mod protocol;
pub mod secret_files;
pub mod server;
pub(crate) mod spawn;
pub mod tcp_congestion;
pub mod tls;
