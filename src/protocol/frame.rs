//! Frame values (borrowed from the bytes they were decoded from) and typed errors.

use super::Extended;
use std::fmt;

/// One-byte frame type on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    Hello = 0x01,
    Welcome = 0x02,
    Challenge = 0x03,
    Proof = 0x04,
    Send = 0x10,
    Publish = 0x11,
    Subscribe = 0x12,
    Unsubscribe = 0x13,
    Watch = 0x14,
    Unwatch = 0x15,
    Ack = 0x16,
    Deliver = 0x20,
    Presence = 0x21,
    Receipt = 0x22,
    Ping = 0x30,
    Pong = 0x31,
    Error = 0x40,
    Close = 0x41,
}

impl FrameKind {
    pub const ALL: [FrameKind; 18] = [
        FrameKind::Hello,
        FrameKind::Welcome,
        FrameKind::Send,
        FrameKind::Publish,
        FrameKind::Subscribe,
        FrameKind::Unsubscribe,
        FrameKind::Watch,
        FrameKind::Unwatch,
        FrameKind::Deliver,
        FrameKind::Presence,
        FrameKind::Ping,
        FrameKind::Pong,
        FrameKind::Error,
        FrameKind::Close,
        // Version 2, after the others so that per-kind counters keep their indexes.
        FrameKind::Ack,
        FrameKind::Receipt,
        // Version 4.
        FrameKind::Challenge,
        FrameKind::Proof,
    ];

    /// The kind of type byte `byte`: one table load per frame (a chain of comparisons cost
    /// the message path about 6 instructions a frame once there were 16 kinds).
    #[inline]
    pub fn from_u8(byte: u8) -> Option<FrameKind> {
        KIND_BY_BYTE[byte as usize]
    }

    /// Flags this kind accepts; any other bit set is a decode error.
    #[inline]
    pub(crate) const fn allowed_flags(self) -> u8 {
        match self {
            FrameKind::Publish => super::FLAG_NO_ECHO | super::FLAG_REPLY | super::FLAG_HEADERS,
            FrameKind::Send | FrameKind::Deliver => {
                super::FLAG_ACKED | super::FLAG_REPLY | super::FLAG_HEADERS
            }
            FrameKind::Error => super::FLAG_ACKED,
            FrameKind::Ack | FrameKind::Receipt => super::FLAG_GAP,
            _ => 0,
        }
    }
}

/// [`FrameKind::allowed_flags`] by kind byte (the table's index is the kind's wire value).
pub(crate) const ALLOWED_FLAGS_BY_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < FrameKind::ALL.len() {
        table[FrameKind::ALL[i] as usize] = FrameKind::ALL[i].allowed_flags();
        i += 1;
    }
    table
};

/// [`FrameKind::from_u8`] as a table, built from [`FrameKind::ALL`] at compile time.
const KIND_BY_BYTE: [Option<FrameKind>; 256] = {
    let mut table = [None; 256];
    let mut i = 0;
    while i < FrameKind::ALL.len() {
        table[FrameKind::ALL[i] as usize] = Some(FrameKind::ALL[i]);
        i += 1;
    }
    table
};

/// Error codes carried by ERROR frames (the connection stays open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// SEND named a client id that is not registered anywhere the relay knows.
    pub const UNKNOWN_ID: ErrorCode = ErrorCode(1);
    /// The relay dropped a message because an internal bound was full (counted).
    pub const OVERLOADED: ErrorCode = ErrorCode(2);
    /// Reserved: a well-formed request the relay refuses without closing the connection.
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(3);
    /// The id lives on another node that this node has no working link to (dropped).
    pub const UNREACHABLE: ErrorCode = ErrorCode(4);
    /// A SUBSCRIBE or WATCH was refused at a configured limit; the text names the setting.
    /// A second refusal on the same connection closes it with `LIMIT_EXCEEDED`.
    pub const LIMIT_EXCEEDED: ErrorCode = ErrorCode(5);
    /// A SEND or PUBLISH payload was longer than the largest payload the relay delivers
    /// (`max_frame_bytes` minus [`crate::protocol::DELIVER_OVERHEAD_MAX`]); dropped.
    pub const PAYLOAD_TOO_LARGE: ErrorCode = ErrorCode(6);
    /// An acknowledged SEND reached a target whose connection speaks protocol version 1,
    /// which cannot acknowledge: dropped (it would never be confirmed).
    pub const ACK_UNSUPPORTED: ErrorCode = ErrorCode(7);
    /// A SUBSCRIBE named a pattern that is not well formed (an empty token, or `>` before
    /// the last token; PROTOCOL.md section 8.2); nothing was subscribed.
    pub const INVALID_SUBJECT: ErrorCode = ErrorCode(8);
    /// A PUBLISH with a reply topic (version 3) reached no subscriber anywhere in the
    /// cluster: no answer can come. `subject` is the topic; the message went nowhere.
    pub const NO_RESPONDERS: ErrorCode = ErrorCode(9);
    /// A SEND, PUBLISH, SUBSCRIBE or WATCH outside the permissions of the credentials entry
    /// the client came in with; `subject` names the target, topic or pattern. Nothing was
    /// sent, subscribed or watched; the connection stays open.
    pub const PERMISSION_DENIED: ErrorCode = ErrorCode(10);
}

/// Reasons carried by CLOSE frames; the sender closes the connection after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReason(pub u16);

impl CloseReason {
    pub const NORMAL: CloseReason = CloseReason(0);
    /// Another connection registered the same client id; the newest wins.
    pub const REPLACED: CloseReason = CloseReason(1);
    /// Outbound bytes queued for this connection passed `pending_bytes_max`.
    pub const SLOW_CONSUMER: CloseReason = CloseReason(2);
    /// The client missed `heartbeat_misses_max` pings.
    pub const HEARTBEAT_TIMEOUT: CloseReason = CloseReason(3);
    /// No valid HELLO within `handshake_timeout_ms`.
    pub const HANDSHAKE_TIMEOUT: CloseReason = CloseReason(4);
    /// HELLO was malformed, or another frame came before HELLO, or HELLO came twice.
    pub const BAD_HANDSHAKE: CloseReason = CloseReason(5);
    /// The HELLO token did not match the configured token.
    pub const AUTH_FAILED: CloseReason = CloseReason(6);
    /// HELLO carried a protocol version this relay does not speak.
    pub const UNSUPPORTED_VERSION: CloseReason = CloseReason(7);
    /// A frame could not be decoded (unknown type, bad field, bad flags).
    pub const PROTOCOL_ERROR: CloseReason = CloseReason(8);
    /// A frame header announced more than `max_frame_bytes`.
    pub const FRAME_TOO_LARGE: CloseReason = CloseReason(9);
    /// The relay is shutting down.
    pub const SHUTDOWN: CloseReason = CloseReason(10);
    /// The worker that accepted the connection is at `connections_per_worker_max`.
    pub const CONNECTION_LIMIT: CloseReason = CloseReason(11);
    /// The connection was refused at a limit a second time (see ErrorCode `LIMIT_EXCEEDED`).
    pub const LIMIT_EXCEEDED: CloseReason = CloseReason(12);
    /// The node was not ready (still joining its cluster) and the connection sent more
    /// frames after HELLO than the relay holds until WELCOME.
    pub const NOT_READY: CloseReason = CloseReason(13);
    /// A frame whose first bytes arrived was not complete within `frame_complete_timeout_ms`.
    pub const FRAME_TIMEOUT: CloseReason = CloseReason(14);

    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "normal",
            1 => "replaced",
            2 => "slow consumer",
            3 => "heartbeat timeout",
            4 => "handshake timeout",
            5 => "bad handshake",
            6 => "auth failed",
            7 => "unsupported version",
            8 => "protocol error",
            9 => "frame too large",
            10 => "shutdown",
            11 => "connection limit",
            12 => "limit exceeded",
            13 => "not ready",
            14 => "frame timeout",
            _ => "unknown reason",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The identity of an acknowledged message (protocol version 2): the sending session's random
/// `epoch` and the message's number towards its target, counting from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsgId {
    pub epoch: u64,
    pub seq: u64,
}

/// What an ACK or RECEIPT says (protocol version 2): of the messages numbered in `epoch`,
/// every one up to `upto` arrived, and so did each run in `runs`. (The GAP flag is a field of
/// the frame, beside this, which keeps every frame value at 56 bytes.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckFields<'a> {
    pub epoch: u64,
    pub upto: u64,
    pub runs: AckRuns<'a>,
}

/// Inclusive runs of sequence numbers, 16 bytes each on the wire (`first: u64`,
/// `last: u64`, little-endian), at most [`super::ACK_RUNS_MAX`]; borrowed, like every byte
/// field of a decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AckRuns<'a> {
    bytes: &'a [u8],
}

impl<'a> AckRuns<'a> {
    /// Runs already laid out as on the wire; `None` unless whole runs with `first <= last`.
    pub fn from_wire(bytes: &'a [u8]) -> Option<AckRuns<'a>> {
        let runs = AckRuns { bytes };
        let whole = bytes.len() % 16 == 0 && runs.len() <= super::ACK_RUNS_MAX;
        (whole && runs.iter().all(|(first, last)| first <= last)).then_some(runs)
    }

    /// Lays `runs` out as on the wire into `out` (cleared first), for [`Self::from_wire`].
    pub fn write_wire(runs: &[(u64, u64)], out: &mut Vec<u8>) {
        out.clear();
        for &(first, last) in runs {
            out.extend_from_slice(&first.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / 16
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn as_wire(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        self.bytes.chunks_exact(16).map(|run| {
            let (first, last) = run.split_at(8);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            (word(first), word(last))
        })
    }
}

/// A decoded frame. Byte fields borrow from the buffer the frame was decoded from, so decoding
/// allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Client -> relay, first frame of every connection.
    Hello {
        version: u16,
        client_id: &'a [u8],
        token: &'a [u8],
    },
    /// Relay -> client, answer to an accepted HELLO.
    Welcome {
        version: u16,
        heartbeat_interval_ms: u32,
        max_frame_bytes: u32,
    },
    /// Relay -> client (version 4): HELLO's token is a NAME alone, taken as a public-key
    /// entry's; sign this nonce.
    Challenge {
        nonce: &'a [u8; 32],
    },
    /// Client -> relay (version 4): the Ed25519 signature of
    /// `"ringrelay-hello-v4\0" || nonce || client_id` by the entry's key.
    Proof {
        signature: &'a [u8; 64],
    },
    /// Client -> relay: deliver `payload` to the client registered as `target`.
    Send {
        target: &'a [u8],
        payload: &'a [u8],
    },
    /// Client -> relay: deliver `payload` to every subscriber of `topic` (one per queue group).
    Publish {
        topic: &'a [u8],
        payload: &'a [u8],
        no_echo: bool,
    },
    /// Client -> relay (version 2): SEND with the ACKED flag, an acknowledged message.
    SendAcked {
        target: &'a [u8],
        id: MsgId,
        payload: &'a [u8],
    },
    /// Client -> relay (version 2): acknowledgement of messages of the client `to`; with
    /// `gap` (flag GAP), one is missing below a run: send it again now.
    Ack {
        to: &'a [u8],
        gap: bool,
        ack: AckFields<'a>,
    },
    /// Client -> relay: subscribe to `topic`, in queue group `group` when it is not empty.
    Subscribe {
        topic: &'a [u8],
        group: &'a [u8],
    },
    Unsubscribe {
        topic: &'a [u8],
        group: &'a [u8],
    },
    /// Client -> relay: report online/offline transitions of `client_id`.
    Watch {
        client_id: &'a [u8],
    },
    Unwatch {
        client_id: &'a [u8],
    },
    /// Relay -> client: a message. `sender` is stamped by the relay; `topic` is empty for SEND.
    Deliver {
        sender: &'a [u8],
        topic: &'a [u8],
        payload: &'a [u8],
    },
    /// Version 3: a SEND, PUBLISH or DELIVER with a reply topic or headers (flags REPLY,
    /// HEADERS), read through [`Extended`] (kept as its validated body so that a frame value
    /// stays small).
    Extended(Extended<'a>),
    /// Relay -> client (version 2): DELIVER with the ACKED flag; the receiver acknowledges it.
    /// Acknowledged messages are sent by id, so the wire's `topic` field is always empty (and
    /// not kept here: it would make every frame value 16 bytes larger).
    DeliverAcked {
        sender: &'a [u8],
        id: MsgId,
        payload: &'a [u8],
    },
    /// Relay -> client (version 2): an ACK from the client `from` for this client's messages.
    Receipt {
        from: &'a [u8],
        gap: bool,
        ack: AckFields<'a>,
    },
    /// Relay -> client: a watched id came online or went offline.
    Presence {
        client_id: &'a [u8],
        online: bool,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Relay -> client: a request failed; the connection stays open.
    Error {
        code: ErrorCode,
        subject: &'a [u8],
        text: &'a [u8],
    },
    /// Relay -> client (version 2): ERROR with the ACKED flag, about the acknowledged message
    /// `id`.
    ErrorAcked {
        code: ErrorCode,
        subject: &'a [u8],
        id: MsgId,
        text: &'a [u8],
    },
    /// Either way: the sender closes the connection for `reason`.
    Close {
        reason: CloseReason,
        text: &'a [u8],
    },
}

impl Frame<'_> {
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello { .. } => FrameKind::Hello,
            Frame::Welcome { .. } => FrameKind::Welcome,
            Frame::Challenge { .. } => FrameKind::Challenge,
            Frame::Proof { .. } => FrameKind::Proof,
            Frame::Send { .. } | Frame::SendAcked { .. } => FrameKind::Send,
            Frame::Extended(extended) => extended.kind(),
            Frame::Ack { .. } => FrameKind::Ack,
            Frame::DeliverAcked { .. } => FrameKind::Deliver,
            Frame::Receipt { .. } => FrameKind::Receipt,
            Frame::ErrorAcked { .. } => FrameKind::Error,
            Frame::Publish { .. } => FrameKind::Publish,
            Frame::Subscribe { .. } => FrameKind::Subscribe,
            Frame::Unsubscribe { .. } => FrameKind::Unsubscribe,
            Frame::Watch { .. } => FrameKind::Watch,
            Frame::Unwatch { .. } => FrameKind::Unwatch,
            Frame::Deliver { .. } => FrameKind::Deliver,
            Frame::Presence { .. } => FrameKind::Presence,
            Frame::Ping { .. } => FrameKind::Ping,
            Frame::Pong { .. } => FrameKind::Pong,
            Frame::Error { .. } => FrameKind::Error,
            Frame::Close { .. } => FrameKind::Close,
        }
    }
}

/// Why bytes could not be decoded. Every variant closes the offending connection only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The header announced a frame of `frame_bytes` (header included) above `max_frame_bytes`.
    FrameTooLarge {
        frame_bytes: u64,
        max_frame_bytes: usize,
    },
    /// The type byte is not a known [`FrameKind`].
    UnknownKind(u8),
    /// A flag bit is set that this kind does not define.
    BadFlags { kind: FrameKind, flags: u8 },
    /// The body ended inside field `field`.
    Truncated {
        kind: FrameKind,
        field: &'static str,
    },
    /// The body has bytes after its last field.
    TrailingBytes { kind: FrameKind, extra: usize },
    /// A field is present but its value is invalid (empty id, bad presence state, ...).
    InvalidField {
        kind: FrameKind,
        field: &'static str,
    },
}

impl DecodeError {
    /// The CLOSE reason the relay sends for this error.
    pub fn close_reason(&self) -> CloseReason {
        match self {
            DecodeError::FrameTooLarge { .. } => CloseReason::FRAME_TOO_LARGE,
            _ => CloseReason::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes,
            } => {
                write!(
                    f,
                    "frame of {frame_bytes} bytes exceeds max_frame_bytes {max_frame_bytes}"
                )
            }
            DecodeError::UnknownKind(k) => write!(f, "unknown frame type 0x{k:02x}"),
            DecodeError::BadFlags { kind, flags } => {
                write!(f, "undefined flags 0x{flags:02x} on {kind:?}")
            }
            DecodeError::Truncated { kind, field } => {
                write!(f, "{kind:?} frame ends inside field '{field}'")
            }
            DecodeError::TrailingBytes { kind, extra } => {
                write!(f, "{kind:?} frame has {extra} trailing bytes")
            }
            DecodeError::InvalidField { kind, field } => {
                write!(f, "{kind:?} frame has an invalid '{field}'")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a frame could not be encoded (a field longer than its length prefix allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    FieldEmpty {
        field: &'static str,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong { field, len, max } => {
                write!(f, "field '{field}' is {len} bytes, more than {max}")
            }
            EncodeError::FieldEmpty { field } => write!(f, "field '{field}' must not be empty"),
        }
    }
}

impl std::error::Error for EncodeError {}
