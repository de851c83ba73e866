//! The relay state of one connection: its session, registered id, and what it subscribed to
//! and watches (so a close can undo it all).

use crate::core::session::{Phase, Session, SessionConfig};
use crate::protocol::TOPIC_LEN_MAX;
use foldhash::fast::RandomState;
use std::collections::HashSet;

/// Bytes of a subscription key at most: the topic's length byte, the topic, the group.
const SUBSCRIPTION_KEY_BYTES_MAX: usize = 1 + 2 * TOPIC_LEN_MAX;

/// A (topic, queue group) pair a connection subscribed to, stored as one key: the topic's
/// length byte, the topic, then the group (empty for a plain subscription). One allocation per
/// subscription, and a lookup needs none (the key is built on the stack).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Subscription(Box<[u8]>);

impl Subscription {
    pub fn topic(&self) -> &[u8] {
        let n = usize::from(self.0[0]);
        &self.0[1..1 + n]
    }

    pub fn group(&self) -> &[u8] {
        let n = usize::from(self.0[0]);
        &self.0[1 + n..]
    }
}

impl std::borrow::Borrow<[u8]> for Subscription {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Writes the key of (topic, group) into `buf` and returns it. Both are at most
/// [`TOPIC_LEN_MAX`] bytes (the wire allows no more; the engine checks before calling).
fn subscription_key<'b>(
    buf: &'b mut [u8; SUBSCRIPTION_KEY_BYTES_MAX],
    topic: &[u8],
    group: &[u8],
) -> &'b [u8] {
    assert!(topic.len() <= TOPIC_LEN_MAX && group.len() <= TOPIC_LEN_MAX);
    let end = 1 + topic.len() + group.len();
    buf[0] = topic.len() as u8;
    buf[1..1 + topic.len()].copy_from_slice(topic);
    buf[1 + topic.len()..end].copy_from_slice(group);
    &buf[..end]
}

/// A connection's subscriptions: a set, so SUBSCRIBE and UNSUBSCRIBE cost O(1) however many
/// the connection holds (bounded by `subscriptions_per_connection_max`).
#[derive(Debug, Default)]
pub struct Subscriptions(HashSet<Subscription, RandomState>);

impl Subscriptions {
    pub fn contains(&self, topic: &[u8], group: &[u8]) -> bool {
        let mut buf = [0; SUBSCRIPTION_KEY_BYTES_MAX];
        self.0.contains(subscription_key(&mut buf, topic, group))
    }

    /// Adds (topic, group); returns whether it was new.
    pub fn insert(&mut self, topic: &[u8], group: &[u8]) -> bool {
        let mut buf = [0; SUBSCRIPTION_KEY_BYTES_MAX];
        let key = subscription_key(&mut buf, topic, group);
        if self.0.contains(key) {
            return false;
        }
        self.0.insert(Subscription(key.into()))
    }

    /// Removes (topic, group); returns whether it was there.
    pub fn remove(&mut self, topic: &[u8], group: &[u8]) -> bool {
        let mut buf = [0; SUBSCRIPTION_KEY_BYTES_MAX];
        self.0.remove(subscription_key(&mut buf, topic, group))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Subscription> {
        self.0.iter()
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = Subscription> + '_ {
        self.0.drain()
    }
}

#[derive(Debug)]
pub struct ConnRelay {
    pub(super) session: Session,
    /// Registered client id (empty until HELLO is accepted and registered).
    pub(super) client_id: Box<[u8]>,
    pub(super) subscriptions: Subscriptions,
    /// Ids this connection watches (a set: WATCH and UNWATCH cost O(1); bounded by
    /// `watches_per_connection_max`).
    pub(super) watches: HashSet<Box<[u8]>, RandomState>,
    /// Requests refused at a limit so far (the second one closes the connection).
    pub(super) limit_refusals: u8,
    /// A HELLO accepted while the node was not ready: WELCOME and registration wait.
    pub(super) held_hello: Option<Box<[u8]>>,
    /// Frames that followed a held HELLO, encoded, applied in order once WELCOME is sent (at
    /// most `max_frame_bytes` of them; more close the connection with NOT_READY).
    pub(super) held_frames: Vec<u8>,
    /// A link connection: carries forwarded frames, has no session rules (no ticks).
    pub(super) link: bool,
    /// The client's address, when the host's authorize hook wants it (`None`: not looked up,
    /// or a local client of an embedded node).
    pub(super) peer: Option<std::net::SocketAddr>,
}

impl ConnRelay {
    /// Memory held for frames that wait behind a held HELLO (counted with the worker's
    /// unfinished frames).
    pub fn held_bytes(&self) -> usize {
        self.held_frames.capacity() + self.held_hello.as_ref().map_or(0, |h| h.len())
    }

    /// A client connection accepted at `now_ms`.
    pub fn client(now_ms: u64, cfg: &SessionConfig) -> Self {
        ConnRelay {
            session: Session::new(now_ms, cfg),
            client_id: Box::default(),
            subscriptions: Subscriptions::default(),
            watches: HashSet::default(),
            limit_refusals: 0,
            held_hello: None,
            held_frames: Vec::new(),
            link: false,
            peer: None,
        }
    }

    /// A client connection accepted at `now_ms` from `peer` (for the authorize hook).
    pub fn client_from(
        now_ms: u64,
        cfg: &SessionConfig,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        ConnRelay {
            peer,
            ..Self::client(now_ms, cfg)
        }
    }

    /// A data link from or to another node.
    pub fn link(now_ms: u64, cfg: &SessionConfig) -> Self {
        ConnRelay {
            link: true,
            ..Self::client(now_ms, cfg)
        }
    }

    pub fn phase(&self) -> Phase {
        self.session.phase()
    }

    /// Whether the client speaks acknowledged delivery (protocol version 2 or later), so it
    /// may be sent acknowledged DELIVERs and RECEIPTs.
    #[inline]
    pub fn acks(&self) -> bool {
        self.session.acks()
    }

    /// Whether the client speaks version 3, so it may be sent DELIVERs with a reply topic and
    /// headers.
    #[inline]
    pub fn extended(&self) -> bool {
        self.session.extended()
    }

    pub fn client_id(&self) -> &[u8] {
        &self.client_id
    }

    pub fn is_link(&self) -> bool {
        self.link
    }

    pub fn subscriptions(&self) -> &Subscriptions {
        &self.subscriptions
    }

    pub fn watches(&self) -> &HashSet<Box<[u8]>, RandomState> {
        &self.watches
    }

    pub fn hello_held(&self) -> bool {
        self.held_hello.is_some()
    }
}

/// A closed placeholder, so the I/O layer can move a connection's state out while it routes.
impl Default for ConnRelay {
    fn default() -> Self {
        let cfg = SessionConfig {
            handshake_timeout_ms: 0,
            heartbeat_interval_ms: 0,
            heartbeat_misses_max: 0,
            frame_complete_timeout_ms: 0,
            token: None,
            authorize: None,
        };
        let mut relay = ConnRelay::client(0, &cfg);
        relay.session.close();
        relay
    }
}
