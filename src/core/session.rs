//! Per-connection session state machine (sans-IO).
//!
//! Takes decoded frames and the current time in, gives [`SessionEvent`]s and [`TickAction`]s
//! out. It owns the handshake (HELLO within `handshake_timeout_ms`, version, token and
//! credentials checks through [`Gate`])
//! and the heartbeat (ping a connection idle for `heartbeat_interval_ms`, close it after
//! `heartbeat_misses_max` unanswered pings). It never touches sockets, clocks or tables.

use crate::core::credentials::{Admission, Entry, Gate};
use crate::protocol::{
    AckFields, CloseReason, Extended, ExtendedFields, Frame, FrameKind, MsgId, ACKED_VERSION_MIN,
    EXTENDED_VERSION_MIN, KEY_PROOF_VERSION_MIN, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// The answer to a PROOF that no CHALLENGE asked for.
/// A NAME alone as the token below version 4: the same text whatever NAME is (a key entry,
/// another entry, no entry), so the answer does not tell them apart.
const NAME_NEEDS_VERSION_4: &str = "token does not match, and is not NAME:SECRET of a \
     credentials entry (a public-key entry's NAME alone needs protocol version 4)";
/// The AUTH_FAILED text of a HELLO the host's authorize hook refuses.
pub const REFUSED_BY_HOST: &str = "refused by the host";
const PROOF_WITHOUT_CHALLENGE: &str =
    "PROOF without a CHALLENGE (only a version-4 HELLO whose token is a NAME alone is challenged)";

/// A host's decision on each client that passed the token check: allow `client_id` with
/// `token` from `peer` (`None`: a local client of an embedded node, with no network address)?
/// Called on a worker thread at every HELLO, so it must be quick. The entry point per-id
/// authorization uses.
pub type AuthorizeFn = dyn Fn(&[u8], &[u8], Option<SocketAddr>) -> bool + Send + Sync;

/// A shared [`AuthorizeFn`].
#[derive(Clone)]
pub struct Authorizer(pub Arc<AuthorizeFn>);

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authorizer(..)")
    }
}

/// A HELLO that names a credentials entry `name` with its `secret`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    pub client_id: &'a [u8],
    pub name: &'a str,
    pub secret: &'a [u8],
}

/// The session settings taken from [`crate::config::Config`].
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub handshake_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub heartbeat_misses_max: u32,
    /// A frame whose first bytes arrived must be complete within this time (slow-loris).
    pub frame_complete_timeout_ms: u64,
    /// What HELLO's token is checked against: the shared token and the credentials.
    pub gate: Gate,
    /// Asked after the token check; a refusal closes with AUTH_FAILED.
    pub authorize: Option<Authorizer>,
}

impl SessionConfig {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        SessionConfig {
            handshake_timeout_ms: cfg.handshake_timeout_ms,
            heartbeat_interval_ms: cfg.heartbeat_interval_ms,
            heartbeat_misses_max: cfg.heartbeat_misses_max,
            frame_complete_timeout_ms: cfg.frame_complete_timeout_ms,
            gate: Gate::new(cfg.token.as_ref().map(|t| t.as_bytes()), None),
            authorize: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connected, no valid HELLO yet.
    AwaitingHello,
    /// HELLO's token was a NAME alone and was answered with CHALLENGE: the PROOF is due
    /// within the handshake timeout, like HELLO was.
    AwaitingProof,
    /// HELLO accepted; the client id is registered by the caller.
    Open,
    /// A close was decided; further frames are ignored.
    Closed,
}

/// What the caller must do with one received frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent<'a> {
    /// Register `client_id` for this connection, then send WELCOME. `entry`: the credentials
    /// entry it came in with, whose permissions bind it (`None`: unrestricted); the caller
    /// checks that the entry may register the id.
    Register {
        client_id: &'a [u8],
        entry: Option<Arc<Entry>>,
    },
    /// HELLO named a credentials entry: its secret must be verified (off the worker) before
    /// its id is registered or refused.
    Verify(Hello<'a>),
    /// HELLO (version 4) was a NAME alone, of a public-key entry or (a decoy) not: send
    /// CHALLENGE with a fresh nonce, hold the HELLO and the frames after it until the PROOF.
    Challenge {
        client_id: &'a [u8],
        /// `None`: no public-key entry has that name (challenged all the same, never
        /// admitted: see [`Admission::Challenge`]).
        entry: Option<Arc<Entry>>,
    },
    /// The PROOF answering the CHALLENGE: verify `signature` against the entry's key.
    Proof {
        signature: &'a [u8; 64],
    },
    /// A SEND; `reply` and `headers` (version 3) are empty when absent.
    Send {
        target: &'a [u8],
        reply: &'a [u8],
        headers: &'a [u8],
        payload: &'a [u8],
    },
    /// An acknowledged SEND (version 2).
    SendAcked {
        target: &'a [u8],
        id: MsgId,
        payload: &'a [u8],
    },
    /// An acknowledgement for the client `to` (version 2), routed to it as a RECEIPT.
    Ack {
        to: &'a [u8],
        gap: bool,
        ack: AckFields<'a>,
    },
    /// A PUBLISH; `reply` and `headers` (version 3) are empty when absent.
    Publish {
        topic: &'a [u8],
        reply: &'a [u8],
        headers: &'a [u8],
        payload: &'a [u8],
        no_echo: bool,
    },
    Subscribe {
        topic: &'a [u8],
        group: &'a [u8],
    },
    Unsubscribe {
        topic: &'a [u8],
        group: &'a [u8],
    },
    Watch {
        client_id: &'a [u8],
    },
    Unwatch {
        client_id: &'a [u8],
    },
    /// Answer a client PING.
    Pong {
        nonce: u64,
    },
    /// Nothing to do (a PONG, or a frame after the close decision).
    None,
    /// Close the connection, sending CLOSE with this reason and text.
    Close {
        reason: CloseReason,
        text: &'static str,
    },
}

/// What the caller must do on a timer tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickAction {
    None,
    SendPing {
        nonce: u64,
    },
    Close {
        reason: CloseReason,
        text: &'static str,
    },
}

#[derive(Debug)]
pub struct Session {
    phase: Phase,
    /// The protocol version of the accepted HELLO (0 before).
    version: u16,
    handshake_deadline_ms: u64,
    last_rx_ms: u64,
    last_ping_ms: u64,
    pings_unanswered: u32,
    ping_nonce: u64,
    /// When the first bytes of the frame still being received arrived (`None`: no frame in
    /// progress).
    frame_started_ms: Option<u64>,
}

impl Session {
    pub fn new(now_ms: u64, cfg: &SessionConfig) -> Session {
        Session {
            phase: Phase::AwaitingHello,
            version: 0,
            handshake_deadline_ms: now_ms.saturating_add(cfg.handshake_timeout_ms),
            last_rx_ms: now_ms,
            last_ping_ms: 0,
            pings_unanswered: 0,
            ping_nonce: 0,
            frame_started_ms: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The protocol version the client's HELLO asked for and WELCOME answers (0 before
    /// HELLO was accepted).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Whether the connection speaks acknowledged delivery (may be sent acknowledged
    /// DELIVERs and RECEIPTs).
    #[inline]
    pub fn acks(&self) -> bool {
        self.version >= ACKED_VERSION_MIN
    }

    /// Whether the connection speaks version 3: it may send and receive messages with a
    /// reply topic and headers.
    #[inline]
    pub fn extended(&self) -> bool {
        self.version >= EXTENDED_VERSION_MIN
    }

    /// Marks the session closed (the caller decided to close for its own reason).
    pub fn close(&mut self) {
        self.phase = Phase::Closed;
    }

    fn closing(&mut self, reason: CloseReason, text: &'static str) -> SessionEvent<'static> {
        self.phase = Phase::Closed;
        SessionEvent::Close { reason, text }
    }

    /// Any received bytes prove the peer alive; call once per receive, before the frames.
    pub fn on_bytes_received(&mut self, now_ms: u64) {
        self.last_rx_ms = now_ms;
        self.pings_unanswered = 0;
    }

    /// The end of one receive: whether it completed at least one frame, and whether a frame
    /// is left unfinished. The clock of `frame_complete_timeout_ms` runs from the first bytes
    /// of the unfinished frame; a completed frame restarts it (the stream moves on).
    pub fn on_receive_end(&mut self, now_ms: u64, completed_frames: bool, frame_pending: bool) {
        self.frame_started_ms = match (frame_pending, completed_frames, self.frame_started_ms) {
            (false, _, _) => None,
            (true, true, _) | (true, false, None) => Some(now_ms),
            (true, false, Some(started_ms)) => Some(started_ms),
        };
    }

    /// The session's answer to one frame from a client at `peer` (`None`: a local client).
    #[inline]
    pub fn on_frame<'a>(
        &mut self,
        frame: Frame<'a>,
        cfg: &SessionConfig,
        peer: Option<SocketAddr>,
    ) -> SessionEvent<'a> {
        match self.phase {
            Phase::Closed => SessionEvent::None,
            Phase::AwaitingHello => self.on_handshake_frame(frame, cfg, peer),
            Phase::AwaitingProof => self.on_proof_frame(frame),
            Phase::Open => self.on_open_frame(frame),
        }
    }

    #[inline(never)]
    fn on_handshake_frame<'a>(
        &mut self,
        frame: Frame<'a>,
        cfg: &SessionConfig,
        peer: Option<SocketAddr>,
    ) -> SessionEvent<'a> {
        let Frame::Hello {
            version,
            client_id,
            token,
        } = frame
        else {
            if let Frame::Proof { .. } = frame {
                return self.closing(CloseReason::BAD_HANDSHAKE, PROOF_WITHOUT_CHALLENGE);
            }
            return self.closing(
                CloseReason::BAD_HANDSHAKE,
                "expected HELLO as the first frame",
            );
        };
        if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version) {
            return self.closing(
                CloseReason::UNSUPPORTED_VERSION,
                "unsupported protocol version",
            );
        }
        let admission = cfg.gate.admit(token);
        if let Admission::Refused(reason) = admission {
            return self.closing(CloseReason::AUTH_FAILED, reason);
        }
        if matches!(admission, Admission::Challenge(_)) && version < KEY_PROOF_VERSION_MIN {
            return self.closing(CloseReason::AUTH_FAILED, NAME_NEEDS_VERSION_4);
        }
        if let Some(authorize) = &cfg.authorize {
            if !(authorize.0)(client_id, token, peer) {
                return self.closing(CloseReason::AUTH_FAILED, REFUSED_BY_HOST);
            }
        }
        self.phase = Phase::Open;
        self.version = version;
        match admission {
            Admission::Challenge(entry) => {
                self.phase = Phase::AwaitingProof;
                SessionEvent::Challenge { client_id, entry }
            }
            Admission::Verify { name, secret } => SessionEvent::Verify(Hello {
                client_id,
                name,
                secret,
            }),
            Admission::Entry(entry) => SessionEvent::Register {
                client_id,
                entry: Some(entry),
            },
            Admission::Open | Admission::Refused(_) => SessionEvent::Register {
                client_id,
                entry: None,
            },
        }
    }

    /// The frame after CHALLENGE: the caller holds every other frame until the PROOF, so
    /// anything else reaching here is a bad handshake.
    #[cold]
    #[inline(never)]
    fn on_proof_frame<'a>(&mut self, frame: Frame<'a>) -> SessionEvent<'a> {
        match frame {
            Frame::Proof { signature } => SessionEvent::Proof { signature },
            _ => self.closing(
                CloseReason::BAD_HANDSHAKE,
                "expected PROOF answering CHALLENGE",
            ),
        }
    }

    /// A HELLO whose key was proven with it (a NATS CONNECT's `nkey` and `sig`), at
    /// `version`: the session is open (the caller goes on as for a verified secret). `false`
    /// when the session is past its HELLO.
    pub fn open_with_proven_key(&mut self, version: u16) -> bool {
        if self.phase != Phase::AwaitingHello {
            return false;
        }
        self.phase = Phase::Open;
        self.version = version;
        true
    }

    /// The PROOF verified: the session is open (the caller goes on as for a verified
    /// secret).
    pub fn on_proof_accepted(&mut self) {
        if self.phase == Phase::AwaitingProof {
            self.phase = Phase::Open;
        }
    }

    #[inline]
    fn on_open_frame<'a>(&mut self, frame: Frame<'a>) -> SessionEvent<'a> {
        match frame {
            Frame::Send { target, payload } => SessionEvent::Send {
                target,
                reply: b"",
                headers: b"",
                payload,
            },
            Frame::Publish {
                topic,
                payload,
                no_echo,
            } => SessionEvent::Publish {
                topic,
                reply: b"",
                headers: b"",
                payload,
                no_echo,
            },
            Frame::Extended(extended) if extended.kind() != FrameKind::Deliver => {
                self.on_extended(extended)
            }
            Frame::Subscribe { topic, group } => SessionEvent::Subscribe { topic, group },
            Frame::Unsubscribe { topic, group } => SessionEvent::Unsubscribe { topic, group },
            Frame::Watch { client_id } => SessionEvent::Watch { client_id },
            Frame::Unwatch { client_id } => SessionEvent::Unwatch { client_id },
            Frame::Ping { nonce } => SessionEvent::Pong { nonce },
            Frame::Pong { .. } => SessionEvent::None,
            Frame::Close { .. } => self.closing(CloseReason::NORMAL, "closed by client"),
            Frame::Hello { .. } => self.closing(CloseReason::BAD_HANDSHAKE, "HELLO sent twice"),
            Frame::Proof { .. } => {
                self.closing(CloseReason::BAD_HANDSHAKE, PROOF_WITHOUT_CHALLENGE)
            }
            Frame::SendAcked {
                target,
                id,
                payload,
            } if self.acks() => SessionEvent::SendAcked {
                target,
                id,
                payload,
            },
            Frame::Ack { to, gap, ack } if self.acks() => SessionEvent::Ack { to, gap, ack },
            Frame::SendAcked { .. } | Frame::Ack { .. } => self.closing(
                CloseReason::PROTOCOL_ERROR,
                "acknowledged delivery (ACKED flag, ACK) needs protocol version 2",
            ),
            Frame::Welcome { .. }
            | Frame::Challenge { .. }
            | Frame::Deliver { .. }
            | Frame::DeliverAcked { .. }
            | Frame::Extended(_)
            | Frame::Receipt { .. }
            | Frame::Presence { .. }
            | Frame::Error { .. }
            | Frame::ErrorAcked { .. } => self.closing(
                CloseReason::PROTOCOL_ERROR,
                "relay-to-client frame sent by a client",
            ),
        }
    }

    /// Version 3's SEND or PUBLISH with a reply topic or headers.
    #[cold]
    #[inline(never)]
    fn on_extended<'a>(&mut self, extended: Extended<'a>) -> SessionEvent<'a> {
        if !self.extended() {
            return self.closing(
                CloseReason::PROTOCOL_ERROR,
                "reply topics and headers (flags REPLY, HEADERS) need protocol version 3",
            );
        }
        let ExtendedFields {
            target,
            message,
            no_echo,
        } = extended.fields();
        if extended.kind() == FrameKind::Send {
            SessionEvent::Send {
                target,
                reply: message.reply,
                headers: message.headers,
                payload: message.payload,
            }
        } else {
            SessionEvent::Publish {
                topic: message.topic,
                reply: message.reply,
                headers: message.headers,
                payload: message.payload,
                no_echo,
            }
        }
    }

    /// Timer tick: handshake deadline, unfinished frame and heartbeat.
    ///
    /// `now_ms` is a clock truncated to whole milliseconds, so a start read as `t` may be as
    /// late as `t + 0.999`: a deadline has passed only once `now_ms` exceeds it, which keeps
    /// every timeout at least its full length (never up to 1 ms short).
    pub fn on_tick(&mut self, now_ms: u64, cfg: &SessionConfig) -> TickAction {
        if self.phase != Phase::Closed {
            if let Some(started_ms) = self.frame_started_ms {
                if now_ms.saturating_sub(started_ms) > cfg.frame_complete_timeout_ms {
                    self.phase = Phase::Closed;
                    return TickAction::Close {
                        reason: CloseReason::FRAME_TIMEOUT,
                        text: "frame not completed within frame_complete_timeout_ms",
                    };
                }
            }
        }
        match self.phase {
            Phase::Closed => TickAction::None,
            Phase::AwaitingHello | Phase::AwaitingProof => {
                if now_ms > self.handshake_deadline_ms {
                    let text = if self.phase == Phase::AwaitingHello {
                        "no HELLO within handshake_timeout_ms"
                    } else {
                        "no PROOF within handshake_timeout_ms"
                    };
                    self.phase = Phase::Closed;
                    TickAction::Close {
                        reason: CloseReason::HANDSHAKE_TIMEOUT,
                        text,
                    }
                } else {
                    TickAction::None
                }
            }
            Phase::Open => {
                let interval_ms = cfg.heartbeat_interval_ms;
                let idle_since_ms = self.last_rx_ms.max(self.last_ping_ms);
                if now_ms.saturating_sub(idle_since_ms) < interval_ms {
                    return TickAction::None;
                }
                if self.pings_unanswered >= cfg.heartbeat_misses_max {
                    self.phase = Phase::Closed;
                    return TickAction::Close {
                        reason: CloseReason::HEARTBEAT_TIMEOUT,
                        text: "missed heartbeat_misses_max pings",
                    };
                }
                self.pings_unanswered += 1;
                self.last_ping_ms = now_ms;
                self.ping_nonce = self.ping_nonce.wrapping_add(1);
                TickAction::SendPing {
                    nonce: self.ping_nonce,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::hello;

    fn cfg() -> SessionConfig {
        SessionConfig {
            handshake_timeout_ms: 100,
            heartbeat_interval_ms: 1000,
            heartbeat_misses_max: 2,
            frame_complete_timeout_ms: 1000,
            gate: Gate::new(Some(b"tok"), None),
            authorize: None,
        }
    }

    #[test]
    fn the_host_authorize_hook_sees_id_token_and_peer_and_may_refuse() {
        let peer: SocketAddr = "127.0.0.7:4000".parse().unwrap();
        let c = SessionConfig {
            authorize: Some(Authorizer(Arc::new(move |id, token, from| {
                assert_eq!(token, b"tok");
                id == b"allowed" && from == Some(peer)
            }))),
            ..cfg()
        };
        let mut s = Session::new(0, &c);
        assert_eq!(
            s.on_frame(hello(b"allowed", b"tok"), &c, Some(peer)),
            SessionEvent::Register {
                client_id: b"allowed",
                entry: None
            }
        );
        let mut s = Session::new(0, &c);
        assert_eq!(
            s.on_frame(hello(b"refused", b"tok"), &c, Some(peer)),
            SessionEvent::Close {
                reason: CloseReason::AUTH_FAILED,
                text: "refused by the host"
            }
        );
        let mut s = Session::new(0, &c);
        assert!(matches!(
            s.on_frame(hello(b"allowed", b"tok"), &c, None),
            SessionEvent::Close { .. }
        ));
    }

    #[test]
    fn hello_with_right_token_registers() {
        let c = cfg();
        let mut s = Session::new(0, &c);
        assert_eq!(
            s.on_frame(hello(b"a", b"tok"), &c, None),
            SessionEvent::Register {
                client_id: b"a",
                entry: None
            }
        );
        assert_eq!(s.phase(), Phase::Open);
    }

    #[test]
    fn bad_handshakes_close_with_their_reason() {
        let c = cfg();
        let cases: [(Frame<'_>, CloseReason); 3] = [
            (hello(b"a", b"nope"), CloseReason::AUTH_FAILED),
            (
                Frame::Hello {
                    version: 99,
                    client_id: b"a",
                    token: b"tok",
                },
                CloseReason::UNSUPPORTED_VERSION,
            ),
            (
                Frame::Send {
                    target: b"x",
                    payload: b"",
                },
                CloseReason::BAD_HANDSHAKE,
            ),
        ];
        for (frame, reason) in cases {
            let mut s = Session::new(0, &c);
            assert!(
                matches!(s.on_frame(frame, &c, None), SessionEvent::Close { reason: r, .. } if r == reason)
            );
            assert_eq!(
                s.on_frame(hello(b"a", b"tok"), &c, None),
                SessionEvent::None,
                "closed stays closed"
            );
        }
    }

    #[test]
    fn handshake_timeout_fires_only_once_its_full_length_has_passed() {
        let c = cfg();
        let mut s = Session::new(1000, &c);
        assert_eq!(
            s.on_tick(1100, &c),
            TickAction::None,
            "the clock may be 0.999 ms behind"
        );
        assert!(matches!(
            s.on_tick(1101, &c),
            TickAction::Close {
                reason: CloseReason::HANDSHAKE_TIMEOUT,
                ..
            }
        ));
    }

    #[test]
    fn an_unfinished_frame_is_closed_only_once_its_full_timeout_has_passed() {
        let c = SessionConfig {
            heartbeat_interval_ms: 60_000,
            ..cfg()
        };
        let mut s = Session::new(0, &c);
        s.on_frame(hello(b"a", b"tok"), &c, None);
        s.on_receive_end(200, false, true);
        s.on_receive_end(700, false, true);
        assert_eq!(
            s.on_tick(1200, &c),
            TickAction::None,
            "runs from the first bytes"
        );
        assert!(matches!(
            s.on_tick(1201, &c),
            TickAction::Close {
                reason: CloseReason::FRAME_TIMEOUT,
                ..
            }
        ));
        let mut restarted = Session::new(0, &c);
        restarted.on_frame(hello(b"a", b"tok"), &c, None);
        restarted.on_receive_end(200, false, true);
        restarted.on_receive_end(700, true, true);
        assert_eq!(
            restarted.on_tick(1201, &c),
            TickAction::None,
            "a completed frame restarts the clock"
        );
    }

    #[test]
    fn idle_connection_is_pinged_then_closed_after_misses() {
        let c = cfg();
        let mut s = Session::new(0, &c);
        s.on_frame(hello(b"a", b"tok"), &c, None);
        assert_eq!(s.on_tick(999, &c), TickAction::None);
        assert_eq!(s.on_tick(1000, &c), TickAction::SendPing { nonce: 1 });
        assert_eq!(
            s.on_tick(1500, &c),
            TickAction::None,
            "one ping per interval"
        );
        assert_eq!(s.on_tick(2000, &c), TickAction::SendPing { nonce: 2 });
        assert!(matches!(
            s.on_tick(3000, &c),
            TickAction::Close {
                reason: CloseReason::HEARTBEAT_TIMEOUT,
                ..
            }
        ));
    }

    #[test]
    fn any_traffic_resets_the_heartbeat() {
        let c = cfg();
        let mut s = Session::new(0, &c);
        s.on_frame(hello(b"a", b"tok"), &c, None);
        assert_eq!(s.on_tick(1000, &c), TickAction::SendPing { nonce: 1 });
        assert_eq!(s.on_tick(2000, &c), TickAction::SendPing { nonce: 2 });
        s.on_bytes_received(2100);
        assert_eq!(s.on_tick(3000, &c), TickAction::None);
        assert_eq!(s.on_tick(3100, &c), TickAction::SendPing { nonce: 3 });
    }

    #[test]
    fn client_frames_map_to_events_and_relay_frames_are_refused() {
        let c = cfg();
        let mut s = Session::new(0, &c);
        s.on_frame(hello(b"a", b"tok"), &c, None);
        assert_eq!(
            s.on_frame(
                Frame::Send {
                    target: b"b",
                    payload: b"p"
                },
                &c,
                None
            ),
            SessionEvent::Send {
                target: b"b",
                reply: b"",
                headers: b"",
                payload: b"p"
            }
        );
        assert_eq!(
            s.on_frame(Frame::Ping { nonce: 5 }, &c, None),
            SessionEvent::Pong { nonce: 5 }
        );
        assert!(matches!(
            s.on_frame(
                Frame::Deliver {
                    sender: b"x",
                    topic: b"",
                    payload: b""
                },
                &c,
                None
            ),
            SessionEvent::Close {
                reason: CloseReason::PROTOCOL_ERROR,
                ..
            }
        ));
    }

    #[test]
    fn acknowledged_delivery_on_a_version_1_connection_is_a_protocol_error() {
        let c = cfg();
        let id = crate::protocol::MsgId { epoch: 1, seq: 1 };
        let ack = crate::protocol::AckFields {
            epoch: 1,
            upto: 1,
            runs: Default::default(),
        };
        let frames = [
            Frame::SendAcked {
                target: b"b",
                id,
                payload: b"p",
            },
            Frame::Ack {
                to: b"b",
                gap: false,
                ack,
            },
            Frame::Receipt {
                from: b"b",
                gap: true,
                ack,
            },
        ];
        for frame in frames {
            let mut s = Session::new(0, &c);
            s.on_frame(hello_v(1), &c, None);
            assert_eq!(s.version(), 1);
            assert!(!s.acks());
            assert!(
                matches!(
                    s.on_frame(frame, &c, None),
                    SessionEvent::Close {
                        reason: CloseReason::PROTOCOL_ERROR,
                        ..
                    }
                ),
                "{frame:?}"
            );
        }
    }

    fn hello_v(version: u16) -> Frame<'static> {
        Frame::Hello {
            version,
            client_id: b"a",
            token: b"tok",
        }
    }

    #[test]
    fn each_version_from_the_oldest_to_the_newest_is_accepted_and_no_other() {
        let c = cfg();
        for version in [0, PROTOCOL_VERSION + 1, u16::MAX] {
            let mut s = Session::new(0, &c);
            assert!(matches!(
                s.on_frame(hello_v(version), &c, None),
                SessionEvent::Close {
                    reason: CloseReason::UNSUPPORTED_VERSION,
                    ..
                }
            ));
        }
        for version in PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION {
            let mut s = Session::new(0, &c);
            assert_eq!(
                s.on_frame(hello_v(version), &c, None),
                SessionEvent::Register {
                    client_id: b"a",
                    entry: None
                }
            );
            assert_eq!(s.version(), version);
        }
    }

    #[test]
    fn a_version_2_connection_sends_acknowledged_messages_and_acks() {
        let c = cfg();
        let mut s = Session::new(0, &c);
        s.on_frame(hello_v(2), &c, None);
        assert!(s.acks());
        let id = MsgId { epoch: 7, seq: 3 };
        let send = Frame::SendAcked {
            target: b"b",
            id,
            payload: b"p",
        };
        assert_eq!(
            s.on_frame(send, &c, None),
            SessionEvent::SendAcked {
                target: b"b",
                id,
                payload: b"p"
            }
        );
        let ack = AckFields {
            epoch: 7,
            upto: 3,
            runs: Default::default(),
        };
        let frame = Frame::Ack {
            to: b"b",
            gap: true,
            ack,
        };
        assert_eq!(
            s.on_frame(frame, &c, None),
            SessionEvent::Ack {
                to: b"b",
                gap: true,
                ack
            }
        );
        // A RECEIPT goes relay to client only, whatever the version.
        let receipt = Frame::Receipt {
            from: b"b",
            gap: false,
            ack,
        };
        assert!(matches!(
            s.on_frame(receipt, &c, None),
            SessionEvent::Close {
                reason: CloseReason::PROTOCOL_ERROR,
                ..
            }
        ));
    }
}
