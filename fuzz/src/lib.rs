//! Helpers shared by the fuzz targets and the seed generator: structured inputs built from
//! `arbitrary` bytes, and checks that more than one target uses.

use arbitrary::{Arbitrary, Result, Unstructured};
use ringrelay::cluster::wire::{
    ControlMsg, InterestChange, Lane, LinkHello, LinkMsg, LinkRefuse, Member, RowChange,
    SHORT_LEN_MAX,
};
use ringrelay::protocol::{
    encode_deliver, encode_publish_extended, encode_send_extended, AckFields, AckRuns, CloseReason,
    EncodeError, ErrorCode, Frame, FrameKind, Message, MsgId, CLIENT_ID_LEN_MAX, TOKEN_LEN_MAX,
    TOPIC_LEN_MAX,
};

/// Bounds the targets decode with: below a header, tiny, small, the default, unbounded.
pub const MAXES: [usize; 7] = [0, 5, 6, 64, 1024, 1 << 20, usize::MAX];

/// An owned client frame with arbitrary field values, valid or not (the encoder must refuse
/// exactly the invalid ones).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum ArbFrame {
    Hello {
        version: u16,
        client_id: Vec<u8>,
        token: Vec<u8>,
    },
    Welcome {
        version: u16,
        heartbeat_interval_ms: u32,
        max_frame_bytes: u32,
    },
    Send {
        target: Vec<u8>,
        payload: Vec<u8>,
    },
    Publish {
        topic: Vec<u8>,
        payload: Vec<u8>,
        no_echo: bool,
    },
    Subscribe {
        topic: Vec<u8>,
        group: Vec<u8>,
    },
    Unsubscribe {
        topic: Vec<u8>,
        group: Vec<u8>,
    },
    Watch {
        client_id: Vec<u8>,
    },
    Unwatch {
        client_id: Vec<u8>,
    },
    Deliver {
        sender: Vec<u8>,
        topic: Vec<u8>,
        payload: Vec<u8>,
    },
    Presence {
        client_id: Vec<u8>,
        online: bool,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    /// Version 4.
    Challenge {
        nonce: [u8; 32],
    },
    Proof {
        signature: [u8; 64],
    },
    Error {
        code: u16,
        subject: Vec<u8>,
        text: Vec<u8>,
    },
    Close {
        reason: u16,
        text: Vec<u8>,
    },
    SendAcked {
        target: Vec<u8>,
        epoch: u64,
        seq: u64,
        payload: Vec<u8>,
    },
    DeliverAcked {
        sender: Vec<u8>,
        epoch: u64,
        seq: u64,
        payload: Vec<u8>,
    },
    ErrorAcked {
        code: u16,
        subject: Vec<u8>,
        epoch: u64,
        seq: u64,
        text: Vec<u8>,
    },
    /// ACK (`receipt` false) or RECEIPT; `runs` as on the wire (runs that are not whole,
    /// ordered and at most 16 become no runs: `AckRuns` cannot hold them).
    Ack {
        receipt: bool,
        who: Vec<u8>,
        epoch: u64,
        upto: u64,
        gap: bool,
        runs: Vec<u8>,
    },
}

impl ArbFrame {
    pub fn as_frame(&self) -> Frame<'_> {
        match self {
            ArbFrame::Hello {
                version,
                client_id,
                token,
            } => Frame::Hello {
                version: *version,
                client_id,
                token,
            },
            ArbFrame::Welcome {
                version,
                heartbeat_interval_ms,
                max_frame_bytes,
            } => Frame::Welcome {
                version: *version,
                heartbeat_interval_ms: *heartbeat_interval_ms,
                max_frame_bytes: *max_frame_bytes,
            },
            ArbFrame::Send { target, payload } => Frame::Send { target, payload },
            ArbFrame::Publish {
                topic,
                payload,
                no_echo,
            } => Frame::Publish {
                topic,
                payload,
                no_echo: *no_echo,
            },
            ArbFrame::Subscribe { topic, group } => Frame::Subscribe { topic, group },
            ArbFrame::Unsubscribe { topic, group } => Frame::Unsubscribe { topic, group },
            ArbFrame::Watch { client_id } => Frame::Watch { client_id },
            ArbFrame::Unwatch { client_id } => Frame::Unwatch { client_id },
            ArbFrame::Deliver {
                sender,
                topic,
                payload,
            } => Frame::Deliver {
                sender,
                topic,
                payload,
            },
            ArbFrame::Presence { client_id, online } => Frame::Presence {
                client_id,
                online: *online,
            },
            ArbFrame::Ping { nonce } => Frame::Ping { nonce: *nonce },
            ArbFrame::Pong { nonce } => Frame::Pong { nonce: *nonce },
            ArbFrame::Challenge { nonce } => Frame::Challenge { nonce },
            ArbFrame::Proof { signature } => Frame::Proof { signature },
            ArbFrame::Error {
                code,
                subject,
                text,
            } => Frame::Error {
                code: ErrorCode(*code),
                subject,
                text,
            },
            ArbFrame::SendAcked {
                target,
                epoch,
                seq,
                payload,
            } => Frame::SendAcked {
                target,
                id: MsgId {
                    epoch: *epoch,
                    seq: *seq,
                },
                payload,
            },
            ArbFrame::DeliverAcked {
                sender,
                epoch,
                seq,
                payload,
            } => Frame::DeliverAcked {
                sender,
                id: MsgId {
                    epoch: *epoch,
                    seq: *seq,
                },
                payload,
            },
            ArbFrame::ErrorAcked {
                code,
                subject,
                epoch,
                seq,
                text,
            } => Frame::ErrorAcked {
                code: ErrorCode(*code),
                subject,
                id: MsgId {
                    epoch: *epoch,
                    seq: *seq,
                },
                text,
            },
            ArbFrame::Ack {
                receipt,
                who,
                epoch,
                upto,
                gap,
                runs,
            } => {
                let ack = AckFields {
                    epoch: *epoch,
                    upto: *upto,
                    runs: AckRuns::from_wire(runs).unwrap_or_default(),
                };
                let gap = *gap;
                if *receipt {
                    Frame::Receipt {
                        from: who,
                        gap,
                        ack,
                    }
                } else {
                    Frame::Ack { to: who, gap, ack }
                }
            }
            ArbFrame::Close { reason, text } => Frame::Close {
                reason: CloseReason(*reason),
                text,
            },
        }
    }
}

/// Version 3's SEND (`kind` 0), PUBLISH (1) or DELIVER (else) with arbitrary fields, valid
/// or not, written by version 3's encoders (no frame value can be made of one but by
/// decoding).
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct ArbExtended {
    pub kind: u8,
    pub sender: Vec<u8>,
    /// SEND's target, PUBLISH's and DELIVER's topic.
    pub head: Vec<u8>,
    pub reply: Vec<u8>,
    pub headers: Vec<u8>,
    pub payload: Vec<u8>,
    pub no_echo: bool,
}

impl ArbExtended {
    pub fn kind(&self) -> FrameKind {
        match self.kind {
            0 => FrameKind::Send,
            1 => FrameKind::Publish,
            _ => FrameKind::Deliver,
        }
    }

    /// The message it carries, as its decoded frame gives it back.
    pub fn message(&self) -> Message<'_> {
        let kind = self.kind();
        Message {
            sender: if kind == FrameKind::Deliver {
                &self.sender
            } else {
                b""
            },
            topic: if kind == FrameKind::Send {
                b""
            } else {
                &self.head
            },
            reply: &self.reply,
            headers: &self.headers,
            payload: &self.payload,
        }
    }

    /// Appends it with version 3's encoder for its kind. The DELIVER encoder is the relay's
    /// hot path and checks nothing (the relay passes it validated fields only): an invalid
    /// DELIVER is refused here by the bounds of PROTOCOL.md, for the same error shape.
    pub fn encode(&self, out: &mut Vec<u8>) -> std::result::Result<(), EncodeError> {
        let message = self.message();
        match self.kind() {
            FrameKind::Send => encode_send_extended(out, &self.head, &message),
            FrameKind::Publish => encode_publish_extended(out, &message, self.no_echo),
            _ if self.is_valid() => {
                encode_deliver(out, &message);
                Ok(())
            }
            _ => Err(EncodeError::FieldEmpty { field: "deliver" }),
        }
    }

    /// Whether its fields keep the bounds of PROTOCOL.md section 13.
    pub fn is_valid(&self) -> bool {
        let short = |v: &[u8]| v.len() <= 255;
        let addressed = match self.kind() {
            FrameKind::Send => (1..=CLIENT_ID_LEN_MAX).contains(&self.head.len()),
            FrameKind::Publish => (1..=TOPIC_LEN_MAX).contains(&self.head.len()),
            _ => (1..=CLIENT_ID_LEN_MAX).contains(&self.sender.len()) && short(&self.head),
        };
        let extended = !self.reply.is_empty() || !self.headers.is_empty();
        addressed && short(&self.reply) && extended
    }
}

/// Whether the client encoder must accept `f`: the field bounds of PROTOCOL.md section 2,
/// written out independently of the codec's own `validate`.
pub fn client_frame_is_valid(f: &Frame<'_>) -> bool {
    let id = |v: &[u8]| (1..=CLIENT_ID_LEN_MAX).contains(&v.len());
    let topic = |v: &[u8]| (1..=TOPIC_LEN_MAX).contains(&v.len());
    let short = |v: &[u8]| v.len() <= 255;
    let seq = |m: MsgId| m.seq >= 1;
    match *f {
        Frame::Hello {
            client_id, token, ..
        } => id(client_id) && token.len() <= TOKEN_LEN_MAX,
        Frame::Send { target, .. } => id(target),
        Frame::Publish { topic: t, .. } => topic(t),
        Frame::Subscribe { topic: t, group } | Frame::Unsubscribe { topic: t, group } => {
            topic(t) && short(group)
        }
        Frame::Watch { client_id }
        | Frame::Unwatch { client_id }
        | Frame::Presence { client_id, .. } => id(client_id),
        Frame::Deliver { sender, topic, .. } => id(sender) && short(topic),
        Frame::Error { subject, .. } => short(subject),
        Frame::SendAcked {
            target, id: msg, ..
        } => id(target) && seq(msg),
        Frame::DeliverAcked {
            sender, id: msg, ..
        } => id(sender) && seq(msg),
        Frame::ErrorAcked {
            subject, id: msg, ..
        } => short(subject) && seq(msg),
        Frame::Ack { to: who, .. } | Frame::Receipt { from: who, .. } => id(who),
        // Version 3: a reply topic of at most 255 bytes, headers, and one of the two at least.
        Frame::Extended(extended) => {
            let fields = extended.fields();
            let m = fields.message;
            let addressed = match extended.kind() {
                FrameKind::Send => id(fields.target) && m.topic.is_empty(),
                FrameKind::Publish => topic(m.topic),
                _ => id(m.sender) && short(m.topic),
            };
            addressed && short(m.reply) && !(m.reply.is_empty() && m.headers.is_empty())
        }
        Frame::Welcome { .. }
        | Frame::Challenge { .. }
        | Frame::Proof { .. }
        | Frame::Ping { .. }
        | Frame::Pong { .. }
        | Frame::Close { .. } => true,
    }
}

/// Asserts the length bounds every decoded client frame must respect.
pub fn assert_client_bounds(f: &Frame<'_>) {
    assert!(
        client_frame_is_valid(f),
        "decoded frame breaks a bound: {f:?}"
    );
}

/// Splits `stream` into chunks whose lengths come from `u` (empty chunks included), the last
/// chunk taking whatever is left.
pub fn split<'a>(u: &mut Unstructured<'_>, stream: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let len = match u.arbitrary::<u8>() {
            // Mostly short chunks (headers split everywhere), now and then a long one.
            Ok(b) if b < 0xF0 => usize::from(b % 16),
            Ok(b) => usize::from(b - 0xF0) * 64,
            Err(_) => rest.len(),
        };
        if u.is_empty() {
            chunks.push(rest);
            break;
        }
        let (head, tail) = rest.split_at(len.min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks
}

/// 0..=255 arbitrary bytes; at least one when `required`.
pub fn bytes8(u: &mut Unstructured<'_>, required: bool) -> Result<Box<[u8]>> {
    let len = u.int_in_range(usize::from(required)..=SHORT_LEN_MAX)?;
    let mut v = u.bytes(len.min(u.len()))?.to_vec();
    if required && v.is_empty() {
        v.push(b'x');
    }
    Ok(v.into_boxed_slice())
}

/// An arbitrary string of at most `max` bytes.
pub fn string(u: &mut Unstructured<'_>, max: usize) -> Result<String> {
    let s = String::arbitrary(u)?;
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(s[..end].to_string())
}

fn list<T>(
    u: &mut Unstructured<'_>,
    mut item: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut v = Vec::new();
    // At most 64 entries: enough for every shape, cheap to encode.
    while v.len() < 64 && !u.is_empty() && u.arbitrary::<bool>()? {
        v.push(item(u)?);
    }
    Ok(v)
}

/// A handshake or control message within the encoder's field bounds (so it must round-trip).
pub fn arb_link_msg(u: &mut Unstructured<'_>) -> Result<LinkMsg> {
    Ok(match u.int_in_range(0u8..=9)? {
        0 => LinkMsg::Hello(LinkHello {
            version: u.arbitrary()?,
            lane: if u.arbitrary()? {
                Lane::Data
            } else {
                Lane::Control
            },
            node_id: u.arbitrary()?,
            incarnation: u.arbitrary()?,
            worker: u.arbitrary()?,
            nonce: u.arbitrary()?,
            advertise: string(u, SHORT_LEN_MAX)?,
        }),
        1 => LinkMsg::Auth(u.arbitrary()?),
        2 => LinkMsg::Refuse(LinkRefuse {
            reason: u.arbitrary()?,
            text: string(u, usize::from(u16::MAX))?,
        }),
        3 => ControlMsg::Heartbeat.into(),
        4 => ControlMsg::SnapshotRequest.into(),
        5 => ControlMsg::Members(list(u, |u| {
            Ok(Member {
                node_id: u.arbitrary()?,
                addr: string(u, SHORT_LEN_MAX)?,
            })
        })?)
        .into(),
        6 => ControlMsg::Rows(list(u, |u| {
            let id = bytes8(u, true)?;
            let epoch = u.arbitrary()?;
            Ok(if u.arbitrary()? {
                RowChange::Upsert { id, epoch }
            } else {
                RowChange::Remove { id, epoch }
            })
        })?)
        .into(),
        7 => ControlMsg::Snapshot {
            first: u.arbitrary()?,
            last: u.arbitrary()?,
            rows: list(u, |u| Ok((bytes8(u, true)?, u.arbitrary()?)))?,
        }
        .into(),
        8 => ControlMsg::Digest {
            rows: u.arbitrary()?,
            hash: u.arbitrary()?,
        }
        .into(),
        _ => ControlMsg::Interest {
            replace: u.arbitrary()?,
            entries: list(u, |u| {
                Ok(InterestChange {
                    present: u.arbitrary()?,
                    topic: bytes8(u, true)?,
                    group: bytes8(u, false)?,
                })
            })?,
        }
        .into(),
    })
}
