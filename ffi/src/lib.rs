//! The C API of ringrelay: `libringrelay.so` and `libringrelay.a`, declared by
//! `include/ringrelay.h` (generated from this crate by cbindgen and checked in).
//!
//! Conventions, as rustls-ffi: opaque handles made and freed by the library; names
//! `ringrelay_<object>_<verb>`; every call returns a `ringrelay_status` (one enum, never
//! renumbered) and writes its outputs only on success; every export runs inside a panic
//! boundary ([`boundary::guard`]); a failure's words wait in the thread-local
//! `ringrelay_last_error`. The library installs no global allocator, signal handler or logger.
//!
//! Modules: [`status`] (the result codes and the error mapping), [`boundary`] (panics, the last
//! error, argument checks), [`version`], [`client`] (connect, send, receive by callback or
//! queue, the client's thread), [`node`] (an embedded node: config by TOML keys, hooks,
//! start/stop, local clients, stats).

pub mod boundary;
pub mod client;
pub mod node;
pub mod status;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;
pub mod version;
