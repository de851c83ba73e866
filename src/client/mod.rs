//! Blocking Rust client for the relay, over a plain [`std::net::TcpStream`], sharing the codec.
//! [`Client`] is one connection; [`Session`] wraps it with a list of relays and reconnects.
//!
//! Outbound frames are batched in a write buffer until [`Client::flush`] (or until the buffer
//! passes [`ClientOptions::write_buffer_bytes`]); control operations (subscribe, watch, ...)
//! flush at once. Inbound bytes are read in large chunks into a [`FrameReader`], so a burst of
//! small messages costs one `read` syscall, not one per message.
//!
//! A relay that falls silent (its host frozen or cut off, so no FIN or RST ever comes) is found
//! while the client waits to read: after one heartbeat interval (announced in WELCOME, 5 s by
//! default) with no byte from the relay the client sends a PING, and when another interval
//! passes with still nothing, the wait fails with [`ClientError::RelaySilent`] (a [`Session`]
//! then moves to another relay). A live relay always answers within that: it pings an idle
//! client every interval and answers a PING at once.
//!
//! The relay pings idle connections; the client answers those pings inside [`Client::recv`].
//! A client that never calls `recv` for longer than the relay's heartbeat bound (by default
//! about 20 s) is evicted.

mod acked;
mod session;
mod signing_key;
mod transport;

pub use acked::{
    AckedSendError, AckedSession, AckedSessionOptions, AckedStats, Incoming, RECV_MANY_EVENTS_MAX,
};
pub use session::{CancelFlag, Session, SessionOptions, CANCEL_CHECK_INTERVAL};
pub use signing_key::SigningKey;

use crate::ack::{AckOut, FailReason};
use crate::protocol::{
    encode_publish_extended, encode_send_extended, publish_extended_len, send_extended_len,
    AckFields, AckRuns, CloseReason, DecodeError, EncodeError, ErrorCode, Frame, FrameKind,
    FrameReader, Message, MsgId, ACKED_VERSION_MIN, EXTENDED_VERSION_MIN, KEY_PROOF_VERSION_MIN,
    MAX_FRAME_BYTES_DEFAULT, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
pub use transport::ClientTls;
use transport::Transport;

/// Room a DELIVER needs beyond the SEND/PUBLISH it came from (sender id and topic prefixes).
const DELIVER_SLACK_BYTES: usize = 512;

/// Tunables of a [`Client`]. `Default` gives the documented values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Bound on TCP connect plus HELLO/WELCOME together. Default 5 s.
    pub connect_timeout: Duration,
    /// The write buffer is flushed automatically once it holds at least this many bytes.
    /// Default 64 KiB.
    pub write_buffer_bytes: usize,
    /// Room offered to each `read` from the socket. Default 64 KiB.
    pub read_chunk_bytes: usize,
    /// Largest frame (header included) accepted from the relay; a larger one is a protocol
    /// error. Default: the relay's default `max_frame_bytes` plus room for the sender and
    /// topic a DELIVER adds.
    pub max_frame_bytes: usize,
    /// Bound on one blocking write; `None` (default) waits as long as the relay does not read.
    /// A write that times out leaves the connection unusable.
    pub write_timeout: Option<Duration>,
    /// How long [`Client::close`] waits for the relay to close its side after our CLOSE.
    /// Default 250 ms.
    pub close_linger: Duration,
    /// Dial over TLS (to the relay's `tls_listen`); `None` (default): plain TCP.
    pub tls: Option<ClientTls>,
    /// The private key of a public-key credentials entry (PROTOCOL.md section 14). When set,
    /// the token given to `connect` is the entry's NAME, and the client answers the relay's
    /// CHALLENGE with a PROOF within `connect_timeout` (protocol version 4 is then required).
    /// `None` (default): a CHALLENGE fails the connect with [`ClientError::KeyRequired`].
    pub signing_key: Option<Arc<SigningKey>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            write_buffer_bytes: 64 * 1024,
            read_chunk_bytes: 64 * 1024,
            max_frame_bytes: MAX_FRAME_BYTES_DEFAULT + DELIVER_SLACK_BYTES,
            write_timeout: None,
            close_linger: Duration::from_millis(250),
            tls: None,
            signing_key: None,
        }
    }
}

/// Something the relay told this client (owned, so it outlives the receive buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A delivered message; `topic` is `None` for a direct SEND. `reply` (the topic answers
    /// go to) and `headers` (a header block, from a NATS client for example) are `None` when
    /// the message has none; only protocol version 3 carries them.
    Message {
        sender: Vec<u8>,
        topic: Option<Vec<u8>>,
        reply: Option<Vec<u8>>,
        headers: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
    /// A watched client id came online or went offline.
    Presence { client_id: Vec<u8>, online: bool },
    /// A request failed (for example SEND to an unknown id); the connection stays open.
    Error {
        code: ErrorCode,
        subject: Vec<u8>,
        text: String,
    },
    /// The relay closed the connection; every later call fails with [`ClientError::Closed`].
    Closed { reason: CloseReason, text: String },
    /// Only from a [`Session`]: the connection was lost and the session is connected again, to
    /// `server`, with its id, subscriptions and watches registered there. Messages for this
    /// client while it was away, and frames queued but not yet written, were lost.
    Reconnected { server: String },
    /// An acknowledged message (protocol version 2). From a [`Client`] or [`Session`] as it
    /// arrived (the application acknowledges it with [`Client::ack`]); from an
    /// [`AckedSession`] once per message, acknowledged by the session.
    AckedMessage {
        sender: Vec<u8>,
        id: MsgId,
        payload: Vec<u8>,
    },
    /// Only from a [`Client`] or [`Session`]: client `from` acknowledges this client's
    /// messages of `epoch` up to `upto` and in `runs` (an [`AckedSession`] consumes these).
    Receipt {
        from: Vec<u8>,
        gap: bool,
        epoch: u64,
        upto: u64,
        runs: Vec<(u64, u64)>,
    },
    /// Only from a [`Client`] or [`Session`]: the relay could not route acknowledged message
    /// `id` to `subject` (an [`AckedSession`] consumes these).
    AckedError {
        code: ErrorCode,
        subject: Vec<u8>,
        id: MsgId,
        text: String,
    },
    /// Only from an [`AckedSession`]: messages `first_seq..=last_seq` to `target`, every one
    /// of them, were delivered to the target's application. One acknowledgement confirms many
    /// messages, so they come as a range.
    Confirmed {
        target: Vec<u8>,
        first_seq: u64,
        last_seq: u64,
    },
    /// Only from an [`AckedSession`]: message `seq` to `target` failed for `reason`; it may
    /// or may not have been delivered (its acknowledgement may be what was lost).
    Failed {
        target: Vec<u8>,
        seq: u64,
        reason: FailReason,
    },
}

/// Why a client operation failed.
#[derive(Debug)]
pub enum ClientError {
    /// No address `addr` resolved to accepted a TCP connection.
    Connect { addr: String, source: io::Error },
    /// The relay did not answer HELLO with WELCOME within the connect timeout.
    Timeout { waited_ms: u64 },
    /// The relay did not answer a [`Client::round_trip`] PING within its timeout.
    NoAnswer { waited_ms: u64 },
    /// A socket read or write failed; the connection is no longer usable.
    Io(io::Error),
    /// A field is empty or longer than the protocol allows (nothing was queued).
    Encode(EncodeError),
    /// The frame is larger than the relay accepts (nothing was queued).
    FrameTooLarge {
        frame_bytes: usize,
        max_frame_bytes: usize,
    },
    /// The relay sent bytes that do not decode; the connection is no longer usable.
    Protocol(DecodeError),
    /// The relay sent a frame kind it never sends to clients (or at the wrong time).
    UnexpectedFrame(FrameKind),
    /// The WELCOME named a protocol version this build does not speak, or acknowledged
    /// delivery was used with a relay that speaks version 1.
    UnsupportedVersion(u16),
    /// The relay closed the connection (during the handshake, or earlier as an event).
    Closed { reason: CloseReason, text: String },
    /// The connection ended without a CLOSE (end of stream, or an earlier fatal error).
    Disconnected,
    /// Nothing came from the relay for two heartbeat intervals, the second after a PING of
    /// ours (see the module docs): it is presumed gone, and the connection is closed.
    RelaySilent { silent_ms: u64 },
    /// The TLS handshake failed: `reason` says why (the relay's certificate is not from the
    /// CA trusted, or names another host; the relay refused ours; ...).
    Tls { reason: String },
    /// The relay answered HELLO with CHALLENGE (the token is a NAME alone, taken as a
    /// public-key entry's) and no [`ClientOptions::signing_key`] is set to answer it.
    KeyRequired,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            ClientError::Timeout { waited_ms } => {
                write!(
                    f,
                    "relay did not complete the handshake within {waited_ms} ms"
                )
            }
            ClientError::NoAnswer { waited_ms } => {
                write!(f, "relay did not answer a PING within {waited_ms} ms")
            }
            ClientError::Io(e) => write!(f, "connection I/O failed: {e}"),
            ClientError::Tls { reason } => {
                write!(f, "TLS handshake with the relay failed: {reason}")
            }
            ClientError::Encode(e) => write!(f, "invalid request: {e}"),
            ClientError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes,
            } => write!(
                f,
                "frame of {frame_bytes} bytes exceeds the relay's max_frame_bytes {max_frame_bytes}"
            ),
            ClientError::Protocol(e) => write!(f, "relay sent an invalid frame: {e}"),
            ClientError::UnexpectedFrame(kind) => {
                write!(f, "relay sent an unexpected {kind:?} frame")
            }
            ClientError::UnsupportedVersion(v) => write!(
                f,
                "relay speaks protocol version {v}; this needs {PROTOCOL_VERSION_MIN} to \
                 {PROTOCOL_VERSION} (acknowledged delivery: {ACKED_VERSION_MIN} or later)"
            ),
            ClientError::Closed { reason, text } if text.is_empty() => {
                write!(f, "relay closed the connection: {reason}")
            }
            ClientError::Closed { reason, text } => {
                write!(f, "relay closed the connection: {reason} ({text})")
            }
            ClientError::Disconnected => f.write_str("connection to the relay was lost"),
            ClientError::RelaySilent { silent_ms } => write!(
                f,
                "relay silent for {silent_ms} ms, not even answering a PING: presumed gone"
            ),
            ClientError::KeyRequired => f.write_str(
                "relay asked for a public-key PROOF (CHALLENGE): the token is a NAME alone, \
                 which the relay takes as a public-key entry's, and no signing key (key file) \
                 was given; give the entry's key, or check the token",
            ),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { source, .. } => Some(source),
            ClientError::Io(e) => Some(e),
            ClientError::Encode(e) => Some(e),
            ClientError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// Connection state; anything but `Open` makes further operations fail.
#[derive(Debug)]
enum State {
    Open,
    Closed { reason: CloseReason, text: String },
    Broken,
}

/// What one inbound frame means to the client, owned so the reader can be borrowed again.
enum Inbound {
    Event(Event),
    Ping(u64),
    Pong(u64),
    Challenge([u8; 32]),
    Welcome {
        version: u16,
        max_frame_bytes: u32,
        heartbeat_interval_ms: u32,
    },
    Unexpected(FrameKind),
}

/// Outcome of one attempt to read more bytes.
enum Fill {
    Progress,
    DeadlinePassed,
}

/// A blocking connection to the relay. See the module docs.
#[derive(Debug)]
pub struct Client {
    stream: Transport,
    reader: FrameReader,
    write_buf: Vec<u8>,
    opts: ClientOptions,
    client_id: Vec<u8>,
    relay_max_frame_bytes: usize,
    heartbeat_interval_ms: u32,
    /// The protocol version the relay's WELCOME answered.
    version: u16,
    /// The socket is in non-blocking mode (see `set_nonblocking`).
    nonblocking: bool,
    state: State,
    /// Nonce of the last PING this client sent ([`Client::round_trip`] or a liveness probe).
    last_ping_nonce: u64,
    /// When a byte last came from the relay.
    last_heard: Instant,
    /// When the liveness probe (a PING after an interval of silence) went out, if one is out.
    probe_sent: Option<Instant>,
    /// The relay's CHALLENGE was answered (a second one is a protocol error).
    proof_sent: bool,
}

impl Client {
    /// Connects with default [`ClientOptions`], sends HELLO and waits for WELCOME.
    pub fn connect(
        addr: impl ToSocketAddrs,
        client_id: &[u8],
        token: Option<&[u8]>,
    ) -> Result<Client, ClientError> {
        Self::connect_with(addr, client_id, token, ClientOptions::default())
    }

    /// Like [`Client::connect`] with explicit options.
    ///
    /// The HELLO asks for protocol version 3; a relay that predates it refuses with
    /// UNSUPPORTED_VERSION, and the client then connects again asking for the version before
    /// (2, then 1). What the agreed version lacks fails with
    /// [`ClientError::UnsupportedVersion`]: reply topics and headers below 3
    /// ([`Self::publish_with`]), acknowledged delivery below 2 ([`Self::send_acked`]).
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        client_id: &[u8],
        token: Option<&[u8]>,
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let addrs = resolve(addr)?;
        let started = Instant::now();
        let deadline = started.checked_add(opts.connect_timeout);
        let mut version = PROTOCOL_VERSION;
        // A key proves itself only at version 4: no older version is worth asking.
        let version_min = match opts.signing_key {
            Some(_) => KEY_PROOF_VERSION_MIN,
            None => PROTOCOL_VERSION_MIN,
        };
        loop {
            let attempt =
                Self::connect_speaking(&addrs, client_id, token, opts.clone(), version, deadline);
            match attempt {
                Err(ClientError::Closed {
                    reason: CloseReason::UNSUPPORTED_VERSION,
                    ..
                }) if version > version_min => version -= 1,
                other => return other,
            }
        }
    }

    /// Connects and asks for protocol `version` in HELLO.
    fn connect_speaking(
        addrs: &[SocketAddr],
        client_id: &[u8],
        token: Option<&[u8]>,
        opts: ClientOptions,
        version: u16,
        deadline: Option<Instant>,
    ) -> Result<Client, ClientError> {
        let started = Instant::now();
        let mut hello_bytes = Vec::new();
        Frame::Hello {
            version,
            client_id,
            token: token.unwrap_or_default(),
        }
        .encode(&mut hello_bytes)
        .map_err(ClientError::Encode)?;
        let stream = connect_tcp(addrs, deadline)?;
        stream.set_nodelay(true).map_err(ClientError::Io)?;
        let at = (started, deadline);
        let transport = match &opts.tls {
            Some(tls) => Self::tls_handshake(tls, stream, deadline)?,
            None => Transport::Tcp(stream),
        };
        Self::handshake(transport, client_id, hello_bytes, opts, at)
    }

    /// The TLS handshake, within what is left of the connect timeout.
    fn tls_handshake(
        tls: &ClientTls,
        stream: std::net::TcpStream,
        deadline: Option<Instant>,
    ) -> Result<Transport, ClientError> {
        let left = deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        let addr = stream.peer_addr().map_err(ClientError::Io)?;
        stream.set_read_timeout(left).map_err(ClientError::Io)?;
        stream.set_write_timeout(left).map_err(ClientError::Io)?;
        let started = Instant::now();
        tls.connect(stream, addr).map_err(|e| {
            if is_timeout(&e) {
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                ClientError::Timeout { waited_ms }
            } else {
                ClientError::Tls {
                    reason: e.to_string(),
                }
            }
        })
    }

    /// Connects over `stream`, one end of a Unix socket pair whose other end a node in this
    /// process serves ([`crate::server::Server::connect_local`]): HELLO, then WELCOME within
    /// `opts.connect_timeout`, as [`Self::connect_with`] over TCP.
    pub fn connect_local(
        stream: std::os::unix::net::UnixStream,
        client_id: &[u8],
        token: Option<&[u8]>,
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let started = Instant::now();
        let deadline = started.checked_add(opts.connect_timeout);
        let mut hello_bytes = Vec::new();
        Frame::Hello {
            version: PROTOCOL_VERSION,
            client_id,
            token: token.unwrap_or_default(),
        }
        .encode(&mut hello_bytes)
        .map_err(ClientError::Encode)?;
        let at = (started, deadline);
        Self::handshake(Transport::Unix(stream), client_id, hello_bytes, opts, at)
    }

    /// Writes the encoded HELLO over `stream` and waits for WELCOME until `deadline` (the
    /// attempt began at `started`).
    fn handshake(
        stream: Transport,
        client_id: &[u8],
        hello_bytes: Vec<u8>,
        opts: ClientOptions,
        (started, deadline): (Instant, Option<Instant>),
    ) -> Result<Client, ClientError> {
        stream
            .set_write_timeout(opts.write_timeout)
            .map_err(ClientError::Io)?;
        let mut client = Client {
            stream,
            reader: FrameReader::new(opts.max_frame_bytes),
            write_buf: hello_bytes,
            client_id: client_id.to_vec(),
            relay_max_frame_bytes: 0,
            heartbeat_interval_ms: 0,
            version: 0,
            nonblocking: false,
            opts,
            state: State::Open,
            last_ping_nonce: 0,
            last_heard: started,
            probe_sent: None,
            proof_sent: false,
        };
        client.write_out()?;
        client.await_welcome(started, deadline)?;
        Ok(client)
    }

    /// The id this client registered with.
    pub fn client_id(&self) -> &[u8] {
        &self.client_id
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.addr(true)
    }

    /// The relay's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.addr(false)
    }

    /// The largest frame the relay accepts (from WELCOME).
    pub fn relay_max_frame_bytes(&self) -> usize {
        self.relay_max_frame_bytes
    }

    /// How often the relay pings an idle connection (from WELCOME).
    pub fn heartbeat_interval_ms(&self) -> u32 {
        self.heartbeat_interval_ms
    }

    /// When this client next needs a [`Self::recv`] call even if nothing arrives: the time
    /// its liveness check of the relay is due (see the module docs). An event loop that
    /// polls the socket itself ([`AsRawFd`](std::os::fd::AsRawFd)) and calls `recv(Duration::ZERO)` when it is
    /// readable sleeps no later than this. `None` when no check is due (no heartbeat).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.liveness_check_at()
    }

    /// Queues a direct message to the client registered as `target`.
    pub fn send(&mut self, target: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        self.queue(Frame::Send { target, payload })
    }

    /// The protocol version agreed with the relay (from WELCOME).
    pub fn protocol_version(&self) -> u16 {
        self.version
    }

    /// Queues an acknowledged message `id` to `target` (the low-level form: an
    /// [`AckedSession`] numbers, keeps and retransmits messages itself). Fails with
    /// [`ClientError::UnsupportedVersion`] on a relay that speaks protocol version 1.
    pub fn send_acked(
        &mut self,
        target: &[u8],
        id: MsgId,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        self.check_acks()?;
        self.check_open()?;
        // The per-message frame of acked traffic: encoded without the generic dispatch.
        let frame_bytes = crate::protocol::frame_len_for_send_acked(target, payload.len());
        self.check_frame_bytes(frame_bytes)?;
        crate::protocol::encode_send_acked(&mut self.write_buf, target, id, payload)
            .map_err(ClientError::Encode)?;
        self.write_out_if_full()
    }

    /// Queues an acknowledgement to `ack.sender` (low-level form, as [`Self::send_acked`]).
    pub fn ack(&mut self, ack: &AckOut) -> Result<(), ClientError> {
        self.check_acks()?;
        let mut wire = Vec::with_capacity(ack.runs.len() * 16);
        AckRuns::write_wire(&ack.runs, &mut wire);
        let runs =
            AckRuns::from_wire(&wire).ok_or(ClientError::Encode(EncodeError::FieldTooLong {
                field: "runs",
                len: ack.runs.len(),
                max: crate::protocol::ACK_RUNS_MAX,
            }))?;
        self.queue(Frame::Ack {
            to: &ack.sender,
            gap: ack.gap,
            ack: AckFields {
                epoch: ack.epoch,
                upto: ack.upto,
                runs,
            },
        })
    }

    /// Queues a message to every subscriber of `topic` with a `reply` topic (where answers
    /// should go; empty: none) and `headers` (empty: none). Needs protocol version 3, else
    /// [`ClientError::UnsupportedVersion`]. A relay answers a message with a reply topic
    /// that reaches no subscriber anywhere with [`Event::Error`] `NO_RESPONDERS`.
    pub fn publish_with(
        &mut self,
        topic: &[u8],
        reply: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        if reply.is_empty() && headers.is_empty() {
            return self.publish(topic, payload);
        }
        self.check_extended()?;
        let message = Message {
            sender: b"",
            topic,
            reply,
            headers,
            payload,
        };
        self.queue_encoded(publish_extended_len(&message), |out| {
            encode_publish_extended(out, &message, false)
        })
    }

    /// Queues a direct message to `target` with a `reply` topic and `headers` (as
    /// [`Self::publish_with`]; no NO_RESPONDERS: an unknown target is UNKNOWN_ID).
    pub fn send_with(
        &mut self,
        target: &[u8],
        reply: &[u8],
        headers: &[u8],
        payload: &[u8],
    ) -> Result<(), ClientError> {
        if reply.is_empty() && headers.is_empty() {
            return self.send(target, payload);
        }
        self.check_extended()?;
        let message = Message {
            sender: b"",
            topic: b"",
            reply,
            headers,
            payload,
        };
        self.queue_encoded(send_extended_len(target, &message), |out| {
            encode_send_extended(out, target, &message)
        })
    }

    /// A reply topic or headers need protocol version 3.
    fn check_extended(&self) -> Result<(), ClientError> {
        if self.version < EXTENDED_VERSION_MIN {
            return Err(ClientError::UnsupportedVersion(self.version));
        }
        Ok(())
    }

    fn check_acks(&self) -> Result<(), ClientError> {
        if self.version < ACKED_VERSION_MIN {
            return Err(ClientError::UnsupportedVersion(self.version));
        }
        Ok(())
    }

    /// Queues a message to every subscriber of `topic`, this client included.
    pub fn publish(&mut self, topic: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        self.queue(Frame::Publish {
            topic,
            payload,
            no_echo: false,
        })
    }

    /// Queues a message to every subscriber of `topic` except this connection.
    pub fn publish_no_echo(&mut self, topic: &[u8], payload: &[u8]) -> Result<(), ClientError> {
        self.queue(Frame::Publish {
            topic,
            payload,
            no_echo: true,
        })
    }

    /// Subscribes to `topic` (every message); flushes at once.
    pub fn subscribe(&mut self, topic: &[u8]) -> Result<(), ClientError> {
        self.queue_control(Frame::Subscribe { topic, group: b"" })
    }

    /// Subscribes to `topic` in queue group `group` (one member per group gets each message);
    /// an empty `group` is a plain subscription. Flushes at once.
    pub fn subscribe_group(&mut self, topic: &[u8], group: &[u8]) -> Result<(), ClientError> {
        self.queue_control(Frame::Subscribe { topic, group })
    }

    /// Drops the subscription to `topic` in `group` (empty: the plain one). Flushes at once.
    pub fn unsubscribe(&mut self, topic: &[u8], group: &[u8]) -> Result<(), ClientError> {
        self.queue_control(Frame::Unsubscribe { topic, group })
    }

    /// Asks for presence events about `client_id`. Flushes at once.
    pub fn watch(&mut self, client_id: &[u8]) -> Result<(), ClientError> {
        self.queue_control(Frame::Watch { client_id })
    }

    /// Stops presence events about `client_id`. Flushes at once.
    pub fn unwatch(&mut self, client_id: &[u8]) -> Result<(), ClientError> {
        self.queue_control(Frame::Unwatch { client_id })
    }

    /// Writes every queued frame to the socket.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.check_open()?;
        self.write_out()
    }

    /// Waits up to `timeout` for the next event; `Ok(None)` when none arrived in time.
    /// Relay pings are answered here and never surface. `Duration::ZERO` polls once.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<Event>, ClientError> {
        self.check_open()?;
        // A buffered event needs no clock.
        if let Some(event) = self.next_event()? {
            return Ok(Some(event));
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Fill::DeadlinePassed = self.fill(deadline)? {
                return Ok(None);
            }
            if let Some(event) = self.next_event()? {
                return Ok(Some(event));
            }
        }
    }

    /// Flushes queued frames, sends a PING and waits up to `timeout` for its PONG. Once it
    /// arrives the relay has handled every frame this client sent before it (frames of one
    /// connection are handled in order): an ERROR about one of them has arrived too. Returns
    /// the events that arrived meanwhile, in order. A CLOSE ends the wait with
    /// [`ClientError::Closed`]; no answer in time, with [`ClientError::NoAnswer`].
    pub fn round_trip(&mut self, timeout: Duration) -> Result<Vec<Event>, ClientError> {
        self.check_open()?;
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        self.last_ping_nonce = self.last_ping_nonce.wrapping_add(1);
        let nonce = self.last_ping_nonce;
        Frame::Ping { nonce }
            .encode(&mut self.write_buf)
            .map_err(ClientError::Encode)?;
        self.write_out()?;
        let mut events = Vec::new();
        loop {
            while let Some(inbound) = self.next_inbound()? {
                match inbound {
                    Inbound::Pong(n) if n == nonce => return Ok(events),
                    Inbound::Pong(_) => {}
                    Inbound::Ping(n) => self.answer_ping(n)?,
                    Inbound::Event(Event::Closed { reason, text }) => {
                        self.mark_closed(reason, &text);
                        return Err(ClientError::Closed { reason, text });
                    }
                    Inbound::Event(event) => events.push(event),
                    Inbound::Welcome { .. } => {
                        return Err(self.fail(ClientError::UnexpectedFrame(FrameKind::Welcome)))
                    }
                    Inbound::Challenge(_) => {
                        return Err(self.fail(ClientError::UnexpectedFrame(FrameKind::Challenge)))
                    }
                    Inbound::Unexpected(kind) => {
                        return Err(self.fail(ClientError::UnexpectedFrame(kind)))
                    }
                }
            }
            if let Fill::DeadlinePassed = self.fill(deadline)? {
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                return Err(ClientError::NoAnswer { waited_ms });
            }
        }
    }

    /// Flushes queued frames, sends CLOSE(NORMAL), waits briefly (bounded by
    /// [`ClientOptions::close_linger`]) for the relay to close, and shuts the socket down.
    /// Closing a connection the relay already closed or that was lost is not an error.
    pub fn close(mut self) -> Result<(), ClientError> {
        if !matches!(self.state, State::Open) {
            let _ = self.stream.shutdown(Shutdown::Both);
            return Ok(());
        }
        Frame::Close {
            reason: CloseReason::NORMAL,
            text: b"",
        }
        .encode(&mut self.write_buf)
        .map_err(ClientError::Encode)?;
        if let Err(e) = self.write_out() {
            // The relay went away first (it closed, or the connection broke while we said
            // goodbye): the connection is closed either way.
            let _ = self.stream.shutdown(Shutdown::Both);
            return match e {
                ClientError::Io(_) | ClientError::Disconnected => Ok(()),
                other => Err(other),
            };
        }
        if let Err(e) = self.stream.shutdown(Shutdown::Write) {
            if e.kind() != io::ErrorKind::NotConnected {
                return Err(ClientError::Io(e));
            }
        }
        self.linger_until_relay_closes();
        let _ = self.stream.shutdown(Shutdown::Both);
        Ok(())
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match &self.state {
            State::Open => Ok(()),
            State::Closed { reason, text } => Err(ClientError::Closed {
                reason: *reason,
                text: text.clone(),
            }),
            State::Broken => Err(ClientError::Disconnected),
        }
    }

    fn queue(&mut self, frame: Frame<'_>) -> Result<(), ClientError> {
        self.queue_encoded(frame.encoded_len(), |out| frame.encode(out))
    }

    /// Queues the `frame_bytes` bytes `encode` appends (nothing on its error).
    fn queue_encoded(
        &mut self,
        frame_bytes: usize,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), ClientError> {
        self.check_open()?;
        self.check_frame_bytes(frame_bytes)?;
        encode(&mut self.write_buf).map_err(ClientError::Encode)?;
        self.write_out_if_full()
    }

    /// Refuses a frame the relay would refuse as too large.
    fn check_frame_bytes(&self, frame_bytes: usize) -> Result<(), ClientError> {
        if frame_bytes > self.relay_max_frame_bytes {
            return Err(ClientError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes: self.relay_max_frame_bytes,
            });
        }
        Ok(())
    }

    /// Writes the queued frames once they reach `write_buffer_bytes`.
    fn write_out_if_full(&mut self) -> Result<(), ClientError> {
        if self.write_buf.len() >= self.opts.write_buffer_bytes {
            self.write_out()?;
        }
        Ok(())
    }

    fn queue_control(&mut self, frame: Frame<'_>) -> Result<(), ClientError> {
        self.queue(frame)?;
        self.write_out()
    }

    /// Writes the whole write buffer; any failure leaves the connection broken (a frame may
    /// have been cut in half on the wire).
    fn write_out(&mut self) -> Result<(), ClientError> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let result = self
            .set_nonblocking(false)
            .and_then(|()| self.stream.write_all(&self.write_buf));
        self.write_buf.clear();
        result.map_err(|e| self.fail(ClientError::Io(e)))
    }

    /// Marks the connection unusable and returns `err` for the caller.
    fn fail(&mut self, err: ClientError) -> ClientError {
        self.state = State::Broken;
        let _ = self.stream.shutdown(Shutdown::Both);
        err
    }

    /// Tells the relay (best effort) why we give up on its bytes, then fails.
    fn fail_protocol(&mut self, err: DecodeError) -> ClientError {
        let mut out = Vec::new();
        let text = err.to_string();
        let close = Frame::Close {
            reason: err.close_reason(),
            text: text.as_bytes(),
        };
        if close.encode(&mut out).is_ok() {
            let _ = self.stream.write_all(&out);
        }
        self.fail(ClientError::Protocol(err))
    }

    fn mark_closed(&mut self, reason: CloseReason, text: &str) {
        self.state = State::Closed {
            reason,
            text: text.to_string(),
        };
        self.write_buf.clear();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// The next buffered frame, classified; `Ok(None)` when more bytes are needed.
    fn next_inbound(&mut self) -> Result<Option<Inbound>, ClientError> {
        match self.reader.next_frame() {
            Ok(Some(frame)) => Ok(Some(classify(frame))),
            Ok(None) => Ok(None),
            Err(e) => Err(self.fail_protocol(e)),
        }
    }

    /// The next buffered event, answering pings on the way; `Ok(None)` when more bytes are
    /// needed.
    fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        while let Some(inbound) = self.next_inbound()? {
            match inbound {
                Inbound::Event(event) => {
                    if let Event::Closed { reason, text } = &event {
                        self.mark_closed(*reason, text);
                    }
                    return Ok(Some(event));
                }
                Inbound::Ping(nonce) => self.answer_ping(nonce)?,
                Inbound::Pong(_) => {}
                Inbound::Welcome { .. } => {
                    return Err(self.fail(ClientError::UnexpectedFrame(FrameKind::Welcome)))
                }
                Inbound::Challenge(_) => {
                    return Err(self.fail(ClientError::UnexpectedFrame(FrameKind::Challenge)))
                }
                Inbound::Unexpected(kind) => {
                    return Err(self.fail(ClientError::UnexpectedFrame(kind)))
                }
            }
        }
        Ok(None)
    }

    /// Hands the plain messages (DELIVER without reply topic or headers) at the front of what
    /// was read to `on_message` as
    /// `(sender, topic, payload)`, borrowed from the read buffer (no copy, no allocation; the
    /// topic is `None` for a direct send), up to `max` of them; stops at a frame of another
    /// kind (left for [`Self::recv`]) or a frame not wholly read. Returns how many it handed.
    /// An event loop receives at a high rate with this and [`Self::recv`] for the rest.
    pub fn take_messages(
        &mut self,
        max: usize,
        mut on_message: impl FnMut(&[u8], Option<&[u8]>, &[u8]),
    ) -> Result<usize, ClientError> {
        let wanted = |frame: &Frame<'_>| matches!(frame, Frame::Deliver { .. });
        self.take_frames(max, wanted, |frame| {
            if let Frame::Deliver {
                sender,
                topic,
                payload,
            } = frame
            {
                on_message(sender, (!topic.is_empty()).then_some(topic), payload);
            }
        })
    }

    /// Hands the acked messages at the front of what was read to `on_acked`, borrowed from the
    /// read buffer (no copy, no allocation), up to `max` of them; stops at a frame of another
    /// kind (left for [`Self::recv`]) or a frame not wholly read. Returns how many it handed.
    pub(crate) fn take_acked(
        &mut self,
        max: usize,
        mut on_acked: impl FnMut(&[u8], MsgId, &[u8]),
    ) -> Result<usize, ClientError> {
        let wanted = |frame: &Frame<'_>| matches!(frame, Frame::DeliverAcked { .. });
        self.take_frames(max, wanted, |frame| {
            if let Frame::DeliverAcked {
                sender,
                id,
                payload,
            } = frame
            {
                on_acked(sender, id, payload);
            }
        })
    }

    /// Hands up to `max` frames at the front of what was read, while `wanted` accepts them, to
    /// `on_frame`, borrowed from the read buffer; stops at another frame (left for
    /// [`Self::recv`]) or one not wholly read. Returns how many it handed.
    fn take_frames(
        &mut self,
        max: usize,
        wanted: impl Fn(&Frame<'_>) -> bool,
        mut on_frame: impl FnMut(Frame<'_>),
    ) -> Result<usize, ClientError> {
        self.check_open()?;
        let mut taken = 0;
        while taken < max {
            match self.reader.next_frame_if(&wanted) {
                Ok(Some(frame)) => on_frame(frame),
                Ok(None) => break,
                Err(e) => return Err(self.fail_protocol(e)),
            }
            taken += 1;
        }
        Ok(taken)
    }

    fn answer_ping(&mut self, nonce: u64) -> Result<(), ClientError> {
        Frame::Pong { nonce }
            .encode(&mut self.write_buf)
            .map_err(ClientError::Encode)?;
        self.write_out()
    }

    /// Answers CHALLENGE with PROOF: the signature of its nonce and our HELLO's id (once:
    /// the key is taken, so a second CHALLENGE is an unexpected frame).
    fn answer_challenge(&mut self, nonce: &[u8; 32]) -> Result<(), ClientError> {
        if self.proof_sent {
            return Err(self.fail(ClientError::UnexpectedFrame(FrameKind::Challenge)));
        }
        let Some(key) = self.opts.signing_key.as_ref() else {
            return Err(self.fail(ClientError::KeyRequired));
        };
        let signature = key.sign_hello(nonce, &self.client_id);
        Frame::Proof {
            signature: &signature,
        }
        .encode(&mut self.write_buf)
        .map_err(ClientError::Encode)?;
        self.proof_sent = true;
        self.write_out()
    }

    fn await_welcome(
        &mut self,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        loop {
            while let Some(inbound) = self.next_inbound()? {
                match inbound {
                    Inbound::Welcome {
                        version,
                        max_frame_bytes,
                        heartbeat_interval_ms,
                    } => {
                        return self.accept_welcome(
                            version,
                            max_frame_bytes,
                            heartbeat_interval_ms,
                        );
                    }
                    Inbound::Event(Event::Closed { reason, text }) => {
                        self.mark_closed(reason, &text);
                        return Err(ClientError::Closed { reason, text });
                    }
                    Inbound::Ping(nonce) => self.answer_ping(nonce)?,
                    Inbound::Pong(_) => {}
                    Inbound::Challenge(nonce) => self.answer_challenge(&nonce)?,
                    Inbound::Event(event) => {
                        return Err(self.fail(ClientError::UnexpectedFrame(event_kind(&event))))
                    }
                    Inbound::Unexpected(kind) => {
                        return Err(self.fail(ClientError::UnexpectedFrame(kind)))
                    }
                }
            }
            if let Fill::DeadlinePassed = self.fill(deadline)? {
                let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                return Err(self.fail(ClientError::Timeout { waited_ms }));
            }
        }
    }

    fn accept_welcome(
        &mut self,
        version: u16,
        max_frame_bytes: u32,
        heartbeat_interval_ms: u32,
    ) -> Result<(), ClientError> {
        if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version) {
            return Err(self.fail(ClientError::UnsupportedVersion(version)));
        }
        self.version = version;
        self.relay_max_frame_bytes = usize::try_from(max_frame_bytes).unwrap_or(usize::MAX);
        self.heartbeat_interval_ms = heartbeat_interval_ms;
        Ok(())
    }

    /// Reads once into the frame reader, waiting at most until `deadline` (`None`: forever).
    fn fill(&mut self, deadline: Option<Instant>) -> Result<Fill, ClientError> {
        let now = Instant::now();
        let wake = match (deadline, self.liveness_check_at()) {
            (Some(d), Some(c)) => Some(d.min(c)),
            (d, c) => d.or(c),
        };
        let wait = wake.map(|w| w.saturating_duration_since(now));
        let result = match wait {
            Some(Duration::ZERO) => self.read_nonblocking(),
            wait => self.read_blocking(wait),
        };
        // A read that did not wait ended at `now`, near enough.
        let after = |waited: bool| if waited { Instant::now() } else { now };
        let waited = wait != Some(Duration::ZERO);
        match result {
            Ok(0) => Err(self.fail(ClientError::Disconnected)),
            Ok(_) => {
                self.last_heard = after(waited);
                self.probe_sent = None;
                Ok(Fill::Progress)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Fill::Progress),
            Err(e) if is_timeout(&e) => {
                let now = after(waited);
                // Before the deadline test, so a caller that only polls (`recv(ZERO)` from
                // an event loop) still finds a silent relay.
                self.check_liveness(now)?;
                if deadline.is_some_and(|d| now >= d) {
                    return Ok(Fill::DeadlinePassed);
                }
                Ok(Fill::Progress)
            }
            Err(e) => Err(self.fail(ClientError::Io(e))),
        }
    }

    /// When the relay's silence next needs looking at; `None` before WELCOME.
    fn liveness_check_at(&self) -> Option<Instant> {
        let interval = Duration::from_millis(u64::from(self.heartbeat_interval_ms));
        if interval.is_zero() {
            return None;
        }
        Some(self.probe_sent.unwrap_or(self.last_heard) + interval)
    }

    /// After an interval of silence, probes the relay with a PING; after another with no
    /// answer, gives the connection up.
    fn check_liveness(&mut self, now: Instant) -> Result<(), ClientError> {
        let Some(check_at) = self.liveness_check_at() else {
            return Ok(());
        };
        if now < check_at {
            return Ok(());
        }
        if self.probe_sent.is_some() {
            let silent_ms = now.duration_since(self.last_heard).as_millis() as u64;
            return Err(self.fail(ClientError::RelaySilent { silent_ms }));
        }
        self.last_ping_nonce = self.last_ping_nonce.wrapping_add(1);
        Frame::Ping {
            nonce: self.last_ping_nonce,
        }
        .encode(&mut self.write_buf)
        .map_err(ClientError::Encode)?;
        self.write_out()?;
        self.probe_sent = Some(now);
        Ok(())
    }

    fn read_blocking(&mut self, wait: Option<Duration>) -> io::Result<usize> {
        self.set_nonblocking(false)?;
        self.stream.set_read_timeout(wait)?;
        self.reader
            .fill_from(&mut self.stream, self.opts.read_chunk_bytes)
    }

    fn read_nonblocking(&mut self) -> io::Result<usize> {
        self.set_nonblocking(true)?;
        self.reader
            .fill_from(&mut self.stream, self.opts.read_chunk_bytes)
    }

    /// Puts the socket in (non-)blocking mode unless it is already: the mode stays between
    /// calls, so a client polling with `recv(Duration::ZERO)` does not pay two ioctls per
    /// poll. Writes and waits switch back to blocking.
    fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        if self.nonblocking != nonblocking {
            self.stream.set_nonblocking(nonblocking)?;
            self.nonblocking = nonblocking;
        }
        Ok(())
    }

    /// Discards inbound bytes until the relay closes its side or the linger time passes.
    fn linger_until_relay_closes(&mut self) {
        let deadline = Instant::now() + self.opts.close_linger;
        let mut scratch = [0u8; 4096];
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero()
                || self.set_nonblocking(false).is_err()
                || self.stream.set_read_timeout(Some(wait)).is_err()
            {
                return;
            }
            match self.stream.read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted || is_timeout(&e) => {}
                Err(_) => return,
            }
        }
    }
}

/// The socket, for an event loop that waits for it to become readable and then calls
/// [`Client::recv`] with `Duration::ZERO`. Reading or writing it directly breaks the framing.
impl std::os::fd::AsRawFd for Client {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.stream)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The addresses `addr` resolves to.
fn resolve(addr: impl ToSocketAddrs) -> Result<Vec<SocketAddr>, ClientError> {
    addr.to_socket_addrs()
        .map(Iterator::collect)
        .map_err(|source| ClientError::Connect {
            addr: "relay address".into(),
            source,
        })
}

/// Connects to the first of `addrs` that accepts before `deadline`.
fn connect_tcp(addrs: &[SocketAddr], deadline: Option<Instant>) -> Result<TcpStream, ClientError> {
    let label = addrs
        .first()
        .map_or_else(|| "relay address".to_string(), |a| a.to_string());
    let mut last_err = io::Error::new(io::ErrorKind::InvalidInput, "address resolved to nothing");
    for sock_addr in addrs {
        let attempt = match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            Some(Duration::ZERO) => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            }
            Some(wait) => TcpStream::connect_timeout(sock_addr, wait),
            None => TcpStream::connect(sock_addr),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) => last_err = e,
        }
    }
    Err(ClientError::Connect {
        addr: label,
        source: last_err,
    })
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn classify(frame: Frame<'_>) -> Inbound {
    match frame {
        Frame::Deliver { .. } | Frame::Extended(_) => {
            let Some(message) = frame.message() else {
                return Inbound::Unexpected(frame.kind());
            };
            let present = |field: &[u8]| (!field.is_empty()).then(|| field.to_vec());
            Inbound::Event(Event::Message {
                sender: message.sender.to_vec(),
                topic: present(message.topic),
                reply: present(message.reply),
                headers: present(message.headers),
                payload: message.payload.to_vec(),
            })
        }
        Frame::DeliverAcked {
            sender,
            id,
            payload,
        } => Inbound::Event(Event::AckedMessage {
            sender: sender.to_vec(),
            id,
            payload: payload.to_vec(),
        }),
        Frame::Receipt { from, gap, ack } => Inbound::Event(Event::Receipt {
            from: from.to_vec(),
            gap,
            epoch: ack.epoch,
            upto: ack.upto,
            runs: ack.runs.iter().collect(),
        }),
        Frame::ErrorAcked {
            code,
            subject,
            id,
            text,
        } => Inbound::Event(Event::AckedError {
            code,
            subject: subject.to_vec(),
            id,
            text: lossy(text),
        }),
        Frame::Presence { client_id, online } => Inbound::Event(Event::Presence {
            client_id: client_id.to_vec(),
            online,
        }),
        Frame::Error {
            code,
            subject,
            text,
        } => Inbound::Event(Event::Error {
            code,
            subject: subject.to_vec(),
            text: lossy(text),
        }),
        Frame::Close { reason, text } => Inbound::Event(Event::Closed {
            reason,
            text: lossy(text),
        }),
        Frame::Ping { nonce } => Inbound::Ping(nonce),
        Frame::Pong { nonce } => Inbound::Pong(nonce),
        Frame::Challenge { nonce } => Inbound::Challenge(*nonce),
        Frame::Welcome {
            version,
            heartbeat_interval_ms,
            max_frame_bytes,
        } => Inbound::Welcome {
            version,
            max_frame_bytes,
            heartbeat_interval_ms,
        },
        other => Inbound::Unexpected(other.kind()),
    }
}

fn event_kind(event: &Event) -> FrameKind {
    match event {
        Event::Message { .. } | Event::AckedMessage { .. } => FrameKind::Deliver,
        Event::Presence { .. } => FrameKind::Presence,
        Event::Error { .. } | Event::AckedError { .. } => FrameKind::Error,
        Event::Receipt { .. } => FrameKind::Receipt,
        // Made by an acked session, never read; RECEIPT is the nearest kind.
        Event::Confirmed { .. } | Event::Failed { .. } => FrameKind::Receipt,
        Event::Closed { .. } => FrameKind::Close,
        // Never read from a connection (a session makes it); WELCOME is the nearest kind.
        Event::Reconnected { .. } => FrameKind::Welcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, hello, Decoded};
    use std::net::TcpListener;
    use std::thread::{self, JoinHandle};

    const IO_BOUND: Duration = Duration::from_secs(5);

    /// The relay side of one accepted connection, with bounded reads.
    struct FakeRelay {
        stream: TcpStream,
        reader: FrameReader,
    }

    impl FakeRelay {
        fn accept(listener: &TcpListener) -> FakeRelay {
            let (stream, _) = listener.accept().unwrap();
            stream.set_read_timeout(Some(IO_BOUND)).unwrap();
            stream.set_write_timeout(Some(IO_BOUND)).unwrap();
            FakeRelay {
                stream,
                reader: FrameReader::new(1 << 20),
            }
        }

        /// The next frame, re-encoded to owned bytes (so the reader can be borrowed again).
        fn next_frame_bytes(&mut self) -> Vec<u8> {
            loop {
                if let Some(frame) = self.reader.next_frame().unwrap() {
                    let mut out = Vec::new();
                    frame.encode(&mut out).unwrap();
                    return out;
                }
                let n = self.reader.fill_from(&mut self.stream, 4096).unwrap();
                assert!(n > 0, "client closed before the expected frame");
            }
        }

        fn send(&mut self, frame: Frame<'_>) {
            let mut out = Vec::new();
            frame.encode(&mut out).unwrap();
            self.stream.write_all(&out).unwrap();
        }

        fn handshake(&mut self, expect_id: &[u8]) {
            let bytes = self.next_frame_bytes();
            assert_eq!(bytes, encoded(hello(expect_id, b"")));
            self.send(welcome());
        }
    }

    fn welcome() -> Frame<'static> {
        Frame::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_interval_ms: 5000,
            max_frame_bytes: 4096,
        }
    }

    fn encoded(frame: Frame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        out
    }

    fn decode_one(bytes: &[u8]) -> Frame<'_> {
        match decode(bytes, 1 << 20).unwrap() {
            Decoded::Frame { frame, .. } => frame,
            other => panic!("incomplete frame: {other:?}"),
        }
    }

    /// Listener plus a thread running `relay` on the first accepted connection.
    fn fake_relay<F>(relay: F) -> (SocketAddr, JoinHandle<()>)
    where
        F: FnOnce(FakeRelay) + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || relay(FakeRelay::accept(&listener)));
        (addr, handle)
    }

    #[test]
    fn hello_carries_id_and_token_and_welcome_is_accepted() {
        let (addr, relay) = fake_relay(|mut r| {
            assert_eq!(r.next_frame_bytes(), encoded(hello(b"alice", b"sesame")));
            r.send(welcome());
        });
        let client = Client::connect(addr, b"alice", Some(b"sesame")).unwrap();
        assert_eq!(client.client_id(), b"alice");
        assert_eq!(client.relay_max_frame_bytes(), 4096);
        assert_eq!(client.heartbeat_interval_ms(), 5000);
        assert!(matches!(&client.stream, Transport::Tcp(s) if s.nodelay().unwrap()));
        relay.join().unwrap();
    }

    #[test]
    fn a_relay_that_speaks_only_version_1_is_asked_again_with_each_older_version() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let relay = thread::spawn(move || {
            for refused in (2..=PROTOCOL_VERSION).rev() {
                let mut relay = FakeRelay::accept(&listener);
                let asked = Frame::Hello {
                    version: refused,
                    client_id: b"c",
                    token: b"",
                };
                assert_eq!(relay.next_frame_bytes(), encoded(asked));
                relay.send(Frame::Close {
                    reason: CloseReason::UNSUPPORTED_VERSION,
                    text: b"unsupported protocol version",
                });
            }
            let mut second = FakeRelay::accept(&listener);
            let v1 = Frame::Hello {
                version: 1,
                client_id: b"c",
                token: b"",
            };
            assert_eq!(second.next_frame_bytes(), encoded(v1));
            second.send(Frame::Welcome {
                version: 1,
                heartbeat_interval_ms: 5000,
                max_frame_bytes: 4096,
            });
            let _ = done_rx.recv_timeout(IO_BOUND);
        });
        let mut client = Client::connect(addr, b"c", None).unwrap();
        assert_eq!(client.protocol_version(), 1);
        let id = MsgId { epoch: 1, seq: 1 };
        assert!(matches!(
            client.send_acked(b"x", id, b"p"),
            Err(ClientError::UnsupportedVersion(1))
        ));
        assert!(matches!(
            client.publish_with(b"t", b"reply.here", b"", b"p"),
            Err(ClientError::UnsupportedVersion(1))
        ));
        client.send(b"x", b"plain messages still go").unwrap();
        done_tx.send(()).unwrap();
        relay.join().unwrap();
    }

    /// An acked session's options with `addr` its only relay.
    fn acked_options(addr: SocketAddr) -> AckedSessionOptions {
        AckedSessionOptions {
            session: SessionOptions {
                servers: vec![addr.to_string()],
                ..SessionOptions::default()
            },
            ..AckedSessionOptions::default()
        }
    }

    #[test]
    fn a_batch_that_ends_in_a_close_keeps_its_events_and_the_error_comes_next() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (addr, relay) = fake_relay(move |mut r| {
            r.handshake(b"rx");
            // Three acked messages and a CLOSE that ends the session, in one write.
            let mut out = Vec::new();
            for seq in 1..=3 {
                let deliver = Frame::DeliverAcked {
                    sender: b"tx",
                    id: MsgId { epoch: 9, seq },
                    payload: b"m",
                };
                deliver.encode(&mut out).unwrap();
            }
            let close = Frame::Close {
                reason: CloseReason::NORMAL,
                text: b"bye",
            };
            close.encode(&mut out).unwrap();
            r.stream.write_all(&out).unwrap();
            let _ = done_rx.recv_timeout(IO_BOUND);
        });
        let mut session = AckedSession::connect(b"rx", acked_options(addr)).unwrap();
        let (mut events, deadline) = (Vec::new(), Instant::now() + IO_BOUND);
        let error = loop {
            assert!(Instant::now() < deadline, "no error after {events:?}");
            let before = events.len();
            match session.recv_many(Duration::from_millis(10), &mut events) {
                Ok(n) => assert_eq!(events.len(), before + n),
                Err(e) => {
                    // What a batch appended comes with Ok: a caller that stops at the first
                    // error (`?`) has seen it all.
                    assert_eq!(events.len(), before, "an Err appends nothing");
                    break e;
                }
            }
        };
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::AckedMessage { id, .. } => Some(id.seq),
                _ => None,
            })
            .collect();
        assert_eq!(seqs, vec![1, 2, 3], "every message handed out: {events:?}");
        assert!(
            matches!(events.last(), Some(Event::Closed { .. })),
            "{events:?}"
        );
        assert!(matches!(error, ClientError::Closed { .. }), "{error:?}");
        done_tx.send(()).unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn recv_with_hands_out_each_message_once_in_order_with_the_other_events() {
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (addr, relay) = fake_relay(move |mut r| {
            r.handshake(b"rx");
            // Messages 1 and 2, a presence event, 2 again (a retransmission) and 3, in one
            // write: the session hands out 1, 2, the presence and 3, and acknowledges up to 3.
            let mut out = Vec::new();
            let deliver = |seq, out: &mut Vec<u8>| {
                let payload = format!("m{seq}");
                Frame::DeliverAcked {
                    sender: b"tx",
                    id: MsgId { epoch: 9, seq },
                    payload: payload.as_bytes(),
                }
                .encode(out)
                .unwrap();
            };
            deliver(1, &mut out);
            deliver(2, &mut out);
            let presence = Frame::Presence {
                client_id: b"tx",
                online: true,
            };
            presence.encode(&mut out).unwrap();
            deliver(2, &mut out);
            deliver(3, &mut out);
            r.stream.write_all(&out).unwrap();
            // The acknowledgement comes back (at once: a duplicate was seen).
            let ack = r.next_frame_bytes();
            match decode_one(&ack) {
                Frame::Ack { to, ack, .. } => {
                    assert_eq!(to, b"tx");
                    assert_eq!((ack.epoch, ack.upto), (9, 3));
                }
                other => panic!("expected an ACK, got {other:?}"),
            }
            let _ = done_rx.recv_timeout(IO_BOUND);
        });
        let mut session = AckedSession::connect(b"rx", acked_options(addr)).unwrap();
        let (mut seen, deadline) = (Vec::new(), Instant::now() + IO_BOUND);
        while seen.len() < 4 && Instant::now() < deadline {
            let before = seen.len();
            let n = session
                .recv_with(Duration::from_millis(10), |incoming| {
                    seen.push(match incoming {
                        Incoming::AckedMessage {
                            sender,
                            id,
                            payload,
                        } => format!("{} {} {}", lossy(sender), id.seq, lossy(payload)),
                        Incoming::Event(event) => format!("{event:?}"),
                    })
                })
                .unwrap();
            assert_eq!(seen.len(), before + n, "the count is what was handed out");
        }
        assert_eq!(
            seen,
            vec![
                "tx 1 m1".to_string(),
                "tx 2 m2".to_string(),
                format!(
                    "{:?}",
                    Event::Presence {
                        client_id: b"tx".to_vec(),
                        online: true
                    }
                ),
                "tx 3 m3".to_string(),
            ]
        );
        assert_eq!(session.stats().receiver.duplicates_suppressed, 1);
        done_tx.send(()).unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn close_during_handshake_is_an_error_with_the_reason() {
        let (addr, relay) = fake_relay(|mut r| {
            r.next_frame_bytes();
            r.send(Frame::Close {
                reason: CloseReason::AUTH_FAILED,
                text: b"bad token",
            });
        });
        match Client::connect(addr, b"alice", Some(b"wrong")) {
            Err(ClientError::Closed { reason, text }) => {
                assert_eq!(reason, CloseReason::AUTH_FAILED);
                assert_eq!(text, "bad token");
            }
            other => panic!("expected Closed, got {other:?}"),
        }
        relay.join().unwrap();
    }

    #[test]
    fn silent_relay_times_out_within_the_connect_timeout() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (addr, relay) = fake_relay(move |mut r| {
            r.next_frame_bytes();
            // Keep the connection open (no WELCOME) until the client gave up.
            let _ = rx.recv_timeout(IO_BOUND);
        });
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(100),
            ..Default::default()
        };
        let result = Client::connect_with(addr, b"alice", None, opts);
        assert!(
            matches!(result, Err(ClientError::Timeout { .. })),
            "{result:?}"
        );
        tx.send(()).unwrap();
        relay.join().unwrap();
    }

    /// WELCOME with a short heartbeat interval, so silence is noticed quickly.
    fn welcome_with_heartbeat(heartbeat_interval_ms: u32) -> Frame<'static> {
        Frame::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_interval_ms,
            max_frame_bytes: 4096,
        }
    }

    #[test]
    fn a_relay_that_falls_silent_is_probed_with_a_ping_then_given_up() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (addr, relay) = fake_relay(move |mut r| {
            r.next_frame_bytes();
            r.send(welcome_with_heartbeat(100));
            // The probe comes; the relay stays silent until the client has given up.
            let probe = r.next_frame_bytes();
            assert!(matches!(decode_one(&probe), Frame::Ping { .. }));
            let _ = rx.recv_timeout(IO_BOUND);
        });
        let mut client = Client::connect(addr, b"alice", None).unwrap();
        let started = Instant::now();
        match client.recv(IO_BOUND) {
            Err(ClientError::RelaySilent { silent_ms }) => assert!(silent_ms >= 200, "{silent_ms}"),
            other => panic!("expected RelaySilent, got {other:?}"),
        }
        assert!(started.elapsed() < IO_BOUND);
        tx.send(()).unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn an_event_loop_that_only_polls_at_next_deadline_finds_a_silent_relay() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (addr, relay) = fake_relay(move |mut r| {
            r.next_frame_bytes();
            r.send(welcome_with_heartbeat(100));
            let probe = r.next_frame_bytes();
            assert!(matches!(decode_one(&probe), Frame::Ping { .. }));
            let _ = rx.recv_timeout(IO_BOUND);
        });
        let mut client = Client::connect(addr, b"alice", None).unwrap();
        let started = Instant::now();
        // The host's loop, with a silent socket: its timer fires at `next_deadline`, and it
        // polls with `recv(ZERO)`, which never waits.
        let outcome = loop {
            assert!(
                started.elapsed() < IO_BOUND,
                "the silence was never noticed"
            );
            let deadline = client.next_deadline().expect("a heartbeat was announced");
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            match client.recv(Duration::ZERO) {
                Ok(None) => continue,
                other => break other,
            }
        };
        match outcome {
            Err(ClientError::RelaySilent { silent_ms }) => assert!(silent_ms >= 200, "{silent_ms}"),
            other => panic!("expected RelaySilent, got {other:?}"),
        }
        tx.send(()).unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn a_relay_that_answers_the_probes_keeps_the_connection() {
        let (addr, relay) = fake_relay(|mut r| {
            r.next_frame_bytes();
            r.send(welcome_with_heartbeat(50));
            // Answer every probe until the client leaves; count them.
            let mut probes = 0;
            loop {
                let mut pongs = Vec::new();
                while let Some(frame) = r.reader.next_frame().unwrap() {
                    match frame {
                        Frame::Ping { nonce } => pongs.push(nonce),
                        Frame::Close { .. } => {}
                        other => panic!("expected PING probes, got {other:?}"),
                    }
                }
                for nonce in pongs {
                    probes += 1;
                    r.send(Frame::Pong { nonce });
                }
                if r.reader.fill_from(&mut r.stream, 4096).unwrap_or(0) == 0 {
                    break;
                }
            }
            assert!(probes >= 3, "{probes} probes");
        });
        let mut client = Client::connect(addr, b"alice", None).unwrap();
        // Probes go out every 50 ms and are answered: nothing surfaces, and recv ends at its
        // deadline with the connection still open.
        assert!(matches!(client.recv(Duration::from_millis(400)), Ok(None)));
        client.close().unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn ping_is_answered_with_pong_and_not_surfaced() {
        let (addr, relay) = fake_relay(|mut r| {
            r.handshake(b"bob");
            r.send(Frame::Ping { nonce: 42 });
            r.send(Frame::Deliver {
                sender: b"alice",
                topic: b"",
                payload: b"hi",
            });
            assert_eq!(r.next_frame_bytes(), encoded(Frame::Pong { nonce: 42 }));
        });
        let mut client = Client::connect(addr, b"bob", None).unwrap();
        let event = client.recv(IO_BOUND).unwrap();
        assert_eq!(
            event,
            Some(Event::Message {
                sender: b"alice".to_vec(),
                topic: None,
                payload: b"hi".to_vec(),
                reply: None,
                headers: None,
            })
        );
        relay.join().unwrap();
    }

    #[test]
    fn buffered_events_come_out_in_order_with_topics_and_presence() {
        let (addr, relay) = fake_relay(|mut r| {
            r.handshake(b"bob");
            let mut burst = Vec::new();
            Frame::Deliver {
                sender: b"a",
                topic: b"news",
                payload: b"1",
            }
            .encode(&mut burst)
            .unwrap();
            Frame::Presence {
                client_id: b"carol",
                online: true,
            }
            .encode(&mut burst)
            .unwrap();
            Frame::Error {
                code: ErrorCode::UNKNOWN_ID,
                subject: b"zed",
                text: b"unknown id",
            }
            .encode(&mut burst)
            .unwrap();
            r.stream.write_all(&burst).unwrap();
        });
        let mut client = Client::connect(addr, b"bob", None).unwrap();
        let events: Vec<_> = (0..3)
            .map(|_| client.recv(IO_BOUND).unwrap().unwrap())
            .collect();
        assert_eq!(
            events,
            vec![
                Event::Message {
                    sender: b"a".to_vec(),
                    topic: Some(b"news".to_vec()),
                    payload: b"1".to_vec(),
                    reply: None,
                    headers: None,
                },
                Event::Presence {
                    client_id: b"carol".to_vec(),
                    online: true
                },
                Event::Error {
                    code: ErrorCode::UNKNOWN_ID,
                    subject: b"zed".to_vec(),
                    text: "unknown id".into()
                },
            ]
        );
        relay.join().unwrap();
    }

    #[test]
    fn close_is_surfaced_as_an_event_and_later_calls_fail() {
        let (addr, relay) = fake_relay(|mut r| {
            r.handshake(b"bob");
            r.send(Frame::Close {
                reason: CloseReason::SLOW_CONSUMER,
                text: b"",
            });
        });
        let mut client = Client::connect(addr, b"bob", None).unwrap();
        let event = client.recv(IO_BOUND).unwrap();
        assert_eq!(
            event,
            Some(Event::Closed {
                reason: CloseReason::SLOW_CONSUMER,
                text: String::new()
            })
        );
        let err = client.send(b"x", b"y").unwrap_err();
        assert!(matches!(
            err,
            ClientError::Closed {
                reason: CloseReason::SLOW_CONSUMER,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "relay closed the connection: slow consumer"
        );
        client.close().unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn end_of_stream_is_disconnected_and_timeout_is_none() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (addr, relay) = fake_relay(move |mut r| {
            r.handshake(b"bob");
            let _ = rx.recv_timeout(IO_BOUND);
        });
        let mut client = Client::connect(addr, b"bob", None).unwrap();
        assert_eq!(client.recv(Duration::ZERO).unwrap(), None);
        assert_eq!(client.recv(Duration::from_millis(20)).unwrap(), None);
        tx.send(()).unwrap();
        relay.join().unwrap();
        assert!(matches!(
            client.recv(IO_BOUND),
            Err(ClientError::Disconnected)
        ));
        assert!(matches!(client.flush(), Err(ClientError::Disconnected)));
    }

    #[test]
    fn undecodable_bytes_are_a_protocol_error() {
        let (addr, relay) = fake_relay(|mut r| {
            r.handshake(b"bob");
            r.stream.write_all(&[0, 0, 0, 0, 0x7f, 0]).unwrap();
        });
        let mut client = Client::connect(addr, b"bob", None).unwrap();
        let err = client.recv(IO_BOUND).unwrap_err();
        assert!(
            matches!(err, ClientError::Protocol(DecodeError::UnknownKind(0x7f))),
            "{err:?}"
        );
        relay.join().unwrap();
    }

    #[test]
    fn sends_are_batched_until_flush_and_control_ops_flush_at_once() {
        let (addr, relay) = fake_relay(|mut r| {
            r.handshake(b"bob");
            let expected = [
                encoded(Frame::Send {
                    target: b"alice",
                    payload: b"1",
                }),
                encoded(Frame::Publish {
                    topic: b"t",
                    payload: b"2",
                    no_echo: false,
                }),
                encoded(Frame::Publish {
                    topic: b"t",
                    payload: b"3",
                    no_echo: true,
                }),
                encoded(Frame::Subscribe {
                    topic: b"t",
                    group: b"g",
                }),
                encoded(Frame::Watch {
                    client_id: b"carol",
                }),
                encoded(Frame::Close {
                    reason: CloseReason::NORMAL,
                    text: b"",
                }),
            ];
            for frame in expected {
                assert_eq!(r.next_frame_bytes(), frame);
            }
        });
        let mut client = Client::connect(addr, b"bob", None).unwrap();
        client.send(b"alice", b"1").unwrap();
        client.publish(b"t", b"2").unwrap();
        client.publish_no_echo(b"t", b"3").unwrap();
        assert!(!client.write_buf.is_empty(), "plain sends wait for flush");
        client.subscribe_group(b"t", b"g").unwrap();
        assert!(client.write_buf.is_empty(), "control ops flush");
        client.watch(b"carol").unwrap();
        client.close().unwrap();
        relay.join().unwrap();
    }

    #[test]
    fn invalid_and_oversized_frames_are_refused_without_queueing() {
        let (addr, relay) = fake_relay(|mut r| r.handshake(b"bob"));
        let mut client = Client::connect(addr, b"bob", None).unwrap();
        assert!(matches!(
            client.send(b"", b"x"),
            Err(ClientError::Encode(_))
        ));
        let big = vec![0u8; 5000];
        assert!(matches!(
            client.send(b"alice", &big),
            Err(ClientError::FrameTooLarge {
                max_frame_bytes: 4096,
                ..
            })
        ));
        assert!(client.write_buf.is_empty());
        relay.join().unwrap();
        assert!(matches!(
            Client::connect(addr, b"", None),
            Err(ClientError::Encode(_))
        ));
    }

    /// Relay side of a public-key handshake: HELLO (version 4, `id`, token `name`), then
    /// CHALLENGE with `nonce`; returns whether the PROOF verifies against `public_key`.
    fn challenge(
        r: &mut FakeRelay,
        id: &[u8],
        name: &[u8],
        nonce: [u8; 32],
        key: [u8; 32],
    ) -> bool {
        let hello = Frame::Hello {
            version: KEY_PROOF_VERSION_MIN,
            client_id: id,
            token: name,
        };
        assert_eq!(r.next_frame_bytes(), encoded(hello));
        r.send(Frame::Challenge { nonce: &nonce });
        let proof = r.next_frame_bytes();
        let Frame::Proof { signature } = decode_one(&proof) else {
            panic!("expected PROOF: {proof:?}");
        };
        let message = crate::protocol::public_key::hello_proof_message(&nonce, id);
        crate::protocol::public_key::verify(&key, &message, signature)
    }

    fn key_options(key: &Arc<SigningKey>) -> ClientOptions {
        ClientOptions {
            signing_key: Some(Arc::clone(key)),
            connect_timeout: IO_BOUND,
            ..ClientOptions::default()
        }
    }

    #[test]
    fn a_challenge_is_answered_with_the_keys_signature_of_the_nonce_and_id() {
        let key = Arc::new(SigningKey::generate().unwrap());
        let public_key = key.public_key();
        let (addr, relay) = fake_relay(move |mut r| {
            assert!(challenge(
                &mut r,
                b"sensor-1",
                b"sensor",
                [7; 32],
                public_key
            ));
            r.send(welcome());
        });
        let opts = key_options(&key);
        let client = Client::connect_with(addr, b"sensor-1", Some(b"sensor"), opts).unwrap();
        assert_eq!(client.protocol_version(), PROTOCOL_VERSION);
        relay.join().unwrap();
    }

    #[test]
    fn a_challenge_without_a_key_is_a_clear_error_not_a_hang() {
        let (addr, relay) = fake_relay(|mut r| {
            let _ = r.next_frame_bytes();
            r.send(Frame::Challenge { nonce: &[1; 32] });
        });
        let opts = ClientOptions {
            connect_timeout: IO_BOUND,
            ..ClientOptions::default()
        };
        let started = Instant::now();
        let err = Client::connect_with(addr, b"c", Some(b"sensor"), opts).unwrap_err();
        assert!(matches!(err, ClientError::KeyRequired), "{err}");
        assert!(err.to_string().contains("key file"), "{err}");
        assert!(started.elapsed() < IO_BOUND, "answered at once");
        relay.join().unwrap();
    }

    #[test]
    fn a_second_challenge_is_an_unexpected_frame() {
        let key = Arc::new(SigningKey::generate().unwrap());
        let public_key = key.public_key();
        let (addr, relay) = fake_relay(move |mut r| {
            assert!(challenge(&mut r, b"c", b"sensor", [7; 32], public_key));
            r.send(Frame::Challenge { nonce: &[8; 32] });
        });
        let err = Client::connect_with(addr, b"c", Some(b"sensor"), key_options(&key)).unwrap_err();
        assert!(
            matches!(err, ClientError::UnexpectedFrame(FrameKind::Challenge)),
            "{err}"
        );
        relay.join().unwrap();
    }

    #[test]
    fn a_key_client_does_not_fall_back_below_version_4() {
        let key = Arc::new(SigningKey::generate().unwrap());
        let (addr, relay) = fake_relay(|mut r| {
            let _ = r.next_frame_bytes();
            r.send(Frame::Close {
                reason: CloseReason::UNSUPPORTED_VERSION,
                text: b"unsupported protocol version",
            });
        });
        let err = Client::connect_with(addr, b"c", Some(b"sensor"), key_options(&key)).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Closed {
                    reason: CloseReason::UNSUPPORTED_VERSION,
                    ..
                }
            ),
            "{err}"
        );
        relay.join().unwrap();
    }

    /// A reconnecting session proves the key again on the next relay connection, with that
    /// connection's nonce.
    #[test]
    fn a_session_proves_its_key_on_every_reconnect() {
        let key = Arc::new(SigningKey::generate().unwrap());
        let public_key = key.public_key();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let relay = thread::spawn(move || {
            for (round, nonce) in [[1u8; 32], [2; 32]].into_iter().enumerate() {
                let mut r = FakeRelay::accept(&listener);
                assert!(
                    challenge(&mut r, b"s", b"sensor", nonce, public_key),
                    "round {round}"
                );
                r.send(welcome());
                if round == 0 {
                    r.send(Frame::Close {
                        reason: CloseReason::SHUTDOWN,
                        text: b"restarting",
                    });
                } else {
                    r.send(Frame::Deliver {
                        sender: b"x",
                        topic: b"",
                        payload: b"after reconnect",
                    });
                    let _ = done_rx.recv_timeout(IO_BOUND);
                }
            }
        });
        let opts = SessionOptions {
            servers: vec![addr.to_string()],
            token: Some(b"sensor".to_vec()),
            client: key_options(&key),
            ..SessionOptions::default()
        };
        let mut session = Session::connect(b"s", opts).unwrap();
        let deadline = Instant::now() + IO_BOUND;
        let mut events = Vec::new();
        while !events
            .iter()
            .any(|e| matches!(e, Event::Message { payload, .. } if payload == b"after reconnect"))
        {
            assert!(Instant::now() < deadline, "no message after {events:?}");
            if let Some(event) = session.recv(Duration::from_millis(50)).unwrap() {
                events.push(event);
            }
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Reconnected { .. })),
            "{events:?}"
        );
        done_tx.send(()).unwrap();
        drop(session);
        relay.join().unwrap();
    }

    #[test]
    fn hello_bytes_decode_as_hello() {
        let bytes = encoded(hello(b"id", b"tok"));
        assert_eq!(
            decode_one(&bytes),
            Frame::Hello {
                version: PROTOCOL_VERSION,
                client_id: b"id",
                token: b"tok"
            }
        );
    }
}
