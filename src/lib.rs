//! ringrelay: a thread-per-core io_uring message relay for server clusters.
//!
//! Module map (see README "Architecture"):
//! - [`protocol`]: wire frames and codec (sans-IO, never panics on input).

pub mod config;
pub mod protocol;
