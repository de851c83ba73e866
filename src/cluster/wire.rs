//! Link wire codec: the bytes exchanged between two cluster nodes.
//!
//! Links reuse the client framing (`u32 LE body_len | u8 kind | u8 flags | body`, see
//! PROTOCOL.md "Cluster links") so one reader shape serves both. Two decoders, one per lane:
//!
//! * [`decode_link`] for the handshake (both lanes) and the control lane. It returns owned
//!   values: these messages are rare (heartbeats, membership, row changes) and are handed to
//!   another thread, so borrowing from the receive buffer would buy nothing.
//! * [`decode_data`] for the data lane after its handshake. It borrows from the buffer and
//!   never allocates, because every forwarded client message goes through it.
//!
//! Both are sans-IO and never panic on any input: every read is bounds-checked and every bad
//! shape is a [`LinkDecodeError`]. Both check the size bound, the kind, its lane and the
//! flags from the 6-byte header, before the body is waited for, so a peer cannot make a node
//! buffer more than `max_frame_bytes` for one unfinished frame.
//!
//! Encoders never split anything: a caller that may produce a large control message (a
//! snapshot, a long interest list) chunks it first so that each frame fits the receiver's
//! `max_frame_bytes` ([`snapshot_chunks`] does this for snapshots).

#![forbid(unsafe_code)]

use crate::protocol::{AckFields, AckRuns, Message, MsgId};
use std::fmt;
use std::hash::{BuildHasher, Hasher};

/// Bytes in every frame header: `body_len: u32 LE`, `kind: u8`, `flags: u8`.
pub const HEADER_LEN: usize = 6;
/// The link protocol version this build speaks (first byte of a LINK_HELLO body).
/// Version 2: topics in INTEREST may be patterns (`a.*`, `a.>`), which a version-1 node would
/// take for literal topics and so miss messages. Version 3: forwarded messages may carry a
/// reply topic and headers (flags `*_REPLY`, `*_HEADERS`), which a version-2 node would drop
/// as malformed. Version 4: FWD_DROPPED, which a version-3 node would take for an unknown kind
/// and close the link. Different versions refuse each other's links.
pub const LINK_VERSION: u8 = 4;

/// Handshake: first message of each side on both lanes.
pub const LINK_HELLO: u8 = 0x80;
/// Handshake: HMAC proof of the shared secret (see [`super::auth`]).
pub const LINK_AUTH: u8 = 0x81;
/// Handshake: the sender refuses the link and closes it.
pub const LINK_REFUSE: u8 = 0x82;
/// Control: liveness, empty body.
pub const HEARTBEAT: u8 = 0x90;
/// Control: the members the sender knows.
pub const MEMBERS: u8 = 0x91;
/// Control: changes to rows the sender owns.
pub const ROWS: u8 = 0x92;
/// Control: one chunk of the sender's full row set.
pub const SNAPSHOT: u8 = 0x93;
/// Control: row count and hash of the sender's rows, to detect drift.
pub const DIGEST: u8 = 0x94;
/// Control: ask the receiver for a SNAPSHOT of its rows.
pub const SNAPSHOT_REQUEST: u8 = 0x95;
/// Control: topic interest of the sender's local subscribers.
pub const INTEREST: u8 = 0x96;
/// Data: a SEND forwarded to the node where the target is registered.
pub const FWD_SEND: u8 = 0xA0;
/// Data: a PUBLISH forwarded to a node with interest in the topic.
pub const FWD_PUBLISH: u8 = 0xA1;
/// Data: messages of a client of the receiving node were dropped at a bound of the sending
/// node (version 4); the receiving node tells that client (ERROR OVERLOADED).
pub const FWD_DROPPED: u8 = 0xA2;

/// SNAPSHOT flag: this chunk is the first of the snapshot.
pub const SNAPSHOT_FIRST: u8 = 0x01;
/// SNAPSHOT flag: this chunk is the last of the snapshot.
pub const SNAPSHOT_LAST: u8 = 0x02;
/// INTEREST flag: the list is the sender's whole interest, replacing what the receiver holds.
pub const INTEREST_REPLACE: u8 = 0x01;
/// FWD_PUBLISH flag: do not deliver to the sending client (it is on another node anyway, but
/// the flag travels so queue-group and echo rules stay those of the original PUBLISH).
pub const PUBLISH_NO_ECHO: u8 = 0x01;
/// FWD_SEND flag: an acknowledged SEND; `epoch: u64` and `seq: u64` follow the target.
pub const SEND_ACKED: u8 = 0x01;
/// FWD_SEND flag: not a message but an ACK of `sender` for `target`, routed to it as a
/// RECEIPT; the body's rest is the acknowledgement (`epoch`, `upto`, `run_count`, runs). A
/// node that predates acknowledged delivery drops such a frame as malformed and keeps the link.
pub const SEND_IS_ACK: u8 = 0x02;
/// FWD_SEND flag, with `SEND_IS_ACK` only: the ACK reports a gap.
pub const SEND_ACK_GAP: u8 = 0x04;
/// FWD_SEND flag (version 3, not with the flags above): a reply topic (`bytes8`, 1 to 255
/// bytes) follows the target.
pub const SEND_REPLY: u8 = 0x08;
/// FWD_SEND flag (as [`SEND_REPLY`]): headers (`u32` length, 1 or more bytes) follow the
/// target and the reply topic.
pub const SEND_HEADERS: u8 = 0x10;
/// FWD_PUBLISH flag (version 3): a reply topic follows the group (as [`SEND_REPLY`]).
pub const PUBLISH_REPLY: u8 = 0x02;
/// FWD_PUBLISH flag (version 3): headers follow the group and the reply topic.
pub const PUBLISH_HEADERS: u8 = 0x04;

/// LINK_REFUSE reason: the peer's mac did not verify.
pub const REFUSE_BAD_SECRET: u16 = 1;
/// LINK_REFUSE reason: the peer speaks another link version.
pub const REFUSE_VERSION: u16 = 2;
/// LINK_REFUSE reason: the peer has our node id but another incarnation.
pub const REFUSE_ID_CLASH: u16 = 3;
/// LINK_REFUSE reason: not an error; "I will dial you" (only one link per pair survives).
pub const REFUSE_REDIRECT: u16 = 4;
/// LINK_REFUSE reason: the peer sent something that does not decode.
pub const REFUSE_MALFORMED: u16 = 5;

/// Longest value of a `bytes8` field (ids, topics, groups, addresses).
pub const SHORT_LEN_MAX: usize = u8::MAX as usize;
/// Longest value of a `bytes16` field (refuse text).
pub const TEXT_LEN_MAX: usize = u16::MAX as usize;

/// A human name for a LINK_REFUSE reason, for logs.
pub fn refuse_reason_name(reason: u16) -> &'static str {
    match reason {
        REFUSE_BAD_SECRET => "bad secret",
        REFUSE_VERSION => "unsupported link version",
        REFUSE_ID_CLASH => "node id clash",
        REFUSE_REDIRECT => "redirect",
        REFUSE_MALFORMED => "malformed",
        _ => "unknown reason",
    }
}

/// Which of the two links between a pair of nodes a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Membership, heartbeats, rows, interest, digests, snapshots (control thread).
    Control,
    /// Forwarded client messages (io_uring workers).
    Data,
}

impl Lane {
    /// Wire value in LINK_HELLO.
    pub fn to_u8(self) -> u8 {
        match self {
            Lane::Control => 0,
            Lane::Data => 1,
        }
    }

    /// Inverse of [`Lane::to_u8`]; `None` for any other byte.
    pub fn from_u8(byte: u8) -> Option<Lane> {
        match byte {
            0 => Some(Lane::Control),
            1 => Some(Lane::Data),
            _ => None,
        }
    }
}

/// LINK_HELLO. Owned: the handshake happens once per link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkHello {
    pub version: u8,
    pub lane: Lane,
    pub node_id: u16,
    /// Random per process start; tells a restarted node from a clash of configured ids.
    pub incarnation: u64,
    /// Data lane: index of the sending worker; control lane: 0.
    pub worker: u16,
    pub nonce: [u8; 16],
    /// Address other nodes dial to reach the sender (at most 255 bytes of UTF-8).
    pub advertise: String,
}

/// LINK_REFUSE: the sender closes the link after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRefuse {
    /// One of the `REFUSE_*` constants (others are possible from newer peers).
    pub reason: u16,
    /// Free text for logs (at most 65 535 bytes).
    pub text: String,
}

/// One entry of MEMBERS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node_id: u16,
    /// Advertised address (at most 255 bytes of UTF-8).
    pub addr: String,
}

/// One entry of ROWS. The sender owns every row it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowChange {
    Upsert { id: Box<[u8]>, epoch: u64 },
    Remove { id: Box<[u8]>, epoch: u64 },
}

/// One entry of INTEREST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterestChange {
    /// `true`: the sender now has local subscribers for (topic, group); `false`: no longer.
    pub present: bool,
    /// 1 to 255 bytes.
    pub topic: Box<[u8]>,
    /// Queue group, 0 to 255 bytes; empty means plain subscribers.
    pub group: Box<[u8]>,
}

/// Control-lane messages (after the handshake).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    Heartbeat,
    /// At most 65 535 members.
    Members(Vec<Member>),
    Rows(Vec<RowChange>),
    /// One chunk of a snapshot; the receiver applies the union of chunks once `last` arrives.
    Snapshot {
        first: bool,
        last: bool,
        rows: Vec<(Box<[u8]>, u64)>,
    },
    /// `rows` = number of own rows, `hash` = xor of [`row_hash`] over them.
    Digest {
        rows: u64,
        hash: u64,
    },
    SnapshotRequest,
    Interest {
        /// The list is the sender's full interest (sent on link-up).
        replace: bool,
        entries: Vec<InterestChange>,
    },
}

/// Everything [`decode_link`] can return: the handshake (both lanes) and the control lane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkMsg {
    Hello(LinkHello),
    Auth([u8; 32]),
    Refuse(LinkRefuse),
    Control(ControlMsg),
}

impl From<ControlMsg> for LinkMsg {
    fn from(msg: ControlMsg) -> LinkMsg {
        LinkMsg::Control(msg)
    }
}

/// A data-lane frame, borrowed from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFrame<'a> {
    /// A SEND of `message` (its topic empty) to the client registered as `target`.
    Send {
        target: &'a [u8],
        message: Message<'a>,
    },
    /// An acknowledged SEND (client protocol version 2).
    SendAcked {
        sender: &'a [u8],
        target: &'a [u8],
        id: MsgId,
        payload: &'a [u8],
    },
    /// The ACK of client `from` for client `to`, delivered to it as a RECEIPT.
    Ack {
        from: &'a [u8],
        to: &'a [u8],
        gap: bool,
        ack: AckFields<'a>,
    },
    /// A PUBLISH of `message`.
    Publish {
        /// Empty: deliver to the receiving node's plain subscribers; else to exactly one local
        /// member of this queue group.
        group: &'a [u8],
        no_echo: bool,
        message: Message<'a>,
    },
    /// `count` messages of the receiving node's client `sender` to `subject` (the target id
    /// of a SEND, the topic of a PUBLISH) were dropped at a bound of the sending node.
    Dropped {
        sender: &'a [u8],
        subject: &'a [u8],
        count: u32,
    },
}

/// Result of one [`decode_data`] attempt on the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodedData<'a> {
    /// A whole frame occupying the first `consumed` bytes.
    Frame {
        frame: DataFrame<'a>,
        consumed: usize,
    },
    /// Not enough bytes yet; `frame_bytes` is the whole frame's size when the header is known
    /// (so a reader can reserve exactly), else `HEADER_LEN`.
    NeedMore { frame_bytes: usize },
}

/// Why a link frame could not be decoded. Any of these ends the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkDecodeError {
    /// The header announced a frame (header included) larger than the receiver accepts.
    FrameTooLarge { frame_bytes: u64, max: usize },
    /// The kind byte is not a link kind.
    UnknownKind(u8),
    /// A link kind that belongs to the other lane (a data frame on the control lane or the
    /// reverse).
    WrongLane(u8),
    /// The header or body does not have the layout of its kind; names the offending part.
    Malformed(&'static str),
}

impl fmt::Display for LinkDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinkDecodeError::FrameTooLarge { frame_bytes, max } => write!(
                f,
                "link frame of {frame_bytes} bytes exceeds the limit of {max} bytes"
            ),
            LinkDecodeError::UnknownKind(kind) => write!(f, "unknown link frame kind 0x{kind:02x}"),
            LinkDecodeError::WrongLane(kind) => {
                write!(
                    f,
                    "link frame kind 0x{kind:02x} does not belong on this lane"
                )
            }
            LinkDecodeError::Malformed(what) => write!(f, "malformed link frame: {what}"),
        }
    }
}

impl std::error::Error for LinkDecodeError {}

impl From<crate::protocol::FrameTooLarge> for LinkDecodeError {
    fn from(e: crate::protocol::FrameTooLarge) -> LinkDecodeError {
        LinkDecodeError::FrameTooLarge {
            frame_bytes: e.frame_bytes,
            max: e.max,
        }
    }
}

/// Stable hash of one location row, the unit of a DIGEST: foldhash with a fixed seed over the
/// id bytes then the epoch. Fixed seed (no per-process randomness) so every node of the same
/// build computes the same value for the same row; xor of it over a node's rows is
/// order-independent and updates in O(1) per change.
pub fn row_hash(id: &[u8], epoch: u64) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x5eed).build_hasher();
    h.write(id);
    h.write_u64(epoch);
    h.finish()
}

/// Splits a snapshot into SNAPSHOT messages of at most `rows_per_chunk` rows (0 is taken as 1),
/// FIRST on the first chunk, LAST on the last. An empty snapshot is one chunk with both flags
/// and no rows, so the receiver still learns that the sender owns nothing.
pub fn snapshot_chunks(
    rows: &[(Box<[u8]>, u64)],
    rows_per_chunk: usize,
) -> impl Iterator<Item = ControlMsg> + '_ {
    let per = rows_per_chunk.max(1);
    let chunks = rows.len().div_ceil(per).max(1);
    (0..chunks).map(move |i| {
        let start = i.saturating_mul(per);
        let end = start.saturating_add(per).min(rows.len());
        ControlMsg::Snapshot {
            first: i == 0,
            last: i + 1 == chunks,
            rows: rows.get(start..end).unwrap_or(&[]).to_vec(),
        }
    })
}

/// (topic or pattern, group) entries per INTEREST message: at the longest topic and group
/// (255 bytes each, 513 bytes an entry) a full message is 2.1 MB, half the control frame cap
/// (`link_io::CONTROL_FRAME_BYTES_MAX`, 4 MiB), however many subscriptions a node holds.
pub const INTEREST_ENTRIES_PER_MESSAGE: usize = 4096;

/// Splits interest changes into INTEREST messages of at most `entries_per_chunk` entries (0 is
/// taken as 1). With `replace`, the first message carries REPLACE (the receiver forgets the
/// sender's interest, then applies it) and the others add to it; an empty REPLACE is one
/// message with no entries, so the receiver still learns that the sender has no interest.
pub fn interest_chunks(
    entries: Vec<InterestChange>,
    replace: bool,
    entries_per_chunk: usize,
) -> impl Iterator<Item = ControlMsg> {
    let per = entries_per_chunk.max(1);
    let mut entries = entries.into_iter().peekable();
    let mut first = true;
    std::iter::from_fn(move || {
        if !first && entries.peek().is_none() {
            return None;
        }
        let chunk: Vec<InterestChange> = entries.by_ref().take(per).collect();
        if chunk.is_empty() && !replace {
            return None;
        }
        let msg = ControlMsg::Interest {
            replace: replace && first,
            entries: chunk,
        };
        first = false;
        Some(msg)
    })
}

// ---------------------------------------------------------------------------------------------
// Header
// ---------------------------------------------------------------------------------------------

/// Kinds [`decode_link`] accepts (handshake and control).
fn is_link_kind(kind: u8) -> bool {
    matches!(kind, LINK_HELLO..=LINK_REFUSE | HEARTBEAT..=INTEREST)
}

/// Kinds [`decode_data`] accepts.
fn is_data_kind(kind: u8) -> bool {
    matches!(kind, FWD_SEND | FWD_PUBLISH | FWD_DROPPED)
}

/// Flag bits each kind defines; any other bit set is malformed.
fn allowed_flags(kind: u8) -> u8 {
    match kind {
        SNAPSHOT => SNAPSHOT_FIRST | SNAPSHOT_LAST,
        INTEREST => INTEREST_REPLACE,
        FWD_PUBLISH => PUBLISH_NO_ECHO | PUBLISH_REPLY | PUBLISH_HEADERS,
        FWD_SEND => SEND_ACKED | SEND_IS_ACK | SEND_ACK_GAP | SEND_REPLY | SEND_HEADERS,
        _ => 0,
    }
}

enum Framed<'a> {
    NeedMore(usize),
    Whole {
        kind: u8,
        flags: u8,
        body: &'a [u8],
        frame_bytes: usize,
    },
}

/// Everything decided from the header: size bound, kind, lane, flags; then whether the body is
/// all there.
fn frame(buf: &[u8], max: usize, lane: Lane) -> Result<Framed<'_>, LinkDecodeError> {
    let [l0, l1, l2, l3, kind, flags, ..] = *buf else {
        return Ok(Framed::NeedMore(HEADER_LEN));
    };
    let frame_bytes = u64::from(u32::from_le_bytes([l0, l1, l2, l3])) + HEADER_LEN as u64;
    if frame_bytes > max as u64 {
        return Err(LinkDecodeError::FrameTooLarge { frame_bytes, max });
    }
    let (ours, theirs) = match lane {
        Lane::Control => (is_link_kind(kind), is_data_kind(kind)),
        Lane::Data => (is_data_kind(kind), is_link_kind(kind)),
    };
    if !ours {
        return Err(if theirs {
            LinkDecodeError::WrongLane(kind)
        } else {
            LinkDecodeError::UnknownKind(kind)
        });
    }
    if flags & !allowed_flags(kind) != 0 {
        return Err(LinkDecodeError::Malformed(
            "flag bits the kind does not define",
        ));
    }
    let frame_bytes = frame_bytes as usize; // <= max, so it fits.
    match buf.get(HEADER_LEN..frame_bytes) {
        Some(body) => Ok(Framed::Whole {
            kind,
            flags,
            body,
            frame_bytes,
        }),
        None => Ok(Framed::NeedMore(frame_bytes)),
    }
}

/// Cursor over a body; every read is bounds-checked and names what it reads.
struct Body<'a> {
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], LinkDecodeError> {
        if self.rest.len() < n {
            return Err(LinkDecodeError::Malformed(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], LinkDecodeError> {
        self.take(N, what)?
            .try_into()
            .map_err(|_| LinkDecodeError::Malformed(what))
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, LinkDecodeError> {
        Ok(u8::from_le_bytes(self.array(what)?))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, LinkDecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, LinkDecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, LinkDecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn bool(&mut self, what: &'static str) -> Result<bool, LinkDecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(LinkDecodeError::Malformed(what)),
        }
    }
    /// `bytes8`; `required` rejects an empty value.
    fn bytes8(&mut self, what: &'static str, required: bool) -> Result<&'a [u8], LinkDecodeError> {
        let len = usize::from(self.u8(what)?);
        if required && len == 0 {
            return Err(LinkDecodeError::Malformed(what));
        }
        self.take(len, what)
    }
    fn bytes16(&mut self, what: &'static str) -> Result<&'a [u8], LinkDecodeError> {
        let len = usize::from(self.u16(what)?);
        self.take(len, what)
    }
    fn string8(&mut self, what: &'static str) -> Result<String, LinkDecodeError> {
        let bytes = self.bytes8(what, false)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| LinkDecodeError::Malformed(what))
    }
    /// Capacity for `count` entries of at least `min_entry` bytes each: never more than the
    /// body can hold, so a lying count cannot make the decoder allocate beyond the frame size.
    fn capacity(&self, count: usize, min_entry: usize) -> usize {
        count.min(self.rest.len() / min_entry.max(1))
    }
    /// Version 3's fields after the addressing ones: the reply topic (`bytes8`, 1 to 255
    /// bytes) when `reply`, then headers (`u32` length, 1 or more bytes) when `headers`.
    fn extensions(
        &mut self,
        reply: bool,
        headers: bool,
    ) -> Result<(&'a [u8], &'a [u8]), LinkDecodeError> {
        let reply = if reply {
            self.bytes8("reply", true)?
        } else {
            b""
        };
        let headers = if headers {
            let len = self.u32("headers")? as usize;
            if len == 0 {
                return Err(LinkDecodeError::Malformed("empty headers"));
            }
            self.take(len, "headers")?
        } else {
            b""
        };
        Ok((reply, headers))
    }
    fn remainder(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
    fn finish(self) -> Result<(), LinkDecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(LinkDecodeError::Malformed("trailing bytes after the body"))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake and control lane
// ---------------------------------------------------------------------------------------------

/// Decodes the first handshake or control frame of `buf`. `Ok(None)`: need more bytes;
/// `Ok(Some((msg, consumed)))`: a message from the first `consumed` bytes. Data kinds are
/// [`LinkDecodeError::WrongLane`]. Never panics; `max_frame_bytes` is checked from the header.
///
/// A LINK_HELLO whose version is not [`LINK_VERSION`] is still returned (so the caller can
/// answer REFUSE_VERSION) as long as it starts with the version-1 layout; anything after that
/// layout is ignored for such a version, since a later version may only append HELLO fields.
pub fn decode_link(
    buf: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(LinkMsg, usize)>, LinkDecodeError> {
    match frame(buf, max_frame_bytes, Lane::Control)? {
        Framed::NeedMore(_) => Ok(None),
        Framed::Whole {
            kind,
            flags,
            body,
            frame_bytes,
        } => Ok(Some((decode_link_body(kind, flags, body)?, frame_bytes))),
    }
}

fn decode_link_body(kind: u8, flags: u8, body: &[u8]) -> Result<LinkMsg, LinkDecodeError> {
    let mut b = Body { rest: body };
    let msg = match kind {
        LINK_HELLO => {
            let version = b.u8("HELLO version")?;
            let lane = Lane::from_u8(b.u8("HELLO lane")?)
                .ok_or(LinkDecodeError::Malformed("HELLO lane"))?;
            let hello = LinkHello {
                version,
                lane,
                node_id: b.u16("HELLO node_id")?,
                incarnation: b.u64("HELLO incarnation")?,
                worker: b.u16("HELLO worker")?,
                nonce: b.array("HELLO nonce")?,
                advertise: b.string8("HELLO advertise")?,
            };
            if version != LINK_VERSION {
                // Another version may append fields: skip the trailing-bytes check.
                return Ok(LinkMsg::Hello(hello));
            }
            LinkMsg::Hello(hello)
        }
        LINK_AUTH => LinkMsg::Auth(b.array("AUTH mac")?),
        LINK_REFUSE => {
            let reason = b.u16("REFUSE reason")?;
            // Lossy: the text is only for logs, and the reason must get through regardless.
            let text = String::from_utf8_lossy(b.bytes16("REFUSE text")?).into_owned();
            LinkMsg::Refuse(LinkRefuse { reason, text })
        }
        HEARTBEAT => LinkMsg::Control(ControlMsg::Heartbeat),
        SNAPSHOT_REQUEST => LinkMsg::Control(ControlMsg::SnapshotRequest),
        MEMBERS => {
            let count = usize::from(b.u16("MEMBERS count")?);
            let mut members = Vec::with_capacity(b.capacity(count, 3));
            for _ in 0..count {
                members.push(Member {
                    node_id: b.u16("MEMBERS node_id")?,
                    addr: b.string8("MEMBERS addr")?,
                });
            }
            LinkMsg::Control(ControlMsg::Members(members))
        }
        ROWS => {
            let count = b.u32("ROWS count")? as usize;
            let mut rows = Vec::with_capacity(b.capacity(count, 1 + 2 + 8));
            for _ in 0..count {
                let upsert = b.bool("ROWS op")?;
                let id = b.bytes8("ROWS id", true)?.into();
                let epoch = b.u64("ROWS epoch")?;
                rows.push(if upsert {
                    RowChange::Upsert { id, epoch }
                } else {
                    RowChange::Remove { id, epoch }
                });
            }
            LinkMsg::Control(ControlMsg::Rows(rows))
        }
        SNAPSHOT => {
            let count = b.u32("SNAPSHOT count")? as usize;
            let mut rows = Vec::with_capacity(b.capacity(count, 2 + 8));
            for _ in 0..count {
                let id: Box<[u8]> = b.bytes8("SNAPSHOT id", true)?.into();
                rows.push((id, b.u64("SNAPSHOT epoch")?));
            }
            LinkMsg::Control(ControlMsg::Snapshot {
                first: flags & SNAPSHOT_FIRST != 0,
                last: flags & SNAPSHOT_LAST != 0,
                rows,
            })
        }
        DIGEST => LinkMsg::Control(ControlMsg::Digest {
            rows: b.u64("DIGEST rows")?,
            hash: b.u64("DIGEST hash")?,
        }),
        INTEREST => {
            let count = b.u32("INTEREST count")? as usize;
            let mut entries = Vec::with_capacity(b.capacity(count, 1 + 2 + 1));
            for _ in 0..count {
                entries.push(InterestChange {
                    present: b.bool("INTEREST present")?,
                    topic: b.bytes8("INTEREST topic", true)?.into(),
                    group: b.bytes8("INTEREST group", false)?.into(),
                });
            }
            LinkMsg::Control(ControlMsg::Interest {
                replace: flags & INTEREST_REPLACE != 0,
                entries,
            })
        }
        // `frame` only lets link kinds through.
        other => return Err(LinkDecodeError::UnknownKind(other)),
    };
    b.finish()?;
    Ok(msg)
}

impl LinkMsg {
    /// Wire kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            LinkMsg::Hello(_) => LINK_HELLO,
            LinkMsg::Auth(_) => LINK_AUTH,
            LinkMsg::Refuse(_) => LINK_REFUSE,
            LinkMsg::Control(c) => match c {
                ControlMsg::Heartbeat => HEARTBEAT,
                ControlMsg::Members(_) => MEMBERS,
                ControlMsg::Rows(_) => ROWS,
                ControlMsg::Snapshot { .. } => SNAPSHOT,
                ControlMsg::Digest { .. } => DIGEST,
                ControlMsg::SnapshotRequest => SNAPSHOT_REQUEST,
                ControlMsg::Interest { .. } => INTEREST,
            },
        }
    }

    fn flags(&self) -> u8 {
        match self {
            LinkMsg::Control(ControlMsg::Snapshot { first, last, .. }) => {
                (if *first { SNAPSHOT_FIRST } else { 0 }) | (if *last { SNAPSHOT_LAST } else { 0 })
            }
            LinkMsg::Control(ControlMsg::Interest { replace: true, .. }) => INTEREST_REPLACE,
            _ => 0,
        }
    }

    /// Number of bytes [`encode_link`] appends for this message (header included). Callers
    /// compare it with the peer's `max_frame_bytes` to decide how to chunk.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                LinkMsg::Hello(h) => 1 + 1 + 2 + 8 + 2 + 16 + str8_len(&h.advertise),
                LinkMsg::Auth(_) => 32,
                LinkMsg::Refuse(r) => 2 + 2 + clamp_str(&r.text, TEXT_LEN_MAX).len(),
                LinkMsg::Control(c) => match c {
                    ControlMsg::Heartbeat | ControlMsg::SnapshotRequest => 0,
                    ControlMsg::Members(m) => {
                        2 + m
                            .iter()
                            .take(usize::from(u16::MAX))
                            .map(|m| 2 + str8_len(&m.addr))
                            .sum::<usize>()
                    }
                    ControlMsg::Rows(rows) => {
                        4 + rows
                            .iter()
                            .take(u32::MAX as usize)
                            .map(|r| match r {
                                RowChange::Upsert { id, .. } | RowChange::Remove { id, .. } => {
                                    1 + short_len(id) + 8
                                }
                            })
                            .sum::<usize>()
                    }
                    ControlMsg::Snapshot { rows, .. } => {
                        4 + rows
                            .iter()
                            .take(u32::MAX as usize)
                            .map(|(id, _)| short_len(id) + 8)
                            .sum::<usize>()
                    }
                    ControlMsg::Digest { .. } => 16,
                    ControlMsg::Interest { entries, .. } => {
                        4 + entries
                            .iter()
                            .take(u32::MAX as usize)
                            .map(|e| 1 + short_len(&e.topic) + short_len(&e.group))
                            .sum::<usize>()
                    }
                },
            }
    }
}

/// Appends `msg` as one frame. Splits nothing: the caller keeps each message under the peer's
/// `max_frame_bytes` (see [`snapshot_chunks`], [`LinkMsg::encoded_len`]).
///
/// Field bounds are the caller's to respect (debug builds assert them): `bytes8` values (row
/// ids 1..=255 bytes, topics 1..=255, groups, addresses) at most 255 bytes, at most 65 535
/// members, refuse text at most 65 535 bytes. In release builds an over-long value is cut (a
/// string at a char boundary) and an over-long list is cut, so the frame always stays
/// well-formed.
pub fn encode_link(msg: &LinkMsg, out: &mut Vec<u8>) {
    let len = msg.encoded_len();
    let start = out.len();
    out.reserve(len);
    put_header(out, len - HEADER_LEN, msg.kind(), msg.flags());
    match msg {
        LinkMsg::Hello(h) => {
            out.push(h.version);
            out.push(h.lane.to_u8());
            out.extend_from_slice(&h.node_id.to_le_bytes());
            out.extend_from_slice(&h.incarnation.to_le_bytes());
            out.extend_from_slice(&h.worker.to_le_bytes());
            out.extend_from_slice(&h.nonce);
            put_str8(out, &h.advertise);
        }
        LinkMsg::Auth(mac) => out.extend_from_slice(mac),
        LinkMsg::Refuse(r) => {
            debug_assert!(r.text.len() <= TEXT_LEN_MAX);
            let text = clamp_str(&r.text, TEXT_LEN_MAX);
            out.extend_from_slice(&r.reason.to_le_bytes());
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        LinkMsg::Control(c) => encode_control(c, out),
    }
    debug_assert_eq!(out.len() - start, len);
}

fn encode_control(msg: &ControlMsg, out: &mut Vec<u8>) {
    match msg {
        ControlMsg::Heartbeat | ControlMsg::SnapshotRequest => {}
        ControlMsg::Members(members) => {
            debug_assert!(members.len() <= usize::from(u16::MAX));
            let n = members.len().min(usize::from(u16::MAX));
            out.extend_from_slice(&(n as u16).to_le_bytes());
            for m in members.iter().take(n) {
                out.extend_from_slice(&m.node_id.to_le_bytes());
                put_str8(out, &m.addr);
            }
        }
        ControlMsg::Rows(rows) => {
            let n = put_count32(out, rows.len());
            for row in rows.iter().take(n) {
                let (op, id, epoch) = match row {
                    RowChange::Upsert { id, epoch } => (1u8, id, epoch),
                    RowChange::Remove { id, epoch } => (0u8, id, epoch),
                };
                debug_assert!(!id.is_empty(), "row ids are 1..=255 bytes");
                out.push(op);
                put_bytes8(out, id);
                out.extend_from_slice(&epoch.to_le_bytes());
            }
        }
        ControlMsg::Snapshot { rows, .. } => {
            let n = put_count32(out, rows.len());
            for (id, epoch) in rows.iter().take(n) {
                debug_assert!(!id.is_empty(), "row ids are 1..=255 bytes");
                put_bytes8(out, id);
                out.extend_from_slice(&epoch.to_le_bytes());
            }
        }
        ControlMsg::Digest { rows, hash } => {
            out.extend_from_slice(&rows.to_le_bytes());
            out.extend_from_slice(&hash.to_le_bytes());
        }
        ControlMsg::Interest { entries, .. } => {
            let n = put_count32(out, entries.len());
            for e in entries.iter().take(n) {
                debug_assert!(!e.topic.is_empty(), "topics are 1..=255 bytes");
                out.push(u8::from(e.present));
                put_bytes8(out, &e.topic);
                put_bytes8(out, &e.group);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data lane (hot path: no allocation, borrowed results)
// ---------------------------------------------------------------------------------------------

/// Decodes the first data frame of `buf`, borrowing from it. Handshake and control kinds are
/// [`LinkDecodeError::WrongLane`] (a data link's handshake is read with [`decode_link`] before
/// switching to this). Never panics, never allocates; `max_frame_bytes` is checked from the
/// header.
pub fn decode_data(buf: &[u8], max_frame_bytes: usize) -> Result<DecodedData<'_>, LinkDecodeError> {
    let (kind, flags, body, consumed) = match frame(buf, max_frame_bytes, Lane::Data)? {
        Framed::NeedMore(frame_bytes) => return Ok(DecodedData::NeedMore { frame_bytes }),
        Framed::Whole {
            kind,
            flags,
            body,
            frame_bytes,
        } => (kind, flags, body, frame_bytes),
    };
    let mut b = Body { rest: body };
    let frame = if kind == FWD_SEND && flags & (SEND_ACKED | SEND_IS_ACK | SEND_ACK_GAP) != 0 {
        decode_data_acked(flags, b)?
    } else if kind == FWD_DROPPED {
        decode_data_dropped(b)?
    } else if kind == FWD_SEND {
        let sender = b.bytes8("FWD_SEND sender", true)?;
        let target = b.bytes8("FWD_SEND target", true)?;
        let (reply, headers) = b.extensions(flags & SEND_REPLY != 0, flags & SEND_HEADERS != 0)?;
        DataFrame::Send {
            target,
            message: Message {
                sender,
                topic: b"",
                reply,
                headers,
                payload: b.remainder(),
            },
        }
    } else {
        let sender = b.bytes8("FWD_PUBLISH sender", true)?;
        let topic = b.bytes8("FWD_PUBLISH topic", true)?;
        let group = b.bytes8("FWD_PUBLISH group", false)?;
        let (reply, headers) =
            b.extensions(flags & PUBLISH_REPLY != 0, flags & PUBLISH_HEADERS != 0)?;
        DataFrame::Publish {
            group,
            no_echo: flags & PUBLISH_NO_ECHO != 0,
            message: Message {
                sender,
                topic,
                reply,
                headers,
                payload: b.remainder(),
            },
        }
    };
    Ok(DecodedData::Frame { frame, consumed })
}

/// FWD_DROPPED's body (out of line: it is rare).
#[inline(never)]
fn decode_data_dropped(mut b: Body<'_>) -> Result<DataFrame<'_>, LinkDecodeError> {
    let sender = b.bytes8("FWD_DROPPED sender", true)?;
    let subject = b.bytes8("FWD_DROPPED subject", false)?;
    let count = b.u32("FWD_DROPPED count")?;
    if count == 0 {
        return Err(LinkDecodeError::Malformed("FWD_DROPPED count 0"));
    }
    b.finish()?;
    Ok(DataFrame::Dropped {
        sender,
        subject,
        count,
    })
}

/// FWD_SEND with flags: an acknowledged SEND or an ACK (out of line: the plain SEND stays
/// the short path).
#[inline(never)]
fn decode_data_acked(flags: u8, mut b: Body<'_>) -> Result<DataFrame<'_>, LinkDecodeError> {
    if flags & (SEND_REPLY | SEND_HEADERS) != 0 {
        return Err(LinkDecodeError::Malformed("FWD_SEND flag combination"));
    }
    let sender = b.bytes8("FWD_SEND sender", true)?;
    let target = b.bytes8("FWD_SEND target", true)?;
    let epoch = b.u64("FWD_SEND epoch")?;
    match flags {
        SEND_ACKED => {
            let seq = b.u64("FWD_SEND seq")?;
            if seq == 0 {
                return Err(LinkDecodeError::Malformed("FWD_SEND seq 0"));
            }
            Ok(DataFrame::SendAcked {
                sender,
                target,
                id: MsgId { epoch, seq },
                payload: b.remainder(),
            })
        }
        f if f & !SEND_ACK_GAP == SEND_IS_ACK => {
            let upto = b.u64("FWD_SEND ack upto")?;
            let count = usize::from(b.u8("FWD_SEND ack run_count")?);
            let runs = b.take(count.saturating_mul(16), "FWD_SEND ack runs")?;
            let runs =
                AckRuns::from_wire(runs).ok_or(LinkDecodeError::Malformed("FWD_SEND ack runs"))?;
            b.finish()?;
            Ok(DataFrame::Ack {
                from: sender,
                to: target,
                gap: flags & SEND_ACK_GAP != 0,
                ack: AckFields { epoch, upto, runs },
            })
        }
        _ => Err(LinkDecodeError::Malformed("FWD_SEND flag combination")),
    }
}

/// Whole size on the wire of an acknowledged FWD_SEND frame.
#[inline]
pub fn data_send_acked_len(sender: &[u8], target: &[u8], payload: &[u8]) -> usize {
    HEADER_LEN + short_len(sender) + short_len(target) + 16 + payload.len()
}

/// Appends an acknowledged FWD_SEND frame (bounds as [`encode_data_send`]).
pub fn encode_data_send_acked(
    out: &mut Vec<u8>,
    sender: &[u8],
    target: &[u8],
    id: MsgId,
    payload: &[u8],
) {
    debug_assert!(id.seq != 0, "sequence numbers start at 1");
    let body_len = short_len(sender) + short_len(target) + 16 + payload.len();
    out.reserve(HEADER_LEN + body_len);
    put_header(out, body_len, FWD_SEND, SEND_ACKED);
    put_bytes8(out, sender);
    put_bytes8(out, target);
    out.extend_from_slice(&id.epoch.to_le_bytes());
    out.extend_from_slice(&id.seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Whole size on the wire of a FWD_SEND frame carrying an ACK.
pub fn data_ack_len(from: &[u8], to: &[u8], ack: &AckFields<'_>) -> usize {
    HEADER_LEN + short_len(from) + short_len(to) + 8 + 8 + 1 + ack.runs.as_wire().len()
}

/// Appends a FWD_SEND frame carrying the ACK of `from` for `to` (bounds as
/// [`encode_data_send`]; `ack` was decoded, so its runs are valid).
pub fn encode_data_ack(out: &mut Vec<u8>, from: &[u8], to: &[u8], gap: bool, ack: &AckFields<'_>) {
    let len = data_ack_len(from, to, ack);
    let flags = SEND_IS_ACK | if gap { SEND_ACK_GAP } else { 0 };
    put_header(out, len - HEADER_LEN, FWD_SEND, flags);
    put_bytes8(out, from);
    put_bytes8(out, to);
    out.extend_from_slice(&ack.epoch.to_le_bytes());
    out.extend_from_slice(&ack.upto.to_le_bytes());
    out.push(ack.runs.len() as u8);
    out.extend_from_slice(ack.runs.as_wire());
}

/// Whole size on the wire of a FWD_DROPPED frame.
pub fn data_dropped_len(sender: &[u8], subject: &[u8]) -> usize {
    HEADER_LEN + short_len(sender) + short_len(subject) + 4
}

/// Appends a FWD_DROPPED frame: `count` (at least 1) messages of `sender` (1..=255 bytes) to
/// `subject` (at most 255) were dropped here. The caller guarantees the bounds (both were
/// decoded); debug builds assert them.
pub fn encode_data_dropped(out: &mut Vec<u8>, sender: &[u8], subject: &[u8], count: u32) {
    debug_assert!(!sender.is_empty() && sender.len() <= SHORT_LEN_MAX);
    debug_assert!(subject.len() <= SHORT_LEN_MAX && count > 0);
    let len = data_dropped_len(sender, subject);
    put_header(out, len - HEADER_LEN, FWD_DROPPED, 0);
    put_bytes8(out, sender);
    put_bytes8(out, subject);
    out.extend_from_slice(&count.to_le_bytes());
}

/// Whole size on the wire of a FWD_SEND frame of `message` to `target`.
#[inline]
pub fn data_send_len(target: &[u8], message: &Message<'_>) -> usize {
    HEADER_LEN
        + short_len(message.sender)
        + short_len(target)
        + message.extension_len()
        + message.payload.len()
}

/// Appends a FWD_SEND frame of `message` to `target`. The caller guarantees the sender and
/// `target` are 1..=255 bytes and the reply topic at most 255 (validated when the client
/// frame was decoded); debug builds assert it.
#[inline]
pub fn encode_data_send(out: &mut Vec<u8>, target: &[u8], message: &Message<'_>) {
    debug_assert!(!message.sender.is_empty() && message.sender.len() <= SHORT_LEN_MAX);
    debug_assert!(!target.is_empty() && target.len() <= SHORT_LEN_MAX);
    let len = data_send_len(target, message);
    out.reserve(len);
    let flags = extension_flags(message, SEND_REPLY, SEND_HEADERS);
    put_header(out, len - HEADER_LEN, FWD_SEND, flags);
    put_bytes8(out, message.sender);
    put_bytes8(out, target);
    message.put_extensions(out);
    out.extend_from_slice(message.payload);
}

/// Whole size on the wire of a FWD_PUBLISH frame of `message` for `group`.
#[inline]
pub fn data_publish_len(message: &Message<'_>, group: &[u8]) -> usize {
    HEADER_LEN
        + short_len(message.sender)
        + short_len(message.topic)
        + short_len(group)
        + message.extension_len()
        + message.payload.len()
}

/// Appends a FWD_PUBLISH frame of `message` for `group` (empty: plain subscribers). The
/// caller guarantees the sender and topic are 1..=255 bytes and `group` and the reply topic
/// at most 255; debug builds assert it.
#[inline]
pub fn encode_data_publish(out: &mut Vec<u8>, message: &Message<'_>, group: &[u8], no_echo: bool) {
    debug_assert!(!message.sender.is_empty() && message.sender.len() <= SHORT_LEN_MAX);
    debug_assert!(!message.topic.is_empty() && message.topic.len() <= SHORT_LEN_MAX);
    debug_assert!(group.len() <= SHORT_LEN_MAX);
    let len = data_publish_len(message, group);
    out.reserve(len);
    let no_echo = if no_echo { PUBLISH_NO_ECHO } else { 0 };
    let flags = extension_flags(message, PUBLISH_REPLY, PUBLISH_HEADERS) | no_echo;
    put_header(out, len - HEADER_LEN, FWD_PUBLISH, flags);
    put_bytes8(out, message.sender);
    put_bytes8(out, message.topic);
    put_bytes8(out, group);
    message.put_extensions(out);
    out.extend_from_slice(message.payload);
}

/// The flags (`reply_flag`, `headers_flag` of the frame's kind) for what `message` carries.
#[inline]
fn extension_flags(message: &Message<'_>, reply_flag: u8, headers_flag: u8) -> u8 {
    let reply = if message.reply.is_empty() {
        0
    } else {
        reply_flag
    };
    let headers = if message.headers.is_empty() {
        0
    } else {
        headers_flag
    };
    reply | headers
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------------------------

#[inline]
fn put_header(out: &mut Vec<u8>, body_len: usize, kind: u8, flags: u8) {
    debug_assert!(
        body_len <= u32::MAX as usize,
        "callers chunk large messages"
    );
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.push(kind);
    out.push(flags);
}

/// The part of a `bytes8` value that goes on the wire (all of it when callers keep the bound).
#[inline]
fn clamp8(v: &[u8]) -> &[u8] {
    v.get(..SHORT_LEN_MAX).unwrap_or(v)
}

/// Wire size of a `bytes8` field.
#[inline]
fn short_len(v: &[u8]) -> usize {
    1 + clamp8(v).len()
}

#[inline]
fn put_bytes8(out: &mut Vec<u8>, v: &[u8]) {
    debug_assert!(
        v.len() <= SHORT_LEN_MAX,
        "bytes8 values are at most 255 bytes"
    );
    let v = clamp8(v);
    out.push(v.len() as u8);
    out.extend_from_slice(v);
}

/// Longest prefix of `s` of at most `max` bytes that ends on a char boundary, so a cut string
/// still decodes as UTF-8.
fn clamp_str(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// Wire size of a `bytes8` string field.
fn str8_len(s: &str) -> usize {
    1 + clamp_str(s, SHORT_LEN_MAX).len()
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= SHORT_LEN_MAX, "addresses are at most 255 bytes");
    let s = clamp_str(s, SHORT_LEN_MAX);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a u32 count of at most `len` entries and returns how many entries follow.
fn put_count32(out: &mut Vec<u8>, len: usize) -> usize {
    debug_assert!(len <= u32::MAX as usize);
    let n = len.min(u32::MAX as usize);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn id(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    fn roundtrip(msg: LinkMsg) {
        let mut out = vec![0xEE]; // encoders append: existing bytes stay.
        encode_link(&msg, &mut out);
        assert_eq!(out.len() - 1, msg.encoded_len());
        assert_eq!(decode_link(&out[1..], MAX), Ok(Some((msg, out.len() - 1))));
    }

    fn hello(lane: Lane) -> LinkHello {
        LinkHello {
            version: LINK_VERSION,
            lane,
            node_id: 7,
            incarnation: 0x0123_4567_89ab_cdef,
            worker: 3,
            nonce: [9; 16],
            advertise: "127.0.0.7:7401".into(),
        }
    }

    fn raw(kind: u8, flags: u8, body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_le_bytes().to_vec();
        v.push(kind);
        v.push(flags);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn handshake_messages_roundtrip() {
        roundtrip(LinkMsg::Hello(hello(Lane::Control)));
        roundtrip(LinkMsg::Hello(LinkHello {
            advertise: String::new(),
            ..hello(Lane::Data)
        }));
        roundtrip(LinkMsg::Auth([0xAB; 32]));
        roundtrip(LinkMsg::Refuse(LinkRefuse {
            reason: REFUSE_BAD_SECRET,
            text: "bad secret".into(),
        }));
        roundtrip(LinkMsg::Refuse(LinkRefuse {
            reason: 999,
            text: String::new(),
        }));
    }

    #[test]
    fn control_messages_roundtrip() {
        roundtrip(ControlMsg::Heartbeat.into());
        roundtrip(ControlMsg::SnapshotRequest.into());
        roundtrip(ControlMsg::Members(vec![]).into());
        roundtrip(
            ControlMsg::Members(vec![
                Member {
                    node_id: 1,
                    addr: "10.0.0.1:7401".into(),
                },
                Member {
                    node_id: 65535,
                    addr: "[::1]:7401".into(),
                },
            ])
            .into(),
        );
        roundtrip(
            ControlMsg::Rows(vec![
                RowChange::Upsert {
                    id: id("c1"),
                    epoch: 1_732_460_000_000_123,
                },
                RowChange::Remove {
                    id: id(&"x".repeat(255)),
                    epoch: u64::MAX,
                },
            ])
            .into(),
        );
        for (first, last) in [(true, true), (true, false), (false, false), (false, true)] {
            roundtrip(
                ControlMsg::Snapshot {
                    first,
                    last,
                    rows: vec![(id("a"), 1), (id("b"), 2)],
                }
                .into(),
            );
        }
        roundtrip(
            ControlMsg::Snapshot {
                first: true,
                last: true,
                rows: vec![],
            }
            .into(),
        );
        roundtrip(
            ControlMsg::Digest {
                rows: 3,
                hash: 0xdead_beef,
            }
            .into(),
        );
        for replace in [false, true] {
            roundtrip(
                ControlMsg::Interest {
                    replace,
                    entries: vec![
                        InterestChange {
                            present: true,
                            topic: id("news"),
                            group: id(""),
                        },
                        InterestChange {
                            present: false,
                            topic: id("jobs"),
                            group: id("workers"),
                        },
                    ],
                }
                .into(),
            );
        }
    }

    #[test]
    fn data_frames_roundtrip_and_lengths_match() {
        let mut out = Vec::new();
        let hi = Message::plain(b"alice", b"", b"hi");
        encode_data_send(&mut out, b"bob", &hi);
        assert_eq!(out.len(), data_send_len(b"bob", &hi));
        let send_len = out.len();
        let news = Message::plain(b"alice", b"news", b"");
        encode_data_publish(&mut out, &news, b"g", true);
        assert_eq!(out.len() - send_len, data_publish_len(&news, b"g"));
        assert_eq!(
            decode_data(&out, MAX),
            Ok(DecodedData::Frame {
                frame: DataFrame::Send {
                    target: b"bob",
                    message: hi
                },
                consumed: send_len
            })
        );
        assert_eq!(
            decode_data(&out[send_len..], MAX),
            Ok(DecodedData::Frame {
                frame: DataFrame::Publish {
                    group: b"g",
                    no_echo: true,
                    message: news
                },
                consumed: out.len() - send_len
            })
        );
    }

    #[test]
    fn a_drop_report_roundtrips_and_a_bad_one_is_malformed_not_fatal() {
        let mut out = Vec::new();
        encode_data_dropped(&mut out, b"alice", b"bob", 7);
        assert_eq!(out.len(), data_dropped_len(b"alice", b"bob"));
        let whole = out.len();
        encode_data_dropped(&mut out, b"alice", b"", 1);
        let expect = |sender, subject, count| DataFrame::Dropped {
            sender,
            subject,
            count,
        };
        assert_eq!(
            decode_data(&out, MAX),
            Ok(DecodedData::Frame {
                frame: expect(b"alice", b"bob", 7),
                consumed: whole
            })
        );
        assert_eq!(
            decode_data(&out[whole..], MAX),
            Ok(DecodedData::Frame {
                frame: expect(b"alice", b"", 1),
                consumed: out.len() - whole
            })
        );
        // Cut by its header's length (the stream stays in step): malformed, not an error that
        // ends the link. An empty sender, a zero count, trailing bytes and a flag are too.
        for (body, flags) in [
            (&b"\x05alice\x03bob\x07\x00\x00"[..], 0),
            (&b"\x00\x03bob\x07\x00\x00\x00"[..], 0),
            (&b"\x05alice\x03bob\x00\x00\x00\x00"[..], 0),
            (&b"\x05alice\x03bob\x07\x00\x00\x00!"[..], 0),
            (&b"\x05alice\x03bob\x07\x00\x00\x00"[..], 1),
        ] {
            let mut bad = Vec::new();
            put_header(&mut bad, body.len(), FWD_DROPPED, flags);
            bad.extend_from_slice(body);
            assert!(
                matches!(decode_data(&bad, MAX), Err(LinkDecodeError::Malformed(_))),
                "{body:?} flags {flags}"
            );
        }
        assert_eq!(
            decode_link(&out, MAX),
            Err(LinkDecodeError::WrongLane(FWD_DROPPED)),
            "a data frame"
        );
    }

    #[test]
    fn reply_topics_and_headers_cross_a_link_in_both_data_kinds() {
        let request = Message {
            sender: b"s",
            topic: b"t",
            reply: b"_INBOX.x.1",
            headers: b"NATS/1.0\r\nk: v\r\n\r\n",
            payload: b"payload",
        };
        for message in [
            request,
            Message {
                headers: b"",
                ..request
            },
            Message {
                reply: b"",
                ..request
            },
        ] {
            let mut out = Vec::new();
            encode_data_publish(&mut out, &message, b"", false);
            assert_eq!(out.len(), data_publish_len(&message, b""));
            let Ok(DecodedData::Frame {
                frame: DataFrame::Publish { message: got, .. },
                consumed,
            }) = decode_data(&out, MAX)
            else {
                panic!("FWD_PUBLISH does not decode");
            };
            assert_eq!((got, consumed), (message, out.len()));
            let direct = Message {
                topic: b"",
                ..message
            };
            out.clear();
            encode_data_send(&mut out, b"bob", &direct);
            assert_eq!(out.len(), data_send_len(b"bob", &direct));
            assert_eq!(
                decode_data(&out, MAX),
                Ok(DecodedData::Frame {
                    frame: DataFrame::Send {
                        target: b"bob",
                        message: direct
                    },
                    consumed: out.len()
                })
            );
        }
        // Empty extension fields announced by their flags are malformed, and the extension
        // flags do not combine with an acknowledged SEND.
        let mut out = Vec::new();
        put_header(&mut out, 6, FWD_PUBLISH, PUBLISH_REPLY);
        out.extend_from_slice(b"\x01s\x01t\x00");
        out.push(0);
        assert!(decode_data(&out, MAX).is_err());
        out.clear();
        put_header(&mut out, 4 + 16, FWD_SEND, SEND_ACKED | SEND_REPLY);
        out.extend_from_slice(b"\x01s\x01t");
        out.extend_from_slice(&[1; 16]);
        assert_eq!(
            decode_data(&out, MAX),
            Err(LinkDecodeError::Malformed("FWD_SEND flag combination"))
        );
    }

    #[test]
    fn worked_example_bytes() {
        // The FWD_SEND example in PROTOCOL.md "Cluster links".
        let mut out = Vec::new();
        encode_data_send(&mut out, b"bob", &Message::plain(b"alice", b"", b"hi"));
        assert_eq!(out, b"\x0c\x00\x00\x00\xa0\x00\x05alice\x03bobhi".to_vec());
    }

    #[test]
    fn lanes_are_enforced() {
        let mut data = Vec::new();
        encode_data_send(&mut data, b"b", &Message::plain(b"a", b"", b""));
        assert_eq!(
            decode_link(&data, MAX),
            Err(LinkDecodeError::WrongLane(FWD_SEND))
        );
        let mut ctl = Vec::new();
        encode_link(&ControlMsg::Heartbeat.into(), &mut ctl);
        assert_eq!(
            decode_data(&ctl, MAX),
            Err(LinkDecodeError::WrongLane(HEARTBEAT))
        );
        let mut hs = Vec::new();
        encode_link(&LinkMsg::Auth([0; 32]), &mut hs);
        assert_eq!(
            decode_data(&hs, MAX),
            Err(LinkDecodeError::WrongLane(LINK_AUTH))
        );
        // Wrong lane is decided from the header alone.
        assert_eq!(
            decode_link(&data[..HEADER_LEN], MAX),
            Err(LinkDecodeError::WrongLane(FWD_SEND))
        );
    }

    #[test]
    fn unknown_kinds_and_flags_are_errors() {
        for kind in [0x00, 0x10, 0x7f, 0x83, 0x97, 0xA3, 0xff] {
            assert_eq!(
                decode_link(&raw(kind, 0, b""), MAX),
                Err(LinkDecodeError::UnknownKind(kind))
            );
            assert_eq!(
                decode_data(&raw(kind, 0, b""), MAX),
                Err(LinkDecodeError::UnknownKind(kind))
            );
        }
        assert!(matches!(
            decode_link(&raw(HEARTBEAT, 1, b""), MAX),
            Err(LinkDecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_link(&raw(SNAPSHOT, 4, b""), MAX),
            Err(LinkDecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_data(&raw(FWD_SEND, 1, b""), MAX),
            Err(LinkDecodeError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_header_is_rejected_before_the_body_arrives() {
        // Only the 6 header bytes: the body has not arrived.
        let mut ctl = raw(ROWS, 0, b"");
        ctl[..4].copy_from_slice(&2000u32.to_le_bytes());
        let mut data = ctl.clone();
        data[4] = FWD_SEND;
        let err = LinkDecodeError::FrameTooLarge {
            frame_bytes: 2006,
            max: 1024,
        };
        assert_eq!(decode_link(&ctl, 1024), Err(err));
        assert_eq!(decode_data(&data, 1024), Err(err));
        // Exactly at the limit is fine, and just waits for the body.
        assert_eq!(decode_link(&ctl, 2006), Ok(None));
        assert_eq!(
            decode_data(&data, 2006),
            Ok(DecodedData::NeedMore { frame_bytes: 2006 })
        );
        ctl[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_link(&ctl, usize::MAX), Ok(None));
    }

    #[test]
    fn short_input_needs_more() {
        assert_eq!(decode_link(&[], MAX), Ok(None));
        assert_eq!(
            decode_data(&[1, 0], MAX),
            Ok(DecodedData::NeedMore {
                frame_bytes: HEADER_LEN
            })
        );
    }

    #[test]
    fn malformed_bodies_are_typed_errors() {
        let m = |what| Err(LinkDecodeError::Malformed(what));
        let md = |what| Err(LinkDecodeError::Malformed(what));
        assert_eq!(
            decode_link(&raw(HEARTBEAT, 0, b"x"), MAX),
            m("trailing bytes after the body")
        );
        assert_eq!(
            decode_link(&raw(LINK_AUTH, 0, &[0; 31]), MAX),
            m("AUTH mac")
        );
        // ROWS claiming more entries than it has (and a huge count must not allocate).
        assert_eq!(
            decode_link(&raw(ROWS, 0, &u32::MAX.to_le_bytes()), MAX),
            m("ROWS op")
        );
        let mut body = 1u32.to_le_bytes().to_vec();
        body.extend_from_slice(&[2, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_link(&raw(ROWS, 0, &body), MAX), m("ROWS op"));
        body[4] = 1;
        body[5] = 0; // empty id
        assert_eq!(decode_link(&raw(ROWS, 0, &body), MAX), m("ROWS id"));
        let mut members = 1u16.to_le_bytes().to_vec();
        members.extend_from_slice(&[1, 0, 2, 0xff, 0xfe]);
        assert_eq!(
            decode_link(&raw(MEMBERS, 0, &members), MAX),
            m("MEMBERS addr")
        );
        assert_eq!(
            decode_data(&raw(FWD_SEND, 0, b"\x00\x01b"), MAX),
            md("FWD_SEND sender")
        );
        assert_eq!(
            decode_data(&raw(FWD_PUBLISH, 0, b"\x01a\x00\x00"), MAX),
            md("FWD_PUBLISH topic")
        );
        assert_eq!(
            decode_data(&raw(FWD_PUBLISH, 0, b"\x01a\x01t\x05g"), MAX),
            md("FWD_PUBLISH group")
        );
        let mut h = Vec::new();
        encode_link(&LinkMsg::Hello(hello(Lane::Control)), &mut h);
        h[HEADER_LEN + 1] = 2;
        assert_eq!(decode_link(&h, MAX), m("HELLO lane"));
    }

    #[test]
    fn hello_of_another_version_still_decodes_for_refusal() {
        let v2 = LinkHello {
            version: LINK_VERSION + 1,
            ..hello(Lane::Control)
        };
        let mut out = Vec::new();
        encode_link(&LinkMsg::Hello(v2.clone()), &mut out);
        out.extend_from_slice(b"future");
        let body_len = (out.len() - HEADER_LEN) as u32;
        out[..4].copy_from_slice(&body_len.to_le_bytes());
        assert_eq!(
            decode_link(&out, MAX),
            Ok(Some((LinkMsg::Hello(v2), out.len())))
        );
        // This build's version must be exact.
        out[HEADER_LEN] = LINK_VERSION;
        assert!(decode_link(&out, MAX).is_err());
    }

    #[test]
    fn refuse_text_with_bad_utf8_keeps_the_reason() {
        let body = [4, 0, 2, 0, 0xff, b'x'];
        match decode_link(&raw(LINK_REFUSE, 0, &body), MAX) {
            Ok(Some((LinkMsg::Refuse(r), _))) => {
                assert_eq!(r.reason, REFUSE_REDIRECT);
                assert!(r.text.ends_with('x'));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn interest_chunks_replace_on_the_first_only_and_the_longest_fit_the_cap() {
        let entry = |i: usize| InterestChange {
            present: true,
            topic: format!("{i:0>255}").into_bytes().into(),
            group: vec![b'g'; 255].into(),
        };
        let n = 2 * INTEREST_ENTRIES_PER_MESSAGE + 1;
        let entries: Vec<InterestChange> = (0..n).map(entry).collect();
        let chunks: Vec<ControlMsg> =
            interest_chunks(entries.clone(), true, INTEREST_ENTRIES_PER_MESSAGE).collect();
        assert_eq!(chunks.len(), 3);
        let mut all = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let ControlMsg::Interest { replace, entries } = c else {
                panic!("not an interest message")
            };
            assert_eq!(*replace, i == 0, "REPLACE on the first chunk only");
            let msg = LinkMsg::Control(c.clone());
            assert!(
                msg.encoded_len() <= crate::cluster::link_io::CONTROL_FRAME_BYTES_MAX,
                "a full chunk of the longest entries fits the control frame cap"
            );
            all.extend(entries.iter().cloned());
        }
        assert_eq!(all, entries);
        let changes: Vec<ControlMsg> =
            interest_chunks(entries, false, INTEREST_ENTRIES_PER_MESSAGE).collect();
        assert!(changes
            .iter()
            .all(|c| matches!(c, ControlMsg::Interest { replace: false, .. })));
        assert_eq!(
            interest_chunks(Vec::new(), true, 10).collect::<Vec<_>>(),
            vec![ControlMsg::Interest {
                replace: true,
                entries: vec![]
            }],
            "an empty full interest still replaces"
        );
        assert_eq!(interest_chunks(Vec::new(), false, 10).count(), 0);
    }

    #[test]
    fn snapshot_chunks_flags_and_rows() {
        let rows: Vec<(Box<[u8]>, u64)> = (0..5u64).map(|i| (id(&i.to_string()), i)).collect();
        let chunks: Vec<_> = snapshot_chunks(&rows, 2).collect();
        assert_eq!(chunks.len(), 3);
        let mut all = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let ControlMsg::Snapshot { first, last, rows } = c else {
                panic!("not a snapshot")
            };
            assert_eq!(*first, i == 0);
            assert_eq!(*last, i == 2);
            all.extend(rows.iter().cloned());
        }
        assert_eq!(all, rows);
        assert_eq!(
            snapshot_chunks(&[], 100).collect::<Vec<_>>(),
            vec![ControlMsg::Snapshot {
                first: true,
                last: true,
                rows: vec![]
            }]
        );
        assert_eq!(snapshot_chunks(&rows, 0).count(), 5);
        assert_eq!(snapshot_chunks(&rows, 5).count(), 1);
    }

    #[test]
    fn row_hash_is_stable() {
        assert_eq!(row_hash(b"c1", 1), row_hash(b"c1", 1));
        assert_ne!(row_hash(b"c1", 1), row_hash(b"c1", 2));
        assert_ne!(row_hash(b"c1", 1), row_hash(b"c2", 1));
        // The epoch is hashed after the id, not mixed into it by concatenation alone.
        assert_ne!(row_hash(b"c", 1), row_hash(b"c\x01", 0));
    }

    #[test]
    fn errors_display() {
        let e = LinkDecodeError::FrameTooLarge {
            frame_bytes: 10,
            max: 8,
        };
        assert_eq!(
            e.to_string(),
            "link frame of 10 bytes exceeds the limit of 8 bytes"
        );
        assert_eq!(
            LinkDecodeError::UnknownKind(0x7f).to_string(),
            "unknown link frame kind 0x7f"
        );
        assert!(LinkDecodeError::WrongLane(0xa0)
            .to_string()
            .contains("0xa0"));
        assert_eq!(
            LinkDecodeError::Malformed("ROWS op").to_string(),
            "malformed link frame: ROWS op"
        );
        let _: &dyn std::error::Error = &e;
    }
}
