//! The relay state of one connection: its session, registered id, and what it subscribed to
//! and watches (so a close can undo it all).

use crate::core::session::{Phase, Session, SessionConfig};

/// (topic, queue group) a connection subscribed to; group empty for a plain subscription.
pub type Subscription = (Box<[u8]>, Box<[u8]>);

#[derive(Debug)]
pub struct ConnRelay {
    pub(super) session: Session,
    /// Registered client id (empty until HELLO is accepted and registered).
    pub(super) client_id: Box<[u8]>,
    pub(super) subscriptions: Vec<Subscription>,
    pub(super) watches: Vec<Box<[u8]>>,
    /// A HELLO accepted while the node was not ready: WELCOME and registration wait.
    pub(super) held_hello: Option<Box<[u8]>>,
    /// A link connection: carries forwarded frames, has no session rules (no ticks).
    pub(super) link: bool,
}

impl ConnRelay {
    /// A client connection accepted at `now_ms`.
    pub fn client(now_ms: u64, cfg: &SessionConfig) -> Self {
        ConnRelay {
            session: Session::new(now_ms, cfg),
            client_id: Box::default(),
            subscriptions: Vec::new(),
            watches: Vec::new(),
            held_hello: None,
            link: false,
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

    pub fn client_id(&self) -> &[u8] {
        &self.client_id
    }

    pub fn is_link(&self) -> bool {
        self.link
    }

    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    pub fn watches(&self) -> &[Box<[u8]>] {
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
            token: None,
        };
        let mut relay = ConnRelay::client(0, &cfg);
        relay.session.close();
        relay
    }
}
