//! A client that outlives the loss of its relay: a list of servers, reconnection with backoff
//! and jitter after a lost connection, and the id, subscriptions and watches registered again
//! on the new connection.
//!
//! - **Finding a relay** (at the start and after each loss): the servers are tried in turn,
//!   starting after the one just lost; after each full round without success the session
//!   waits `backoff_min`, doubling up to `backoff_max`, each wait cut to a random point in its
//!   upper half (so clients that lost one relay together do not come back in step). It gives
//!   up after `reconnect_timeout` with the last error.
//! - **What counts as lost**: a socket error or end of stream, and a CLOSE whose reason another
//!   relay may not repeat (`SHUTDOWN`, `HEARTBEAT_TIMEOUT`, `SLOW_CONSUMER`,
//!   `CONNECTION_LIMIT`, `NOT_READY`, `FRAME_TIMEOUT`, `HANDSHAKE_TIMEOUT`). Any other CLOSE
//!   (`REPLACED`, `AUTH_FAILED`, ...) ends the session: reconnecting would fight another
//!   connection for the id or fail the same way.
//! - **After a reconnection** the next event is [`Event::Reconnected`]. Delivery is at most
//!   once: what the old relay held for this client, and frames queued but not yet written to
//!   the old connection, are lost (acknowledged delivery is the feature that covers them).
//!   Events the old connection had already received are returned first.

use super::{Client, ClientError, ClientOptions, Event};
use crate::protocol::CloseReason;
use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tunables of a [`Session`]. `Default` gives the documented values (no servers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Relays to use, as `HOST:PORT`, tried in turn.
    pub servers: Vec<String>,
    /// Token sent in every HELLO.
    pub token: Option<Vec<u8>>,
    /// How long the session looks for a relay, at the start and after each lost connection,
    /// before it gives up. Default 10 s: longer than a cluster takes to notice a dead node
    /// (3 s by default) and a relay takes to restart.
    pub reconnect_timeout: Duration,
    /// First wait after a round of servers that all failed. Default 50 ms.
    pub backoff_min: Duration,
    /// Longest wait between rounds. Default 2 s.
    pub backoff_max: Duration,
    /// Options of each connection; its `connect_timeout` bounds one attempt.
    pub client: ClientOptions,
    /// Set from another thread to end a reconnection in progress: the session stops looking
    /// before its next attempt, and during a backoff wait within [`CANCEL_CHECK_INTERVAL`],
    /// with [`ClientError::Disconnected`]. `None` (default): never cancelled.
    pub cancel: Option<CancelFlag>,
}

/// How often a backoff wait looks at [`SessionOptions::cancel`].
pub const CANCEL_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// A flag shared with the thread that may cancel a session's reconnection.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(pub Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Two flags are equal when they are the same flag.
impl PartialEq for CancelFlag {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CancelFlag {}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            servers: Vec::new(),
            token: None,
            reconnect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            client: ClientOptions::default(),
            cancel: None,
        }
    }
}

/// A connection to one of several relays that reconnects by itself. See the module docs.
#[derive(Debug)]
pub struct Session {
    client: Option<Client>,
    id: Vec<u8>,
    opts: SessionOptions,
    /// Index in `opts.servers` of the relay connected to.
    current: usize,
    /// False for a session over a given connection ([`Self::over_client`]): a loss ends it.
    reconnects_allowed: bool,
    subscriptions: BTreeSet<(Vec<u8>, Vec<u8>)>,
    watches: BTreeSet<Vec<u8>>,
    /// Events to hand out before reading more (a reconnection).
    pending: VecDeque<Event>,
    reconnects: u64,
    jitter: Jitter,
}

impl Session {
    /// Connects to the first relay of `opts.servers` that answers (looking for up to
    /// `reconnect_timeout`) and registers `id`.
    pub fn connect(id: &[u8], opts: SessionOptions) -> Result<Session, ClientError> {
        if opts.servers.is_empty() {
            return Err(ClientError::Connect {
                addr: "(no server given)".into(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "the server list is empty"),
            });
        }
        let mut session = Session {
            client: None,
            id: id.to_vec(),
            current: opts.servers.len() - 1,
            reconnects_allowed: true,
            opts,
            subscriptions: BTreeSet::new(),
            watches: BTreeSet::new(),
            pending: VecDeque::new(),
            reconnects: 0,
            jitter: Jitter::new(),
        };
        session.establish()?;
        Ok(session)
    }

    /// A session over `client`, a connection already made (a local client of an embedded
    /// node, [`Client::connect_local`]), named `server` in events. It never reconnects: a lost
    /// connection ends it with the error that lost it. Subscriptions and watches are tracked as
    /// in any session.
    pub fn over_client(client: Client, server: &str) -> Session {
        Session {
            id: client.client_id().to_vec(),
            client: Some(client),
            current: 0,
            reconnects_allowed: false,
            opts: SessionOptions {
                servers: vec![server.to_string()],
                ..SessionOptions::default()
            },
            subscriptions: BTreeSet::new(),
            watches: BTreeSet::new(),
            pending: VecDeque::new(),
            reconnects: 0,
            jitter: Jitter::new(),
        }
    }

    /// The id this session registers.
    pub fn client_id(&self) -> &[u8] {
        &self.id
    }

    /// The relay connected to now, as given in `servers`.
    pub fn server(&self) -> &str {
        &self.opts.servers[self.current]
    }

    /// How many times the session reconnected.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The current connection's socket, for an event loop (see [`Client`]'s `AsRawFd`);
    /// `None` between a lost connection and the next call, which reconnects.
    pub fn as_raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.client.as_ref().map(Client::as_raw_fd)
    }

    /// As [`Client::next_deadline`]: when the session next needs a `recv` call even if
    /// nothing arrives. Events already waiting (a reconnection) make it now.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.pending.is_empty() || self.client.is_none() {
            return Some(Instant::now());
        }
        self.client.as_ref().and_then(Client::next_deadline)
    }

    /// The largest frame the current relay accepts (from its WELCOME).
    pub fn relay_max_frame_bytes(&self) -> usize {
        self.client
            .as_ref()
            .map_or(0, Client::relay_max_frame_bytes)
    }

    /// The current connection, for what the session does not wrap.
    pub fn client(&mut self) -> Result<&mut Client, ClientError> {
        self.connected()
    }

    /// Queues a direct message (sent again on the new connection if this one was lost).
    pub fn send(&mut self, target: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        self.retried(|c| c.send(target, payload))
    }

    /// Queues a message to `topic`'s subscribers, this session included.
    pub fn publish(&mut self, topic: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        self.retried(|c| c.publish(topic, payload))
    }

    /// Queues a message to `topic`'s subscribers with a `reply` topic and `headers` (empty:
    /// none; see [`Client::publish_with`]).
    pub fn publish_with(
        &mut self,
        topic: &[u8],
        reply: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.retried(|c| c.publish_with(topic, reply, headers, payload))
    }

    /// Queues a direct message to `target` with a `reply` topic and `headers` (see
    /// [`Client::send_with`]).
    pub fn send_with(
        &mut self,
        target: &[u8],
        reply: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.retried(|c| c.send_with(target, reply, headers, payload))
    }

    /// Queues a message to `topic`'s subscribers except this session.
    pub fn publish_no_echo(&mut self, topic: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        self.retried(|c| c.publish_no_echo(topic, payload))
    }

    /// Subscribes to `topic` in `group` (empty: plain), now and on every later connection.
    pub fn subscribe_group(&mut self, topic: &[u8], group: &[u8]) -> Result<(), ClientError> {
        self.subscriptions.insert((topic.to_vec(), group.to_vec()));
        self.restored(|c| c.subscribe_group(topic, group))
    }

    /// Subscribes to `topic`, now and on every later connection.
    pub fn subscribe(&mut self, topic: &[u8]) -> Result<(), ClientError> {
        self.subscribe_group(topic, b"")
    }

    /// Drops a subscription made with [`Session::subscribe_group`].
    pub fn unsubscribe(&mut self, topic: &[u8], group: &[u8]) -> Result<(), ClientError> {
        self.subscriptions.remove(&(topic.to_vec(), group.to_vec()));
        self.restored(|c| c.unsubscribe(topic, group))
    }

    /// Watches `client_id`'s presence, now and on every later connection.
    pub fn watch(&mut self, client_id: &[u8]) -> Result<(), ClientError> {
        self.watches.insert(client_id.to_vec());
        self.restored(|c| c.watch(client_id))
    }

    /// Stops watching `client_id`.
    pub fn unwatch(&mut self, client_id: &[u8]) -> Result<(), ClientError> {
        self.watches.remove(client_id);
        self.restored(|c| c.unwatch(client_id))
    }

    /// Queues an acknowledged message (low-level: an [`super::AckedSession`] numbers and
    /// retransmits). If the connection is lost the session reconnects; the message is not
    /// written, and the sender's retransmission on [`Event::Reconnected`] covers it.
    pub fn send_acked(
        &mut self,
        target: &[u8],
        id: crate::protocol::MsgId,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.restored(|c| c.send_acked(target, id, payload))
    }

    /// Queues an acknowledgement (low-level, as [`Self::send_acked`]); one lost with the
    /// connection is made good by the next (acknowledgements are cumulative) or by the
    /// sender's retransmission, which is acknowledged at once.
    pub fn ack(&mut self, ack: &crate::ack::AckOut) -> Result<(), ClientError> {
        self.restored(|c| c.ack(ack))
    }

    /// Writes every queued frame. If the connection is lost on the way, the session reconnects
    /// and the frames not yet written are lost (the next event is [`Event::Reconnected`]).
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.restored(Client::flush)
    }

    /// Waits up to `timeout` for the next event, as [`Client::recv`]; a lost connection is
    /// replaced first (which may take up to `reconnect_timeout` longer) and reported as
    /// [`Event::Reconnected`].
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        if let Some(event) = self.pending.pop_front() {
            return Ok(Some(event));
        }
        match self.connected()?.recv(timeout) {
            Ok(Some(Event::Closed { reason, text })) if reconnects_after(reason) => {
                self.replace(ClientError::Closed { reason, text })?;
                Ok(self.pending.pop_front())
            }
            Err(e) if is_lost(&e) => {
                self.replace(e)?;
                Ok(self.pending.pop_front())
            }
            other => other,
        }
    }

    /// As [`Client::take_messages`]: the messages already read, borrowed, while no other event
    /// waits before them (a reconnection). A connection lost on the way is replaced as in
    /// [`Self::recv`] (the next event is then [`Event::Reconnected`]).
    pub fn take_messages(
        &mut self,
        max: usize,
        on_message: impl FnMut(&[u8], Option<&[u8]>, &[u8]),
    ) -> Result<usize, ClientError> {
        self.take_read(|client| client.take_messages(max, on_message))
    }

    /// As [`Client::take_acked`]: the acked messages already read, borrowed, while no other
    /// event waits before them. A connection lost on the way is replaced as in [`Self::recv`]
    /// (the next event is then [`Event::Reconnected`]).
    pub(crate) fn take_acked(
        &mut self,
        max: usize,
        on_acked: impl FnMut(&[u8], crate::protocol::MsgId, &[u8]),
    ) -> Result<usize, ClientError> {
        self.take_read(|client| client.take_acked(max, on_acked))
    }

    /// Runs `take` (a borrowed take of frames already read) on the connection while no event
    /// waits before them; a connection lost on the way is replaced as in [`Self::recv`].
    fn take_read(
        &mut self,
        take: impl FnOnce(&mut Client) -> Result<usize, ClientError>,
    ) -> Result<usize, ClientError> {
        if !self.pending.is_empty() {
            return Ok(0);
        }
        let Some(client) = self.client.as_mut() else {
            return Ok(0);
        };
        match take(client) {
            Err(e) if is_lost(&e) => {
                self.replace(e)?;
                Ok(0)
            }
            other => other,
        }
    }

    /// As [`Client::round_trip`]: once it returns, the relay has handled everything this
    /// session sent before. Events already waiting come first in the list. If the connection
    /// was lost on the way, the session reconnects and the list ends with
    /// [`Event::Reconnected`] (what was sent before may be lost).
    pub fn round_trip(&mut self, timeout: Duration) -> Result<Vec<Event>, ClientError> {
        let mut events: Vec<Event> = self.pending.drain(..).collect();
        match self.connected()?.round_trip(timeout) {
            Ok(more) => {
                events.extend(more);
                Ok(events)
            }
            Err(e) if is_lost(&e) => {
                self.replace(e)?;
                events.extend(self.pending.drain(..));
                Ok(events)
            }
            Err(e) => Err(e),
        }
    }

    /// Closes the current connection (CLOSE NORMAL); the session ends.
    pub fn close(mut self) -> Result<(), ClientError> {
        match self.client.take() {
            Some(client) => client.close(),
            None => Ok(()),
        }
    }

    /// The open connection; after a failed reconnection, tries again (bounded as always).
    fn connected(&mut self) -> Result<&mut Client, ClientError> {
        if self.client.is_none() && !self.reconnects_allowed {
            return Err(ClientError::Disconnected);
        }
        if self.client.is_none() {
            self.establish()?;
            self.reconnects += 1;
            self.pending.push_back(Event::Reconnected {
                server: self.server().to_string(),
            });
        }
        self.client.as_mut().ok_or(ClientError::Disconnected)
    }

    /// Runs `op`; if the connection was lost, reconnects and runs it once more.
    fn retried<T>(
        &mut self,
        mut op: impl FnMut(&mut Client) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        match op(self.connected()?) {
            Err(e) if is_lost(&e) => {
                self.replace(e)?;
                op(self.connected()?)
            }
            other => other,
        }
    }

    /// Runs `op`, whose effect the registration on a new connection restores: if the
    /// connection was lost, reconnecting is enough.
    fn restored(
        &mut self,
        op: impl FnOnce(&mut Client) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        match op(self.connected()?) {
            Err(e) if is_lost(&e) => self.replace(e),
            other => other,
        }
    }

    /// Drops the lost connection and connects again; queues [`Event::Reconnected`].
    fn replace(&mut self, lost: ClientError) -> Result<(), ClientError> {
        if !self.reconnects_allowed {
            self.client = None;
            return Err(lost);
        }
        tracing::info!(
            server = self.server(),
            "connection lost ({lost}); reconnecting"
        );
        self.client = None;
        self.connected().map(|_| ())
    }

    /// Finds a relay, registers the id there and restores subscriptions and watches, all
    /// within `reconnect_timeout`.
    fn establish(&mut self) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.opts.reconnect_timeout;
        let servers = self.opts.servers.len();
        let mut attempts: u32 = 0;
        loop {
            if self.cancelled() {
                return Err(ClientError::Disconnected);
            }
            self.current = (self.current + 1) % servers;
            let mut client_opts = self.opts.client.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            client_opts.connect_timeout = client_opts
                .connect_timeout
                .min(left)
                .max(Duration::from_millis(1));
            let attempt = Client::connect_with(
                self.opts.servers[self.current].as_str(),
                &self.id,
                self.opts.token.as_deref(),
                client_opts,
            )
            .and_then(|mut client| {
                self.register(&mut client)?;
                Ok(client)
            });
            let err = match attempt {
                Ok(client) => {
                    self.client = Some(client);
                    return Ok(());
                }
                Err(e) if is_lost(&e) || is_refused(&e) => e,
                Err(e) => return Err(e),
            };
            attempts += 1;
            let now = Instant::now();
            if now >= deadline {
                return Err(err);
            }
            if attempts % servers as u32 == 0 {
                let round = attempts / servers as u32;
                let wait = self
                    .jitter
                    .backoff(round, self.opts.backoff_min, self.opts.backoff_max);
                if now + wait >= deadline {
                    return Err(err);
                }
                self.back_off(now + wait);
            }
        }
    }

    fn cancelled(&self) -> bool {
        self.opts
            .cancel
            .as_ref()
            .is_some_and(CancelFlag::is_cancelled)
    }

    /// Waits until `until`, or less once the session is cancelled.
    fn back_off(&self, until: Instant) {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.cancelled() {
                return;
            }
            std::thread::sleep(left.min(CANCEL_CHECK_INTERVAL));
        }
    }

    /// Subscriptions and watches of the session, on a new connection.
    fn register(&self, client: &mut Client) -> Result<(), ClientError> {
        for (topic, group) in &self.subscriptions {
            client.subscribe_group(topic, group)?;
        }
        for id in &self.watches {
            client.watch(id)?;
        }
        Ok(())
    }
}

/// A CLOSE another relay (or the same one later) may not repeat: reconnect.
fn reconnects_after(reason: CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::SHUTDOWN
            | CloseReason::HEARTBEAT_TIMEOUT
            | CloseReason::SLOW_CONSUMER
            | CloseReason::CONNECTION_LIMIT
            | CloseReason::NOT_READY
            | CloseReason::FRAME_TIMEOUT
            | CloseReason::HANDSHAKE_TIMEOUT
    )
}

/// The connection is gone for a reason a reconnection can cure.
fn is_lost(e: &ClientError) -> bool {
    match e {
        ClientError::Io(_)
        | ClientError::Disconnected
        | ClientError::Timeout { .. }
        | ClientError::NoAnswer { .. }
        | ClientError::RelaySilent { .. } => true,
        ClientError::Closed { reason, .. } => reconnects_after(*reason),
        _ => false,
    }
}

/// No relay accepted at that address (not running, or not reachable yet).
fn is_refused(e: &ClientError) -> bool {
    matches!(e, ClientError::Connect { .. })
}

/// Randomised backoff: xorshift64 seeded from the OS, so clients started together diverge.
#[derive(Debug)]
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Jitter(u64::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// The wait after `round` (1-based) failed rounds: `min` doubled per round up to `max`,
    /// then a random point in its upper half.
    fn backoff(&mut self, round: u32, min: Duration, max: Duration) -> Duration {
        let doubled = min.saturating_mul(1u32 << round.saturating_sub(1).min(20));
        let full = doubled.min(max).max(Duration::from_millis(1));
        let half = full / 2;
        let span = u64::try_from((full - half).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        half + Duration::from_micros(self.next() % span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_bound_and_stays_in_the_upper_half() {
        let mut j = Jitter(0x1234_5678_9abc_def1);
        let (min, max) = (Duration::from_millis(50), Duration::from_secs(2));
        for (round, full_ms) in [
            (1, 50),
            (2, 100),
            (3, 200),
            (6, 1600),
            (7, 2000),
            (40, 2000),
        ] {
            for _ in 0..100 {
                let w = j.backoff(round, min, max);
                let full = Duration::from_millis(full_ms);
                assert!(w >= full / 2 && w <= full, "round {round}: {w:?}");
            }
        }
    }

    #[test]
    fn only_closes_another_relay_may_not_repeat_reconnect() {
        assert!(reconnects_after(CloseReason::SHUTDOWN));
        assert!(reconnects_after(CloseReason::SLOW_CONSUMER));
        assert!(!reconnects_after(CloseReason::REPLACED));
        assert!(!reconnects_after(CloseReason::AUTH_FAILED));
        assert!(!reconnects_after(CloseReason::NORMAL));
        assert!(is_lost(&ClientError::Disconnected));
        assert!(!is_lost(&ClientError::Closed {
            reason: CloseReason::REPLACED,
            text: String::new()
        }));
    }

    #[test]
    fn an_empty_server_list_is_refused() {
        let err = Session::connect(b"x", SessionOptions::default()).unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    }
}
