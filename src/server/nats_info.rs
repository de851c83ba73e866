//! The INFO a NATS connection is greeted with: written by the worker that serves the
//! connection, or, on the NATS TLS listener, by the handshake thread before the handshake (the
//! INFO-first upgrade every NATS client knows: INFO in clear with `tls_required`, then TLS).

use super::Shared;
use crate::protocol::nats::encode::{write_info, ServerInfo};
use crate::protocol::nats::PROTO_LEVEL;
use std::net::SocketAddr;

/// A fresh nonce for a NATS INFO, for an nkey client to sign: 32 bytes from the OS (as
/// [`crate::core::Output::challenge_nonce`] draws a CHALLENGE's), in base64url without
/// padding, as nats-server writes its nonce. `None` when no credentials entry has a public
/// key (nats-server sends one only when nkeys exist), or when the OS has no randomness to
/// give: the INFO then carries no nonce and an nkey CONNECT is refused as one without a token.
pub fn nats_nonce(shared: &Shared) -> Option<Box<str>> {
    use base64::Engine as _;
    if !shared.engine.session.gate.has_public_keys() {
        return None;
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).ok()?;
    Some(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(raw)
            .into(),
    )
}

/// What one INFO says about the connection it greets.
pub struct Greeting<'a> {
    /// The listener's bound address (INFO's `host` and `port`).
    pub bound: Option<SocketAddr>,
    /// Unique among this node's NATS connections.
    pub client_id: u64,
    pub nonce: Option<&'a str>,
    /// The connection is (or is about to be) TLS.
    pub tls_required: bool,
}

/// `INFO <json>\r\n` for one connection of this node.
pub fn info_line(shared: &Shared, greeting: &Greeting<'_>) -> Vec<u8> {
    let server_id = format!("ringrelay-{}", shared.node_id);
    let host = greeting
        .bound
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let info = ServerInfo {
        server_id: &server_id,
        server_name: &server_id,
        version: env!("CARGO_PKG_VERSION"),
        proto: PROTO_LEVEL,
        host: &host,
        port: greeting.bound.map_or(0, |a| a.port()),
        headers: true,
        max_payload: shared.engine.payload_bytes_max,
        client_id: greeting.client_id,
        auth_required: !shared.engine.session.gate.is_open(),
        tls_required: greeting.tls_required,
        nonce: greeting.nonce,
    };
    let mut line = Vec::with_capacity(256);
    write_info(&mut line, &info);
    line
}
