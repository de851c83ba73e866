//! The cluster: full-mesh nodes that replicate the client-location table and topic interest,
//! so a message is forwarded only to the node that needs it. See README "Cluster".
//!
//! Sans-IO: `wire` (link codec), `membership` (peers, links, failure detection, readiness),
//! `replica` (applying peers' rows, snapshots, digests and interest). I/O: `auth` (nonces and
//! HMAC), `link_io` (blocking handshakes and control-lane framing), `node` (the control
//! thread). Data links are served by the io_uring workers (`server::worker_links`).

pub mod auth;
pub mod link_io;
pub mod membership;
pub mod node;
pub mod replica;
pub mod wire;
