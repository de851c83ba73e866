//! The lane between the io_uring workers and the cluster control thread. It lives in
//! `cluster` (not `server`) so the cluster never imports the server: the server's workers use
//! these types, and the control thread's driver only sees them through [`crate::cluster::node::ClusterHost`].
//!
//! Control -> worker: a bounded queue of [`Command`]s per worker (adopt a data link socket,
//! close the links to a dead node, deliver a presence frame, close a replaced client), with
//! the worker's eventfd wake-up. Worker -> control: one bounded queue of [`Event`]s
//! (registrations, removals, interest flips, lost links) that the control thread drains every
//! few milliseconds and streams to peers in batches.
//!
//! Bounds and policy: when the event queue is full the event is dropped and
//! `events_overflowed` is set; the control thread then re-sends its full snapshot and interest
//! to every peer, so nothing is lost for good. The command queue is drained every loop
//! iteration; when it is full the control thread keeps the command and retries on its next
//! tick (its own backlog is bounded by the number of connections and links).

#![forbid(unsafe_code)]

use crate::core::Location;
use crate::protocol::CloseReason;
use crossbeam::queue::ArrayQueue;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

/// Commands one worker's queue holds.
pub const COMMANDS_PER_WORKER_MAX: usize = 16 * 1024;
/// Events the worker -> control queue holds.
pub const EVENTS_MAX: usize = 64 * 1024;

/// What the control thread asks a worker to do.
#[derive(Debug)]
pub enum Command {
    /// Serve this authenticated data-link socket: `outbound` links carry this worker's
    /// forwards to `node`; inbound ones carry `node`'s forwards to be delivered here.
    AdoptLink {
        fd: OwnedFd,
        node: u16,
        outbound: bool,
        /// With `cluster_tls_*`: the link's session and the plaintext received past the
        /// link handshake.
        tls: Option<Box<crate::tls::Established>>,
    },
    /// `node` is dead or its control link restarted: close every data link to or from it.
    CloseLinks { node: u16 },
    /// Queue an encoded frame (PRESENCE) to a local connection.
    Frame { to: Location, bytes: Vec<u8> },
    /// Close a local connection (a newer registration of its id won on another node).
    Close { to: Location, reason: CloseReason },
    /// Serve this socket as a client connection (a local client of an embedded node).
    AdoptClient { fd: OwnedFd },
    /// Serve this socket as a client connection whose TLS handshake a handshake thread
    /// completed.
    AdoptTls {
        fd: OwnedFd,
        peer: Option<std::net::SocketAddr>,
        greeting: TlsGreeting,
        tls: Box<crate::tls::Established>,
    },
    /// The verifier thread's outcome for a HELLO held on this worker (not from the control
    /// thread: the verifier uses the same queue and wake-up).
    Verified(Box<crate::core::credentials::Verified>),
}

/// How the protocol of a connection handed over after its TLS handshake starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsGreeting {
    /// The native protocol: the client speaks first.
    Native,
    /// NATS with the handshake first: the worker sends INFO (`bound`: the listener's
    /// address), sealed like everything else.
    NatsInfoDue { bound: Option<std::net::SocketAddr> },
    /// NATS, INFO sent in clear before the handshake, with this nonce (an nkey CONNECT signs
    /// it).
    NatsInfoSent { nonce: Option<Box<str>> },
}

/// What a worker tells the control thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Registered {
        id: Box<[u8]>,
        epoch: u64,
    },
    Unregistered {
        id: Box<[u8]>,
        epoch: u64,
    },
    /// The first local subscriber of (topic, group) arrived or the last one left; the control
    /// thread reads the current state and tells peers if it changed.
    InterestChanged {
        topic: Box<[u8]>,
        group: Box<[u8]>,
    },
    /// A data link this worker used to send to `node` failed.
    LinkLost {
        node: u16,
        worker: u16,
    },
}

pub struct ControlLane {
    pub commands: Box<[ArrayQueue<Command>]>,
    pub events: ArrayQueue<Event>,
    pub events_overflowed: AtomicBool,
    /// The node has the snapshots of its peers: clients may be welcomed.
    pub ready: AtomicBool,
}

impl ControlLane {
    pub fn new(workers: usize, clustered: bool) -> ControlLane {
        ControlLane {
            commands: (0..workers)
                .map(|_| ArrayQueue::new(COMMANDS_PER_WORKER_MAX))
                .collect(),
            events: ArrayQueue::new(EVENTS_MAX),
            events_overflowed: AtomicBool::new(false),
            ready: AtomicBool::new(!clustered),
        }
    }

    /// Queues an event for the control thread (workers only; a no-op when not clustered is
    /// decided by the caller).
    pub fn emit(&self, event: Event) {
        if self.events.push(event).is_err() {
            self.events_overflowed.store(true, Ordering::Release);
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
