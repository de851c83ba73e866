//! The relay engine (sans-IO): the rules the relay applies to one connection's frames, its
//! close, its timer ticks, and to frames other nodes forward here. It keeps each connection's
//! relay state ([`ConnRelay`]), reads and writes the shared [`Tables`], and hands every decision
//! to an [`Output`] the I/O layer implements (a worker queues frames, hands over to other
//! workers, emits cluster events). No sockets, clocks or threads: time comes in as `now_ms`,
//! readiness and epochs come from the output.
//!
//! Generic over the output (monomorphised, no `dyn`), and nothing on the per-message path
//! allocates: frames borrow the receive buffer, and only a first subscription, a watch or a
//! HELLO store owned copies.

mod acked;
mod auth;
mod conn;
mod frames;
mod key_proof;
mod lazy_set;
mod lifecycle;
mod limits;
mod links;
pub mod nats;
#[cfg(test)]
mod tests;

pub use conn::{ConnRelay, Subscription, Subscriptions};
pub use limits::{ClientLimits, Limit};

use super::location::Location;
use super::router::{AckSink, Tables};
use super::session::SessionConfig;
use crate::protocol::{CloseReason, ErrorCode, Frame};
use std::borrow::Cow;

/// Settings the engine needs, taken from [`crate::config::Config`].
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub session: SessionConfig,
    /// Part of a cluster: registrations and interest changes are announced as [`ClusterEvent`]s.
    pub clustered: bool,
    /// Registrations are announced even when not clustered (an embedded node's presence hook).
    pub local_presence: bool,
    /// Sent in WELCOME.
    pub heartbeat_interval_ms: u32,
    /// Sent in WELCOME.
    pub max_frame_bytes: u32,
    /// The largest SEND or PUBLISH payload relayed: `max_frame_bytes` minus
    /// [`crate::protocol::DELIVER_OVERHEAD_MAX`], so every DELIVER fits in `max_frame_bytes`.
    pub payload_bytes_max: usize,
    pub limits: ClientLimits,
}

impl EngineConfig {
    /// Whether registrations and their ends go out as [`ClusterEvent`]s.
    pub fn announces_registrations(&self) -> bool {
        self.clustered || self.local_presence
    }

    pub fn from_config(cfg: &crate::config::Config) -> Self {
        EngineConfig {
            session: SessionConfig::from_config(cfg),
            clustered: cfg.node_id != 0,
            local_presence: false,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms.min(u32::MAX as u64) as u32,
            max_frame_bytes: cfg.max_frame_bytes.min(u32::MAX as usize) as u32,
            payload_bytes_max: crate::protocol::payload_bytes_max(cfg.max_frame_bytes),
            limits: ClientLimits::from_config(cfg),
        }
    }
}

/// A change the cluster control plane must tell peers about. Borrowed: the I/O layer copies
/// what it keeps (these are rare, per connection, not per message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent<'a> {
    /// A local client registered `id` with this epoch (not emitted when a newer row elsewhere
    /// won: that connection is closed as replaced instead).
    Registered { id: &'a [u8], epoch: u64 },
    /// The local row of `id` was removed.
    Unregistered { id: &'a [u8], epoch: u64 },
    /// The first local subscriber of (topic, group) arrived or the last one left.
    InterestChanged { topic: &'a [u8], group: &'a [u8] },
}

/// Counters the engine bumps; the output maps them to its statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A SEND to an id nobody holds.
    UnknownId,
    /// A connection closed for a protocol error (decode error, bad frame, handshake timeout).
    ProtocolErrorClose,
    /// A frame forwarded by another node was received.
    ForwardedIn,
    /// A forwarded SEND whose target was no longer here.
    ForwardedInStale,
    /// A SUBSCRIBE or WATCH refused at a limit.
    LimitRefused,
    /// A SEND or PUBLISH dropped because its payload could not be delivered within
    /// `max_frame_bytes`.
    PayloadTooLarge,
    /// An ACK for an id nobody holds (its sender left): dropped.
    AckUnroutable,
    /// A request (a message with a reply topic) reached no subscriber anywhere.
    NoResponders,
    /// A SEND, PUBLISH, SUBSCRIBE or WATCH outside the connection's permissions: refused
    /// with ERROR PERMISSION_DENIED, the connection stays open.
    PermissionDenied,
    /// A HELLO refused for its token or credentials (closed AUTH_FAILED).
    AuthFailed,
    /// A sender was told of its messages dropped away from its receive (one report per
    /// sender and subject per batch, see `core::drop_reports`).
    DropReported,
    /// Messages dropped away from their sender's receive that no report told it of: their
    /// sender left, or the batch had more senders than a batch reports.
    DropsUnreported,
}

/// Where the engine's decisions go. Extends the router's [`AckSink`] (deliveries, presence,
/// closes of other connections, errors to the origin, forwards) with what only the engine
/// decides. Every method is called synchronously while the engine runs.
pub trait Output: AckSink {
    /// Queue a frame the relay itself produces (WELCOME, PONG, PING, ERROR) to the local
    /// connection at `to`.
    fn send_frame_local(&mut self, to: Location, frame: &Frame<'_>);
    /// Close the connection being driven for its own failure (decode error, handshake or
    /// heartbeat timeout): nothing more is queued to it.
    fn close_conn(&mut self, at: Location, reason: CloseReason, text: Cow<'static, str>);
    fn cluster(&mut self, event: ClusterEvent<'_>);
    fn count(&mut self, counter: Counter);
    /// [`Self::count`] `n` times.
    fn count_n(&mut self, counter: Counter, n: u64) {
        for _ in 0..n {
            self.count(counter);
        }
    }
    /// Whether the node may welcome clients (in a cluster: it holds its peers' rows, so it
    /// can fence duplicate ids and route to remote clients).
    fn node_ready(&self) -> bool;
    /// A fresh registration epoch (hybrid logical clock).
    fn next_epoch(&mut self) -> u64;
    /// A HELLO is held at `at` until the node is ready; call [`Engine::on_ready`] for it then.
    fn hello_held(&mut self, at: Location);
    /// Verify `secret` against credentials entry `name` for the HELLO held at `at`, off the
    /// worker (it takes tens of milliseconds); call [`Engine::on_verified`] with the outcome.
    /// It may also decide at once (a secret it verified before, or a full queue).
    fn verify_secret(
        &mut self,
        at: Location,
        name: &str,
        secret: &[u8],
    ) -> crate::core::credentials::Verification;
    /// Whether a bound was hit (messages dropped) since the last call; clears it.
    fn take_overloaded(&mut self) -> bool;
    /// Queue an ERROR to the connection at `to`, a client of this node on any worker.
    /// Returns false when it cannot be told (its queue to it is full, or its protocol has no
    /// such error).
    fn send_error(
        &mut self,
        to: Location,
        code: ErrorCode,
        subject: &[u8],
        text: &'static str,
    ) -> bool;
    /// Tell `node` that `count` messages of its client `sender` to `subject` were dropped
    /// here (FWD_DROPPED on this worker's data link to it); returns false when the link (or
    /// its backlog) is full.
    fn forward_dropped(&mut self, node: u16, sender: &[u8], subject: &[u8], count: u32) -> bool;
    /// A fresh random nonce for a CHALLENGE (the I/O layer draws it from the OS; the core
    /// makes no random numbers). `None`: none could be drawn, the HELLO is refused.
    fn challenge_nonce(&mut self) -> Option<[u8; 32]>;
    /// Whether the close of the connection being driven was requested while it ran, by the
    /// engine or by the output itself (a slow consumer of its own replies, say): the frames
    /// it sent after that are not applied. The I/O layer stops decoding there; the engine
    /// stops replaying held frames there.
    fn driven_closing(&self) -> bool {
        false
    }
}

/// The engine: a view of the shared tables and settings, cheap to build where needed.
/// `scratch` arguments are reused buffers for watcher lists (no allocation per event).
#[derive(Clone, Copy)]
pub struct Engine<'t> {
    pub tables: &'t Tables,
    pub config: &'t EngineConfig,
}

impl<'t> Engine<'t> {
    pub fn new(tables: &'t Tables, config: &'t EngineConfig) -> Self {
        Engine { tables, config }
    }

    fn announce_interest(&self, out: &mut impl Output, topic: &[u8], group: &[u8]) {
        if self.config.clustered {
            out.cluster(ClusterEvent::InterestChanged { topic, group });
        }
    }
}
