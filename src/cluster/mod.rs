//! The cluster: full-mesh nodes that replicate the client-location table and topic interest,
//! so a message is forwarded only to the node that needs it. See README "Cluster".
//!
//! Sans-IO: `wire` (link codec), `membership` (peers, links, failure detection, readiness),
//! `replica` (applying peers' rows, snapshots, digests and interest), `control` (the control
//! plane: every decision of the control thread, over membership and replica). I/O: `auth`
//! (nonces and HMAC), `link_io` (blocking handshakes and control-lane framing), `node` (the
//! control thread: drives `control` from sockets and timers). `lane` holds the queues between
//! the io_uring workers and the control thread. Data links are served by the io_uring workers
//! (`server::worker_links`).
//!
//! Nothing here imports `crate::server`: the driver reaches the node through
//! [`node::ClusterHost`], which the server implements.

pub mod auth;
pub mod control;
mod handshake_slots;
pub mod lane;
pub mod link_io;
pub mod link_stream;
pub mod membership;
pub mod node;
pub mod replica;
pub mod wire;

pub use control::MemberStatus;
