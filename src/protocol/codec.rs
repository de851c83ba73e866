//! Byte-level encode/decode. Little-endian, length-prefixed:
//!
//! ```text
//! u32 body_len | u8 kind | u8 flags | body[body_len]
//! ```
//!
//! The size bound is checked from the header alone, before any body byte is buffered.

use super::extended::{Extended, ExtendedFields};
use super::frame::{
    AckFields, AckRuns, CloseReason, DecodeError, EncodeError, ErrorCode, Frame, FrameKind, MsgId,
};
use super::small_deliver;
use super::{
    Message, ACK_RUNS_MAX, CLIENT_ID_LEN_MAX, FLAG_ACKED, FLAG_GAP, FLAG_HEADERS, FLAG_NO_ECHO,
    FLAG_REPLY, HEADER_LEN, PROTOCOL_VERSION, TOKEN_LEN_MAX, TOPIC_LEN_MAX,
};

/// The flags of version 3's extensions.
const EXTENSION_FLAGS: u8 = FLAG_REPLY | FLAG_HEADERS;

/// Result of one decode attempt on the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame occupying the first `consumed` bytes.
    Frame { frame: Frame<'a>, consumed: usize },
    /// Not enough bytes yet; `frame_bytes` is the whole frame's size when the header is known
    /// (so a reader can reserve exactly), else `HEADER_LEN`.
    NeedMore { frame_bytes: usize },
}

/// The message lane of the decoder: `(target, payload)` when `frame` (one whole frame, as a
/// [`crate::protocol::StreamDecoder`] yields it) is a plain SEND (no flags) that [`decode`]
/// would accept; `None` for anything else, which then goes through `decode` (and any error
/// is named there). The frame's size is not checked here: the `StreamDecoder` that cut it
/// out bounded it by `max_frame_bytes` already. Inlined into the receive loop, so the most common frame is parsed
/// without building a [`Frame`].
#[inline(always)]
pub fn plain_send(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_, target, payload) = plain_message(frame, FrameKind::Send, 0)?;
    Some((target, payload))
}

/// The topic, payload and NO_ECHO flag of `frame` if it is exactly one plain PUBLISH (no
/// flag but NO_ECHO, a topic, nothing past its stated length), as `decode` would accept;
/// `None` for anything else, which then goes through `decode`. The fan-out's counterpart of
/// [`plain_send`], bounded the same way by the `StreamDecoder` that cut the frame out.
#[inline(always)]
pub fn plain_publish(frame: &[u8]) -> Option<(&[u8], &[u8], bool)> {
    let (flags, topic, payload) = plain_message(frame, FrameKind::Publish, FLAG_NO_ECHO)?;
    Some((topic, payload, flags != 0))
}

/// The message lanes' one parse: `(flags, subject, payload)` when `frame` is exactly one
/// frame of `kind` with no flag outside `flags_allowed`, a non-empty subject (the target or
/// topic, a length byte then its bytes) and nothing past its stated length.
#[inline(always)]
fn plain_message(frame: &[u8], kind: FrameKind, flags_allowed: u8) -> Option<(u8, &[u8], &[u8])> {
    let body = frame.get(HEADER_LEN..)?;
    let flags = frame[5];
    if frame[4] != kind as u8 || flags & !flags_allowed != 0 {
        return None;
    }
    let body_len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let (&subject_len, rest) = body.split_first()?;
    let subject_len = subject_len as usize;
    if body_len != body.len() || subject_len == 0 || rest.len() < subject_len {
        return None;
    }
    let (subject, payload) = rest.split_at(subject_len);
    Some((flags, subject, payload))
}

/// Decodes the first frame of `buf`. Never panics; checks `max_frame_bytes` from the header.
pub fn decode(buf: &[u8], max_frame_bytes: usize) -> Result<Decoded<'_>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(Decoded::NeedMore {
            frame_bytes: HEADER_LEN,
        });
    }
    let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as u64;
    let frame_bytes = body_len + HEADER_LEN as u64;
    if frame_bytes > max_frame_bytes as u64 {
        return Err(DecodeError::FrameTooLarge {
            frame_bytes,
            max_frame_bytes,
        });
    }
    let kind = FrameKind::from_u8(buf[4]).ok_or(DecodeError::UnknownKind(buf[4]))?;
    let flags = buf[5];
    if flags & !super::frame::ALLOWED_FLAGS_BY_BYTE[kind as usize] != 0 {
        return Err(DecodeError::BadFlags { kind, flags });
    }
    // ACKED (bit 0 of SEND and DELIVER; NO_ECHO for PUBLISH) with REPLY or HEADERS is refused
    // from the header too.
    if flags > FLAG_ACKED
        && flags & FLAG_ACKED != 0
        && flags & EXTENSION_FLAGS != 0
        && kind != FrameKind::Publish
    {
        return Err(DecodeError::BadFlags { kind, flags });
    }
    let frame_bytes = frame_bytes as usize; // <= max_frame_bytes, so it fits.
    if buf.len() < frame_bytes {
        return Ok(Decoded::NeedMore { frame_bytes });
    }
    let body = &buf[HEADER_LEN..frame_bytes];
    let frame = decode_body(kind, flags, body)?;
    Ok(Decoded::Frame {
        frame,
        consumed: frame_bytes,
    })
}

/// Cursor over a frame body; every read is bounds-checked and names the field it reads.
struct Body<'a> {
    kind: FrameKind,
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < n {
            return Err(DecodeError::Truncated {
                kind: self.kind,
                field,
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// u8 length prefix then that many bytes; `required` rejects an empty value.
    fn short_bytes(
        &mut self,
        field: &'static str,
        required: bool,
    ) -> Result<&'a [u8], DecodeError> {
        let len = self.u8(field)? as usize;
        if required && len == 0 {
            return Err(DecodeError::InvalidField {
                kind: self.kind,
                field,
            });
        }
        self.take(len, field)
    }
    /// `epoch: u64`, `seq: u64`; a `seq` of 0 is invalid (numbers start at 1).
    fn msg_id(&mut self) -> Result<MsgId, DecodeError> {
        let epoch = self.u64("epoch")?;
        let seq = self.u64("seq")?;
        if seq == 0 {
            return Err(DecodeError::InvalidField {
                kind: self.kind,
                field: "seq",
            });
        }
        Ok(MsgId { epoch, seq })
    }
    /// `epoch: u64`, `upto: u64`, `run_count: u8`, then the runs (16 bytes each).
    fn ack_fields(&mut self) -> Result<AckFields<'a>, DecodeError> {
        let epoch = self.u64("epoch")?;
        let upto = self.u64("upto")?;
        let count = self.u8("run_count")? as usize;
        let invalid = DecodeError::InvalidField {
            kind: self.kind,
            field: "runs",
        };
        if count > ACK_RUNS_MAX {
            return Err(invalid);
        }
        let runs = AckRuns::from_wire(self.take(count * 16, "runs")?).ok_or(invalid)?;
        Ok(AckFields { epoch, upto, runs })
    }
    /// A fixed-size field (CHALLENGE's nonce, PROOF's signature).
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<&'a [u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        bytes.try_into().map_err(|_| DecodeError::InvalidField {
            kind: self.kind,
            field,
        })
    }
    /// HELLO's body: `version: u16`, `client_id: short+`, `token` (`u16` length, at most
    /// [`TOKEN_LEN_MAX`] bytes).
    fn hello(&mut self) -> Result<Frame<'a>, DecodeError> {
        let version = self.u16("version")?;
        let client_id = self.short_bytes("client_id", true)?;
        let token_len = self.u16("token")? as usize;
        if token_len > TOKEN_LEN_MAX {
            return Err(DecodeError::InvalidField {
                kind: self.kind,
                field: "token",
            });
        }
        let token = self.take(token_len, "token")?;
        Ok(Frame::Hello {
            version,
            client_id,
            token,
        })
    }
    /// Version 3's fields after the addressing ones: `reply: short+` with flag REPLY, then
    /// `headers: u32` length and 1 or more bytes with flag HEADERS (empty when absent).
    fn extensions(&mut self, flags: u8) -> Result<(&'a [u8], &'a [u8]), DecodeError> {
        let reply = if flags & FLAG_REPLY != 0 {
            self.short_bytes("reply", true)?
        } else {
            b""
        };
        let headers = if flags & FLAG_HEADERS != 0 {
            let len = self.u32("headers")? as usize;
            if len == 0 {
                return Err(DecodeError::InvalidField {
                    kind: self.kind,
                    field: "headers",
                });
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
    fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                kind: self.kind,
                extra: self.rest.len(),
            })
        }
    }
}

fn decode_body(kind: FrameKind, flags: u8, body: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut b = Body { kind, rest: body };
    // The message path first: a plain SEND, before the match over every kind.
    if kind == FrameKind::Send && flags == 0 {
        let target = b.short_bytes("target", true)?;
        return Ok(Frame::Send {
            target,
            payload: b.remainder(),
        });
    }
    let frame = match kind {
        FrameKind::Hello => b.hello()?,
        FrameKind::Challenge => Frame::Challenge {
            nonce: b.array("nonce")?,
        },
        FrameKind::Proof => Frame::Proof {
            signature: b.array("signature")?,
        },
        FrameKind::Welcome => Frame::Welcome {
            version: b.u16("version")?,
            heartbeat_interval_ms: b.u32("heartbeat_interval_ms")?,
            max_frame_bytes: b.u32("max_frame_bytes")?,
        },
        // The message path: a plain SEND (and, in clients, DELIVER) decodes inline.
        FrameKind::Deliver if flags == 0 => Frame::Deliver {
            sender: b.short_bytes("sender", true)?,
            topic: b.short_bytes("topic", false)?,
            payload: b.remainder(),
        },
        FrameKind::Send | FrameKind::Publish | FrameKind::Deliver
            if flags & EXTENSION_FLAGS != 0 =>
        {
            read_extended(kind, flags, body)?;
            return Ok(Frame::Extended(Extended::validated(kind, flags, body)));
        }
        FrameKind::Send
        | FrameKind::Ack
        | FrameKind::Receipt
        | FrameKind::Deliver
        | FrameKind::Error => decode_addressed(kind, flags, &mut b)?,
        FrameKind::Publish => {
            let topic = b.short_bytes("topic", true)?;
            Frame::Publish {
                topic,
                payload: b.remainder(),
                no_echo: flags & FLAG_NO_ECHO != 0,
            }
        }
        FrameKind::Subscribe | FrameKind::Unsubscribe => {
            let topic = b.short_bytes("topic", true)?;
            let group = b.short_bytes("group", false)?;
            if kind == FrameKind::Subscribe {
                Frame::Subscribe { topic, group }
            } else {
                Frame::Unsubscribe { topic, group }
            }
        }
        FrameKind::Watch => Frame::Watch {
            client_id: b.short_bytes("client_id", true)?,
        },
        FrameKind::Unwatch => Frame::Unwatch {
            client_id: b.short_bytes("client_id", true)?,
        },
        FrameKind::Presence => {
            let online = match b.u8("state")? {
                0 => false,
                1 => true,
                _ => {
                    return Err(DecodeError::InvalidField {
                        kind,
                        field: "state",
                    })
                }
            };
            Frame::Presence {
                online,
                client_id: b.short_bytes("client_id", true)?,
            }
        }
        FrameKind::Ping => Frame::Ping {
            nonce: b.u64("nonce")?,
        },
        FrameKind::Pong => Frame::Pong {
            nonce: b.u64("nonce")?,
        },
        FrameKind::Close => {
            let reason = CloseReason(b.u16("reason")?);
            Frame::Close {
                reason,
                text: b.remainder(),
            }
        }
    };
    b.finish()?;
    Ok(frame)
}

/// The bodies of ERROR, ACK, RECEIPT and the version-2 forms of SEND and DELIVER (plain SEND
/// and DELIVER decode inline in [`decode_body`]); out of line, off the message path.
#[cold]
#[inline(never)]
fn decode_addressed<'a>(
    kind: FrameKind,
    flags: u8,
    b: &mut Body<'a>,
) -> Result<Frame<'a>, DecodeError> {
    Ok(match kind {
        FrameKind::Send => {
            let target = b.short_bytes("target", true)?;
            if flags & FLAG_ACKED != 0 {
                let id = b.msg_id()?;
                Frame::SendAcked {
                    target,
                    id,
                    payload: b.remainder(),
                }
            } else {
                Frame::Send {
                    target,
                    payload: b.remainder(),
                }
            }
        }
        FrameKind::Ack => Frame::Ack {
            to: b.short_bytes("to", true)?,
            gap: flags & FLAG_GAP != 0,
            ack: b.ack_fields()?,
        },
        FrameKind::Receipt => Frame::Receipt {
            from: b.short_bytes("from", true)?,
            gap: flags & FLAG_GAP != 0,
            ack: b.ack_fields()?,
        },
        FrameKind::Deliver => {
            let sender = b.short_bytes("sender", true)?;
            let topic = b.short_bytes("topic", false)?;
            if flags & FLAG_ACKED != 0 {
                if !topic.is_empty() {
                    return Err(DecodeError::InvalidField {
                        kind,
                        field: "topic",
                    });
                }
                let id = b.msg_id()?;
                Frame::DeliverAcked {
                    sender,
                    id,
                    payload: b.remainder(),
                }
            } else {
                Frame::Deliver {
                    sender,
                    topic,
                    payload: b.remainder(),
                }
            }
        }
        FrameKind::Error => {
            let code = ErrorCode(b.u16("code")?);
            let subject = b.short_bytes("subject", false)?;
            if flags & FLAG_ACKED != 0 {
                let id = b.msg_id()?;
                Frame::ErrorAcked {
                    code,
                    subject,
                    id,
                    text: b.remainder(),
                }
            } else {
                Frame::Error {
                    code,
                    subject,
                    text: b.remainder(),
                }
            }
        }
        // Not reached: decode_body calls this for the kinds above only.
        other => return Err(DecodeError::UnknownKind(other as u8)),
    })
}

pub(super) fn check_short(
    field: &'static str,
    v: &[u8],
    max: usize,
    required: bool,
) -> Result<(), EncodeError> {
    if v.len() > max {
        return Err(EncodeError::FieldTooLong {
            field,
            len: v.len(),
            max,
        });
    }
    if required && v.is_empty() {
        return Err(EncodeError::FieldEmpty { field });
    }
    Ok(())
}

#[inline]
pub(super) fn put_header(out: &mut Vec<u8>, body_len: usize, kind: FrameKind, flags: u8) {
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.push(kind as u8);
    out.push(flags);
}

fn put_msg_id(out: &mut Vec<u8>, id: MsgId) {
    out.extend_from_slice(&id.epoch.to_le_bytes());
    out.extend_from_slice(&id.seq.to_le_bytes());
}

/// Sequence numbers start at 1; the decoder refuses 0, so the encoder does too.
fn check_seq(id: MsgId) -> Result<(), EncodeError> {
    if id.seq == 0 {
        return Err(EncodeError::FieldEmpty { field: "seq" });
    }
    Ok(())
}

#[inline]
pub(super) fn put_short(out: &mut Vec<u8>, v: &[u8]) {
    out.push(v.len() as u8);
    out.extend_from_slice(v);
}

/// Reads (and so validates) the body of version 3's SEND, PUBLISH or DELIVER: the
/// addressing fields, `reply: short+` with flag REPLY, `headers: u32` length and 1 or more
/// bytes with flag HEADERS, the payload. ACKED does not combine with REPLY or HEADERS.
pub(super) fn read_extended(
    kind: FrameKind,
    flags: u8,
    body: &[u8],
) -> Result<ExtendedFields<'_>, DecodeError> {
    // Bit 0 is ACKED for SEND and DELIVER, NO_ECHO for PUBLISH.
    if kind != FrameKind::Publish && flags & FLAG_ACKED != 0 {
        return Err(DecodeError::BadFlags { kind, flags });
    }
    let mut b = Body { kind, rest: body };
    let mut fields = ExtendedFields::default();
    match kind {
        FrameKind::Send => fields.target = b.short_bytes("target", true)?,
        FrameKind::Publish => fields.message.topic = b.short_bytes("topic", true)?,
        _ => {
            fields.message.sender = b.short_bytes("sender", true)?;
            fields.message.topic = b.short_bytes("topic", false)?;
        }
    }
    let (reply, headers) = b.extensions(flags)?;
    fields.message.reply = reply;
    fields.message.headers = headers;
    fields.message.payload = b.remainder();
    fields.no_echo = kind == FrameKind::Publish && flags & FLAG_NO_ECHO != 0;
    Ok(fields)
}

/// Bytes of a DELIVER of `message` before its payload.
#[inline]
pub fn deliver_header_len(message: &Message<'_>) -> usize {
    HEADER_LEN + 2 + message.sender.len() + message.topic.len() + message.extension_len()
}

/// Whole size on the wire of the DELIVER of `message`.
#[inline]
pub fn frame_len_for_deliver(message: &Message<'_>) -> usize {
    deliver_header_len(message) + message.payload.len()
}

/// Hot-path encoder for DELIVER (version 3's form when `message` has a reply topic or
/// headers: the caller strips them for an older connection). The caller guarantees the
/// sender is 1..=255 bytes and topic and reply at most 255 (validated when decoded or
/// registered); debug builds assert it.
#[inline(always)]
pub fn encode_deliver(out: &mut Vec<u8>, message: &Message<'_>) {
    if !small_deliver::encode(out, message) {
        encode_deliver_general(out, message);
    }
}

/// [`encode_deliver`] of a message the small path does not take.
#[inline(never)]
fn encode_deliver_general(out: &mut Vec<u8>, message: &Message<'_>) {
    out.reserve(frame_len_for_deliver(message));
    encode_deliver_header(out, message, message.payload.len());
    out.extend_from_slice(message.payload);
}

/// Appends everything of a DELIVER frame of `message` but its payload of `payload_len` bytes,
/// which the caller sends right after (zero-copy path: the payload goes out from the buffer
/// it was received into).
#[inline]
pub fn encode_deliver_header(out: &mut Vec<u8>, message: &Message<'_>, payload_len: usize) {
    let Message { sender, topic, .. } = *message;
    debug_assert!(!sender.is_empty() && sender.len() <= CLIENT_ID_LEN_MAX);
    debug_assert!(topic.len() <= TOPIC_LEN_MAX);
    let body_len = 2 + sender.len() + topic.len() + message.extension_len() + payload_len;
    // One fixed-size append for the header and the sender's length byte, then the variable
    // fields: fewer length updates than a push per byte (measured on the 16 B path).
    let [l0, l1, l2, l3] = (body_len as u32).to_le_bytes();
    let flags = message.extension_flags();
    out.extend_from_slice(&[
        l0,
        l1,
        l2,
        l3,
        FrameKind::Deliver as u8,
        flags,
        sender.len() as u8,
    ]);
    out.extend_from_slice(sender);
    out.push(topic.len() as u8);
    if !topic.is_empty() {
        out.extend_from_slice(topic);
    }
    if flags != 0 {
        message.put_extensions(out);
    }
}

/// The sender and topic of a plain DELIVER (or its header) this process encoded; `None` for
/// any other frame, an acknowledged DELIVER among them.
pub fn deliver_sender_and_topic(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&kind, rest) = frame.get(4..)?.split_first()?;
    let (&flags, body) = rest.split_first()?;
    if kind != FrameKind::Deliver as u8 || flags & FLAG_ACKED != 0 {
        return None;
    }
    let (&sender_len, rest) = body.split_first()?;
    let sender = rest.get(..sender_len as usize)?;
    let (&topic_len, rest) = rest.get(sender_len as usize..)?.split_first()?;
    Some((sender, rest.get(..topic_len as usize)?))
}

/// The topic of a DELIVER header written by [`encode_deliver_header`] (the payload apart);
/// `None` when `header` is not one.
pub fn deliver_header_topic(header: &[u8]) -> Option<&[u8]> {
    let body = header.get(HEADER_LEN..)?;
    let (&sender_len, rest) = body.split_first()?;
    let (&topic_len, rest) = rest.get(sender_len as usize..)?.split_first()?;
    rest.get(..topic_len as usize)
}

/// Whole size on the wire of a DELIVER with the ACKED flag (empty topic, message id).
#[inline]
pub fn frame_len_for_deliver_acked(sender: &[u8], payload_len: usize) -> usize {
    HEADER_LEN + 2 + sender.len() + 16 + payload_len
}

/// Hot-path encoder for an acknowledged DELIVER (as [`encode_deliver`]).
#[inline]
pub fn encode_deliver_acked(out: &mut Vec<u8>, sender: &[u8], id: MsgId, payload: &[u8]) {
    out.reserve(frame_len_for_deliver_acked(sender, payload.len()));
    encode_deliver_acked_header(out, sender, id, payload.len());
    out.extend_from_slice(payload);
}

/// Everything of an acknowledged DELIVER but its payload (as [`encode_deliver_header`]).
#[inline]
pub fn encode_deliver_acked_header(
    out: &mut Vec<u8>,
    sender: &[u8],
    id: MsgId,
    payload_len: usize,
) {
    debug_assert!(!sender.is_empty() && sender.len() <= CLIENT_ID_LEN_MAX);
    debug_assert!(id.seq != 0, "sequence numbers start at 1");
    let body_len = 2 + sender.len() + 16 + payload_len;
    put_header(out, body_len, FrameKind::Deliver, FLAG_ACKED);
    put_short(out, sender);
    put_short(out, b"");
    put_msg_id(out, id);
}

/// Whole size on the wire of a SEND with the ACKED flag.
#[inline]
pub fn frame_len_for_send_acked(target: &[u8], payload_len: usize) -> usize {
    HEADER_LEN + 1 + target.len() + 16 + payload_len
}

/// Hot-path encoder for an acknowledged SEND, the client's per-message frame: what
/// `Frame::SendAcked { .. }.encode` appends, with the same checks, without the dispatch on
/// the frame's kind. On error nothing is appended.
#[inline]
pub fn encode_send_acked(
    out: &mut Vec<u8>,
    target: &[u8],
    id: MsgId,
    payload: &[u8],
) -> Result<(), EncodeError> {
    check_short("target", target, CLIENT_ID_LEN_MAX, true)?;
    check_seq(id)?;
    out.reserve(frame_len_for_send_acked(target, payload.len()));
    let body_len = 1 + target.len() + 16 + payload.len();
    put_header(out, body_len, FrameKind::Send, FLAG_ACKED);
    put_short(out, target);
    put_msg_id(out, id);
    out.extend_from_slice(payload);
    Ok(())
}

impl Frame<'_> {
    /// Number of bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Hello {
                    client_id, token, ..
                } => 2 + 1 + client_id.len() + 2 + token.len(),
                Frame::Welcome { .. } => 2 + 4 + 4,
                Frame::Challenge { nonce } => nonce.len(),
                Frame::Proof { signature } => signature.len(),
                Frame::Send { target, payload } => 1 + target.len() + payload.len(),
                Frame::SendAcked {
                    target, payload, ..
                } => 1 + target.len() + 16 + payload.len(),
                Frame::Ack { to: id, ack, .. } | Frame::Receipt { from: id, ack, .. } => {
                    1 + id.len() + 8 + 8 + 1 + ack.runs.as_wire().len()
                }
                Frame::DeliverAcked {
                    sender, payload, ..
                } => 2 + sender.len() + 16 + payload.len(),
                Frame::ErrorAcked { subject, text, .. } => 2 + 1 + subject.len() + 16 + text.len(),
                Frame::Publish { topic, payload, .. } => 1 + topic.len() + payload.len(),
                Frame::Extended(extended) => extended.body().len(),
                Frame::Subscribe { topic, group } | Frame::Unsubscribe { topic, group } => {
                    2 + topic.len() + group.len()
                }
                Frame::Watch { client_id } | Frame::Unwatch { client_id } => 1 + client_id.len(),
                Frame::Deliver {
                    sender,
                    topic,
                    payload,
                } => 2 + sender.len() + topic.len() + payload.len(),
                Frame::Presence { client_id, .. } => 2 + client_id.len(),
                Frame::Ping { .. } | Frame::Pong { .. } => 8,
                Frame::Error { subject, text, .. } => 2 + 1 + subject.len() + text.len(),
                Frame::Close { text, .. } => 2 + text.len(),
            }
    }

    /// Validates field lengths, then appends the frame to `out`. On error nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.validate()?;
        let len = self.encoded_len();
        out.reserve(len);
        let flags = match self {
            Frame::Publish { no_echo: true, .. } => FLAG_NO_ECHO,
            Frame::SendAcked { .. } | Frame::DeliverAcked { .. } | Frame::ErrorAcked { .. } => {
                FLAG_ACKED
            }
            Frame::Ack { gap: true, .. } | Frame::Receipt { gap: true, .. } => FLAG_GAP,
            Frame::Extended(extended) => extended.flags(),
            _ => 0,
        };
        put_header(out, len - HEADER_LEN, self.kind(), flags);
        match *self {
            Frame::Hello {
                version,
                client_id,
                token,
            } => {
                out.extend_from_slice(&version.to_le_bytes());
                put_short(out, client_id);
                out.extend_from_slice(&(token.len() as u16).to_le_bytes());
                out.extend_from_slice(token);
            }
            Frame::Welcome {
                version,
                heartbeat_interval_ms,
                max_frame_bytes,
            } => {
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&heartbeat_interval_ms.to_le_bytes());
                out.extend_from_slice(&max_frame_bytes.to_le_bytes());
            }
            Frame::Challenge { nonce } => out.extend_from_slice(nonce),
            Frame::Proof { signature } => out.extend_from_slice(signature),
            Frame::Send { target, payload } => {
                put_short(out, target);
                out.extend_from_slice(payload);
            }
            Frame::SendAcked { .. }
            | Frame::Ack { .. }
            | Frame::Receipt { .. }
            | Frame::DeliverAcked { .. }
            | Frame::ErrorAcked { .. } => self.put_version_2_body(out),
            Frame::Extended(extended) => out.extend_from_slice(extended.body()),
            Frame::Publish { topic, payload, .. } => {
                put_short(out, topic);
                out.extend_from_slice(payload);
            }
            Frame::Subscribe { topic, group } | Frame::Unsubscribe { topic, group } => {
                put_short(out, topic);
                put_short(out, group);
            }
            Frame::Watch { client_id } | Frame::Unwatch { client_id } => put_short(out, client_id),
            Frame::Deliver {
                sender,
                topic,
                payload,
            } => {
                put_short(out, sender);
                put_short(out, topic);
                out.extend_from_slice(payload);
            }
            Frame::Presence { client_id, online } => {
                out.push(online as u8);
                put_short(out, client_id);
            }
            Frame::Ping { nonce } | Frame::Pong { nonce } => {
                out.extend_from_slice(&nonce.to_le_bytes())
            }
            Frame::Error {
                code,
                subject,
                text,
            } => {
                out.extend_from_slice(&code.0.to_le_bytes());
                put_short(out, subject);
                out.extend_from_slice(text);
            }
            Frame::Close { reason, text } => {
                out.extend_from_slice(&reason.0.to_le_bytes());
                out.extend_from_slice(text);
            }
        }
        debug_assert_eq!(len, self.encoded_len());
        Ok(())
    }

    /// The bodies of the version-2 kinds (section 12 of PROTOCOL.md).
    fn put_version_2_body(&self, out: &mut Vec<u8>) {
        match *self {
            Frame::SendAcked {
                target,
                id,
                payload,
            } => {
                put_short(out, target);
                put_msg_id(out, id);
                out.extend_from_slice(payload);
            }
            Frame::Ack { to: who, ack, .. } | Frame::Receipt { from: who, ack, .. } => {
                put_short(out, who);
                out.extend_from_slice(&ack.epoch.to_le_bytes());
                out.extend_from_slice(&ack.upto.to_le_bytes());
                out.push(ack.runs.len() as u8);
                out.extend_from_slice(ack.runs.as_wire());
            }
            Frame::DeliverAcked {
                sender,
                id,
                payload,
            } => {
                put_short(out, sender);
                put_short(out, b"");
                put_msg_id(out, id);
                out.extend_from_slice(payload);
            }
            Frame::ErrorAcked {
                code,
                subject,
                id,
                text,
            } => {
                out.extend_from_slice(&code.0.to_le_bytes());
                put_short(out, subject);
                put_msg_id(out, id);
                out.extend_from_slice(text);
            }
            _ => {}
        }
    }

    fn validate(&self) -> Result<(), EncodeError> {
        match *self {
            Frame::Hello {
                client_id,
                token,
                version: _,
            } => {
                check_short("client_id", client_id, CLIENT_ID_LEN_MAX, true)?;
                check_short("token", token, TOKEN_LEN_MAX, false)
            }
            Frame::Send { target, .. } => check_short("target", target, CLIENT_ID_LEN_MAX, true),
            Frame::SendAcked { target, id, .. } => {
                check_short("target", target, CLIENT_ID_LEN_MAX, true)?;
                check_seq(id)
            }
            Frame::Ack { to, .. } => check_short("to", to, CLIENT_ID_LEN_MAX, true),
            Frame::Receipt { from, .. } => check_short("from", from, CLIENT_ID_LEN_MAX, true),
            Frame::DeliverAcked { sender, id, .. } => {
                check_short("sender", sender, CLIENT_ID_LEN_MAX, true)?;
                check_seq(id)
            }
            Frame::ErrorAcked { subject, id, .. } => {
                check_short("subject", subject, 255, false)?;
                check_seq(id)
            }
            Frame::Publish { topic, .. } => check_short("topic", topic, TOPIC_LEN_MAX, true),
            Frame::Subscribe { topic, group } | Frame::Unsubscribe { topic, group } => {
                check_short("topic", topic, TOPIC_LEN_MAX, true)?;
                check_short("group", group, TOPIC_LEN_MAX, false)
            }
            Frame::Watch { client_id }
            | Frame::Unwatch { client_id }
            | Frame::Presence { client_id, .. } => {
                check_short("client_id", client_id, CLIENT_ID_LEN_MAX, true)
            }
            Frame::Deliver { sender, topic, .. } => {
                check_short("sender", sender, CLIENT_ID_LEN_MAX, true)?;
                check_short("topic", topic, TOPIC_LEN_MAX, false)
            }
            Frame::Error { subject, .. } => check_short("subject", subject, 255, false),
            // Validated when it was decoded (the only way to make one).
            Frame::Extended(_) => Ok(()),
            Frame::Welcome { .. }
            | Frame::Challenge { .. }
            | Frame::Proof { .. }
            | Frame::Ping { .. }
            | Frame::Pong { .. }
            | Frame::Close { .. } => Ok(()),
        }
    }
}

impl<'a> Frame<'a> {
    /// The message a DELIVER (plain or version 3) carries; `None` for any other frame.
    pub fn message(&self) -> Option<Message<'a>> {
        match *self {
            Frame::Deliver {
                sender,
                topic,
                payload,
            } => Some(Message::plain(sender, topic, payload)),
            Frame::Extended(extended) if extended.kind() == FrameKind::Deliver => {
                Some(extended.fields().message)
            }
            _ => None,
        }
    }
}

/// Convenience for tests and control paths: the HELLO this build sends.
pub fn hello<'a>(client_id: &'a [u8], token: &'a [u8]) -> Frame<'a> {
    Frame::Hello {
        version: PROTOCOL_VERSION,
        client_id,
        token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `plain_send` must say of `frame`: the SEND `decode` finds when the frame is
    /// exactly one whole frame without flags, nothing otherwise.
    fn plain_send_by_decode(frame: &[u8]) -> Option<(&[u8], &[u8])> {
        match decode(frame, 1 << 20) {
            Ok(Decoded::Frame {
                frame: Frame::Send { target, payload },
                consumed,
            }) if consumed == frame.len() && frame[5] == 0 => Some((target, payload)),
            _ => None,
        }
    }

    /// What `plain_publish` must say of `frame`: the PUBLISH `decode` finds when the frame is
    /// exactly one whole frame without REPLY or HEADERS, nothing otherwise.
    fn plain_publish_by_decode(frame: &[u8]) -> Option<(&[u8], &[u8], bool)> {
        match decode(frame, 1 << 20) {
            Ok(Decoded::Frame {
                frame:
                    Frame::Publish {
                        topic,
                        payload,
                        no_echo,
                    },
                consumed,
            }) if consumed == frame.len() => Some((topic, payload, no_echo)),
            _ => None,
        }
    }

    #[test]
    fn the_message_lane_agrees_with_decode_on_every_small_frame() {
        let bodies: [&[u8]; 8] = [
            b"",
            &[0],
            &[0, b'p'],
            &[1],
            &[1, b'a'],
            &[1, b'a', b'p', b'q'],
            &[2, b'a'],
            &[3, b'a', b'b', b'c'],
        ];
        let mut checked = 0;
        for kind in 0..=u8::MAX {
            for flags in [0u8, 1, 2, 3, 4, 5, 7, 0x80] {
                for body in bodies {
                    // Lengths that say the body, one short of it and one past it.
                    for said in [body.len(), body.len().wrapping_sub(1), body.len() + 1] {
                        let mut frame = (said as u32).to_le_bytes().to_vec();
                        frame.extend_from_slice(&[kind, flags]);
                        frame.extend_from_slice(body);
                        assert_eq!(
                            plain_send(&frame),
                            plain_send_by_decode(&frame),
                            "{frame:?}"
                        );
                        assert_eq!(
                            plain_publish(&frame),
                            plain_publish_by_decode(&frame),
                            "{frame:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 256 * 8 * 8 * 3);
        assert_eq!(plain_send(b""), None);
        assert_eq!(plain_send(&[1, 0, 0, 0, FrameKind::Send as u8]), None);
        assert_eq!(plain_publish(b""), None);
        assert_eq!(plain_publish(&[1, 0, 0, 0, FrameKind::Publish as u8]), None);
    }

    #[test]
    fn the_topic_of_a_deliver_header() {
        let mut header = Vec::new();
        encode_deliver_header(&mut header, &Message::plain(b"sender", b"news.eu", b""), 42);
        assert_eq!(deliver_header_topic(&header), Some(&b"news.eu"[..]));
        assert_eq!(deliver_header_topic(&header[..header.len() - 1]), None);
        assert_eq!(deliver_header_topic(b""), None);
    }

    fn roundtrip(f: Frame<'_>) {
        let mut out = Vec::new();
        f.encode(&mut out).unwrap();
        assert_eq!(out.len(), f.encoded_len());
        match decode(&out, 1 << 20).unwrap() {
            Decoded::Frame { frame, consumed } => {
                assert_eq!(frame, f);
                assert_eq!(consumed, out.len());
            }
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    #[test]
    fn every_kind_roundtrips() {
        roundtrip(hello(b"alice", b"secret"));
        roundtrip(Frame::Welcome {
            version: 1,
            heartbeat_interval_ms: 5000,
            max_frame_bytes: 99,
        });
        roundtrip(Frame::Send {
            target: b"bob",
            payload: b"hi",
        });
        roundtrip(Frame::Publish {
            topic: b"t",
            payload: b"",
            no_echo: true,
        });
        roundtrip(Frame::Publish {
            topic: b"t",
            payload: b"x",
            no_echo: false,
        });
        roundtrip(Frame::Subscribe {
            topic: b"t",
            group: b"",
        });
        roundtrip(Frame::Unsubscribe {
            topic: b"t",
            group: b"g",
        });
        roundtrip(Frame::Watch { client_id: b"w" });
        roundtrip(Frame::Unwatch { client_id: b"w" });
        roundtrip(Frame::Deliver {
            sender: b"a",
            topic: b"",
            payload: b"p",
        });
        roundtrip(Frame::Presence {
            client_id: b"a",
            online: true,
        });
        roundtrip(Frame::Ping { nonce: u64::MAX });
        roundtrip(Frame::Pong { nonce: 7 });
        roundtrip(Frame::Challenge { nonce: &[9; 32] });
        roundtrip(Frame::Proof {
            signature: &[8; 64],
        });
        roundtrip(Frame::Error {
            code: ErrorCode::UNKNOWN_ID,
            subject: b"zed",
            text: b"unknown",
        });
        roundtrip(Frame::Close {
            reason: CloseReason::REPLACED,
            text: b"replaced",
        });
    }

    #[test]
    fn hot_path_deliver_matches_generic_encoder() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let plain = Message::plain(b"snd", b"topic", b"payload");
        encode_deliver(&mut a, &plain);
        Frame::Deliver {
            sender: b"snd",
            topic: b"topic",
            payload: b"payload",
        }
        .encode(&mut b)
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), frame_len_for_deliver(&plain));
        assert_eq!(
            deliver_sender_and_topic(&a),
            Some((&b"snd"[..], &b"topic"[..]))
        );
        // A SEND's DELIVER: no topic (the field is its length byte only).
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let by_id = Message::plain(b"snd", b"", b"payload");
        encode_deliver(&mut a, &by_id);
        Frame::Deliver {
            sender: b"snd",
            topic: b"",
            payload: b"payload",
        }
        .encode(&mut b)
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), frame_len_for_deliver(&by_id));
        assert_eq!(deliver_sender_and_topic(&a), Some((&b"snd"[..], &b""[..])));
        let (mut acked, mut error) = (Vec::new(), Vec::new());
        encode_deliver_acked(&mut acked, b"snd", MsgId { epoch: 1, seq: 1 }, b"x");
        let overloaded = Frame::Error {
            code: ErrorCode::OVERLOADED,
            subject: b"",
            text: b"",
        };
        overloaded.encode(&mut error).unwrap();
        assert_eq!(deliver_sender_and_topic(&acked), None, "acknowledged");
        assert_eq!(deliver_sender_and_topic(&error), None, "not a DELIVER");
        assert_eq!(deliver_sender_and_topic(&a[..8]), None, "cut short");
        let extended = Message {
            reply: b"_INBOX.1",
            headers: b"NATS/1.0\r\n\r\n",
            ..plain
        };
        let mut a = Vec::new();
        encode_deliver(&mut a, &extended);
        assert_eq!(a.len(), frame_len_for_deliver(&extended));
        assert_eq!(a[5], FLAG_REPLY | FLAG_HEADERS);
        let Ok(Decoded::Frame { frame, consumed }) = decode(&a, 1 << 20) else {
            panic!("a version-3 DELIVER does not decode");
        };
        assert_eq!((frame.message(), consumed), (Some(extended), a.len()));
        let mut b = Vec::new();
        frame.encode(&mut b).unwrap();
        assert_eq!(a, b, "an extended frame re-encodes as it came");
    }

    #[test]
    fn hot_path_send_acked_matches_generic_encoder_and_checks_alike() {
        let id = MsgId { epoch: 9, seq: 3 };
        for (target, payload) in [(&b"bob"[..], &b"hi"[..]), (&[7u8; 255][..], &b""[..])] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_send_acked(&mut a, target, id, payload).unwrap();
            let frame = Frame::SendAcked {
                target,
                id,
                payload,
            };
            frame.encode(&mut b).unwrap();
            assert_eq!(a, b);
            assert_eq!(a.len(), frame_len_for_send_acked(target, payload.len()));
        }
        let zero = MsgId { epoch: 9, seq: 0 };
        for (target, id) in [(&b""[..], id), (&[7u8; 256][..], id), (&b"bob"[..], zero)] {
            let mut a = vec![1u8];
            let generic = Frame::SendAcked {
                target,
                id,
                payload: b"x",
            }
            .encode(&mut Vec::new());
            assert_eq!(encode_send_acked(&mut a, target, id, b"x"), generic);
            assert!(generic.is_err());
            assert_eq!(a, vec![1u8], "nothing appended on error");
        }
    }

    #[test]
    fn oversized_header_is_rejected_before_the_body_arrives() {
        let mut hdr = Vec::new();
        hdr.extend_from_slice(&(2000u32).to_le_bytes());
        hdr.extend_from_slice(&[FrameKind::Send as u8, 0]);
        assert_eq!(
            decode(&hdr, 1024),
            Err(DecodeError::FrameTooLarge {
                frame_bytes: 2006,
                max_frame_bytes: 1024
            })
        );
        hdr[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&hdr, usize::MAX),
            Ok(Decoded::NeedMore { .. })
        ));
    }

    #[test]
    fn typed_errors_for_malformed_shapes() {
        let frame = |kind: u8, flags: u8, body: &[u8]| {
            let mut v = (body.len() as u32).to_le_bytes().to_vec();
            v.push(kind);
            v.push(flags);
            v.extend_from_slice(body);
            v
        };
        assert_eq!(
            decode(&frame(0x7f, 0, b""), 100),
            Err(DecodeError::UnknownKind(0x7f))
        );
        assert!(matches!(
            decode(&frame(0x10, 0x08, b"\x01a"), 100),
            Err(DecodeError::BadFlags { .. })
        ));
        // Version 3's flags: ACKED does not combine with them, and the fields they announce
        // must be there and not empty.
        assert!(matches!(
            decode(&frame(0x10, FLAG_ACKED | FLAG_REPLY, b"\x01a"), 100),
            Err(DecodeError::BadFlags { .. })
        ));
        // From the header alone, before the body arrived.
        let header = [0x40, 0, 0, 0, 0x20, FLAG_ACKED | FLAG_HEADERS];
        assert!(matches!(
            decode(&header, 100),
            Err(DecodeError::BadFlags { .. })
        ));
        assert_eq!(
            decode(&frame(0x11, FLAG_REPLY, b"\x01t\x00"), 100),
            Err(DecodeError::InvalidField {
                kind: FrameKind::Publish,
                field: "reply"
            })
        );
        assert_eq!(
            decode(
                &frame(0x20, FLAG_HEADERS, b"\x01s\x00\x00\x00\x00\x00"),
                100
            ),
            Err(DecodeError::InvalidField {
                kind: FrameKind::Deliver,
                field: "headers"
            })
        );
        assert_eq!(
            decode(&frame(0x10, FLAG_HEADERS, b"\x01a\x09\x00\x00\x00abc"), 100),
            Err(DecodeError::Truncated {
                kind: FrameKind::Send,
                field: "headers"
            })
        );
        assert!(matches!(
            decode(&frame(0x10, 0, b"\x05ab"), 100),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&frame(0x10, 0, b"\x00"), 100),
            Err(DecodeError::InvalidField {
                field: "target",
                ..
            })
        ));
        assert!(matches!(
            decode(&frame(0x30, 0, &[0; 9]), 100),
            Err(DecodeError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            decode(&frame(0x21, 0, b"\x02\x01a"), 100),
            Err(DecodeError::InvalidField { field: "state", .. })
        ));
    }

    #[test]
    fn encode_refuses_overlong_fields() {
        let long = [b'x'; 256];
        let mut out = Vec::new();
        assert!(Frame::Send {
            target: &long,
            payload: b""
        }
        .encode(&mut out)
        .is_err());
        assert!(Frame::Send {
            target: b"",
            payload: b""
        }
        .encode(&mut out)
        .is_err());
        assert!(out.is_empty());
    }
}
