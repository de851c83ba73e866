//! TLS for client listeners, the NATS listener, cluster links and the metrics listener.
//!
//! rustls does what is rare and intricate: handshakes ([`handshake`], a sans-IO driver run
//! off the workers), certificate checks and the key schedule. The data path is ours
//! ([`record`], [`session`]): TLS 1.3 (and 1.2) records sealed and opened in place with
//! ring's AEAD, so a message is encoded once into the send buffer and encrypted where it
//! lies, and received records are decrypted where the kernel wrote them; rustls's unbuffered
//! API would copy both ways. [`config`] builds rustls's configurations from PEM files; [`reason`] turns
//! handshake failures into sentences; [`stream`] is a blocking stream for the threads that
//! serve one connection (the Rust client, the load generator, cluster control lanes, tests),
//! and [`halves`] its two directions, which it splits into for two threads.

#![forbid(unsafe_code)]

pub mod config;
#[cfg(any(test, feature = "test-session"))]
mod fixed;
pub mod halves;
pub mod handshake;
pub mod reason;
pub mod record;
pub mod session;
pub mod stream;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

pub use config::{
    ClientAuth, ClientCertificates, Identity, Origin, TlsConfigError, TlsVersion, TrustAnchors,
};
pub use halves::{TlsReader, TlsWriter};
pub use handshake::{Established, Handshake, Progress};
pub use reason::Failure;
pub use session::{Opened, SessionError, TlsSession};
pub use stream::TlsStream;

#[cfg(test)]
mod tests;
