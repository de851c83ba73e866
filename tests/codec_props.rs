//! Property and malformed-input tests for the wire codec (`ringrelay::protocol`).
//!
//! Frames are generated as owned values ([`Owned`]) and borrowed into [`Frame`]s for encoding;
//! decoded frames are copied back into [`Owned`] for comparison, so no test depends on the
//! lifetime of a decode buffer.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use ringrelay::protocol::{
    decode, encode_deliver, encode_publish_extended, encode_send_extended, frame_len_for_deliver,
    publish_extended_len, send_extended_len, AckFields, AckRuns, CloseReason, DecodeError, Decoded,
    EncodeError, ErrorCode, Frame, FrameKind, FrameReader, Message, MsgId, StreamDecoder,
    ACK_RUNS_MAX, CLIENT_ID_LEN_MAX, FLAG_ACKED, FLAG_GAP, FLAG_HEADERS, FLAG_NO_ECHO, FLAG_REPLY,
    HEADER_LEN, MAX_FRAME_BYTES_DEFAULT, TOKEN_LEN_MAX, TOPIC_LEN_MAX,
};

const MAX: usize = MAX_FRAME_BYTES_DEFAULT;

// ---------------------------------------------------------------------------------------------
// Owned mirror of `Frame`
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Owned {
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
    Challenge {
        nonce: [u8; 32],
    },
    Proof {
        signature: [u8; 64],
    },
    Pong {
        nonce: u64,
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
        id: MsgId,
        payload: Vec<u8>,
    },
    DeliverAcked {
        sender: Vec<u8>,
        id: MsgId,
        payload: Vec<u8>,
    },
    ErrorAcked {
        code: u16,
        subject: Vec<u8>,
        id: MsgId,
        text: Vec<u8>,
    },
    /// Version 3's SEND, PUBLISH or DELIVER with a reply topic or headers (`kind`; `head` is
    /// the target or the topic; `sender` is empty but in DELIVER).
    Extended {
        kind: FrameKind,
        sender: Vec<u8>,
        head: Vec<u8>,
        reply: Vec<u8>,
        headers: Vec<u8>,
        payload: Vec<u8>,
        no_echo: bool,
    },
    /// ACK (`receipt` false: `who` is `to`) or RECEIPT (`who` is `from`); runs as on the wire.
    Ack {
        receipt: bool,
        who: Vec<u8>,
        epoch: u64,
        upto: u64,
        gap: bool,
        runs: Vec<u8>,
    },
}

impl Owned {
    fn as_frame(&self) -> Frame<'_> {
        match self {
            Owned::Hello {
                version,
                client_id,
                token,
            } => Frame::Hello {
                version: *version,
                client_id,
                token,
            },
            Owned::Welcome {
                version,
                heartbeat_interval_ms,
                max_frame_bytes,
            } => Frame::Welcome {
                version: *version,
                heartbeat_interval_ms: *heartbeat_interval_ms,
                max_frame_bytes: *max_frame_bytes,
            },
            Owned::Send { target, payload } => Frame::Send { target, payload },
            Owned::Publish {
                topic,
                payload,
                no_echo,
            } => Frame::Publish {
                topic,
                payload,
                no_echo: *no_echo,
            },
            Owned::Subscribe { topic, group } => Frame::Subscribe { topic, group },
            Owned::Unsubscribe { topic, group } => Frame::Unsubscribe { topic, group },
            Owned::Watch { client_id } => Frame::Watch { client_id },
            Owned::Unwatch { client_id } => Frame::Unwatch { client_id },
            Owned::Deliver {
                sender,
                topic,
                payload,
            } => Frame::Deliver {
                sender,
                topic,
                payload,
            },
            Owned::Presence { client_id, online } => Frame::Presence {
                client_id,
                online: *online,
            },
            Owned::Ping { nonce } => Frame::Ping { nonce: *nonce },
            Owned::Challenge { nonce } => Frame::Challenge { nonce },
            Owned::Proof { signature } => Frame::Proof { signature },
            Owned::Pong { nonce } => Frame::Pong { nonce: *nonce },
            Owned::Error {
                code,
                subject,
                text,
            } => Frame::Error {
                code: ErrorCode(*code),
                subject,
                text,
            },
            Owned::Close { reason, text } => Frame::Close {
                reason: CloseReason(*reason),
                text,
            },
            Owned::SendAcked {
                target,
                id,
                payload,
            } => Frame::SendAcked {
                target,
                id: *id,
                payload,
            },
            Owned::DeliverAcked {
                sender,
                id,
                payload,
            } => Frame::DeliverAcked {
                sender,
                id: *id,
                payload,
            },
            Owned::ErrorAcked {
                code,
                subject,
                id,
                text,
            } => Frame::ErrorAcked {
                code: ErrorCode(*code),
                subject,
                id: *id,
                text,
            },
            // Only the decoder makes an extended frame: see `encode_into`.
            Owned::Extended { .. } => unreachable!("extended frames are encoded by encode_into"),
            Owned::Ack {
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
                    runs: AckRuns::from_wire(runs).expect("generated runs are whole and ordered"),
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
        }
    }

    fn from_frame(f: &Frame<'_>) -> Owned {
        let v = |s: &[u8]| s.to_vec();
        match *f {
            Frame::Hello {
                version,
                client_id,
                token,
            } => Owned::Hello {
                version,
                client_id: v(client_id),
                token: v(token),
            },
            Frame::Welcome {
                version,
                heartbeat_interval_ms,
                max_frame_bytes,
            } => Owned::Welcome {
                version,
                heartbeat_interval_ms,
                max_frame_bytes,
            },
            Frame::Send { target, payload } => Owned::Send {
                target: v(target),
                payload: v(payload),
            },
            Frame::Publish {
                topic,
                payload,
                no_echo,
            } => Owned::Publish {
                topic: v(topic),
                payload: v(payload),
                no_echo,
            },
            Frame::Subscribe { topic, group } => Owned::Subscribe {
                topic: v(topic),
                group: v(group),
            },
            Frame::Unsubscribe { topic, group } => Owned::Unsubscribe {
                topic: v(topic),
                group: v(group),
            },
            Frame::Watch { client_id } => Owned::Watch {
                client_id: v(client_id),
            },
            Frame::Unwatch { client_id } => Owned::Unwatch {
                client_id: v(client_id),
            },
            Frame::Deliver {
                sender,
                topic,
                payload,
            } => Owned::Deliver {
                sender: v(sender),
                topic: v(topic),
                payload: v(payload),
            },
            Frame::Presence { client_id, online } => Owned::Presence {
                client_id: v(client_id),
                online,
            },
            Frame::Ping { nonce } => Owned::Ping { nonce },
            Frame::Challenge { nonce } => Owned::Challenge { nonce: *nonce },
            Frame::Proof { signature } => Owned::Proof {
                signature: *signature,
            },
            Frame::Pong { nonce } => Owned::Pong { nonce },
            Frame::Error {
                code,
                subject,
                text,
            } => Owned::Error {
                code: code.0,
                subject: v(subject),
                text: v(text),
            },
            Frame::Close { reason, text } => Owned::Close {
                reason: reason.0,
                text: v(text),
            },
            Frame::Extended(extended) => {
                let fields = extended.fields();
                let m = fields.message;
                Owned::Extended {
                    kind: extended.kind(),
                    sender: v(m.sender),
                    head: if extended.kind() == FrameKind::Send {
                        v(fields.target)
                    } else {
                        v(m.topic)
                    },
                    reply: v(m.reply),
                    headers: v(m.headers),
                    payload: v(m.payload),
                    no_echo: fields.no_echo,
                }
            }
            Frame::SendAcked {
                target,
                id,
                payload,
            } => Owned::SendAcked {
                target: v(target),
                id,
                payload: v(payload),
            },
            Frame::DeliverAcked {
                sender,
                id,
                payload,
            } => Owned::DeliverAcked {
                sender: v(sender),
                id,
                payload: v(payload),
            },
            Frame::ErrorAcked {
                code,
                subject,
                id,
                text,
            } => Owned::ErrorAcked {
                code: code.0,
                subject: v(subject),
                id,
                text: v(text),
            },
            Frame::Ack { to: who, gap, ack }
            | Frame::Receipt {
                from: who,
                gap,
                ack,
            } => Owned::Ack {
                receipt: matches!(f, Frame::Receipt { .. }),
                who: v(who),
                epoch: ack.epoch,
                upto: ack.upto,
                gap,
                runs: v(ack.runs.as_wire()),
            },
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame: through [`Frame::encode`], or version 3's encoders for an extended
    /// one (no frame value can be made of one but by decoding).
    fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let Owned::Extended {
            kind,
            sender,
            head,
            reply,
            headers,
            payload,
            no_echo,
        } = self
        else {
            let frame = self.as_frame();
            frame
                .encode(out)
                .expect("generated frames respect the field limits");
            assert_eq!(out.len() - start, frame.encoded_len());
            return;
        };
        let mut message = Message {
            sender,
            topic: head,
            reply,
            headers,
            payload,
        };
        match kind {
            FrameKind::Send => {
                message.topic = b"";
                encode_send_extended(out, head, &message).expect("a valid SEND");
                assert_eq!(out.len() - start, send_extended_len(head, &message));
            }
            FrameKind::Publish => {
                encode_publish_extended(out, &message, *no_echo).expect("a valid PUBLISH");
                assert_eq!(out.len() - start, publish_extended_len(&message));
            }
            _ => {
                encode_deliver(out, &message);
                assert_eq!(out.len() - start, frame_len_for_deliver(&message));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Client ids: 1..=255 bytes. Mostly short (realistic and cheap), sometimes up to the limit.
fn id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 1..=16),
        1 => vec(any::<u8>(), 1..=CLIENT_ID_LEN_MAX),
    ]
}

/// Topics: 1..=255 bytes.
fn topic() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 1..=16),
        1 => vec(any::<u8>(), 1..=TOPIC_LEN_MAX),
    ]
}

/// Queue groups, DELIVER topics, ERROR subjects: 0..=255 bytes (empty allowed).
fn short_optional() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        4 => vec(any::<u8>(), 0..=16),
        1 => vec(any::<u8>(), 0..=TOPIC_LEN_MAX),
    ]
}

/// Tokens: 0..=1024 bytes.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        4 => vec(any::<u8>(), 0..=32),
        1 => vec(any::<u8>(), 0..=TOKEN_LEN_MAX),
    ]
}

/// Payloads and free text: up to 4 KiB, mostly small.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..=64),
        1 => vec(any::<u8>(), 0..=4096),
    ]
}

/// A version-3 SEND, PUBLISH or DELIVER: a reply topic, headers, or both.
fn extended() -> impl Strategy<Value = Owned> {
    let kind = prop_oneof![
        Just(FrameKind::Send),
        Just(FrameKind::Publish),
        Just(FrameKind::Deliver)
    ];
    let reply_and_headers = prop_oneof![
        (topic(), Just(Vec::new())),
        (Just(Vec::new()), vec(any::<u8>(), 1..300)),
        (topic(), vec(any::<u8>(), 1..300)),
    ];
    (kind, id(), reply_and_headers, payload(), any::<bool>()).prop_map(
        |(kind, name, (reply, headers), payload, no_echo)| {
            let deliver = kind == FrameKind::Deliver;
            Owned::Extended {
                kind,
                sender: if deliver { name.clone() } else { Vec::new() },
                // A DELIVER's topic may be empty (a SEND); a target or topic may not.
                head: if deliver { Vec::new() } else { name },
                reply,
                headers,
                payload,
                no_echo: no_echo && kind == FrameKind::Publish,
            }
        },
    )
}

/// Any valid frame of any kind.
fn frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (any::<u16>(), id(), token()).prop_map(|(version, client_id, token)| Owned::Hello {
            version,
            client_id,
            token
        }),
        (any::<u16>(), any::<u32>(), any::<u32>()).prop_map(|(version, hb, mfb)| Owned::Welcome {
            version,
            heartbeat_interval_ms: hb,
            max_frame_bytes: mfb
        }),
        (id(), payload()).prop_map(|(target, payload)| Owned::Send { target, payload }),
        (topic(), payload(), any::<bool>()).prop_map(|(topic, payload, no_echo)| Owned::Publish {
            topic,
            payload,
            no_echo
        }),
        (topic(), short_optional()).prop_map(|(topic, group)| Owned::Subscribe { topic, group }),
        (topic(), short_optional()).prop_map(|(topic, group)| Owned::Unsubscribe { topic, group }),
        id().prop_map(|client_id| Owned::Watch { client_id }),
        id().prop_map(|client_id| Owned::Unwatch { client_id }),
        (id(), short_optional(), payload()).prop_map(|(sender, topic, payload)| Owned::Deliver {
            sender,
            topic,
            payload
        }),
        (id(), any::<bool>()).prop_map(|(client_id, online)| Owned::Presence { client_id, online }),
        any::<u64>().prop_map(|nonce| Owned::Ping { nonce }),
        any::<[u8; 32]>().prop_map(|nonce| Owned::Challenge { nonce }),
        proptest::collection::vec(any::<u8>(), 64).prop_map(|bytes| Owned::Proof {
            signature: bytes.try_into().expect("the vector always has 64 bytes"),
        }),
        any::<u64>().prop_map(|nonce| Owned::Pong { nonce }),
        (any::<u16>(), short_optional(), payload()).prop_map(|(code, subject, text)| {
            Owned::Error {
                code,
                subject,
                text,
            }
        }),
        (any::<u16>(), payload()).prop_map(|(reason, text)| Owned::Close { reason, text }),
        extended(),
        (id(), msg_id(), payload()).prop_map(|(target, id, payload)| Owned::SendAcked {
            target,
            id,
            payload
        }),
        (id(), msg_id(), payload()).prop_map(|(sender, id, payload)| Owned::DeliverAcked {
            sender,
            id,
            payload
        }),
        (any::<u16>(), short_optional(), msg_id(), payload()).prop_map(
            |(code, subject, id, text)| Owned::ErrorAcked {
                code,
                subject,
                id,
                text
            }
        ),
        (
            any::<bool>(),
            id(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            runs()
        )
            .prop_map(|(receipt, who, epoch, upto, gap, runs)| Owned::Ack {
                receipt,
                who,
                epoch,
                upto,
                gap,
                runs
            }),
    ]
}

/// Message ids: any epoch, a sequence number from 1.
fn msg_id() -> impl Strategy<Value = MsgId> {
    (any::<u64>(), 1..=u64::MAX).prop_map(|(epoch, seq)| MsgId { epoch, seq })
}

/// ACK runs as on the wire: up to ACK_RUNS_MAX, each with first <= last.
fn runs() -> impl Strategy<Value = Vec<u8>> {
    vec((any::<u64>(), any::<u64>()), 0..=ACK_RUNS_MAX).prop_map(|pairs| {
        let ordered: Vec<(u64, u64)> = pairs
            .into_iter()
            .map(|(a, b)| (a.min(b), a.max(b)))
            .collect();
        let mut wire = Vec::new();
        AckRuns::write_wire(&ordered, &mut wire);
        wire
    })
}

/// How to cut a stream into chunks: random cut points, or fixed-size chunks.
#[derive(Clone, Debug)]
enum Chunking {
    Cuts(Vec<Index>),
    Fixed(usize),
}

fn chunking() -> impl Strategy<Value = Chunking> {
    prop_oneof![
        3 => vec(any::<Index>(), 0..48).prop_map(Chunking::Cuts),
        1 => (1usize..=64).prop_map(Chunking::Fixed),
    ]
}

/// Splits `stream` into consecutive chunks that cover it exactly (empty chunks allowed).
fn chunks<'a>(stream: &'a [u8], how: &Chunking) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = match how {
        Chunking::Cuts(ix) => ix.iter().map(|i| i.index(stream.len() + 1)).collect(),
        Chunking::Fixed(n) => (0..stream.len()).step_by(*n).collect(),
    };
    cuts.push(0);
    cuts.push(stream.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
}

/// Garbage: fully random bytes, or a plausible header (small length, mostly known kind) over
/// random body bytes, so the body decoders are reached and not just the header checks.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    let kind_byte = prop_oneof![
        4 => prop::sample::select(FrameKind::ALL.iter().map(|k| *k as u8).collect::<Vec<_>>()),
        1 => any::<u8>(),
    ];
    let flags_byte = prop_oneof![4 => Just(0u8), 1 => Just(FLAG_NO_ECHO), 1 => any::<u8>()];
    let plausible = (kind_byte, flags_byte, vec(any::<u8>(), 0..300), 0usize..3).prop_map(
        |(kind, flags, body, len_fudge)| {
            // Declared length: exact, one short, or one long (so truncation shows up too).
            let declared = match len_fudge {
                0 => body.len(),
                1 => body.len().saturating_sub(1),
                _ => body.len() + 1,
            };
            let mut v = (declared as u32).to_le_bytes().to_vec();
            v.push(kind);
            v.push(flags);
            v.extend_from_slice(&body);
            v
        },
    );
    prop_oneof![
        1 => vec(any::<u8>(), 0..512),
        2 => vec(plausible, 1..8).prop_map(|parts| parts.concat()),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How a buffer ends after decoding all whole frames from its front.
#[derive(Debug, PartialEq)]
enum End {
    NeedMore,
    Err(DecodeError),
}

/// Reference: decode frames off the front of `buf` until NeedMore or an error. Each step must
/// consume at least a header, so the loop is bounded by `buf.len() / HEADER_LEN + 1`.
fn decode_all(buf: &[u8], max: usize) -> (Vec<Owned>, End) {
    let mut frames = Vec::new();
    let mut pos = 0;
    for _ in 0..=buf.len() / HEADER_LEN + 1 {
        match decode(&buf[pos..], max) {
            Ok(Decoded::Frame { frame, consumed }) => {
                assert!(
                    consumed >= HEADER_LEN,
                    "a frame consumes at least its header"
                );
                assert!(
                    consumed <= buf.len() - pos,
                    "consumed past the end of the buffer"
                );
                assert!(consumed <= max, "consumed more than max_frame_bytes");
                // Every accepted frame re-encodes to exactly the bytes it was decoded from:
                // the encoding is canonical and decode accepts nothing encode would refuse.
                let mut re = Vec::new();
                frame
                    .encode(&mut re)
                    .expect("a decoded frame must be encodable");
                assert_eq!(&re[..], &buf[pos..pos + consumed], "re-encoding differs");
                frames.push(Owned::from_frame(&frame));
                pos += consumed;
            }
            Ok(Decoded::NeedMore { frame_bytes }) => {
                assert!(
                    frame_bytes > buf.len() - pos,
                    "NeedMore while the frame is present"
                );
                assert!(frame_bytes >= HEADER_LEN && frame_bytes <= max.max(HEADER_LEN));
                return (frames, End::NeedMore);
            }
            Err(e) => return (frames, End::Err(e)),
        }
    }
    panic!("decode made no progress on {} bytes", buf.len());
}

/// Feeds `parts` to a FrameReader, draining after every part. Drains are bounded: each
/// returned frame shrinks `buffered()` by at least a header.
fn read_chunked(parts: &[&[u8]], max: usize) -> (Vec<Owned>, End) {
    let mut reader = FrameReader::new(max);
    let mut frames = Vec::new();
    for part in parts {
        reader.extend(part);
        let bound = reader.buffered() / HEADER_LEN + 1;
        let mut drained_to_none = false;
        for _ in 0..=bound {
            let before = reader.buffered();
            match reader.next_frame() {
                Ok(Some(f)) => {
                    frames.push(Owned::from_frame(&f));
                    assert!(reader.buffered() + HEADER_LEN <= before, "no progress");
                }
                Ok(None) => {
                    drained_to_none = true;
                    break;
                }
                Err(e) => {
                    // The error is sticky: the offending bytes stay at the front.
                    assert_eq!(reader.next_frame().err(), Some(e));
                    return (frames, End::Err(e));
                }
            }
        }
        assert!(
            drained_to_none,
            "reader did not settle within {bound} calls"
        );
    }
    (frames, End::NeedMore)
}

fn raw(kind: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(body);
    v
}

fn decode_one(buf: &[u8]) -> Result<Owned, DecodeError> {
    match decode(buf, MAX)? {
        Decoded::Frame { frame, consumed } => {
            assert_eq!(consumed, buf.len());
            Ok(Owned::from_frame(&frame))
        }
        Decoded::NeedMore { frame_bytes } => panic!("unexpected NeedMore({frame_bytes})"),
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    /// Encode a sequence into one stream, cut it anywhere, feed the chunks to a FrameReader
    /// draining after each: the same frames come out in the same order, nothing is left over.
    #[test]
    fn chunked_stream_roundtrips(frames in vec(frame(), 0..16), how in chunking()) {
        let mut stream = Vec::new();
        for f in &frames {
            f.encode_into(&mut stream);
        }
        let parts = chunks(&stream, &how);
        prop_assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), stream.len());
        let (got, end) = read_chunked(&parts, MAX);
        prop_assert_eq!(end, End::NeedMore);
        prop_assert_eq!(&got, &frames);
        // The one-shot decoder over the whole stream agrees.
        let (whole, end) = decode_all(&stream, MAX);
        prop_assert_eq!(end, End::NeedMore);
        prop_assert_eq!(&whole, &frames);
    }

    /// Every strict prefix of a valid frame is NeedMore (with the exact frame size once the
    /// header is in), and the whole is that frame.
    #[test]
    fn every_prefix_needs_more(f in frame()) {
        let bytes = f.encode();
        for cut in 0..bytes.len() {
            let want = if cut < HEADER_LEN { HEADER_LEN } else { bytes.len() };
            prop_assert_eq!(
                decode(&bytes[..cut], MAX),
                Ok(Decoded::NeedMore { frame_bytes: want }),
                "prefix of {} of {} bytes", cut, bytes.len()
            );
        }
        prop_assert_eq!(decode_one(&bytes), Ok(f.clone()));
        // Bytes after the frame are the next frame's business, not this one's.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xAA; 7]);
        match decode(&longer, MAX) {
            Ok(Decoded::Frame { frame, consumed }) => {
                prop_assert_eq!(consumed, bytes.len());
                prop_assert_eq!(Owned::from_frame(&frame), f);
            }
            other => prop_assert!(false, "expected a frame, got {:?}", other),
        }
    }

    /// Garbage never panics `decode` or a FrameReader; decoding always progresses or stops
    /// with NeedMore/an error, and a chunk-fed reader ends exactly like the one-shot decoder.
    #[test]
    fn garbage_never_panics(bytes in garbage(), how in chunking(), small_max in any::<bool>()) {
        let max = if small_max { 64 } else { MAX };
        let (frames, end) = decode_all(&bytes, max);
        let parts = chunks(&bytes, &how);
        let (got, got_end) = read_chunked(&parts, max);
        prop_assert_eq!(got, frames);
        prop_assert_eq!(got_end, end);
    }

    /// One changed byte of a valid frame decodes to some frame, asks for more (only when the
    /// length field grew), or is a typed error; never a panic.
    #[test]
    fn one_byte_mutation_is_handled(f in frame(), at in any::<Index>(), xor in 1u8..=255) {
        let mut bytes = f.encode();
        let i = at.index(bytes.len());
        let old_len = bytes.len();
        bytes[i] ^= xor;
        let declared = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        match decode(&bytes, MAX) {
            Ok(Decoded::Frame { frame, consumed }) => {
                prop_assert!(consumed <= bytes.len());
                prop_assert_eq!(consumed, declared + HEADER_LEN);
                let mut re = Vec::new();
                frame.encode(&mut re).unwrap();
                prop_assert_eq!(&re[..], &bytes[..consumed]);
            }
            Ok(Decoded::NeedMore { frame_bytes }) => {
                prop_assert!(i < 4, "NeedMore although the length field is intact");
                prop_assert_eq!(frame_bytes, declared + HEADER_LEN);
                prop_assert!(frame_bytes > old_len);
            }
            Err(e) => {
                if i < 4 && declared + HEADER_LEN > MAX {
                    prop_assert!(matches!(e, DecodeError::FrameTooLarge { .. }), "{:?}", e);
                }
                if i == 5 && bytes[5] & !allowed_flags(bytes[4]) != 0 {
                    // An undefined flag bit is refused from the header. (A defined one, such
                    // as ACKED toggled on a SEND, changes the layout: any typed error then.)
                    prop_assert!(matches!(e, DecodeError::BadFlags { .. }), "{:?}", e);
                }
            }
        }
        // The reader agrees with decode and never panics either.
        let (frames, end) = decode_all(&bytes, MAX);
        let (got, got_end) = read_chunked(&[&bytes], MAX);
        prop_assert_eq!(got, frames);
        prop_assert_eq!(got_end, end);
    }

    /// A header announcing more than max_frame_bytes is FrameTooLarge from the header alone,
    /// whatever the kind/flags bytes and however much (if any) of the body is present.
    #[test]
    fn oversized_header_is_frame_too_large(
        max in (HEADER_LEN as u64)..=(1u64 << 24),
        over in 1u64..=u32::MAX as u64,
        kind in any::<u8>(),
        flags in any::<u8>(),
        body in vec(any::<u8>(), 0..64),
    ) {
        let max = max as usize;
        let body_len = (max as u64 - HEADER_LEN as u64 + over).min(u32::MAX as u64);
        let frame_bytes = body_len + HEADER_LEN as u64;
        let mut bytes = (body_len as u32).to_le_bytes().to_vec();
        bytes.push(kind);
        bytes.push(flags);
        bytes.extend_from_slice(&body);
        let want = DecodeError::FrameTooLarge { frame_bytes, max_frame_bytes: max };
        prop_assert_eq!(decode(&bytes, max), Err(want));
        prop_assert_eq!(decode(&bytes[..HEADER_LEN], max), Err(want));
        prop_assert_eq!(want.close_reason(), CloseReason::FRAME_TOO_LARGE);
        let mut reader = FrameReader::new(max);
        reader.extend(&bytes[..HEADER_LEN]);
        prop_assert_eq!(reader.next_frame().err(), Some(want));
    }

    /// The hot-path DELIVER encoder writes the same bytes as the generic encoder.
    #[test]
    fn encode_deliver_matches_generic(sender in id(), topic in short_optional(), p in payload()) {
        let mut hot = vec![0xEE; 3]; // appends after existing content
        let message = Message::plain(&sender, &topic, &p);
        encode_deliver(&mut hot, &message);
        let mut generic = vec![0xEE; 3];
        Frame::Deliver { sender: &sender, topic: &topic, payload: &p }.encode(&mut generic).unwrap();
        prop_assert_eq!(&hot, &generic);
        prop_assert_eq!(hot.len() - 3, frame_len_for_deliver(&message));
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed shapes, one class at a time, each with its exact error
// ---------------------------------------------------------------------------------------------

use FrameKind as K;

fn trunc(kind: FrameKind, field: &'static str) -> Result<Owned, DecodeError> {
    Err(DecodeError::Truncated { kind, field })
}

fn invalid(kind: FrameKind, field: &'static str) -> Result<Owned, DecodeError> {
    Err(DecodeError::InvalidField { kind, field })
}

#[test]
fn truncated_bodies() {
    let cases: &[(FrameKind, &[u8], &str)] = &[
        (K::Hello, b"", "version"),
        (K::Hello, b"\x01", "version"),
        (K::Hello, b"\x01\x00", "client_id"),
        (K::Hello, b"\x01\x00\x03ab", "client_id"),
        (K::Hello, b"\x01\x00\x01a", "token"),
        (K::Hello, b"\x01\x00\x01a\x05", "token"),
        (K::Hello, b"\x01\x00\x01a\x05\x00abcd", "token"),
        (K::Welcome, b"\x01\x00", "heartbeat_interval_ms"),
        (
            K::Welcome,
            b"\x01\x00\x88\x13\x00\x00\x00",
            "max_frame_bytes",
        ),
        (K::Send, b"", "target"),
        (K::Send, b"\x05ab", "target"),
        (K::Publish, b"", "topic"),
        (K::Publish, b"\x02t", "topic"),
        (K::Subscribe, b"\x01t", "group"),
        (K::Subscribe, b"\x01t\x02g", "group"),
        (K::Unsubscribe, b"", "topic"),
        (K::Watch, b"", "client_id"),
        (K::Unwatch, b"\x09abc", "client_id"),
        (K::Deliver, b"", "sender"),
        (K::Deliver, b"\x01a", "topic"),
        (K::Deliver, b"\x01a\x03to", "topic"),
        (K::Presence, b"", "state"),
        (K::Presence, b"\x01", "client_id"),
        (K::Presence, b"\x00\x02a", "client_id"),
        (K::Ping, b"\x01\x02\x03\x04", "nonce"),
        (K::Pong, b"", "nonce"),
        (K::Error, b"\x01", "code"),
        (K::Error, b"\x01\x00", "subject"),
        (K::Error, b"\x01\x00\x04id", "subject"),
        (K::Close, b"", "reason"),
        (K::Close, b"\x01", "reason"),
    ];
    for (kind, body, field) in cases {
        assert_eq!(
            decode_one(&raw(*kind as u8, 0, body)),
            trunc(*kind, field),
            "{kind:?} {body:?}"
        );
    }
}

/// Frames whose body is a fixed sequence of fields (no open-ended remainder): every strict
/// body prefix, declared as the whole body, is Truncated.
#[test]
fn every_short_body_of_fixed_layout_kinds_is_truncated() {
    let frames = [
        Owned::Hello {
            version: 1,
            client_id: b"alice".to_vec(),
            token: b"tok".to_vec(),
        },
        Owned::Welcome {
            version: 1,
            heartbeat_interval_ms: 5000,
            max_frame_bytes: 1 << 20,
        },
        Owned::Subscribe {
            topic: b"topic".to_vec(),
            group: b"grp".to_vec(),
        },
        Owned::Unsubscribe {
            topic: b"topic".to_vec(),
            group: Vec::new(),
        },
        Owned::Watch {
            client_id: b"bob".to_vec(),
        },
        Owned::Unwatch {
            client_id: b"bob".to_vec(),
        },
        Owned::Presence {
            client_id: b"bob".to_vec(),
            online: true,
        },
        Owned::Ping { nonce: 42 },
        Owned::Pong { nonce: 42 },
    ];
    for f in &frames {
        let bytes = f.encode();
        let kind = f.as_frame().kind();
        let body = &bytes[HEADER_LEN..];
        for cut in 0..body.len() {
            let got = decode_one(&raw(bytes[4], bytes[5], &body[..cut]));
            assert!(
                matches!(got, Err(DecodeError::Truncated { kind: k, .. }) if k == kind),
                "{kind:?} body cut at {cut}: {got:?}"
            );
        }
    }
}

#[test]
fn trailing_bytes() {
    let cases: &[(FrameKind, &[u8], usize)] = &[
        (K::Hello, b"\x01\x00\x01a\x00\x00!", 1),
        (
            K::Welcome,
            b"\x01\x00\x88\x13\x00\x00\x00\x00\x10\x00xyz",
            3,
        ),
        (K::Subscribe, b"\x01t\x00abc", 3),
        (K::Unsubscribe, b"\x01t\x01gZ", 1),
        (K::Watch, b"\x01aZZ", 2),
        (K::Unwatch, b"\x01aZ", 1),
        (K::Presence, b"\x01\x01aZ", 1),
        (K::Ping, &[0; 9], 1),
        (K::Pong, &[0; 16], 8),
    ];
    for (kind, body, extra) in cases {
        assert_eq!(
            decode_one(&raw(*kind as u8, 0, body)),
            Err(DecodeError::TrailingBytes {
                kind: *kind,
                extra: *extra
            }),
            "{kind:?}"
        );
    }
    // Kinds that end in an open-ended field (payload/text) cannot have trailing bytes: extra
    // bytes are part of that field.
    assert_eq!(
        decode_one(&raw(K::Send as u8, 0, b"\x01bhello")),
        Ok(Owned::Send {
            target: b"b".to_vec(),
            payload: b"hello".to_vec()
        })
    );
    assert_eq!(
        decode_one(&raw(K::Close as u8, 0, b"\x02\x00bye")),
        Ok(Owned::Close {
            reason: 2,
            text: b"bye".to_vec()
        })
    );
}

#[test]
fn unknown_kinds() {
    let known: Vec<u8> = FrameKind::ALL.iter().map(|k| *k as u8).collect();
    for byte in 0..=255u8 {
        let bytes = raw(byte, 0, b"");
        let result = decode(&bytes, MAX);
        if known.contains(&byte) {
            assert_eq!(FrameKind::from_u8(byte).map(|k| k as u8), Some(byte));
            assert!(!matches!(result, Err(DecodeError::UnknownKind(_))));
        } else {
            assert_eq!(FrameKind::from_u8(byte), None);
            assert_eq!(
                result,
                Err(DecodeError::UnknownKind(byte)),
                "kind 0x{byte:02x}"
            );
            assert_eq!(
                DecodeError::UnknownKind(byte).close_reason(),
                CloseReason::PROTOCOL_ERROR
            );
        }
    }
}

/// The flag bits PROTOCOL.md section 4 defines for the kind byte `kind`.
fn allowed_flags(kind: u8) -> u8 {
    match FrameKind::from_u8(kind) {
        Some(FrameKind::Publish) => FLAG_NO_ECHO | FLAG_REPLY | FLAG_HEADERS,
        Some(FrameKind::Send | FrameKind::Deliver) => FLAG_ACKED | FLAG_REPLY | FLAG_HEADERS,
        Some(FrameKind::Error) => FLAG_ACKED,
        Some(FrameKind::Ack | FrameKind::Receipt) => FLAG_GAP,
        _ => 0,
    }
}

#[test]
fn undefined_flags() {
    for kind in FrameKind::ALL {
        let allowed = allowed_flags(kind as u8);
        for flags in 1..=255u8 {
            // An otherwise empty body: flags are checked from the header, before the body.
            let bytes = raw(kind as u8, flags, b"");
            let result = decode(&bytes, MAX);
            // ACKED does not combine with version 3's REPLY and HEADERS (section 13).
            let acked = matches!(kind, FrameKind::Send | FrameKind::Deliver)
                && flags & FLAG_ACKED != 0
                && flags & (FLAG_REPLY | FLAG_HEADERS) != 0;
            if flags & !allowed != 0 || acked {
                assert_eq!(
                    result,
                    Err(DecodeError::BadFlags { kind, flags }),
                    "{kind:?} {flags:#x}"
                );
            } else {
                assert!(!matches!(result, Err(DecodeError::BadFlags { .. })));
            }
        }
    }
    assert_eq!(
        decode_one(&raw(K::Publish as u8, FLAG_NO_ECHO, b"\x01tp")),
        Ok(Owned::Publish {
            topic: b"t".to_vec(),
            payload: b"p".to_vec(),
            no_echo: true
        })
    );
    assert_eq!(
        decode_one(&raw(K::Publish as u8, 0, b"\x01tp")),
        Ok(Owned::Publish {
            topic: b"t".to_vec(),
            payload: b"p".to_vec(),
            no_echo: false
        })
    );
}

#[test]
fn empty_required_ids_and_topics() {
    assert_eq!(
        decode_one(&raw(K::Hello as u8, 0, b"\x01\x00\x00\x00\x00")),
        invalid(K::Hello, "client_id")
    );
    assert_eq!(
        decode_one(&raw(K::Send as u8, 0, b"\x00payload")),
        invalid(K::Send, "target")
    );
    assert_eq!(
        decode_one(&raw(K::Publish as u8, 0, b"\x00payload")),
        invalid(K::Publish, "topic")
    );
    assert_eq!(
        decode_one(&raw(K::Subscribe as u8, 0, b"\x00\x00")),
        invalid(K::Subscribe, "topic")
    );
    assert_eq!(
        decode_one(&raw(K::Unsubscribe as u8, 0, b"\x00\x00")),
        invalid(K::Unsubscribe, "topic")
    );
    assert_eq!(
        decode_one(&raw(K::Watch as u8, 0, b"\x00")),
        invalid(K::Watch, "client_id")
    );
    assert_eq!(
        decode_one(&raw(K::Unwatch as u8, 0, b"\x00")),
        invalid(K::Unwatch, "client_id")
    );
    assert_eq!(
        decode_one(&raw(K::Deliver as u8, 0, b"\x00\x00p")),
        invalid(K::Deliver, "sender")
    );
    assert_eq!(
        decode_one(&raw(K::Presence as u8, 0, b"\x01\x00")),
        invalid(K::Presence, "client_id")
    );
    // Optional fields may be empty.
    assert_eq!(
        decode_one(&raw(K::Subscribe as u8, 0, b"\x01t\x00")),
        Ok(Owned::Subscribe {
            topic: b"t".to_vec(),
            group: Vec::new()
        })
    );
    assert_eq!(
        decode_one(&raw(K::Deliver as u8, 0, b"\x01a\x00")),
        Ok(Owned::Deliver {
            sender: b"a".to_vec(),
            topic: Vec::new(),
            payload: Vec::new()
        })
    );
    assert_eq!(
        decode_one(&raw(K::Error as u8, 0, b"\x01\x00\x00")),
        Ok(Owned::Error {
            code: 1,
            subject: Vec::new(),
            text: Vec::new()
        })
    );
    // The encoder refuses the same shapes, appending nothing.
    let mut out = Vec::new();
    assert_eq!(
        Frame::Watch { client_id: b"" }.encode(&mut out),
        Err(EncodeError::FieldEmpty { field: "client_id" })
    );
    assert_eq!(
        Frame::Publish {
            topic: b"",
            payload: b"",
            no_echo: false
        }
        .encode(&mut out),
        Err(EncodeError::FieldEmpty { field: "topic" })
    );
    assert!(out.is_empty());
}

#[test]
fn bad_presence_state() {
    for state in 2..=255u8 {
        let body = [state, 1, b'a'];
        assert_eq!(
            decode_one(&raw(K::Presence as u8, 0, &body)),
            invalid(K::Presence, "state")
        );
    }
    assert_eq!(
        decode_one(&raw(K::Presence as u8, 0, b"\x00\x01a")),
        Ok(Owned::Presence {
            client_id: b"a".to_vec(),
            online: false
        })
    );
    assert_eq!(
        decode_one(&raw(K::Presence as u8, 0, b"\x01\x01a")),
        Ok(Owned::Presence {
            client_id: b"a".to_vec(),
            online: true
        })
    );
}

#[test]
fn oversized_token() {
    let mut body = vec![1, 0, 1, b'a'];
    body.extend_from_slice(&((TOKEN_LEN_MAX + 1) as u16).to_le_bytes());
    // Refused from the length prefix alone, whether the token bytes are there or not.
    assert_eq!(
        decode_one(&raw(K::Hello as u8, 0, &body)),
        invalid(K::Hello, "token")
    );
    body.extend_from_slice(&[b't'; TOKEN_LEN_MAX + 1]);
    assert_eq!(
        decode_one(&raw(K::Hello as u8, 0, &body)),
        invalid(K::Hello, "token")
    );
    let mut body = vec![1, 0, 1, b'a', 0xff, 0xff];
    body.extend_from_slice(&vec![b't'; u16::MAX as usize]);
    assert_eq!(
        decode_one(&raw(K::Hello as u8, 0, &body)),
        invalid(K::Hello, "token")
    );
    // Exactly the maximum is fine.
    let token = vec![b't'; TOKEN_LEN_MAX];
    let ok = Owned::Hello {
        version: 1,
        client_id: b"a".to_vec(),
        token: token.clone(),
    };
    assert_eq!(decode_one(&ok.encode()), Ok(ok));
    // The encoder refuses one more byte.
    let long = vec![b't'; TOKEN_LEN_MAX + 1];
    let mut out = Vec::new();
    assert_eq!(
        Frame::Hello {
            version: 1,
            client_id: b"a",
            token: &long
        }
        .encode(&mut out),
        Err(EncodeError::FieldTooLong {
            field: "token",
            len: TOKEN_LEN_MAX + 1,
            max: TOKEN_LEN_MAX
        })
    );
    assert!(out.is_empty());
}

#[test]
fn oversized_ids_are_refused_by_the_encoder() {
    let long = vec![b'x'; 256];
    let mut out = Vec::new();
    assert_eq!(
        Frame::Send {
            target: &long,
            payload: b""
        }
        .encode(&mut out),
        Err(EncodeError::FieldTooLong {
            field: "target",
            len: 256,
            max: 255
        })
    );
    assert_eq!(
        Frame::Subscribe {
            topic: b"t",
            group: &long
        }
        .encode(&mut out),
        Err(EncodeError::FieldTooLong {
            field: "group",
            len: 256,
            max: 255
        })
    );
    assert!(out.is_empty());
    // 255 bytes (the most a u8 prefix can say) round-trips.
    let f = Owned::Send {
        target: vec![b'x'; 255],
        payload: b"p".to_vec(),
    };
    assert_eq!(decode_one(&f.encode()), Ok(f));
}

#[test]
fn oversized_frame() {
    let max = 1024;
    // One byte over: refused from the six header bytes alone, for any kind (even unknown).
    for kind in [K::Send as u8, K::Hello as u8, 0x7f] {
        let mut hdr = ((max - HEADER_LEN + 1) as u32).to_le_bytes().to_vec();
        hdr.extend_from_slice(&[kind, 0xff]);
        let want = DecodeError::FrameTooLarge {
            frame_bytes: max as u64 + 1,
            max_frame_bytes: max,
        };
        assert_eq!(decode(&hdr, max), Err(want));
        assert_eq!(want.close_reason(), CloseReason::FRAME_TOO_LARGE);
    }
    // u32::MAX body length.
    let mut hdr = u32::MAX.to_le_bytes().to_vec();
    hdr.extend_from_slice(&[K::Send as u8, 0]);
    assert_eq!(
        decode(&hdr, MAX),
        Err(DecodeError::FrameTooLarge {
            frame_bytes: u32::MAX as u64 + 6,
            max_frame_bytes: MAX
        })
    );
    // Exactly max_frame_bytes is allowed: NeedMore on the header, the frame once complete.
    let payload = vec![7u8; max - HEADER_LEN - 2];
    let f = Owned::Send {
        target: b"b".to_vec(),
        payload,
    };
    let bytes = f.encode();
    assert_eq!(bytes.len(), max);
    assert_eq!(
        decode(&bytes[..HEADER_LEN], max),
        Ok(Decoded::NeedMore { frame_bytes: max })
    );
    match decode(&bytes, max) {
        Ok(Decoded::Frame { frame, consumed }) => {
            assert_eq!(consumed, max);
            assert_eq!(Owned::from_frame(&frame), f);
        }
        other => panic!("expected the frame, got {other:?}"),
    }
    // ...and one byte smaller a limit refuses the same frame.
    assert_eq!(
        decode(&bytes, max - 1),
        Err(DecodeError::FrameTooLarge {
            frame_bytes: max as u64,
            max_frame_bytes: max - 1
        })
    );
    // A FrameReader reports it with only the header buffered.
    let mut reader = FrameReader::new(max - 1);
    reader.extend(&bytes[..HEADER_LEN]);
    assert!(matches!(
        reader.next_frame(),
        Err(DecodeError::FrameTooLarge { .. })
    ));
}

#[test]
fn byte_at_a_time_reader_over_every_kind() {
    let frames = vec![
        Owned::Hello {
            version: 1,
            client_id: b"alice".to_vec(),
            token: b"s3cret".to_vec(),
        },
        Owned::Welcome {
            version: 1,
            heartbeat_interval_ms: 5000,
            max_frame_bytes: 1 << 20,
        },
        Owned::Send {
            target: b"bob".to_vec(),
            payload: b"hi".to_vec(),
        },
        Owned::Publish {
            topic: b"news".to_vec(),
            payload: Vec::new(),
            no_echo: true,
        },
        Owned::Subscribe {
            topic: b"news".to_vec(),
            group: b"workers".to_vec(),
        },
        Owned::Unsubscribe {
            topic: b"news".to_vec(),
            group: Vec::new(),
        },
        Owned::Watch {
            client_id: b"bob".to_vec(),
        },
        Owned::Unwatch {
            client_id: b"bob".to_vec(),
        },
        Owned::Deliver {
            sender: b"alice".to_vec(),
            topic: Vec::new(),
            payload: b"hi".to_vec(),
        },
        Owned::Presence {
            client_id: b"bob".to_vec(),
            online: false,
        },
        Owned::Ping { nonce: 1 },
        Owned::Pong { nonce: u64::MAX },
        Owned::Error {
            code: ErrorCode::UNKNOWN_ID.0,
            subject: b"zed".to_vec(),
            text: b"unknown id".to_vec(),
        },
        Owned::Close {
            reason: CloseReason::REPLACED.0,
            text: b"replaced".to_vec(),
        },
    ];
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
    let parts: Vec<&[u8]> = stream.chunks(1).collect();
    let (got, end) = read_chunked(&parts, MAX);
    assert_eq!(end, End::NeedMore);
    assert_eq!(got, frames);
}

/// The worked examples in PROTOCOL.md section 10, byte for byte.
#[test]
fn protocol_md_worked_examples() {
    fn hex(f: Frame<'_>) -> String {
        let mut v = Vec::new();
        f.encode(&mut v).unwrap();
        v.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
    let hello_v1 = |client_id, token| Frame::Hello {
        version: 1,
        client_id,
        token,
    };
    assert_eq!(
        hex(hello_v1(b"alice", b"s3cret")),
        "10 00 00 00 01 00 01 00 05 61 6c 69 63 65 06 00 73 33 63 72 65 74"
    );
    assert_eq!(
        hex(hello_v1(b"alice", b"")),
        "0a 00 00 00 01 00 01 00 05 61 6c 69 63 65 00 00"
    );
    assert_eq!(
        hex(Frame::Welcome {
            version: 1,
            heartbeat_interval_ms: 5000,
            max_frame_bytes: 1 << 20
        }),
        "0a 00 00 00 02 00 01 00 88 13 00 00 00 00 10 00"
    );
    assert_eq!(
        hex(Frame::Send {
            target: b"bob",
            payload: b"hi"
        }),
        "06 00 00 00 10 00 03 62 6f 62 68 69"
    );
    let deliver = "09 00 00 00 20 00 05 61 6c 69 63 65 00 68 69";
    assert_eq!(
        hex(Frame::Deliver {
            sender: b"alice",
            topic: b"",
            payload: b"hi"
        }),
        deliver
    );
    let mut hot = Vec::new();
    encode_deliver(&mut hot, &Message::plain(b"alice", b"", b"hi"));
    assert_eq!(
        hot.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
        deliver
    );
    assert_eq!(
        hex(Frame::Publish {
            topic: b"news",
            payload: b"hi",
            no_echo: true
        }),
        "07 00 00 00 11 01 04 6e 65 77 73 68 69"
    );
    assert_eq!(
        hex(Frame::Error {
            code: ErrorCode::UNKNOWN_ID,
            subject: b"zed",
            text: b""
        }),
        "06 00 00 00 40 00 01 00 03 7a 65 64"
    );
}

// ---------------------------------------------------------------------------------------------
// StreamDecoder (the shared reassembler) against the one-shot decoder
// ---------------------------------------------------------------------------------------------

/// Feeds `parts` to a StreamDecoder as a client connection would: `decode` on each whole frame,
/// and on the unfinished frame after each `Ok(None)` (so a bad kind or flags is refused from
/// the header, PROTOCOL.md 1.2). Also returns the raw frames it cut. Checks after every call
/// that no more than `max` bytes are buffered.
fn stream_decode(parts: &[&[u8]], max: usize) -> (Vec<Owned>, Vec<Vec<u8>>, End) {
    let mut dec = StreamDecoder::new(max);
    let mut frames = Vec::new();
    let mut raw_frames = Vec::new();
    for part in parts {
        let mut data = *part;
        loop {
            match dec.next(&mut data) {
                Ok(Some(bytes)) => {
                    let bytes = bytes.to_vec();
                    assert!(dec.buffered() <= max, "buffered above the bound");
                    raw_frames.push(bytes.clone());
                    match decode(&bytes, max) {
                        Ok(Decoded::Frame { frame, consumed }) => {
                            assert_eq!(consumed, bytes.len());
                            frames.push(Owned::from_frame(&frame));
                        }
                        Ok(Decoded::NeedMore { .. }) => panic!("a whole frame needs more"),
                        Err(e) => return (frames, raw_frames, End::Err(e)),
                    }
                }
                Ok(None) => {
                    assert!(data.is_empty());
                    assert!(dec.buffered() <= max, "buffered above the bound");
                    if let Err(e) = decode(dec.pending(), max) {
                        return (frames, raw_frames, End::Err(e));
                    }
                    break;
                }
                Err(e) => return (frames, raw_frames, End::Err(e.into())),
            }
        }
    }
    (frames, raw_frames, End::NeedMore)
}

proptest! {
    #![proptest_config(config())]

    /// Valid frames or garbage, cut anywhere, under a roomy or a tight bound: the StreamDecoder
    /// gives the same frames and the same end (first error or "need more") as decoding the
    /// concatenation from the start, and the raw frames it cuts are exactly the stream's.
    #[test]
    fn stream_decoder_matches_one_shot_decoding(
        valid in vec(frame(), 0..12),
        junk in garbage(),
        use_junk in any::<bool>(),
        how in chunking(),
        small_max in any::<bool>(),
    ) {
        let max = if small_max { 64 } else { MAX };
        let stream = if use_junk {
            junk
        } else {
            valid.iter().flat_map(Owned::encode).collect()
        };
        let parts = chunks(&stream, &how);
        let (want, want_end) = decode_all(&stream, max);
        let (got, raw_frames, end) = stream_decode(&parts, max);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&end, &want_end);
        // The raw frames are consecutive slices of the stream from its start.
        let joined = raw_frames.concat();
        prop_assert_eq!(&stream[..joined.len()], &joined[..]);
        if !use_junk && !small_max {
            prop_assert_eq!(got, valid);
            prop_assert_eq!(joined.len(), stream.len());
        }
    }
}

#[test]
fn acked_frames_carry_the_message_id_after_their_addressing_fields() {
    // SEND, ACKED: target "b", epoch 7, seq 1, payload "hi".
    let mut body = b"\x01b".to_vec();
    body.extend_from_slice(&7u64.to_le_bytes());
    body.extend_from_slice(&1u64.to_le_bytes());
    body.extend_from_slice(b"hi");
    assert_eq!(
        decode_one(&raw(K::Send as u8, FLAG_ACKED, &body)),
        Ok(Owned::SendAcked {
            target: b"b".to_vec(),
            id: MsgId { epoch: 7, seq: 1 },
            payload: b"hi".to_vec()
        })
    );
    // Sequence numbers start at 1: 0 is refused by the decoder and the encoder.
    let mut zero = b"\x01b".to_vec();
    zero.extend_from_slice(&[0; 16]);
    assert_eq!(
        decode(&raw(K::Send as u8, FLAG_ACKED, &zero), MAX),
        Err(DecodeError::InvalidField {
            kind: K::Send,
            field: "seq"
        })
    );
    let frame = Frame::SendAcked {
        target: b"b",
        id: MsgId { epoch: 7, seq: 0 },
        payload: b"",
    };
    assert_eq!(
        frame.encode(&mut Vec::new()),
        Err(EncodeError::FieldEmpty { field: "seq" })
    );
    // Without the 16 bytes of the id the body is truncated.
    assert!(matches!(
        decode(&raw(K::Send as u8, FLAG_ACKED, b"\x01bhi"), MAX),
        Err(DecodeError::Truncated { field: "epoch", .. })
    ));
}

#[test]
fn ack_runs_must_be_whole_ordered_and_at_most_the_maximum() {
    let ack = |count: u8, runs: &[(u64, u64)]| {
        let mut body = b"\x01a".to_vec();
        body.extend_from_slice(&9u64.to_le_bytes());
        body.extend_from_slice(&4u64.to_le_bytes());
        body.push(count);
        for &(first, last) in runs {
            body.extend_from_slice(&first.to_le_bytes());
            body.extend_from_slice(&last.to_le_bytes());
        }
        raw(K::Ack as u8, FLAG_GAP, &body)
    };
    match decode_one(&ack(2, &[(6, 7), (9, 9)])) {
        Ok(Owned::Ack {
            receipt: false,
            who,
            epoch: 9,
            upto: 4,
            gap: true,
            runs,
        }) => {
            assert_eq!(who, b"a");
            let runs = AckRuns::from_wire(&runs).unwrap();
            assert_eq!(runs.iter().collect::<Vec<_>>(), vec![(6, 7), (9, 9)]);
        }
        other => panic!("{other:?}"),
    }
    let invalid = Err(DecodeError::InvalidField {
        kind: K::Ack,
        field: "runs",
    });
    assert_eq!(decode(&ack(1, &[(7, 6)]), MAX).map(|_| ()), invalid);
    let many: Vec<(u64, u64)> = (0..=ACK_RUNS_MAX as u64).map(|k| (k, k)).collect();
    assert_eq!(
        decode(&ack(many.len() as u8, &many), MAX).map(|_| ()),
        invalid
    );
    assert!(matches!(
        decode(&ack(2, &[(6, 7)]), MAX),
        Err(DecodeError::Truncated { field: "runs", .. })
    ));
    assert!(matches!(
        decode(&ack(0, &[(6, 7)]), MAX),
        Err(DecodeError::TrailingBytes { extra: 16, .. })
    ));
}

#[test]
fn a_frame_value_stays_56_bytes_so_the_message_path_copies_no_more_than_before() {
    let size = std::mem::size_of::<Frame<'_>>();
    assert!(size <= 56, "{size} bytes");
}
